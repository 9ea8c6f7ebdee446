//! `plan`: observe (each running node once), plan, and save the plan with the fingerprint of
//! what it was computed from when asked.

use std::path::Path;

use super::Error;
use crate::observe::{Nodes, observe};
use crate::plan::{self, Plan, fingerprint, saved::SavedPlan};
use crate::spec::Spec;

pub struct Planned {
    pub plan: Plan,
    /// Where the plan was saved, if it was.
    pub saved_to: Option<std::path::PathBuf>,
}

pub async fn plan(spec: &Spec, out: Option<&Path>) -> Result<Planned, Error> {
    let world = observe(spec, Nodes::Look).await?;
    let p = plan::plan(spec, &world.observed);
    if let Some(out) = out {
        let saved = SavedPlan::new(p.clone(), fingerprint::of(spec, &world.observed));
        std::fs::write(out, saved.to_json()).map_err(|e| Error::PlanFile {
            action: "write",
            path: out.to_path_buf(),
            source: Box::new(e),
        })?;
    }
    Ok(Planned {
        plan: p,
        saved_to: out.map(Path::to_path_buf),
    })
}
