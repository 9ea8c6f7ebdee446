//! Phase 5: the ACL file. On a running node its users are set live (ACL SETUSER): no restart.

use super::super::builder::Builder;
use super::super::model::*;
use super::NodeNow;
use crate::redis::users_acl::USERS_ACL;

/// Whether the ACL file is rewritten.
pub(super) fn acl(b: &mut Builder<'_>, n: &NodeNow<'_>, last: &mut Vec<String>) -> bool {
    // A replication password rotation this plan starts: the file will hold the new password's
    // hash, made by this apply (the hashes observed do not know it yet).
    let started = b.planned(super::replication::START);
    if !n.differs(USERS_ACL.path) && !started {
        return false;
    }
    let acl_addr = format!("{}.acl", n.addr);
    let have = n
        .facts
        .and_then(|f| f.files.get(USERS_ACL.path).cloned().flatten());
    let reload = n.running;
    let rotating: Vec<&str> = b.spec.rotating_users().map(|u| u.name.as_str()).collect();
    let reason = match (reload, rotating.is_empty()) {
        (true, true) => {
            "the ACL users differ from the spec; set live with ACL SETUSER, no restart, connections kept".to_string()
        }
        (true, false) => format!(
            "the ACL users differ from the spec; set live with ACL SETUSER, no restart, connections kept. Password rotation of {}: the new password and the previous one are both accepted until the previous one is taken out of the spec",
            rotating.join(", ")
        ),
        (false, _) => "the ACL file is not there yet".to_string(),
    };
    let only_rotation = started && !n.differs(USERS_ACL.path);
    let reason = if only_rotation {
        "replication password rotation: the replication user accepts the new password next to the current one; set live with ACL SETUSER, no restart, connections kept".to_string()
    } else if reload && super::replication::rotating(b) {
        format!(
            "{reason}. Replication password rotation: the replication user accepts the new password next to the current one"
        )
    } else {
        reason
    };
    let mut deps = last.clone();
    if started {
        deps.push(super::replication::START.into());
    }
    b.steps.push(
        Step::new(
            acl_addr.clone(),
            if have.is_some() {
                Action::Update
            } else {
                Action::Create
            },
            Phase::Acl,
            reason,
        )
        .changes(vec![Change {
            attribute: USERS_ACL.path.into(),
            before: have.map(|h| Value::Known(format!("sha256:{}", &h[..12]))),
            after: Some(if only_rotation {
                Value::KnownAfterApply
            } else {
                n.desired
                    .and_then(|d| d.get(USERS_ACL.path))
                    .map_or(Value::KnownAfterApply, |h| {
                        Value::Known(format!("sha256:{}", &h[..12]))
                    })
            }),
            forces_replacement: false,
            ignored_because: None,
        }])
        .depends_on(deps)
        .op(Op::Node(NodeOp::WriteAcl {
            node: n.node.name.clone(),
            reload,
        })),
    );
    *last = vec![acl_addr];
    true
}
