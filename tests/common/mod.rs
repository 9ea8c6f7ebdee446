//! The harness of the end-to-end tests that drive redisctl against the sandbox: a cluster spec in
//! a fresh directory, the binary run with the users' passwords in its environment, and commands
//! on a node over SSH with the cluster's own key.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod account;
pub mod ami;
pub mod data;
pub mod secrets;
pub mod settle;
pub mod vpc;

pub const BIN: &str = env!("CARGO_BIN_EXE_redisctl");
pub const ADMIN_PW: &str = "cluster-admin-pw-51c9";
pub const APP_PW: &str = "cluster-app-pw-0d2e";
pub const DEV_PW: &str = "cluster-dev-pw-a8b4";

/// Whether apply's stderr names the one failure a test may retry apply on: an SSH connection
/// the sandbox dropped (src/ssh/session.rs: "SSH connection to node … dropped during …; safe to
/// retry an idempotent step"). Any other failure is the test's to report.
pub fn dropped_ssh(stderr: &str) -> bool {
    stderr.lines().any(|l| {
        l.contains("SSH connection to node")
            && l.contains(" dropped during ")
            && l.contains("safe to retry an idempotent step")
    })
}

pub struct Cluster {
    pub dir: PathBuf,
    pub spec: PathBuf,
    /// Every secret this cluster is known to have (see [`Cluster::secrets`]).
    known: std::sync::Mutex<secrets::Secrets>,
}

impl Cluster {
    pub fn new(name: &str, edit: impl Fn(String) -> String) -> Cluster {
        let dir = std::env::temp_dir().join(format!("redisctl-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster.toml.example"))
                .unwrap();
        let spec = dir.join("cluster.toml");
        std::fs::write(&spec, edit(text)).unwrap();
        let mut known = secrets::Secrets::new();
        for (user, pw) in [("admin", ADMIN_PW), ("app", APP_PW), ("dev", DEV_PW)] {
            known.password(&format!("the password of {user}"), pw);
        }
        Cluster {
            dir,
            spec,
            known: std::sync::Mutex::new(known),
        }
    }

    /// The state directory of cluster prod-redis.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(".redisctl/prod-redis")
    }

    /// The keys of a state directory kept elsewhere (a copy pulled from an S3 backend) are
    /// secrets from now on.
    pub fn learn_state(&self, dir: &Path) {
        self.known.lock().unwrap().state_dir(dir);
    }

    /// `pw` is a secret from now on (a password a test introduces): no output may show it.
    pub fn learn_password(&self, what: &str, pw: &str) {
        self.known.lock().unwrap().password(what, pw);
    }

    /// Every secret known so far: the users' passwords, the keys of the state directory (read
    /// again now; a key once read stays known after destroy or a test removes it), and what
    /// [`Cluster::learn_nodes`] read from the nodes.
    pub fn secrets(&self) -> secrets::Secrets {
        let mut k = self.known.lock().unwrap();
        k.state_dir(&self.state_dir());
        k.clone()
    }

    /// Reads each node's TLS key (and replication password, if any) into the known secrets.
    pub fn learn_nodes(&self, ips: &[&str]) {
        let mut k = self.known.lock().unwrap();
        for ip in ips {
            secrets::learn_node(&mut k, ip, &|ip, script| self.on_node(ip, script, ""));
        }
    }

    /// No known secret in `haystack` (what a test collected itself).
    pub fn assert_no_secret(&self, what: &str, haystack: &str) {
        self.secrets().assert_absent(what, haystack);
    }

    /// No known secret in any node's journal or process list.
    pub fn assert_nodes_keep_secrets(&self, ips: &[&str]) {
        secrets::assert_nodes_keep_secrets(&self.secrets(), ips, &|ip, script| {
            self.on_node(ip, script, "")
        });
    }

    /// The binary with the spec, the users' passwords and no stdin (spawn it, or `run`).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.shell(&[BIN]);
        c.args(args).arg("--config").arg(&self.spec);
        c
    }

    /// Another program (`argv[0]`) with the same directory and environment as [`Cluster::cmd`]
    /// (e.g. redisctl under `script` for a terminal).
    pub fn shell(&self, argv: &[&str]) -> Command {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..])
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            // The swap's stages and figures are logged at info.
            .env("RUST_LOG", "redisctl=info,warn")
            .env("REDIS_ADMIN_PASSWORD", ADMIN_PW)
            .env("REDIS_APP_PASSWORD", APP_PW)
            .env("REDIS_DEV_PASSWORD", DEV_PW)
            .stdin(Stdio::null());
        c
    }

    /// Rewrites the spec with `f`.
    pub fn edit(&self, f: impl Fn(String) -> String) {
        let t = std::fs::read_to_string(&self.spec).unwrap();
        std::fs::write(&self.spec, f(t)).unwrap();
    }

    /// Apply to set a test up: once more when the first run stopped on a dropped SSH
    /// connection (the error says to run apply again; the sandbox drops one now and then).
    pub fn setup(&self) {
        let out = self.run(&["apply", "--yes"]);
        if out.status.success() {
            return;
        }
        let e = text(&out.stderr);
        assert!(
            dropped_ssh(&e),
            "redisctl apply failed, and not on a dropped SSH connection (the one failure retried):\n{e}\n{}",
            front_log_tail()
        );
        eprintln!("setup apply stopped on a dropped SSH connection; applying again");
        self.ok(&["apply", "--yes"]);
    }

    /// `ok`, but killed (and its output shown) when it runs longer than `bound`.
    pub fn ok_within(&self, args: &[&str], bound: std::time::Duration) -> String {
        let dir = self.dir.join(format!("out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (o, e) = (dir.join("stdout"), dir.join("stderr"));
        let _ = self.secrets();
        let mut child = self
            .cmd(args)
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if start.elapsed() > bound {
                child.kill().unwrap();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        let out = format!(
            "{}{}",
            std::fs::read_to_string(&o).unwrap(),
            std::fs::read_to_string(&e).unwrap()
        );
        self.assert_no_secret(&format!("the output of redisctl {args:?}"), &out);
        match status {
            Some(s) if s.success() => out,
            Some(s) => panic!("redisctl {args:?} failed ({s}):\n{out}"),
            None => panic!("redisctl {args:?} still ran after {bound:?}:\n{out}"),
        }
    }

    /// Replaces `from` (which must be there) by `to` in the spec.
    pub fn edit_spec(&self, from: &str, to: &str) {
        let t = std::fs::read_to_string(&self.spec).unwrap();
        assert!(t.contains(from), "{from:?} is not in the spec");
        std::fs::write(&self.spec, t.replacen(from, to, 1)).unwrap();
    }

    /// The binary run to its end; what it printed is scanned for every known secret.
    pub fn run(&self, args: &[&str]) -> Output {
        // Read before (a destroy may remove the keys) and after (an apply may make them).
        let _ = self.secrets();
        let out = self.cmd(args).output().unwrap();
        let s = self.secrets();
        s.assert_absent(
            &format!("the stdout of redisctl {args:?}"),
            &text(&out.stdout),
        );
        s.assert_absent(
            &format!("the stderr of redisctl {args:?}"),
            &text(&out.stderr),
        );
        out
    }

    /// The exit status of `plan --detailed-exitcode` (0 no changes, 2 changes).
    pub fn plan_exit(&self) -> i32 {
        self.run(&["plan", "--detailed-exitcode"])
            .status
            .code()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (o, e) = (text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success(),
            "redisctl {args:?} failed:\n{o}\n{e}\n{}\n{}",
            front_log_tail(),
            self.redis_log_tails()
        );
        format!("{o}{e}")
    }

    /// The end of every running node's Redis log, for a failure's message (what the cluster
    /// itself said: elections, votes refused, links lost).
    pub fn redis_log_tails(&self) -> String {
        // (In a failure's message: an EC2 error leaves the logs out, it does not panic.)
        let mut out = String::new();
        for (node, ip) in running_node_ips().unwrap_or_default() {
            let log = self.on_node(
                &ip,
                "tail -n 25 /var/log/redis/redis-server-cluster.log 2>&1",
                "",
            );
            out.push_str(&format!(
                "--- the end of {node}'s Redis log ({ip}) ---\n{log}\n"
            ));
        }
        out
    }

    /// Every node's Redis log holds no election won without one started since its last
    /// ("Failover election won" after no "Starting a failover election"): Redis 7.0 reuses a
    /// replica's last election when asked to fail over within 2 x cluster-node-timeout of
    /// it, and the node so "elected" serves its slots with an old epoch for a moment, then
    /// loses them and resyncs (writes taken in between are lost). redisctl must never ask
    /// a replica then. A restart of Redis clears the election it remembers.
    pub fn assert_no_stale_election_win(&self) {
        for (node, ip) in running_node_ips().unwrap() {
            let log = self.on_node(
                &ip,
                "cat /var/log/redis/redis-server-cluster.log.1 /var/log/redis/redis-server-cluster.log 2>/dev/null | grep -E 'Starting a failover election|Failover election won|Ready to accept connections'",
                "",
            );
            let mut started = false;
            for line in log.lines() {
                if line.contains("Starting a failover election") {
                    started = true;
                } else if line.contains("Ready to accept connections") {
                    started = false;
                } else if line.contains("Failover election won") {
                    assert!(
                        started,
                        "{node} ({ip}) won an election it did not start (a stale one reused): {line}\n{log}"
                    );
                    started = false;
                }
            }
        }
    }

    /// `plan --detailed-exitcode` must say "no changes"; otherwise show the plan.
    pub fn assert_converged(&self) {
        let out = self.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "the plan is not empty:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// `redisctl apply` on a terminal, stopped at its confirmation prompt: the child (answer on
    /// its stdin) and what it has shown so far.
    pub fn apply_at_prompt(
        &self,
    ) -> (
        std::process::Child,
        std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    ) {
        use std::io::Read;
        use std::process::Stdio;
        use std::sync::{Arc, Mutex};
        let inner = format!("{} --config {} apply", BIN, self.spec.display());
        let mut child = self
            .shell(&["script", "-qfec", &inner, "/dev/null"])
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script (util-linux) runs");
        let screen = Arc::new(Mutex::new(Vec::new()));
        {
            let (mut out, buf) = (child.stdout.take().unwrap(), screen.clone());
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = out.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
        }
        let start = std::time::Instant::now();
        while !text(&screen.lock().unwrap()).contains("Enter a value") {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(120),
                "no prompt:\n{}",
                text(&screen.lock().unwrap())
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        (child, screen)
    }

    /// A command on a node as root over SSH with the cluster's key and pinned host key.
    pub fn on_node(&self, ip: &str, script: &str, stdin: &str) -> String {
        let key = self.dir.join(".redisctl/prod-redis/ssh_ed25519");
        let known = self.dir.join("ssh_known_hosts");
        let mut child = Command::new("ssh")
            .args([
                "-i",
                key.to_str().unwrap(),
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
            ])
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                &format!("ubuntu@{ip}"),
                "sudo",
                "-n",
                "sh",
                "-c",
            ])
            .arg(format!("'{}'", script.replace('\'', "'\\''")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    }

    /// `apply --yes`, killed `after` a progress line starting with `marker` (leading spaces
    /// aside). Returns what it printed, or `None` when it finished before the kill.
    pub fn apply_killed_after(&self, marker: &str, after: std::time::Duration) -> Option<String> {
        self.killed_after(&["apply", "--yes"], marker, after)
    }

    /// [`Cluster::apply_killed_after`] for redisctl run with `args`.
    pub fn killed_after(
        &self,
        args: &[&str],
        marker: &str,
        after: std::time::Duration,
    ) -> Option<String> {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        use std::time::{Duration, Instant};
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut lines = BufReader::new(stderr).lines();
        let mut started = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push(line.clone());
            if line.trim_start().starts_with(marker) {
                started = Some(Instant::now());
                break;
            }
        }
        let Some(started) = started else {
            // The run ended without the marker: a plan that just showed steps can find nothing
            // left by the time apply plans again (a replica link that came up meanwhile).
            let out = child.wait_with_output().unwrap();
            let stdout = text(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("No changes"),
                "{marker:?} never came:\n{}\n{stdout}",
                seen.join("\n")
            );
            return None;
        };
        // Keep reading (the pipe must not fill) until the moment comes.
        let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        while started.elapsed() < after {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        seen.extend(reader.join().unwrap());
        let out = seen.join("\n");
        if finished {
            assert!(status.success(), "apply failed on its own:\n{out}");
            return None;
        }
        Some(out)
    }

    /// redis-cli on a node as the admin (password on stdin, read before any redirection of
    /// `args` applies).
    pub fn redis(&self, ip: &str, args: &str) -> String {
        let cli = "pw=\"$(cat)\"; REDISCLI_AUTH=\"$pw\" redis-cli --tls --cacert /etc/redis/tls/ca.crt --cert /etc/redis/tls/redis.crt --key /etc/redis/tls/redis.key -h 127.0.0.1 -p 6379 --user admin --no-auth-warning";
        self.on_node(ip, &format!("{cli} {args}"), ADMIN_PW)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Python of the tests' virtualenv, with the pinned redis-py (scripts/test makes it).
pub fn python() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: scripts/test makes it (python3 -m venv + the pinned redis-py)",
        p.display()
    );
    p
}

/// The spec without its `[[nodes.node]]` list: the nodes are then derived from `masters` and
/// `replicas_per_master`, round-robin over the subnets.
pub fn derived_nodes(t: &str) -> String {
    let start = t
        .find("\n[[nodes.node]]")
        .expect("the spec lists its nodes");
    let end = t.find("\n[ssh]").expect("the spec has an [ssh] table");
    format!("{}{}", &t[..start], &t[end..])
}

/// The spec with Redis open to the operator's machine too, for a client that runs there (it
/// reaches the VPC as through a VPN, from the sandbox's internet address): security groups are
/// enforced, and `redis_cidrs` defaults to the VPC only.
pub fn redis_open_to_operator(t: String) -> String {
    let t2 = t.replace(
        "# redis_cidrs = [\"10.0.0.0/16\"]",
        &format!(
            "redis_cidrs = [\"10.0.0.0/16\", \"{}\"]",
            vpc::operator_cidr()
        ),
    );
    assert_ne!(t, t2, "the spec has no redis_cidrs line to replace");
    t2
}

/// The end of the sandbox front's log (hosts booted, stopped, exited), for a failure message.
pub fn front_log_tail() -> String {
    let path = redisctl_sandbox::paths::Paths::from_env()
        .logs()
        .join("front.log");
    let log = std::fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("--- the end of {} ---\n{tail}", path.display())
}

/// Waits (bounded) until `check` holds: what a test just made through EC2 is listed only once
/// the eventual-consistency window has passed.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(
            start.elapsed() < settle::SETTLE_LIMIT,
            "{what}: not so after {:?}",
            settle::SETTLE_LIMIT
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub const IPS: [&str; 3] = ["10.0.1.10", "10.0.2.10", "10.0.3.10"];

/// EC2 in the sandbox, through the real SDK (the environment `redisctl-sandbox exec` sets).
pub async fn ec2_client() -> aws_sdk_ec2::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    aws_sdk_ec2::Client::new(&conf)
}

fn tag(key: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

/// Each running node of the sandbox's cluster and its private IP, by node name (blocking).
pub fn running_node_ips() -> Result<Vec<(String, String)>, String> {
    let nodes = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { running_nodes(&ec2_client().await).await })?;
    let mut out: Vec<(String, String)> = nodes
        .into_iter()
        .filter_map(|(node, i)| Some((node, i.private_ip_address()?.to_string())))
        .collect();
    out.sort();
    Ok(out)
}

/// The running instances of cluster prod-redis that are nodes, with their node names.
pub async fn running_nodes(
    ec2: &aws_sdk_ec2::Client,
) -> Result<Vec<(String, aws_sdk_ec2::types::Instance)>, String> {
    let out = ec2
        .describe_instances()
        .filters(tag("redisctl:cluster", "prod-redis"))
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("DescribeInstances: {e:?}"))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| {
            let node = i
                .tags()
                .iter()
                .find(|t| t.key() == Some("redisctl:node"))?
                .value()?
                .to_string();
            Some((node, i.clone()))
        })
        .collect())
}

/// The id of `node`'s instance in cluster prod-redis, found by its tags (not terminated).
pub async fn instance_of(ec2: &aws_sdk_ec2::Client, node: &str) -> String {
    let out = ec2
        .describe_instances()
        .filters(tag("redisctl:cluster", "prod-redis"))
        .filters(tag("redisctl:node", node))
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.instance_id())
        .unwrap_or_else(|| panic!("no live instance for {node}"))
        .to_string()
}

/// Out of band: stop the instance and wait (bounded) until EC2 shows it `stopped`, as an
/// operator would before planning (EC2 shows `stopping` for a while).
pub async fn stop_instance(ec2: &aws_sdk_ec2::Client, id: &str) {
    ec2.stop_instances().instance_ids(id).send().await.unwrap();
    let start = std::time::Instant::now();
    loop {
        let out = ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .unwrap();
        let state = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| {
                i.state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
            });
        if state.as_deref() == Some("stopped") {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "{id} is still {state:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Out of band: the Redis port opened to the world in cluster prod-redis's security group.
/// Returns the group's id.
pub async fn open_redis_to_the_world(ec2: &aws_sdk_ec2::Client) -> String {
    use aws_sdk_ec2::types::{IpPermission, IpRange};
    let groups = ec2
        .describe_security_groups()
        .filters(tag("redisctl:cluster", "prod-redis"))
        .send()
        .await
        .unwrap();
    let sg = groups.security_groups()[0].group_id().unwrap().to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&sg)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(6379)
                .to_port(6379)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    sg
}
