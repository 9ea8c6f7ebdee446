//! The nftables table that carries the network out in the operator namespace
//! ([`operator_rules`]): the internet gateway's translation, the operator's source address,
//! egress to the internet translated to its source, and each host's security groups as
//! chains of its own (ingress from hosts, ingress from the operator, egress), default deny.

use super::view::{Group, Rule, View};
use super::{ARCHIVE_ADDR, OPERATOR_ADDR, PUBLIC_RANGE};
use std::fmt::Write;
use std::net::Ipv4Addr;

/// The nftables table the front owns in the operator namespace.
pub const TABLE: &str = "vpc";

/// The nftables match of a rule's protocol and ports (`None`: the rule matches nothing nft can
/// say, e.g. an ICMP type out of range).
fn l4(rule: &Rule) -> Option<String> {
    let ports = |proto: &str| match (rule.from, rule.to) {
        (Some(f), Some(t)) if f >= 0 && t >= f && !(f == 0 && t == 65535) => Some(if f == t {
            format!("{proto} dport {f}")
        } else {
            format!("{proto} dport {f}-{t}")
        }),
        _ => Some(format!("meta l4proto {proto}")),
    };
    match rule.protocol.as_str() {
        "-1" | "all" => Some(String::new()),
        "tcp" | "6" => ports("tcp"),
        "udp" | "17" => ports("udp"),
        "icmp" | "1" => match (rule.from, rule.to) {
            (Some(t), Some(c)) if (0..=255).contains(&t) && (0..=255).contains(&c) => {
                Some(format!("icmp type {t} icmp code {c}"))
            }
            (Some(t), _) if (0..=255).contains(&t) => Some(format!("icmp type {t}")),
            _ => Some("meta l4proto icmp".into()),
        },
        n => n.parse::<u8>().ok().map(|n| format!("meta l4proto {n}")),
    }
}

/// The peers a rule allows: its CIDR blocks and the members of its groups.
fn peers(view: &View, rule: &Rule) -> Vec<String> {
    let mut out: Vec<String> = rule.cidrs.clone();
    for g in &rule.groups {
        out.extend(view.members(g).iter().map(|ip| ip.to_string()));
    }
    out
}

/// `matches l4 accept`, either part possibly empty.
fn accept(matches: &str, l4: &str) -> String {
    [matches, l4, "accept"]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

fn chain_name(prefix: &str, id: &str) -> String {
    format!("{prefix}_{}", id.replace('-', "_"))
}

/// The rule that sends a host's traffic (its private IP as `ip {field}`) to its chain
/// `{prefix}_<id>`.
fn jump(h: &Host, field: &str, prefix: &str) -> String {
    format!(
        "ip {field} {} jump {}",
        h.private_ip,
        chain_name(prefix, &h.id)
    )
}

/// A base chain (`header`: name, hook and first rules) that passes replies, then sends each
/// host's traffic to its own chain (`jumps`, one rule per host), then `tail`.
fn dispatch(s: &mut String, header: &str, jumps: impl IntoIterator<Item = String>, tail: &str) {
    let _ = writeln!(
        s,
        "  chain {header}\n    ct state established,related accept"
    );
    for jump in jumps {
        let _ = writeln!(s, "    {jump}");
    }
    let _ = writeln!(s, "{tail}  }}");
}

/// The rules of a host's chain that accept what `rules` allow, each peer matched as `ip
/// {field}` (`saddr` for ingress, `daddr` for egress).
fn by_peer(view: &View, rules: &[&Rule], field: &str) -> String {
    let mut body = String::new();
    for r in rules {
        let Some(l4) = l4(r) else { continue };
        for p in peers(view, r) {
            let _ = writeln!(body, "    {}", accept(&format!("ip {field} {p}"), &l4));
        }
    }
    body
}

/// A host's chain: `rules` (each accepts), then drop.
fn deny_after(s: &mut String, name: &str, rules: &str) {
    let _ = writeln!(s, "  chain {name} {{\n{rules}    drop\n  }}");
}

/// What the operator namespace enforces: one host per running instance with its private IP
/// and, when reachable from the internet, its public IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub id: String,
    pub private_ip: Ipv4Addr,
    pub public_ip: Option<Ipv4Addr>,
}

/// The whole table for the operator namespace (replaces the previous one atomically).
pub fn operator_rules(view: &View, hosts: &[Host], bridge: &str) -> String {
    let mut s = String::new();
    // Created empty first so that the delete never fails, then replaced as a whole.
    let _ = writeln!(
        s,
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{"
    );
    // The internet gateway: a public IP leads to its instance only through a gateway route.
    let _ = writeln!(
        s,
        "  chain igw_in {{\n    type nat hook output priority -100;"
    );
    for h in hosts {
        let reachable = view
            .instance(&h.id)
            .and_then(|i| i.subnet.as_deref())
            .is_some_and(|sub| view.routes_to_internet(sub));
        if let (Some(public), true) = (h.public_ip, reachable) {
            let _ = writeln!(s, "    ip daddr {public} dnat to {}", h.private_ip);
        }
    }
    let _ = writeln!(s, "  }}");
    // What the operator sends into the VPC leaves from its internet address.
    let _ = writeln!(
        s,
        "  chain operator_source {{\n    type nat hook postrouting priority 100;\n    oifname \"{bridge}\" fib saddr type local snat to {OPERATOR_ADDR}\n  }}"
    );
    // From the operator: a public IP not translated leads nowhere; a host's ingress rules see
    // the operator's address.
    dispatch(
        &mut s,
        &format!(
            "from_operator {{\n    type filter hook output priority 0; policy accept;\n    ip daddr {PUBLIC_RANGE} drop"
        ),
        hosts.iter().map(|h| jump(h, "daddr", "op_in")),
        "",
    );
    // To the operator namespace: replies, and new connections to the internet's services (the
    // archive) from the hosts that have a way out, after their egress rules; nothing else
    // (nothing on the operator side serves the hosts).
    let egress: Vec<(&Host, Ipv4Addr)> = hosts
        .iter()
        .filter_map(|h| Some((h, view.internet_source(&h.id, h.public_ip)?)))
        .collect();
    dispatch(
        &mut s,
        "to_operator {\n    type filter hook input priority 0; policy accept;",
        egress.iter().map(|(h, _)| {
            format!(
                "iifname \"{bridge}\" ip saddr {} ip daddr {ARCHIVE_ADDR} jump {}",
                h.private_ip,
                chain_name("out", &h.id)
            )
        }),
        &format!("    iifname \"{bridge}\" drop\n"),
    );
    // ... leaving from the host's public IP, or its NAT gateway's (source NAT).
    let _ = writeln!(
        s,
        "  chain internet_source {{\n    type nat hook input priority 100;"
    );
    for (h, source) in &egress {
        let _ = writeln!(
            s,
            "    iifname \"{bridge}\" ip saddr {} ip daddr {ARCHIVE_ADDR} snat to {source}",
            h.private_ip
        );
    }
    let _ = writeln!(s, "  }}");
    // Host to host: the sender's egress rules, then (a later base chain) the receiver's ingress.
    dispatch(
        &mut s,
        "host_egress {\n    type filter hook forward priority 0; policy accept;",
        hosts.iter().map(|h| jump(h, "saddr", "out")),
        "",
    );
    dispatch(
        &mut s,
        "host_ingress {\n    type filter hook forward priority 10; policy accept;",
        hosts.iter().map(|h| jump(h, "daddr", "in")),
        "",
    );
    for h in hosts {
        let groups: Vec<&Group> = view
            .instance(&h.id)
            .map(|i| i.groups.iter().filter_map(|g| view.groups.get(g)).collect())
            .unwrap_or_default();
        let ingress: Vec<&Rule> = groups.iter().flat_map(|g| &g.ingress).collect();
        let egress: Vec<&Rule> = groups.iter().flat_map(|g| &g.egress).collect();
        // Ingress from other hosts (by source address).
        deny_after(
            &mut s,
            &chain_name("in", &h.id),
            &by_peer(view, &ingress, "saddr"),
        );
        // Ingress from the operator: the rules whose CIDR blocks hold its address.
        let mut body = String::new();
        for r in &ingress {
            let Some(l4) = l4(r) else { continue };
            if r.cidrs
                .iter()
                .any(|c| crate::net::contains(c, OPERATOR_ADDR))
            {
                let _ = writeln!(body, "    {}", accept("", &l4));
            }
        }
        deny_after(&mut s, &chain_name("op_in", &h.id), &body);
        // Egress (by destination address).
        deny_after(
            &mut s,
            &chain_name("out", &h.id),
            &by_peer(view, &egress, "daddr"),
        );
    }
    let _ = writeln!(s, "}}");
    s
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn rules_follow_the_groups() {
        let r = operator_rules(&cluster(), &hosts(), "br0");
        // The gateway translates only the host whose subnet routes to it.
        assert!(
            r.contains("ip daddr 198.51.100.10 dnat to 10.0.1.10\n"),
            "{r}"
        );
        assert_eq!(r.matches(" dnat to ").count(), 1, "{r}");
        // The bus from the group's members only, Redis from the VPC, SSH from the operator.
        let chain = |name: &str| chain(&r, name);
        let a_in = chain("in_i_a");
        assert!(
            a_in.contains("ip saddr 10.0.1.10 tcp dport 16379 accept"),
            "{a_in}"
        );
        assert!(
            a_in.contains("ip saddr 10.0.2.10 tcp dport 16379 accept"),
            "{a_in}"
        );
        assert!(!a_in.contains("10.0.3.50"), "not a member: {a_in}");
        assert!(
            a_in.contains("ip saddr 10.0.0.0/16 tcp dport 6379 accept"),
            "{a_in}"
        );
        assert!(a_in.trim_end().ends_with("drop"), "{a_in}");
        let a_op = chain("op_in_i_a");
        assert!(a_op.contains("tcp dport 22 accept"), "{a_op}");
        assert!(
            !a_op.contains("6379"),
            "Redis is not open to the operator: {a_op}"
        );
        assert!(chain("out_i_a").contains("ip daddr 0.0.0.0/0 accept"));
        // A host whose group is unknown (or has no rules) accepts nothing.
        assert_eq!(chain("in_i_x").trim(), "chain in_i_x {\n    drop");
        assert_eq!(chain("out_i_x").trim(), "chain out_i_x {\n    drop");
    }

    #[test]
    fn only_hosts_with_a_way_out_reach_the_archive_translated() {
        let mut hs = hosts();
        let r = operator_rules(&with_nat("pending"), &hs, "br0");
        let to_op = chain(&r, "to_operator");
        assert!(
            to_op.contains("iifname \"br0\" ip saddr 10.0.1.10 ip daddr 192.0.2.80 jump out_i_a"),
            "{to_op}"
        );
        assert!(!to_op.contains("10.0.3.50"), "NAT pending: {to_op}");
        assert!(
            to_op.trim_end().ends_with("iifname \"br0\" drop"),
            "{to_op}"
        );
        let snat = chain(&r, "internet_source");
        assert!(snat.contains("type nat hook input"), "{snat}");
        assert!(
            snat.contains("ip saddr 10.0.1.10 ip daddr 192.0.2.80 snat to 198.51.100.10"),
            "{snat}"
        );
        assert_eq!(snat.matches(" snat to ").count(), 1, "{snat}");

        let r = operator_rules(&with_nat("available"), &hs, "br0");
        assert!(
            chain(&r, "internet_source")
                .contains("ip saddr 10.0.3.50 ip daddr 192.0.2.80 snat to 198.51.100.3"),
            "{r}"
        );
        assert!(
            chain(&r, "to_operator")
                .contains("ip saddr 10.0.3.50 ip daddr 192.0.2.80 jump out_i_x")
        );

        // No public IP, IGW route: nothing out.
        hs[0].public_ip = None;
        let r = operator_rules(&cluster(), &hs, "br0");
        assert!(!chain(&r, "to_operator").contains("jump"), "{r}");
        assert!(!chain(&r, "internet_source").contains("snat"), "{r}");
    }

    #[test]
    fn protocols_and_ports() {
        assert_eq!(
            l4(&rule("tcp", Some((22, 22)), &[], &[])).unwrap(),
            "tcp dport 22"
        );
        assert_eq!(
            l4(&rule("tcp", Some((26379, 26381)), &[], &[])).unwrap(),
            "tcp dport 26379-26381"
        );
        assert_eq!(
            l4(&rule("tcp", Some((0, 65535)), &[], &[])).unwrap(),
            "meta l4proto tcp"
        );
        assert_eq!(l4(&rule("-1", None, &[], &[])).unwrap(), "");
        assert_eq!(
            l4(&rule("icmp", Some((-1, -1)), &[], &[])).unwrap(),
            "meta l4proto icmp"
        );
        assert_eq!(
            l4(&rule("icmp", Some((8, -1)), &[], &[])).unwrap(),
            "icmp type 8"
        );
        assert_eq!(l4(&rule("50", None, &[], &[])).unwrap(), "meta l4proto 50");
    }

    /// nft itself reads the table (`nft -c`, in a network namespace of its own), when this
    /// machine has nft and may make one (the sandbox's machines do).
    #[test]
    fn nft_reads_the_rules() {
        let rules = operator_rules(&with_nat("available"), &hosts(), "lo");
        assert!(rules.contains(" snat to "), "{rules}");
        let child = std::process::Command::new("unshare")
            .args(["-n", "nft", "-c", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("no unshare/nft here: not checked");
            return;
        };
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("Operation not permitted") || err.contains("No such file") {
            eprintln!("cannot check here: {err}");
            return;
        }
        assert!(out.status.success(), "{err}\n{rules}");
    }
}
