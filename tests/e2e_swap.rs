//! End-to-end: the EBS encryption swap (phase 8) in the sandbox, through real volume
//! directories — an unencrypted cluster with 10,000 keys encrypted in place; a swap killed
//! right after each of its stages (a sandbox hook: exactly there) and finished by a rerun;
//! `strategy = "swap"` from nothing; a rolling swap with replicas under a live writer whose every
//! acknowledged write is read back (with `--keep-old-volumes`), after a first run stopped by the
//! key count (a replica emptied behind its back); and a failed swap that keeps the plaintext root
//! and says how to roll back, then a run stopped by the key count (a key deleted behind its
//! back). Figures are printed as `figure:` lines. Run inside the sandbox's operator namespace:
//! `redisctl-sandbox exec -- cargo test -p redisctl --test e2e_swap -- --nocapture`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::data::dbsize_total;
use common::{ADMIN_PW, Cluster, IPS, text};
use redisctl_sandbox::faults::{Hook, Then};
use redisctl_sandbox::testing::Sandbox;

const KEYS: usize = 10_000;

fn write_keys(c: &Cluster) {
    common::data::write_keys(c, KEYS);
}

fn read_keys(c: &Cluster) {
    common::data::read_keys(c, KEYS);
}

struct Ec2 {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_ec2::Client,
}

#[derive(Debug)]
#[allow(dead_code)] // the id shows in failure messages
struct Vol {
    id: String,
    encrypted: bool,
    kms: Option<String>,
    attached: Option<String>,
}

impl Ec2 {
    fn new() -> Ec2 {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = rt.block_on(async {
            let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            aws_sdk_ec2::Client::new(&conf)
        });
        Ec2 { rt, client }
    }

    fn cluster_filter() -> aws_sdk_ec2::types::Filter {
        aws_sdk_ec2::types::Filter::builder()
            .name("tag:redisctl:cluster")
            .values("prod-redis")
            .build()
    }

    /// Every volume of the region (not only tagged ones: nothing may hide).
    fn volumes(&self) -> Vec<Vol> {
        self.rt.block_on(async {
            let out = self.client.describe_volumes().send().await.unwrap();
            out.volumes()
                .iter()
                .map(|v| Vol {
                    id: v.volume_id().unwrap().to_string(),
                    encrypted: v.encrypted().unwrap_or(false),
                    kms: v.kms_key_id().map(String::from),
                    attached: v
                        .attachments()
                        .iter()
                        .find_map(|a| a.instance_id().map(String::from)),
                })
                .collect()
        })
    }

    /// The cluster's snapshots (moto's images bring snapshots of their own, untagged).
    fn snapshots(&self) -> Vec<String> {
        self.rt.block_on(async {
            let out = self
                .client
                .describe_snapshots()
                .owner_ids("self")
                .filters(Self::cluster_filter())
                .send()
                .await
                .unwrap();
            out.snapshots()
                .iter()
                .map(|s| s.snapshot_id().unwrap().to_string())
                .collect()
        })
    }

    /// Node name -> swap stage tag, for the cluster's instances.
    fn stages(&self) -> Vec<(String, Option<String>)> {
        self.stages_by_instance()
            .into_iter()
            .map(|(_, node, stage)| (node, stage))
            .collect()
    }

    /// The node name and private IP of an instance.
    fn node_of(&self, instance: &str) -> (String, String) {
        self.rt.block_on(async {
            let out = self
                .client
                .describe_instances()
                .instance_ids(instance)
                .send()
                .await
                .unwrap();
            let i = &out.reservations()[0].instances()[0];
            let node = i
                .tags()
                .iter()
                .find(|t| t.key() == Some("redisctl:node"))
                .and_then(|t| t.value())
                .unwrap_or_default()
                .to_string();
            (node, i.private_ip_address().unwrap_or_default().to_string())
        })
    }

    /// (instance id, node name, swap stage tag) for the cluster's instances.
    fn stages_by_instance(&self) -> Vec<(String, String, Option<String>)> {
        self.rt.block_on(async {
            let out = self
                .client
                .describe_instances()
                .filters(Self::cluster_filter())
                .send()
                .await
                .unwrap();
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter(|i| {
                    i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated")
                })
                .map(|i| {
                    let t = |k: &str| {
                        i.tags()
                            .iter()
                            .find(|x| x.key() == Some(k))
                            .and_then(|x| x.value())
                            .map(String::from)
                    };
                    (
                        i.instance_id().unwrap_or_default().to_string(),
                        t("redisctl:node").unwrap_or_default(),
                        t("redisctl:stage"),
                    )
                })
                .collect()
        })
    }
}

/// Each node's root is encrypted with the spec's key; nothing plaintext is left.
fn assert_encrypted_and_clean(ec2: &Ec2) {
    let vols = ec2.volumes();
    assert_eq!(vols.len(), 3, "one volume per node, no leftovers: {vols:?}");
    for v in &vols {
        assert!(v.encrypted, "{v:?}");
        assert_eq!(v.kms.as_deref(), Some("alias/aws/ebs"), "{v:?}");
        assert!(v.attached.is_some(), "{v:?}");
    }
    assert_eq!(
        ec2.snapshots(),
        Vec::<String>::new(),
        "no plaintext snapshot left"
    );
    assert!(
        ec2.stages().iter().all(|(_, s)| s.is_none()),
        "no swap left in flight: {:?}",
        ec2.stages()
    );
}

fn figures(label: &str, out: &str) {
    for line in out.lines().filter(|l| {
        (l.starts_with("phase 8") && l.contains(" done in "))
            || l.contains("root_volume: replaced")
            || l.contains("Redis was down")
            || l.contains("swap done in")
            || l.contains("keys handed over")
            || l.contains("holds its master's")
            || l.contains("failover done in")
    }) {
        eprintln!("figure: {label}: {}", line.trim());
    }
}

fn unencrypted(t: String) -> String {
    t.replace("encrypted = true", "encrypted = false")
}

fn encrypted(t: String) -> String {
    t.replace("encrypted = false", "encrypted = true")
}

#[test]
fn an_unencrypted_cluster_is_encrypted_in_place_with_every_key() {
    let _sb = Sandbox::acquire();
    let ec2 = Ec2::new();
    let c = Cluster::new("swap", unencrypted);
    c.setup();
    assert!(ec2.volumes().iter().all(|v| !v.encrypted));
    let t = Instant::now();
    write_keys(&c);
    eprintln!(
        "figure: 10,000 keys written in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(dbsize_total(&c), KEYS as u64);

    c.edit(encrypted);
    let out = c.run(&["plan", "--detailed-exitcode"]);
    let plan = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{plan}");
    let steps: Vec<&str> = plan.lines().filter(|l| l.starts_with("-/+ ")).collect();
    assert_eq!(
        steps,
        [
            "-/+ node.redis-node-1a.root_volume {",
            "-/+ node.redis-node-1b.root_volume {",
            "-/+ node.redis-node-1c.root_volume {"
        ],
        "{plan}"
    );
    assert!(
        plan.contains("encryption forces replacement of the root volume"),
        "{plan}"
    );
    assert!(
        plan.contains("the whole cluster is unavailable during the root volume swap"),
        "{plan}"
    );

    let t = Instant::now();
    let out = c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: swap of 3 nodes (apply wall time): {:.1}s",
        t.elapsed().as_secs_f64()
    );
    figures("3 nodes, no replicas", &out);

    read_keys(&c);
    assert_eq!(dbsize_total(&c), KEYS as u64);
    assert_encrypted_and_clean(&ec2);
    for ip in IPS {
        let info = c.redis(ip, "CLUSTER INFO");
        assert!(info.contains("cluster_state:ok"), "{ip}: {info}");
    }
    assert_eq!(c.plan_exit(), 0, "after the swap the plan is empty");
    let verify = c.run(&["verify"]);
    eprintln!(
        "verify after the swap: exit {:?}\n{}",
        verify.status.code(),
        text(&verify.stdout)
    );
    assert!(verify.status.success(), "verify passes after the swap");
    c.ok(&["destroy", "--yes"]);
    common::account::assert_only_defaults("prod-redis", &[]);
    assert!(ec2.volumes().is_empty() && ec2.snapshots().is_empty());
}

/// The swap's stages as the instances record them (`redisctl:stage`), in order.
const STAGES: [&str; 7] = [
    "swap:0-prepared",
    "swap:1-stopped",
    "swap:2-snapshotted",
    "swap:3-volume-created",
    "swap:4-attached",
    "swap:5-started",
    "swap:6-verified",
];

/// An apply run with a sandbox hook made for its pid: the process is started gated (it waits
/// for a line on stdin), the hook added, then it goes, so the hook is in place before apply can
/// reach it; `during` runs while apply does (given the hook's id: to act at a hold and release
/// it). Returns the hook's id, the pid, how apply ended, its output and its wall time.
struct Hooked {
    hook: u64,
    pid: u32,
    status: std::process::ExitStatus,
    out: String,
    took: Duration,
}

fn apply_with_hook(
    c: &Cluster,
    sb: &Sandbox,
    args: &[&str],
    hook: impl FnOnce(u32) -> Hook,
    during: impl FnOnce(u64),
) -> Hooked {
    use std::io::Write;
    let dir = c.dir.join(format!("hooked-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (o, e) = (dir.join("stdout"), dir.join("stderr"));
    let spec = c.spec.to_str().unwrap();
    let mut argv = vec![
        "sh",
        "-c",
        "read go && exec \"$0\" \"$@\"",
        common::BIN,
        "apply",
        "--yes",
        "--config",
        spec,
    ];
    argv.extend_from_slice(args);
    let mut child = c
        .shell(&argv)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let id = sb.add_hook(hook(pid));
    let t = Instant::now();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    during(id);
    let status = child.wait().unwrap();
    let took = t.elapsed();
    let out = format!(
        "{}{}",
        std::fs::read_to_string(&o).unwrap(),
        std::fs::read_to_string(&e).unwrap()
    );
    Hooked {
        hook: id,
        pid,
        status,
        out,
        took,
    }
}

/// Holds apply's answer at the first CreateTags of `stage`, and runs `act` there with the node
/// (name, private IP) it is for; then lets apply go on. Returns how apply ended.
fn apply_acting_at(
    c: &Cluster,
    sb: &Sandbox,
    ec2: &Ec2,
    args: &[&str],
    stage: &str,
    act: impl FnOnce(&str, &str),
) -> Hooked {
    let hooked = apply_with_hook(
        c,
        sb,
        args,
        |_| Hook::hold_on_tag("CreateTags", "redisctl:stage", stage),
        |id| {
            let hook = sb.wait_hook(id, Duration::from_secs(900));
            let instance = hook.fired[0].resources[0].clone();
            let (node, ip) = ec2.node_of(&instance);
            eprintln!("held apply at {stage} of {node} ({ip}): {hook:?}");
            act(&node, &ip);
            assert_eq!(sb.release_hook(id), 1, "one request held");
        },
    );
    let fired = &sb.hook(hooked.hook).fired;
    assert!(
        fired.len() == 1 && fired[0].outcome.starts_with("released after"),
        "{fired:?}"
    );
    hooked
}

#[test]
fn a_swap_killed_after_each_stage_is_finished_by_a_rerun() {
    use std::os::unix::process::ExitStatusExt;
    let sb = Sandbox::acquire();
    let ec2 = Ec2::new();
    let c = Cluster::new("swapkill", unencrypted);
    let t = Instant::now();
    c.setup();
    write_keys(&c);
    eprintln!(
        "figure: kill test: cluster and {KEYS} keys ready in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    c.edit(encrypted);
    // One swap, carried on by successive applies: each is killed (SIGKILL) right after the first
    // node records the next stage (the tag written, apply never told), then the last step: the
    // tags removed once the plaintext is gone.
    let points: Vec<(&str, Option<&str>)> = STAGES
        .iter()
        .map(|s| ("CreateTags", Some(*s)))
        .chain([("DeleteTags", None)])
        .collect();
    let t_kills = Instant::now();
    for (i, (action, stage)) in points.iter().enumerate() {
        let what = stage.unwrap_or("done (swap tags removed)");
        let run = apply_with_hook(
            &c,
            &sb,
            &[],
            |pid| Hook::on_tag(action, "redisctl:stage", *stage, Then::Kill { pid }),
            |_| {},
        );
        // What the killed apply had sent is carried out to the end, as EC2 would have taken it
        // at once (the sandbox does machine actions one after another).
        let settled = sb.wait_idle(Duration::from_secs(120));
        let hook = sb.hook(run.hook);
        assert_eq!(
            run.status.signal(),
            Some(9),
            "apply was to be killed after {what}, but ended {}:\n{}\n{hook:?}",
            run.status,
            run.out
        );
        assert_eq!(hook.fired.len(), 1, "{hook:?}");
        let fired = &hook.fired[0];
        assert_eq!(fired.outcome, format!("killed pid {}", run.pid), "{hook:?}");
        assert_eq!(fired.value.as_deref(), *stage, "{hook:?}");
        let now = ec2.stages_by_instance();
        let (_, node, at) = now
            .iter()
            .find(|(id, _, _)| fired.resources == [id.clone()])
            .unwrap_or_else(|| panic!("the kill met an instance of the cluster: {hook:?} {now:?}"));
        // The node the kill met kept what the request did; no node went further in that run.
        assert_eq!(at.as_deref(), *stage, "{node}: {now:?}");
        if let Some(stage) = stage {
            assert!(
                now.iter()
                    .all(|(_, _, s)| s.as_deref().is_none_or(|s| s <= *stage)),
                "no node beyond {stage}: {now:?}"
            );
        }
        if i > 0 {
            assert!(
                run.out.contains("in flight"),
                "the apply after a kill continues the swap in flight:\n{}",
                run.out
            );
        }
        eprintln!(
            "figure: apply {} killed after {what} on {node} at {:.1}s (its requests done {} ms later); stages then: {:?}",
            i + 1,
            run.took.as_secs_f64(),
            settled.as_millis(),
            now.iter()
                .map(|(_, n, s)| format!("{n}={}", s.as_deref().unwrap_or("-")))
                .collect::<Vec<_>>()
        );
    }
    let kills = t_kills.elapsed();
    let t = Instant::now();
    let out = c.ok_within(&["apply", "--yes"], Duration::from_secs(600));
    eprintln!(
        "figure: {} kills in {:.1}s, then the rerun converged in {:.1}s",
        points.len(),
        kills.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    figures("rerun after kills", &out);
    read_keys(&c);
    assert_eq!(dbsize_total(&c), KEYS as u64, "no key lost, none added");
    assert_encrypted_and_clean(&ec2);
    assert_eq!(c.plan_exit(), 0);
    c.ok(&["destroy", "--yes"]);
}

#[test]
fn swap_strategy_from_nothing_creates_the_cluster_then_swaps() {
    let _sb = Sandbox::acquire();
    let ec2 = Ec2::new();
    let c = Cluster::new("swapnew", |t| {
        t.replace("strategy = \"at-launch\"", "strategy = \"swap\"")
    });
    let plan = text(&c.run(&["plan"]).stdout);
    let cluster_at = plan.find("> cluster {").expect("cluster create planned");
    let swap_at = plan
        .find("-/+ node.redis-node-1a.root_volume")
        .expect("swap planned");
    assert!(
        cluster_at < swap_at,
        "cluster create, then the swap:\n{plan}"
    );
    let t = Instant::now();
    let out = c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: apply from nothing with strategy = swap: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    figures("strategy = swap", &out);
    assert_encrypted_and_clean(&ec2);
    c.redis(IPS[0], "-c SET patient:1 kept");
    assert!(c.redis(IPS[2], "-c GET patient:1").contains("kept"));
    assert_eq!(c.plan_exit(), 0);
    c.ok(&["destroy", "--yes"]);
}

/// redis-cli from the operator's machine as the admin, with a client certificate, to `ip`.
fn operator_cli(tls: &[PathBuf; 3], ip: &str) -> Command {
    let mut c = Command::new("redis-cli");
    c.arg("--tls")
        .arg("--cacert")
        .arg(&tls[0])
        .arg("--cert")
        .arg(&tls[1])
        .arg("--key")
        .arg(&tls[2])
        .args([
            "-h",
            ip,
            "-p",
            "6379",
            "--user",
            "admin",
            "--no-auth-warning",
            "-c",
        ])
        .env("REDISCLI_AUTH", ADMIN_PW);
    c
}

/// What the live writer did: every write a node acknowledged (key, value), and the attempts
/// that failed.
struct Written {
    acked: Vec<(String, String)>,
    /// For each acknowledged key: when (UTC time of day) and what the client printed (the node
    /// it asked, the redirects it followed), to place a lost write among apply's steps.
    how: std::collections::HashMap<String, String>,
    failed: usize,
    /// The longest time writes kept failing.
    longest_failing: Duration,
    /// The longest an acknowledged write took (a paused write waits).
    slowest: Duration,
    /// That write's key.
    slowest_key: String,
    first_error: Option<String>,
}

/// A client outside the nodes writing continuously through any node that answers, each write
/// a new key with a value of its own, until `stop`.
fn writer(
    tls: [PathBuf; 3],
    ips: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Written> {
    std::thread::spawn(move || {
        let mut w = Written {
            acked: Vec::new(),
            how: std::collections::HashMap::new(),
            failed: 0,
            longest_failing: Duration::ZERO,
            slowest: Duration::ZERO,
            slowest_key: String::new(),
            first_error: None,
        };
        let run = format!("{:x}", std::process::id());
        let mut failing_since: Option<Instant> = None;
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let (key, value) = (format!("live:{n}"), format!("w{n}-{run}"));
            let t = Instant::now();
            let mut via = String::new();
            let ok = ips.iter().any(|ip| {
                let out = operator_cli(&tls, ip)
                    .args(["SET", &key, &value])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap_or_else(|e| panic!("redis-cli: {e}"));
                let said = text(&out.stdout);
                let ok = said.lines().last().map(str::trim) == Some("OK");
                via = format!("{ip}: {}", said.trim().replace('\n', " | "));
                if !ok && w.first_error.is_none() {
                    w.first_error = Some(format!(
                        "{ip}: {} {}",
                        text(&out.stdout).trim(),
                        text(&out.stderr).trim()
                    ));
                }
                ok
            });
            if ok {
                if t.elapsed() > w.slowest {
                    w.slowest = t.elapsed();
                    w.slowest_key = key.clone();
                }
                w.how.insert(
                    key.clone(),
                    format!(
                        "asked {} acknowledged {} {via}",
                        time_of_day(std::time::SystemTime::now() - t.elapsed()),
                        time_of_day(std::time::SystemTime::now())
                    ),
                );
                w.acked.push((key, value));
            }
            match (ok, failing_since) {
                (true, Some(t)) => {
                    w.longest_failing = w.longest_failing.max(t.elapsed());
                    failing_since = None;
                }
                (false, None) => {
                    w.failed += 1;
                    failing_since = Some(Instant::now());
                }
                (false, Some(_)) => w.failed += 1,
                (true, None) => {}
            }
            // Each write is a redis-cli process and a TLS handshake: paced, so that the writer
            // does not take a core of this 2-core machine from the nodes and redisctl.
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(t) = failing_since {
            w.longest_failing = w.longest_failing.max(t.elapsed());
        }
        w
    })
}

/// `HH:MM:SS.mmm` (UTC) of `t`, as apply's log lines and Redis's logs print it.
fn time_of_day(t: std::time::SystemTime) -> String {
    let ms = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Reads every acknowledged write back through the cluster (one cluster client, GETs in
/// order); the writes whose value is missing or different.
fn lost_writes(tls: &[PathBuf; 3], ip: &str, acked: &[(String, String)]) -> Vec<String> {
    use std::io::Write;
    let mut child = operator_cli(tls, ip)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // In slot order, so that the client follows few redirects (each is a new TLS connection).
    let mut acked = acked.to_vec();
    acked.sort_by_key(|(k, _)| redisctl::redis::keyspace::key_slot(k));
    let gets: String = acked.iter().map(|(k, _)| format!("GET {k}\n")).collect();
    let mut stdin = child.stdin.take().unwrap();
    let feed = std::thread::spawn(move || stdin.write_all(gets.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    feed.join().unwrap();
    // A cluster client says where it was redirected, on a line of its own.
    let got: Vec<String> = text(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("-> Redirected to slot"))
        .map(String::from)
        .collect();
    assert_eq!(
        got.len(),
        acked.len(),
        "one answer per GET: {}",
        text(&out.stderr)
    );
    acked
        .iter()
        .zip(&got)
        .filter(|((_, want), have)| want != *have)
        .map(|((k, want), have)| format!("{k}: wrote {want}, read {have:?}"))
        .collect()
}

/// Waits (bounded) until the node at `ip` sees the cluster whole.
fn wait_cluster_ok(c: &Cluster, ip: &str) {
    let start = Instant::now();
    loop {
        let info = c.redis(ip, "CLUSTER INFO");
        if info.contains("cluster_state:ok") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{ip} does not see the cluster whole:\n{info}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (bounded) until the replica at `ip` has its link to its master up and no sync going.
fn wait_in_sync(c: &Cluster, ip: &str) {
    let start = Instant::now();
    loop {
        let info = c.redis(ip, "INFO replication");
        if info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{ip} is not in sync with its master:\n{info}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn with_replicas_the_swap_rolls_with_a_failover_and_keeps_the_old_volumes_on_request() {
    let sb = Sandbox::acquire();
    let ec2 = Ec2::new();
    let six = |t: String| {
        // The writer below is a client on the operator's machine.
        let t = common::redis_open_to_operator(unencrypted(t))
            .replace("replicas_per_master = 0", "replicas_per_master = 1");
        common::derived_nodes(&t)
    };
    let c = Cluster::new("swaprep", six);
    let t = Instant::now();
    c.setup();
    write_keys(&c);
    eprintln!(
        "figure: 6 nodes and {KEYS} keys ready in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    c.edit(encrypted);
    let plan = text(&c.run(&["plan"]).stdout);
    assert_eq!(plan.matches("-/+ node.").count(), 6, "{plan}");
    assert!(plan.contains("one node at a time"), "{plan}");

    // The key count runs with replicas too: a node back on its encrypted disk must hold what its
    // master holds at the same replication offset. Here the first swapped node is emptied
    // behind the swap's back once it is back and in sync (apply held at its stage 5).
    let mut emptied = (String::new(), String::new());
    let t = Instant::now();
    let held = apply_acting_at(&c, &sb, &ec2, &[], "swap:5-started", |node, ip| {
        wait_in_sync(&c, ip);
        let keys = c.redis(ip, "DBSIZE");
        c.redis(ip, "CONFIG SET replica-read-only no");
        c.redis(ip, "FLUSHALL");
        c.redis(ip, "CONFIG SET replica-read-only yes");
        assert_eq!(c.redis(ip, "DBSIZE").trim(), "0", "{node} emptied");
        eprintln!(
            "emptied {node} ({ip}), a replica in sync holding {}",
            keys.trim()
        );
        emptied = (node.to_string(), ip.to_string());
    });
    let (node, ip) = emptied;
    eprintln!(
        "the swap stopped by the key count ({:.1}s):\n{}",
        t.elapsed().as_secs_f64(),
        held.out
            .lines()
            .filter(|l| l.starts_with("error") || l.contains("caused by"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!held.status.success(), "{}", held.out);
    assert!(
        held.out.contains(&format!(
            "root volume swap of node {node} stopped while verifying the cluster and the data (last stage done: swap:5-started)"
        )),
        "{}",
        held.out
    );
    assert!(
        held.out.contains(&format!(
            "node {node}: holds 0 keys after the swap, but its master "
        )),
        "{}",
        held.out
    );
    // Nothing else lost: every key reads back through the cluster (from the masters).
    read_keys(&c);
    // A restarted replica loads its master's data again; the swap then goes on.
    c.on_node(&ip, "systemctl restart redis-server@cluster", "");
    wait_in_sync(&c, &ip);

    let ips: Vec<String> = [
        "10.0.1.10",
        "10.0.2.10",
        "10.0.3.10",
        "10.0.1.11",
        "10.0.2.11",
        "10.0.3.11",
    ]
    .map(String::from)
    .to_vec();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The client authenticates with a node's certificate (it has clientAuth), copied here.
    let tls = [
        c.dir.join(".redisctl/prod-redis/ca.crt"),
        c.dir.join("client.crt"),
        c.dir.join("client.key"),
    ];
    for (path, remote) in [
        (&tls[1], "/etc/redis/tls/redis.crt"),
        (&tls[2], "/etc/redis/tls/redis.key"),
    ] {
        let pem = c.on_node(IPS[0], &format!("cat {remote}"), "");
        assert!(pem.contains("-----BEGIN"), "{remote}");
        std::fs::write(path, pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let w = writer(tls.clone(), ips.clone(), stop.clone());
    let t = Instant::now();
    let out = c.ok(&["apply", "--yes", "--keep-old-volumes"]);
    eprintln!(
        "figure: rolling swap of 6 nodes (3 masters + 3 replicas), continued after the stop: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let w = w.join().unwrap();
    figures("6 nodes, replicas", &out);
    let t = Instant::now();
    let lost = lost_writes(&tls, &ips[0], &w.acked);
    eprintln!(
        "figure: a client writing during the rolling swap: {} writes acknowledged, {} attempts failed (first: {}), longest failing stretch {:.2}s, slowest acknowledged write {:.2}s ({} {}); all read back in {:.1}s: {} lost or changed",
        w.acked.len(),
        w.failed,
        w.first_error.as_deref().unwrap_or("none"),
        w.longest_failing.as_secs_f64(),
        w.slowest.as_secs_f64(),
        w.slowest_key,
        w.how.get(&w.slowest_key).map(String::as_str).unwrap_or(""),
        t.elapsed().as_secs_f64(),
        lost.len()
    );
    assert!(!w.acked.is_empty(), "the writer could write at all");
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost or changed, e.g. {:?}\n{}\napply said:\n{out}\n{}",
        lost.len(),
        w.acked.len(),
        &lost[..lost.len().min(10)],
        lost.iter()
            .take(10)
            .filter_map(|l| {
                let key = l.split(':').take(2).collect::<Vec<_>>().join(":");
                Some(format!("{key}: {}", w.how.get(&key)?))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        c.redis_log_tails()
    );
    assert!(
        w.longest_failing < Duration::from_secs(5),
        "no write fails for longer than a failover: {:?}",
        w.longest_failing
    );
    // No failover was asked of a replica whose last election Redis still remembered.
    c.assert_no_stale_election_win();
    // Every failover (each node that is a master when its turn comes hands over: a replica
    // promoted earlier in the roll too) had its keys counted on both sides, and each swapped
    // node, a replica by then, was compared with its master.
    let both = format!("{}{out}", held.out);
    let failovers = both.matches("failover done in").count();
    assert!(failovers >= 3, "one failover per master at least:\n{both}");
    assert_eq!(
        both.matches("keys handed over").count(),
        failovers,
        "{both}"
    );
    assert_eq!(out.matches("holds its master's").count(), 6, "{out}");
    eprintln!("figure: {failovers} failovers in the rolling swap of 6 nodes, each counted");
    read_keys(&c);

    // Every root encrypted; the plaintext ones kept, detached and tagged for a rollback.
    let vols = ec2.volumes();
    let roots: Vec<&Vol> = vols.iter().filter(|v| v.attached.is_some()).collect();
    assert_eq!(roots.len(), 6, "{vols:?}");
    assert!(roots.iter().all(|v| v.encrypted), "{vols:?}");
    assert_eq!(
        vols.iter()
            .filter(|v| !v.encrypted && v.attached.is_none())
            .count(),
        6,
        "{vols:?}"
    );
    assert_eq!(ec2.snapshots().len(), 6, "kept snapshots");
    let plan = c.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));
    assert!(text(&plan.stdout).contains("kept for a rollback"));
    c.ok(&["destroy", "--yes"]);
    assert!(ec2.volumes().is_empty(), "{:?}", ec2.volumes());
    assert!(ec2.snapshots().is_empty());
}

/// For each of the cluster's plaintext snapshots: a second snapshot of the same volume with the
/// same tags, and two encrypted volumes from it tagged as the swap tags its new root. Returns
/// how many snapshots were so copied.
fn inject_strays(ec2: &Ec2) -> usize {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification, VolumeType};
    let spec = |kind: ResourceType, tags: &[Tag]| {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tags.to_vec()))
            .build()
    };
    ec2.rt.block_on(async {
        let c = &ec2.client;
        let snaps = c
            .describe_snapshots()
            .owner_ids("self")
            .filters(Ec2::cluster_filter())
            .send()
            .await
            .unwrap();
        for s in snaps.snapshots() {
            let vol = s.volume_id().unwrap();
            let az = c
                .describe_volumes()
                .volume_ids(vol)
                .send()
                .await
                .unwrap()
                .volumes()[0]
                .availability_zone()
                .unwrap()
                .to_string();
            c.create_snapshot()
                .volume_id(vol)
                .tag_specifications(spec(ResourceType::Snapshot, s.tags()))
                .send()
                .await
                .unwrap();
            let node = s
                .tags()
                .iter()
                .find(|t| t.key() == Some("redisctl:node"))
                .and_then(|t| t.value())
                .unwrap();
            let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
            let tags = [
                tag("redisctl:cluster", "prod-redis"),
                tag("redisctl:role", "volume"),
                tag("redisctl:node", node),
            ];
            for _ in 0..2 {
                c.create_volume()
                    .snapshot_id(s.snapshot_id().unwrap())
                    .availability_zone(&az)
                    .volume_type(VolumeType::Gp3)
                    .encrypted(true)
                    .kms_key_id("alias/aws/ebs")
                    .tag_specifications(spec(ResourceType::Volume, &tags))
                    .send()
                    .await
                    .unwrap();
            }
        }
        snaps.snapshots().len()
    })
}

#[test]
fn a_failed_swap_leaves_the_plaintext_volume_untouched_and_says_how_to_roll_back() {
    // (Also: a key deleted behind the swap's back stops it at the key count.)
    use redisctl_sandbox::faults::{Effect, Fault};
    let sb = Sandbox::acquire();
    let ec2 = Ec2::new();
    let c = Cluster::new("swapfail", unencrypted);
    c.setup();
    write_keys(&c);
    c.edit(encrypted);
    // AWS refuses the encrypted volume (stage 3) for every node.
    sb.add_fault(Fault {
        action: "CreateVolume".into(),
        effect: Effect::Error {
            code: "InvalidParameterValue".into(),
            status: 400,
        },
        times: Some(3),
        rate: None,
        fired: 0,
    });
    let out = c.run(&["apply", "--yes"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    eprintln!(
        "the failed swap says:\n{}",
        err.lines()
            .filter(|l| l.starts_with("error")
                || l.contains("caused by")
                || l.contains("what to do"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(err.contains("root volume swap of node"), "{err}");
    assert!(err.contains("while creating the encrypted volume"), "{err}");
    assert!(err.contains("last stage done: swap:2-snapshotted"), "{err}");
    assert!(err.contains("is untouched"), "{err}");
    assert!(err.contains("docs/runbook.md"), "{err}");
    // The plaintext roots are still attached; nothing was detached or deleted.
    let vols = ec2.volumes();
    assert_eq!(vols.len(), 3, "{vols:?}");
    assert!(
        vols.iter().all(|v| !v.encrypted && v.attached.is_some()),
        "{vols:?}"
    );
    assert_eq!(
        ec2.snapshots().len(),
        3,
        "the snapshots are kept for the rerun"
    );
    // What the orphaned requests of a killed run can leave (see `Aws::swap_strays`): per node a
    // second snapshot of the plaintext root and two encrypted volumes made from its snapshot.
    // The rerun adopts one volume and must remove every other copy.
    assert_eq!(inject_strays(&ec2), 3);
    common::eventually("6 snapshots and 9 volumes listed", || {
        ec2.snapshots().len() == 6 && ec2.volumes().len() == 9
    });
    // The cause gone, a rerun continues from the recorded stage.
    sb.clear_faults();
    let plan = text(&c.run(&["plan"]).stdout);
    assert_eq!(plan.matches("in flight").count(), 3, "{plan}");
    // Behind its back, a key of the first node back on its encrypted disk is deleted once the
    // cluster is whole again (apply held at that node's stage 5): the node's key count, taken
    // before the stop, stops its swap.
    let mut deleted = Default::default();
    let held = apply_acting_at(&c, &sb, &ec2, &[], "swap:5-started", |node, ip| {
        wait_cluster_ok(&c, ip);
        let key = c.redis(ip, "RANDOMKEY").trim().to_string();
        let value = c.redis(ip, &format!("GET {key}")).trim().to_string();
        assert_eq!(c.redis(ip, &format!("DEL {key}")).trim(), "1", "{key}");
        eprintln!("deleted {key} on {node} ({ip})");
        deleted = (node.to_string(), ip.to_string(), key, value);
    });
    let (node, ip, key, value) = deleted;
    let err = held
        .out
        .lines()
        .filter(|l| l.contains("caused by") || l.starts_with("error"));
    eprintln!(
        "the swap stopped by the key count:\n{}",
        err.collect::<Vec<_>>().join("\n")
    );
    assert!(!held.status.success(), "{}", held.out);
    assert!(
        held.out.contains(&format!(
            "root volume swap of node {node} stopped while verifying the cluster and the data (last stage done: swap:5-started)"
        )),
        "{}",
        held.out
    );
    let counts = held
        .out
        .split_once(" keys after the swap but held ")
        .map(|(a, b)| (a.rsplit(' ').next().unwrap_or(""), b.split(' ').next()))
        .and_then(|(after, before)| {
            Some((after.parse::<u64>().ok()?, before?.parse::<u64>().ok()?))
        });
    let Some((after, before)) = counts else {
        panic!("no key-count error:\n{}", held.out)
    };
    assert_eq!(after + 1, before, "one key less than before the stop");
    // Nothing else is lost: the key put back, the rerun finishes the swap with every key.
    assert_eq!(c.redis(&ip, &format!("SET {key} {value}")).trim(), "OK");
    let out = c.ok(&["apply", "--yes"]);
    let both = format!("{}{out}", held.out);
    assert_eq!(
        both.matches("removing a stray volume").count(),
        3,
        "one of the two injected volumes per node is adopted, the other removed:\n{both}"
    );
    assert_eq!(
        both.matches("removing a stray plaintext snapshot").count(),
        3,
        "{both}"
    );
    read_keys(&c);
    assert_eq!(dbsize_total(&c), KEYS as u64);
    assert_encrypted_and_clean(&ec2);
    assert_eq!(c.plan_exit(), 0);
    c.ok(&["destroy", "--yes"]);
}
