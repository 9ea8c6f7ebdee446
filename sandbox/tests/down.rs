//! `down` leaves nothing behind. This test tears the shared sandbox down, so it is ignored by
//! default and run last, outside the sandbox (in the root network namespace), as root:
//! `cargo test -p redisctl-sandbox --test down -- --ignored`. It brings the sandbox up itself
//! (a no-op when up), boots a host so there is something to remove, then runs `down`.

use redisctl_sandbox::paths::Paths;
use redisctl_sandbox::{client_env, lifecycle, net};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../../tests/common/ami.rs"]
mod ami;
#[path = "../../tests/common/settle.rs"]
mod settle;
#[path = "../../tests/common/vpc.rs"]
mod vpc;

const BIN: &str = env!("CARGO_BIN_EXE_redisctl-sandbox");

fn sandbox(args: &[&str]) {
    let st = Command::new(BIN).args(args).status().unwrap();
    assert!(st.success(), "redisctl-sandbox {args:?} failed ({st})");
}

/// Boots one host through the front, from a thread that has entered the operator namespace.
fn boot_a_host() {
    std::thread::spawn(|| {
        net::enter_operator_netns().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let env: std::collections::HashMap<_, _> = client_env().into_iter().collect();
            let creds = aws_sdk_ec2::config::Credentials::new(
                env["AWS_ACCESS_KEY_ID"].clone(),
                env["AWS_SECRET_ACCESS_KEY"].clone(),
                None,
                None,
                "sandbox",
            );
            let conf = aws_sdk_ec2::Config::builder()
                .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
                .endpoint_url(env["AWS_ENDPOINT_URL"].clone())
                .region(aws_sdk_ec2::config::Region::new(env["AWS_REGION"].clone()))
                .credentials_provider(creds)
                .build();
            let ec2 = aws_sdk_ec2::Client::from_conf(conf);
            let vpc = ec2
                .create_vpc()
                .cidr_block("10.0.0.0/16")
                .send()
                .await
                .unwrap()
                .vpc
                .unwrap()
                .vpc_id
                .unwrap();
            let subnet = settle::until_found("CreateSubnet", || {
                ec2.create_subnet()
                    .vpc_id(&vpc)
                    .cidr_block("10.0.1.0/24")
                    .send()
            })
            .await
            .subnet
            .unwrap()
            .subnet_id
            .unwrap();
            vpc::operator_may_ssh(&ec2, &vpc).await;
            let ami = ami::noble_ami(&ec2).await;
            settle::until_found("RunInstances", || {
                ec2.run_instances()
                    .image_id(&ami)
                    .instance_type(aws_sdk_ec2::types::InstanceType::T2Micro)
                    .min_count(1)
                    .max_count(1)
                    .subnet_id(&subnet)
                    .private_ip_address("10.0.1.10")
                    .send()
            })
            .await;
            // sshd answering (no key needed to see the banner).
            let t = Instant::now();
            while tokio::net::TcpStream::connect("10.0.1.10:22")
                .await
                .is_err()
            {
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "the host did not open port 22"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    })
    .join()
    .unwrap();
}

#[test]
#[ignore = "tears the shared sandbox down; run last: cargo test -p redisctl-sandbox --test down -- --ignored"]
fn down_leaves_nothing_behind() {
    assert!(
        std::env::var_os("REDISCTL_SANDBOX_NETNS").is_none(),
        "run this test outside the sandbox (not under `redisctl-sandbox exec`): it checks the root namespace"
    );
    let paths = Paths::from_env();
    sandbox(&["up"]);
    {
        let _lock = redisctl_sandbox::testing::lock(&paths);
        boot_a_host();
        // From the root namespace the host is not reachable: the VPC range is blackholed.
        let route = Command::new("ip")
            .args(["route", "get", "10.0.1.10"])
            .output()
            .unwrap();
        assert!(
            !route.status.success(),
            "{}",
            String::from_utf8_lossy(&route.stdout)
        );
        assert!(!lifecycle::sandbox_processes(&paths).is_empty());
        assert!(net::sandbox_namespaces().len() >= 2);
        assert!(
            [
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified",
                "/sys/fs/cgroup"
            ]
            .iter()
            .any(|h| std::path::Path::new(h)
                .join(redisctl_sandbox::cgroups::PARENT)
                .exists()),
            "the booted host has no cgroup of its own"
        );
    }
    let t = Instant::now();
    sandbox(&["down"]);
    eprintln!("figure: down with one host took {:?}", t.elapsed());

    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!netns.contains("rsbx-"), "namespaces left: {netns}");
    let procs = lifecycle::sandbox_processes(&paths);
    assert!(procs.is_empty(), "processes left: {procs:?}");
    let all = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter_map(redisctl_sandbox::proc::cmdline)
        .filter(|c| {
            c.contains("systemd-nspawn") && c.contains("rsbx-") || c.contains("moto_server")
        })
        .collect::<Vec<_>>();
    assert!(all.is_empty(), "processes left: {all:?}");
    let mounts = lifecycle::sandbox_mounts(&paths);
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    for h in [
        "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ] {
        let cg = std::path::Path::new(h).join(redisctl_sandbox::cgroups::PARENT);
        assert!(!cg.exists(), "cgroup left: {}", cg.display());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains("redisctl-sandbox") && !mountinfo.contains("rsbx-"),
        "mounts left:\n{mountinfo}"
    );
    let routes = Command::new("ip")
        .args(["route", "show", "type", "blackhole"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    for cidr in net::BLACKHOLES {
        assert!(!routes.contains(cidr), "route left: {routes}");
    }
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("rsv") && !links.contains("rsbx"),
        "links left: {links}"
    );
    assert!(!paths.run.exists(), "{} left", paths.run.display());
    assert!(!paths.volumes().exists(), "volumes left");
    // What `up` caches stays, so the next `up` is warm.
    assert!(paths.venv().join("bin/moto_server").exists());
}
