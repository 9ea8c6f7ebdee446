//! End-to-end: redisctl against EC2 as it behaves in time — the sandbox's timed region
//! (docs/sandbox.md, "The timed region"): one test per class of behaviour, each asserting the
//! outcome (no duplicate instance or volume, the swap finished with the data kept, the error
//! naming EC2's StateReason, destroy proven empty), and one with every class on at once, at a
//! fifth of the requests each applies to. Figures (the region's counters, redisctl's retries by
//! code) are printed as `figure:` lines.
//! Run inside the sandbox's operator namespace:
//! `redisctl-sandbox exec -- cargo test -p redisctl --test e2e_ec2_behaviour -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use common::data::{read_keys, write_keys};
use common::{Cluster, text};
use redisctl_sandbox::control::{RegionChange, RegionCounters, RegionSettings};
use redisctl_sandbox::faults::{Effect, Fault};
use redisctl_sandbox::testing::Sandbox;

const KEYS: usize = 1_000;

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

fn cluster_filter() -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name("tag:redisctl:cluster")
        .values("prod-redis")
        .build()
}

/// The cluster's instances that are not terminated (any state short of it), sorted.
fn live_instances() -> Vec<String> {
    block(async {
        let ec2 = common::ec2_client().await;
        let out = ec2
            .describe_instances()
            .filters(cluster_filter())
            .send()
            .await
            .unwrap();
        let mut ids: Vec<String> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| {
                !matches!(
                    i.state().and_then(|s| s.name()).map(|n| n.as_str()),
                    Some("terminated" | "shutting-down")
                )
            })
            .filter_map(|i| i.instance_id().map(String::from))
            .collect();
        ids.sort();
        ids
    })
}

/// Every volume of the region as (id, encrypted, state), and the cluster's snapshots.
fn volumes_and_snapshots() -> (Vec<(String, bool, String)>, Vec<String>) {
    block(async {
        let ec2 = common::ec2_client().await;
        let vols = ec2.describe_volumes().send().await.unwrap();
        let snaps = ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(cluster_filter())
            .send()
            .await
            .unwrap();
        (
            vols.volumes()
                .iter()
                .map(|v| {
                    (
                        v.volume_id().unwrap_or_default().to_string(),
                        v.encrypted() == Some(true),
                        v.state()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect(),
            snaps
                .snapshots()
                .iter()
                .filter_map(|s| s.snapshot_id().map(String::from))
                .collect(),
        )
    })
}

/// The retries redisctl logged (`… (resource): CODE after …; retrying in …`), by code.
fn retries(out: &str) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for line in out.lines().filter(|l| l.contains("; retrying in ")) {
        let code = line
            .split("): ")
            .nth(1)
            .and_then(|rest| rest.split(" after ").next())
            .unwrap_or("?")
            .to_string();
        *by.entry(code).or_insert(0) += 1;
    }
    by
}

fn figures(label: &str, counters: &RegionCounters, out: &str) {
    eprintln!("figure: {label}: the region: {counters:?}");
    eprintln!(
        "figure: {label}: redisctl's retries by code: {:?}",
        retries(out)
    );
}

/// The region's settings are shared by every test: a test that changes them puts back what it
/// found when it ends, passed or not.
struct Settings<'a> {
    sb: &'a Sandbox,
    before: RegionSettings,
}

impl<'a> Settings<'a> {
    fn set(sb: &'a Sandbox, change: RegionChange) -> Settings<'a> {
        let before = sb.region().settings;
        sb.set_region(change);
        Settings { sb, before }
    }
}

impl Drop for Settings<'_> {
    fn drop(&mut self) {
        self.sb.set_region(RegionChange {
            speed: Some(self.before.speed),
            consistency_rate: Some(self.before.consistency_rate),
            lingering_rate: Some(self.before.lingering_rate),
        });
    }
}

/// `redisctl ARGS`, killed when it runs longer than `bound` (so a wait that does not end on a
/// terminal state fails the test instead of hanging it).
fn run_within(c: &Cluster, args: &[&str], bound: Duration) -> Output {
    let child = c
        .cmd(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(bound) {
        Ok(out) => out,
        Err(_) => {
            std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
            let out = rx.recv().unwrap();
            panic!(
                "redisctl {args:?} still ran after {bound:?}:\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
    }
}

fn destroyed(c: &Cluster) {
    let out = c.ok(&["destroy", "--yes"]);
    assert!(
        out.contains("nothing tagged redisctl:cluster=prod-redis is left"),
        "{out}"
    );
    assert!(live_instances().is_empty());
}

fn unencrypted(t: String) -> String {
    t.replace("encrypted = true", "encrypted = false")
}

fn encrypted(t: String) -> String {
    t.replace("encrypted = false", "encrypted = true")
}

/// Class 1: right after a create, EC2 answers `*.NotFound` for the new id and leaves it out of
/// lists; redisctl retries for the ids it made, and its final check waits for the lists.
#[test]
fn ids_ec2_does_not_know_yet_are_retried_not_failed() {
    let sb = Sandbox::acquire();
    let settings = sb.region().settings;
    assert!(
        settings.speed > 0.0 && settings.consistency_rate == 1.0,
        "the tests run in the timed region: {settings:?}"
    );
    let c = Cluster::new("consistency", |t| t);
    let t = Instant::now();
    let out = c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: apply from nothing at speed {}: {:.1}s",
        settings.speed,
        t.elapsed().as_secs_f64()
    );
    assert!(
        out.contains("Apply complete! 33 added, 0 changed, 0 destroyed"),
        "{out}"
    );
    let counters = sb.region().counters;
    figures("eventual consistency", &counters, &out);
    assert!(counters.not_found > 0, "the window was met: {counters:?}");
    assert!(
        retries(&out).keys().any(|k| k.ends_with(".NotFound")),
        "redisctl retried a NotFound: {out}"
    );
    assert_eq!(live_instances().len(), 3);
    c.assert_converged();
    destroyed(&c);
}

/// Class 2 (and a volume that fails, class 3): instances take time to stop and start,
/// snapshots are `pending` with a progress, volumes `creating`, attachments `attaching`; the
/// swap waits for each and keeps every key. A volume that EBS puts in `error` is deleted and
/// made again.
#[test]
fn states_that_take_time_are_waited_for_and_the_swap_keeps_the_data() {
    let sb = Sandbox::acquire();
    let c = Cluster::new("states", unencrypted);
    c.setup();
    write_keys(&c, KEYS);
    c.edit(encrypted);
    sb.fail_volumes(1);
    sb.stats(true);
    let out = c.ok(&["apply", "--yes"]);
    let counters = sb.region().counters;
    figures("states that take time", &counters, &out);
    read_keys(&c, KEYS);
    assert_eq!(counters.volumes_failed, 1, "{counters:?}");
    assert_eq!(
        counters.incorrect_state, 0,
        "redisctl never acted on a resource in a transitional state: {counters:?}"
    );
    assert!(
        out.contains("deleting it and creating the volume again"),
        "{out}"
    );
    let (vols, snaps) = volumes_and_snapshots();
    assert_eq!(
        vols.len(),
        3,
        "one volume per node, none failed or stray: {vols:?}"
    );
    assert!(vols.iter().all(|(_, enc, _)| *enc), "{vols:?}");
    assert!(snaps.is_empty(), "no plaintext snapshot left: {snaps:?}");
    c.assert_converged();
    destroyed(&c);
}

/// Class 3: a launch that EC2 terminates after `pending`, and a start that falls back to
/// `stopped`. A reason on EC2's side is tried again; a reason on the client's side (a KMS key)
/// ends the wait at once, and the error quotes the StateReason and says what to do.
#[test]
fn failures_after_ec2_said_yes_end_the_wait_with_the_state_reason() {
    let sb = Sandbox::acquire();
    let c = Cluster::new("failures", |t| t);
    sb.fail_launches(1, Some("Client.InvalidKMSKey.InvalidState"));
    let out = run_within(&c, &["apply", "--yes"], Duration::from_secs(240));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Client.InvalidKMSKey.InvalidState"), "{err}");
    assert!(err.contains("state `terminated`"), "{err}");
    assert!(err.contains("the EBS KMS key cannot be used"), "{err}");

    // The rerun launches anew (the terminated instance is not adopted), and a failure on
    // EC2's side is tried again by itself.
    sb.fail_launches(1, Some("Server.InternalError"));
    let out = c.ok(&["apply", "--yes"]);
    assert!(out.contains("launching again"), "{out}");
    assert_eq!(live_instances().len(), 3, "no duplicate instance");
    c.assert_converged();

    // A resize restarts the nodes: a start that EC2 ends on its side is tried again.
    c.edit_spec(
        "instance_type = \"t2.micro\"",
        "instance_type = \"t3.micro\"",
    );
    sb.fail_starts(1, Some("Server.InsufficientInstanceCapacity"));
    let out = c.ok(&["apply", "--yes"]);
    assert!(out.contains("starting it again"), "{out}");
    c.assert_converged();

    // One on the client's side stops the run, naming the reason; the next run starts it.
    c.edit_spec(
        "instance_type = \"t3.micro\"",
        "instance_type = \"t2.micro\"",
    );
    sb.fail_starts(1, Some("Client.InvalidKMSKey.InvalidState"));
    let out = run_within(&c, &["apply", "--yes"], Duration::from_secs(240));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("state `stopped`"), "{err}");
    assert!(err.contains("Client.InvalidKMSKey.InvalidState"), "{err}");
    c.ok(&["apply", "--yes"]);
    c.assert_converged();
    let counters = sb.region().counters;
    figures("failures after yes", &counters, "");
    assert_eq!((counters.launches_failed, counters.starts_failed), (2, 2));
    assert_eq!(live_instances().len(), 3, "no duplicate instance");
    destroyed(&c);
}

/// Class 4: EC2 keeps a ClientToken at least 24 hours, also after the instance is terminated.
/// Tokens are new for every attempt, so destroy → apply → destroy → apply in one day launches
/// new instances, with no IdempotentParameterMismatch and no old instance handed back.
#[test]
fn client_tokens_are_new_for_every_attempt_so_a_second_apply_in_a_day_launches_anew() {
    let sb = Sandbox::acquire();
    let c = Cluster::new("tokens", |t| t);
    c.ok(&["apply", "--yes"]);
    let first = live_instances();
    destroyed(&c);
    let out = run_within(&c, &["apply", "--yes"], Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let second = live_instances();
    assert_eq!(second.len(), 3);
    assert!(
        second.iter().all(|i| !first.contains(i)),
        "new instances, not the old ones handed back: {first:?} {second:?}"
    );
    let counters = sb.region().counters;
    figures("client tokens", &counters, "");
    assert_eq!(
        (counters.idempotent_mismatches, counters.token_replays),
        (0, 0),
        "{counters:?}"
    );
    destroyed(&c);
}

/// Class 5: a launch takes effect and its answer is lost. The SDK's retry carries the same
/// token and gets the same instance; when every answer is lost, apply finds the instances by
/// their tags and takes them.
#[test]
fn a_lost_answer_to_a_launch_makes_no_second_instance() {
    let sb = Sandbox::acquire();
    let c = Cluster::new("lost", |t| t);
    sb.lose_responses("RunInstances", 2);
    let out = c.ok(&["apply", "--yes"]);
    let counters = sb.region().counters;
    figures("lost answers", &counters, &out);
    assert_eq!(live_instances().len(), 3, "no duplicate instance");
    assert_eq!(counters.lost_responses, 2, "{counters:?}");
    assert_eq!(counters.token_replays, 2, "the SDK's retries were replays");
    destroyed(&c);

    // Every answer lost, the SDK's retries' too: the launches took effect all the same, and
    // apply looks for each node's instance by its tags and takes it (one per node; it used to
    // give up, and the rerun adopted them).
    sb.add_fault(Fault {
        action: "RunInstances".into(),
        effect: Effect::LoseResponse,
        times: None,
        rate: None,
        fired: 0,
    });
    sb.stats(true);
    let out = c.run(&["apply", "--yes"]);
    sb.clear_faults();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{said}");
    let made = live_instances();
    assert_eq!(made.len(), 3, "one instance per node: {made:?}\n{said}");
    let launched = sb.stats(false).get("RunInstances").copied().unwrap_or(0);
    let counters = sb.region().counters;
    eprintln!(
        "figure: every launch answer lost: {launched} RunInstances calls ({} replays of a token), 3 instances taken by their tags",
        counters.token_replays
    );
    c.assert_converged();
    destroyed(&c);
}

/// Class 6: for a while after a termination EC2 still holds the instance's interface: the
/// private IP cannot be reused, the gateway not detached, the subnet and group not deleted. A
/// launch that EC2 failed is launched again at the node's fixed IP, which waits for the IP;
/// destroy right after apply waits the rest out and proves nothing is left. (At speed 0.5, so
/// that the lingering window, 20 s, is well longer than redisctl's poll of a termination.)
#[test]
fn dependencies_that_linger_after_a_termination_are_waited_out() {
    let sb = Sandbox::acquire();
    let _settings = Settings::set(
        &sb,
        RegionChange {
            speed: Some(0.5),
            ..RegionChange::default()
        },
    );
    let c = Cluster::new("lingering", |t| t);
    sb.fail_launches(1, Some("Server.InternalError"));
    let mut out = c.ok(&["apply", "--yes"]);
    assert!(out.contains("launching again"), "{out}");
    assert!(
        retries(&out).contains_key("InvalidIPAddress.InUse"),
        "the relaunch at the same IP waited for it: {out}"
    );
    assert_eq!(live_instances().len(), 3, "no duplicate instance");
    out.push_str(&c.ok(&["destroy", "--yes"]));
    let counters = sb.region().counters;
    figures("lingering dependencies", &counters, &out);
    assert!(counters.lingering > 0, "{counters:?}");
    assert!(
        retries(&out).contains_key("DependencyViolation"),
        "destroy retried the refusals: {out}"
    );
    assert!(
        out.contains("nothing tagged redisctl:cluster=prod-redis is left"),
        "{out}"
    );
    assert!(live_instances().is_empty());
    let (vols, _) = volumes_and_snapshots();
    assert!(vols.is_empty(), "{vols:?}");
}

/// Every class on at once, at a fifth of the requests each applies to: apply from nothing, a
/// swap with data, and destroy each succeed, with no duplicate and nothing left.
#[test]
fn with_every_class_at_a_fifth_apply_swap_and_destroy_succeed() {
    let sb = Sandbox::acquire();
    let _settings = Settings::set(
        &sb,
        RegionChange {
            consistency_rate: Some(0.2),
            lingering_rate: Some(0.2),
            ..RegionChange::default()
        },
    );
    let faults = [
        (
            "RunInstances",
            Effect::LaunchFails {
                reason: "Server.InternalError".into(),
            },
        ),
        (
            "StartInstances",
            Effect::StartFails {
                reason: "Server.InsufficientInstanceCapacity".into(),
            },
        ),
        ("CreateVolume", Effect::VolumeFails),
        ("RunInstances", Effect::LoseResponse),
        ("CreateVolume", Effect::LoseResponse),
        ("CreateRouteTable", Effect::LoseResponse),
    ];
    for (action, effect) in faults {
        sb.add_fault(Fault {
            action: action.into(),
            effect,
            times: None,
            rate: Some(0.2),
            fired: 0,
        });
    }
    let c = Cluster::new("all", unencrypted);
    let t = Instant::now();
    let mut log = c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: apply from nothing, every class at 20%: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(live_instances().len(), 3, "no duplicate instance");
    write_keys(&c, KEYS);
    c.edit(encrypted);
    let t = Instant::now();
    log.push_str(&c.ok(&["apply", "--yes"]));
    eprintln!(
        "figure: swap, every class at 20%: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    read_keys(&c, KEYS);
    let (vols, snaps) = volumes_and_snapshots();
    assert_eq!(vols.len(), 3, "one volume per node: {vols:?}");
    assert!(vols.iter().all(|(_, enc, _)| *enc), "{vols:?}");
    assert!(snaps.is_empty(), "{snaps:?}");
    c.assert_converged();
    let t = Instant::now();
    log.push_str(&c.ok(&["destroy", "--yes"]));
    eprintln!(
        "figure: destroy, every class at 20%: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert!(live_instances().is_empty());
    let (vols, snaps) = volumes_and_snapshots();
    assert!(vols.is_empty() && snaps.is_empty(), "{vols:?} {snaps:?}");
    figures("every class at 20%", &sb.region().counters, &log);
}
