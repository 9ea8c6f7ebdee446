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
//!
//! Here are the [`Region`] and its three questions, each asked of every kind of resource in
//! turn: what to refuse ([`Region::refuse`]), what a successful request started
//! ([`Region::record`]) and how an answer reads now ([`Region::rewrite`]). The kinds keep their
//! clocks in their own files: `consistency` (the window after a create), `instances` (states,
//! failures to carry out, what a termination leaves behind), `storage` (volumes, attachments and
//! snapshots) and `nat` (NAT gateways and what they hold).

mod consistency;
#[cfg(test)]
mod fixtures;
mod instances;
mod nat;
mod storage;

use crate::control::{RegionCounters, RegionSettings};
use crate::faults::{Effect, Rng};
use crate::front::moto::param;
use crate::xml;
use anyhow::Result;
use consistency::Kind;
pub use instances::{Due, Outcome, already_terminated};
use instances::{InstanceClock, Lingering};
use nat::NatClock;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use storage::{SnapshotClock, VolumeClock};

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

/// An EC2 error the region answers instead of moto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    /// DeleteSubnet of a subnet something still uses (an interface, a NAT gateway).
    fn subnet_in_use(subnet: &str) -> Refusal {
        Refusal {
            code: "DependencyViolation",
            message: format!("The subnet '{subnet}' has dependencies and cannot be deleted."),
        }
    }

    /// DetachInternetGateway from a VPC where public addresses are still mapped.
    fn addresses_mapped(vpc: &str) -> Refusal {
        Refusal {
            code: "DependencyViolation",
            message: format!(
                "Network {vpc} has some mapped public address(es). Please unmap those public address(es) before detaching the gateway."
            ),
        }
    }
}

/// The resource a request names in parameter `name`, when it is `held` (`None` when nothing
/// is held).
fn named<'a>(held: &'a Option<String>, params: &[(String, String)], name: &str) -> Option<&'a str> {
    held.as_deref().filter(|h| param(params, name) == Some(*h))
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

    /// A request EC2 refuses in the state a resource shows now.
    fn incorrect_state(
        &self,
        action: &str,
        params: &[(String, String)],
        now: Instant,
    ) -> Option<Refusal> {
        match action {
            "StartInstances" => self.not_startable(params, now),
            "AttachVolume" => self.not_attachable(params, now),
            _ => None,
        }
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
        self.hide_created(action, body, now)?;
        let due = self.record_instances(action, body, fault, terminated, now)?;
        self.record_storage(action, params, body, fault, now)?;
        self.record_nat(action, params, body, now)?;
        Ok(due)
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
            | "TerminateInstances" => {
                xml::rewrite_instances(body, |id| self.instance_view(id, hide(id), previous, now))
            }
            "DescribeVolumes" | "CreateVolume" => {
                xml::rewrite_volumes(body, |id| self.volume_view(id, hide(id), now))
            }
            "DescribeNatGateways" | "CreateNatGateway" => {
                xml::rewrite_nat_gateways(body, |id| self.nat_state(id, now))
            }
            "DescribeSnapshots" | "CreateSnapshot" => {
                xml::rewrite_snapshots(body, |id| self.snapshot_view(id, hide(id), now))
            }
            _ => match consistency::hidden_list(action) {
                Some((set, elements)) => xml::hide_items(body, set, elements, hide),
                None => Ok(body.to_string()),
            },
        }
    }
}
