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

/// The largest plan file read: a plan is about 7 KiB a node, so the largest cluster a spec
/// allows (500 masters with 5 replicas each) plans about 20 MiB. A larger file is refused
/// before it is parsed: a reader holds no more than this in memory, whatever it is handed.
pub const MAX_BYTES: usize = 64 << 20;

/// The longest string a plan file holds: redisctl writes ids, names, addresses, hashes and
/// reasons. A longer one is refused before the file is parsed: serde's error for a string of
/// the wrong type quotes it whole, escaped (up to eight times its size), which for a string of
/// the file's size was an error message of hundreds of megabytes.
pub const MAX_STRING: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub kind: String,
    pub format_version: u32,
    pub redisctl_version: String,
    pub fingerprint: Fingerprint,
    pub plan: Plan,
}

/// What a plan file says it is (`kind`, `format_version`), read before the rest: from a JSON
/// object only, every other key skipped unread, and each of the two kept as a [`Label`], so that
/// reading it holds nothing of the file in memory (a `serde_json::Value` of the arrays nested in
/// `kind` took 64 times the bytes they were written in).
#[derive(Default)]
struct Head {
    kind: Option<Label>,
    format_version: Option<Label>,
}

/// A value as far as the head needs it: a string or a number in full, anything else by its
/// type only.
enum Label {
    Text(String),
    Number(u64),
    Other(&'static str),
}

impl Label {
    /// The value as the error names it: JSON text for a scalar, at most 64 characters.
    fn describe(&self) -> String {
        let text = match self {
            Label::Text(s) => serde_json::to_string(s).unwrap_or_default(),
            Label::Number(n) => n.to_string(),
            Label::Other(what) => (*what).to_string(),
        };
        match text.char_indices().nth(64) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    }
}

/// The length of the longest JSON string in `bytes` (as written, escapes included; an
/// unterminated one counts to the end), without parsing.
fn longest_string(bytes: &[u8]) -> usize {
    let (mut inside, mut escaped, mut run, mut longest) = (false, false, 0usize, 0usize);
    for &b in bytes {
        if !inside {
            inside = b == b'"';
        } else if escaped {
            escaped = false;
            run += 1;
        } else if b == b'"' {
            inside = false;
            longest = longest.max(run);
            run = 0;
        } else {
            escaped = b == b'\\';
            run += 1;
        }
    }
    longest.max(run)
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Label;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Label, E> {
                Ok(Label::Text(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Label, E> {
                Ok(Label::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Label, E> {
                Ok(u64::try_from(v).map_or(Label::Other("a negative number"), Label::Number))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Label, E> {
                Ok(Label::Other("a fractional number"))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Label, E> {
                Ok(Label::Other(if v { "true" } else { "false" }))
            }
            fn visit_unit<E>(self) -> Result<Label, E> {
                Ok(Label::Other("null"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Label, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Label::Other("[…]"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Label, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Label::Other("{…}"))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Head {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Head;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a redisctl plan file (a JSON object)")
            }
            // What is not an object is named by its type, never quoted.
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Head, E> {
                Err(not_an_object("a string"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Head, E> {
                Err(not_an_object("a number"))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Head, E> {
                Err(not_an_object("a number"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Head, E> {
                Err(not_an_object("a number"))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Head, E> {
                Err(not_an_object("true or false"))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Head, E> {
                Err(not_an_object("null"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Head, A::Error> {
                Err(not_an_object("an array"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Head, A::Error> {
                let mut head = Head::default();
                while let Some(key) = a.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "kind" => head.kind = Some(a.next_value()?),
                        "format_version" => head.format_version = Some(a.next_value()?),
                        _ => {
                            a.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(head)
            }
        }
        d.deserialize_any(V)
    }
}

fn not_an_object<E: serde::de::Error>(found: &str) -> E {
    E::custom(format!(
        "expected a redisctl plan file (a JSON object), found {found}"
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("not a redisctl plan file: {0}")]
    Format(#[from] serde_json::Error),
    #[error(
        "plan file format {found} is not supported (this redisctl reads format {FORMAT_VERSION}); nothing was changed: run `redisctl plan --out FILE` again with this redisctl"
    )]
    Version { found: u64 },
    #[error("not a redisctl plan file (kind is {0:?})")]
    Kind(String),
    #[error(
        "not a redisctl plan file: it holds a string longer than {} KiB (redisctl writes ids, names and addresses)",
        MAX_STRING >> 10
    )]
    LongString,
    #[error(
        "not a redisctl plan file: larger than {} MiB (the plan of the largest cluster redisctl makes is about 20 MiB); nothing was read past that",
        MAX_BYTES >> 20
    )]
    TooLarge,
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
        Self::from_bytes(text.as_bytes())
    }

    /// Read a plan file's bytes (at most [`MAX_BYTES`]; a caller reading a file reads no more
    /// than one byte past it). What the file says it is (`kind`, `format_version`) is checked
    /// before the plan itself is read.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SavedPlanError> {
        if bytes.len() > MAX_BYTES {
            return Err(SavedPlanError::TooLarge);
        }
        if longest_string(bytes) > MAX_STRING {
            return Err(SavedPlanError::LongString);
        }
        let head: Head = serde_json::from_slice(bytes)?;
        match &head.kind {
            Some(Label::Text(kind)) if kind == KIND => {}
            other => {
                return Err(SavedPlanError::Kind(
                    other.as_ref().map(Label::describe).unwrap_or_default(),
                ));
            }
        }
        let found = match head.format_version {
            Some(Label::Number(n)) => n,
            _ => 0,
        };
        if found != u64::from(FORMAT_VERSION) {
            return Err(SavedPlanError::Version { found });
        }
        Ok(serde_json::from_slice(bytes)?)
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
            requests: Default::default(),
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

    /// A plan made with `--rotate` keeps the request (apply plans again with it to check the
    /// file); one made without writes nothing of it.
    #[test]
    fn the_requests_of_a_plan_round_trip_and_are_absent_when_none() {
        let plain = SavedPlan::new(plan(), fingerprint()).to_json();
        assert!(!plain.contains("requests"), "{plain}");
        let mut p = plan();
        p.requests.rotate_ssh_key = true;
        let saved = SavedPlan::new(p, fingerprint());
        let back = SavedPlan::from_json(&saved.to_json()).unwrap();
        assert!(back.plan.requests.rotate_ssh_key);
        assert!(!back.plan.requests.rotate_replication_password);
        assert_eq!(back, saved);
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

    #[test]
    fn a_file_past_the_limit_is_refused_before_it_is_parsed() {
        // A plan padded with spaces past the limit: valid JSON, refused for its size.
        let mut bytes = SavedPlan::new(plan(), fingerprint()).to_json().into_bytes();
        bytes.resize(MAX_BYTES + 1, b' ');
        let e = SavedPlan::from_bytes(&bytes).unwrap_err();
        assert!(matches!(e, SavedPlanError::TooLarge), "{e}");
        assert!(e.to_string().contains("larger than 64 MiB"), "{e}");
        bytes.truncate(MAX_BYTES);
        assert!(SavedPlan::from_bytes(&bytes).is_ok());
    }

    #[test]
    fn a_format_version_past_u32_is_not_read_as_another_version() {
        // 2^32 + 4 was cut to 4, the version this redisctl reads.
        let mut v: serde_json::Value =
            serde_json::from_str(&SavedPlan::new(plan(), fingerprint()).to_json()).unwrap();
        let past = (1u64 << 32) + u64::from(FORMAT_VERSION);
        v["format_version"] = past.into();
        let e = SavedPlan::from_json(&v.to_string()).unwrap_err();
        assert!(
            matches!(e, SavedPlanError::Version { found } if found == past),
            "{e}"
        );
    }

    #[test]
    fn what_is_not_a_plan_is_said_so() {
        for (text, says) in [
            (
                "[\"redisctl-plan\", 4]",
                "expected a redisctl plan file (a JSON object), found an array",
            ),
            (
                "true",
                "expected a redisctl plan file (a JSON object), found true or false",
            ),
            ("\"a plan\"", "found a string at line 1 column 8"),
            ("{}", "kind is \"\""),
            ("{\"kind\": [[1], {\"a\": 2}]}", "kind is \"[…]\""),
            ("{\"kind\": -1}", "kind is \"a negative number\""),
            ("{\"kind\": 7}", "kind is \"7\""),
            (
                "{\"kind\": \"redisctl-plan\"}",
                "plan file format 0 is not supported",
            ),
            (
                "{\"kind\": \"redisctl-plan\", \"format_version\": 4}",
                "missing field",
            ),
            ("\u{0}", "expected value"),
        ] {
            let e = SavedPlan::from_json(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        // A long string is refused before any of it is quoted in an error.
        let long = format!("\"{}\"", "\u{7f}".repeat(MAX_STRING + 1));
        let e = SavedPlan::from_json(&long).unwrap_err();
        assert!(matches!(e, SavedPlanError::LongString), "{e}");
        let mut v: serde_json::Value =
            serde_json::from_str(&SavedPlan::new(plan(), fingerprint()).to_json()).unwrap();
        v["fingerprint"]["spec"] = "s".repeat(MAX_STRING + 1).into();
        let e = SavedPlan::from_json(&v.to_string()).unwrap_err();
        assert!(matches!(e, SavedPlanError::LongString), "{e}");
        // Escaped quotes do not end a string.
        v["fingerprint"]["spec"] = "\"".repeat(MAX_STRING / 2 + 1).into();
        let e = SavedPlan::from_json(&v.to_string()).unwrap_err();
        assert!(matches!(e, SavedPlanError::LongString), "{e}");
        v["fingerprint"]["spec"] = "s\"\\".repeat(MAX_STRING / 6).into();
        assert!(SavedPlan::from_json(&v.to_string()).is_ok());
        // A long kind is named by its start.
        let long = format!("{{\"kind\": \"{}\"}}", "k".repeat(10_000));
        let e = SavedPlan::from_json(&long).unwrap_err().to_string();
        assert!(e.len() < 200 && e.contains("kkk…"), "{e}");
    }
}
