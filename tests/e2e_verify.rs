//! End-to-end: `redisctl verify` against a cluster that `apply` built in the sandbox, through the
//! real binary: every check passes with its evidence on a fresh cluster, `--json` parses, and a
//! cluster broken out of band (Redis opened to the world in the security group, IMDSv1 allowed
//! on a node, a node's key made world-readable, an ACL widened on the nodes, redis-server
//! stopped on one node) fails with exit 1 naming the failing checks, and `apply` repairs the
//! first three. `tls only` and `default user off` are each seen failing with their evidence (a
//! plaintext port opened at runtime, the `default` user turned on, without a password and with
//! one, which only `ACL LIST` shows), and a broken probe (a wrong
//! port, redis-cli missing) fails them as `probe failed`, never as refused. No secret (any
//! password, any key's body) appears in any output, nor in any node's journal or process list.
//! Run inside the sandbox:
//! `redisctl-sandbox exec -- cargo test -p redisctl --test e2e_verify -- --nocapture`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use common::secrets::Secrets;
use sha2::Digest;

use redisctl_sandbox::testing::Sandbox;

// Its EC2 helpers and the secrets scanner: this file keeps its own harness (every run checked
// for every secret known).
mod common;

const BIN: &str = env!("CARGO_BIN_EXE_redisctl");
const PASSWORDS: [(&str, &str); 3] = [
    ("REDIS_ADMIN_PASSWORD", "e2e-verify-admin-Zq81"),
    ("REDIS_APP_PASSWORD", "e2e-verify-app-Kx27"),
    ("REDIS_DEV_PASSWORD", "e2e-verify-dev-Wm64"),
];
const NODES: [(&str, &str); 3] = [
    ("redis-node-1a", "10.0.1.10"),
    ("redis-node-1b", "10.0.2.10"),
    ("redis-node-1c", "10.0.3.10"),
];

struct Cluster {
    dir: PathBuf,
    spec: PathBuf,
    /// The passwords, the state directory's keys and (once learnt) the nodes' keys: every
    /// output is scanned for them.
    secrets: Mutex<Secrets>,
}

impl Cluster {
    /// The reference example in a fresh directory (its own state dir), with `edit` applied.
    fn new(name: &str, edit: impl Fn(String) -> String) -> Cluster {
        let dir = std::env::temp_dir().join(format!("redisctl-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster.toml.example"))
                .unwrap();
        let spec = dir.join("cluster.toml");
        std::fs::write(&spec, edit(text)).unwrap();
        let mut secrets = Secrets::new();
        for (var, pw) in PASSWORDS {
            secrets.password(&format!("${var}"), pw);
        }
        Cluster {
            dir,
            spec,
            secrets: Mutex::new(secrets),
        }
    }

    /// Every secret known: the state directory's keys read again (kept once read).
    fn secrets(&self) -> Secrets {
        let mut s = self.secrets.lock().unwrap();
        s.state_dir(&self.dir.join(".redisctl/prod-redis"));
        s.clone()
    }

    /// No known secret on stdout or stderr.
    fn assert_no_secret(&self, what: &str, out: &Output) {
        let s = self.secrets();
        s.assert_absent(&format!("the stdout of {what}"), &text(&out.stdout));
        s.assert_absent(&format!("the stderr of {what}"), &text(&out.stderr));
    }

    /// Each node's TLS key (and replication password, if any) joins the secrets scanned for.
    fn learn_nodes(&self, ips: &[&str]) {
        let mut s = self.secrets.lock().unwrap();
        for ip in ips {
            common::secrets::learn_node(&mut s, ip, &|ip, script| {
                text(&self.ssh(ip, script, "").stdout)
            });
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("--config")
            .arg(&self.spec)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for (k, v) in PASSWORDS {
            c.env(k, v);
        }
        let _ = self.secrets();
        let out = c.output().unwrap();
        self.assert_no_secret(&format!("redisctl {args:?}"), &out);
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "redisctl {args:?} failed:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `apply --yes`, bounded (an apply stuck on a node is interrupted, and fails the test) and
    /// tried once more only when it stopped on a dropped SSH connection (`common::dropped_ssh`).
    fn apply(&self) -> String {
        for attempt in 1..=2 {
            let mut c = Command::new(BIN);
            c.args(["apply", "--yes", "--config"])
                .arg(&self.spec)
                .current_dir(&self.dir)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in PASSWORDS {
                c.env(k, v);
            }
            let _ = self.secrets();
            let child = c.spawn().unwrap();
            let pid = child.id();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait_with_output());
            });
            let out = match rx.recv_timeout(std::time::Duration::from_secs(300)) {
                Ok(out) => out.unwrap(),
                Err(_) => {
                    // The second SIGINT stops apply at once.
                    for _ in 0..2 {
                        let _ = Command::new("kill")
                            .args(["-INT", &pid.to_string()])
                            .status();
                        std::thread::sleep(std::time::Duration::from_millis(500));
                    }
                    rx.recv().unwrap().unwrap()
                }
            };
            self.assert_no_secret("redisctl apply", &out);
            if out.status.success() {
                return text(&out.stdout);
            }
            let e = text(&out.stderr);
            assert!(
                attempt == 1 && common::dropped_ssh(&e),
                "apply attempt {attempt} failed (status {:?}), not on the one failure retried (a dropped SSH connection on the first):\n{e}",
                out.status.code()
            );
            eprintln!(
                "note: apply attempt 1 stopped on a dropped SSH connection; applying again:\n{e}"
            );
        }
        unreachable!("the second attempt returned or failed the test");
    }

    /// `sudo sh -c SCRIPT` on a node over SSH with the state directory's key; `stdin` fed in.
    fn ssh(&self, ip: &str, script: &str, stdin: &str) -> Output {
        use std::io::Write;
        let key = self.dir.join(".redisctl/prod-redis/ssh_ed25519");
        let mut child = Command::new("ssh")
            .args([
                "-i",
                key.to_str().unwrap(),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                &format!("ubuntu@{ip}"),
                &format!("sudo -n sh -c '{script}'"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ssh {ip} {script}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The table's row of `check`: its first line and its evidence lines (up to the next row).
fn row(table: &str, check: &str) -> String {
    let mut lines = table
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{check}  ")));
    let mut out = vec![
        lines
            .next()
            .unwrap_or_else(|| panic!("no row {check}:\n{table}")),
    ];
    out.extend(lines.take_while(|l| l.starts_with(' ')));
    out.join("\n")
}

fn redis_cli(user: &str) -> String {
    format!(
        "REDISCLI_AUTH=\"$(cat)\" redis-cli --tls --cacert /etc/redis/tls/ca.crt --cert /etc/redis/tls/redis.crt --key /etc/redis/tls/redis.key -h 127.0.0.1 -p 6379 --user {user} --no-auth-warning"
    )
}

#[test]
fn verify_passes_on_a_fresh_cluster_and_names_what_breaks() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("verify", |t| t);
    let t = Instant::now();
    let out = c.apply();
    assert!(out.contains("Apply complete!"), "{out}");
    eprintln!(
        "figure: apply from nothing: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    // Every later output is scanned for the nodes' keys too.
    c.learn_nodes(&NODES.map(|(_, ip)| ip));

    // A fresh cluster passes every check, with its evidence.
    let t = Instant::now();
    let table = c.ok(&["verify"]);
    let wall = t.elapsed();
    eprintln!("{table}");
    eprintln!(
        "figure: verify wall time (3 nodes, all checks): {:.2}s",
        wall.as_secs_f64()
    );
    assert!(table.starts_with("CHECK"), "{table}");
    assert!(!table.contains("FAIL"), "{table}");
    assert!(table.contains("Verified: all 15 checks passed"), "{table}");

    let health = row(&table, "cluster health");
    for (node, _) in NODES {
        assert!(
            health.contains(&format!(
                "{node}: cluster_state:ok cluster_slots_assigned:16384 cluster_known_nodes:3/3 role:master"
            )),
            "{health}"
        );
    }
    assert!(
        health.contains("masters serving slots: 3 (spec: 3"),
        "{health}"
    );
    let slots = row(&table, "slot coverage");
    assert!(
        slots.contains("0-16383 covered, no gaps or overlaps"),
        "{slots}"
    );
    assert!(slots.contains("masters in 3 AZ(s)"), "{slots}");
    for (node, ip) in NODES {
        assert!(
            slots.contains(&format!("{node} ({ip}, us-east-1")),
            "{slots}"
        );
    }
    // patient:12345 hashes to slot 12624 (CRC16), which the third master serves after
    // `redis-cli --cluster create` (10923-16383).
    let data = row(&table, "data distribution");
    assert!(
        data.contains("CLUSTER KEYSLOT patient:12345 = 12624 (CRC16 here: 12624)"),
        "{data}"
    );
    assert!(
        data.contains("slot 12624 is served by redis-node-1c (10.0.3.10)"),
        "{data}"
    );
    assert!(data.contains("SET patient:12345 as app via"), "{data}");
    assert!(
        data.contains("GET through redis-cli -c from redis-node-1a: the value written"),
        "{data}"
    );
    assert!(
        data.contains("GET on redis-node-1c directly (no redirect): the value written"),
        "{data}"
    );
    assert!(data.contains("deleted patient:12345"), "{data}");
    let app = row(&table, "acl app");
    assert!(
        app.contains("SET session:redisctl-verify: ran (OK) [expected allow"),
        "{app}"
    );
    assert!(
        app.contains(
            "FLUSHALL (with an invalid argument: never flushes): NOPERM this user has no permissions to run the 'flushall' command [expected deny"
        ),
        "{app}"
    );
    assert!(app.contains("SET redisctl-verify:outside: NOPERM"), "{app}");
    let dev = row(&table, "acl dev");
    assert!(dev.contains("SET redisctl-verify: NOPERM"), "{dev}");
    assert!(dev.contains("CLUSTER SLOTS: ran"), "{dev}");
    let admin = row(&table, "acl admin");
    assert!(
        admin
            .contains("FLUSHALL (with an invalid argument: never flushes): ran (ERR syntax error)"),
        "{admin}"
    );
    let default = row(&table, "default user off");
    assert!(
        default.contains("PING without credentials: NOAUTH"),
        "{default}"
    );
    assert!(
        default.contains("AUTH default <wrong>: WRONGPASS"),
        "{default}"
    );
    let tls = row(&table, "tls only");
    for (node, ip) in NODES {
        assert!(
            tls.contains(&format!("{node}: plaintext PING to {ip}:6379: refused")),
            "{tls}"
        );
    }
    assert!(tls.contains("TLS PING: PONG"), "{tls}");
    let protocols = row(&table, "tls protocols");
    for (node, _) in NODES {
        assert!(
            protocols.contains(&format!("{node}: TLSv1 refused; TLSv1.1 refused; TLSv1.2 negotiated; TLSv1.3 negotiated; bus port 16379: TLS (TLSv1.3), certificate verified")),
            "{protocols}"
        );
    }
    let certs = row(&table, "tls certificates");
    assert!(
        certs.contains("redis-node-1a: CN=redis-node-1a signed by the cluster CA"),
        "{certs}"
    );
    assert!(certs.contains("IP SANs 10.0.1.10, 127.0.0.1"), "{certs}");
    let vols = row(&table, "root volumes encrypted");
    assert_eq!(
        vols.matches("Encrypted=true KmsKeyId=alias/aws/ebs")
            .count(),
        3,
        "{vols}"
    );

    // --json parses, is versioned, and says the same.
    let json = c.ok(&["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("verify --json is JSON");
    assert_eq!(v["format_version"], "1.0");
    assert_eq!(v["cluster"], "prod-redis");
    assert_eq!(v["passed"], true);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["passed"], true, "{c}");
            assert!(!c["evidence"].as_array().unwrap().is_empty(), "{c}");
            c["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "cluster health",
            "slot coverage",
            "data distribution",
            "acl admin",
            "acl app",
            "acl dev",
            "default user off",
            "tls only",
            "tls protocols",
            "tls certificates",
            "file modes",
            "production checklist",
            "root volumes encrypted",
            "security group",
            "instance metadata"
        ]
        .to_vec()
    );
    let modes = row(&table, "file modes");
    assert_eq!(
        modes
            .matches("8 files and directories with their modes and owners")
            .count(),
        3,
        "{modes}"
    );
    let sg = row(&table, "security group");
    assert!(
        sg.contains("allowed: ssh tcp/22 from 203.0.113.7/32"),
        "{sg}"
    );
    assert!(
        sg.contains("allowed: bus tcp/16379 from the nodes (this group)"),
        "{sg}"
    );
    assert!(!sg.contains("NOT IN THE SPEC"), "{sg}");
    let imds = row(&table, "instance metadata");
    assert_eq!(
        imds.matches("HttpTokens=required, no instance profile")
            .count(),
        3,
        "{imds}"
    );

    // Out of band: Redis opened to the world, IMDSv1 allowed again on one node, and on another
    // the TLS key made world-readable and the ACL file given to root's group. verify names all
    // three; plan shows the three repairs; apply makes them (without restarting Redis);
    // verify passes again.
    let pid = |ip: &str| {
        text(
            &c.ssh(
                ip,
                "systemctl show -p MainPID --value redis-server@cluster",
                "",
            )
            .stdout,
        )
        .trim()
        .to_string()
    };
    let pid_before = pid("10.0.1.10");
    c.ssh(
        "10.0.1.10",
        "chmod 644 /etc/redis/tls/redis.key && chown root:root /etc/redis/users.acl",
        "",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ec2 = common::ec2_client().await;
        let id = common::instance_of(&ec2, "redis-node-1b").await;
        ec2.modify_instance_metadata_options()
            .instance_id(&id)
            .http_tokens(aws_sdk_ec2::types::HttpTokensState::Optional)
            .send()
            .await
            .unwrap();
        common::open_redis_to_the_world(&ec2).await;
    });
    let out = c.run(&["verify"]);
    let table = text(&out.stdout);
    eprintln!("{table}");
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(
        table.contains("Verify failed: 3 of 15 checks failed"),
        "{table}"
    );
    let modes = row(&table, "file modes");
    assert!(
        modes.contains("redis-node-1a: /etc/redis/users.acl is 0640 root:root [expected 0640 root:redis]; /etc/redis/tls/redis.key is 0644 root:redis [expected 0640 root:redis] WRONG"),
        "{modes}"
    );
    let sg = row(&table, "security group");
    assert!(sg.lines().next().unwrap().contains(" FAIL "), "{sg}");
    assert!(
        sg.contains("NOT IN THE SPEC: tcp/6379 from 0.0.0.0/0"),
        "{sg}"
    );
    let imds = row(&table, "instance metadata");
    assert!(
        imds.contains("HttpTokens=optional [expected required: IMDSv2 only] WRONG"),
        "{imds}"
    );
    let plan = c.ok(&["plan"]);
    eprintln!("{plan}");
    assert!(plan.contains("- sg.rule[tcp 6379 0.0.0.0/0]"), "{plan}");
    assert!(
        plan.contains("~ metadata_options.http_tokens = \"optional\" -> \"required\""),
        "{plan}"
    );
    assert!(
        plan.contains("~ /etc/redis/tls/redis.key = \"0644 root:redis\" -> \"0640 root:redis\""),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to add, 2 to change, 1 to destroy."),
        "{plan}"
    );
    c.apply();
    let table = c.ok(&["verify"]);
    assert!(table.contains("Verified: all 15 checks passed"), "{table}");
    assert_eq!(pid("10.0.1.10"), pid_before, "Redis restarted");

    failing_paths_of_tls_only_and_default_user_off(&c);

    // Tamper with the ACLs out of band: app may now FLUSHALL (on every node, in memory).
    for (_, ip) in NODES {
        let out = c.ssh(
            ip,
            &format!("{} ACL SETUSER app +flushall", redis_cli("admin")),
            PASSWORDS[0].1,
        );
        assert_eq!(text(&out.stdout).trim(), "OK");
    }
    let out = c.run(&["verify"]);
    let table = text(&out.stdout);
    eprintln!("{table}");
    assert_eq!(out.status.code(), Some(1), "{table}");
    let app = row(&table, "acl app");
    assert!(app.lines().next().unwrap().contains(" FAIL "), "{app}");
    assert!(
        app.contains("FLUSHALL (with an invalid argument: never flushes): ran (ERR syntax error) [expected deny: flushall denied by its commands] WRONG"),
        "{app}"
    );
    assert!(
        table.contains("Verify failed: 1 of 15 checks failed"),
        "{table}"
    );
    assert!(table.contains(": acl app."), "{table}");

    // verify sent every user's password to the nodes (on stdin): none is in any node's journal
    // or process list, nor is any key.
    common::secrets::assert_nodes_keep_secrets(
        &c.secrets(),
        &NODES.map(|(_, ip)| ip),
        &|ip, script| text(&c.ssh(ip, script, "").stdout),
    );

    // Stop Redis on one node: health, TLS and data checks that need it fail, with the reason;
    // verify still reports every check.
    c.ssh("10.0.3.10", "systemctl stop redis-server@cluster", "");
    let t = Instant::now();
    let out = c.run(&["verify", "--json"]);
    eprintln!(
        "figure: verify wall time with one node's Redis stopped: {:.2}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(v["passed"], false);
    let check = |name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {v}"))
            .clone()
    };
    let health = check("cluster health");
    assert_eq!(health["passed"], false, "{health}");
    let ev = health["evidence"].to_string();
    assert!(
        ev.contains("redis-node-1c: CLUSTER INFO failed: Could not connect"),
        "{ev}"
    );
    let tls = check("tls only");
    assert_eq!(tls["passed"], false, "{tls}");
    assert!(
        tls["evidence"]
            .to_string()
            .contains("TLS PING: Could not connect"),
        "{tls}"
    );
    assert_eq!(check("root volumes encrypted")["passed"], true);
    let table = text(&c.run(&["verify"]).stdout);
    eprintln!("{table}");
    assert!(table.contains("cluster health"), "{table}");
    assert!(row(&table, "cluster health").contains("FAIL"), "{table}");
}

/// A redis-cli on the node that aims every plaintext run (no `--tls`) at port 1, where nothing
/// listens: the probe is broken in the way a wrong port breaks it; TLS runs are untouched.
const WRONG_PORT_CLI: &str = r#"#!/bin/sh
for a in "$@"; do [ "$a" = --tls ] && exec /usr/bin/redis-cli "$@"; done
n=$#; prev=
for a in "$@"; do
  if [ "$prev" = -p ]; then set -- "$@" 1; else set -- "$@" "$a"; fi
  prev=$a
done
shift "$n"
exec /usr/bin/redis-cli "$@"
"#;

/// `tls only` and `default user off` each seen failing, with the node and what was seen: a
/// plaintext port opened at runtime, the `default` user turned on, and a broken probe (a wrong
/// port, redis-cli missing) reported as a failed probe, never as `refused`. Every break is
/// undone and verify passes again at the end. What went wrong is collected and asserted at the
/// end, so a run against the old code shows every path it missed.
fn failing_paths_of_tls_only_and_default_user_off(c: &Cluster) {
    let mut missed: Vec<String> = Vec::new();
    let mut expect = |ok: bool, what: &str, table: &str| {
        if !ok {
            missed.push(format!("{what}:\n{table}"));
        }
    };
    let admin = |ip: &str, cmd: &str| {
        text(
            &c.ssh(ip, &format!("{} {cmd}", redis_cli("admin")), PASSWORDS[0].1)
                .stdout,
        )
        .trim()
        .to_string()
    };
    let verify = |c: &Cluster| {
        let out = c.run(&["verify"]);
        let table = text(&out.stdout);
        eprintln!("{table}");
        (out.status.code(), table)
    };

    // (a) A plaintext listener opened on node 1a at runtime: Redis binds it on both of its
    // addresses, and verify tries every TCP socket redis-server listens on.
    assert_eq!(admin("10.0.1.10", "CONFIG SET port 6380"), "OK");
    let listening = text(&c.ssh("10.0.1.10", "ss -Hltnp", "").stdout);
    assert!(listening.contains("10.0.1.10:6380"), "{listening}");
    let (code, table) = verify(c);
    let tls = row(&table, "tls only");
    expect(code == Some(1), "(a) verify exits 1", &table);
    expect(
        table.contains("Verify failed: 1 of 15 checks failed") && tls.contains(" FAIL "),
        "(a) tls only fails, and only it",
        &table,
    );
    for addr in ["10.0.1.10", "127.0.0.1"] {
        expect(
            tls.contains(&format!(
                "to {addr}:6380: ANSWERED (NOAUTH Authentication required.) [expected refused: TLS only] WRONG"
            )),
            "(a) the plaintext port is named with the reply it gave",
            &tls,
        );
    }
    expect(
        tls.contains("redis-node-1a: plaintext PING to 10.0.1.10:6379: refused (Connection reset by peer); to "),
        "(a) the TLS port refused plaintext",
        &tls,
    );
    // The plan shows the drift (the files are right: only CONFIG GET and the sockets say it),
    // and apply puts it back live: the plaintext listener closes, Redis is not restarted.
    let run_id = || {
        admin("10.0.1.10", "INFO server")
            .lines()
            .find_map(|l| l.strip_prefix("run_id:").map(|v| v.trim().to_string()))
    };
    let before = run_id();
    let plan = c.run(&["plan"]);
    let plan = text(&plan.stdout);
    expect(
        plan.contains("node.redis-node-1a.runtime will be updated in place")
            && plan.contains("~ port         = \"6380\" -> \"0 (CONFIG SET, no restart)\"")
            && plan.contains("~ listening on = \"10.0.1.10:6380, 127.0.0.1:6380\" -> \"closed with the settings put back\"")
            && plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "(a) the plan shows the plaintext port as drift",
        &plan,
    );
    c.ok(&["apply", "--yes"]);
    let listening = text(&c.ssh("10.0.1.10", "ss -Hltnp", "").stdout);
    expect(
        !listening.contains(":6380"),
        "(a) apply closed the plaintext listener",
        &listening,
    );
    expect(run_id() == before, "(a) Redis was not restarted", "");
    expect(
        c.run(&["plan", "--detailed-exitcode"]).status.code() == Some(0),
        "(a) the next plan is empty",
        "",
    );

    // (b) The default user turned on at runtime on node 1b. With no password, Redis's
    // protected mode (on in the node's configuration) answers connections from other than
    // loopback with DENIED: an answer, not the refusals expected. The ACL checks whose
    // commands reach node 1b fail too (DENIED for them as well).
    assert_eq!(
        admin("10.0.2.10", "ACL SETUSER default on nopass +@all \"~*\""),
        "OK"
    );
    let (code, table) = verify(c);
    let default = row(&table, "default user off");
    expect(code == Some(1), "(b) verify exits 1", &table);
    expect(
        default.contains(" FAIL ")
            && default.contains("redis-node-1b: PING without credentials: ANSWERED (DENIED Redis is running in protected mode")
            && default.contains("[expected NOAUTH: a command ran without credentials: the default user is on] WRONG; AUTH default <wrong>: ANSWERED (DENIED"),
        "(b) default user off fails naming the node and what it answered",
        &default,
    );
    expect(
        default.contains("redis-node-1a: PING without credentials: NOAUTH Authentication required.; AUTH default <wrong>: WRONGPASS"),
        "(b) the other nodes still refuse",
        &default,
    );
    // And with protected mode off too, the default user runs commands for anyone.
    assert_eq!(admin("10.0.2.10", "CONFIG SET protected-mode no"), "OK");
    let (code, table) = verify(c);
    let default = row(&table, "default user off");
    expect(
        code == Some(1),
        "(b) verify exits 1 (protected mode off)",
        &table,
    );
    expect(
        table.contains("Verify failed: 1 of 15 checks failed") && default.contains(" FAIL "),
        "(b) default user off fails, and only it (protected mode off)",
        &table,
    );
    expect(
        default.contains("redis-node-1b: PING without credentials: ANSWERED (PONG) [expected NOAUTH: a command ran without credentials: the default user is on] WRONG; AUTH default <wrong>: ANSWERED (OK) [expected WRONGPASS: the default user accepted a password] WRONG"),
        "(b) the node is named with what it answered (protected mode off)",
        &default,
    );
    // The ACL file says `default off`: reloading it undoes the change.
    assert_eq!(admin("10.0.2.10", "CONFIG SET protected-mode yes"), "OK");
    assert_eq!(admin("10.0.2.10", "ACL LOAD"), "OK");

    // (b3) The default user on with a password: a connection must still authenticate, so the
    // PING and the wrong AUTH are refused as for a user that is off; `ACL LIST` shows it on.
    // The evidence shows the rule without the password's hash.
    let pw = "redisctl-e2e-default-on";
    assert_eq!(
        admin("10.0.2.10", &format!("ACL SETUSER default on \">{pw}\"")),
        "OK"
    );
    let (code, table) = verify(c);
    let default = row(&table, "default user off");
    expect(code == Some(1), "(b3) verify exits 1", &table);
    expect(
        table.contains("Verify failed: 1 of 15 checks failed") && default.contains(" FAIL "),
        "(b3) default user off fails, and only it (on with a password)",
        &table,
    );
    expect(
        default.contains("redis-node-1b: PING without credentials: NOAUTH Authentication required.; AUTH default <wrong>: WRONGPASS")
            && default.contains("; ACL LIST: user default on ")
            && default.contains(" #… ")
            && default.contains("[expected off: the default user is enabled] WRONG"),
        "(b3) the node is named with its rule from ACL LIST",
        &default,
    );
    let hash: String = sha2::Sha256::digest(pw.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expect(
        !table.contains(&hash[..16]) && !table.contains(pw),
        "(b3) neither the password nor its hash is printed",
        &table,
    );
    assert_eq!(admin("10.0.2.10", "ACL LOAD"), "OK");

    // (c1) A wrong port: nothing listens where the plaintext probe looks.
    c.ssh(
        "10.0.3.10",
        "cat > /usr/local/bin/redis-cli && chmod 755 /usr/local/bin/redis-cli",
        WRONG_PORT_CLI,
    );
    let (code, table) = verify(c);
    let tls = row(&table, "tls only");
    expect(code == Some(1), "(c1) verify exits 1", &table);
    expect(
        table.contains("Verify failed: 1 of 15 checks failed") && tls.contains(" FAIL "),
        "(c1) tls only fails, and only it",
        &table,
    );
    expect(
        tls.contains("redis-node-1c: plaintext PING to 10.0.3.10:6379: probe failed: Could not connect to Redis at 10.0.3.10:1: Connection refused (exit 1) WRONG"),
        "(c1) a connection refused where the probe looked is a failed probe",
        &tls,
    );
    let node_1c = tls
        .lines()
        .find(|l| l.contains("redis-node-1c:"))
        .unwrap_or("");
    expect(
        !node_1c.contains(": refused"),
        "(c1) no try of node 1c reads as refused",
        &tls,
    );
    c.ssh("10.0.3.10", "rm /usr/local/bin/redis-cli", "");

    // (c2) redis-cli missing on node 1c.
    c.ssh(
        "10.0.3.10",
        "mv /usr/bin/redis-cli /usr/bin/redis-cli.away",
        "",
    );
    let (code, table) = verify(c);
    c.ssh(
        "10.0.3.10",
        "mv /usr/bin/redis-cli.away /usr/bin/redis-cli",
        "",
    );
    expect(code == Some(1), "(c2) verify exits 1", &table);
    for check in ["tls only", "default user off"] {
        let r = row(&table, check);
        let node_1c = r
            .lines()
            .find(|l| l.contains("redis-node-1c:"))
            .unwrap_or("");
        expect(
            r.contains(" FAIL ")
                && node_1c.contains("probe failed: redis-cli could not run (exit 127)")
                && !node_1c.contains(": refused"),
            &format!("(c2) {check}: redis-cli missing is a failed probe, never refused"),
            &r,
        );
    }

    // Everything undone: verify passes again.
    let (code, table) = verify(c);
    expect(
        code == Some(0) && table.contains("Verified: all 15 checks passed"),
        "every break undone",
        &table,
    );
    assert!(
        missed.is_empty(),
        "{} failing path(s) not seen as expected:\n{}",
        missed.len(),
        missed.join("\n\n")
    );
}

/// 3 masters + 3 replicas (nodes round-robin over the three subnets): every replica's link to its
/// master is up, the masters sit in three AZs, and every check passes.
#[test]
fn verify_checks_replicas_on_a_six_node_cluster() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("verify6", |t| {
        let t = t.replace("replicas_per_master = 0", "replicas_per_master = 1");
        common::derived_nodes(&t)
    });
    let t = Instant::now();
    let out = c.apply();
    assert!(out.contains("Apply complete!"), "{out}");
    eprintln!(
        "figure: apply from nothing, 6 nodes: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    // Right after apply the replicas may still be in their first sync (master_link_status:down):
    // verify reports that as it is; wait (bounded) for the links to come up.
    let since_apply = Instant::now();
    let mut attempts = 0;
    let table = loop {
        attempts += 1;
        let t = Instant::now();
        let out = c.run(&["verify"]);
        let table = text(&out.stdout);
        eprintln!(
            "figure: verify wall time (6 nodes, all checks): {:.2}s",
            t.elapsed().as_secs_f64()
        );
        if out.status.success() {
            break table;
        }
        eprintln!("{}", row(&table, "cluster health"));
        assert!(
            since_apply.elapsed().as_secs() < 90,
            "verify still fails 90 s after apply:\n{table}"
        );
        std::thread::sleep(std::time::Duration::from_secs(5));
    };
    eprintln!("{table}");
    eprintln!(
        "figure: verify passed at attempt {attempts}, {:.1}s after apply",
        since_apply.elapsed().as_secs_f64()
    );
    assert!(table.contains("Verified: all 15 checks passed"), "{table}");
    let health = row(&table, "cluster health");
    assert_eq!(
        health
            .matches("cluster_known_nodes:6/6 role:master")
            .count(),
        3,
        "{health}"
    );
    assert_eq!(
        health
            .matches("cluster_known_nodes:6/6 role:replica master_link_status:up")
            .count(),
        3,
        "{health}"
    );
    assert!(health.contains("replicas: 3 (spec: 3)"), "{health}");
    assert!(
        row(&table, "slot coverage").contains("masters in 3 AZ(s)"),
        "{table}"
    );
    assert_eq!(
        row(&table, "root volumes encrypted")
            .matches("Encrypted=true")
            .count(),
        6
    );
}
