//! The machine effects: what the front does after moto said yes to an action that touches a
//! machine or a disk (the [`ACTIONS`]), and the table of hosts it booted. RunInstances and
//! StartInstances boot a host (network, first-boot files, nspawn), StopInstances stops it
//! cleanly, RebootInstances does both, TerminateInstances also removes its namespace, its kernel
//! values ([`crate::kernel`]) and the volumes deleted with it; the snapshot and volume actions go to the [`Volumes`] store. Ids,
//! IPs and attachments come from moto's answer and from Describe calls of the front's own.
//! The checks AWS makes and moto does not, and what must be read before moto forgets it, come
//! before the request is forwarded ([`Machines::before`]).

use crate::control::HostStatus;
use crate::front::moto::{Auth, Moto, numbered, param};
use crate::front::volumes::Volumes;
use crate::hosts::{self, HostSpec, Running};
use crate::logging::log;
use crate::paths::Paths;
use crate::{cloudinit, net, xml};
use anyhow::{Context, Result};
use base64::Engine;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a host gets to shut down cleanly before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// The actions with an effect beyond moto's record.
pub const ACTIONS: &[&str] = &[
    "RunInstances",
    "StartInstances",
    "StopInstances",
    "RebootInstances",
    "TerminateInstances",
    "CreateSnapshot",
    "CopySnapshot",
    "DeleteSnapshot",
    "CreateVolume",
    "DeleteVolume",
    "AttachVolume",
    "DetachVolume",
];

/// What [`Machines::before`] found.
pub enum Before {
    Nothing,
    /// The request is answered with this EC2 error and never reaches moto.
    Refuse {
        status: u16,
        code: &'static str,
        message: String,
    },
    /// Volumes to delete once moto terminated their instances.
    Volumes(Vec<String>),
}

/// The console output of one boot of an instance's host ([`crate::console`]): what cloud-init
/// printed, from the host keys on the root volume it booted.
#[derive(Debug, Clone)]
pub struct ConsolePost {
    pub text: String,
    /// When the host booted (the clock the timed region's windows run on).
    pub booted: Instant,
    /// The same moment on the wall clock (for the answer's `timestamp`).
    pub booted_at: std::time::SystemTime,
}

struct Host {
    private_ip: String,
    root_volume: Option<String>,
    running: Option<Running>,
}

pub struct Machines {
    paths: Paths,
    base: PathBuf,
    moto: Moto,
    volumes: Volumes,
    hosts: Mutex<HashMap<String, Host>>,
    /// When each instance was last started by StartInstances (EC2's `LaunchTime`).
    started: Mutex<HashMap<String, std::time::SystemTime>>,
    /// Instance type → its size (DescribeInstanceTypes), asked once.
    sizes: Mutex<HashMap<String, Option<crate::cgroups::Size>>>,
    /// Each instance's console: the posts of its last two boots, oldest first. Kept after
    /// the host stops or the instance terminates, as EC2 keeps the console output.
    consoles: Mutex<HashMap<String, Vec<ConsolePost>>>,
}

impl Machines {
    pub fn new(paths: Paths, base: PathBuf, moto: Moto) -> Machines {
        Machines {
            volumes: Volumes::new(paths.clone()),
            paths,
            base,
            moto,
            hosts: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
            started: Mutex::new(HashMap::new()),
            consoles: Mutex::new(HashMap::new()),
        }
    }

    /// Before moto sees the action: refuse what AWS would, note what the effect will need.
    pub async fn before(
        &self,
        auth: &Auth,
        action: &str,
        params: &[(String, String)],
    ) -> Result<Before> {
        match action {
            "StartInstances" => {
                for id in numbered(params, "InstanceId") {
                    let inst = match self.moto.describe_instance(auth, &id).await {
                        Ok(i) => i,
                        Err(_) => continue, // moto gives the proper NotFound error
                    };
                    if inst.root_volume().is_none() {
                        let dev = inst.root_device_name.unwrap_or_else(|| "/dev/sda1".into());
                        return Ok(Before::Refuse {
                            status: 400,
                            code: "IncorrectState",
                            message: format!(
                                "Unable to start instance {id}: it has no volume attached at its root device {dev}"
                            ),
                        });
                    }
                }
                Ok(Before::Nothing)
            }
            "TerminateInstances" => {
                let mut vols = Vec::new();
                for id in numbered(params, "InstanceId") {
                    if let Ok(inst) = self.moto.describe_instance(auth, &id).await {
                        vols.extend(
                            inst.block_devices
                                .into_iter()
                                .filter(|b| b.delete_on_termination)
                                .map(|b| b.volume_id),
                        );
                    }
                }
                Ok(Before::Volumes(vols))
            }
            "RunInstances" => {
                let subnet =
                    param(params, "SubnetId").or(param(params, "NetworkInterface.1.SubnetId"));
                let (Some(subnet), Some(_)) = (subnet, fixed_address(params)) else {
                    return Ok(Before::Nothing);
                };
                let listed = self
                    .moto
                    .ec2(
                        auth,
                        &[
                            ("Action", "DescribeInstances"),
                            ("Filter.1.Name", "subnet-id"),
                            ("Filter.1.Value.1", subnet),
                            // (Terminated ones hold no address, and would fill moto's page of
                            // 100 reservations in a subnet that outlives many instances.)
                            ("Filter.2.Name", "instance-state-name"),
                            ("Filter.2.Value.1", "pending"),
                            ("Filter.2.Value.2", "running"),
                            ("Filter.2.Value.3", "shutting-down"),
                            ("Filter.2.Value.4", "stopping"),
                            ("Filter.2.Value.5", "stopped"),
                            ("MaxResults", "1000"),
                        ],
                    )
                    .await?;
                Ok(match address_held(params, &xml::instances(&listed)?) {
                    Some(message) => {
                        log(&format!(
                            "RunInstances: refused as EC2 would: InvalidIPAddress.InUse {message} (held in {subnet})"
                        ));
                        Before::Refuse {
                            status: 400,
                            code: "InvalidIPAddress.InUse",
                            message,
                        }
                    }
                    None => Before::Nothing,
                })
            }
            _ => Ok(Before::Nothing),
        }
    }

    /// After moto said yes: the physical effect, given moto's answer.
    pub async fn effect(
        &self,
        auth: &Auth,
        action: &str,
        params: &[(String, String)],
        body: &str,
        before: Before,
    ) -> Result<()> {
        match action {
            "RunInstances" | "StartInstances" => {
                let ids = instance_ids(body)?;
                for id in ids {
                    self.boot(auth, &id).await?;
                    if action == "StartInstances" {
                        self.started
                            .lock()
                            .unwrap()
                            .insert(id, std::time::SystemTime::now());
                    }
                }
            }
            "StopInstances" => {
                let ids = instance_ids(body)?;
                self.stop_many(&ids).await;
            }
            "RebootInstances" => {
                let ids = numbered(params, "InstanceId");
                self.stop_many(&ids).await;
                for id in ids {
                    self.boot(auth, &id).await?;
                }
            }
            "TerminateInstances" => {
                let ids = instance_ids(body)?;
                self.stop_many(&ids).await;
                for id in &ids {
                    self.hosts.lock().unwrap().remove(id);
                    let ns = net::host_netns(id);
                    tokio::task::spawn_blocking(move || net::delete_netns(&ns)).await?;
                    let kernel = self.paths.host_kernel(id);
                    tokio::task::spawn_blocking(move || crate::safefs::remove_tree(&kernel))
                        .await??;
                }
                if let Before::Volumes(vols) = before {
                    for v in vols {
                        self.volumes.delete_volume(&v).await?;
                    }
                }
            }
            "CreateSnapshot" => {
                let vol = param(params, "VolumeId").context("CreateSnapshot without VolumeId")?;
                let snap = xml::first_text(body, "snapshotId")?
                    .context("moto's CreateSnapshot answer has no snapshotId")?;
                self.volumes.snapshot(vol, &snap).await?;
            }
            "CopySnapshot" => {
                let src = param(params, "SourceSnapshotId")
                    .context("CopySnapshot without SourceSnapshotId")?;
                let snap = xml::first_text(body, "snapshotId")?
                    .context("moto's CopySnapshot answer has no snapshotId")?;
                self.volumes.copy_snapshot(src, &snap).await?;
            }
            "CreateVolume" => {
                let vol = xml::first_text(body, "volumeId")?
                    .context("moto's CreateVolume answer has no volumeId")?;
                self.volumes
                    .create(&vol, param(params, "SnapshotId"))
                    .await?;
            }
            "DeleteVolume" => {
                if let Some(v) = param(params, "VolumeId") {
                    self.volumes.delete_volume(v).await?;
                }
            }
            "DeleteSnapshot" => {
                if let Some(s) = param(params, "SnapshotId") {
                    self.volumes.delete_snapshot(s).await?;
                }
            }
            // Attach/Detach only change moto's record; the root volume is read from it at boot.
            _ => {}
        }
        Ok(())
    }

    /// Boots an instance's host (no-op when it runs): network, first-boot files, nspawn.
    async fn boot(&self, auth: &Auth, id: &str) -> Result<()> {
        if self
            .hosts
            .lock()
            .unwrap()
            .get(id)
            .and_then(|h| h.running.as_ref())
            .is_some_and(|r| r.is_running())
        {
            return Ok(());
        }
        let inst = self.moto.describe_instance(auth, id).await?;
        let root = inst
            .root_volume()
            .map(|b| b.volume_id.clone())
            .with_context(|| format!("{id} has no root volume attached"))?;
        let ip = inst
            .private_ip
            .clone()
            .with_context(|| format!("{id} has no private IP"))?;
        let subnet = inst
            .subnet_id
            .clone()
            .with_context(|| format!("{id} is in no subnet"))?;
        let cidr = xml::subnet_cidr(
            &self
                .moto
                .ec2(
                    auth,
                    &[("Action", "DescribeSubnets"), ("SubnetId.1", &subnet)],
                )
                .await?,
        )?
        .with_context(|| format!("moto gave no CIDR block for {subnet}"))?;
        let upper = self.volumes.ensure(&root).await?;

        let initialised = {
            let (upper, id) = (upper.clone(), id.to_string());
            tokio::task::spawn_blocking(move || cloudinit::initialised(&upper, &id)).await?
        };
        if !initialised {
            let key = match &inst.key_name {
                Some(k) => xml::key_public(
                    &self
                        .moto
                        .ec2(
                            auth,
                            &[
                                ("Action", "DescribeKeyPairs"),
                                ("KeyName.1", k),
                                ("IncludePublicKey", "true"),
                            ],
                        )
                        .await?,
                )?,
                None => None,
            };
            let ud = xml::user_data(
                &self
                    .moto
                    .ec2(
                        auth,
                        &[
                            ("Action", "DescribeInstanceAttribute"),
                            ("InstanceId", id),
                            ("Attribute", "userData"),
                        ],
                    )
                    .await?,
            )?;
            let cfg = match ud {
                Some(b64) => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .context("the instance's user data is not base64")?;
                    let text = String::from_utf8_lossy(&raw).into_owned();
                    let cfg = cloudinit::parse_user_data(&text)?;
                    match &cfg {
                        None => log(&format!("{id}: user data is not #cloud-config; ignored")),
                        Some(c) if !c.ignored.is_empty() => log(&format!(
                            "{id}: cloud-config keys not emulated, ignored: {}",
                            c.ignored.join(", ")
                        )),
                        _ => {}
                    }
                    cfg
                }
                None => None,
            };
            let base = self.base.clone();
            let (upper2, id2, ip2) = (upper.clone(), id.to_string(), ip.clone());
            tokio::task::spawn_blocking(move || {
                cloudinit::apply(
                    &base,
                    &upper2,
                    &cloudinit::FirstBoot {
                        instance_id: &id2,
                        private_ip: &ip2,
                        key_pair_public: key.as_deref(),
                        cloud_config: cfg.as_ref(),
                    },
                )
            })
            .await??;
        }

        let ipv4: Ipv4Addr = ip.parse().with_context(|| format!("bad private IP {ip}"))?;
        let (id2, cidr2) = (id.to_string(), cidr.clone());
        tokio::task::spawn_blocking(move || net::ensure_host(&id2, ipv4, &cidr2)).await??;

        std::fs::create_dir_all(self.paths.host_pids())?;
        let size = match &inst.instance_type {
            Some(t) => self.size_of(auth, t).await?,
            None => None,
        };
        let spec = HostSpec {
            instance_id: id.to_string(),
            base: self.base.clone(),
            upper,
            netns: net::host_netns(id),
            log: self.paths.logs().join(format!("{id}.log")),
            pid_file: self.paths.host_pids().join(format!("{id}.pid")),
            kernel: self.paths.host_kernel(id),
            init: if inst.image_id.as_deref() == Some(crate::NOINIT_AMI) {
                hosts::Init::None {
                    hostname: cloudinit::hostname_for(&ip),
                }
            } else {
                hosts::Init::Systemd
            },
            size,
        };
        let noinit = matches!(spec.init, hosts::Init::None { .. });
        let volume = spec.upper.clone();
        let sized = size
            .map(|s| format!("{} MiB, {} vCPU", s.memory_mib, s.vcpus))
            .unwrap_or_else(|| "no size".into());
        let running = hosts::boot(spec)?;
        self.post_console(id, &ip, &volume).await;
        log(&format!(
            "{id}: booting at {ip} (root volume {root}, {sized}, {}, pid {})",
            if noinit { "no init system" } else { "systemd" },
            running.pid.load(Ordering::SeqCst)
        ));
        self.hosts.lock().unwrap().insert(
            id.to_string(),
            Host {
                private_ip: ip,
                root_volume: Some(root),
                running: Some(running),
            },
        );
        Ok(())
    }

    /// Records the console of the boot just started: cloud-init's key block from the host keys
    /// on the root volume it booted (what its sshd serves). A key that cannot be read is
    /// logged and the boot goes on (the console then lacks the block, as when cloud-init fails).
    async fn post_console(&self, id: &str, ip: &str, upper: &std::path::Path) {
        let (base, upper, hostname) = (
            self.base.clone(),
            upper.to_path_buf(),
            cloudinit::hostname_for(ip),
        );
        let booted_at = std::time::SystemTime::now();
        let text = tokio::task::spawn_blocking(move || {
            let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into());
            crate::console::host_keys(&base, &upper)
                .and_then(|keys| crate::console::boot_output(&hostname, &kernel, &keys, booted_at))
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                log(&format!("{id}: no host keys on the console: {e:#}"));
                String::new()
            }
        };
        let mut consoles = self.consoles.lock().unwrap();
        let posts = consoles.entry(id.to_string()).or_default();
        posts.push(ConsolePost {
            text,
            booted: Instant::now(),
            booted_at,
        });
        if posts.len() > 2 {
            posts.remove(0);
        }
    }

    /// The console posts of an instance's last two boots, oldest first (none before its first).
    pub fn console(&self, id: &str) -> Vec<ConsolePost> {
        self.consoles
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// What an instance type gives a host: moto's DescribeInstanceTypes, as on AWS.
    async fn size_of(
        &self,
        auth: &Auth,
        instance_type: &str,
    ) -> Result<Option<crate::cgroups::Size>> {
        if let Some(s) = self.sizes.lock().unwrap().get(instance_type) {
            return Ok(*s);
        }
        let answer = self
            .moto
            .ec2(
                auth,
                &[
                    ("Action", "DescribeInstanceTypes"),
                    ("InstanceType.1", instance_type),
                ],
            )
            .await?;
        let size = xml::instance_type_size(&answer)?
            .map(|(memory_mib, vcpus)| crate::cgroups::Size { memory_mib, vcpus });
        if size.is_none() {
            log(&format!(
                "{instance_type}: moto gives no size; its hosts are not held to one"
            ));
        }
        self.sizes
            .lock()
            .unwrap()
            .insert(instance_type.to_string(), size);
        Ok(size)
    }

    async fn stop_many(&self, ids: &[String]) {
        let to_stop: Vec<(String, Running)> = {
            let hosts = self.hosts.lock().unwrap();
            ids.iter()
                .filter_map(|id| Some((id.clone(), hosts.get(id)?.running.clone()?)))
                .collect()
        };
        let mut set = tokio::task::JoinSet::new();
        for (id, r) in to_stop {
            set.spawn(async move {
                let t = Instant::now();
                hosts::stop(&r, &id, STOP_GRACE).await;
                log(&format!("{id}: stopped in {} ms", t.elapsed().as_millis()));
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// Every host stopped and forgotten, every host namespace and the hosts' kernel values
    /// removed.
    pub async fn remove_all_hosts(&self) -> Result<()> {
        let ids: Vec<String> = self.hosts.lock().unwrap().keys().cloned().collect();
        self.stop_many(&ids).await;
        self.hosts.lock().unwrap().clear();
        let kernel = self.paths.kernel_values();
        tokio::task::spawn_blocking(move || crate::safefs::remove_tree(&kernel)).await??;
        tokio::task::spawn_blocking(|| {
            for ns in net::sandbox_namespaces() {
                if ns != crate::OPERATOR_NETNS {
                    net::delete_netns(&ns);
                }
            }
            crate::proc::run_quiet("ip", &["addr", "flush", "dev", crate::BRIDGE]);
        })
        .await?;
        Ok(())
    }

    /// Every host removed ([`Machines::remove_all_hosts`]), every volume and snapshot deleted.
    pub async fn reset(&self) -> Result<()> {
        self.remove_all_hosts().await?;
        self.started.lock().unwrap().clear();
        self.consoles.lock().unwrap().clear();
        self.volumes.clear().await
    }

    /// When the instance was last started by StartInstances, if it was.
    pub fn last_start(&self, id: &str) -> Option<std::time::SystemTime> {
        self.started.lock().unwrap().get(id).copied()
    }

    /// The instances whose host runs now.
    pub fn running_ids(&self) -> Vec<String> {
        let hosts = self.hosts.lock().unwrap();
        let mut ids: Vec<String> = hosts
            .iter()
            .filter(|(_, h)| h.running.as_ref().is_some_and(|r| r.is_running()))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    pub fn status(&self) -> Vec<HostStatus> {
        let hosts = self.hosts.lock().unwrap();
        let mut out: Vec<HostStatus> = hosts
            .iter()
            .map(|(id, h)| {
                let (state, pid, boots) = match &h.running {
                    Some(r) if r.is_running() => (
                        "running".to_string(),
                        Some(r.pid.load(Ordering::SeqCst)),
                        r.boots.load(Ordering::SeqCst),
                    ),
                    Some(r) => (
                        format!(
                            "stopped ({})",
                            r.last_exit.lock().unwrap().clone().unwrap_or_default()
                        ),
                        None,
                        r.boots.load(Ordering::SeqCst),
                    ),
                    None => ("stopped".to_string(), None, 0),
                };
                HostStatus {
                    instance_id: id.clone(),
                    state,
                    private_ip: h.private_ip.clone(),
                    root_volume: h.root_volume.clone(),
                    pid,
                    boots,
                }
            })
            .collect();
        out.sort_by(|a, b| a.private_ip.cmp(&b.private_ip));
        out
    }
}

/// The ids of the instances an EC2 response lists (its `instancesSet`).
fn instance_ids(body: &str) -> Result<Vec<String>> {
    Ok(xml::instances(body)?
        .into_iter()
        .map(|i| i.instance_id)
        .collect())
}

/// The private IP a RunInstances asks for (top level, or its primary network interface's).
fn fixed_address(params: &[(String, String)]) -> Option<&str> {
    param(params, "PrivateIpAddress").or(param(params, "NetworkInterface.1.PrivateIpAddress"))
}

/// EC2's message when a RunInstances asks for a private IP that an instance of its subnet
/// holds (`instances`: moto's, in that subnet; any state but `terminated`: a stopped instance
/// keeps its address). moto raises a bare exception there ("IP already in use"), which its
/// server answers HTTP 500 with an HTML page that no EC2 client can read (the SDK: "error
/// parsing XML: no root element"): a rerun right after a killed apply met it when it launched a
/// node again while the killed run's own launch, still carried out, took the address first.
fn address_held(params: &[(String, String)], instances: &[xml::Instance]) -> Option<String> {
    let ip = fixed_address(params)?;
    instances
        .iter()
        .any(|i| i.state != "terminated" && i.private_ip.as_deref() == Some(ip))
        .then(|| format!("Address {ip} is in use."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::moto::params;

    fn instance(ip: &str, state: &str) -> xml::Instance {
        xml::Instance {
            instance_id: "i-1".into(),
            state: state.into(),
            private_ip: Some(ip.into()),
            subnet_id: Some("subnet-1".into()),
            ..xml::Instance::default()
        }
    }

    #[test]
    fn a_launch_at_an_address_an_instance_holds_is_refused_as_ec2_does() {
        let run = params(&[
            ("Action", "RunInstances"),
            ("SubnetId", "subnet-1"),
            ("PrivateIpAddress", "10.0.1.10"),
        ]);
        for state in ["pending", "running", "stopping", "stopped", "shutting-down"] {
            assert_eq!(
                address_held(&run, &[instance("10.0.1.10", state)]).as_deref(),
                Some("Address 10.0.1.10 is in use."),
                "{state}"
            );
        }
        // Also when the address is given on the primary network interface.
        let by_interface = params(&[
            ("Action", "RunInstances"),
            ("NetworkInterface.1.SubnetId", "subnet-1"),
            ("NetworkInterface.1.PrivateIpAddress", "10.0.1.10"),
        ]);
        assert!(address_held(&by_interface, &[instance("10.0.1.10", "running")]).is_some());
        // A terminated instance gave it back (what lingers is the timed region's); another
        // address, or a launch without one, is free.
        assert_eq!(
            address_held(&run, &[instance("10.0.1.10", "terminated")]),
            None
        );
        assert_eq!(
            address_held(&run, &[instance("10.0.1.11", "running")]),
            None
        );
        let any = params(&[("Action", "RunInstances"), ("SubnetId", "subnet-1")]);
        assert_eq!(
            address_held(&any, &[instance("10.0.1.10", "running")]),
            None
        );
    }
}
