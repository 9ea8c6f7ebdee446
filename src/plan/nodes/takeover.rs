//! Phase 6: a Redis Cluster node started by hand (the reference procedure's `sudo redis-server
//! /etc/redis/redis-cluster.conf &`) taken over with its data. The hand-started server keeps its
//! data and its cluster state file in redisctl's data directory; taking it over is stopping it
//! (SIGTERM: Redis saves and writes its state file as it exits), making its files the redis
//! user's (a server run as root leaves them root's), and starting redisctl's unit on them: the
//! node keeps its id, its slots and its keys.
//!
//! Every node's hand-started server stops before any node starts under redisctl: the nodes
//! move to redisctl's CA together (a node on the new certificates and one on the hand-made ones
//! refuse each other on the cluster bus, and a replica cut off from its master would start an
//! election). The cluster is down from the first stop until the nodes have met again.

use super::super::builder::Builder;
use super::super::model::*;
use crate::observed::{ForeignRedis, InitSystem, NodeFacts};
use crate::redis::{conf, systemd};

/// What taking over a node means, as observed.
pub(super) struct TakeOver {
    /// The hand-started redis-server, when one runs.
    pub process: Option<ForeignRedis>,
    /// A file of the data directory that is not the redis user's.
    pub foreign_owner: Option<String>,
}

/// The node's data is to be taken over: a single redis-server started outside redisctl's unit
/// keeps its data in redisctl's data directory, as a member of a cluster (its state file is
/// there and names the node by its private IP); or no Redis runs and the data directory holds
/// files the redis user does not own. `None` for anything else (another data directory, several
/// servers, no cluster state: `nodes::foreign_redis` says why that is a blocker).
pub(super) fn take_over(f: &NodeFacts, private_ip: &str) -> Option<TakeOver> {
    if f.init != InitSystem::Systemd || f.service_active {
        return None;
    }
    let cluster_member = f.state_file_view.as_ref().is_some_and(|v| {
        v.members
            .iter()
            .any(|m| m.myself && (m.ip == private_ip || m.ip.is_empty()))
    });
    match f.foreign_redis.as_slice() {
        [p] if p.dir == conf::DATA_DIR && cluster_member => Some(TakeOver {
            process: Some(p.clone()),
            foreign_owner: f.data_not_redis.clone(),
        }),
        [] => f.data_not_redis.as_ref().map(|o| TakeOver {
            process: None,
            foreign_owner: Some(o.clone()),
        }),
        _ => None,
    }
}

/// The node's take-over step, after its earlier steps of this plan (`last`).
pub(super) fn step(
    b: &mut Builder<'_>,
    addr: &str,
    t: &TakeOver,
    node: &str,
    last: &mut Vec<String>,
) {
    let mut changes = Vec::new();
    if let Some(p) = &t.process {
        changes.push(Change::update(
            "redis-server",
            format!(
                "pid {} as {}, started outside {} (by hand)",
                p.pid,
                if p.user.is_empty() { "?" } else { &p.user },
                systemd::SERVICE
            ),
            "stopped with SIGTERM (Redis saves its data and cluster state as it exits), before any node starts under redisctl",
        ));
    }
    changes.push(Change::update(
        &format!("{} (owners)", conf::DATA_DIR),
        match &t.foreign_owner {
            Some(path) => format!("not the redis user's: {path} (the first found)"),
            None => "as the hand-started server leaves them".to_string(),
        },
        "redis:redis; dump.rdb renamed to the name redisctl's configuration reads",
    ));
    let address = format!("{addr}.takeover");
    b.steps.push(
        Step::new(
            address.clone(),
            Action::Update,
            Phase::Config,
            if t.process.is_some() {
                "a Redis Cluster node started by hand holds the node's data: taken over with its data (node id, slots, keys), then started under systemd as the redis user"
            } else {
                "the node's data directory holds files the redis user does not own (left by a Redis run as root): made the redis user's before Redis starts under systemd"
            },
        )
        .changes(changes)
        .depends_on(last.clone())
        .op(Op::Node(NodeOp::TakeOverRedis {
            node: node.to_string(),
            pid: t.process.as_ref().map(|p| p.pid),
        })),
    );
    *last = vec![address];
}

/// Said once on a plan that takes over hand-started nodes: what the applications see.
pub(super) fn note(b: &mut Builder<'_>, takeovers: &[String]) {
    if takeovers.is_empty() {
        return;
    }
    b.note(
        NoteLevel::Warning,
        "cluster",
        format!(
            "{} taken over from a Redis started by hand: every hand-started server stops before any node starts under redisctl (the nodes move to redisctl's CA together), so the cluster is down from the first stop until the nodes have met again, usually seconds. Clients then need redisctl's CA (`redisctl output`) and the spec's users. The hand build's TLS files (and a CA key copied to the nodes, as the reference procedure does) are left where they are, trusted by nothing after this apply: remove them",
            if takeovers.len() == 1 {
                "1 node is".to_string()
            } else {
                format!("{} nodes are", takeovers.len())
            }
        ),
    );
}
