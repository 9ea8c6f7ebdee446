//! End-to-end: the node layer in the sandbox — a TLS + ACL Redis Cluster from nothing, changes
//! to a running cluster (ACL without restart, a stopped node), and no secret in any output.
//! Run inside the sandbox's operator namespace (scripts/test does it).

mod common;

use std::time::Instant;

use common::{ADMIN_PW, APP_PW, Cluster, DEV_PW, IPS, text};
use redisctl_sandbox::testing::Sandbox;

fn uptime(c: &Cluster, ip: &str) -> u64 {
    let info = c.redis(ip, "INFO server");
    info.lines()
        .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
        .unwrap_or_else(|| panic!("no uptime in {info}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn from_nothing_to_a_tls_acl_cluster_then_an_acl_change_without_restart() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("cluster", |t| t);
    let t = Instant::now();
    let mut outputs = c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: apply from nothing, 3 nodes: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for line in outputs
        .lines()
        .filter(|l| l.starts_with("phase ") && l.contains(" done in "))
    {
        eprintln!("figure: 3 nodes: {line}");
    }
    c.assert_converged();

    // A real TLS + ACL cluster.
    for ip in IPS {
        let info = c.redis(ip, "CLUSTER INFO");
        assert!(info.contains("cluster_state:ok"), "{ip}: {info}");
        assert!(
            info.contains("cluster_slots_assigned:16384"),
            "{ip}: {info}"
        );
        assert!(info.contains("cluster_known_nodes:3"), "{ip}: {info}");
        let acl = c.on_node(ip, "cat /etc/redis/users.acl; stat -c %a:%U:%G /etc/redis/users.acl /etc/redis/tls/redis.key", "");
        assert!(acl.contains("user default off"), "{acl}");
        assert!(
            !acl.contains(ADMIN_PW) && !acl.contains(APP_PW),
            "plaintext password on a node"
        );
        assert!(acl.contains("640:root:redis"), "{acl}");
        // Plaintext is refused: the port speaks TLS only.
        let plain = c.on_node(
            ip,
            &format!("redis-cli -h {ip} -p 6379 PING 2>&1 || true"),
            "",
        );
        assert!(!plain.contains("PONG"), "plaintext answered: {plain}");
        let enabled = c.on_node(
            ip,
            "systemctl is-enabled redis-server@cluster; systemctl is-enabled redis-server || true",
            "",
        );
        assert!(enabled.starts_with("enabled"), "{enabled}");
        assert!(
            enabled.contains("disabled"),
            "the stock service is disabled: {enabled}"
        );
    }

    // An ACL change: only ACL steps, no restart.
    let before: Vec<u64> = IPS.iter().map(|ip| uptime(&c, ip)).collect();
    let spec = std::fs::read_to_string(&c.spec).unwrap().replace(
        "keys = [\"session:*\", \"cache:*\", \"patient:*\"]",
        "keys = [\"session:*\", \"cache:*\", \"patient:*\", \"report:*\"]",
    );
    std::fs::write(&c.spec, spec).unwrap();
    let out = c.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2));
    let plan = text(&out.stdout);
    let steps: Vec<&str> = plan
        .lines()
        .filter_map(|l| l.trim().strip_prefix("# "))
        .filter(|l| l.contains(" will be "))
        .collect();
    assert_eq!(
        steps,
        [
            "node.redis-node-1a.acl will be updated in place",
            "node.redis-node-1b.acl will be updated in place",
            "node.redis-node-1c.acl will be updated in place"
        ],
        "{plan}"
    );
    outputs.push_str(&plan);
    outputs.push_str(&c.ok(&["apply", "--yes"]));
    c.assert_converged();
    let after: Vec<u64> = IPS.iter().map(|ip| uptime(&c, ip)).collect();
    for (b, a) in before.iter().zip(&after) {
        assert!(
            a >= b,
            "a node restarted during an ACL change: uptime {b}s -> {a}s"
        );
    }
    let rules = c.redis("10.0.1.10", "ACL GETUSER app");
    assert!(rules.contains("report:*"), "the new rule holds: {rules}");

    // No secret in anything redisctl printed or saved.
    let plan_file = c.dir.join("saved.plan");
    outputs.push_str(&c.ok(&["plan", "--json", "--out", plan_file.to_str().unwrap()]));
    outputs.push_str(&std::fs::read_to_string(&plan_file).unwrap());
    let private_key =
        std::fs::read_to_string(c.dir.join(".redisctl/prod-redis/ssh_ed25519")).unwrap();
    let ca_key = std::fs::read_to_string(c.dir.join(".redisctl/prod-redis/ca.key")).unwrap();
    for secret in [ADMIN_PW, APP_PW, DEV_PW] {
        assert!(
            !outputs.contains(secret),
            "a password appears in redisctl's output"
        );
    }
    for key in [&private_key, &ca_key] {
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(
            !outputs.contains(&body[..40]),
            "a private key appears in redisctl's output"
        );
    }
    // Keys stay here with mode 0600.
    use std::os::unix::fs::PermissionsExt;
    for f in ["ssh_ed25519", "ca.key", "known_hosts"] {
        let mode = std::fs::metadata(c.dir.join(".redisctl/prod-redis").join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    c.ok(&["destroy", "--yes"]);
}

#[test]
fn a_node_stopped_out_of_band_is_started_and_rejoins() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("stopped", |t| t);
    c.ok(&["apply", "--yes"]);
    c.redis("10.0.1.10", "-c SET patient:42 kept");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ec2 = common::ec2_client().await;
        let id = common::instance_of(&ec2, "redis-node-1b").await;
        common::stop_instance(&ec2, &id).await;
    });
    let out = c.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2));
    let plan = text(&out.stdout);
    assert!(
        plan.contains("~ state = \"stopped\" -> \"running\""),
        "{plan}"
    );
    assert!(plan.contains("> cluster.health"), "{plan}");
    assert!(
        plan.contains("node.redis-node-1b: the node is stopped"),
        "{plan}"
    );
    c.ok(&["apply", "--yes"]);
    let info = c.redis("10.0.2.10", "CLUSTER INFO");
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert!(
        c.redis("10.0.3.10", "-c GET patient:42").contains("kept"),
        "data survives the restart"
    );
    c.assert_converged();
    c.ok(&["destroy", "--yes"]);
}

#[test]
fn six_nodes_with_replicas_figures() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("six", |t| {
        let t = t.replace("replicas_per_master = 0", "replicas_per_master = 1");
        let start = t.find("\n[[nodes.node]]").unwrap();
        let end = t.find("\n[ssh]").unwrap();
        format!("{}{}", &t[..start], &t[end..])
    });
    let t = Instant::now();
    let out = c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: apply from nothing, 6 nodes (3 masters + 3 replicas): {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for line in out
        .lines()
        .filter(|l| l.starts_with("phase ") && l.contains(" done in "))
    {
        eprintln!("figure: 6 nodes: {line}");
    }
    assert_three_masters_three_replicas(&c);
    c.assert_converged();

    // A config change rolls out one node at a time, and each master hands its slots to its
    // replica before it restarts (no outage for clients): the data stays, the roles swap.
    assert!(
        c.redis("10.0.1.10", "-c SET patient:42 kept")
            .contains("OK")
    );
    c.edit_spec("# maxmemory = \"", "maxmemory = \"");
    let t = Instant::now();
    let out = c.ok(&["apply", "--yes"]);
    let failovers = out.lines().filter(|l| l.contains("failover done")).count();
    eprintln!(
        "figure: rolling restart of 6 nodes with failovers: {:.1}s, {failovers} failovers",
        t.elapsed().as_secs_f64()
    );
    assert!(failovers >= 3, "every master hands over first:\n{out}");
    assert!(c.redis("10.0.2.10", "-c GET patient:42").contains("kept"));
    assert_three_masters_three_replicas(&c);
    c.assert_converged();
    c.ok(&["destroy", "--yes"]);
}

/// CLUSTER NODES (as 10.0.1.10 sees it) lists 3 masters and 3 replicas.
fn assert_three_masters_three_replicas(c: &Cluster) {
    let nodes = c.redis("10.0.1.10", "CLUSTER NODES");
    assert_eq!(
        nodes.lines().filter(|l| l.contains("master")).count(),
        3,
        "{nodes}"
    );
    assert_eq!(
        nodes.lines().filter(|l| l.contains("slave")).count(),
        3,
        "{nodes}"
    );
}
