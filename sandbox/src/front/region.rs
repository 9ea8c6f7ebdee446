//! The timed region: EC2 *in time*, on top of moto's instant records. moto changes states at
//! once and knows every resource the moment it is made; EC2 does not. The front keeps a
//! timeline of what its clients did and shows them moto's answers as EC2 would at that moment:
//!
//! - **eventual consistency**: for a window after a create, a request that names the new id
//!   (or key name) is answered the resource kind's `*.NotFound`, and Describe lists leave it out;
//!   the create's own answer is unaffected;
//! - **states that take time**: instances `pending`, `stopping`, `shutting-down`; volumes
//!   `creating`; snapshots `pending` with a rising `progress`; attachments `attaching` and
//!   `detaching`. Shown by rewriting answers ([`crate::xml`]); moto and the hosts stay as they
//!   are (a host still boots before RunInstances answers). What EC2 refuses in a transitional
//!   state is refused here where it is cheap (starting a `stopping` instance, attaching a
//!   `creating` or failed volume);
//! - **failures after yes** (injected faults): a launch that ends `terminated`, a start that
//!   ends `stopped`, each with a `stateReason`, and a volume that ends in `error`. The first two
//!   are carried out for real at the end of `pending` ([`Due`], by the proxy);
//! - **lingering dependencies**: for a window after a termination, its VPC's internet gateway,
//!   its subnet, its security groups and its private IP are still in use.
//!
//! Every window is a modelled AWS duration (the constants below, in real seconds, with their
//! sources in docs/sandbox.md) times the speed factor of [`RegionSettings`]; a window is fixed
//! when it starts. This module is pure: the clock and the randomness are passed in or owned.

use crate::control::{RegionCounters, RegionSettings};
use crate::faults::{Effect, Rng, state_reason_message};
use crate::front::moto::numbered;
use crate::xml::{self, Attachment, InstanceView, SnapshotView, VolumeView};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A new resource is invisible to requests naming it (EC2 API reference, "Eventual
/// consistency": typically seconds).
pub const CONSISTENCY_SECS: f64 = 3.0;
/// RunInstances/StartInstances: `pending` → `running` (10–30 s commonly measured).
pub const PENDING_SECS: f64 = 20.0;
/// StopInstances: `stopping` → `stopped` (10–60 s, the guest's shutdown included).
pub const STOPPING_SECS: f64 = 20.0;
/// TerminateInstances: `shutting-down` → `terminated` (up to a minute).
pub const SHUTTING_DOWN_SECS: f64 = 30.0;
/// CreateVolume: `creating` → `available` (seconds).
pub const CREATING_SECS: f64 = 5.0;
/// CreateSnapshot/CopySnapshot: `pending` → `completed` (minutes for a first snapshot).
pub const SNAPSHOT_SECS: f64 = 60.0;
/// AttachVolume: `attaching` → `attached`.
pub const ATTACHING_SECS: f64 = 3.0;
/// DetachVolume: `detaching` → gone.
pub const DETACHING_SECS: f64 = 5.0;
/// After TerminateInstances, the ENI and public address are released (10–60 s).
pub const LINGERING_SECS: f64 = 40.0;
/// CreateNatGateway: `pending` → `available` (AWS: typically a minute or two).
pub const NAT_PENDING_SECS: f64 = 90.0;
/// DeleteNatGateway: `deleting` → `deleted` (AWS: about a minute).
pub const NAT_DELETING_SECS: f64 = 60.0;
/// GetConsoleOutput with `Latest`: a boot's console (cloud-init's host key block) shows once
/// cloud-init's final stage ran, about when the instance is `running` and takes SSH.
pub const CONSOLE_LATEST_SECS: f64 = 20.0;
/// GetConsoleOutput without `Latest`: the buffered output EC2 posts "shortly after an instance
/// transition state"; commonly minutes (pycloudlib: "can take up to 20 minutes").
pub const CONSOLE_BUFFERED_SECS: f64 = 180.0;
/// How long EC2 keeps a ClientToken (24 hours).
pub const TOKEN_MEMORY_SECS: f64 = 86_400.0;

/// A modelled duration at a speed factor.
pub fn scaled(model_secs: f64, speed: f64) -> Duration {
    Duration::from_secs_f64((model_secs * speed).max(0.0))
}

/// The kinds of resource the consistency window hides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Instance,
    Vpc,
    Subnet,
    SecurityGroup,
    InternetGateway,
    RouteTable,
    KeyPair,
    Volume,
    Snapshot,
}

impl Kind {
    fn not_found(self) -> &'static str {
        match self {
            Kind::Instance => "InvalidInstanceID.NotFound",
            Kind::Vpc => "InvalidVpcID.NotFound",
            Kind::Subnet => "InvalidSubnetID.NotFound",
            Kind::SecurityGroup => "InvalidGroup.NotFound",
            Kind::InternetGateway => "InvalidInternetGatewayID.NotFound",
            Kind::RouteTable => "InvalidRouteTableID.NotFound",
            Kind::KeyPair => "InvalidKeyPair.NotFound",
            Kind::Volume => "InvalidVolume.NotFound",
            Kind::Snapshot => "InvalidSnapshot.NotFound",
        }
    }

    /// AWS's message for the NotFound code.
    fn message(self, id: &str) -> String {
        match self {
            Kind::Instance => format!("The instance ID '{id}' does not exist"),
            Kind::Vpc => format!("The vpc ID '{id}' does not exist"),
            Kind::Subnet => format!("The subnet ID '{id}' does not exist"),
            Kind::SecurityGroup => format!("The security group '{id}' does not exist"),
            Kind::InternetGateway => format!("The internetGateway ID '{id}' does not exist"),
            Kind::RouteTable => format!("The routeTable ID '{id}' does not exist"),
            Kind::KeyPair => format!("The key pair '{id}' does not exist"),
            Kind::Volume => format!("The volume '{id}' does not exist."),
            Kind::Snapshot => format!("The snapshot '{id}' does not exist."),
        }
    }

    /// The Describe action, its list and the elements of an item that hold its id.
    fn list(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Kind::Instance => ("DescribeInstances", "instancesSet", &["instanceId"]),
            Kind::Vpc => ("DescribeVpcs", "vpcSet", &["vpcId"]),
            Kind::Subnet => ("DescribeSubnets", "subnetSet", &["subnetId"]),
            Kind::SecurityGroup => ("DescribeSecurityGroups", "securityGroupInfo", &["groupId"]),
            Kind::InternetGateway => (
                "DescribeInternetGateways",
                "internetGatewaySet",
                &["internetGatewayId"],
            ),
            Kind::RouteTable => ("DescribeRouteTables", "routeTableSet", &["routeTableId"]),
            Kind::KeyPair => ("DescribeKeyPairs", "keySet", &["keyName", "keyPairId"]),
            Kind::Volume => ("DescribeVolumes", "volumeSet", &["volumeId"]),
            Kind::Snapshot => ("DescribeSnapshots", "snapshotSet", &["snapshotId"]),
        }
    }
}

/// The resources a create's answer made, with the elements that name them.
fn created(action: &str, body: &str) -> Result<Vec<(Kind, String)>> {
    let one = |kind, element| -> Result<Vec<(Kind, String)>> {
        Ok(xml::first_text(body, element)?
            .map(|id| vec![(kind, id)])
            .unwrap_or_default())
    };
    Ok(match action {
        "RunInstances" => xml::instances(body)?
            .into_iter()
            .map(|i| (Kind::Instance, i.instance_id))
            .collect(),
        "CreateVpc" => one(Kind::Vpc, "vpcId")?,
        "CreateSubnet" => one(Kind::Subnet, "subnetId")?,
        "CreateSecurityGroup" => one(Kind::SecurityGroup, "groupId")?,
        "CreateInternetGateway" => one(Kind::InternetGateway, "internetGatewayId")?,
        "CreateRouteTable" => one(Kind::RouteTable, "routeTableId")?,
        "ImportKeyPair" | "CreateKeyPair" => {
            let mut v = one(Kind::KeyPair, "keyName")?;
            v.extend(one(Kind::KeyPair, "keyPairId")?);
            v
        }
        "CreateVolume" => one(Kind::Volume, "volumeId")?,
        "CreateSnapshot" | "CopySnapshot" => one(Kind::Snapshot, "snapshotId")?,
        _ => Vec::new(),
    })
}

/// Whether a request parameter can name a hidden resource: filters and tags do not (a filter
/// that matches nothing yet is not an error on AWS), and a key pair *name* is only a name in
/// `KeyName` parameters.
fn names(param: &str, value: &str, id: &str, kind: Kind) -> bool {
    if value != id || param.starts_with("Filter.") || param.contains("Tag.") {
        return false;
    }
    let is_key_name = kind == Kind::KeyPair && !id.starts_with("key-");
    !is_key_name || param == "KeyName" || param.starts_with("KeyName.")
}

/// An EC2 error the region answers instead of moto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// A failure to carry out for real at the end of an instance's `pending` window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub instance: String,
    /// The phase it belongs to: a later action on the instance cancels it.
    pub serial: u64,
    pub after: Duration,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Terminated (a launch that failed).
    Terminated,
    /// Stopped again (a start that failed).
    Stopped,
}

struct Phase {
    state: &'static str,
    until: Instant,
    serial: u64,
    /// The reason code of a failure due at the end (shown `pending` until carried out).
    fails: Option<String>,
}

#[derive(Default)]
struct InstanceClock {
    phase: Option<Phase>,
    /// The `stateReason` of the last failure, shown with moto's state.
    reason: Option<(String, String)>,
}

#[derive(Default)]
struct VolumeClock {
    creating_until: Option<Instant>,
    fails: bool,
    attaching: Option<(String, Instant)>,
    detaching: Option<(Attachment, Instant)>,
}

struct SnapshotClock {
    started: Instant,
    until: Instant,
}

/// A NAT gateway's timeline and what it holds until it is `deleted`.
struct NatClock {
    subnet: Option<String>,
    vpc: Option<String>,
    allocations: Vec<String>,
    public_ips: Vec<String>,
    available_at: Instant,
    /// Set by DeleteNatGateway: `deleting` until then, `deleted` after.
    deleted_at: Option<Instant>,
}

impl NatClock {
    fn deleted(&self, now: Instant) -> bool {
        self.deleted_at.is_some_and(|t| now >= t)
    }
}

/// What a terminated instance still holds for a while.
struct Lingering {
    vpc: Option<String>,
    subnet: Option<String>,
    groups: Vec<String>,
    ip: Option<String>,
    until: Instant,
}

pub struct Region {
    pub settings: RegionSettings,
    pub counters: RegionCounters,
    rng: Rng,
    serial: u64,
    hidden: HashMap<String, (Kind, Instant)>,
    instances: HashMap<String, InstanceClock>,
    volumes: HashMap<String, VolumeClock>,
    snapshots: HashMap<String, SnapshotClock>,
    lingering: Vec<Lingering>,
    nats: HashMap<String, NatClock>,
}

impl Region {
    pub fn new(settings: RegionSettings, seed: u64) -> Region {
        Region {
            settings,
            counters: RegionCounters::default(),
            rng: Rng::new(seed),
            serial: 0,
            hidden: HashMap::new(),
            instances: HashMap::new(),
            volumes: HashMap::new(),
            snapshots: HashMap::new(),
            lingering: Vec::new(),
            nats: HashMap::new(),
        }
    }

    /// Forgets the timeline and the counters; keeps the settings.
    pub fn clear(&mut self) {
        self.counters = RegionCounters::default();
        self.hidden.clear();
        self.instances.clear();
        self.volumes.clear();
        self.snapshots.clear();
        self.lingering.clear();
        self.nats.clear();
    }

    fn window(&self, model_secs: f64) -> Duration {
        scaled(model_secs, self.settings.speed)
    }

    fn chance(&mut self, rate: f64) -> bool {
        rate >= 1.0 || self.rng.unit() < rate
    }

    /// How long a ClientToken is remembered.
    pub fn token_memory(&self) -> Duration {
        self.window(TOKEN_MEMORY_SECS)
    }

    fn is_hidden(&self, id: &str, now: Instant) -> bool {
        self.hidden.get(id).is_some_and(|(_, until)| now < *until)
    }

    /// The transitional state an instance shows, if any.
    fn shown(&self, id: &str, now: Instant) -> Option<&'static str> {
        let phase = self.instances.get(id)?.phase.as_ref()?;
        (now < phase.until || phase.fails.is_some()).then_some(phase.state)
    }

    /// The transitional states of these instances now (for the `previousState` of an answer).
    pub fn shown_states(&self, ids: &[String], now: Instant) -> HashMap<String, &'static str> {
        ids.iter()
            .filter_map(|id| Some((id.clone(), self.shown(id, now)?)))
            .collect()
    }

    fn volume_status(&self, id: &str, now: Instant) -> Option<&'static str> {
        let v = self.volumes.get(id)?;
        if v.creating_until.is_some_and(|t| now < t) {
            Some("creating")
        } else if v.fails {
            Some("error")
        } else {
            None
        }
    }

    /// The EC2 error for a request the region refuses now, counted by class.
    pub fn refuse(
        &mut self,
        action: &str,
        params: &[(String, String)],
        now: Instant,
    ) -> Option<Refusal> {
        self.hidden.retain(|_, (_, until)| now < *until);
        self.lingering.retain(|l| now < l.until);
        if let Some(r) = self.not_found(action, params) {
            self.counters.not_found += 1;
            return Some(r);
        }
        if let Some(r) = self.incorrect_state(action, params, now) {
            self.counters.incorrect_state += 1;
            return Some(r);
        }
        if let Some(r) = self.nat_in_use(action, params, now) {
            self.counters.nat_in_use += 1;
            return Some(r);
        }
        let r = self.still_in_use(action, params)?;
        self.counters.lingering += 1;
        Some(r)
    }

    /// The state a NAT gateway shows now when it differs from moto's (`available` at once,
    /// `deleted` at once): `pending` after its create, `deleting` after its delete.
    pub fn nat_state(&self, id: &str, now: Instant) -> Option<&'static str> {
        let n = self.nats.get(id)?;
        match n.deleted_at {
            Some(t) if now < t => Some("deleting"),
            Some(_) => None,
            None if now < n.available_at => Some("pending"),
            None => None,
        }
    }

    /// Every NAT gateway whose state differs from moto's now (for the network).
    pub fn nat_states(&self, now: Instant) -> HashMap<String, &'static str> {
        self.nats
            .keys()
            .filter_map(|id| Some((id.clone(), self.nat_state(id, now)?)))
            .collect()
    }

    /// How long until a NAT gateway just created is `available` (the network is decided again
    /// then).
    pub fn nat_available_in(&self, id: &str, now: Instant) -> Option<Duration> {
        let n = self.nats.get(id)?;
        (n.deleted_at.is_none() && now < n.available_at).then(|| n.available_at - now)
    }

    /// While a NAT gateway is not `deleted`, its subnet, its VPC's internet gateway and its
    /// Elastic IP are in use; a delete of an unknown NAT gateway is refused as EC2 does.
    fn nat_in_use(
        &self,
        action: &str,
        params: &[(String, String)],
        now: Instant,
    ) -> Option<Refusal> {
        let p = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        if action == "DeleteNatGateway" {
            let id = p("NatGatewayId")?;
            return (!self.nats.contains_key(id)).then(|| Refusal {
                code: "NatGatewayNotFound",
                message: format!("The Nat Gateway {id} was not found"),
            });
        }
        let mut live = self.nats.iter().filter(|(_, n)| !n.deleted(now));
        live.find_map(|(id, n)| match action {
            "DeleteSubnet" if n.subnet.is_some() && n.subnet.as_ref() == p("SubnetId") => {
                Some(Refusal {
                    code: "DependencyViolation",
                    message: format!(
                        "The subnet '{}' has dependencies and cannot be deleted.",
                        n.subnet.as_deref().unwrap_or_default()
                    ),
                })
            }
            "DetachInternetGateway"
                if n.vpc.is_some()
                    && n.vpc.as_ref() == p("VpcId")
                    && !n.public_ips.is_empty() =>
            {
                Some(Refusal {
                    code: "DependencyViolation",
                    message: format!(
                        "Network {} has some mapped public address(es). Please unmap those public address(es) before detaching the gateway.",
                        n.vpc.as_deref().unwrap_or_default()
                    ),
                })
            }
            "ReleaseAddress" => {
                let by_id = p("AllocationId").filter(|a| n.allocations.contains(a));
                let by_ip = p("PublicIp").filter(|a| n.public_ips.contains(a));
                by_id.or(by_ip).map(|a| Refusal {
                    code: "InvalidIPAddress.InUse",
                    message: format!("Address {a} is in use (by {id})."),
                })
            }
            _ => None,
        })
    }

    /// A request naming a resource inside its consistency window. A key pair's create names
    /// the key pair itself: EC2 answers it with `InvalidKeyPair.Duplicate` (moto does).
    fn not_found(&self, action: &str, params: &[(String, String)]) -> Option<Refusal> {
        if matches!(action, "ImportKeyPair" | "CreateKeyPair") {
            return None;
        }
        self.hidden.iter().find_map(|(id, (kind, _))| {
            params
                .iter()
                .any(|(k, v)| names(k, v, id, *kind))
                .then(|| Refusal {
                    code: kind.not_found(),
                    message: kind.message(id),
                })
        })
    }

    fn incorrect_state(
        &self,
        action: &str,
        params: &[(String, String)],
        now: Instant,
    ) -> Option<Refusal> {
        match action {
            "StartInstances" => numbered(params, "InstanceId")
                .into_iter()
                .find(|id| self.shown(id, now) == Some("stopping"))
                .map(|id| Refusal {
                    code: "IncorrectInstanceState",
                    message: format!(
                        "The instance '{id}' is not in a state from which it can be started."
                    ),
                }),
            "AttachVolume" => {
                let id = params.iter().find(|(k, _)| k == "VolumeId")?.1.clone();
                self.volume_status(&id, now).map(|_| Refusal {
                    code: "IncorrectState",
                    message: format!("{id} is not 'available'."),
                })
            }
            _ => None,
        }
    }

    fn still_in_use(&self, action: &str, params: &[(String, String)]) -> Option<Refusal> {
        let p = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let some_eq = |a: &Option<String>, b: Option<&String>| a.is_some() && a.as_ref() == b;
        self.lingering.iter().find_map(|l| match action {
            "DetachInternetGateway" if some_eq(&l.vpc, p("VpcId")) => Some(Refusal {
                code: "DependencyViolation",
                message: format!(
                    "Network {} has some mapped public address(es). Please unmap those public address(es) before detaching the gateway.",
                    l.vpc.as_deref().unwrap_or_default()
                ),
            }),
            "DeleteSubnet" if some_eq(&l.subnet, p("SubnetId")) => Some(Refusal {
                code: "DependencyViolation",
                message: format!(
                    "The subnet '{}' has dependencies and cannot be deleted.",
                    l.subnet.as_deref().unwrap_or_default()
                ),
            }),
            "DeleteVpc" if some_eq(&l.vpc, p("VpcId")) => Some(Refusal {
                code: "DependencyViolation",
                message: format!(
                    "The vpc '{}' has dependencies and cannot be deleted.",
                    l.vpc.as_deref().unwrap_or_default()
                ),
            }),
            "DeleteSecurityGroup" => {
                let g = p("GroupId")?;
                l.groups.contains(g).then(|| Refusal {
                    code: "DependencyViolation",
                    message: format!("resource {g} has a dependent object"),
                })
            }
            "RunInstances" => {
                let ip = p("PrivateIpAddress").or(p("NetworkInterface.1.PrivateIpAddress"))?;
                let subnet = p("SubnetId").or(p("NetworkInterface.1.SubnetId"));
                let same_subnet = subnet.is_none() || l.subnet.as_ref() == subnet;
                (l.ip.as_ref() == Some(ip) && same_subnet).then(|| Refusal {
                    code: "InvalidIPAddress.InUse",
                    message: format!("Address {ip} is in use."),
                })
            }
            _ => None,
        })
    }

    /// Records what a successful request started, given moto's answer, the fault that fired
    /// and (for TerminateInstances) the instances as they were before. Returns the failures
    /// to carry out later.
    pub fn record(
        &mut self,
        action: &str,
        params: &[(String, String)],
        body: &str,
        fault: Option<&Effect>,
        terminated: &[xml::Instance],
        now: Instant,
    ) -> Result<Vec<Due>> {
        let window = self.window(CONSISTENCY_SECS);
        for (kind, id) in created(action, body)? {
            if !window.is_zero() && self.chance(self.settings.consistency_rate) {
                self.hidden.insert(id, (kind, now + window));
            }
        }
        let ids = || -> Result<Vec<String>> {
            Ok(xml::instances(body)?
                .into_iter()
                .map(|i| i.instance_id)
                .collect())
        };
        let mut due = Vec::new();
        match action {
            "RunInstances" | "StartInstances" => {
                let fails = match fault {
                    Some(Effect::LaunchFails { reason }) if action == "RunInstances" => {
                        Some((reason.clone(), Outcome::Terminated))
                    }
                    Some(Effect::StartFails { reason }) if action == "StartInstances" => {
                        Some((reason.clone(), Outcome::Stopped))
                    }
                    _ => None,
                };
                for id in ids()? {
                    let serial = self.begin(&id, "pending", PENDING_SECS, now);
                    if let Some((reason, outcome)) = &fails {
                        self.instances
                            .get_mut(&id)
                            .and_then(|c| c.phase.as_mut())
                            .context("an instance phase just begun is missing")?
                            .fails = Some(reason.clone());
                        due.push(Due {
                            instance: id,
                            serial,
                            after: self.window(PENDING_SECS),
                            outcome: *outcome,
                        });
                    }
                }
            }
            "StopInstances" => {
                for id in ids()? {
                    self.begin(&id, "stopping", STOPPING_SECS, now);
                }
            }
            "TerminateInstances" => {
                for id in ids()? {
                    self.begin(&id, "shutting-down", SHUTTING_DOWN_SECS, now);
                }
                self.linger(terminated, now);
            }
            "CreateVolume" => {
                let id = xml::first_text(body, "volumeId")?
                    .context("moto's CreateVolume answer has no volumeId")?;
                let until = now + self.window(CREATING_SECS);
                self.volumes.insert(
                    id,
                    VolumeClock {
                        creating_until: Some(until),
                        fails: fault == Some(&Effect::VolumeFails),
                        ..VolumeClock::default()
                    },
                );
                if fault == Some(&Effect::VolumeFails) {
                    self.counters.volumes_failed += 1;
                }
            }
            "CreateSnapshot" | "CopySnapshot" => {
                let id = xml::first_text(body, "snapshotId")?
                    .with_context(|| format!("moto's {action} answer has no snapshotId"))?;
                let until = now + self.window(SNAPSHOT_SECS);
                self.snapshots.insert(
                    id,
                    SnapshotClock {
                        started: now,
                        until,
                    },
                );
            }
            "AttachVolume" => {
                if let Some(a) = xml::attachment(body)? {
                    let until = now + self.window(ATTACHING_SECS);
                    let v = self.volumes.entry(a.volume_id).or_default();
                    v.attaching = Some((a.instance_id, until));
                    v.detaching = None;
                }
            }
            "DetachVolume" => {
                if let Some(a) = xml::attachment(body)? {
                    let until = now + self.window(DETACHING_SECS);
                    let v = self.volumes.entry(a.volume_id.clone()).or_default();
                    v.attaching = None;
                    v.detaching = Some((a, until));
                }
            }
            "DeleteVolume" => {
                if let Some((_, id)) = params.iter().find(|(k, _)| k == "VolumeId") {
                    self.volumes.remove(id);
                }
            }
            "DeleteSnapshot" => {
                if let Some((_, id)) = params.iter().find(|(k, _)| k == "SnapshotId") {
                    self.snapshots.remove(id);
                }
            }
            "CreateNatGateway" => {
                let doc = xml::parse(body)?;
                let gw = doc
                    .descendants()
                    .find(|n| n.is_element() && n.tag_name().name() == "natGateway")
                    .context("moto's CreateNatGateway answer has no natGateway")?;
                let id = xml::child_text(gw, "natGatewayId")
                    .context("moto's CreateNatGateway answer has no natGatewayId")?;
                let addresses = xml::child(gw, "natGatewayAddressSet")
                    .map(|s| s.children().filter(|c| c.is_element()).collect::<Vec<_>>())
                    .unwrap_or_default();
                self.nats.insert(
                    id,
                    NatClock {
                        subnet: xml::child_text(gw, "subnetId"),
                        vpc: xml::child_text(gw, "vpcId"),
                        allocations: addresses
                            .iter()
                            .filter_map(|a| xml::child_text(*a, "allocationId"))
                            .collect(),
                        public_ips: addresses
                            .iter()
                            .filter_map(|a| xml::child_text(*a, "publicIp"))
                            .collect(),
                        available_at: now + self.window(NAT_PENDING_SECS),
                        deleted_at: None,
                    },
                );
            }
            "DeleteNatGateway" => {
                let until = now + self.window(NAT_DELETING_SECS);
                if let Some((_, id)) = params.iter().find(|(k, _)| k == "NatGatewayId")
                    && let Some(n) = self.nats.get_mut(id)
                    && n.deleted_at.is_none()
                {
                    n.deleted_at = Some(until);
                }
            }
            _ => {}
        }
        Ok(due)
    }

    /// An instance enters a transitional state; its last failure reason is forgotten.
    fn begin(&mut self, id: &str, state: &'static str, model_secs: f64, now: Instant) -> u64 {
        self.serial += 1;
        let until = now + self.window(model_secs);
        let clock = self.instances.entry(id.to_string()).or_default();
        clock.reason = None;
        clock.phase = Some(Phase {
            state,
            until,
            serial: self.serial,
            fails: None,
        });
        self.serial
    }

    /// The terminated instances' interfaces linger in their VPC for a while (each with
    /// probability `lingering_rate`): a termination asked for, or a launch that failed.
    pub fn linger(&mut self, terminated: &[xml::Instance], now: Instant) {
        let until = now + self.window(LINGERING_SECS);
        if until <= now {
            return;
        }
        for i in terminated {
            if self.chance(self.settings.lingering_rate) {
                self.lingering.push(Lingering {
                    vpc: i.vpc_id.clone(),
                    subnet: i.subnet_id.clone(),
                    groups: i.group_ids.clone(),
                    ip: i.private_ip.clone(),
                    until,
                });
            }
        }
    }

    /// Whether a failure is still to be carried out (no later action replaced its phase, no
    /// reset forgot it).
    pub fn is_due(&self, due: &Due) -> bool {
        self.instances
            .get(&due.instance)
            .and_then(|c| c.phase.as_ref())
            .is_some_and(|p| p.serial == due.serial && p.fails.is_some())
    }

    /// The failure was carried out: the instance shows moto's state with the reason.
    pub fn carried_out(&mut self, due: &Due) {
        if !self.is_due(due) {
            return;
        }
        let Some(clock) = self.instances.get_mut(&due.instance) else {
            return;
        };
        let code = clock.phase.take().and_then(|p| p.fails).unwrap_or_default();
        let message = state_reason_message(&code);
        clock.reason = Some((code, message));
        match due.outcome {
            Outcome::Terminated => self.counters.launches_failed += 1,
            Outcome::Stopped => self.counters.starts_failed += 1,
        }
    }

    /// moto's answer to a successful request as EC2 would give it now. `previous` holds the
    /// transitional states the instances showed before the request.
    pub fn rewrite(
        &self,
        action: &str,
        body: &str,
        previous: &HashMap<String, &'static str>,
        now: Instant,
    ) -> Result<String> {
        let describe = action.starts_with("Describe");
        let hide = |id: &str| describe && self.is_hidden(id, now);
        match action {
            "DescribeInstances"
            | "DescribeInstanceStatus"
            | "RunInstances"
            | "StartInstances"
            | "StopInstances"
            | "TerminateInstances" => xml::rewrite_instances(body, |id| {
                let state = self.shown(id, now);
                InstanceView {
                    hide: hide(id),
                    state,
                    previous: previous.get(id).copied(),
                    reason: self
                        .instances
                        .get(id)
                        .filter(|_| state.is_none())
                        .and_then(|c| c.reason.clone()),
                }
            }),
            "DescribeVolumes" | "CreateVolume" => xml::rewrite_volumes(body, |id| {
                let v = self.volumes.get(id);
                let active = |t: &Instant| now < *t;
                VolumeView {
                    hide: hide(id),
                    status: self.volume_status(id, now),
                    attaching: v
                        .and_then(|v| v.attaching.as_ref())
                        .filter(|(_, t)| active(t))
                        .map(|(i, _)| i.clone()),
                    detaching: v
                        .and_then(|v| v.detaching.as_ref())
                        .filter(|(_, t)| active(t))
                        .map(|(a, _)| a.clone()),
                }
            }),
            "DescribeNatGateways" | "CreateNatGateway" => {
                xml::rewrite_nat_gateways(body, |id| self.nat_state(id, now))
            }
            "DescribeSnapshots" | "CreateSnapshot" => {
                xml::rewrite_snapshots(body, |id| SnapshotView {
                    hide: hide(id),
                    pending: self
                        .snapshots
                        .get(id)
                        .filter(|s| now < s.until)
                        .map(|s| progress(s, now)),
                })
            }
            _ => match self.hidden_list(action) {
                Some((set, elements)) => xml::hide_items(body, set, elements, hide),
                None => Ok(body.to_string()),
            },
        }
    }

    fn hidden_list(&self, action: &str) -> Option<(&'static str, &'static [&'static str])> {
        [
            Kind::Vpc,
            Kind::Subnet,
            Kind::SecurityGroup,
            Kind::InternetGateway,
            Kind::RouteTable,
            Kind::KeyPair,
        ]
        .into_iter()
        .map(Kind::list)
        .find(|(describe, _, _)| *describe == action)
        .map(|(_, set, elements)| (set, elements))
    }
}

/// A pending snapshot's progress: linear over its window, 99% at most until it completes.
fn progress(s: &SnapshotClock, now: Instant) -> u8 {
    let total = s.until.saturating_duration_since(s.started).as_secs_f64();
    let done = now.saturating_duration_since(s.started).as_secs_f64();
    if total <= 0.0 {
        return 99;
    }
    ((done / total * 100.0).floor() as u8).min(99)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::moto::params as p;

    /// Speed 1: the modelled durations as they are.
    fn region() -> Region {
        Region::new(
            RegionSettings {
                speed: 1.0,
                ..RegionSettings::default()
            },
            7,
        )
    }

    const VPC: &str = r#"<CreateVpcResponse><vpc><vpcId>vpc-1</vpcId><state>available</state></vpc></CreateVpcResponse>"#;
    const VPCS: &str = r#"<DescribeVpcsResponse><vpcSet><item><vpcId>vpc-0</vpcId></item><item><vpcId>vpc-1</vpcId></item></vpcSet></DescribeVpcsResponse>"#;
    const RUN: &str = r#"<RunInstancesResponse><instancesSet><item><instanceId>i-1</instanceId><instanceState><code>0</code><name>pending</name></instanceState><stateReason><code/><message/></stateReason><reason/></item></instancesSet></RunInstancesResponse>"#;
    const DESCRIBE: &str = r#"<DescribeInstancesResponse><reservationSet><item><reservationId>r-1</reservationId><instancesSet><item><instanceId>i-1</instanceId><instanceState><code>16</code><name>running</name></instanceState><stateReason><code/><message/></stateReason><reason/></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"#;

    fn describe_shows(r: &Region, now: Instant) -> Vec<xml::Instance> {
        let body = r
            .rewrite("DescribeInstances", DESCRIBE, &HashMap::new(), now)
            .unwrap();
        xml::instances(&body).unwrap()
    }

    #[test]
    fn a_new_vpc_is_not_found_for_the_window_then_found() {
        let mut r = region();
        let t0 = Instant::now();
        r.record("CreateVpc", &[], VPC, None, &[], t0).unwrap();
        let ask = p(&[("Action", "CreateSubnet"), ("VpcId", "vpc-1")]);
        let refusal = r.refuse("CreateSubnet", &ask, t0).unwrap();
        assert_eq!(refusal.code, "InvalidVpcID.NotFound");
        assert_eq!(refusal.message, "The vpc ID 'vpc-1' does not exist");
        let listed = r
            .rewrite("DescribeVpcs", VPCS, &HashMap::new(), t0)
            .unwrap();
        assert!(
            !listed.contains("vpc-1") && listed.contains("vpc-0"),
            "{listed}"
        );
        // A filter naming it is no error; the create's own answer is left alone.
        let filtered = p(&[("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", "vpc-1")]);
        assert_eq!(r.refuse("DescribeVpcs", &filtered, t0), None);
        assert_eq!(
            r.rewrite("CreateVpc", VPC, &HashMap::new(), t0).unwrap(),
            VPC
        );

        let later = t0 + scaled(CONSISTENCY_SECS, 1.0);
        assert_eq!(r.refuse("CreateSubnet", &ask, later), None);
        assert_eq!(
            r.rewrite("DescribeVpcs", VPCS, &HashMap::new(), later)
                .unwrap(),
            VPCS
        );
        assert_eq!(r.counters.not_found, 1);
    }

    #[test]
    fn key_names_are_hidden_only_as_key_names() {
        let mut r = region();
        let t0 = Instant::now();
        let body = "<ImportKeyPairResponse><keyName>op</keyName><keyPairId>key-1</keyPairId></ImportKeyPairResponse>";
        r.record("ImportKeyPair", &[], body, None, &[], t0).unwrap();
        let run = p(&[("KeyName", "op"), ("ImageId", "ami-1")]);
        assert_eq!(
            r.refuse("RunInstances", &run, t0).unwrap().code,
            "InvalidKeyPair.NotFound"
        );
        let tagged = p(&[
            ("TagSpecification.1.Tag.1.Value", "op"),
            ("Description", "op"),
        ]);
        assert_eq!(r.refuse("CreateVolume", &tagged, t0), None);
        let by_id = p(&[("KeyPairId.1", "key-1")]);
        assert!(r.refuse("DescribeKeyPairs", &by_id, t0).is_some());
        // Importing it again (a rerun) is moto's to answer: InvalidKeyPair.Duplicate.
        let again = p(&[("KeyName", "op"), ("PublicKeyMaterial", "c3No")]);
        assert_eq!(r.refuse("ImportKeyPair", &again, t0), None);
    }

    #[test]
    fn rate_zero_hides_nothing_and_speed_zero_is_instant() {
        let t0 = Instant::now();
        let mut r = Region::new(
            RegionSettings {
                consistency_rate: 0.0,
                ..RegionSettings::default()
            },
            7,
        );
        r.record("CreateVpc", &[], VPC, None, &[], t0).unwrap();
        assert_eq!(r.refuse("X", &p(&[("VpcId", "vpc-1")]), t0), None);
        let mut r = Region::new(
            RegionSettings {
                speed: 0.0,
                ..RegionSettings::default()
            },
            7,
        );
        r.record("CreateVpc", &[], VPC, None, &[], t0).unwrap();
        r.record("RunInstances", &[], RUN, None, &[], t0).unwrap();
        assert_eq!(r.refuse("X", &p(&[("VpcId", "vpc-1")]), t0), None);
        assert_eq!(describe_shows(&r, t0)[0].state, "running");
    }

    #[test]
    fn pending_then_running_and_hidden_meanwhile() {
        let mut r = region();
        let t0 = Instant::now();
        assert!(
            r.record("RunInstances", &[], RUN, None, &[], t0)
                .unwrap()
                .is_empty()
        );
        // Inside the consistency window the reservation is left out as a whole.
        let body = r
            .rewrite("DescribeInstances", DESCRIBE, &HashMap::new(), t0)
            .unwrap();
        assert!(!body.contains("r-1"), "{body}");
        let t1 = t0 + scaled(CONSISTENCY_SECS, 1.0);
        let shown = describe_shows(&r, t1);
        assert_eq!(shown[0].state, "pending");
        let body = r
            .rewrite("DescribeInstances", DESCRIBE, &HashMap::new(), t1)
            .unwrap();
        assert!(
            body.contains("<code>0</code><name>pending</name>"),
            "{body}"
        );
        assert_eq!(
            describe_shows(&r, t0 + scaled(PENDING_SECS, 1.0))[0].state,
            "running"
        );
    }

    #[test]
    fn a_stopping_instance_cannot_be_started_and_shows_its_previous_state() {
        let mut r = region();
        let t0 = Instant::now();
        let stop = r#"<StopInstancesResponse><instancesSet><item><instanceId>i-1</instanceId><currentState><code>64</code><name>stopping</name></currentState><previousState><code>16</code><name>running</name></previousState></item></instancesSet></StopInstancesResponse>"#;
        r.record("RunInstances", &[], RUN, None, &[], t0).unwrap();
        let ids = vec!["i-1".to_string()];
        let before = r.shown_states(&ids, t0);
        r.record("StopInstances", &[], stop, None, &[], t0).unwrap();
        let answer = r.rewrite("StopInstances", stop, &before, t0).unwrap();
        assert!(
            answer.contains("<previousState><code>0</code><name>pending</name></previousState>"),
            "{answer}"
        );
        let start = p(&[("InstanceId.1", "i-1")]);
        let t1 = t0 + scaled(CONSISTENCY_SECS, 1.0);
        assert_eq!(
            r.refuse("StartInstances", &start, t1).unwrap().code,
            "IncorrectInstanceState"
        );
        assert_eq!(
            r.refuse("StartInstances", &start, t0 + scaled(STOPPING_SECS, 1.0)),
            None
        );
        assert_eq!(r.counters.incorrect_state, 1);
    }

    #[test]
    fn a_failed_launch_stays_pending_until_carried_out_then_shows_its_reason() {
        let mut r = region();
        let t0 = Instant::now();
        let fault = Effect::LaunchFails {
            reason: "Client.InvalidKMSKey.InvalidState".into(),
        };
        let due = r
            .record("RunInstances", &[], RUN, Some(&fault), &[], t0)
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].after, scaled(PENDING_SECS, 1.0));
        assert_eq!(due[0].outcome, Outcome::Terminated);
        let late = t0 + Duration::from_secs(3600);
        assert_eq!(describe_shows(&r, late)[0].state, "pending");
        assert!(r.is_due(&due[0]));
        r.carried_out(&due[0]);
        assert!(!r.is_due(&due[0]));
        let body = r
            .rewrite("DescribeInstances", DESCRIBE, &HashMap::new(), late)
            .unwrap();
        assert!(
            body.contains("<stateReason><code>Client.InvalidKMSKey.InvalidState</code><message>Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state</message></stateReason>"),
            "{body}"
        );
        assert!(body.contains("<reason>Client.InvalidKMSKey"), "{body}");
        assert_eq!(r.counters.launches_failed, 1);
    }

    #[test]
    fn a_later_action_cancels_a_due_failure() {
        let mut r = region();
        let t0 = Instant::now();
        let fault = Effect::StartFails {
            reason: "Server.InsufficientInstanceCapacity".into(),
        };
        let start = RUN.replace("RunInstances", "StartInstances");
        let due = r
            .record("StartInstances", &[], &start, Some(&fault), &[], t0)
            .unwrap();
        assert_eq!(due[0].outcome, Outcome::Stopped);
        let term = start.replace("StartInstances", "TerminateInstances");
        r.record("TerminateInstances", &[], &term, None, &[], t0)
            .unwrap();
        assert!(!r.is_due(&due[0]));
        r.carried_out(&due[0]);
        assert_eq!(r.counters.starts_failed, 0);
    }

    #[test]
    fn volumes_create_attach_detach_and_fail() {
        let mut r = region();
        let t0 = Instant::now();
        let created = r#"<CreateVolumeResponse><volumeId>vol-1</volumeId><status>available</status><attachmentSet/></CreateVolumeResponse>"#;
        let answer = r.rewrite("CreateVolume", created, &HashMap::new(), t0);
        assert_eq!(answer.unwrap(), created, "no timeline yet: moto's answer");
        r.record("CreateVolume", &[], created, None, &[], t0)
            .unwrap();
        let answer = r
            .rewrite("CreateVolume", created, &HashMap::new(), t0)
            .unwrap();
        assert!(answer.contains("<status>creating</status>"), "{answer}");
        let attach = p(&[("VolumeId", "vol-1"), ("InstanceId", "i-1")]);
        assert_eq!(
            r.refuse("AttachVolume", &attach, t0 + scaled(4.0, 1.0))
                .unwrap()
                .code,
            "IncorrectState"
        );
        let t1 = t0 + scaled(CREATING_SECS, 1.0);
        assert_eq!(r.refuse("AttachVolume", &attach, t1), None);

        let attached = r#"<AttachVolumeResponse><volumeId>vol-1</volumeId><instanceId>i-1</instanceId><device>/dev/sdf</device><status>attaching</status><attachTime>t</attachTime></AttachVolumeResponse>"#;
        r.record("AttachVolume", &attach, attached, None, &[], t1)
            .unwrap();
        let in_use = r#"<DescribeVolumesResponse><volumeSet><item><volumeId>vol-1</volumeId><status>in-use</status><attachmentSet><item><volumeId>vol-1</volumeId><instanceId>i-1</instanceId><status>attached</status></item></attachmentSet></item></volumeSet></DescribeVolumesResponse>"#;
        let shown = r
            .rewrite("DescribeVolumes", in_use, &HashMap::new(), t1)
            .unwrap();
        assert!(shown.contains("<status>attaching</status>"), "{shown}");
        let t2 = t1 + scaled(ATTACHING_SECS, 1.0);
        assert_eq!(
            r.rewrite("DescribeVolumes", in_use, &HashMap::new(), t2)
                .unwrap(),
            in_use
        );

        let detached = attached
            .replace("Attach", "Detach")
            .replace("attaching", "detaching");
        r.record("DetachVolume", &attach, &detached, None, &[], t2)
            .unwrap();
        let available = r#"<DescribeVolumesResponse><volumeSet><item><volumeId>vol-1</volumeId><status>available</status><attachmentSet/></item></volumeSet></DescribeVolumesResponse>"#;
        let shown = r
            .rewrite("DescribeVolumes", available, &HashMap::new(), t2)
            .unwrap();
        assert!(shown.contains("<status>in-use</status>"), "{shown}");
        assert!(
            shown.contains(
                "<instanceId>i-1</instanceId><device>/dev/sdf</device><status>detaching</status>"
            ),
            "{shown}"
        );
        let t3 = t2 + scaled(DETACHING_SECS, 1.0);
        assert_eq!(
            r.rewrite("DescribeVolumes", available, &HashMap::new(), t3)
                .unwrap(),
            available
        );

        let created2 = created.replace("vol-1", "vol-2");
        r.record(
            "CreateVolume",
            &[],
            &created2,
            Some(&Effect::VolumeFails),
            &[],
            t0,
        )
        .unwrap();
        let shown = r
            .rewrite("CreateVolume", &created2, &HashMap::new(), t3)
            .unwrap();
        assert!(shown.contains("<status>error</status>"), "{shown}");
        let attach2 = p(&[("VolumeId", "vol-2")]);
        assert_eq!(
            r.refuse("AttachVolume", &attach2, t3).unwrap().code,
            "IncorrectState"
        );
        assert_eq!(r.counters.volumes_failed, 1);
    }

    #[test]
    fn snapshot_progress_rises_then_completes() {
        let mut r = region();
        let t0 = Instant::now();
        let body = r#"<CreateSnapshotResponse><snapshotId>snap-1</snapshotId><status>completed</status><progress>100%</progress></CreateSnapshotResponse>"#;
        r.record("CreateSnapshot", &[], body, None, &[], t0)
            .unwrap();
        let at = |secs: f64| {
            r.rewrite(
                "CreateSnapshot",
                body,
                &HashMap::new(),
                t0 + scaled(secs, 1.0),
            )
            .unwrap()
        };
        assert!(at(0.0).contains("<status>pending</status><progress>0%</progress>"));
        assert!(at(SNAPSHOT_SECS / 2.0).contains("<progress>50%</progress>"));
        assert_eq!(at(SNAPSHOT_SECS), body);
    }

    #[test]
    fn a_termination_lingers_in_its_vpc() {
        let mut r = region();
        let t0 = Instant::now();
        let term = r#"<TerminateInstancesResponse><instancesSet><item><instanceId>i-1</instanceId><currentState><code>32</code><name>shutting-down</name></currentState></item></instancesSet></TerminateInstancesResponse>"#;
        let before = xml::Instance {
            instance_id: "i-1".into(),
            vpc_id: Some("vpc-1".into()),
            subnet_id: Some("subnet-1".into()),
            private_ip: Some("10.0.1.10".into()),
            group_ids: vec!["sg-1".into()],
            ..xml::Instance::default()
        };
        r.record("TerminateInstances", &[], term, None, &[before], t0)
            .unwrap();
        let t1 = t0 + scaled(CONSISTENCY_SECS, 1.0);
        let refused = |r: &mut Region, action: &str, ps: &[(&str, &str)], t| {
            r.refuse(action, &p(ps), t).map(|x| x.code)
        };
        assert_eq!(
            refused(
                &mut r,
                "DetachInternetGateway",
                &[("VpcId", "vpc-1"), ("InternetGatewayId", "igw-1")],
                t1
            ),
            Some("DependencyViolation")
        );
        assert_eq!(
            refused(&mut r, "DeleteSubnet", &[("SubnetId", "subnet-1")], t1),
            Some("DependencyViolation")
        );
        assert_eq!(
            refused(&mut r, "DeleteSecurityGroup", &[("GroupId", "sg-1")], t1),
            Some("DependencyViolation")
        );
        assert_eq!(
            refused(
                &mut r,
                "RunInstances",
                &[("SubnetId", "subnet-1"), ("PrivateIpAddress", "10.0.1.10")],
                t1
            ),
            Some("InvalidIPAddress.InUse")
        );
        assert_eq!(
            refused(
                &mut r,
                "RunInstances",
                &[("SubnetId", "subnet-2"), ("PrivateIpAddress", "10.0.1.10")],
                t1
            ),
            None
        );
        assert_eq!(r.counters.lingering, 4);
        let t2 = t0 + scaled(LINGERING_SECS, 1.0);
        assert_eq!(
            refused(&mut r, "DeleteSubnet", &[("SubnetId", "subnet-1")], t2),
            None
        );
    }

    #[test]
    fn a_nat_gateway_is_pending_then_available_and_holds_its_subnet_and_address_until_deleted() {
        let mut r = region();
        let t0 = Instant::now();
        let created = r#"<CreateNatGatewayResponse><natGateway><natGatewayAddressSet><item><allocationId>eipalloc-1</allocationId><publicIp>198.51.100.3</publicIp></item></natGatewayAddressSet><natGatewayId>nat-1</natGatewayId><state>available</state><subnetId>subnet-1</subnetId><vpcId>vpc-1</vpcId></natGateway></CreateNatGatewayResponse>"#;
        r.record("CreateNatGateway", &[], created, None, &[], t0)
            .unwrap();
        let shown = r
            .rewrite("CreateNatGateway", created, &HashMap::new(), t0)
            .unwrap();
        assert!(shown.contains("<state>pending</state>"), "{shown}");
        let listed = created
            .replace(
                "CreateNatGatewayResponse><natGateway>",
                "DescribeNatGatewaysResponse><natGatewaySet><item>",
            )
            .replace(
                "</natGateway></CreateNatGatewayResponse>",
                "</item></natGatewaySet></DescribeNatGatewaysResponse>",
            )
            .replace(
                "<CreateNatGatewayResponse>",
                "<DescribeNatGatewaysResponse>",
            );
        let at = |r: &Region, t| {
            r.rewrite("DescribeNatGateways", &listed, &HashMap::new(), t)
                .unwrap()
        };
        assert!(at(&r, t0).contains("<state>pending</state>"));
        assert_eq!(
            r.nat_available_in("nat-1", t0),
            Some(scaled(NAT_PENDING_SECS, 1.0))
        );
        let t1 = t0 + scaled(NAT_PENDING_SECS, 1.0);
        assert!(at(&r, t1).contains("<state>available</state>"));
        assert!(r.nat_states(t1).is_empty());

        let refused = |r: &mut Region, action: &str, ps: &[(&str, &str)], t| {
            r.refuse(action, &p(ps), t).map(|x| x.code)
        };
        assert_eq!(
            refused(&mut r, "DeleteSubnet", &[("SubnetId", "subnet-1")], t1),
            Some("DependencyViolation")
        );
        assert_eq!(
            refused(
                &mut r,
                "ReleaseAddress",
                &[("AllocationId", "eipalloc-1")],
                t1
            ),
            Some("InvalidIPAddress.InUse")
        );
        assert_eq!(
            refused(
                &mut r,
                "ReleaseAddress",
                &[("PublicIp", "198.51.100.3")],
                t1
            ),
            Some("InvalidIPAddress.InUse")
        );
        assert_eq!(
            refused(
                &mut r,
                "DetachInternetGateway",
                &[("VpcId", "vpc-1"), ("InternetGatewayId", "igw-1")],
                t1
            ),
            Some("DependencyViolation")
        );
        assert_eq!(
            refused(&mut r, "DeleteSubnet", &[("SubnetId", "subnet-2")], t1),
            None
        );
        assert_eq!(
            refused(&mut r, "DeleteNatGateway", &[("NatGatewayId", "nat-2")], t1),
            Some("NatGatewayNotFound")
        );
        assert_eq!(r.counters.nat_in_use, 5);

        let del = p(&[("NatGatewayId", "nat-1")]);
        assert_eq!(r.refuse("DeleteNatGateway", &del, t1), None);
        r.record(
            "DeleteNatGateway",
            &del,
            "<DeleteNatGatewayResponse/>",
            None,
            &[],
            t1,
        )
        .unwrap();
        let deleted = listed.replace("<state>available</state>", "<state>deleted</state>");
        let shown = r
            .rewrite("DescribeNatGateways", &deleted, &HashMap::new(), t1)
            .unwrap();
        assert!(shown.contains("<state>deleting</state>"), "{shown}");
        assert_eq!(
            refused(
                &mut r,
                "ReleaseAddress",
                &[("AllocationId", "eipalloc-1")],
                t1
            ),
            Some("InvalidIPAddress.InUse"),
            "still deleting"
        );
        let t2 = t1 + scaled(NAT_DELETING_SECS, 1.0);
        assert_eq!(
            r.rewrite("DescribeNatGateways", &deleted, &HashMap::new(), t2)
                .unwrap(),
            deleted
        );
        assert_eq!(
            refused(
                &mut r,
                "ReleaseAddress",
                &[("AllocationId", "eipalloc-1")],
                t2
            ),
            None
        );
        assert_eq!(
            refused(&mut r, "DeleteSubnet", &[("SubnetId", "subnet-1")], t2),
            None
        );
    }
}
