//! The cluster CA and the certificates it signs: node certificates reissued one node at a
//! time, client certificates and the CA warned about near their end, a lost or replaced CA
//! blocking a running cluster.

use redisctl::observed;
use redisctl::pki::Ca;
use redisctl::plan::{self, NodeOp, NoteLevel, Op};
use redisctl::render;

use crate::fixtures::{NOW, empty_region, example, example_text, now, spec_from};
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
            [Op::Node(NodeOp::InstallTls { restart: true, .. })]
        ));
    }
    // A running cluster restarts one node at a time: each waits for the previous one.
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
    assert!(ca[0].message.contains("does not rotate the CA"));
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
