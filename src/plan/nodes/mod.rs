//! Phases 3-7, inside the nodes: install, TLS, ACL, config + service, cluster create. The
//! observed facts of each node (files' hashes, certificate, services, the cluster's view) are
//! compared with what the spec and the local secrets say they must be (as hashes, computed
//! before planning). Nodes that are created or replaced in this plan get every step. A node that
//! cannot be reached is a note; its steps wait for a plan that can see it.
//!
//! Changes to a running cluster are careful: an ACL change is written and set live (ACL SETUSER)
//! (no restart); new certificates or CA bundles are reloaded by Redis (CONFIG SET of its tls-*
//! paths, no restart), one node at a time; a config change restarts one node at a time, each
//! waiting for the cluster to be healthy before the next. A CA rotation's stages (tls.rs) are
//! the operator's to set in the spec.
//!
//! One file per phase. Each per-node phase appends at most one step, which depends on the
//! node's previous step (`last`) and becomes it: a node's steps form a chain.

mod acl;
pub(super) mod affinity;
mod cluster;
mod config;
mod install;
mod kernel;
mod replication;
mod runtime;
pub(super) mod slots;
mod ssh_key;
mod takeover;
mod tls;
pub(super) mod topology;

use std::collections::BTreeMap;

use super::builder::Builder;
use super::model::*;
use crate::observed::{InitSystem, NodeFacts, NodeObservation, tags};
use crate::redis::users_acl::USERS_ACL;
use crate::redis::{conf, files, systemd};
use crate::spec::types;

/// A path of redisctl's on the node that is a symbolic link stops everything: the node layer
/// never follows one (it could make root chown, chmod or overwrite any file of the node), and
/// replacing it silently would erase the evidence of whoever planted it.
fn symlinks(b: &mut Builder<'_>, addr: &str, f: &NodeFacts) {
    let links: Vec<&str> = f
        .modes
        .iter()
        .filter(|(_, v)| *v == files::SYMLINK)
        .map(|(p, _)| p.as_str())
        .collect();
    if links.is_empty() {
        return;
    }
    b.note(
        NoteLevel::Blocker,
        addr,
        format!(
            "{} on the node {} a symbolic link where redisctl keeps its own file or directory: it is neither followed nor replaced. Someone with root's rights, or the redis user's while /etc/redis was writable by it (a Redis taken over can write files), planted it: look at where it points, remove it, then plan again",
            links.join(", "),
            if links.len() == 1 { "is" } else { "are" }
        ),
    );
}

/// A running node that refuses the operator's password (and, during a rotation, the previous
/// one too) stops everything: redisctl cannot log in to it, and the cluster view it did not
/// get would make the plan guess.
fn operator_refused(b: &mut Builder<'_>, addr: &str, f: &NodeFacts) {
    if f.operator_auth != crate::observed::OperatorAuth::Refused {
        return;
    }
    let user = b.spec.operator_user();
    let rotating = user.previous_password.is_some();
    b.note(
        NoteLevel::Blocker,
        addr,
        format!(
            "Redis on the node refuses the password of the operator user {} (WRONGPASS){}: its ACL file holds a password the spec does not name. A password of a running cluster changes by a rotation: give password_env/password_file the new password and previous_password_env/previous_password_file the one the nodes hold now, apply, then remove the previous one once every client moved (docs/runbook.md, \"Rotate a password\")",
            user.name,
            if rotating { ", and the previous password too" } else { "" }
        ),
    );
}

/// A redis-server that redisctl's unit did not start (one started by hand from a shell, as
/// the reference procedure does) holds the node's port and data: redisctl would fail to start
/// its own next to it, or form a second cluster beside it. Nothing is planned past it.
fn foreign_redis(b: &mut Builder<'_>, addr: &str, f: &NodeFacts, private_ip: &str) {
    if f.foreign_redis.is_empty() || takeover::take_over(f, private_ip).is_some() {
        return;
    }
    let list: Vec<String> = f
        .foreign_redis
        .iter()
        .map(|r| {
            format!(
                "pid {} as {}{}",
                r.pid,
                if r.user.is_empty() { "?" } else { &r.user },
                if r.dir.is_empty() {
                    String::new()
                } else {
                    format!(", data in {}", r.dir)
                }
            )
        })
        .collect();
    b.note(
        NoteLevel::Blocker,
        addr,
        format!(
            "a redis-server runs on the node outside redisctl's unit {} ({}): started by hand or by another tool, it holds the port and the data redisctl would manage. redisctl takes over, with its data, one redis-server that keeps its data in {} as a member of a Redis Cluster (its nodes-{}.conf there naming this node's private IP); not this one. For this node to be redisctl's, stop that process and move the cluster files out of its data directory (nodes-*.conf, appendonlydir, dump.rdb: this node then starts empty), then plan again",
            crate::redis::systemd::SERVICE,
            list.join("; "),
            conf::DATA_DIR,
            b.spec.redis.port
        ),
    );
}

pub(super) fn plan_inside_nodes(b: &mut Builder<'_>) {
    let spec = b.spec;
    tls::ensure_ca(b);
    tls::rotation(b);
    tls::warn_ca_expiry(b);
    tls::warn_client_certs(b);
    replication::start(b);
    let cluster = cluster::ClusterNow::observe(b.observed, spec.nodes.nodes.len());
    if cluster.formed || cluster.partly {
        tls::refuse_foreign_ca(b);
    }

    let mut roll = Rolling {
        formed: cluster.formed,
        // With replicas, a master hands its slots over before it restarts
        // (node::restart_and_wait).
        handover: if spec.nodes.replicas_per_master > 0 {
            " (a master first hands its slots to a replica: CLUSTER FAILOVER)"
        } else {
            ""
        },
        previous_tls_reload: None,
        previous_package_restart: None,
        previous_config_restart: None,
    };
    let mut service_steps = Vec::new();
    let mut waiting = Vec::new();
    // Two passes: every node's steps up to phase 6's take-over first, so that every node's
    // configuration (which starts Redis) can wait for all the take-overs.
    let mut chains = Vec::new();
    for node in &spec.nodes.nodes {
        let Some(n) = NodeNow::observe(b, node) else {
            waiting.push(format!("node.{}", node.name));
            continue;
        };
        let mut last = if n.fresh() && b.planned(&n.addr) {
            vec![n.addr.clone()]
        } else {
            vec![]
        };
        install::install(b, &n, &mut last);
        install::package(b, &n, &mut roll, &mut last);
        install::os_updates(b, &n, &mut roll, &mut last);
        let tls = tls::tls(b, &n, &mut roll, &mut last);
        let acl = acl::acl(b, &n, &mut last);
        kernel::kernel(b, &n, &mut last);
        if let Some(t) = n
            .facts
            .and_then(|f| takeover::take_over(f, &n.node.private_ip.to_string()))
        {
            takeover::step(b, &n.addr, &t, &n.node.name, &mut last);
        }
        chains.push((n, last, tls, acl));
    }
    // Nodes started by hand: every one is stopped before any starts under redisctl.
    let takeovers: Vec<String> = b
        .steps
        .iter()
        .filter(|s| matches!(s.ops.as_slice(), [Op::Node(NodeOp::TakeOverRedis { .. })]))
        .map(|s| s.address.clone())
        .collect();
    for (n, mut last, tls, acl) in chains {
        if n.facts.is_some_and(|f| !f.service_active) {
            // (A node's start waits for every hand-started server to have stopped.)
            for a in &takeovers {
                if !last.contains(a) {
                    last.push(a.clone());
                }
            }
        }
        config::config(b, &n, &mut roll, &mut last);
        runtime::runtime(b, &n, &mut last);
        let rewrites = Rewrites {
            tls,
            acl,
            conf: n.conf_differs(),
        };
        config::modes(b, &n, &rewrites, &mut last);
        service_steps.extend(last.into_iter().filter(|a| a.starts_with(&n.addr)));
    }

    takeover::note(b, &takeovers);
    tls::end_rotation(b, &waiting);
    replication::end(b, &waiting);
    ssh_key::ssh_key(b, &waiting);
    refuse_acl_change_while_leaving(b);
    note_rotations(b);
    cluster::cluster(b, &cluster, &waiting, service_steps);
    topology::note_leaving_left(b);
}

/// A password rotation in progress is said on every plan (its second stage is the operator's
/// to start): both passwords work until the previous one leaves the spec.
fn note_rotations(b: &mut Builder<'_>) {
    let spec = b.spec;
    for u in spec.rotating_users() {
        b.note(
            NoteLevel::Info,
            &format!("user.{}", u.name),
            format!(
                "password rotation in progress: the nodes accept the new password and the previous one; once every client of {} uses the new one, remove previous_password_env/previous_password_file from the spec and apply: the previous password is then refused",
                u.name
            ),
        );
    }
}

/// A running node's ACL file changes while members of the cluster leave it: refused. The
/// leaving nodes keep the users they have (they are not the spec's nodes, nothing writes their
/// files), and taking them out (slots moved off them, CLUSTER FORGET, CLUSTER RESET) logs in to
/// them with the admin and operator users: as soon as phase 5 gave the others new passwords,
/// phase 7 would be refused there, half-way through a scale-in.
fn refuse_acl_change_while_leaving(b: &mut Builder<'_>) {
    if b.leaving.is_empty() {
        return;
    }
    // A file that differs only by the replication user (replicas added or removed with the
    // scale-in) changes no login redisctl or a client uses.
    let only_replication = |node: &str| {
        let have = match b.observed.nodes.get(node) {
            Some(NodeObservation::Reached(f)) => f.files.get(USERS_ACL.path).cloned().flatten(),
            _ => None,
        };
        have.is_some()
            && have.as_ref()
                == b.observed
                    .local
                    .desired_files
                    .get(node)
                    .and_then(|d| d.get(files::ACL_OTHER_REPLICATION))
    };
    let changed: Vec<String> = b
        .steps
        .iter()
        .filter_map(|s| match s.ops.as_slice() {
            [Op::Node(NodeOp::WriteAcl { node, reload: true })]
                if s.phase == Phase::Acl && !only_replication(node) =>
            {
                Some(s.address.clone())
            }
            _ => None,
        })
        .collect();
    if changed.is_empty() {
        return;
    }
    let leaving: Vec<String> = b.leaving.iter().map(|l| l.name.clone()).collect();
    b.note(
        NoteLevel::Blocker,
        &changed[0],
        format!(
            "the ACL users change ({}) while {} leave the cluster: the leaving nodes keep the users they have, and taking them out logs in to them as admin and operator. Apply one change at a time: first the scale-in with the passwords and users as they are now, then the ACL change",
            changed.join(", "),
            leaving.join(", ")
        ),
    );
}

/// What rolling changes share across nodes. Each certificate reload and each restart waits
/// for the previous one of its phase (phases run one after another, so a chain never crosses
/// phases: all certificate reloads are done before the first configuration restart starts).
struct Rolling {
    /// A cluster runs: a restart is one of a roll.
    formed: bool,
    /// Appended to a restart's reason.
    handover: &'static str,
    /// The last TLS step that reloads a running node.
    previous_tls_reload: Option<String>,
    /// The last package step that restarts a running node.
    previous_package_restart: Option<String>,
    previous_config_restart: Option<String>,
}

/// Which of a node's files a step of this plan rewrites (a rewrite sets modes and owners too).
struct Rewrites {
    tls: bool,
    acl: bool,
    conf: bool,
}

/// One node as its phases see it: reached (`facts`), or fresh: created or replaced by this
/// plan, or not yet running (everything is to do).
struct NodeNow<'a> {
    node: &'a types::Node,
    /// `node.NAME`, the prefix of every step address of this node.
    addr: String,
    facts: Option<&'a NodeFacts>,
    /// The hashes of the files the node must have, by path.
    desired: Option<&'a BTreeMap<String, String>>,
    running: bool,
    /// Without an init system redisctl runs Redis itself (node::noinit): nothing to enable,
    /// no systemd drop-in, no stock unit. A node not reached yet counts as systemd.
    no_init: bool,
}

impl<'a> NodeNow<'a> {
    /// The node, or `None` when nothing can be planned inside it: stopped (the AWS layer starts
    /// it) or unreachable. First contact with a reached node pins its host key.
    fn observe(b: &mut Builder<'a>, node: &'a types::Node) -> Option<Self> {
        let obs = b.observed;
        let addr = format!("node.{}", node.name);
        let instance_step = b
            .steps
            .iter()
            .find(|s| s.address == addr)
            .map(|s| (s.action, s.ops.clone()));
        let instance = obs.instances.iter().find(|i| {
            i.tags.get(tags::NODE) == Some(&node.name)
                && i.tags.get(tags::ROLE).map(String::as_str) == Some("node")
        });
        let facts = match (&instance_step, instance) {
            (Some((Action::Create | Action::Replace, _)), _) | (_, None) => None,
            (Some((_, ops)), Some(_))
                if ops
                    .iter()
                    .any(|o| matches!(o, Op::Ec2(Ec2Op::StartInstance { .. }))) =>
            {
                b.note(
                    NoteLevel::Info,
                    &addr,
                    "the node is stopped: apply starts it; Redis comes back (systemd starts it; on a host without systemd, apply does) and rejoins the cluster".into(),
                );
                return None;
            }
            // (Other states have their note at the instance: plan/instances.rs.)
            (_, Some(i)) if i.state == "pending" => {
                b.note(
                    NoteLevel::Warning,
                    &addr,
                    format!(
                        "instance {} is pending: nothing is planned inside the node until it runs (apply waits for it before it plans); plan again once it is running",
                        i.id
                    ),
                );
                return None;
            }
            (_, Some(i)) if i.state != "running" => return None,
            (_, Some(i)) => match obs.nodes.get(&node.name) {
                Some(NodeObservation::Reached(f)) => {
                    symlinks(b, &addr, f);
                    operator_refused(b, &addr, f);
                    foreign_redis(b, &addr, f, &node.private_ip.to_string());
                    if f.first_contact {
                        b.steps.push(
                            Step::new(
                                format!("{addr}.host_key"),
                                Action::Create,
                                Phase::Install,
                                "first contact: pin the host key this plan saw (locally and as an instance tag)",
                            )
                            .changes(vec![Change::create("fingerprint", &f.host_key_fingerprint)])
                            .op(Op::Node(NodeOp::PinHostKey {
                                node: node.name.clone(),
                                instance: i.id.clone(),
                                host_key: f.host_key.clone(),
                            })),
                        );
                    }
                    Some(f.as_ref())
                }
                Some(NodeObservation::Unreachable {
                    reason,
                    host_key_changed: true,
                }) => {
                    // Never talk past a changed host key: someone may be in the middle.
                    b.note(
                        NoteLevel::Blocker,
                        &addr,
                        format!(
                            "{reason}. Nothing is applied until this is resolved (docs/runbook.md, \"an unreachable node\")"
                        ),
                    );
                    return None;
                }
                Some(NodeObservation::Unreachable { reason, .. }) => {
                    b.note(
                        NoteLevel::Warning,
                        &addr,
                        format!(
                            "running but unreachable over SSH ({reason}); nothing is planned inside it. Check that security_group.ssh_cidrs covers this machine and that the node is healthy, then plan again"
                        ),
                    );
                    return None;
                }
                None => return None,
            },
        };
        Some(NodeNow {
            node,
            addr,
            facts,
            desired: obs.local.desired_files.get(&node.name),
            running: facts.is_some_and(|f| f.service_active),
            no_init: facts.is_some_and(|f| f.init == InitSystem::None),
        })
    }

    fn fresh(&self) -> bool {
        self.facts.is_none()
    }

    /// The node's file at `path` is missing or not the one the spec makes (always, for a fresh
    /// node).
    fn differs(&self, path: &str) -> bool {
        match self.facts {
            None => true,
            Some(f) => {
                let have = f.files.get(path).cloned().flatten();
                have.is_none() || self.desired.and_then(|d| d.get(path)) != have.as_ref()
            }
        }
    }

    /// The node's configuration differs from the spec's only by the replication login (it is
    /// the one rendered with the other replication setting), and its drop-in is right: what
    /// CONFIG SET can change on the running node.
    fn conf_differs_by_replication_login_only(&self) -> bool {
        self.conf_is(files::CONF_OTHER_REPLICATION)
    }

    /// During a replication password rotation, the node's configuration is the one with the
    /// password being replaced (only `masterauth` differs: CONFIG SET changes it live).
    fn conf_has_previous_replication_password(&self) -> bool {
        self.conf_is(files::CONF_PREVIOUS_REPLICATION_PASSWORD)
    }

    /// The node's configuration is the variant the desired hashes hold under `key` (one that
    /// differs from the spec's only by what CONFIG SET changes), and its drop-in is right.
    fn conf_is(&self, key: &str) -> bool {
        let Some(f) = self.facts else {
            return false;
        };
        let have = f.files.get(conf::CONF.path).cloned().flatten();
        have.is_some()
            && self.desired.and_then(|d| d.get(key)) == have.as_ref()
            && (self.no_init || !self.differs(systemd::DROP_IN.path))
    }

    /// The configuration (and, under systemd, the drop-in) is to be rewritten.
    fn conf_differs(&self) -> bool {
        self.differs(conf::CONF.path) || (!self.no_init && self.differs(systemd::DROP_IN.path))
    }
}
