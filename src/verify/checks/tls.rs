//! The TLS checks: plaintext refused, exactly the spec's protocols negotiated (client and bus
//! ports), and each node's certificate.

use super::{NodeProbe, first_line, reached};
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

/// The Redis port answers over TLS and refuses plaintext.
pub fn tls_only(spec: &Spec, probes: &[NodeProbe]) -> Check {
    let mut passed = true;
    let mut ev = Vec::new();
    let port = spec.redis.port;
    for p in probes {
        let Some(o) = reached(p, &mut passed, &mut ev) else {
            continue;
        };
        let tls_ok = o.tls_ping.trim() == "PONG";
        // A Redis reply of any kind (PONG, NOAUTH, ERR …) means it spoke plaintext.
        let plain = o.plaintext.lines().map(str::trim).any(|l| {
            l == "PONG"
                || l.starts_with("NOAUTH")
                || l.starts_with("(error)")
                || l.starts_with("ERR")
                || l.starts_with("WRONGPASS")
                || l.starts_with('-')
        });
        passed &= tls_ok && !plain;
        let plain_seen = first_line(
            &o.plaintext
                .lines()
                .filter(|l| !l.starts_with("@@rc="))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        ev.push(format!(
            "{}: plaintext PING to {}:{port}: {} ({}); TLS PING: {}",
            p.node,
            p.ip,
            if plain { "ANSWERED" } else { "refused" },
            if plain_seen.is_empty() {
                "no reply".to_string()
            } else {
                plain_seen
            },
            if o.tls_ping.trim().is_empty() {
                "no reply".to_string()
            } else {
                first_line(&o.tls_ping)
            }
        ));
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
