//! The destroy plan: every resource tagged for the cluster, deleted in reverse dependency order
//! (instances first, the VPC last), duplicates included.

use std::collections::BTreeSet;

use super::model::*;
use crate::observed::{Observed, tags};
use crate::spec::Spec;

struct Steps {
    steps: Vec<Step>,
    used: BTreeSet<String>,
}

impl Steps {
    /// `base`, or `base[id]` when `base` is taken (a duplicate).
    fn address(&mut self, base: String, id: &str) -> String {
        let a = if self.used.contains(&base) {
            format!("{base}[{id}]")
        } else {
            base
        };
        self.used.insert(a.clone());
        a
    }

    fn delete(
        &mut self,
        address: String,
        phase: Phase,
        id: &str,
        depends_on: Vec<String>,
        op: Op,
    ) -> String {
        self.steps.push(
            Step::new(address.clone(), Action::Delete, phase, String::new())
                .changes(vec![Change::delete("id", id)])
                .depends_on(depends_on)
                .op(op),
        );
        address
    }
}

pub(super) fn plan_destroy(spec: &Spec, o: &Observed) -> Vec<Step> {
    let mut s = Steps {
        steps: Vec::new(),
        used: BTreeSet::new(),
    };
    // Volumes and snapshots first, while the instances that prove them the cluster's still
    // exist (a destroy interrupted after the terminations finds nothing to prove them by);
    // those attached to an instance go with it (DeleteOnTermination), and are deleted after it
    // in case they did not. Those nothing proves the cluster's are left (a note says so).
    let proven = o.proven_storage();
    let attached = |v: &crate::observed::Volume| v.attachment.is_some();
    let mut storage = Vec::new();
    for v in o
        .volumes
        .iter()
        .filter(|v| proven.contains(&v.id) && !attached(v))
    {
        let a = s.address(format!("volume.{}", v.id), &v.id);
        storage.push(s.delete(
            a,
            Phase::Instances,
            &v.id,
            vec![],
            Op::Ec2(Ec2Op::DeleteVolume { id: v.id.clone() }),
        ));
    }
    for snap in o.snapshots.iter().filter(|x| proven.contains(&x.id)) {
        let a = s.address(format!("snapshot.{}", snap.id), &snap.id);
        storage.push(s.delete(
            a,
            Phase::Instances,
            &snap.id,
            vec![],
            Op::Ec2(Ec2Op::DeleteSnapshot {
                id: snap.id.clone(),
            }),
        ));
    }
    let mut instances = Vec::new();
    for i in &o.instances {
        let base = match i.tags.get(tags::NODE) {
            Some(n) => format!("node.{n}"),
            None => format!("instance.{}", i.id),
        };
        let a = s.address(base, &i.id);
        instances.push(s.delete(
            a,
            Phase::Instances,
            &i.id,
            storage.clone(),
            Op::Ec2(Ec2Op::TerminateInstance {
                instance: i.id.clone(),
            }),
        ));
    }
    for k in o
        .key_pairs
        .iter()
        .filter(|k| k.tags.get(tags::CLUSTER) == Some(&spec.cluster.name))
    {
        let a = s.address("key_pair".into(), &k.id);
        s.delete(
            a,
            Phase::Instances,
            &k.id,
            vec![],
            Op::Ec2(Ec2Op::DeleteKeyPair {
                name: k.name.clone(),
            }),
        );
    }
    // The NAT gateway first (EC2 takes a minute or two; its interface holds its subnet and its
    // Elastic IP until it is deleted), then its address.
    let mut nat_gateways = Vec::new();
    for g in &o.nat_gateways {
        let a = s.address("nat_gateway".into(), &g.id);
        nat_gateways.push(s.delete(
            a,
            Phase::Network,
            &g.id,
            vec![],
            Op::Ec2(Ec2Op::DeleteNatGateway { id: g.id.clone() }),
        ));
    }
    let mut addresses = Vec::new();
    for e in &o.addresses {
        let a = s.address("nat_eip".into(), &e.allocation_id);
        addresses.push(s.delete(
            a,
            Phase::Network,
            &e.allocation_id,
            nat_gateways.clone(),
            Op::Ec2(Ec2Op::ReleaseAddress {
                allocation_id: e.allocation_id.clone(),
            }),
        ));
    }
    let mut network = nat_gateways.clone();
    network.extend(addresses.iter().cloned());
    for g in &o.security_groups {
        let a = s.address("sg".into(), &g.id);
        network.push(s.delete(
            a,
            Phase::Network,
            &g.id,
            instances.clone(),
            Op::Ec2(Ec2Op::DeleteSecurityGroup { id: g.id.clone() }),
        ));
    }
    let mut route_tables = Vec::new();
    for r in &o.route_tables {
        let a = s.address("route_table".into(), &r.id);
        route_tables.push(s.delete(
            a,
            Phase::Network,
            &r.id,
            instances.clone(),
            Op::Ec2(Ec2Op::DeleteRouteTable { id: r.id.clone() }),
        ));
    }
    network.extend(route_tables.iter().cloned());
    for g in &o.internet_gateways {
        let a = s.address("igw".into(), &g.id);
        let mut deps = instances.clone();
        deps.extend(addresses.iter().cloned());
        network.push(s.delete(
            a,
            Phase::Network,
            &g.id,
            deps,
            Op::Ec2(Ec2Op::DeleteInternetGateway {
                id: g.id.clone(),
                detach_from: g.attached_to.clone(),
            }),
        ));
    }
    for sub in &o.subnets {
        let name = spec
            .network
            .subnets
            .iter()
            .chain(spec.network.nat_subnet.iter())
            .find(|x| x.cidr.to_string() == sub.cidr)
            .map(|x| x.name.clone())
            .unwrap_or_else(|| sub.id.clone());
        let a = s.address(format!("subnet.{name}"), &sub.id);
        let mut deps = instances.clone();
        deps.extend(route_tables.iter().cloned());
        deps.extend(nat_gateways.iter().cloned());
        network.push(s.delete(
            a,
            Phase::Network,
            &sub.id,
            deps,
            Op::Ec2(Ec2Op::DeleteSubnet { id: sub.id.clone() }),
        ));
    }
    for v in &o.vpcs {
        let a = s.address("vpc".into(), &v.id);
        s.delete(
            a,
            Phase::Network,
            &v.id,
            network.clone(),
            Op::Ec2(Ec2Op::DeleteVpc { id: v.id.clone() }),
        );
    }
    for v in o
        .volumes
        .iter()
        .filter(|v| proven.contains(&v.id) && attached(v))
    {
        let a = s.address(format!("volume.{}", v.id), &v.id);
        s.delete(
            a,
            Phase::Instances,
            &v.id,
            instances.clone(),
            Op::Ec2(Ec2Op::DeleteVolume { id: v.id.clone() }),
        );
    }
    s.steps
}
