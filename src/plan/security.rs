//! The security group's ingress rules: which traffic the spec allows, from where, on which
//! ports. The planner authorizes them and revokes any other; verify checks them. SSH comes from
//! `ssh_cidrs`, Redis from `redis_cidrs`, the cluster bus from the group itself (the nodes).

use super::model::RuleSpec;
use crate::observed::{IngressRule, SELF_SOURCE};
use crate::spec::Spec;

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
    // The bus is node-to-node: no client needs it, and a client certificate from the cluster's
    // CA would otherwise open it. Only the group's own members (the nodes) may connect.
    let bus = spec.redis.bus_port();
    add("bus", bus, bus, SELF_SOURCE.to_string());
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
