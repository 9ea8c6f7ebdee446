use std::path::Path;

use super::{Error, exit, interrupted, load_with_state};
use crate::cli::ApplyArgs;
use crate::render::Shell;
use crate::render::console::{Console, Run};
use crate::workflow::{self, ApplyOptions, PlanSource};

pub async fn run(config: &Path, args: &ApplyArgs, shell: &Shell) -> Result<u8, Error> {
    if args.json && !args.yes && args.plan.is_none() {
        return Err(Error::Refused(
            "--json shows no prompt: pass --yes, or apply a saved plan file".into(),
        ));
    }
    let console = Console::new(shell, Run::Apply, args.json, args.yes);
    let result = async {
        let (loaded, _state) =
            load_with_state(config, shell, crate::state::Access::Write("apply"))?;
        let source = match &args.plan {
            Some(file) => PlanSource::Saved(file),
            None => PlanSource::Fresh,
        };
        let options = ApplyOptions {
            allow_replace: args.allow_replace,
            keep_old_volumes: args.keep_old_volumes,
            parallelism: args.parallelism.into(),
            requests: crate::cli::Rotate::requests(&args.rotate, args.update_os),
        };
        workflow::apply(&loaded.spec, source, options, &console, interrupted).await
    }
    .await;
    console.apply_done(&result);
    result.map(|_| exit::OK)
}
