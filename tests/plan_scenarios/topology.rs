//! Phase 7 on a running cluster whose shape the spec changes: more masters (new nodes join
//! and get their share of the slots, moved from the others), more replicas (new nodes join as
//! replicas, another AZ's first), a move a killed apply left open, and what is refused (fewer
//! masters) or left alone (a manual failover, a small manual reshard).

use redisctl::observed::{NodeObservation, Observed};
use redisctl::plan::{self, NodeOp, NoteLevel, Op, Plan};
use redisctl::render;
use redisctl::spec::Spec;

use crate::fixtures::{example_text, spec_from};
use crate::sim::{apply_and_converge, converged, observed_for};
use crate::snapshot;

/// The example with derived nodes: `masters` × (1 + `replicas`).
fn shape(masters: u32, replicas: u32) -> Spec {
    let t = example_text()
        .replace("masters = 3", &format!("masters = {masters}"))
        .replace(
            "replicas_per_master = 0",
            &format!("replicas_per_master = {replicas}"),
        );
    let start = t.find("\n[[nodes.node]]").unwrap();
    let end = t.find("\n[ssh]").unwrap();
    spec_from(&format!("{}{}", &t[..start], &t[end..]))
}

fn blockers(p: &Plan) -> Vec<&str> {
    p.notes
        .iter()
        .filter(|n| n.level == NoteLevel::Blocker)
        .map(|n| n.message.as_str())
        .collect()
}

fn node_ops(p: &Plan) -> Vec<&NodeOp> {
    p.steps
        .iter()
        .flat_map(|s| &s.ops)
        .filter_map(|o| match o {
            Op::Node(
                op @ (NodeOp::JoinCluster { .. }
                | NodeOp::MoveSlots { .. }
                | NodeOp::FixSlots { .. }),
            ) => Some(op),
            _ => None,
        })
        .collect()
}

/// Every master's slot count, from the first node's view.
fn slot_counts(o: &Observed) -> Vec<u32> {
    let view = o
        .nodes
        .values()
        .find_map(|n| match n {
            NodeObservation::Reached(f) => f.cluster.as_ref(),
            _ => None,
        })
        .expect("a view");
    let mut c: Vec<u32> = view
        .members
        .iter()
        .filter(|m| m.master)
        .map(|m| m.slot_count())
        .collect();
    c.sort_unstable();
    c
}

#[test]
fn three_to_four_to_six_masters() {
    let three = shape(3, 0);
    let o = converged(&three);
    let four = shape(4, 0);
    let o = observed_for(&four, o);
    let p = plan::plan(&four, &o);
    assert!(blockers(&p).is_empty(), "{:?}", blockers(&p));
    snapshot("topology-three-to-four", &render::plan::human(&p, false));
    let ops = node_ops(&p);
    assert!(matches!(
        ops[0],
        NodeOp::JoinCluster { node, replica_of: None, .. } if node == "redis-node-1a-2"
    ));
    let moved: u32 = ops
        .iter()
        .map(|o| match o {
            NodeOp::MoveSlots { to, count, .. } if to == "redis-node-1a-2" => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(moved, 4096, "{ops:?}");
    let o = apply_and_converge(&four, o, &p);
    assert_eq!(slot_counts(&o), vec![4096; 4]);

    let six = shape(6, 0);
    let o = observed_for(&six, o);
    let p = plan::plan(&six, &o);
    assert!(blockers(&p).is_empty(), "{:?}", blockers(&p));
    let joins: Vec<&NodeOp> = node_ops(&p)
        .into_iter()
        .filter(|o| matches!(o, NodeOp::JoinCluster { .. }))
        .collect();
    assert_eq!(joins.len(), 2, "{joins:?}");
    let o = apply_and_converge(&six, o, &p);
    assert_eq!(slot_counts(&o), vec![2730, 2730, 2731, 2731, 2731, 2731]);
}

#[test]
fn zero_to_one_replica_joins_in_another_az() {
    let three = shape(3, 0);
    let o = converged(&three);
    let with = shape(3, 1);
    let o = observed_for(&with, o);
    let p = plan::plan(&with, &o);
    assert!(blockers(&p).is_empty(), "{:?}", blockers(&p));
    // (No snapshot: the ACL file's hash holds the replication password, derived from the
    // simulation's CA, which is new in every run.)
    let text = render::plan::human(&p, false);
    assert_eq!(
        text.matches("it joins as a replica of").count(),
        3,
        "{text}"
    );
    assert_eq!(
        text.matches("\"not set\" -> \"the replication login (CONFIG SET, no restart)\"")
            .count(),
        3,
        "{text}"
    );
    // The masters get the replication login live: no restart (none has a replica to hand
    // its slots to yet).
    for m in ["redis-node-1a", "redis-node-1b", "redis-node-1c"] {
        let step = p.step(&format!("node.{m}.config")).expect("a config step");
        assert!(
            matches!(
                step.ops[0],
                Op::Node(NodeOp::WriteConfig {
                    restart: false,
                    live: true,
                    ..
                })
            ),
            "{step:?}"
        );
    }
    let ops = node_ops(&p);
    assert_eq!(ops.len(), 3, "{ops:?}");
    let az = |n: &str| {
        with.nodes
            .nodes
            .iter()
            .find(|x| x.name == n)
            .unwrap()
            .az
            .clone()
    };
    let mut masters = Vec::new();
    for op in ops {
        let NodeOp::JoinCluster {
            node,
            replica_of: Some(m),
            ..
        } = op
        else {
            panic!("{op:?}");
        };
        assert_ne!(az(node), az(m), "{node} replicates {m} in its own AZ");
        masters.push(m.clone());
    }
    masters.sort();
    masters.dedup();
    assert_eq!(masters.len(), 3, "one replica per master");
    apply_and_converge(&with, o, &p);
}

#[test]
fn a_killed_move_is_finished_and_the_rest_moved() {
    let three = shape(3, 0);
    let o = converged(&three);
    let four = shape(4, 0);
    let o = observed_for(&four, o);
    let p = plan::plan(&four, &o);
    // The apply got through the join and part of the first move, then was killed with slot
    // 500 migrating: apply the join, move 500 slots by hand, leave 500 open.
    let mut sim = crate::sim::Sim::new(&four, o);
    let first: Vec<_> = p
        .steps
        .iter()
        .take_while(|s| !s.address.starts_with("cluster.slots"))
        .cloned()
        .collect();
    sim.apply(&Plan {
        steps: first,
        ..p.clone()
    });
    sim.move_slots_left_open("redis-node-1a", "redis-node-1a-2", 500, 500);
    sim.observe_local();
    let o = sim.o;
    let p = plan::plan(&four, &o);
    assert!(blockers(&p).is_empty(), "{:?}", blockers(&p));
    snapshot("topology-killed-move", &render::plan::human(&p, false));
    let ops = node_ops(&p);
    assert!(matches!(ops[0], NodeOp::FixSlots { .. }), "{ops:?}");
    let moved: u32 = ops
        .iter()
        .map(|o| match o {
            NodeOp::MoveSlots { count, .. } => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(moved, 4096 - 500, "{ops:?}");
    apply_and_converge(&four, o, &p);
}

#[test]
fn fewer_masters_is_refused_for_now() {
    let four = shape(4, 0);
    let o = converged(&four);
    let three = shape(3, 0);
    let o = observed_for(&three, o);
    let p = plan::plan(&three, &o);
    assert!(
        blockers(&p)
            .iter()
            .any(|b| b.contains("removing masters from a running cluster (moving their slots away first, then forgetting them on every node) is not supported yet")),
        "{:?}",
        blockers(&p)
    );
}

#[test]
fn a_manual_failover_and_a_small_reshard_are_left_alone() {
    let spec = shape(3, 1);
    let o = converged(&spec);
    let mut sim = crate::sim::Sim::new(&spec, o);
    // A replica took over its master's slots; 50 slots moved by hand.
    sim.fail_over_to("redis-node-1a-2");
    sim.move_slots_by_hand("redis-node-1b", "redis-node-1c", 50);
    let o = sim.o;
    let p = plan::plan(&spec, &o);
    assert!(p.is_empty(), "{}", render::plan::human(&p, false));
}
