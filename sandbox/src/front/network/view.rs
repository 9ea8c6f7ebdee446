//! The VPC as the network sees it ([`View`]): instances, subnets, route tables, internet
//! gateways, security groups, NAT gateways and Elastic IPs, as moto holds them; and how EC2
//! routes a subnet's traffic: whether it reaches the internet through an attached internet
//! gateway, and from which address a host's traffic to the internet leaves
//! ([`View::internet_source`]: its public IP, its NAT gateway's, or none).

use std::collections::HashMap;
use std::net::Ipv4Addr;

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

impl View {
    /// The route table of a subnet: its explicit association, else its VPC's main table.
    pub(super) fn route_table(&self, subnet: &str) -> Option<&RouteTable> {
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
    pub(super) fn default_route(&self, subnet: &str) -> Option<&str> {
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
    pub(super) fn members(&self, group: &str) -> Vec<Ipv4Addr> {
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
    pub(super) fn instance(&self, id: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use std::net::Ipv4Addr;

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
}
