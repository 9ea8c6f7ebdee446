use std::path::Path;

use super::{Error, exit, interrupted, load_with_state};
use crate::cli::DestroyArgs;
use crate::render::Shell;
use crate::render::console::{Console, Run};
use crate::workflow;

pub async fn run(config: &Path, args: &DestroyArgs, shell: &Shell) -> Result<u8, Error> {
    if args.json && !args.yes {
        return Err(Error::Refused("--json shows no prompt: pass --yes".into()));
    }
    let console = Console::new(shell, Run::Destroy, args.json, args.yes);
    let result = async {
        let (loaded, _state) =
            load_with_state(config, shell, crate::state::Access::Write("destroy"))?;
        workflow::destroy(&loaded.spec, &console, interrupted).await
    }
    .await;
    console.destroy_done(&result);
    result.map(|_| exit::OK)
}
