//! Phase 1, the network: the spec's VPC, subnets, internet gateway, route table and security
//! group against what AWS holds. Identity rules: the VPC, internet gateway, route table and
//! security group by their role tag; subnets by CIDR inside the cluster's VPC; security group
//! rules by (protocol, ports, source).

use std::collections::{BTreeMap, BTreeSet};

use super::builder::{Builder, role_is};
use super::model::*;
use super::{naming, security};
use crate::observed::tags::Role;
use crate::observed::{self, IngressRule};
use crate::spec::Egress;

/// What the instances need from the network.
pub(super) struct Network {
    /// Each subnet's id by name; `None` when this plan creates it.
    pub subnet_ids: BTreeMap<String, Option<String>>,
    pub security_group: Ref,
}

pub(super) fn plan_network(b: &mut Builder<'_>) -> Network {
    let (vpc_id, vpc_ref) = vpc(b);
    let subnet_ids = subnets(b, vpc_id.as_deref(), &vpc_ref);
    let igw_ref = internet_gateway(b, vpc_id.as_deref(), &vpc_ref);
    let nat_ref = super::egress::nat_gateway(b, vpc_id.as_deref(), &vpc_ref, &igw_ref);
    let wanted = match b.spec.network.egress {
        Egress::PublicIp => Wanted {
            target: Some(RouteTarget::InternetGateway(igw_ref.clone())),
            dep: b.dep("igw").into_iter().next(),
            what: "internet gateway",
        },
        Egress::NatGateway => Wanted {
            target: nat_ref.map(RouteTarget::NatGateway),
            dep: b.dep("nat_gateway").into_iter().next(),
            what: "NAT gateway",
        },
        Egress::None => Wanted {
            target: None,
            dep: None,
            what: "",
        },
    };
    let (rt, rt_ref) = route_table(b, Role::RouteTable, "route_table", &vpc_ref, wanted);
    route_table_associations(b, rt, &rt_ref, &subnet_ids);
    super::egress::remove_unwanted(b);
    super::egress::nodes_without_public_ip(b);
    let (sg, sg_ref) = security_group(b, &vpc_ref);
    ingress_rules(b, sg, &sg_ref);
    Network {
        subnet_ids,
        security_group: sg_ref,
    }
}

/// The VPC's id if it exists, and the reference the other resources use.
fn vpc(b: &mut Builder<'_>) -> (Option<String>, Ref) {
    let obs = b.observed;
    let vpcs: Vec<&observed::Vpc> = obs
        .vpcs
        .iter()
        .filter(|v| role_is(&v.tags, Role::Vpc))
        .collect();
    let vpc = b.only("vpc", vpcs, |v| &v.id);
    let vpc_tags = b.tags(Role::Vpc, "vpc", None);
    let vpc_cidr = b.spec.network.vpc_cidr.to_string();
    match vpc {
        None => b.push(
            Step::new(
                "vpc",
                Action::Create,
                Phase::Network,
                "the cluster has no VPC",
            )
            .changes(vec![
                Change::create("cidr_block", &vpc_cidr),
                Change::create("enable_dns_support", "true"),
                Change::create("enable_dns_hostnames", "true"),
                Change::after_apply("id"),
            ])
            .op(Op::Ec2(Ec2Op::CreateVpc {
                cidr: vpc_cidr.clone(),
                tags: vpc_tags,
            })),
        ),
        Some(v) => {
            if v.cidr != vpc_cidr {
                b.note(
                    NoteLevel::Blocker,
                    "vpc",
                    format!(
                        "VPC {} has CIDR {} but the spec says {vpc_cidr}: a VPC's CIDR cannot change; destroy the cluster and apply again, or set network.vpc_cidr = \"{}\"",
                        v.id, v.cidr, v.cidr
                    ),
                );
            }
            b.update_tags_only("vpc", &v.id, &v.tags, &vpc_tags);
        }
    }
    let vpc_id = vpc.map(|v| v.id.clone());
    let vpc_ref = b.reference("vpc", vpc_id.as_deref());
    (vpc_id, vpc_ref)
}

fn subnets(
    b: &mut Builder<'_>,
    vpc_id: Option<&str>,
    vpc_ref: &Ref,
) -> BTreeMap<String, Option<String>> {
    let spec = b.spec;
    let map_public_ip = spec.network.egress == Egress::PublicIp;
    let mut subnet_ids: BTreeMap<String, Option<String>> = BTreeMap::new();
    for s in &spec.network.subnets {
        let id = subnet(b, Role::Subnet, s, vpc_id, vpc_ref, map_public_ip);
        subnet_ids.insert(s.name.clone(), id);
    }
    subnet_ids
}

/// One subnet of the cluster's VPC with `role`, found by its CIDR: created, or brought back to
/// the spec. Its id, or `None` when this plan creates it (at `subnet.<name>`).
pub(super) fn subnet(
    b: &mut Builder<'_>,
    role: Role,
    s: &crate::spec::Subnet,
    vpc_id: Option<&str>,
    vpc_ref: &Ref,
    map_public_ip: bool,
) -> Option<String> {
    let obs = b.observed;
    let address = format!("subnet.{}", s.name);
    let cidr = s.cidr.to_string();
    let desired_tags = b.tags(role, &s.name, None);
    let matching: Vec<&observed::Subnet> = obs
        .subnets
        .iter()
        .filter(|o| role_is(&o.tags, role) && Some(o.vpc_id.as_str()) == vpc_id)
        .filter(|o| o.cidr == cidr)
        .collect();
    let found = b.single(&address, matching, |o| &o.id);
    let Some(o) = found else {
        b.push(
            Step::new(
                address.clone(),
                Action::Create,
                Phase::Network,
                format!("no subnet {cidr} in the cluster's VPC"),
            )
            .changes(vec![
                Change::create("cidr_block", &cidr),
                Change::create("availability_zone", &s.az),
                Change::create("map_public_ip_on_launch", map_public_ip.to_string()),
                Change::after_apply("id"),
            ])
            .depends_on(b.dep("vpc"))
            .op(Op::Ec2(Ec2Op::CreateSubnet {
                vpc: vpc_ref.clone(),
                cidr: cidr.clone(),
                az: s.az.clone(),
                map_public_ip,
                tags: desired_tags,
            })),
        );
        return None;
    };
    if o.az != s.az {
        b.note(
            NoteLevel::Blocker,
            &address,
            format!(
                "subnet {} ({cidr}) is in {} but the spec puts it in {}: a subnet cannot move between AZs; restore the AZ in the spec, or destroy and re-create the cluster",
                o.id, o.az, s.az
            ),
        );
    }
    let mut changes = Vec::new();
    let mut ops = Vec::new();
    if o.map_public_ip_on_launch != map_public_ip {
        changes.push(Change::update(
            "map_public_ip_on_launch",
            o.map_public_ip_on_launch.to_string(),
            map_public_ip.to_string(),
        ));
        ops.push(Op::Ec2(Ec2Op::SetSubnetPublicIp {
            subnet: o.id.clone(),
            map_public_ip,
        }));
    }
    if let Some((c, op)) = b.set_tags_op(&o.id, &o.tags, &desired_tags) {
        changes.extend(c);
        ops.push(op);
    }
    if !ops.is_empty() {
        b.push(
            Step::new(
                address,
                Action::Update,
                Phase::Network,
                "attributes differ from the spec",
            )
            .unchanged(3 - usize::from(o.map_public_ip_on_launch != map_public_ip))
            .changes(changes)
            .ops(ops),
        );
    }
    Some(o.id.clone())
}

/// The reference to the internet gateway.
fn internet_gateway(b: &mut Builder<'_>, vpc_id: Option<&str>, vpc_ref: &Ref) -> Ref {
    let obs = b.observed;
    let igws: Vec<&observed::InternetGateway> = obs
        .internet_gateways
        .iter()
        .filter(|g| role_is(&g.tags, Role::Igw))
        .collect();
    let igw = b.single("igw", igws, |g| &g.id);
    let igw_tags = b.tags(Role::Igw, "igw", None);
    match igw {
        None => {
            let deps = b.dep("vpc");
            b.push(
                Step::new(
                    "igw",
                    Action::Create,
                    Phase::Network,
                    "the cluster has no internet gateway",
                )
                .changes(vec![
                    Change::after_apply("id"),
                    Change::after_apply("attached_to"),
                ])
                .depends_on(deps)
                .op(Op::Ec2(Ec2Op::CreateInternetGateway {
                    vpc: vpc_ref.clone(),
                    tags: igw_tags,
                })),
            );
        }
        Some(g) => {
            let mut changes = Vec::new();
            let mut ops = Vec::new();
            let attached = vpc_id.is_some_and(|v| g.attached_to.iter().any(|a| a == v));
            if !attached {
                changes.push(Change {
                    attribute: "attached_to".into(),
                    before: Some(Value::Known(if g.attached_to.is_empty() {
                        "(none)".into()
                    } else {
                        g.attached_to.join(", ")
                    })),
                    after: Some(match vpc_id {
                        Some(v) => Value::Known(v.to_string()),
                        None => Value::KnownAfterApply,
                    }),
                    forces_replacement: false,
                    ignored_because: None,
                });
                ops.push(Op::Ec2(Ec2Op::AttachInternetGateway {
                    igw: g.id.clone(),
                    vpc: vpc_ref.clone(),
                }));
            }
            if let Some((c, op)) = b.set_tags_op(&g.id, &g.tags, &igw_tags) {
                changes.extend(c);
                ops.push(op);
            }
            if !ops.is_empty() {
                let deps = b.dep("vpc");
                let reason = if attached {
                    "tags differ from the spec"
                } else {
                    "the internet gateway is not attached to the cluster's VPC"
                };
                b.push(
                    Step::new("igw", Action::Update, Phase::Network, reason)
                        .unchanged(usize::from(attached))
                        .changes(changes)
                        .depends_on(deps)
                        .ops(ops),
                );
            }
        }
    }
    b.reference("igw", igw.map(|g| g.id.as_str()))
}

/// Where a route table's default route goes, and the step it waits for (if planned).
pub(super) struct Wanted {
    pub target: Option<RouteTarget>,
    /// The step that makes or readies the target.
    pub dep: Option<String>,
    /// What the target is, for a reason: "internet gateway", "NAT gateway".
    pub what: &'static str,
}

fn target_id(t: &Option<RouteTarget>) -> Option<&str> {
    match t {
        Some(RouteTarget::InternetGateway(Ref::Id(id)) | RouteTarget::NatGateway(Ref::Id(id))) => {
            Some(id)
        }
        _ => None,
    }
}

/// How a plan calls the route table at `address`.
fn table_label(address: &str) -> &str {
    match address {
        "nat_route_table" => "public route table (the NAT gateway's)",
        _ => "route table",
    }
}

/// A route table of the cluster with `role` (at `address`), as observed, and the reference its
/// associations use; its default route goes where `wanted` says.
pub(super) fn route_table<'o>(
    b: &mut Builder<'o>,
    role: Role,
    address: &str,
    vpc_ref: &Ref,
    wanted: Wanted,
) -> (Option<&'o observed::RouteTable>, Ref) {
    let obs = b.observed;
    let rts: Vec<&observed::RouteTable> = obs
        .route_tables
        .iter()
        .filter(|r| role_is(&r.tags, role))
        .collect();
    let rt = b.single(address, rts, |r| &r.id);
    let rt_tags = b.tags(role, role.as_str(), None);
    let after = |t: &Option<RouteTarget>| {
        t.as_ref()
            .map(|_| target_id(t).map_or(Value::KnownAfterApply, |i| Value::Known(i.into())))
    };
    match rt {
        None => {
            let mut deps = b.dep("vpc");
            deps.extend(wanted.dep.clone());
            let mut changes = Vec::new();
            if wanted.target.is_some() {
                changes.push(Change {
                    attribute: "route[0.0.0.0/0]".into(),
                    before: None,
                    after: after(&wanted.target),
                    forces_replacement: false,
                    ignored_because: None,
                });
            }
            changes.push(Change::after_apply("id"));
            b.push(
                Step::new(
                    address,
                    Action::Create,
                    Phase::Network,
                    format!("the cluster has no {}", table_label(address)),
                )
                .changes(changes)
                .depends_on(deps)
                .op(Op::Ec2(Ec2Op::CreateRouteTable {
                    vpc: vpc_ref.clone(),
                    target: wanted.target.clone(),
                    tags: rt_tags,
                })),
            );
        }
        Some(r) => {
            let mut changes = Vec::new();
            let mut ops = Vec::new();
            let default_route = r.routes.iter().find(|x| x.destination == "0.0.0.0/0");
            let route_ok = match &wanted.target {
                None => default_route.is_none(),
                Some(_) => {
                    let now = target_id(&wanted.target);
                    default_route.is_some_and(|x| Some(x.target.as_str()) == now)
                }
            };
            if !route_ok {
                changes.push(Change {
                    attribute: "route[0.0.0.0/0]".into(),
                    before: default_route.map(|x| Value::Known(x.target.clone())),
                    after: after(&wanted.target),
                    forces_replacement: false,
                    ignored_because: None,
                });
                ops.push(Op::Ec2(Ec2Op::SetDefaultRoute {
                    route_table: r.id.clone(),
                    target: wanted.target.clone(),
                    replace: default_route.is_some(),
                }));
            }
            if let Some((c, op)) = b.set_tags_op(&r.id, &r.tags, &rt_tags) {
                changes.extend(c);
                ops.push(op);
            }
            if !ops.is_empty() {
                let deps: Vec<String> = wanted.dep.iter().cloned().collect();
                let reason = match (route_ok, &wanted.target) {
                    (true, _) => "tags differ from the spec".to_string(),
                    (false, None) => {
                        "network.egress = \"none\": the nodes have no route out".to_string()
                    }
                    (false, Some(_)) => {
                        format!(
                            "the default route does not go to the cluster's {}",
                            wanted.what
                        )
                    }
                };
                b.push(
                    Step::new(address, Action::Update, Phase::Network, reason)
                        .unchanged(usize::from(route_ok))
                        .changes(changes)
                        .depends_on(deps)
                        .ops(ops),
                );
            }
        }
    }
    let rt_ref = b.reference(address, rt.map(|r| r.id.as_str()));
    (rt, rt_ref)
}

/// Subnet `name` (its id, `None` when this plan makes it) uses route table `rt`.
pub(super) fn associate(
    b: &mut Builder<'_>,
    rt_address: &str,
    rt: Option<&observed::RouteTable>,
    rt_ref: &Ref,
    name: &str,
    existing: Option<String>,
) {
    let associated = match (rt, &existing) {
        (Some(r), Some(sid)) => r
            .associations
            .iter()
            .any(|a| a.subnet_id.as_ref() == Some(sid)),
        _ => false,
    };
    if associated {
        return;
    }
    let address = format!("{rt_address}.association[{name}]");
    let subnet_addr = format!("subnet.{name}");
    let mut deps = b.dep(rt_address);
    deps.extend(b.dep(&subnet_addr));
    let subnet_ref = b.reference(&subnet_addr, existing.as_deref());
    b.push(
        Step::new(
            address,
            Action::Create,
            Phase::Network,
            format!(
                "subnet {name} does not use the cluster's {}",
                table_label(rt_address)
            ),
        )
        .changes(vec![
            Change::create("subnet", name),
            Change::after_apply("association_id"),
        ])
        .depends_on(deps)
        .op(Op::Ec2(Ec2Op::AssociateRouteTable {
            route_table: rt_ref.clone(),
            subnet: subnet_ref,
        })),
    );
}

/// Every subnet of the spec uses the cluster's route table.
fn route_table_associations(
    b: &mut Builder<'_>,
    rt: Option<&observed::RouteTable>,
    rt_ref: &Ref,
    subnet_ids: &BTreeMap<String, Option<String>>,
) {
    for s in &b.spec.network.subnets {
        let existing = subnet_ids.get(&s.name).cloned().flatten();
        associate(b, "route_table", rt, rt_ref, &s.name, existing);
    }
}

/// The security group as observed, and the reference the rules and instances use.
fn security_group<'o>(
    b: &mut Builder<'o>,
    vpc_ref: &Ref,
) -> (Option<&'o observed::SecurityGroup>, Ref) {
    let spec = b.spec;
    let obs = b.observed;
    let sgs: Vec<&observed::SecurityGroup> = obs
        .security_groups
        .iter()
        .filter(|g| role_is(&g.tags, Role::SecurityGroup))
        .collect();
    let sg = b.only("sg", sgs, |g| &g.id);
    let sg_tags = b.tags(Role::SecurityGroup, "redis", None);
    let sg_name = naming::security_group_name(spec);
    match sg {
        None => {
            let deps = b.dep("vpc");
            b.push(
                Step::new(
                    "sg",
                    Action::Create,
                    Phase::Network,
                    "the cluster has no security group",
                )
                .changes(vec![
                    Change::create("name", &sg_name),
                    Change::after_apply("id"),
                ])
                .depends_on(deps)
                .op(Op::Ec2(Ec2Op::CreateSecurityGroup {
                    vpc: vpc_ref.clone(),
                    name: sg_name.clone(),
                    description: format!(
                        "redisctl {}: SSH from admins, Redis and bus from the VPC",
                        spec.cluster.name
                    ),
                    tags: sg_tags,
                })),
            );
        }
        Some(g) => {
            b.update_tags_only("sg", &g.id, &g.tags, &sg_tags);
        }
    }
    let sg_ref = b.reference("sg", sg.map(|g| g.id.as_str()));
    (sg, sg_ref)
}

/// Why a rule the spec does not ask for is revoked: the bus from a Redis source is what
/// redisctl itself opened before the bus was limited to the nodes; anything else came from
/// outside.
fn removal_reason(spec: &crate::spec::Spec, r: &IngressRule) -> String {
    let bus = i32::from(spec.redis.bus_port());
    let redis_source = spec
        .security_group
        .redis_cidrs
        .iter()
        .any(|c| c.to_string() == r.source);
    if r.from_port == bus && r.to_port == bus && redis_source {
        format!(
            "the cluster bus is open to the nodes (the group itself) only, no longer to {}",
            r.source
        )
    } else {
        "not in the spec: added out of band".into()
    }
}

/// The spec's ingress rules are authorized; any other rule was added out of band and goes.
fn ingress_rules(b: &mut Builder<'_>, sg: Option<&observed::SecurityGroup>, sg_ref: &Ref) {
    let desired_rules = security::ingress_rules(b.spec);
    let observed_rules: BTreeSet<&IngressRule> =
        sg.map(|g| g.ingress.iter().collect()).unwrap_or_default();
    for r in &desired_rules {
        if !observed_rules.contains(&r.rule) {
            let deps = b.dep("sg");
            b.push(
                Step::new(
                    format!("sg.rule[{}]", r.description),
                    Action::Create,
                    Phase::Network,
                    "the spec allows this traffic",
                )
                .changes(vec![
                    Change::create("protocol", &r.rule.protocol),
                    Change::create("ports", security::ports(&r.rule)),
                    Change::create("source", &r.rule.source),
                ])
                .depends_on(deps)
                .op(Op::Ec2(Ec2Op::AuthorizeIngress {
                    security_group: sg_ref.clone(),
                    rule: r.clone(),
                })),
            );
        }
    }
    if let Some(g) = sg {
        for r in &g.ingress {
            if !desired_rules.iter().any(|d| &d.rule == r) {
                b.push(
                    Step::new(
                        format!(
                            "sg.rule[{} {} {}]",
                            r.protocol,
                            security::ports(r),
                            r.source
                        ),
                        Action::Delete,
                        Phase::Network,
                        removal_reason(b.spec, r),
                    )
                    .changes(vec![
                        Change::delete("protocol", &r.protocol),
                        Change::delete("ports", security::ports(r)),
                        Change::delete("source", &r.source),
                    ])
                    .op(Op::Ec2(Ec2Op::RevokeIngress {
                        security_group: g.id.clone(),
                        rule: r.clone(),
                    })),
                );
            }
        }
    }
}
