//! The [`View`] read from moto's answers: one Describe call per kind of resource, of the
//! whole account; routes that are not `active` and gateway attachments that are not
//! `available` are left out.

use super::view::{Group, Instance, NatGateway, RouteTable, Rule, View};
use crate::xml::{self, child, child_text, items, parse};
use anyhow::Result;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// The elements of `node`'s list `set` (none when it has no such list).
fn elements<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    set: &str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    child(node, set)
        .into_iter()
        .flat_map(|s| s.children().filter(|c| c.is_element()))
}

fn rules(perms: Option<roxmltree::Node>) -> Vec<Rule> {
    let Some(perms) = perms else {
        return Vec::new();
    };
    let sub_items = |n: roxmltree::Node, set: &str, field: &str| -> Vec<String> {
        elements(n, set)
            .filter_map(|c| child_text(c, field))
            .collect()
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

/// The instances of one DescribeInstances answer (one page).
pub(super) fn instances_of(answer: &str) -> Result<Vec<Instance>> {
    Ok(xml::instances(answer)?
        .into_iter()
        .map(|i| Instance {
            private_ip: i.private_ip.as_deref().and_then(|a| a.parse().ok()),
            has_public_ip: i.public_ip.is_some(),
            id: i.instance_id,
            state: i.state,
            subnet: i.subnet_id,
            groups: i.group_ids,
        })
        .collect())
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
        Ok(View {
            instances: instances_of(instances)?,
            subnets: parse_subnets(subnets)?,
            route_tables: parse_route_tables(route_tables)?,
            gateways: parse_gateways(gateways)?,
            groups: parse_groups(groups)?,
            nat_gateways: if nat_gateways.is_empty() {
                HashMap::new()
            } else {
                parse_nat_gateways(nat_gateways)?
            },
            elastic_ips: if addresses.is_empty() {
                Vec::new()
            } else {
                parse_addresses(addresses)?
            },
        })
    }
}

/// subnet id → VPC id
fn parse_subnets(answer: &str) -> Result<HashMap<String, String>> {
    let doc = parse(answer)?;
    Ok(items(&doc, "subnetSet")
        .into_iter()
        .filter_map(|s| Some((child_text(s, "subnetId")?, child_text(s, "vpcId")?)))
        .collect())
}

fn parse_route_tables(answer: &str) -> Result<Vec<RouteTable>> {
    let doc = parse(answer)?;
    Ok(items(&doc, "routeTableSet")
        .into_iter()
        .map(|t| {
            let assoc: Vec<_> = elements(t, "associationSet").collect();
            RouteTable {
                vpc: child_text(t, "vpcId").unwrap_or_default(),
                main: assoc
                    .iter()
                    .any(|a| child_text(*a, "main").is_some_and(|m| m == "true")),
                subnets: assoc
                    .iter()
                    .filter_map(|a| child_text(*a, "subnetId"))
                    .collect(),
                routes: elements(t, "routeSet")
                    .filter(|c| child_text(*c, "state").is_none_or(|s| s == "active"))
                    .filter_map(|c| {
                        let target = ["gatewayId", "natGatewayId", "instanceId"]
                            .iter()
                            .find_map(|f| child_text(c, f))?;
                        Some((child_text(c, "destinationCidrBlock")?, target))
                    })
                    .collect(),
            }
        })
        .collect())
}

/// internet gateway id → the VPC it is attached to (gateways attached nowhere are left out)
fn parse_gateways(answer: &str) -> Result<HashMap<String, String>> {
    let doc = parse(answer)?;
    Ok(items(&doc, "internetGatewaySet")
        .into_iter()
        .filter_map(|g| {
            let id = child_text(g, "internetGatewayId")?;
            let vpc = elements(g, "attachmentSet").find_map(|c| {
                let state = child_text(c, "state").unwrap_or_default();
                (state == "available" || state == "attached")
                    .then(|| child_text(c, "vpcId"))
                    .flatten()
            })?;
            Some((id, vpc))
        })
        .collect())
}

fn parse_groups(answer: &str) -> Result<HashMap<String, Group>> {
    let doc = parse(answer)?;
    Ok(items(&doc, "securityGroupInfo")
        .into_iter()
        .filter_map(|g| {
            let group = Group {
                ingress: rules(child(g, "ipPermissions")),
                egress: rules(child(g, "ipPermissionsEgress")),
            };
            Some((child_text(g, "groupId")?, group))
        })
        .collect())
}

fn parse_nat_gateways(answer: &str) -> Result<HashMap<String, NatGateway>> {
    let doc = parse(answer)?;
    Ok(items(&doc, "natGatewaySet")
        .into_iter()
        .filter_map(|g| {
            let id = child_text(g, "natGatewayId")?;
            let gateway = NatGateway {
                subnet: child_text(g, "subnetId")?,
                state: child_text(g, "state").unwrap_or_default(),
                public_ip: elements(g, "natGatewayAddressSet")
                    .find_map(|c| child_text(c, "publicIp")?.parse().ok()),
            };
            Some((id, gateway))
        })
        .collect())
}

/// The Elastic IPs allocated.
fn parse_addresses(answer: &str) -> Result<Vec<Ipv4Addr>> {
    let doc = parse(answer)?;
    Ok(items(&doc, "addressesSet")
        .into_iter()
        .filter_map(|a| child_text(a, "publicIp")?.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
