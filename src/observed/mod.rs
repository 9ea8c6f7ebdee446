//! Observed state: what live AWS looks like, as plain data. Filled by `observe` (a constant
//! number of tag-filtered Describe calls, whatever the node count); read by the pure planner.
//!
//! Only what redisctl owns is here: everything tagged `redisctl:cluster=<name>`, plus the
//! key pair of the spec's name and the AMI candidates. Lists, not single values: a resource that
//! exists twice (an interrupted run elsewhere) is kept so that the plan can report it.

pub mod tags;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub vpcs: Vec<Vpc>,
    pub subnets: Vec<Subnet>,
    pub internet_gateways: Vec<InternetGateway>,
    pub route_tables: Vec<RouteTable>,
    pub security_groups: Vec<SecurityGroup>,
    /// NAT gateways that are not `deleted` (`pending`, `available`, `deleting`, `failed`).
    #[serde(default)]
    pub nat_gateways: Vec<NatGateway>,
    /// Elastic IPs.
    #[serde(default)]
    pub addresses: Vec<Address>,
    pub key_pairs: Vec<KeyPair>,
    /// Instances that are not terminated (pending, running, stopping, stopped, shutting-down)
    /// and are the cluster's: tagged for it, in one of its subnets and in its security group
    /// ([`Observed::set_aside_strangers`]).
    pub instances: Vec<Instance>,
    /// Instances tagged for the cluster that are not in its network (another VPC or subnet, or
    /// without its security group): tags anyone in the account can write are not identity.
    /// Never connected to, changed or deleted; the plan names them.
    #[serde(default)]
    pub strangers: Vec<Instance>,
    /// Volumes tagged for the cluster (root volumes are tagged at launch). A volume that is not
    /// is not observed, even attached to a node.
    pub volumes: Vec<Volume>,
    pub snapshots: Vec<Snapshot>,
    /// What the node instances' swap tags (`redisctl:swap-old-volume`, `-snapshot`,
    /// `-new-volume`) name that the tag-filtered calls did not return, looked up by id. Anyone
    /// with ec2:CreateTags can write those tags: the planner proves every id a swap would touch
    /// is this node's before it plans the swap, so it must see the ones that are not.
    #[serde(default)]
    pub swap_named: SwapNamed,
    /// Candidate images for the `ubuntu-24.04` alias (empty when the spec names an AMI id).
    pub images: Vec<Image>,
    /// The local SSH public key (OpenSSH format) if the private key file exists.
    pub local_public_key: Option<String>,
    /// What each node looks like from the inside, by node name (running instances only).
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeObservation>,
    /// Local facts: the CA, and what the node files must hash to (rendered from the spec and
    /// the local secrets; hashes only, never a secret).
    #[serde(default)]
    pub local: Local,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Local {
    /// The cluster CA certificate (public) if the CA exists in the state directory.
    pub ca_cert_pem: Option<String>,
    /// A CA rotation's new CA certificate (public), if the state directory holds one.
    #[serde(default)]
    pub ca_next_cert_pem: Option<String>,
    /// A replication password rotation is under way (`replication.next.secret` exists).
    #[serde(default)]
    pub replication_rotating: bool,
    /// An SSH key rotation's new public key (`<ssh.private_key>.next` exists).
    #[serde(default)]
    pub ssh_next_public_key: Option<String>,
    /// The public key an SSH key rotation replaced, until every node stopped accepting it.
    #[serde(default)]
    pub ssh_previous_public_key: Option<String>,
    /// Node name -> node file path -> SHA-256 the file must have.
    pub desired_files: BTreeMap<String, BTreeMap<String, String>>,
    /// Seconds since the epoch when observed: the clock the planner uses for certificate
    /// expiry. Not part of the fingerprint.
    pub now: u64,
    /// SHA-256 over every user's name and password hash: a changed password makes a saved plan
    /// stale (on the spec's side of the fingerprint). Reveals nothing of the passwords.
    #[serde(default)]
    pub secrets_digest: String,
    /// The client certificates `redisctl client-cert` issued (its inventory in the state
    /// directory), for expiry warnings. Not part of the fingerprint.
    #[serde(default)]
    pub client_certs: Vec<ClientCert>,
}

/// One issued client certificate, as the inventory records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCert {
    pub cn: String,
    pub serial: String,
    /// Seconds since the epoch.
    pub not_after: u64,
    /// The issuing CA's fingerprint (SHA-256 of its certificate); lines written before CA
    /// rotations existed have none (the CA in force then issued them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum NodeObservation {
    /// Running in EC2 but SSH did not answer (or failed): a fact for the plan, not a crash.
    Unreachable {
        reason: String,
        /// The node presented another host key than the pinned one (possible interception).
        #[serde(default)]
        host_key_changed: bool,
    },
    Reached(Box<NodeFacts>),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// The host key the node presented (OpenSSH public key) and its SHA256 fingerprint.
    pub host_key: String,
    pub host_key_fingerprint: String,
    /// Nothing was pinned for this instance yet: the plan pins `host_key`.
    pub first_contact: bool,
    pub redis_installed: bool,
    /// The installed redis-server package's version.
    #[serde(default)]
    pub redis_version: Option<String>,
    /// The newest redis-server the node's archive has (looked up only with
    /// `redis.package_version = "latest"`).
    #[serde(default)]
    pub redis_candidate: Option<String>,
    /// Path -> SHA-256 of the files redisctl writes (None when missing).
    pub files: BTreeMap<String, Option<String>>,
    /// The node certificate (public), to check expiry, SANs and issuer.
    pub node_cert_pem: Option<String>,
    pub node_key_present: bool,
    /// Path -> `0640 root:redis` (mode and owner) of each file redisctl writes that exists.
    #[serde(default)]
    pub modes: BTreeMap<String, String>,
    /// What starts services on the node: systemd when `/run/systemd/system` exists (the
    /// standard `sd_booted()` check), else none (a minimal or container image).
    #[serde(default)]
    pub init: InitSystem,
    /// systemd: `redis-server@cluster` is enabled. Without systemd nothing starts services at
    /// boot, so there is nothing to enable: always false.
    pub service_enabled: bool,
    /// systemd: `redis-server@cluster` is active. Without systemd: the process in the
    /// configuration's pidfile is alive and is redis-server.
    pub service_active: bool,
    /// systemd: the stock `redis-server.service` is enabled. Without systemd: the package's
    /// init script is linked to start in a runlevel (/etc/rc[2-5].d/S…redis-server).
    pub stock_service_enabled: bool,
    /// systemd: the stock service is active. Without systemd: the init script's pidfile
    /// (/run/redis/redis-server.pid) names a live redis-server.
    pub stock_service_active: bool,
    /// The node's view of the cluster, when Redis answered.
    pub cluster: Option<ClusterView>,
    /// The kernel settings of Redis's production checklist, as they are in force.
    #[serde(default)]
    pub kernel: crate::redis::kernel::KernelValues,
    /// Redis's cluster state file (`nodes-<port>.conf` in the data directory) exists and is
    /// not empty: a node whose Redis is not running but has this file was part of a cluster
    /// and rejoins it when started.
    #[serde(default)]
    pub cluster_state_file: bool,
    /// Which operator password the running Redis took (current when it was not asked).
    #[serde(default)]
    pub operator_auth: OperatorAuth,
    /// redis-server processes that systemd's redis-server@ units did not start (started by
    /// hand, from a shell or another init): not redisctl's to manage, and in the way of its
    /// own (systemd hosts only).
    #[serde(default)]
    pub foreign_redis: Vec<ForeignRedis>,
    /// What the running Redis says of itself, beyond its files: drift made at runtime
    /// (`CONFIG SET` by a holder of the admin user) shows here and nowhere else.
    #[serde(default)]
    pub runtime: Option<RuntimeView>,
    /// While redisctl's Redis does not run and Redis's cluster state file exists: the cluster
    /// as that file says it was (a Redis started by hand, or stopped). Not a live view: the
    /// planner relies on it only when no node answers (`plan/nodes/cluster.rs`).
    #[serde(default)]
    pub state_file_view: Option<ClusterView>,
    /// While redisctl's Redis does not run: a file or directory in the data directory that is
    /// not the redis user's (the first found), as a Redis run by root leaves them.
    #[serde(default)]
    pub data_not_redis: Option<String>,
}

/// The running Redis, as it answers: its settings and its sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeView {
    /// `CONFIG GET` of `redis::conf::LIVE_KEYS`, as Redis spells the values.
    pub config: BTreeMap<String, String>,
    /// The TCP sockets redis-server listens on (`ss -ltnp`: `ADDRESS:PORT`); `None` when the
    /// node has no `ss`.
    pub listeners: Option<Vec<String>>,
}

/// A redis-server process outside redisctl's unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForeignRedis {
    pub pid: u32,
    /// The user it runs as.
    pub user: String,
    /// Its working directory: Redis's `dir`, where its data and cluster state file are.
    pub dir: String,
}

/// Which of the operator's passwords a running node accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorAuth {
    /// The spec's password (or Redis was not running, so not asked).
    #[default]
    Current,
    /// Only the previous password of a rotation in progress: its ACL file is from before it.
    Previous,
    /// Neither: the node's ACL file holds a password for the operator user that the spec
    /// does not name.
    Refused,
}

/// What starts (and restarts) services on a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitSystem {
    /// systemd is PID 1: Redis runs as `redis-server@cluster`.
    #[default]
    Systemd,
    /// No init system: redisctl starts Redis directly as the redis user and restarts it.
    None,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub state: String,
    pub slots_assigned: u32,
    pub known_nodes: u32,
    pub size: u32,
    /// The slots this node serves itself (its `myself` line of `CLUSTER NODES`); `None` when
    /// not read.
    #[serde(default)]
    pub own_slots: Option<u32>,
    /// This node is a replica.
    #[serde(default)]
    pub replica: bool,
    /// The keys in its database (`DBSIZE`); `None` when not read.
    #[serde(default)]
    pub keys: Option<u64>,
    /// A replica: its link to its master is up (`master_link_status`); `None` for a master or
    /// when not read.
    #[serde(default)]
    pub link_up: Option<bool>,
    /// Every node this node knows (its `CLUSTER NODES`, itself included); empty when not read.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// One node of the cluster as another node sees it (a line of `CLUSTER NODES`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    /// Its address (empty while Redis does not know it yet).
    pub ip: String,
    /// The line of the node that answered.
    #[serde(default)]
    pub myself: bool,
    /// A master (else a replica, of `master_id`).
    pub master: bool,
    #[serde(default)]
    pub master_id: Option<String>,
    /// Flagged `fail` or `fail?`, or still in `handshake`/`noaddr`.
    #[serde(default)]
    pub failing: bool,
    #[serde(default)]
    pub handshake: bool,
    /// The slot ranges it serves, both ends included.
    #[serde(default)]
    pub slots: Vec<(u16, u16)>,
    /// Slots it is migrating away or importing (left open by an interrupted move).
    #[serde(default)]
    pub open_slots: Vec<u16>,
}

impl Member {
    pub fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|(a, b)| u32::from(*b) - u32::from(*a) + 1)
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub id: String,
    pub cidr: String,
    pub state: String,
    pub dns_support: Option<bool>,
    pub dns_hostnames: Option<bool>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: String,
    pub az: String,
    pub map_public_ip_on_launch: bool,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetGateway {
    pub id: String,
    /// VPC ids it is attached to.
    pub attached_to: Vec<String>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub id: String,
    pub vpc_id: String,
    pub routes: Vec<Route>,
    pub associations: Vec<RouteTableAssociation>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub destination: String,
    /// `local`, an internet gateway id, or another target id.
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTableAssociation {
    pub id: String,
    pub subnet_id: Option<String>,
    pub main: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub vpc_id: String,
    pub ingress: Vec<IngressRule>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatGateway {
    pub id: String,
    pub subnet_id: String,
    pub vpc_id: String,
    /// `pending`, `available`, `deleting` or `failed`.
    pub state: String,
    /// The Elastic IPs it holds (allocation ids).
    pub allocation_ids: Vec<String>,
    pub tags: Tags,
}

/// An Elastic IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub allocation_id: String,
    pub public_ip: String,
    /// What holds it now (a NAT gateway's network interface, an instance), if anything.
    pub association_id: Option<String>,
    pub tags: Tags,
}

/// One (protocol, port range, source) triple: AWS groups them, redisctl compares them singly.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IngressRule {
    pub protocol: String,
    pub from_port: i32,
    pub to_port: i32,
    /// An IPv4 CIDR, an IPv6 CIDR, a security group id, a prefix list id, or [`SELF_SOURCE`].
    pub source: String,
}

/// The source of a rule that allows the group's own members (a reference to the group itself,
/// whose id is not known before it exists).
pub const SELF_SOURCE: &str = "self";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPair {
    pub id: String,
    pub name: String,
    /// OpenSSH public key as AWS returns it (`IncludePublicKey=true`).
    pub public_key: Option<String>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub instance_type: String,
    pub image_id: String,
    pub subnet_id: Option<String>,
    pub private_ip: Option<Ipv4Addr>,
    pub public_ip: Option<Ipv4Addr>,
    pub key_name: Option<String>,
    pub security_group_ids: Vec<String>,
    pub root_device_name: Option<String>,
    /// Device name -> volume id.
    pub block_devices: BTreeMap<String, String>,
    pub launch_time: Option<String>,
    /// `MetadataOptions.HttpTokens`: `required` is IMDSv2 only.
    #[serde(default)]
    pub http_tokens: Option<String>,
    /// The ARN of an attached IAM instance profile (redisctl attaches none).
    #[serde(default)]
    pub instance_profile: Option<String>,
    pub tags: Tags,
}

#[cfg(test)]
impl Instance {
    /// An instance with `id` and `state` and nothing else set, for unit tests (which set what
    /// they look at with `..Instance::bare(…)`).
    pub fn bare(id: &str, state: &str) -> Instance {
        Instance {
            id: id.into(),
            state: state.into(),
            instance_type: "t3.micro".into(),
            image_id: "ami-1".into(),
            subnet_id: None,
            private_ip: None,
            public_ip: None,
            key_name: None,
            security_group_ids: vec![],
            root_device_name: None,
            block_devices: BTreeMap::new(),
            launch_time: None,
            http_tokens: None,
            instance_profile: None,
            tags: Tags::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub size_gib: i32,
    pub volume_type: String,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub az: String,
    pub state: String,
    pub snapshot_id: Option<String>,
    /// (instance id, device) when attached.
    pub attachment: Option<(String, String)>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub volume_id: Option<String>,
    pub state: String,
    pub encrypted: bool,
    pub tags: Tags,
}

/// Resources named by swap tags, outside the cluster's tag filter (see `Observed::swap_named`).
/// Never acted on and never destroyed: they are here to be refused by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapNamed {
    /// Volumes that exist but are not tagged for the cluster.
    pub volumes: Vec<Volume>,
    /// Snapshots that exist but are not tagged for the cluster.
    pub snapshots: Vec<Snapshot>,
    /// Ids EC2 answered `*.NotFound` for (deleted, or never ours to see).
    pub gone: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub creation_date: String,
    pub root_device_name: String,
    pub architecture: String,
}

/// Whether an instance in `subnet`, holding the security groups `held`, sits in the cluster's
/// network: `subnets` and `groups` are the cluster's (id, VPC id), and the instance's subnet and
/// one of its groups are among them, in one VPC. The one rule of node identity, for
/// observation ([`Observed::set_aside_strangers`]) and for the node runtime's own look-ups.
pub fn in_cluster_network(
    subnet: Option<&str>,
    held: &[&str],
    subnets: &[(&str, &str)],
    groups: &[(&str, &str)],
) -> bool {
    let Some(vpc) = subnet.and_then(|s| subnets.iter().find(|(id, _)| *id == s).map(|p| p.1))
    else {
        return false;
    };
    held.iter()
        .any(|g| groups.iter().any(|(id, v)| id == g && *v == vpc))
}

impl Observed {
    /// The cluster's VPC: the one tagged as its VPC (the first by id when more are).
    pub fn cluster_vpc(&self) -> Option<&Vpc> {
        self.vpcs
            .iter()
            .find(|v| v.tags.get(tags::ROLE).map(String::as_str) == Some(tags::Role::Vpc.as_str()))
    }

    /// Moves the instances that only claim to be the cluster's (by tags) out of `instances`:
    /// an instance is the cluster's only in one of its node subnets (tagged, in its VPC) and
    /// in its security group (tagged, in its VPC). Called once, right after EC2 is observed.
    pub fn set_aside_strangers(&mut self) {
        let vpc = self.cluster_vpc().map(|v| v.id.clone());
        let is = |t: &Tags, role: tags::Role| {
            t.get(tags::ROLE).map(String::as_str) == Some(role.as_str())
        };
        let subnets: Vec<(&str, &str)> = self
            .subnets
            .iter()
            .filter(|s| is(&s.tags, tags::Role::Subnet) && Some(&s.vpc_id) == vpc.as_ref())
            .map(|s| (s.id.as_str(), s.vpc_id.as_str()))
            .collect();
        let groups: Vec<(&str, &str)> = self
            .security_groups
            .iter()
            .filter(|g| is(&g.tags, tags::Role::SecurityGroup) && Some(&g.vpc_id) == vpc.as_ref())
            .map(|g| (g.id.as_str(), g.vpc_id.as_str()))
            .collect();
        let (ours, strangers): (Vec<Instance>, Vec<Instance>) = std::mem::take(&mut self.instances)
            .into_iter()
            .partition(|i| {
                let held: Vec<&str> = i.security_group_ids.iter().map(String::as_str).collect();
                in_cluster_network(i.subnet_id.as_deref(), &held, &subnets, &groups)
            });
        self.instances = ours;
        self.strangers = strangers;
    }

    /// The volumes and snapshots tagged for the cluster that EC2's own facts tie to it (tags
    /// alone do not: anyone with ec2:CreateTags can tag another team's volume): a volume
    /// attached to one of the cluster's instances; a snapshot taken of such a volume, or one
    /// such a volume was made from whose source volume is tagged for the cluster too, in the
    /// same AZ (the swap's snapshot, kept with the old volume); a volume made from such a
    /// snapshot, or the source of one. Everything else tagged for the cluster is not proven
    /// its, and `destroy` leaves it ([`Observed::unproven_storage`]).
    pub fn proven_storage(&self) -> BTreeSet<String> {
        let ours: BTreeSet<&str> = self.instances.iter().map(|i| i.id.as_str()).collect();
        let mut proven: BTreeSet<String> = self
            .volumes
            .iter()
            .filter(|v| {
                v.attachment
                    .as_ref()
                    .is_some_and(|(i, _)| ours.contains(i.as_str()))
            })
            .map(|v| v.id.clone())
            .collect();
        let volume = |id: &str| self.volumes.iter().find(|v| v.id == id);
        loop {
            let before = proven.len();
            for snap in &self.snapshots {
                let source = snap.volume_id.as_deref();
                let taken_of_ours = source.is_some_and(|v| proven.contains(v));
                let made_ours = self.volumes.iter().any(|v| {
                    proven.contains(&v.id)
                        && v.snapshot_id.as_deref() == Some(snap.id.as_str())
                        && source.and_then(volume).is_some_and(|src| src.az == v.az)
                });
                if taken_of_ours || made_ours {
                    proven.insert(snap.id.clone());
                }
            }
            for v in &self.volumes {
                let from_ours = v.snapshot_id.as_deref().is_some_and(|s| proven.contains(s));
                let source_of_ours = self
                    .snapshots
                    .iter()
                    .any(|s| proven.contains(&s.id) && s.volume_id.as_deref() == Some(&v.id));
                if from_ours || source_of_ours {
                    proven.insert(v.id.clone());
                }
            }
            if proven.len() == before {
                return proven;
            }
        }
    }

    /// The ids of the volumes and snapshots tagged for the cluster that
    /// [`Observed::proven_storage`] does not prove its.
    pub fn unproven_storage(&self) -> BTreeSet<String> {
        let proven = self.proven_storage();
        self.volumes
            .iter()
            .map(|v| &v.id)
            .chain(self.snapshots.iter().map(|s| &s.id))
            .filter(|id| !proven.contains(*id))
            .cloned()
            .collect()
    }

    /// Nothing tagged for the cluster (what `destroy` must prove afterwards), but what it
    /// leaves on purpose: instances outside the cluster's network (`strangers`) and volumes and
    /// snapshots nothing proves the cluster's. The key pair is included when it carries the
    /// cluster tag.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.vpcs.iter().map(|r| format!("vpc {}", r.id)));
        out.extend(self.subnets.iter().map(|r| format!("subnet {}", r.id)));
        out.extend(
            self.internet_gateways
                .iter()
                .map(|r| format!("internet gateway {}", r.id)),
        );
        out.extend(
            self.route_tables
                .iter()
                .map(|r| format!("route table {}", r.id)),
        );
        out.extend(
            self.security_groups
                .iter()
                .map(|r| format!("security group {}", r.id)),
        );
        out.extend(
            self.nat_gateways
                .iter()
                .map(|r| format!("NAT gateway {} ({})", r.id, r.state)),
        );
        out.extend(
            self.addresses
                .iter()
                .map(|r| format!("Elastic IP {} ({})", r.allocation_id, r.public_ip)),
        );
        out.extend(
            self.key_pairs
                .iter()
                .filter(|k| k.tags.contains_key(tags::CLUSTER))
                .map(|r| format!("key pair {} ({})", r.name, r.id)),
        );
        out.extend(
            self.instances
                .iter()
                .map(|r| format!("instance {} ({})", r.id, r.state)),
        );
        let unproven = self.unproven_storage();
        out.extend(
            self.volumes
                .iter()
                .filter(|r| !unproven.contains(&r.id))
                .map(|r| format!("volume {}", r.id)),
        );
        out.extend(
            self.snapshots
                .iter()
                .filter(|r| !unproven.contains(&r.id))
                .map(|r| format!("snapshot {}", r.id)),
        );
        out
    }
}
