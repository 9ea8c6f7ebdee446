//! An SSH key rotation (`--rotate ssh-key`), in one apply, in phase 3 before any other node
//! step: a new key is made beside the key (`ssh_key.next`); every node's login user accepts it
//! next to the current one (`node.<name>.ssh_key`); it becomes the key (`ssh_key.promote`, the
//! old public key kept in `<key>.previous.pub`) and the EC2 key pair holds it
//! (`key_pair.rotate`: new instances boot with it); on every node a new session proves it logs
//! in, then the old key is taken out of authorized_keys (`node.<name>.ssh_key.revoke`); last,
//! the old public key is forgotten (`ssh_key.previous`). Killed anywhere, `<key>.next` or
//! `<key>.previous.pub` says where the rotation stands, and the next plain apply finishes it.

use super::super::builder::Builder;
use super::super::model::*;
use crate::observed::tags::Role;

pub(super) fn ssh_key(b: &mut Builder<'_>, waiting: &[String]) {
    let (spec, local) = (b.spec, &b.observed.local);
    let next = local.ssh_next_public_key.is_some();
    let previous = local.ssh_previous_public_key.is_some();
    let requested = b.requests.rotate_ssh_key;
    if requested && !next && previous {
        b.note(
            NoteLevel::Blocker,
            "ssh_key",
            "--rotate ssh-key: the end of the previous SSH key rotation is still under way (its old public key is in the state directory): apply without --rotate first, then rotate again".into(),
        );
        return;
    }
    if requested && b.observed.local_public_key.is_none() {
        b.note(
            NoteLevel::Blocker,
            "ssh_key",
            "--rotate ssh-key: there is no SSH key yet: apply makes one with the cluster".into(),
        );
        return;
    }
    let start = requested && !next && !previous;
    if !(start || next || previous) {
        return;
    }
    if !waiting.is_empty() {
        b.note(
            NoteLevel::Warning,
            "ssh_key",
            format!(
                "the SSH key rotation waits for {}: every node must accept the new key before the old one goes; plan again once reached",
                waiting.join(", ")
            ),
        );
        return;
    }
    let private_key = spec.ssh.private_key.display().to_string();
    let local_op = |step| {
        Op::Local(LocalOp::SshKey {
            step,
            private_key: private_key.clone(),
        })
    };
    let names: Vec<String> = spec.nodes.nodes.iter().map(|n| n.name.clone()).collect();
    // A node's first steps of this plan (its instance, its host key pinned) come first.
    let first = |b: &Builder<'_>, n: &str| -> Vec<String> {
        [format!("node.{n}"), format!("node.{n}.host_key")]
            .into_iter()
            .filter(|a| b.planned(a))
            .collect()
    };
    let mut revoke_deps = Vec::new();
    if start || next {
        if start {
            b.steps.push(
                Step::new(
                    "ssh_key.next",
                    Action::Create,
                    Phase::Install,
                    "an SSH key rotation starts: a new ed25519 key, accepted by the nodes next to the current one until the rotation ends",
                )
                .changes(vec![Change::create(
                    "key",
                    format!("{private_key}.next (0600, never leaves this machine)"),
                )])
                .op(local_op(SshKeyStep::CreateNext)),
            );
        }
        let mut authorized = Vec::new();
        for n in &names {
            let mut deps = first(b, n);
            deps.extend(b.dep("ssh_key.next"));
            let address = format!("node.{n}.ssh_key");
            b.steps.push(
                Step::new(
                    address.clone(),
                    Action::Update,
                    Phase::Install,
                    "the login user accepts the new SSH key next to the current one",
                )
                .changes(vec![Change::create(
                    "~/.ssh/authorized_keys",
                    "+ the new public key",
                )])
                .depends_on(deps)
                .op(Op::Node(NodeOp::AuthorizeSshKey { node: n.clone() })),
            );
            authorized.push(address);
        }
        b.steps.push(
            Step::new(
                "ssh_key.promote",
                Action::Update,
                Phase::Install,
                "every node accepts the new SSH key: it becomes the key",
            )
            .changes(vec![Change::update(
                "key",
                format!("{private_key} (the old key; its public half kept in {private_key}.previous.pub until the end)"),
                format!("moved from {private_key}.next"),
            )])
            .depends_on(authorized)
            .op(local_op(SshKeyStep::Promote)),
        );
        // New instances boot with the key pair's key: the new one (unless this plan already
        // replaces the key pair).
        if !b.planned("key_pair") {
            let key_name = spec.ssh.key_name.clone();
            let tags = b.tags(Role::KeyPair, "key", None);
            b.steps.push(
                Step::new(
                    "key_pair.rotate",
                    Action::Replace,
                    Phase::Install,
                    "the EC2 key pair takes the new public key: instances launched from now on boot with it",
                )
                .changes(vec![Change::update("public_key", "the old key", "the new key").forcing()])
                .depends_on(vec!["ssh_key.promote".into()])
                .ops(vec![
                    Op::Ec2(Ec2Op::DeleteKeyPair {
                        name: key_name.clone(),
                    }),
                    Op::Ec2(Ec2Op::ImportKeyPair {
                        name: key_name,
                        private_key: private_key.clone(),
                        tags,
                    }),
                ]),
            );
        }
        revoke_deps.push("ssh_key.promote".to_string());
    }
    let mut revoked = Vec::new();
    for n in &names {
        // The node's session is closed and opened again: after every other phase-3 step of the
        // node, which may be using it.
        let prefix = format!("node.{n}.");
        let mut deps: Vec<String> = b
            .steps
            .iter()
            .filter(|s| {
                s.phase == Phase::Install
                    && (s.address == format!("node.{n}") || s.address.starts_with(&prefix))
            })
            .map(|s| s.address.clone())
            .collect();
        deps.extend(revoke_deps.iter().cloned());
        let address = format!("node.{n}.ssh_key.revoke");
        b.steps.push(
            Step::new(
                address.clone(),
                Action::Update,
                Phase::Install,
                "a new session with the new SSH key proves it logs in; then the old key is taken out of authorized_keys",
            )
            .changes(vec![Change::delete("~/.ssh/authorized_keys", "the old public key")])
            .depends_on(deps)
            .op(Op::Node(NodeOp::RevokeSshKey { node: n.clone() })),
        );
        revoked.push(address);
    }
    b.steps.push(
        Step::new(
            "ssh_key.previous",
            Action::Update,
            Phase::Install,
            "no node accepts the old SSH key any more: its public half is forgotten",
        )
        .changes(vec![Change::delete(
            "file",
            format!("{private_key}.previous.pub"),
        )])
        .depends_on(revoked)
        .op(local_op(SshKeyStep::DropPrevious)),
    );
}
