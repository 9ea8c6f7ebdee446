//! End-to-end: a cluster on hosts without an init system (the sandbox's no-init image, where a
//! small script is PID 1 instead of systemd). redisctl detects it, starts Redis itself as the
//! redis user with the same configuration file, plans nothing after apply, rolls a
//! configuration change out with restarts (SIGTERM, wait, start) one node at a time, and (second
//! test) stops Redis cleanly for the EBS swap and starts it again after the instance comes back.
//! Run inside the sandbox's operator namespace:
//! `redisctl-sandbox exec -- cargo test --test e2e_noinit -- --nocapture`.

mod common;

use std::time::Instant;

use common::{Cluster, IPS, text};
use redisctl_sandbox::testing::Sandbox;

fn no_init_spec(t: String) -> String {
    let from = "ami = \"ubuntu-24.04\"";
    assert!(t.contains(from));
    t.replace(from, &format!("ami = \"{}\"", redisctl_sandbox::NOINIT_AMI))
}

fn edit(c: &Cluster, from: &str, to: &str) {
    let t = std::fs::read_to_string(&c.spec).unwrap();
    assert!(t.contains(from), "{from:?} is not in the spec");
    std::fs::write(&c.spec, t.replacen(from, to, 1)).unwrap();
}

/// The node has no systemd, and the cluster's Redis runs as user redis from the pidfile of the
/// shared configuration: returns its pid.
fn redis_pid_without_systemd(c: &Cluster, ip: &str) -> u32 {
    let out = c.on_node(
        ip,
        "if [ -d /run/systemd/system ]; then echo init=systemd; else echo init=none; fi; \
         p=$(cat /run/redis-cluster/redis-server.pid); echo pid=$p; \
         echo proc=$(ps -o user=,comm= -p $p)",
        "",
    );
    assert!(out.contains("init=none\n"), "{ip}: {out}");
    assert!(out.contains("proc=redis redis-server\n"), "{ip}: {out}");
    out.lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{ip}: {out}"))
}

fn assert_cluster_ok(c: &Cluster) {
    for ip in IPS {
        let info = c.redis(ip, "CLUSTER INFO");
        assert!(info.contains("cluster_state:ok"), "{ip}: {info}");
        assert!(
            info.contains("cluster_slots_assigned:16384"),
            "{ip}: {info}"
        );
        assert!(info.contains("cluster_known_nodes:3"), "{ip}: {info}");
    }
}

#[test]
fn a_cluster_on_hosts_without_systemd_converges_and_rolls_a_config_change() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("noinit", no_init_spec);

    let t = Instant::now();
    c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: apply from nothing, 3 nodes without systemd: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    // Nothing left to do: no "enable" step without an init system.
    c.assert_converged();
    assert_cluster_ok(&c);
    let mut pids = Vec::new();
    for ip in IPS {
        pids.push(redis_pid_without_systemd(&c, ip));
        // The stock server never ran and is unlinked from the runlevels; no systemd drop-in.
        let out = c.on_node(
            ip,
            "ls /etc/rc2.d | grep redis-server; [ -e /run/redis/redis-server.pid ] && echo stock-pid; [ -e /etc/systemd/system/redis-server@.service.d/redisctl.conf ] && echo drop-in; true",
            "",
        );
        assert!(!out.contains("S01redis-server"), "{ip}: {out}");
        assert!(
            !out.contains("stock-pid") && !out.contains("drop-in"),
            "{ip}: {out}"
        );
        // TLS only.
        let plain = c.on_node(
            ip,
            &format!("redis-cli -h {ip} -p 6379 PING 2>&1 || true"),
            "",
        );
        assert!(!plain.contains("PONG"), "plaintext answered: {plain}");
    }
    // Data over TLS, through the cluster.
    let out = c.redis(IPS[0], "-c SET patient:7 kept");
    assert!(out.lines().any(|l| l == "OK"), "{out}");
    assert!(c.redis(IPS[2], "-c GET patient:7").contains("kept"));

    // A configuration change: every node restarts, one at a time.
    edit(&c, "# maxmemory = \"512mb\"", "maxmemory = \"256mb\"");
    let out = c.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2));
    let plan = text(&out.stdout);
    assert_eq!(
        plan.matches("the node restarts (no systemd: SIGTERM, wait until Redis exits, start it again as user redis), one at a time").count(),
        3,
        "{plan}"
    );
    let t = Instant::now();
    c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: rolling restart of 3 nodes without systemd: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    c.assert_converged();
    assert_cluster_ok(&c);
    for (ip, before) in IPS.iter().zip(&pids) {
        let after = redis_pid_without_systemd(&c, ip);
        assert_ne!(after, *before, "{ip}: Redis did not restart");
        let mm = c.redis(ip, "CONFIG GET maxmemory");
        assert!(mm.contains("268435456"), "{ip}: {mm}");
        // A clean stop: Redis logged its shutdown, no crash.
        let log = c.on_node(ip, "cat /var/log/redis/redis-server-cluster.log", "");
        assert!(
            log.contains("Received SIGTERM scheduling shutdown"),
            "{ip}: {log}"
        );
        assert!(log.contains("ready to exit, bye bye"), "{ip}: {log}");
    }
    assert!(
        c.redis(IPS[1], "-c GET patient:7").contains("kept"),
        "data survives the restarts"
    );

    c.ok(&["destroy", "--yes"]);
}

/// The EBS swap on hosts without systemd: Redis is stopped cleanly before StopInstances, and
/// after StartInstances (where nothing starts it) redisctl starts it and the node rejoins with
/// its keys.
#[test]
fn the_encryption_swap_restarts_redis_itself_without_systemd() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("noinit-swap", |t| {
        no_init_spec(t).replace("encrypted = true", "encrypted = false")
    });
    c.ok(&["apply", "--yes"]);
    c.assert_converged();
    for i in 0..30 {
        let out = c.redis(IPS[0], &format!("-c SET key:{i} v{i}"));
        assert!(out.lines().any(|l| l == "OK"), "{out}");
    }
    edit(&c, "encrypted = false", "encrypted = true");
    let t = Instant::now();
    c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: swap of 3 nodes without systemd: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    c.assert_converged();
    assert_cluster_ok(&c);
    for ip in IPS {
        redis_pid_without_systemd(&c, ip);
        let log = c.on_node(ip, "cat /var/log/redis/redis-server-cluster.log", "");
        assert!(log.contains("ready to exit, bye bye"), "{ip}: {log}");
    }
    for i in 0..30 {
        assert!(
            c.redis(IPS[1], &format!("-c GET key:{i}"))
                .contains(&format!("v{i}")),
            "key:{i} lost in the swap"
        );
    }
    c.ok(&["destroy", "--yes"]);
}
