//! End-to-end: the cluster in a network as AWS builds it (docs/sandbox.md): nodes reached at
//! their public IPs through the internet gateway, security groups enforced, instances held to
//! their type's size. A bus rule removed behind redisctl's back breaks the cluster until one
//! apply puts it back; a `via = "private-ip"` cluster is reached by its private addresses (as
//! through a VPN, from the operator's internet address) and installs Redis through the NAT
//! gateway redisctl builds for it; a node restarted by an instance type change is reached at its
//! new public IP; a t2.micro filled past its default `maxmemory` refuses writes and keeps running.
//! Run inside the sandbox's operator namespace:
//! `redisctl-sandbox exec -- cargo test -p redisctl --test e2e_network -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Cluster, text};
use redisctl_sandbox::testing::Sandbox;

const IPS: [&str; 3] = ["10.0.1.10", "10.0.2.10", "10.0.3.10"];

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

/// Waits (at most `limit`) until `check` holds; panics with `what` otherwise.
fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !check() {
        assert!(t.elapsed() < limit, "{what}: not so after {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    t.elapsed()
}

/// Each node's public IP as EC2 shows it now (running instances of cluster prod-redis).
fn public_ips() -> BTreeMap<String, String> {
    block(async {
        let ec2 = common::ec2_client().await;
        common::running_nodes(&ec2)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(node, i)| Some((node, i.public_ip_address()?.to_string())))
            .collect()
    })
}

/// Out of band: the cluster bus rule (the group itself as source) revoked, as described (with
/// its description: moto matches that too, where AWS would not need it).
fn revoke_the_bus_rule() {
    block(async {
        let ec2 = common::ec2_client().await;
        let groups = ec2
            .describe_security_groups()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:redisctl:cluster")
                    .values("prod-redis")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let group = &groups.security_groups()[0];
        let sg = group.group_id().unwrap();
        let bus = group
            .ip_permissions()
            .iter()
            .find(|p| {
                p.from_port() == Some(16379)
                    && p.user_id_group_pairs()
                        .iter()
                        .any(|g| g.group_id() == Some(sg))
            })
            .unwrap_or_else(|| panic!("no bus rule in {group:?}"))
            .clone();
        ec2.revoke_security_group_ingress()
            .group_id(sg)
            .ip_permissions(bus)
            .send()
            .await
            .unwrap();
    })
}

/// `verify` with redisctl's SSH log: the address it connected to for each node.
fn verify_connections(c: &Cluster) -> String {
    let out = c
        .cmd(&["verify"])
        .env("RUST_LOG", "redisctl::ssh=debug,warn")
        .output()
        .unwrap();
    let log = text(&out.stderr);
    assert!(
        out.status.success(),
        "verify failed:\n{}\n{log}",
        text(&out.stdout)
    );
    log.lines()
        .filter(|l| l.contains("ssh connect") && !l.contains("connected"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_nodes_are_reached_at_their_public_ips() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("public", |t| t);
    c.ok(&["apply", "--yes"]);
    let ips = public_ips();
    assert_eq!(ips.len(), 3, "{ips:?}");
    let log = verify_connections(&c);
    for (node, ip) in &ips {
        assert!(ip.starts_with("198.51.100."), "{node}: {ip}");
        assert!(
            log.contains(&format!("{ip}:22")),
            "verify did not reach {node} at its public IP {ip}:\n{log}"
        );
    }
    assert!(!log.contains("10.0."), "{log}");
    c.ok(&["destroy", "--yes"]);
}

/// The cluster's NAT gateways as EC2 lists them: (id, state, public IPs).
fn nat_gateways() -> Vec<(String, String, Vec<String>)> {
    block(async {
        let ec2 = common::ec2_client().await;
        let out = ec2
            .describe_nat_gateways()
            .filter(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:redisctl:cluster")
                    .values("prod-redis")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.nat_gateways()
            .iter()
            .map(|g| {
                (
                    g.nat_gateway_id().unwrap_or_default().to_string(),
                    g.state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    g.nat_gateway_addresses()
                        .iter()
                        .filter_map(|a| a.public_ip().map(String::from))
                        .collect(),
                )
            })
            .collect()
    })
}

/// The lines of the package archive's request log (`GET /debian/… 200 from ADDRESS`).
fn archive_log() -> String {
    let path = redisctl_sandbox::paths::Paths::from_env()
        .logs()
        .join("archive.log");
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_private_ip_cluster_leaves_through_a_nat_gateway() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("private", |t| {
        t.replace("via = \"public-ip\"", "via = \"private-ip\"")
    });
    let before = archive_log().len();
    c.ok(&["apply", "--yes"]);
    assert!(
        public_ips().is_empty(),
        "private-ip subnets map no public IP: {:?}",
        public_ips()
    );
    // The nodes installed Redis from the archive, and the archive saw only the NAT gateway's
    // Elastic IP: no node has an address of its own out there.
    let nats = nat_gateways();
    let live: Vec<_> = nats.iter().filter(|g| g.1 != "deleted").collect();
    assert_eq!(live.len(), 1, "{nats:?}");
    assert_eq!(live[0].1, "available", "{nats:?}");
    let eip = live[0]
        .2
        .first()
        .expect("the NAT gateway has an Elastic IP")
        .clone();
    let log = archive_log()[before..].to_string();
    let sources: std::collections::BTreeSet<&str> = log
        .lines()
        .filter_map(|l| l.rsplit(" from ").next())
        .collect();
    assert_eq!(
        sources,
        [eip.as_str()].into_iter().collect(),
        "the archive saw other sources than the NAT gateway's {eip}:\n{log}"
    );
    assert!(log.contains(" 200 from "), "nothing was fetched:\n{log}");
    let log = verify_connections(&c);
    for ip in IPS {
        assert!(log.contains(&format!("{ip}:22")), "{log}");
    }
    c.assert_converged();
    c.ok(&["destroy", "--yes"]);
    let nats = nat_gateways();
    assert!(
        nats.iter().all(|g| g.1 == "deleted"),
        "destroy left a NAT gateway: {nats:?}"
    );
}

#[test]
fn a_bus_rule_removed_out_of_band_breaks_the_cluster_until_one_apply() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("sgdrift", |t| t);
    c.setup();
    c.ok(&["verify"]);
    revoke_the_bus_rule();
    // Connections open before the change go on (security groups track them, as on AWS); a node
    // that restarts must open new ones, and its peers can no longer hear it.
    c.on_node(IPS[0], "systemctl restart redis-server@cluster", "");
    let failed = within(
        Duration::from_secs(90),
        "the cluster noticing a node it cannot reach",
        || {
            c.redis(IPS[1], "CLUSTER INFO")
                .contains("cluster_state:fail")
        },
    );
    eprintln!("figure: cluster_state:fail {failed:?} after the restart");
    let out = c.run(&["verify"]);
    assert!(!out.status.success(), "verify passed a broken cluster");
    let report = text(&out.stdout);
    assert!(report.contains("16379"), "{report}");

    let plan = text(&c.run(&["plan"]).stdout);
    assert!(plan.contains("+ sg.rule[bus self]"), "{plan}");
    c.ok(&["apply", "--yes"]);
    let healed = within(
        Duration::from_secs(90),
        "the cluster healthy again after one apply",
        || {
            IPS.iter()
                .all(|ip| c.redis(ip, "CLUSTER INFO").contains("cluster_state:ok"))
        },
    );
    eprintln!("figure: cluster_state:ok {healed:?} after the apply");
    c.ok(&["verify"]);
    c.assert_converged();
    c.ok(&["destroy", "--yes"]);
}

#[test]
fn a_node_restarted_by_an_instance_type_change_is_reached_at_its_new_address() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("resize", |t| t);
    c.setup();
    let before = public_ips();
    c.edit_spec(
        "instance_type = \"t2.micro\"",
        "instance_type = \"t3.micro\"",
    );
    let plan = text(&c.run(&["plan"]).stdout);
    assert!(plan.contains("\"t2.micro\" -> \"t3.micro\""), "{plan}");
    let t = Instant::now();
    c.ok(&["apply", "--yes"]);
    eprintln!(
        "figure: instance type change of 3 nodes: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let after = public_ips();
    assert_eq!(before.len(), 3);
    for (node, ip) in &before {
        assert_ne!(
            after.get(node),
            Some(ip),
            "{node} kept its public IP through a stop and start"
        );
    }
    c.ok(&["verify"]);
    c.assert_converged();
    c.ok(&["destroy", "--yes"]);
}

#[test]
fn a_t2_micro_filled_past_maxmemory_refuses_writes_and_keeps_running() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("full", |t| t);
    c.setup();
    // The default from the instance type: 1 GiB less a quarter.
    let max = c.redis(IPS[0], "CONFIG GET maxmemory");
    assert!(max.contains(&(768u64 << 20).to_string()), "{max}");
    // One slot's worth of 1 MB values (a hash tag keeps every key on one node), 64 per call,
    // until Redis says it is full.
    let mut refused = None;
    for round in 0..30 {
        let out = c.redis(
            IPS[0],
            &format!(
                "-c EVAL \"for i=1,64 do redis.call('SET', KEYS[1]..i, string.rep('x', 1048000)) end return 64\" 1 {{fill}}:{round}:"
            ),
        );
        if out.contains("OOM command not allowed") {
            refused = Some(round);
            break;
        }
        assert!(out.trim().ends_with("64"), "round {round}: {out}");
    }
    let round = refused.expect("Redis took 1.9 GB on a 1 GiB node without refusing");
    eprintln!("figure: writes refused after {} MB", round * 64);
    // Still up, on every node, and reading.
    for ip in IPS {
        assert!(c.redis(ip, "PING").contains("PONG"), "{ip}");
        let state = c.on_node(ip, "systemctl is-active redis-server@cluster", "");
        assert_eq!(state.trim(), "active", "{ip}");
    }
    assert!(
        c.redis(IPS[0], "-c STRLEN {fill}:0:1").contains("1048000"),
        "the data written before is still there"
    );
    for ip in IPS {
        let memory = c.redis(ip, "INFO memory");
        eprintln!(
            "figure: {ip}: {}",
            memory
                .lines()
                .filter(|l| l.starts_with("used_memory_human")
                    || l.starts_with("used_memory_rss_human"))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    c.ok(&["destroy", "--yes"]);
}
