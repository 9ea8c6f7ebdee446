//! Fault injection and per-action counts, kept by the front.
//!
//! Two families of effects: those that answer instead of moto (an error, a bare status, a
//! dropped connection: the request never reaches moto), and those EC2 produces *after* it said
//! yes (the request reaches moto and takes effect; [`Effect::reaches_moto`]): a launch or a
//! start that fails at the end of `pending`, a volume that ends in `error`, and an answer lost
//! on its way back.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a fault does to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Effect {
    /// An awsquery XML error with this code and HTTP status.
    Error { code: String, status: u16 },
    /// A bare HTTP status with an empty body.
    Status { status: u16 },
    /// The connection is closed without an answer.
    Drop,
    /// RunInstances: the instances are answered `pending`, then go `terminated` at the end of
    /// the pending window with this state reason code (e.g. `Client.InvalidKMSKey.InvalidState`).
    LaunchFails { reason: String },
    /// StartInstances: `pending`, then back to `stopped` with this state reason code (e.g.
    /// `Server.InsufficientInstanceCapacity`).
    StartFails { reason: String },
    /// CreateVolume: the volume goes from `creating` to `error`.
    VolumeFails,
    /// The request takes effect, then the connection is closed without its answer.
    LoseResponse,
}

impl Effect {
    /// Whether the request still goes to moto (the effects of a failure after EC2 said yes).
    pub fn reaches_moto(&self) -> bool {
        matches!(
            self,
            Effect::LaunchFails { .. }
                | Effect::StartFails { .. }
                | Effect::VolumeFails
                | Effect::LoseResponse
        )
    }

    /// The action an effect is meant for, when it is meant for one only.
    pub fn only_for(&self) -> Option<&'static str> {
        match self {
            Effect::LaunchFails { .. } => Some("RunInstances"),
            Effect::StartFails { .. } => Some("StartInstances"),
            Effect::VolumeFails => Some("CreateVolume"),
            _ => None,
        }
    }
}

/// The state reason code a failed launch shows by default (a KMS key EC2 cannot use).
pub const DEFAULT_LAUNCH_FAILURE: &str = "Client.InvalidKMSKey.InvalidState";
/// The state reason code a failed start shows by default.
pub const DEFAULT_START_FAILURE: &str = "Server.InsufficientInstanceCapacity";

/// EC2's `stateReason` message for a code: `CODE: text`, with the text of the EC2 API
/// reference (`StateReason`) for the codes it lists.
pub fn state_reason_message(code: &str) -> String {
    let text = match code {
        "Client.InvalidKMSKey.InvalidState" => "The KMS key provided is in an incorrect state",
        "Server.InsufficientInstanceCapacity" => {
            "There was insufficient capacity available to satisfy the launch request"
        }
        "Server.InternalError" => "Internal error on launch",
        "Client.InternalError" => "Client error on launch",
        "Client.VolumeLimitExceeded" => "Volume limit exceeded",
        "Client.InvalidSnapshot.NotFound" => "The specified snapshot was not found",
        _ => "injected by redisctl-sandbox",
    };
    format!("{code}: {text}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// An EC2 action name (`RunInstances`) or `*` for every action.
    pub action: String,
    pub effect: Effect,
    /// Fire this many more times, then stop; `None` = no limit.
    pub times: Option<u64>,
    /// Fire with this probability (0..=1) per matching request; `None` = always.
    pub rate: Option<f64>,
    /// How often it has fired.
    #[serde(default)]
    pub fired: u64,
}

/// The HTTP status AWS uses for an error code, when not given.
pub fn default_status(code: &str) -> u16 {
    match code {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "Unavailable"
        | "ServiceUnavailable" => 503,
        "InternalError" | "InternalFailure" => 500,
        _ => 400,
    }
}

/// A small xorshift generator: fault rates need no cryptographic randomness.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug)]
pub struct Faults {
    pub list: Vec<Fault>,
    rng: Rng,
}

impl Faults {
    pub fn new(seed: u64) -> Faults {
        Faults {
            list: Vec::new(),
            rng: Rng::new(seed),
        }
    }

    /// The effect to apply to a request for `action`, if a fault fires. The first matching fault
    /// that fires wins; a fault with `times` exhausted is dropped from the list.
    pub fn check(&mut self, action: &str) -> Option<Effect> {
        self.check_where(action, |_| true)
    }

    /// [`Faults::check`] among the faults whose effect satisfies `kind` only (the others are not
    /// drawn and keep their count): a fault that reaches moto is drawn only once the request is
    /// known to reach it.
    pub fn check_where(&mut self, action: &str, kind: impl Fn(&Effect) -> bool) -> Option<Effect> {
        let mut hit = None;
        for (i, f) in self.list.iter_mut().enumerate() {
            if (f.action != "*" && f.action != action) || !kind(&f.effect) {
                continue;
            }
            if f.times == Some(0) {
                continue;
            }
            if let Some(rate) = f.rate
                && self.rng.unit() >= rate
            {
                continue;
            }
            f.fired += 1;
            if let Some(t) = f.times.as_mut() {
                *t -= 1;
            }
            hit = Some((i, f.effect.clone()));
            break;
        }
        let (i, effect) = hit?;
        if self.list[i].times == Some(0) {
            self.list.remove(i);
        }
        Some(effect)
    }
}

/// Requests per action, including those a fault answered.
pub type Stats = BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(action: &str, times: Option<u64>, rate: Option<f64>) -> Fault {
        Fault {
            action: action.into(),
            effect: Effect::Error {
                code: "RequestLimitExceeded".into(),
                status: 503,
            },
            times,
            rate,
            fired: 0,
        }
    }

    #[test]
    fn fires_n_times_for_its_action_only() {
        let mut f = Faults::new(7);
        f.list.push(fault("RunInstances", Some(2), None));
        assert_eq!(f.check("DescribeInstances"), None);
        assert!(f.check("RunInstances").is_some());
        assert!(f.check("RunInstances").is_some());
        assert_eq!(f.check("RunInstances"), None);
        assert!(f.list.is_empty());
    }

    #[test]
    fn wildcard_and_unlimited() {
        let mut f = Faults::new(7);
        f.list.push(Fault {
            effect: Effect::Drop,
            ..fault("*", None, None)
        });
        for action in ["A", "B", "C"] {
            assert_eq!(f.check(action), Some(Effect::Drop));
        }
        assert_eq!(f.list[0].fired, 3);
    }

    #[test]
    fn a_fault_of_another_kind_is_not_drawn() {
        let mut f = Faults::new(7);
        f.list.push(Fault {
            effect: Effect::LoseResponse,
            ..fault("RunInstances", Some(1), None)
        });
        let refusing = |e: &Effect| !e.reaches_moto();
        assert_eq!(f.check_where("RunInstances", refusing), None);
        assert_eq!(f.list[0].fired, 0, "not drawn, not spent");
        assert_eq!(
            f.check_where("RunInstances", Effect::reaches_moto),
            Some(Effect::LoseResponse)
        );
        assert!(f.list.is_empty());
    }

    #[test]
    fn first_match_wins() {
        let mut f = Faults::new(7);
        f.list.push(Fault {
            effect: Effect::Status { status: 500 },
            ..fault("X", Some(1), None)
        });
        f.list.push(Fault {
            effect: Effect::Drop,
            ..fault("*", None, None)
        });
        assert_eq!(f.check("X"), Some(Effect::Status { status: 500 }));
        assert_eq!(f.check("X"), Some(Effect::Drop));
    }

    #[test]
    fn rate_is_roughly_honoured() {
        let mut f = Faults::new(12345);
        f.list.push(fault("X", None, Some(0.3)));
        let hits = (0..10_000).filter(|_| f.check("X").is_some()).count();
        assert!((2_500..3_500).contains(&hits), "{hits}");
        let mut never = Faults::new(1);
        never.list.push(fault("X", None, Some(0.0)));
        assert!((0..1000).all(|_| never.check("X").is_none()));
    }

    #[test]
    fn effects_after_yes_reach_moto() {
        assert!(Effect::LoseResponse.reaches_moto());
        assert!(Effect::VolumeFails.reaches_moto());
        assert!(!Effect::Drop.reaches_moto());
        assert_eq!(
            Effect::LaunchFails {
                reason: DEFAULT_LAUNCH_FAILURE.into()
            }
            .only_for(),
            Some("RunInstances")
        );
        assert_eq!(
            state_reason_message(DEFAULT_LAUNCH_FAILURE),
            "Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state"
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(default_status("RequestLimitExceeded"), 503);
        assert_eq!(default_status("InternalError"), 500);
        assert_eq!(default_status("InvalidParameterValue"), 400);
    }
}
