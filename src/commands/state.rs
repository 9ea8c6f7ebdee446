//! `force-unlock ID` and `state push|pull`: the S3 state backend's lock and migration
//! ([`crate::state`]).

use std::path::Path;

use super::{Error, exit, load_spec};
use crate::cli::StateCommand;
use crate::render::Shell;

pub fn force_unlock(config: &Path, id: &str, shell: &Shell) -> Result<u8, Error> {
    let loaded = load_spec(config, shell)?;
    let said = crate::state::force_unlock(&loaded.spec, id)?;
    shell.out(&format!("{said}\n"));
    Ok(exit::OK)
}

pub fn run(config: &Path, cmd: &StateCommand, shell: &Shell) -> Result<u8, Error> {
    let loaded = load_spec(config, shell)?;
    // Without --from/--to: the local state directory the spec names (or its default).
    let local = |given: &Option<std::path::PathBuf>| {
        given
            .clone()
            .unwrap_or_else(|| loaded.spec.cluster.state_dir.clone())
    };
    let said = match cmd {
        StateCommand::Push { from } => crate::state::push(&loaded.spec, &local(from))?,
        StateCommand::Pull { to } => crate::state::pull(&loaded.spec, &local(to))?,
    };
    shell.out(&format!("{said}\n"));
    Ok(exit::OK)
}
