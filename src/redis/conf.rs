//! `/etc/redis/redis-cluster.conf`, the configuration of `redis-server@cluster`.
//!
//! Rendering is byte-stable (no timestamps, a fixed order): the planner compares the hash of
//! the rendered file with the hash observed on the node, and any difference means "rewrite and
//! restart this node". Paths follow Debian's `redis-server@.service` template unit (the same
//! in Ubuntu 24.04): it runs `/usr/bin/redis-server /etc/redis/redis-%i.conf --supervised
//! systemd --daemonize no` as user redis, with `PIDFile=/run/redis-%i/redis-server.pid`,
//! `RuntimeDirectory=redis-%i` and write access to /var/lib/redis and /var/log/redis only (see
//! [`super::systemd`] for the drop-in).

use crate::spec::{Node, Spec};

use super::NodeFile;
use super::systemd::INSTANCE;

/// Where the certificate, key and CA certificate live on a node. Not under /home: the unit
/// has `ProtectHome=yes`.
pub const TLS_DIR: &str = "/etc/redis/tls";
pub const DATA_DIR: &str = "/var/lib/redis";
pub const PID_FILE: &str = "/run/redis-cluster/redis-server.pid";
/// Under /var/log/redis, where Debian's logrotate rule (`/var/log/redis/redis-server*.log`)
/// rotates it.
pub const LOG_FILE: &str = "/var/log/redis/redis-server-cluster.log";
/// The RDB file name: the stock `redis-server` instance (stopped and disabled, but it may have
/// run once after the package install) writes `dump.rdb` in the same directory.
pub const RDB_FILE: &str = "dump-cluster.rdb";

/// The configuration file: `redis-%i.conf` for instance `cluster`.
pub const CONF: NodeFile = NodeFile {
    path: "/etc/redis/redis-cluster.conf",
    mode: 0o640,
    owner: "root",
    group: "redis",
};
/// The node's certificate (public).
pub const NODE_CERT: NodeFile = NodeFile {
    path: "/etc/redis/tls/redis.crt",
    mode: 0o644,
    owner: "root",
    group: "redis",
};
/// The node's private key: readable by root and the redis group only.
pub const NODE_KEY: NodeFile = NodeFile {
    path: "/etc/redis/tls/redis.key",
    mode: 0o640,
    owner: "root",
    group: "redis",
};
/// The cluster CA certificate (public; its key never leaves the operator).
pub const CA_CERT: NodeFile = NodeFile {
    path: "/etc/redis/tls/ca.crt",
    mode: 0o644,
    owner: "root",
    group: "redis",
};

/// How a replica authenticates to its master. Needed only with replicas: the `default` user
/// is off, so a replica must log in as a user allowed to replicate (see
/// [`super::users_acl::REPLICATION_RULES`]). Redis 7.0 has no other way than a password in
/// the configuration file (which is 0640 root:redis).
#[derive(Debug, Clone, Copy)]
pub struct ReplicationAuth<'a> {
    pub user: &'a str,
    pub password: &'a crate::spec::secrets::Secret,
}

/// The settings whose running values redisctl reads back (`CONFIG GET`, in the node's
/// observation) and puts back with `CONFIG SET` when they drifted at runtime: every one is
/// mutable in Redis 7.0 and changes what the node exposes or keeps.
pub const LIVE_KEYS: [&str; 14] = [
    "port",
    "tls-port",
    "bind",
    "protected-mode",
    "tls-auth-clients",
    "tls-replication",
    "tls-cluster",
    "tls-protocols",
    "appendonly",
    "maxmemory",
    "maxmemory-policy",
    "cluster-node-timeout",
    "cluster-require-full-coverage",
    "cluster-announce-ip",
];

/// What `CONFIG GET` answers for [`LIVE_KEYS`] on a node running the configuration [`render`]
/// makes (Redis's own spelling: `maxmemory` in bytes as `spec::instance_memory::bytes` reads
/// it, the policy `noeviction` when not set).
/// A `maxmemory` Redis would not parse is left out (the file check covers it).
pub fn live_values(spec: &Spec, node: &Node) -> Vec<(&'static str, String)> {
    let r = &spec.redis;
    let t = &spec.tls;
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let protocols: Vec<&str> = t.protocols.iter().map(|p| p.as_str()).collect();
    let mut v = vec![
        ("port", "0".to_string()),
        ("tls-port", r.port.to_string()),
        ("bind", format!("{} 127.0.0.1", node.private_ip)),
        ("protected-mode", "yes".into()),
        ("tls-auth-clients", t.auth_clients.as_str().to_string()),
        ("tls-replication", "yes".into()),
        ("tls-cluster", "yes".into()),
        ("tls-protocols", protocols.join(" ")),
        ("appendonly", yes_no(r.appendonly)),
    ];
    match &r.maxmemory {
        None => v.push(("maxmemory", "0".into())),
        Some(m) => {
            if let Some(bytes) = crate::spec::instance_memory::bytes(m) {
                v.push(("maxmemory", bytes.to_string()));
            }
        }
    }
    v.push((
        "maxmemory-policy",
        r.maxmemory_policy
            .clone()
            .unwrap_or_else(|| "noeviction".into()),
    ));
    v.push((
        "cluster-node-timeout",
        r.cluster_node_timeout_ms.to_string(),
    ));
    v.push((
        "cluster-require-full-coverage",
        yes_no(r.cluster_require_full_coverage),
    ));
    v.push(("cluster-announce-ip", node.private_ip.to_string()));
    v
}

/// Render the configuration of `node`. `replication` adds `masteruser` / `masterauth`.
pub fn render(spec: &Spec, node: &Node, replication: Option<ReplicationAuth<'_>>) -> String {
    let r = &spec.redis;
    let t = &spec.tls;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let ip = node.private_ip;
    let mut s = String::new();
    let mut line = |text: &str| {
        s.push_str(text);
        s.push('\n');
    };

    line(&format!(
        "# {}: Redis Cluster node {} of cluster {}.",
        CONF.path, node.name, spec.cluster.name
    ));
    line(
        "# Written by redisctl from the cluster spec; edits here are overwritten on the next apply.",
    );
    line(&format!(
        "# Started by systemd as redis-server@{INSTANCE} (Debian's redis-server@.service)."
    ));
    line("");
    line("# Network: TLS only, on the private address and loopback.");
    line(&format!("bind {ip} 127.0.0.1"));
    line("protected-mode yes");
    line("port 0");
    line(&format!("tls-port {}", r.port));
    line("");
    line("# TLS: the node certificate serves clients and the cluster bus (mutual TLS).");
    line(&format!("tls-cert-file {}", NODE_CERT.path));
    line(&format!("tls-key-file {}", NODE_KEY.path));
    line(&format!("tls-ca-cert-file {}", CA_CERT.path));
    line(&format!("tls-auth-clients {}", t.auth_clients.as_str()));
    line("tls-replication yes");
    line("tls-cluster yes");
    let protocols: Vec<&str> = t.protocols.iter().map(|p| p.as_str()).collect();
    line(&format!("tls-protocols \"{}\"", protocols.join(" ")));
    line("");
    line("# Cluster");
    line("cluster-enabled yes");
    line(&format!("cluster-config-file nodes-{}.conf", r.port));
    line(&format!(
        "cluster-node-timeout {}",
        r.cluster_node_timeout_ms
    ));
    line(&format!(
        "cluster-require-full-coverage {}",
        yes_no(r.cluster_require_full_coverage)
    ));
    line(&format!("cluster-announce-ip {ip}"));
    line("");
    line("# Replication: a master streams a full sync to a replica (diskless) at once rather than");
    line("# wait 5 s (Redis's default) for more replicas to ask: a new or re-synced replica is in");
    line("# sync sooner.");
    line("repl-diskless-sync-delay 0");
    line("");
    line(
        "# Users and passwords (SHA-256 hashes only) live in the ACL file, reloaded with ACL LOAD.",
    );
    line(&format!("aclfile {}", super::users_acl::USERS_ACL.path));
    if let Some(rep) = replication {
        line("# Replicas log in to their master as this user (the default user is off).");
        line(&format!("masteruser {}", rep.user));
        line(&format!("masterauth {}", quote(rep.password.expose())));
    }
    line("enable-protected-configs no");
    line("enable-debug-command no");
    line("enable-module-command no");
    line("");
    line("# Persistence");
    line(&format!("dir {DATA_DIR}"));
    line(&format!("dbfilename {RDB_FILE}"));
    line(&format!("appendonly {}", yes_no(r.appendonly)));
    if r.maxmemory.is_some() || r.maxmemory_policy.is_some() {
        line("");
        line("# Memory");
        if let Some(m) = &r.maxmemory {
            line(&format!("maxmemory {m}"));
        }
        if let Some(p) = &r.maxmemory_policy {
            line(&format!("maxmemory-policy {p}"));
        }
    }
    line("");
    line("# Process: run in the foreground under systemd (Type=notify).");
    line("daemonize no");
    line("supervised systemd");
    line(&format!("pidfile {PID_FILE}"));
    line(&format!("logfile {LOG_FILE}"));
    line("loglevel notice");
    s
}

/// A value as a Redis configuration string: double-quoted, with `\` and `"` escaped and
/// non-printable bytes as `\xHH` (what `sdssplitargs` reads back).
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::from("\"");
    for b in value.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::test_spec;
    use crate::spec::secrets::Secret;

    #[test]
    fn reference_node_matches_the_reviewed_snapshot() {
        let spec = test_spec::reference();
        let out = render(&spec, &spec.nodes.nodes[0], None);
        test_spec::assert_snapshot("redis-cluster.conf", &out);
        // Byte-stable: rendering twice gives the same bytes.
        assert_eq!(out, render(&spec, &spec.nodes.nodes[0], None));
    }

    /// What CONFIG GET should answer is what the rendered file says, in Redis's spelling.
    #[test]
    fn the_live_values_are_the_rendered_files() {
        let mut plain = test_spec::reference();
        let mut options = test_spec::reference();
        options.redis.maxmemory = Some("512mb".into());
        options.redis.maxmemory_policy = Some("allkeys-lru".into());
        options.redis.appendonly = false;
        options.tls.protocols = vec![crate::spec::TlsProtocol::V1_3];
        plain.redis.maxmemory = None;
        for spec in [&plain, &options] {
            let node = &spec.nodes.nodes[1];
            let text = render(spec, node, None);
            let file: std::collections::BTreeMap<&str, String> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once(' '))
                .map(|(k, v)| (k, v.trim_matches('"').to_string()))
                .collect();
            let live = live_values(spec, node);
            assert_eq!(
                live.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
                LIVE_KEYS,
                "every key read back has its value"
            );
            for (k, v) in live {
                let want = match (k, file.get(k)) {
                    ("maxmemory", Some(m)) => {
                        crate::spec::instance_memory::bytes(m).unwrap().to_string()
                    }
                    ("maxmemory", None) => "0".into(),
                    ("maxmemory-policy", None) => "noeviction".into(),
                    (_, Some(f)) => f.clone(),
                    (_, None) => panic!("{k} is not in the rendered file"),
                };
                assert_eq!(v, want, "{k}");
            }
        }
        let bytes = crate::spec::instance_memory::bytes;
        assert_eq!(bytes("512mb"), Some(536_870_912));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("100"), Some(100));
        assert_eq!(bytes("12 mb"), None);
        assert_eq!(bytes("mb"), None);
    }

    #[test]
    fn options_and_replication() {
        let mut spec = test_spec::reference();
        spec.redis.maxmemory = Some("512mb".into());
        spec.redis.maxmemory_policy = Some("allkeys-lru".into());
        spec.redis.appendonly = false;
        spec.redis.cluster_require_full_coverage = false;
        spec.tls.protocols = vec![crate::spec::TlsProtocol::V1_3];
        spec.tls.auth_clients = crate::spec::TlsAuthClients::Optional;
        let pw = Secret::new("re\"pl\\ica pw".into());
        let out = render(
            &spec,
            &spec.nodes.nodes[1],
            Some(ReplicationAuth {
                user: "replication",
                password: &pw,
            }),
        );
        for want in [
            "bind 10.0.2.10 127.0.0.1\n",
            "cluster-announce-ip 10.0.2.10\n",
            "maxmemory 512mb\nmaxmemory-policy allkeys-lru\n",
            "appendonly no\n",
            "cluster-require-full-coverage no\n",
            "tls-protocols \"TLSv1.3\"\n",
            "tls-auth-clients optional\n",
            "masteruser replication\nmasterauth \"re\\\"pl\\\\ica pw\"\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("x\u{e9}"), "\"x\\xc3\\xa9\"");
    }
}
