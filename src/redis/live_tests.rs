//! A real Redis Cluster on loopback, built from what this module renders and from `pki`
//! certificates: the check that the real redis-server 7.0.15 accepts the configuration and
//! the ACL file, that the cluster forms over mutual TLS, that replicas authenticate with the
//! replication user, and that the parsers read what the real server prints.
//!
//! It runs Debian 12's redis-server and redis-cli, `/usr/bin/redis-server` and
//! `/usr/bin/redis-cli` (packages redis-server and redis-tools; `scripts/test` installs them
//! without starting the stock service), or the binaries `REDISCTL_TEST_REDIS_SERVER` and
//! `REDISCTL_TEST_REDIS_CLI` name. Where neither is there it is skipped with a printed note,
//! except under CI (`CI` set), where a missing binary fails it. Without the package installed:
//!
//! ```text
//! apt-get download redis-server redis-tools && dpkg-deb -x redis-server_*.deb x \
//!   && dpkg-deb -x redis-tools_*.deb x
//! REDISCTL_TEST_REDIS_SERVER=$PWD/x/usr/bin/redis-server \
//! REDISCTL_TEST_REDIS_CLI=$PWD/x/usr/bin/redis-cli \
//!   cargo test -p redisctl --lib live_ -- --nocapture
//! ```
//!
//! Set `REDISCTL_CAPTURE_DIR` to keep the raw redis-cli output (the parse tests' samples came
//! from there). Only 127.0.0.0/8 is used, on fixed ports: runs on one machine take turns on a
//! lock file. Every process started is killed by its PID at the end, also when the test fails.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::pki::{Ca, node_sans};
use crate::redis::conf::{self, ReplicationAuth};
use crate::redis::{parse, test_spec, users_acl};
use crate::spec::secrets::Secret;
use crate::spec::{Node, Spec};

const BASE_PORT: u16 = 17_101;
const NODES: usize = 6;

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Env {
    dir: PathBuf,
    cli: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Env {
    /// redis-cli over TLS as `user`, password in REDISCLI_AUTH (never on the command line).
    fn cli(
        &self,
        port: u16,
        user: Option<(&str, &Secret)>,
        cluster: bool,
        args: &[&str],
    ) -> (bool, String) {
        let mut cmd = Command::new(&self.cli);
        cmd.args(["--tls", "--cacert"])
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()]);
        if cluster {
            cmd.arg("-c");
        }
        cmd.env_remove("REDISCLI_AUTH");
        if let Some((u, pw)) = user {
            cmd.args(["--user", u]).env("REDISCLI_AUTH", pw.expose());
        }
        let out = cmd.args(args).output().expect("run redis-cli");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// A redis-cli kept open as `user` (one connection, commands on its stdin, one answer line
    /// each), to see whether a connection outlives a change.
    fn held(&self, port: u16, user: &str, pw: &Secret) -> Held {
        // Its errors ("Server closed the connection") on stdout too, as one answer line.
        let mut child = Command::new("sh")
            .args(["-c", "exec \"$0\" \"$@\" 2>&1", &self.cli])
            .args(["--tls", "--cacert"])
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--user", user])
            .arg("--no-auth-warning")
            .env("REDISCLI_AUTH", pw.expose())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run redis-cli");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        Held { child, out }
    }

    /// [`users_acl::live_load_script`] run here with `sh`, as the operator user `admin`.
    fn live_load(&self, port: u16, admin: &Secret, acl: &Path) {
        let (ok, stderr) = self.try_live_load(port, admin, acl);
        assert!(ok, "the live load failed: {stderr}");
    }

    /// [`Env::live_load`] that may fail: whether it succeeded, and what it said on stderr.
    fn try_live_load(&self, port: u16, admin: &Secret, acl: &Path) -> (bool, String) {
        let cli = format!(
            "{} --tls --cacert {} --cert {} --key {} -h 127.0.0.1 -p {port} --user admin --no-auth-warning",
            crate::ssh::sh_quote(&self.cli),
            crate::ssh::sh_quote(&self.ca.to_string_lossy()),
            crate::ssh::sh_quote(&self.cert.to_string_lossy()),
            crate::ssh::sh_quote(&self.key.to_string_lossy()),
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(users_acl::live_load_script(&cli, &acl.to_string_lossy()))
            .env("REDISCLI_AUTH", admin.expose())
            .output()
            .expect("run sh");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn capture(&self, name: &str, text: &str) {
        if let Some(d) = std::env::var_os("REDISCTL_CAPTURE_DIR") {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(Path::new(&d).join(name), text).unwrap();
        }
        let _ = &self.dir;
    }
}

struct Held {
    child: Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Held {
    fn send(&mut self, command: &str) -> String {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn loopback_spec() -> Spec {
    let mut spec = test_spec::reference();
    spec.nodes.replicas_per_master = 1;
    spec.nodes.nodes = (0..NODES)
        .map(|i| Node {
            name: format!("n{}", i + 1),
            subnet: "lo".into(),
            az: "lo".into(),
            private_ip: Ipv4Addr::new(127, 0, 0, 2 + i as u8),
        })
        .collect();
    spec
}

/// Point the rendered absolute paths at the node's temp directory.
fn localize(conf: &str, node_dir: &Path, acl: &Path) -> String {
    let d = node_dir.display();
    conf.replace("/etc/redis/tls/", &format!("{d}/tls/"))
        .replace(users_acl::USERS_ACL.path, &acl.display().to_string())
        .replace(conf::DATA_DIR, &format!("{d}/data"))
        .replace(conf::PID_FILE, &format!("{d}/redis.pid"))
        .replace(conf::LOG_FILE, &format!("{d}/redis.log"))
}

/// Debian 12's binaries (packages redis-server and redis-tools).
const DEBIAN_SERVER: &str = "/usr/bin/redis-server";
const DEBIAN_CLI: &str = "/usr/bin/redis-cli";

/// Which binaries the live test runs, from the environment (`REDISCTL_TEST_REDIS_SERVER`,
/// `REDISCTL_TEST_REDIS_CLI`, `CI`) and whether Debian's server is installed: `Ok(None)` skips
/// (the note to print), an error fails the test.
fn binaries(
    server_env: Option<String>,
    cli_env: Option<String>,
    ci: bool,
    debian_server_installed: bool,
) -> Result<Result<(String, String), String>, String> {
    let cli = cli_env.unwrap_or_else(|| DEBIAN_CLI.into());
    match server_env {
        Some(server) => Ok(Ok((server, cli))),
        None if debian_server_installed => Ok(Ok((DEBIAN_SERVER.into(), cli))),
        None if ci => Err(format!(
            "{DEBIAN_SERVER} is missing under CI: scripts/test installs the redis-server package (see src/redis/live_tests.rs)"
        )),
        None => Ok(Err(format!(
            "skipped: {DEBIAN_SERVER} is not installed and REDISCTL_TEST_REDIS_SERVER is not set (see src/redis/live_tests.rs)"
        ))),
    }
}

#[test]
fn binaries_skip_only_outside_ci_and_only_without_a_server() {
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        binaries(None, None, false, true),
        Ok(Ok((DEBIAN_SERVER.into(), DEBIAN_CLI.into())))
    );
    assert_eq!(
        binaries(some("/x/redis-server"), some("/x/redis-cli"), true, false),
        Ok(Ok(("/x/redis-server".into(), "/x/redis-cli".into())))
    );
    assert!(
        matches!(binaries(None, None, false, false), Ok(Err(note)) if note.contains("skipped"))
    );
    assert!(binaries(None, None, true, false).is_err());
}

/// Held for the whole test: the nodes listen on fixed ports of 127.0.0.1.
fn machine_lock() -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::create(std::env::temp_dir().join("redisctl-live-tests.lock")).unwrap();
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    f
}

#[test]
fn live_tls_acl_cluster_on_loopback() {
    let chosen = binaries(
        std::env::var("REDISCTL_TEST_REDIS_SERVER").ok(),
        std::env::var("REDISCTL_TEST_REDIS_CLI").ok(),
        std::env::var_os("CI").is_some_and(|v| !v.is_empty()),
        Path::new(DEBIAN_SERVER).exists(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (server, cli) = match chosen {
        Ok(b) => b,
        Err(note) => {
            // Past the test harness's capture, so that a skip shows in every run's output.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "live_tls_acl_cluster_on_loopback {note}");
            return;
        }
    };
    let _lock = machine_lock();
    let dir = std::env::temp_dir().join(format!("redisctl-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let now = SystemTime::now();

    let base = loopback_spec();
    let secrets: Vec<(String, Secret)> = ["admin", "app", "dev"]
        .iter()
        .map(|u| {
            (
                u.to_string(),
                Secret::new(format!("{u}-live-pw-{}", std::process::id())),
            )
        })
        .collect();
    let pw = |u: &str| secrets.iter().find(|(n, _)| n == u).unwrap().1.clone();
    let (ca, _) = Ca::load_or_create(&dir.join("state"), "live", now, 30).unwrap();
    let repl = ca.derive_secret(users_acl::REPLICATION_SECRET_LABEL);
    let client = ca.issue_client("admin", now, 1).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
    std::fs::write(dir.join("client.crt"), &client.cert_pem).unwrap();
    std::fs::write(dir.join("client.key"), client.key_pem.expose()).unwrap();
    let acl_path = dir.join("users.acl");
    std::fs::write(
        &acl_path,
        users_acl::render(&base, &secrets, std::slice::from_ref(&repl)).unwrap(),
    )
    .unwrap();

    let mut procs = Procs(Vec::new());
    let mut endpoints = Vec::new();
    for (i, node) in base.nodes.nodes.iter().enumerate() {
        let mut spec = base.clone();
        spec.redis.port = BASE_PORT + i as u16;
        let nd = dir.join(&node.name);
        std::fs::create_dir_all(nd.join("tls")).unwrap();
        std::fs::create_dir_all(nd.join("data")).unwrap();
        let issued = ca
            .issue_node(&node.name, &node_sans(node.private_ip), now, 1)
            .unwrap();
        std::fs::write(nd.join("tls/redis.crt"), &issued.cert_pem).unwrap();
        std::fs::write(nd.join("tls/redis.key"), issued.key_pem.expose()).unwrap();
        std::fs::write(nd.join("tls/ca.crt"), ca.cert_pem()).unwrap();
        let rendered = conf::render(
            &spec,
            node,
            Some(ReplicationAuth {
                user: users_acl::REPLICATION_USER,
                password: &repl,
            }),
        );
        let conf_path = nd.join("redis-cluster.conf");
        std::fs::write(&conf_path, localize(&rendered, &nd, &acl_path)).unwrap();
        // As the unit runs it (minus systemd itself).
        let child = Command::new(&server)
            .arg(&conf_path)
            .args(["--supervised", "systemd", "--daemonize", "no"])
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        procs.0.push(child);
        endpoints.push(format!("{}:{}", node.private_ip, spec.redis.port));
    }

    let env = Env {
        dir: dir.clone(),
        cli,
        ca: dir.join("ca.crt"),
        cert: dir.join("client.crt"),
        key: dir.join("client.key"),
    };
    let admin = pw("admin");
    for i in 0..NODES {
        let port = BASE_PORT + i as u16;
        wait_for(
            &format!("node {} to answer PING", i + 1),
            Duration::from_secs(15),
            || {
                env.cli(port, Some(("admin", &admin)), false, &["PING"])
                    .1
                    .contains("PONG")
            },
        );
    }

    // The default user is off; plaintext is refused (there is no plaintext port at all).
    let (_, out) = env.cli(BASE_PORT, None, false, &["GET", "x"]);
    assert!(out.contains("NOAUTH") || out.contains("NOPERM"), "{out}");
    let plain = Command::new(&env.cli)
        .args(["-h", "127.0.0.1", "-p", &BASE_PORT.to_string(), "PING"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("PONG"));

    // Cluster create, as the executor runs it: password in REDISCLI_AUTH.
    let mut args: Vec<&str> = vec!["--cluster", "create"];
    args.extend(endpoints.iter().map(String::as_str));
    args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
    let (ok, out) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &args);
    env.capture("cluster-create.txt", &out);
    assert!(ok && out.contains("All 16384 slots covered"), "{out}");

    let mut info = None;
    wait_for(
        "cluster_state:ok with 6 nodes",
        Duration::from_secs(30),
        || {
            let (_, out) = env.cli(
                BASE_PORT,
                Some(("admin", &admin)),
                false,
                &["CLUSTER", "INFO"],
            );
            let i = parse::cluster_info(&out).ok();
            let done = i
                .as_ref()
                .is_some_and(|i| i.state_ok() && i.known_nodes == 6 && i.slots_ok == 16384);
            if done {
                env.capture("cluster-info.txt", &out);
                info = i;
            }
            done
        },
    );
    let info = info.unwrap();
    assert_eq!(info.size, 3);

    // Replicas authenticated as the replication user and are in sync (the rendered
    // configuration starts a diskless sync at once: repl-diskless-sync-delay 0).
    let mut replica_ports = Vec::new();
    wait_for(
        "3 replicas in CLUSTER NODES",
        Duration::from_secs(30),
        || {
            let (_, out) = env.cli(
                BASE_PORT,
                Some(("admin", &admin)),
                false,
                &["CLUSTER", "NODES"],
            );
            let nodes = parse::cluster_nodes(&out).unwrap();
            let ok = nodes.iter().filter(|n| n.is_replica()).count() == 3
                && nodes.iter().all(|n| n.link_connected && !n.is_failing());
            if ok {
                env.capture("cluster-nodes.txt", &out);
                replica_ports = nodes
                    .iter()
                    .filter(|n| n.is_replica())
                    .map(|n| n.port)
                    .collect();
            }
            ok
        },
    );
    for port in replica_ports {
        let mut last = String::new();
        wait_for(
            &format!("replica on port {port} to sync"),
            Duration::from_secs(30),
            || {
                let (_, out) = env.cli(
                    port,
                    Some(("admin", &admin)),
                    false,
                    &["INFO", "replication"],
                );
                let sections = parse::info(&out);
                let r = sections.get("Replication").cloned().unwrap_or_default();
                last = out;
                r.get("role").map(String::as_str) == Some("slave")
                    && r.get("master_link_status").map(String::as_str) == Some("up")
            },
        );
        env.capture("info-replication-replica.txt", &last);
    }
    let (_, out) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &["INFO"]);
    env.capture("info.txt", &out);
    let all = parse::info(&out);
    assert_eq!(all["Server"]["redis_version"], "7.0.15");
    assert_eq!(all["Cluster"]["cluster_enabled"], "1");

    let (_, out) = env.cli(
        BASE_PORT,
        Some(("admin", &admin)),
        false,
        &["--cluster", "check", &endpoints[0]],
    );
    env.capture("cluster-check.txt", &out);
    let check = parse::cluster_check(&out);
    assert!(check.ok(), "{out}");
    assert_eq!(check.slots_covered, Some(16384));

    // The roles: app writes its keys and nothing dangerous; dev reads only.
    let app = pw("app");
    let (_, out) = env.cli(
        BASE_PORT,
        Some(("app", &app)),
        true,
        &["SET", "patient:12345", "x"],
    );
    assert!(out.contains("OK"), "{out}");
    let (_, out) = env.cli(
        BASE_PORT,
        Some(("app", &app)),
        true,
        &["SET", "other:1", "x"],
    );
    assert!(out.contains("NOPERM"), "{out}");
    let (_, out) = env.cli(BASE_PORT, Some(("app", &app)), false, &["FLUSHALL"]);
    assert!(out.contains("NOPERM"), "{out}");
    let (_, out) = env.cli(BASE_PORT, Some(("app", &app)), false, &["CLUSTER", "SLOTS"]);
    assert!(!out.contains("NOPERM"), "{out}");
    let dev = pw("dev");
    let (_, out) = env.cli(
        BASE_PORT,
        Some(("dev", &dev)),
        true,
        &["GET", "patient:12345"],
    );
    assert!(out.contains('x'), "{out}");
    let (_, out) = env.cli(
        BASE_PORT,
        Some(("dev", &dev)),
        true,
        &["SET", "patient:1", "y"],
    );
    assert!(out.contains("NOPERM"), "{out}");

    let (_, out) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &["ACL", "LIST"]);
    env.capture("acl-list.txt", &out);
    assert!(out.contains("user default off"), "{out}");
    for (_, s) in &secrets {
        assert!(!out.contains(s.expose()));
    }

    // The dry run accepts the spec's rules and catches what ACL LOAD would refuse.
    let app_user = base.users.iter().find(|u| u.name == "app").unwrap();
    let args = users_acl::dry_run_args(app_user);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &refs);
    assert_eq!(out.trim(), "OK");
    let mut bad = app_user.clone();
    bad.commands
        .push(crate::redis::acl::CommandRule::parse("+getx").unwrap());
    let args = users_acl::dry_run_args(&bad);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &refs);
    assert!(out.contains("ERR"), "{out}");
    let args = users_acl::dry_run_cleanup_args("app");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &refs);
    assert_eq!(out.trim(), "1");

    // An ACL change is set live from the written file (users_acl::live_load_script), no
    // restart: a connection logged in as a user that stays keeps working (ACL LOAD would
    // close it), a user the server has and the file does not is deleted, and a user the file
    // turns off loses its connections.
    let mut held = env.held(BASE_PORT, "dev", &dev);
    assert_eq!(held.send("PING"), "PONG");
    let (_, out) = env.cli(
        BASE_PORT,
        Some(("admin", &admin)),
        false,
        &["ACL", "SETUSER", "intruder", "on", "nopass", "+@all", "~*"],
    );
    assert_eq!(out.trim(), "OK");
    let mut changed = base.clone();
    changed
        .users
        .iter_mut()
        .find(|u| u.name == "dev")
        .unwrap()
        .commands
        .push(crate::redis::acl::CommandRule::parse("+set").unwrap());
    // Patterns with a quote and a backslash: Redis splits the file's lines at spaces only,
    // redis-cli's input is quoted; both must give the same user.
    changed
        .users
        .iter_mut()
        .find(|u| u.name == "dev")
        .unwrap()
        .keys = vec![
        "patient:*".to_string(),
        "q\"uote:*".to_string(),
        "back\\slash:*".to_string(),
    ];
    std::fs::write(
        &acl_path,
        users_acl::render(&changed, &secrets, std::slice::from_ref(&repl)).unwrap(),
    )
    .unwrap();
    env.live_load(BASE_PORT, &admin, &acl_path);
    assert_eq!(
        held.send("PING"),
        "PONG",
        "the held connection of dev survives the change"
    );
    assert!(
        !held.send("SET patient:12345 z").contains("NOPERM"),
        "the new rule is in force on the held connection"
    );
    let (_, out) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &["ACL", "USERS"]);
    assert!(
        !out.contains("intruder"),
        "a user the file lacks is deleted: {out}"
    );
    // What ACL LOAD of the same file would have made: the same users and rules.
    let (_, live) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &["ACL", "LIST"]);
    let (_, out) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &["ACL", "LOAD"]);
    assert_eq!(out.trim(), "OK");
    let (_, loaded) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &["ACL", "LIST"]);
    // `ACL SETUSER … reset` also sets `sanitize-payload`, which is what a user without the flag
    // gets too (RESTORE payloads sanitized when `sanitize-dump-payload` says so): the same.
    assert_eq!(
        live.replace(" sanitize-payload", ""),
        loaded,
        "the server's users are the file's"
    );
    drop(held);
    let mut held = env.held(BASE_PORT, "dev", &dev);
    assert_eq!(held.send("PING"), "PONG");
    let (_, out) = env.cli(
        BASE_PORT,
        Some(("dev", &dev)),
        false,
        &["SET", "patient:12345", "z"],
    );
    assert!(!out.contains("NOPERM"), "{out}");
    // A file whose rules Redis refuses (a pattern after `*`): the step fails with Redis's
    // answer, and the users in force stay as they were (the refused SETUSER changes nothing,
    // ACL LOAD of the same file is refused too), the held connection with them.
    let (_, before) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &["ACL", "LIST"]);
    let mut refused = changed.clone();
    refused
        .users
        .iter_mut()
        .find(|u| u.name == "dev")
        .unwrap()
        .keys = vec!["*".to_string(), "x:*".to_string()];
    std::fs::write(
        &acl_path,
        users_acl::render(&refused, &secrets, std::slice::from_ref(&repl)).unwrap(),
    )
    .unwrap();
    let (ok, said) = env.try_live_load(BASE_PORT, &admin, &acl_path);
    assert!(!ok, "{said}");
    assert!(
        said.contains("ACL SETUSER from the ACL file: 5 of 6 users set")
            && said.contains("Adding a pattern after the * pattern")
            && said.contains("ACL LOAD then answered: ERR"),
        "{said}"
    );
    let (_, after) = env.cli(BASE_PORT, Some(("admin", &admin)), false, &["ACL", "LIST"]);
    // (The users set again keep their rules; `reset` adds `sanitize-payload`, the same.)
    assert_eq!(
        before.replace(" sanitize-payload", ""),
        after.replace(" sanitize-payload", ""),
        "the users in force are unchanged"
    );
    assert_eq!(held.send("PING"), "PONG");
    // dev turned off: its held connection is closed, a new login refused.
    changed
        .users
        .iter_mut()
        .find(|u| u.name == "dev")
        .unwrap()
        .enabled = false;
    std::fs::write(
        &acl_path,
        users_acl::render(&changed, &secrets, std::slice::from_ref(&repl)).unwrap(),
    )
    .unwrap();
    env.live_load(BASE_PORT, &admin, &acl_path);
    assert!(
        held.send("PING").contains("closed"),
        "a disabled user keeps no connection"
    );
    let (_, out) = env.cli(BASE_PORT, Some(("dev", &dev)), false, &["PING"]);
    assert!(!out.contains("PONG"), "{out}");
    let (_, out) = env.cli(BASE_PORT, Some(("app", &app)), false, &["PING"]);
    assert_eq!(out.trim(), "PONG");
    drop(held);

    drop(procs);
    std::fs::remove_dir_all(&dir).unwrap();
}
