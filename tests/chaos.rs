//! The chaos campaign: redisctl's promise that a run killed anywhere is finished by the next
//! one, that no data is lost, no secret leaks and destroy leaves the account as it was, tried
//! with kills at random moments rather than at chosen ones.
//!
//! A cycle is: apply from nothing (roots unencrypted), keys written, a configuration change (a
//! rolling restart), an ACL change, the EBS encryption swap, destroy. Odd cycles build 3
//! masters without replicas, even cycles 3 masters with a replica each (6 nodes: the rolling
//! restart and the swap then go through failovers). Each of these runs is
//! first killed (SIGKILL) at a moment drawn uniformly over how long that kind of run takes (the
//! longest seen so far), some with EC2 faults injected (throttling and internal errors, which
//! the SDK retries), then run again until it succeeds (at most `RERUNS` times). After every
//! step the invariants are checked independently of redisctl's own report: through the EC2 API
//! (one instance per node and nothing doubled; no stray volume or snapshot), over SSH (every
//! node's cluster view healthy with 16384 slots; every key written reads back with its value),
//! `plan` finds nothing to do, no secret in any output; after destroy, the account as before.
//! A violation is recorded with its replay point (seed, cycle, step, delay), not a panic, and
//! the campaign goes on with a fresh cluster.
//!
//! `CHAOS_KILLS` is the number of kills of a long campaign (`scripts/chaos` runs 200). Without
//! it, the short campaign every test run makes: two cycles, one of each shape, each of their
//! ten runs killed at a random moment (4 to 5 minutes of a CI that must stay under 60; a count
//! of kills instead made it two or three cycles, as chance had the runs end before their kill).
//! `CHAOS_SEED` replays a campaign; `CHAOS_FAULTS` (default 0.3) is the share of kills made
//! with EC2 faults on. The table at the end is the result.
//! Run inside the sandbox: `redisctl-sandbox exec -- cargo test --test chaos -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Cluster, IPS, data};
use redisctl_sandbox::faults::{Effect, Fault};
use redisctl_sandbox::testing::Sandbox;

/// Reruns a killed step may need before it is a violation.
const RERUNS: usize = 4;
/// How long a rerun may take before it counts as hung.
const RERUN_BOUND: Duration = Duration::from_secs(480);
/// Keys written after the cluster is made, read back after every later step.
const KEYS: usize = 200;

/// xorshift64*: the campaign's only source of chance, so a seed replays it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    FromNothing,
    Config,
    Acl,
    Swap,
    Destroy,
}

impl Step {
    const ALL: [Step; 5] = [
        Step::FromNothing,
        Step::Config,
        Step::Acl,
        Step::Swap,
        Step::Destroy,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::FromNothing => "apply from nothing",
            Step::Config => "config change",
            Step::Acl => "ACL change",
            Step::Swap => "EBS swap",
            Step::Destroy => "destroy",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Step::Destroy => &["destroy", "--yes"],
            _ => &["apply", "--yes"],
        }
    }

    /// A first guess of how long the run takes here (replaced by the longest seen).
    fn guess(self) -> Duration {
        Duration::from_secs(match self {
            Step::FromNothing => 20,
            Step::Config => 8,
            Step::Acl => 3,
            Step::Swap => 30,
            Step::Destroy => 10,
        })
    }

    /// The spec edit that makes this step's change (before its run).
    fn edit(self, c: &Cluster, cycle: usize) {
        match self {
            Step::Config => c.edit(|t| {
                // Alternate between two values so every cycle changes it.
                let want = if cycle.is_multiple_of(2) {
                    "256mb"
                } else {
                    "384mb"
                };
                let t = t.replace("# maxmemory = \"512mb\"", "maxmemory = \"512mb\"");
                let at = t.find("maxmemory = \"").unwrap() + "maxmemory = \"".len();
                let end = at + t[at..].find('"').unwrap();
                format!("{}{want}{}", &t[..at], &t[end..])
            }),
            Step::Acl => c.edit(|t| {
                let (from, to) = if cycle.is_multiple_of(2) {
                    (
                        "keys = [\"session:*\", \"cache:*\", \"patient:*\"]",
                        "keys = [\"session:*\", \"cache:*\", \"patient:*\", \"chaos:*\"]",
                    )
                } else {
                    (
                        "keys = [\"session:*\", \"cache:*\", \"patient:*\", \"chaos:*\"]",
                        "keys = [\"session:*\", \"cache:*\", \"patient:*\"]",
                    )
                };
                t.replacen(from, to, 1)
            }),
            Step::Swap => c.edit(|t| t.replace("encrypted = false", "encrypted = true")),
            Step::FromNothing => c.edit(|t| t.replace("encrypted = true", "encrypted = false")),
            Step::Destroy => {}
        }
    }
}

#[derive(Default)]
struct Tally {
    runs: usize,
    kills: usize,
    with_faults: usize,
    reruns: usize,
    violations: Vec<String>,
}

/// Run `args`, killed with SIGKILL `after` its start unless it finished first. Returns whether
/// it was killed, whether it succeeded (not killed, exit 0), and what it printed.
fn run_killed(c: &Cluster, args: &[&str], after: Duration) -> (bool, bool, String) {
    let dir = c.dir.join("chaos-out");
    std::fs::create_dir_all(&dir).unwrap();
    let (o, e) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = c
        .cmd(args)
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let (killed, ok) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (false, status.success());
        }
        if start.elapsed() >= after {
            child.kill().unwrap();
            child.wait().unwrap();
            break (true, false);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = format!(
        "{}{}",
        std::fs::read_to_string(&o).unwrap_or_default(),
        std::fs::read_to_string(&e).unwrap_or_default()
    );
    (killed, ok, out)
}

/// The last `n` non-empty lines of a run's output, newest first, on one line.
fn last_lines(out: &str, n: usize) -> String {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(n)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Copies the sandbox's front and moto logs as they are at a violation to
/// `target/chaos-evidence/` (a broken cycle resets the region, and the campaign goes on), and
/// says where.
fn keep_evidence(cycle: usize, step: Step) {
    let logs = redisctl_sandbox::paths::Paths::from_env().logs();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/chaos-evidence");
    let _ = std::fs::create_dir_all(&dir);
    for name in ["front.log", "moto.log"] {
        let to = dir.join(format!(
            "cycle{cycle}-{}-{name}",
            step.name().replace(' ', "-")
        ));
        match std::fs::copy(logs.join(name), &to) {
            Ok(_) => eprintln!("chaos: {name} kept as {}", to.display()),
            Err(e) => eprintln!("chaos: could not keep {name}: {e}"),
        }
    }
}

/// A check that panics on failure, as a violation message instead.
fn check(what: &str, f: impl FnOnce()) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let short: String = msg.chars().take(600).collect();
        format!("{what}: {short}")
    })
}

/// The two shapes a cycle builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    /// 3 masters, no replica.
    Three,
    /// 3 masters with a replica each.
    Six,
}

impl Shape {
    fn of(cycle: usize) -> Shape {
        if cycle % 2 == 1 {
            Shape::Three
        } else {
            Shape::Six
        }
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Three => "3x0",
            Shape::Six => "3x1",
        }
    }

    /// The nodes' private addresses (the spec's nodes list, or the derived one with replicas).
    fn ips(self) -> Vec<&'static str> {
        match self {
            Shape::Three => IPS.to_vec(),
            Shape::Six => {
                let mut ips = IPS.to_vec();
                ips.extend(["10.0.1.11", "10.0.2.11", "10.0.3.11"]);
                ips
            }
        }
    }

    /// The example spec turned into this shape (roots unencrypted at first).
    fn spec(self, t: String) -> String {
        let t = t.replace("encrypted = true", "encrypted = false");
        match self {
            Shape::Three => t,
            Shape::Six => {
                // With replicas the nodes are derived from the topology (two per AZ).
                let t = t.replace("replicas_per_master = 0", "replicas_per_master = 1");
                common::derived_nodes(&t)
            }
        }
    }
}

/// The invariants after `step` converged; `keys`: whether the test keys are in the cluster.
fn invariants(
    c: &Cluster,
    step: Step,
    shape: Shape,
    keys: bool,
    before: &common::account::Account,
) -> Vec<String> {
    let mut bad = Vec::new();
    let mut record = |r: Result<(), String>| {
        if let Err(e) = r {
            bad.push(e);
        }
    };
    if step == Step::Destroy {
        let after = common::account::now();
        let diff = common::account::differences(before, &after);
        record(if diff.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the account differs after destroy: {}",
                diff.join("; ")
            ))
        });
        return bad;
    }
    record(check("plan finds nothing to do", || c.assert_converged()));
    record(check("EC2 holds one of each", || {
        let all = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { common::account::resources(&common::ec2_client().await).await });
        let ours: Vec<&common::account::Resource> = all
            .iter()
            .filter(|r| r.cluster.as_deref() == Some("prod-redis"))
            .collect();
        let count = |kind: &str| ours.iter().filter(|r| r.kind == kind).count();
        let list: Vec<String> = ours
            .iter()
            .map(|r| format!("{} {}", r.kind, r.key))
            .collect();
        // A VPC, 3 subnets, a gateway, a route table, a group, an instance per node (not
        // terminated) and its root volume; a finished swap leaves no snapshot.
        let nodes = shape.ips().len();
        for (kind, want) in [
            ("vpc", 1),
            ("subnet", 3),
            ("internet gateway", 1),
            ("route table", 1),
            ("security group", 1),
            ("instance", nodes),
            ("volume", nodes),
            ("snapshot", 0),
        ] {
            assert_eq!(count(kind), want, "{kind}: {list:#?}");
        }
        assert!(count("key pair") <= 1, "{list:#?}");
    }));
    let nodes = shape.ips().len();
    for ip in shape.ips() {
        record(check(&format!("{ip} healthy"), || {
            let info = c.redis(ip, "CLUSTER INFO");
            assert!(info.contains("cluster_state:ok"), "{info}");
            assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
            assert!(
                info.contains(&format!("cluster_known_nodes:{nodes}")),
                "{info}"
            );
            assert!(info.contains("cluster_size:3"), "{info}");
        }));
    }
    if shape == Shape::Six {
        // Every master has its replica, in sync (a failover during a restart or the swap put
        // the roles back or left them swapped, but never a master without a copy).
        record(check("every master has a replica in sync", || {
            let mut masters = 0;
            for ip in shape.ips() {
                let role = c.redis(ip, "INFO replication");
                if role.contains("role:master") {
                    masters += 1;
                    assert!(role.contains("connected_slaves:1"), "{ip}: {role}");
                } else {
                    assert!(role.contains("master_link_status:up"), "{ip}: {role}");
                }
            }
            assert_eq!(masters, 3, "three masters");
        }));
    }
    if keys {
        record(check("every key reads back", || data::read_keys(c, KEYS)));
    }
    bad
}

#[test]
fn chaos() {
    let sb = Sandbox::acquire();
    let env = |k: &str| std::env::var(k).ok();
    let kills_wanted: Option<usize> = env("CHAOS_KILLS").and_then(|v| v.parse().ok());
    // The short campaign: one cycle of each shape.
    let cycles_wanted = if kills_wanted.is_some() {
        usize::MAX
    } else {
        2
    };
    let seed: u64 = env("CHAOS_SEED")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let fault_share: f64 = env("CHAOS_FAULTS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.3);
    match kills_wanted {
        Some(k) => eprintln!("chaos: seed {seed} (replay with CHAOS_SEED={seed}), {k} kills"),
        None => eprintln!(
            "chaos: seed {seed} (replay with CHAOS_SEED={seed}), the short campaign: {cycles_wanted} cycles"
        ),
    }
    let mut rng = Rng(seed);
    let mut tally: BTreeMap<(Step, Shape), Tally> = BTreeMap::new();
    let mut longest: BTreeMap<(Step, Shape), Duration> = BTreeMap::new();
    let mut kills = 0;
    let mut cycle = 0;
    let campaign = Instant::now();
    let mut before = common::account::now();
    while kills < kills_wanted.unwrap_or(usize::MAX) && cycle < cycles_wanted {
        cycle += 1;
        let shape = Shape::of(cycle);
        let c = Cluster::new(&format!("chaos{cycle}"), |t| shape.spec(t));
        let mut keys = false;
        let mut broken = false;
        for step in Step::ALL {
            if broken && step != Step::Destroy {
                continue;
            }
            step.edit(&c, cycle);
            let t = tally.entry((step, shape)).or_default();
            t.runs += 1;
            let guess = match shape {
                Shape::Three => step.guess(),
                Shape::Six => step.guess() * 2,
            };
            let longest = longest.entry((step, shape)).or_insert(guess);
            let delay = longest.mul_f64(rng.unit());
            let faults = rng.unit() < fault_share;
            if faults {
                for code in ["RequestLimitExceeded", "InternalError"] {
                    sb.add_fault(Fault {
                        action: "*".into(),
                        effect: Effect::Error {
                            code: code.into(),
                            status: if code == "InternalError" { 500 } else { 503 },
                        },
                        times: None,
                        rate: Some(0.05),
                        fired: 0,
                    });
                }
            }
            let point = format!(
                "CHAOS_SEED={seed} cycle {cycle} ({}) {} killed at {:.2}s{}",
                shape.name(),
                step.name(),
                delay.as_secs_f64(),
                if faults { " with EC2 faults" } else { "" }
            );
            let mut outputs = Vec::new();
            let started = Instant::now();
            let (killed, ok, out) = run_killed(&c, step.args(), delay);
            if ok {
                // A whole run: how long this kind takes now (kills are drawn over it).
                *longest = started.elapsed();
            }
            if !ok && !killed {
                // Failed on its own (an injected EC2 fault, or a defect): say why, as for a
                // rerun, so that a violation that follows can be traced back to it.
                eprintln!(
                    "chaos: cycle {cycle} ({}) {}: the run failed on its own: {}",
                    shape.name(),
                    step.name(),
                    last_lines(&out, 4)
                );
            }
            outputs.push(out);
            if killed {
                kills += 1;
                t.kills += 1;
                if faults {
                    t.with_faults += 1;
                }
            }
            sb.clear_faults();
            // Run again (faults off) until it succeeds.
            let mut done = ok;
            let mut tries = 0;
            let mut hung = false;
            while !done && !hung && tries < RERUNS {
                tries += 1;
                t.reruns += 1;
                let started = Instant::now();
                // A rerun that does not end within the bound is a violation (a hang), not a
                // wait: it is killed and reported.
                let (killed, ok, printed) = run_killed(&c, step.args(), RERUN_BOUND);
                if !ok && !killed {
                    // Why a rerun did not finish it: a refusal that names what to do is
                    // allowed (the next rerun may get further), but it is shown.
                    eprintln!(
                        "chaos: cycle {cycle} ({}) {}: rerun {tries} failed: {}",
                        shape.name(),
                        step.name(),
                        last_lines(&printed, 4)
                    );
                }
                outputs.push(printed);
                hung = killed;
                if ok {
                    done = true;
                    let took = started.elapsed();
                    if took > *longest {
                        *longest = took;
                    }
                }
            }
            let mut bad = Vec::new();
            if hung {
                bad.push(format!(
                    "a rerun did not finish within {}s: {}",
                    RERUN_BOUND.as_secs(),
                    last_lines(outputs.last().unwrap(), 8)
                ));
            } else if !done {
                bad.push(format!(
                    "not finished after {RERUNS} reruns: {}",
                    last_lines(outputs.last().unwrap(), 8)
                ));
            } else {
                if step == Step::Destroy {
                    keys = false;
                }
                if step == Step::FromNothing {
                    if let Err(e) = check("keys written", || data::write_keys(&c, KEYS)) {
                        bad.push(e);
                    } else {
                        keys = true;
                    }
                }
                bad.extend(invariants(&c, step, shape, keys, &before));
            }
            let secrets = c.secrets();
            for (i, o) in outputs.iter().enumerate() {
                let leaks = secrets.leaks(o);
                if !leaks.is_empty() {
                    bad.push(format!("run {i} printed {}", leaks.join(", ")));
                }
            }
            if !bad.is_empty() {
                keep_evidence(cycle, step);
            }
            for v in bad {
                eprintln!("chaos: VIOLATION at {point}: {v}");
                t.violations.push(format!("{point}: {v}"));
                broken = true;
            }
            eprintln!(
                "chaos: cycle {cycle} ({}) {}: {} after {:.2}s, {} rerun(s)",
                shape.name(),
                step.name(),
                if killed {
                    "killed"
                } else {
                    "not killed (finished first)"
                },
                delay.as_secs_f64(),
                outputs.len() - 1
            );
        }
        if broken {
            // Start the next cycle from an empty region, whatever this one left; the account
            // to find again after destroy is the reset one (its default VPC has new ids).
            sb.reset();
            before = common::account::now();
        }
    }
    let mut table =
        String::from("\nstep                       runs  kills  with faults  reruns  violations\n");
    let mut all = Vec::new();
    for (step, shape) in Step::ALL
        .iter()
        .flat_map(|s| [(*s, Shape::Three), (*s, Shape::Six)])
    {
        let t = tally.entry((step, shape)).or_default();
        table.push_str(&format!(
            "{:<26} {:>4}  {:>5}  {:>11}  {:>6}  {:>10}\n",
            format!("{} ({})", step.name(), shape.name()),
            t.runs,
            t.kills,
            t.with_faults,
            t.reruns,
            t.violations.len()
        ));
        all.extend(t.violations.iter().cloned());
    }
    table.push_str(&format!(
        "{cycle} cycles, {kills} kills in {:.0}s (seed {seed})\n",
        campaign.elapsed().as_secs_f64()
    ));
    eprintln!("{table}");
    assert!(all.is_empty(), "violations:\n{}", all.join("\n"));
}
