//! The cluster CA and the certificates it signs: node certificates reissued one node at a
//! time, client certificates and the CA warned about near their end, a lost or replaced CA
//! blocking a running cluster.

use redisctl::observed;
use redisctl::pki::Ca;
use redisctl::plan::{self, NodeOp, NoteLevel, Op};
use redisctl::render;

use crate::fixtures::{NOW, empty_region, example, example_text, now, spec_from};
use crate::sim::observed_for;
use crate::sim::{Sim, apply_and_converge, converged};
use crate::snapshot;

/// Client certificates from `redisctl client-cert` (its inventory): the newest of each name
/// that nears its end, or has passed it, is warned about; nothing is planned for them, and they
/// are not part of the fingerprint (issuing one does not make a saved plan stale).
#[test]
fn client_certificates_near_their_end_are_warned_about() {
    let spec = example();
    let mut o = converged(&spec);
    let before = plan::fingerprint::of(&spec, &o);
    let day = 86_400;
    let cert = |cn: &str, serial: &str, days: i64| observed::ClientCert {
        cn: cn.into(),
        serial: serial.into(),
        not_after: (NOW as i64 + days * day) as u64,
        ca_sha256: None,
    };
    o.local.client_certs = vec![
        cert("app", "01", 5),
        cert("app", "02", 200), // the renewed one: app is fine
        cert("billing", "03", 10),
        cert("old-svc", "04", -1),
        cert("reports", "05", 31),
    ];
    let p = plan::plan(&spec, &o);
    assert!(p.is_empty(), "{:#?}", p.steps);
    let notes: Vec<(&str, &str)> = p
        .notes
        .iter()
        .filter(|n| n.subject.starts_with("client_cert."))
        .map(|n| (n.subject.as_str(), n.message.as_str()))
        .collect();
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert_eq!(notes[0].0, "client_cert.billing");
    assert!(notes[0].1.starts_with("client certificate CN=billing (serial 03) expires in 10 days; issue its successor with `redisctl client-cert billing --out DIR --force`"), "{}", notes[0].1);
    assert_eq!(notes[1].0, "client_cert.old-svc");
    assert!(
        notes[1]
            .1
            .contains("has expired: a client presenting it is refused"),
        "{}",
        notes[1].1
    );
    assert!(p.notes.iter().all(|n| n.level != NoteLevel::Blocker));
    assert_eq!(plan::fingerprint::of(&spec, &o), before);
}

#[test]
fn certificates_near_expiry_are_reissued_one_node_at_a_time() {
    let spec = example();
    let mut o = converged(&spec);
    // 340 days later: every node certificate (365 days) expires within renew_before (30 days).
    o.local.now = NOW + 340 * 86_400;
    let p = plan::plan(&spec, &o);
    snapshot("renew-certificates", &render::plan::human(&p, false));
    let tls: Vec<&plan::Step> = p
        .steps
        .iter()
        .filter(|s| s.address.ends_with(".tls"))
        .collect();
    assert_eq!(tls.len(), 3, "{}", render::plan::human(&p, false));
    for s in &tls {
        assert!(s.reason.contains("expires"), "{}", s.reason);
        assert!(matches!(
            &s.ops[..],
            [Op::Node(NodeOp::InstallTls {
                reload: true,
                cert: true,
                ..
            })]
        ));
    }
    // A running cluster reloads one node at a time: each waits for the previous one.
    assert!(tls[1].depends_on.contains(&tls[0].address));
    assert!(tls[2].depends_on.contains(&tls[1].address));
    // The CA (10 years) is far from its end: no warning about it.
    assert!(
        p.notes.iter().all(|n| n.subject != "pki.ca"),
        "{:?}",
        p.notes
    );
    apply_and_converge(&spec, o, &p);
}

#[test]
fn renewed_certificates_and_a_config_change_roll_in_their_own_phases() {
    let spec = example();
    let mut o = converged(&spec);
    o.local.now = NOW + 340 * 86_400;
    let changed = spec_from(&example_text().replace("# maxmemory = \"", "maxmemory = \""));
    // What observation computes locally for the changed spec (the files it renders).
    let mut sim = Sim::new(&changed, o);
    sim.observe_local();
    let o = sim.o;
    let p = plan::plan(&changed, &o);
    // (plan() checks the order: every dependency is in the same or an earlier phase.)
    let restarts = |suffix: &str| -> Vec<&plan::Step> {
        p.steps
            .iter()
            .filter(|s| s.address.ends_with(suffix))
            .collect()
    };
    let (tls, cfg) = (restarts(".tls"), restarts(".config"));
    assert_eq!(
        (tls.len(), cfg.len()),
        (3, 3),
        "{}",
        render::plan::human(&p, false)
    );
    for chain in [&tls, &cfg] {
        assert!(chain[1].depends_on.contains(&chain[0].address));
        assert!(chain[2].depends_on.contains(&chain[1].address));
    }
    assert!(cfg.iter().all(|c| c.phase > tls[2].phase));
    apply_and_converge(&changed, o, &p);
}

#[test]
fn a_ca_near_its_end_is_warned_about() {
    let spec = example();
    let mut o = converged(&spec);
    // 10 years less 20 days after the CA was made: inside renew_before (30 days).
    o.local.now = NOW + (u64::from(redisctl::pki::CA_VALIDITY_DAYS) - 20) * 86_400;
    let p = plan::plan(&spec, &o);
    let ca: Vec<_> = p.notes.iter().filter(|n| n.subject == "pki.ca").collect();
    assert_eq!(ca.len(), 1, "{:?}", p.notes);
    assert!(
        ca[0].message.contains("the cluster CA expires in 19 days")
            || ca[0].message.contains("the cluster CA expires in 20 days"),
        "{}",
        ca[0].message
    );
    assert!(ca[0].message.contains("set tls.ca_rotation = \"trust\""));
    o.local.now = NOW + (u64::from(redisctl::pki::CA_VALIDITY_DAYS) + 1) * 86_400;
    let p = plan::plan(&spec, &o);
    assert!(
        p.notes
            .iter()
            .any(|n| n.subject == "pki.ca" && n.message.contains("has expired")),
        "{:?}",
        p.notes
    );
}

#[test]
fn a_running_cluster_whose_ca_is_lost_or_replaced_is_blocked_not_split() {
    let spec = example();
    let converged = converged(&spec);

    // The CA files are gone from the state directory.
    let mut o = converged.clone();
    o.local.ca_cert_pem = None;
    o.local.desired_files.clear();
    let p = plan::plan(&spec, &o);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{:?}", p.notes);
    assert_eq!(b[0].subject, "pki.ca");
    assert!(
        b[0].message.contains("there is none")
            && b[0]
                .message
                .contains("redis-node-1a, redis-node-1b, redis-node-1c")
            && b[0].message.contains("Restore ca.key and ca.crt"),
        "{}",
        b[0].message
    );

    // A new CA was made in its place.
    let mut o = converged.clone();
    let other = Ca::create(&spec.cluster.name, now(), redisctl::pki::CA_VALIDITY_DAYS).unwrap();
    o.local.ca_cert_pem = Some(other.cert_pem().to_string());
    let p = plan::plan(&spec, &o);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{:?}", p.notes);
    assert!(b[0].message.contains("it differs"), "{}", b[0].message);

    // Before the cluster exists a new CA is just planned (nothing to split).
    let p = plan::plan(&spec, &empty_region());
    assert!(p.blockers().next().is_none(), "{:?}", p.notes);
}

/// The example spec at a stage of a CA rotation (None: the key absent).
fn rotating(stage: Option<&str>) -> redisctl::spec::Spec {
    let text = example_text();
    match stage {
        None => spec_from(&text),
        Some(s) => spec_from(&text.replace(
            "auth_clients = \"yes\"",
            &format!("auth_clients = \"yes\"\nca_rotation = \"{s}\""),
        )),
    }
}

fn tls_steps(p: &plan::Plan) -> Vec<&plan::Step> {
    p.steps
        .iter()
        .filter(|s| s.address.starts_with("node.") && s.address.ends_with(".tls"))
        .collect()
}

/// The certificates' (and bundles') state of each stage, and which CA signed the nodes'.
fn signed_by_next(o: &observed::Observed) -> Vec<bool> {
    let next = o.local.ca_next_cert_pem.as_deref();
    o.nodes
        .values()
        .map(|n| match (n, next) {
            (observed::NodeObservation::Reached(f), Some(next)) => {
                redisctl::pki::inspect(f.node_cert_pem.as_deref().unwrap(), next)
                    .unwrap()
                    .signed_by_ca
            }
            _ => false,
        })
        .collect()
}

/// A CA rotation in its three stages, set by the operator in the spec: each stage's plan says
/// what it does, changes the nodes without a restart (Redis reloads its TLS files), one node at
/// a time, and converges; the end promotes the new CA in the state directory after every node
/// trusts only it. A stage the nodes are not ready for is refused; an abort goes back.
#[test]
fn a_ca_rotation_trusts_reissues_and_ends_without_a_restart() {
    let steady = example();
    let mut o = converged(&steady);
    let old_ca = o.local.ca_cert_pem.clone().unwrap();
    // A client certificate issued before the rotation (its line names no CA).
    o.local.client_certs = vec![observed::ClientCert {
        cn: "billing".into(),
        serial: "0b".into(),
        not_after: NOW + 200 * 86_400,
        ca_sha256: None,
    }];

    // Straight to "reissue": refused, nothing trusts the new CA yet (it does not even exist).
    let reissue = rotating(Some("reissue"));
    let p = plan::plan(&reissue, &observed_for(&reissue, o.clone()));
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{:?}", p.notes);
    assert!(
        b[0].message
            .contains("set tls.ca_rotation = \"trust\" and apply first")
    );

    // Stage 1: a new CA, trusted next to the old one by every node; certificates stay.
    let trust = rotating(Some("trust"));
    let o = observed_for(&trust, o);
    let p = plan::plan(&trust, &o);
    snapshot("ca-rotation-trust", &render::plan::human(&p, false));
    assert!(p.blockers().next().is_none(), "{:?}", p.notes);
    assert_eq!(p.steps[0].address, "pki.ca.next");
    let tls = tls_steps(&p);
    assert_eq!(tls.len(), 3);
    for (i, s) in tls.iter().enumerate() {
        assert!(
            matches!(
                &s.ops[..],
                [Op::Node(NodeOp::InstallTls {
                    reload: true,
                    cert: false,
                    ..
                })]
            ),
            "{:?}",
            s.ops
        );
        assert!(s.depends_on.contains(&"pki.ca.next".to_string()));
        if i > 0 {
            assert!(s.depends_on.contains(&tls[i - 1].address));
        }
    }
    assert!(
        p.notes.iter().any(|n| n.subject == "pki.ca"
            && n.level == NoteLevel::Warning
            && n.message
                .contains("CN=billing (serial 0b, ends in 200 days)")),
        "{:?}",
        p.notes
    );
    let o = apply_and_converge(&trust, o, &p);
    assert!(o.local.ca_next_cert_pem.is_some());
    assert_eq!(o.local.ca_cert_pem.as_deref(), Some(old_ca.as_str()));
    assert_eq!(signed_by_next(&o), vec![false; 3]);

    // Ending it now would cut off nodes that present the old CA's certificates: refused.
    let p = plan::plan(&steady, &observed_for(&steady, o.clone()));
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{:?}", p.notes);
    assert!(
        b[0].message
            .starts_with("redis-node-1a, redis-node-1b, redis-node-1c still present a certificate from the old CA"),
        "{}",
        b[0].message
    );

    // Stage 2: node certificates from the new CA, one node at a time, reloaded.
    let o = observed_for(&reissue, o);
    let p = plan::plan(&reissue, &o);
    assert!(p.blockers().next().is_none(), "{:?}", p.notes);
    let tls = tls_steps(&p);
    assert_eq!(tls.len(), 3, "{}", render::plan::human(&p, false));
    for (i, s) in tls.iter().enumerate() {
        assert!(
            s.reason.contains("re-issued from the new one"),
            "{}",
            s.reason
        );
        assert!(matches!(
            &s.ops[..],
            [Op::Node(NodeOp::InstallTls {
                reload: true,
                cert: true,
                ..
            })]
        ));
        if i > 0 {
            assert!(s.depends_on.contains(&tls[i - 1].address));
        }
    }
    let o = apply_and_converge(&reissue, o, &p);
    assert_eq!(signed_by_next(&o), vec![true; 3]);

    // An abort now would stop trusting the CA the nodes present: refused.
    let abort = rotating(Some("abort"));
    let p = plan::plan(&abort, &observed_for(&abort, o.clone()));
    assert!(
        p.blockers()
            .any(|b| b.message.contains("present a certificate from the new CA")),
        "{:?}",
        p.notes
    );

    // Stage 3, the key removed: every node trusts only the new CA, then it is promoted.
    let o = observed_for(&steady, o);
    let p = plan::plan(&steady, &o);
    snapshot("ca-rotation-end", &render::plan::human(&p, false));
    assert!(p.blockers().next().is_none(), "{:?}", p.notes);
    let tls = tls_steps(&p);
    assert_eq!(tls.len(), 3);
    assert!(tls.iter().all(|s| matches!(
        &s.ops[..],
        [Op::Node(NodeOp::InstallTls { cert: false, .. })]
    )));
    let promote = p
        .steps
        .iter()
        .find(|s| s.address == "pki.ca.promote")
        .unwrap();
    for s in &tls {
        assert!(promote.depends_on.contains(&s.address));
    }
    let new_ca = o.local.ca_next_cert_pem.clone().unwrap();
    let o = apply_and_converge(&steady, o, &p);
    assert_eq!(o.local.ca_cert_pem.as_deref(), Some(new_ca.as_str()));
    assert!(o.local.ca_next_cert_pem.is_none());
}

/// An abort from stage 1 (the certificates still from the old CA): every node trusts only the
/// old CA again, then the new CA is removed.
#[test]
fn a_ca_rotation_aborted_at_its_first_stage_goes_back_to_the_old_ca() {
    let steady = example();
    let o = converged(&steady);
    let old_ca = o.local.ca_cert_pem.clone().unwrap();
    let bundle_before = o.local.desired_files["redis-node-1a"]["/etc/redis/tls/ca.crt"].clone();
    let trust = rotating(Some("trust"));
    let o = observed_for(&trust, o);
    let p = plan::plan(&trust, &o);
    let o = apply_and_converge(&trust, o, &p);
    let abort = rotating(Some("abort"));
    let o = observed_for(&abort, o);
    let p = plan::plan(&abort, &o);
    assert!(p.blockers().next().is_none(), "{:?}", p.notes);
    assert_eq!(tls_steps(&p).len(), 3);
    let drop = p
        .steps
        .iter()
        .find(|s| s.address == "pki.ca.drop_next")
        .unwrap();
    assert_eq!(drop.depends_on.len(), 3);
    let o = apply_and_converge(&abort, o, &p);
    assert!(o.local.ca_next_cert_pem.is_none());
    assert_eq!(o.local.ca_cert_pem.as_deref(), Some(old_ca.as_str()));
    assert_eq!(
        o.local.desired_files["redis-node-1a"]["/etc/redis/tls/ca.crt"],
        bundle_before
    );
    // With the abort left in the spec, nothing more happens.
    assert!(plan::plan(&abort, &o).is_empty());
}
