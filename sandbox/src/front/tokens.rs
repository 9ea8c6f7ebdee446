//! ClientToken as EC2 keeps it: the first successful answer to a request that carries a
//! `ClientToken` is remembered (24 hours of sandbox time on AWS, scaled by the speed factor);
//! the same token with the same parameters gets that answer again (the same instance ids, even
//! after they are terminated; nothing is done again), the same token with other parameters gets
//! `IdempotentParameterMismatch`. Failed requests are not remembered, so a retry of one is a new
//! request. Pure: the clock is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the table says about a request that carries a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not seen (or forgotten): carry it out.
    New,
    /// Seen with the same parameters: this was the answer.
    Replay(String),
    /// Seen with other parameters.
    Mismatch,
}

struct Remembered {
    params: Vec<(String, String)>,
    answer: String,
    at: Instant,
}

#[derive(Default)]
pub struct Tokens {
    by_token: HashMap<(String, String), Remembered>,
}

/// Parameters that differ between two sends of the same request (signatures, times).
fn is_signature(name: &str) -> bool {
    name.starts_with("X-Amz-")
        || matches!(
            name,
            "Signature"
                | "SignatureMethod"
                | "SignatureVersion"
                | "AWSAccessKeyId"
                | "Timestamp"
                | "Expires"
        )
}

/// The parameters that must match for a replay, in a canonical order.
fn comparable(params: &[(String, String)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !is_signature(k))
        .cloned()
        .collect();
    v.sort();
    v
}

impl Tokens {
    /// Looks `token` up for `action` (tokens are kept per action), forgetting what is older
    /// than `memory`.
    pub fn seen(
        &mut self,
        action: &str,
        token: &str,
        params: &[(String, String)],
        now: Instant,
        memory: Duration,
    ) -> Seen {
        self.by_token
            .retain(|_, r| now.saturating_duration_since(r.at) < memory);
        match self.by_token.get(&(action.to_string(), token.to_string())) {
            None => Seen::New,
            Some(r) if r.params == comparable(params) => Seen::Replay(r.answer.clone()),
            Some(_) => Seen::Mismatch,
        }
    }

    /// Remembers the successful answer to a request with `token`.
    pub fn remember(
        &mut self,
        action: &str,
        token: &str,
        params: &[(String, String)],
        answer: String,
        now: Instant,
    ) {
        self.by_token.insert(
            (action.to_string(), token.to_string()),
            Remembered {
                params: comparable(params),
                answer,
                at: now,
            },
        );
    }

    pub fn clear(&mut self) {
        self.by_token.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::moto::params as p;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn same_parameters_replay_other_parameters_mismatch() {
        let mut t = Tokens::default();
        let now = Instant::now();
        let run = p(&[
            ("Action", "RunInstances"),
            ("ImageId", "ami-1"),
            ("ClientToken", "t"),
        ]);
        assert_eq!(t.seen("RunInstances", "t", &run, now, DAY), Seen::New);
        t.remember("RunInstances", "t", &run, "<answer/>".into(), now);
        // The order and the signature do not matter.
        let mut again = run.clone();
        again.reverse();
        again.push(("X-Amz-Date".into(), "20250101T000000Z".into()));
        assert_eq!(
            t.seen("RunInstances", "t", &again, now, DAY),
            Seen::Replay("<answer/>".into())
        );
        let other = p(&[
            ("Action", "RunInstances"),
            ("ImageId", "ami-2"),
            ("ClientToken", "t"),
        ]);
        assert_eq!(
            t.seen("RunInstances", "t", &other, now, DAY),
            Seen::Mismatch
        );
        // Kept per action.
        assert_eq!(t.seen("CreateVolume", "t", &other, now, DAY), Seen::New);
    }

    #[test]
    fn forgotten_after_the_memory_and_at_clear() {
        let mut t = Tokens::default();
        let now = Instant::now();
        let run = p(&[("ClientToken", "t")]);
        t.remember("RunInstances", "t", &run, "a".into(), now);
        let later = now + Duration::from_secs(10);
        assert_eq!(
            t.seen("RunInstances", "t", &run, later, Duration::from_secs(11)),
            Seen::Replay("a".into())
        );
        assert_eq!(
            t.seen("RunInstances", "t", &run, later, Duration::from_secs(10)),
            Seen::New
        );
        t.remember("RunInstances", "t", &run, "a".into(), now);
        t.clear();
        assert_eq!(t.seen("RunInstances", "t", &run, now, DAY), Seen::New);
    }
}
