//! `destroy`: everything tagged for the cluster, in reverse order, then the proof that nothing
//! tagged is left. Local secrets (the state directory) are kept.

use super::{Error, Ui, final_look};
use crate::exec::{self, Report};
use crate::observe::{Nodes, observe};
use crate::plan::{self, Plan};
use crate::spec::Spec;

/// Destroy steps that may run at once.
const PARALLELISM: usize = 8;

#[derive(Debug)]
pub enum DestroyOutcome {
    /// Nothing in the region is tagged for the cluster.
    Nothing { region: String, cluster: String },
    Destroyed {
        plan: Plan,
        report: Report,
        cluster: String,
        /// Kept: the operator deletes it when it is no longer needed.
        /// Where the secrets that destroy keeps are, said to the user.
        kept: String,
    },
}

pub async fn destroy<F: std::future::Future<Output = ()>>(
    spec: &Spec,
    ui: &dyn Ui,
    interrupted: impl Fn() -> F,
) -> Result<DestroyOutcome, Error> {
    let _lock =
        crate::state_dir::lock(&spec.cluster.state_dir, "destroy").map_err(Error::Refused)?;
    let world = observe(spec, Nodes::Skip).await?;
    let plan = plan::plan_destroy(spec, &world.observed);
    ui.show_plan(&plan);
    if plan.is_empty() {
        return Ok(DestroyOutcome::Nothing {
            region: spec.cluster.region.clone(),
            cluster: spec.cluster.name.clone(),
        });
    }
    ui.confirm(&format!(
        "Do you really want to destroy cluster {} and all its data?",
        spec.cluster.name
    ))?;
    ui.starting();
    let report = exec::apply(
        &super::ctx(&world, None),
        &plan,
        PARALLELISM,
        ui.progress(),
        interrupted(),
    )
    .await?;
    // Prove it: nothing tagged for the cluster is left. Describe results can lag behind the
    // deletes just made (eventual consistency): look again, with backoff, within a bound.
    let left = final_look(
        world.aws.consistency_wait,
        || async { Ok(observe(spec, Nodes::Skip).await?.observed.leftovers()) },
        |left| left.is_empty(),
    );
    let left = tokio::select! {
        r = left => r?,
        _ = interrupted() => return Err(Error::Refused(
            "interrupted during the final check: the steps are done; run `redisctl destroy` again to confirm nothing is left".into(),
        )),
    };
    if !left.is_empty() {
        return Err(Error::Refused(format!(
            "destroy finished but these are still tagged redisctl:cluster={}: {}; run destroy again",
            spec.cluster.name,
            left.join(", ")
        )));
    }
    Ok(DestroyOutcome::Destroyed {
        plan,
        report,
        cluster: spec.cluster.name.clone(),
        kept: match &spec.state {
            crate::spec::types::StateBackend::Local => format!(
                "Local secrets in {} were kept; delete them when you no longer need them.",
                spec.cluster.state_dir.display()
            ),
            crate::spec::types::StateBackend::S3(s) => format!(
                "The state in s3://{}/{} (the CA and SSH keys) was kept; delete its objects and their versions when you no longer need them.",
                s.bucket, s.prefix
            ),
        },
    })
}
