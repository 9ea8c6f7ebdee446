//! End-to-end: the attacks of docs/security.md's threat model, played in the sandbox, each
//! shown to fail. An account insider with ec2:RunInstances and ec2:CreateTags launches an
//! impostor with the cluster's key pair (so its sshd accepts redisctl's key) and tags it as a
//! node, in the cluster's own subnet or elsewhere; writes a host-key tag; forges the swap's
//! stage tags to make apply delete another team's volume and snapshot. Run inside the
//! sandbox's operator namespace:
//! `redisctl-sandbox exec -- cargo test -p redisctl --test e2e_security -- --nocapture`.

mod common;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use common::{Cluster, text};
use redisctl_sandbox::testing::Sandbox;

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The cluster's instance, subnet and security group of node `node`.
fn node_of(node: &str) -> (String, String, String) {
    block(async {
        let ec2 = common::ec2_client().await;
        let out = ec2
            .describe_instances()
            .filters(filter("tag:redisctl:node", node))
            .filters(filter("instance-state-name", "running"))
            .send()
            .await
            .unwrap();
        let i = out.reservations()[0].instances()[0].clone();
        (
            i.instance_id().unwrap().to_string(),
            i.subnet_id().unwrap().to_string(),
            i.security_groups()[0].group_id().unwrap().to_string(),
        )
    })
}

/// An instance someone else in the account launches with the cluster's key pair (so its sshd
/// accepts redisctl's key) in `subnet` at `ip`, with `group` if given, tagged as node `node` of
/// cluster prod-redis if given. Returns its id and the address the operator reaches it at once
/// it runs (public if it has one).
fn launch(subnet: &str, ip: &str, group: Option<&str>, node: Option<&str>) -> (String, String) {
    block(async {
        let ec2 = common::ec2_client().await;
        let ami = common::ami::noble_ami(&ec2).await;
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let mut run = ec2
            .run_instances()
            .image_id(ami)
            .instance_type(aws_sdk_ec2::types::InstanceType::T2Micro)
            .min_count(1)
            .max_count(1)
            .key_name("prod-redis-key")
            .subnet_id(subnet)
            .private_ip_address(ip)
            .set_security_group_ids(group.map(|g| vec![g.to_string()]));
        if let Some(node) = node {
            run = run.tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(tag("redisctl:cluster", "prod-redis"))
                    .tags(tag("redisctl:role", "node"))
                    .tags(tag("redisctl:node", node))
                    .build(),
            );
        }
        let id = run.send().await.unwrap().instances()[0]
            .instance_id()
            .unwrap()
            .to_string();
        for _ in 0..600 {
            if let Ok(out) = ec2.describe_instances().instance_ids(&id).send().await
                && let Some(i) = out
                    .reservations()
                    .first()
                    .and_then(|r| r.instances().first())
                && i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running")
                && let Some(at) = i.public_ip_address().or(i.private_ip_address())
            {
                return (id, at.to_string());
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("{id} did not run");
    })
}

/// What the impostor's own journal says redisctl did there: the SSH logins its sshd accepted and
/// the commands run with sudo (read over one SSH login of the test's own, which counts once).
/// The logins are counted from sshd's own lines: the unit's journal also holds the sudo lines
/// of the sessions, whose command text names the pattern (and whose own line may or may not
/// be written before the count is taken).
fn impostor_log(c: &Cluster, at: &str) -> (usize, usize, String) {
    let mut out = String::new();
    for _ in 0..60 {
        out = c.on_node(
            at,
            "journalctl --no-pager -o cat _COMM=sshd | grep -c \"Accepted publickey\"; journalctl --no-pager -o cat _COMM=sudo | grep -c \"COMMAND=\"; ls /etc/redis 2>&1",
            "",
        );
        if out
            .lines()
            .next()
            .is_some_and(|l| l.trim().parse::<usize>().is_ok())
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let mut lines = out.lines();
    let logins = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(usize::MAX);
    let sudos = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(usize::MAX);
    (logins, sudos, out)
}

#[test]
fn an_impostor_in_the_clusters_subnet_is_a_blocker_and_gets_nothing() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("impostor", |t| t);
    c.ok(&["apply", "--yes"]);
    let (_, subnet, group) = node_of("redis-node-1a");
    let (id, at) = launch(&subnet, "10.0.1.66", Some(&group), Some("redis-node-1a"));
    // What the impostor's journal holds before redisctl could see it: the test's own reads
    // while it booted (a login accepted during boot can still be refused a session).
    let (logins_before, sudos_before, _) = impostor_log(&c, &at);

    // Two instances claim redis-node-1a: the plan says so as a blocker, apply refuses.
    let out = c.run(&["plan"]);
    let plan = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{plan}");
    assert!(
        plan.contains(&id) && plan.contains("claim to be node redis-node-1a"),
        "{plan}"
    );
    let out = c.run(&["apply", "--yes"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    // verify reaches the real nodes only (the impostor is not at the node's address).
    c.ok(&["verify"]);

    // Since then the impostor saw one login (the test's own, reading this) and one sudo:
    // redisctl never logged in, so no password, key or certificate ever reached it.
    let (logins, sudos, log) = impostor_log(&c, &at);
    assert_eq!(
        logins,
        logins_before + 1,
        "redisctl logged in to the impostor (before plan: {logins_before}):\n{log}"
    );
    // Every sudo is one of the test's own sessions (one each, the logins above): the first
    // read's own sudo line may have been journaled only after it counted (CI saw 0, then 2).
    assert!(
        sudos <= logins,
        "redisctl ran commands on the impostor (before plan: {sudos_before} sudo(s), {logins} login(s) all the test's own):\n{log}"
    );
    assert!(
        log.contains("No such file"),
        "the impostor holds /etc/redis:\n{log}"
    );
    block(async {
        let ec2 = common::ec2_client().await;
        ec2.terminate_instances()
            .instance_ids(&id)
            .send()
            .await
            .unwrap();
    });
    c.ok(&["destroy", "--yes"]);
}

#[test]
fn an_impostor_outside_the_network_is_not_a_node_and_destroy_leaves_it() {
    let sb = Sandbox::acquire();
    // The seeded account's untagged VPC holds a subnet 10.0.1.0/24 too: the insider's instance
    // sits there at node redis-node-1a's own address, tagged as that node.
    sb.seed_used_account("someone-elses-key");
    let c = Cluster::new("stranger", |t| t);
    c.ok(&["apply", "--yes"]);
    let foreign_subnet = block(async {
        let ec2 = common::ec2_client().await;
        let subnets = ec2
            .describe_subnets()
            .filters(filter("cidr-block", "10.0.2.0/24"))
            .send()
            .await
            .unwrap();
        subnets
            .subnets()
            .iter()
            .find(|s| !s.tags().iter().any(|t| t.key() == Some("redisctl:cluster")))
            .expect("the seeded account has an untagged 10.0.2.0/24")
            .subnet_id()
            .unwrap()
            .to_string()
    });
    // (At another address than the real node's: the sandbox's VPCs share one bridge.)
    let (id, _) = launch(&foreign_subnet, "10.0.2.77", None, Some("redis-node-1b"));
    let out = c.run(&["plan"]);
    let plan = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{plan}");
    assert!(
        plan.contains(&id) && plan.contains("never connects to, changes or deletes it"),
        "{plan}"
    );
    c.ok(&["verify"]);
    // destroy removes the cluster and leaves the impostor running (a tag is not ownership).
    c.ok(&["destroy", "--yes"]);
    let state = block(async {
        let ec2 = common::ec2_client().await;
        let out = ec2
            .describe_instances()
            .instance_ids(&id)
            .send()
            .await
            .unwrap();
        let i = out.reservations()[0].instances()[0].clone();
        i.state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
    });
    assert_eq!(
        state.as_deref(),
        Some("running"),
        "destroy ended the impostor"
    );
    block(async {
        let ec2 = common::ec2_client().await;
        ec2.terminate_instances()
            .instance_ids(&id)
            .send()
            .await
            .unwrap();
    });
}

#[test]
fn a_host_key_tag_is_not_a_pin() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("tagpin", |t| t);
    c.ok(&["apply", "--yes"]);
    let (id, _, _) = node_of("redis-node-1a");
    // Without this state directory's pins, verify refuses every node (the tags alone are not
    // enough), before connecting.
    let known = c.dir.join(".redisctl/prod-redis/known_hosts");
    let saved = std::fs::read_to_string(&known).unwrap();
    std::fs::write(&known, "").unwrap();
    let out = c.run(&["verify"]);
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("has no host key pinned in this state directory"),
        "{report}"
    );
    std::fs::write(&known, saved).unwrap();

    // A host-key tag rewritten by someone else: the pin here wins and verify passes; a state
    // directory without the pin trusts the console over the tag, and refuses the node.
    block(async {
        let ec2 = common::ec2_client().await;
        ec2.create_tags()
            .resources(&id)
            .tags(
                Tag::builder()
                    .key("redisctl:host-key")
                    .value("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU")
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    c.ok(&["verify"]);
    let others: Vec<String> = std::fs::read_to_string(&known)
        .unwrap()
        .lines()
        .filter(|l| !l.contains(&id))
        .map(String::from)
        .collect();
    std::fs::write(&known, others.join("\n") + "\n").unwrap();
    let out = c.run(&["plan"]);
    let plan = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        plan.contains("a key its console output does not list"),
        "the forged tag was not caught:\n{plan}"
    );
    c.ok(&["destroy", "--yes"]);
}

/// Whether the volume and the snapshot still exist.
fn still_there(volume: &str, snapshot: &str) -> (bool, bool) {
    block(async {
        let ec2 = common::ec2_client().await;
        let v = ec2
            .describe_volumes()
            .volume_ids(volume)
            .send()
            .await
            .is_ok();
        let s = ec2
            .describe_snapshots()
            .snapshot_ids(snapshot)
            .send()
            .await
            .is_ok();
        (v, s)
    })
}

#[test]
fn forged_swap_tags_delete_nothing() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("forgedswap", |t| t);
    c.ok(&["apply", "--yes"]);
    let (instance, _, _) = node_of("redis-node-1a");
    let root = block(async {
        let ec2 = common::ec2_client().await;
        let out = ec2
            .describe_instances()
            .instance_ids(&instance)
            .send()
            .await
            .unwrap();
        let i = out.reservations()[0].instances()[0].clone();
        let dev = i.root_device_name().unwrap().to_string();
        i.block_device_mappings()
            .iter()
            .find(|m| m.device_name() == Some(dev.as_str()))
            .and_then(|m| m.ebs()?.volume_id().map(String::from))
            .unwrap()
    });
    // Another team's volume and its snapshot, in the node's AZ; then the insider writes the
    // swap's tags on the node as if a swap had reached its last stage with those two as the
    // old root and its snapshot.
    let (volume, snapshot) = block(async {
        let ec2 = common::ec2_client().await;
        let v = ec2
            .create_volume()
            .availability_zone("us-east-1a")
            .size(1)
            .send()
            .await
            .unwrap()
            .volume_id()
            .unwrap()
            .to_string();
        // (Right after CreateVolume, EC2 may not know the volume yet, and it is `creating`.)
        let mut s = None;
        for _ in 0..300 {
            match ec2.create_snapshot().volume_id(&v).send().await {
                Ok(out) => {
                    s = out.snapshot_id().map(String::from);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
        let s = s.expect("no snapshot of the foreign volume");
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        ec2.create_tags()
            .resources(&instance)
            .tags(tag("redisctl:stage", "swap:6-verified"))
            .tags(tag("redisctl:swap-old-volume", &v))
            .tags(tag("redisctl:swap-snapshot", &s))
            // (the node's own root as the "new" volume, so that only the victims can fail)
            .tags(tag("redisctl:swap-new-volume", &root))
            .send()
            .await
            .unwrap();
        (v, s)
    });
    let out = c.run(&["plan"]);
    let plan = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{plan}");
    assert!(
        plan.contains("redis-node-1a.root_volume")
            && (plan.contains(&volume) || plan.contains(&snapshot)),
        "no blocker names the forged ids:\n{plan}"
    );
    let out = c.run(&["apply", "--yes"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let (v_left, s_left) = still_there(&volume, &snapshot);
    assert!(
        v_left && s_left,
        "the forged swap deleted volume {v_left} / snapshot {s_left}"
    );
    // The swap's tags go; the insider now tags both victims for the cluster itself, so that
    // destroy would take them with it.
    block(async {
        let ec2 = common::ec2_client().await;
        ec2.delete_tags()
            .resources(&instance)
            .tags(Tag::builder().key("redisctl:stage").build())
            .tags(Tag::builder().key("redisctl:swap-old-volume").build())
            .tags(Tag::builder().key("redisctl:swap-snapshot").build())
            .tags(Tag::builder().key("redisctl:swap-new-volume").build())
            .send()
            .await
            .unwrap();
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        ec2.create_tags()
            .resources(&volume)
            .resources(&snapshot)
            .tags(tag("redisctl:cluster", "prod-redis"))
            .tags(tag("redisctl:node", "redis-node-1a"))
            .tags(tag("redisctl:kept-for-rollback", "redis-node-1a"))
            .send()
            .await
            .unwrap();
    });
    let out = c.ok(&["destroy", "--yes"]);
    assert!(
        out.contains(&format!(
            "volume {volume} is tagged for cluster prod-redis but nothing else ties it"
        )) && out.contains(&format!(
            "snapshot {snapshot} is tagged for cluster prod-redis but nothing else ties it"
        )),
        "{out}"
    );
    let survived = still_there(&volume, &snapshot);
    // They are the test's to delete.
    block(async {
        let ec2 = common::ec2_client().await;
        let _ = ec2.delete_snapshot().snapshot_id(&snapshot).send().await;
        let _ = ec2.delete_volume().volume_id(&volume).send().await;
    });
    assert_eq!(survived, (true, true), "destroy deleted a victim:\n{out}");
}

#[test]
fn a_key_pair_replaced_during_the_prompt_is_refused() {
    use std::io::Write;
    use std::process::Command;
    let _sb = Sandbox::acquire();
    let c = Cluster::new("keyswap", |t| t);
    // The operator's apply waits at its confirmation prompt (a terminal, no --yes)...
    let (mut child, screen) = c.apply_at_prompt();
    // ...while the insider imports a key pair of the spec's name holding their own key.
    let dir = c.dir.join("insider");
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("key"))
        .status()
        .unwrap();
    assert!(status.success());
    let theirs = std::fs::read_to_string(dir.join("key.pub")).unwrap();
    block(async {
        let ec2 = common::ec2_client().await;
        ec2.import_key_pair()
            .key_name("prod-redis-key")
            .public_key_material(aws_sdk_ec2::primitives::Blob::new(theirs.into_bytes()))
            .send()
            .await
            .unwrap();
    });
    child.stdin.as_mut().unwrap().write_all(b"yes\n").unwrap();
    let status = child.wait().unwrap();
    let shown = text(&screen.lock().unwrap());
    assert!(!status.success(), "apply went ahead:\n{shown}");
    assert!(shown.contains("holds another public key"), "{shown}");
    // No node was launched with the insider's key.
    let launched = block(async {
        let ec2 = common::ec2_client().await;
        let out = ec2
            .describe_instances()
            .filters(filter("tag:redisctl:cluster", "prod-redis"))
            .send()
            .await
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
            .count()
    });
    assert_eq!(launched, 0, "a node was launched:\n{shown}");
    block(async {
        let ec2 = common::ec2_client().await;
        ec2.delete_key_pair()
            .key_name("prod-redis-key")
            .send()
            .await
            .unwrap();
    });
    c.ok(&["destroy", "--yes"]);
}

#[test]
fn apply_pins_the_host_key_the_plan_showed() {
    use std::io::Write;
    let _sb = Sandbox::acquire();
    let c = Cluster::new("planpin", |t| t);
    c.ok(&["apply", "--yes"]);
    let (id, _, _) = node_of("redis-node-1a");
    let ip = common::IPS[0];
    // The node is met again at first contact (this state directory lost its pin) and needs
    // Redis installed again: the plan pins the key it saw, next to a step on that node in the
    // same phase.
    let removed = c.on_node(
        ip,
        "dpkg --remove redis-server >/dev/null 2>&1; dpkg-query -W -f='${Status}' redis-server",
        "",
    );
    assert!(!removed.contains("install ok installed"), "{removed}");
    let known = c.dir.join(".redisctl/prod-redis/known_hosts");
    let kept: Vec<String> = std::fs::read_to_string(&known)
        .unwrap()
        .lines()
        .filter(|l| !l.contains(&id))
        .map(String::from)
        .collect();
    std::fs::write(&known, kept.join("\n") + "\n").unwrap();
    let (mut child, screen) = c.apply_at_prompt();
    let shown = text(&screen.lock().unwrap());
    assert!(shown.contains("first contact: pin the host key"), "{shown}");
    // At the prompt, the host starts presenting another of its keys (one its console output
    // lists too, so only the plan's own key tells them apart).
    let switched = c.on_node(
        ip,
        "printf 'HostKey /etc/ssh/ssh_host_ecdsa_key\\n' > /etc/ssh/sshd_config.d/00-ecdsa-only.conf && (systemctl reload ssh || systemctl restart ssh) && echo switched",
        "",
    );
    assert!(switched.contains("switched"), "{switched}");
    child.stdin.as_mut().unwrap().write_all(b"yes\n").unwrap();
    let status = child.wait().unwrap();
    let shown = text(&screen.lock().unwrap());
    assert!(!status.success(), "apply went ahead:\n{shown}");
    assert!(
        shown.contains("the key the plan being applied showed"),
        "{shown}"
    );
    // Nothing ran on the node: Redis is still not installed.
    let _ = std::fs::remove_file(c.dir.join("ssh_known_hosts"));
    let state = c.on_node(ip, "dpkg-query -W -f='${Status}' redis-server", "");
    assert!(
        !state.contains("install ok installed"),
        "a step ran: {state}"
    );
    let pins = std::fs::read_to_string(&known).unwrap();
    assert!(
        !pins.lines().any(|l| l.contains(&id) && l.contains("ecdsa")),
        "the key the plan did not show was pinned:\n{pins}"
    );
    c.on_node(
        ip,
        "rm /etc/ssh/sshd_config.d/00-ecdsa-only.conf && (systemctl reload ssh || systemctl restart ssh)",
        "",
    );
    let _ = std::fs::remove_file(c.dir.join("ssh_known_hosts"));
    c.ok(&["apply", "--yes"]);
    let pins = std::fs::read_to_string(&known).unwrap();
    assert!(
        pins.lines()
            .any(|l| l.contains(&id) && l.contains("ssh-ed25519")),
        "{pins}"
    );
    c.ok(&["verify"]);
    c.ok(&["destroy", "--yes"]);
}

#[test]
fn a_vpc_neighbour_reaches_redis_but_not_the_cluster_bus() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("neighbour", |t| t);
    c.ok(&["apply", "--yes"]);
    let (_, subnet, _) = node_of("redis-node-1a");
    // A machine in the cluster's subnet, not in its security group (what an application
    // server, or a holder of a `redisctl client-cert`, would be): its own group lets the
    // operator in over SSH, nothing else.
    let neighbour_group = block(async {
        let ec2 = common::ec2_client().await;
        let vpc = ec2
            .describe_subnets()
            .subnet_ids(&subnet)
            .send()
            .await
            .unwrap()
            .subnets()[0]
            .vpc_id()
            .unwrap()
            .to_string();
        let g = ec2
            .create_security_group()
            .group_name("app-servers")
            .description("an application server next to the cluster")
            .vpc_id(vpc)
            .send()
            .await
            .unwrap()
            .group_id()
            .unwrap()
            .to_string();
        // (A new group may be unknown for a moment: EC2's eventual consistency.)
        let rule = aws_sdk_ec2::types::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .ip_ranges(
                aws_sdk_ec2::types::IpRange::builder()
                    .cidr_ip(common::vpc::operator_cidr())
                    .build(),
            )
            .build();
        let mut allowed = false;
        for _ in 0..300 {
            if ec2
                .authorize_security_group_ingress()
                .group_id(&g)
                .ip_permissions(rule.clone())
                .send()
                .await
                .is_ok()
            {
                allowed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert!(allowed, "SSH could not be opened on {g}");
        g
    });
    let (id, at) = launch(&subnet, "10.0.1.77", Some(&neighbour_group), None);
    let probe = "for p in 6379 16379; do if timeout 5 bash -c \"</dev/tcp/10.0.1.10/$p\" 2>/dev/null; then echo \"$p=open\"; else echo \"$p=closed\"; fi; done";
    let mut out = String::new();
    for _ in 0..60 {
        out = c.on_node(&at, probe, "");
        if out.contains("6379=") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let says = |line: &str| out.lines().any(|l| l.trim() == line);
    assert!(
        says("6379=open"),
        "the Redis port is closed to the VPC:\n{out}"
    );
    assert!(
        says("16379=closed"),
        "the cluster bus is open to a VPC neighbour:\n{out}"
    );
    // The neighbour and its group go first (destroy removes only what redisctl made, and the
    // VPC cannot go while they are in it).
    block(async {
        let ec2 = common::ec2_client().await;
        ec2.terminate_instances()
            .instance_ids(&id)
            .send()
            .await
            .unwrap();
        for _ in 0..600 {
            if ec2
                .delete_security_group()
                .group_id(&neighbour_group)
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("the neighbour's group could not be deleted");
    });
    c.ok(&["destroy", "--yes"]);
}
