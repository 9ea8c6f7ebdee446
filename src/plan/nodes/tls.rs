//! Phase 4: the cluster CA (local state), the warnings about certificates nearing their end,
//! and each node's certificate, key and CA files. A certificate change restarts a running
//! node, one at a time in a running cluster.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::super::builder::Builder;
use super::super::model::*;
use super::{NodeNow, Rolling};
use crate::observed::{ClientCert, NodeObservation};
use crate::pki::{self, WantedCert};
use crate::redis::conf;

fn now(b: &Builder<'_>) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(b.observed.local.now)
}

/// The CA is local state; every certificate step depends on it.
pub(super) fn ensure_ca(b: &mut Builder<'_>) {
    if b.observed.local.ca_cert_pem.is_some() {
        return;
    }
    let spec = b.spec;
    b.steps.push(
        Step::new(
            "pki.ca",
            Action::Create,
            Phase::Tls,
            "the cluster has no CA yet",
        )
        .changes(vec![
            Change::create("subject", pki::ca_common_name(&spec.cluster.name)),
            Change::create(
                "key",
                format!(
                    "{}/ca.key (0600, never leaves this machine)",
                    spec.cluster.state_dir.display()
                ),
            ),
        ])
        .op(Op::Local(LocalOp::EnsureCa)),
    );
}

/// The CA's own end: node certificates never outlive it, so in its last renew_before_days
/// every apply would re-issue them all. redisctl does not rotate a CA (it would need both
/// CAs trusted during the roll): say so early.
pub(super) fn warn_ca_expiry(b: &mut Builder<'_>) {
    let Some(ca) = &b.observed.local.ca_cert_pem else {
        return;
    };
    let Ok(info) = pki::inspect(ca, ca) else {
        return;
    };
    let window = Duration::from_secs(u64::from(b.spec.tls.renew_before_days) * 86_400);
    let message = match info.not_after.duration_since(now(b)) {
        Err(_) => Some(
            "the cluster CA has expired: no node certificate it signed is valid any more"
                .to_string(),
        ),
        Ok(left) if left <= window => Some(format!(
            "the cluster CA expires in {} days: node certificates are cut off at its end and will be re-issued on every apply",
            left.as_secs() / 86_400
        )),
        Ok(_) => None,
    };
    if let Some(m) = message {
        b.note(
            NoteLevel::Warning,
            "pki.ca",
            format!(
                "{m}. redisctl does not rotate the CA: plan the rotation by hand (docs/runbook.md, \"certificate renewal\")"
            ),
        );
    }
}

/// Client certificates redisctl issued (its inventory): the newest of each name nearing its
/// end. redisctl cannot renew them in place (they live with the applications).
pub(super) fn warn_client_certs(b: &mut Builder<'_>) {
    let local = &b.observed.local;
    let mut newest: BTreeMap<&str, &ClientCert> = BTreeMap::new();
    for c in &local.client_certs {
        let e = newest.entry(c.cn.as_str()).or_insert(c);
        if c.not_after > e.not_after {
            *e = c;
        }
    }
    let window = u64::from(b.spec.tls.renew_before_days) * 86_400;
    for (cn, c) in newest {
        let renew = format!(
            "issue its successor with `redisctl client-cert {cn} --out DIR --force` and deploy it"
        );
        let message = if c.not_after <= local.now {
            format!(
                "client certificate CN={cn} (serial {}) has expired: a client presenting it is refused; {renew}",
                c.serial
            )
        } else if c.not_after - local.now <= window {
            let days = (c.not_after - local.now) / 86_400;
            format!(
                "client certificate CN={cn} (serial {}) expires {}; {renew} before then",
                c.serial,
                match days {
                    0 => "within a day".to_string(),
                    1 => "in 1 day".to_string(),
                    n => format!("in {n} days"),
                }
            )
        } else {
            continue;
        };
        b.note(NoteLevel::Warning, &format!("client_cert.{cn}"), message);
    }
}

/// A running cluster whose nodes trust another CA than the one in the state directory (the
/// CA files were lost, or replaced): re-issuing from a new CA one node at a time would split
/// the cluster bus (a restarted node and the others refuse each other). Refuse; the CA must
/// be restored from a backup.
pub(super) fn refuse_foreign_ca(b: &mut Builder<'_>) {
    let (spec, obs) = (b.spec, b.observed);
    let foreign: Vec<&str> = spec
        .nodes
        .nodes
        .iter()
        .filter(|n| match obs.nodes.get(&n.name) {
            Some(NodeObservation::Reached(f)) => match (&f.node_cert_pem, &obs.local.ca_cert_pem) {
                (Some(_), None) => true,
                (Some(cert), Some(ca)) => {
                    pki::inspect(cert, ca).is_ok_and(|info| !info.signed_by_ca)
                }
                (None, _) => false,
            },
            _ => false,
        })
        .map(|n| n.name.as_str())
        .collect();
    if foreign.is_empty() {
        return;
    }
    let dir = spec.cluster.state_dir.display();
    b.note(
        NoteLevel::Blocker,
        "pki.ca",
        format!(
            "the cluster runs with certificates from a CA that is not the one in {dir} ({}): {}. A new CA would split the cluster while nodes restart one by one. Restore ca.key and ca.crt from your backup into {dir} and plan again (docs/runbook.md, \"the state directory, lost or damaged\")",
            if obs.local.ca_cert_pem.is_none() {
                "there is none"
            } else {
                "it differs"
            },
            foreign.join(", ")
        ),
    );
}

/// Why the node's certificate, key or CA file is (re)written, if it is.
fn reason(b: &Builder<'_>, n: &NodeNow<'_>) -> Option<String> {
    let Some(f) = n.facts else {
        return Some("no certificate yet".to_string());
    };
    match (&f.node_cert_pem, &b.observed.local.ca_cert_pem) {
        (None, _) => Some("no certificate on the node".into()),
        _ if !f.node_key_present => Some("no private key on the node".into()),
        (Some(_), None) => Some("the cluster CA is new".into()),
        (Some(cert), Some(ca)) => match pki::inspect(cert, ca) {
            Err(e) => Some(format!("the certificate on the node cannot be read: {e}")),
            Ok(info) => pki::reissue_reason(
                &info,
                &WantedCert::node(&n.node.name, n.node.private_ip),
                now(b),
                b.spec.tls.renew_before_days,
            )
            .map(|r| r.to_string())
            .or_else(|| {
                n.differs(conf::CA_CERT.path)
                    .then(|| "the CA certificate on the node differs".to_string())
            }),
        },
    }
}

/// Whether the node's TLS files are rewritten.
pub(super) fn tls(
    b: &mut Builder<'_>,
    n: &NodeNow<'_>,
    roll: &mut Rolling,
    last: &mut Vec<String>,
) -> bool {
    let Some(reason) = reason(b, n) else {
        return false;
    };
    let tls_addr = format!("{}.tls", n.addr);
    let mut deps = last.clone();
    if b.planned("pki.ca") {
        deps.push("pki.ca".into());
    }
    let restart = n.running && roll.formed;
    if restart && let Some(p) = &roll.previous_tls_restart {
        deps.push(p.clone());
    }
    let (node, spec) = (n.node, b.spec);
    b.steps.push(
        Step::new(
            tls_addr.clone(),
            if n.facts.is_none_or(|f| f.node_cert_pem.is_none()) {
                Action::Create
            } else {
                Action::Update
            },
            Phase::Tls,
            if restart {
                format!("{reason}; Redis restarts to load it{}", roll.handover)
            } else {
                reason
            },
        )
        .changes(vec![
            Change::create(
                "certificate",
                format!(
                    "CN={}, IP SANs {} 127.0.0.1, serverAuth+clientAuth, {} days",
                    node.name, node.private_ip, spec.tls.cert_days
                ),
            ),
            Change::create(
                "files",
                format!(
                    "{} {} {}",
                    conf::CA_CERT.path,
                    conf::NODE_CERT.path,
                    conf::NODE_KEY.path
                ),
            ),
        ])
        .depends_on(deps)
        .op(Op::Node(NodeOp::InstallTls {
            node: node.name.clone(),
            restart,
        })),
    );
    if restart {
        roll.previous_tls_restart = Some(tls_addr.clone());
    }
    *last = vec![tls_addr];
    true
}
