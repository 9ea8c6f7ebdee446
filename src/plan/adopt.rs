//! `redisctl adopt`: which resources of a VPC built without redisctl (by hand, from the reference
//! procedure) are the spec's, what each must be tagged with to become the cluster's, and what
//! stops the adoption. Pure: the caller reads the VPC (`aws::observe_scope`) and the cluster's
//! own resources, and writes the tags only after the operator confirmed.
//!
//! A resource is the spec's when EC2's own facts say so, never by a tag alone: the VPC named on
//! the command line (id or Name) with the spec's CIDR; a subnet of that VPC by the spec's subnet
//! name (Name tag) or CIDR, in the spec's AZ; the internet gateway attached to it; the route
//! table associated with the spec's subnets; the security group every adopted instance is in;
//! an instance of the VPC by the spec's node name (Name tag) or private IP, in the node's subnet
//! at the node's private IP; the root volume attached to it. What differs from the spec and
//! cannot be changed in place (a CIDR, an AZ, a private IP, an instance type) is a problem that
//! names the spec line to write instead: the spec is made to match the cluster, never the other
//! way round. Nothing is tagged while there is one.

use std::net::Ipv4Addr;

use crate::observed::tags::{self, Role};
use crate::observed::{Instance, Observed, Tags};
use crate::spec::Spec;

use super::naming;

/// One resource to tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The spec's address (`vpc`, `subnet.redis-subnet-1a`, `node.redis-node-1a`, …).
    pub address: String,
    pub id: String,
    /// Its Name tag before the adoption.
    pub was_named: Option<String>,
    /// The tags to set (its other tags are kept; the first plan shows them).
    pub tags: Tags,
}

/// What the adoption found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adoption {
    pub claims: Vec<Claim>,
    /// What stops the adoption: nothing is tagged while there is one.
    pub problems: Vec<String>,
    /// Resources of the VPC the spec does not name: left as they are (and in the way of the
    /// VPC's deletion at `destroy`).
    pub left_alone: Vec<String>,
}

fn name_of(t: &Tags) -> Option<String> {
    t.get("Name").cloned()
}

fn label(id: &str, t: &Tags) -> String {
    match name_of(t) {
        Some(n) => format!("{id} ({n})"),
        None => id.to_string(),
    }
}

/// The spec's resources among `found` (everything in the VPC `vpc` names: an id or a Name tag)
/// and the tags that make them the cluster's. `current` is what the cluster already has in
/// AWS by its tags: adopting into a cluster that has resources is refused.
pub fn adoption(spec: &Spec, vpc: &str, found: &Observed, current: &Observed) -> Adoption {
    let mut a = Adoption::default();
    let cluster = &spec.cluster.name;
    // (Resources of this VPC tagged already are an adoption interrupted halfway: taken again.)
    let in_found = |id: &str| {
        found.vpcs.iter().any(|v| v.id == id)
            || found.instances.iter().any(|i| i.id == id)
            || found.subnets.iter().any(|s| s.id == id)
    };
    let owned: Vec<String> = current
        .vpcs
        .iter()
        .map(|v| v.id.clone())
        .chain(current.instances.iter().map(|i| i.id.clone()))
        .chain(current.subnets.iter().map(|s| s.id.clone()))
        .filter(|id| !in_found(id))
        .collect();
    if !owned.is_empty() {
        a.problems.push(format!(
            "cluster {cluster} already has resources in AWS ({}): adopt takes in a cluster redisctl does not know yet. Use `redisctl plan` for this one, or another cluster.name for the adopted one",
            owned.join(", ")
        ));
        return a;
    }
    let vpcs: Vec<_> = found
        .vpcs
        .iter()
        .filter(|v| v.id == vpc || name_of(&v.tags).as_deref() == Some(vpc))
        .collect();
    let v = match vpcs.as_slice() {
        [v] => *v,
        [] => {
            a.problems.push(format!(
                "no VPC with the id or Name {vpc} in {}",
                spec.cluster.region
            ));
            return a;
        }
        many => {
            a.problems.push(format!(
                "{} VPCs are named {vpc} ({}): name the one to adopt by its id",
                many.len(),
                many.iter()
                    .map(|v| v.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            return a;
        }
    };
    if let Some(other) = v.tags.get(tags::CLUSTER).filter(|c| *c != cluster) {
        a.problems.push(format!(
            "VPC {} is tagged {}={other}: it is another cluster's",
            label(&v.id, &v.tags),
            tags::CLUSTER
        ));
        return a;
    }
    if v.cidr != spec.network.vpc_cidr.to_string() {
        a.problems.push(format!(
            "VPC {} has the CIDR {}, the spec {}: write `vpc_cidr = \"{}\"` under [network]",
            label(&v.id, &v.tags),
            v.cidr,
            spec.network.vpc_cidr,
            v.cidr
        ));
    }
    let claim = |a: &mut Adoption, address: String, id: &str, t: &Tags, wanted: Tags| {
        a.claims.push(Claim {
            address,
            id: id.to_string(),
            was_named: name_of(t),
            tags: wanted,
        });
    };
    claim(
        &mut a,
        "vpc".into(),
        &v.id,
        &v.tags,
        naming::tags(spec, Role::Vpc, "vpc", None),
    );

    // Subnets: by Name, else by CIDR.
    let mut subnet_ids = Vec::new();
    for s in &spec.network.subnets {
        let cidr = s.cidr.to_string();
        let m = found
            .subnets
            .iter()
            .filter(|o| o.vpc_id == v.id)
            .find(|o| name_of(&o.tags).as_deref() == Some(&s.name))
            .or_else(|| {
                found
                    .subnets
                    .iter()
                    .find(|o| o.vpc_id == v.id && o.cidr == cidr)
            });
        let Some(o) = m else {
            a.problems.push(format!(
                "subnet {} ({cidr} in {}) is not in VPC {}: name the subnet the cluster uses in [[network.subnets]] (its Name tag as `name`, its `cidr` and `az`)",
                s.name, s.az, v.id
            ));
            continue;
        };
        if o.cidr != cidr {
            a.problems.push(format!(
                "subnet {} ({}) has the CIDR {}, the spec {cidr}: write `cidr = \"{}\"` in the [[network.subnets]] entry named {}",
                s.name, o.id, o.cidr, o.cidr, s.name
            ));
        }
        if o.az != s.az {
            a.problems.push(format!(
                "subnet {} ({}) is in {}, the spec says {}: write `az = \"{}\"` in the [[network.subnets]] entry named {}",
                s.name, o.id, o.az, s.az, o.az, s.name
            ));
        }
        subnet_ids.push((s.name.clone(), o.id.clone()));
        claim(
            &mut a,
            format!("subnet.{}", s.name),
            &o.id,
            &o.tags,
            naming::tags(spec, Role::Subnet, &s.name, None),
        );
    }
    for o in found.subnets.iter().filter(|o| o.vpc_id == v.id) {
        if !subnet_ids.iter().any(|(_, id)| *id == o.id) {
            a.left_alone
                .push(format!("subnet {} ({})", label(&o.id, &o.tags), o.cidr));
        }
    }

    // The internet gateway attached to the VPC.
    match found
        .internet_gateways
        .iter()
        .filter(|g| g.attached_to.contains(&v.id))
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {}
        [g] => claim(
            &mut a,
            "igw".into(),
            &g.id,
            &g.tags,
            naming::tags(spec, Role::Igw, "igw", None),
        ),
        many => a.problems.push(format!(
            "{} internet gateways are attached to VPC {}",
            many.len(),
            v.id
        )),
    }

    // The route table the spec's subnets are associated with (not the VPC's main one, which
    // cannot be deleted with the cluster).
    let mut rts: Vec<&crate::observed::RouteTable> = found
        .route_tables
        .iter()
        .filter(|r| {
            r.vpc_id == v.id
                && r.associations.iter().any(|x| {
                    !x.main
                        && x.subnet_id
                            .as_ref()
                            .is_some_and(|s| subnet_ids.iter().any(|(_, id)| id == s))
                })
        })
        .collect();
    rts.dedup_by(|x, y| x.id == y.id);
    match rts.as_slice() {
        [] => {}
        [r] => claim(
            &mut a,
            "route_table".into(),
            &r.id,
            &r.tags,
            naming::tags(
                spec,
                Role::RouteTable,
                Role::RouteTable.as_str(),
                None,
            ),
        ),
        many => a.problems.push(format!(
            "the spec's subnets are associated with {} route tables ({}): redisctl keeps one for the cluster; associate them all with one",
            many.len(),
            many.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }

    // Instances: by Name, else by private IP.
    let in_vpc: Vec<&Instance> = found
        .instances
        .iter()
        .filter(|i| {
            i.subnet_id
                .as_ref()
                .is_some_and(|s| found.subnets.iter().any(|o| &o.id == s && o.vpc_id == v.id))
        })
        .collect();
    let mut adopted: Vec<&Instance> = Vec::new();
    for n in &spec.nodes.nodes {
        let m = in_vpc
            .iter()
            .find(|i| name_of(&i.tags).as_deref() == Some(&n.name))
            .or_else(|| in_vpc.iter().find(|i| i.private_ip == Some(n.private_ip)))
            .copied();
        let Some(i) = m else {
            a.problems.push(format!(
                "no instance of VPC {} is named {} or has the private IP {}: list the cluster's instances in [[nodes.node]] (the Name tag as `name`, with their `subnet` and `private_ip`)",
                v.id, n.name, n.private_ip
            ));
            continue;
        };
        let wanted_subnet = subnet_ids
            .iter()
            .find(|(name, _)| *name == n.subnet)
            .map(|(_, id)| id.as_str());
        if wanted_subnet.is_some() && i.subnet_id.as_deref() != wanted_subnet {
            let actual = subnet_ids
                .iter()
                .find(|(_, id)| Some(id.as_str()) == i.subnet_id.as_deref())
                .map(|(name, _)| name.clone())
                .unwrap_or_else(|| i.subnet_id.clone().unwrap_or_default());
            a.problems.push(format!(
                "instance {} is in subnet {actual}, the spec puts {} in {}: write `subnet = \"{actual}\"` in the [[nodes.node]] entry named {}",
                label(&i.id, &i.tags),
                n.name,
                n.subnet,
                n.name
            ));
        }
        if i.private_ip != Some(n.private_ip) {
            let ip = i
                .private_ip
                .map(|ip: Ipv4Addr| ip.to_string())
                .unwrap_or_else(|| "(none)".into());
            a.problems.push(format!(
                "instance {} has the private IP {ip}, the spec gives {} {}: write `private_ip = \"{ip}\"` in the [[nodes.node]] entry named {} (a private IP cannot change without a new instance)",
                label(&i.id, &i.tags),
                n.name,
                n.private_ip,
                n.name
            ));
        }
        if i.instance_type != spec.nodes.instance_type {
            a.problems.push(format!(
                "instance {} is a {}, the spec asks for {}: write `instance_type = \"{}\"` under [nodes] (redisctl would replace the instance otherwise)",
                label(&i.id, &i.tags),
                i.instance_type,
                spec.nodes.instance_type,
                i.instance_type
            ));
        }
        if i.key_name.as_deref() != Some(spec.ssh.key_name.as_str()) {
            let k = i.key_name.clone().unwrap_or_else(|| "(none)".into());
            a.problems.push(format!(
                "instance {} was launched with the key pair {k}, the spec names {}: redisctl logs in with the spec's key, which this instance does not hold: write `key_name = \"{k}\"` under [ssh] and `private_key` naming that key pair's private key file (redisctl can move the nodes to a key of its own later: docs/runbook.md, \"Rotate the SSH key\")",
                label(&i.id, &i.tags),
                spec.ssh.key_name
            ));
        }
        if !matches!(i.state.as_str(), "running" | "stopped") {
            a.problems.push(format!(
                "instance {} is {}: adopt it once it is running or stopped",
                label(&i.id, &i.tags),
                i.state
            ));
        }
        if adopted.iter().any(|x| x.id == i.id) {
            a.problems.push(format!(
                "instance {} matches two nodes of the spec",
                label(&i.id, &i.tags)
            ));
            continue;
        }
        adopted.push(i);
        claim(
            &mut a,
            format!("node.{}", n.name),
            &i.id,
            &i.tags,
            naming::tags(spec, Role::Node, &n.name, Some(&n.name)),
        );
        let root = i
            .root_device_name
            .as_ref()
            .and_then(|d| i.block_devices.get(d));
        if let Some(vol) = root.and_then(|id| found.volumes.iter().find(|x| &x.id == id)) {
            claim(
                &mut a,
                format!("node.{}.root_volume", n.name),
                &vol.id,
                &vol.tags,
                naming::tags(
                    spec,
                    Role::Volume,
                    &format!("{}-root", n.name),
                    Some(&n.name),
                ),
            );
        }
    }
    for i in &in_vpc {
        if !adopted.iter().any(|x| x.id == i.id) {
            a.left_alone
                .push(format!("instance {}", label(&i.id, &i.tags)));
        }
    }

    // The one security group every adopted instance is in.
    if !adopted.is_empty() {
        let common: Vec<&String> = adopted[0]
            .security_group_ids
            .iter()
            .filter(|g| adopted.iter().all(|i| i.security_group_ids.contains(g)))
            .collect();
        match common.as_slice() {
            [g] => {
                if let Some(sg) = found.security_groups.iter().find(|x| &x.id == *g) {
                    claim(
                        &mut a,
                        "sg".into(),
                        &sg.id,
                        &sg.tags,
                        naming::tags(spec, Role::SecurityGroup, "redis", None),
                    );
                }
            }
            [] => a.problems.push(
                "the instances share no security group: redisctl keeps the cluster in one; put every instance in the same group first".into(),
            ),
            many => a.problems.push(format!(
                "the instances share {} security groups ({}): redisctl keeps the cluster in one",
                many.len(),
                many.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    a
}

/// `found`'s claimed resources, with the claims' tags set over their own, as the cluster's
/// observation would show them once tagged: what `adopt` plans with before it writes a tag.
pub fn as_tagged(found: &Observed, claims: &[Claim]) -> Observed {
    let tagged = |id: &str, t: &Tags| -> Option<Tags> {
        let c = claims.iter().find(|c| c.id == id)?;
        let mut t = t.clone();
        t.extend(c.tags.clone());
        Some(t)
    };
    macro_rules! keep {
        ($list:expr, $id:ident) => {
            $list
                .iter()
                .filter_map(|x| {
                    tagged(&x.$id, &x.tags).map(|tags| {
                        let mut x = x.clone();
                        x.tags = tags;
                        x
                    })
                })
                .collect()
        };
    }
    Observed {
        vpcs: keep!(found.vpcs, id),
        subnets: keep!(found.subnets, id),
        internet_gateways: keep!(found.internet_gateways, id),
        route_tables: keep!(found.route_tables, id),
        security_groups: keep!(found.security_groups, id),
        instances: keep!(found.instances, id),
        volumes: keep!(found.volumes, id),
        key_pairs: found.key_pairs.clone(),
        images: found.images.clone(),
        ..Observed::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{RouteTable, RouteTableAssociation, SecurityGroup, Subnet, Volume, Vpc};
    use crate::redis::test_spec;

    fn named(n: &str) -> Tags {
        [("Name".to_string(), n.to_string())].into()
    }

    /// The VPC of the reference procedure, built by hand: Names as it gives them, the node
    /// instances at the reference spec's private IPs.
    fn hand_built() -> Observed {
        let azs = ["a", "b", "c"];
        let mut o = Observed {
            vpcs: vec![Vpc {
                id: "vpc-hand".into(),
                cidr: "10.0.0.0/16".into(),
                state: "available".into(),
                dns_support: None,
                dns_hostnames: None,
                tags: [
                    ("Name".to_string(), "redis-vpc".to_string()),
                    ("project".to_string(), "redis-lab".to_string()),
                ]
                .into(),
            }],
            internet_gateways: vec![crate::observed::InternetGateway {
                id: "igw-hand".into(),
                attached_to: vec!["vpc-hand".into()],
                tags: named("redis-igw"),
            }],
            security_groups: vec![SecurityGroup {
                id: "sg-hand".into(),
                name: "redis-cluster-sg".into(),
                vpc_id: "vpc-hand".into(),
                ingress: vec![],
                tags: Tags::new(),
            }],
            ..Observed::default()
        };
        let mut assoc = vec![RouteTableAssociation {
            id: "rtbassoc-main".into(),
            subnet_id: None,
            main: true,
        }];
        for (k, az) in azs.iter().enumerate() {
            let n = k + 1;
            o.subnets.push(Subnet {
                id: format!("subnet-{az}"),
                vpc_id: "vpc-hand".into(),
                cidr: format!("10.0.{n}.0/24"),
                az: format!("us-east-1{az}"),
                map_public_ip_on_launch: false,
                tags: named(&format!("redis-subnet-1{az}")),
            });
            assoc.push(RouteTableAssociation {
                id: format!("rtbassoc-{az}"),
                subnet_id: Some(format!("subnet-{az}")),
                main: false,
            });
            o.instances.push(Instance {
                instance_type: "t2.micro".into(),
                subnet_id: Some(format!("subnet-{az}")),
                private_ip: Some(format!("10.0.{n}.10").parse().unwrap()),
                key_name: Some("prod-redis-key".into()),
                security_group_ids: vec!["sg-hand".into()],
                root_device_name: Some("/dev/sda1".into()),
                block_devices: [("/dev/sda1".to_string(), format!("vol-{az}"))].into(),
                tags: named(&format!("redis-node-1{az}")),
                ..Instance::bare(&format!("i-{az}"), "running")
            });
            o.volumes.push(Volume {
                id: format!("vol-{az}"),
                size_gib: 8,
                volume_type: "gp3".into(),
                encrypted: false,
                kms_key_id: None,
                az: format!("us-east-1{az}"),
                state: "in-use".into(),
                snapshot_id: None,
                attachment: Some((format!("i-{az}"), "/dev/sda1".into())),
                tags: Tags::new(),
            });
        }
        o.route_tables.push(RouteTable {
            id: "rtb-hand".into(),
            vpc_id: "vpc-hand".into(),
            routes: vec![],
            associations: assoc,
            tags: named("redis-public-rt"),
        });
        o
    }

    #[test]
    fn a_hand_built_vpc_is_claimed_resource_by_resource() {
        let spec = test_spec::reference();
        let a = adoption(&spec, "redis-vpc", &hand_built(), &Observed::default());
        assert_eq!(a.problems, Vec::<String>::new());
        let got: Vec<(&str, &str)> = a
            .claims
            .iter()
            .map(|c| (c.address.as_str(), c.id.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("vpc", "vpc-hand"),
                ("subnet.redis-subnet-1a", "subnet-a"),
                ("subnet.redis-subnet-1b", "subnet-b"),
                ("subnet.redis-subnet-1c", "subnet-c"),
                ("igw", "igw-hand"),
                ("route_table", "rtb-hand"),
                ("node.redis-node-1a", "i-a"),
                ("node.redis-node-1a.root_volume", "vol-a"),
                ("node.redis-node-1b", "i-b"),
                ("node.redis-node-1b.root_volume", "vol-b"),
                ("node.redis-node-1c", "i-c"),
                ("node.redis-node-1c.root_volume", "vol-c"),
                ("sg", "sg-hand"),
            ]
        );
        let node = &a.claims[6];
        assert_eq!(node.was_named.as_deref(), Some("redis-node-1a"));
        assert_eq!(node.tags[tags::CLUSTER], "prod-redis");
        assert_eq!(node.tags[tags::ROLE], "node");
        assert_eq!(node.tags[tags::NODE], "redis-node-1a");
        assert_eq!(node.tags["Name"], "prod-redis-redis-node-1a");
        assert!(a.left_alone.is_empty(), "{:?}", a.left_alone);
        // By id as well as by Name; the user's own tags stay next to the new ones.
        let by_id = adoption(&spec, "vpc-hand", &hand_built(), &Observed::default());
        assert_eq!(by_id.claims, a.claims);
        let tagged = as_tagged(&hand_built(), &a.claims);
        assert_eq!(tagged.vpcs[0].tags["project"], "redis-lab");
        assert_eq!(tagged.vpcs[0].tags[tags::ROLE], "vpc");
        assert_eq!(tagged.instances.len(), 3);
        assert_eq!(tagged.volumes.len(), 3);
    }

    #[test]
    fn what_cannot_change_in_place_names_the_spec_line_to_write() {
        let spec = test_spec::reference();
        let mut o = hand_built();
        // DHCP gave the instance another address; another instance type; another key.
        o.instances[0].private_ip = Some("10.0.1.57".parse().unwrap());
        o.instances[1].instance_type = "t3.small".into();
        o.instances[2].key_name = Some("redis-cluster-key".into());
        o.subnets[2].az = "us-east-1d".into();
        o.instances.push(Instance {
            subnet_id: Some("subnet-a".into()),
            tags: named("bastion"),
            ..Instance::bare("i-bastion", "running")
        });
        let a = adoption(&spec, "redis-vpc", &o, &Observed::default());
        let all = a.problems.join("\n");
        for line in [
            "write `private_ip = \"10.0.1.57\"` in the [[nodes.node]] entry named redis-node-1a",
            "write `instance_type = \"t3.small\"` under [nodes]",
            "write `key_name = \"redis-cluster-key\"` under [ssh]",
            "write `az = \"us-east-1d\"` in the [[network.subnets]] entry named redis-subnet-1c",
        ] {
            assert!(all.contains(line), "{line}\nnot in:\n{all}");
        }
        assert_eq!(a.problems.len(), 4, "{all}");
        assert_eq!(a.left_alone, ["instance i-bastion (bastion)"]);
    }

    #[test]
    fn a_cluster_that_exists_another_clusters_vpc_and_an_unknown_name_are_refused() {
        let spec = test_spec::reference();
        let mut current = Observed::default();
        current.vpcs.push(Vpc {
            id: "vpc-made".into(),
            ..hand_built().vpcs[0].clone()
        });
        let a = adoption(&spec, "redis-vpc", &hand_built(), &current);
        assert!(a.claims.is_empty());
        assert!(a.problems[0].contains("already has resources in AWS (vpc-made)"));
        // An adoption interrupted after some of its tags: taken again.
        let mut current = Observed::default();
        current.vpcs.push(hand_built().vpcs[0].clone());
        current.instances.push(hand_built().instances[0].clone());
        let a = adoption(&spec, "redis-vpc", &hand_built(), &current);
        assert!(a.problems.is_empty(), "{:?}", a.problems);
        assert_eq!(a.claims.len(), 13);
        let a = adoption(&spec, "nope", &hand_built(), &Observed::default());
        assert_eq!(a.problems, ["no VPC with the id or Name nope in us-east-1"]);
        let mut o = hand_built();
        o.vpcs[0]
            .tags
            .insert(tags::CLUSTER.into(), "someone-else".into());
        let a = adoption(&spec, "redis-vpc", &o, &Observed::default());
        assert!(a.claims.is_empty());
        assert!(
            a.problems[0].contains("another cluster's"),
            "{:?}",
            a.problems
        );
        // Instances in two groups each, sharing none.
        let mut o = hand_built();
        o.instances[0].security_group_ids = vec!["sg-other".into()];
        let a = adoption(&spec, "redis-vpc", &o, &Observed::default());
        assert!(
            a.problems
                .iter()
                .any(|p| p.contains("share no security group")),
            "{:?}",
            a.problems
        );
    }
}
