//! End-to-end: a running cluster's shape changed by the spec, with an application writing and
//! reading through it the whole time (redis-py's RedisCluster as the app user, over TLS with a
//! client certificate). 3 → 4 masters: a node is created, joins, and slots move to it from
//! the three others; 4 → 6 masters with the apply killed (SIGKILL) while slots move, then run
//! again; 0 → 1 replica per master: six nodes join as replicas, each of a master in another
//! AZ. Then it shrinks: 6 × 1 → 3 × 1 (six replicas leave and are terminated, three masters
//! hand their slots over and become replicas; killed while slots move, then run again),
//! 1 → 2 replicas (three more join, each master then has one in each other AZ) and 2 → 0
//! replicas (the six replicas leave). After each: every write the client saw
//! acknowledged reads back (0 lost), the failed requests and the longest gap are printed,
//! `verify` passes and `plan` shows no changes. A second test parts masters that failovers by
//! hand left sharing an AZ, asking the failover of a node that won an election moments ago
//! only once Redis has forgotten it.
//! Run inside the sandbox: `redisctl-sandbox exec -- cargo test --test e2e_topology -- --nocapture`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{APP_PW, Cluster, text};
use redisctl_sandbox::testing::Sandbox;

/// The application: writes `patient:live:<n>` (each acknowledged one remembered) and reads a
/// recent one back, until the file `stop` appears; then reads every acknowledged write back
/// with a fresh client and prints one JSON line of figures.
const APP: &str = r#"
import json, os, sys, time
from redis.cluster import RedisCluster

d, stop = sys.argv[1], sys.argv[2]
def client():
    return RedisCluster(
        host="10.0.1.10", port=6379, username="app", password=os.environ["APP_PW"],
        ssl=True, ssl_certfile=d + "/app.crt", ssl_keyfile=d + "/app.key",
        ssl_ca_certs=d + "/ca.crt", ssl_check_hostname=True,
    )
rc = client()
acked, failed, reads_failed = {}, 0, 0
first_error = None
gap, longest_gap = None, 0.0
n = 0
while not os.path.exists(stop):
    n += 1
    k, v = "patient:live:%d" % n, "v%d-%d" % (n, os.getpid())
    try:
        rc.set(k, v)
        acked[k] = v
        got = rc.get(k)
        if got != v.encode():
            reads_failed += 1
        if gap is not None:
            longest_gap = max(longest_gap, time.time() - gap)
            gap = None
    except Exception as e:
        failed += 1
        if first_error is None:
            first_error = "%s: %s" % (type(e).__name__, e)
        if gap is None:
            gap = time.time()
        time.sleep(0.05)
    # A few hundred requests a second are plenty to see a gap or a lost write; a tight loop
    # would take a core of this 2-core machine from the nodes and redisctl.
    time.sleep(0.005)
if gap is not None:
    longest_gap = max(longest_gap, time.time() - gap)
check = client()
lost = [k for k, v in acked.items() if check.get(k) != v.encode()]
print(json.dumps({"acked": len(acked), "failed": failed, "reads_failed": reads_failed,
    "longest_gap": round(longest_gap, 2), "first_error": first_error, "lost": lost[:20],
    "lost_count": len(lost)}))
"#;

/// The example with derived nodes, `masters` × (1 + `replicas`), Redis open to the operator's
/// machine (where the application runs).
fn shape(t: String, masters: u32, replicas: u32) -> String {
    let t = common::redis_open_to_operator(t)
        .replace("masters = 3", &format!("masters = {masters}"))
        .replace(
            "replicas_per_master = 0",
            &format!("replicas_per_master = {replicas}"),
        );
    common::derived_nodes(&t)
}

struct App {
    child: Child,
    stop: std::path::PathBuf,
}

impl App {
    fn start(c: &Cluster) -> App {
        let stop = c.dir.join("app.stop");
        let _ = std::fs::remove_file(&stop);
        std::fs::write(c.dir.join("app.py"), APP).unwrap();
        let child = Command::new(common::python())
            .arg(c.dir.join("app.py"))
            .arg(c.dir.join("tls"))
            .arg(&stop)
            .env("APP_PW", APP_PW)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        App { child, stop }
    }

    /// Stop writing, read everything back: the figures.
    fn finish(self, what: &str) -> serde_json::Value {
        std::fs::write(&self.stop, "").unwrap();
        let out = self.child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the application failed:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim())
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
        eprintln!(
            "figure: {what}: {} writes acknowledged, {} requests failed (first: {}), longest gap {}s, {} read-your-write misses, {} lost",
            v["acked"],
            v["failed"],
            v["first_error"],
            v["longest_gap"],
            v["reads_failed"],
            v["lost_count"]
        );
        assert!(
            v["acked"].as_u64().unwrap() > 100,
            "the application wrote: {v}"
        );
        assert_eq!(v["lost_count"], 0, "acknowledged writes lost: {v}");
        v
    }
}

/// Keys each master serves, as node `ip` counts them.
fn keys_by_master(c: &Cluster, ip: &str) -> String {
    let nodes = c.redis(ip, "CLUSTER NODES");
    let mut out = Vec::new();
    for l in nodes.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 8 && f[2].contains("master") {
            let addr = f[1].split(':').next().unwrap_or("");
            // (The first SSH to a node also prints ssh's "Permanently added" warning.)
            let keys = c.redis(addr, "DBSIZE");
            let keys = keys
                .lines()
                .rev()
                .find(|l| l.trim().parse::<u64>().is_ok())
                .unwrap_or("?")
                .to_string();
            let slots: u32 = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => b.parse::<u32>().unwrap() - a.parse::<u32>().unwrap() + 1,
                    None => 1,
                })
                .sum();
            out.push(format!("{addr}: {slots} slots, {} keys", keys.trim()));
        }
    }
    out.sort();
    out.join("; ")
}

fn converged_and_verified(c: &Cluster, masters: usize) {
    c.assert_converged();
    let report = c.ok(&["verify"]);
    assert!(
        report.contains(&format!("masters serving slots: {masters}")),
        "{report}"
    );
}

/// `CLUSTER FAILOVER` on the node at `ip` (asked again every 8 s: the voters may refuse for a
/// while, and Redis starts no election within 4 x cluster-node-timeout of the node's last),
/// then wait (bounded) until it is a master.
fn fail_over_by_hand(c: &Cluster, ip: &str) {
    let start = Instant::now();
    let mut asked: Option<Instant> = None;
    while !c.redis(ip, "ROLE").lines().any(|l| l.trim() == "master") {
        assert!(
            start.elapsed() < Duration::from_secs(75),
            "{ip} did not take over"
        );
        if asked.is_none_or(|t| t.elapsed() > Duration::from_secs(8)) {
            let out = c.redis(ip, "CLUSTER FAILOVER");
            assert!(out.contains("OK"), "CLUSTER FAILOVER on {ip}: {out}");
            asked = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// On a 3 x 1 cluster with cluster-node-timeout 5 s (so that Redis remembers an election for
/// 20 s: 4 x the timeout), failovers by hand between a master M and its replica R (in another
/// AZ, where a master already is): R takes over, M takes its slots back 16.7 s later, R takes
/// over again 21.5 s after its first (once Redis has forgotten R's first election). R now
/// leads in an AZ with another master, and M, which won an election about 4 s ago, is the node
/// apply must ask to take over. Redis 7.0 would reuse that election: M "wins" at once with its old
/// epoch, serves R's slots for a moment, loses them to R's newer epoch and resyncs from R,
/// losing the writes it took. Apply waits until Redis has forgotten M's election (4 x
/// cluster-node-timeout after it started), then parts the masters; the application loses
/// nothing and no node's log shows an election won that it did not start.
#[test]
fn masters_sharing_an_az_after_failovers_are_parted_without_reusing_an_election() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("failovers", |t| {
        shape(t, 3, 1).replace(
            "cluster_node_timeout_ms = 15000",
            "cluster_node_timeout_ms = 5000",
        )
    });
    c.ok(&["apply", "--yes"]);
    c.ok(&["client-cert", "app", "--out", "tls", "--days", "30"]);
    let nodes = c.redis("10.0.1.10", "CLUSTER NODES");
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 8 && f[1].contains("@16379"))
        .collect();
    let ip = |f: &[&str]| f[1].split(':').next().unwrap().to_string();
    let replica = lines
        .iter()
        .find(|f| f[2].contains("slave"))
        .expect("a replica");
    let master = lines
        .iter()
        .find(|f| f[0] == replica[3])
        .expect("its master");
    let (m, r) = (ip(master), ip(replica));
    eprintln!("failovers by hand between {m} (master) and {r} (its replica)");
    fail_over_by_hand(&c, &r);
    let t0 = Instant::now();
    // (The 15 s default's 50 s, scaled to the 5 s timeout; the second failover of R comes 1.5 s
    // after Redis forgot its first election, as with the default.)
    const SECOND: Duration = Duration::from_millis(16_700);
    std::thread::sleep(SECOND.saturating_sub(t0.elapsed()));
    fail_over_by_hand(&c, &m);
    std::thread::sleep(Duration::from_millis(21_500).saturating_sub(t0.elapsed()));
    fail_over_by_hand(&c, &r);
    // R must know M as its replica (gossip brings it within a few seconds), or it would
    // ignore M's request to start a manual failover and nothing would be put to the test.
    let start = Instant::now();
    loop {
        let view = c.redis(&r, "CLUSTER NODES");
        let r_id = view
            .lines()
            .find(|l| l.contains("myself"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .to_string();
        let knows = view.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[1].starts_with(&format!("{m}:"))
                && f[2].contains("slave")
                && f[3] == r_id
        });
        if knows {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{r} does not know {m} as its replica:\n{view}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{m} won an election {:.1}s ago and is a replica of {r} again",
        (t0.elapsed() - SECOND).as_secs_f64()
    );
    let app = App::start(&c);
    // (Planned from the best-informed node's view: for a moment after the failover, it can
    // still show the old master as a master without slots.)
    let wanted = "takes over (CLUSTER FAILOVER) so that losing one AZ costs fewer masters";
    let start = Instant::now();
    let mut plan = c.ok(&["plan"]);
    while !plan.contains(wanted) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(500));
        plan = c.ok(&["plan"]);
    }
    assert!(plan.contains(wanted), "{plan}");
    let t = Instant::now();
    let out = c.ok(&["apply", "--yes", "-v"]);
    eprintln!(
        "figure: masters parted again by apply in {:.1}s, {:.1}s after {m}'s election",
        t.elapsed().as_secs_f64(),
        (t0.elapsed() - SECOND).as_secs_f64()
    );
    c.assert_no_stale_election_win();
    app.finish("masters parted after failovers by hand");
    assert!(out.contains("takes over from its master"), "{out}");
    assert!(
        out.contains("its last failover election started"),
        "apply asked without waiting for Redis to forget the last election:\n{out}"
    );
    converged_and_verified(&c, 3);
    let report = c.ok(&["verify"]);
    assert!(report.contains("masters in 3 AZ(s)"), "{report}");
    c.ok(&["destroy", "--yes"]);
}

#[test]
fn the_cluster_grows_and_shrinks_while_the_application_works() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("topology", |t| shape(t, 3, 0));
    c.ok(&["apply", "--yes"]);
    let issued = c.ok(&["client-cert", "app", "--out", "tls", "--days", "30"]);
    assert!(issued.contains("CN=app"), "{issued}");

    // 3 -> 4 masters.
    let app = App::start(&c);
    std::thread::sleep(Duration::from_secs(3));
    c.edit(|t| t.replace("masters = 3", "masters = 4"));
    let plan = c.ok(&["plan"]);
    eprintln!("{plan}");
    assert!(
        plan.contains("redis-node-1a-2 is not in the cluster: it joins as a master"),
        "{plan}"
    );
    assert_eq!(plan.matches("slots move from").count(), 3, "{plan}");
    let t = Instant::now();
    c.ok(&["apply", "--yes"]);
    let took = t.elapsed();
    app.finish("3 -> 4 masters");
    eprintln!(
        "figure: 3 -> 4 masters in {:.1}s (a node created and set up, 4096 slots moved): {}",
        took.as_secs_f64(),
        keys_by_master(&c, "10.0.1.10")
    );
    converged_and_verified(&c, 4);

    // 4 -> 6 masters, the apply killed while slots move, then run again.
    let app = App::start(&c);
    c.edit(|t| t.replace("masters = 4", "masters = 6"));
    let t = Instant::now();
    let killed = c.apply_killed_after("cluster.slots.2: running", Duration::from_millis(700));
    assert!(killed.is_some(), "the apply finished before the kill");
    let plan = c.ok(&["plan"]);
    eprintln!("after the kill:\n{plan}");
    assert!(!plan.contains("blocker:"), "{plan}");
    assert!(plan.contains("slots move from"), "{plan}");
    c.ok(&["apply", "--yes"]);
    let took = t.elapsed();
    app.finish("4 -> 6 masters, killed while slots moved");
    eprintln!(
        "figure: 4 -> 6 masters in {:.1}s with a kill and a rerun: {}",
        took.as_secs_f64(),
        keys_by_master(&c, "10.0.1.10")
    );
    converged_and_verified(&c, 6);

    // 0 -> 1 replica per master: six nodes join, each replicating a master in another AZ.
    let app = App::start(&c);
    c.edit(|t| t.replace("replicas_per_master = 0", "replicas_per_master = 1"));
    let t = Instant::now();
    c.ok(&["apply", "--yes"]);
    let took = t.elapsed();
    app.finish("0 -> 1 replica per master");
    eprintln!("figure: 6 replicas added in {:.1}s", took.as_secs_f64());
    converged_and_verified(&c, 6);
    let report = c.ok(&["verify"]);
    eprintln!("{report}");

    // 6 x 1 -> 3 x 1: the spec keeps six nodes. Six replicas leave (forgotten by every node,
    // then terminated); three masters hand their slots to the other three and become their
    // replicas. Killed while slots move, then run again.
    let app = App::start(&c);
    c.edit(|t| t.replace("masters = 6", "masters = 3"));
    let plan = c.ok(&["plan"]);
    eprintln!("{plan}");
    assert!(!plan.contains("blocker:"), "{plan}");
    assert_eq!(plan.matches("it leaves the cluster").count(), 6, "{plan}");
    assert!(
        plan.contains("has handed its slots over, it becomes a replica of"),
        "{plan}"
    );
    assert!(plan.contains("apply needs --allow-replace"), "{plan}");
    let refused = c.run(&["apply", "--yes"]);
    assert!(
        !refused.status.success() && text(&refused.stderr).contains("--allow-replace"),
        "a scale-in destroys instances: it needs --allow-replace\n{}",
        text(&refused.stderr)
    );
    let t = Instant::now();
    let killed = c.killed_after(
        &["apply", "--yes", "--allow-replace"],
        "cluster.slots.1: running",
        Duration::from_millis(700),
    );
    assert!(killed.is_some(), "the apply finished before the kill");
    c.ok(&["apply", "--yes", "--allow-replace"]);
    let took = t.elapsed();
    app.finish("6 x 1 -> 3 x 1, killed while slots moved");
    eprintln!(
        "figure: 6 x 1 -> 3 x 1 in {:.1}s with a kill and a rerun: {}",
        took.as_secs_f64(),
        keys_by_master(&c, "10.0.1.10")
    );
    converged_and_verified(&c, 3);
    let nodes = c.redis("10.0.1.10", "CLUSTER NODES");
    assert_eq!(
        nodes.lines().filter(|l| l.contains("@16379")).count(),
        6,
        "the leaving nodes are forgotten:\n{nodes}"
    );

    // 1 -> 2 replicas per master: three more nodes join, each master then has a replica in
    // each of the two other AZs.
    let app = App::start(&c);
    c.edit(|t| t.replace("replicas_per_master = 1", "replicas_per_master = 2"));
    let t = Instant::now();
    c.ok(&["apply", "--yes"]);
    let took = t.elapsed();
    app.finish("1 -> 2 replicas per master");
    eprintln!(
        "figure: 3 more replicas added in {:.1}s",
        took.as_secs_f64()
    );
    converged_and_verified(&c, 3);
    let report = c.ok(&["verify"]);
    assert!(
        report.contains("replicas in another AZ than their master: 6 of 6"),
        "{report}"
    );

    // 2 -> 0 replicas per master: the six replicas leave; the masters keep every key.
    let app = App::start(&c);
    c.edit(|t| t.replace("replicas_per_master = 2", "replicas_per_master = 0"));
    let t = Instant::now();
    c.ok(&["apply", "--yes", "--allow-replace"]);
    let took = t.elapsed();
    app.finish("2 -> 0 replicas per master");
    eprintln!("figure: 6 replicas removed in {:.1}s", took.as_secs_f64());
    converged_and_verified(&c, 3);
    let nodes = c.redis("10.0.1.10", "CLUSTER NODES");
    assert_eq!(
        nodes.lines().filter(|l| l.contains("@16379")).count(),
        3,
        "{nodes}"
    );
    c.ok(&["destroy", "--yes"]);
    common::account::assert_only_defaults("prod-redis", &[]);
}

/// The redis-server version of every node (`dpkg-query`), in the order of `ips`.
fn versions(c: &Cluster, ips: &[&str]) -> Vec<String> {
    ips.iter()
        .map(|ip| {
            // (ssh's first-contact warning comes after, on stderr.)
            c.on_node(ip, "dpkg-query -W -f='${Version}\\n' redis-server", "")
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The redis-server versions the sandbox's archive serves: (the distribution's, the newer
/// `+sandbox1` build), from its `Packages` index.
fn archive_versions() -> (String, String) {
    let cache = redisctl_sandbox::paths::Paths::from_env().cache;
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(&cache).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("archive-") || name.contains(".tmp") {
            continue;
        }
        let Ok(index) = std::fs::read_to_string(entry.path().join("Packages")) else {
            continue;
        };
        for stanza in index.split("\n\n") {
            if stanza.lines().any(|l| l == "Package: redis-server")
                && let Some(v) = stanza.lines().find_map(|l| l.strip_prefix("Version: "))
            {
                versions.push(v.to_string());
            }
        }
    }
    let newest = versions.iter().find(|v| v.ends_with("+sandbox1"));
    let older = versions.iter().find(|v| !v.ends_with("+sandbox1"));
    match (older, newest) {
        (Some(o), Some(n)) => (o.clone(), n.clone()),
        _ => panic!(
            "the sandbox archive in {} does not serve two builds of redis-server: {versions:?}",
            cache.display()
        ),
    }
}

/// A package update rolled out node by node while the application writes: the sandbox's
/// archive has a build of redis-server newer than the distribution's (`+sandbox1`). A cluster
/// made with `redis.package_version` pinned to the distribution's runs it; "latest" then rolls
/// the newer one out, one node at a time (each master hands its slots to its replica first, a
/// healthy cluster before the next node), the apply killed in the middle and run again. No
/// acknowledged write is lost; verify passes; plan is empty.
#[test]
fn a_redis_package_update_is_rolled_out_node_by_node_with_the_data_kept() {
    let _sb = Sandbox::acquire();
    let (older, newest) = archive_versions();
    let c = Cluster::new("packages", |t| {
        shape(t, 3, 1)
            .replace(
                "cluster_node_timeout_ms = 15000",
                "cluster_node_timeout_ms = 5000",
            )
            .replace(
                "appendonly = true",
                &format!("appendonly = true\npackage_version = \"{older}\""),
            )
    });
    let ips = [
        "10.0.1.10",
        "10.0.2.10",
        "10.0.3.10",
        "10.0.1.11",
        "10.0.2.11",
        "10.0.3.11",
    ];
    c.ok(&["apply", "--yes"]);
    c.ok(&["client-cert", "app", "--out", "tls", "--days", "1"]);
    assert_eq!(
        versions(&c, &ips),
        vec![older.clone(); 6],
        "pinned at install"
    );

    let app = App::start(&c);
    std::thread::sleep(Duration::from_secs(2));
    c.edit(|t| {
        t.replace(
            &format!("package_version = \"{older}\""),
            "package_version = \"latest\"",
        )
    });
    let plan = c.ok(&["plan"]);
    assert_eq!(
        plan.matches(".package will be updated").count(),
        6,
        "{plan}"
    );
    assert!(
        plan.contains(&format!("\"{older}\" -> \"{newest}\"")),
        "{plan}"
    );
    let t = Instant::now();
    match c.apply_killed_after("phase 3: install", Duration::from_secs(8)) {
        Some(_) => eprintln!("figure: the update killed 8 s into phase 3"),
        None => eprintln!("figure: the update finished before the kill"),
    }
    c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: 6 nodes updated from {older} to {newest} (killed once) in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    app.finish("package update node by node, killed once");
    assert_eq!(versions(&c, &ips), vec![newest.clone(); 6]);
    converged_and_verified(&c, 3);

    // `--update-os`: the OS's pending updates (the archive's newer build of less), node by
    // node, Redis restarted onto them, its own packages held.
    let less = |c: &Cluster| -> Vec<String> {
        ips.iter()
            .map(|ip| {
                c.on_node(ip, "dpkg-query -W -f='${Version}\\n' less", "")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    assert!(
        less(&c).iter().all(|v| !v.ends_with("+sandbox1")),
        "{:?}",
        less(&c)
    );
    let app = App::start(&c);
    std::thread::sleep(Duration::from_secs(2));
    let plan = c.ok(&["plan", "--update-os"]);
    assert_eq!(plan.matches(".os will be updated").count(), 6, "{plan}");
    let t = Instant::now();
    c.ok(&["apply", "--yes", "--update-os"]);
    eprintln!(
        "figure: OS updates on 6 nodes, one at a time: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    app.finish("OS updates node by node");
    assert!(
        less(&c).iter().all(|v| v.ends_with("+sandbox1")),
        "{:?}",
        less(&c)
    );
    assert_eq!(
        versions(&c, &ips),
        vec![newest.clone(); 6],
        "Redis's packages held"
    );
    converged_and_verified(&c, 3);
    c.assert_no_stale_election_win();
    c.ok(&["destroy", "--yes"]);
}
