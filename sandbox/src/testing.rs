//! Helpers for tests that use the shared sandbox (this crate's and redisctl's end-to-end tests).
//!
//! Tests run inside the operator namespace (`redisctl-sandbox exec -- cargo test …`), share one
//! sandbox, and take [`Sandbox::acquire`] first: it fails the test when the sandbox environment
//! is missing, serialises tests on a file lock (across threads and test binaries), and resets the
//! region so each test starts from an empty one.
//!
//! The region is timed (docs/sandbox.md, "The timed region"): tests see `pending`, NotFound right after a
//! create, and so on, at the speed factor the sandbox runs at. [`Sandbox::region`] reads the
//! settings and what the region did; [`Sandbox::set_region`] changes them (a test that does
//! must restore them: they outlive the reset).

use crate::control::{self, RegionChange, RegionStatus, Request};
use crate::faults::{DEFAULT_LAUNCH_FAILURE, DEFAULT_START_FAILURE, Effect, Fault, Hook};
use crate::paths::Paths;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

pub struct Sandbox {
    _lock: File,
    pub paths: Paths,
    pub endpoint: String,
}

/// Takes the shared sandbox's test lock (blocking): one test at a time uses the region.
pub fn lock(paths: &Paths) -> File {
    std::fs::create_dir_all(&paths.run).expect("cannot create the sandbox run directory");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(paths.test_lock())
        .expect("cannot open the sandbox test lock");
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        panic!(
            "cannot lock {}: {}",
            paths.test_lock().display(),
            std::io::Error::last_os_error()
        );
    }
    lock
}

impl Sandbox {
    /// Panics (fails the test) with a clear message when not run inside the sandbox.
    pub fn acquire() -> Sandbox {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
        if endpoint.is_empty() {
            panic!(
                "this test needs the sandbox: AWS_ENDPOINT_URL is not set. Run `redisctl-sandbox up` and then the tests \
                 through `redisctl-sandbox exec -- cargo test …`"
            );
        }
        let paths = Paths::from_env();
        let lock = lock(&paths);
        let sb = Sandbox {
            _lock: lock,
            paths,
            endpoint,
        };
        sb.reset();
        sb
    }

    /// Returns the region to empty (moto reset, hosts and volumes removed, stats and faults cleared).
    pub fn reset(&self) {
        if let Err(e) = control::call(
            &self.paths.control_socket(),
            &Request::Reset,
            Duration::from_secs(300),
        ) {
            panic!("cannot reset the sandbox: {e:#}");
        }
    }

    /// Fills the region with what a used account holds, the foreign key pair named `key_name`
    /// (docs/sandbox.md, "A used account"); returns the ids made.
    pub fn seed_used_account(&self, key_name: &str) -> Vec<String> {
        let v = control::call(
            &self.paths.control_socket(),
            &Request::Seed {
                key_name: key_name.to_string(),
            },
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("cannot seed the sandbox: {e:#}"));
        serde_json::from_value(v["made"].clone()).expect("malformed seed answer")
    }

    /// Per-action request counts since the last reset.
    pub fn stats(&self, reset: bool) -> std::collections::BTreeMap<String, u64> {
        let v = control::call(
            &self.paths.control_socket(),
            &Request::Stats { reset },
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("cannot read sandbox stats: {e:#}"));
        serde_json::from_value(v).expect("malformed stats")
    }

    pub fn add_fault(&self, fault: crate::faults::Fault) {
        control::call(
            &self.paths.control_socket(),
            &Request::FaultsAdd { fault },
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("cannot add a sandbox fault: {e:#}"));
    }

    /// `times` RunInstances calls are answered `pending`, then their instances are terminated
    /// with the state reason `reason` (default `Client.InvalidKMSKey.InvalidState`).
    pub fn fail_launches(&self, times: u64, reason: Option<&str>) {
        self.add_effect(
            "RunInstances",
            Effect::LaunchFails {
                reason: reason.unwrap_or(DEFAULT_LAUNCH_FAILURE).into(),
            },
            times,
        );
    }

    /// `times` StartInstances calls go `pending`, then back to `stopped` with the state reason
    /// `reason` (default `Server.InsufficientInstanceCapacity`).
    pub fn fail_starts(&self, times: u64, reason: Option<&str>) {
        self.add_effect(
            "StartInstances",
            Effect::StartFails {
                reason: reason.unwrap_or(DEFAULT_START_FAILURE).into(),
            },
            times,
        );
    }

    /// `times` CreateVolume calls make a volume that ends in `error`.
    pub fn fail_volumes(&self, times: u64) {
        self.add_effect("CreateVolume", Effect::VolumeFails, times);
    }

    /// `times` requests for `action` take effect, then lose their answer.
    pub fn lose_responses(&self, action: &str, times: u64) {
        self.add_effect(action, Effect::LoseResponse, times);
    }

    fn add_effect(&self, action: &str, effect: Effect, times: u64) {
        self.add_fault(Fault {
            action: action.into(),
            effect,
            times: Some(times),
            rate: None,
            fired: 0,
        });
    }

    /// The timed region's settings and counters.
    pub fn region(&self) -> RegionStatus {
        self.set_region(RegionChange::default())
    }

    /// Changes some of the timed region's settings; returns them with the counters. They stay
    /// after [`Sandbox::reset`]: restore them at the end of the test.
    pub fn set_region(&self, change: RegionChange) -> RegionStatus {
        let v = control::call(
            &self.paths.control_socket(),
            &Request::Region { change },
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("cannot reach the sandbox's region settings: {e:#}"));
        serde_json::from_value(v).expect("malformed region status")
    }

    pub fn clear_faults(&self) {
        control::call(
            &self.paths.control_socket(),
            &Request::FaultsClear,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("cannot clear sandbox faults: {e:#}"));
    }

    /// Adds a hook (a kill or a hold at the request that sets a tag: docs/sandbox.md, "Hooks");
    /// its id.
    pub fn add_hook(&self, hook: Hook) -> u64 {
        let v = control::call(
            &self.paths.control_socket(),
            &Request::HooksAdd { hook },
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("cannot add a sandbox hook: {e:#}"));
        v["id"].as_u64().expect("malformed hook id")
    }

    /// Every hook with what it did.
    pub fn hooks(&self) -> Vec<Hook> {
        let v = control::call(
            &self.paths.control_socket(),
            &Request::HooksList,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("cannot list sandbox hooks: {e:#}"));
        serde_json::from_value(v).expect("malformed hooks")
    }

    /// Hook `id` as it is now.
    pub fn hook(&self, id: u64) -> Hook {
        self.hooks()
            .into_iter()
            .find(|h| h.id == id)
            .unwrap_or_else(|| panic!("no sandbox hook {id}"))
    }

    /// Waits (at most `bound`) until hook `id` has fired; the hook then.
    pub fn wait_hook(&self, id: u64, bound: Duration) -> Hook {
        let start = std::time::Instant::now();
        loop {
            let h = self.hook(id);
            if !h.fired.is_empty() {
                return h;
            }
            assert!(
                start.elapsed() < bound,
                "sandbox hook {id} did not fire within {bound:?}: {h:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Answers the requests hold hook `id` holds; how many.
    pub fn release_hook(&self, id: u64) -> u64 {
        let v = control::call(
            &self.paths.control_socket(),
            &Request::HooksRelease { id },
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("cannot release sandbox hook {id}: {e:#}"));
        v["released"].as_u64().expect("malformed release answer")
    }

    /// Waits (at most `bound`) until the front carried out every EC2 request it read, such as
    /// those a killed client left (the front carries out machine actions one after another; EC2
    /// would have taken them at once). Returns how long it waited.
    pub fn wait_idle(&self, bound: Duration) -> Duration {
        let v = control::call(
            &self.paths.control_socket(),
            &Request::Idle {
                timeout_ms: bound.as_millis() as u64,
            },
            bound + Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("cannot ask the sandbox front whether it is idle: {e:#}"));
        assert_eq!(
            v["in_flight"].as_u64(),
            Some(0),
            "EC2 requests still in flight after {bound:?}"
        );
        Duration::from_millis(v["waited_ms"].as_u64().unwrap_or_default())
    }

    pub fn clear_hooks(&self) {
        control::call(
            &self.paths.control_socket(),
            &Request::HooksClear,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("cannot clear sandbox hooks: {e:#}"));
    }

    pub fn hosts(&self) -> Vec<control::HostStatus> {
        let v = control::call(
            &self.paths.control_socket(),
            &Request::Status,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("cannot read sandbox status: {e:#}"));
        serde_json::from_value(v).expect("malformed status")
    }
}
