//! Phases 1-2 (network and instances, with encryption at launch): the spec's AWS resources
//! against what AWS holds. Identity rules: the VPC, internet gateway, route table and security
//! group by their role tag; subnets by CIDR inside the cluster's VPC; security group rules by
//! (protocol, ports, source); the key pair by name; instances by their `redisctl:node` tag.

use std::collections::{BTreeMap, BTreeSet};

use super::model::*;
use super::naming;
use crate::observed::tags::{self, Role};
use crate::observed::{self, IngressRule, Observed, Tags};
use crate::spec::{Ami, EncryptionStrategy, Spec, SshVia, UBUNTU_2404};

/// Tags redisctl writes itself after creation; never drift.
const RUNTIME_TAGS: &[&str] = &[
    tags::STAGE,
    tags::HOST_KEY,
    tags::SWAP_KEYS,
    tags::SWAP_OLD_VOLUME,
    tags::SWAP_SNAPSHOT,
    tags::SWAP_NEW_VOLUME,
];

pub(super) struct Builder<'a> {
    pub spec: &'a Spec,
    pub observed: &'a Observed,
    pub steps: Vec<Step>,
    pub notes: Vec<Note>,
    /// Fingerprint of the observed state, for RunInstances client tokens.
    pub observed_fingerprint: String,
}

impl<'a> Builder<'a> {
    fn note(&mut self, level: NoteLevel, subject: &str, message: String) {
        self.notes.push(Note {
            level,
            subject: subject.into(),
            message,
        });
    }

    fn planned(&self, address: &str) -> bool {
        self.steps.iter().any(|s| s.address == address)
    }

    /// `address` as a dependency, if it is a step of this plan.
    fn dep(&self, address: &str) -> Vec<String> {
        if self.planned(address) {
            vec![address.to_string()]
        } else {
            Vec::new()
        }
    }

    /// A reference to the resource at `address`: the existing id, or the step that makes it.
    fn reference(&self, address: &str, existing: Option<&str>) -> Ref {
        match existing {
            Some(id) if !self.will_replace(address) => Ref::Id(id.to_string()),
            _ => Ref::Step(address.to_string()),
        }
    }

    fn will_replace(&self, address: &str) -> bool {
        self.steps
            .iter()
            .any(|s| s.address == address && matches!(s.action, Action::Create | Action::Replace))
    }

    fn tags(&self, role: Role, name: &str, node: Option<&str>) -> Tags {
        naming::tags(self.spec, role, name, node)
    }

    /// One observed resource of a role, reporting duplicates.
    fn single<'o, T>(
        &mut self,
        subject: &str,
        list: Vec<&'o T>,
        id: impl Fn(&T) -> &str,
    ) -> Option<&'o T> {
        if list.len() > 1 {
            let ids: Vec<&str> = list.iter().map(|r| id(r)).collect();
            self.note(
                NoteLevel::Warning,
                subject,
                format!(
                    "{} resources are tagged as the cluster's {subject}: {}; using {} (the others are left alone; `redisctl destroy` removes them all)",
                    list.len(),
                    ids.join(", "),
                    ids[0]
                ),
            );
        }
        list.into_iter().next()
    }

    /// The tag changes and the op that makes `observed` tags equal `desired` (runtime tags and
    /// `aws:` tags are left alone), or `None` when they already are.
    fn set_tags_op(&self, id: &str, observed: &Tags, desired: &Tags) -> Option<(Vec<Change>, Op)> {
        let mut set = Tags::new();
        let mut remove = Vec::new();
        let mut changes = Vec::new();
        for (k, v) in desired {
            match observed.get(k) {
                Some(o) if o == v => continue,
                Some(o) => changes.push(Change::update(&format!("tags.{k}"), o, v)),
                None => changes.push(Change::create(&format!("tags.{k}"), v)),
            }
            set.insert(k.clone(), v.clone());
        }
        for (k, v) in observed {
            if !desired.contains_key(k)
                && !k.starts_with("aws:")
                && !RUNTIME_TAGS.contains(&k.as_str())
            {
                changes.push(Change::delete(&format!("tags.{k}"), v));
                remove.push(k.clone());
            }
        }
        (!changes.is_empty()).then(|| {
            (
                changes,
                Op::SetTags {
                    resource: id.to_string(),
                    set,
                    remove,
                },
            )
        })
    }

    /// A step that only brings a resource's tags back to the spec (the resource's one other
    /// compared attribute is unchanged), if they drifted.
    fn update_tags_only(&mut self, address: &str, id: &str, observed: &Tags, desired: &Tags) {
        if let Some((changes, op)) = self.set_tags_op(id, observed, desired) {
            self.push(Step {
                address: address.into(),
                action: Action::Update,
                phase: Phase::Network,
                unchanged: 1,
                changes,
                depends_on: vec![],
                reason: "tags differ from the spec".into(),
                destroys_data: false,
                ops: vec![op],
            });
        }
    }

    fn push(&mut self, step: Step) {
        self.steps.push(step);
    }
}

fn role_is(t: &Tags, role: Role) -> bool {
    t.get(tags::ROLE).map(String::as_str) == Some(role.as_str())
}

pub(super) fn plan_aws(b: &mut Builder<'_>) {
    let spec = b.spec;
    let obs = b.observed;

    // ---- VPC ------------------------------------------------------------------------------
    let vpcs: Vec<&observed::Vpc> = obs
        .vpcs
        .iter()
        .filter(|v| role_is(&v.tags, Role::Vpc))
        .collect();
    let vpc = b.single("vpc", vpcs, |v| &v.id);
    let vpc_tags = b.tags(Role::Vpc, "vpc", None);
    let vpc_cidr = spec.network.vpc_cidr.to_string();
    match vpc {
        None => b.push(Step {
            address: "vpc".into(),
            action: Action::Create,
            phase: Phase::Network,
            changes: vec![
                Change::create("cidr_block", &vpc_cidr),
                Change::create("enable_dns_support", "true"),
                Change::create("enable_dns_hostnames", "true"),
                Change::after_apply("id"),
            ],
            unchanged: 0,
            depends_on: vec![],
            reason: "the cluster has no VPC".into(),
            destroys_data: false,
            ops: vec![Op::CreateVpc {
                cidr: vpc_cidr.clone(),
                tags: vpc_tags,
            }],
        }),
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

    // ---- subnets ----------------------------------------------------------------------------
    let our_subnets: Vec<&observed::Subnet> = obs
        .subnets
        .iter()
        .filter(|s| role_is(&s.tags, Role::Subnet) && Some(&s.vpc_id) == vpc_id.as_ref())
        .collect();
    let map_public_ip = spec.ssh.via == SshVia::PublicIp;
    let mut subnet_ids: BTreeMap<String, Option<String>> = BTreeMap::new();
    for s in &spec.network.subnets {
        let address = format!("subnet.{}", s.name);
        let cidr = s.cidr.to_string();
        let desired_tags = b.tags(Role::Subnet, &s.name, None);
        let matching: Vec<&observed::Subnet> = our_subnets
            .iter()
            .copied()
            .filter(|o| o.cidr == cidr)
            .collect();
        let found = b.single(&address, matching, |o| &o.id);
        match found {
            None => {
                b.push(Step {
                    address: address.clone(),
                    action: Action::Create,
                    phase: Phase::Network,
                    changes: vec![
                        Change::create("cidr_block", &cidr),
                        Change::create("availability_zone", &s.az),
                        Change::create("map_public_ip_on_launch", map_public_ip.to_string()),
                        Change::after_apply("id"),
                    ],
                    unchanged: 0,
                    depends_on: b.dep("vpc"),
                    reason: format!("no subnet {cidr} in the cluster's VPC"),
                    destroys_data: false,
                    ops: vec![Op::CreateSubnet {
                        vpc: vpc_ref.clone(),
                        cidr: cidr.clone(),
                        az: s.az.clone(),
                        map_public_ip,
                        tags: desired_tags,
                    }],
                });
                subnet_ids.insert(s.name.clone(), None);
            }
            Some(o) => {
                subnet_ids.insert(s.name.clone(), Some(o.id.clone()));
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
                    ops.push(Op::SetSubnetPublicIp {
                        subnet: o.id.clone(),
                        map_public_ip,
                    });
                }
                if let Some((c, op)) = b.set_tags_op(&o.id, &o.tags, &desired_tags) {
                    changes.extend(c);
                    ops.push(op);
                }
                if !ops.is_empty() {
                    b.push(Step {
                        address,
                        action: Action::Update,
                        phase: Phase::Network,
                        unchanged: 3 - usize::from(o.map_public_ip_on_launch != map_public_ip),
                        changes,
                        depends_on: vec![],
                        reason: "attributes differ from the spec".into(),
                        destroys_data: false,
                        ops,
                    });
                }
            }
        }
    }

    // ---- internet gateway -------------------------------------------------------------------
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
            b.push(Step {
                address: "igw".into(),
                action: Action::Create,
                phase: Phase::Network,
                changes: vec![
                    Change::after_apply("id"),
                    Change::after_apply("attached_to"),
                ],
                unchanged: 0,
                depends_on: deps,
                reason: "the cluster has no internet gateway".into(),
                destroys_data: false,
                ops: vec![Op::CreateInternetGateway {
                    vpc: vpc_ref.clone(),
                    tags: igw_tags,
                }],
            });
        }
        Some(g) => {
            let mut changes = Vec::new();
            let mut ops = Vec::new();
            let attached = vpc_id.as_ref().is_some_and(|v| g.attached_to.contains(v));
            if !attached {
                changes.push(Change {
                    attribute: "attached_to".into(),
                    before: Some(Value::Known(if g.attached_to.is_empty() {
                        "(none)".into()
                    } else {
                        g.attached_to.join(", ")
                    })),
                    after: Some(match &vpc_id {
                        Some(v) => Value::Known(v.clone()),
                        None => Value::KnownAfterApply,
                    }),
                    forces_replacement: false,
                    ignored_because: None,
                });
                ops.push(Op::AttachInternetGateway {
                    igw: g.id.clone(),
                    vpc: vpc_ref.clone(),
                });
            }
            if let Some((c, op)) = b.set_tags_op(&g.id, &g.tags, &igw_tags) {
                changes.extend(c);
                ops.push(op);
            }
            if !ops.is_empty() {
                let deps = b.dep("vpc");
                b.push(Step {
                    address: "igw".into(),
                    action: Action::Update,
                    phase: Phase::Network,
                    unchanged: usize::from(attached),
                    changes,
                    depends_on: deps,
                    reason: if attached {
                        "tags differ from the spec".into()
                    } else {
                        "the internet gateway is not attached to the cluster's VPC".into()
                    },
                    destroys_data: false,
                    ops,
                });
            }
        }
    }
    let igw_ref = b.reference("igw", igw.map(|g| g.id.as_str()));

    // ---- route table ------------------------------------------------------------------------
    let rts: Vec<&observed::RouteTable> = obs
        .route_tables
        .iter()
        .filter(|r| role_is(&r.tags, Role::RouteTable))
        .collect();
    let rt = b.single("route_table", rts, |r| &r.id);
    let rt_tags = b.tags(Role::RouteTable, "rt", None);
    match rt {
        None => {
            let mut deps = b.dep("vpc");
            deps.extend(b.dep("igw"));
            b.push(Step {
                address: "route_table".into(),
                action: Action::Create,
                phase: Phase::Network,
                changes: vec![
                    Change {
                        attribute: "route[0.0.0.0/0]".into(),
                        before: None,
                        after: Some(match &igw_ref {
                            Ref::Id(id) => Value::Known(id.clone()),
                            Ref::Step(_) => Value::KnownAfterApply,
                        }),
                        forces_replacement: false,
                        ignored_because: None,
                    },
                    Change::after_apply("id"),
                ],
                unchanged: 0,
                depends_on: deps,
                reason: "the cluster has no route table".into(),
                destroys_data: false,
                ops: vec![Op::CreateRouteTable {
                    vpc: vpc_ref.clone(),
                    igw: igw_ref.clone(),
                    tags: rt_tags,
                }],
            });
        }
        Some(r) => {
            let mut changes = Vec::new();
            let mut ops = Vec::new();
            let default_route = r.routes.iter().find(|x| x.destination == "0.0.0.0/0");
            let igw_now = match &igw_ref {
                Ref::Id(id) => Some(id.as_str()),
                Ref::Step(_) => None,
            };
            let route_ok = default_route.is_some_and(|x| Some(x.target.as_str()) == igw_now);
            if !route_ok {
                changes.push(Change {
                    attribute: "route[0.0.0.0/0]".into(),
                    before: default_route.map(|x| Value::Known(x.target.clone())),
                    after: Some(igw_now.map_or(Value::KnownAfterApply, |i| Value::Known(i.into()))),
                    forces_replacement: false,
                    ignored_because: None,
                });
                ops.push(Op::SetDefaultRoute {
                    route_table: r.id.clone(),
                    igw: igw_ref.clone(),
                    replace: default_route.is_some(),
                });
            }
            if let Some((c, op)) = b.set_tags_op(&r.id, &r.tags, &rt_tags) {
                changes.extend(c);
                ops.push(op);
            }
            if !ops.is_empty() {
                let deps = b.dep("igw");
                b.push(Step {
                    address: "route_table".into(),
                    action: Action::Update,
                    phase: Phase::Network,
                    unchanged: usize::from(route_ok),
                    changes,
                    depends_on: deps,
                    reason: if route_ok {
                        "tags differ from the spec".into()
                    } else {
                        "the default route does not go to the cluster's internet gateway".into()
                    },
                    destroys_data: false,
                    ops,
                });
            }
        }
    }
    let rt_ref = b.reference("route_table", rt.map(|r| r.id.as_str()));
    for s in &spec.network.subnets {
        let existing = subnet_ids.get(&s.name).cloned().flatten();
        let associated = match (rt, &existing) {
            (Some(r), Some(sid)) => r
                .associations
                .iter()
                .any(|a| a.subnet_id.as_ref() == Some(sid)),
            _ => false,
        };
        if !associated {
            let address = format!("route_table.association[{}]", s.name);
            let subnet_addr = format!("subnet.{}", s.name);
            let mut deps = b.dep("route_table");
            deps.extend(b.dep(&subnet_addr));
            let subnet_ref = b.reference(&subnet_addr, existing.as_deref());
            b.push(Step {
                address,
                action: Action::Create,
                phase: Phase::Network,
                changes: vec![
                    Change::create("subnet", &s.name),
                    Change::after_apply("association_id"),
                ],
                unchanged: 0,
                depends_on: deps,
                reason: format!("subnet {} does not use the cluster's route table", s.name),
                destroys_data: false,
                ops: vec![Op::AssociateRouteTable {
                    route_table: rt_ref.clone(),
                    subnet: subnet_ref,
                }],
            });
        }
    }

    // ---- security group ---------------------------------------------------------------------
    let sgs: Vec<&observed::SecurityGroup> = obs
        .security_groups
        .iter()
        .filter(|g| role_is(&g.tags, Role::SecurityGroup))
        .collect();
    let sg = b.single("sg", sgs, |g| &g.id);
    let sg_tags = b.tags(Role::SecurityGroup, "redis", None);
    let sg_name = naming::security_group_name(spec);
    match sg {
        None => {
            let deps = b.dep("vpc");
            b.push(Step {
                address: "sg".into(),
                action: Action::Create,
                phase: Phase::Network,
                changes: vec![Change::create("name", &sg_name), Change::after_apply("id")],
                unchanged: 0,
                depends_on: deps,
                reason: "the cluster has no security group".into(),
                destroys_data: false,
                ops: vec![Op::CreateSecurityGroup {
                    vpc: vpc_ref.clone(),
                    name: sg_name.clone(),
                    description: format!(
                        "redisctl {}: SSH from admins, Redis and bus from the VPC",
                        spec.cluster.name
                    ),
                    tags: sg_tags,
                }],
            });
        }
        Some(g) => {
            b.update_tags_only("sg", &g.id, &g.tags, &sg_tags);
        }
    }
    let sg_ref = b.reference("sg", sg.map(|g| g.id.as_str()));
    let desired_rules = naming::ingress_rules(spec);
    let observed_rules: BTreeSet<&IngressRule> =
        sg.map(|g| g.ingress.iter().collect()).unwrap_or_default();
    for r in &desired_rules {
        if !observed_rules.contains(&r.rule) {
            let deps = b.dep("sg");
            b.push(Step {
                address: format!("sg.rule[{}]", r.description),
                action: Action::Create,
                phase: Phase::Network,
                changes: vec![
                    Change::create("protocol", &r.rule.protocol),
                    Change::create("ports", naming::ports(&r.rule)),
                    Change::create("source", &r.rule.source),
                ],
                unchanged: 0,
                depends_on: deps,
                reason: "the spec allows this traffic".into(),
                destroys_data: false,
                ops: vec![Op::AuthorizeIngress {
                    security_group: sg_ref.clone(),
                    rule: r.clone(),
                }],
            });
        }
    }
    if let Some(g) = sg {
        for r in &g.ingress {
            if !desired_rules.iter().any(|d| &d.rule == r) {
                b.push(Step {
                    address: format!("sg.rule[{} {} {}]", r.protocol, naming::ports(r), r.source),
                    action: Action::Delete,
                    phase: Phase::Network,
                    changes: vec![
                        Change::delete("protocol", &r.protocol),
                        Change::delete("ports", naming::ports(r)),
                        Change::delete("source", &r.source),
                    ],
                    unchanged: 0,
                    depends_on: vec![],
                    reason: "not in the spec: added out of band".into(),
                    destroys_data: false,
                    ops: vec![Op::RevokeIngress {
                        security_group: g.id.clone(),
                        rule: r.clone(),
                    }],
                });
            }
        }
    }

    // ---- key pair ---------------------------------------------------------------------------
    let key_name = &spec.ssh.key_name;
    let kps: Vec<&observed::KeyPair> = obs
        .key_pairs
        .iter()
        .filter(|k| &k.name == key_name)
        .collect();
    let kp = b.single("key_pair", kps, |k| &k.id);
    let kp_tags = b.tags(Role::KeyPair, "key", None);
    let local = obs.local_public_key.as_deref();
    let import = Op::ImportKeyPair {
        name: key_name.clone(),
        private_key: spec.ssh.private_key.display().to_string(),
        tags: kp_tags,
    };
    match (kp, local) {
        (None, _) => b.push(Step {
            address: "key_pair".into(),
            action: Action::Create,
            phase: Phase::Instances,
            changes: vec![
                Change::create("name", key_name),
                match local {
                    Some(k) => Change::create("public_key", naming::short_key(k)),
                    None => Change::after_apply("public_key"),
                },
            ],
            unchanged: 0,
            depends_on: vec![],
            reason: match local {
                Some(_) => format!("no key pair named {key_name}"),
                None => format!(
                    "no key pair named {key_name}; a new ed25519 key will be generated at {}",
                    spec.ssh.private_key.display()
                ),
            },
            destroys_data: false,
            ops: vec![import],
        }),
        (Some(k), None) => b.note(
            NoteLevel::Blocker,
            "key_pair",
            format!(
                "key pair {key_name} exists in AWS but its private key {} is missing here: nodes cannot be reached over SSH. Restore the key file, or point ssh.private_key at it",
                spec.ssh.private_key.display()
            ) + &format!(" ({})", k.id),
        ),
        (Some(k), Some(local)) => {
            let same = k.public_key.as_deref().is_some_and(|p| naming::same_public_key(p, local));
            if !same {
                let uses: Vec<&str> = obs
                    .instances
                    .iter()
                    .filter(|i| i.key_name.as_deref() == Some(key_name.as_str()))
                    .map(|i| i.id.as_str())
                    .collect();
                if !uses.is_empty() {
                    b.note(
                        NoteLevel::Warning,
                        "key_pair",
                        format!("the key pair is replaced, but running nodes ({}) keep the key they booted with", uses.join(", ")),
                    );
                }
                b.push(Step {
                    address: "key_pair".into(),
                    action: Action::Replace,
                    phase: Phase::Instances,
                    changes: vec![Change::update(
                        "public_key",
                        k.public_key.as_deref().map(naming::short_key).unwrap_or_else(|| "(unknown)".into()),
                        naming::short_key(local),
                    )
                    .forcing()],
                    unchanged: 1,
                    depends_on: vec![],
                    reason: format!("the public key in AWS is not the one of {}", spec.ssh.private_key.display()),
                    destroys_data: false,
                    ops: vec![Op::DeleteKeyPair { name: key_name.clone() }, import],
                });
            }
        }
    }

    plan_nodes(b, &subnet_ids, &sg_ref);
}

/// The newest Ubuntu 24.04 image, or the spec's explicit AMI, with its root device name.
fn image(b: &Builder<'_>) -> Option<(String, String)> {
    match &b.spec.nodes.ami {
        Ami::Id(id) => Some((
            id.clone(),
            b.observed
                .images
                .iter()
                .find(|i| &i.id == id)
                .map(|i| i.root_device_name.clone())
                .unwrap_or_else(|| "/dev/sda1".into()),
        )),
        Ami::Ubuntu2404 => b
            .observed
            .images
            .iter()
            .filter(|i| {
                i.architecture == "x86_64" && i.name.contains("ubuntu-noble-24.04-amd64-server")
            })
            .max_by(|x, y| {
                x.creation_date
                    .cmp(&y.creation_date)
                    .then(x.name.cmp(&y.name))
            })
            .map(|i| (i.id.clone(), i.root_device_name.clone())),
    }
}

fn plan_nodes(b: &mut Builder<'_>, subnet_ids: &BTreeMap<String, Option<String>>, sg_ref: &Ref) {
    let spec = b.spec;
    let obs = b.observed;
    let rv = &spec.nodes.root_volume;
    let encrypt_at_launch = rv.encrypted && rv.strategy == EncryptionStrategy::AtLaunch;
    let node_instances: Vec<&observed::Instance> = obs
        .instances
        .iter()
        .filter(|i| role_is(&i.tags, Role::Node))
        .collect();

    // Nodes that are no longer in the spec go first: their addresses may be reused.
    let wanted: BTreeSet<&str> = spec.nodes.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut deletes = Vec::new();
    for i in &node_instances {
        let name = i.tags.get(tags::NODE).map(String::as_str).unwrap_or("?");
        if !wanted.contains(name) {
            let address = format!("node.{name}");
            deletes.push(address.clone());
            b.push(Step {
                address: if b.planned(&address) {
                    format!("{address}[{}]", i.id)
                } else {
                    address
                },
                action: Action::Delete,
                phase: Phase::Instances,
                changes: vec![
                    Change::delete("instance_id", &i.id),
                    Change::delete(
                        "private_ip",
                        i.private_ip.map(|x| x.to_string()).unwrap_or_default(),
                    ),
                ],
                unchanged: 0,
                depends_on: vec![],
                reason: "node is not in the spec".into(),
                destroys_data: true,
                ops: vec![Op::TerminateInstance {
                    instance: i.id.clone(),
                }],
            });
        }
    }

    let img = image(b);
    let needs_image = spec.nodes.nodes.iter().any(|n| {
        !node_instances
            .iter()
            .any(|i| i.tags.get(tags::NODE) == Some(&n.name))
    });
    if needs_image && img.is_none() {
        b.note(
            NoteLevel::Blocker,
            "nodes.ami",
            match &spec.nodes.ami {
                Ami::Ubuntu2404 => format!(
                    "no {UBUNTU_2404} image found in {} (owner {}, name {}): set nodes.ami to an explicit ami- id",
                    spec.cluster.region,
                    crate::spec::CANONICAL_OWNER,
                    crate::spec::UBUNTU_2404_NAME_FILTER
                ),
                Ami::Id(id) => format!("image {id} does not exist in {}", spec.cluster.region),
            },
        );
    }
    let (image_id, root_device) =
        img.unwrap_or_else(|| ("(unresolved)".into(), "/dev/sda1".into()));

    for n in &spec.nodes.nodes {
        let address = format!("node.{}", n.name);
        let subnet_addr = format!("subnet.{}", n.subnet);
        let subnet_existing = subnet_ids.get(&n.subnet).cloned().flatten();
        let subnet_ref = b.reference(&subnet_addr, subnet_existing.as_deref());
        let run = RunInstance {
            node: n.name.clone(),
            image_id: image_id.clone(),
            instance_type: spec.nodes.instance_type.clone(),
            subnet: subnet_ref,
            security_group: sg_ref.clone(),
            key_name: spec.ssh.key_name.clone(),
            private_ip: n.private_ip,
            root_device: root_device.clone(),
            volume_size_gib: rv.size_gib,
            volume_type: rv.volume_type.clone(),
            encrypted: encrypt_at_launch,
            kms_key: encrypt_at_launch.then(|| rv.kms_key.clone()),
            tags: b.tags(Role::Node, &n.name, Some(&n.name)),
            volume_tags: b.tags(Role::Volume, &format!("{}-root", n.name), Some(&n.name)),
            client_token: naming::client_token(
                &spec.cluster.name,
                &n.name,
                &b.observed_fingerprint,
            ),
        };
        let mut deps = b.dep(&subnet_addr);
        deps.extend(b.dep("sg"));
        deps.extend(b.dep("key_pair"));
        deps.extend(b.dep(&format!("route_table.association[{}]", n.subnet)));
        deps.extend(deletes.iter().cloned());
        let create_changes = || {
            vec![
                Change::create("instance_type", &spec.nodes.instance_type),
                Change::create("ami", &image_id),
                Change::create("subnet", &n.subnet),
                Change::create("availability_zone", &n.az),
                Change::create("private_ip", n.private_ip.to_string()),
                Change::create("key_name", &spec.ssh.key_name),
                Change::create("root_volume.size_gib", rv.size_gib.to_string()),
                Change::create("root_volume.type", &rv.volume_type),
                Change::create("root_volume.encrypted", encrypt_at_launch.to_string()),
                Change::after_apply("instance_id"),
            ]
        };
        let mine: Vec<&observed::Instance> = node_instances
            .iter()
            .copied()
            .filter(|i| i.tags.get(tags::NODE) == Some(&n.name))
            .collect();
        let Some(inst) = b.single(&address, mine, |i| &i.id) else {
            b.push(Step {
                address,
                action: Action::Create,
                phase: Phase::Instances,
                changes: create_changes(),
                unchanged: 0,
                depends_on: deps,
                reason: "no instance for this node".into(),
                destroys_data: false,
                ops: vec![Op::RunInstance(Box::new(run))],
            });
            continue;
        };

        let mut changes = Vec::new();
        let mut unchanged = 0;
        let mut replace = false;
        let subnet_now = inst
            .subnet_id
            .as_ref()
            .and_then(|sid| obs.subnets.iter().find(|s| &s.id == sid))
            .and_then(|s| {
                spec.network
                    .subnets
                    .iter()
                    .find(|x| x.cidr.to_string() == s.cidr)
            })
            .map(|s| s.name.clone());
        if subnet_now.as_deref() != Some(n.subnet.as_str()) {
            changes.push(
                Change::update(
                    "subnet",
                    subnet_now.unwrap_or_else(|| inst.subnet_id.clone().unwrap_or_default()),
                    &n.subnet,
                )
                .forcing(),
            );
            replace = true;
        } else {
            unchanged += 1;
        }
        if inst.private_ip != Some(n.private_ip) {
            changes.push(
                Change::update(
                    "private_ip",
                    inst.private_ip.map(|x| x.to_string()).unwrap_or_default(),
                    n.private_ip.to_string(),
                )
                .forcing(),
            );
            replace = true;
        } else {
            unchanged += 1;
        }
        if !matches!(image_id.as_str(), "(unresolved)") && inst.image_id != image_id {
            changes.push(
                Change::update("ami", &inst.image_id, &image_id)
                    .ignored("the AMI of an existing node is never a reason to replace it"),
            );
        } else {
            unchanged += 1;
        }
        let mut ops = Vec::new();
        if replace {
            let mut c = changes;
            c.push(Change::after_apply("instance_id"));
            b.push(Step {
                address,
                action: Action::Replace,
                phase: Phase::Instances,
                changes: c,
                unchanged,
                depends_on: deps,
                reason: "a node cannot move to another subnet or address in place".into(),
                destroys_data: true,
                ops: vec![Op::ReplaceInstance {
                    terminate: inst.id.clone(),
                    run: Box::new(run),
                }],
            });
            continue;
        }
        if inst.instance_type != spec.nodes.instance_type {
            let running = inst.state == "running";
            changes.push(Change::update(
                "instance_type",
                &inst.instance_type,
                &spec.nodes.instance_type,
            ));
            ops.push(Op::ModifyInstanceType {
                instance: inst.id.clone(),
                instance_type: spec.nodes.instance_type.clone(),
                restart: running,
            });
            if running {
                b.note(
                    NoteLevel::Warning,
                    &address,
                    "changing the instance type stops and starts the node: it is unavailable meanwhile".into(),
                );
            }
        } else {
            unchanged += 1;
        }
        match inst.http_tokens.as_deref() {
            Some(t) if t != "required" => {
                changes.push(Change::update(
                    "metadata_options.http_tokens",
                    t,
                    "required",
                ));
                ops.push(Op::RequireImdsV2 {
                    instance: inst.id.clone(),
                });
            }
            _ => unchanged += 1,
        }
        match inst.state.as_str() {
            "running" | "pending" => unchanged += 1,
            // A root volume swap in flight stopped it; the swap starts it again.
            "stopped" if super::encryption::stage_of(&inst.tags).is_some() => unchanged += 1,
            "stopped" => {
                changes.push(Change::update("state", "stopped", "running"));
                ops.push(Op::StartInstance {
                    instance: inst.id.clone(),
                });
            }
            other => b.note(
                NoteLevel::Warning,
                &address,
                format!(
                    "instance {} is {other}; plan again once it has settled",
                    inst.id
                ),
            ),
        }
        if inst.key_name.as_deref() != Some(spec.ssh.key_name.as_str()) {
            changes.push(
                Change::update(
                    "key_name",
                    inst.key_name.clone().unwrap_or_default(),
                    &spec.ssh.key_name,
                )
                .ignored("the key pair is only used at first boot"),
            );
        }
        if let Some(root) = root_volume(obs, inst) {
            if i64::from(root.size_gib) < i64::from(rv.size_gib) {
                changes.push(
                    Change::update(
                        "root_volume.size_gib",
                        root.size_gib.to_string(),
                        rv.size_gib.to_string(),
                    )
                    .ignored("resizing a root volume is not supported yet"),
                );
            } else {
                unchanged += 1;
            }
            // Encryption is phase 8's (the root volume swap), not the instance's.
            unchanged += 1;
        }
        if let Some((c, op)) = b.set_tags_op(&inst.id, &inst.tags, &run.tags) {
            changes.extend(c);
            ops.push(op);
        }
        // Differences redisctl does not act on are told, not planned: a plan of only those
        // must still be empty.
        let (ignored, changes): (Vec<Change>, Vec<Change>) = changes
            .into_iter()
            .partition(|c| c.ignored_because.is_some());
        for c in ignored {
            b.note(
                NoteLevel::Info,
                &address,
                format!(
                    "{}: {} -> {} (not acted on: {})",
                    c.attribute,
                    c.before.map(|v| v.to_string()).unwrap_or_default(),
                    c.after.map(|v| v.to_string()).unwrap_or_default(),
                    c.ignored_because.unwrap_or_default()
                ),
            );
        }
        if !ops.is_empty() {
            let reason = if matches!(&ops[..], [Op::RequireImdsV2 { .. }]) {
                "IMDSv1 was allowed out of band; every node requires IMDSv2 session tokens"
            } else {
                "the instance differs from the spec"
            };
            b.push(Step {
                address,
                action: Action::Update,
                phase: Phase::Instances,
                changes,
                unchanged,
                depends_on: deps,
                reason: reason.into(),
                destroys_data: false,
                ops,
            });
        }
    }
}

fn root_volume<'o>(obs: &'o Observed, inst: &observed::Instance) -> Option<&'o observed::Volume> {
    let dev = inst.root_device_name.as_ref()?;
    let vid = inst.block_devices.get(dev)?;
    obs.volumes.iter().find(|v| &v.id == vid)
}
