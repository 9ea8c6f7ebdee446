//! Phase 1, the nodes' way out with `network.egress = "nat-gateway"`: a public subnet of its own
//! whose route table sends `0.0.0.0/0` to the internet gateway, an Elastic IP, and the NAT
//! gateway that holds it there (the nodes' route table then sends `0.0.0.0/0` to the gateway:
//! `network.rs`). With any other egress, these are removed once nothing routes through them.
//! Identity: each by its role tag (the subnet also by its CIDR in the cluster's VPC); a NAT
//! gateway counts while `pending` or `available`.

use super::builder::{Builder, role_is};
use super::model::*;
use super::network::{Wanted, associate, route_table, subnet};
use crate::observed::tags::Role;
use crate::spec::Egress;

const LIVE: &[&str] = &["pending", "available"];

/// Plans the NAT gateway and what it needs; its reference, for the nodes' default route.
pub(super) fn nat_gateway(
    b: &mut Builder<'_>,
    vpc_id: Option<&str>,
    vpc_ref: &Ref,
    igw_ref: &Ref,
) -> Option<Ref> {
    let spec = b.spec;
    let obs = b.observed;
    if spec.network.egress != Egress::NatGateway {
        return None;
    }
    let ns = spec.network.nat_subnet.as_ref()?;
    let cidr = ns.cidr.to_string();
    for other in obs
        .subnets
        .iter()
        .filter(|s| role_is(&s.tags, Role::NatSubnet) && Some(s.vpc_id.as_str()) == vpc_id)
        .filter(|s| s.cidr != cidr)
    {
        b.note(
            NoteLevel::Blocker,
            "nat_subnet",
            format!(
                "the NAT gateway's subnet {} is {} but the spec says {cidr}: its subnet cannot move while it holds the gateway; set network.nat_subnet.cidr = \"{}\", or apply with network.egress = \"public-ip\" first (which removes the gateway)",
                other.id, other.cidr, other.cidr
            ),
        );
    }
    let subnet_id = subnet(b, Role::NatSubnet, ns, vpc_id, vpc_ref, false);
    let subnet_address = format!("subnet.{}", ns.name);
    let (rt, rt_ref) = route_table(
        b,
        Role::NatRouteTable,
        "nat_route_table",
        vpc_ref,
        Wanted {
            target: Some(RouteTarget::InternetGateway(igw_ref.clone())),
            dep: b.dep("igw").into_iter().next(),
            what: "internet gateway",
        },
    );
    associate(
        b,
        "nat_route_table",
        rt,
        &rt_ref,
        &ns.name,
        subnet_id.clone(),
    );

    let eips: Vec<&crate::observed::Address> = obs
        .addresses
        .iter()
        .filter(|a| role_is(&a.tags, Role::NatEip))
        .collect();
    let eip = b.single("nat_eip", eips, |a| &a.allocation_id);
    let eip_tags = b.tags(Role::NatEip, "nat-eip", None);
    match eip {
        None => b.push(
            Step::new(
                "nat_eip",
                Action::Create,
                Phase::Network,
                "the NAT gateway needs an Elastic IP",
            )
            .changes(vec![
                Change::create("domain", "vpc"),
                Change::after_apply("public_ip"),
            ])
            .op(Op::Ec2(Ec2Op::AllocateAddress { tags: eip_tags })),
        ),
        Some(a) => b.update_tags_only("nat_eip", &a.allocation_id, &a.tags, &eip_tags),
    }
    let eip_ref = b.reference("nat_eip", eip.map(|a| a.allocation_id.as_str()));

    let nats: Vec<&crate::observed::NatGateway> = obs
        .nat_gateways
        .iter()
        .filter(|g| role_is(&g.tags, Role::NatGateway) && LIVE.contains(&g.state.as_str()))
        .collect();
    let nat = b.single("nat_gateway", nats, |g| &g.id);
    let nat_tags = b.tags(Role::NatGateway, "nat", None);
    match nat {
        None => {
            let mut deps = b.dep(&subnet_address);
            deps.extend(b.dep("nat_eip"));
            b.push(
                Step::new(
                    "nat_gateway",
                    Action::Create,
                    Phase::Network,
                    "the nodes reach the package archive through a NAT gateway (network.egress)",
                )
                .changes(vec![
                    Change::create("subnet", &ns.name),
                    Change::create("connectivity_type", "public"),
                    match eip {
                        Some(a) => Change::create("elastic_ip", &a.public_ip),
                        None => Change::after_apply("elastic_ip"),
                    },
                    Change::after_apply("id"),
                ])
                .depends_on(deps)
                .op(Op::Ec2(Ec2Op::CreateNatGateway {
                    subnet: b.reference(&subnet_address, subnet_id.as_deref()),
                    allocation: eip_ref,
                    tags: nat_tags,
                })),
            );
        }
        Some(g) => {
            if subnet_id.as_deref().is_some_and(|s| s != g.subnet_id) {
                b.note(
                    NoteLevel::Blocker,
                    "nat_gateway",
                    format!(
                        "NAT gateway {} is in subnet {}, not in the cluster's NAT subnet {}: delete it (aws ec2 delete-nat-gateway) or run `redisctl destroy`",
                        g.id, g.subnet_id, ns.name
                    ),
                );
            }
            if g.state == "pending" {
                // An earlier run made it: wait for it here, before any node needs the way out.
                b.push(
                    Step::new(
                        "nat_gateway",
                        Action::Update,
                        Phase::Network,
                        "the NAT gateway is not available yet: wait for it",
                    )
                    .changes(vec![Change::update("state", "pending", "available")])
                    .op(Op::Ec2(Ec2Op::CreateNatGateway {
                        subnet: Ref::Id(g.subnet_id.clone()),
                        allocation: g
                            .allocation_ids
                            .first()
                            .map_or(eip_ref, |a| Ref::Id(a.clone())),
                        tags: nat_tags,
                    })),
                );
            } else {
                b.update_tags_only("nat_gateway", &g.id, &g.tags, &nat_tags);
            }
        }
    }
    for g in obs
        .nat_gateways
        .iter()
        .filter(|g| role_is(&g.tags, Role::NatGateway) && g.state == "failed")
    {
        b.push(
            Step::new(
                format!("nat_gateway[{}]", g.id),
                Action::Delete,
                Phase::Network,
                "EC2 could not make this NAT gateway (state failed)",
            )
            .changes(vec![Change::delete("id", &g.id)])
            .op(Op::Ec2(Ec2Op::DeleteNatGateway { id: g.id.clone() })),
        );
    }
    Some(b.reference("nat_gateway", nat.map(|g| g.id.as_str())))
}

/// With any egress but a NAT gateway: the gateway, its Elastic IP, its route table and its
/// subnet go, after the nodes' default route has left the gateway.
pub(super) fn remove_unwanted(b: &mut Builder<'_>) {
    let spec = b.spec;
    let obs = b.observed;
    if spec.network.egress == Egress::NatGateway {
        return;
    }
    let reason = format!(
        "network.egress = \"{}\": the NAT gateway is not used",
        spec.network.egress.as_str()
    );
    let mut gone = Vec::new();
    for g in obs
        .nat_gateways
        .iter()
        .filter(|g| role_is(&g.tags, Role::NatGateway) && g.state != "deleting")
    {
        let address = format!("nat_gateway[{}]", g.id);
        b.push(
            Step::new(&address, Action::Delete, Phase::Network, reason.clone())
                .changes(vec![Change::delete("id", &g.id)])
                .depends_on(b.dep("route_table"))
                .op(Op::Ec2(Ec2Op::DeleteNatGateway { id: g.id.clone() })),
        );
        gone.push(address);
    }
    for a in obs
        .addresses
        .iter()
        .filter(|a| role_is(&a.tags, Role::NatEip))
    {
        b.push(
            Step::new(
                format!("nat_eip[{}]", a.allocation_id),
                Action::Delete,
                Phase::Network,
                reason.clone(),
            )
            .changes(vec![Change::delete("public_ip", &a.public_ip)])
            .depends_on(gone.clone())
            .op(Op::Ec2(Ec2Op::ReleaseAddress {
                allocation_id: a.allocation_id.clone(),
            })),
        );
    }
    for r in obs
        .route_tables
        .iter()
        .filter(|r| role_is(&r.tags, Role::NatRouteTable))
    {
        b.push(
            Step::new(
                format!("nat_route_table[{}]", r.id),
                Action::Delete,
                Phase::Network,
                reason.clone(),
            )
            .changes(vec![Change::delete("id", &r.id)])
            .op(Op::Ec2(Ec2Op::DeleteRouteTable { id: r.id.clone() })),
        );
    }
    for s in obs
        .subnets
        .iter()
        .filter(|s| role_is(&s.tags, Role::NatSubnet))
    {
        b.push(
            Step::new(
                format!("nat_subnet[{}]", s.id),
                Action::Delete,
                Phase::Network,
                reason.clone(),
            )
            .changes(vec![Change::delete("cidr_block", &s.cidr)])
            .depends_on(gone.clone())
            .op(Op::Ec2(Ec2Op::DeleteSubnet { id: s.id.clone() })),
        );
    }
}

/// With `egress = "public-ip"`, a running node without a public IP was launched without one
/// (under another egress): EC2 gives one only at launch, so it stays unreachable by it.
pub(super) fn nodes_without_public_ip(b: &mut Builder<'_>) {
    if b.spec.network.egress != Egress::PublicIp {
        return;
    }
    let obs = b.observed;
    for i in obs
        .instances
        .iter()
        .filter(|i| role_is(&i.tags, Role::Node) && i.state == "running" && i.public_ip.is_none())
    {
        let node = i
            .tags
            .get(crate::observed::tags::NODE)
            .map_or(i.id.as_str(), String::as_str);
        // (One never reached is replaced by the plan instead: plan/instances.rs.)
        if super::instances::never_reachable(b, node, i) {
            continue;
        }
        b.note(
            NoteLevel::Warning,
            &format!("node.{node}"),
            format!(
                "instance {} has no public IP: it was launched without one (under another network.egress), and EC2 gives one only at launch; reach it by its private IP (REDISCTL_SSH_VIA=private-ip) or replace the node",
                i.id
            ),
        );
    }
}
