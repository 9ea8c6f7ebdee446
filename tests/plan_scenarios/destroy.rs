//! destroy: everything the cluster owns, removed in reverse order.

use redisctl::plan;
use redisctl::render;

use crate::fixtures::example;
use crate::sim::{Sim, converged};
use crate::snapshot;

#[test]
fn destroy_removes_everything_in_reverse_order() {
    let spec = example();
    let o = converged(&spec);
    let p = plan::plan_destroy(&spec, &o);
    p.check_order().unwrap();
    snapshot("destroy", &render::plan::human(&p, false));
    let mut sim = Sim::new(&spec, o);
    sim.apply(&p);
    assert_eq!(sim.o.leftovers(), Vec::<String>::new());
    // Terminating an instance removed its root volume already (delete on termination).
    assert!(plan::plan_destroy(&spec, &sim.o).is_empty());
}

/// A volume and a snapshot that someone else tagged for the cluster (a tag is all anyone with
/// ec2:CreateTags needs) are not deleted: nothing in EC2's own facts ties them to the cluster.
#[test]
fn destroy_leaves_volumes_and_snapshots_only_tags_tie_to_the_cluster() {
    use redisctl::observed::{Snapshot, Volume, tags};
    use redisctl::plan::{Ec2Op, NoteLevel, Op};
    let spec = example();
    let mut o = converged(&spec);
    let root = o.volumes[0].clone();
    let mut t = root.tags.clone();
    t.retain(|k, _| k == tags::CLUSTER);
    o.volumes.push(Volume {
        id: "vol-0victim".into(),
        attachment: None,
        state: "available".into(),
        snapshot_id: Some("snap-0theirs".into()),
        tags: t.clone(),
        ..root.clone()
    });
    o.snapshots.push(Snapshot {
        id: "snap-0victim".into(),
        volume_id: Some("vol-0theirs".into()),
        state: "completed".into(),
        encrypted: false,
        tags: t,
    });
    let p = plan::plan_destroy(&spec, &o);
    let deleted: Vec<&str> = p
        .steps
        .iter()
        .filter_map(|s| match &s.ops[0] {
            Op::Ec2(Ec2Op::DeleteVolume { id }) | Op::Ec2(Ec2Op::DeleteSnapshot { id }) => {
                Some(id.as_str())
            }
            _ => None,
        })
        .collect();
    assert!(
        !deleted.contains(&"vol-0victim") && !deleted.contains(&"snap-0victim"),
        "{deleted:?}"
    );
    // The cluster's own root volumes are still deleted.
    assert!(deleted.contains(&root.id.as_str()), "{deleted:?}");
    let warned: Vec<&str> = p
        .notes
        .iter()
        .filter(|n| n.level == NoteLevel::Warning && n.message.contains("left alone, not deleted"))
        .map(|n| n.subject.as_str())
        .collect();
    assert_eq!(warned, ["volume.vol-0victim", "snapshot.snap-0victim"]);
    // destroy's proof that nothing is left does not wait for them.
    let mut sim = Sim::new(&spec, o);
    sim.apply(&p);
    assert_eq!(sim.o.leftovers(), Vec::<String>::new());
    assert_eq!(sim.o.volumes.len(), 1);
    assert_eq!(sim.o.snapshots.len(), 1);
}
