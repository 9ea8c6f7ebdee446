//! Planner scenarios: a spec and an observed state in, the rendered plan out, compared with a
//! reviewed snapshot in tests/scenarios/<name>.txt (set UPDATE_SNAPSHOTS=1 to rewrite them, then
//! review the diff). Every scenario that applies a plan applies it to a simulated AWS (below)
//! and checks that planning again makes no changes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use std::time::{Duration, SystemTime};

use redisctl::observed::{
    self, ClusterView, Image, InitSystem, NodeFacts, NodeObservation, Observed, Tags, tags,
};
use redisctl::pki::Ca;
use redisctl::plan::{self, Action, NoteLevel, Op, Plan, Ref};
use redisctl::redis::{conf, files, systemd, users_acl};
use redisctl::render;
use redisctl::spec::secrets::Secret;
use redisctl::spec::{self, SourceMap, Spec};

const LOCAL_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForPlannerScenarios0123456789abcd redisctl";

fn spec_from(text: &str) -> Spec {
    let (spec, _) =
        spec::parse(text, Path::new("/ops"), &SourceMap::new(text)).expect("valid spec");
    spec
}

fn example_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster.toml.example")).unwrap()
}

fn example() -> Spec {
    spec_from(&example_text())
}

/// The region before anything was made: only Canonical's images, and the local SSH key.
fn empty_region() -> Observed {
    Observed {
        images: vec![
            image("ami-0aaaaaaaaaaaaaaa1", "20240423"),
            image("ami-0bbbbbbbbbbbbbbb2", "20250115"),
        ],
        local_public_key: Some(LOCAL_KEY.into()),
        local: observed::Local {
            now: NOW,
            ..Default::default()
        },
        ..Observed::default()
    }
}

fn image(id: &str, date: &str) -> Image {
    Image {
        id: id.into(),
        name: format!("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-{date}"),
        creation_date: format!(
            "{}-{}-{}T00:00:00.000Z",
            &date[..4],
            &date[4..6],
            &date[6..]
        ),
        root_device_name: "/dev/sda1".into(),
        architecture: "x86_64".into(),
    }
}

fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "plan differs from {}:\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

// ---- a simulated region: applies plan operations to Observed ------------------------------

struct Sim {
    o: Observed,
    next: u32,
    /// Step address -> id made by that step.
    made: BTreeMap<String, String>,
    spec: Spec,
    ca: Option<Ca>,
}

/// The clock of every scenario: 2026-11-18.
const NOW: u64 = 1_795_000_000;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

/// Stand-ins for the password sources (never real secrets).
fn secrets(spec: &Spec) -> Vec<(String, Secret)> {
    spec.users
        .iter()
        .map(|u| (u.name.clone(), Secret::new(format!("pw-of-{}", u.name))))
        .collect()
}

static NEXT_CA: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// CAs the simulation made, by certificate: a later simulation of the same world (same
    /// test thread) signs with the same CA, as redisctl would with the CA in its state dir.
    static CAS: std::cell::RefCell<BTreeMap<String, std::path::PathBuf>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

impl Sim {
    fn new(spec: &Spec, o: Observed) -> Self {
        let ca = o
            .local
            .ca_cert_pem
            .as_ref()
            .and_then(|pem| CAS.with(|c| c.borrow().get(pem).cloned()))
            .map(|dir| Ca::load(&dir).expect("the simulation's CA loads back"));
        let mut sim = Sim {
            o,
            next: 1,
            made: BTreeMap::new(),
            spec: spec.clone(),
            ca,
        };
        sim.observe_local();
        sim
    }

    /// What observation computes locally: the files' hashes for the current spec.
    fn observe_local(&mut self) {
        if let Some(ca) = &self.ca {
            self.o.local.desired_files =
                files::desired_hashes(&self.spec, &secrets(&self.spec), ca).unwrap();
        }
    }

    fn facts(&mut self, node: &str) -> &mut NodeFacts {
        let e = self.o.nodes.entry(node.to_string()).or_insert_with(|| {
            NodeObservation::Reached(Box::new(NodeFacts {
                host_key: format!("ssh-ed25519 HOSTKEYOF{node}"),
                host_key_fingerprint: format!("SHA256:fp-{node}"),
                ..NodeFacts::default()
            }))
        });
        match e {
            NodeObservation::Reached(f) => f,
            NodeObservation::Unreachable { .. } => panic!("{node} is unreachable"),
        }
    }

    fn desired(&self, node: &str, path: &str) -> Option<String> {
        self.o
            .local
            .desired_files
            .get(node)
            .and_then(|d| d.get(path))
            .cloned()
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

    fn apply(&mut self, plan: &Plan) {
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
            Op::CreateVpc { cidr, tags } => {
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
            Op::CreateSubnet {
                vpc,
                cidr,
                az,
                map_public_ip,
                tags,
            } => {
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
            Op::SetSubnetPublicIp {
                subnet,
                map_public_ip,
            } => {
                self.o
                    .subnets
                    .iter_mut()
                    .find(|s| &s.id == subnet)
                    .unwrap()
                    .map_public_ip_on_launch = *map_public_ip;
                None
            }
            Op::CreateInternetGateway { vpc, tags } => {
                let id = self.id("igw");
                let v = self.resolve(vpc);
                self.o.internet_gateways.push(observed::InternetGateway {
                    id: id.clone(),
                    attached_to: vec![v],
                    tags: tags.clone(),
                });
                Some(id)
            }
            Op::AttachInternetGateway { igw, vpc } => {
                let v = self.resolve(vpc);
                self.o
                    .internet_gateways
                    .iter_mut()
                    .find(|g| &g.id == igw)
                    .unwrap()
                    .attached_to = vec![v];
                None
            }
            Op::CreateRouteTable { vpc, igw, tags } => {
                let id = self.id("rtb");
                let (v, g) = (self.resolve(vpc), self.resolve(igw));
                self.o.route_tables.push(observed::RouteTable {
                    id: id.clone(),
                    vpc_id: v,
                    routes: vec![
                        observed::Route {
                            destination: "10.0.0.0/16".into(),
                            target: "local".into(),
                        },
                        observed::Route {
                            destination: "0.0.0.0/0".into(),
                            target: g,
                        },
                    ],
                    associations: vec![],
                    tags: tags.clone(),
                });
                Some(id)
            }
            Op::SetDefaultRoute {
                route_table, igw, ..
            } => {
                let g = self.resolve(igw);
                let rt = self
                    .o
                    .route_tables
                    .iter_mut()
                    .find(|r| &r.id == route_table)
                    .unwrap();
                rt.routes.retain(|r| r.destination != "0.0.0.0/0");
                rt.routes.push(observed::Route {
                    destination: "0.0.0.0/0".into(),
                    target: g,
                });
                None
            }
            Op::AssociateRouteTable {
                route_table,
                subnet,
            } => {
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
            Op::CreateSecurityGroup {
                vpc, name, tags, ..
            } => {
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
            Op::AuthorizeIngress {
                security_group,
                rule,
            } => {
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
            Op::RevokeIngress {
                security_group,
                rule,
            } => {
                self.o
                    .security_groups
                    .iter_mut()
                    .find(|g| &g.id == security_group)
                    .unwrap()
                    .ingress
                    .retain(|r| r != rule);
                None
            }
            Op::ImportKeyPair { name, tags, .. } => {
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
            Op::DeleteKeyPair { name } => {
                self.o.key_pairs.retain(|k| &k.name != name);
                None
            }
            Op::RunInstance(run) => Some(self.run(run)),
            Op::ReplaceInstance { terminate, run } => {
                self.terminate(terminate);
                Some(self.run(run))
            }
            Op::StartInstance { instance } => {
                self.o
                    .instances
                    .iter_mut()
                    .find(|i| &i.id == instance)
                    .unwrap()
                    .state = "running".into();
                None
            }
            Op::ModifyInstanceType {
                instance,
                instance_type,
                ..
            } => {
                self.o
                    .instances
                    .iter_mut()
                    .find(|i| &i.id == instance)
                    .unwrap()
                    .instance_type = instance_type.clone();
                None
            }
            Op::SetFileModes { node } => {
                if let Some(NodeObservation::Reached(f)) = self.o.nodes.get_mut(node) {
                    for m in &files::MANAGED {
                        if let Some(v) = f.modes.get_mut(m.path) {
                            *v = m.mode_owner();
                        }
                    }
                }
                None
            }
            Op::RequireImdsV2 { instance } => {
                self.o
                    .instances
                    .iter_mut()
                    .find(|i| &i.id == instance)
                    .unwrap()
                    .http_tokens = Some("required".into());
                None
            }
            Op::TerminateInstance { instance } => {
                self.terminate(instance);
                None
            }
            Op::SetTags {
                resource,
                set,
                remove,
            } => {
                let t = self.tags_of(resource);
                t.extend(set.clone());
                t.retain(|k, _| !remove.contains(k));
                None
            }
            Op::DisassociateRouteTable { association_id } => {
                for rt in &mut self.o.route_tables {
                    rt.associations.retain(|a| &a.id != association_id);
                }
                None
            }
            Op::PinHostKey { node, .. } => {
                self.facts(node).first_contact = false;
                None
            }
            Op::EnsureCa => {
                let ca = Ca::create(
                    &self.spec.cluster.name,
                    now(),
                    redisctl::pki::CA_VALIDITY_DAYS,
                )
                .unwrap();
                self.o.local.ca_cert_pem = Some(ca.cert_pem().to_string());
                self.o.local.desired_files =
                    files::desired_hashes(&self.spec, &secrets(&self.spec), &ca).unwrap();
                let dir = std::env::temp_dir().join(format!(
                    "redisctl-sim-ca-{}-{}",
                    std::process::id(),
                    NEXT_CA.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                let _ = std::fs::remove_dir_all(&dir);
                redisctl::state_dir::ensure(&dir).unwrap();
                ca.save(&dir).unwrap();
                CAS.with(|c| c.borrow_mut().insert(ca.cert_pem().to_string(), dir));
                self.ca = Some(ca);
                None
            }
            Op::InstallRedis { node } => {
                let f = self.facts(node);
                f.redis_installed = true;
                f.stock_service_enabled = false;
                f.stock_service_active = false;
                None
            }
            Op::InstallTls { node, .. } => {
                let n = self
                    .spec
                    .nodes
                    .nodes
                    .iter()
                    .find(|n| &n.name == node)
                    .unwrap()
                    .clone();
                let cert = self
                    .ca
                    .as_ref()
                    .expect("the CA exists before certificates")
                    .issue_node(
                        &n.name,
                        &redisctl::pki::node_sans(n.private_ip),
                        SystemTime::UNIX_EPOCH + Duration::from_secs(self.o.local.now),
                        self.spec.tls.cert_days,
                    )
                    .unwrap();
                let ca_hash = self.desired(node, conf::CA_CERT.path);
                let f = self.facts(node);
                f.node_cert_pem = Some(cert.cert_pem);
                f.node_key_present = true;
                f.files.insert(conf::CA_CERT.path.into(), ca_hash);
                written(f, &[conf::CA_CERT, conf::NODE_CERT, conf::NODE_KEY]);
                None
            }
            Op::WriteAcl { node, .. } => {
                let h = self.desired(node, users_acl::USERS_ACL.path);
                let f = self.facts(node);
                f.files.insert(users_acl::USERS_ACL.path.into(), h);
                written(f, &[users_acl::USERS_ACL]);
                None
            }
            Op::WriteConfig { node, .. } => {
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
                if f.cluster.is_none() && f.cluster_state_file {
                    // It was part of the cluster: started, it rejoins.
                    f.cluster = Some(ClusterView {
                        state: "ok".into(),
                        slots_assigned: 16384,
                        known_nodes: n,
                        size: masters,
                    });
                }
                None
            }
            Op::CreateCluster { nodes, replicas } => {
                for n in nodes {
                    let count = nodes.len() as u32;
                    self.facts(n).cluster = Some(ClusterView {
                        state: "ok".into(),
                        slots_assigned: 16384,
                        known_nodes: count,
                        size: count / (1 + replicas),
                    });
                }
                None
            }
            Op::WaitHealthy { .. } => None,
            Op::DeleteSecurityGroup { id } => {
                self.o.security_groups.retain(|x| &x.id != id);
                None
            }
            Op::DeleteRouteTable { id } => {
                self.o.route_tables.retain(|x| &x.id != id);
                None
            }
            Op::DeleteInternetGateway { id, .. } => {
                self.o.internet_gateways.retain(|x| &x.id != id);
                None
            }
            Op::DeleteSubnet { id } => {
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
            Op::DeleteVpc { id } => {
                assert!(
                    !self.o.subnets.iter().any(|s| &s.vpc_id == id),
                    "vpc deleted before its subnets"
                );
                self.o.vpcs.retain(|x| &x.id != id);
                None
            }
            Op::DeleteVolume { id } => {
                self.o.volumes.retain(|x| &x.id != id);
                None
            }
            Op::DeleteSnapshot { id } => {
                self.o.snapshots.retain(|x| &x.id != id);
                None
            }
            Op::SwapRootVolume(s) => Some(self.swap_root(s)),
        }
    }

    /// The encryption swap as the executor carries it out, from whatever stage the instance's
    /// tag records: the node ends on an encrypted copy of its root, the plaintext is gone (or
    /// kept, tagged), the swap's tags are removed.
    fn swap_root(&mut self, s: &plan::SwapRootVolume) -> String {
        let inst_id = self.resolve(&s.instance);
        let inst = self
            .o
            .instances
            .iter()
            .find(|i| i.id == inst_id)
            .unwrap()
            .clone();
        let stage = inst.tags.get(tags::STAGE).cloned();
        let old = inst
            .tags
            .get(tags::SWAP_OLD_VOLUME)
            .cloned()
            .unwrap_or_else(|| inst.block_devices[&s.device].clone());
        let attached = inst.block_devices.get(&s.device).cloned();
        // From stage 4 on the new volume is attached already.
        let new = match inst.tags.get(tags::SWAP_NEW_VOLUME) {
            Some(v) if stage.as_deref() >= Some("swap:3") => v.clone(),
            _ => {
                let src = self.o.volumes.iter().find(|v| v.id == old).unwrap().clone();
                let id = self.id("vol");
                self.o.volumes.push(observed::Volume {
                    id: id.clone(),
                    encrypted: true,
                    kms_key_id: Some(s.kms_key.clone()),
                    az: s.az.clone(),
                    state: "available".into(),
                    snapshot_id: Some("snap-sim".into()),
                    attachment: None,
                    tags: s.volume_tags.clone(),
                    ..src
                });
                id
            }
        };
        if attached.as_deref() != Some(new.as_str()) {
            for v in &mut self.o.volumes {
                if v.id == old {
                    v.attachment = None;
                    v.state = "available".into();
                }
                if v.id == new {
                    v.attachment = Some((inst_id.clone(), s.device.clone()));
                    v.state = "in-use".into();
                }
            }
        }
        if s.keep_old {
            for v in self.o.volumes.iter_mut().filter(|v| v.id == old) {
                v.tags
                    .insert(tags::KEPT_FOR_ROLLBACK.into(), s.node.clone());
            }
        } else {
            self.o.volumes.retain(|v| v.id != old);
            self.o
                .snapshots
                .retain(|x| x.volume_id.as_deref() != Some(old.as_str()));
        }
        // Verified: the node is back in a healthy cluster.
        let n = self.spec.nodes.nodes.len() as u32;
        let size = self.spec.nodes.masters;
        let f = self.facts(&s.node);
        f.service_active = true;
        f.cluster = Some(ClusterView {
            state: "ok".into(),
            slots_assigned: 16384,
            known_nodes: n,
            size,
        });
        let i = self
            .o
            .instances
            .iter_mut()
            .find(|i| i.id == inst_id)
            .unwrap();
        i.block_devices.insert(s.device.clone(), new.clone());
        i.state = "running".into();
        i.tags
            .retain(|k, _| k != tags::STAGE && !k.starts_with("redisctl:swap-"));
        new
    }

    fn tags_of(&mut self, id: &str) -> &mut Tags {
        let o = &mut self.o;
        if let Some(x) = o.vpcs.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.subnets.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.internet_gateways.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.route_tables.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.security_groups.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.instances.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        panic!("no resource {id}")
    }

    fn run(&mut self, r: &plan::RunInstance) -> String {
        assert!(
            !self
                .o
                .instances
                .iter()
                .any(|i| i.private_ip == Some(r.private_ip)),
            "{} is still in use when {} is launched",
            r.private_ip,
            r.node
        );
        let id = self.id("i");
        let vol = self.id("vol");
        let subnet = self.resolve(&r.subnet);
        let sg = self.resolve(&r.security_group);
        let az = self
            .o
            .subnets
            .iter()
            .find(|s| s.id == subnet)
            .unwrap()
            .az
            .clone();
        self.o.volumes.push(observed::Volume {
            id: vol.clone(),
            size_gib: r.volume_size_gib as i32,
            volume_type: r.volume_type.clone(),
            encrypted: r.encrypted,
            kms_key_id: r.kms_key.clone(),
            az,
            state: "in-use".into(),
            snapshot_id: None,
            attachment: Some((id.clone(), r.root_device.clone())),
            tags: r.volume_tags.clone(),
        });
        self.o.instances.push(observed::Instance {
            id: id.clone(),
            state: "running".into(),
            instance_type: r.instance_type.clone(),
            image_id: r.image_id.clone(),
            subnet_id: Some(subnet),
            private_ip: Some(r.private_ip),
            public_ip: Some(Ipv4Addr::new(198, 18, 0, self.next as u8)),
            key_name: Some(r.key_name.clone()),
            security_group_ids: vec![sg],
            root_device_name: Some(r.root_device.clone()),
            block_devices: [(r.root_device.clone(), vol)].into(),
            launch_time: None,
            http_tokens: Some("required".into()),
            instance_profile: None,
            tags: r.tags.clone(),
        });
        id
    }

    fn terminate(&mut self, id: &str) {
        self.o.instances.retain(|i| i.id != id);
        self.o
            .volumes
            .retain(|v| v.attachment.as_ref().map(|a| a.0.as_str()) != Some(id));
    }
}

/// A write (temp file, chown, chmod, rename) leaves each file with its own mode and owner.
fn written(f: &mut NodeFacts, files: &[redisctl::redis::NodeFile]) {
    for m in files {
        f.modes.insert(m.path.into(), m.mode_owner());
    }
}

/// Apply `plan` to the simulated region, then plan again: nothing must be left to do.
fn apply_and_converge(spec: &Spec, observed: Observed, plan: &Plan) -> Observed {
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

fn converged(spec: &Spec) -> Observed {
    let o = empty_region();
    let p = plan::plan(spec, &o);
    apply_and_converge(spec, o, &p)
}

// ---- scenarios -----------------------------------------------------------------------------

#[test]
fn empty_region_creates_the_reference_cluster() {
    let spec = example();
    let o = empty_region();
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    snapshot("empty-region", &render::plan::human(&p, false));
    let s = p.summary();
    // vpc, 3 subnets, igw, rt, 3 associations, sg, 3 rules (ssh, redis, bus), key pair, 3 nodes
    // 17 AWS resources, the CA, 4 steps in each of 3 nodes; then cluster create.
    assert_eq!((s.add, s.change, s.destroy, s.run), (30, 0, 0, 1));
    // The newest Ubuntu image is chosen, and encryption is at launch with the spec's key.
    let Op::RunInstance(run) = &p.step("node.redis-node-1a").unwrap().ops[0] else {
        panic!()
    };
    assert_eq!(run.image_id, "ami-0bbbbbbbbbbbbbbb2");
    assert!(run.encrypted);
    assert_eq!(run.kms_key.as_deref(), Some("alias/aws/ebs"));
    assert_eq!(run.private_ip, Ipv4Addr::new(10, 0, 1, 10));
    apply_and_converge(&spec, o, &p);
}

#[test]
fn json_plan_is_versioned_and_carries_actions() {
    let spec = example();
    let p = plan::plan(&spec, &empty_region());
    let v: serde_json::Value = serde_json::from_str(&render::plan::json(&p)).unwrap();
    assert_eq!(v["format_version"], "1.1");
    assert_eq!(v["changes"], true);
    assert_eq!(v["summary"]["add"], 30);
    let node = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == "node.redis-node-1a")
        .unwrap();
    assert_eq!(node["action"], serde_json::json!(["create"]));
    assert!(
        node["depends_on"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "subnet.redis-subnet-1a")
    );
    assert!(
        v.get("ops").is_none() && node.get("ops").is_none(),
        "operations are not part of --json"
    );
}

#[test]
fn out_of_band_drift_is_corrected() {
    let spec = example();
    let mut o = converged(&spec);
    // Someone opened Redis to the world, turned off public IPs on a subnet, retagged the VPC and
    // stopped a node.
    o.security_groups[0].ingress.push(observed::IngressRule {
        protocol: "tcp".into(),
        from_port: 6379,
        to_port: 6379,
        source: "0.0.0.0/0".into(),
    });
    o.subnets[1].map_public_ip_on_launch = false;
    o.vpcs[0].tags.insert("owner".into(), "someone".into());
    o.vpcs[0].tags.insert("team".into(), "other".into());
    o.instances[2].state = "stopped".into();
    let p = plan::plan(&spec, &o);
    snapshot("drift", &render::plan::human(&p, false));
    assert_eq!(
        p.step("sg.rule[tcp 6379 0.0.0.0/0]").unwrap().action,
        Action::Delete
    );
    apply_and_converge(&spec, o, &p);
}

#[test]
fn missing_resources_are_recreated() {
    let spec = example();
    let mut o = converged(&spec);
    // A rule and a subnet's route table association were deleted by hand, and the ACL file
    // on a node was edited.
    o.security_groups[0].ingress.retain(|r| r.from_port != 22);
    o.route_tables[0].associations.remove(0);
    if let Some(NodeObservation::Reached(f)) = o.nodes.get_mut("redis-node-1b") {
        f.files
            .insert(users_acl::USERS_ACL.path.into(), Some("0".repeat(64)));
    }
    let p = plan::plan(&spec, &o);
    snapshot("recreate", &render::plan::human(&p, false));
    assert_eq!(p.summary().add, 2);
    let acl = p
        .step("node.redis-node-1b.acl")
        .expect("the edited ACL file is rewritten");
    assert_eq!(
        acl.ops,
        [Op::WriteAcl {
            node: "redis-node-1b".into(),
            reload: true
        }]
    );
    apply_and_converge(&spec, o, &p);
}

/// `chmod`/`chown` on a node, out of band: set back in place without a restart, except where a
/// file is rewritten anyway (the rewrite sets its mode).
#[test]
fn file_modes_changed_out_of_band_are_set_back() {
    let spec = example();
    let mut o = converged(&spec);
    fn facts<'a>(o: &'a mut Observed, node: &str) -> &'a mut NodeFacts {
        match o.nodes.get_mut(node) {
            Some(NodeObservation::Reached(f)) => f,
            _ => panic!("{node} not reached"),
        }
    }
    let a = facts(&mut o, "redis-node-1a");
    assert_eq!(a.modes.len(), 6, "{:?}", a.modes);
    a.modes
        .insert(conf::NODE_KEY.path.into(), "0644 root:redis".into());
    a.modes
        .insert(users_acl::USERS_ACL.path.into(), "0640 root:root".into());
    // On 1b the ACL file's mode is wrong but its content differs too: the ACL step rewrites it.
    let b = facts(&mut o, "redis-node-1b");
    b.modes
        .insert(users_acl::USERS_ACL.path.into(), "0666 root:redis".into());
    b.files
        .insert(users_acl::USERS_ACL.path.into(), Some("0".repeat(64)));
    let p = plan::plan(&spec, &o);
    snapshot("modes", &render::plan::human(&p, false));
    let addrs: Vec<&str> = p.steps.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(
        addrs,
        ["node.redis-node-1b.acl", "node.redis-node-1a.modes"]
    );
    let modes = p.step("node.redis-node-1a.modes").unwrap();
    assert_eq!(modes.action, Action::Update);
    assert_eq!(modes.changes.len(), 2, "{:?}", modes.changes);
    assert_eq!(
        modes.ops,
        [Op::SetFileModes {
            node: "redis-node-1a".into()
        }]
    );
    apply_and_converge(&spec, o, &p);
}

/// Client certificates from `redisctl client-cert` (its inventory): the newest of each name
/// that nears its end, or has passed it, is warned about; nothing is planned for them, and they
/// are not part of the fingerprint (issuing one does not make a saved plan stale).
#[test]
fn client_certificates_near_their_end_are_warned_about() {
    let spec = example();
    let mut o = converged(&spec);
    let before = plan::fingerprint::of(&spec, &o);
    let day = 86_400;
    let cert = |cn: &str, serial: &str, days: i64| observed::ClientCert {
        cn: cn.into(),
        serial: serial.into(),
        not_after: (NOW as i64 + days * day) as u64,
    };
    o.local.client_certs = vec![
        cert("app", "01", 5),
        cert("app", "02", 200), // the renewed one: app is fine
        cert("billing", "03", 10),
        cert("old-svc", "04", -1),
        cert("reports", "05", 31),
    ];
    let p = plan::plan(&spec, &o);
    assert!(p.is_empty(), "{:#?}", p.steps);
    let notes: Vec<(&str, &str)> = p
        .notes
        .iter()
        .filter(|n| n.subject.starts_with("client_cert."))
        .map(|n| (n.subject.as_str(), n.message.as_str()))
        .collect();
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert_eq!(notes[0].0, "client_cert.billing");
    assert!(notes[0].1.starts_with("client certificate CN=billing (serial 03) expires in 10 days; issue its successor with `redisctl client-cert billing --out DIR --force`"), "{}", notes[0].1);
    assert_eq!(notes[1].0, "client_cert.old-svc");
    assert!(
        notes[1]
            .1
            .contains("has expired: a client presenting it is refused"),
        "{}",
        notes[1].1
    );
    assert!(p.notes.iter().all(|n| n.level != NoteLevel::Blocker));
    assert_eq!(plan::fingerprint::of(&spec, &o), before);
}

#[test]
fn certificates_near_expiry_are_reissued_one_node_at_a_time() {
    let spec = example();
    let mut o = converged(&spec);
    // 340 days later: every node certificate (365 days) expires within renew_before (30 days).
    o.local.now = NOW + 340 * 86_400;
    let p = plan::plan(&spec, &o);
    snapshot("renew-certificates", &render::plan::human(&p, false));
    let tls: Vec<&plan::Step> = p
        .steps
        .iter()
        .filter(|s| s.address.ends_with(".tls"))
        .collect();
    assert_eq!(tls.len(), 3, "{}", render::plan::human(&p, false));
    for s in &tls {
        assert!(s.reason.contains("expires"), "{}", s.reason);
        assert!(matches!(&s.ops[..], [Op::InstallTls { restart: true, .. }]));
    }
    // A running cluster restarts one node at a time: each waits for the previous one.
    assert!(tls[1].depends_on.contains(&tls[0].address));
    assert!(tls[2].depends_on.contains(&tls[1].address));
    // The CA (10 years) is far from its end: no warning about it.
    assert!(
        p.notes.iter().all(|n| n.subject != "pki.ca"),
        "{:?}",
        p.notes
    );
    apply_and_converge(&spec, o, &p);
}

#[test]
fn renewed_certificates_and_a_config_change_roll_in_their_own_phases() {
    let spec = example();
    let mut o = converged(&spec);
    o.local.now = NOW + 340 * 86_400;
    let changed = spec_from(&example_text().replace("# maxmemory = \"", "maxmemory = \""));
    // What observation computes locally for the changed spec (the files it renders).
    let mut sim = Sim::new(&changed, o);
    sim.observe_local();
    let o = sim.o;
    let p = plan::plan(&changed, &o);
    // (plan() checks the order: every dependency is in the same or an earlier phase.)
    let restarts = |suffix: &str| -> Vec<&plan::Step> {
        p.steps
            .iter()
            .filter(|s| s.address.ends_with(suffix))
            .collect()
    };
    let (tls, cfg) = (restarts(".tls"), restarts(".config"));
    assert_eq!(
        (tls.len(), cfg.len()),
        (3, 3),
        "{}",
        render::plan::human(&p, false)
    );
    for chain in [&tls, &cfg] {
        assert!(chain[1].depends_on.contains(&chain[0].address));
        assert!(chain[2].depends_on.contains(&chain[1].address));
    }
    assert!(cfg.iter().all(|c| c.phase > tls[2].phase));
    apply_and_converge(&changed, o, &p);
}

#[test]
fn with_replicas_a_config_restart_says_the_master_hands_over_first() {
    let six = |t: String| {
        let t = t.replace("replicas_per_master = 0", "replicas_per_master = 1");
        let start = t.find("\n[[nodes.node]]").unwrap();
        let end = t.find("\n[ssh]").unwrap();
        format!("{}{}", &t[..start], &t[end..])
    };
    let spec = spec_from(&six(example_text()));
    let o = converged(&spec);
    let changed = spec_from(&six(
        example_text().replace("# maxmemory = \"", "maxmemory = \"")
    ));
    let mut sim = Sim::new(&changed, o);
    sim.observe_local();
    let p = plan::plan(&changed, &sim.o);
    let cfg: Vec<&plan::Step> = p
        .steps
        .iter()
        .filter(|s| s.address.ends_with(".config"))
        .collect();
    assert_eq!(cfg.len(), 6, "{}", render::plan::human(&p, false));
    for s in &cfg {
        assert!(
            s.reason.contains("hands its slots to a replica"),
            "{}",
            s.reason
        );
    }
    // Without replicas there is nobody to hand over to, and the plan does not say so.
    let three = spec_from(&example_text().replace("# maxmemory = \"", "maxmemory = \""));
    let mut sim = Sim::new(&three, converged(&example()));
    sim.observe_local();
    let p = plan::plan(&three, &sim.o);
    let cfg: Vec<&plan::Step> = p
        .steps
        .iter()
        .filter(|s| s.address.ends_with(".config"))
        .collect();
    assert_eq!(cfg.len(), 3, "{}", render::plan::human(&p, false));
    assert!(cfg.iter().all(|s| !s.reason.contains("hands its slots")));
}

#[test]
fn a_ca_near_its_end_is_warned_about() {
    let spec = example();
    let mut o = converged(&spec);
    // 10 years less 20 days after the CA was made: inside renew_before (30 days).
    o.local.now = NOW + (u64::from(redisctl::pki::CA_VALIDITY_DAYS) - 20) * 86_400;
    let p = plan::plan(&spec, &o);
    let ca: Vec<_> = p.notes.iter().filter(|n| n.subject == "pki.ca").collect();
    assert_eq!(ca.len(), 1, "{:?}", p.notes);
    assert!(
        ca[0].message.contains("the cluster CA expires in 19 days")
            || ca[0].message.contains("the cluster CA expires in 20 days"),
        "{}",
        ca[0].message
    );
    assert!(ca[0].message.contains("does not rotate the CA"));
    o.local.now = NOW + (u64::from(redisctl::pki::CA_VALIDITY_DAYS) + 1) * 86_400;
    let p = plan::plan(&spec, &o);
    assert!(
        p.notes
            .iter()
            .any(|n| n.subject == "pki.ca" && n.message.contains("has expired")),
        "{:?}",
        p.notes
    );
}

#[test]
fn a_new_ami_never_replaces_a_node() {
    let spec = example();
    let mut o = converged(&spec);
    o.images.push(image("ami-0ccccccccccccccc3", "20261101"));
    let p = plan::plan(&spec, &o);
    assert!(p.is_empty(), "{}", render::plan::human(&p, false));
    assert!(
        p.notes
            .iter()
            .any(|n| n.level == NoteLevel::Info && n.message.contains("never a reason to replace"))
    );
    snapshot("new-ami", &render::plan::human(&p, false));
}

#[test]
fn moving_a_node_is_a_replacement_that_destroys_data() {
    let text = example_text().replace("private_ip = \"10.0.2.10\"", "private_ip = \"10.0.2.20\"");
    let before = example();
    let after = spec_from(&text);
    let o = converged(&before);
    let p = plan::plan(&after, &o);
    snapshot("replace-node", &render::plan::human(&p, false));
    let step = p.step("node.redis-node-1b").unwrap();
    assert_eq!(step.action, Action::Replace);
    assert!(step.destroys_data);
    assert!(
        step.changes
            .iter()
            .any(|c| c.attribute == "private_ip" && c.forces_replacement)
    );
    // A node of a running cluster cannot be replaced yet: its slots would be lost.
    assert!(p.blockers().any(|n| {
        n.message
            .contains("redis-node-1b would not be part of the running cluster")
    }));
}

#[test]
fn instance_type_change_is_in_place() {
    let text = example_text().replace(
        "instance_type = \"t2.micro\"",
        "instance_type = \"t3.small\"",
    );
    let after = spec_from(&text);
    let o = converged(&example());
    let p = plan::plan(&after, &o);
    snapshot("instance-type", &render::plan::human(&p, false));
    let s = p.summary();
    assert_eq!((s.add, s.change, s.destroy), (0, 3, 0));
    assert!(p.destroys_data().next().is_none());
    apply_and_converge(&after, o, &p);
}

/// A node whose metadata options were changed out of band to allow IMDSv1 is set back in place
/// (ModifyInstanceMetadataOptions), without a restart; unknown options (None) are left alone.
#[test]
fn imdsv1_allowed_out_of_band_is_required_again() {
    let spec = example();
    let mut o = converged(&spec);
    o.instances[1].http_tokens = Some("optional".into());
    o.instances[2].http_tokens = None;
    let p = plan::plan(&spec, &o);
    snapshot("imdsv1", &render::plan::human(&p, false));
    assert_eq!(p.steps.len(), 1, "{:#?}", p.steps);
    let step = &p.steps[0];
    assert_eq!(step.action, Action::Update);
    assert!(
        matches!(&step.ops[..], [Op::RequireImdsV2 { instance }] if instance == &o.instances[1].id),
        "{:?}",
        step.ops
    );
    assert!(p.destroys_data().next().is_none());
    apply_and_converge(&spec, o, &p);
}

#[test]
fn ssh_cidr_change_swaps_one_rule() {
    let text = example_text().replace("203.0.113.7/32", "203.0.113.9/32");
    let after = spec_from(&text);
    let o = converged(&example());
    let p = plan::plan(&after, &o);
    let addrs: Vec<(&str, Action)> = p
        .steps
        .iter()
        .map(|s| (s.address.as_str(), s.action))
        .collect();
    assert_eq!(
        addrs,
        [
            ("sg.rule[ssh 203.0.113.9/32]", Action::Create),
            ("sg.rule[tcp 22 203.0.113.7/32]", Action::Delete)
        ]
    );
    apply_and_converge(&after, o, &p);
}

#[test]
fn duplicates_are_reported_not_hidden() {
    let spec = example();
    let mut o = converged(&spec);
    let mut dup = o.vpcs[0].clone();
    dup.id = "vpc-0ffffffffffffffff".into();
    o.vpcs.push(dup);
    let p = plan::plan(&spec, &o);
    assert!(p.is_empty());
    let n = p
        .notes
        .iter()
        .find(|n| n.subject == "vpc")
        .expect("a note about the duplicate VPC");
    assert_eq!(n.level, NoteLevel::Warning);
    assert!(n.message.contains("vpc-0ffffffffffffffff"), "{}", n.message);
}

#[test]
fn a_lost_private_key_blocks_the_plan() {
    let spec = example();
    let mut o = converged(&spec);
    o.local_public_key = None;
    let p = plan::plan(&spec, &o);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1);
    assert!(b[0].message.contains("private key"), "{}", b[0].message);
}

#[test]
fn an_unreachable_node_makes_the_plan_incomplete_and_a_changed_host_key_blocks_it() {
    let spec = example();
    let mut o = converged(&spec);
    o.nodes.insert(
        "redis-node-1b".into(),
        NodeObservation::Unreachable {
            reason: "ssh: connection timed out".into(),
            host_key_changed: false,
        },
    );
    let p = plan::plan(&spec, &o);
    // Nothing to do that can be seen, but the plan does not claim the node matches.
    assert!(p.is_empty(), "{}", render::plan::human(&p, false));
    assert_eq!(p.unobserved, ["node.redis-node-1b"]);
    assert!(p.blockers().next().is_none());
    let text = render::plan::human(&p, false);
    assert!(
        text.starts_with("No changes found for cluster prod-redis (us-east-1), but node.redis-node-1b could not be observed: the plan is incomplete."),
        "{text}"
    );
    assert!(!text.contains("matches the spec"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&render::plan::json(&p)).unwrap();
    assert_eq!(v["unobserved"], serde_json::json!(["node.redis-node-1b"]));

    o.nodes.insert(
        "redis-node-1b".into(),
        NodeObservation::Unreachable {
            reason: "host key of node redis-node-1b changed".into(),
            host_key_changed: true,
        },
    );
    let p = plan::plan(&spec, &o);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{:?}", p.notes);
    assert_eq!(b[0].subject, "node.redis-node-1b");
    assert!(b[0].message.contains("host key"), "{}", b[0].message);
}

#[test]
fn a_running_cluster_whose_ca_is_lost_or_replaced_is_blocked_not_split() {
    let spec = example();
    let converged = converged(&spec);

    // The CA files are gone from the state directory.
    let mut o = converged.clone();
    o.local.ca_cert_pem = None;
    o.local.desired_files.clear();
    let p = plan::plan(&spec, &o);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{:?}", p.notes);
    assert_eq!(b[0].subject, "pki.ca");
    assert!(
        b[0].message.contains("there is none")
            && b[0]
                .message
                .contains("redis-node-1a, redis-node-1b, redis-node-1c")
            && b[0].message.contains("Restore ca.key and ca.crt"),
        "{}",
        b[0].message
    );

    // A new CA was made in its place.
    let mut o = converged.clone();
    let other = Ca::create(&spec.cluster.name, now(), redisctl::pki::CA_VALIDITY_DAYS).unwrap();
    o.local.ca_cert_pem = Some(other.cert_pem().to_string());
    let p = plan::plan(&spec, &o);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{:?}", p.notes);
    assert!(b[0].message.contains("it differs"), "{}", b[0].message);

    // Before the cluster exists a new CA is just planned (nothing to split).
    let p = plan::plan(&spec, &empty_region());
    assert!(p.blockers().next().is_none(), "{:?}", p.notes);
}

#[test]
fn a_removed_node_is_deleted_before_its_address_is_reused() {
    // Rename node 1a: the old instance goes, the new one takes the same address.
    let text = example_text().replace("name = \"redis-node-1a\"", "name = \"redis-node-1a-new\"");
    let after = spec_from(&text);
    let o = converged(&example());
    let p = plan::plan(&after, &o);
    let del = p
        .steps
        .iter()
        .position(|s| s.address == "node.redis-node-1a")
        .unwrap();
    let add = p
        .steps
        .iter()
        .position(|s| s.address == "node.redis-node-1a-new")
        .unwrap();
    assert!(
        del < add
            && p.steps[add]
                .depends_on
                .contains(&"node.redis-node-1a".to_string())
    );
    assert!(p.steps[del].destroys_data);
    assert!(
        p.blockers()
            .any(|n| n.message.contains("redis-node-1a-new would not be part"))
    );
}

#[test]
fn destroy_removes_everything_in_reverse_order() {
    let spec = example();
    let o = converged(&spec);
    let p = plan::plan_destroy(&spec, &o);
    p.check_order().unwrap();
    snapshot("destroy", &render::plan::human(&p, false));
    let mut sim = Sim::new(&spec, o);
    sim.apply(&p);
    assert_eq!(sim.o.leftovers(), Vec::<String>::new());
    // Terminating an instance removed its root volume already (delete on termination).
    assert!(plan::plan_destroy(&spec, &sim.o).is_empty());
}

#[test]
fn no_ubuntu_image_blocks_node_creation() {
    let spec = example();
    let mut o = empty_region();
    o.images.clear();
    let p = plan::plan(&spec, &o);
    assert!(p.blockers().any(|n| n.subject == "nodes.ami"));
    let text = render::plan::human(&p, false);
    assert!(text.contains("cannot be applied"), "{text}");
}

#[test]
fn tags_of_every_resource_name_the_cluster_and_role() {
    let spec = example();
    let p = plan::plan(&spec, &empty_region());
    for step in &p.steps {
        for op in &step.ops {
            let t = match op {
                Op::CreateVpc { tags, .. }
                | Op::CreateSubnet { tags, .. }
                | Op::CreateInternetGateway { tags, .. }
                | Op::CreateRouteTable { tags, .. }
                | Op::CreateSecurityGroup { tags, .. }
                | Op::ImportKeyPair { tags, .. } => tags,
                Op::RunInstance(r) => {
                    assert_eq!(
                        r.volume_tags.get(tags::ROLE).map(String::as_str),
                        Some("volume")
                    );
                    &r.tags
                }
                _ => continue,
            };
            assert_eq!(
                t.get(tags::CLUSTER).map(String::as_str),
                Some("prod-redis"),
                "{}",
                step.address
            );
            assert!(
                t.contains_key(tags::ROLE) && t.contains_key("Name"),
                "{}",
                step.address
            );
            assert_eq!(
                t.get("data-classification").map(String::as_str),
                Some("phi")
            );
        }
    }
}

// ---- phase 8: the root volume encryption swap ------------------------------------------------

fn unencrypted_example() -> Spec {
    spec_from(&example_text().replace("encrypted = true", "encrypted = false"))
}

fn swap_steps(p: &Plan) -> Vec<&plan::Step> {
    p.steps
        .iter()
        .filter(|s| s.phase == plan::Phase::Encryption)
        .collect()
}

#[test]
fn an_unencrypted_cluster_is_swapped_all_at_once_without_replicas() {
    let o = converged(&unencrypted_example());
    assert!(o.volumes.iter().all(|v| !v.encrypted));
    let spec = example();
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    snapshot("encryption-swap", &render::plan::human(&p, false));
    let steps = swap_steps(&p);
    assert_eq!(p.steps.len(), 3, "only the swap: {:?}", p.steps);
    assert_eq!(steps.len(), 3);
    for s in &steps {
        assert_eq!(s.action, Action::Replace);
        assert_eq!(s.reason, "encryption forces replacement of the root volume");
        assert!(s.depends_on.is_empty(), "no replicas: all together");
        assert!(!s.destroys_data, "the swap keeps the data");
        let Op::SwapRootVolume(op) = &s.ops[0] else {
            panic!()
        };
        assert!(!op.failover);
        assert_eq!(op.kms_key, "alias/aws/ebs");
        assert_eq!(op.device, "/dev/sda1");
        assert!(matches!(op.instance, Ref::Id(_)));
    }
    assert!(
        p.notes.iter().any(|n| n.level == NoteLevel::Warning
            && n.message
                .contains("the whole cluster is unavailable during the root volume swap")),
        "{:?}",
        p.notes
    );
    let after = apply_and_converge(&spec, o, &p);
    // Every root is encrypted with the spec's key; no plaintext volume is left.
    assert_eq!(after.volumes.len(), 3);
    assert!(after.volumes.iter().all(|v| v.encrypted
        && v.kms_key_id.as_deref() == Some("alias/aws/ebs")
        && v.attachment.is_some()));
}

#[test]
fn another_kms_key_is_a_swap_only_when_the_keys_are_comparable() {
    let spec = example();
    let mut o = converged(&spec);
    // AWS reports a key ARN for the alias: not comparable, no swap.
    for v in &mut o.volumes {
        v.kms_key_id = Some(
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
        );
    }
    assert!(plan::plan(&spec, &o).is_empty());
    // The spec names a key id: comparable, and different.
    let other = spec_from(&example_text().replace(
        "kms_key = \"alias/aws/ebs\"",
        "kms_key = \"arn:aws:kms:us-east-1:111122223333:key/ffffabcd-12ab-34cd-56ef-1234567890ab\"",
    ));
    let p = plan::plan(&other, &o);
    assert_eq!(
        swap_steps(&p).len(),
        3,
        "{}",
        render::plan::human(&p, false)
    );
    apply_and_converge(&other, o, &p);
}

#[test]
fn a_swap_in_flight_continues_from_its_stage() {
    let spec = example();
    let mut o = converged(&unencrypted_example());
    // redisctl was killed after stage 2 on node 1b: the instance is stopped, the snapshot made.
    let i = o
        .instances
        .iter_mut()
        .find(|i| i.tags.get(tags::NODE).map(String::as_str) == Some("redis-node-1b"))
        .unwrap();
    i.state = "stopped".into();
    let old = i.block_devices["/dev/sda1"].clone();
    i.tags
        .insert(tags::STAGE.into(), "swap:2-snapshotted".into());
    i.tags.insert(tags::SWAP_KEYS.into(), "master:3334".into());
    i.tags.insert(tags::SWAP_OLD_VOLUME.into(), old.clone());
    i.tags
        .insert(tags::SWAP_SNAPSHOT.into(), "snap-00000000000000099".into());
    o.snapshots.push(observed::Snapshot {
        id: "snap-00000000000000099".into(),
        volume_id: Some(old),
        state: "completed".into(),
        encrypted: false,
        tags: Tags::new(),
    });
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    snapshot("encryption-swap-in-flight", &render::plan::human(&p, false));
    // The stopped node is not started by the instances phase (the swap starts it), and cluster
    // create does not wait for it.
    assert!(p.step("node.redis-node-1b").is_none(), "{:?}", p.steps);
    assert!(
        !p.notes
            .iter()
            .any(|n| n.message.contains("cluster create waits"))
    );
    let s = p.step("node.redis-node-1b.root_volume").unwrap();
    assert!(s.reason.contains("in flight"), "{}", s.reason);
    assert_eq!(
        swap_steps(&p).len(),
        3,
        "the other two nodes are swapped too"
    );
    let after = apply_and_converge(&spec, o, &p);
    assert!(
        after.snapshots.is_empty(),
        "the plaintext snapshot is removed"
    );

    // A swap in flight continues even if the spec no longer asks for encryption.
    let mut o = converged(&unencrypted_example());
    let i = &mut o.instances[0];
    let old = i.block_devices["/dev/sda1"].clone();
    i.tags.insert(tags::STAGE.into(), "swap:0-prepared".into());
    i.tags.insert(tags::SWAP_KEYS.into(), "master:1".into());
    i.tags.insert(tags::SWAP_OLD_VOLUME.into(), old);
    let spec = unencrypted_example();
    let p = plan::plan(&spec, &o);
    assert_eq!(swap_steps(&p).len(), 1);
    apply_and_converge(&spec, o, &p);
}

#[test]
fn swap_strategy_launches_unencrypted_then_swaps_after_cluster_create() {
    let spec =
        spec_from(&example_text().replace("strategy = \"at-launch\"", "strategy = \"swap\""));
    let o = empty_region();
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    let Op::RunInstance(run) = &p.step("node.redis-node-1a").unwrap().ops[0] else {
        panic!()
    };
    assert!(!run.encrypted);
    let steps = swap_steps(&p);
    assert_eq!(steps.len(), 3);
    for s in &steps {
        assert_eq!(s.depends_on, ["cluster"]);
        let Op::SwapRootVolume(op) = &s.ops[0] else {
            panic!()
        };
        assert!(matches!(&op.instance, Ref::Step(a) if a.starts_with("node.")));
    }
    // The swap is last, after cluster create (the hand procedure's order).
    let last_other = p
        .steps
        .iter()
        .rposition(|s| s.phase != plan::Phase::Encryption)
        .unwrap();
    assert_eq!(p.steps[last_other].address, "cluster");
    let after = apply_and_converge(&spec, o, &p);
    assert!(after.volumes.iter().all(|v| v.encrypted));
}

#[test]
fn with_replicas_nodes_are_swapped_one_at_a_time_after_a_failover() {
    let six = |t: String| {
        let t = t.replace("replicas_per_master = 0", "replicas_per_master = 1");
        let start = t.find("\n[[nodes.node]]").unwrap();
        let end = t.find("\n[ssh]").unwrap();
        format!("{}{}", &t[..start], &t[end..])
    };
    let before = spec_from(&six(
        example_text().replace("encrypted = true", "encrypted = false")
    ));
    let o = converged(&before);
    let spec = spec_from(&six(example_text()));
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    let steps = swap_steps(&p);
    assert_eq!(steps.len(), 6);
    assert!(steps[0].depends_on.is_empty());
    for w in steps.windows(2) {
        assert_eq!(w[1].depends_on, [w[0].address.clone()], "chained");
    }
    for s in &steps {
        let Op::SwapRootVolume(op) = &s.ops[0] else {
            panic!()
        };
        assert!(op.failover);
    }
    assert!(
        p.notes
            .iter()
            .any(|n| n.message.contains("one node at a time"))
    );
    assert!(
        !p.notes
            .iter()
            .any(|n| n.message.contains("whole cluster is unavailable"))
    );
    apply_and_converge(&spec, o, &p);
}

#[test]
fn kept_plaintext_volumes_are_told_not_planned() {
    let o = converged(&unencrypted_example());
    let spec = example();
    let mut p = plan::plan(&spec, &o);
    for op in p.steps.iter_mut().flat_map(|s| s.ops.iter_mut()) {
        if let Op::SwapRootVolume(s) = op {
            s.keep_old = true;
        }
    }
    let after = apply_and_converge(&spec, o, &p);
    assert_eq!(after.volumes.len(), 6, "three encrypted roots, three kept");
    let again = plan::plan(&spec, &after);
    assert!(again.is_empty());
    assert!(
        again
            .notes
            .iter()
            .any(|n| n.level == NoteLevel::Info && n.message.contains("kept for a rollback")),
        "{:?}",
        again.notes
    );
    // destroy removes them with the cluster.
    let d = plan::plan_destroy(&spec, &after);
    assert_eq!(
        d.steps
            .iter()
            .filter(|s| matches!(s.ops[0], Op::DeleteVolume { .. }))
            .count(),
        6
    );
}

#[test]
fn a_swap_killed_with_every_redis_stopped_does_not_create_the_cluster_again() {
    let spec = example();
    let mut o = converged(&unencrypted_example());
    // Killed after every node stopped Redis but before any instance stopped.
    for i in &mut o.instances {
        let old = i.block_devices["/dev/sda1"].clone();
        i.tags.insert(tags::STAGE.into(), "swap:0-prepared".into());
        i.tags.insert(tags::SWAP_KEYS.into(), "master:3333".into());
        i.tags.insert(tags::SWAP_OLD_VOLUME.into(), old);
    }
    for n in o.nodes.values_mut() {
        let NodeObservation::Reached(f) = n else {
            panic!()
        };
        f.service_active = false;
        f.cluster = None;
    }
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    assert!(
        p.step("cluster").is_none(),
        "{}",
        render::plan::human(&p, false)
    );
    assert_eq!(swap_steps(&p).len(), 3);
    // Redis is started again first (phase 6), then the swap continues.
    assert!(p.step("node.redis-node-1a.config").is_some());
    apply_and_converge(&spec, o, &p);
}

#[test]
fn nodes_without_systemd_are_started_and_restarted_by_redisctl() {
    let spec = example();
    let mut o = converged(&spec);
    // The nodes have no init system: nothing is enabled, no drop-in, no stock unit.
    for n in o.nodes.values_mut() {
        let NodeObservation::Reached(f) = n else {
            panic!()
        };
        f.init = InitSystem::None;
        f.service_enabled = false;
        f.stock_service_enabled = false;
        f.stock_service_active = false;
        f.files.insert(systemd::DROP_IN.path.into(), None);
        f.cluster_state_file = true;
    }
    // Converged as it is: "enabled" means nothing there, and the drop-in is not needed.
    let again = plan::plan(&spec, &o);
    assert!(
        again.is_empty(),
        "a converged cluster without systemd plans changes:\n{}",
        render::plan::human(&again, false)
    );

    // Node 2's host restarted: nothing started Redis (it kept its cluster state file). And the
    // spec now caps memory: every node's configuration changes.
    let NodeObservation::Reached(f) = o.nodes.get_mut("redis-node-1b").unwrap() else {
        panic!()
    };
    f.service_active = false;
    f.cluster = None;
    let spec = spec_from(&example_text().replace("[redis]\n", "[redis]\nmaxmemory = \"256mb\"\n"));
    assert_eq!(spec.redis.maxmemory.as_deref(), Some("256mb"));
    let o = Sim::new(&spec, o).o;
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    snapshot("no-systemd", &render::plan::human(&p, false));
    assert!(
        !p.notes.iter().any(|n| n.level == NoteLevel::Blocker),
        "{:?}",
        p.notes
    );
    let restart = |node: &str| match &p.step(&format!("node.{node}.config")).unwrap().ops[0] {
        Op::WriteConfig { restart, .. } => *restart,
        _ => panic!(),
    };
    // The stopped one is started (no restart); the others restart one at a time.
    assert!(!restart("redis-node-1b"));
    assert!(restart("redis-node-1a") && restart("redis-node-1c"));
    let c = p.step("node.redis-node-1c.config").unwrap();
    assert_eq!(c.depends_on, ["node.redis-node-1a.config"]);
    let text = render::plan::human(&p, false);
    assert!(!text.contains("enabled"), "{text}");
    assert!(!text.contains(systemd::DROP_IN.path), "{text}");
    apply_and_converge(&spec, o, &p);
}
