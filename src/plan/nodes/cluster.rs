//! Phase 7: the cluster. Created once every node is reachable; a running cluster is only
//! waited on (after stopped nodes are started). Joining nodes to a running cluster, and a
//! partly formed one, are refused.

use super::super::builder::Builder;
use super::super::model::*;
use crate::observed::{NodeFacts, NodeObservation, Observed};

/// Does a cluster already exist? Then changes roll one node at a time.
pub(super) struct ClusterNow {
    /// Every slot assigned, every node known.
    pub formed: bool,
    /// Some nodes know each other or hold slots, but not formed.
    pub partly: bool,
}

impl ClusterNow {
    pub fn observe(obs: &Observed, n_nodes: usize) -> Self {
        let reached: Vec<&NodeFacts> = obs
            .nodes
            .values()
            .filter_map(|n| match n {
                NodeObservation::Reached(f) => Some(f.as_ref()),
                NodeObservation::Unreachable { .. } => None,
            })
            .collect();
        let formed = reached.iter().any(|f| {
            f.cluster
                .as_ref()
                .is_some_and(|c| c.slots_assigned == 16384 && c.known_nodes as usize == n_nodes)
        });
        let partly = !formed
            && reached.iter().any(|f| {
                f.cluster
                    .as_ref()
                    .is_some_and(|c| c.slots_assigned > 0 || c.known_nodes > 1)
            });
        ClusterNow { formed, partly }
    }
}

/// `waiting`: the nodes nothing was planned inside; `service_steps`: each node's last step.
pub(super) fn cluster(
    b: &mut Builder<'_>,
    now: &ClusterNow,
    waiting: &[String],
    service_steps: Vec<String>,
) {
    let (spec, obs) = (b.spec, b.observed);
    let n_nodes = spec.nodes.nodes.len();
    if now.formed {
        let outside: Vec<&str> = spec
            .nodes
            .nodes
            .iter()
            .filter(|n| {
                let fresh = b.steps.iter().any(|s| {
                    s.address == format!("node.{}", n.name)
                        && matches!(s.action, Action::Create | Action::Replace)
                });
                // A node whose Redis is down but kept its cluster state file rejoins when
                // started (e.g. a host without systemd after a reboot).
                let alone = matches!(obs.nodes.get(&n.name), Some(NodeObservation::Reached(f))
                if match &f.cluster {
                    Some(c) => (c.known_nodes as usize) < n_nodes,
                    None => f.service_active || !f.cluster_state_file,
                });
                fresh || alone
            })
            .map(|n| n.name.as_str())
            .collect();
        if !outside.is_empty() {
            b.note(
                NoteLevel::Blocker,
                "cluster",
                format!(
                    "{} would not be part of the running cluster: joining a node to an existing cluster (and re-homing the slots of a replaced master) is not supported yet; see docs/runbook.md",
                    outside.join(", ")
                ),
            );
        }
        if !waiting.is_empty()
            && b.steps
                .iter()
                .any(|s| matches!(s.ops.first(), Some(Op::Ec2(Ec2Op::StartInstance { .. }))))
        {
            b.steps.push(
                Step::new(
                    "cluster.health",
                    Action::Run,
                    Phase::ClusterCreate,
                    "stopped nodes are started; wait until they rejoin",
                )
                .changes(vec![Change::create(
                    "wait_for",
                    format!("cluster_state:ok, 16384 slots, {n_nodes} nodes"),
                )])
                .depends_on(waiting.to_vec())
                .op(Op::Node(NodeOp::WaitHealthy { nodes: n_nodes })),
            );
        }
        return;
    }
    if now.partly {
        b.note(
            NoteLevel::Blocker,
            "cluster",
            format!(
                "the cluster is partly formed (some nodes know each other or hold slots, but not all {n_nodes} with 16384 slots): redisctl will not guess. See docs/runbook.md, or run `redis-cli --cluster check`/`fix` on a node"
            ),
        );
        return;
    }
    if !waiting.is_empty() {
        b.note(
            NoteLevel::Warning,
            "cluster",
            format!(
                "cluster create waits for every node to be reachable ({} are not)",
                waiting.join(", ")
            ),
        );
        return;
    }
    let nodes: Vec<String> = spec.nodes.nodes.iter().map(|n| n.name.clone()).collect();
    b.steps.push(
        Step::new(
            "cluster",
            Action::Run,
            Phase::ClusterCreate,
            format!(
                "no cluster yet: redis-cli --cluster create as {}",
                spec.operator_user().name
            ),
        )
        .changes(vec![
            Change::create("masters", spec.nodes.masters.to_string()),
            Change::create(
                "replicas_per_master",
                spec.nodes.replicas_per_master.to_string(),
            ),
            Change::create(
                "nodes",
                spec.nodes
                    .nodes
                    .iter()
                    .map(|n| format!("{}:{}", n.private_ip, spec.redis.port))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ])
        .depends_on(service_steps)
        .op(Op::Node(NodeOp::CreateCluster {
            nodes,
            replicas: spec.nodes.replicas_per_master,
        })),
    );
}
