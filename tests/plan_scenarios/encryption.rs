//! Phase 8, the root volume encryption swap: all at once without replicas, one node at a time
//! after a failover with them, continued from the stage a killed run left, and the plaintext
//! volumes kept for a rollback.

use redisctl::observed::tags::Role;
use redisctl::observed::{self, NodeObservation, Observed, Tags, tags};
use redisctl::plan::{self, Action, Ec2Op, NoteLevel, Op, Plan, Ref, naming};
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
        tags: snapshot_tags(&spec, "redis-node-1b"),
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
    // destroy removes them with the cluster (EC2 ties them to it: each kept snapshot was
    // taken of a kept volume, and a node's root was made from it), before the instances that
    // prove it are gone.
    let d = plan::plan_destroy(&spec, &after);
    assert!(d.notes.is_empty(), "{:?}", d.notes);
    let count = |f: fn(&Op) -> bool| d.steps.iter().filter(|s| f(&s.ops[0])).count();
    assert_eq!(
        count(|o| matches!(o, Op::Ec2(Ec2Op::DeleteVolume { .. }))),
        6
    );
    assert_eq!(
        count(|o| matches!(o, Op::Ec2(Ec2Op::DeleteSnapshot { .. }))),
        3
    );
    for s in d
        .steps
        .iter()
        .filter(|s| matches!(s.ops[0], Op::Ec2(Ec2Op::TerminateInstance { .. })))
    {
        assert_eq!(s.depends_on.len(), 6, "{}: {:?}", s.address, s.depends_on);
    }
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

/// The tags the swap gives the plaintext snapshot of `node`'s root.
fn snapshot_tags(spec: &Spec, node: &str) -> Tags {
    naming::tags(
        spec,
        Role::Snapshot,
        &format!("{node}-root-plaintext"),
        Some(node),
    )
}

fn instance_of<'o>(o: &'o mut Observed, node: &str) -> &'o mut observed::Instance {
    o.instances
        .iter_mut()
        .find(|i| i.tags.get(tags::NODE).map(String::as_str) == Some(node))
        .unwrap()
}

/// Another team's volume and its snapshot, in the same account and AZ, not tagged for the
/// cluster.
fn victim_volume(az: &str) -> observed::Volume {
    observed::Volume {
        id: "vol-0feedfacefeedface".into(),
        size_gib: 500,
        volume_type: "gp3".into(),
        encrypted: false,
        kms_key_id: None,
        az: az.into(),
        state: "available".into(),
        snapshot_id: None,
        attachment: None,
        tags: [("team".to_string(), "payments".to_string())].into(),
    }
}

fn victim_snapshot() -> observed::Snapshot {
    observed::Snapshot {
        id: "snap-0feedfacefeedface".into(),
        volume_id: Some("vol-0feedfacefeedface".into()),
        state: "completed".into(),
        encrypted: false,
        tags: [("team".to_string(), "payments".to_string())].into(),
    }
}

/// An encrypted, converged cluster where someone tagged node 1a's instance with a finished swap
/// (`stage=verified`) naming a volume and a snapshot of their choosing: before, the next apply
/// deleted them, and the plan showed only `stage: verified → done`.
fn forged_verified(old: &str, snap: &str) -> (Spec, Observed) {
    let spec = example();
    let mut o = converged(&spec);
    let i = instance_of(&mut o, "redis-node-1a");
    let root = i.block_devices["/dev/sda1"].clone();
    for (k, v) in [
        (tags::STAGE, "swap:6-verified"),
        (tags::SWAP_KEYS, "master:0"),
        (tags::SWAP_OLD_VOLUME, old),
        (tags::SWAP_SNAPSHOT, snap),
        (tags::SWAP_NEW_VOLUME, &root),
    ] {
        i.tags.insert(k.into(), v.into());
    }
    (spec, o)
}

fn assert_blocked_without_deletes(p: &Plan, node: &str, names: &[&str]) {
    let text = render::plan::human(p, false);
    let subject = format!("node.{node}.root_volume");
    // Nothing deletes: no swap (whose last stage deletes), no delete step.
    assert!(p.step(&subject).is_none(), "{text}");
    assert!(
        !p.steps.iter().flat_map(|s| &s.ops).any(|op| matches!(
            op,
            Op::Swap(_) | Op::Ec2(Ec2Op::DeleteVolume { .. } | Ec2Op::DeleteSnapshot { .. })
        )),
        "{text}"
    );
    let b: Vec<_> = p.blockers().filter(|n| n.subject == subject).collect();
    assert_eq!(b.len(), 1, "{text}");
    for n in names {
        assert!(b[0].message.contains(n), "{}", b[0].message);
    }
}

#[test]
fn a_forged_finished_swap_naming_another_teams_volume_is_a_blocker() {
    let (spec, mut o) = forged_verified("vol-0feedfacefeedface", "snap-0feedfacefeedface");
    // Observation looks up the ids the swap tags name: they exist, not tagged for the cluster.
    o.swap_named.volumes.push(victim_volume("us-east-1a"));
    o.swap_named.snapshots.push(victim_snapshot());
    let p = plan::plan(&spec, &o);
    assert_blocked_without_deletes(
        &p,
        "redis-node-1a",
        &[
            "vol-0feedfacefeedface",
            "is not tagged redisctl:cluster=prod-redis",
            "remove the instance's redisctl:stage",
        ],
    );
    snapshot("encryption-swap-forged", &render::plan::human(&p, false));
    // Destroy never deletes what observation looked up for the proof.
    let d = plan::plan_destroy(&spec, &o);
    assert!(
        !d.steps
            .iter()
            .any(|s| s.address.contains("feedface") || s.reason.contains("feedface")),
        "{:?}",
        d.steps
    );
}

#[test]
fn a_swap_tag_naming_an_id_nobody_observed_is_a_blocker() {
    // Neither in the tag-filtered lists nor looked up: nothing proves what it is.
    let (spec, o) = forged_verified("vol-0feedfacefeedface", "snap-0feedfacefeedface");
    let p = plan::plan(&spec, &o);
    assert_blocked_without_deletes(
        &p,
        "redis-node-1a",
        &["vol-0feedfacefeedface", "was not observed"],
    );
}

#[test]
fn a_forged_chain_of_cluster_tagged_resources_is_a_blocker() {
    // The forger tagged their volume and snapshot for the cluster and the node too: the
    // snapshot was not taken of the recorded old root, so the chain does not hold.
    let (spec, mut o) = forged_verified("vol-0feedfacefeedface", "snap-0feedfacefeedface");
    let mut old = victim_volume("us-east-1a");
    old.id = "vol-0aaaaaaaaaaaaaaa1".into();
    old.tags = naming::tags(
        &spec,
        Role::Volume,
        "redis-node-1a-root",
        Some("redis-node-1a"),
    );
    let i = instance_of(&mut o, "redis-node-1a");
    i.tags.insert(tags::SWAP_OLD_VOLUME.into(), old.id.clone());
    o.volumes.push(old);
    let mut snap = victim_snapshot();
    snap.tags = snapshot_tags(&spec, "redis-node-1a");
    o.snapshots.push(snap);
    o.swap_named.volumes.push(victim_volume("us-east-1a"));
    let p = plan::plan(&spec, &o);
    assert_blocked_without_deletes(
        &p,
        "redis-node-1a",
        &[
            "snap-0feedfacefeedface",
            "was taken of vol-0feedfacefeedface, not of the recorded old root volume vol-0aaaaaaaaaaaaaaa1",
        ],
    );
    // The snapshot right, but the new volume was not made from it.
    let snap = o
        .snapshots
        .iter_mut()
        .find(|s| s.id == "snap-0feedfacefeedface")
        .unwrap();
    snap.volume_id = Some("vol-0aaaaaaaaaaaaaaa1".into());
    let p = plan::plan(&spec, &o);
    assert_blocked_without_deletes(&p, "redis-node-1a", &["was made from (no snapshot)"]);
}

#[test]
fn a_swap_tag_naming_another_nodes_root_is_a_blocker() {
    // stage=prepared naming node 1b's root as node 1a's old volume: the swap would snapshot
    // 1b's disk, boot 1a on its copy and delete it.
    let spec = unencrypted_example();
    let mut o = converged(&spec);
    let other = instance_of(&mut o, "redis-node-1b").block_devices["/dev/sda1"].clone();
    let i = instance_of(&mut o, "redis-node-1a");
    i.tags.insert(tags::STAGE.into(), "swap:0-prepared".into());
    i.tags.insert(tags::SWAP_KEYS.into(), "master:1".into());
    i.tags.insert(tags::SWAP_OLD_VOLUME.into(), other.clone());
    let p = plan::plan(&spec, &o);
    assert_blocked_without_deletes(
        &p,
        "redis-node-1a",
        &[
            &other,
            "is tagged redisctl:node=redis-node-1b, not redis-node-1a",
        ],
    );
}

#[test]
fn a_genuine_finished_swap_and_one_interrupted_in_its_deletes_still_converge() {
    let spec = example();
    let base = converged(&unencrypted_example());
    for interrupted in [false, true] {
        let mut o = base.clone();
        // Node 1b ran on its encrypted copy and verified; killed before (or in) the deletes.
        let az = spec.nodes.nodes[1].az.clone();
        let i = instance_of(&mut o, "redis-node-1b");
        let (inst, old) = (i.id.clone(), i.block_devices["/dev/sda1"].clone());
        let (snap, new) = ("snap-00000000000000099", "vol-00000000000000099");
        for (k, v) in [
            (tags::STAGE, "swap:6-verified"),
            (tags::SWAP_KEYS, "master:3334"),
            (tags::SWAP_OLD_VOLUME, old.as_str()),
            (tags::SWAP_SNAPSHOT, snap),
            (tags::SWAP_NEW_VOLUME, new),
        ] {
            i.tags.insert(k.into(), v.into());
        }
        i.block_devices.insert("/dev/sda1".into(), new.into());
        let plaintext = o.volumes.iter_mut().find(|v| v.id == old).unwrap();
        plaintext.attachment = None;
        plaintext.state = "available".into();
        let mut encrypted = plaintext.clone();
        encrypted.id = new.into();
        encrypted.encrypted = true;
        encrypted.kms_key_id = Some("alias/aws/ebs".into());
        encrypted.snapshot_id = Some(snap.into());
        encrypted.attachment = Some((inst, "/dev/sda1".into()));
        encrypted.state = "in-use".into();
        assert_eq!(encrypted.az, az);
        o.volumes.push(encrypted);
        if interrupted {
            // The snapshot deleted, the plaintext volume not yet.
            o.swap_named.gone.push(snap.into());
        } else {
            o.snapshots.push(observed::Snapshot {
                id: snap.into(),
                volume_id: Some(old.clone()),
                state: "completed".into(),
                encrypted: false,
                tags: snapshot_tags(&spec, "redis-node-1b"),
            });
        }
        o.volumes.sort_by(|a, b| a.id.cmp(&b.id));
        let p = plan::plan(&spec, &o);
        assert_eq!(
            p.blockers().count(),
            0,
            "{}",
            render::plan::human(&p, false)
        );
        let s = p.step("node.redis-node-1b.root_volume").unwrap();
        assert!(s.reason.contains("in flight"), "{}", s.reason);
        let after = apply_and_converge(&spec, o, &p);
        assert!(after.volumes.iter().all(|v| v.id != old));
        assert!(after.snapshots.is_empty());
    }
}

#[test]
fn a_root_volume_not_tagged_for_its_node_is_not_swapped() {
    // The swap's last stage would refuse to delete it: the plan says so before anything stops.
    let spec = example();
    let mut o = converged(&unencrypted_example());
    let root = instance_of(&mut o, "redis-node-1a").block_devices["/dev/sda1"].clone();
    let v = o.volumes.iter_mut().find(|v| v.id == root).unwrap();
    v.tags.remove(tags::NODE);
    let p = plan::plan(&spec, &o);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{}", render::plan::human(&p, false));
    assert_eq!(b[0].subject, "node.redis-node-1a.root_volume");
    assert!(b[0].message.contains(&root), "{}", b[0].message);
    assert!(p.step("node.redis-node-1a.root_volume").is_none());
    assert_eq!(swap_steps(&p).len(), 2, "the other nodes are planned");
}
