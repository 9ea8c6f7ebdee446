//! The state shared by the planner's parts while a plan is built: the inputs, the steps and
//! notes so far, and the helpers every part uses to match observed resources to the spec (one
//! resource per role, duplicates reported) and to refer to them (an existing id, or the step
//! that makes it).

use super::model::*;
use super::naming;
use crate::observed::tags::{self, Role};
use crate::observed::{self, Observed, Tags};
use crate::spec::Spec;

/// Tags redisctl writes itself after creation; never drift.
const RUNTIME_TAGS: &[&str] = &[
    tags::STAGE,
    tags::HOST_KEY,
    tags::SWAP_KEYS,
    tags::SWAP_OLD_VOLUME,
    tags::SWAP_SNAPSHOT,
    tags::SWAP_NEW_VOLUME,
];

pub(super) struct Builder<'a> {
    pub spec: &'a Spec,
    pub observed: &'a Observed,
    pub steps: Vec<Step>,
    pub notes: Vec<Note>,
    /// Node instances the spec no longer has whose Redis is a member of the running cluster:
    /// not terminated with the other removals (phase 2) but after they left the cluster
    /// (phase 7, `nodes::topology`).
    pub leaving: Vec<Leaving>,
    /// What the operator asked for on the command line beyond the spec (`--rotate`).
    pub requests: Requests,
}

/// A node instance the spec no longer has, still a member of the running cluster.
#[derive(Debug, Clone)]
pub(super) struct Leaving {
    /// Its `redisctl:node` tag.
    pub name: String,
    pub instance: String,
    pub ip: std::net::Ipv4Addr,
}

impl<'a> Builder<'a> {
    pub fn new(spec: &'a Spec, observed: &'a Observed, requests: Requests) -> Self {
        Builder {
            spec,
            observed,
            steps: Vec::new(),
            notes: Vec::new(),
            leaving: Vec::new(),
            requests,
        }
    }

    pub fn note(&mut self, level: NoteLevel, subject: &str, message: String) {
        self.notes.push(Note {
            level,
            subject: subject.into(),
            message,
        });
    }

    pub fn planned(&self, address: &str) -> bool {
        self.steps.iter().any(|s| s.address == address)
    }

    /// `address` as a dependency, if it is a step of this plan.
    pub fn dep(&self, address: &str) -> Vec<String> {
        if self.planned(address) {
            vec![address.to_string()]
        } else {
            Vec::new()
        }
    }

    /// A reference to the resource at `address`: the existing id, or the step that makes it.
    pub fn reference(&self, address: &str, existing: Option<&str>) -> Ref {
        match existing {
            Some(id) if !self.will_replace(address) => Ref::Id(id.to_string()),
            _ => Ref::Step(address.to_string()),
        }
    }

    pub fn will_replace(&self, address: &str) -> bool {
        self.steps
            .iter()
            .any(|s| s.address == address && matches!(s.action, Action::Create | Action::Replace))
    }

    pub fn tags(&self, role: Role, name: &str, node: Option<&str>) -> Tags {
        naming::tags(self.spec, role, name, node)
    }

    /// One observed resource of a role, reporting duplicates (a warning: the first is used).
    pub fn single<'o, T>(
        &mut self,
        subject: &str,
        list: Vec<&'o T>,
        id: impl Fn(&T) -> &str,
    ) -> Option<&'o T> {
        self.one_of(NoteLevel::Warning, subject, list, id)
    }

    /// Like [`Builder::single`], for a resource whose choice decides where the nodes and
    /// their secrets go (the VPC, the security group): more than one is a blocker, since
    /// anyone with ec2:CreateTags can tag one of their own as the cluster's, and picking it
    /// would put the nodes in their network or behind their rules.
    pub fn only<'o, T>(
        &mut self,
        subject: &str,
        list: Vec<&'o T>,
        id: impl Fn(&T) -> &str,
    ) -> Option<&'o T> {
        self.one_of(NoteLevel::Blocker, subject, list, id)
    }

    fn one_of<'o, T>(
        &mut self,
        level: NoteLevel,
        subject: &str,
        list: Vec<&'o T>,
        id: impl Fn(&T) -> &str,
    ) -> Option<&'o T> {
        if list.len() > 1 {
            let ids: Vec<&str> = list.iter().map(|r| id(r)).collect();
            let what = if level == NoteLevel::Blocker {
                "redisctl does not guess which is its own (a tag is all anyone with ec2:CreateTags needs to claim one). Find out where each came from, and remove the redisctl tags from the ones that are not the cluster's (or, when none holds anything, `redisctl destroy` removes them all)".to_string()
            } else {
                format!(
                    "using {} (the others are left alone; `redisctl destroy` removes them all)",
                    ids[0]
                )
            };
            self.note(
                level,
                subject,
                format!(
                    "{} resources are tagged as the cluster's {subject}: {}; {what}",
                    list.len(),
                    ids.join(", "),
                ),
            );
        }
        list.into_iter().next()
    }

    /// The tag changes and the op that makes `observed` tags equal `desired` (runtime tags and
    /// `aws:` tags are left alone), or `None` when they already are.
    pub fn set_tags_op(
        &self,
        id: &str,
        observed: &Tags,
        desired: &Tags,
    ) -> Option<(Vec<Change>, Op)> {
        let mut set = Tags::new();
        let mut remove = Vec::new();
        let mut changes = Vec::new();
        for (k, v) in desired {
            match observed.get(k) {
                Some(o) if o == v => continue,
                Some(o) => changes.push(Change::update(&format!("tags.{k}"), o, v)),
                None => changes.push(Change::create(&format!("tags.{k}"), v)),
            }
            set.insert(k.clone(), v.clone());
        }
        for (k, v) in observed {
            if !desired.contains_key(k)
                && !k.starts_with("aws:")
                && !RUNTIME_TAGS.contains(&k.as_str())
            {
                changes.push(Change::delete(&format!("tags.{k}"), v));
                remove.push(k.clone());
            }
        }
        (!changes.is_empty()).then(|| {
            (
                changes,
                Op::Ec2(Ec2Op::SetTags {
                    resource: id.to_string(),
                    set,
                    remove,
                }),
            )
        })
    }

    /// A step that only brings a resource's tags back to the spec (the resource's one other
    /// compared attribute is unchanged), if they drifted.
    pub fn update_tags_only(&mut self, address: &str, id: &str, observed: &Tags, desired: &Tags) {
        if let Some((changes, op)) = self.set_tags_op(id, observed, desired) {
            self.push(
                Step::new(
                    address,
                    Action::Update,
                    Phase::Network,
                    "tags differ from the spec",
                )
                .unchanged(1)
                .changes(changes)
                .op(op),
            );
        }
    }

    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }
}

pub(super) fn role_is(t: &Tags, role: Role) -> bool {
    t.get(tags::ROLE).map(String::as_str) == Some(role.as_str())
}

pub(super) fn root_volume<'o>(
    obs: &'o Observed,
    inst: &observed::Instance,
) -> Option<&'o observed::Volume> {
    let dev = inst.root_device_name.as_ref()?;
    let vid = inst.block_devices.get(dev)?;
    obs.volumes.iter().find(|v| &v.id == vid)
}
