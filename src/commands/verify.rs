use std::path::Path;

use super::{Error, exit, load_spec, observe};
use crate::cli::VerifyArgs;
use crate::render::Shell;
use crate::verify;

pub async fn run(config: &Path, args: &VerifyArgs, shell: &Shell) -> Result<u8, Error> {
    let loaded = load_spec(config, shell)?;
    let spec = &loaded.spec;
    // The passwords first: without them there is nothing to verify, and AWS is not asked.
    let secrets = crate::spec::secrets::read_all(spec).map_err(Error::Secrets)?;
    let world = observe(spec, super::Nodes::Skip).await?;
    let report = verify::run(spec, &world.observed, &world.ctx.aws, secrets).await?;
    if args.json {
        shell.out(&verify::render::json(&report));
    } else {
        shell.out(&verify::render::human(&report, shell.color_out()));
    }
    Ok(if report.passed() {
        exit::OK
    } else {
        exit::ERROR
    })
}
