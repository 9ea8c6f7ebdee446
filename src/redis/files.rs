//! The files of a node whose content is fully determined by the spec, the local secrets and
//! the CA: rendered once here, written by the executor, and hashed for the planner.

use std::collections::BTreeMap;

use super::conf::{self, ReplicationAuth};
use super::{NodeFile, content_hash, systemd, users_acl};
use crate::pki::Authority;
use crate::spec::secrets::Secret;
use crate::spec::{Node, Spec};

/// The replication user's password when the spec has replicas
/// ([`Authority::replication_secret`]: derived from the CA key, or kept in the state directory
/// once a CA rotation ended).
pub fn replication_secret(spec: &Spec, ca: &Authority) -> Option<Secret> {
    (spec.nodes.replicas_per_master > 0).then(|| ca.replication_login())
}

/// The passwords the replication user accepts when the spec has replicas (none without): the
/// login, and the one it replaces while a replication password rotation is under way.
fn replication_accepted(spec: &Spec, ca: &Authority) -> Vec<Secret> {
    if spec.nodes.replicas_per_master > 0 {
        ca.replication_accepted()
    } else {
        Vec::new()
    }
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

/// The directories that hold them, which only root may write (setgid, as Debian makes them:
/// what is created there belongs to group redis). Debian makes `/etc/redis` 2770
/// redis:redis (so that `CONFIG REWRITE` works) and sets it back at every upgrade of
/// redis-tools unless a `dpkg-statoverride` says otherwise: a Redis process someone took over
/// (`CONFIG SET dir` and a save write files as the redis user) could then plant a symbolic
/// link where root later writes, chowns or chmods, and make any file of the node readable. The
/// systemd drop-in makes the directory read-only to Redis; a host without systemd has only
/// these modes.
pub const MANAGED_DIRS: [NodeFile; 2] = [
    NodeFile {
        path: "/etc/redis",
        mode: 0o2750,
        owner: "root",
        group: "redis",
    },
    NodeFile {
        path: conf::TLS_DIR,
        mode: 0o2750,
        owner: "root",
        group: "redis",
    },
];

/// What [`parse_modes`] reports for a path that is a symbolic link: redisctl never follows one
/// of its paths, and the planner stops at it.
pub const SYMLINK: &str = "symbolic link";

/// Shell lines printing `<octal mode> <owner>:<group> <path>` for each directory of
/// [`MANAGED_DIRS`] and file of [`MANAGED`] that exists, or `link <path>` for one that is a
/// symbolic link (never followed: `find` without `-L`). Node observation and `verify` both read
/// them with [`parse_modes`].
pub fn stat_script() -> String {
    // One `find` for every path (a process per path costs milliseconds each on a busy node):
    // `-maxdepth 0` looks at the start points only, and without `-L` a link is never followed.
    let paths: Vec<String> = MANAGED_DIRS
        .iter()
        .chain(MANAGED.iter())
        .map(|f| crate::ssh::sh_quote(f.path))
        .collect();
    format!(
        "find {} -maxdepth 0 \\( -type l -printf 'link %p\\n' \\) -o -printf '%m %u:%g %p\\n' 2>/dev/null || true\n",
        paths.join(" ")
    )
}

/// Path -> `0640 root:redis` (or [`SYMLINK`]) for each path of [`MANAGED_DIRS`] and [`MANAGED`]
/// that [`stat_script`] listed in `text` (other lines are ignored).
pub fn parse_modes(text: &str) -> BTreeMap<String, String> {
    let managed = |path: &str| {
        MANAGED_DIRS
            .iter()
            .chain(MANAGED.iter())
            .any(|f| f.path == path)
    };
    text.lines()
        .filter_map(|l| {
            let (mode, rest) = l.trim().split_once(' ')?;
            if mode == "link" {
                return managed(rest).then(|| (rest.to_string(), SYMLINK.to_string()));
            }
            let (owner, path) = rest.split_once(' ')?;
            let mode = u32::from_str_radix(mode, 8).ok()?;
            managed(path).then(|| (path.to_string(), format!("{mode:04o} {owner}")))
        })
        .collect()
}

/// Root's shell lines (under `set -e`) that make the directories of [`MANAGED_DIRS`] root's
/// again, before anything is written, chowned or chmodded in them: a path that is a symbolic
/// link is refused, never followed; the directories get their modes (and `/etc/redis` a
/// `dpkg-statoverride`, so that an upgrade of the package keeps them); then no one but root
/// can plant anything there, and a file of [`MANAGED`] that is already a link is refused.
pub fn secure_script() -> String {
    let refuse_link = |path: &str| {
        let q = crate::ssh::sh_quote(path);
        format!(
            "if [ -L {q} ]; then echo \"{path} is a symbolic link (to $(readlink {q})): redisctl does not follow it. Someone with root's or the redis user's rights planted it; look at it, remove it, then run redisctl again\" >&2; exit 1; fi\n"
        )
    };
    let mut s = String::new();
    for d in &MANAGED_DIRS {
        s.push_str(&refuse_link(d.path));
        s.push_str(&format!(
            "install -d -m {:04o} -o {} -g {} {}\n",
            d.mode,
            d.owner,
            d.group,
            crate::ssh::sh_quote(d.path)
        ));
    }
    let etc = &MANAGED_DIRS[0];
    let entry = format!("{} {} {:o} {}", etc.owner, etc.group, etc.mode, etc.path);
    s.push_str(&format!(
        "if command -v dpkg-statoverride >/dev/null && [ \"$(dpkg-statoverride --list {p})\" != '{entry}' ]; then\n  dpkg-statoverride --remove {p} >/dev/null 2>&1 || true\n  dpkg-statoverride --add {} {} {:04o} {p}\nfi\n",
        etc.owner,
        etc.group,
        etc.mode,
        p = etc.path,
    ));
    for f in &MANAGED {
        s.push_str(&refuse_link(f.path));
    }
    s
}

/// (file, content) for `node`.
pub fn node_files(
    spec: &Spec,
    node: &Node,
    secrets: &[(String, Secret)],
    ca: &Authority,
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
            users_acl::render(spec, secrets, &replication_accepted(spec, ca))?,
        ),
        (conf::CA_CERT, ca.node_bundle()),
        (super::kernel::SYSCTL, super::kernel::render_sysctl()),
        (super::kernel::TMPFILES, super::kernel::render_tmpfiles()),
    ])
}

/// Not a file: the key, among a node's desired hashes, of the configuration as it is with the
/// other replication setting (the replication login present when the spec has no replicas,
/// absent when it has): a node holding that one differs only by `masteruser`/`masterauth`,
/// which CONFIG SET changes without a restart.
pub const CONF_OTHER_REPLICATION: &str = "redis-cluster.conf with the other replication login";

/// The configuration of `node` with the replication login the spec does not ask for.
fn conf_other_replication(spec: &Spec, node: &Node, ca: &Authority) -> String {
    let secret = ca.replication_login();
    let auth = (spec.nodes.replicas_per_master == 0).then_some(ReplicationAuth {
        user: users_acl::REPLICATION_USER,
        password: &secret,
    });
    conf::render(spec, node, auth)
}

/// Not a file: the key, among a node's desired hashes, of the ACL file as it is with the other
/// replication setting (the replication user present when the spec has no replicas, absent
/// when it has): a node holding that one differs only by that user, which no client and no
/// redisctl operation logs in as.
pub const ACL_OTHER_REPLICATION: &str = "users.acl with the other replication user";

/// Not a file: the key, among a node's desired hashes during a replication password rotation,
/// of the configuration with the password being replaced: a node holding that one differs only
/// by `masterauth`, which CONFIG SET changes without a restart.
pub const CONF_PREVIOUS_REPLICATION_PASSWORD: &str =
    "redis-cluster.conf with the replication password being replaced";

/// Node name -> path -> SHA-256, for every node of the spec (and, under
/// [`CONF_OTHER_REPLICATION`] and [`ACL_OTHER_REPLICATION`], the configuration's and the ACL
/// file's hashes with the other replication setting).
pub fn desired_hashes(
    spec: &Spec,
    secrets: &[(String, Secret)],
    ca: &Authority,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, users_acl::UsersAclError> {
    let mut out = BTreeMap::new();
    let other = if spec.nodes.replicas_per_master > 0 {
        Vec::new()
    } else {
        ca.replication_accepted()
    };
    let acl_other_replication = content_hash(users_acl::render(spec, secrets, &other)?.as_bytes());
    // During a replication password rotation, the configuration with the password it replaces.
    let previous = (spec.nodes.replicas_per_master > 0 && ca.replication_rotating())
        .then(|| ca.replication_secret());
    for node in &spec.nodes.nodes {
        let files = node_files(spec, node, secrets, ca)?;
        let mut hashes: BTreeMap<String, String> = files
            .iter()
            .map(|(f, c)| (f.path.to_string(), content_hash(c.as_bytes())))
            .collect();
        hashes.insert(
            CONF_OTHER_REPLICATION.to_string(),
            content_hash(conf_other_replication(spec, node, ca).as_bytes()),
        );
        hashes.insert(
            ACL_OTHER_REPLICATION.to_string(),
            acl_other_replication.clone(),
        );
        if let Some(password) = &previous {
            let auth = ReplicationAuth {
                user: users_acl::REPLICATION_USER,
                password,
            };
            hashes.insert(
                CONF_PREVIOUS_REPLICATION_PASSWORD.to_string(),
                content_hash(conf::render(spec, node, Some(auth)).as_bytes()),
            );
        }
        out.insert(node.name.clone(), hashes);
    }
    Ok(out)
}
