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

    symbolic_links_planted_by_the_redis_user_are_not_followed(&c);
    c.ok(&["destroy", "--yes"]);
}

/// Here no systemd makes /etc/redis read-only to Redis: the redis user (a Redis someone took
/// over can write files) must not be able to make root chown or chmod another file through a
/// link planted where redisctl keeps its own.
fn symbolic_links_planted_by_the_redis_user_are_not_followed(c: &Cluster) {
    let ip = IPS[0];
    let as_redis = |script: &str| {
        c.on_node(
            ip,
            &format!("runuser -u redis -- sh -c '{script}' 2>&1; echo rc=$?"),
            "",
        )
    };
    // apply left the directories root's, and told dpkg to keep them so.
    let dirs = c.on_node(
        ip,
        "stat -c '%a %U:%G %n' /etc/redis /etc/redis/tls; dpkg-statoverride --list /etc/redis",
        "",
    );
    assert_eq!(
        dirs,
        "2750 root:redis /etc/redis\n2750 root:redis /etc/redis/tls\nroot redis 2750 /etc/redis\n"
    );
    let out = as_redis("ln -s /etc/shadow /etc/redis/planted");
    assert!(
        out.contains("Permission denied") && out.contains("rc=1"),
        "{out}"
    );

    // The directory as Debian makes it (2770 redis:redis, as a package upgrade sets it back
    // without the statoverride, or as a cluster built before had it). The redis user makes
    // apply plan a chown of the ACL file (a copy of it that the user owns), then, while apply
    // waits at its prompt, swaps it for a link to /etc/shadow.
    c.on_node(
        ip,
        "dpkg-statoverride --remove /etc/redis; chown redis:redis /etc/redis; chmod 2770 /etc/redis",
        "",
    );
    let shadow = || c.on_node(ip, "stat -c '%a %U:%G' /etc/shadow", "");
    let before = shadow();
    let out = as_redis(
        "cp /etc/redis/users.acl /etc/redis/.copy && mv -f /etc/redis/.copy /etc/redis/users.acl",
    );
    assert!(out.contains("rc=0"), "{out}");
    let (mut child, screen) = c.apply_at_prompt();
    let shown = text(&screen.lock().unwrap());
    assert!(shown.contains("node.redis-node-1a.modes"), "{shown}");
    let out = as_redis(
        "ln -s /etc/shadow /etc/redis/.link && mv -f /etc/redis/.link /etc/redis/users.acl",
    );
    assert!(out.contains("rc=0"), "{out}");
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"yes\n").unwrap();
    let status = child.wait().unwrap();
    let shown = text(&screen.lock().unwrap());
    assert_eq!(
        shadow(),
        before,
        "root changed /etc/shadow through the link:\n{shown}"
    );
    assert!(!status.success(), "apply went ahead:\n{shown}");
    assert!(
        shown.contains("/etc/redis/users.acl is a symbolic link"),
        "{shown}"
    );
    // The directory was made root's before the link was refused: nothing more can be planted.
    let out = as_redis("ln -s /etc/shadow /etc/redis/planted");
    assert!(out.contains("Permission denied"), "{out}");
    // The next plan stops at it, and verify names it.
    let out = c.run(&["plan"]);
    let plan = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{plan}");
    assert!(
        plan.contains("/etc/redis/users.acl on the node is a symbolic link"),
        "{plan}"
    );
    let out = c.run(&["verify"]);
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("/etc/redis/users.acl is a symbolic link (not followed)"),
        "{report}"
    );

    // Once someone removed it, apply makes the directory root's again.
    c.on_node(ip, "rm /etc/redis/users.acl", "");
    c.ok(&["apply", "--yes"]);
    c.assert_converged();
    let dirs = c.on_node(
        ip,
        "stat -c '%a %U:%G %n' /etc/redis; dpkg-statoverride --list /etc/redis",
        "",
    );
    assert_eq!(
        dirs,
        "2750 root:redis /etc/redis\nroot redis 2750 /etc/redis\n"
    );
    assert_eq!(shadow(), before);
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
