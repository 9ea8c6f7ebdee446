//! `apply`: a saved plan is checked (stale, another cluster) or a fresh one made; the gates
//! refuse a plan with blockers, one that would only look done because a node was not observed,
//! and one that destroys data without `--allow-replace`; `--keep-old-volumes` is written into
//! the swap steps; the executor runs it; planning again must then find nothing to do.

use std::path::Path;
use std::time::Duration;

use super::{Error, Ui, ctx, final_look};
use crate::exec::{self, Report};
use crate::observe::{Nodes, World, observe};
use crate::plan::{self, NodeOp, Op, Plan, Summary, fingerprint, saved::SavedPlan};
use crate::spec::Spec;

/// Where the plan to apply comes from.
#[derive(Debug, Clone, Copy)]
pub enum PlanSource<'a> {
    /// Planned now, and confirmed by the operator.
    Fresh,
    /// A plan file from `redisctl plan --out` (applied without a prompt; refused when stale).
    Saved(&'a Path),
}

#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    pub allow_replace: bool,
    pub keep_old_volumes: bool,
    pub parallelism: usize,
    /// One-time actions asked for on the command line (a fresh plan only).
    pub requests: plan::Requests,
}

#[derive(Debug)]
pub enum ApplyOutcome {
    /// The cluster already matches the spec.
    NoChanges(Summary),
    /// The plan was carried out and planning again finds nothing to do.
    Applied { plan: Plan, report: Report },
}

/// Apply `spec`. `interrupted` makes a future that resolves when the operator asks to stop
/// (Ctrl-C): the executor then starts no new step, and the final check stops.
pub async fn apply<F: std::future::Future<Output = ()>>(
    spec: &Spec,
    source: PlanSource<'_>,
    options: ApplyOptions,
    ui: &dyn Ui,
    interrupted: impl Fn() -> F,
) -> Result<ApplyOutcome, Error> {
    let _lock = crate::state_dir::lock(&spec.cluster.state_dir, "apply").map_err(Error::Refused)?;
    let world = observe(spec, Nodes::Wait).await?;
    let mut plan = match source {
        PlanSource::Saved(file) => saved(spec, &world, file)?,
        PlanSource::Fresh => plan::plan_with(spec, &world.observed, options.requests),
    };
    ui.show_plan(&plan);
    gates(&plan, options.allow_replace)?;
    if plan.is_empty() {
        return Ok(ApplyOutcome::NoChanges(plan.summary()));
    }
    if options.keep_old_volumes {
        keep_old_volumes(&mut plan);
    }
    if let PlanSource::Fresh = source {
        ui.confirm("Do you want to perform these actions?")?;
    }
    ui.starting();
    let report = exec::apply(
        &ctx(&world, Some(&spec.ssh.private_key)),
        &plan,
        options.parallelism,
        ui.progress(),
        interrupted(),
    )
    .await?;
    let left = left_out(&plan, &world.observed);
    let lag = world.aws.consistency_wait;
    // Only failovers left (and the wait after them): carried out here, a few rounds at most
    // (the nodes' views settle by gossip between them): a swap or restart that hands a
    // master's slots over and takes them back can leave masters sharing an AZ, which the
    // plan parts with a failover (plan/nodes/affinity.rs).
    let mut rounds = 0;
    while let Some(layout) = converged(spec, &left, lag, interrupted()).await? {
        rounds += 1;
        if rounds > 3 {
            return Err(Error::Refused(still_to_do(&left, &layout)));
        }
        tracing::info!("the final check finds masters sharing an AZ: parting them");
        exec::apply(
            &ctx(&world, Some(&spec.ssh.private_key)),
            &layout,
            options.parallelism,
            ui.progress(),
            interrupted(),
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(ApplyOutcome::Applied { plan, report })
}

/// A plan of nothing but failovers that part masters sharing an AZ (and the wait after them).
fn only_layout(p: &Plan) -> bool {
    !p.is_empty()
        && p.blockers().next().is_none()
        && p.steps.iter().all(|s| {
            s.ops.iter().all(|o| {
                matches!(
                    o,
                    Op::Node(NodeOp::Failover { .. } | NodeOp::WaitHealthy { .. })
                )
            })
        })
}

/// A saved plan, refused when it is stale, for another cluster, or not what redisctl plans:
/// the planner is pure, so the same spec and the same observed state give the same steps and
/// operations. A file changed after `plan --out` (an artifact edited in CI: another id to
/// terminate, a `destroys_data` flag cleared, another host key to pin) differs from the plan
/// made again here, and is refused; what runs is the plan made here.
fn saved(spec: &Spec, world: &World, file: &Path) -> Result<Plan, Error> {
    let saved = read_saved(file)?;
    if let Some(why) = saved.staleness(&fingerprint::of(spec, &world.observed)) {
        return Err(Error::Refused(format!(
            "saved plan {} is stale: {why}; nothing was changed. Run `redisctl plan --out {}` again",
            file.display(),
            file.display()
        )));
    }
    if saved.plan.cluster != spec.cluster.name {
        return Err(Error::Refused(format!(
            "saved plan {} is for cluster {}, not {}",
            file.display(),
            saved.plan.cluster,
            spec.cluster.name
        )));
    }
    // (With what the operator asked for when it was saved: `plan --rotate … --out`.)
    let now = plan::plan_with(spec, &world.observed, saved.plan.requests);
    if let Some(first) = first_difference(&saved.plan, &now) {
        return Err(Error::Refused(format!(
            "saved plan {} is not the plan redisctl makes from the same spec and the same AWS ({first}): the file was changed after `redisctl plan --out`; nothing was changed. Run `redisctl plan --out {}` again and review it",
            file.display(),
            file.display()
        )));
    }
    Ok(now)
}

/// Read a plan file: at most one byte past [`plan::saved::MAX_BYTES`], whatever the file is (a
/// huge one, a device that never ends), so that a file past the limit is refused without being
/// held in memory.
pub fn read_saved(file: &Path) -> Result<SavedPlan, Error> {
    use std::io::Read;
    let err = |e: Box<dyn std::error::Error + Send + Sync>| Error::PlanFile {
        action: "read",
        path: file.to_path_buf(),
        source: e,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| {
            f.take(plan::saved::MAX_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| err(Box::new(e)))?;
    SavedPlan::from_bytes(&bytes).map_err(|e| err(Box::new(e)))
}

/// Where a saved plan departs from the plan made again: the first step (address, action,
/// changes, operations, dependencies, data-loss flag) that differs, a step only one of them
/// has, or the nodes left unobserved. Notes are left out: some name a number of days, which
/// the clock moves.
fn first_difference(saved: &Plan, now: &Plan) -> Option<String> {
    for (i, (a, b)) in saved.steps.iter().zip(&now.steps).enumerate() {
        if a != b {
            return Some(if a.address == b.address {
                format!("step {} differs", a.address)
            } else {
                format!(
                    "step {} is {} in the file, {} here",
                    i + 1,
                    a.address,
                    b.address
                )
            });
        }
    }
    if saved.steps.len() != now.steps.len() {
        return Some(format!(
            "{} steps in the file, {} here",
            saved.steps.len(),
            now.steps.len()
        ));
    }
    if saved.unobserved != now.unobserved || saved.region != now.region {
        return Some("the nodes it could not observe differ".into());
    }
    None
}

/// What refuses a plan before anything is changed.
fn gates(plan: &Plan, allow_replace: bool) -> Result<(), Error> {
    if plan.blockers().next().is_some() {
        return Err(Error::Refused(
            "the plan has blockers (above); nothing was changed".into(),
        ));
    }
    if plan.is_empty() && !plan.unobserved.is_empty() {
        return Err(Error::Refused(format!(
            "nothing to apply that can be seen, but {} could not be observed over SSH, so the cluster is not proven to match the spec; see docs/runbook.md (\"an unreachable node\")",
            plan.unobserved.join(", ")
        )));
    }
    let destroying: Vec<&str> = plan.destroys_data().map(|s| s.address.as_str()).collect();
    if !plan.is_empty() && !destroying.is_empty() && !allow_replace {
        return Err(Error::Refused(format!(
            "the plan destroys data on {}; nothing was changed. Re-run with --allow-replace if that is intended",
            destroying.join(", ")
        )));
    }
    Ok(())
}

/// `--keep-old-volumes`: every swap keeps the plaintext snapshot and old volume, tagged.
fn keep_old_volumes(plan: &mut Plan) {
    for op in plan.steps.iter_mut().flat_map(|s| s.ops.iter_mut()) {
        if let Op::Swap(swap) = op {
            swap.keep_old = true;
        }
    }
}

/// Prove convergence: planning again must find nothing to do, on every node. EC2's Describe
/// results can lag behind the changes just made (eventual consistency), so while what is left
/// to do includes AWS steps, it looks again, with backoff, for up to `lag`. `left_out`: the
/// nodes the plan carried out could not observe (nothing was planned inside them).
/// (Ctrl-C still stops it: the executor's signal listener is gone.) Returns the plan left
/// when it holds nothing but failovers that part masters sharing an AZ ([`only_layout`]).
async fn converged(
    spec: &Spec,
    left_out: &[String],
    lag: Duration,
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<Option<Plan>, Error> {
    let aws_left = |p: &Plan| {
        p.steps
            .iter()
            .any(|s| s.ops.iter().any(|o| matches!(o, Op::Ec2(_) | Op::Swap(_))))
    };
    let again = final_look(
        lag,
        || async {
            Ok(plan::plan(
                spec,
                &observe(spec, Nodes::Look).await?.observed,
            ))
        },
        |p| !aws_left(p),
    );
    let again = tokio::select! {
        r = again => r?,
        _ = interrupted => return Err(Error::Refused(
            "interrupted during the final check: the steps are done; run `redisctl plan` to see whether the cluster matches the spec".into(),
        )),
    };
    if !again.unobserved.is_empty() {
        return Err(Error::Refused(format!(
            "apply finished, but {} could not be observed over SSH afterwards, so it is not proven to match the spec; see `redisctl plan` and docs/runbook.md (\"an unreachable node\")",
            again.unobserved.join(", ")
        )));
    }
    if only_layout(&again) {
        return Ok(Some(again));
    }
    if !again.is_empty() {
        return Err(Error::Refused(still_to_do(left_out, &again)));
    }
    Ok(None)
}

/// The nodes a plan could not look inside, so planned nothing in: unreachable over SSH (its
/// warnings say why), or whose instance was still `pending` (not running yet: apply waits for
/// those before it plans, within `Aws::instance_wait`).
fn left_out(plan: &Plan, observed: &crate::observed::Observed) -> Vec<String> {
    let mut nodes = plan.unobserved.clone();
    for i in observed.instances.iter().filter(|i| i.state == "pending") {
        if let Some(node) = i.tags.get(crate::observed::tags::NODE) {
            let address = format!("node.{node}");
            if !nodes.contains(&address) {
                nodes.push(address);
            }
        }
    }
    nodes
}

/// Why a run that carried out its plan is not done: steps are left. When the plan could not
/// observe some nodes (nothing was planned inside them: the plan's warnings said why), the
/// steps found now are most likely theirs, and that is what the operator is told first.
fn still_to_do(left_out: &[String], again: &Plan) -> String {
    let steps = again
        .steps
        .iter()
        .map(|s| s.address.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let n = again.steps.len();
    if left_out.is_empty() {
        return format!(
            "apply finished, but planning again still finds {n} step(s) to do ({steps}); run `redisctl plan` to see why, then apply again"
        );
    }
    format!(
        "apply carried out its plan, but that plan could not look inside {} (unreachable over SSH, or its instance not running yet: see the plan's notes), so nothing inside it was planned or done; planning again now finds {n} step(s) to do ({steps}): run apply again to carry them out",
        left_out.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::first_difference;
    use crate::plan::{Action, Ec2Op, Op, Phase, Plan, Step};

    fn plan(instance: &str) -> Plan {
        Plan {
            cluster: "c".into(),
            region: "us-east-1".into(),
            steps: vec![
                Step::new("node.a", Action::Delete, Phase::Instances, "r").op(Op::Ec2(
                    Ec2Op::TerminateInstance {
                        instance: instance.into(),
                    },
                )),
            ],
            notes: vec![],
            unobserved: vec![],
            requests: Default::default(),
        }
    }

    #[test]
    fn only_failovers_and_their_wait_are_a_layout_plan() {
        use crate::plan::NodeOp;
        let step = |addr: &str, op: NodeOp| {
            Step::new(addr, Action::Run, Phase::ClusterCreate, "r").op(Op::Node(op))
        };
        let mut p = plan("i-1");
        assert!(
            !super::only_layout(&p),
            "a termination is not a layout change"
        );
        p.steps = vec![
            step("cluster.a", NodeOp::Failover { node: "a".into() }),
            step("cluster.health", NodeOp::WaitHealthy { nodes: 6 }),
        ];
        assert!(super::only_layout(&p));
        p.steps.push(step(
            "cluster.slots.1",
            NodeOp::FixSlots { via: "a".into() },
        ));
        assert!(!super::only_layout(&p));
        p.steps.clear();
        assert!(!super::only_layout(&p), "nothing left is not a layout plan");
    }

    #[test]
    fn steps_left_after_a_plan_that_left_out_a_node_say_so() {
        let again = plan("i-1");
        let plain = super::still_to_do(&[], &again);
        assert!(
            plain.starts_with(
                "apply finished, but planning again still finds 1 step(s) to do (node.a)"
            ),
            "{plain}"
        );
        let left_out = super::still_to_do(&["node.redis-node-1c".to_string()], &again);
        for part in [
            "could not look inside node.redis-node-1c",
            "nothing inside it was planned or done",
            "planning again now finds 1 step(s) to do (node.a)",
            "run apply again",
        ] {
            assert!(left_out.contains(part), "{part} in {left_out}");
        }
    }

    #[test]
    fn the_nodes_left_out_are_the_unobserved_and_those_not_running_yet() {
        let instance = |node: &str, state: &str| {
            let mut i: crate::observed::Instance = serde_json::from_value(serde_json::json!({
                "id": format!("i-{node}"), "state": state, "instance_type": "t3.micro",
                "image_id": "ami-1", "subnet_id": null, "private_ip": null, "public_ip": null,
                "key_name": null, "security_group_ids": [], "root_device_name": null,
                "block_devices": {}, "launch_time": null, "tags": {}
            }))
            .unwrap();
            i.tags
                .insert(crate::observed::tags::NODE.into(), node.into());
            i
        };
        let observed = crate::observed::Observed {
            instances: vec![
                instance("redis-node-1a", "running"),
                instance("redis-node-1b", "pending"),
                instance("redis-node-1c", "pending"),
            ],
            ..Default::default()
        };
        let mut p = plan("i-1");
        p.unobserved = vec!["node.redis-node-1c".into()];
        assert_eq!(
            super::left_out(&p, &observed),
            ["node.redis-node-1c", "node.redis-node-1b"]
        );
    }

    #[test]
    fn an_altered_operation_is_a_difference() {
        assert_eq!(first_difference(&plan("i-1"), &plan("i-1")), None);
        assert_eq!(
            first_difference(&plan("i-victim"), &plan("i-1")).as_deref(),
            Some("step node.a differs")
        );
        let mut more = plan("i-1");
        more.steps.push(more.steps[0].clone());
        assert!(first_difference(&more, &plan("i-1")).is_some());
        let mut flag = plan("i-1");
        flag.steps[0] = flag.steps[0].clone().destroying_data();
        assert!(first_difference(&plan("i-1"), &flag).is_some());
    }
}
