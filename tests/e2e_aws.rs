//! End-to-end: plan / apply / destroy of the AWS layer against the sandbox (moto behind the EC2
//! front, real booted hosts), through the real binary and the real aws-sdk-ec2. Run inside the
//! sandbox's operator namespace (scripts/test does it); without it these tests fail.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::account::{assert_as_before, now};
use common::{Cluster, text};

use aws_sdk_ec2::types::Filter;
use redisctl_sandbox::faults::{Effect, Fault};
use redisctl_sandbox::testing::Sandbox;

fn ec2() -> aws_sdk_ec2::Client {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        aws_sdk_ec2::Client::new(&conf)
    })
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

fn tagged(name: &str) -> Filter {
    Filter::builder()
        .name("tag:redisctl:cluster")
        .values(name)
        .build()
}

/// (VPCs, live instances, security groups) tagged for the cluster.
fn counts(c: &aws_sdk_ec2::Client) -> (usize, usize, usize) {
    block(async {
        let vpcs = c
            .describe_vpcs()
            .filters(tagged("prod-redis"))
            .send()
            .await
            .unwrap()
            .vpcs()
            .len();
        let inst = c
            .describe_instances()
            .filters(tagged("prod-redis"))
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .reservations()
            .iter()
            .map(|r| r.instances().len())
            .sum();
        let sgs = c
            .describe_security_groups()
            .filters(tagged("prod-redis"))
            .send()
            .await
            .unwrap()
            .security_groups()
            .len();
        (vpcs, inst, sgs)
    })
}

fn mutating(stats: &std::collections::BTreeMap<String, u64>) -> Vec<String> {
    stats
        .keys()
        .filter(|a| !a.starts_with("Describe"))
        .cloned()
        .collect()
}

#[test]
fn apply_from_nothing_converges_and_destroy_leaves_nothing() {
    let sb = Sandbox::acquire();
    let c = Cluster::new("full", |t| t);
    assert_eq!(c.plan_exit(), 2, "an empty region has changes");
    let calls: u64 = sb.stats(true).values().sum();
    assert!(calls > 0);
    let before = now();

    let out = c.ok(&["apply", "--yes"]);
    assert!(
        out.contains("Apply complete! 33 added, 0 changed, 0 destroyed"),
        "{out}"
    );
    assert_eq!(counts(&ec2()), (1, 3, 1));

    // Planning again finds nothing to do, with a constant number of Describe calls.
    sb.stats(true);
    c.assert_converged();
    let stats = sb.stats(true);
    let per_plan: u64 = stats.values().sum();
    eprintln!("figure: EC2 calls per plan of a converged 3-node cluster: {per_plan} ({stats:?})");
    assert!(
        mutating(&stats).is_empty(),
        "plan must not change anything: {stats:?}"
    );
    // One call per resource kind (the node runtime reuses the instances already described):
    // VPCs, subnets, gateways, route tables, groups, NAT gateways, addresses, key pairs,
    // instances, volumes, snapshots, images.
    assert_eq!(per_plan, 12, "one call per resource kind: {stats:?}");

    // The nodes are real hosts: the front booted one per instance, at the planned addresses.
    let ips: Vec<String> = sb.hosts().iter().map(|h| h.private_ip.clone()).collect();
    for ip in ["10.0.1.10", "10.0.2.10", "10.0.3.10"] {
        assert!(ips.iter().any(|x| x == ip), "no host at {ip}: {ips:?}");
    }
    // Root volumes are encrypted at launch with the spec's key, and tagged. (moto reports the
    // key as given; AWS reports the key's ARN.)
    let vols = block(
        ec2()
            .describe_volumes()
            .filters(tagged("prod-redis"))
            .send(),
    )
    .unwrap();
    assert_eq!(vols.volumes().len(), 3);
    for v in vols.volumes() {
        assert_eq!(v.encrypted(), Some(true), "{v:?}");
        assert_eq!(v.kms_key_id(), Some("alias/aws/ebs"), "{v:?}");
        assert_eq!(v.size(), Some(8));
        assert_eq!(v.volume_type().map(|t| t.as_str()), Some("gp3"));
    }
    check_resources(&ec2());
    // The private key stays here, 0600.
    use std::os::unix::fs::PermissionsExt;
    let key = c.dir.join(".redisctl/prod-redis/ssh_ed25519");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Applying again is safe and does nothing.
    let out = c.ok(&["apply", "--yes"]);
    assert!(out.contains("No changes."), "{out}");

    let out = c.ok(&["destroy", "--yes"]);
    assert!(
        out.contains("nothing tagged redisctl:cluster=prod-redis is left"),
        "{out}"
    );
    assert_eq!(counts(&ec2()), (0, 0, 0));
    assert_as_before(&before, "prod-redis", &[]);
    assert!(sb.hosts().is_empty(), "terminated instances leave no host");
    let out = c.ok(&["destroy", "--yes"]);
    assert!(out.contains("Nothing to destroy"), "{out}");
}

fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Every resource of the reference cluster exists once with its tags and attributes.
fn check_resources(c: &aws_sdk_ec2::Client) {
    block(async {
        let role = |tags: &[aws_sdk_ec2::types::Tag], want: &str| {
            assert_eq!(tag(tags, "redisctl:role"), Some(want));
            assert_eq!(
                tag(tags, "data-classification"),
                Some("phi"),
                "spec tags on {want}"
            );
            assert!(tag(tags, "Name").is_some_and(|n| n.starts_with("prod-redis-")));
        };
        let vpcs = c
            .describe_vpcs()
            .filters(tagged("prod-redis"))
            .send()
            .await
            .unwrap();
        let vpc = &vpcs.vpcs()[0];
        assert_eq!(vpc.cidr_block(), Some("10.0.0.0/16"));
        role(vpc.tags(), "vpc");
        let subnets = c
            .describe_subnets()
            .filters(tagged("prod-redis"))
            .send()
            .await
            .unwrap();
        let mut got: Vec<(String, String, bool)> = subnets
            .subnets()
            .iter()
            .map(|s| {
                role(s.tags(), "subnet");
                (
                    s.cidr_block().unwrap().into(),
                    s.availability_zone().unwrap().into(),
                    s.map_public_ip_on_launch().unwrap(),
                )
            })
            .collect();
        got.sort();
        let want: Vec<(String, String, bool)> = [
            ("10.0.1.0/24", "us-east-1a"),
            ("10.0.2.0/24", "us-east-1b"),
            ("10.0.3.0/24", "us-east-1c"),
        ]
        .iter()
        .map(|(c, a)| (c.to_string(), a.to_string(), true))
        .collect();
        assert_eq!(got, want);
        let igws = c
            .describe_internet_gateways()
            .filters(tagged("prod-redis"))
            .send()
            .await
            .unwrap();
        assert_eq!(igws.internet_gateways().len(), 1);
        let igw = &igws.internet_gateways()[0];
        role(igw.tags(), "igw");
        assert_eq!(igw.attachments()[0].vpc_id(), vpc.vpc_id());
        let rts = c
            .describe_route_tables()
            .filters(tagged("prod-redis"))
            .send()
            .await
            .unwrap();
        assert_eq!(rts.route_tables().len(), 1);
        let rt = &rts.route_tables()[0];
        role(rt.tags(), "rt");
        assert!(
            rt.routes()
                .iter()
                .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")
                    && r.gateway_id() == igw.internet_gateway_id())
        );
        assert_eq!(
            rt.associations()
                .iter()
                .filter(|a| a.subnet_id().is_some())
                .count(),
            3
        );
        let sgs = c
            .describe_security_groups()
            .filters(tagged("prod-redis"))
            .send()
            .await
            .unwrap();
        let sg = &sgs.security_groups()[0];
        role(sg.tags(), "sg");
        let own = sg.group_id().unwrap();
        let mut rules: Vec<(i32, String)> = sg
            .ip_permissions()
            .iter()
            .flat_map(|p| {
                let port = p.from_port().unwrap();
                p.ip_ranges()
                    .iter()
                    .map(move |r| (port, r.cidr_ip().unwrap().to_string()))
                    .chain(p.user_id_group_pairs().iter().map(move |g| {
                        let id = g.group_id().unwrap();
                        (
                            port,
                            if id == own {
                                "self".into()
                            } else {
                                id.to_string()
                            },
                        )
                    }))
            })
            .collect();
        rules.sort();
        // The bus only from the group itself: the nodes, not every holder of a CA-signed
        // certificate in the VPC.
        let want: Vec<(i32, String)> = [
            (22, "203.0.113.7/32"),
            (6379, "10.0.0.0/16"),
            (16379, "self"),
        ]
        .iter()
        .map(|(p, c)| (*p, c.to_string()))
        .collect();
        assert_eq!(rules, want);
        let kps = c
            .describe_key_pairs()
            .key_names("prod-redis-key")
            .send()
            .await
            .unwrap();
        role(kps.key_pairs()[0].tags(), "key");
        let inst = c
            .describe_instances()
            .filters(tagged("prod-redis"))
            .send()
            .await
            .unwrap();
        let mut nodes: Vec<String> = inst
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                role(i.tags(), "node");
                assert_eq!(i.instance_type().map(|t| t.as_str()), Some("t2.micro"));
                assert_eq!(i.key_name(), Some("prod-redis-key"));
                assert_eq!(i.security_groups()[0].group_id(), sg.group_id());
                format!(
                    "{} {} {}",
                    tag(i.tags(), "redisctl:node").unwrap(),
                    i.private_ip_address().unwrap(),
                    i.placement()
                        .and_then(|p| p.availability_zone())
                        .unwrap_or("")
                )
            })
            .collect();
        nodes.sort();
        assert_eq!(
            nodes,
            [
                "redis-node-1a 10.0.1.10 us-east-1a",
                "redis-node-1b 10.0.2.10 us-east-1b",
                "redis-node-1c 10.0.3.10 us-east-1c"
            ]
        );
    });
}

#[test]
fn plan_makes_the_same_number_of_ec2_calls_for_3_and_9_nodes() {
    let sb = Sandbox::acquire();
    let before = now();
    let mut figures = Vec::new();
    for (name, replicas) in [("three", 0), ("nine", 2)] {
        let c = Cluster::new(name, |t| {
            let t = t.replace(
                "replicas_per_master = 0",
                &format!("replicas_per_master = {replicas}"),
            );
            // Without the node list, nodes default to round-robin over the three subnets.
            common::derived_nodes(&t)
        });
        let t = std::time::Instant::now();
        let out = c.ok(&["apply", "--yes"]);
        let apply_time = t.elapsed();
        assert!(out.contains("Apply complete!"), "{out}");
        assert_eq!(counts(&ec2()).1, 3 * (1 + replicas as usize));
        sb.stats(true);
        let t = std::time::Instant::now();
        c.assert_converged();
        let plan_time = t.elapsed();
        let calls: u64 = sb.stats(true).values().sum();
        eprintln!(
            "figure: {} nodes: plan makes {calls} EC2 calls in {:.2}s; apply from nothing took {:.2}s",
            3 * (1 + replicas),
            plan_time.as_secs_f64(),
            apply_time.as_secs_f64()
        );
        figures.push(calls);
        c.ok(&["destroy", "--yes"]);
        assert_as_before(&before, "prod-redis", &[]);
    }
    assert_eq!(
        figures[0], figures[1],
        "EC2 calls per plan must not grow with the node count"
    );
}

#[test]
fn without_a_terminal_apply_refuses_unless_yes() {
    let sb = Sandbox::acquire();
    let before = now();
    let c = Cluster::new("noterm", |t| t);
    sb.stats(true);
    let out = c.run(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no terminal to confirm on: pass --yes"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        mutating(&sb.stats(false)).is_empty(),
        "refused apply changed something"
    );
    let out = c.run(&["destroy"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "nothing to destroy needs no confirmation"
    );
    assert_as_before(&before, "prod-redis", &[]);
}

#[test]
fn a_saved_plan_applies_without_prompt_and_is_refused_when_stale() {
    let sb = Sandbox::acquire();
    let before = now();
    let c = Cluster::new("saved", |t| t);
    let plan_file = c.dir.join("net.plan");
    let printed = c.ok(&["plan", "--out", plan_file.to_str().unwrap()]);
    let saved = std::fs::read_to_string(&plan_file).unwrap();
    assert!(saved.contains("\"kind\": \"redisctl-plan\""));
    // `show` prints the saved plan as `plan` printed it (from its first line to its summary).
    let body = |out: &str| -> String {
        let start = out.find("redisctl will perform").expect("a plan");
        let end = start + out[start..].find("\nPlan: ").expect("a summary");
        let line_end = end + 1 + out[end + 1..].find('\n').unwrap_or(out.len() - end - 1);
        out[start..line_end].to_string()
    };
    let shown = c.ok(&["show", plan_file.to_str().unwrap()]);
    assert_eq!(
        body(&shown),
        body(&printed),
        "show differs from what plan printed"
    );
    assert!(
        !saved.contains("REDIS_ADMIN_PASSWORD=") && !saved.contains("PRIVATE KEY"),
        "no secrets in a plan file"
    );
    c.assert_no_secret("the saved plan", &saved);

    // An altered copy (a CI artifact edited after review: the node launched elsewhere) is
    // refused before anything changes: apply plans again and the file is not that plan.
    let altered = c.dir.join("altered.plan");
    let forged = saved.replace(
        "\"private_ip\": \"10.0.1.10\"",
        "\"private_ip\": \"10.0.1.99\"",
    );
    assert_ne!(
        forged, saved,
        "the plan file names no node address to alter"
    );
    std::fs::write(&altered, forged).unwrap();
    sb.stats(true);
    let out = c.run(&["apply", altered.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("is not the plan redisctl makes"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        mutating(&sb.stats(false)).is_empty(),
        "an altered plan changed something"
    );

    // Applies with no --yes and no terminal.
    let out = c.ok(&["apply", plan_file.to_str().unwrap()]);
    assert!(out.contains("Apply complete!"), "{out}");

    // The same file again: AWS changed since (everything exists now).
    let out = c.run(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is stale: AWS changed since the plan was made"),
        "{}",
        text(&out.stderr)
    );

    // A fresh plan, then the spec changes: stale because of the spec.
    c.ok(&["plan", "--out", plan_file.to_str().unwrap()]);
    let spec = std::fs::read_to_string(&c.spec).unwrap().replace(
        "cluster_node_timeout_ms = 15000",
        "cluster_node_timeout_ms = 16000",
    );
    std::fs::write(&c.spec, spec).unwrap();
    let out = c.run(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("the spec (or a password it names) changed since the plan was made"),
        "{}",
        text(&out.stderr)
    );
    c.ok(&["destroy", "--yes"]);
    assert_as_before(&before, "prod-redis", &[]);
}

/// A saved plan carries a digest of the passwords the spec names: one changed between
/// `plan --out` and `apply FILE` (only its environment variable: the spec file is the same)
/// makes the plan stale, and apply changes nothing.
#[test]
fn a_saved_plan_is_refused_when_a_password_changed() {
    let sb = Sandbox::acquire();
    let before = now();
    let c = Cluster::new("stale-pw", |t| t);
    let plan_file = c.dir.join("pw.plan");
    c.ok(&["plan", "--out", plan_file.to_str().unwrap()]);
    let spec_before = std::fs::read(&c.spec).unwrap();

    // The same plan made with the new password differs only in the spec's fingerprint.
    let fingerprint = |file: &std::path::Path| -> (String, String) {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let f = &v["fingerprint"];
        (
            f["spec"].as_str().unwrap().to_string(),
            f["observed"].as_str().unwrap().to_string(),
        )
    };
    let other_file = c.dir.join("pw-changed.plan");
    let out = c
        .cmd(&["plan", "--out", other_file.to_str().unwrap()])
        .env("REDIS_APP_PASSWORD", "cluster-app-pw-rotated-77c1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (old, new) = (fingerprint(&plan_file), fingerprint(&other_file));
    assert_ne!(
        old.0, new.0,
        "the password is not in the spec's fingerprint"
    );
    assert_eq!(old.1, new.1, "AWS did not change between the two plans");

    sb.stats(true);
    let out = c
        .cmd(&["apply", plan_file.to_str().unwrap()])
        .env("REDIS_APP_PASSWORD", "cluster-app-pw-rotated-77c1")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}\n{err}", text(&out.stdout));
    assert!(
        err.contains("is stale: the spec (or a password it names) changed since the plan was made")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(
        !err.contains("cluster-app-pw-rotated-77c1")
            && !text(&out.stdout).contains("cluster-app-pw-rotated-77c1"),
        "the new password was printed"
    );
    assert!(
        mutating(&sb.stats(false)).is_empty(),
        "a stale plan changed something: {:?}",
        sb.stats(false)
    );
    assert_eq!(std::fs::read(&c.spec).unwrap(), spec_before);
    assert_as_before(&before, "prod-redis", &[]);
}

#[test]
fn out_of_band_changes_are_planned_back() {
    let _sb = Sandbox::acquire();
    let before = now();
    // The cluster is seconds old, so apply's look at the nodes waits for sshd on the ones it
    // cannot reach (they may still be booting) up to ssh.ready_timeout_secs: 20 s here, not 300.
    let c = Cluster::new("drift", |t| {
        t.replace("ready_timeout_secs = 300", "ready_timeout_secs = 20")
    });
    c.ok(&["apply", "--yes"]);
    let ec2 = ec2();
    // Open Redis to the world and stop a node, behind redisctl's back.
    block(async {
        common::open_redis_to_the_world(&ec2).await;
        let id = common::instance_of(&ec2, "redis-node-1b").await;
        common::stop_instance(&ec2, &id).await;
        let rts = ec2
            .describe_route_tables()
            .filters(tagged("prod-redis"))
            .send()
            .await
            .unwrap();
        let rt = rts.route_tables()[0].route_table_id().unwrap().to_string();
        ec2.delete_route()
            .route_table_id(rt)
            .destination_cidr_block("0.0.0.0/0")
            .send()
            .await
            .unwrap();
    });
    // Without the internet gateway route the nodes' public IPs lead nowhere: the nodes cannot be
    // looked at, so a drift check (--detailed-exitcode) says the plan is incomplete rather than
    // anything about them; the AWS side is planned back all the same.
    let out = c.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr)
            .contains("the plan is incomplete: node.redis-node-1a, node.redis-node-1c"),
        "{}",
        text(&out.stderr)
    );
    let plan = text(&out.stdout);
    assert!(plan.contains("- sg.rule[tcp 6379 0.0.0.0/0]"), "{plan}");
    assert!(
        plan.contains("~ state = \"stopped\" -> \"running\""),
        "{plan}"
    );
    assert!(plan.contains("+ route[0.0.0.0/0] = \"igw-"), "{plan}");
    assert!(
        plan.contains("Plan: 0 to add, 2 to change, 1 to destroy."),
        "{plan}"
    );
    let t = std::time::Instant::now();
    let out = c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: the drift apply took {:.1}s\n{out}",
        t.elapsed().as_secs_f64()
    );
    c.assert_converged();
    c.ok(&["destroy", "--yes"]);
    assert_as_before(&before, "prod-redis", &[]);
}

#[test]
fn moving_a_node_of_a_running_cluster_is_refused() {
    let sb = Sandbox::acquire();
    let before = now();
    let c = Cluster::new("replace", |t| t);
    c.ok(&["apply", "--yes"]);
    let moved = std::fs::read_to_string(&c.spec)
        .unwrap()
        .replace("private_ip = \"10.0.2.10\"", "private_ip = \"10.0.2.20\"");
    std::fs::write(&c.spec, moved).unwrap();
    let out = c.run(&["plan"]);
    let plan = text(&out.stdout);
    assert!(plan.contains("# forces replacement"), "{plan}");
    assert!(
        plan.contains("destroys the node's data; needs --allow-replace"),
        "{plan}"
    );
    assert!(
        plan.contains("redis-node-1b would not be part of the running cluster"),
        "{plan}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a plan with blockers is an error"
    );
    sb.stats(true);
    let out = c.run(&["apply", "--yes", "--allow-replace"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the plan has blockers"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        mutating(&sb.stats(false)).is_empty(),
        "a refused apply changed something"
    );
    c.ok(&["destroy", "--yes"]);
    assert_as_before(&before, "prod-redis", &[]);
}

/// Start apply, wait for `marker` on its progress, stop it with `signal`, then apply again.
fn interrupt_then_finish(name: &str, signal: &str, marker: &str) {
    let sb = Sandbox::acquire();
    let before = now();
    let c = Cluster::new(name, |t| t);
    // Slow node launches down (throttling, retried by the SDK) so the signal lands mid-apply.
    sb.add_fault(Fault {
        action: "RunInstances".into(),
        effect: Effect::Error {
            code: "RequestLimitExceeded".into(),
            status: 503,
        },
        times: Some(4),
        rate: None,
        fired: 0,
    });
    let mut child = c
        .cmd(&["apply", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains(marker) {
            Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "apply was not stopped (saw {seen:?})");
    sb.clear_faults();
    let out = c.ok(&["apply", "--yes"]);
    assert!(
        out.contains("Apply complete!") || out.contains("No changes."),
        "{out}"
    );
    assert_eq!(
        counts(&ec2()),
        (1, 3, 1),
        "no duplicates after an interrupted apply"
    );
    c.assert_converged();
    c.ok(&["destroy", "--yes"]);
    assert_as_before(&before, "prod-redis", &[]);
}

#[test]
fn apply_killed_midway_is_finished_by_the_next_apply() {
    interrupt_then_finish("kill", "-KILL", "node.redis-node-1a: creating");
}

#[test]
fn ctrl_c_stops_scheduling_and_the_next_apply_finishes() {
    interrupt_then_finish("sigint", "-INT", "key_pair: created");
}

#[test]
fn throttling_is_retried_and_a_hard_failure_names_the_step() {
    let sb = Sandbox::acquire();
    let before = now();
    let c = Cluster::new("faults", |t| t);
    sb.add_fault(Fault {
        action: "CreateSubnet".into(),
        effect: Effect::Error {
            code: "RequestLimitExceeded".into(),
            status: 503,
        },
        times: Some(2),
        rate: None,
        fired: 0,
    });
    sb.add_fault(Fault {
        action: "CreateSecurityGroup".into(),
        effect: Effect::Error {
            code: "UnauthorizedOperation".into(),
            status: 403,
        },
        times: None,
        rate: None,
        fired: 0,
    });
    let out = c.run(&["apply", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("error: step sg failed"), "{err}");
    assert!(
        err.contains("CreateSecurityGroup (prod-redis-redis) failed: UnauthorizedOperation"),
        "{err}"
    );
    assert!(
        err.contains("what to do: the AWS credentials in use may not call ec2:CreateSecurityGroup"),
        "{err}"
    );
    // The throttled subnets were retried and made.
    assert!(err.contains("subnet.redis-subnet-1a: created"), "{err}");
    sb.clear_faults();
    c.ok(&["apply", "--yes"]);
    assert_eq!(counts(&ec2()), (1, 3, 1));
    c.ok(&["destroy", "--yes"]);
    assert_as_before(&before, "prod-redis", &[]);
}

#[test]
fn an_unreachable_endpoint_is_an_error_that_says_so() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("unreachable", |t| t);
    let out = c
        .cmd(&["plan"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot read the state of cluster prod-redis from AWS"),
        "{err}"
    );
    assert!(
        err.contains("what to do: the EC2 endpoint could not be reached"),
        "{err}"
    );
}
