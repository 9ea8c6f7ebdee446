//! The benchmark (issue #16): how redisctl's work grows with the cluster, measured in the
//! sandbox. For each size N it builds a cluster (roots unencrypted, so that the swap can be
//! measured), then measures apply from nothing, a no-op plan, an ACL change (users set live on
//! every node), a configuration change (a rolling restart), the EBS encryption swap, and destroy:
//! wall time, EC2 calls (counted by the sandbox's front, by action), SSH round trips (counted
//! by redisctl itself: one per command run on a node), redisctl's peak memory (its
//! `ru_maxrss`, from `wait4`) and its CPU time (`ru_utime` + `ru_stime`: the tool's own cost,
//! apart from the hosts that share the cores); for apply from nothing, each phase's time and
//! round trips too.
//!
//! It prints a table per size and writes the same as JSON under `target/bench/` (with the
//! machine it ran on), so that two runs can be compared. Timings are figures, never asserted:
//! the test fails only when a run itself fails.
//!
//! `BENCH_NODES` (default `3`: the short run every test run makes) lists the sizes, e.g.
//! `3,12,30`; `BENCH_SWAP=0` leaves the swap out (30 nodes swap one at a time: minutes), and
//! `BENCH_ROLL=0` the rolling restart (one node at a time too).
//! `scripts/bench` runs the long one. Sizes: 3 = 3 masters; up to 20 nodes, N/2 masters with a
//! replica each; above, N/3 masters with two.
//! Run inside the sandbox: `redisctl-sandbox exec -- cargo test --test bench -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Stdio;
use std::time::Instant;

use common::{Cluster, text};
use redisctl_sandbox::testing::Sandbox;
use serde_json::{Value, json};

/// The spec for `n` nodes: (masters, replicas per master).
fn shape_of(n: usize) -> (usize, usize) {
    match n {
        0..=3 => (n.max(1), 0),
        4..=20 => (n / 2, 1),
        _ => (n / 3, 2),
    }
}

fn spec(t: String, masters: usize, replicas: usize) -> String {
    let t = t
        .replace("encrypted = true", "encrypted = false")
        .replace("masters = 3", &format!("masters = {masters}"))
        .replace(
            "replicas_per_master = 0",
            &format!("replicas_per_master = {replicas}"),
        );
    // Derived nodes (the example lists three).
    common::derived_nodes(&t)
}

/// One measured run of redisctl.
struct Run {
    name: String,
    wall: f64,
    ec2: BTreeMap<String, u64>,
    /// SSH round trips: the observation's and every phase's.
    trips: u64,
    /// (phase number, seconds, round trips), as apply logged them.
    phases: Vec<(u8, f64, u64)>,
    peak_kib: i64,
    /// redisctl's own CPU time (user + system): what the tool costs, apart from the hosts that
    /// share this machine's cores with it.
    cpu: f64,
}

impl Run {
    fn ec2_calls(&self) -> u64 {
        self.ec2.values().sum()
    }

    fn json(&self, nodes: usize) -> Value {
        json!({
            "step": self.name,
            "wall_s": round(self.wall),
            "ec2_calls": self.ec2_calls(),
            "ec2_by_action": self.ec2,
            "ssh_round_trips": self.trips,
            "ssh_round_trips_per_node": round(self.trips as f64 / nodes as f64),
            "peak_rss_kib": self.peak_kib,
            "redisctl_cpu_s": round(self.cpu),
            "phases": self.phases.iter().map(|(p, s, t)| json!({
                "phase": p,
                "wall_s": round(*s),
                "ssh_round_trips": t,
                "ssh_round_trips_per_node": round(*t as f64 / nodes as f64),
            })).collect::<Vec<_>>(),
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The `key=value` fields of a tracing line.
fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim_matches('"').to_string())
}

/// Runs redisctl with `args`, measured; panics when it fails.
// The child is reaped with wait4 (which Child::wait cannot give: the resource usage).
#[allow(clippy::zombie_processes)]
fn measure(sb: &Sandbox, c: &Cluster, name: &str, args: &[&str]) -> Run {
    sb.stats(true);
    let started = Instant::now();
    let mut child = c
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    // wait4 rather than Child::wait: it also gives the child's resource usage.
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: the pid is our own child's, not yet waited for.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let (out, err) = (text(&out.join().unwrap()), text(&err.join().unwrap()));
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "redisctl {args:?} failed:\n{out}\n{err}"
    );
    let ec2 = sb.stats(false);
    let mut trips = 0;
    let mut phases = Vec::new();
    for l in err.lines() {
        if l.contains("nodes observed") {
            trips += field(l, "ssh_round_trips")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        } else if l.contains("phase finished") {
            let t = field(l, "ssh_round_trips")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            trips += t;
            phases.push((
                field(l, "phase").and_then(|v| v.parse().ok()).unwrap_or(0),
                field(l, "seconds")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0),
                t,
            ));
        }
    }
    Run {
        name: name.into(),
        wall,
        ec2,
        trips,
        phases,
        peak_kib: usage.ru_maxrss,
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
    }
}

fn secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// The machine the figures come from.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "memory_mib": mem_kib / 1024,
        "kernel": kernel.trim(),
        "sandbox_speed": std::env::var("REDISCTL_SANDBOX_SPEED").unwrap_or_else(|_| "as set by `up`".into()),
        "redisctl": env!("CARGO_PKG_VERSION"),
    })
}

fn table(nodes: usize, shape: (usize, usize), runs: &[Run]) -> String {
    let mut t = format!(
        "bench: {nodes} nodes ({} masters x {} replicas)\n{:<22} {:>8} {:>10} {:>10} {:>14} {:>9} {:>7}\n",
        shape.0,
        shape.1,
        "step",
        "wall s",
        "EC2 calls",
        "SSH trips",
        "trips per node",
        "peak MiB",
        "CPU s"
    );
    for r in runs {
        t.push_str(&format!(
            "{:<22} {:>8.2} {:>10} {:>10} {:>14.1} {:>9.1} {:>7.2}\n",
            r.name,
            r.wall,
            r.ec2_calls(),
            r.trips,
            r.trips as f64 / nodes as f64,
            r.peak_kib as f64 / 1024.0,
            r.cpu
        ));
        if r.name == "apply from nothing" {
            for (p, s, trips) in &r.phases {
                t.push_str(&format!(
                    "  {:<20} {:>8.2} {:>10} {:>10} {:>14.1}\n",
                    format!("phase {p}"),
                    s,
                    "",
                    trips,
                    *trips as f64 / nodes as f64
                ));
            }
        }
    }
    t
}

#[test]
fn bench() {
    let sb = Sandbox::acquire();
    let sizes: Vec<usize> = std::env::var("BENCH_NODES")
        .unwrap_or_else(|_| "3".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("BENCH_NODES: sizes such as 3,12,30")
        })
        .collect();
    let swap = std::env::var("BENCH_SWAP").map_or(true, |v| v != "0");
    let roll = std::env::var("BENCH_ROLL").map_or(true, |v| v != "0");
    let mut results = Vec::new();
    let mut tables = String::new();
    for n in sizes {
        let shape = shape_of(n);
        let c = Cluster::new(&format!("bench{n}"), |t| spec(t, shape.0, shape.1));
        let nodes = shape.0 * (1 + shape.1);
        let mut runs = vec![measure(&sb, &c, "apply from nothing", &["apply", "--yes"])];
        runs.push(measure(&sb, &c, "no-op plan", &["plan"]));
        c.edit(|t| {
            t.replacen(
                "keys = [\"session:*\", \"cache:*\", \"patient:*\"]",
                "keys = [\"session:*\", \"cache:*\", \"patient:*\", \"bench:*\"]",
                1,
            )
        });
        runs.push(measure(&sb, &c, "ACL change", &["apply", "--yes"]));
        if roll {
            c.edit(|t| t.replace("# maxmemory = \"512mb\"", "maxmemory = \"384mb\""));
            runs.push(measure(
                &sb,
                &c,
                "config change (roll)",
                &["apply", "--yes"],
            ));
        }
        if swap {
            c.edit(|t| t.replace("encrypted = false", "encrypted = true"));
            runs.push(measure(&sb, &c, "EBS swap", &["apply", "--yes"]));
        }
        runs.push(measure(&sb, &c, "destroy", &["destroy", "--yes"]));
        let t = table(nodes, shape, &runs);
        eprintln!("{t}");
        tables.push_str(&t);
        tables.push('\n');
        results.push(json!({
            "nodes": nodes,
            "masters": shape.0,
            "replicas_per_master": shape.1,
            "steps": runs.iter().map(|r| r.json(nodes)).collect::<Vec<_>>(),
        }));
    }
    let report = json!({
        "machine": machine(),
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        "runs": results,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("bench-{}.json", report["unix_time"]));
    std::fs::write(&file, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    eprintln!(
        "bench: machine {}\nbench: written to {}",
        report["machine"],
        file.display()
    );
}
