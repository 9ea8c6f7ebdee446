//! The tags that make AWS the state: every resource redisctl makes carries
//! `redisctl:cluster=<name>` and `redisctl:role=<role>` (+ `redisctl:node=<name>` for a node's
//! instance and volumes), plus a readable `Name`.

pub const CLUSTER: &str = "redisctl:cluster";
pub const ROLE: &str = "redisctl:role";
pub const NODE: &str = "redisctl:node";
/// Stage of multi-step work in flight on an instance (the volume swap).
pub const STAGE: &str = "redisctl:stage";
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
        }
    }
}
