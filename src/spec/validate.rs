//! Raw spec -> typed [`Spec`]: defaults filled in, every rule checked, every problem reported
//! with its key path (all of them at once, not only the first).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;

use super::diag::Diags;
use super::raw::*;
use super::types::*;
use crate::redis::acl::{self, CommandRule};

/// AWS regions (commercial, GovCloud, China) as of 2026.
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_VPC_CIDR: &str = "10.0.0.0/16";
const DEFAULT_KMS_KEY: &str = "alias/aws/ebs";
const ROOT_VOLUME_TYPES: &[&str] = &["gp3", "gp2", "io1", "io2", "standard"];
const MAXMEMORY_POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];
/// First host offset of the default node addresses in each subnet (`.10`, `.11`, …).
const DEFAULT_NODE_OFFSET: u32 = 10;

/// Validate a parsed spec. `base_dir` is the directory of the spec file: relative paths in the
/// spec (state_dir, private_key, password_file) are relative to it.
pub(crate) fn validate(raw: &RawSpec, base_dir: &Path, d: &mut Diags<'_>) -> Option<Spec> {
    let cluster = cluster(raw.cluster.as_ref(), base_dir, d);
    let network = network(raw.network.as_ref(), &cluster, d);
    let security_group = security_group(raw.security_group.as_ref(), &network, d);
    let nodes = nodes(raw.nodes.as_ref(), &network, d);
    let ssh = ssh(raw.ssh.as_ref(), &cluster, base_dir, d);
    let tls = tls(raw.tls.as_ref(), d);
    let redis = redis(raw.redis.as_ref(), security_group.as_ref(), d);
    let users = users(&raw.users, base_dir, d);
    if d.has_errors() {
        return None;
    }
    Some(Spec {
        cluster: cluster?.0,
        network: network?,
        security_group: security_group?,
        nodes: nodes?,
        ssh: ssh?,
        tls: tls?,
        redis: redis?,
        users: users?,
    })
}

/// A checked cluster block, plus whether its name was valid (names derive from it).
type ClusterOut = (Cluster, bool);

fn cluster(raw: Option<&RawCluster>, base_dir: &Path, d: &mut Diags<'_>) -> Option<ClusterOut> {
    let default = RawCluster::default();
    let raw = raw.unwrap_or(&default);
    let mut ok = true;
    let name = match &raw.name {
        None => {
            d.error_help(
                "cluster.name",
                "is required",
                "add `name = \"prod-redis\"` under [cluster]; it is used in every tag and resource name",
            );
            ok = false;
            String::new()
        }
        Some(n) => {
            if !is_dns_label(n, 32) {
                d.error(
                    "cluster.name",
                    format!(
                        "`{n}` is not a valid cluster name: use 2-32 lower-case letters, digits and -, starting with a letter and not ending with -"
                    ),
                );
                ok = false;
            }
            n.clone()
        }
    };
    let region = raw.region.clone().unwrap_or_else(|| DEFAULT_REGION.into());
    if !REGIONS.contains(&region.as_str()) {
        let near: Vec<&str> = REGIONS
            .iter()
            .copied()
            .filter(|r| r.split('-').next() == region.split('-').next())
            .collect();
        d.error_help(
            "cluster.region",
            format!("`{region}` is not an AWS region"),
            if near.is_empty() {
                format!("known regions: {}", REGIONS.join(", "))
            } else {
                format!("did you mean one of: {}", near.join(", "))
            },
        );
        ok = false;
    }
    let mut tags = BTreeMap::new();
    for (k, v) in raw.tags.iter().flatten() {
        let path = format!("cluster.tags.{k}");
        let lower = k.to_ascii_lowercase();
        if lower.starts_with("redisctl:") || lower.starts_with("aws:") {
            d.error(
                &path,
                format!("tag key `{k}` is reserved (redisctl: and aws: prefixes are managed)"),
            );
        } else if k == "Name" {
            d.error(
                &path,
                "the Name tag is set by redisctl for each resource; choose another key",
            );
        } else if k.is_empty() || k.chars().count() > 128 {
            d.error(&path, "a tag key has 1 to 128 characters");
        } else if v.chars().count() > 256 {
            d.error(&path, "a tag value has at most 256 characters");
        }
        tags.insert(k.clone(), v.clone());
    }
    // Per resource: Name + redisctl:cluster + redisctl:role + redisctl:node (+ stage) = 5.
    if tags.len() > 45 {
        d.error(
            "cluster.tags",
            format!(
                "{} tags: AWS allows 50 per resource and redisctl uses 5",
                tags.len()
            ),
        );
    }
    let state_dir = match &raw.state_dir {
        Some(s) => base_dir.join(expand_home(s)),
        None => base_dir.join(".redisctl").join(&name),
    };
    Some((
        Cluster {
            name,
            region,
            tags,
            state_dir,
        },
        ok,
    ))
}

fn network(
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

fn security_group(
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

fn nodes(raw: Option<&RawNodes>, network: &Option<Network>, d: &mut Diags<'_>) -> Option<Nodes> {
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

fn root_volume(raw: Option<&RawRootVolume>, d: &mut Diags<'_>) -> Option<RootVolume> {
    let default = RawRootVolume::default();
    let raw = raw.unwrap_or(&default);
    let p = "nodes.root_volume";
    let size = int_in(raw.size_gib, 8, 8, 16384, &format!("{p}.size_gib"), d);
    let vt = raw.volume_type.clone().unwrap_or_else(|| "gp3".into());
    if !ROOT_VOLUME_TYPES.contains(&vt.as_str()) {
        d.error(
            &format!("{p}.type"),
            format!(
                "`{vt}` cannot be a root volume (use one of {})",
                ROOT_VOLUME_TYPES.join(", ")
            ),
        );
    }
    let encrypted = raw.encrypted.unwrap_or(true);
    if !encrypted {
        d.warn(
            &format!("{p}.encrypted"),
            "root volumes will not be encrypted at rest: Redis's data files (AOF, RDB) are stored in plaintext",
            "set encrypted = true; for health data this is required",
        );
    }
    let kms_key = raw
        .kms_key
        .clone()
        .unwrap_or_else(|| DEFAULT_KMS_KEY.into());
    if !is_kms_key(&kms_key) {
        d.error(
            &format!("{p}.kms_key"),
            format!("`{kms_key}` is not a KMS key id, key ARN, alias (alias/…) or alias ARN"),
        );
    }
    let strategy = match raw.strategy.as_deref() {
        None | Some("at-launch") => EncryptionStrategy::AtLaunch,
        Some("swap") => {
            if !encrypted {
                d.error(
                    &format!("{p}.strategy"),
                    "strategy = \"swap\" encrypts volumes after launch, but encrypted = false",
                );
            }
            EncryptionStrategy::Swap
        }
        Some(other) => {
            d.error(
                &format!("{p}.strategy"),
                format!("`{other}` is not a strategy: use \"at-launch\" or \"swap\""),
            );
            EncryptionStrategy::AtLaunch
        }
    };
    Some(RootVolume {
        size_gib: size?,
        volume_type: vt,
        encrypted,
        kms_key,
        strategy,
    })
}

fn ssh(
    raw: Option<&RawSsh>,
    cluster: &Option<ClusterOut>,
    base_dir: &Path,
    d: &mut Diags<'_>,
) -> Option<Ssh> {
    let default = RawSsh::default();
    let raw = raw.unwrap_or(&default);
    let (cluster, _) = cluster.as_ref()?;
    let user = raw.user.clone().unwrap_or_else(|| "ubuntu".into());
    if !is_unix_user(&user) {
        d.error("ssh.user", format!("`{user}` is not a valid login name"));
    }
    let key_name = raw
        .key_name
        .clone()
        .unwrap_or_else(|| format!("redisctl-{}", cluster.name));
    if key_name.is_empty() || key_name.len() > 255 || !key_name.is_ascii() {
        d.error(
            "ssh.key_name",
            "a key pair name has 1 to 255 ASCII characters",
        );
    }
    let private_key = match &raw.private_key {
        Some(p) => base_dir.join(expand_home(p)),
        None => cluster.state_dir.join("ssh_ed25519"),
    };
    let via = match raw.via.as_deref() {
        None => SshVia::PublicIp,
        Some(v) => SshVia::parse(v).unwrap_or_else(|| {
            d.error(
                "ssh.via",
                format!("`{v}` is not a way to reach nodes: use \"public-ip\" or \"private-ip\""),
            );
            SshVia::PublicIp
        }),
    };
    let connect = int_in(
        raw.connect_timeout_secs,
        10,
        1,
        300,
        "ssh.connect_timeout_secs",
        d,
    );
    let ready = int_in(
        raw.ready_timeout_secs,
        300,
        10,
        3600,
        "ssh.ready_timeout_secs",
        d,
    );
    let command = int_in(
        raw.command_timeout_secs,
        900,
        10,
        7200,
        "ssh.command_timeout_secs",
        d,
    );
    Some(Ssh {
        user,
        key_name,
        private_key,
        via,
        connect_timeout: Duration::from_secs(connect?.into()),
        ready_timeout: Duration::from_secs(ready?.into()),
        command_timeout: Duration::from_secs(command?.into()),
    })
}

fn tls(raw: Option<&RawTls>, d: &mut Diags<'_>) -> Option<Tls> {
    let default = RawTls::default();
    let raw = raw.unwrap_or(&default);
    let mut protocols = Vec::new();
    match &raw.protocols {
        None => protocols = vec![TlsProtocol::V1_2, TlsProtocol::V1_3],
        Some(list) => {
            if list.is_empty() {
                d.error(
                    "tls.protocols",
                    "needs at least one protocol (TLSv1.2, TLSv1.3)",
                );
            }
            for (i, p) in list.iter().enumerate() {
                let path = format!("tls.protocols[{i}]");
                match p.as_str() {
                    "TLSv1.2" => protocols.push(TlsProtocol::V1_2),
                    "TLSv1.3" => protocols.push(TlsProtocol::V1_3),
                    "TLSv1" | "TLSv1.0" | "TLSv1.1" | "SSLv3" => d.error_help(
                        &path,
                        format!("{p} is not allowed: it is broken and deprecated (RFC 8996)"),
                        "use TLSv1.2 and TLSv1.3",
                    ),
                    other => d.error(
                        &path,
                        format!("`{other}` is not a TLS protocol: use \"TLSv1.2\" or \"TLSv1.3\""),
                    ),
                }
            }
            protocols.sort();
            protocols.dedup();
        }
    }
    let cert_days = int_in(raw.cert_days, 365, 1, 3650, "tls.cert_days", d);
    let renew = int_in(
        raw.renew_before_days,
        30,
        1,
        3649,
        "tls.renew_before_days",
        d,
    );
    if let (Some(c), Some(r)) = (cert_days, renew)
        && r >= c
    {
        d.error(
            "tls.renew_before_days",
            format!("{r} days is not shorter than the certificate lifetime ({c} days): every plan would re-issue certificates"),
        );
    }
    let auth_clients = match raw.auth_clients.as_deref() {
        None | Some("yes") => TlsAuthClients::Yes,
        Some("optional") => TlsAuthClients::Optional,
        Some("no") => TlsAuthClients::No,
        Some(other) => {
            d.error(
                "tls.auth_clients",
                format!("`{other}` is not one of \"yes\", \"optional\", \"no\""),
            );
            TlsAuthClients::Yes
        }
    };
    Some(Tls {
        protocols,
        cert_days: cert_days?,
        renew_before_days: renew?,
        auth_clients,
    })
}

fn redis(raw: Option<&RawRedis>, sg: Option<&SecurityGroup>, d: &mut Diags<'_>) -> Option<Redis> {
    let default = RawRedis::default();
    let raw = raw.unwrap_or(&default);
    let port = int_in(raw.port, 6379, 1024, 55535, "redis.port", d);
    if raw.port.is_some_and(|p| p > 55535)
        && let Some(last) = d.list.last_mut()
    {
        last.help = Some("the cluster bus uses port + 10000, which must stay below 65536".into());
    }
    if let Some(p) = port
        && sg.is_some_and(|s| s.sentinel)
        && (26379..=26381).contains(&p)
    {
        d.error(
            "redis.port",
            format!("{p} collides with the Sentinel ports 26379-26381"),
        );
    }
    let timeout = int_in(
        raw.cluster_node_timeout_ms,
        15000,
        100,
        600_000,
        "redis.cluster_node_timeout_ms",
        d,
    );
    if let Some(m) = &raw.maxmemory
        && !is_memory_size(m)
    {
        d.error(
            "redis.maxmemory",
            format!("`{m}` is not a memory size like 512mb or 2gb"),
        );
    }
    if let Some(pol) = &raw.maxmemory_policy
        && !MAXMEMORY_POLICIES.contains(&pol.as_str())
    {
        d.error(
            "redis.maxmemory_policy",
            format!(
                "`{pol}` is not a maxmemory policy (one of {})",
                MAXMEMORY_POLICIES.join(", ")
            ),
        );
    }
    Some(Redis {
        port: port? as u16,
        cluster_node_timeout_ms: timeout?,
        appendonly: raw.appendonly.unwrap_or(true),
        maxmemory: raw.maxmemory.clone(),
        maxmemory_policy: raw.maxmemory_policy.clone(),
        cluster_require_full_coverage: raw.cluster_require_full_coverage.unwrap_or(true),
    })
}

fn users(raw: &[RawUser], base_dir: &Path, d: &mut Diags<'_>) -> Option<Vec<AclUser>> {
    if raw.is_empty() {
        d.error_help(
            "users",
            "no ACL users: at least the user redisctl operates with is needed",
            "add a [[users]] entry with operator = true (see cluster.toml.example)",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut names = BTreeMap::new();
    for (i, u) in raw.iter().enumerate() {
        let p = format!("users[{i}]");
        let Some(name) = &u.name else {
            d.error(&format!("{p}.name"), "is required");
            continue;
        };
        if name == "default" {
            d.error_help(
                &format!("{p}.name"),
                "the `default` user is always off in a redisctl cluster and cannot be configured",
                "give the user another name",
            );
            continue;
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            d.error(
                &format!("{p}.name"),
                format!("`{name}` is not a valid user name: letters, digits, _ - ."),
            );
        }
        if let Some(j) = names.insert(name.clone(), i) {
            d.error(
                &format!("{p}.name"),
                format!("duplicate user `{name}` (also users[{j}])"),
            );
        }
        let enabled = u.enabled.unwrap_or(true);
        if u.password.is_some() {
            d.error_help(
                &format!("{p}.password"),
                "inline passwords are not allowed: the spec is not a place for secrets",
                "use password_env = \"ENV_VAR\" or password_file = \"path\"",
            );
        }
        let password = match (&u.password_env, &u.password_file) {
            (Some(_), Some(_)) => {
                d.error(
                    &format!("{p}.password_file"),
                    "give either password_env or password_file, not both",
                );
                None
            }
            (Some(env), None) => {
                if !is_env_name(env) {
                    d.error(
                        &format!("{p}.password_env"),
                        format!("`{env}` is not an environment variable name (A-Z, 0-9, _)"),
                    );
                }
                Some(SecretSource::Env(env.clone()))
            }
            (None, Some(f)) => Some(SecretSource::File(base_dir.join(expand_home(f)))),
            (None, None) => {
                if enabled && u.password.is_none() {
                    d.error_help(
                        &format!("{p}.password_env"),
                        format!("user `{name}` is enabled but has no password source"),
                        "set password_env or password_file",
                    );
                }
                None
            }
        };
        let keys = patterns(u.keys.as_ref(), &format!("{p}.keys"), d);
        let channels = patterns(u.channels.as_ref(), &format!("{p}.channels"), d);
        let mut commands = Vec::new();
        match &u.commands {
            None => d.error_help(
                &format!("{p}.commands"),
                "is required: list the command rules, e.g. [\"+@read\", \"+@write\", \"-@dangerous\"]",
                "rules apply in order, as in Redis ACL",
            ),
            Some(list) => {
                for (j, r) in list.iter().enumerate() {
                    match CommandRule::parse(r) {
                        Ok(rule) => commands.push(rule),
                        Err(e) => d.error(&format!("{p}.commands[{j}]"), e.to_string()),
                    }
                }
            }
        }
        let operator = u.operator.unwrap_or(false);
        if operator {
            if !enabled {
                d.error(&format!("{p}.enabled"), "the operator user must be enabled");
            }
            let missing = acl::missing(&commands, acl::OPERATOR_COMMANDS);
            if u.commands.is_some() && !missing.is_empty() {
                d.error_help(
                    &format!("{p}.commands"),
                    format!(
                        "the operator user `{name}` cannot run cluster operations: missing {}",
                        missing.join(", ")
                    ),
                    "the operator user is normally an admin with [\"+@all\"]",
                );
            }
        } else if enabled && u.commands.is_some() && !keys.is_empty() {
            let missing = acl::missing(&commands, acl::CLUSTER_CLIENT_COMMANDS);
            if !missing.is_empty() {
                d.warn(
                    &format!("{p}.commands"),
                    format!(
                        "user `{name}` cannot run {}: cluster-aware client libraries will fail to connect",
                        missing.join(", ")
                    ),
                    format!(
                        "add {}",
                        missing.iter().map(|c| format!("\"+{c}\"")).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        out.push(AclUser {
            name: name.clone(),
            enabled,
            password,
            keys,
            channels,
            commands,
            operator,
        });
    }
    let operators: Vec<usize> = raw
        .iter()
        .enumerate()
        .filter(|(_, u)| u.operator == Some(true))
        .map(|(i, _)| i)
        .collect();
    match operators.as_slice() {
        [] => d.error_help(
            "users",
            "no user is marked operator = true: redisctl needs one user for cluster operations",
            "mark the admin user with operator = true",
        ),
        [_] => {}
        [_, rest @ ..] => {
            for i in rest {
                d.error(
                    &format!("users[{i}].operator"),
                    format!(
                        "only one user can be the operator; users[{}] already is",
                        operators[0]
                    ),
                );
            }
        }
    }
    Some(out)
}

fn patterns(raw: Option<&Vec<String>>, path: &str, d: &mut Diags<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, p) in raw.into_iter().flatten().enumerate() {
        if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            d.error(
                &format!("{path}[{i}]"),
                format!("`{p}` is not a valid pattern: no spaces or control characters"),
            );
        } else {
            out.push(p.clone());
        }
    }
    out
}

// ---- small checks ------------------------------------------------------------------------

fn cidr(text: &str, path: &str, d: &mut Diags<'_>) -> Option<Ipv4Net> {
    match text.parse::<Ipv4Net>() {
        Ok(net) if net.network() != net.addr() => {
            d.error_help(
                path,
                format!("{text} has host bits set"),
                format!("did you mean {}?", net.trunc()),
            );
            None
        }
        Ok(net) => Some(net),
        Err(_) => {
            d.error(
                path,
                format!("`{text}` is not an IPv4 CIDR block like 10.0.1.0/24"),
            );
            None
        }
    }
}

/// An integer with a default and an inclusive range.
fn int_in(
    v: Option<i64>,
    default: u32,
    min: u32,
    max: u32,
    path: &str,
    d: &mut Diags<'_>,
) -> Option<u32> {
    match v {
        None => Some(default),
        Some(v) if v >= i64::from(min) && v <= i64::from(max) => Some(v as u32),
        Some(v) => {
            d.error(
                path,
                format!("{v} is out of range: must be between {min} and {max}"),
            );
            None
        }
    }
}

/// AWS reserves the first four addresses and the last one of every subnet.
pub fn usable_ip(subnet: &Ipv4Net, ip: Ipv4Addr) -> bool {
    let base = u32::from(subnet.network());
    let last = u32::from(subnet.broadcast());
    let ip = u32::from(ip);
    ip >= base + 4 && ip < last
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

fn is_private(n: &Ipv4Net) -> bool {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .any(|p| p.parse::<Ipv4Net>().expect("literal").contains(n))
}

fn az_in_region(az: &str, region: &str) -> bool {
    az.strip_prefix(region)
        .is_some_and(|rest| rest.len() == 1 && rest.chars().all(|c| c.is_ascii_lowercase()))
}

/// `us-east-1a` -> `1a`.
fn az_suffix(az: &str) -> &str {
    az.rsplit('-').next().unwrap_or(az)
}

fn is_dns_label(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    (2..=max).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_instance_type(s: &str) -> bool {
    match s.split_once('.') {
        Some((family, size)) => {
            family.len() >= 2
                && family
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase())
                && family
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !size.is_empty()
                && size
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        }
        None => false,
    }
}

fn is_ami_id(s: &str) -> bool {
    s.strip_prefix("ami-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17)
            && h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    })
}

fn is_kms_key(s: &str) -> bool {
    let uuid = |k: &str| {
        k.len() == 36
            && k.chars().enumerate().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            })
    };
    let alias = |a: &str| {
        a.strip_prefix("alias/").is_some_and(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c))
        })
    };
    if uuid(s) || alias(s) || s.starts_with("mrk-") {
        return true;
    }
    // arn:aws[-partition]:kms:region:account:key/<id> or :alias/<name>
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "kms"
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && (parts[5]
            .strip_prefix("key/")
            .is_some_and(|k| uuid(k) || k.starts_with("mrk-"))
            || alias(parts[5]))
}

fn is_unix_user(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn is_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

fn is_memory_size(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    digits_end > 0 && ["", "b", "k", "kb", "m", "mb", "g", "gb"].contains(&&lower[digits_end..])
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}
