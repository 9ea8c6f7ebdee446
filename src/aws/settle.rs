//! What EC2 asks of a client while it settles, in one place so every call gets it:
//!
//! - **Eventual consistency.** Right after a create, a call that names the new id may be
//!   answered `*.NotFound` (EC2 API reference, "Eventual consistency"): a call naming an id that
//!   this run created ([`Fresh`]) is retried with backoff, within [`Aws::consistency_wait`]. A
//!   `*.NotFound` for any other id is an answer, not a delay.
//! - **Lingering dependencies.** For a while after a termination EC2 still holds the
//!   instance's network interface: a detach or a delete is refused with a code the caller
//!   names as `busy`; it is retried within [`Aws::dependency_wait`]. (A launch at the same
//!   private IP is retried by the launch itself, which first looks for the node's own instance
//!   holding the address: `instances.rs`.)
//!
//! Every retry is logged (`RUST_LOG=redisctl::aws=info`) and counted ([`Aws::retries`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use super::Aws;

/// The ids this run created (or that EC2 just said exist, though not listed yet): EC2 may not
/// know them everywhere yet.
#[derive(Clone, Default)]
pub(crate) struct Fresh(Arc<Mutex<HashSet<String>>>);

impl Fresh {
    pub fn add(&self, id: &str) {
        if !id.is_empty() {
            self.0.lock().unwrap().insert(id.to_string());
        }
    }

    pub fn any(&self, ids: &[&str]) -> bool {
        let set = self.0.lock().unwrap();
        ids.iter().any(|id| set.contains(*id))
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.lock().unwrap().contains(id)
    }

    /// An id no longer expected to show (a launch EC2 ended, an instance terminated).
    pub fn forget(&self, id: &str) {
        self.0.lock().unwrap().remove(id);
    }

    /// The ids with `prefix` (`i-`, `vol-`, …) that are not in `listed`.
    pub fn missing_from(&self, prefix: &str, listed: &[&str]) -> Vec<String> {
        let set = self.0.lock().unwrap();
        let mut v: Vec<String> = set
            .iter()
            .filter(|id| id.starts_with(prefix) && !listed.contains(&id.as_str()))
            .cloned()
            .collect();
        v.sort();
        v
    }
}

/// Retries made, by EC2 error code (or by what was waited for).
#[derive(Clone, Default)]
pub struct Retries(Arc<Mutex<BTreeMap<String, u64>>>);

impl Retries {
    pub fn count(&self, what: &str) {
        *self.0.lock().unwrap().entry(what.to_string()).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().clone()
    }
}

/// Why an answer is worth asking again, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delay {
    /// EC2 does not know yet an id this run created.
    Consistency,
    /// A dependency of a terminated instance is still going away.
    Dependency,
}

/// Whether EC2's `code` for a call naming `named` is a delay: a `*.NotFound` for an id this run
/// created, or one of the caller's `busy` codes.
pub(crate) fn delay(
    code: Option<&str>,
    named: &[&str],
    busy: &[&str],
    fresh: &Fresh,
) -> Option<Delay> {
    let code = code?;
    if busy.contains(&code) {
        return Some(Delay::Dependency);
    }
    // `NatGatewayNotFound` is the one NotFound code without its dot.
    (code.ends_with("NotFound") && fresh.any(named)).then_some(Delay::Consistency)
}

/// Exponential backoff from 100 ms, doubling, capped at `cap`.
pub(crate) struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(cap: Duration) -> Backoff {
        Backoff {
            next: Duration::from_millis(100).min(cap),
            cap,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }
}

impl Aws {
    /// Record an id this run created.
    pub(super) fn created(&self, id: &str) {
        self.fresh.add(id);
    }

    /// Record the id a create answered with (empty if it gave none) and return it.
    pub(super) fn made(&self, id: Option<&str>) -> String {
        let id = id.unwrap_or_default();
        self.created(id);
        id.to_string()
    }

    /// Send a request (`f` builds and sends it) until its answer is not a delay ([`delay`]):
    /// `call` on `resource` names the ids in `named`; `busy` are the codes that mean "a
    /// dependency is still going away" for this call. Returns the last answer as it came, for
    /// the caller to read or map.
    pub(super) async fn settle<T, E, R, F, Fut>(
        &self,
        call: &str,
        resource: &str,
        named: &[&str],
        busy: &[&str],
        mut f: F,
    ) -> Result<T, SdkError<E, R>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata,
    {
        let start = Instant::now();
        let mut backoff = Backoff::new(self.poll);
        loop {
            let e = match f().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let bound = match delay(e.code(), named, busy, &self.fresh) {
                Some(Delay::Consistency) => self.consistency_wait,
                Some(Delay::Dependency) => self.dependency_wait,
                None => return Err(e),
            };
            if start.elapsed() >= bound {
                return Err(e);
            }
            let code = e.code().unwrap_or_default().to_string();
            let wait = backoff.next_delay();
            self.retries.count(&code);
            tracing::info!(
                "{call} ({resource}): {code} after {:?}; retrying in {wait:?}",
                start.elapsed()
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_a_delay_only_for_ids_this_run_created() {
        let fresh = Fresh::default();
        fresh.add("subnet-1");
        let d = |code, named: &[&str]| delay(Some(code), named, &[], &fresh);
        assert_eq!(
            d("InvalidSubnetID.NotFound", &["subnet-1"]),
            Some(Delay::Consistency)
        );
        assert_eq!(
            d("InvalidGroup.NotFound", &["sg-old", "subnet-1"]),
            Some(Delay::Consistency)
        );
        assert_eq!(d("InvalidSubnetID.NotFound", &["subnet-2"]), None);
        assert_eq!(d("InvalidParameterValue", &["subnet-1"]), None);
        assert_eq!(delay(None, &["subnet-1"], &[], &fresh), None);
    }

    #[test]
    fn a_forgotten_instance_is_not_waited_for() {
        let fresh = Fresh::default();
        for id in ["i-1", "i-2", "subnet-1"] {
            fresh.add(id);
        }
        assert_eq!(fresh.missing_from("i-", &["i-1"]), ["i-2"]);
        // A launch EC2 ended is never listed as running.
        fresh.forget("i-2");
        assert!(fresh.missing_from("i-", &["i-1"]).is_empty());
    }

    #[test]
    fn busy_codes_are_the_callers() {
        let fresh = Fresh::default();
        let busy = ["DependencyViolation"];
        assert_eq!(
            delay(Some("DependencyViolation"), &["igw-1"], &busy, &fresh),
            Some(Delay::Dependency)
        );
        assert_eq!(
            delay(Some("DependencyViolation"), &["igw-1"], &[], &fresh),
            None
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(500));
        let seen: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seen, [100, 200, 400, 500, 500]);
    }
}
