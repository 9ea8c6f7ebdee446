//! Phase 7 after an apply interrupted while the cluster was being formed (a kill during
//! `redis-cli --cluster create`): the next plan finishes it, where it used to stop at a
//! blocker; a half-formed cluster that holds keys is still refused.

use redisctl::observed::{NodeObservation, Observed};
use redisctl::plan::{self, NodeOp, NoteLevel, Op};
use redisctl::render;
use redisctl::spec::Spec;

use crate::fixtures::{example, example_text, spec_from};
use crate::sim::{apply_and_converge, converged};
use crate::snapshot;

fn six_nodes() -> Spec {
    let t = example_text().replace("replicas_per_master = 0", "replicas_per_master = 1");
    let start = t.find("\n[[nodes.node]]").unwrap();
    let end = t.find("\n[ssh]").unwrap();
    spec_from(&format!("{}{}", &t[..start], &t[end..]))
}

/// Sets each node's view: (own slots, known nodes, replica, keys).
fn left(o: &mut Observed, views: &[(&str, u32, u32, bool, u64)]) {
    for (node, own, known, replica, keys) in views {
        let Some(NodeObservation::Reached(f)) = o.nodes.get_mut(*node) else {
            panic!("{node} not reached");
        };
        let c = f.cluster.as_mut().expect("a cluster view");
        c.own_slots = Some(*own);
        c.known_nodes = *known;
        c.replica = *replica;
        c.keys = Some(*keys);
        c.slots_assigned = *own;
        c.state = "fail".into();
    }
}

fn cluster_op(p: &plan::Plan) -> Option<&Op> {
    p.step("cluster").map(|s| &s.ops[0])
}

fn blockers(p: &plan::Plan) -> Vec<&str> {
    p.notes
        .iter()
        .filter(|n| n.level == NoteLevel::Blocker)
        .map(|n| n.message.as_str())
        .collect()
}

#[test]
fn killed_before_every_slot_was_assigned_the_nodes_are_reset_and_the_cluster_created() {
    let spec = example();
    let mut o = converged(&spec);
    // ADDSLOTS reached the first master only; nobody met.
    left(
        &mut o,
        &[
            ("redis-node-1a", 5461, 1, false, 0),
            ("redis-node-1b", 0, 1, false, 0),
            ("redis-node-1c", 0, 1, false, 0),
        ],
    );
    let p = plan::plan(&spec, &o);
    assert!(blockers(&p).is_empty(), "{:?}", blockers(&p));
    snapshot("formation-reset", &render::plan::human(&p, false));
    assert!(
        matches!(
            cluster_op(&p),
            Some(Op::Node(NodeOp::ReformCluster { replicas: 0, .. }))
        ),
        "{p:?}"
    );
    apply_and_converge(&spec, o, &p);
}

#[test]
fn a_half_formed_cluster_that_holds_keys_is_still_refused() {
    let spec = example();
    let mut o = converged(&spec);
    left(
        &mut o,
        &[
            ("redis-node-1a", 5461, 1, false, 12),
            ("redis-node-1b", 0, 1, false, 0),
            ("redis-node-1c", 0, 1, false, 0),
        ],
    );
    let p = plan::plan(&spec, &o);
    assert!(cluster_op(&p).is_none(), "{p:?}");
    assert_eq!(blockers(&p).len(), 1, "{:?}", blockers(&p));
    assert!(blockers(&p)[0].contains("partly formed"));
}

#[test]
fn killed_while_the_nodes_met_they_meet() {
    let spec = example();
    let mut o = converged(&spec);
    // Every slot assigned; 1a met 1b, 1c not yet.
    left(
        &mut o,
        &[
            ("redis-node-1a", 5461, 2, false, 0),
            ("redis-node-1b", 5462, 2, false, 0),
            ("redis-node-1c", 5461, 1, false, 0),
        ],
    );
    let p = plan::plan(&spec, &o);
    assert!(blockers(&p).is_empty(), "{:?}", blockers(&p));
    assert!(
        matches!(
            cluster_op(&p),
            Some(Op::Node(NodeOp::CompleteCluster { .. }))
        ),
        "{p:?}"
    );
    apply_and_converge(&spec, o, &p);
}

#[test]
fn killed_before_the_replicas_were_made_the_empty_nodes_become_replicas() {
    let spec = six_nodes();
    let mut o = converged(&spec);
    let names: Vec<String> = spec.nodes.nodes.iter().map(|n| n.name.clone()).collect();
    // Every slot assigned, everyone met, no CLUSTER REPLICATE sent: the cluster looks formed.
    let views: Vec<(&str, u32, u32, bool, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let own = [5461, 5462, 5461, 0, 0, 0][i];
            (n.as_str(), own, 6, false, 0)
        })
        .collect();
    left(&mut o, &views);
    for n in &names {
        if let Some(NodeObservation::Reached(f)) = o.nodes.get_mut(n) {
            let c = f.cluster.as_mut().unwrap();
            c.slots_assigned = 16384;
            c.state = "ok".into();
        }
    }
    let p = plan::plan(&spec, &o);
    assert!(blockers(&p).is_empty(), "{:?}", blockers(&p));
    let step = p.step("cluster").expect("a step that makes the replicas");
    assert!(
        step.reason.contains("serve no slot and are not replicas"),
        "{}",
        step.reason
    );
    assert!(matches!(
        step.ops[0],
        Op::Node(NodeOp::CompleteCluster { replicas: 1, .. })
    ));
    apply_and_converge(&spec, o, &p);
}

/// An apply killed after the replicas were made but before they synced: the next plan waits
/// for their links instead of saying there is nothing to do.
#[test]
fn a_replica_whose_link_is_down_is_waited_for() {
    let spec = six_nodes();
    let mut o = converged(&spec);
    let last = spec.nodes.nodes.last().unwrap().name.clone();
    let Some(NodeObservation::Reached(f)) = o.nodes.get_mut(&last) else {
        panic!("{last} not reached");
    };
    f.cluster.as_mut().unwrap().link_up = Some(false);
    let p = plan::plan(&spec, &o);
    let step = p
        .step("cluster.health")
        .expect("a wait for the replica's link");
    assert!(step.reason.contains(&last), "{}", step.reason);
    assert!(matches!(
        step.ops[0],
        Op::Node(NodeOp::WaitHealthy { nodes: 6 })
    ));
}

/// Formed, but a node has not heard from every master yet (an apply killed right after the
/// formation): the plan waits for a healthy cluster rather than find nothing to do.
#[test]
fn a_node_not_yet_ok_after_a_formation_is_waited_for() {
    use redisctl::observed::NodeObservation;
    let spec = crate::fixtures::example();
    let mut o = crate::sim::converged(&spec);
    let Some(NodeObservation::Reached(f)) = o.nodes.get_mut("redis-node-1c") else {
        panic!("1c not reached");
    };
    let c = f.cluster.as_mut().unwrap();
    c.state = "fail".into();
    c.slots_assigned = 10923;
    let p = redisctl::plan::plan(&spec, &o);
    let addrs: Vec<&str> = p.steps.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(addrs, ["cluster.health"], "{p:?}");
    assert!(
        p.steps[0].reason.starts_with(
            "redis-node-1c does not say cluster_state:ok: wait until the cluster is healthy"
        ),
        "{}",
        p.steps[0].reason
    );
}
