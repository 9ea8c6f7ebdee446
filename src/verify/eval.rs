//! The pure half of verify: what redis-cli printed on the nodes (and what EC2 said) in, checks
//! with evidence out. No I/O here, so every rule is unit-tested on captured text.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::Check;
use crate::observed::{self, Observed, tags};
use crate::plan::naming;
use crate::redis::acl::{self, CommandRule};
use crate::redis::parse::{self, ClusterNode, SlotRange};
use crate::redis::{files, systemd};
use crate::spec::{AclUser, Spec};

/// The key the data-distribution check writes (the hand procedure's example).
pub const DATA_KEY: &str = "patient:12345";

/// What one node showed the probe, or why it could not be asked.
#[derive(Debug, Clone)]
pub struct NodeProbe {
    pub node: String,
    pub ip: Ipv4Addr,
    pub az: String,
    pub out: Result<ProbeOut, String>,
}

/// What `p` answered; for a node that could not be probed, `None`, with the check failed and
/// the reason in its evidence.
fn reached<'a>(p: &'a NodeProbe, passed: &mut bool, ev: &mut Vec<String>) -> Option<&'a ProbeOut> {
    match &p.out {
        Ok(o) => Some(o),
        Err(why) => {
            *passed = false;
            ev.push(format!("{}: unreachable: {why}", p.node));
            None
        }
    }
}

/// The raw sections of the per-node probe script.
#[derive(Debug, Clone, Default)]
pub struct ProbeOut {
    /// `PING` over TLS as the operator.
    pub tls_ping: String,
    pub cluster_info: String,
    pub cluster_nodes: String,
    pub replication: String,
    /// `CLUSTER KEYSLOT patient:12345`.
    pub keyslot: String,
    /// `PING` over TLS without credentials.
    pub noauth: String,
    /// `AUTH default <not the password>` over TLS.
    pub wrongpass: String,
    /// `PING` in plaintext to the node's address and Redis port.
    pub plaintext: String,
    /// The node certificate file.
    pub cert: String,
    /// What [`crate::redis::files::stat_script`] printed: the files redisctl writes that exist.
    pub modes: String,
    /// One line per [`HANDSHAKES`] entry: `<label> rc=<openssl's exit> <its first telling
    /// line>` (`Protocol version: TLSv1.3`, an alert, an error).
    pub handshakes: String,
}

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

/// The first non-empty line, trimmed, without redis-cli's `(error) ` prefix, at most 100
/// characters.
pub fn first_line(text: &str) -> String {
    let l = text
        .lines()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let l = l.strip_prefix("(error) ").unwrap_or(l);
    let mut s: String = l.chars().take(100).collect();
    if l.chars().count() > 100 {
        s.push('…');
    }
    s
}

/// What a command run as some user came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server ran it (its reply, first line).
    Allowed(String),
    /// `NOPERM`.
    Denied(String),
    /// No answer to judge: not logged in, not connected, timed out.
    Broken(String),
}

/// Classify redis-cli's output of one command; `status` is its exit status.
pub fn classify(text: &str, status: Option<i32>) -> Outcome {
    if status == Some(124) {
        return Outcome::Broken("no answer within 15 s".into());
    }
    let find = |needle: &str| {
        text.lines()
            .map(|l| l.trim())
            .find(|l| l.contains(needle))
            .map(first_line)
    };
    if let Some(l) = find("NOPERM") {
        return Outcome::Denied(l);
    }
    for bad in [
        "WRONGPASS",
        "NOAUTH",
        "AUTH failed",
        "Could not connect",
        "Connection refused",
        "Error:",
        "CLUSTERDOWN",
        "SSL_connect",
        "TLS",
    ] {
        if let Some(l) = find(bad) {
            return Outcome::Broken(l);
        }
    }
    let l = first_line(text);
    let more = text.lines().filter(|l| !l.trim().is_empty()).count();
    Outcome::Allowed(match (l.is_empty(), more) {
        (true, _) => "(nil)".into(),
        (false, 0 | 1) => l,
        (false, n) => format!("{l} … {n} lines"),
    })
}

/// Redis Cluster's key slot: CRC16 (XMODEM) of the key, or of its `{hash tag}`, mod 16384.
pub fn key_slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let mut part = b;
    if let Some(open) = b.iter().position(|&c| c == b'{')
        && let Some(len) = b[open + 1..].iter().position(|&c| c == b'}')
        && len > 0
    {
        part = &b[open + 1..open + 1 + len];
    }
    let mut crc: u16 = 0;
    for &byte in part {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// Redis glob matching (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), enough for key patterns.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn m(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| m(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && m(&p[1..], &t[1..]),
            Some('[') => {
                let Some(close) = p.iter().skip(1).position(|&c| c == ']') else {
                    return !t.is_empty() && t[0] == '[' && m(&p[1..], &t[1..]);
                };
                let Some(&c) = t.first() else { return false };
                let class = &p[1..close + 1];
                let (neg, class) = match class.first() {
                    Some('^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        let (a, b) = (class[i].min(class[i + 2]), class[i].max(class[i + 2]));
                        hit |= a <= c && c <= b;
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != neg && m(&p[close + 2..], &t[1..])
            }
            Some('\\') if p.len() > 1 => !t.is_empty() && t[0] == p[1] && m(&p[2..], &t[1..]),
            Some(&c) => !t.is_empty() && t[0] == c && m(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    m(&p, &t)
}

/// A concrete key inside `pattern` (`session:*` → `session:redisctl-verify`), if one is easy
/// to make.
pub fn key_in(pattern: &str) -> Option<String> {
    let k: String = pattern
        .replace('*', "redisctl-verify")
        .replace('?', "x")
        .chars()
        .filter(|c| !matches!(c, '[' | ']' | '\\' | '^'))
        .collect();
    (glob(pattern, &k) && !k.is_empty()).then_some(k)
}

/// A key no pattern of `keys` covers, if there is one.
pub fn key_outside(keys: &[String]) -> Option<String> {
    ["redisctl-verify:outside", "zz-redisctl-verify-outside"]
        .into_iter()
        .find(|k| !keys.iter().any(|p| glob(p, k)))
        .map(String::from)
}

/// One command tried as a user, and what its rules say should happen.
#[derive(Debug, Clone)]
pub struct Try {
    /// For people: `SET session:redisctl-verify`.
    pub label: String,
    pub argv: Vec<String>,
    pub expect_allowed: bool,
    /// Why the rules say so, for the evidence.
    pub because: String,
}

/// The commands to try as `user`: a write and a read on a key inside its first key pattern, a
/// write outside its patterns, FLUSHALL (with an argument it refuses, so that nothing is ever
/// flushed), CONFIG GET and CLUSTER SLOTS. Expectations come from [`acl::allows`].
pub fn acl_tries(user: &AclUser, token: &str) -> Vec<Try> {
    let rules: &[CommandRule] = &user.commands;
    let says = |cmd: &str| acl::allows(rules, cmd);
    let rule_word = |ok: bool| if ok { "allowed" } else { "denied" };
    let mut out = Vec::new();
    let inside = user.keys.iter().find_map(|p| key_in(p));
    match &inside {
        Some(k) => {
            out.push(Try {
                label: format!("SET {k}"),
                argv: vec![
                    "SET".into(),
                    k.clone(),
                    token.into(),
                    "PX".into(),
                    "60000".into(),
                ],
                expect_allowed: says("set"),
                because: format!("set {} by its commands", rule_word(says("set"))),
            });
            out.push(Try {
                label: format!("GET {k}"),
                argv: vec!["GET".into(), k.clone()],
                expect_allowed: says("get"),
                because: format!("get {} by its commands", rule_word(says("get"))),
            });
        }
        None => {
            out.push(Try {
                label: "GET redisctl-verify".into(),
                argv: vec!["GET".into(), "redisctl-verify".into()],
                expect_allowed: false,
                because: "it has no key patterns".into(),
            });
        }
    }
    if inside.is_some()
        && let Some(k) = key_outside(&user.keys)
    {
        out.push(Try {
            label: format!("SET {k}"),
            argv: vec!["SET".into(), k, token.into(), "PX".into(), "60000".into()],
            expect_allowed: false,
            because: format!("key outside {}", user.keys.join(" ")),
        });
    }
    for (label, argv, cmd) in [
        (
            "FLUSHALL (with an invalid argument: never flushes)",
            vec!["FLUSHALL", "REDISCTL-VERIFY-PROBE"],
            "flushall",
        ),
        (
            "CONFIG GET maxmemory",
            vec!["CONFIG", "GET", "maxmemory"],
            "config|get",
        ),
        ("CLUSTER SLOTS", vec!["CLUSTER", "SLOTS"], "cluster|slots"),
    ] {
        out.push(Try {
            label: label.into(),
            argv: argv.into_iter().map(String::from).collect(),
            expect_allowed: says(cmd),
            because: format!("{cmd} {} by its commands", rule_word(says(cmd))),
        });
    }
    out
}

/// The ACL row of one user from the outcomes of its tries (same order).
pub fn acl_check(user: &str, tries: &[Try], outcomes: Result<Vec<Outcome>, String>) -> Check {
    let name = format!("acl {user}");
    let outcomes = match outcomes {
        Ok(o) => o,
        Err(why) => return Check::fail(name, vec![why]),
    };
    let mut passed = outcomes.len() == tries.len();
    let mut evidence = Vec::new();
    for (t, o) in tries.iter().zip(&outcomes) {
        let (ok, seen) = match o {
            // A value read is data: not shown (only whether there was one).
            Outcome::Allowed(r)
                if t.argv[0] == "GET" && r != "(nil)" && !r.starts_with("read back") =>
            {
                (t.expect_allowed, "ran (a value)".to_string())
            }
            Outcome::Allowed(r) => (t.expect_allowed, format!("ran ({r})")),
            Outcome::Denied(r) => (!t.expect_allowed, r.clone()),
            Outcome::Broken(r) => (false, format!("no verdict: {r}")),
        };
        passed &= ok;
        let want = if t.expect_allowed { "allow" } else { "deny" };
        let mark = if ok { "ok" } else { "WRONG" };
        evidence.push(format!(
            "{}: {seen} [expected {want}: {}] {mark}",
            t.label, t.because
        ));
    }
    Check {
        name,
        passed,
        evidence,
    }
}

fn by_ip(spec: &Spec, ip: &str) -> String {
    spec.nodes
        .nodes
        .iter()
        .find(|n| n.private_ip.to_string() == ip)
        .map(|n| n.name.clone())
        .unwrap_or_else(|| format!("{ip} (not in the spec)"))
}

/// Every node `cluster_state:ok`, 16384 slots assigned, all nodes known; the spec's number of
/// masters; replicas linked to their master when the spec asks for replicas.
pub fn health(spec: &Spec, probes: &[NodeProbe]) -> Check {
    let want_nodes = spec.nodes.nodes.len() as u32;
    let mut passed = true;
    let mut ev = Vec::new();
    let mut masters_seen: Option<(String, usize)> = None;
    let mut replicas = 0usize;
    for p in probes {
        let Some(out) = reached(p, &mut passed, &mut ev) else {
            continue;
        };
        let role = parse::info(&out.replication)
            .get("Replication")
            .cloned()
            .unwrap_or_default();
        let role_text = match role.get("role").map(String::as_str) {
            Some("slave") => {
                replicas += 1;
                let link = role.get("master_link_status").cloned().unwrap_or_default();
                if link != "up" {
                    passed = false;
                }
                format!("role:replica master_link_status:{link}")
            }
            Some(r) => format!("role:{r}"),
            None => {
                passed = false;
                format!("role:? ({})", first_line(&out.replication))
            }
        };
        match parse::cluster_info(&out.cluster_info) {
            Ok(c) => {
                let ok = c.cluster_state == "ok"
                    && c.slots_assigned == 16384
                    && c.known_nodes == want_nodes;
                passed &= ok;
                ev.push(format!(
                    "{}: cluster_state:{} cluster_slots_assigned:{} cluster_known_nodes:{}/{want_nodes} {role_text}",
                    p.node, c.cluster_state, c.slots_assigned, c.known_nodes
                ));
            }
            Err(_) => {
                passed = false;
                ev.push(format!(
                    "{}: CLUSTER INFO failed: {}",
                    p.node,
                    first_line(&out.cluster_info)
                ));
            }
        }
        if masters_seen.is_none()
            && let Ok(nodes) = parse::cluster_nodes(&out.cluster_nodes)
        {
            let n = nodes
                .iter()
                .filter(|n| n.is_master() && !n.is_failing() && n.slot_count() > 0)
                .count();
            masters_seen = Some((p.node.clone(), n));
            for n in nodes.iter().filter(|n| n.is_failing()) {
                passed = false;
                ev.push(format!(
                    "{} sees {} flagged {}",
                    p.node,
                    by_ip(spec, &n.ip),
                    n.flags.join(",")
                ));
            }
        }
    }
    let want_masters = spec.nodes.masters as usize;
    match masters_seen {
        Some((from, n)) => {
            passed &= n == want_masters;
            ev.push(format!(
                "masters serving slots: {n} (spec: {want_masters}, as {from} sees them)"
            ));
        }
        None => {
            passed = false;
            ev.push("no node answered CLUSTER NODES".into());
        }
    }
    let want_replicas = want_masters * spec.nodes.replicas_per_master as usize;
    if want_replicas > 0 || replicas > 0 {
        passed &= replicas == want_replicas;
        ev.push(format!("replicas: {replicas} (spec: {want_replicas})"));
    }
    Check {
        name: "cluster health".into(),
        passed,
        evidence: ev,
    }
}

/// The masters' slot ranges as one node sees them: ip -> ranges.
fn slot_map(nodes: &[ClusterNode]) -> BTreeMap<String, Vec<SlotRange>> {
    nodes
        .iter()
        .filter(|n| n.is_master() && !n.slots.is_empty())
        .map(|n| {
            let mut r = n.slots.clone();
            r.sort();
            (n.ip.clone(), r)
        })
        .collect()
}

/// Gaps and overlaps in `ranges` over 0–16383.
fn holes(ranges: &[SlotRange]) -> Vec<String> {
    let mut all = ranges.to_vec();
    all.sort();
    let mut next: u32 = 0;
    let mut out = Vec::new();
    for r in &all {
        let (s, e) = (u32::from(r.start), u32::from(r.end));
        if s > next {
            out.push(format!("gap {next}-{}", s - 1));
        } else if s < next {
            out.push(format!("overlap at {s}"));
        }
        next = next.max(e + 1);
    }
    if next <= 16383 {
        out.push(format!("gap {next}-16383"));
    }
    out
}

/// CLUSTER NODES covers 0–16383 with no gaps, every node agrees, each master in a different AZ
/// where the spec's nodes make that possible.
pub fn slots(spec: &Spec, probes: &[NodeProbe]) -> Check {
    let name = "slot coverage";
    let views: Vec<(&NodeProbe, Vec<ClusterNode>)> = probes
        .iter()
        .filter_map(|p| {
            let o = p.out.as_ref().ok()?;
            Some((p, parse::cluster_nodes(&o.cluster_nodes).ok()?))
        })
        .collect();
    let Some((first, nodes)) = views.first() else {
        return Check::fail(name, vec!["no node answered CLUSTER NODES".into()]);
    };
    let map = slot_map(nodes);
    let mut passed = true;
    let mut ev = Vec::new();
    let az_of = |ip: &str| {
        spec.nodes
            .nodes
            .iter()
            .find(|n| n.private_ip.to_string() == ip)
            .map(|n| n.az.clone())
    };
    let mut all = Vec::new();
    for (ip, ranges) in &map {
        let count: u32 = ranges.iter().map(SlotRange::count).sum();
        let list: Vec<String> = ranges.iter().map(ToString::to_string).collect();
        ev.push(format!(
            "{} ({ip}, {}): {} ({count} slots)",
            by_ip(spec, ip),
            az_of(ip).unwrap_or_else(|| "?".into()),
            list.join(",")
        ));
        all.extend(ranges.iter().copied());
    }
    let h = holes(&all);
    if h.is_empty() {
        ev.push(format!(
            "0-16383 covered, no gaps or overlaps (as {} sees it)",
            first.node
        ));
    } else {
        passed = false;
        ev.push(format!("not covered: {}", h.join(", ")));
    }
    for (p, other) in views.iter().skip(1) {
        if slot_map(other) != map {
            passed = false;
            ev.push(format!(
                "{} sees a different slot map than {}",
                p.node, first.node
            ));
        }
    }
    let master_azs: BTreeSet<String> = map.keys().filter_map(|ip| az_of(ip)).collect();
    let spec_azs: BTreeSet<&str> = spec.nodes.nodes.iter().map(|n| n.az.as_str()).collect();
    let possible = map.len().min(spec_azs.len());
    let spread = master_azs.len() >= possible;
    passed &= spread;
    ev.push(format!(
        "masters in {} AZ(s): {} ({possible} possible){}",
        master_azs.len(),
        master_azs.iter().cloned().collect::<Vec<_>>().join(", "),
        if spread { "" } else { ": masters share an AZ" }
    ));
    Check {
        name: name.into(),
        passed,
        evidence: ev,
    }
}

/// The master that serves `slot`, as the first node that answered sees it: (node name, ip).
pub fn owner(spec: &Spec, probes: &[NodeProbe], slot: u16) -> Option<(String, String)> {
    probes.iter().find_map(|p| {
        let nodes = parse::cluster_nodes(&p.out.as_ref().ok()?.cluster_nodes).ok()?;
        nodes
            .iter()
            .filter(|n| n.is_master() && !n.is_failing())
            .find(|n| n.slots.iter().any(|r| r.start <= slot && slot <= r.end))
            .map(|n| (by_ip(spec, &n.ip), n.ip.clone()))
    })
}

/// No connection without credentials, `AUTH default …` refused.
pub fn default_off(probes: &[NodeProbe]) -> Check {
    let mut passed = true;
    let mut ev = Vec::new();
    for p in probes {
        let Some(o) = reached(p, &mut passed, &mut ev) else {
            continue;
        };
        let a = o.noauth.contains("NOAUTH");
        let b = o.wrongpass.contains("WRONGPASS");
        passed &= a && b;
        ev.push(format!(
            "{}: PING without credentials: {}; AUTH default <wrong>: {}",
            p.node,
            first_line(&o.noauth),
            first_line(&o.wrongpass)
        ));
    }
    Check {
        name: "default user off".into(),
        passed,
        evidence: ev,
    }
}

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

/// The user the data check writes as: the first enabled user (not the operator) whose key
/// patterns cover [`DATA_KEY`] and who may SET and GET, else the operator.
pub fn data_writer(spec: &Spec) -> &AclUser {
    spec.users
        .iter()
        .filter(|u| u.enabled && !u.operator && u.password.is_some())
        .find(|u| {
            u.keys.iter().any(|p| glob(p, DATA_KEY))
                && acl::allows(&u.commands, "set")
                && acl::allows(&u.commands, "get")
        })
        .unwrap_or_else(|| spec.operator_user())
}

/// Every file redisctl writes on a node has the mode and owner it writes (the node key is not
/// readable by others; the configuration and the ACL hashes are root:redis 0640).
pub fn file_modes(probes: &[NodeProbe]) -> Check {
    let mut passed = true;
    let mut ev = Vec::new();
    for p in probes {
        let Some(o) = reached(p, &mut passed, &mut ev) else {
            continue;
        };
        let mut wrong = Vec::new();
        let mut right = 0;
        let seen = files::parse_modes(&o.modes);
        for f in &files::MANAGED {
            match seen.get(f.path) {
                Some(s) if *s == f.mode_owner() => right += 1,
                Some(s) => wrong.push(format!("{} is {s} [expected {}]", f.path, f.mode_owner())),
                // Only systemd hosts have the drop-in (see node::noinit).
                None if f.path == systemd::DROP_IN.path => {}
                None => wrong.push(format!("{} is missing", f.path)),
            }
        }
        passed &= wrong.is_empty();
        if wrong.is_empty() {
            ev.push(format!(
                "{}: {right} files with their modes and owners",
                p.node
            ));
        } else {
            ev.push(format!("{}: {} WRONG", p.node, wrong.join("; ")));
        }
    }
    Check {
        name: "file modes".into(),
        passed,
        evidence: ev,
    }
}

/// The cluster's live instance for a node of the spec (not terminated).
pub fn node_instance<'o>(observed: &'o Observed, node: &str) -> Option<&'o observed::Instance> {
    observed.instances.iter().find(|i| {
        i.tags.get(tags::NODE).map(String::as_str) == Some(node) && i.state != "terminated"
    })
}

/// The security group lets in exactly what the spec allows (no rule missing, none added out of
/// band) and every node is in it and in no other group.
pub fn security_group(spec: &Spec, observed: &Observed) -> Check {
    let name = "security group";
    let groups: Vec<&observed::SecurityGroup> = observed
        .security_groups
        .iter()
        .filter(|g| {
            g.tags.get(tags::ROLE).map(String::as_str) == Some(tags::Role::SecurityGroup.as_str())
        })
        .collect();
    let [sg] = groups[..] else {
        let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
        return Check::fail(
            name,
            vec![format!(
                "expected one security group tagged for the cluster, found {}: {}",
                ids.len(),
                if ids.is_empty() {
                    "-".into()
                } else {
                    ids.join(", ")
                }
            )],
        );
    };
    let mut passed = true;
    let mut ev = vec![format!("{} ({}), ingress:", sg.id, sg.name)];
    let wanted = naming::ingress_rules(spec);
    for w in &wanted {
        let what = format!(
            "{} {}/{} from {}",
            w.description.split(' ').next().unwrap_or(""),
            w.rule.protocol,
            naming::ports(&w.rule),
            w.rule.source
        );
        if sg.ingress.contains(&w.rule) {
            ev.push(format!("  allowed: {what}"));
        } else {
            passed = false;
            ev.push(format!("  MISSING: {what} (the spec allows it)"));
        }
    }
    for r in &sg.ingress {
        if !wanted.iter().any(|w| &w.rule == r) {
            passed = false;
            ev.push(format!(
                "  NOT IN THE SPEC: {}/{} from {}",
                r.protocol,
                naming::ports(r),
                r.source
            ));
        }
    }
    for n in &spec.nodes.nodes {
        let Some(i) = node_instance(observed, &n.name) else {
            passed = false;
            ev.push(format!("{}: no instance", n.name));
            continue;
        };
        if i.security_group_ids != [sg.id.clone()] {
            passed = false;
            ev.push(format!(
                "{} ({}): in {} (expected only {})",
                n.name,
                i.id,
                if i.security_group_ids.is_empty() {
                    "no group".into()
                } else {
                    i.security_group_ids.join(", ")
                },
                sg.id
            ));
        }
    }
    if passed {
        ev.push(format!("every node is in {} and no other group", sg.id));
    }
    Check {
        name: name.into(),
        passed,
        evidence: ev,
    }
}

/// Every node answers metadata requests only with a session token (IMDSv2) and carries no IAM
/// instance profile (no AWS credentials on the nodes).
pub fn instance_metadata(spec: &Spec, observed: &Observed) -> Check {
    let mut passed = true;
    let mut ev = Vec::new();
    for n in &spec.nodes.nodes {
        let Some(i) = node_instance(observed, &n.name) else {
            passed = false;
            ev.push(format!("{}: no instance", n.name));
            continue;
        };
        let tokens = i.http_tokens.as_deref().unwrap_or("unknown");
        let ok_tokens = tokens == "required";
        let profile = match &i.instance_profile {
            None => "no instance profile".to_string(),
            Some(arn) => format!("instance profile {arn} [expected none] WRONG"),
        };
        passed &= ok_tokens && i.instance_profile.is_none();
        ev.push(format!(
            "{} ({}): HttpTokens={tokens}{}, {profile}",
            n.name,
            i.id,
            if ok_tokens {
                ""
            } else {
                " [expected required: IMDSv2 only] WRONG"
            }
        ));
    }
    Check {
        name: "instance metadata".into(),
        passed,
        evidence: ev,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::IngressRule;

    /// The reference spec's security group and instances as `apply` leaves them.
    fn applied(spec: &Spec) -> Observed {
        let sg = observed::SecurityGroup {
            id: "sg-1".into(),
            name: "prod-redis-redis".into(),
            vpc_id: "vpc-1".into(),
            ingress: naming::ingress_rules(spec)
                .into_iter()
                .map(|r| r.rule)
                .collect(),
            tags: [(
                tags::ROLE.to_string(),
                tags::Role::SecurityGroup.as_str().to_string(),
            )]
            .into(),
        };
        let instances = spec
            .nodes
            .nodes
            .iter()
            .enumerate()
            .map(|(k, n)| observed::Instance {
                id: format!("i-{k}"),
                state: "running".into(),
                instance_type: "t3.micro".into(),
                image_id: "ami-1".into(),
                subnet_id: None,
                private_ip: Some(n.private_ip),
                public_ip: None,
                key_name: None,
                security_group_ids: vec!["sg-1".into()],
                root_device_name: None,
                block_devices: Default::default(),
                launch_time: None,
                http_tokens: Some("required".into()),
                instance_profile: None,
                tags: [(tags::NODE.to_string(), n.name.clone())].into(),
            })
            .collect();
        Observed {
            security_groups: vec![sg],
            instances,
            ..Default::default()
        }
    }

    #[test]
    fn security_group_is_exactly_the_specs() {
        let spec = crate::redis::test_spec::reference();
        let mut o = applied(&spec);
        let c = security_group(&spec, &o);
        assert!(c.passed, "{c:?}");
        assert!(
            c.evidence
                .iter()
                .any(|e| e.contains("allowed: ssh tcp/22 from 203.0.113.7/32")),
            "{c:?}"
        );
        assert!(
            c.evidence.last().unwrap().contains("every node is in sg-1"),
            "{c:?}"
        );

        // A rule added out of band, a rule removed, a node in a second group: each named.
        o.security_groups[0].ingress.retain(|r| r.from_port != 22);
        o.security_groups[0].ingress.push(IngressRule {
            protocol: "tcp".into(),
            from_port: 6379,
            to_port: 6379,
            source: "0.0.0.0/0".into(),
        });
        o.instances[1].security_group_ids.push("sg-2".into());
        let c = security_group(&spec, &o);
        assert!(!c.passed);
        let ev = c.evidence.join("\n");
        assert!(
            ev.contains("MISSING: ssh tcp/22 from 203.0.113.7/32"),
            "{ev}"
        );
        assert!(
            ev.contains("NOT IN THE SPEC: tcp/6379 from 0.0.0.0/0"),
            "{ev}"
        );
        assert!(
            ev.contains("(i-1): in sg-1, sg-2 (expected only sg-1)"),
            "{ev}"
        );

        // No group at all.
        o.security_groups.clear();
        let c = security_group(&spec, &o);
        assert!(!c.passed);
        assert!(c.evidence[0].contains("found 0"), "{c:?}");
    }

    #[test]
    fn instance_metadata_requires_imdsv2_and_no_profile() {
        let spec = crate::redis::test_spec::reference();
        let mut o = applied(&spec);
        let c = instance_metadata(&spec, &o);
        assert!(c.passed, "{c:?}");
        assert!(
            c.evidence[0].ends_with("(i-0): HttpTokens=required, no instance profile"),
            "{c:?}"
        );
        o.instances[0].http_tokens = Some("optional".into());
        o.instances[2].instance_profile = Some("arn:aws:iam::1:instance-profile/x".into());
        let c = instance_metadata(&spec, &o);
        assert!(!c.passed);
        assert!(
            c.evidence[0].contains("HttpTokens=optional [expected required: IMDSv2 only] WRONG"),
            "{c:?}"
        );
        assert!(
            c.evidence[2].contains(
                "instance profile arn:aws:iam::1:instance-profile/x [expected none] WRONG"
            ),
            "{c:?}"
        );
        o.instances.remove(1);
        assert!(instance_metadata(&spec, &o).evidence[1].ends_with(": no instance"));
    }

    #[test]
    fn file_modes_name_each_wrong_file() {
        let listing = |key: &str| {
            format!(
                "640 root:redis /etc/redis/redis-cluster.conf\n644 root:root /etc/systemd/system/redis-server@.service.d/redisctl.conf\n640 root:redis /etc/redis/users.acl\n644 root:redis /etc/redis/tls/ca.crt\n644 root:redis /etc/redis/tls/redis.crt\n{key}"
            )
        };
        let probe = |node: &str, modes: String| NodeProbe {
            node: node.into(),
            ip: Ipv4Addr::new(10, 0, 1, 10),
            az: "a".into(),
            out: Ok(ProbeOut {
                modes,
                ..Default::default()
            }),
        };
        let good = probe("n1", listing("640 root:redis /etc/redis/tls/redis.key"));
        let c = file_modes(std::slice::from_ref(&good));
        assert!(c.passed, "{c:?}");
        assert_eq!(c.evidence, ["n1: 6 files with their modes and owners"]);
        let bad = probe("n2", listing("644 ubuntu:redis /etc/redis/tls/redis.key"));
        let gone = probe(
            "n3",
            listing("missing /etc/redis/tls/redis.key").replace(
                "644 root:root /etc/systemd/system/redis-server@.service.d/redisctl.conf",
                "missing /etc/systemd/system/redis-server@.service.d/redisctl.conf",
            ),
        );
        let c = file_modes(&[good, bad, gone]);
        assert!(!c.passed);
        assert_eq!(
            c.evidence[1],
            "n2: /etc/redis/tls/redis.key is 0644 ubuntu:redis [expected 0640 root:redis] WRONG"
        );
        // No drop-in is right on a host without systemd; a missing key is not.
        assert_eq!(
            c.evidence[2],
            "n3: /etc/redis/tls/redis.key is missing WRONG"
        );
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

    #[test]
    fn key_slots_match_redis() {
        // Values from CLUSTER KEYSLOT on Redis 7.0.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
        assert_eq!(key_slot("123456789"), 0x31C3);
    }

    #[test]
    fn globs() {
        assert!(glob("session:*", "session:redisctl-verify"));
        assert!(!glob("session:*", "redisctl-verify:outside"));
        assert!(glob("*", "anything"));
        assert!(glob("h?llo", "hello"));
        assert!(glob("h[ae]llo", "hallo"));
        assert!(!glob("h[^e]llo", "hello"));
        assert!(glob("h[a-c]llo", "hbllo"));
        assert_eq!(key_in("cache:*").as_deref(), Some("cache:redisctl-verify"));
        assert_eq!(key_outside(&["*".into()]), None);
        assert_eq!(
            key_outside(&["session:*".into()]).as_deref(),
            Some("redisctl-verify:outside")
        );
    }

    #[test]
    fn classifies_replies() {
        assert_eq!(classify("OK\n", Some(0)), Outcome::Allowed("OK".into()));
        assert!(matches!(
            classify(
                "NOPERM this user has no permissions to run the 'flushall' command\n",
                Some(1)
            ),
            Outcome::Denied(_)
        ));
        assert!(matches!(
            classify("ERR syntax error\n", Some(1)),
            Outcome::Allowed(_)
        ));
        assert!(matches!(
            classify(
                "AUTH failed: WRONGPASS invalid username-password pair\nNOAUTH x\n",
                Some(1)
            ),
            Outcome::Broken(_)
        ));
        assert!(matches!(classify("", Some(124)), Outcome::Broken(_)));
        assert_eq!(classify("\n", Some(0)), Outcome::Allowed("(nil)".into()));
    }

    #[test]
    fn finds_gaps() {
        let r = |s, e| SlotRange { start: s, end: e };
        assert!(holes(&[r(0, 5460), r(5461, 10922), r(10923, 16383)]).is_empty());
        assert_eq!(
            holes(&[r(0, 5460), r(10923, 16383)]),
            vec!["gap 5461-10922".to_string()]
        );
        assert_eq!(holes(&[r(0, 100)]), vec!["gap 101-16383".to_string()]);
    }

    #[test]
    fn app_tries_follow_its_rules() {
        let spec = crate::redis::test_spec::reference();
        let app = spec.users.iter().find(|u| u.name == "app").unwrap();
        let tries = acl_tries(app, "t");
        let get = |l: &str| tries.iter().find(|t| t.label.starts_with(l)).unwrap();
        assert!(get("SET session:redisctl-verify").expect_allowed);
        assert!(!get("SET redisctl-verify:outside").expect_allowed);
        assert!(!get("FLUSHALL").expect_allowed);
        assert!(!get("CONFIG GET").expect_allowed);
        assert!(get("CLUSTER SLOTS").expect_allowed);
        assert_eq!(data_writer(&spec).name, "app");
    }
}
