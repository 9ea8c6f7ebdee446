//! A replication password rotation (`--rotate replication-password`), in one apply: a new
//! password is made (`pki.replication.next`, phase 5); every node's replication user accepts it
//! next to the current one (the ACL step, phase 5); every node logs in to its master with it
//! (`masterauth`, set live in phase 6: a replica not switched yet still gets in with the old
//! one); then it becomes the password in force (`pki.replication.promote`) and every node's
//! replication user accepts only it (`node.<name>.replication`). No restart, no resync: a
//! replication link already up stays up. Killed anywhere, the state directory's
//! `replication.next.secret` says the rotation is under way and the next plain apply finishes
//! it; killed after the promotion, the old hash left in an ACL file is drift like any other.

use super::super::builder::Builder;
use super::super::model::*;
use crate::pki;

/// The address of the step that starts a rotation.
pub(super) const START: &str = "pki.replication.next";

/// A rotation is under way, or this plan starts one.
pub(super) fn rotating(b: &Builder<'_>) -> bool {
    b.observed.local.replication_rotating || b.planned(START)
}

/// The new password, when the operator asked for a rotation and none is under way.
pub(super) fn start(b: &mut Builder<'_>) {
    if !b.requests.rotate_replication_password || b.observed.local.replication_rotating {
        return;
    }
    let refused = if b.spec.nodes.replicas_per_master == 0 {
        Some(
            "the spec has no replicas: the nodes have no replication user and no replication password to rotate",
        )
    } else if b.observed.local.ca_cert_pem.is_none() {
        Some("there is no cluster yet: its replication password is made with it")
    } else if !b.leaving.is_empty() {
        Some(
            "nodes leave the cluster: they keep the replication login they have. Apply one change at a time: the scale-in first, then the rotation",
        )
    } else {
        None
    };
    if let Some(why) = refused {
        b.note(
            NoteLevel::Blocker,
            "pki.replication",
            format!("--rotate replication-password: {why}"),
        );
        return;
    }
    b.steps.push(
        Step::new(
            START,
            Action::Create,
            Phase::Acl,
            "a replication password rotation starts: a new password for the replication user, accepted next to the current one until every node logs in with it",
        )
        .changes(vec![Change::create(
            "password",
            format!(
                "{}/{} (random, 0600; never printed)",
                b.spec.cluster.state_dir.display(),
                pki::REPLICATION_NEXT_FILE
            ),
        )])
        .op(Op::Local(LocalOp::Replication {
            step: ReplicationStep::CreateNext,
        })),
    );
}

/// The end, once every node logs in with the new password: it becomes the one in force, then
/// every replication user accepts only it. Only when every node of the spec was looked inside
/// (one not reached may still log in with the old password).
pub(super) fn end(b: &mut Builder<'_>, waiting: &[String]) {
    if !rotating(b) {
        return;
    }
    if !waiting.is_empty() {
        b.note(
            NoteLevel::Warning,
            "pki.replication",
            format!(
                "the replication password rotation cannot end while {} cannot be looked inside: both passwords stay accepted; plan again once reached",
                waiting.join(", ")
            ),
        );
        return;
    }
    let deps: Vec<String> = b
        .steps
        .iter()
        .filter(|s| {
            matches!(s.phase, Phase::Acl | Phase::Config)
                && (s.address.starts_with("node.") || s.address == START)
        })
        .map(|s| s.address.clone())
        .collect();
    let dir = b.spec.cluster.state_dir.display().to_string();
    b.steps.push(
        Step::new(
            "pki.replication.promote",
            Action::Update,
            Phase::Config,
            "every node logs in to its master with the new replication password: it becomes the one in force",
        )
        .changes(vec![Change::update(
            "password",
            format!("{dir}/{}", pki::REPLICATION_SECRET_FILE),
            format!("moved from {}", pki::REPLICATION_NEXT_FILE),
        )])
        .depends_on(deps)
        .op(Op::Local(LocalOp::Replication {
            step: ReplicationStep::Promote,
        })),
    );
    for node in &b.spec.nodes.nodes {
        b.steps.push(
            Step::new(
                format!("node.{}.replication", node.name),
                Action::Update,
                Phase::Config,
                "the replication user accepts only the new password; set live with ACL SETUSER, no restart, connections kept",
            )
            .changes(vec![Change::update(
                "redisctl-replication",
                "the new and the previous password",
                "the new password",
            )])
            .depends_on(vec!["pki.replication.promote".into()])
            .op(Op::Node(NodeOp::WriteAcl {
                node: node.name.clone(),
                reload: true,
            })),
        );
    }
}
