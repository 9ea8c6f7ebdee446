//! The node runtime: everything redisctl does inside the nodes, over SSH. It resolves each
//! node's instance and address, opens one pinned session per node and reuses it (`connect`),
//! observes the node's facts for the planner (`observe`), and carries out the node operations
//! of a plan (`ops`, `swap`) with the CA and the files rendered on the operator's machine
//! (`local`).
//!
//! Secrets only travel on a session's stdin (redis-cli reads the operator password from
//! `REDISCLI_AUTH="$(cat)"`) or inside files written 0640; never on a command line.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

mod connect;
mod formation;
mod local;
mod noinit;
mod observe;
mod ops;
pub mod redis_cli;
mod swap;
mod topology;
pub use swap::KeysBefore;

use crate::aws::{Aws, NodeInstance};
use crate::pki::{self, Authority};
use crate::redis::conf;
use crate::spec::secrets::Secret;
use crate::spec::{Spec, SshVia};
use crate::ssh::{self, KnownHosts, Session, SshError, Timeouts};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("node {node}: {what}")]
    Failed { node: String, what: String },
    #[error("node {node}: no running instance found in EC2")]
    NoInstance { node: String },
    #[error("the cluster CA in {dir}")]
    Ca {
        dir: String,
        #[source]
        source: pki::PkiError,
    },
    #[error("cannot read the EC2 instances of the cluster")]
    Aws(#[source] crate::aws::AwsError),
    #[error("gave up after {}s waiting for {what}", waited.as_secs())]
    Timeout { what: String, waited: Duration },
}

impl NodeError {
    pub fn hint(&self) -> String {
        match self {
            NodeError::Ssh(SshError::HostKeyChanged { .. }) => {
                "do not continue until you know why the host key changed (see above)".into()
            }
            NodeError::Ssh(_) | NodeError::Timeout { .. } => {
                "check the node (is it running, is SSH open from here?) and run apply again: finished steps are skipped".into()
            }
            NodeError::Aws(e) => e.hint(),
            _ => "fix the cause above and run apply again: finished steps are skipped".into(),
        }
    }
}

pub struct NodeRuntime {
    spec: Spec,
    aws: Aws,
    known: KnownHosts,
    via: SshVia,
    timeouts: Timeouts,
    secrets: Vec<(String, Secret)>,
    operator_password: Secret,
    /// While the operator's password is rotated: the previous one, which the nodes hold until
    /// this rotation's ACL file reaches them.
    operator_previous: Option<Secret>,
    /// A node refused the current operator password and took the previous one (seen by the
    /// observation): every node is then logged in to with the previous password, which the
    /// rotation keeps on every node until it ends.
    use_previous: std::sync::atomic::AtomicBool,
    sessions: Mutex<BTreeMap<String, Session>>,
    /// The host keys a plan being applied saw at first contact, by instance id: apply reaches
    /// those instances only if they present exactly that key, and pins it at the first
    /// connection (see [`NodeRuntime::expect_host_key`]).
    expected: std::sync::Mutex<BTreeMap<String, String>>,
    /// Each node's instance, or the several instances that claim it (a node with more than
    /// one claimant is reached through none of them).
    instances: Mutex<BTreeMap<String, Vec<NodeInstance>>>,
    ca: Mutex<Option<Arc<Authority>>>,
    /// Whether each node runs systemd, learnt once per session (see [`noinit`]).
    systemd: Mutex<BTreeMap<String, bool>>,
}

/// How nodes are reached: `REDISCTL_SSH_VIA` wins over the spec.
pub fn ssh_via(spec: &Spec) -> SshVia {
    std::env::var(SshVia::ENV)
        .ok()
        .and_then(|v| SshVia::parse(&v))
        .unwrap_or(spec.ssh.via)
}

/// The `redis-cli` of a node, over TLS with the node's own certificate (it has clientAuth),
/// as the operator user whose password `$(cat)` reads from stdin.
pub fn admin_cli(spec: &Spec) -> String {
    format!("REDISCLI_AUTH=\"$(cat)\" {}", admin_cli_command(spec))
}

/// [`admin_cli`] without the password prefix (for wrapping it in `timeout`, or for
/// `redisctl redis-cli`, which sets REDISCLI_AUTH its own way).
pub(crate) fn admin_cli_command(spec: &Spec) -> String {
    admin_cli_command_at(spec, std::net::Ipv4Addr::LOCALHOST)
}

/// [`admin_cli_command`] to the node at `host` (another node of the VPC: its certificate names
/// its private IP).
pub(crate) fn admin_cli_command_at(spec: &Spec, host: std::net::Ipv4Addr) -> String {
    format!(
        "redis-cli --tls --cacert {} --cert {} --key {} -h {} -p {} --user {} --no-auth-warning",
        conf::CA_CERT.path,
        conf::NODE_CERT.path,
        conf::NODE_KEY.path,
        host,
        spec.redis.port,
        ssh::sh_quote(&spec.operator_user().name)
    )
}

impl NodeRuntime {
    pub fn new(spec: &Spec, aws: Aws, secrets: Vec<(String, Secret)>) -> Result<Self, NodeError> {
        crate::private_fs::private_dir(&spec.cluster.state_dir).map_err(|e| NodeError::Failed {
            node: "-".into(),
            what: format!(
                "cannot create the state directory {}: {e}",
                spec.cluster.state_dir.display()
            ),
        })?;
        let known = KnownHosts::open(&spec.cluster.state_dir)?;
        let op = spec.operator_user().name.clone();
        // The current password first, then the previous one while it is rotated.
        let mut passwords = secrets
            .iter()
            .filter(|(u, _)| *u == op)
            .map(|(_, s)| s.clone());
        let operator_password = passwords.next().ok_or_else(|| NodeError::Failed {
            node: "-".into(),
            what: format!("the operator user {op} has no password"),
        })?;
        let operator_previous = passwords.next();
        Ok(NodeRuntime {
            spec: spec.clone(),
            aws,
            known,
            via: ssh_via(spec),
            timeouts: Timeouts::from(&spec.ssh),
            secrets,
            operator_password,
            operator_previous,
            use_previous: std::sync::atomic::AtomicBool::new(false),
            sessions: Mutex::new(BTreeMap::new()),
            expected: std::sync::Mutex::new(BTreeMap::new()),
            instances: Mutex::new(BTreeMap::new()),
            ca: Mutex::new(None),
            systemd: Mutex::new(BTreeMap::new()),
        })
    }

    /// The operator password the nodes take, for a command's stdin: the current one, or the
    /// previous one once a node was seen refusing the current one during a rotation.
    fn stdin(&self) -> Option<&[u8]> {
        let p = match &self.operator_previous {
            Some(prev) if self.use_previous.load(std::sync::atomic::Ordering::Relaxed) => prev,
            _ => &self.operator_password,
        };
        Some(p.expose().as_bytes())
    }

    fn node_spec(&self, node: &str) -> Result<&crate::spec::Node, NodeError> {
        self.spec
            .nodes
            .nodes
            .iter()
            .find(|n| n.name == node)
            .ok_or_else(|| NodeError::Failed {
                node: node.into(),
                what: "not in the spec".into(),
            })
    }
}
