//! The instances phase: what replaces a node (moving it, renaming it) and what does not (a new
//! AMI, an instance type, IMDS options), and that a node's address is free before it is reused.

use redisctl::plan::{self, Action, Ec2Op, NodeOp, NoteLevel, Op};
use redisctl::render;

use crate::fixtures::{example, example_text, image, spec_from};
use crate::sim::{apply_and_converge, converged, observed_for};
use crate::snapshot;

#[test]
fn a_new_ami_never_replaces_a_node() {
    let spec = example();
    let mut o = converged(&spec);
    o.images.push(image("ami-0ccccccccccccccc3", "20261101"));
    let p = plan::plan(&spec, &o);
    assert!(p.is_empty(), "{}", render::plan::human(&p, false));
    assert!(
        p.notes
            .iter()
            .any(|n| n.level == NoteLevel::Info && n.message.contains("never a reason to replace"))
    );
    snapshot("new-ami", &render::plan::human(&p, false));
}

#[test]
fn moving_a_node_is_a_replacement_that_destroys_data() {
    let text = example_text().replace("private_ip = \"10.0.2.10\"", "private_ip = \"10.0.2.20\"");
    let before = example();
    let after = spec_from(&text);
    let o = converged(&before);
    let p = plan::plan(&after, &o);
    snapshot("replace-node", &render::plan::human(&p, false));
    let step = p.step("node.redis-node-1b").unwrap();
    assert_eq!(step.action, Action::Replace);
    assert!(step.destroys_data);
    assert!(
        step.changes
            .iter()
            .any(|c| c.attribute == "private_ip" && c.forces_replacement)
    );
    // A node of a running cluster cannot be replaced yet: its slots would be lost.
    assert!(p.blockers().any(|n| {
        n.message
            .contains("redis-node-1b would not be part of the running cluster")
    }));
}

#[test]
fn instance_type_change_is_in_place() {
    let text = example_text().replace(
        "instance_type = \"t2.micro\"",
        "instance_type = \"t3.small\"",
    );
    let after = spec_from(&text);
    let o = observed_for(&after, converged(&example()));
    let p = plan::plan(&after, &o);
    snapshot("instance-type", &render::plan::human(&p, false));
    let s = p.summary();
    // The type, and the configuration: the default maxmemory follows the type's memory.
    assert_eq!((s.add, s.change, s.destroy), (0, 6, 0));
    assert!(p.destroys_data().next().is_none());
    apply_and_converge(&after, o, &p);
}

/// A type of the same memory (t2.micro -> t3.micro): no configuration change, but the nodes
/// are stopped and started all the same, so apply waits for the cluster to be back before it
/// ends (it used to end while the restarted masters still said cluster_state:fail).
#[test]
fn instance_type_change_waits_for_the_cluster() {
    let text = example_text().replace(
        "instance_type = \"t2.micro\"",
        "instance_type = \"t3.micro\"",
    );
    let after = spec_from(&text);
    let o = observed_for(&after, converged(&example()));
    let p = plan::plan(&after, &o);
    let wait = p.step("cluster.health").expect("a wait for the cluster");
    assert!(matches!(
        &wait.ops[..],
        [Op::Node(NodeOp::WaitHealthy { nodes: 3 })]
    ));
    assert_eq!(
        wait.depends_on,
        [
            "node.redis-node-1a",
            "node.redis-node-1b",
            "node.redis-node-1c"
        ]
    );
    apply_and_converge(&after, o, &p);
}

/// A node whose metadata options were changed out of band to allow IMDSv1 is set back in place
/// (ModifyInstanceMetadataOptions), without a restart; unknown options (None) are left alone.
#[test]
fn imdsv1_allowed_out_of_band_is_required_again() {
    let spec = example();
    let mut o = converged(&spec);
    o.instances[1].http_tokens = Some("optional".into());
    o.instances[2].http_tokens = None;
    let p = plan::plan(&spec, &o);
    snapshot("imdsv1", &render::plan::human(&p, false));
    assert_eq!(p.steps.len(), 1, "{:#?}", p.steps);
    let step = &p.steps[0];
    assert_eq!(step.action, Action::Update);
    assert!(
        matches!(&step.ops[..], [Op::Ec2(Ec2Op::RequireImdsV2 { instance })] if instance == &o.instances[1].id),
        "{:?}",
        step.ops
    );
    assert!(p.destroys_data().next().is_none());
    apply_and_converge(&spec, o, &p);
}

#[test]
fn a_removed_node_is_deleted_before_its_address_is_reused() {
    // Rename node 1a before the cluster was formed: the old instance goes, the new one takes
    // the same address.
    let text = example_text().replace("name = \"redis-node-1a\"", "name = \"redis-node-1a-new\"");
    let after = spec_from(&text);
    let mut o = converged(&example());
    for n in o.nodes.values_mut() {
        if let redisctl::observed::NodeObservation::Reached(f) = n {
            f.cluster = None;
        }
    }
    let p = plan::plan(&after, &o);
    let del = p
        .steps
        .iter()
        .position(|s| s.address == "node.redis-node-1a")
        .unwrap();
    let add = p
        .steps
        .iter()
        .position(|s| s.address == "node.redis-node-1a-new")
        .unwrap();
    assert!(
        del < add
            && p.steps[add]
                .depends_on
                .contains(&"node.redis-node-1a".to_string())
    );
    assert!(p.steps[del].destroys_data);
}

#[test]
fn a_renamed_member_of_a_running_cluster_is_refused() {
    // Rename node 1a of a running cluster: its instance is a member, which leaves the cluster
    // (slots moved away) only in phase 7, after the new node would have needed its address.
    let text = example_text().replace("name = \"redis-node-1a\"", "name = \"redis-node-1a-new\"");
    let after = spec_from(&text);
    let o = converged(&example());
    let p = plan::plan(&after, &o);
    assert!(
        p.blockers().any(|n| n.message.contains(
            "redis-node-1a-new would take 10.0.1.10, the address of redis-node-1a, which the spec no longer has but is still a member of the cluster"
        )),
        "{:?}",
        p.notes
    );
    assert!(
        !p.steps
            .iter()
            .any(|s| s.address == "node.redis-node-1a" && s.phase == plan::Phase::Instances),
        "a member is not terminated with the phase-2 removals"
    );
}

/// A key pair of the spec's name that redisctl did not make (no `redisctl:cluster` tag of this
/// cluster: another team's, or one made by hand) is never replaced: the plan is blocked and
/// says what to do. One redisctl made, with another public key, is replaced as before.
#[test]
fn a_key_pair_redisctl_did_not_make_is_never_replaced() {
    let spec = example();
    let mut o = converged(&spec);
    let other =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherTeamsKeyOtherTeamsKeyOtherTeams1 ops@team";
    o.key_pairs[0].public_key = Some(other.into());
    let ours = plan::plan(&spec, &o);
    assert_eq!(
        ours.step("key_pair").map(|s| s.action),
        Some(Action::Replace),
        "tagged for this cluster: redisctl's own, replaced"
    );
    o.key_pairs[0].tags.clear();
    let p = plan::plan(&spec, &o);
    assert!(
        p.step("key_pair").is_none(),
        "{}",
        render::plan::human(&p, false)
    );
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{}", render::plan::human(&p, false));
    assert!(
        b[0].message
            .contains("was not made by redisctl for cluster prod-redis")
            && b[0].message.contains("choose another ssh.key_name"),
        "{}",
        b[0].message
    );
    // Without the private key here either: still not ours to touch, and said so.
    o.local_public_key = None;
    let p = plan::plan(&spec, &o);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1);
    assert!(
        b[0].message.contains("was not made by redisctl"),
        "{}",
        b[0].message
    );
}

/// An instance anyone with ec2:RunInstances and ec2:CreateTags could make: tagged as node
/// redis-node-1a of the cluster, in another subnet (here: a copy of the real one's record).
fn impostor(o: &redisctl::observed::Observed, subnet: &str) -> redisctl::observed::Instance {
    let mut i = o
        .instances
        .iter()
        .find(|i| i.tags.get("redisctl:node").map(String::as_str) == Some("redis-node-1a"))
        .unwrap()
        .clone();
    i.id = "i-0impostor0000000".into();
    i.subnet_id = Some(subnet.into());
    i
}

#[test]
fn an_instance_tagged_as_a_node_outside_the_network_is_not_one() {
    let spec = example();
    let mut o = converged(&spec);
    o.instances.push(impostor(&o, "subnet-0elsewhere000000"));
    o.set_aside_strangers();
    assert_eq!(o.strangers.len(), 1, "the impostor is set aside");
    assert_eq!(o.instances.len(), 3);
    let p = plan::plan(&spec, &o);
    assert!(p.steps.is_empty(), "{}", render::plan::human(&p, false));
    assert!(p.notes.iter().any(|n| {
        n.level == NoteLevel::Warning
            && n.message.contains("i-0impostor0000000")
            && n.message
                .contains("never connects to, changes or deletes it")
    }));
    // destroy does not terminate it either.
    let d = plan::plan_destroy(&spec, &o);
    assert!(
        !d.steps.iter().any(|s| s.ops.iter().any(|op| matches!(op,
            Op::Ec2(Ec2Op::TerminateInstance { instance }) if instance == "i-0impostor0000000"))),
        "{}",
        render::plan::human(&d, false)
    );
}

#[test]
fn two_instances_claiming_one_node_are_a_blocker() {
    let spec = example();
    let mut o = converged(&spec);
    let subnet = o.instances[0].subnet_id.clone().unwrap();
    o.instances.push(impostor(&o, &subnet));
    o.set_aside_strangers();
    assert!(
        o.strangers.is_empty(),
        "in the subnet and group: a claimant, not a stranger"
    );
    let p = plan::plan(&spec, &o);
    let blocker = p
        .blockers()
        .find(|n| n.subject == "node.redis-node-1a")
        .unwrap_or_else(|| panic!("no blocker:\n{}", render::plan::human(&p, false)));
    assert!(
        blocker.message.contains("i-0impostor0000000"),
        "{}",
        blocker.message
    );
}
