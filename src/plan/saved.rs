//! A saved plan (`plan --out FILE`): the plan with its operations and the fingerprints of the
//! spec and of the observed state it was computed from. Apply refuses it when either changed.
//! It holds no secret: ids, addresses, attribute values and operations only.

use serde::{Deserialize, Serialize};

use super::model::{Fingerprint, Plan};

pub const KIND: &str = "redisctl-plan";
/// 2: each operation names the edge that carries it out (`{"edge": "ec2", "op": …}`), and the
/// key pair's step makes the local key in its own operation. 3: RunInstances carries no
/// ClientToken (the EC2 edge makes one per attempt). 4: a route table's default route names its
/// target (an internet gateway, a NAT gateway, or none). Older files are refused.
pub const FORMAT_VERSION: u32 = 4;

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
        "plan file format {found} is not supported (this redisctl reads format {FORMAT_VERSION}); nothing was changed: run `redisctl plan --out FILE` again with this redisctl"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Ec2Op, LocalOp, Phase, Step};

    fn plan() -> Plan {
        Plan {
            cluster: "c".into(),
            region: "r".into(),
            steps: vec![
                Step::new("key_pair", Action::Create, Phase::Instances, "no key pair").ops(vec![
                    LocalOp::EnsureSshKey {
                        private_key: "/k".into(),
                        key_pair: "k".into(),
                    }
                    .into(),
                    Ec2Op::ImportKeyPair {
                        name: "k".into(),
                        private_key: "/k".into(),
                        tags: Default::default(),
                    }
                    .into(),
                ]),
            ],
            notes: vec![],
            unobserved: vec![],
        }
    }

    fn fingerprint() -> Fingerprint {
        Fingerprint {
            spec: "s".into(),
            observed: "o".into(),
        }
    }

    #[test]
    fn operations_name_their_edge_and_round_trip() {
        let saved = SavedPlan::new(plan(), fingerprint());
        let text = saved.to_json();
        assert!(text.contains("\"edge\": \"local\""), "{text}");
        assert!(text.contains("\"edge\": \"ec2\""), "{text}");
        assert!(text.contains("\"op\": \"import_key_pair\""), "{text}");
        assert_eq!(SavedPlan::from_json(&text).unwrap(), saved);
    }

    #[test]
    fn a_format_1_file_is_refused_with_what_to_do() {
        let mut v: serde_json::Value =
            serde_json::from_str(&SavedPlan::new(plan(), fingerprint()).to_json()).unwrap();
        v["format_version"] = 1.into();
        let e = SavedPlan::from_json(&v.to_string()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("format 1 is not supported"), "{msg}");
        assert!(
            msg.contains("run `redisctl plan --out FILE` again"),
            "{msg}"
        );
    }
}
