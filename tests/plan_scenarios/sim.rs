//! A simulated region: applies plan operations to `Observed` as the executor and a later
//! observation would. `Sim::op` matches every `Op`, so a new operation does not compile until
//! the simulator carries it out. EC2 resources that take more than one line (instances, the
//! root volume swap, tags) are in [`ec2`]; the simulated nodes' facts in [`nodes`].

mod cluster;
mod ec2;
mod nodes;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use redisctl::observed::{self, ClusterView, InitSystem, NodeObservation, Observed};
use redisctl::pki::{Authority, Ca};
use redisctl::plan::{
    self, CaStep, Ec2Op, LocalOp, NodeOp, Op, Plan, Ref, ReplicationStep, SshKeyStep,
};
use redisctl::redis::{conf, files, kernel, systemd, users_acl};
use redisctl::render;
use redisctl::spec::Spec;

use crate::fixtures::{empty_region, now, secrets};
use nodes::written;

pub struct Sim {
    pub o: Observed,
    next: u32,
    /// Step address -> id made by that step.
    made: BTreeMap<String, String>,
    spec: Spec,
    /// The simulation's state directory (the CA files, as redisctl keeps them).
    ca_dir: Option<std::path::PathBuf>,
    /// The public keys each node's login user accepts (an SSH key rotation changes them), for
    /// nodes whose set was changed; the others accept the key they booted with.
    authorized: BTreeMap<String, Vec<String>>,
}

/// The newest redis-server the simulated archive has.
pub const ARCHIVE_NEWEST: &str = "5:7.0.15-1~deb12u1+sandbox1";

static NEXT_CA: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// CAs the simulation made, by certificate: a later simulation of the same world (same
    /// test thread) signs with the same CA, as redisctl would with the CA in its state dir.
    static CAS: std::cell::RefCell<BTreeMap<String, std::path::PathBuf>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

impl Sim {
    pub fn new(spec: &Spec, o: Observed) -> Self {
        let ca_dir = o
            .local
            .ca_cert_pem
            .as_ref()
            .and_then(|pem| CAS.with(|c| c.borrow().get(pem).cloned()));
        let mut sim = Sim {
            o,
            next: 1,
            made: BTreeMap::new(),
            spec: spec.clone(),
            ca_dir,
            authorized: BTreeMap::new(),
        };
        sim.observe_local();
        sim
    }

    /// What observation computes locally: the files' hashes for the current spec.
    pub fn observe_local(&mut self) {
        if let Some(ca) = self.authority() {
            self.o.local.ca_cert_pem = Some(ca.current_pem().to_string());
            self.o.local.ca_next_cert_pem = ca.next().map(|c| c.cert_pem().to_string());
            self.o.local.replication_rotating = ca.replication_rotating();
            self.o.local.desired_files =
                files::desired_hashes(&self.spec, &secrets(&self.spec), &ca).unwrap();
        }
    }

    /// The public keys `node` accepts (at first, the one it booted with: the operator's).
    fn keys_of(&mut self, node: &str) -> &mut Vec<String> {
        let boot = self.o.local_public_key.clone().unwrap_or_default();
        self.authorized
            .entry(node.to_string())
            .or_insert_with(|| vec![boot])
    }

    /// Whether `node` accepts exactly `keys` (test assertions).
    pub fn accepts(&self, node: &str) -> Option<&Vec<String>> {
        self.authorized.get(node)
    }

    /// The CAs of the simulation's state directory, as the node runtime loads them.
    fn authority(&self) -> Option<Authority> {
        let dir = self.ca_dir.as_ref()?;
        Authority::load(dir, self.spec.tls.ca_rotation).expect("the simulation's CAs load back")
    }

    /// A state directory with the CA `ca` (a test's own CA, as if restored from a backup).
    pub fn state_dir_of(ca: &Ca) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "redisctl-sim-ca-{}-{}",
            std::process::id(),
            NEXT_CA.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        redisctl::private_fs::private_dir(&dir).unwrap();
        ca.save(&dir).unwrap();
        CAS.with(|c| {
            c.borrow_mut()
                .insert(ca.cert_pem().to_string(), dir.clone())
        });
        dir
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{:017x}", self.next)
    }

    fn resolve(&self, r: &Ref) -> String {
        match r {
            Ref::Id(id) => id.clone(),
            Ref::Step(a) => self
                .made
                .get(a)
                .cloned()
                .unwrap_or_else(|| panic!("{a} has not run yet")),
        }
    }

    pub fn apply(&mut self, plan: &Plan) {
        assert!(
            plan.blockers().next().is_none(),
            "plan has blockers: {:?}",
            plan.notes
        );
        for step in &plan.steps {
            for op in &step.ops {
                if let Some(id) = self.op(op) {
                    self.made.insert(step.address.clone(), id);
                }
            }
        }
    }

    fn op(&mut self, op: &Op) -> Option<String> {
        match op {
            Op::Ec2(Ec2Op::CreateVpc { cidr, tags }) => {
                let id = self.id("vpc");
                self.o.vpcs.push(observed::Vpc {
                    id: id.clone(),
                    cidr: cidr.clone(),
                    state: "available".into(),
                    dns_support: Some(true),
                    dns_hostnames: Some(true),
                    tags: tags.clone(),
                });
                Some(id)
            }
            Op::Ec2(Ec2Op::CreateSubnet {
                vpc,
                cidr,
                az,
                map_public_ip,
                tags,
            }) => {
                let id = self.id("subnet");
                let vpc_id = self.resolve(vpc);
                self.o.subnets.push(observed::Subnet {
                    id: id.clone(),
                    vpc_id,
                    cidr: cidr.clone(),
                    az: az.clone(),
                    map_public_ip_on_launch: *map_public_ip,
                    tags: tags.clone(),
                });
                Some(id)
            }
            Op::Ec2(Ec2Op::SetSubnetPublicIp {
                subnet,
                map_public_ip,
            }) => {
                self.o
                    .subnets
                    .iter_mut()
                    .find(|s| &s.id == subnet)
                    .unwrap()
                    .map_public_ip_on_launch = *map_public_ip;
                None
            }
            Op::Ec2(Ec2Op::CreateInternetGateway { vpc, tags }) => {
                let id = self.id("igw");
                let v = self.resolve(vpc);
                self.o.internet_gateways.push(observed::InternetGateway {
                    id: id.clone(),
                    attached_to: vec![v],
                    tags: tags.clone(),
                });
                Some(id)
            }
            Op::Ec2(Ec2Op::AttachInternetGateway { igw, vpc }) => {
                let v = self.resolve(vpc);
                self.o
                    .internet_gateways
                    .iter_mut()
                    .find(|g| &g.id == igw)
                    .unwrap()
                    .attached_to = vec![v];
                None
            }
            Op::Ec2(Ec2Op::CreateRouteTable { vpc, target, tags }) => {
                let id = self.id("rtb");
                let v = self.resolve(vpc);
                let mut routes = vec![observed::Route {
                    destination: "10.0.0.0/16".into(),
                    target: "local".into(),
                }];
                if let Some(t) = target {
                    routes.push(observed::Route {
                        destination: "0.0.0.0/0".into(),
                        target: self.route_target(t),
                    });
                }
                self.o.route_tables.push(observed::RouteTable {
                    id: id.clone(),
                    vpc_id: v,
                    routes,
                    associations: vec![],
                    tags: tags.clone(),
                });
                Some(id)
            }
            Op::Ec2(Ec2Op::SetDefaultRoute {
                route_table,
                target,
                ..
            }) => {
                let t = target.as_ref().map(|t| self.route_target(t));
                let rt = self
                    .o
                    .route_tables
                    .iter_mut()
                    .find(|r| &r.id == route_table)
                    .unwrap();
                rt.routes.retain(|r| r.destination != "0.0.0.0/0");
                if let Some(t) = t {
                    rt.routes.push(observed::Route {
                        destination: "0.0.0.0/0".into(),
                        target: t,
                    });
                }
                None
            }
            Op::Ec2(Ec2Op::AllocateAddress { tags }) => {
                let id = self.id("eipalloc");
                let n = self.o.addresses.len();
                self.o.addresses.push(observed::Address {
                    allocation_id: id.clone(),
                    public_ip: format!("198.51.100.{}", 200 + n),
                    association_id: None,
                    tags: tags.clone(),
                });
                Some(id)
            }
            Op::Ec2(Ec2Op::CreateNatGateway {
                subnet,
                allocation,
                tags,
            }) => {
                let (subnet, allocation) = (self.resolve(subnet), self.resolve(allocation));
                if let Some(g) = self
                    .o
                    .nat_gateways
                    .iter_mut()
                    .find(|g| g.tags == *tags && g.state == "pending")
                {
                    g.state = "available".into();
                    return Some(g.id.clone());
                }
                let vpc_id = self
                    .o
                    .subnets
                    .iter()
                    .find(|s| s.id == subnet)
                    .expect("the NAT gateway's subnet exists")
                    .vpc_id
                    .clone();
                let id = self.id("nat");
                let a = self
                    .o
                    .addresses
                    .iter_mut()
                    .find(|a| a.allocation_id == allocation)
                    .expect("the NAT gateway's Elastic IP exists");
                assert!(
                    a.association_id.is_none(),
                    "{allocation} is already associated"
                );
                a.association_id = Some(format!("eipassoc-{id}"));
                self.o.nat_gateways.push(observed::NatGateway {
                    id: id.clone(),
                    subnet_id: subnet,
                    vpc_id,
                    state: "available".into(),
                    allocation_ids: vec![allocation],
                    tags: tags.clone(),
                });
                Some(id)
            }
            Op::Ec2(Ec2Op::DeleteNatGateway { id }) => {
                for a in &mut self.o.addresses {
                    if a.association_id.as_deref() == Some(&format!("eipassoc-{id}")) {
                        a.association_id = None;
                    }
                }
                self.o.nat_gateways.retain(|g| &g.id != id);
                None
            }
            Op::Ec2(Ec2Op::ReleaseAddress { allocation_id }) => {
                assert!(
                    self.o
                        .addresses
                        .iter()
                        .all(|a| &a.allocation_id != allocation_id || a.association_id.is_none()),
                    "{allocation_id} released while a NAT gateway holds it"
                );
                self.o
                    .addresses
                    .retain(|a| &a.allocation_id != allocation_id);
                None
            }
            Op::Ec2(Ec2Op::AssociateRouteTable {
                route_table,
                subnet,
            }) => {
                let (rt, s) = (self.resolve(route_table), self.resolve(subnet));
                let id = self.id("rtbassoc");
                self.o
                    .route_tables
                    .iter_mut()
                    .find(|r| r.id == rt)
                    .unwrap()
                    .associations
                    .push(observed::RouteTableAssociation {
                        id: id.clone(),
                        subnet_id: Some(s),
                        main: false,
                    });
                Some(id)
            }
            Op::Ec2(Ec2Op::CreateSecurityGroup {
                vpc, name, tags, ..
            }) => {
                let id = self.id("sg");
                let v = self.resolve(vpc);
                self.o.security_groups.push(observed::SecurityGroup {
                    id: id.clone(),
                    name: name.clone(),
                    vpc_id: v,
                    ingress: vec![],
                    tags: tags.clone(),
                });
                Some(id)
            }
            Op::Ec2(Ec2Op::AuthorizeIngress {
                security_group,
                rule,
            }) => {
                let sg = self.resolve(security_group);
                self.o
                    .security_groups
                    .iter_mut()
                    .find(|g| g.id == sg)
                    .unwrap()
                    .ingress
                    .push(rule.rule.clone());
                None
            }
            Op::Ec2(Ec2Op::RevokeIngress {
                security_group,
                rule,
            }) => {
                self.o
                    .security_groups
                    .iter_mut()
                    .find(|g| &g.id == security_group)
                    .unwrap()
                    .ingress
                    .retain(|r| r != rule);
                None
            }
            Op::Ec2(Ec2Op::ImportKeyPair { name, tags, .. }) => {
                let id = self.id("key");
                let public_key = self.o.local_public_key.clone();
                self.o.key_pairs.push(observed::KeyPair {
                    id: id.clone(),
                    name: name.clone(),
                    public_key,
                    tags: tags.clone(),
                });
                Some(id)
            }
            Op::Ec2(Ec2Op::DeleteKeyPair { name }) => {
                self.o.key_pairs.retain(|k| &k.name != name);
                None
            }
            Op::Ec2(Ec2Op::RunInstance(run)) => Some(self.run(run)),
            Op::Ec2(Ec2Op::ReplaceInstance { terminate, run }) => {
                self.terminate(terminate);
                Some(self.run(run))
            }
            Op::Ec2(Ec2Op::StartInstance { instance }) => {
                self.o
                    .instances
                    .iter_mut()
                    .find(|i| &i.id == instance)
                    .unwrap()
                    .state = "running".into();
                None
            }
            Op::Ec2(Ec2Op::ModifyInstanceType {
                instance,
                instance_type,
                ..
            }) => {
                self.o
                    .instances
                    .iter_mut()
                    .find(|i| &i.id == instance)
                    .unwrap()
                    .instance_type = instance_type.clone();
                None
            }
            Op::Node(NodeOp::SetRuntime { node, settings }) => {
                let f = self.facts(node);
                if let Some(rt) = &mut f.runtime {
                    for (k, v) in settings {
                        rt.config.insert(k.clone(), v.clone());
                    }
                    rt.listeners = None;
                }
                None
            }
            Op::Node(NodeOp::TakeOverRedis { node, .. }) => {
                let f = self.facts(node);
                f.foreign_redis.clear();
                f.data_not_redis = None;
                None
            }
            Op::Node(NodeOp::SetFileModes { node }) => {
                if let Some(NodeObservation::Reached(f)) = self.o.nodes.get_mut(node) {
                    for m in files::MANAGED_DIRS.iter().chain(&files::MANAGED) {
                        if let Some(v) = f.modes.get_mut(m.path) {
                            *v = m.mode_owner();
                        }
                    }
                }
                None
            }
            Op::Ec2(Ec2Op::RequireImdsV2 { instance }) => {
                self.o
                    .instances
                    .iter_mut()
                    .find(|i| &i.id == instance)
                    .unwrap()
                    .http_tokens = Some("required".into());
                None
            }
            Op::Ec2(Ec2Op::TerminateInstance { instance }) => {
                self.terminate(instance);
                None
            }
            Op::Ec2(Ec2Op::SetTags {
                resource,
                set,
                remove,
            }) => {
                let t = self.tags_of(resource);
                t.extend(set.clone());
                t.retain(|k, _| !remove.contains(k));
                None
            }
            Op::Ec2(Ec2Op::DisassociateRouteTable { association_id }) => {
                for rt in &mut self.o.route_tables {
                    rt.associations.retain(|a| &a.id != association_id);
                }
                None
            }
            Op::Node(NodeOp::PinHostKey { node, .. }) => {
                self.facts(node).first_contact = false;
                None
            }
            Op::Local(LocalOp::EnsureSshKey { .. }) => {
                if self.o.local_public_key.is_none() {
                    self.o.local_public_key = Some(crate::fixtures::LOCAL_KEY.into());
                }
                None
            }
            Op::Local(LocalOp::EnsureCa) => {
                let ca = Ca::create(
                    &self.spec.cluster.name,
                    now(),
                    redisctl::pki::CA_VALIDITY_DAYS,
                )
                .unwrap();
                self.ca_dir = Some(Sim::state_dir_of(&ca));
                self.observe_local();
                None
            }
            Op::Local(LocalOp::Ca { step }) => {
                let dir = self.ca_dir.clone().expect("a rotation has a CA to rotate");
                match step {
                    CaStep::CreateNext => {
                        redisctl::pki::create_next(&dir, &self.spec.cluster.name, now()).unwrap()
                    }
                    CaStep::Promote => redisctl::pki::promote(&dir).unwrap(),
                    CaStep::DropNext => redisctl::pki::drop_next(&dir).unwrap(),
                }
                self.observe_local();
                let pem = self.o.local.ca_cert_pem.clone().unwrap();
                CAS.with(|c| c.borrow_mut().insert(pem, dir));
                None
            }
            Op::Local(LocalOp::SshKey { step, .. }) => {
                let local = &mut self.o.local;
                match step {
                    SshKeyStep::CreateNext => {
                        local.ssh_next_public_key =
                            Some(format!("ssh-ed25519 NEXT{} redisctl", self.next));
                    }
                    SshKeyStep::Promote => {
                        if let Some(next) = local.ssh_next_public_key.take() {
                            if local.ssh_previous_public_key.is_none() {
                                local.ssh_previous_public_key = self.o.local_public_key.clone();
                            }
                            self.o.local_public_key = Some(next);
                        }
                    }
                    SshKeyStep::DropPrevious => local.ssh_previous_public_key = None,
                }
                None
            }
            Op::Node(NodeOp::UpdateOs { .. }) => None,
            Op::Node(NodeOp::UpgradeRedis { node, version, .. }) => {
                self.facts(node).redis_version = Some(version.clone());
                None
            }
            Op::Node(NodeOp::AuthorizeSshKey { node }) => {
                let next = self
                    .o
                    .local
                    .ssh_next_public_key
                    .clone()
                    .expect("a new key to authorize");
                self.keys_of(node).push(next);
                None
            }
            Op::Node(NodeOp::RevokeSshKey { node }) => {
                // The step logs in with the key in force first: it must be accepted.
                let current = self.o.local_public_key.clone().unwrap();
                assert!(
                    self.keys_of(node).contains(&current),
                    "{node} is asked to drop the old key but does not accept the new one"
                );
                if let Some(old) = self.o.local.ssh_previous_public_key.clone() {
                    self.keys_of(node).retain(|k| *k != old);
                }
                None
            }
            Op::Local(LocalOp::Replication { step }) => {
                let dir = self.ca_dir.clone().expect("a cluster has a CA");
                match step {
                    ReplicationStep::CreateNext => {
                        redisctl::pki::create_replication_next(&dir).unwrap()
                    }
                    ReplicationStep::Promote => redisctl::pki::promote_replication(&dir).unwrap(),
                }
                self.observe_local();
                None
            }
            Op::Node(NodeOp::InstallRedis { node }) => {
                let version = match &self.spec.redis.package_version {
                    Some(redisctl::spec::types::PackageVersion::Exact(v)) => v.clone(),
                    _ => ARCHIVE_NEWEST.to_string(),
                };
                let f = self.facts(node);
                f.redis_installed = true;
                f.redis_version = Some(version);
                f.stock_service_enabled = false;
                f.stock_service_active = false;
                None
            }
            Op::Node(NodeOp::InstallTls { node, cert, .. }) => {
                let ca_hash = self.desired(node, conf::CA_CERT.path);
                if !cert {
                    let f = self.facts(node);
                    f.files.insert(conf::CA_CERT.path.into(), ca_hash);
                    written(f, &[conf::CA_CERT]);
                    return None;
                }
                let n = self
                    .spec
                    .nodes
                    .nodes
                    .iter()
                    .find(|n| &n.name == node)
                    .unwrap()
                    .clone();
                let issued = self
                    .authority()
                    .expect("the CA exists before certificates")
                    .signer()
                    .issue_node(
                        &n.name,
                        &redisctl::pki::node_sans(n.private_ip),
                        SystemTime::UNIX_EPOCH + Duration::from_secs(self.o.local.now),
                        self.spec.tls.cert_days,
                    )
                    .unwrap();
                let f = self.facts(node);
                f.node_cert_pem = Some(issued.cert_pem);
                f.node_key_present = true;
                f.files.insert(conf::CA_CERT.path.into(), ca_hash);
                written(f, &[conf::CA_CERT, conf::NODE_CERT, conf::NODE_KEY]);
                None
            }
            Op::Node(NodeOp::ApplyKernel { node }) => {
                let (s, t) = (
                    self.desired(node, kernel::SYSCTL.path),
                    self.desired(node, kernel::TMPFILES.path),
                );
                let f = self.facts(node);
                f.files.insert(kernel::SYSCTL.path.into(), s);
                f.files.insert(kernel::TMPFILES.path.into(), t);
                f.kernel = kernel::KernelValues {
                    overcommit_memory: kernel::OVERCOMMIT.into(),
                    somaxconn: kernel::SOMAXCONN.into(),
                    thp: format!("always [{}] never", kernel::THP),
                };
                None
            }
            Op::Node(NodeOp::WriteAcl { node, .. }) => {
                let h = self.desired(node, users_acl::USERS_ACL.path);
                let f = self.facts(node);
                f.files.insert(users_acl::USERS_ACL.path.into(), h);
                written(f, &[users_acl::USERS_ACL]);
                None
            }
            Op::Node(NodeOp::WriteConfig { node, .. }) => {
                let (c, d) = (
                    self.desired(node, conf::CONF.path),
                    self.desired(node, systemd::DROP_IN.path),
                );
                let (n, masters) = (self.spec.nodes.nodes.len() as u32, self.spec.nodes.masters);
                let f = self.facts(node);
                f.files.insert(conf::CONF.path.into(), c);
                written(f, &[conf::CONF]);
                // Without systemd: no drop-in, nothing enabled; redisctl started Redis.
                if f.init == InitSystem::Systemd {
                    f.files.insert(systemd::DROP_IN.path.into(), d);
                    written(f, &[systemd::DROP_IN]);
                    f.service_enabled = true;
                }
                f.service_active = true;
                if let Some(v) = f.state_file_view.take().filter(|_| f.cluster.is_none()) {
                    // Started from its state file: the cluster that file names.
                    f.cluster = Some(ClusterView {
                        state: "ok".into(),
                        keys: Some(0),
                        ..v
                    });
                } else if f.cluster.is_none() && f.cluster_state_file {
                    // It was part of the cluster: started, it rejoins.
                    f.cluster = Some(ClusterView {
                        state: "ok".into(),
                        slots_assigned: 16384,
                        known_nodes: n,
                        size: masters,
                        ..Default::default()
                    });
                }
                None
            }
            Op::Node(
                NodeOp::CreateCluster { nodes, replicas }
                | NodeOp::CompleteCluster { nodes, replicas }
                | NodeOp::ReformCluster { nodes, replicas },
            ) => {
                self.create_cluster(nodes, *replicas);
                None
            }
            Op::Node(NodeOp::JoinCluster {
                node, replica_of, ..
            }) => {
                self.join(node, replica_of.as_deref());
                None
            }
            Op::Node(NodeOp::MoveSlots {
                from, to, count, ..
            }) => {
                self.move_slots(from, to, *count);
                None
            }
            Op::Node(NodeOp::FixSlots { .. }) => {
                self.fix_slots();
                None
            }
            Op::Node(NodeOp::Failover { node }) => {
                self.fail_over_to(node);
                None
            }
            Op::Node(NodeOp::LeaveCluster { ip, .. }) => {
                self.leave(ip);
                None
            }
            Op::Node(NodeOp::WaitHealthy { .. }) => None,
            Op::Ec2(Ec2Op::DeleteSecurityGroup { id }) => {
                self.o.security_groups.retain(|x| &x.id != id);
                None
            }
            Op::Ec2(Ec2Op::DeleteRouteTable { id }) => {
                self.o.route_tables.retain(|x| &x.id != id);
                None
            }
            Op::Ec2(Ec2Op::DeleteInternetGateway { id, .. }) => {
                self.o.internet_gateways.retain(|x| &x.id != id);
                None
            }
            Op::Ec2(Ec2Op::DeleteSubnet { id }) => {
                assert!(
                    !self.o.nat_gateways.iter().any(|g| &g.subnet_id == id),
                    "subnet {id} deleted while a NAT gateway is in it"
                );
                assert!(
                    !self
                        .o
                        .instances
                        .iter()
                        .any(|i| i.subnet_id.as_ref() == Some(id)),
                    "subnet {id} deleted under an instance"
                );
                self.o.subnets.retain(|x| &x.id != id);
                None
            }
            Op::Ec2(Ec2Op::DeleteVpc { id }) => {
                assert!(
                    !self.o.subnets.iter().any(|s| &s.vpc_id == id),
                    "vpc deleted before its subnets"
                );
                self.o.vpcs.retain(|x| &x.id != id);
                None
            }
            Op::Ec2(Ec2Op::DeleteVolume { id }) => {
                self.o.volumes.retain(|x| &x.id != id);
                None
            }
            Op::Ec2(Ec2Op::DeleteSnapshot { id }) => {
                self.o.snapshots.retain(|x| &x.id != id);
                None
            }
            Op::Swap(s) => Some(self.swap_root(s)),
        }
    }
}

/// Apply `plan` to the simulated region, then plan again: nothing must be left to do.
pub fn apply_and_converge(spec: &Spec, observed: Observed, plan: &Plan) -> Observed {
    let mut sim = Sim::new(spec, observed);
    sim.apply(plan);
    sim.observe_local();
    let again = plan::plan(spec, &sim.o);
    assert!(
        again.is_empty(),
        "planning after apply is not empty:\n{}",
        render::plan::human(&again, false)
    );
    sim.o
}

/// A region observed for another spec than the one it converged to: what observation computes
/// locally (the files' hashes) is the new spec's, as when `plan` runs with an edited spec.
pub fn observed_for(spec: &Spec, observed: Observed) -> Observed {
    Sim::new(spec, observed).o
}

pub fn converged(spec: &Spec) -> Observed {
    let o = empty_region();
    let p = plan::plan(spec, &o);
    apply_and_converge(spec, o, &p)
}
