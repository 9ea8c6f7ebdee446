//! `[security_group]`: who reaches SSH (no silent 0.0.0.0/0) and who reaches Redis and its bus.

use super::checks::{cidr, is_private};
use crate::spec::diag::Diags;
use crate::spec::raw::RawSecurityGroup;
use crate::spec::types::{Network, SecurityGroup};

pub(super) fn security_group(
    raw: Option<&RawSecurityGroup>,
    network: &Option<Network>,
    d: &mut Diags<'_>,
) -> Option<SecurityGroup> {
    let Some(raw) = raw else {
        d.error_help(
            "security_group.ssh_cidrs",
            "is required: the addresses allowed to reach SSH (port 22)",
            "add [security_group] with ssh_cidrs = [\"<your admin IP>/32\"]",
        );
        return None;
    };
    let allow_any = raw.allow_ssh_from_anywhere.unwrap_or(false);
    let mut ssh = Vec::new();
    match &raw.ssh_cidrs {
        None => d.error_help(
            "security_group.ssh_cidrs",
            "is required: the addresses allowed to reach SSH (port 22)",
            "for example ssh_cidrs = [\"203.0.113.7/32\"]",
        ),
        Some(list) if list.is_empty() => d.error(
            "security_group.ssh_cidrs",
            "is empty: nobody could reach the nodes over SSH",
        ),
        Some(list) => {
            for (i, c) in list.iter().enumerate() {
                let p = format!("security_group.ssh_cidrs[{i}]");
                let Some(net) = cidr(c, &p, d) else { continue };
                if net.prefix_len() == 0 && !allow_any {
                    d.error_help(
                        &p,
                        "0.0.0.0/0 opens SSH to the whole internet",
                        "name your admin addresses, or set allow_ssh_from_anywhere = true if you really mean it",
                    );
                } else if net.prefix_len() < 24 {
                    d.warn(
                        &p,
                        format!(
                            "SSH is open to {net}, wider than a /24 ({} addresses)",
                            net.hosts().count().max(1)
                        ),
                        "narrow it to your admin hosts or bastion",
                    );
                }
                ssh.push(net);
            }
        }
    }
    let redis_cidrs = match &raw.redis_cidrs {
        None => network
            .as_ref()
            .map(|n| vec![n.vpc_cidr])
            .unwrap_or_default(),
        Some(list) => {
            if list.is_empty() {
                d.error(
                    "security_group.redis_cidrs",
                    "is empty: the nodes could not talk to each other; omit it to default to the VPC CIDR",
                );
            }
            let mut out = Vec::new();
            for (i, c) in list.iter().enumerate() {
                let p = format!("security_group.redis_cidrs[{i}]");
                let Some(net) = cidr(c, &p, d) else { continue };
                if !is_private(&net) {
                    d.warn(
                        &p,
                        format!("Redis and its cluster bus are open to {net}, which is not a private range"),
                        "keep Redis reachable from inside the VPC only",
                    );
                }
                out.push(net);
            }
            if let Some(n) = network
                && !out.iter().any(|c| c.contains(&n.vpc_cidr))
            {
                d.warn(
                    "security_group.redis_cidrs",
                    format!("none of these contains the VPC CIDR {}: nodes may not reach each other's bus port", n.vpc_cidr),
                    "include the VPC CIDR",
                );
            }
            out
        }
    };
    Some(SecurityGroup {
        ssh_cidrs: ssh,
        allow_ssh_from_anywhere: allow_any,
        redis_cidrs,
        sentinel: raw.sentinel.unwrap_or(false),
    })
}
