use std::path::Path;

use super::{Error, exit, load_with_state};
use crate::cli::PlanArgs;
use crate::render::{self, Shell};
use crate::workflow;

pub async fn run(config: &Path, args: &PlanArgs, shell: &Shell) -> Result<u8, Error> {
    let (loaded, _state) = load_with_state(config, shell, crate::state::Access::Read)?;
    let requests = crate::cli::Rotate::requests(&args.rotate, args.update_os);
    let planned = workflow::plan(&loaded.spec, requests).await?;
    let p = &planned.plan;
    render::plan::show(shell, p, args.json);
    if let Some(out) = &args.out {
        planned.save(out)?;
        render::plan::saved(shell, out, args.json);
    }
    if p.blockers().next().is_some() {
        return Err(Error::Refused(
            "the plan has blockers; resolve them and plan again".into(),
        ));
    }
    // A CI drift check must not read "in sync" from a plan that could not look at every node.
    if args.detailed_exitcode && !p.unobserved.is_empty() {
        return Err(Error::Refused(format!(
            "the plan is incomplete: {} could not be observed over SSH (see the warnings above)",
            p.unobserved.join(", ")
        )));
    }
    Ok(if args.detailed_exitcode && !p.is_empty() {
        exit::CHANGES
    } else {
        exit::OK
    })
}
