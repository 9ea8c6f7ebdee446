//! End-to-end: `redisctl redis-cli` (issue #7) against a cluster in the sandbox — one command
//! with its output and exit status, cluster mode following redirects, commands piped on stdin,
//! an interactive session on a pseudo-terminal (`script` from util-linux), an unknown node, a
//! changed host key, and no secret (any user's password, any key) on the nodes (process list,
//! journal, auth.log) nor in redisctl's own output.
//! Run inside the sandbox's operator namespace (scripts/test does it).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ADMIN_PW, APP_PW, BIN, Cluster, DEV_PW, text};
use redisctl_sandbox::testing::Sandbox;

const NODE_1A: &str = "10.0.1.10";

/// `redisctl --config SPEC redis-cli ARGS…` (the global option first: anything after `--`
/// goes to redis-cli).
fn cli(c: &Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(&c.spec)
        .arg("redis-cli")
        .args(args)
        .current_dir(&c.dir)
        .env("NO_COLOR", "1")
        .env("REDIS_ADMIN_PASSWORD", ADMIN_PW)
        .env("REDIS_APP_PASSWORD", APP_PW)
        .env("REDIS_DEV_PASSWORD", DEV_PW)
        .stdin(Stdio::null());
    cmd
}

fn run(c: &Cluster, args: &[&str]) -> Output {
    let t = Instant::now();
    let out = cli(c, args).output().unwrap();
    eprintln!(
        "figure: redis-cli {args:?}: {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    c.assert_no_secret(&format!("the output of redisctl redis-cli {args:?}"), &all);
    out
}

/// The stdout of a redis-cli run that must succeed.
fn ok(c: &Cluster, args: &[&str]) -> String {
    let out = run(c, args);
    assert!(
        out.status.success(),
        "redis-cli {args:?} failed ({:?}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn redis_cli_on_the_nodes_of_a_cluster() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("redis-cli", |t| t);
    let t = Instant::now();
    c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: apply from nothing: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    c.learn_nodes(&common::IPS);
    let mut printed = String::new();

    // One command: its output, exit status 0.
    assert_eq!(
        ok(&c, &["redis-node-1b", "--", "SET", "k", "v"]).trim(),
        "OK"
    );
    // Cluster mode: every node answers for the key, the ones without its slot by following the
    // MOVED redirect.
    for node in ["redis-node-1a", "redis-node-1b", "redis-node-1c"] {
        let got = ok(&c, &[node, "--", "GET", "k"]);
        assert_eq!(got.lines().last(), Some("v"), "GET k through {node}: {got}");
        printed.push_str(&got);
    }
    // The default node is the first; `cli` is an alias.
    let info = ok(&c, &["--", "CLUSTER", "INFO"]);
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    let myself = ok(&c, &["--", "CLUSTER", "MYID"]);
    let mut alias = Command::new(BIN);
    alias
        .args([
            "--config",
            c.spec.to_str().unwrap(),
            "cli",
            "--",
            "CLUSTER",
            "MYID",
        ])
        .current_dir(&c.dir)
        .env("REDIS_ADMIN_PASSWORD", ADMIN_PW)
        .stdin(Stdio::null());
    let out = alias.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        myself,
        "`cli` reaches the same (first) node"
    );
    let nodes = ok(&c, &["redis-node-1a", "--", "CLUSTER", "NODES"]);
    let first_line = nodes.lines().find(|l| l.contains("myself")).unwrap();
    assert!(first_line.starts_with(myself.trim()), "{nodes}");
    assert!(first_line.contains("10.0.1.10:6379"), "{nodes}");

    // Arguments arrive intact through both remote shells.
    let value = "it's \"quoted\" $HOME `id` $(id) \\ ; | & * ~ #";
    assert_eq!(
        ok(&c, &["redis-node-1c", "--", "SET", "odd key", value]).trim(),
        "OK"
    );
    let got = ok(&c, &["redis-node-1a", "--", "GET", "odd key"]);
    assert_eq!(got.lines().last(), Some(value), "{got}");

    // redis-cli's stderr and exit status come through.
    let out = run(&c, &["redis-node-1a", "--", "--no-such-option"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("Unrecognized option"),
        "{}",
        text(&out.stderr)
    );

    // Commands on stdin, one per line, after the password line.
    let t = Instant::now();
    let mut child = cli(&c, &["redis-node-1c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"PING\nGET k\nSET piped yes\nGET piped\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "figure: redis-cli with 4 piped commands: {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let got = text(&out.stdout);
    assert!(out.status.success(), "{got}\n{}", text(&out.stderr));
    let lines: Vec<&str> = got.lines().filter(|l| !l.starts_with("-> ")).collect();
    assert_eq!(lines, ["PONG", "v", "OK", "yes"], "{got}");
    printed.push_str(&got);
    printed.push_str(&text(&out.stderr));

    // An unknown node: an error that lists the valid names; nothing is reached.
    let out = run(&c, &["redis-node-9", "--", "PING"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no node `redis-node-9`"), "{err}");
    assert!(
        err.contains("redis-node-1a, redis-node-1b, redis-node-1c"),
        "{err}"
    );
    assert!(err.contains("what to do:"), "{err}");
    assert!(text(&out.stdout).is_empty());

    // The password is nowhere on the node while a command runs, nor in its logs afterwards;
    // nor in what redisctl prints with diagnostics on.
    let long = cli(
        &c,
        &["-v", "redis-node-1a", "--", "BLPOP", "nothing-here", "6"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let ps = c.on_node(NODE_1A, "ps auxww", "");
    let out = long.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        ps.contains("redis-cli") && ps.contains("BLPOP"),
        "the long command was running: {ps}"
    );
    c.assert_no_secret("the node's process list", &ps);
    let log = text(&out.stderr);
    assert!(log.contains("ssh"), "diagnostics were on: {log}");
    printed.push_str(&log);
    let journal = c.on_node(
        NODE_1A,
        "journalctl --no-pager -o cat; cat /var/log/auth.log 2>/dev/null; true",
        "",
    );
    assert!(
        journal.contains("BLPOP"),
        "sudo logged the command line (so this is the right log)"
    );
    c.assert_no_secret("the node's journal or auth.log", &journal);

    // Interactive, on a pseudo-terminal.
    printed.push_str(&interactive(&c));

    // A changed host key is a hard error (and nothing runs).
    let known = c.dir.join(".redisctl/prod-redis/known_hosts");
    let pinned = std::fs::read_to_string(&known).unwrap();
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII8lL1Zfr+rNqvJsZES0EFmqgHMAS7sqFgf7o0q2ZMTH";
    let forged: String = pinned
        .lines()
        .map(|l| format!("{} {other}\n", l.split(' ').next().unwrap()))
        .collect();
    std::fs::write(&known, forged).unwrap();
    let out = run(&c, &["redis-node-1b", "--", "SET", "k", "forged"]);
    std::fs::write(&known, &pinned).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("redis-node-1b") && err.contains("host key") && err.contains("changed"),
        "{err}"
    );
    let got = ok(&c, &["redis-node-1b", "--", "GET", "k"]);
    assert_eq!(got.lines().last(), Some("v"), "nothing ran: {got}");

    // No pin anywhere (the state directory's known_hosts gone, the instances' host-key tags
    // removed): redis-cli and verify refuse to trust whatever answers; only apply pins again.
    std::fs::remove_file(&known).unwrap();
    forget_host_key_tags();
    let out = run(&c, &["redis-node-1b", "--", "GET", "k"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("has no host key pinned") && err.contains("run `redisctl apply` first"),
        "{err}"
    );
    let out = c.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(shown.contains("has no host key pinned"), "{shown}");
    assert!(!known.exists(), "verify pinned a key");
    c.ok(&["apply", "--yes"]);
    assert!(known.exists());
    let got = ok(&c, &["redis-node-1b", "--", "GET", "k"]);
    assert_eq!(got.lines().last(), Some("v"), "{got}");

    c.assert_no_secret("redisctl's output", &printed);
    // Every node the commands ran on: no password or key in its journal or process list.
    c.assert_nodes_keep_secrets(&common::IPS);
    c.ok(&["destroy", "--yes"]);
}

/// What a process writes, collected by a thread.
fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

fn wait_for(buf: &Arc<Mutex<Vec<u8>>>, needle: &str, bound: Duration) {
    let start = Instant::now();
    loop {
        let now = text(&buf.lock().unwrap());
        if now.contains(needle) {
            return;
        }
        assert!(
            start.elapsed() < bound,
            "no {needle:?} after {}s; the terminal shows:\n{now}",
            bound.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `redisctl redis-cli NODE` on a pseudo-terminal that `script` makes; afterwards the shell
/// prints the exit status and `stty -a` (is the terminal cooked again?).
struct Terminal {
    child: std::process::Child,
    keys: std::process::ChildStdin,
    screen: Arc<Mutex<Vec<u8>>>,
    errors: Arc<Mutex<Vec<u8>>>,
    /// redisctl's own process id.
    pid: u32,
    /// What must not appear on the screen.
    secrets: common::secrets::Secrets,
}

const BOUND: Duration = Duration::from_secs(60);

impl Terminal {
    fn open(c: &Cluster, node: &str) -> Terminal {
        let inner = format!(
            "sh -c 'echo pid=$$; exec {BIN} --config {} redis-cli {node}'; echo \"exit=$?\"; stty -a",
            c.spec.display()
        );
        let t = Instant::now();
        let mut child = Command::new("script")
            .args(["-qfec", &inner, "/dev/null"])
            .current_dir(&c.dir)
            .env("NO_COLOR", "1")
            .env("TERM", "xterm")
            .env("REDIS_ADMIN_PASSWORD", ADMIN_PW)
            .env("REDIS_APP_PASSWORD", APP_PW)
            .env("REDIS_DEV_PASSWORD", DEV_PW)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script (util-linux) runs");
        let keys = child.stdin.take().unwrap();
        let screen = collect(child.stdout.take().unwrap());
        let errors = collect(child.stderr.take().unwrap());
        wait_for(&screen, "127.0.0.1:6379>", BOUND);
        eprintln!(
            "figure: interactive redis-cli prompt after {:.2}s",
            t.elapsed().as_secs_f64()
        );
        let shown = text(&screen.lock().unwrap());
        let pid = shown
            .lines()
            .find_map(|l| l.trim().strip_prefix("pid="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid line: {shown}"));
        Terminal {
            child,
            keys,
            screen,
            errors,
            pid,
            secrets: c.secrets(),
        }
    }

    fn typed(&mut self, keys: &[u8], then: &str) {
        self.keys.write_all(keys).unwrap();
        wait_for(&self.screen, then, BOUND);
    }

    /// Wait for the end; the screen, after checking the exit status and the terminal.
    fn finish(mut self, exit: &str) -> String {
        wait_for(&self.screen, exit, BOUND);
        wait_for(&self.screen, "icanon", BOUND);
        let status = self.child.wait().unwrap();
        let shown = text(&self.screen.lock().unwrap());
        let errors = text(&self.errors.lock().unwrap());
        eprintln!("interactive session ({exit}):\n{}", shown.escape_debug());
        assert!(status.success(), "{shown}\n{errors}");
        // The terminal is cooked again, with echo on.
        let stty = &shown[shown.find(exit).unwrap()..];
        assert!(
            !stty.contains("-icanon") && !stty.contains(" -echo ") && !stty.contains("-opost"),
            "the terminal was not restored: {stty}"
        );
        assert!(
            !shown.contains("ready-for-password"),
            "the marker line is not shown: {shown}"
        );
        self.secrets
            .assert_absent("the interactive session's screen", &shown);
        format!("{shown}{errors}")
    }
}

/// Interactive sessions: commands and `quit`; Ctrl-C on a blocking command; SIGTERM to redisctl.
fn interactive(c: &Cluster) -> String {
    let mut shown = String::new();

    let mut t = Terminal::open(c, "redis-node-1c");
    t.typed(b"SET ik iv\r", "OK");
    t.typed(b"GET ik\r", "\"iv\"");
    t.keys.write_all(b"quit\r").unwrap();
    shown.push_str(&t.finish("exit=0"));
    let got = ok(c, &["redis-node-1a", "--", "GET", "ik"]);
    assert_eq!(got.lines().last(), Some("iv"), "{got}");
    // What was typed stays nowhere on the node (an `ACL SETUSER … >password` would).
    let histories = c.on_node(
        "10.0.3.10",
        "find / -xdev -name .rediscli_history 2>/dev/null | wc -l",
        "",
    );
    assert_eq!(
        histories.lines().next().map(str::trim),
        Some("0"),
        "a redis-cli history file was left: {histories}"
    );

    // Ctrl-C is a key for the node's terminal (raw mode here): it interrupts the blocking
    // command there, and the session goes on or ends as redis-cli decides.
    let mut t = Terminal::open(c, "redis-node-1b");
    t.keys.write_all(b"BLPOP nothing-here 0\r").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    t.keys.write_all(b"\x03").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    if !text(&t.screen.lock().unwrap()).contains("exit=") {
        t.keys.write_all(b"PING\r").unwrap();
        std::thread::sleep(Duration::from_secs(1));
        t.keys.write_all(b"quit\r").unwrap();
    }
    let screen = t.finish("exit=");
    assert!(
        screen.contains("^C"),
        "Ctrl-C went to the node's terminal: {screen}"
    );
    shown.push_str(&screen);

    // SIGTERM to redisctl: the session ends (143) and the terminal is restored.
    let t = Terminal::open(c, "redis-node-1a");
    let killed = Command::new("kill")
        .args(["-TERM", &t.pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    shown.push_str(&t.finish("exit=143"));
    shown
}

/// Removes the `redisctl:host-key` tag from every instance (the pins another operator or CI
/// would check against).
fn forget_host_key_tags() {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let ids: Vec<String> = ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag-key")
                    .values("redisctl:host-key")
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id().map(String::from))
            .collect();
        assert!(
            !ids.is_empty(),
            "apply tagged the instances with their host keys"
        );
        ec2.delete_tags()
            .set_resources(Some(ids))
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("redisctl:host-key")
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
}
