//! `[nodes]`: instance type, AMI, masters × (1 + replicas), and each node's subnet and private
//! IP, either derived (round-robin over the subnets) or listed under `[[nodes.node]]`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::checks::{az_suffix, int_in, is_ami_id, is_dns_label, is_instance_type, usable_ip};
use super::root_volume::root_volume;
use crate::spec::diag::Diags;
use crate::spec::raw::{RawNode, RawNodes};
use crate::spec::types::{Ami, Network, Node, Nodes, UBUNTU_2404};

/// First host offset of the default node addresses in each subnet (`.10`, `.11`, …).
const DEFAULT_NODE_OFFSET: u32 = 10;

pub(super) fn nodes(
    raw: Option<&RawNodes>,
    network: &Option<Network>,
    d: &mut Diags<'_>,
) -> Option<Nodes> {
    let default = RawNodes::default();
    let raw = raw.unwrap_or(&default);
    let instance_type = raw
        .instance_type
        .clone()
        .unwrap_or_else(|| "t2.micro".into());
    if !is_instance_type(&instance_type) {
        d.error(
            "nodes.instance_type",
            format!("`{instance_type}` is not an EC2 instance type (like t3.medium or r7g.large)"),
        );
    }
    let ami = match raw.ami.as_deref() {
        None | Some(UBUNTU_2404) => Ami::Ubuntu2404,
        Some(id) if is_ami_id(id) => Ami::Id(id.into()),
        Some(other) => {
            d.error(
                "nodes.ami",
                format!("`{other}` is neither `{UBUNTU_2404}` nor an AMI id (ami- and 8 or 17 hex digits)"),
            );
            Ami::Ubuntu2404
        }
    };
    let masters = int_in(raw.masters, 3, 3, 500, "nodes.masters", d);
    if raw.masters.is_some_and(|m| (0..3).contains(&m)) {
        // int_in already said the range; say why.
        if let Some(last) = d.list.last_mut() {
            last.help = Some("Redis Cluster needs at least 3 masters to hold a majority".into());
        }
    }
    let replicas = int_in(
        raw.replicas_per_master,
        0,
        0,
        5,
        "nodes.replicas_per_master",
        d,
    );
    if replicas == Some(0) {
        d.warn(
            "nodes.replicas_per_master",
            "no replicas: losing any one node takes the whole cluster down (its slots have no copy)",
            "set replicas_per_master = 1 so that a replica takes over when a node fails",
        );
    }
    let root_volume = root_volume(raw.root_volume.as_ref(), d);
    let network = network.as_ref()?;
    let (masters, replicas) = (masters?, replicas?);
    let count = masters * (1 + replicas);
    let nodes = match &raw.nodes {
        None => default_nodes(network, count, d)?,
        Some(list) => {
            if list.len() as u32 != count {
                d.error_help(
                    "nodes.node",
                    format!(
                        "{} nodes listed, but masters × (1 + replicas_per_master) = {masters} × {} = {count}",
                        list.len(),
                        1 + replicas
                    ),
                    "list exactly that many [[nodes.node]] entries, or remove them all to use the defaults",
                );
            }
            explicit_nodes(list, network, d)
        }
    };
    check_spread(&nodes, network, d);
    Some(Nodes {
        instance_type,
        ami,
        masters,
        replicas_per_master: replicas,
        root_volume: root_volume?,
        image_has_redis: raw.image_has_redis.unwrap_or(false),
        nodes,
    })
}

fn default_nodes(network: &Network, count: u32, d: &mut Diags<'_>) -> Option<Vec<Node>> {
    let n = network.subnets.len() as u32;
    if n == 0 {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..count {
        let s = &network.subnets[(i % n) as usize];
        let k = i / n;
        let ip = u32::from(s.cidr.network()) + DEFAULT_NODE_OFFSET + k;
        let ip = Ipv4Addr::from(ip);
        if !usable_ip(&s.cidr, ip) {
            d.error_help(
                "nodes",
                format!(
                    "subnet {} ({}) has no room for the default node address {ip}",
                    s.name, s.cidr
                ),
                "use larger subnets or list the nodes under [[nodes.node]]",
            );
            return None;
        }
        let suffix = az_suffix(&s.az);
        let name = if k == 0 {
            format!("redis-node-{suffix}")
        } else {
            format!("redis-node-{suffix}-{}", k + 1)
        };
        out.push(Node {
            name,
            subnet: s.name.clone(),
            az: s.az.clone(),
            private_ip: ip,
        });
    }
    Some(out)
}

fn explicit_nodes(list: &[RawNode], network: &Network, d: &mut Diags<'_>) -> Vec<Node> {
    let mut out = Vec::new();
    let mut names = BTreeMap::new();
    let mut ips = BTreeMap::new();
    for (i, n) in list.iter().enumerate() {
        let p = format!("nodes.node[{i}]");
        let (Some(name), Some(subnet), Some(ip)) = (&n.name, &n.subnet, &n.private_ip) else {
            for (key, v) in [
                ("name", n.name.is_none()),
                ("subnet", n.subnet.is_none()),
                ("private_ip", n.private_ip.is_none()),
            ] {
                if v {
                    d.error(&format!("{p}.{key}"), "is required for a listed node");
                }
            }
            continue;
        };
        if !is_dns_label(name, 63) {
            d.error(
                &format!("{p}.name"),
                format!("`{name}` is not a valid node name: lower-case letters, digits and -, starting with a letter"),
            );
        }
        if let Some(j) = names.insert(name.clone(), i) {
            d.error(
                &format!("{p}.name"),
                format!("duplicate node name `{name}` (also nodes.node[{j}])"),
            );
        }
        let Some(s) = network.subnets.iter().find(|s| &s.name == subnet) else {
            let known: Vec<&str> = network.subnets.iter().map(|s| s.name.as_str()).collect();
            d.error(
                &format!("{p}.subnet"),
                format!("no subnet named `{subnet}` (subnets: {})", known.join(", ")),
            );
            continue;
        };
        let Ok(addr) = ip.parse::<Ipv4Addr>() else {
            d.error(
                &format!("{p}.private_ip"),
                format!("`{ip}` is not an IPv4 address"),
            );
            continue;
        };
        if !s.cidr.contains(&addr) {
            d.error(
                &format!("{p}.private_ip"),
                format!("{addr} is not inside subnet {} ({})", s.name, s.cidr),
            );
        } else if !usable_ip(&s.cidr, addr) {
            d.error_help(
                &format!("{p}.private_ip"),
                format!("{addr} is reserved by AWS in {}", s.cidr),
                "AWS reserves the first four addresses of a subnet and the last one",
            );
        }
        if let Some(j) = ips.insert(addr, i) {
            d.error(
                &format!("{p}.private_ip"),
                format!("{addr} is already used by nodes.node[{j}]"),
            );
        }
        out.push(Node {
            name: name.clone(),
            subnet: s.name.clone(),
            az: s.az.clone(),
            private_ip: addr,
        });
    }
    out
}

/// Nodes should be spread evenly over the AZs: a warning when one AZ holds two more than
/// another, or when an AZ holds none.
fn check_spread(nodes: &[Node], network: &Network, d: &mut Diags<'_>) {
    if nodes.is_empty() {
        return;
    }
    let mut per_az: BTreeMap<&str, usize> =
        network.subnets.iter().map(|s| (s.az.as_str(), 0)).collect();
    for n in nodes {
        *per_az.entry(n.az.as_str()).or_default() += 1;
    }
    let (min, max) = (
        per_az.values().min().copied().unwrap_or(0),
        per_az.values().max().copied().unwrap_or(0),
    );
    if max > min + 1 || (min == 0 && nodes.len() >= per_az.len()) {
        let spread: Vec<String> = per_az.iter().map(|(az, n)| format!("{az}: {n}")).collect();
        d.warn(
            "nodes.node",
            format!(
                "nodes are not spread evenly across availability zones ({})",
                spread.join(", ")
            ),
            "put the same number of nodes in each subnet so that losing one AZ loses the fewest",
        );
    }
}
