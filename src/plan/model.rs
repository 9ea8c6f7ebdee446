//! The plan: ordered steps, each with an action, an address, attribute changes, dependencies,
//! a phase, a reason for people, and the operation the executor performs (`ops`, re-exported
//! here). Serializable: a saved plan is this, plus the fingerprint of what it was computed
//! from. It never holds a secret.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use super::ops::*;

/// One-time actions asked for on the command line (`plan`/`apply --rotate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Requests {
    /// Rotate the replication user's password (`--rotate replication-password`).
    pub rotate_replication_password: bool,
    /// Rotate the operator's SSH key (`--rotate ssh-key`).
    pub rotate_ssh_key: bool,
    /// Install the OS's pending updates on every node, one at a time (`--update-os`).
    pub update_os: bool,
}

impl Requests {
    /// Nothing asked for.
    pub fn is_none(&self) -> bool {
        *self == Requests::default()
    }
}

/// What a step does. The action drives behaviour; the reason is for people only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    Run,
}

impl Action {
    /// The symbol users see, as in Terraform.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::Run => ">",
        }
    }

    /// The action as the list of primitive actions of the JSON format (`["delete","create"]`).
    pub fn json_actions(self) -> &'static [&'static str] {
        match self {
            Action::Create => &["create"],
            Action::Update => &["update"],
            Action::Replace => &["delete", "create"],
            Action::Delete => &["delete"],
            Action::Run => &["run"],
        }
    }
}

/// The phases of DESIGN.md, in apply order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Network,
    Instances,
    Install,
    Tls,
    Acl,
    Config,
    ClusterCreate,
    Encryption,
}

impl Phase {
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    pub fn title(self) -> &'static str {
        match self {
            Phase::Network => "network",
            Phase::Instances => "instances",
            Phase::Install => "install",
            Phase::Tls => "tls",
            Phase::Acl => "acl",
            Phase::Config => "config",
            Phase::ClusterCreate => "cluster create",
            Phase::Encryption => "ebs encryption",
        }
    }
}

/// A value in a change: known now, or only once an earlier step has run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Known(String),
    KnownAfterApply,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Known(v) => f.write_str(v),
            Value::KnownAfterApply => f.write_str("(known after apply)"),
        }
    }
}

/// One attribute's change. `before` is `None` for a create, `after` is `None` for a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub attribute: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
    /// Shown but not acted on (e.g. the AMI of a running node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored_because: Option<String>,
}

impl Change {
    pub fn create(attribute: &str, after: impl Into<String>) -> Self {
        Change {
            attribute: attribute.into(),
            before: None,
            after: Some(Value::Known(after.into())),
            forces_replacement: false,
            ignored_because: None,
        }
    }

    pub fn after_apply(attribute: &str) -> Self {
        Change {
            attribute: attribute.into(),
            before: None,
            after: Some(Value::KnownAfterApply),
            forces_replacement: false,
            ignored_because: None,
        }
    }

    pub fn update(attribute: &str, before: impl Into<String>, after: impl Into<String>) -> Self {
        Change {
            attribute: attribute.into(),
            before: Some(Value::Known(before.into())),
            after: Some(Value::Known(after.into())),
            forces_replacement: false,
            ignored_because: None,
        }
    }

    pub fn delete(attribute: &str, before: impl Into<String>) -> Self {
        Change {
            attribute: attribute.into(),
            before: Some(Value::Known(before.into())),
            after: None,
            forces_replacement: false,
            ignored_because: None,
        }
    }

    pub fn forcing(mut self) -> Self {
        self.forces_replacement = true;
        self
    }

    pub fn ignored(mut self, because: &str) -> Self {
        self.ignored_because = Some(because.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub address: String,
    pub action: Action,
    pub phase: Phase,
    pub changes: Vec<Change>,
    /// Attributes compared and found equal (hidden in the human rendering, counted).
    pub unchanged: usize,
    pub depends_on: Vec<String>,
    /// For people only; never used to decide anything.
    pub reason: String,
    /// Destroys a node's data: refused without `--allow-replace`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destroys_data: bool,
    /// Carried out in order; each is an idempotent ensure.
    pub ops: Vec<Op>,
}

impl Step {
    /// A step with no changes, dependencies or operations yet, that destroys no data; the
    /// setters below fill in the rest.
    pub fn new(
        address: impl Into<String>,
        action: Action,
        phase: Phase,
        reason: impl Into<String>,
    ) -> Self {
        Step {
            address: address.into(),
            action,
            phase,
            changes: Vec::new(),
            unchanged: 0,
            depends_on: Vec::new(),
            reason: reason.into(),
            destroys_data: false,
            ops: Vec::new(),
        }
    }

    pub fn changes(mut self, changes: Vec<Change>) -> Self {
        self.changes = changes;
        self
    }

    pub fn unchanged(mut self, n: usize) -> Self {
        self.unchanged = n;
        self
    }

    pub fn depends_on(mut self, addresses: Vec<String>) -> Self {
        self.depends_on = addresses;
        self
    }

    /// Appends one operation.
    pub fn op(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }

    pub fn ops(mut self, ops: Vec<Op>) -> Self {
        self.ops = ops;
        self
    }

    pub fn destroying_data(mut self) -> Self {
        self.destroys_data = true;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoteLevel {
    Info,
    Warning,
    /// The plan cannot be applied as it stands.
    Blocker,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub level: NoteLevel,
    pub subject: String,
    pub message: String,
}

/// What a saved plan was computed from; apply refuses it when either changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub spec: String,
    pub observed: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub cluster: String,
    pub region: String,
    pub steps: Vec<Step>,
    pub notes: Vec<Note>,
    /// Nodes running in EC2 that could not be observed over SSH: nothing inside them is
    /// planned, so "no changes" does not prove they match the spec.
    #[serde(default)]
    pub unobserved: Vec<String>,
    /// What the operator asked for beyond the spec (`--rotate`), kept with a saved plan so
    /// that apply can check it is the plan redisctl makes from the same inputs.
    #[serde(default, skip_serializing_if = "Requests::is_none")]
    pub requests: Requests,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub run: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Terraform's count: a replacement is one add and one destroy.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for step in &self.steps {
            match step.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1
                }
                Action::Delete => s.destroy += 1,
                Action::Run => s.run += 1,
            }
        }
        s
    }

    pub fn blockers(&self) -> impl Iterator<Item = &Note> {
        self.notes.iter().filter(|n| n.level == NoteLevel::Blocker)
    }

    pub fn destroys_data(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.destroys_data)
    }

    pub fn step(&self, address: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.address == address)
    }

    /// Every dependency names an earlier step (the order is a valid topological order).
    pub fn check_order(&self) -> Result<(), String> {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in self.steps.iter().enumerate() {
            for d in &s.depends_on {
                if !seen.contains_key(d.as_str()) {
                    return Err(format!(
                        "{} depends on {d}, which is not before it",
                        s.address
                    ));
                }
            }
            if seen.insert(&s.address, i).is_some() {
                return Err(format!("{} appears twice", s.address));
            }
        }
        Ok(())
    }
}
