//! Phase 8, the root volume encryption swap: all at once without replicas, one node at a time
//! after a failover with them, continued from the stage a killed run left, and the plaintext
//! volumes kept for a rollback.

use redisctl::observed::{self, NodeObservation, Tags, tags};
use redisctl::plan::{self, Action, Ec2Op, NoteLevel, Op, Plan, Ref};
use redisctl::render;
use redisctl::spec::Spec;

use crate::fixtures::{empty_region, example, example_text, spec_from};
use crate::sim::{apply_and_converge, converged};
use crate::snapshot;

fn unencrypted_example() -> Spec {
    spec_from(&example_text().replace("encrypted = true", "encrypted = false"))
}

fn swap_steps(p: &Plan) -> Vec<&plan::Step> {
    p.steps
        .iter()
        .filter(|s| s.phase == plan::Phase::Encryption)
        .collect()
}

#[test]
fn an_unencrypted_cluster_is_swapped_all_at_once_without_replicas() {
    let o = converged(&unencrypted_example());
    assert!(o.volumes.iter().all(|v| !v.encrypted));
    let spec = example();
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    snapshot("encryption-swap", &render::plan::human(&p, false));
    let steps = swap_steps(&p);
    assert_eq!(p.steps.len(), 3, "only the swap: {:?}", p.steps);
    assert_eq!(steps.len(), 3);
    for s in &steps {
        assert_eq!(s.action, Action::Replace);
        assert_eq!(s.reason, "encryption forces replacement of the root volume");
        assert!(s.depends_on.is_empty(), "no replicas: all together");
        assert!(!s.destroys_data, "the swap keeps the data");
        let Op::Swap(op) = &s.ops[0] else { panic!() };
        assert!(!op.failover);
        assert_eq!(op.kms_key, "alias/aws/ebs");
        assert_eq!(op.device, "/dev/sda1");
        assert!(matches!(op.instance, Ref::Id(_)));
    }
    assert!(
        p.notes.iter().any(|n| n.level == NoteLevel::Warning
            && n.message
                .contains("the whole cluster is unavailable during the root volume swap")),
        "{:?}",
        p.notes
    );
    let after = apply_and_converge(&spec, o, &p);
    // Every root is encrypted with the spec's key; no plaintext volume is left.
    assert_eq!(after.volumes.len(), 3);
    assert!(after.volumes.iter().all(|v| v.encrypted
        && v.kms_key_id.as_deref() == Some("alias/aws/ebs")
        && v.attachment.is_some()));
}

#[test]
fn another_kms_key_is_a_swap_only_when_the_keys_are_comparable() {
    let spec = example();
    let mut o = converged(&spec);
    // AWS reports a key ARN for the alias: not comparable, no swap.
    for v in &mut o.volumes {
        v.kms_key_id = Some(
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
        );
    }
    assert!(plan::plan(&spec, &o).is_empty());
    // The spec names a key id: comparable, and different.
    let other = spec_from(&example_text().replace(
        "kms_key = \"alias/aws/ebs\"",
        "kms_key = \"arn:aws:kms:us-east-1:111122223333:key/ffffabcd-12ab-34cd-56ef-1234567890ab\"",
    ));
    let p = plan::plan(&other, &o);
    assert_eq!(
        swap_steps(&p).len(),
        3,
        "{}",
        render::plan::human(&p, false)
    );
    apply_and_converge(&other, o, &p);
}

#[test]
fn a_swap_in_flight_continues_from_its_stage() {
    let spec = example();
    let mut o = converged(&unencrypted_example());
    // redisctl was killed after stage 2 on node 1b: the instance is stopped, the snapshot made.
    let i = o
        .instances
        .iter_mut()
        .find(|i| i.tags.get(tags::NODE).map(String::as_str) == Some("redis-node-1b"))
        .unwrap();
    i.state = "stopped".into();
    let old = i.block_devices["/dev/sda1"].clone();
    i.tags
        .insert(tags::STAGE.into(), "swap:2-snapshotted".into());
    i.tags.insert(tags::SWAP_KEYS.into(), "master:3334".into());
    i.tags.insert(tags::SWAP_OLD_VOLUME.into(), old.clone());
    i.tags
        .insert(tags::SWAP_SNAPSHOT.into(), "snap-00000000000000099".into());
    o.snapshots.push(observed::Snapshot {
        id: "snap-00000000000000099".into(),
        volume_id: Some(old),
        state: "completed".into(),
        encrypted: false,
        tags: Tags::new(),
    });
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    snapshot("encryption-swap-in-flight", &render::plan::human(&p, false));
    // The stopped node is not started by the instances phase (the swap starts it), and cluster
    // create does not wait for it.
    assert!(p.step("node.redis-node-1b").is_none(), "{:?}", p.steps);
    assert!(
        !p.notes
            .iter()
            .any(|n| n.message.contains("cluster create waits"))
    );
    let s = p.step("node.redis-node-1b.root_volume").unwrap();
    assert!(s.reason.contains("in flight"), "{}", s.reason);
    assert_eq!(
        swap_steps(&p).len(),
        3,
        "the other two nodes are swapped too"
    );
    let after = apply_and_converge(&spec, o, &p);
    assert!(
        after.snapshots.is_empty(),
        "the plaintext snapshot is removed"
    );

    // A swap in flight continues even if the spec no longer asks for encryption.
    let mut o = converged(&unencrypted_example());
    let i = &mut o.instances[0];
    let old = i.block_devices["/dev/sda1"].clone();
    i.tags.insert(tags::STAGE.into(), "swap:0-prepared".into());
    i.tags.insert(tags::SWAP_KEYS.into(), "master:1".into());
    i.tags.insert(tags::SWAP_OLD_VOLUME.into(), old);
    let spec = unencrypted_example();
    let p = plan::plan(&spec, &o);
    assert_eq!(swap_steps(&p).len(), 1);
    apply_and_converge(&spec, o, &p);
}

#[test]
fn swap_strategy_launches_unencrypted_then_swaps_after_cluster_create() {
    let spec =
        spec_from(&example_text().replace("strategy = \"at-launch\"", "strategy = \"swap\""));
    let o = empty_region();
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    let Op::Ec2(Ec2Op::RunInstance(run)) = &p.step("node.redis-node-1a").unwrap().ops[0] else {
        panic!()
    };
    assert!(!run.encrypted);
    let steps = swap_steps(&p);
    assert_eq!(steps.len(), 3);
    for s in &steps {
        assert_eq!(s.depends_on, ["cluster"]);
        let Op::Swap(op) = &s.ops[0] else { panic!() };
        assert!(matches!(&op.instance, Ref::Step(a) if a.starts_with("node.")));
    }
    // The swap is last, after cluster create (the hand procedure's order).
    let last_other = p
        .steps
        .iter()
        .rposition(|s| s.phase != plan::Phase::Encryption)
        .unwrap();
    assert_eq!(p.steps[last_other].address, "cluster");
    let after = apply_and_converge(&spec, o, &p);
    assert!(after.volumes.iter().all(|v| v.encrypted));
}

#[test]
fn with_replicas_nodes_are_swapped_one_at_a_time_after_a_failover() {
    let six = |t: String| {
        let t = t.replace("replicas_per_master = 0", "replicas_per_master = 1");
        let start = t.find("\n[[nodes.node]]").unwrap();
        let end = t.find("\n[ssh]").unwrap();
        format!("{}{}", &t[..start], &t[end..])
    };
    let before = spec_from(&six(
        example_text().replace("encrypted = true", "encrypted = false")
    ));
    let o = converged(&before);
    let spec = spec_from(&six(example_text()));
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    let steps = swap_steps(&p);
    assert_eq!(steps.len(), 6);
    assert!(steps[0].depends_on.is_empty());
    for w in steps.windows(2) {
        assert_eq!(w[1].depends_on, [w[0].address.clone()], "chained");
    }
    for s in &steps {
        let Op::Swap(op) = &s.ops[0] else { panic!() };
        assert!(op.failover);
    }
    assert!(
        p.notes
            .iter()
            .any(|n| n.message.contains("one node at a time"))
    );
    assert!(
        !p.notes
            .iter()
            .any(|n| n.message.contains("whole cluster is unavailable"))
    );
    apply_and_converge(&spec, o, &p);
}

#[test]
fn kept_plaintext_volumes_are_told_not_planned() {
    let o = converged(&unencrypted_example());
    let spec = example();
    let mut p = plan::plan(&spec, &o);
    for op in p.steps.iter_mut().flat_map(|s| s.ops.iter_mut()) {
        if let Op::Swap(s) = op {
            s.keep_old = true;
        }
    }
    let after = apply_and_converge(&spec, o, &p);
    assert_eq!(after.volumes.len(), 6, "three encrypted roots, three kept");
    let again = plan::plan(&spec, &after);
    assert!(again.is_empty());
    assert!(
        again
            .notes
            .iter()
            .any(|n| n.level == NoteLevel::Info && n.message.contains("kept for a rollback")),
        "{:?}",
        again.notes
    );
    // destroy removes them with the cluster.
    let d = plan::plan_destroy(&spec, &after);
    assert_eq!(
        d.steps
            .iter()
            .filter(|s| matches!(s.ops[0], Op::Ec2(Ec2Op::DeleteVolume { .. })))
            .count(),
        6
    );
}

#[test]
fn a_swap_killed_with_every_redis_stopped_does_not_create_the_cluster_again() {
    let spec = example();
    let mut o = converged(&unencrypted_example());
    // Killed after every node stopped Redis but before any instance stopped.
    for i in &mut o.instances {
        let old = i.block_devices["/dev/sda1"].clone();
        i.tags.insert(tags::STAGE.into(), "swap:0-prepared".into());
        i.tags.insert(tags::SWAP_KEYS.into(), "master:3333".into());
        i.tags.insert(tags::SWAP_OLD_VOLUME.into(), old);
    }
    for n in o.nodes.values_mut() {
        let NodeObservation::Reached(f) = n else {
            panic!()
        };
        f.service_active = false;
        f.cluster = None;
    }
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    assert!(
        p.step("cluster").is_none(),
        "{}",
        render::plan::human(&p, false)
    );
    assert_eq!(swap_steps(&p).len(), 3);
    // Redis is started again first (phase 6), then the swap continues.
    assert!(p.step("node.redis-node-1a.config").is_some());
    apply_and_converge(&spec, o, &p);
}
