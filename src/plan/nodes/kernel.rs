//! Phase 6, before the configuration: the kernel settings of Redis's production checklist
//! (`redis::kernel`). Their files are node files like the others (rewritten when they differ);
//! a value changed in the running kernel (`sysctl -w`, an echo into /sys) is drift too, put back
//! by the same step. No restart: forks and new connections follow the values in force.

use super::super::builder::Builder;
use super::super::model::*;
use super::NodeNow;
use crate::redis::kernel;

pub(super) fn kernel(b: &mut Builder<'_>, n: &NodeNow<'_>, last: &mut Vec<String>) {
    let files: Vec<&str> = [kernel::SYSCTL.path, kernel::TMPFILES.path]
        .into_iter()
        .filter(|p| n.differs(p))
        .collect();
    let drift = n
        .facts
        .map(|f| kernel::drift(&f.kernel))
        .unwrap_or_default();
    if files.is_empty() && drift.is_empty() {
        return;
    }
    let addr = format!("{}.kernel", n.addr);
    let mut changes: Vec<Change> = files
        .iter()
        .map(|p| {
            let have = n.facts.and_then(|f| f.files.get(*p).cloned().flatten());
            match have {
                Some(h) => {
                    Change::update(p, format!("sha256:{}", &h[..12]), "rendered by redisctl")
                }
                None => Change::create(p, "rendered by redisctl"),
            }
        })
        .collect();
    // A fresh node's values are not known yet: its files put them in force.
    if n.facts.is_some() {
        for (name, have, want) in &drift {
            let have = if have.is_empty() {
                "(unreadable)"
            } else {
                have.as_str()
            };
            changes.push(Change::update(
                name,
                have,
                format!("{want} (in force now, no restart)"),
            ));
        }
    }
    let reason = match (files.is_empty(), n.fresh()) {
        (_, true) => "the kernel settings Redis asks of a production node (overcommit, listen backlog, transparent huge pages), in force before Redis starts".to_string(),
        (true, false) => format!(
            "{} changed in the running kernel (not in the files): put back, no restart",
            drift.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ")
        ),
        (false, false) => "the kernel settings' files differ from redisctl's; written and put in force, no restart".to_string(),
    };
    b.steps.push(
        Step::new(
            addr.clone(),
            if n.fresh()
                || n.facts.is_some_and(|f| {
                    f.files
                        .get(kernel::SYSCTL.path)
                        .cloned()
                        .flatten()
                        .is_none()
                })
            {
                Action::Create
            } else {
                Action::Update
            },
            Phase::Config,
            reason,
        )
        .changes(changes)
        .depends_on(last.clone())
        .op(Op::Node(NodeOp::ApplyKernel {
            node: n.node.name.clone(),
        })),
    );
    *last = vec![addr];
}
