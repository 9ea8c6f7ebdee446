//! End-to-end: the node layer in the sandbox — a TLS + ACL Redis Cluster from nothing, changes
//! to a running cluster (ACL without restart, a stopped node), and no secret in any output.
//! Run inside the sandbox's operator namespace (scripts/test does it).

mod common;

use std::time::Instant;

use common::{ADMIN_PW, APP_PW, Cluster, IPS, text};
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
    let account = common::account::now();
    let c = Cluster::new("cluster", |t| t);
    let t = Instant::now();
    // With diagnostics on (-v: redisctl's debug log; RUST_LOG would override it).
    let mut outputs = verbose(&c, &["-v", "apply", "--yes"]);
    eprintln!(
        "figure: apply -v from nothing, 3 nodes: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert!(outputs.contains("Apply complete!"), "{outputs}");
    assert!(outputs.contains("DEBUG"), "-v logged nothing at debug");
    // From here on every output is also scanned for the nodes' TLS keys.
    c.learn_nodes(&IPS);
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
    outputs.push_str(&verbose(&c, &["-vv", "apply", "--yes"]));
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

    // A rule Redis refuses (a command it does not know) fails the apply before the file is
    // written: every node keeps the file and the rules it had.
    let acl_before = c.on_node(IPS[0], "sudo sha256sum /etc/redis/users.acl", "");
    let good = std::fs::read_to_string(&c.spec).unwrap();
    std::fs::write(
        &c.spec,
        good.replace("\"+command\",", "\"+command\", \"+nosuchcommand\","),
    )
    .unwrap();
    let out = c.run(&["apply", "--yes"]);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("the ACL rules of user app are refused by Redis"),
        "{said}"
    );
    outputs.push_str(&said);
    assert_eq!(
        c.on_node(IPS[0], "sudo sha256sum /etc/redis/users.acl", ""),
        acl_before,
        "the refused rules reached the file"
    );
    let users = c.redis("10.0.1.10", "ACL USERS");
    assert!(
        !users.contains("redisctl-dry"),
        "a dry-run user was left: {users}"
    );
    std::fs::write(&c.spec, good).unwrap();
    c.assert_converged();

    // No secret (any user's password, the body of the CA key, the SSH key or any node's key)
    // in anything redisctl printed or saved, nor in any node's journal or process list.
    let plan_file = c.dir.join("saved.plan");
    outputs.push_str(&c.ok(&["plan", "--json", "--out", plan_file.to_str().unwrap()]));
    let saved = std::fs::read_to_string(&plan_file).unwrap();
    c.assert_no_secret("the saved plan", &saved);
    let secrets = c.secrets();
    assert_eq!(
        secrets.labels(),
        [
            "the password of admin",
            "the password of app",
            "the password of dev",
            "the cluster CA key",
            "the SSH private key",
            "the TLS key of node 10.0.1.10",
            "the TLS key of node 10.0.2.10",
            "the TLS key of node 10.0.3.10",
        ]
    );
    secrets.assert_absent("everything redisctl printed", &outputs);
    c.assert_nodes_keep_secrets(&IPS);
    // The scanner finds a key in a real journal: one node's key logged line by line.
    c.on_node(
        IPS[0],
        "logger -t redisctl-test-planted < /etc/redis/tls/redis.key",
        "",
    );
    let journal = c.on_node(IPS[0], "journalctl --no-pager -o cat", "");
    let found = secrets.leaks(&journal);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("the TLS key of node 10.0.1.10 ("),
        "{found:?}"
    );
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
    let out = verbose(&c, &["-v", "destroy", "--yes"]);
    common::account::assert_as_before(&account, "prod-redis", &[]);
    assert!(out.contains("DEBUG"), "-v logged nothing at debug");
}

/// `redisctl ARGS` with diagnostics as the flags ask (no RUST_LOG), which must succeed; its
/// output, scanned for every secret known.
fn verbose(c: &Cluster, args: &[&str]) -> String {
    let _ = c.secrets();
    let out = c.cmd(args).env_remove("RUST_LOG").output().unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    c.assert_no_secret(&format!("the output of redisctl {args:?}"), &all);
    assert!(
        out.status.success(),
        "redisctl {args:?} failed:\n{all}\n{}",
        common::front_log_tail()
    );
    all
}

/// The scanner itself, on a key made here: a planted key or password is found in any layout,
/// and a finding names the secret, never its value.
#[test]
fn the_secrets_scanner_finds_planted_leaks() {
    use base64::Engine as _;
    let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let body = lines.concat();
    let mut s = common::secrets::Secrets::new();
    s.password("the password of app", APP_PW);
    assert!(s.key("a key made here", &pem, ""));
    assert!(s.leaks("nothing here\n").is_empty());
    // The header every P-256 PKCS#8 key shares is not this key.
    assert!(s.leaks(&body[..48]).is_empty());
    let rewrapped: Vec<String> = body
        .as_bytes()
        .chunks(40)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    for (what, text) in [
        ("the PEM", pem.clone()),
        ("one body line", format!("log: {}\n", lines[1])),
        (
            "a JSON string",
            serde_json::json!({ "key": pem }).to_string(),
        ),
        ("re-wrapped", rewrapped.join("\n    ")),
    ] {
        let found = s.leaks(&text);
        assert_eq!(found.len(), 1, "{what}: {found:?}");
        assert!(
            found[0].starts_with("a key made here ("),
            "{what}: {found:?}"
        );
        assert!(!found[0].contains(&body[48..80]), "a finding shows the key");
    }
    let found = s.leaks(&format!("x\nAUTH app {APP_PW}\n"));
    assert_eq!(found, ["the password of app at line 2 (byte 11)"]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(APP_PW);
    assert_eq!(s.leaks(&format!("auth={b64}")).len(), 1);
    // A body line that is also in the key's public side (its certificate) is not secret.
    let mut s = common::secrets::Secrets::new();
    assert!(s.key(
        "k",
        &pem,
        &format!("-----BEGIN CERTIFICATE-----\n{}\n", lines[2])
    ));
    assert!(s.leaks(lines[2]).is_empty());
    assert_eq!(s.leaks(&pem).len(), 1);
    assert!(!s.key("garbled", "-----BEGIN PRIVATE KEY-----\nxyz\n", ""));
}

#[test]
fn a_node_stopped_out_of_band_is_started_and_rejoins() {
    let _sb = Sandbox::acquire();
    let account = common::account::now();
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
    common::account::assert_as_before(&account, "prod-redis", &[]);
}

#[test]
fn six_nodes_with_replicas_figures() {
    let _sb = Sandbox::acquire();
    let account = common::account::now();
    let c = Cluster::new("six", |t| {
        let t = t.replace("replicas_per_master = 0", "replicas_per_master = 1");
        common::derived_nodes(&t)
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
    // replica before it restarts (no outage for clients), then takes them back: the data
    // stays, every master stays in its AZ.
    assert!(
        c.redis("10.0.1.10", "-c SET patient:42 kept")
            .contains("OK")
    );
    let masters_before = masters(&c);
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
    assert_eq!(
        masters(&c),
        masters_before,
        "each master took its slots back after its restart"
    );
    c.assert_converged();
    c.ok(&["destroy", "--yes"]);
    common::account::assert_as_before(&account, "prod-redis", &[]);
}

/// CLUSTER NODES (as 10.0.1.10 sees it) lists 3 masters and 3 replicas.
/// The addresses of the masters, as 10.0.1.10 sees them.
fn masters(c: &Cluster) -> Vec<String> {
    let nodes = c.redis("10.0.1.10", "CLUSTER NODES");
    let mut out: Vec<String> = nodes
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(2)
                .is_some_and(|f| f.contains("master"))
        })
        .filter_map(|l| {
            l.split_whitespace()
                .nth(1)?
                .split(':')
                .next()
                .map(String::from)
        })
        .collect();
    out.sort();
    out
}

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
