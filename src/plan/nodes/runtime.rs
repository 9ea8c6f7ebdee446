//! Phase 6: runtime drift. A holder of the admin user changes a running node without touching
//! a file (`CONFIG SET port 6380` opens a plaintext listener; `CONFIG SET protected-mode no`,
//! `appendonly no`, …): the files stay right, so only what Redis answers shows it. The settings
//! redisctl renders are read back with `CONFIG GET` in the node's observation and put back with
//! `CONFIG SET` (no restart: every one of `conf::LIVE_KEYS` is mutable in Redis 7.0). A socket
//! redis-server listens on that its settings do not explain is said as a warning.

use super::super::builder::Builder;
use super::super::model::*;
use super::NodeNow;
use crate::redis::conf;

/// The node's drifted settings, `(name, running value, the file's)`, and the sockets its
/// redis-server listens on beyond the TLS port and the bus port on its bound addresses.
pub(super) fn drift(
    b: &Builder<'_>,
    n: &NodeNow<'_>,
) -> (Vec<(&'static str, String, String)>, Vec<String>) {
    let Some(rt) = n.facts.and_then(|f| f.runtime.as_ref()) else {
        return (Vec::new(), Vec::new());
    };
    let settings = conf::live_values(b.spec, n.node)
        .into_iter()
        .filter_map(|(k, want)| {
            let have = rt.config.get(k)?;
            (*have != want).then(|| (k, have.clone(), want))
        })
        .collect();
    let port = b.spec.redis.port;
    let expected: Vec<String> = [n.node.private_ip.to_string(), "127.0.0.1".into()]
        .iter()
        .flat_map(|a| {
            [
                format!("{a}:{port}"),
                format!("{a}:{}", u32::from(port) + 10000),
            ]
        })
        .collect();
    let mut extra: Vec<String> = rt
        .listeners
        .iter()
        .flatten()
        .filter(|l| !expected.contains(l))
        .cloned()
        .collect();
    extra.sort();
    (settings, extra)
}

/// The step that puts drifted settings back, after the node's earlier steps (`last`). Only on
/// a running node whose configuration file stays (a rewrite restarts Redis onto the file).
pub(super) fn runtime(b: &mut Builder<'_>, n: &NodeNow<'_>, last: &mut Vec<String>) {
    if !n.running || n.conf_differs() {
        return;
    }
    let (settings, extra) = drift(b, n);
    // A listener the drifted settings explain (a plaintext `port`, another `tls-port` or
    // `bind`) closes with them.
    let explained = settings
        .iter()
        .any(|(k, _, _)| matches!(*k, "port" | "tls-port" | "bind"));
    if !extra.is_empty() && !explained {
        b.note(
            NoteLevel::Warning,
            &format!("{}.runtime", n.addr),
            format!(
                "redis-server listens on {} besides its TLS and bus ports, and its settings do not explain it (a module, or a socket opened another way): restart it on the node (`sudo systemctl restart {}`) and find out who holds the admin user",
                extra.join(", "),
                crate::redis::systemd::SERVICE
            ),
        );
    }
    if settings.is_empty() {
        return;
    }
    let address = format!("{}.runtime", n.addr);
    let mut changes: Vec<Change> = settings
        .iter()
        .map(|(k, have, want)| {
            Change::update(k, have.clone(), format!("{want} (CONFIG SET, no restart)"))
        })
        .collect();
    if !extra.is_empty() {
        changes.push(Change::update(
            "listening on",
            extra.join(", "),
            "closed with the settings put back",
        ));
    }
    b.steps.push(
        Step::new(
            address.clone(),
            Action::Update,
            Phase::Config,
            "the running Redis differs from its configuration file (changed at runtime, with CONFIG SET): put back live",
        )
        .changes(changes)
        .depends_on(last.clone())
        .op(Op::Node(NodeOp::SetRuntime {
            node: n.node.name.clone(),
            settings: settings
                .into_iter()
                .map(|(k, _, want)| (k.to_string(), want))
                .collect(),
        })),
    );
    *last = vec![address];
}
