//! The files of a node whose content is fully determined by the spec, the local secrets and
//! the CA: rendered once here, written by the executor, and hashed for the planner.

use std::collections::BTreeMap;

use super::conf::{self, ReplicationAuth};
use super::{NodeFile, content_hash, systemd, users_acl};
use crate::pki::Ca;
use crate::spec::secrets::Secret;
use crate::spec::{Node, Spec};

/// The replication user's password, derived from the CA key (nothing new to store).
pub fn replication_secret(spec: &Spec, ca: &Ca) -> Option<Secret> {
    (spec.nodes.replicas_per_master > 0)
        .then(|| ca.derive_secret(users_acl::REPLICATION_SECRET_LABEL))
}

/// Every file redisctl writes on a node, each with the mode and owner it must keep (the node
/// key and certificate are written by the TLS step, the others rendered below).
pub const MANAGED: [NodeFile; 6] = [
    conf::CONF,
    systemd::DROP_IN,
    users_acl::USERS_ACL,
    conf::CA_CERT,
    conf::NODE_CERT,
    conf::NODE_KEY,
];

/// Shell lines printing `<octal mode> <owner>:<group> <path>` for each file of [`MANAGED`] that
/// exists (node observation and `verify` both read them with [`parse_modes`]).
pub fn stat_script() -> String {
    MANAGED
        .iter()
        .map(|f| {
            let q = crate::ssh::sh_quote(f.path);
            format!("[ -e {q} ] && stat -c '%a %U:%G %n' {q}\n")
        })
        .collect()
}

/// Path -> `0640 root:redis` for each file of [`MANAGED`] that [`stat_script`] listed in `text`
/// (other lines are ignored).
pub fn parse_modes(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (mode, rest) = l.trim().split_once(' ')?;
            let (owner, path) = rest.split_once(' ')?;
            let mode = u32::from_str_radix(mode, 8).ok()?;
            MANAGED
                .iter()
                .any(|f| f.path == path)
                .then(|| (path.to_string(), format!("{mode:04o} {owner}")))
        })
        .collect()
}

/// (file, content) for `node`.
pub fn node_files(
    spec: &Spec,
    node: &Node,
    secrets: &[(String, Secret)],
    ca: &Ca,
) -> Result<Vec<(NodeFile, String)>, users_acl::UsersAclError> {
    let replication = replication_secret(spec, ca);
    let auth = replication.as_ref().map(|password| ReplicationAuth {
        user: users_acl::REPLICATION_USER,
        password,
    });
    Ok(vec![
        (conf::CONF, conf::render(spec, node, auth)),
        (systemd::DROP_IN, systemd::render_drop_in()),
        (
            users_acl::USERS_ACL,
            users_acl::render(spec, secrets, replication.as_ref())?,
        ),
        (conf::CA_CERT, ca.cert_pem().to_string()),
    ])
}

/// Node name -> path -> SHA-256, for every node of the spec.
pub fn desired_hashes(
    spec: &Spec,
    secrets: &[(String, Secret)],
    ca: &Ca,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, users_acl::UsersAclError> {
    let mut out = BTreeMap::new();
    for node in &spec.nodes.nodes {
        let files = node_files(spec, node, secrets, ca)?;
        out.insert(
            node.name.clone(),
            files
                .iter()
                .map(|(f, c)| (f.path.to_string(), content_hash(c.as_bytes())))
                .collect(),
        );
    }
    Ok(out)
}
