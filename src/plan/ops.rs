//! The operations a step carries out, by the edge that carries them out, and their payloads:
//! what the executor does, with every choice already made by the plan (ids or the steps that
//! make them, addresses, device names, tokens). Re-exported by `model`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::observed::{IngressRule, Tags};

/// A reference to an AWS resource: one that exists, or one an earlier step of this plan makes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ref {
    Id(String),
    /// The id produced by the step with this address.
    Step(String),
}

/// Where a route table's default route (`0.0.0.0/0`) goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum RouteTarget {
    InternetGateway(Ref),
    NatGateway(Ref),
}

/// A security group ingress rule as the plan wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub rule: IngressRule,
    pub description: String,
}

/// What the executor does for a step, by the edge that carries it out: the compiler checks
/// that each edge handles every operation of its own kind. Every operation is an idempotent
/// "ensure": it first looks for its resource by identity (tags, name, CIDR, the file) and adopts
/// it if it is there. A saved plan holds these as `{"edge": …, "op": …, …}` (the swap, which
/// has one operation, as `{"edge": "swap", …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "edge", rename_all = "snake_case")]
pub enum Op {
    /// The EC2 API (`aws/`).
    Ec2(Ec2Op),
    /// A node, over SSH (`node/`).
    Node(NodeOp),
    /// The operator's machine: the state directory (`ssh/`, `pki/`).
    Local(LocalOp),
    /// Phase 8's root-volume swap of one node: EC2 and SSH stage by stage (`exec/swap.rs`).
    Swap(Box<SwapRootVolume>),
}

/// An operation on the EC2 API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Ec2Op {
    CreateVpc {
        cidr: String,
        tags: Tags,
    },
    CreateSubnet {
        vpc: Ref,
        cidr: String,
        az: String,
        map_public_ip: bool,
        tags: Tags,
    },
    SetSubnetPublicIp {
        subnet: String,
        map_public_ip: bool,
    },
    /// Create and attach.
    CreateInternetGateway {
        vpc: Ref,
        tags: Tags,
    },
    AttachInternetGateway {
        igw: String,
        vpc: Ref,
    },
    /// Create, with the default route to `target` (none: no way out of the VPC).
    CreateRouteTable {
        vpc: Ref,
        target: Option<RouteTarget>,
        tags: Tags,
    },
    /// Create or replace the default route (`target` none: delete it).
    SetDefaultRoute {
        route_table: String,
        target: Option<RouteTarget>,
        replace: bool,
    },
    /// An Elastic IP for the NAT gateway (found by its tags, else allocated).
    AllocateAddress {
        tags: Tags,
    },
    /// A NAT gateway in `subnet` holding the Elastic IP `allocation` (found by its tags, else
    /// created); waits until it is `available`.
    CreateNatGateway {
        subnet: Ref,
        allocation: Ref,
        tags: Tags,
    },
    /// Delete and wait until it is `deleted` (its network interface leaves the subnet, its
    /// Elastic IP is free).
    DeleteNatGateway {
        id: String,
    },
    ReleaseAddress {
        allocation_id: String,
    },
    AssociateRouteTable {
        route_table: Ref,
        subnet: Ref,
    },
    DisassociateRouteTable {
        association_id: String,
    },
    CreateSecurityGroup {
        vpc: Ref,
        name: String,
        description: String,
        tags: Tags,
    },
    AuthorizeIngress {
        security_group: Ref,
        rule: RuleSpec,
    },
    RevokeIngress {
        security_group: String,
        rule: IngressRule,
    },
    /// Import the public key of the private key at `private_key` (made by `LocalOp::EnsureSshKey`).
    ImportKeyPair {
        name: String,
        private_key: String,
        tags: Tags,
    },
    DeleteKeyPair {
        name: String,
    },
    RunInstance(Box<RunInstance>),
    StartInstance {
        instance: String,
    },
    ModifyInstanceType {
        instance: String,
        instance_type: String,
        /// Running now: stop before and start after.
        restart: bool,
    },
    /// IMDSv2 only (`HttpTokens=required`): a node found allowing IMDSv1.
    RequireImdsV2 {
        instance: String,
    },
    /// Terminate, then run again (a replaced node).
    ReplaceInstance {
        terminate: String,
        run: Box<RunInstance>,
    },
    TerminateInstance {
        instance: String,
    },
    SetTags {
        resource: String,
        set: Tags,
        remove: Vec<String>,
    },
    DeleteSecurityGroup {
        id: String,
    },
    DeleteRouteTable {
        id: String,
    },
    DeleteInternetGateway {
        id: String,
        detach_from: Vec<String>,
    },
    DeleteSubnet {
        id: String,
    },
    DeleteVpc {
        id: String,
    },
    DeleteVolume {
        id: String,
    },
    DeleteSnapshot {
        id: String,
    },
}

impl Ec2Op {
    /// The key pair a launch puts in the new instance's `authorized_keys`, if this operation
    /// launches one.
    pub fn launch_key(&self) -> Option<&str> {
        match self {
            Ec2Op::RunInstance(run) | Ec2Op::ReplaceInstance { run, .. } => Some(&run.key_name),
            _ => None,
        }
    }

    /// The instance this operation starts (or replaces), if any: EC2 gives a started instance
    /// a new public IP, so whoever holds its address must read it again.
    pub fn starts(&self) -> Option<&str> {
        match self {
            Ec2Op::StartInstance { instance }
            | Ec2Op::ModifyInstanceType {
                instance,
                restart: true,
                ..
            } => Some(instance),
            Ec2Op::ReplaceInstance { terminate, .. } => Some(terminate),
            _ => None,
        }
    }
}

/// An operation on a node, over its SSH session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NodeOp {
    /// Pin the host key the plan saw at first contact: locally and as an instance tag.
    PinHostKey {
        node: String,
        instance: String,
        host_key: String,
    },
    /// redis-server and redis-tools from the distribution; the stock service stopped and
    /// disabled.
    InstallRedis { node: String },
    /// The OS's pending updates (`apt-get upgrade`, redis-server and redis-tools held at
    /// their version); when anything was upgraded and with `restart`, Redis restarted onto the
    /// new libraries as for a configuration change.
    UpdateOs { node: String, restart: bool },
    /// Another version of redis-server and redis-tools on a node that has one (upgrade or
    /// downgrade); with `restart`, Redis restarted onto it (a master hands its slots over
    /// first), then the wait for a healthy cluster.
    UpgradeRedis {
        node: String,
        version: String,
        restart: bool,
    },
    /// The CA bundle the node trusts and, with `cert`, a fresh key and certificate for it.
    InstallTls {
        node: String,
        /// Redis runs: it reloads its TLS files (CONFIG SET of the tls-* paths re-reads them;
        /// no restart, connections made stay up).
        #[serde(alias = "restart")]
        reload: bool,
        /// A new key and certificate, signed by the CA of the rotation's stage; without it,
        /// only the CA bundle is written.
        #[serde(default = "yes")]
        cert: bool,
    },
    /// An SSH key rotation: the new public key (`<key>.next`) added to the login user's
    /// authorized_keys, next to the current one.
    AuthorizeSshKey { node: String },
    /// An SSH key rotation's end on a node: a new session with the new key (proving it logs
    /// in), then the replaced public key removed from authorized_keys.
    RevokeSshKey { node: String },
    /// Write users.acl; `reload` sets its users on a running server (ACL SETUSER, no restart).
    WriteAcl { node: String, reload: bool },
    /// Write the kernel settings' files (sysctl.d, tmpfiles.d) and put them in force now
    /// (`redis::kernel`; no restart).
    ApplyKernel { node: String },
    /// Write redis-cluster.conf and the systemd drop-in, enable `redis-server@cluster`, and
    /// start it (or restart it when `restart`, then wait for the cluster to be healthy). With
    /// `live`, the file differs from the node's only by the replication login (replicas added
    /// to or removed from the spec): written, and set with CONFIG SET, no restart.
    WriteConfig {
        node: String,
        restart: bool,
        #[serde(default)]
        live: bool,
    },
    /// Set the mode and owner of every file redisctl writes on `node` back to what it writes
    /// (chown, chmod; no restart).
    SetFileModes { node: String },
    /// A Redis started by hand on `node` taken over with its data (`plan/nodes/takeover.rs`):
    /// the redis-server `pid` (when one ran at plan time, and is still that server) stopped
    /// with SIGTERM and waited for; the data directory made the redis user's; `dump.rdb`
    /// renamed to the file redisctl's configuration names.
    TakeOverRedis { node: String, pid: Option<u32> },
    /// Settings changed at runtime put back on the running node: `CONFIG SET name value` for
    /// each (`plan/nodes/runtime.rs`; no restart).
    SetRuntime {
        node: String,
        settings: Vec<(String, String)>,
    },
    /// Form the cluster (`node/formation.rs`: slots and epochs, every pair met, replicas),
    /// then wait until healthy.
    CreateCluster { nodes: Vec<String>, replicas: u32 },
    /// A formation an interrupted apply left with every slot assigned: the nodes meet, the
    /// empty ones become replicas, then wait until healthy (`node::formation`).
    CompleteCluster { nodes: Vec<String>, replicas: u32 },
    /// A formation an interrupted apply left before every slot was assigned (no keys on any
    /// node): `CLUSTER RESET HARD` on every node, then create it (`node::formation`).
    ReformCluster { nodes: Vec<String>, replicas: u32 },
    /// A node joins a running cluster: `via`, a member, meets it; then it becomes the replica
    /// of `replica_of`, or stays a master that serves nothing until slots are moved to it
    /// (`node::topology`).
    JoinCluster {
        node: String,
        via: String,
        replica_of: Option<String>,
    },
    /// `count` slots, the lowest numbered `from` serves, move to `to` with their keys
    /// (`redis-cli --cluster reshard`, run on `via`), any slot a killed move left open being
    /// finished first (`node::topology`).
    MoveSlots {
        via: String,
        from: String,
        to: String,
        count: u32,
        /// `from` is a node leaving the cluster (not in the spec): found by this address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_ip: Option<String>,
    },
    /// `node`, a replica, takes over from its master with `CLUSTER FAILOVER` (the master
    /// agrees; no write is lost): the master's slots stay where their data is, served by
    /// `node` (`node::topology`).
    Failover { node: String },
    /// A node the spec no longer has, serving no slot, leaves the running cluster: every
    /// member forgets it (`CLUSTER FORGET`, run on each spec node that knows it), then it is
    /// reset (`CLUSTER RESET SOFT`, sent from `via`) so that it does not come back by gossip
    /// (`node::topology`).
    LeaveCluster {
        node: String,
        ip: String,
        via: String,
    },
    /// Slots a killed move left migrating/importing are finished (`redis-cli --cluster fix`
    /// on `via`).
    FixSlots { via: String },
    /// Wait until every node reports `cluster_state:ok`, all slots and all nodes known.
    WaitHealthy { nodes: usize },
}

/// An operation on the operator's machine (the state directory, the SSH key file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LocalOp {
    /// The cluster CA in the state directory (created once; its key never leaves it).
    EnsureCa,
    /// A step of a CA rotation in the state directory.
    Ca { step: CaStep },
    /// A step of a replication password rotation in the state directory.
    Replication { step: ReplicationStep },
    /// A step of an SSH key rotation on the key file `private_key`.
    SshKey {
        step: SshKeyStep,
        private_key: String,
    },
    /// The private key of key pair `key_pair` at `private_key` (mode 0600), generated if
    /// absent.
    EnsureSshKey {
        private_key: String,
        key_pair: String,
    },
}

/// The local steps of a CA rotation (`pki::authority` says how each survives a kill).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaStep {
    /// The new CA made (`ca.next.crt`, `ca.next.key`).
    CreateNext,
    /// The new CA made the CA in force; the old one's key deleted.
    Promote,
    /// The new CA removed (an abort).
    DropNext,
}

/// The local steps of a replication password rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationStep {
    /// A new random password in `replication.next.secret`.
    CreateNext,
    /// The new password made the one in force (`replication.secret`).
    Promote,
}

/// The local steps of an SSH key rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SshKeyStep {
    /// A new ed25519 key at `<key>.next`.
    CreateNext,
    /// The new key made the key; the old public key kept at `<key>.previous.pub`.
    Promote,
    /// The old public key forgotten (every node stopped accepting it).
    DropPrevious,
}

fn yes() -> bool {
    true
}

impl From<Ec2Op> for Op {
    fn from(op: Ec2Op) -> Self {
        Op::Ec2(op)
    }
}

impl From<NodeOp> for Op {
    fn from(op: NodeOp) -> Self {
        Op::Node(op)
    }
}

impl From<LocalOp> for Op {
    fn from(op: LocalOp) -> Self {
        Op::Local(op)
    }
}

/// What the encryption swap of one node needs (see `Op::Swap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapRootVolume {
    pub node: String,
    pub instance: Ref,
    pub az: String,
    /// The root device: the new volume is attached where the old one was.
    pub device: String,
    pub volume_type: String,
    pub kms_key: String,
    /// Hand the node's master role to one of its replicas first (clusters with replicas).
    pub failover: bool,
    /// How many nodes a healthy cluster has.
    pub cluster_nodes: usize,
    pub snapshot_tags: Tags,
    pub volume_tags: Tags,
    /// Keep the plaintext snapshot and old volume (tagged) for a manual rollback
    /// (`apply --keep-old-volumes`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_old: bool,
}

/// The stages of a swap, in order; the `redisctl:stage` tag holds the last one completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SwapStage {
    /// Failover done (with replicas), Redis made durable, its key count and the old volume
    /// recorded. Nothing changed yet: redone on a rerun while the instance runs.
    Prepared,
    /// 1: Redis and the instance stopped.
    Stopped,
    /// 2: the plaintext snapshot completed.
    Snapshotted,
    /// 3: the encrypted volume available.
    VolumeCreated,
    /// 4: the old root detached, the new one attached at the same device.
    Attached,
    /// 5: the instance started, SSH and Redis answer.
    Started,
    /// 6: the node rejoined, the cluster is ok, the key count matches.
    Verified,
}

impl SwapStage {
    pub const ALL: [SwapStage; 7] = [
        SwapStage::Prepared,
        SwapStage::Stopped,
        SwapStage::Snapshotted,
        SwapStage::VolumeCreated,
        SwapStage::Attached,
        SwapStage::Started,
        SwapStage::Verified,
    ];

    /// The tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapStage::Prepared => "swap:0-prepared",
            SwapStage::Stopped => "swap:1-stopped",
            SwapStage::Snapshotted => "swap:2-snapshotted",
            SwapStage::VolumeCreated => "swap:3-volume-created",
            SwapStage::Attached => "swap:4-attached",
            SwapStage::Started => "swap:5-started",
            SwapStage::Verified => "swap:6-verified",
        }
    }

    pub fn parse(s: &str) -> Option<SwapStage> {
        SwapStage::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// The swap stage recorded on an instance, if a swap is in flight.
pub fn stage_of(t: &Tags) -> Option<SwapStage> {
    t.get(crate::observed::tags::STAGE)
        .and_then(|s| SwapStage::parse(s))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInstance {
    pub node: String,
    pub image_id: String,
    pub instance_type: String,
    pub subnet: Ref,
    pub security_group: Ref,
    pub key_name: String,
    pub private_ip: Ipv4Addr,
    pub root_device: String,
    pub volume_size_gib: u32,
    pub volume_type: String,
    pub encrypted: bool,
    pub kms_key: Option<String>,
    pub tags: Tags,
    pub volume_tags: Tags,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operations_that_start_an_instance_say_which() {
        let start = Ec2Op::StartInstance {
            instance: "i-1".into(),
        };
        assert_eq!(start.starts(), Some("i-1"));
        let resize = |restart| Ec2Op::ModifyInstanceType {
            instance: "i-2".into(),
            instance_type: "t3.micro".into(),
            restart,
        };
        assert_eq!(resize(true).starts(), Some("i-2"));
        assert_eq!(
            resize(false).starts(),
            None,
            "a stopped instance stays stopped"
        );
        let terminate = Ec2Op::TerminateInstance {
            instance: "i-3".into(),
        };
        assert_eq!(terminate.starts(), None);
    }
}
