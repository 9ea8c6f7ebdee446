//! A saved plan (`plan --out FILE`): the plan with its operations and the fingerprints of the
//! spec and of the observed state it was computed from. Apply refuses it when either changed.
//! It holds no secret: ids, addresses, attribute values and operations only.

use serde::{Deserialize, Serialize};

use super::model::{Fingerprint, Plan};

pub const KIND: &str = "redisctl-plan";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub kind: String,
    pub format_version: u32,
    pub redisctl_version: String,
    pub fingerprint: Fingerprint,
    pub plan: Plan,
}

#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("not a redisctl plan file: {0}")]
    Format(#[from] serde_json::Error),
    #[error(
        "plan file format {found} is not supported (this redisctl reads format {FORMAT_VERSION}); run plan again"
    )]
    Version { found: u32 },
    #[error("not a redisctl plan file (kind is {0:?})")]
    Kind(String),
}

impl SavedPlan {
    pub fn new(plan: Plan, fingerprint: Fingerprint) -> Self {
        SavedPlan {
            kind: KIND.into(),
            format_version: FORMAT_VERSION,
            redisctl_version: env!("CARGO_PKG_VERSION").into(),
            fingerprint,
            plan,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan serializes") + "\n"
    }

    pub fn from_json(text: &str) -> Result<Self, SavedPlanError> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        if v.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
            return Err(SavedPlanError::Kind(
                v.get("kind").map(|k| k.to_string()).unwrap_or_default(),
            ));
        }
        let found = v
            .get("format_version")
            .and_then(|x| x.as_u64())
            .unwrap_or(0) as u32;
        if found != FORMAT_VERSION {
            return Err(SavedPlanError::Version { found });
        }
        Ok(serde_json::from_value(v)?)
    }

    /// Why this plan may not be applied to a world with fingerprint `now`, if it may not.
    pub fn staleness(&self, now: &Fingerprint) -> Option<&'static str> {
        match (
            self.fingerprint.spec == now.spec,
            self.fingerprint.observed == now.observed,
        ) {
            (true, true) => None,
            (false, true) => {
                Some("the spec (or a password it names) changed since the plan was made")
            }
            (true, false) => Some("AWS changed since the plan was made"),
            (false, false) => Some("the spec and AWS both changed since the plan was made"),
        }
    }
}
