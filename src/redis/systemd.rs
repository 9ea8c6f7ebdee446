//! systemd: the node runs as `redis-server@cluster`, an instance of the template unit that
//! Debian's and Ubuntu's redis-server package ships (`/lib/systemd/system/redis-server@.service`,
//! redis-server 7.0.15). redisctl adds one drop-in to it.
//!
//! What the stock template gives (and why it is kept): `Type=notify`, `User=redis`,
//! `ProtectSystem=strict`, `ProtectHome=yes` (hence nothing under /home), `PrivateUsers=yes`
//! (the key is 0640 root:redis, readable through the service's own group), writable
//! /var/lib/redis, /var/log/redis and /run/redis-%i, `Restart=always`.
//!
//! What the drop-in changes, and why:
//! - **/etc/redis read-only for the server.** The template makes /etc/redis writable
//!   (`ReadWriteDirectories=-/etc/redis`, "redis-server can write to its own config file when
//!   in cluster mode") and the package makes the directory redis:redis 2770. redisctl keeps
//!   the cluster state file in /var/lib/redis (`cluster-config-file` is relative to `dir`),
//!   reloads ACLs with `ACL LOAD` (never `ACL SAVE`) and never uses `CONFIG REWRITE`, so the
//!   server needs no write access there; without it, a compromised admin login cannot rewrite
//!   the configuration, the ACL file or the TLS files. An empty `ReadWritePaths=` resets the
//!   list (`ReadWriteDirectories=` is the same setting), then the three paths are given back.
//! - **Start after the network is online.** The configuration binds the private IP; started
//!   before that address is up, redis-server exits, and `Restart=always` with the default
//!   100 ms delay can burn through the start limit (5 starts in 10 s) during a slow boot and
//!   leave the unit failed. `network-online.target` plus a 2 s restart delay avoid that.

use super::NodeFile;

/// The template instance name: the unit reads `/etc/redis/redis-<INSTANCE>.conf`.
pub const INSTANCE: &str = "cluster";
/// The systemd unit redisctl enables and starts.
pub const SERVICE: &str = "redis-server@cluster.service";
/// The stock single-instance unit, stopped and disabled at install time.
pub const STOCK_SERVICE: &str = "redis-server.service";

/// The drop-in for the template unit. It applies to every instance of
/// `redis-server@.service`; redisctl runs only `cluster`.
pub const DROP_IN: NodeFile = NodeFile {
    path: "/etc/systemd/system/redis-server@.service.d/redisctl.conf",
    mode: 0o644,
    owner: "root",
    group: "root",
};

/// The drop-in's text. Constant, so its hash is too. After writing it the executor runs
/// `systemctl daemon-reload`.
pub fn render_drop_in() -> String {
    "\
# Written by redisctl; edits here are overwritten on the next apply.
# redis-server never writes under /etc/redis (ACL LOAD only, no ACL SAVE or CONFIG REWRITE;
# the cluster state file is in /var/lib/redis), so it gets no write access there.
# The configuration binds the private IP: start once the network is online, and do not burn
# through the start limit while it comes up.

[Unit]
Wants=network-online.target
After=network-online.target

[Service]
ReadWritePaths=
ReadWritePaths=-/var/lib/redis
ReadWritePaths=-/var/log/redis
ReadWritePaths=-/run/redis-%i
RestartSec=2
"
    .to_string()
}

/// The commands, in order, that enable and start the service once its files are in place
/// (each is idempotent). On a host without systemd the executor starts
/// `redis-server /etc/redis/redis-cluster.conf --supervised no --daemonize yes` as the redis
/// user instead, after creating /run/redis-cluster owned by redis.
pub fn enable_commands() -> Vec<Vec<String>> {
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        argv(&["systemctl", "daemon-reload"]),
        argv(&["systemctl", "disable", "--now", STOCK_SERVICE]),
        argv(&["systemctl", "enable", "--now", SERVICE]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::test_spec;

    #[test]
    fn drop_in_matches_the_reviewed_snapshot() {
        test_spec::assert_snapshot("redis-server@.service.d-redisctl.conf", &render_drop_in());
    }

    #[test]
    fn the_instance_name_matches_the_config_path() {
        assert_eq!(
            super::super::conf::CONF.path,
            format!("/etc/redis/redis-{INSTANCE}.conf")
        );
        assert_eq!(SERVICE, format!("redis-server@{INSTANCE}.service"));
        assert_eq!(
            super::super::conf::PID_FILE,
            format!("/run/redis-{INSTANCE}/redis-server.pid")
        );
    }
}
