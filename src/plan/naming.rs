//! Names, tags, rules and tokens derived from the spec: the planner decides them, the executor
//! only uses them.

use sha2::{Digest, Sha256};

use super::model::RuleSpec;
use crate::observed::tags::{self, Role};
use crate::observed::{IngressRule, Tags};
use crate::spec::Spec;

/// The tags of one resource: the spec's extra tags, a readable Name, and the redisctl tags.
pub fn tags(spec: &Spec, role: Role, name: &str, node: Option<&str>) -> Tags {
    let mut t = spec.cluster.tags.clone();
    t.insert("Name".into(), format!("{}-{name}", spec.cluster.name));
    t.insert(tags::CLUSTER.into(), spec.cluster.name.clone());
    t.insert(tags::ROLE.into(), role.as_str().into());
    if let Some(n) = node {
        t.insert(tags::NODE.into(), n.into());
    }
    t
}

pub fn security_group_name(spec: &Spec) -> String {
    format!("{}-redis", spec.cluster.name)
}

/// The ingress rules the spec asks for, each labelled (`ssh 203.0.113.7/32`); the label is the
/// rule's plan address and its description in AWS.
pub fn ingress_rules(spec: &Spec) -> Vec<RuleSpec> {
    let sg = &spec.security_group;
    let mut out = Vec::new();
    let mut add = |label: &str, from: u16, to: u16, source: String| {
        out.push(RuleSpec {
            description: format!("{label} {source}"),
            rule: IngressRule {
                protocol: "tcp".into(),
                from_port: from.into(),
                to_port: to.into(),
                source,
            },
        });
    };
    for c in &sg.ssh_cidrs {
        add("ssh", 22, 22, c.to_string());
    }
    for c in &sg.redis_cidrs {
        add("redis", spec.redis.port, spec.redis.port, c.to_string());
    }
    for c in &sg.redis_cidrs {
        let bus = spec.redis.bus_port();
        add("bus", bus, bus, c.to_string());
    }
    if sg.sentinel {
        for c in &sg.redis_cidrs {
            add("sentinel", 26379, 26381, c.to_string());
        }
    }
    out
}

/// `22` or `26379-26381` (`all` for protocol -1).
pub fn ports(r: &IngressRule) -> String {
    if r.protocol == "-1" {
        "all".into()
    } else if r.from_port == r.to_port {
        r.from_port.to_string()
    } else {
        format!("{}-{}", r.from_port, r.to_port)
    }
}

/// The key type and the start of the key, enough to tell keys apart at a glance.
pub fn short_key(key: &str) -> String {
    let mut parts = key.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    let tail: String = body
        .chars()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{kind} …{tail}")
}

/// Two OpenSSH public keys are the same key when type and body match (comments differ).
pub fn same_public_key(a: &str, b: &str) -> bool {
    fn key(s: &str) -> Vec<&str> {
        s.split_whitespace().take(2).collect()
    }
    let (a, b) = (key(a), key(b));
    a.len() == 2 && a == b
}

/// RunInstances idempotency token: stable for one plan (so a retried call returns the first
/// instance on AWS), different after the world changed (so a node re-created later is new).
pub fn client_token(cluster: &str, node: &str, observed_fingerprint: &str) -> String {
    let h = Sha256::digest(format!("{cluster}\0{node}\0{observed_fingerprint}").as_bytes());
    format!("redisctl-{}", &hex::encode(h)[..40])
}
