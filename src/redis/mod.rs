//! Pure Redis knowledge: ACL rules and their evaluation, renderers of the files redisctl puts
//! on a node, and parsers of what redis-cli prints. No I/O: the node executor moves the bytes.
//!
//! - [`acl`] — command rules and what a rule list allows (Redis 7.0 semantics).
//! - [`conf`] — `/etc/redis/redis-cluster.conf` and where the TLS files go.
//! - [`users_acl`] — `/etc/redis/users.acl` (SHA-256 hashes only) and the `ACL SETUSER` dry run.
//! - [`systemd`] — `redis-server@cluster` and the drop-in for Debian's template unit.
//! - [`kernel`] — the kernel settings of Redis's production checklist (sysctl.d, tmpfiles.d).
//! - [`parse`] — `CLUSTER INFO`, `CLUSTER NODES`, `INFO`, `redis-cli --cluster check`.
//! - [`keyspace`] — a key's cluster slot (CRC16, hash tags) and glob patterns over keys.
//! - [`formation`] — who is master of which slots and who replicates whom in a new cluster.

pub mod acl;
pub mod conf;
pub mod files;
pub mod formation;
pub mod kernel;
pub mod keyspace;
pub mod parse;
pub mod systemd;
pub mod users_acl;

#[cfg(test)]
mod live_tests;
#[cfg(test)]
pub(crate) mod test_spec;

use sha2::{Digest, Sha256};

/// A file redisctl writes on a node: where, with which mode and owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFile {
    pub path: &'static str,
    pub mode: u32,
    pub owner: &'static str,
    pub group: &'static str,
}

impl NodeFile {
    /// `0640 root:redis`: the form node observation reports and the plan shows.
    pub fn mode_owner(&self) -> String {
        format!("{:04o} {}:{}", self.mode, self.owner, self.group)
    }
}

/// Lower-case hex SHA-256 of a file's bytes, the form the planner compares with what
/// `sha256sum` reports on a node.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
