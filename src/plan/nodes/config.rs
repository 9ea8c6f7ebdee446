//! Phase 6: the configuration and the service. A configuration change restarts a running
//! node; in a running cluster, one node at a time. Modes and owners changed out of band are set
//! back without a restart.

use super::super::builder::Builder;
use super::super::model::*;
use super::{NodeNow, Rewrites, Rolling};
use crate::redis::{conf, files, systemd, users_acl};

pub(super) fn config(
    b: &mut Builder<'_>,
    n: &NodeNow<'_>,
    roll: &mut Rolling,
    last: &mut Vec<String>,
) {
    let no_init = n.no_init;
    // A replication password rotation: `masterauth` changes (the hashes observed do not know
    // the new password yet when this plan makes it).
    let started = b.planned(super::replication::START) && n.facts.is_some();
    let new_password =
        n.running && (started && !n.conf_differs() || n.conf_has_previous_replication_password());
    let conf_differs = n.conf_differs() || started;
    let service_off = n
        .facts
        .is_none_or(|f| !(f.service_enabled || no_init) || !f.service_active);
    if !(conf_differs || service_off) {
        return;
    }
    let cfg_addr = format!("{}.config", n.addr);
    // Replicas added to (or removed from) the spec change the masters' configuration only by
    // the replication login: set live, no restart (a master without a replica yet has nobody
    // to hand its slots to).
    let live =
        n.running && conf_differs && (n.conf_differs_by_replication_login_only() || new_password);
    let restart = n.running && conf_differs && !live;
    let formed = roll.formed;
    let handover = roll.handover;
    let mut deps = last.clone();
    if restart
        && formed
        && let Some(p) = &roll.previous_config_restart
    {
        deps.push(p.clone());
    }
    let mut changes = Vec::new();
    if new_password {
        changes.push(Change::update(
            "masterauth",
            "the replication password being replaced",
            "the new one (CONFIG SET, no restart)",
        ));
    } else if live {
        let removing = b.spec.nodes.replicas_per_master == 0;
        changes.push(Change::update(
            "masteruser, masterauth",
            if removing { "set" } else { "not set" },
            if removing {
                "not set (CONFIG SET, no restart)"
            } else {
                "the replication login (CONFIG SET, no restart)"
            },
        ));
    } else if conf_differs {
        changes.push(Change::create(conf::CONF.path, "rendered from the spec"));
    }
    if service_off && no_init {
        changes.push(Change::update(
            "redis-server",
            "stopped",
            "running as user redis (no systemd: started by redisctl)",
        ));
    } else if service_off {
        changes.push(Change::update(
            systemd::SERVICE,
            "stopped",
            "enabled, running",
        ));
    }
    b.steps.push(
        Step::new(
            cfg_addr.clone(),
            if n.fresh() { Action::Create } else { Action::Update },
            Phase::Config,
            match (restart, formed, no_init) {
                _ if new_password => "replication password rotation: the node logs in to its master with the new password; written, and set live with CONFIG SET".into(),
                _ if live => "the configuration differs only by the replication login (replicas added to or removed from the spec): written, and set live with CONFIG SET".into(),
                (true, true, false) => format!("the configuration differs; the node restarts, one at a time, each waiting for a healthy cluster{handover}"),
                (true, true, true) => format!("the configuration differs; the node restarts (no systemd: SIGTERM, wait until Redis exits, start it again as user redis), one at a time, each waiting for a healthy cluster{handover}"),
                (true, false, false) => "the configuration differs; Redis restarts".into(),
                (true, false, true) => "the configuration differs; Redis restarts (no systemd: SIGTERM, wait until it exits, start it again as user redis)".into(),
                (false, _, false) => "Redis is not running as redis-server@cluster yet".into(),
                (false, _, true) => "Redis is not running; the host has no systemd, so redisctl starts redis-server as user redis".into(),
            },
        )
        .changes(changes)
        .depends_on(deps)
        .op(Op::Node(NodeOp::WriteConfig {
            node: n.node.name.clone(),
            restart,
            live,
        })),
    );
    if restart && formed {
        roll.previous_config_restart = Some(cfg_addr.clone());
    }
    *last = vec![cfg_addr];
}

/// Modes and owners changed out of band, on files no step of this plan rewrites (a rewrite
/// sets them): set back, with no restart.
pub(super) fn modes(
    b: &mut Builder<'_>,
    n: &NodeNow<'_>,
    rewrites: &Rewrites,
    last: &mut Vec<String>,
) {
    let Some(f) = n.facts else {
        return;
    };
    let rewritten = |path: &str| {
        if path == conf::CONF.path || path == systemd::DROP_IN.path {
            rewrites.conf
        } else if path == users_acl::USERS_ACL.path {
            rewrites.acl
        } else {
            rewrites.tls
        }
    };
    // The directories first (no step rewrites them; every write makes them root's again, and
    // so does this step); a symbolic link is a blocker (see `nodes::symlinks`), not a mode.
    let changes: Vec<Change> = files::MANAGED_DIRS
        .iter()
        .chain(
            files::MANAGED
                .iter()
                // Without systemd there is no drop-in.
                .filter(|m| !(rewritten(m.path) || n.no_init && m.path == systemd::DROP_IN.path)),
        )
        .filter_map(|m| {
            let have = f.modes.get(m.path)?;
            (*have != m.mode_owner() && have != files::SYMLINK)
                .then(|| Change::update(m.path, have, m.mode_owner()))
        })
        .collect();
    if changes.is_empty() {
        return;
    }
    let modes_addr = format!("{}.modes", n.addr);
    b.steps.push(
        Step::new(
            modes_addr.clone(),
            Action::Update,
            Phase::Config,
            "file modes or owners were changed out of band; set back, no restart",
        )
        .changes(changes)
        .depends_on(last.clone())
        .op(Op::Node(NodeOp::SetFileModes {
            node: n.node.name.clone(),
        })),
    );
    *last = vec![modes_addr];
}
