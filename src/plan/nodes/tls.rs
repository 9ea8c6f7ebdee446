//! Phase 4: the cluster CA (local state) and a CA rotation's stages, the warnings about
//! certificates nearing their end, and each node's certificate, key and CA bundle. A running
//! node's Redis reloads them (CONFIG SET of its tls-* paths, no restart), one node at a time
//! in a running cluster.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::super::builder::Builder;
use super::super::model::*;
use super::{NodeNow, Rolling};
use crate::observed::{ClientCert, NodeObservation};
use crate::pki::{self, CaStage, WantedCert};
use crate::redis::conf;
use crate::spec::types;

fn now(b: &Builder<'_>) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(b.observed.local.now)
}

/// Where a CA rotation stands: the spec's `tls.ca_rotation` and whether the state directory
/// holds a new CA ([`CaStage::of`], as the node runtime reads it).
pub(super) fn stage(b: &Builder<'_>) -> CaStage {
    CaStage::of(
        b.spec.tls.ca_rotation,
        b.observed.local.ca_next_cert_pem.is_some(),
    )
}

/// The certificate of the CA that signs node certificates at this stage (None before any CA,
/// or in a stage that needs the new CA before it exists).
fn signer_pem<'b>(b: &'b Builder<'_>) -> Option<&'b str> {
    let local = &b.observed.local;
    if stage(b).signs_with_next() {
        local.ca_next_cert_pem.as_deref()
    } else {
        local.ca_cert_pem.as_deref()
    }
}

/// Whether `cert` was signed by the CA `ca` (false when either does not read).
fn signed_by(cert: &str, ca: Option<&str>) -> bool {
    ca.is_some_and(|ca| pki::inspect(cert, ca).is_ok_and(|i| i.signed_by_ca))
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
/// every apply would re-issue them all. A CA is rotated in stages the operator sets
/// (`tls.ca_rotation`): say so early, unless a rotation is under way.
pub(super) fn warn_ca_expiry(b: &mut Builder<'_>) {
    let Some(ca) = &b.observed.local.ca_cert_pem else {
        return;
    };
    if stage(b) != CaStage::Steady {
        return;
    }
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
                "{m}. Rotate it with no outage: set tls.ca_rotation = \"trust\" and apply, then follow docs/runbook.md, \"Rotate the cluster CA\""
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
                    !signed_by(cert, Some(ca))
                        && !signed_by(cert, obs.local.ca_next_cert_pem.as_deref())
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
            "the cluster runs with certificates from a CA that is not the one in {dir} ({}): {}. A new CA would split the cluster while the nodes move to it one by one. Restore ca.key and ca.crt from your backup into {dir} and plan again (docs/runbook.md, \"the state directory, lost or damaged\")",
            if obs.local.ca_cert_pem.is_none() {
                "there is none"
            } else {
                "it differs"
            },
            foreign.join(", ")
        ),
    );
}

/// Why the node's key and certificate are (re)issued, if they are.
fn cert_reason(b: &Builder<'_>, n: &NodeNow<'_>) -> Option<String> {
    let Some(f) = n.facts else {
        return Some("no certificate yet".to_string());
    };
    let rotating = stage(b) != CaStage::Steady;
    match (&f.node_cert_pem, signer_pem(b)) {
        (None, _) => Some("no certificate on the node".into()),
        _ if !f.node_key_present => Some("no private key on the node".into()),
        (Some(_), None) if rotating => Some("the new CA is made by this apply".into()),
        (Some(_), None) => Some("the cluster CA is new".into()),
        (Some(cert), Some(ca)) => match pki::inspect(cert, ca) {
            Err(e) => Some(format!("the certificate on the node cannot be read: {e}")),
            Ok(info) if rotating && !info.signed_by_ca => Some(format!(
                "the certificate comes from the {} CA: re-issued from the {} one (CA rotation, {})",
                if stage(b).signs_with_next() {
                    "old"
                } else {
                    "new"
                },
                if stage(b).signs_with_next() {
                    "new"
                } else {
                    "old"
                },
                stage(b).describe()
            )),
            Ok(info) => pki::reissue_reason(
                &info,
                &WantedCert::node(&n.node.name, n.node.private_ip),
                now(b),
                b.spec.tls.renew_before_days,
            )
            .map(|r| r.to_string()),
        },
    }
}

/// Why only the CA bundle on the node is rewritten, if it is.
fn bundle_reason(b: &Builder<'_>, n: &NodeNow<'_>) -> Option<String> {
    let made_now = b.planned("pki.ca.next");
    if !n.differs(conf::CA_CERT.path) && !made_now {
        return None;
    }
    Some(
        match stage(b) {
            CaStage::Steady => "the CA certificate on the node differs",
            CaStage::Trust | CaStage::Reissue => {
                "the node trusts the new CA next to the old one (CA rotation: both in its CA bundle)"
            }
            CaStage::Finish => {
                "the node trusts only the new CA (the end of the CA rotation): certificates from the old CA are refused from now on"
            }
            CaStage::Abort => {
                "the node trusts only the old CA again (the CA rotation aborted)"
            }
        }
        .to_string(),
    )
}

/// Whether the node's TLS files are rewritten. On a running node Redis reloads them (no
/// restart); in a running cluster, one node at a time all the same (a certificate Redis
/// refuses stops the apply at the first node).
pub(super) fn tls(
    b: &mut Builder<'_>,
    n: &NodeNow<'_>,
    roll: &mut Rolling,
    last: &mut Vec<String>,
) -> bool {
    let cert = cert_reason(b, n);
    let (reason, cert) = match (cert, bundle_reason(b, n)) {
        (Some(r), _) => (r, true),
        (None, Some(r)) => (r, false),
        (None, None) => return false,
    };
    let tls_addr = format!("{}.tls", n.addr);
    let mut deps = last.clone();
    for local in ["pki.ca", "pki.ca.next"] {
        if b.planned(local) {
            deps.push(local.into());
        }
    }
    // (A node of no cluster that redisctl can see is not reloaded: its Redis presents a
    // certificate redis-cli may refuse, e.g. expired; docs/runbook.md, "If certificates have
    // already expired".)
    let reload = n.running && roll.formed;
    if reload && let Some(p) = &roll.previous_tls_reload {
        deps.push(p.clone());
    }
    let (node, spec) = (n.node, b.spec);
    let mut changes = Vec::new();
    if cert {
        changes.push(Change::create(
            "certificate",
            format!(
                "CN={}, IP SANs {} 127.0.0.1, serverAuth+clientAuth, {} days{}",
                node.name,
                node.private_ip,
                spec.tls.cert_days,
                if stage(b).signs_with_next() {
                    ", from the new CA"
                } else {
                    ""
                }
            ),
        ));
    }
    changes.push(Change::create(
        "files",
        if cert {
            format!(
                "{} {} {}",
                conf::CA_CERT.path,
                conf::NODE_CERT.path,
                conf::NODE_KEY.path
            )
        } else {
            conf::CA_CERT.path.to_string()
        },
    ));
    b.steps.push(
        Step::new(
            tls_addr.clone(),
            if n.facts.is_none_or(|f| f.node_cert_pem.is_none()) {
                Action::Create
            } else {
                Action::Update
            },
            Phase::Tls,
            if reload {
                format!("{reason}; Redis reloads its TLS files (CONFIG SET, no restart)")
            } else {
                reason
            },
        )
        .changes(changes)
        .depends_on(deps)
        .op(Op::Node(NodeOp::InstallTls {
            node: node.name.clone(),
            reload,
            cert,
        })),
    );
    if reload {
        roll.previous_tls_reload = Some(tls_addr.clone());
    }
    *last = vec![tls_addr];
    true
}

/// A CA rotation's own steps and guards, before the nodes' steps: the new CA made at its
/// start; a stage the nodes are not ready for refused (each stage assumes the one before it
/// is done on every node); what the stage does, and the client certificates still from the
/// old CA.
pub(super) fn rotation(b: &mut Builder<'_>) {
    let stage = stage(b);
    if stage == CaStage::Steady {
        return;
    }
    let (spec, obs) = (b.spec, b.observed);
    let current = obs.local.ca_cert_pem.as_deref();
    let next = obs.local.ca_next_cert_pem.as_deref();
    if next.is_none() && stage == CaStage::Trust {
        let mut step = Step::new(
            "pki.ca.next",
            Action::Create,
            Phase::Tls,
            "a CA rotation starts: a new CA, trusted next to the old one until the rotation ends",
        )
        .changes(vec![
            Change::create("subject", pki::ca_common_name(&spec.cluster.name)),
            Change::create(
                "key",
                format!(
                    "{}/{} (0600, never leaves this machine)",
                    spec.cluster.state_dir.display(),
                    pki::NEXT_KEY_FILE
                ),
            ),
        ])
        .op(Op::Local(LocalOp::Ca {
            step: CaStep::CreateNext,
        }));
        if b.planned("pki.ca") {
            step = step.depends_on(vec!["pki.ca".into()]);
        }
        b.steps.push(step);
    }
    if !b.leaving.is_empty() {
        b.note(
            NoteLevel::Blocker,
            "pki.ca",
            "a CA rotation while nodes leave the cluster: the leaving nodes keep the certificates and the CA bundle they have, and the others would refuse them before they are out. Apply one change at a time: the scale-in first (without tls.ca_rotation), then the rotation".into(),
        );
    }
    let reached = || {
        spec.nodes
            .nodes
            .iter()
            .filter_map(|n| match obs.nodes.get(&n.name) {
                Some(NodeObservation::Reached(f)) => Some((n, f)),
                _ => None,
            })
    };
    let not_ready =
        |pick: &dyn Fn(&types::Node, &crate::observed::NodeFacts) -> bool| -> Vec<String> {
            reached()
                .filter(|(n, f)| pick(n, f))
                .map(|(n, _)| n.name.clone())
                .collect()
        };
    let refused = match stage {
        CaStage::Reissue if next.is_none() => Some(
            "tls.ca_rotation = \"reissue\" needs the new CA, which does not exist yet: set tls.ca_rotation = \"trust\" and apply first (the nodes and your applications must trust the new CA before any node presents a certificate from it)".to_string(),
        ),
        CaStage::Reissue => Some((
            not_ready(&|n, f| {
                f.service_active
                    && f.files.get(conf::CA_CERT.path).cloned().flatten().as_ref()
                        != obs
                            .local
                            .desired_files
                            .get(&n.name)
                            .and_then(|d| d.get(conf::CA_CERT.path))
            }),
            "do not trust the new CA yet (their CA bundle is not both CAs): a certificate from the new CA would be refused by them. Set tls.ca_rotation = \"trust\" and apply, then \"reissue\" again",
        ))
        .and_then(listed),
        CaStage::Finish => Some((
            not_ready(&|_, f| f.node_cert_pem.as_deref().is_some_and(|c| !signed_by(c, next))),
            "still present a certificate from the old CA, which the end of the rotation stops trusting. Set tls.ca_rotation = \"reissue\" and apply first, then remove the key",
        ))
        .and_then(listed),
        CaStage::Abort => Some((
            not_ready(&|_, f| f.node_cert_pem.as_deref().is_some_and(|c| !signed_by(c, current))),
            "present a certificate from the new CA, which an abort stops trusting. Set tls.ca_rotation = \"trust\" and apply first (their certificates are re-issued from the old CA), then \"abort\"",
        ))
        .and_then(listed),
        CaStage::Trust | CaStage::Steady => None,
    };
    if let Some(message) = refused {
        b.note(NoteLevel::Blocker, "pki.ca", message);
    }
    let what = match stage {
        CaStage::Trust => {
            "every node trusts the new CA next to the old one; node certificates stay from the old CA. `redisctl client-cert NAME --out DIR --force` now issues from the new CA and writes both CAs as DIR/ca.crt: give every application that bundle (and, if it presents one, a certificate from the new CA), then set tls.ca_rotation = \"reissue\" and apply"
        }
        CaStage::Reissue => {
            "node certificates are re-issued from the new CA, one node at a time (Redis reloads them: no restart); both CAs stay trusted, so clients presenting a certificate from the old CA still get in, but an application that trusts only the old CA refuses the nodes. Once every client certificate comes from the new CA, remove tls.ca_rotation and apply"
        }
        CaStage::Finish => {
            "every node trusts only the new CA, then the new CA becomes the cluster CA (ca.crt, ca.key) and the old CA's key is deleted: a client presenting a certificate from the old CA is refused"
        }
        CaStage::Abort => {
            "every node trusts only the old CA again (node certificates are from it), then the new CA is removed from the state directory; client certificates issued from the new CA stop working"
        }
        CaStage::Steady => unreachable!(),
    };
    b.note(
        NoteLevel::Info,
        "pki.ca",
        format!(
            "CA rotation ({}): {what}. Interrupted anywhere, the next apply finishes the stage",
            stage.describe()
        ),
    );
    warn_old_client_certs(b, stage);
}

/// "NODES why", or None when no node is named.
fn listed((nodes, why): (Vec<String>, &str)) -> Option<String> {
    (!nodes.is_empty()).then(|| format!("{} {why}", nodes.join(", ")))
}

/// During a rotation, the newest client certificate of each name that the old CA issued (the
/// inventory says which CA issued each; lines from before rotations existed are the old CA's):
/// it is refused once the rotation ends.
fn warn_old_client_certs(b: &mut Builder<'_>, stage: CaStage) {
    if b.spec.tls.auth_clients == crate::spec::types::TlsAuthClients::No
        || matches!(stage, CaStage::Abort | CaStage::Steady)
    {
        return;
    }
    // Before the new CA exists (this apply makes it), every certificate is the old CA's.
    let next = b
        .observed
        .local
        .ca_next_cert_pem
        .as_deref()
        .and_then(|pem| pki::inspect(pem, pem).ok())
        .map(|i| i.fingerprint_sha256);
    let local = &b.observed.local;
    let mut newest: BTreeMap<&str, &ClientCert> = BTreeMap::new();
    for c in &local.client_certs {
        let e = newest.entry(c.cn.as_str()).or_insert(c);
        if c.not_after > e.not_after {
            *e = c;
        }
    }
    let old: Vec<String> = newest
        .values()
        .filter(|c| next.is_none() || c.ca_sha256 != next)
        .filter(|c| c.not_after > local.now)
        .map(|c| {
            format!(
                "CN={} (serial {}, ends in {} days)",
                c.cn,
                c.serial,
                (c.not_after - local.now) / 86_400
            )
        })
        .collect();
    if old.is_empty() {
        return;
    }
    b.note(
        NoteLevel::Warning,
        "pki.ca",
        format!(
            "client certificates from the old CA, refused once {} ends the rotation: {}. Issue each one's successor with `redisctl client-cert NAME --out DIR --force` (from the new CA) and deploy it{}",
            if stage == CaStage::Finish { "this apply" } else { "the apply that" },
            old.join(", "),
            if stage == CaStage::Finish { " before applying" } else { "" }
        ),
    );
}

/// The end of a rotation (promote the new CA) or of an abort (remove it), once every node
/// trusts only the CA that stays: after every node's TLS step of this plan, and only when every
/// node of the spec was looked inside (a node not reached may still hold the other CA's
/// certificate).
pub(super) fn end_rotation(b: &mut Builder<'_>, waiting: &[String]) {
    let dir = b.spec.cluster.state_dir.display();
    let (step, address, reason, changes) = match stage(b) {
        CaStage::Finish => (
            CaStep::Promote,
            "pki.ca.promote",
            "the end of the CA rotation: the new CA becomes the cluster CA",
            vec![
                Change::update(
                    "ca",
                    format!("{dir}/ca.crt, ca.key (the old CA; its key is deleted)"),
                    format!("{dir}/ca.crt, ca.key (moved from ca.next.crt, ca.next.key)"),
                ),
                Change::create(
                    "replication",
                    format!(
                        "{dir}/{} (0600; the replication password stays as it is)",
                        pki::REPLICATION_SECRET_FILE
                    ),
                ),
            ],
        ),
        CaStage::Abort => (
            CaStep::DropNext,
            "pki.ca.drop_next",
            "the CA rotation aborted: the new CA is removed",
            vec![Change::delete(
                "ca.next",
                format!("{dir}/ca.next.crt, ca.next.key"),
            )],
        ),
        _ => return,
    };
    if !waiting.is_empty() {
        b.note(
            NoteLevel::Warning,
            "pki.ca",
            format!(
                "the CA rotation cannot end while {} cannot be looked inside: plan again once {} reached",
                waiting.join(", "),
                if waiting.len() == 1 { "it is" } else { "they are" }
            ),
        );
        return;
    }
    let deps: Vec<String> = b
        .steps
        .iter()
        .filter(|s| s.phase == Phase::Tls && s.address.starts_with("node."))
        .map(|s| s.address.clone())
        .collect();
    b.steps.push(
        Step::new(address, Action::Update, Phase::Tls, reason)
            .changes(changes)
            .depends_on(deps)
            .op(Op::Local(LocalOp::Ca { step })),
    );
}
