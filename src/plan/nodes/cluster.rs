//! Phase 7: the cluster. Created once every node is reachable; a running cluster is only
//! waited on (after stopped nodes are started). A formation an interrupted apply left half done
//! is finished (`Interrupted`: reset and created again before every slot was assigned, else
//! the nodes meet and the empty ones become replicas). New nodes of a running cluster join it
//! and get their share of the slots (`topology.rs`); a partly formed cluster that holds keys is
//! refused.

use super::super::builder::Builder;
use super::super::model::*;
use crate::observed::{ClusterView, NodeFacts, NodeObservation, Observed};
use crate::spec::Spec;

/// Does a cluster already exist? Then changes roll one node at a time.
pub(super) struct ClusterNow {
    /// Every slot assigned, every node known.
    pub formed: bool,
    /// Some nodes know each other or hold slots, but not formed.
    pub partly: bool,
    /// Formed as the nodes' cluster state files say, while no node's Redis answers (Redis
    /// started by hand and taken over, or stopped everywhere): the nodes rejoin as they start;
    /// their topology is planned once they answer.
    pub from_files: bool,
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
        // Every slot assigned, as one node sees it: a running cluster, whether it has every
        // node of the spec yet (more are joined to it) or not.
        let formed = reached.iter().any(|f| {
            f.cluster.as_ref().is_some_and(|c| {
                c.slots_assigned == 16384
                    && (c.known_nodes as usize == n_nodes || !c.members.is_empty())
            })
        });
        let partly = !formed
            && reached.iter().any(|f| {
                f.cluster
                    .as_ref()
                    .is_some_and(|c| c.slots_assigned > 0 || c.known_nodes > 1)
            });
        // No node answers: the cluster as the state files say it was, if they say it was
        // formed (Redis starts from them and the nodes meet again).
        let from_files = !formed
            && !partly
            && reached.iter().all(|f| f.cluster.is_none())
            && reached.iter().any(|f| {
                f.state_file_view
                    .as_ref()
                    .is_some_and(|c| c.slots_assigned == 16384)
            });
        ClusterNow {
            formed: formed || from_files,
            partly,
            from_files,
        }
    }
}

/// What an interrupted formation left, judged when every node of the spec answered with its
/// own slots and keys, and none knows more nodes than the spec has (no stale identity).
#[derive(Debug, PartialEq)]
enum Interrupted {
    /// Not every slot is assigned (`assigned` of 16384) and no node holds a key: reset and
    /// create again.
    Unassigned { assigned: u32 },
    /// Every slot is assigned: meet, make replicas.
    Assigned,
}

fn interrupted(spec: &Spec, obs: &Observed) -> Option<Interrupted> {
    let n_nodes = spec.nodes.nodes.len();
    let views: Vec<&ClusterView> = spec
        .nodes
        .nodes
        .iter()
        .map(|n| match obs.nodes.get(&n.name) {
            Some(NodeObservation::Reached(f)) => f.cluster.as_ref(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if views.iter().any(|v| v.known_nodes as usize > n_nodes) {
        return None;
    }
    let mut assigned = 0;
    let mut keys = 0;
    for v in &views {
        assigned += v.own_slots?;
        keys += v.keys?;
    }
    match assigned {
        16384 => Some(Interrupted::Assigned),
        a if a < 16384 && keys == 0 => Some(Interrupted::Unassigned { assigned: a }),
        _ => None,
    }
}

/// The nodes that serve no slot and are not replicas, in a cluster whose spec has replicas.
fn unreplicated(spec: &Spec, obs: &Observed) -> Vec<String> {
    if spec.nodes.replicas_per_master == 0 {
        return Vec::new();
    }
    spec.nodes
        .nodes
        .iter()
        .filter(|n| {
            matches!(obs.nodes.get(&n.name), Some(NodeObservation::Reached(f))
                if f.cluster.as_ref().is_some_and(|c| c.own_slots == Some(0) && !c.replica))
        })
        .map(|n| n.name.clone())
        .collect()
}

/// The step that finishes an interrupted formation.
fn finish(b: &mut Builder<'_>, what: Interrupted, reason: String, service_steps: Vec<String>) {
    let spec = b.spec;
    let nodes: Vec<String> = spec.nodes.nodes.iter().map(|n| n.name.clone()).collect();
    let replicas = spec.nodes.replicas_per_master;
    let (op, change) = match what {
        Interrupted::Unassigned { .. } => (
            NodeOp::ReformCluster { nodes, replicas },
            Change::create(
                "reset_then_create",
                "CLUSTER RESET HARD on every node, then formed again",
            ),
        ),
        Interrupted::Assigned => (
            NodeOp::CompleteCluster { nodes, replicas },
            Change::create(
                "complete",
                "CLUSTER MEET every node; the nodes that serve no slot become replicas",
            ),
        ),
    };
    b.steps.push(
        Step::new("cluster", Action::Run, Phase::ClusterCreate, reason)
            .changes(vec![change])
            .depends_on(service_steps)
            .op(Op::Node(op)),
    );
}

/// The `cluster.health` step: wait, after `deps`, until `nodes` nodes say the cluster is
/// healthy (`wait_for` is what the plan says is waited for beyond state, slots and nodes).
fn health_wait(
    b: &mut Builder<'_>,
    reason: impl Into<String>,
    nodes: usize,
    wait_for: &str,
    deps: Vec<String>,
) {
    b.steps.push(
        Step::new("cluster.health", Action::Run, Phase::ClusterCreate, reason)
            .changes(vec![Change::create(
                "wait_for",
                format!("cluster_state:ok, 16384 slots, {nodes} nodes{wait_for}"),
            )])
            .depends_on(deps)
            .op(Op::Node(NodeOp::WaitHealthy { nodes })),
    );
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
    if now.from_files {
        // As many nodes as the state files name (a node of the spec that is not one of them
        // joins at a later apply).
        let known = obs
            .nodes
            .values()
            .filter_map(|n| match n {
                NodeObservation::Reached(f) => f.state_file_view.as_ref(),
                NodeObservation::Unreachable { .. } => None,
            })
            .map(|c| c.known_nodes as usize)
            .max()
            .unwrap_or(n_nodes);
        health_wait(
            b,
            "no node's Redis answered: the nodes start from their cluster state files (a cluster taken over from Redis started by hand, or stopped everywhere) and meet again; wait until the cluster is healthy. Changes to its topology are planned once the nodes answer: plan again after this apply",
            known,
            "",
            service_steps,
        );
        return;
    }
    if now.formed {
        let created: std::collections::BTreeSet<String> = spec
            .nodes
            .nodes
            .iter()
            .filter(|n| {
                b.steps.iter().any(|s| {
                    s.address == format!("node.{}", n.name)
                        && matches!(s.action, Action::Create | Action::Replace)
                })
            })
            .map(|n| n.name.clone())
            .collect();
        let replacing = b.steps.iter().any(|s| {
            s.action == Action::Replace
                && spec
                    .nodes
                    .nodes
                    .iter()
                    .any(|n| s.address == format!("node.{}", n.name))
        });
        // New nodes join, masters the spec wants get their slots (topology.rs); a node
        // replaced in place is not that (its slots would have to be re-homed).
        if !replacing && super::topology::plan(b, &created, &service_steps) {
            return;
        }
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
        let fresh = |name: &str| {
            b.steps.iter().any(|s| {
                s.address == format!("node.{name}")
                    && matches!(s.action, Action::Create | Action::Replace)
            })
        };
        // Nodes of the spec that are up but not (all) met yet, every slot assigned: an apply
        // interrupted while the cluster was being formed. A new or replaced node is not that.
        if !outside.is_empty()
            && !outside.iter().any(|n| fresh(n))
            && interrupted(spec, obs) == Some(Interrupted::Assigned)
        {
            let reason = format!(
                "{} {} not part of the cluster yet, every slot assigned (an apply interrupted while the cluster was being formed): the nodes meet{}",
                outside.join(", "),
                if outside.len() == 1 { "is" } else { "are" },
                if spec.nodes.replicas_per_master > 0 {
                    ", the empty ones become replicas"
                } else {
                    ""
                }
            );
            finish(b, Interrupted::Assigned, reason, service_steps);
            return;
        }
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
        let unreplicated = unreplicated(spec, obs);
        if outside.is_empty()
            && !unreplicated.is_empty()
            && interrupted(spec, obs) == Some(Interrupted::Assigned)
        {
            let reason = if unreplicated.len() == 1 {
                format!(
                    "{} serves no slot and is not a replica (an apply interrupted before the cluster's replicas were made): it becomes one",
                    unreplicated[0]
                )
            } else {
                format!(
                    "{} serve no slot and are not replicas (an apply interrupted before the cluster's replicas were made): they become replicas",
                    unreplicated.join(", ")
                )
            };
            finish(b, Interrupted::Assigned, reason, service_steps);
            return;
        }
        // A replica whose link to its master is down (still syncing after an interrupted
        // apply made it, or broken): apply waits for it, and says so if it never comes up.
        // The spec's reached nodes whose cluster view `pred` holds for.
        let members_where = |pred: fn(&ClusterView) -> bool| -> Vec<&str> {
            spec.nodes
                .nodes
                .iter()
                .filter(|n| {
                    matches!(obs.nodes.get(&n.name), Some(NodeObservation::Reached(f))
                        if f.cluster.as_ref().is_some_and(pred))
                })
                .map(|n| n.name.as_str())
                .collect()
        };
        let links_down = members_where(|c| c.link_up == Some(false));
        let starting = b
            .steps
            .iter()
            .any(|s| matches!(s.ops.first(), Some(Op::Ec2(Ec2Op::StartInstance { .. }))));
        // A member that does not say cluster_state:ok yet (right after a formation an
        // interrupted apply left, it may not have heard from every master: gossip brings the
        // slots of each within cluster-node-timeout / 2): apply waits for it too.
        let unsettled = members_where(|c| c.state != "ok");
        if (!links_down.is_empty() || !unsettled.is_empty()) && !starting {
            let mut why = Vec::new();
            if !links_down.is_empty() {
                why.push(format!(
                    "the link of {} to its master is down",
                    links_down.join(", ")
                ));
            }
            if !unsettled.is_empty() {
                why.push(format!(
                    "{} {} not say cluster_state:ok",
                    unsettled.join(", "),
                    if unsettled.len() == 1 { "does" } else { "do" }
                ));
            }
            health_wait(
                b,
                format!("{}: wait until the cluster is healthy", why.join("; ")),
                n_nodes,
                ", replica links up",
                service_steps,
            );
            return;
        }
        // Running nodes that phase 2 stops and starts (an instance type change): the cluster
        // is down or partial until they are back, and apply must not end before that.
        let restarted: Vec<String> = b
            .steps
            .iter()
            .filter(|s| {
                s.ops
                    .iter()
                    .any(|o| matches!(o, Op::Ec2(Ec2Op::ModifyInstanceType { restart: true, .. })))
            })
            .map(|s| s.address.clone())
            .collect();
        if (!waiting.is_empty() && starting) || !restarted.is_empty() {
            let mut after = waiting.to_vec();
            after.extend(restarted.iter().cloned());
            health_wait(
                b,
                if restarted.is_empty() {
                    "stopped nodes are started; wait until they rejoin"
                } else {
                    "nodes are stopped and started (instance type); wait until they rejoin"
                },
                n_nodes,
                "",
                after,
            );
        }
        return;
    }
    if now.partly
        && let Some(what) = interrupted(spec, obs)
    {
        let reason = match &what {
            Interrupted::Unassigned { assigned } => format!(
                "the cluster was left partly formed ({assigned} of 16384 slots assigned; an apply interrupted while it was being created) and no node holds a key: every node is reset, then the cluster is created"
            ),
            Interrupted::Assigned => "the cluster was left partly formed, every slot assigned (an apply interrupted while it was being created): the nodes meet and the empty ones become replicas".into(),
        };
        finish(b, what, reason, service_steps);
        return;
    }
    if now.partly {
        b.note(
            NoteLevel::Blocker,
            "cluster",
            format!(
                "the cluster is partly formed (some nodes know each other or hold slots, but not all {n_nodes} with 16384 slots) and either holds keys, knows nodes the spec does not have, or a node did not answer: redisctl will not guess. See docs/runbook.md, or run `redis-cli --cluster check`/`fix` on a node"
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
    let layout = crate::redis::formation::formation(&spec.nodes.nodes, spec.nodes.masters as usize);
    b.steps.push(
        Step::new(
            "cluster",
            Action::Run,
            Phase::ClusterCreate,
            format!(
                "no cluster yet: the masters given their slots, every pair of nodes met{}, as {}",
                if layout.replicas.is_empty() {
                    ""
                } else {
                    ", the replicas attached"
                },
                spec.operator_user().name
            ),
        )
        .changes(vec![
            Change::create("masters", spec.nodes.masters.to_string()),
            Change::create(
                "replicas_per_master",
                spec.nodes.replicas_per_master.to_string(),
            ),
            Change::create("layout", layout.describe()),
        ])
        .depends_on(service_steps)
        .op(Op::Node(NodeOp::CreateCluster {
            nodes,
            replicas: spec.nodes.replicas_per_master,
        })),
    );
}
