//! The TLS checks: plaintext refused, exactly the spec's protocols negotiated (client and bus
//! ports), and each node's certificate.

use super::{Cli, CliRun, NodeProbe, first_line, reached, read_cli};
use crate::spec::Spec;
use crate::verify::Check;

/// The handshakes the probe tries with `openssl s_client`: (label, port, flags). `client` is
/// the Redis port, `bus` the cluster bus port. Protocols older than TLSv1.2 are offered with
/// the client's security level lowered, so that only the server can refuse them.
pub const HANDSHAKES: &[(&str, &str, &str)] = &[
    ("TLSv1", "client", "-tls1 -cipher DEFAULT:@SECLEVEL=0"),
    ("TLSv1.1", "client", "-tls1_1 -cipher DEFAULT:@SECLEVEL=0"),
    ("TLSv1.2", "client", "-tls1_2"),
    ("TLSv1.3", "client", "-tls1_3"),
    ("bus", "bus", ""),
];

/// One plaintext `PING` of the probe: where to, and what redis-cli said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainTry {
    /// `host:port`.
    pub target: String,
    pub run: CliRun,
}

/// The probe's plaintext section, read: why `ss` failed (its exit status and first line), the
/// TCP sockets redis-server listens on, and the tries (the node's address and Redis port first,
/// then each distinct listening address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plaintext {
    pub ss_failed: Option<String>,
    pub listening: Vec<String>,
    pub tries: Vec<PlainTry>,
}

/// Read the plaintext section the probe printed (its script: `verify::probe`): `ss rc=N`, `ss! <first line>`,
/// `listen <addr:port>`, and per try `try <host> <port>`, redis-cli's lines, `@@rc=N`.
pub fn plaintext_tries(raw: &str) -> Plaintext {
    let mut p = Plaintext::default();
    let mut ss_rc = None;
    let mut ss_said = String::new();
    let mut open: Option<PlainTry> = None;
    for line in raw.lines() {
        if let Some(t) = open.as_mut() {
            if let Some(rc) = line.strip_prefix("@@rc=") {
                t.run.rc = rc.trim().parse().ok();
                p.tries.extend(open.take());
            } else {
                t.run.out.push_str(line);
                t.run.out.push('\n');
            }
        } else if let Some(rc) = line.strip_prefix("ss rc=") {
            ss_rc = rc.trim().parse::<i32>().ok();
        } else if let Some(said) = line.strip_prefix("ss! ") {
            ss_said = said.trim().to_string();
        } else if let Some(a) = line.strip_prefix("listen ") {
            p.listening.push(a.trim().to_string());
        } else if let Some(hp) = line.strip_prefix("try ") {
            let (h, port) = hp.trim().split_once(' ').unwrap_or((hp.trim(), "?"));
            let target = if h.contains(':') {
                format!("[{h}]:{port}")
            } else {
                format!("{h}:{port}")
            };
            open = Some(PlainTry {
                target,
                run: CliRun::default(),
            });
        }
    }
    // A try cut short (no exit status): kept, and read as a failed probe.
    p.tries.extend(open);
    p.ss_failed = match ss_rc {
        Some(0) => None,
        Some(rc) if ss_said.is_empty() => Some(format!("ss exit {rc}")),
        Some(rc) => Some(format!("ss exit {rc}: {ss_said}")),
        None => Some("ss never ran".into()),
    };
    p
}

/// The Redis port answers over TLS, and every TCP socket redis-server listens on (the Redis
/// port, the bus port, and any other one opened at runtime) refuses plaintext: the server drops
/// the connection without a Redis reply. A Redis reply of any kind there fails the check
/// (`ANSWERED`), and so does a probe that could not tell (`probe failed: …`: redis-cli missing,
/// nothing listening where it looked, no answer, the sockets not listed).
pub fn tls_only(probes: &[NodeProbe]) -> Check {
    let mut passed = true;
    let mut ev = Vec::new();
    for p in probes {
        let Some(o) = reached(p, &mut passed, &mut ev) else {
            continue;
        };
        let tls_ok = o.tls_ping.trim() == "PONG";
        passed &= tls_ok;
        let plain = plaintext_tries(&o.plaintext);
        let mut parts = Vec::new();
        if plain.tries.is_empty() {
            passed = false;
            parts.push("plaintext PING: probe failed: the probe tried nothing WRONG".to_string());
        }
        for (i, t) in plain.tries.iter().enumerate() {
            let verdict = match read_cli(&t.run) {
                Cli::Dropped(why) => format!("refused ({why})"),
                Cli::Reply(r) => {
                    passed = false;
                    format!("ANSWERED ({r}) [expected refused: TLS only] WRONG")
                }
                Cli::Failed(why) => {
                    passed = false;
                    format!("probe failed: {why} WRONG")
                }
            };
            parts.push(if i == 0 {
                format!("plaintext PING to {}: {verdict}", t.target)
            } else {
                format!("to {}: {verdict}", t.target)
            });
        }
        if let Some(why) = &plain.ss_failed {
            passed = false;
            parts.push(format!(
                "redis-server's listening sockets: probe failed: {why} WRONG"
            ));
        }
        parts.push(format!(
            "TLS PING: {}",
            if o.tls_ping.trim().is_empty() {
                "no reply".to_string()
            } else {
                first_line(&o.tls_ping)
            }
        ));
        ev.push(format!("{}: {}", p.node, parts.join("; ")));
    }
    Check {
        name: "tls only".into(),
        passed,
        evidence: ev,
    }
}

/// The Redis port negotiates exactly the spec's TLS protocols (each offered alone, the others
/// refused), and the cluster bus port speaks TLS with a certificate that verifies; both
/// handshakes check the node's certificate against the cluster CA and the node's IP.
pub fn tls_protocols(spec: &Spec, probes: &[NodeProbe]) -> Check {
    let mut passed = true;
    let mut ev = Vec::new();
    for p in probes {
        let Some(o) = reached(p, &mut passed, &mut ev) else {
            continue;
        };
        let line = |label: &str| {
            o.handshakes
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{label} rc=")))
                .map(|rest| {
                    let (rc, said) = rest.split_once(' ').unwrap_or((rest, ""));
                    (rc.parse::<i32>().unwrap_or(-1), said.trim().to_string())
                })
        };
        if o.handshakes.contains("openssl: not found") || o.handshakes.contains(" rc=127 ") {
            passed = false;
            ev.push(format!(
                "{}: openssl is not installed on the node, so no handshake could be tried",
                p.node
            ));
            continue;
        }
        let mut parts = Vec::new();
        for (label, target, _) in HANDSHAKES {
            let Some((rc, said)) = line(label) else {
                passed = false;
                parts.push(format!("{label}: not tried WRONG"));
                continue;
            };
            if *target == "bus" {
                let version = said.strip_prefix("Protocol version: ").filter(|_| rc == 0);
                let ok =
                    version.is_some_and(|v| spec.tls.protocols.iter().any(|x| x.as_str() == v));
                passed &= ok;
                parts.push(match version {
                    Some(v) => format!(
                        "bus port {}: TLS ({v}), certificate verified{}",
                        spec.redis.bus_port(),
                        if ok {
                            ""
                        } else {
                            " [expected one of the spec's protocols] WRONG"
                        }
                    ),
                    None => format!(
                        "bus port {}: no TLS handshake ({}) WRONG",
                        spec.redis.bus_port(),
                        if said.is_empty() {
                            format!("exit {rc}")
                        } else {
                            said.clone()
                        }
                    ),
                });
                continue;
            }
            let negotiated = rc == 0 && said == format!("Protocol version: {label}");
            let allowed = spec.tls.protocols.iter().any(|x| x.as_str() == *label);
            passed &= negotiated == allowed;
            parts.push(format!(
                "{label} {}{}",
                if negotiated { "negotiated" } else { "refused" },
                match (negotiated, allowed) {
                    (true, false) => " [expected refused: not in tls.protocols] WRONG".to_string(),
                    (false, true) => format!(
                        " [expected negotiated: in tls.protocols] WRONG ({})",
                        if said.is_empty() {
                            format!("exit {rc}")
                        } else {
                            said.clone()
                        }
                    ),
                    _ => String::new(),
                }
            ));
        }
        ev.push(format!("{}: {}", p.node, parts.join("; ")));
    }
    Check {
        name: "tls protocols".into(),
        passed,
        evidence: ev,
    }
}

fn date(t: std::time::SystemTime) -> String {
    let d = time::OffsetDateTime::from(t).date();
    format!("{}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Each node's certificate is signed by the cluster CA of the state directory, valid now, and
/// has the node's IP among its SANs.
pub fn certificates(
    probes: &[NodeProbe],
    ca_pem: Result<&str, String>,
    now: std::time::SystemTime,
) -> Check {
    let name = "tls certificates";
    let ca_pem = match ca_pem {
        Ok(c) => c,
        Err(why) => return Check::fail(name, vec![why]),
    };
    let mut passed = true;
    let mut ev = Vec::new();
    for p in probes {
        let Some(o) = reached(p, &mut passed, &mut ev) else {
            continue;
        };
        match crate::pki::inspect(&o.cert, ca_pem) {
            Err(e) => {
                passed = false;
                ev.push(format!("{}: cannot read its certificate: {e}", p.node));
            }
            Ok(c) => {
                let ip_ok = c.ip_sans.contains(&std::net::IpAddr::V4(p.ip));
                let valid = c.not_before <= now && now < c.not_after;
                let ok = c.signed_by_ca && ip_ok && valid;
                passed &= ok;
                let sans: Vec<String> = c.ip_sans.iter().map(ToString::to_string).collect();
                ev.push(format!(
                    "{}: CN={} {} by the cluster CA (CN={}), {} until {}, IP SANs {}{}",
                    p.node,
                    c.subject_cn.as_deref().unwrap_or("?"),
                    if c.signed_by_ca {
                        "signed"
                    } else {
                        "NOT signed"
                    },
                    c.issuer_cn.as_deref().unwrap_or("?"),
                    if valid { "valid" } else { "NOT valid now" },
                    date(c.not_after),
                    sans.join(", "),
                    if ip_ok {
                        String::new()
                    } else {
                        format!(" (lacks {})", p.ip)
                    }
                ));
            }
        }
    }
    Check {
        name: name.into(),
        passed,
        evidence: ev,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::verify::checks::ProbeOut;

    fn node(plaintext: &str, tls_ping: &str) -> NodeProbe {
        NodeProbe {
            node: "redis-node-1a".into(),
            ip: Ipv4Addr::new(10, 0, 1, 10),
            az: "a".into(),
            out: Ok(ProbeOut {
                tls_ping: tls_ping.into(),
                plaintext: plaintext.into(),
                ..Default::default()
            }),
        }
    }

    /// What the probe's plaintext section printed on a node of a fresh cluster (Redis 7.0.15:
    /// the TLS port and the TLS bus on the node's address and loopback).
    const FRESH: &str = "ss rc=0\n\
        listen 10.0.1.10:16379\n\
        listen 10.0.1.10:6379\n\
        listen 127.0.0.1:16379\n\
        listen 127.0.0.1:6379\n\
        try 10.0.1.10 6379\n\
        Error: Connection reset by peer\n\
        @@rc=1\n\
        try 10.0.1.10 16379\n\
        Error: Connection reset by peer\n\
        @@rc=1\n\
        try 127.0.0.1 16379\n\
        Error: Connection reset by peer\n\
        @@rc=1\n\
        try 127.0.0.1 6379\n\
        Error: Connection reset by peer\n\
        @@rc=1\n";

    #[test]
    fn tls_only_reads_every_listener() {
        let p = plaintext_tries(FRESH);
        assert_eq!(p.ss_failed, None);
        assert_eq!(p.listening.len(), 4);
        let targets: Vec<&str> = p.tries.iter().map(|t| t.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                "10.0.1.10:6379",
                "10.0.1.10:16379",
                "127.0.0.1:16379",
                "127.0.0.1:6379"
            ]
        );
        let c = tls_only(&[node(FRESH, "PONG")]);
        assert!(c.passed, "{c:?}");
        assert_eq!(
            c.evidence,
            [
                "redis-node-1a: plaintext PING to 10.0.1.10:6379: refused (Connection reset by peer); \
              to 10.0.1.10:16379: refused (Connection reset by peer); to 127.0.0.1:16379: refused \
              (Connection reset by peer); to 127.0.0.1:6379: refused (Connection reset by peer); \
              TLS PING: PONG"
            ]
        );

        // `CONFIG SET port 6380` at runtime: a plaintext listener on both bound addresses.
        let opened = format!(
            "{FRESH}try 10.0.1.10 6380\nNOAUTH Authentication required.\n\n@@rc=0\n\
             try 127.0.0.1 6380\nNOAUTH Authentication required.\n\n@@rc=0\n"
        );
        let c = tls_only(&[node(&opened, "PONG")]);
        assert!(!c.passed);
        assert!(
            c.evidence[0].contains("to 10.0.1.10:6380: ANSWERED (NOAUTH Authentication required.) [expected refused: TLS only] WRONG"),
            "{c:?}"
        );
        assert!(
            c.evidence[0].contains("to 127.0.0.1:6380: ANSWERED"),
            "{c:?}"
        );

        // redis-cli missing: every try is a failed probe, never `refused`.
        let missing = "ss rc=0\nlisten 10.0.1.10:6379\ntry 10.0.1.10 6379\n\
                       timeout: failed to run command 'redis-cli': No such file or directory\n@@rc=127\n";
        let c = tls_only(&[node(missing, "sh: 1: redis-cli: not found")]);
        assert!(!c.passed);
        assert_eq!(
            c.evidence,
            [
                "redis-node-1a: plaintext PING to 10.0.1.10:6379: probe failed: redis-cli could not \
              run (exit 127): timeout: failed to run command 'redis-cli': No such file or directory \
              WRONG; TLS PING: sh: 1: redis-cli: not found"
            ]
        );
        assert!(!c.evidence[0].contains("refused"));

        // Nothing listening where the probe looked (a wrong port): a failed probe.
        let wrong = FRESH.replacen(
            "Error: Connection reset by peer",
            "Could not connect to Redis at 10.0.1.10:6390: Connection refused",
            1,
        );
        let c = tls_only(&[node(&wrong, "PONG")]);
        assert!(!c.passed);
        assert!(
            c.evidence[0].contains("plaintext PING to 10.0.1.10:6379: probe failed: Could not connect to Redis at 10.0.1.10:6390: Connection refused (exit 1) WRONG"),
            "{c:?}"
        );

        // The sockets could not be listed; a try cut short; no section at all.
        let c = tls_only(&[node(
            "ss rc=127\nss! sh: 1: ss: not found\ntry 10.0.1.10 6379\nError: Connection reset by peer\n@@rc=1\n",
            "PONG",
        )]);
        assert!(!c.passed);
        assert!(
            c.evidence[0].contains("redis-server's listening sockets: probe failed: ss exit 127: sh: 1: ss: not found WRONG"),
            "{c:?}"
        );
        let c = tls_only(&[node("ss rc=0\ntry 10.0.1.10 6379\nError: Conn", "PONG")]);
        assert!(!c.passed);
        assert!(
            c.evidence[0].contains("probe failed: no exit status recorded"),
            "{c:?}"
        );
        let c = tls_only(&[node("", "PONG")]);
        assert!(!c.passed);
        assert!(c.evidence[0].contains("probe failed"), "{c:?}");
    }

    #[test]
    fn tls_protocols_are_exactly_the_specs() {
        let spec = crate::redis::test_spec::reference();
        let probe = |hs: &str| NodeProbe {
            node: "n1".into(),
            ip: Ipv4Addr::new(10, 0, 1, 10),
            az: "a".into(),
            out: Ok(ProbeOut {
                handshakes: hs.into(),
                ..Default::default()
            }),
        };
        let good = "TLSv1 rc=1 40C7:error:0A00042E:SSL routines:ssl3_read_bytes:tlsv1 alert protocol version\n\
                    TLSv1.1 rc=1 40C7:error:0A00042E:SSL routines:ssl3_read_bytes:tlsv1 alert protocol version\n\
                    TLSv1.2 rc=0 Protocol version: TLSv1.2\n\
                    TLSv1.3 rc=0 Protocol version: TLSv1.3\n\
                    bus rc=0 Protocol version: TLSv1.3";
        let c = tls_protocols(&spec, &[probe(good)]);
        assert!(c.passed, "{c:?}");
        assert_eq!(
            c.evidence,
            [
                "n1: TLSv1 refused; TLSv1.1 refused; TLSv1.2 negotiated; TLSv1.3 negotiated; bus port 16379: TLS (TLSv1.3), certificate verified"
            ]
        );
        // An old protocol accepted, a spec protocol refused, a plaintext bus: each named.
        let bad = good
            .replace("TLSv1.1 rc=1 40C7:error:0A00042E:SSL routines:ssl3_read_bytes:tlsv1 alert protocol version", "TLSv1.1 rc=0 Protocol version: TLSv1.1")
            .replace("TLSv1.2 rc=0 Protocol version: TLSv1.2", "TLSv1.2 rc=1 alert handshake failure")
            .replace("bus rc=0 Protocol version: TLSv1.3", "bus rc=1 40C7:error:0A00010B:SSL routines:ssl3_get_record:wrong version number");
        let c = tls_protocols(&spec, &[probe(&bad)]);
        assert!(!c.passed);
        let ev = &c.evidence[0];
        assert!(
            ev.contains("TLSv1.1 negotiated [expected refused: not in tls.protocols] WRONG"),
            "{ev}"
        );
        assert!(ev.contains("TLSv1.2 refused [expected negotiated: in tls.protocols] WRONG (alert handshake failure)"), "{ev}");
        assert!(ev.contains("bus port 16379: no TLS handshake (40C7:error:0A00010B:SSL routines:ssl3_get_record:wrong version number) WRONG"), "{ev}");
        // No openssl on the node: said, and failed.
        let c = tls_protocols(&spec, &[probe("TLSv1 rc=127 sh: 1: openssl: not found")]);
        assert!(!c.passed);
        assert!(c.evidence[0].contains("openssl is not installed"), "{c:?}");
    }
}
