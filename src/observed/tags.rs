//! The tags that make AWS the state: every resource redisctl makes carries
//! `redisctl:cluster=<name>` and `redisctl:role=<role>` (+ `redisctl:node=<name>` for a node's
//! instance and volumes), plus a readable `Name`.

pub const CLUSTER: &str = "redisctl:cluster";
pub const ROLE: &str = "redisctl:role";
pub const NODE: &str = "redisctl:node";
/// Stage of multi-step work in flight on an instance (the volume swap).
pub const STAGE: &str = "redisctl:stage";
/// The encryption swap's bookkeeping on the instance, next to `STAGE`: the key count before
/// the stop (`master:N` or `replica:N`), the plaintext root volume, the snapshot, the new volume.
pub const SWAP_KEYS: &str = "redisctl:swap-keys";
pub const SWAP_OLD_VOLUME: &str = "redisctl:swap-old-volume";
pub const SWAP_SNAPSHOT: &str = "redisctl:swap-snapshot";
pub const SWAP_NEW_VOLUME: &str = "redisctl:swap-new-volume";
/// On a plaintext volume or snapshot kept by `apply --keep-old-volumes`: the node it belonged to.
pub const KEPT_FOR_ROLLBACK: &str = "redisctl:kept-for-rollback";
/// SHA-256 fingerprint of the node's pinned SSH host key.
pub const HOST_KEY: &str = "redisctl:host-key";

/// The `redisctl:role` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Vpc,
    Subnet,
    Igw,
    RouteTable,
    SecurityGroup,
    KeyPair,
    Node,
    Volume,
    Snapshot,
    /// The NAT gateway's public subnet, its route table, its Elastic IP and the gateway.
    NatSubnet,
    NatRouteTable,
    NatEip,
    NatGateway,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Vpc => "vpc",
            Role::Subnet => "subnet",
            Role::Igw => "igw",
            Role::RouteTable => "rt",
            Role::SecurityGroup => "sg",
            Role::KeyPair => "key",
            Role::Node => "node",
            Role::Volume => "volume",
            Role::Snapshot => "snapshot",
            Role::NatSubnet => "nat-subnet",
            Role::NatRouteTable => "nat-rt",
            Role::NatEip => "nat-eip",
            Role::NatGateway => "nat",
        }
    }
}
