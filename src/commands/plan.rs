use std::path::Path;

use super::{Error, Nodes, exit, load_spec, observe};
use crate::cli::PlanArgs;
use crate::plan::{self, fingerprint, saved::SavedPlan};
use crate::render::{self, Shell};

pub async fn run(config: &Path, args: &PlanArgs, shell: &Shell) -> Result<u8, Error> {
    let loaded = load_spec(config, shell)?;
    let spec = &loaded.spec;
    let world = observe(spec, Nodes::Look).await?;
    let observed = &world.observed;
    let p = plan::plan(spec, observed);
    if args.json {
        shell.out(&render::plan::json(&p));
    } else {
        shell.out(&render::plan::human(&p, shell.color_out()));
    }
    if let Some(out) = &args.out {
        let saved = SavedPlan::new(p.clone(), fingerprint::of(spec, observed));
        std::fs::write(out, saved.to_json()).map_err(|e| Error::PlanFile {
            action: "write",
            path: out.clone(),
            source: Box::new(e),
        })?;
        if !args.json {
            shell.out(&format!(
                "\nSaved the plan to {}. Apply it with: redisctl apply {}\n",
                out.display(),
                out.display()
            ));
        }
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
