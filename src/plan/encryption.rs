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
use crate::observed::{self, NodeObservation, Observed};
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
                && matches!(s.ops.first(), Some(Op::Node(NodeOp::CreateCluster { .. })))
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
    let cluster_planned = planned(b, "cluster");
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
                let Some(changes) = root_volume(obs, i).and_then(|v| swap_changes(v, &rv.kms_key))
                else {
                    continue;
                };
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

    #[test]
    fn stages_round_trip_in_order() {
        for s in SwapStage::ALL {
            assert_eq!(SwapStage::parse(s.as_str()), Some(s));
        }
        assert!(SwapStage::Prepared < SwapStage::Verified);
        assert_eq!(SwapStage::parse("swap:9"), None);
    }
}
