use std::path::Path;

use super::{Error, exit, load_spec};
use crate::cli::ValidateArgs;
use crate::render::{self, Shell};

pub fn run(config: &Path, args: &ValidateArgs, shell: &Shell) -> Result<u8, Error> {
    let loaded = load_spec(config, shell)?;
    let spec = &loaded.spec;
    if args.resolved {
        shell.out(&spec.to_toml());
        return Ok(exit::OK);
    }
    shell.out(&render::diagnostics::valid(shell, config, &loaded));
    Ok(exit::OK)
}
