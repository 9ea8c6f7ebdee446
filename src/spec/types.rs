//! The validated spec: every default filled in, every value parsed and checked. Everything
//! after validation (planning, rendering, applying) works from these types only.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::redis::acl::CommandRule;

/// The name of the Ubuntu 24.04 AMI alias, resolved at plan time by Canonical's owner id and a
/// name filter.
pub const UBUNTU_2404: &str = "ubuntu-24.04";
/// Canonical's AWS account, the owner of the official Ubuntu AMIs.
pub const CANONICAL_OWNER: &str = "099720109477";
/// The name filter of Ubuntu 24.04 LTS (noble) amd64 server images on gp3 SSD.
pub const UBUNTU_2404_NAME_FILTER: &str =
    "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*";

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub cluster: Cluster,
    pub network: Network,
    pub security_group: SecurityGroup,
    pub nodes: Nodes,
    pub ssh: Ssh,
    pub tls: Tls,
    pub redis: Redis,
    pub users: Vec<AclUser>,
    /// Where the state directory's files are kept between runs (`[state]`).
    pub state: StateBackend,
}

/// Where redisctl keeps its state between runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum StateBackend {
    /// In `cluster.state_dir` on this machine (mode 0700), locked with a local `flock`.
    #[default]
    Local,
    /// In an S3 bucket, each file an object encrypted with SSE-KMS, locked with an object
    /// created by a conditional write; read into a private temporary directory for a run.
    S3(S3Backend),
}

#[derive(Debug, Clone, PartialEq)]
pub struct S3Backend {
    pub bucket: String,
    /// Objects are `<prefix>/state/<file>` and the lock `<prefix>/lock.json`.
    pub prefix: String,
    /// The KMS key (id, ARN, alias) every object is encrypted with.
    pub kms_key: String,
    pub region: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub region: String,
    /// Extra tags for every resource (never keys starting with `redisctl:` or `aws:`).
    pub tags: BTreeMap<String, String>,
    /// Where the CA key, the SSH private key and pinned host keys live (mode 0700).
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub vpc_cidr: Ipv4Net,
    pub subnets: Vec<Subnet>,
    /// How the nodes reach the internet (the package archive).
    pub egress: Egress,
    /// The public subnet of the NAT gateway (`Egress::NatGateway` only).
    pub nat_subnet: Option<Subnet>,
}

/// How the nodes reach the internet: the distribution's package archive for `apt-get install
/// redis-server`, and nothing else redisctl needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Egress {
    /// Each node has a public IP; the subnets route `0.0.0.0/0` to the internet gateway.
    PublicIp,
    /// The nodes have private addresses only; their subnets route `0.0.0.0/0` to a NAT gateway
    /// (with an Elastic IP) in a public subnet of its own, which routes to the internet gateway.
    NatGateway,
    /// No route out: the image already holds Redis (`nodes.image_has_redis`).
    None,
}

impl Egress {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public-ip" => Some(Egress::PublicIp),
            "nat-gateway" => Some(Egress::NatGateway),
            "none" => Some(Egress::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Egress::PublicIp => "public-ip",
            Egress::NatGateway => "nat-gateway",
            Egress::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subnet {
    pub name: String,
    pub az: String,
    pub cidr: Ipv4Net,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecurityGroup {
    pub ssh_cidrs: Vec<Ipv4Net>,
    pub allow_ssh_from_anywhere: bool,
    /// Sources allowed on the Redis port and the cluster bus port.
    pub redis_cidrs: Vec<Ipv4Net>,
    /// Open 26379-26381 for Redis Sentinel.
    pub sentinel: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Nodes {
    pub instance_type: String,
    pub ami: Ami,
    pub masters: u32,
    pub replicas_per_master: u32,
    pub root_volume: RootVolume,
    /// The image already holds redis-server and redis-tools (nothing to install from the
    /// archive: the only way a spec with `network.egress = "none"` can work).
    pub image_has_redis: bool,
    /// Every node, in order; `masters × (1 + replicas_per_master)` of them.
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ami {
    /// Resolved by [`CANONICAL_OWNER`] and [`UBUNTU_2404_NAME_FILTER`], newest first.
    Ubuntu2404,
    Id(String),
}

impl fmt::Display for Ami {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ami::Ubuntu2404 => f.write_str(UBUNTU_2404),
            Ami::Id(id) => f.write_str(id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Name of the subnet (in `network.subnets`).
    pub subnet: String,
    /// The subnet's availability zone.
    pub az: String,
    pub private_ip: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootVolume {
    pub size_gib: u32,
    pub volume_type: String,
    pub encrypted: bool,
    /// KMS key id, ARN or alias; `alias/aws/ebs` by default.
    pub kms_key: String,
    pub strategy: EncryptionStrategy,
}

/// How root-volume encryption is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EncryptionStrategy {
    /// Launch with an encrypted root volume.
    AtLaunch,
    /// Launch unencrypted, then stop / snapshot / encrypted volume / swap after cluster create,
    /// as the hand procedure does.
    Swap,
}

impl EncryptionStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionStrategy::AtLaunch => "at-launch",
            EncryptionStrategy::Swap => "swap",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    pub user: String,
    pub key_name: String,
    /// Generated (ed25519, mode 0600) if absent.
    pub private_key: PathBuf,
    pub via: SshVia,
    pub connect_timeout: Duration,
    /// How long to wait for sshd after an instance boots.
    pub ready_timeout: Duration,
    pub command_timeout: Duration,
}

/// Which address redisctl uses to reach nodes over SSH. `REDISCTL_SSH_VIA` overrides the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SshVia {
    PublicIp,
    PrivateIp,
}

impl SshVia {
    pub const ENV: &'static str = "REDISCTL_SSH_VIA";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public-ip" => Some(SshVia::PublicIp),
            "private-ip" => Some(SshVia::PrivateIp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SshVia::PublicIp => "public-ip",
            SshVia::PrivateIp => "private-ip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub protocols: Vec<TlsProtocol>,
    pub cert_days: u32,
    /// Certificates expiring within this many days are re-issued by the plan.
    pub renew_before_days: u32,
    pub auth_clients: TlsAuthClients,
    /// A rotation of the cluster CA in progress, and its stage (none: no rotation asked for;
    /// a new CA still in the state directory is then the rotation's end, see [`CaRotation`]).
    pub ca_rotation: Option<CaRotation>,
}

/// `tls.ca_rotation`: the stage of a CA rotation the operator asks for. The stages follow
/// each other through the spec, like a password rotation: `trust`, then `reissue` once every
/// application trusts the new CA, then the key removed once every application's client
/// certificate comes from the new CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaRotation {
    /// A new CA is made (`ca.next.crt`, `ca.next.key`) and every node trusts it next to the
    /// old one; node certificates stay as they are; `redisctl client-cert` issues from the new
    /// CA and writes both CAs as the bundle.
    Trust,
    /// Node certificates are re-issued from the new CA, one node at a time; both CAs are
    /// still trusted (clients presenting a certificate from the old CA still get in).
    Reissue,
    /// The rotation abandoned: node certificates from the old CA, which alone is trusted
    /// again, then the new CA removed from the state directory.
    Abort,
}

impl CaRotation {
    pub fn as_str(self) -> &'static str {
        match self {
            CaRotation::Trust => "trust",
            CaRotation::Reissue => "reissue",
            CaRotation::Abort => "abort",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsProtocol {
    V1_2,
    V1_3,
}

impl TlsProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsProtocol::V1_2 => "TLSv1.2",
            TlsProtocol::V1_3 => "TLSv1.3",
        }
    }
}

/// Redis `tls-auth-clients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsAuthClients {
    Yes,
    Optional,
    No,
}

impl TlsAuthClients {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsAuthClients::Yes => "yes",
            TlsAuthClients::Optional => "optional",
            TlsAuthClients::No => "no",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redis {
    /// The TLS client port; the plaintext port is always 0 (off).
    pub port: u16,
    pub cluster_node_timeout_ms: u32,
    pub appendonly: bool,
    pub maxmemory: Option<String>,
    pub maxmemory_policy: Option<String>,
    pub cluster_require_full_coverage: bool,
    /// Which redis-server package the nodes run: none given, what the archive had when each
    /// node was installed (never changed after); see [`PackageVersion`].
    pub package_version: Option<PackageVersion>,
}

/// `redis.package_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageVersion {
    /// The newest the archive has: a newer one is rolled out node by node.
    Latest,
    /// Exactly this Debian version of redis-server and redis-tools (e.g. `5:7.0.15-1~deb12u1`).
    Exact(String),
}

impl PackageVersion {
    pub fn as_str(&self) -> &str {
        match self {
            PackageVersion::Latest => "latest",
            PackageVersion::Exact(v) => v,
        }
    }
}

impl Redis {
    /// The cluster bus port: always the client port + 10000.
    pub fn bus_port(&self) -> u16 {
        self.port + 10000
    }
}

/// An ACL user. `default` is never among them: it is always rendered `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclUser {
    pub name: String,
    pub enabled: bool,
    /// `None` only for a disabled user (which then has no password at all).
    pub password: Option<SecretSource>,
    /// While a password is rotated: the password clients used until now, still accepted next
    /// to `password` until it is taken out of the spec.
    pub previous_password: Option<SecretSource>,
    pub keys: Vec<String>,
    pub channels: Vec<String>,
    pub commands: Vec<CommandRule>,
    /// The user redisctl itself authenticates as for cluster operations.
    pub operator: bool,
}

/// Where a secret comes from. The value itself is never stored in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl Spec {
    /// The enabled users whose password is being rotated (a previous password is named).
    pub fn rotating_users(&self) -> impl Iterator<Item = &AclUser> {
        self.users
            .iter()
            .filter(|u| u.enabled && u.previous_password.is_some())
    }

    /// The one user marked `operator = true` (validation guarantees exactly one).
    pub fn operator_user(&self) -> &AclUser {
        self.users
            .iter()
            .find(|u| u.operator)
            .expect("validation guarantees exactly one operator user")
    }

    pub fn subnet(&self, name: &str) -> Option<&Subnet> {
        self.network.subnets.iter().find(|s| s.name == name)
    }
}
