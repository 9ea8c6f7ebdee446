//! `plan`: observe (each running node once) and plan; a plan is saved with the fingerprint of
//! what it was computed from, so that apply can refuse it once it is stale.

use std::path::Path;

use super::Error;
use crate::observe::{Nodes, observe};
use crate::plan::{self, Fingerprint, Plan, fingerprint, saved::SavedPlan};
use crate::spec::Spec;

pub struct Planned {
    pub plan: Plan,
    /// What the plan was computed from (the spec and what was observed).
    pub fingerprint: Fingerprint,
}

pub async fn plan(spec: &Spec, requests: plan::Requests) -> Result<Planned, Error> {
    let world = observe(spec, Nodes::Look).await?;
    Ok(Planned {
        plan: plan::plan_with(spec, &world.observed, requests),
        fingerprint: fingerprint::of(spec, &world.observed),
    })
}

impl Planned {
    /// Write the plan file that `redisctl apply FILE` takes.
    pub fn save(&self, out: &Path) -> Result<(), Error> {
        let saved = SavedPlan::new(self.plan.clone(), self.fingerprint.clone());
        std::fs::write(out, saved.to_json()).map_err(|e| Error::PlanFile {
            action: "write",
            path: out.to_path_buf(),
            source: Box::new(e),
        })
    }
}
