//! The control socket between the CLI (and tests) and the front: one JSON request per line,
//! one JSON response per line. A unix socket, so it works from any network namespace.

use crate::faults::{Fault, Hook};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Request {
    Ping,
    Stats {
        reset: bool,
    },
    FaultsAdd {
        fault: Fault,
    },
    FaultsList,
    FaultsClear,
    /// Add a hook (docs/sandbox.md, "Hooks"): a kill or a hold at the request that sets a tag;
    /// answers `{"id": N}`.
    HooksAdd {
        hook: Hook,
    },
    /// Every hook, with what it did (`fired`).
    HooksList,
    /// Answer the requests hold hook `id` holds; answers `{"released": N}`.
    HooksRelease {
        id: u64,
    },
    /// Remove every hook (a held request is answered).
    HooksClear,
    /// Wait (at most `timeout_ms`) until no EC2 request is in flight: what a killed client
    /// sent is carried out to the end (machine actions one after another), and EC2 would have
    /// taken it at once. Answers `{"in_flight": N, "waited_ms": M}` (N > 0: timed out).
    Idle {
        timeout_ms: u64,
    },
    Reset,
    Status,
    /// Stop and remove every host (for `down`).
    StopAll,
    /// Read the timed region's settings and counters, after applying `change`.
    Region {
        #[serde(default)]
        change: RegionChange,
    },
    /// Fill the region with what a used account holds (docs/sandbox.md, "A used account"), the
    /// key pair under `key_name`; answers the ids made.
    Seed {
        key_name: String,
    },
}

/// The speed factor tests and the demo run at when nothing else is said: sandbox seconds per
/// modelled real second, so a 20 s `pending` lasts 1 s (see docs/sandbox.md, "The timed region").
pub const DEFAULT_SPEED: f64 = 0.05;
/// The environment variable `up` reads the speed factor from when `--speed` is not given.
pub const SPEED_ENV: &str = "REDISCTL_SANDBOX_SPEED";

/// How the front's timed region behaves (docs/sandbox.md, "The timed region").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegionSettings {
    /// Sandbox seconds per modelled real second: 1.0 = durations as on AWS, 0 = instant.
    pub speed: f64,
    /// Probability that a create is hidden for the eventual-consistency window.
    pub consistency_rate: f64,
    /// Probability that a termination leaves lingering dependencies in its VPC.
    pub lingering_rate: f64,
}

impl Default for RegionSettings {
    fn default() -> RegionSettings {
        RegionSettings {
            speed: DEFAULT_SPEED,
            consistency_rate: 1.0,
            lingering_rate: 1.0,
        }
    }
}

impl RegionSettings {
    /// The settings with `change` applied, or why it is refused.
    pub fn with(self, change: &RegionChange) -> Result<RegionSettings> {
        let out = RegionSettings {
            speed: change.speed.unwrap_or(self.speed),
            consistency_rate: change.consistency_rate.unwrap_or(self.consistency_rate),
            lingering_rate: change.lingering_rate.unwrap_or(self.lingering_rate),
        };
        if !(out.speed.is_finite() && out.speed >= 0.0) {
            bail!("the speed factor must be 0 or more, not {}", out.speed);
        }
        for (name, r) in [
            ("consistency rate", out.consistency_rate),
            ("lingering rate", out.lingering_rate),
        ] {
            if !(0.0..=1.0).contains(&r) {
                bail!("the {name} must be between 0 and 1, not {r}");
            }
        }
        Ok(out)
    }
}

/// A change of some [`RegionSettings`]; the fields left out keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lingering_rate: Option<f64>,
}

/// What the timed region did since the last reset, by class (the retries a client needed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionCounters {
    /// `*.NotFound` answers to requests naming a resource inside its consistency window.
    pub not_found: u64,
    /// Answers replayed for a ClientToken seen before with the same parameters.
    pub token_replays: u64,
    /// `IdempotentParameterMismatch` answers (a ClientToken reused with other parameters).
    pub idempotent_mismatches: u64,
    /// Refusals of a request in a transitional state (`IncorrectInstanceState`, `IncorrectState`).
    pub incorrect_state: u64,
    /// `DependencyViolation` and `InvalidIPAddress.InUse` answers after a termination.
    pub lingering: u64,
    /// Launches that failed after `pending` (injected).
    pub launches_failed: u64,
    /// Starts that fell back to `stopped` (injected).
    pub starts_failed: u64,
    /// Volumes that went to `error` (injected).
    pub volumes_failed: u64,
    /// Answers lost after the request took effect (injected).
    pub lost_responses: u64,
    /// Requests refused as EC2 refuses them and moto would not (an unknown parameter or filter,
    /// a missing one, a value of the wrong type: `front/model.rs`).
    #[serde(default)]
    pub invalid_requests: u64,
    /// Refusals while a NAT gateway is not yet `deleted`: DeleteSubnet of its subnet,
    /// DetachInternetGateway of its VPC (`DependencyViolation`), ReleaseAddress of its Elastic
    /// IP (`InvalidIPAddress.InUse`).
    #[serde(default)]
    pub nat_in_use: u64,
}

/// The answer to [`Request::Region`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionStatus {
    pub settings: RegionSettings,
    pub counters: RegionCounters,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            ok: true,
            error: None,
            data,
        }
    }
    pub fn err(e: impl std::fmt::Display) -> Response {
        Response {
            ok: false,
            error: Some(format!("{e:#}")),
            data: serde_json::Value::Null,
        }
    }
}

/// One host as `status` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostStatus {
    pub instance_id: String,
    pub state: String,
    pub private_ip: String,
    pub root_volume: Option<String>,
    pub pid: Option<u32>,
    pub boots: u64,
}

/// Sends one request and waits (at most `timeout`) for its answer.
pub fn call(socket: &Path, req: &Request, timeout: Duration) -> Result<serde_json::Value> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the sandbox front on {} (is the sandbox up?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .with_context(|| {
            format!(
                "no answer from the sandbox front within {}s to {req:?}",
                timeout.as_secs()
            )
        })?;
    if answer.is_empty() {
        bail!("the sandbox front closed the control connection without answering {req:?}");
    }
    let resp: Response =
        serde_json::from_str(&answer).context("the sandbox front sent a malformed answer")?;
    if !resp.ok {
        bail!(
            "{}",
            resp.error
                .unwrap_or_else(|| "the sandbox front reported an error".into())
        );
    }
    Ok(resp.data)
}
