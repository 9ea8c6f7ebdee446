//! Names and tags derived from the spec: the planner decides them, the executor only uses
//! them. (Idempotency tokens are the EC2 edge's: one per attempt, never derived from the spec.)

use crate::observed::Tags;
use crate::observed::tags::{self, Role};
use crate::spec::Spec;

// Re-exported: src/verify calls these as `naming::`.

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
