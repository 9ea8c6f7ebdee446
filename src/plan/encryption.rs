//! Phase 8, the EBS encryption swap: a node whose root volume is not encrypted (or is encrypted
//! with another KMS key than the spec's, where that can be told) gets a `-/+ root_volume` step
//! whose one operation replaces the disk under the node without losing a key.
//!
//! Decisions:
//! - The swap comes after phases 3-7: it needs a formed cluster to verify against (with
//!   `strategy = "swap"` from nothing the steps depend on `cluster`, the hand procedure's order).
//! - Without replicas every node is swapped at once (no dependencies between the steps): the
//!   cluster is down while any node is, so the shortest total downtime is all together. With
//!   replicas the steps are chained, each starting with a failover, so clients keep a master for
//!   every slot.
//! - A swap in flight (the instance's `redisctl:stage` tag) is always continued, whatever the
//!   spec says now: its plaintext snapshot and volumes must not be left behind half-done.
//! - KMS keys: AWS reports a volume's key as a key ARN, while the spec usually names an alias
//!   (`alias/aws/ebs`); an alias cannot be resolved without KMS. So two keys are compared only
//!   when both are key ids/ARNs (compared by key id) or both are aliases (compared by alias
//!   name); otherwise an encrypted volume is taken as matching.

use super::builder::{Builder, root_volume};
use super::model::*;
use super::naming;
use crate::observed::tags::{self, Role};
use crate::observed::{self, NodeObservation, Observed, Tags};
use crate::spec::EncryptionStrategy;

#[derive(Debug, PartialEq, Eq)]
enum KmsKey<'a> {
    Id(&'a str),
    Alias(&'a str),
}

fn kms_key(k: &str) -> KmsKey<'_> {
    let tail = if k.starts_with("arn:") {
        k.splitn(6, ':').nth(5).unwrap_or(k)
    } else {
        k
    };
    match (tail.strip_prefix("alias/"), tail.strip_prefix("key/")) {
        (Some(a), _) => KmsKey::Alias(a),
        (None, Some(id)) => KmsKey::Id(id),
        (None, None) => KmsKey::Id(tail),
    }
}

/// Whether `observed` is known to be another key than `wanted` (see the module comment).
pub fn other_kms_key(observed: &str, wanted: &str) -> bool {
    match (kms_key(observed), kms_key(wanted)) {
        (KmsKey::Id(a), KmsKey::Id(b)) | (KmsKey::Alias(a), KmsKey::Alias(b)) => a != b,
        _ => false,
    }
}

/// Why the volume must be swapped for the spec's key, if it must: the changes to show.
fn swap_changes(v: &observed::Volume, wanted_key: &str) -> Option<Vec<Change>> {
    if !v.encrypted {
        return Some(vec![
            Change::update("encrypted", "false", "true").forcing(),
            Change::update("kms_key", "(none)", wanted_key).forcing(),
        ]);
    }
    let have = v.kms_key_id.as_deref()?;
    other_kms_key(have, wanted_key)
        .then(|| vec![Change::update("kms_key", have, wanted_key).forcing()])
}

fn formed(obs: &Observed, n_nodes: usize) -> bool {
    obs.nodes.values().any(|n| match n {
        NodeObservation::Reached(f) => f
            .cluster
            .as_ref()
            .is_some_and(|c| c.slots_assigned == 16384 && c.known_nodes as usize == n_nodes),
        NodeObservation::Unreachable { .. } => false,
    })
}

/// What one node is down for, as the plan shows it.
fn downtime(replicas: bool) -> String {
    if replicas {
        "this node only (its replica takes over first); clients see one failover, a few seconds"
            .into()
    } else {
        "the whole cluster while any node is stopped: ~5 s in the sandbox, est. 3-10 min on AWS (docs/runbook.md)".into()
    }
}

/// What a look-up by id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen<'a, T> {
    Found(&'a T),
    /// EC2 does not know the id: deleted already (a swap's last stage interrupted), or not
    /// this account's.
    Gone,
    /// Not looked at: nothing proves what it is.
    Unobserved,
}

/// One node's swap in flight, as the instance shows it.
#[derive(Debug, Clone, Copy)]
pub struct SwapInFlight<'a> {
    pub cluster: &'a str,
    pub node: &'a str,
    /// The node's AZ (the spec's).
    pub az: &'a str,
    pub instance: &'a str,
    /// The last stage done.
    pub stage: SwapStage,
    /// The instance's tags (the `redisctl:swap-*` ids).
    pub tags: &'a Tags,
    /// The volume at the instance's root device now.
    pub root: Option<&'a str>,
}

/// Whether every volume and snapshot the swap's next stages would touch is proven to be this
/// node's, given what the instance's tags name (anyone with ec2:CreateTags can write them). The
/// proof: each id carries `redisctl:cluster=<cluster>` and `redisctl:node=<node>` (volumes: in
/// the node's AZ, attached to nothing but this instance); the snapshot was taken of the
/// recorded old root; the new volume is encrypted and was made from that snapshot; the old
/// volume is the instance's root until stage 4, and the new one from then on. A plaintext
/// snapshot or old volume EC2 no longer knows is taken as deleted once nothing needs it (the
/// last stage deletes the snapshot, then the volume). Err: the first thing not proven, naming
/// the id. Pure: the planner asks it of the observation, the executor of a fresh look before it
/// touches anything.
pub fn prove_swap<'o>(
    f: &SwapInFlight<'_>,
    volume: impl Fn(&str) -> Seen<'o, observed::Volume>,
    snapshot: impl Fn(&str) -> Seen<'o, observed::Snapshot>,
) -> Result<(), String> {
    let tag = |k: &str| {
        f.tags.get(k).map(String::as_str).ok_or_else(|| {
            format!(
                "instance {} is at swap stage {} but has no {k} tag",
                f.instance,
                f.stage.as_str()
            )
        })
    };
    let owned = |what: &str, id: &str, named_by: &str, t: &Tags| -> Result<(), String> {
        let have = |k: &str| t.get(k).map(String::as_str);
        if have(tags::CLUSTER) != Some(f.cluster) {
            return Err(format!(
                "{what} {id} (named by the instance's {named_by} tag) is not tagged {}={}: it is not this cluster's",
                tags::CLUSTER,
                f.cluster
            ));
        }
        if have(tags::NODE) != Some(f.node) {
            return Err(format!(
                "{what} {id} (named by the instance's {named_by} tag) is tagged {}={}, not {}",
                tags::NODE,
                have(tags::NODE).unwrap_or("(none)"),
                f.node
            ));
        }
        Ok(())
    };
    let unobserved = |what: &str, id: &str, named_by: &str| {
        format!(
            "{what} {id} (named by the instance's {named_by} tag) was not observed: nothing proves it is this node's"
        )
    };
    let gone = |what: &str, id: &str, named_by: &str| {
        format!(
            "{what} {id} (named by the instance's {named_by} tag) does not exist, and the swap's stage {} still needs it",
            f.stage.as_str()
        )
    };
    let placed = |id: &str, named_by: &str, v: &observed::Volume| -> Result<(), String> {
        if v.az != f.az {
            return Err(format!(
                "volume {id} (named by the instance's {named_by} tag) is in {}, not in the node's AZ {}",
                v.az, f.az
            ));
        }
        match &v.attachment {
            Some((i, d)) if i != f.instance => Err(format!(
                "volume {id} (named by the instance's {named_by} tag) is attached to {i} at {d}, not to the node's instance {}",
                f.instance
            )),
            _ => Ok(()),
        }
    };
    let stage = f.stage;
    let root = f.root.unwrap_or("(none)");

    let old_tag = tags::SWAP_OLD_VOLUME;
    let old = tag(old_tag)?;
    let new_id = match stage >= SwapStage::VolumeCreated {
        true => Some(tag(tags::SWAP_NEW_VOLUME)?),
        false => None,
    };
    match volume(old) {
        Seen::Found(v) => {
            owned("volume", old, old_tag, &v.tags)?;
            placed(old, old_tag, v)?;
        }
        Seen::Gone if stage >= SwapStage::Attached => {}
        Seen::Gone => return Err(gone("volume", old, old_tag)),
        Seen::Unobserved => return Err(unobserved("volume", old, old_tag)),
    }
    // The old volume is the instance's root until the attach; while the attach is half done
    // (stage 3 recorded), the root device holds the old volume, the new one, or nothing.
    let root_ok = match stage {
        s if s < SwapStage::VolumeCreated => f.root == Some(old),
        SwapStage::VolumeCreated => f.root.is_none_or(|r| r == old || Some(r) == new_id),
        _ => f.root.is_some() && f.root == new_id,
    };
    if !root_ok {
        return Err(match stage < SwapStage::Attached {
            true => format!(
                "the recorded old root volume {old} (the instance's {old_tag} tag) is not the volume at instance {}'s root device ({root})",
                f.instance
            ),
            false => format!(
                "instance {}'s root device holds {root}, not the encrypted volume {} its {} tag names",
                f.instance,
                new_id.unwrap_or("(none)"),
                tags::SWAP_NEW_VOLUME
            ),
        });
    }
    if stage < SwapStage::Snapshotted {
        return Ok(());
    }
    let snap_tag = tags::SWAP_SNAPSHOT;
    let snap = tag(snap_tag)?;
    match snapshot(snap) {
        Seen::Found(s) => {
            owned("snapshot", snap, snap_tag, &s.tags)?;
            if s.volume_id.as_deref() != Some(old) {
                return Err(format!(
                    "snapshot {snap} (named by the instance's {snap_tag} tag) was taken of {}, not of the recorded old root volume {old}",
                    s.volume_id.as_deref().unwrap_or("(no volume)")
                ));
            }
        }
        Seen::Gone if stage >= SwapStage::VolumeCreated => {}
        Seen::Gone => return Err(gone("snapshot", snap, snap_tag)),
        Seen::Unobserved => return Err(unobserved("snapshot", snap, snap_tag)),
    }
    let Some(new) = new_id else {
        return Ok(());
    };
    let new_tag = tags::SWAP_NEW_VOLUME;
    match volume(new) {
        Seen::Found(v) => {
            owned("volume", new, new_tag, &v.tags)?;
            placed(new, new_tag, v)?;
            if v.snapshot_id.as_deref() != Some(snap) {
                return Err(format!(
                    "volume {new} (named by the instance's {new_tag} tag) was made from {}, not from the recorded snapshot {snap}",
                    v.snapshot_id.as_deref().unwrap_or("(no snapshot)")
                ));
            }
            if !v.encrypted {
                return Err(format!(
                    "volume {new} (named by the instance's {new_tag} tag) is not encrypted"
                ));
            }
        }
        Seen::Gone => return Err(gone("volume", new, new_tag)),
        Seen::Unobserved => return Err(unobserved("volume", new, new_tag)),
    }
    if new == old {
        return Err(format!(
            "the instance's {old_tag} and {new_tag} tags both name {old}"
        ));
    }
    Ok(())
}

/// What the observation holds of an id a swap tag names.
fn seen_volume<'o>(obs: &'o Observed, id: &str) -> Seen<'o, observed::Volume> {
    let found = obs
        .volumes
        .iter()
        .chain(&obs.swap_named.volumes)
        .find(|v| v.id == id);
    match found {
        Some(v) => Seen::Found(v),
        None if obs.swap_named.gone.iter().any(|g| g == id) => Seen::Gone,
        None => Seen::Unobserved,
    }
}

fn seen_snapshot<'o>(obs: &'o Observed, id: &str) -> Seen<'o, observed::Snapshot> {
    let found = obs
        .snapshots
        .iter()
        .chain(&obs.swap_named.snapshots)
        .find(|s| s.id == id);
    match found {
        Some(s) => Seen::Found(s),
        None if obs.swap_named.gone.iter().any(|g| g == id) => Seen::Gone,
        None => Seen::Unobserved,
    }
}

/// The blocker for a swap in flight whose chain is not proven.
fn unproven_swap(node: &str, instance: &str, stage: SwapStage, why: &str) -> String {
    format!(
        "node {node}'s swap in flight (instance {instance}, {}={}) cannot be continued: {why}. redisctl touches and deletes only volumes and snapshots it can prove are this node's, so nothing is planned for it. If you did not leave this swap in flight, someone wrote these tags (anyone with ec2:CreateTags can; CloudTrail's CreateTags events say who): remove the instance's {} and {}* tags. If it is your swap, see docs/runbook.md (\"a failed swap\") to finish or roll it back by hand",
        tags::STAGE,
        stage.as_str(),
        tags::STAGE,
        "redisctl:swap-"
    )
}

pub(super) fn plan_encryption(b: &mut Builder<'_>) {
    let spec = b.spec;
    let obs = b.observed;
    let rv = &spec.nodes.root_volume;
    let replicas = spec.nodes.replicas_per_master > 0;
    let n_nodes = spec.nodes.nodes.len();
    // A swap in flight means the cluster was formed before it began: when its nodes' Redis is
    // down for the swap, the cluster only looks unformed, and cluster create would fail on
    // nodes that belong to a cluster. The swap restarts them; it is not planned.
    let swapping = obs.instances.iter().any(|i| {
        stage_of(&i.tags).is_some()
            && i.tags.get(tags::ROLE).map(String::as_str) == Some(Role::Node.as_str())
    });
    if swapping
        && let Some(at) = b.steps.iter().position(|s| {
            s.address == "cluster"
                && matches!(
                    s.ops.first(),
                    Some(Op::Node(
                        NodeOp::CreateCluster { .. }
                            | NodeOp::CompleteCluster { .. }
                            | NodeOp::ReformCluster { .. }
                    ))
                )
        })
    {
        b.steps.remove(at);
        b.note(
            NoteLevel::Info,
            "cluster",
            "a root volume swap is in flight: the cluster exists (its nodes are stopped or restarting for the swap), so cluster create is not planned".into(),
        );
    }
    let planned = |b: &Builder<'_>, a: &str| b.steps.iter().any(|s| s.address == a);
    // (`cluster.health` alone: a cluster that starts from its nodes' state files, taken over
    // from Redis started by hand.)
    let cluster_planned = planned(b, "cluster") || planned(b, "cluster.health");
    let formed = formed(obs, n_nodes);
    let mut base_deps = Vec::new();
    for a in ["cluster", "cluster.health"] {
        if planned(b, a) {
            base_deps.push(a.to_string());
        }
    }
    let mut previous: Option<String> = None;
    let mut swapped = 0;
    let mut in_flight = 0;
    for node in &spec.nodes.nodes {
        let addr = format!("node.{}", node.name);
        let inst = obs.instances.iter().find(|i| {
            i.tags.get(tags::NODE) == Some(&node.name)
                && i.tags.get(tags::ROLE).map(String::as_str) == Some(Role::Node.as_str())
        });
        let fresh = inst.is_none()
            || b.steps
                .iter()
                .any(|s| s.address == addr && matches!(s.action, Action::Create | Action::Replace));
        let stage = inst.filter(|_| !fresh).and_then(|i| stage_of(&i.tags));

        let (instance, mut changes, reason) = match (stage, inst) {
            (Some(stage), Some(i)) => {
                in_flight += 1;
                let facts = SwapInFlight {
                    cluster: &spec.cluster.name,
                    node: &node.name,
                    az: &node.az,
                    instance: &i.id,
                    stage,
                    tags: &i.tags,
                    root: i
                        .root_device_name
                        .as_ref()
                        .and_then(|d| i.block_devices.get(d))
                        .map(String::as_str),
                };
                if let Err(why) = prove_swap(
                    &facts,
                    |id| seen_volume(obs, id),
                    |id| seen_snapshot(obs, id),
                ) {
                    b.note(
                        NoteLevel::Blocker,
                        &format!("{addr}.root_volume"),
                        unproven_swap(&node.name, &i.id, stage, &why),
                    );
                    continue;
                }
                (
                    Ref::Id(i.id.clone()),
                    vec![Change::update("stage", stage.as_str(), "done")],
                    format!(
                        "a root volume swap is in flight (last stage done: {}); it continues from there",
                        stage.as_str()
                    ),
                )
            }
            _ if !rv.encrypted => continue,
            _ if fresh => {
                if rv.strategy != EncryptionStrategy::Swap || !(cluster_planned || formed) {
                    continue;
                }
                (
                    Ref::Step(addr.clone()),
                    vec![
                        Change::update("encrypted", "false", "true").forcing(),
                        Change::update("kms_key", "(none)", &rv.kms_key).forcing(),
                    ],
                    "encryption forces replacement of the root volume (strategy = \"swap\": launched unencrypted, swapped once the cluster exists)".into(),
                )
            }
            (None, Some(i)) => {
                let Some((root, changes)) =
                    root_volume(obs, i).and_then(|v| Some((v, swap_changes(v, &rv.kms_key)?)))
                else {
                    continue;
                };
                // The swap's last stage deletes this volume only if it is tagged for the node
                // (`prove_swap`): one that is not would be left half done, so say it now.
                if root.tags.get(tags::NODE) != Some(&node.name) {
                    b.note(
                        NoteLevel::Blocker,
                        &format!("{addr}.root_volume"),
                        format!(
                            "the root volume {} of instance {} is to be encrypted, but it is not tagged {}={}: the swap deletes only volumes proven to be the node's. If it is this node's root, tag it so and plan again",
                            root.id,
                            i.id,
                            tags::NODE,
                            node.name
                        ),
                    );
                    continue;
                }
                let reached =
                    matches!(obs.nodes.get(&node.name), Some(NodeObservation::Reached(_)));
                if i.state != "running" || !reached || !(formed || cluster_planned) {
                    b.note(
                        NoteLevel::Info,
                        &format!("{addr}.root_volume"),
                        "the root volume is to be encrypted, but the swap waits for a running, reachable node in a formed cluster; plan again once it is".into(),
                    );
                    continue;
                }
                (
                    Ref::Id(i.id.clone()),
                    changes,
                    "encryption forces replacement of the root volume".into(),
                )
            }
            (_, None) => continue,
        };
        swapped += 1;
        changes.push(Change::after_apply("volume_id"));
        changes.push(Change::create("downtime", downtime(replicas)));
        let mut deps = base_deps.clone();
        if replicas && let Some(p) = &previous {
            deps.push(p.clone());
        }
        let step_addr = format!("{addr}.root_volume");
        let device = inst
            .and_then(|i| i.root_device_name.clone())
            .or_else(|| {
                b.steps.iter().find(|s| s.address == addr).and_then(|s| {
                    s.ops.iter().find_map(|o| match o {
                        Op::Ec2(Ec2Op::RunInstance(r)) => Some(r.root_device.clone()),
                        Op::Ec2(Ec2Op::ReplaceInstance { run, .. }) => {
                            Some(run.root_device.clone())
                        }
                        _ => None,
                    })
                })
            })
            .unwrap_or_else(|| "/dev/sda1".into());
        b.steps.push(
            Step::new(
                step_addr.clone(),
                Action::Replace,
                Phase::Encryption,
                reason,
            )
            .changes(changes)
            .unchanged(2)
            .depends_on(deps)
            .op(Op::Swap(Box::new(SwapRootVolume {
                node: node.name.clone(),
                instance,
                az: node.az.clone(),
                device,
                volume_type: rv.volume_type.clone(),
                kms_key: rv.kms_key.clone(),
                failover: replicas,
                cluster_nodes: n_nodes,
                snapshot_tags: naming::tags(
                    spec,
                    Role::Snapshot,
                    &format!("{}-root-plaintext", node.name),
                    Some(&node.name),
                ),
                volume_tags: naming::tags(
                    spec,
                    Role::Volume,
                    &format!("{}-root", node.name),
                    Some(&node.name),
                ),
                keep_old: false,
            }))),
        );
        previous = Some(step_addr);
    }
    if in_flight > 0 {
        // Nodes stopped by a swap are not waited on by cluster create: the swap starts them.
        b.notes
            .retain(|n| !(n.subject == "cluster" && n.message.starts_with("cluster create waits")));
    }
    let kept: Vec<&str> = obs
        .volumes
        .iter()
        .filter(|v| v.tags.contains_key(tags::KEPT_FOR_ROLLBACK))
        .map(|v| v.id.as_str())
        .chain(
            obs.snapshots
                .iter()
                .filter(|s| s.tags.contains_key(tags::KEPT_FOR_ROLLBACK))
                .map(|s| s.id.as_str()),
        )
        .collect();
    if !kept.is_empty() {
        b.note(
            NoteLevel::Info,
            "nodes.root_volume",
            format!(
                "kept for a rollback of the encryption swap (they hold plaintext data; delete them when no longer needed, see docs/runbook.md): {}",
                kept.join(", ")
            ),
        );
    }
    if swapped == 0 {
        return;
    }
    b.notes.push(if replicas {
        Note {
            level: NoteLevel::Info,
            subject: "nodes.root_volume".into(),
            message: "the root volumes are swapped one node at a time, each after handing its master role to a replica: clients see one failover per master (a few seconds) and no other downtime".into(),
        }
    } else {
        Note {
            level: NoteLevel::Warning,
            subject: "nodes.root_volume".into(),
            message: "no replicas: the whole cluster is unavailable during the root volume swap (every node is stopped, snapshotted and restarted at once; about 5 s in the sandbox, est. 3-10 min on AWS)".into(),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_keys_are_compared_only_when_comparable() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(!other_kms_key(arn, "alias/aws/ebs"));
        assert!(!other_kms_key(arn, "1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(other_kms_key(arn, "ffffabcd-12ab-34cd-56ef-1234567890ab"));
        assert!(!other_kms_key("alias/aws/ebs", "alias/aws/ebs"));
        assert!(other_kms_key("alias/aws/ebs", "alias/redis"));
        assert!(!other_kms_key(
            "arn:aws:kms:us-east-1:111122223333:alias/redis",
            "alias/redis"
        ));
    }

    fn owned(id: &str, node: &str) -> Tags {
        [
            (tags::CLUSTER.to_string(), "prod".to_string()),
            (tags::NODE.to_string(), node.to_string()),
            ("Name".to_string(), id.to_string()),
        ]
        .into()
    }

    fn vol(id: &str, from: Option<&str>, encrypted: bool) -> observed::Volume {
        observed::Volume {
            id: id.into(),
            size_gib: 8,
            volume_type: "gp3".into(),
            encrypted,
            kms_key_id: None,
            az: "az-a".into(),
            state: "available".into(),
            snapshot_id: from.map(String::from),
            attachment: None,
            tags: owned(id, "n1"),
        }
    }

    /// Each stage of a genuine swap is proven; the same with the root device not where the
    /// stage says, or a plaintext copy gone while a later stage still needs it, is not.
    #[test]
    fn a_genuine_swap_is_proven_at_every_stage() {
        let old = vol("vol-old", None, false);
        let new = vol("vol-new", Some("snap-1"), true);
        let snap = observed::Snapshot {
            id: "snap-1".into(),
            volume_id: Some("vol-old".into()),
            state: "completed".into(),
            encrypted: false,
            tags: owned("snap-1", "n1"),
        };
        let mut t = Tags::new();
        t.insert(tags::SWAP_OLD_VOLUME.into(), "vol-old".into());
        t.insert(tags::SWAP_SNAPSHOT.into(), "snap-1".into());
        t.insert(tags::SWAP_NEW_VOLUME.into(), "vol-new".into());
        let prove = |stage, root: Option<&str>, gone: &[&str]| {
            let f = SwapInFlight {
                cluster: "prod",
                node: "n1",
                az: "az-a",
                instance: "i-1",
                stage,
                tags: &t,
                root,
            };
            let v = |id: &str| match [&old, &new].into_iter().find(|v| v.id == id) {
                _ if gone.contains(&id) => Seen::Gone,
                Some(v) => Seen::Found(v),
                None => Seen::Unobserved,
            };
            let s = |id: &str| match id == snap.id {
                _ if gone.contains(&id) => Seen::Gone,
                true => Seen::Found(&snap),
                false => Seen::Unobserved,
            };
            prove_swap(&f, v, s)
        };
        for stage in SwapStage::ALL {
            let root = match stage < SwapStage::Attached {
                true => "vol-old",
                false => "vol-new",
            };
            assert_eq!(prove(stage, Some(root), &[]), Ok(()), "{stage:?}");
        }
        // The attach half done: no root, or the new one already.
        assert_eq!(prove(SwapStage::VolumeCreated, None, &[]), Ok(()));
        assert_eq!(
            prove(SwapStage::VolumeCreated, Some("vol-new"), &[]),
            Ok(())
        );
        assert!(prove(SwapStage::Stopped, Some("vol-new"), &[]).is_err());
        assert!(prove(SwapStage::Started, Some("vol-old"), &[]).is_err());
        // The last stage deletes the snapshot, then the old volume.
        assert_eq!(
            prove(SwapStage::Verified, Some("vol-new"), &["snap-1", "vol-old"]),
            Ok(())
        );
        assert!(prove(SwapStage::Snapshotted, Some("vol-old"), &["snap-1"]).is_err());
        assert!(prove(SwapStage::Stopped, Some("vol-old"), &["vol-old"]).is_err());
        assert!(prove(SwapStage::Verified, Some("vol-new"), &["vol-new"]).is_err());
    }

    #[test]
    fn stages_round_trip_in_order() {
        for s in SwapStage::ALL {
            assert_eq!(SwapStage::parse(s.as_str()), Some(s));
        }
        assert!(SwapStage::Prepared < SwapStage::Verified);
        assert_eq!(SwapStage::parse("swap:9"), None);
    }
}
