use std::path::Path;

use super::{Error, exit, load_with_state};
use crate::cli::VerifyArgs;
use crate::observe::{self, Nodes};
use crate::render::{self, Shell};
use crate::verify;

pub async fn run(config: &Path, args: &VerifyArgs, shell: &Shell) -> Result<u8, Error> {
    let (loaded, _state) = load_with_state(config, shell, crate::state::Access::Read)?;
    let spec = &loaded.spec;
    // The passwords first: without them there is nothing to verify, and AWS is not asked.
    let secrets = observe::secrets(spec)?;
    let world = observe::observe(spec, Nodes::Skip).await?;
    let report = verify::run(spec, &world.observed, &world.aws, secrets).await?;
    if args.json {
        shell.out(&render::verify::json(&report));
    } else {
        shell.out(&render::verify::human(&report, shell.color_out()));
    }
    Ok(if report.passed() {
        exit::OK
    } else {
        exit::ERROR
    })
}
