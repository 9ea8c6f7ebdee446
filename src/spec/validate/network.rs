//! `[network]`: the VPC CIDR and its subnets, one per AZ (three /24s by default), and how the
//! nodes reach the internet (`egress`; with a NAT gateway, the public subnet it lives in).

use std::collections::{BTreeMap, BTreeSet};

use super::checks::{az_in_region, az_suffix, cidr, is_dns_label, is_private, overlaps};
use super::cluster::ClusterOut;
use crate::spec::diag::Diags;
use crate::spec::raw::RawNetwork;
use crate::spec::types::{Egress, Network, Subnet};

const DEFAULT_VPC_CIDR: &str = "10.0.0.0/16";

/// Subnets per VPC, AWS's default quota.
const MAX_SUBNETS: usize = 200;

/// `raw_via` is the spec's `ssh.via` as written (checked by the ssh section): the default
/// egress follows it, as nodes reached by their public IPs leave by them too.
pub(super) fn network(
    raw: Option<&RawNetwork>,
    cluster: &Option<ClusterOut>,
    raw_via: Option<&str>,
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
        Some(list) if list.len() > MAX_SUBNETS => {
            d.error_help(
                "network.subnets",
                format!(
                    "{} subnets: a VPC holds at most {MAX_SUBNETS} (AWS's quota)",
                    list.len()
                ),
                "one subnet per availability zone is what a cluster needs",
            );
            return None;
        }
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
        // The first subnet it overlaps: one error per subnet, not one per pair.
        if let Some((j, other)) = subnets
            .iter()
            .take(idx)
            .find(|(_, other)| overlaps(&s.cidr, &other.cidr))
        {
            d.error(
                &format!("{p}.cidr"),
                format!("{} overlaps network.subnets[{j}] ({})", s.cidr, other.cidr),
            );
        }
    }
    let subnets: Vec<Subnet> = subnets.into_iter().map(|(_, s)| s).collect();
    let egress = match raw.egress.as_deref() {
        Some(text) => match Egress::parse(text) {
            Some(e) => e,
            None => {
                d.error(
                    "network.egress",
                    format!("`{text}` is not one of \"public-ip\", \"nat-gateway\", \"none\""),
                );
                return None;
            }
        },
        None if raw_via == Some("private-ip") => Egress::NatGateway,
        None => Egress::PublicIp,
    };
    let nat_subnet = match egress {
        Egress::NatGateway => nat_subnet(
            raw,
            &vpc,
            &subnets,
            cluster_ok.then_some(&cluster.region),
            d,
        ),
        _ => {
            if raw.nat_subnet.is_some() {
                d.warn(
                    "network.nat_subnet",
                    format!(
                        "is used only with egress = \"nat-gateway\" (this spec says \"{}\")",
                        egress.as_str()
                    ),
                    "remove it, or set network.egress = \"nat-gateway\"",
                );
            }
            None
        }
    };
    Some(Network {
        vpc_cidr: vpc,
        subnets,
        egress,
        nat_subnet,
    })
}

/// The NAT gateway's public subnet: as written, or by default in the first subnet's AZ with
/// the VPC's first /24 (or, in a small VPC, /28) that no node subnet overlaps.
fn nat_subnet(
    raw: &RawNetwork,
    vpc: &ipnet::Ipv4Net,
    subnets: &[Subnet],
    region: Option<&String>,
    d: &mut Diags<'_>,
) -> Option<Subnet> {
    let p = "network.nat_subnet";
    let given = raw.nat_subnet.clone().unwrap_or_default();
    let az = match (&given.az, subnets.first()) {
        (Some(az), _) => az.clone(),
        (None, Some(first)) => first.az.clone(),
        (None, None) => return None,
    };
    let cidr = match &given.cidr {
        Some(text) => cidr(text, &format!("{p}.cidr"), d)?,
        None => {
            let len = vpc.prefix_len().clamp(24, 28);
            let free = vpc
                .subnets(len)
                .ok()?
                .find(|c| !subnets.iter().any(|s| overlaps(c, &s.cidr)));
            match free {
                Some(c) => c,
                None => {
                    d.error_help(
                        p,
                        format!("the VPC {vpc} has no free /{len} left for the NAT gateway's public subnet"),
                        "give network.nat_subnet.cidr, or a larger network.vpc_cidr",
                    );
                    return None;
                }
            }
        }
    };
    let name = given
        .name
        .clone()
        .unwrap_or_else(|| format!("redis-nat-subnet-{}", az_suffix(&az)));
    if !is_dns_label(&name, 63) {
        d.error(
            &format!("{p}.name"),
            format!("`{name}` is not a valid name: lower-case letters, digits and -"),
        );
    }
    if subnets.iter().any(|s| s.name == name) {
        d.error(
            &format!("{p}.name"),
            format!("`{name}` is already the name of a node subnet"),
        );
    }
    if let Some(region) = region
        && !az_in_region(&az, region)
    {
        d.error(
            &format!("{p}.az"),
            format!("availability zone `{az}` is not in region {region}"),
        );
    }
    if !vpc.contains(&cidr) {
        d.error(
            &format!("{p}.cidr"),
            format!("{cidr} is not inside the VPC CIDR {vpc}"),
        );
    }
    if !(16..=28).contains(&cidr.prefix_len()) {
        d.error(
            &format!("{p}.cidr"),
            format!(
                "a subnet is between /16 and /28 (AWS), got /{}",
                cidr.prefix_len()
            ),
        );
    }
    for (i, s) in subnets.iter().enumerate() {
        if overlaps(&cidr, &s.cidr) {
            d.error_help(
                &format!("{p}.cidr"),
                format!("{cidr} overlaps network.subnets[{i}] ({})", s.cidr),
                "the NAT gateway's public subnet holds no node: give it a block of its own",
            );
        }
    }
    Some(Subnet { name, az, cidr })
}

/// The nodes can be reached the way `ssh.via` says and can get Redis: a public IP to SSH to
/// needs `egress = "public-ip"`; no way out needs an image that holds Redis already.
pub(super) fn ways_out(
    network: &Network,
    nodes: &crate::spec::types::Nodes,
    ssh: &crate::spec::types::Ssh,
    d: &mut Diags<'_>,
) {
    use crate::spec::types::{Ami, SshVia};
    if ssh.via == SshVia::PublicIp && network.egress != Egress::PublicIp {
        d.error_help(
            "ssh.via",
            format!(
                "\"public-ip\", but with network.egress = \"{}\" the nodes have no public IP",
                network.egress.as_str()
            ),
            "reach them by their private IPs (via = \"private-ip\", from a bastion, a VPN or inside the VPC), or set network.egress = \"public-ip\"",
        );
    }
    if network.egress == Egress::None && !nodes.image_has_redis {
        d.error_help(
            "network.egress",
            "\"none\" leaves the nodes no way to the package archive: `apt-get install redis-server` would fail on every node",
            "use egress = \"nat-gateway\" (a NAT gateway in a public subnet of its own), or build an image with redis-server and redis-tools, name it in nodes.ami and set nodes.image_has_redis = true",
        );
    }
    if nodes.image_has_redis && nodes.ami == Ami::Ubuntu2404 {
        d.error_help(
            "nodes.image_has_redis",
            format!(
                "true, but nodes.ami = \"{}\" is Canonical's stock image, which has no Redis",
                crate::spec::UBUNTU_2404
            ),
            "name the image that holds redis-server and redis-tools in nodes.ami (\"ami-…\")",
        );
    }
}
