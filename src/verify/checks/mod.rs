//! The pure half of verify: what redis-cli printed on the nodes (and what EC2 said) in, checks
//! with evidence out. No I/O here, so every rule is unit-tested on captured text. One file per
//! family of checks; this file holds what they share: the probe's sections they read, and how a
//! command's output is read.

pub mod acl;
pub mod aws;
pub mod data;
pub mod files;
pub mod health;
pub mod tls;

use std::net::Ipv4Addr;

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
    /// One line per [`tls::HANDSHAKES`] entry: `<label> rc=<openssl's exit> <its first telling
    /// line>` (`Protocol version: TLSv1.3`, an alert, an error).
    pub handshakes: String,
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
