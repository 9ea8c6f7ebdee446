//! `[network]`: the VPC CIDR and its subnets, one per AZ (three /24s by default).

use std::collections::{BTreeMap, BTreeSet};

use super::checks::{az_in_region, az_suffix, cidr, is_dns_label, is_private, overlaps};
use super::cluster::ClusterOut;
use crate::spec::diag::Diags;
use crate::spec::raw::RawNetwork;
use crate::spec::types::{Network, Subnet};

const DEFAULT_VPC_CIDR: &str = "10.0.0.0/16";

pub(super) fn network(
    raw: Option<&RawNetwork>,
    cluster: &Option<ClusterOut>,
    d: &mut Diags<'_>,
) -> Option<Network> {
    let default = RawNetwork::default();
    let raw = raw.unwrap_or(&default);
    let (cluster, cluster_ok) = cluster.as_ref()?;
    let vpc_text = raw.vpc_cidr.as_deref().unwrap_or(DEFAULT_VPC_CIDR);
    let vpc = cidr(vpc_text, "network.vpc_cidr", d)?;
    if !(16..=28).contains(&vpc.prefix_len()) {
        d.error(
            "network.vpc_cidr",
            format!(
                "a VPC CIDR block is between /16 and /28 (AWS), got /{}",
                vpc.prefix_len()
            ),
        );
    }
    if !is_private(&vpc) {
        d.warn(
            "network.vpc_cidr",
            format!("{vpc} is not a private (RFC 1918) range"),
            "use a range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
        );
    }
    let subnets = match &raw.subnets {
        Some(list) => {
            if list.is_empty() {
                d.error("network.subnets", "needs at least one subnet");
            }
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                let p = format!("network.subnets[{i}]");
                let Some(az) = s.az.clone() else {
                    d.error(&format!("{p}.az"), "is required");
                    continue;
                };
                let Some(c) = &s.cidr else {
                    d.error(&format!("{p}.cidr"), "is required");
                    continue;
                };
                let Some(c) = cidr(c, &format!("{p}.cidr"), d) else {
                    continue;
                };
                let name = s
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("redis-subnet-{}", az_suffix(&az)));
                out.push((i, Subnet { name, az, cidr: c }));
            }
            out
        }
        None => {
            if vpc.prefix_len() > 22 {
                d.error_help(
                    "network.vpc_cidr",
                    format!("{vpc} is too small for the default three /24 subnets"),
                    "list the subnets under [[network.subnets]]",
                );
                return None;
            }
            let mut s24 = vpc.subnets(24).ok()?.skip(1);
            ["a", "b", "c"]
                .iter()
                .enumerate()
                .map(|(i, letter)| {
                    let az = format!("{}{letter}", cluster.region);
                    let name = format!("redis-subnet-{}", az_suffix(&az));
                    (
                        i,
                        Subnet {
                            name,
                            az,
                            cidr: s24.next().expect("a /22 or larger VPC has four /24s"),
                        },
                    )
                })
                .collect()
        }
    };
    let mut names = BTreeSet::new();
    let mut azs = BTreeMap::new();
    for (idx, (i, s)) in subnets.iter().enumerate() {
        let p = format!("network.subnets[{i}]");
        if !is_dns_label(&s.name, 63) {
            d.error(
                &format!("{p}.name"),
                format!(
                    "`{}` is not a valid name: lower-case letters, digits and -",
                    s.name
                ),
            );
        }
        if !names.insert(s.name.clone()) {
            d.error(
                &format!("{p}.name"),
                format!("duplicate subnet name `{}`", s.name),
            );
        }
        if *cluster_ok && !az_in_region(&s.az, &cluster.region) {
            d.error(
                &format!("{p}.az"),
                format!(
                    "availability zone `{}` is not in region {} (expected {}a, {}b, …)",
                    s.az, cluster.region, cluster.region, cluster.region
                ),
            );
        }
        if let Some(other) = azs.insert(s.az.clone(), *i) {
            d.error_help(
                &format!("{p}.az"),
                format!(
                    "availability zone `{}` is already used by network.subnets[{other}]",
                    s.az
                ),
                "each subnet goes in its own AZ so that losing one AZ loses one subnet",
            );
        }
        if !vpc.contains(&s.cidr) {
            d.error(
                &format!("{p}.cidr"),
                format!("{} is not inside the VPC CIDR {vpc}", s.cidr),
            );
        }
        if !(16..=28).contains(&s.cidr.prefix_len()) {
            d.error(
                &format!("{p}.cidr"),
                format!(
                    "a subnet is between /16 and /28 (AWS), got /{}",
                    s.cidr.prefix_len()
                ),
            );
        }
        for (j, other) in subnets.iter().take(idx) {
            if overlaps(&s.cidr, &other.cidr) {
                d.error(
                    &format!("{p}.cidr"),
                    format!("{} overlaps network.subnets[{j}] ({})", s.cidr, other.cidr),
                );
            }
        }
    }
    Some(Network {
        vpc_cidr: vpc,
        subnets: subnets.into_iter().map(|(_, s)| s).collect(),
    })
}
