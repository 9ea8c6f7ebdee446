//! The planner: `plan(&Spec, &Observed) -> Plan`.
//!
//! Pure and synchronous: no tokio, no AWS, no SSH, no clock or randomness — everything it needs
//! is in its arguments, so the same inputs always give the same plan, and scenario tests feed it
//! fixtures. It never imports `exec`, `aws` or `ssh`.
//!
//! The model: the spec says what should exist; the observed state says what does. Each resource
//! has an identity (see `network` and `instances`) by which the two are matched; a missing
//! resource becomes a create (`+`), a differing attribute an in-place update (`~`) when AWS can
//! change it in place or a replacement (`-/+`) when it cannot, and a resource that exists but is
//! not in the spec a delete (`-`). The plan decides everything the executor needs — ids to reuse, addresses,
//! device names, tokens, order — so the executor has no choices left. The order of `steps` is a
//! topological order of `depends_on`. Differences that redisctl deliberately does not act on
//! (the AMI of a running node) are notes, never steps, so that after a successful apply the plan
//! is empty. Problems that make a plan unsafe to apply are blocker notes; apply refuses them.
//!
//! The parts, in the order `plan` calls them (each appends steps and notes to a shared
//! `builder::Builder`; the steps are then sorted by phase):
//! - `network`: phase 1, the VPC, subnets, internet gateway, route table and security group
//!   (its ingress rules come from `security`);
//! - `instances`: phase 2, the key pair and the nodes' instances;
//! - `nodes`: phases 3-7 inside the nodes: install, TLS, ACL, config, cluster create;
//! - `encryption`: phase 8, the root volume swap;
//! - `destroy`: the separate plan that removes everything tagged for the cluster.
//!
//! `model` is the plan itself (the operations its steps carry, by edge, in `ops`), `naming` the
//! names, tags and tokens the plan fixes, `fingerprint` and `saved` what a saved plan carries to
//! be refused when stale.

pub mod adopt;
mod builder;
mod destroy;
mod egress;
pub mod encryption;
pub mod fingerprint;
mod instances;
pub mod model;
pub mod naming;
mod network;
mod nodes;
mod ops;
pub mod saved;
pub mod security;

pub use model::*;
/// How far a master's share of the slots may be from an even one before the planner moves
/// slots (and verify fails the layout).
pub use nodes::affinity::better_leaders;
pub use nodes::slots::TOLERANCE as SLOT_SHARE_TOLERANCE;

use crate::observed::Observed;
use crate::spec::Spec;

/// The plan that makes AWS match the spec.
pub fn plan(spec: &Spec, observed: &Observed) -> Plan {
    plan_with(spec, observed, Requests::default())
}

/// [`plan`] with what the operator asked for beyond the spec (`--rotate`): a one-time
/// action, like Terraform's `-replace`. Once its first step ran, the state directory says it
/// is under way and a plain [`plan`] finishes it.
pub fn plan_with(spec: &Spec, observed: &Observed, requests: Requests) -> Plan {
    let mut b = builder::Builder::new(spec, observed, requests);
    let net = network::plan_network(&mut b);
    instances::plan_instances(&mut b, &net);
    nodes::plan_inside_nodes(&mut b);
    encryption::plan_encryption(&mut b);
    // Phase order; stable, so the order within a phase (a topological one) is kept, and every
    // dependency points to the same or an earlier phase.
    b.steps.sort_by_key(|s| s.phase);
    if spec.nodes.replicas_per_master == 0 {
        b.note(
            NoteLevel::Warning,
            "nodes.replicas_per_master",
            "no replicas: losing any one node takes the whole cluster down".into(),
        );
    }
    let mut plan = finish(spec, b.steps, b.notes);
    plan.requests = requests;
    plan.unobserved = observed
        .nodes
        .iter()
        .filter(|(_, o)| matches!(o, crate::observed::NodeObservation::Unreachable { .. }))
        .map(|(name, _)| format!("node.{name}"))
        .collect();
    plan
}

/// The plan that removes everything tagged for the cluster.
pub fn plan_destroy(spec: &Spec, observed: &Observed) -> Plan {
    let steps = destroy::plan_destroy(spec, observed);
    // Instances tagged for the cluster outside its network are not the cluster's: not
    // terminated (a tag must not be enough to make destroy end someone else's instance).
    let notes = observed
        .strangers
        .iter()
        .map(|i| Note {
            level: NoteLevel::Warning,
            subject: format!("instance.{}", i.id),
            message: format!(
                "instance {} is tagged for cluster {} but is not in its network: left alone (not terminated); remove its tag when it is accounted for",
                i.id, spec.cluster.name
            ),
        })
        .chain(unproven_storage_notes(spec, observed))
        .collect();
    finish(spec, steps, notes)
}

/// Volumes and snapshots tagged for the cluster that nothing else ties to it: not deleted.
fn unproven_storage_notes<'a>(
    spec: &'a Spec,
    observed: &'a Observed,
) -> impl Iterator<Item = Note> + 'a {
    let unproven = observed.unproven_storage();
    let volumes = observed
        .volumes
        .iter()
        .filter(move |v| unproven.contains(&v.id))
        .map(|v| ("volume", &v.id));
    let unproven = observed.unproven_storage();
    let snapshots = observed
        .snapshots
        .iter()
        .filter(move |x| unproven.contains(&x.id))
        .map(|x| ("snapshot", &x.id));
    volumes.chain(snapshots).map(|(what, id)| Note {
        level: NoteLevel::Warning,
        subject: format!("{what}.{id}"),
        message: format!(
            "{what} {id} is tagged for cluster {} but nothing else ties it to the cluster (it is not attached to one of its instances, nor taken of, made from or the source of one of their volumes): left alone, not deleted (a tag must not be enough to make destroy delete someone else's data). If it is the cluster's (an old volume kept with --keep-old-volumes whose snapshot was deleted, or one whose instance is gone), check what it holds and delete it yourself",
            spec.cluster.name
        ),
    })
}

fn finish(spec: &Spec, steps: Vec<Step>, notes: Vec<Note>) -> Plan {
    let plan = Plan {
        cluster: spec.cluster.name.clone(),
        region: spec.cluster.region.clone(),
        steps,
        notes,
        unobserved: Vec::new(),
        requests: Requests::default(),
    };
    debug_assert_eq!(plan.check_order(), Ok(()));
    plan
}
