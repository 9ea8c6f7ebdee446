//! Shared helpers for the sandbox's own end-to-end tests: the real aws-sdk-ec2 against the
//! front, the `ssh` client against the hosts. The region is timed, so the helpers do what a
//! careful EC2 client does: retry a `*.NotFound` right after a create ([`until_found`]) and wait
//! (bounded) for the state they need ([`wait_state`], [`wait_volume`], [`wait_snapshot`]).
#![allow(dead_code)]

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, InstanceType, VolumeType};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub use redisctl_sandbox::testing::Sandbox;

#[path = "../../../tests/common/ami.rs"]
mod ami;
#[path = "../../../tests/common/settle.rs"]
mod settle;
#[path = "../../../tests/common/vpc.rs"]
mod vpc;
pub use ami::noble_ami;
pub use settle::{SETTLE_LIMIT, until_found};

/// The speed factor the timed region's own tests run at: 4× the default's windows (a 3 s
/// consistency window lasts 0.6 s, an attachment 0.6 s), so that a request made right after
/// another still lands inside the window on a loaded machine (at 0.05 a 150 ms window was
/// missed once in CI).
pub const TEST_SPEED: f64 = 0.2;

/// How long a host may take from RunInstances or StartInstances to an SSH login.
pub const BOOT_LIMIT: Duration = Duration::from_secs(60);

/// The region at `speed` for one test, put back as it was when the guard drops (declare it
/// after the [`Sandbox`], so it drops first).
pub struct AtSpeed<'a> {
    sb: &'a Sandbox,
    before: f64,
}

pub fn at_speed(sb: &Sandbox, speed: f64) -> AtSpeed<'_> {
    let before = sb.region().settings.speed;
    sb.set_region(redisctl_sandbox::control::RegionChange {
        speed: Some(speed),
        ..Default::default()
    });
    AtSpeed { sb, before }
}

impl Drop for AtSpeed<'_> {
    fn drop(&mut self) {
        self.sb.set_region(redisctl_sandbox::control::RegionChange {
            speed: Some(self.before),
            ..Default::default()
        });
    }
}

pub async fn client() -> Client {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Client::new(&conf)
}

/// A client that makes exactly one attempt per call (to see injected faults as they come).
pub async fn client_without_retries() -> Client {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let conf = aws_sdk_ec2::config::Builder::from(&conf)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

/// A temp dir with an ed25519 key pair `id` / `id.pub` and an empty known_hosts.
pub struct Keys {
    pub dir: tempfile::TempDir,
}

impl Keys {
    pub fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("id"), "operator");
        std::fs::write(dir.path().join("known_hosts"), "").unwrap();
        Keys { dir }
    }
    pub fn private(&self) -> PathBuf {
        self.dir.path().join("id")
    }
    pub fn public(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("id.pub"))
            .unwrap()
            .trim()
            .to_string()
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }
}

pub fn keygen(path: &Path, comment: &str) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is needed for the sandbox tests");
    assert!(st.success());
}

/// Runs `cmd` on `ip` as ubuntu. Host keys: learnt on first contact into the test's own
/// known_hosts and verified from then on (`strict` = must already be there).
pub fn ssh_with(keys: &Keys, key: &Path, ip: &str, cmd: &str, strict: bool) -> Output {
    Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!(
            "StrictHostKeyChecking={}",
            if strict { "yes" } else { "accept-new" }
        ))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            keys.known_hosts().display()
        ))
        .arg(format!("ubuntu@{ip}"))
        .arg(cmd)
        .output()
        .expect("cannot run ssh")
}

pub fn ssh(keys: &Keys, ip: &str, cmd: &str) -> Output {
    ssh_with(keys, &keys.private(), ip, cmd, false)
}

/// `ssh` that must succeed; returns stdout.
pub fn ssh_ok(keys: &Keys, ip: &str, cmd: &str) -> String {
    let out = ssh(keys, ip, cmd);
    assert!(
        out.status.success(),
        "ssh {ip} {cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (bounded) until an SSH login to `ip` works; returns how long it took.
pub fn wait_ssh(keys: &Keys, ip: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let out = ssh(keys, ip, "true");
        if out.status.success() {
            return t.elapsed();
        }
        if t.elapsed() > limit {
            panic!(
                "no SSH login as ubuntu@{ip} within {}s: {}",
                limit.as_secs(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `probe` until it returns `Some`, for at most [`SETTLE_LIMIT`].
async fn settle<T, Fut>(what: &str, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = (Option<T>, String)>,
{
    let t = Instant::now();
    loop {
        let (got, seen) = probe().await;
        if let Some(v) = got {
            return v;
        }
        assert!(
            t.elapsed() < SETTLE_LIMIT,
            "{what}: still {seen} after {}s",
            SETTLE_LIMIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until DescribeInstances shows the instance in `state`; returns how long that took.
pub async fn wait_state(ec2: &Client, id: &str, state: &str) -> Duration {
    let t = Instant::now();
    settle(&format!("{id} to be {state}"), || async {
        let now = instance_state(ec2, id).await;
        ((now == state).then_some(()), now)
    })
    .await;
    t.elapsed()
}

/// Waits until DescribeVolumes shows the volume with `status`.
pub async fn wait_volume(ec2: &Client, id: &str, status: &str) {
    settle(&format!("{id} to be {status}"), || async {
        let now = volume_status(ec2, id).await;
        ((now == status).then_some(()), now)
    })
    .await
}

pub async fn volume_status(ec2: &Client, id: &str) -> String {
    let r = until_found(id, || ec2.describe_volumes().volume_ids(id).send()).await;
    r.volumes()[0].state().unwrap().as_str().to_string()
}

/// Waits until the snapshot is `completed`; returns the progress values seen on the way.
pub async fn wait_snapshot(ec2: &Client, id: &str) -> Vec<String> {
    let t = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let r = until_found(id, || ec2.describe_snapshots().snapshot_ids(id).send()).await;
        let s = &r.snapshots()[0];
        let progress = s.progress().unwrap_or_default().to_string();
        if seen.last() != Some(&progress) {
            seen.push(progress);
        }
        let state = s.state().unwrap().as_str();
        if state == "completed" {
            return seen;
        }
        assert!(
            t.elapsed() < SETTLE_LIMIT,
            "{id} still {state} after {}s",
            SETTLE_LIMIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Net {
    pub vpc: String,
    /// (subnet id, AZ) for 10.0.1.0/24, 10.0.2.0/24.
    pub subnets: Vec<(String, String)>,
}

pub async fn network(ec2: &Client) -> Net {
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
    let mut subnets = Vec::new();
    for (n, az) in [(1, "us-east-1a"), (2, "us-east-1b")] {
        let s = until_found("CreateSubnet in the new VPC", || {
            ec2.create_subnet()
                .vpc_id(&vpc)
                .cidr_block(format!("10.0.{n}.0/24"))
                .availability_zone(az)
                .send()
        })
        .await
        .subnet
        .unwrap();
        subnets.push((s.subnet_id.unwrap(), az.to_string()));
    }
    for (s, _) in &subnets {
        until_found(s, || ec2.describe_subnets().subnet_ids(s).send()).await;
    }
    vpc::operator_may_ssh(ec2, &vpc).await;
    Net { vpc, subnets }
}

/// What a test that launches starts from: a client, the two-subnet VPC ([`network`]) and the
/// key pair `op` of new [`Keys`].
pub async fn ready_to_launch() -> (Client, Net, Keys) {
    let ec2 = client().await;
    let net = network(&ec2).await;
    let keys = Keys::new();
    import_key(&ec2, "op", &keys).await;
    (ec2, net, keys)
}

/// Subnet 10.0.1.0/24 as a public subnet: instances get a public IP and it routes 0.0.0.0/0 to
/// an internet gateway, so its hosts reach the apt archive (the distribution mirror's
/// stand-in on the emulated internet), as EC2 instances reach the internet.
pub async fn public_subnet(ec2: &Client, net: &Net) {
    let subnet = &net.subnets[0].0;
    ec2.modify_subnet_attribute()
        .subnet_id(subnet)
        .map_public_ip_on_launch(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    internet_route(ec2, &net.vpc, subnet).await;
}

pub async fn import_key(ec2: &Client, name: &str, keys: &Keys) {
    ec2.import_key_pair()
        .key_name(name)
        .public_key_material(aws_sdk_ec2::primitives::Blob::new(keys.public()))
        .send()
        .await
        .unwrap();
    until_found(name, || ec2.describe_key_pairs().key_names(name).send()).await;
}

/// RunInstances of one t2.micro at a fixed private IP, root 8 GiB gp3, as redisctl launches.
pub async fn run_instance(
    ec2: &Client,
    subnet: &str,
    ip: &str,
    key: &str,
    encrypted: bool,
    user_data: Option<&str>,
) -> String {
    let ami = noble_ami(ec2).await;
    run_instance_from(ec2, &ami, subnet, ip, key, encrypted, user_data).await
}

/// [`run_instance`] from a given image (e.g. [`redisctl_sandbox::NOINIT_AMI`]).
pub async fn run_instance_from(
    ec2: &Client,
    ami: &str,
    subnet: &str,
    ip: &str,
    key: &str,
    encrypted: bool,
    user_data: Option<&str>,
) -> String {
    use base64::Engine;
    let mut req = ec2
        .run_instances()
        .image_id(ami)
        .instance_type(InstanceType::T2Micro)
        .min_count(1)
        .max_count(1)
        .key_name(key)
        .subnet_id(subnet)
        .private_ip_address(ip)
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sda1")
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(8)
                        .volume_type(VolumeType::Gp3)
                        .encrypted(encrypted)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        );
    if let Some(ud) = user_data {
        req = req.user_data(base64::engine::general_purpose::STANDARD.encode(ud));
    }
    let out = req.send().await.unwrap();
    let id = out.instances.unwrap()[0].instance_id.clone().unwrap();
    until_found(&id, || ec2.describe_instances().instance_ids(&id).send()).await;
    id
}

pub async fn root_volume(ec2: &Client, id: &str) -> String {
    let r = until_found(id, || ec2.describe_instances().instance_ids(id).send()).await;
    let inst = &r.reservations()[0].instances()[0];
    let root = inst.root_device_name().unwrap().to_string();
    inst.block_device_mappings()
        .iter()
        .find(|b| b.device_name() == Some(root.as_str()))
        .and_then(|b| b.ebs()?.volume_id().map(str::to_string))
        .expect("no root volume attached")
}

pub async fn instance_state(ec2: &Client, id: &str) -> String {
    let r = until_found(id, || ec2.describe_instances().instance_ids(id).send()).await;
    r.reservations()[0].instances()[0]
        .state()
        .unwrap()
        .name()
        .unwrap()
        .as_str()
        .to_string()
}

/// An internet gateway attached to the VPC and a route table sending 0.0.0.0/0 to it, for
/// `subnet`. Returns the route table's id.
pub async fn internet_route(ec2: &Client, vpc: &str, subnet: &str) -> String {
    let igw = ec2
        .create_internet_gateway()
        .send()
        .await
        .unwrap()
        .internet_gateway
        .unwrap()
        .internet_gateway_id
        .unwrap();
    until_found("AttachInternetGateway", || {
        ec2.attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(vpc)
            .send()
    })
    .await;
    let rt = ec2
        .create_route_table()
        .vpc_id(vpc)
        .send()
        .await
        .unwrap()
        .route_table
        .unwrap()
        .route_table_id
        .unwrap();
    until_found("CreateRoute", || {
        ec2.create_route()
            .route_table_id(&rt)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send()
    })
    .await;
    until_found("AssociateRouteTable", || {
        ec2.associate_route_table()
            .route_table_id(&rt)
            .subnet_id(subnet)
            .send()
    })
    .await;
    rt
}

/// `sudo apt-get update` in the host against the sandbox's archive, bounded (5 s per
/// connection, no retries, any failed index is an error). Returns whether it worked, and its
/// output.
pub fn apt_update(keys: &Keys, ip: &str) -> (bool, String) {
    let out = ssh(
        keys,
        ip,
        "timeout 60 sudo apt-get -q -o Acquire::http::Timeout=5 -o Acquire::Retries=0 --error-on=any update 2>&1",
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("Err:"), text)
}

/// `apt_update` that must work.
pub fn apt_update_ok(keys: &Keys, ip: &str) {
    let (ok, text) = apt_update(keys, ip);
    assert!(ok, "apt-get update in {ip} failed:\n{text}");
}

/// The sandbox's archive log (`logs/archive.log`: `GET /debian/Packages 200 from 198.51.100.23`).
pub fn archive_log(sb: &Sandbox) -> std::path::PathBuf {
    sb.paths.logs().join("archive.log")
}

/// Its length now (to read what a test adds).
pub fn archive_log_len(sb: &Sandbox) -> usize {
    std::fs::read_to_string(archive_log(sb))
        .map(|s| s.len())
        .unwrap_or(0)
}

/// The source addresses of the requests logged since `offset`.
pub fn archive_sources_since(sb: &Sandbox, offset: usize) -> Vec<String> {
    let log = std::fs::read_to_string(archive_log(sb)).unwrap_or_default();
    let mut out: Vec<String> = log
        .get(offset..)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit_once(" from ").map(|(_, ip)| ip.trim().to_string()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A host may open a TCP connection to the archive (bounded: 3 s).
pub fn reaches_archive(keys: &Keys, ip: &str) -> bool {
    ssh(
        keys,
        ip,
        "timeout 3 bash -c 'exec 3<>/dev/tcp/192.0.2.80/80'",
    )
    .status
    .success()
}
