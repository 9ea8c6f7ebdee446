//! Fault injection, hooks and per-action counts, kept by the front.
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

/// A trigger at a chosen point of a client's work (docs/sandbox.md, "Hooks"): when a request for
/// `action` has taken effect (moto answered it with success) and names the tag `tag_key`
/// (with the value `tag_value`, when given: `Tag.N.Key`/`Tag.N.Value` of CreateTags, DeleteTags
/// or a `TagSpecification`), the front does [`Then`] before it answers. A fault decides what a
/// request gets; a hook decides what happens to its client, exactly there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    /// Given by the front when the hook is added (answered by `HooksAdd`).
    #[serde(default)]
    pub id: u64,
    /// An EC2 action name (`CreateTags`) or `*`.
    pub action: String,
    pub tag_key: String,
    /// `None`: any value (and a DeleteTags that names the key without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_value: Option<String>,
    pub then: Then,
    /// Fire this many more times (default 1). A spent hook stays listed with what it did,
    /// until `HooksClear` or a reset.
    #[serde(default = "one")]
    pub times: u64,
    /// What it did, in order.
    #[serde(default)]
    pub fired: Vec<Firing>,
}

fn one() -> u64 {
    1
}

/// What a hook does to the request that met it, after the request took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Then {
    /// SIGKILL to this process, then the connection is closed without the answer: what the
    /// request did is done (moto has it), and its client is gone before it could learn it, as
    /// in a crash right after the call. (A kill after the answer would race the client's next
    /// step: nobody could say where it stood when it died.)
    Kill { pid: u32 },
    /// The answer waits until the hook is released (`HooksRelease`, `HooksClear`, a reset) or
    /// `max_secs` have passed, so that a test acts at exactly that point of the client's work.
    /// Keep it under the client's own timeout (redisctl: 60 s per attempt).
    Hold {
        #[serde(default = "default_hold_secs")]
        max_secs: u64,
    },
}

/// How long a hold lasts when nobody releases it.
pub const DEFAULT_HOLD_SECS: u64 = 45;

fn default_hold_secs() -> u64 {
    DEFAULT_HOLD_SECS
}

/// One time a hook fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// The resources the request named (`ResourceId.N`, `InstanceId.N`).
    pub resources: Vec<String>,
    /// The value the tag was given (`None` for a DeleteTags without one).
    pub value: Option<String>,
    /// Milliseconds since the Unix epoch when it fired.
    pub at_ms: u64,
    /// `killed pid N`, `pid N: no such process (answered)`, `holding`, `released after N ms`,
    /// `not released within N s`.
    pub outcome: String,
}

impl Hook {
    /// SIGKILL to `pid` once a request for `action` sets the tag `key` to `value`.
    pub fn kill_on_tag(action: &str, key: &str, value: &str, pid: u32) -> Hook {
        Hook::on_tag(action, key, Some(value), Then::Kill { pid })
    }

    /// Hold the answer to the first request for `action` that sets the tag `key` to `value`.
    pub fn hold_on_tag(action: &str, key: &str, value: &str) -> Hook {
        Hook::on_tag(
            action,
            key,
            Some(value),
            Then::Hold {
                max_secs: DEFAULT_HOLD_SECS,
            },
        )
    }

    pub fn on_tag(action: &str, key: &str, value: Option<&str>, then: Then) -> Hook {
        Hook {
            id: 0,
            action: action.into(),
            tag_key: key.into(),
            tag_value: value.map(String::from),
            then,
            times: 1,
            fired: Vec::new(),
        }
    }

    /// Whether a successful request for `action` with `params` meets the hook; the tag's value
    /// (`Some(None)`: named without one).
    fn meets(&self, action: &str, params: &[(String, String)]) -> Option<Option<String>> {
        if self.times == 0 || (self.action != "*" && self.action != action) {
            return None;
        }
        params.iter().find_map(|(k, v)| {
            let prefix = k.strip_suffix(".Key")?;
            if v != &self.tag_key {
                return None;
            }
            let value_key = format!("{prefix}.Value");
            let value = params
                .iter()
                .find(|(k, _)| *k == value_key)
                .map(|(_, v)| v.clone());
            match &self.tag_value {
                Some(want) if value.as_ref() != Some(want) => None,
                _ => Some(value),
            }
        })
    }
}

/// The hooks the front holds.
#[derive(Debug, Default)]
pub struct Hooks {
    pub list: Vec<Hook>,
    next: u64,
}

impl Hooks {
    /// Adds a hook; its id. Refuses what could hit the machine rather than a client: a kill of
    /// pid 0 or 1 (or of the front itself), a hook that never fires.
    pub fn add(&mut self, mut hook: Hook) -> Result<u64, String> {
        if let Then::Kill { pid } = hook.then
            && (pid <= 1 || pid == std::process::id())
        {
            return Err(format!("refusing a hook that kills pid {pid}"));
        }
        if hook.times == 0 {
            return Err("a hook with times = 0 never fires".into());
        }
        if hook.tag_key.is_empty() {
            return Err("a hook needs a tag key".into());
        }
        self.next += 1;
        hook.id = self.next;
        hook.fired.clear();
        self.list.push(hook);
        Ok(self.next)
    }

    /// The first hook a successful request meets, spent once, with what fired (its outcome to be
    /// filled in by [`Hooks::outcome`]): the hook's id, what to do and the firing's index.
    pub fn fire(
        &mut self,
        action: &str,
        params: &[(String, String)],
        at_ms: u64,
    ) -> Option<(u64, Then, usize)> {
        let (i, value) = self
            .list
            .iter()
            .enumerate()
            .find_map(|(i, h)| h.meets(action, params).map(|v| (i, v)))?;
        let hook = &mut self.list[i];
        hook.times -= 1;
        let resources = params
            .iter()
            .filter(|(k, _)| k.starts_with("ResourceId.") || k.starts_with("InstanceId."))
            .map(|(_, v)| v.clone())
            .collect();
        hook.fired.push(Firing {
            resources,
            value,
            at_ms,
            outcome: String::new(),
        });
        Some((hook.id, hook.then.clone(), hook.fired.len() - 1))
    }

    /// Records what a firing did.
    pub fn outcome(&mut self, id: u64, index: usize, outcome: String) {
        if let Some(f) = self
            .list
            .iter_mut()
            .find(|h| h.id == id)
            .and_then(|h| h.fired.get_mut(index))
        {
            f.outcome = outcome;
        }
    }
}

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

    fn create_tags(resource: &str, tags: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p = vec![
            ("Action".to_string(), "CreateTags".to_string()),
            ("ResourceId.1".to_string(), resource.to_string()),
        ];
        for (i, (k, v)) in tags.iter().enumerate() {
            p.push((format!("Tag.{}.Key", i + 1), k.to_string()));
            p.push((format!("Tag.{}.Value", i + 1), v.to_string()));
        }
        p
    }

    #[test]
    fn a_hook_fires_on_its_tag_value_once() {
        let mut h = Hooks::default();
        let id = h
            .add(Hook::kill_on_tag(
                "CreateTags",
                "redisctl:stage",
                "swap:3-volume-created",
                4242,
            ))
            .unwrap();
        let earlier = create_tags("i-1", &[("redisctl:stage", "swap:2-snapshotted")]);
        assert_eq!(h.fire("CreateTags", &earlier, 1), None, "another value");
        let other_key = create_tags("i-1", &[("Name", "swap:3-volume-created")]);
        assert_eq!(h.fire("CreateTags", &other_key, 1), None, "another key");
        let at = create_tags(
            "i-2",
            &[
                ("redisctl:swap-new-volume", "vol-1"),
                ("redisctl:stage", "swap:3-volume-created"),
            ],
        );
        assert_eq!(h.fire("DeleteTags", &at, 1), None, "another action");
        assert_eq!(
            h.fire("CreateTags", &at, 7),
            Some((id, Then::Kill { pid: 4242 }, 0))
        );
        h.outcome(id, 0, "killed pid 4242".into());
        assert_eq!(h.fire("CreateTags", &at, 8), None, "spent");
        let fired = &h.list[0].fired;
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].resources, ["i-2"]);
        assert_eq!(fired[0].value.as_deref(), Some("swap:3-volume-created"));
        assert_eq!(
            (fired[0].at_ms, fired[0].outcome.as_str()),
            (7, "killed pid 4242")
        );
    }

    #[test]
    fn a_hook_without_a_value_meets_a_delete_of_its_key() {
        let mut h = Hooks::default();
        let id = h
            .add(Hook::on_tag(
                "DeleteTags",
                "redisctl:stage",
                None,
                Then::Hold { max_secs: 5 },
            ))
            .unwrap();
        let delete = vec![
            ("ResourceId.1".to_string(), "i-9".to_string()),
            ("Tag.1.Key".to_string(), "redisctl:swap-keys".to_string()),
            ("Tag.2.Key".to_string(), "redisctl:stage".to_string()),
        ];
        assert_eq!(
            h.fire("DeleteTags", &delete, 1),
            Some((id, Then::Hold { max_secs: 5 }, 0))
        );
        assert_eq!(h.list[0].fired[0].value, None);
    }

    #[test]
    fn hooks_that_could_hit_the_machine_are_refused() {
        let mut h = Hooks::default();
        for pid in [0, 1, std::process::id()] {
            assert!(
                h.add(Hook::kill_on_tag("*", "k", "v", pid)).is_err(),
                "{pid}"
            );
        }
        let mut never = Hook::kill_on_tag("*", "k", "v", 4242);
        never.times = 0;
        assert!(h.add(never).is_err());
        assert!(h.list.is_empty());
    }

    #[test]
    fn statuses() {
        assert_eq!(default_status("RequestLimitExceeded"), 503);
        assert_eq!(default_status("InternalError"), 500);
        assert_eq!(default_status("InvalidParameterValue"), 400);
    }
}
