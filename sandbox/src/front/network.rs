//! The VPC's network as EC2 enforces it: public IPs that lead somewhere (and change at every
//! start), the internet gateway's translation, and security groups that are enforced.
//!
//! Everything is decided here from what moto holds ([`View`], read after each action that can
//! change it) and carried out as one nftables table in the operator namespace, replaced
//! atomically ([`operator_rules`]). The rules sit outside the hosts, as a security group sits
//! outside an instance: nothing a guest's root does to its own firewall changes them. The
//! bridge passes every IPv4 packet between hosts through the operator namespace's `forward`
//! hook (`br_netfilter`), so one place sees host ↔ host (same subnet or not), operator → host
//! and host → operator traffic, with connection tracking (security groups are stateful).
//!
//! - **Public IPs**: an instance moto gave a public address gets one of the front's from
//!   [`PUBLIC_RANGE`] each time its host boots, and loses it when the host stops; the answers
//!   show the front's address (`xml::rewrite_boots`).
//! - **The internet gateway**: a public IP leads to its instance (DNAT) only when the instance's
//!   subnet routes `0.0.0.0/0` to an internet gateway attached to its VPC; otherwise packets to
//!   it are dropped (a connection times out, as on AWS).
//! - **The operator** plays the internet: what it sends into the VPC leaves from
//!   [`OPERATOR_ADDR`] (in the reference spec's `ssh_cidrs`), whether to a public IP or, as over
//!   a VPN, to a private one.
//! - **Security groups**: a new connection to an instance must be allowed by an ingress rule of
//!   one of its groups, and one from it by an egress rule (CIDR sources, or groups: the private
//!   IPs of the instances in that group); replies pass. Default deny.
//! - **Egress to the internet** (the only service there is the apt archive, [`ARCHIVE_ADDR`]): a
//!   host whose subnet routes `0.0.0.0/0` to an attached internet gateway goes out from its
//!   public IP (none: dropped); one whose subnet routes it to an `available` NAT gateway (in a
//!   subnet with such a gateway route, with an Elastic IP) goes out from the NAT gateway's
//!   address; anything else is dropped (a timeout). Source NAT in the operator namespace
//!   ([`View::internet_source`]), after the host's egress rules.

use crate::xml::{self, child, child_text, items, parse};
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::net::Ipv4Addr;

pub use crate::net::{ARCHIVE_ADDR, OPERATOR_ADDR, PUBLIC_RANGE};
/// The nftables table the front owns in the operator namespace.
pub const TABLE: &str = "vpc";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub private_ip: Option<Ipv4Addr>,
    pub subnet: Option<String>,
    pub groups: Vec<String>,
    /// moto gave it a public address (it was launched with one).
    pub has_public_ip: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    pub vpc: String,
    pub main: bool,
    pub subnets: Vec<String>,
    /// (destination CIDR, target id: `igw-…`, `nat-…`, `local`, …)
    pub routes: Vec<(String, String)>,
}

/// A NAT gateway as moto holds it, its state as the timed region shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatGateway {
    pub subnet: String,
    /// `pending`, `available`, `deleting`, `deleted`, `failed`.
    pub state: String,
    /// Its Elastic IP (the first address with a public IP).
    pub public_ip: Option<Ipv4Addr>,
}

/// One rule of a security group (`IpPermission`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// `-1` (all), `tcp`, `udp`, `icmp` or a protocol number.
    pub protocol: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub cidrs: Vec<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

/// What moto holds that decides who reaches whom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub instances: Vec<Instance>,
    /// subnet id → VPC id
    pub subnets: HashMap<String, String>,
    pub route_tables: Vec<RouteTable>,
    /// internet gateway id → the VPC it is attached to
    pub gateways: HashMap<String, String>,
    pub groups: HashMap<String, Group>,
    /// NAT gateway id → what it is.
    pub nat_gateways: HashMap<String, NatGateway>,
    /// The Elastic IPs allocated (moto's DescribeAddresses).
    pub elastic_ips: Vec<Ipv4Addr>,
}

fn rules(perms: Option<roxmltree::Node>) -> Vec<Rule> {
    let Some(perms) = perms else {
        return Vec::new();
    };
    let sub_items = |n: roxmltree::Node, set: &str, field: &str| -> Vec<String> {
        child(n, set)
            .map(|s| {
                s.children()
                    .filter(|c| c.is_element())
                    .filter_map(|c| child_text(c, field))
                    .collect()
            })
            .unwrap_or_default()
    };
    perms
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "item")
        .map(|p| Rule {
            protocol: child_text(p, "ipProtocol").unwrap_or_else(|| "-1".into()),
            from: child_text(p, "fromPort").and_then(|v| v.parse().ok()),
            to: child_text(p, "toPort").and_then(|v| v.parse().ok()),
            cidrs: sub_items(p, "ipRanges", "cidrIp"),
            groups: sub_items(p, "groups", "groupId"),
        })
        .collect()
}

impl View {
    /// From moto's answers to DescribeInstances, DescribeSubnets, DescribeRouteTables,
    /// DescribeInternetGateways, DescribeSecurityGroups, DescribeNatGateways and
    /// DescribeAddresses (all of the account; the last two may be empty: nothing).
    pub fn parse(
        instances: &str,
        subnets: &str,
        route_tables: &str,
        gateways: &str,
        groups: &str,
        nat_gateways: &str,
        addresses: &str,
    ) -> Result<View> {
        let mut view = View {
            instances: xml::instances(instances)?
                .into_iter()
                .map(|i| Instance {
                    private_ip: i.private_ip.as_deref().and_then(|a| a.parse().ok()),
                    has_public_ip: i.public_ip.is_some(),
                    id: i.instance_id,
                    state: i.state,
                    subnet: i.subnet_id,
                    groups: i.group_ids,
                })
                .collect(),
            ..View::default()
        };
        let doc = parse(subnets)?;
        for s in items(&doc, "subnetSet") {
            if let (Some(id), Some(vpc)) = (child_text(s, "subnetId"), child_text(s, "vpcId")) {
                view.subnets.insert(id, vpc);
            }
        }
        let doc = parse(route_tables)?;
        for t in items(&doc, "routeTableSet") {
            let assoc: Vec<_> = child(t, "associationSet")
                .map(|a| a.children().filter(|c| c.is_element()).collect())
                .unwrap_or_default();
            view.route_tables.push(RouteTable {
                vpc: child_text(t, "vpcId").unwrap_or_default(),
                main: assoc
                    .iter()
                    .any(|a| child_text(*a, "main").is_some_and(|m| m == "true")),
                subnets: assoc
                    .iter()
                    .filter_map(|a| child_text(*a, "subnetId"))
                    .collect(),
                routes: child(t, "routeSet")
                    .map(|r| {
                        r.children()
                            .filter(|c| c.is_element())
                            .filter(|c| child_text(*c, "state").is_none_or(|s| s == "active"))
                            .filter_map(|c| {
                                let target = ["gatewayId", "natGatewayId", "instanceId"]
                                    .iter()
                                    .find_map(|f| child_text(c, f))?;
                                Some((child_text(c, "destinationCidrBlock")?, target))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        let doc = parse(gateways)?;
        for g in items(&doc, "internetGatewaySet") {
            let Some(id) = child_text(g, "internetGatewayId") else {
                continue;
            };
            let attached = child(g, "attachmentSet").and_then(|a| {
                a.children().filter(|c| c.is_element()).find_map(|c| {
                    let state = child_text(c, "state").unwrap_or_default();
                    (state == "available" || state == "attached")
                        .then(|| child_text(c, "vpcId"))
                        .flatten()
                })
            });
            if let Some(vpc) = attached {
                view.gateways.insert(id, vpc);
            }
        }
        let doc = parse(groups)?;
        for g in items(&doc, "securityGroupInfo") {
            if let Some(id) = child_text(g, "groupId") {
                view.groups.insert(
                    id,
                    Group {
                        ingress: rules(child(g, "ipPermissions")),
                        egress: rules(child(g, "ipPermissionsEgress")),
                    },
                );
            }
        }
        if !nat_gateways.is_empty() {
            let doc = parse(nat_gateways)?;
            for g in items(&doc, "natGatewaySet") {
                let (Some(id), Some(subnet)) =
                    (child_text(g, "natGatewayId"), child_text(g, "subnetId"))
                else {
                    continue;
                };
                let public_ip = child(g, "natGatewayAddressSet").and_then(|a| {
                    a.children()
                        .filter(|c| c.is_element())
                        .find_map(|c| child_text(c, "publicIp")?.parse().ok())
                });
                view.nat_gateways.insert(
                    id,
                    NatGateway {
                        subnet,
                        state: child_text(g, "state").unwrap_or_default(),
                        public_ip,
                    },
                );
            }
        }
        if !addresses.is_empty() {
            let doc = parse(addresses)?;
            view.elastic_ips = items(&doc, "addressesSet")
                .into_iter()
                .filter_map(|a| child_text(a, "publicIp")?.parse().ok())
                .collect();
        }
        Ok(view)
    }

    /// The route table of a subnet: its explicit association, else its VPC's main table.
    fn route_table(&self, subnet: &str) -> Option<&RouteTable> {
        let vpc = self.subnets.get(subnet)?;
        self.route_tables
            .iter()
            .find(|t| t.subnets.iter().any(|s| s == subnet))
            .or_else(|| self.route_tables.iter().find(|t| t.main && &t.vpc == vpc))
    }

    /// Whether a subnet routes `0.0.0.0/0` to an internet gateway attached to its VPC.
    pub fn routes_to_internet(&self, subnet: &str) -> bool {
        let Some(vpc) = self.subnets.get(subnet) else {
            return false;
        };
        self.route_table(subnet).is_some_and(|t| {
            t.routes.iter().any(|(dest, target)| {
                dest == "0.0.0.0/0" && self.gateways.get(target).is_some_and(|v| v == vpc)
            })
        })
    }

    /// The target of a subnet's `0.0.0.0/0` route (its own table, else its VPC's main one).
    fn default_route(&self, subnet: &str) -> Option<&str> {
        self.route_table(subnet)?
            .routes
            .iter()
            .find(|(dest, _)| dest == "0.0.0.0/0")
            .map(|(_, target)| target.as_str())
    }

    /// The address a host's traffic to the internet leaves from, or `None` (dropped), as EC2
    /// routes it: its subnet's `0.0.0.0/0` to an internet gateway attached to its VPC and a
    /// public IP (`public_ip`, the front's) → that address; to a NAT gateway that is
    /// `available`, has an Elastic IP and whose own subnet routes `0.0.0.0/0` to an attached
    /// internet gateway → the NAT gateway's address.
    pub fn internet_source(&self, id: &str, public_ip: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let subnet = self.instance(id)?.subnet.as_deref()?;
        let target = self.default_route(subnet)?;
        if target.starts_with("igw-") {
            return public_ip.filter(|_| self.routes_to_internet(subnet));
        }
        let nat = self.nat_gateways.get(target)?;
        (nat.state == "available"
            && self.subnets.get(&nat.subnet) == self.subnets.get(subnet)
            && self.routes_to_internet(&nat.subnet))
        .then_some(nat.public_ip)
        .flatten()
    }

    /// The private IPs of the instances in a group (not terminated).
    fn members(&self, group: &str) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = self
            .instances
            .iter()
            .filter(|i| i.state != "terminated" && i.groups.iter().any(|g| g == group))
            .filter_map(|i| i.private_ip)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The instances that have a host's network now, by id.
    fn instance(&self, id: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.id == id)
    }
}

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

/// A base chain (`header`: name, hook and first rules) that passes replies, then sends each
/// host's traffic to its own chain (`jump(h)`), then `tail`.
fn dispatch(
    s: &mut String,
    header: &str,
    hosts: &[Host],
    jump: impl Fn(&Host) -> String,
    tail: &str,
) {
    let _ = writeln!(
        s,
        "  chain {header}\n    ct state established,related accept"
    );
    for h in hosts {
        let _ = writeln!(s, "    {}", jump(h));
    }
    let _ = writeln!(s, "{tail}  }}");
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
        hosts,
        |h| {
            format!(
                "ip daddr {} jump {}",
                h.private_ip,
                chain_name("op_in", &h.id)
            )
        },
        "",
    );
    // To the operator namespace: replies, and new connections to the internet's services (the
    // archive) from the hosts that have a way out, after their egress rules; nothing else
    // (nothing on the operator side serves the hosts).
    let egress: Vec<(&Host, Ipv4Addr)> = hosts
        .iter()
        .filter_map(|h| Some((h, view.internet_source(&h.id, h.public_ip)?)))
        .collect();
    let _ = writeln!(
        s,
        "  chain to_operator {{\n    type filter hook input priority 0; policy accept;\n    ct state established,related accept"
    );
    for (h, _) in &egress {
        let _ = writeln!(
            s,
            "    iifname \"{bridge}\" ip saddr {} ip daddr {ARCHIVE_ADDR} jump {}",
            h.private_ip,
            chain_name("out", &h.id)
        );
    }
    let _ = writeln!(s, "    iifname \"{bridge}\" drop\n  }}");
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
        hosts,
        |h| {
            format!(
                "ip saddr {} jump {}",
                h.private_ip,
                chain_name("out", &h.id)
            )
        },
        "",
    );
    dispatch(
        &mut s,
        "host_ingress {\n    type filter hook forward priority 10; policy accept;",
        hosts,
        |h| format!("ip daddr {} jump {}", h.private_ip, chain_name("in", &h.id)),
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
        let mut body = String::new();
        for r in &ingress {
            let Some(l4) = l4(r) else { continue };
            for p in peers(view, r) {
                let _ = writeln!(body, "    {}", accept(&format!("ip saddr {p}"), &l4));
            }
        }
        deny_after(&mut s, &chain_name("in", &h.id), &body);
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
        let mut body = String::new();
        for r in &egress {
            let Some(l4) = l4(r) else { continue };
            for p in peers(view, r) {
                let _ = writeln!(body, "    {}", accept(&format!("ip daddr {p}"), &l4));
            }
        }
        deny_after(&mut s, &chain_name("out", &h.id), &body);
    }
    let _ = writeln!(s, "}}");
    s
}

/// The public IPs the front hands out: a new one at every boot, never the one just released
/// while another is free; and the Elastic IPs (AllocateAddress), from the same range.
#[derive(Debug, Default)]
pub struct PublicIps {
    /// instance id → its address now
    pub held: BTreeMap<String, Ipv4Addr>,
    /// The Elastic IPs allocated (moto's, and one being allocated).
    pub elastic: std::collections::BTreeSet<Ipv4Addr>,
    next: u32,
}

impl PublicIps {
    pub fn clear(&mut self) {
        *self = PublicIps::default();
    }

    /// The next free address of [`PUBLIC_RANGE`] (.10 to .254), round robin.
    fn allocate(&mut self) -> Option<Ipv4Addr> {
        const FIRST: u32 = 10;
        const COUNT: u32 = 245;
        for _ in 0..COUNT {
            let ip = Ipv4Addr::new(198, 51, 100, (FIRST + self.next % COUNT) as u8);
            self.next = self.next.wrapping_add(1);
            if !self.held.values().any(|h| *h == ip) && !self.elastic.contains(&ip) {
                return Some(ip);
            }
        }
        None
    }

    /// An address for a new Elastic IP (AllocateAddress gives it to moto), held from now on.
    pub fn allocate_elastic(&mut self) -> Option<Ipv4Addr> {
        let ip = self.allocate()?;
        self.elastic.insert(ip);
        Some(ip)
    }

    /// Gives every running instance moto gave a public address one of ours (if it has none),
    /// and takes it back from every other; the Elastic IPs are moto's. Returns what changed,
    /// for the log.
    pub fn settle(&mut self, view: &View, running: &[String]) -> Vec<String> {
        let mut changes = Vec::new();
        self.elastic = view.elastic_ips.iter().copied().collect();
        let wanted: Vec<&str> = running
            .iter()
            .filter(|id| view.instance(id).is_some_and(|i| i.has_public_ip))
            .map(String::as_str)
            .collect();
        let gone: Vec<String> = self
            .held
            .keys()
            .filter(|id| !wanted.contains(&id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(ip) = self.held.remove(&id) {
                changes.push(format!("{id}: public IP {ip} released"));
            }
        }
        for id in wanted {
            if !self.held.contains_key(id)
                && let Some(ip) = self.allocate()
            {
                self.held.insert(id.to_string(), ip);
                changes.push(format!("{id}: public IP {ip}"));
            }
        }
        changes
    }

    /// How an answer shows an instance's public IP (see `xml::BootView`).
    pub fn shown(&self, id: &str) -> Option<Option<Ipv4Addr>> {
        Some(self.held.get(id).copied())
    }
}

/// The actions after which the network is decided again (they change instances, addresses,
/// routes, gateways or security groups), at once.
pub const ACTIONS: &[&str] = &[
    "RunInstances",
    "StartInstances",
    "StopInstances",
    "RebootInstances",
    "TerminateInstances",
    "AuthorizeSecurityGroupIngress",
    "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroupIngress",
    "RevokeSecurityGroupEgress",
    "ModifySecurityGroupRules",
    "DeleteSecurityGroup",
    "ModifyInstanceAttribute",
    "ModifyNetworkInterfaceAttribute",
    "CreateRoute",
    "ReplaceRoute",
    "DeleteRoute",
    "DeleteRouteTable",
    "AssociateRouteTable",
    "DisassociateRouteTable",
    "ReplaceRouteTableAssociation",
    "AttachInternetGateway",
    "DetachInternetGateway",
    // (CreateNatGateway: when the gateway becomes `available`, at the end of its `pending`
    // window; the proxy schedules it.)
    "DeleteNatGateway",
    "AllocateAddress",
    "ReleaseAddress",
    "AssociateAddress",
    "DisassociateAddress",
];

/// The network's state in the front: the public IPs handed out and the table last applied.
#[derive(Default)]
pub struct Network {
    pub ips: std::sync::Mutex<PublicIps>,
    applied: tokio::sync::Mutex<String>,
}

impl Network {
    /// Reads what moto holds, settles the public IPs of the `running` instances and applies
    /// the operator namespace's table when it changed. `nat_states`: the NAT gateways whose
    /// state the timed region shows otherwise than moto (`pending`, `deleting`). Called under
    /// the front's machine lock.
    pub async fn reconcile(
        &self,
        moto: &crate::front::moto::Moto,
        auth: &crate::front::moto::Auth,
        running: &[String],
        nat_states: &HashMap<String, &'static str>,
    ) -> Result<()> {
        let mut answers = Vec::new();
        for action in [
            "DescribeInstances",
            "DescribeSubnets",
            "DescribeRouteTables",
            "DescribeInternetGateways",
            "DescribeSecurityGroups",
            "DescribeNatGateways",
            "DescribeAddresses",
        ] {
            answers.push(moto.ec2(auth, &[("Action", action)]).await?);
        }
        let mut view = View::parse(
            &answers[0],
            &answers[1],
            &answers[2],
            &answers[3],
            &answers[4],
            &answers[5],
            &answers[6],
        )?;
        for (id, state) in nat_states {
            if let Some(n) = view.nat_gateways.get_mut(id) {
                n.state = state.to_string();
            }
        }
        let hosts: Vec<Host> = {
            let mut ips = self.ips.lock().unwrap();
            for change in ips.settle(&view, running) {
                crate::logging::log(&change);
            }
            running
                .iter()
                .filter_map(|id| {
                    Some(Host {
                        id: id.clone(),
                        private_ip: view.instance(id)?.private_ip?,
                        public_ip: ips.held.get(id).copied(),
                    })
                })
                .collect()
        };
        self.apply(operator_rules(&view, &hosts, crate::BRIDGE))
            .await
    }

    /// A new VPC's default security group as AWS makes it: besides moto's egress to anywhere,
    /// all traffic in from the group's own members (moto leaves that rule out).
    pub async fn default_group_rule(
        &self,
        moto: &crate::front::moto::Moto,
        auth: &crate::front::moto::Auth,
        create_vpc_answer: &str,
    ) -> Result<()> {
        let vpc = xml::first_text(create_vpc_answer, "vpcId")?
            .ok_or_else(|| anyhow::anyhow!("moto's CreateVpc answer has no vpcId"))?;
        let groups = moto
            .ec2(
                auth,
                &[
                    ("Action", "DescribeSecurityGroups"),
                    ("Filter.1.Name", "vpc-id"),
                    ("Filter.1.Value.1", &vpc),
                    ("Filter.2.Name", "group-name"),
                    ("Filter.2.Value.1", "default"),
                ],
            )
            .await?;
        let group = xml::first_text(&groups, "groupId")?
            .ok_or_else(|| anyhow::anyhow!("moto made no default security group for {vpc}"))?;
        moto.ec2(
            auth,
            &[
                ("Action", "AuthorizeSecurityGroupIngress"),
                ("GroupId", &group),
                ("IpPermissions.1.IpProtocol", "-1"),
                ("IpPermissions.1.Groups.1.GroupId", &group),
            ],
        )
        .await?;
        Ok(())
    }

    /// The table with no host: the gateway's source translation, nothing reachable.
    pub async fn clear(&self) -> Result<()> {
        self.ips.lock().unwrap().clear();
        self.apply(operator_rules(&View::default(), &[], crate::BRIDGE))
            .await
    }

    async fn apply(&self, rules: String) -> Result<()> {
        let mut applied = self.applied.lock().await;
        if *applied == rules {
            return Ok(());
        }
        tokio::task::spawn_blocking(crate::net::ensure_public_route).await??;
        let mut child = tokio::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run nft (is nftables installed?): {e}"))?;
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(rules.as_bytes()).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            anyhow::bail!(
                "nft refused the VPC's rules: {}\n{rules}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        *applied = rules;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: &str, ports: Option<(i64, i64)>, cidrs: &[&str], groups: &[&str]) -> Rule {
        Rule {
            protocol: protocol.into(),
            from: ports.map(|p| p.0),
            to: ports.map(|p| p.1),
            cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn inst(id: &str, ip: &str, subnet: &str, groups: &[&str], public: bool) -> Instance {
        Instance {
            id: id.into(),
            state: "running".into(),
            private_ip: Some(ip.parse().unwrap()),
            subnet: Some(subnet.into()),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            has_public_ip: public,
        }
    }

    /// The reference cluster: two nodes in a public subnet, SSH from the operator, Redis from
    /// the VPC, the bus from the group itself.
    fn cluster() -> View {
        let mut v = View {
            instances: vec![
                inst("i-a", "10.0.1.10", "subnet-1", &["sg-redis"], true),
                inst("i-b", "10.0.2.10", "subnet-2", &["sg-redis"], true),
                inst("i-x", "10.0.3.50", "subnet-3", &["sg-other"], false),
            ],
            ..View::default()
        };
        for s in ["subnet-1", "subnet-2", "subnet-3"] {
            v.subnets.insert(s.into(), "vpc-1".into());
        }
        v.route_tables = vec![
            RouteTable {
                vpc: "vpc-1".into(),
                main: true,
                subnets: vec![],
                routes: vec![("10.0.0.0/16".into(), "local".into())],
            },
            RouteTable {
                vpc: "vpc-1".into(),
                main: false,
                subnets: vec!["subnet-1".into(), "subnet-2".into()],
                routes: vec![
                    ("10.0.0.0/16".into(), "local".into()),
                    ("0.0.0.0/0".into(), "igw-1".into()),
                ],
            },
        ];
        v.gateways.insert("igw-1".into(), "vpc-1".into());
        v.groups.insert(
            "sg-redis".into(),
            Group {
                ingress: vec![
                    rule("tcp", Some((22, 22)), &["203.0.113.7/32"], &[]),
                    rule("tcp", Some((6379, 6379)), &["10.0.0.0/16"], &[]),
                    rule("tcp", Some((16379, 16379)), &[], &["sg-redis"]),
                ],
                egress: vec![rule("-1", None, &["0.0.0.0/0"], &[])],
            },
        );
        v
    }

    fn hosts() -> Vec<Host> {
        vec![
            Host {
                id: "i-a".into(),
                private_ip: "10.0.1.10".parse().unwrap(),
                public_ip: Some("198.51.100.10".parse().unwrap()),
            },
            Host {
                id: "i-x".into(),
                private_ip: "10.0.3.50".parse().unwrap(),
                public_ip: None,
            },
        ]
    }

    #[test]
    fn the_internet_gateway_needs_a_route_and_an_attachment() {
        let mut v = cluster();
        assert!(v.routes_to_internet("subnet-1"));
        assert!(
            !v.routes_to_internet("subnet-3"),
            "the main table has no gateway route"
        );
        v.gateways.clear();
        assert!(
            !v.routes_to_internet("subnet-1"),
            "a detached gateway leads nowhere"
        );
        let mut v = cluster();
        v.route_tables[0]
            .routes
            .push(("0.0.0.0/0".into(), "igw-1".into()));
        assert!(
            v.routes_to_internet("subnet-3"),
            "the main table serves unassociated subnets"
        );
    }

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
        let chain = |name: &str| -> String {
            let start = r.find(&format!("chain {name} {{")).unwrap();
            r[start..start + r[start..].find("  }").unwrap()].to_string()
        };
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

    /// The cluster's VPC with a private subnet (subnet-3) routing to a NAT gateway in subnet-1.
    fn with_nat(state: &str) -> View {
        let mut v = cluster();
        v.route_tables.push(RouteTable {
            vpc: "vpc-1".into(),
            main: false,
            subnets: vec!["subnet-3".into()],
            routes: vec![
                ("10.0.0.0/16".into(), "local".into()),
                ("0.0.0.0/0".into(), "nat-1".into()),
            ],
        });
        v.nat_gateways.insert(
            "nat-1".into(),
            NatGateway {
                subnet: "subnet-1".into(),
                state: state.into(),
                public_ip: Some("198.51.100.3".parse().unwrap()),
            },
        );
        v
    }

    #[test]
    fn egress_leaves_from_the_public_ip_or_the_nat_gateway_or_not_at_all() {
        let public: Option<Ipv4Addr> = Some("198.51.100.10".parse().unwrap());
        let v = cluster();
        assert_eq!(v.internet_source("i-a", public), public, "public IP + IGW");
        assert_eq!(v.internet_source("i-a", None), None, "no public IP");
        assert_eq!(v.internet_source("i-x", public), None, "no default route");
        let mut v = cluster();
        v.gateways.clear();
        assert_eq!(v.internet_source("i-a", public), None, "gateway detached");

        let nat: Option<Ipv4Addr> = Some("198.51.100.3".parse().unwrap());
        assert_eq!(with_nat("available").internet_source("i-x", None), nat);
        for state in ["pending", "deleting", "deleted", "failed"] {
            assert_eq!(
                with_nat(state).internet_source("i-x", None),
                None,
                "{state}"
            );
        }
        // A NAT gateway needs an Elastic IP and a way out of its own subnet.
        let mut v = with_nat("available");
        v.nat_gateways.get_mut("nat-1").unwrap().public_ip = None;
        assert_eq!(v.internet_source("i-x", None), None);
        let mut v = with_nat("available");
        v.nat_gateways.get_mut("nat-1").unwrap().subnet = "subnet-3".into();
        assert_eq!(
            v.internet_source("i-x", None),
            None,
            "NAT in a private subnet"
        );
        // A host with a public IP in the NAT's route goes out through the NAT gateway.
        assert_eq!(with_nat("available").internet_source("i-x", public), nat);
    }

    #[test]
    fn only_hosts_with_a_way_out_reach_the_archive_translated() {
        let mut hs = hosts();
        let r = operator_rules(&with_nat("pending"), &hs, "br0");
        let chain = |r: &str, name: &str| -> String {
            let start = r.find(&format!("chain {name} {{")).unwrap();
            r[start..start + r[start..].find("  }").unwrap()].to_string()
        };
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
    fn elastic_ips_come_from_the_public_range_and_are_not_handed_to_instances() {
        let v = cluster();
        let mut ips = PublicIps::default();
        let eip = ips.allocate_elastic().unwrap();
        assert!(crate::net::contains(PUBLIC_RANGE, eip));
        let mut v2 = v.clone();
        v2.elastic_ips = vec![eip];
        for _ in 0..300 {
            ips.settle(&v2, &["i-a".into()]);
            assert_ne!(ips.held["i-a"], eip);
            ips.settle(&v2, &[]);
        }
        // Released in moto: free again.
        ips.settle(&v, &[]);
        assert!(ips.elastic.is_empty());
    }

    #[test]
    fn parses_nat_gateways_and_addresses() {
        let nat = r#"<DescribeNatGatewaysResponse><natGatewaySet><item><natGatewayAddressSet><item><allocationId>eipalloc-1</allocationId><privateIp>10.116.145.16</privateIp><publicIp>198.51.100.3</publicIp></item></natGatewayAddressSet><natGatewayId>nat-1</natGatewayId><state>available</state><subnetId>subnet-1</subnetId><vpcId>vpc-1</vpcId></item></natGatewaySet></DescribeNatGatewaysResponse>"#;
        let addr = r#"<DescribeAddressesResponse><addressesSet><item><allocationId>eipalloc-1</allocationId><publicIp>198.51.100.3</publicIp></item></addressesSet></DescribeAddressesResponse>"#;
        let empty = |set: &str| format!("<R><{set}/></R>");
        let v = View::parse(
            &empty("reservationSet"),
            &empty("subnetSet"),
            &empty("routeTableSet"),
            &empty("internetGatewaySet"),
            &empty("securityGroupInfo"),
            nat,
            addr,
        )
        .unwrap();
        assert_eq!(
            v.nat_gateways["nat-1"],
            NatGateway {
                subnet: "subnet-1".into(),
                state: "available".into(),
                public_ip: Some("198.51.100.3".parse().unwrap()),
            }
        );
        assert_eq!(v.elastic_ips, vec![Ipv4Addr::new(198, 51, 100, 3)]);
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

    #[test]
    fn a_public_ip_is_new_at_every_boot_and_gone_when_stopped() {
        let v = cluster();
        let mut ips = PublicIps::default();
        ips.settle(&v, &["i-a".into(), "i-b".into(), "i-x".into()]);
        assert_eq!(ips.held.len(), 2, "i-x was launched without a public IP");
        let first = ips.held["i-a"];
        ips.settle(&v, &["i-b".into()]);
        assert_eq!(ips.shown("i-a"), Some(None), "stopped: no public IP");
        ips.settle(&v, &["i-a".into(), "i-b".into()]);
        assert_ne!(ips.held["i-a"], first, "a start gives a new address");
        assert_ne!(ips.held["i-a"], ips.held["i-b"]);
    }

    #[test]
    fn parses_moto() {
        let sg = r#"<DescribeSecurityGroupsResponse><securityGroupInfo><item><groupId>sg-1</groupId><ipPermissionsEgress><item><ipProtocol>-1</ipProtocol><groups/><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges></item></ipPermissionsEgress><vpcId>vpc-1</vpcId><ipPermissions><item><ipProtocol>tcp</ipProtocol><fromPort>16379</fromPort><toPort>16379</toPort><groups><item><userId>1</userId><groupId>sg-1</groupId></item></groups><ipRanges/></item></ipPermissions></item></securityGroupInfo></DescribeSecurityGroupsResponse>"#;
        let rt = r#"<DescribeRouteTablesResponse><routeTableSet><item><associationSet><item><main>false</main><subnetId>subnet-1</subnetId></item></associationSet><routeSet><item><destinationCidrBlock>0.0.0.0/0</destinationCidrBlock><gatewayId>igw-1</gatewayId><state>active</state></item></routeSet><vpcId>vpc-1</vpcId></item></routeTableSet></DescribeRouteTablesResponse>"#;
        let igw = r#"<DescribeInternetGatewaysResponse><internetGatewaySet><item><attachmentSet><item><state>available</state><vpcId>vpc-1</vpcId></item></attachmentSet><internetGatewayId>igw-1</internetGatewayId></item></internetGatewaySet></DescribeInternetGatewaysResponse>"#;
        let sn = r#"<DescribeSubnetsResponse><subnetSet><item><subnetId>subnet-1</subnetId><vpcId>vpc-1</vpcId></item></subnetSet></DescribeSubnetsResponse>"#;
        let inst = r#"<DescribeInstancesResponse><reservationSet><item><instancesSet><item><instanceId>i-1</instanceId><instanceState><name>running</name></instanceState><subnetId>subnet-1</subnetId><privateIpAddress>10.0.1.10</privateIpAddress><ipAddress>54.1.2.3</ipAddress><groupSet><item><groupId>sg-1</groupId></item></groupSet></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"#;
        let v = View::parse(inst, sn, rt, igw, sg, "", "").unwrap();
        assert!(v.routes_to_internet("subnet-1"));
        assert_eq!(v.groups["sg-1"].ingress[0].groups, vec!["sg-1"]);
        assert_eq!(v.groups["sg-1"].egress[0].cidrs, vec!["0.0.0.0/0"]);
        assert_eq!(v.members("sg-1"), vec![Ipv4Addr::new(10, 0, 1, 10)]);
        assert!(v.instances[0].has_public_ip);
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
