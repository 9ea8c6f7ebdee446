//! End-to-end: the EBS encryption swap (phase 8) in the sandbox, through real volume
//! directories — an unencrypted cluster with 10,000 keys encrypted in place, a swap killed at
//! stage boundaries and finished by a rerun, `strategy = "swap"` from nothing, a rolling swap
//! with replicas under a live writer (with `--keep-old-volumes`), and a failed swap that keeps
//! the plaintext root and says how to roll back. Figures are printed as `figure:` lines.
//! Run inside the sandbox's operator namespace:
//! `redisctl-sandbox exec -- cargo test -p redisctl --test e2e_swap -- --nocapture`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::data::dbsize_total;
use common::{ADMIN_PW, Cluster, IPS, text};
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
                    (t("redisctl:node").unwrap_or_default(), t("redisctl:stage"))
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
            || l.contains("root_volume: ")
            || l.contains("Redis was down")
            || l.contains("swap done in")
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

/// Start apply, kill it (SIGKILL) as soon as any node has recorded `stage` (or a later one).
fn apply_killed_at(c: &Cluster, ec2: &Ec2, stage: &str) -> bool {
    let mut child = c
        .cmd(&["apply", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            eprintln!("apply finished ({status}) before stage {stage} was seen");
            return false;
        }
        let stages = ec2.stages();
        if stages
            .iter()
            .any(|(_, s)| s.as_deref().is_some_and(|s| s >= stage))
        {
            child.kill().unwrap();
            child.wait().unwrap();
            eprintln!("killed apply at {stage}: {stages:?}");
            return true;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no stage {stage}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_swap_killed_at_stage_boundaries_is_finished_by_a_rerun() {
    let _sb = Sandbox::acquire();
    let ec2 = Ec2::new();
    let c = Cluster::new("swapkill", unencrypted);
    c.setup();
    write_keys(&c);
    c.edit(encrypted);
    let mut killed = Vec::new();
    for stage in [
        "swap:1-stopped",
        "swap:2-snapshotted",
        "swap:3-volume-created",
        "swap:4-attached",
        "swap:5-started",
    ] {
        if apply_killed_at(&c, &ec2, stage) {
            killed.push(stage);
            let plan = text(&c.run(&["plan"]).stdout);
            assert!(
                plan.contains("in flight"),
                "after a kill at {stage}:\n{plan}"
            );
        } else {
            break;
        }
    }
    eprintln!("killed at: {killed:?}");
    assert!(!killed.is_empty(), "apply was killed at least once");
    let out = c.ok_within(&["apply", "--yes"], Duration::from_secs(600));
    figures("rerun after kills", &out);
    read_keys(&c);
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

/// A client outside the nodes writing continuously through any node that answers; returns the
/// longest time writes kept failing, and how many writes were made and failed.
fn writer(
    tls: [PathBuf; 3],
    ips: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Duration, usize, usize)> {
    std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let mut failing_since: Option<Instant> = None;
        let (mut writes, mut failed) = (0, 0);
        let mut first_error: Option<String> = None;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            writes += 1;
            let key = format!("live:{writes}");
            let ok = ips.iter().any(|ip| {
                let out = Command::new("redis-cli")
                    .arg("--tls")
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
                    ])
                    .args(["-c", "SET", &key, "v"])
                    .env("REDISCLI_AUTH", ADMIN_PW)
                    .stdin(Stdio::null())
                    .output();
                match out {
                    Ok(o) if text(&o.stdout).trim() == "OK" => true,
                    Ok(o) => {
                        if first_error.is_none() {
                            first_error = Some(format!(
                                "{ip}: {} {}",
                                text(&o.stdout).trim(),
                                text(&o.stderr).trim()
                            ));
                        }
                        false
                    }
                    Err(e) => panic!("redis-cli: {e}"),
                }
            });
            match (ok, failing_since) {
                (true, Some(t)) => {
                    longest = longest.max(t.elapsed());
                    failing_since = None;
                }
                (false, None) => {
                    failed += 1;
                    failing_since = Some(Instant::now());
                }
                (false, Some(_)) => failed += 1,
                (true, None) => {}
            }
        }
        if let Some(t) = failing_since {
            longest = longest.max(t.elapsed());
        }
        if let Some(e) = first_error {
            eprintln!("writer: first failed attempt: {e}");
        }
        (longest, writes, failed)
    })
}

#[test]
fn with_replicas_the_swap_rolls_with_a_failover_and_keeps_the_old_volumes_on_request() {
    let _sb = Sandbox::acquire();
    let ec2 = Ec2::new();
    let six = |t: String| {
        // The writer below is a client on the operator's machine.
        let t = common::redis_open_to_operator(unencrypted(t))
            .replace("replicas_per_master = 0", "replicas_per_master = 1");
        let start = t.find("\n[[nodes.node]]").unwrap();
        let end = t.find("\n[ssh]").unwrap();
        format!("{}{}", &t[..start], &t[end..])
    };
    let c = Cluster::new("swaprep", six);
    c.setup();
    write_keys(&c);
    c.edit(encrypted);
    let plan = text(&c.run(&["plan"]).stdout);
    assert_eq!(plan.matches("-/+ node.").count(), 6, "{plan}");
    assert!(plan.contains("one node at a time"), "{plan}");

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
    let w = writer(tls, ips, stop.clone());
    let t = Instant::now();
    let out = c.ok(&["apply", "--yes", "--keep-old-volumes"]);
    eprintln!(
        "figure: rolling swap of 6 nodes (3 masters + 3 replicas): {:.1}s",
        t.elapsed().as_secs_f64()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (longest, writes, failed) = w.join().unwrap();
    eprintln!(
        "figure: a client writing during the rolling swap: {writes} writes, {failed} failed, longest failing stretch {:.2}s",
        longest.as_secs_f64()
    );
    assert!(writes > failed, "the writer could write at all");
    assert!(
        longest < Duration::from_secs(5),
        "no write fails for longer than a failover: {longest:?}"
    );
    figures("6 nodes, replicas", &out);
    for line in out.lines().filter(|l| l.contains("failover done in")) {
        eprintln!("figure: {}", line.trim());
    }
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
    let out = c.ok(&["apply", "--yes"]);
    assert_eq!(
        out.matches("removing a stray volume").count(),
        3,
        "one of the two injected volumes per node is adopted, the other removed:\n{out}"
    );
    assert_eq!(
        out.matches("removing a stray plaintext snapshot").count(),
        3,
        "{out}"
    );
    read_keys(&c);
    assert_encrypted_and_clean(&ec2);
    assert_eq!(c.plan_exit(), 0);
    c.ok(&["destroy", "--yes"]);
}
