//! Out-of-band changes to the network, the security group and the VPC: corrected, recreated,
//! or reported (duplicates) rather than hidden.

use redisctl::observed::{self, NodeObservation};
use redisctl::plan::{self, Action, NodeOp, NoteLevel, Op};
use redisctl::redis::users_acl;
use redisctl::render;

use crate::fixtures::{example, example_text, spec_from};
use crate::sim::{apply_and_converge, converged};
use crate::snapshot;

#[test]
fn out_of_band_drift_is_corrected() {
    let spec = example();
    let mut o = converged(&spec);
    // Someone opened Redis to the world, turned off public IPs on a subnet, retagged the VPC and
    // stopped a node.
    o.security_groups[0].ingress.push(observed::IngressRule {
        protocol: "tcp".into(),
        from_port: 6379,
        to_port: 6379,
        source: "0.0.0.0/0".into(),
    });
    o.subnets[1].map_public_ip_on_launch = false;
    o.vpcs[0].tags.insert("owner".into(), "someone".into());
    o.vpcs[0].tags.insert("team".into(), "other".into());
    o.instances[2].state = "stopped".into();
    let p = plan::plan(&spec, &o);
    snapshot("drift", &render::plan::human(&p, false));
    assert_eq!(
        p.step("sg.rule[tcp 6379 0.0.0.0/0]").unwrap().action,
        Action::Delete
    );
    apply_and_converge(&spec, o, &p);
}

#[test]
fn missing_resources_are_recreated() {
    let spec = example();
    let mut o = converged(&spec);
    // A rule and a subnet's route table association were deleted by hand, and the ACL file
    // on a node was edited.
    o.security_groups[0].ingress.retain(|r| r.from_port != 22);
    o.route_tables[0].associations.remove(0);
    if let Some(NodeObservation::Reached(f)) = o.nodes.get_mut("redis-node-1b") {
        f.files
            .insert(users_acl::USERS_ACL.path.into(), Some("0".repeat(64)));
    }
    let p = plan::plan(&spec, &o);
    snapshot("recreate", &render::plan::human(&p, false));
    assert_eq!(p.summary().add, 2);
    let acl = p
        .step("node.redis-node-1b.acl")
        .expect("the edited ACL file is rewritten");
    assert_eq!(
        acl.ops,
        [Op::Node(NodeOp::WriteAcl {
            node: "redis-node-1b".into(),
            reload: true
        })]
    );
    apply_and_converge(&spec, o, &p);
}

#[test]
fn ssh_cidr_change_swaps_one_rule() {
    let text = example_text().replace("203.0.113.7/32", "203.0.113.9/32");
    let after = spec_from(&text);
    let o = converged(&example());
    let p = plan::plan(&after, &o);
    let addrs: Vec<(&str, Action)> = p
        .steps
        .iter()
        .map(|s| (s.address.as_str(), s.action))
        .collect();
    assert_eq!(
        addrs,
        [
            ("sg.rule[ssh 203.0.113.9/32]", Action::Create),
            ("sg.rule[tcp 22 203.0.113.7/32]", Action::Delete)
        ]
    );
    apply_and_converge(&after, o, &p);
}

#[test]
fn duplicates_are_reported_not_hidden() {
    let spec = example();
    let mut o = converged(&spec);
    let mut dup = o.route_tables[0].clone();
    dup.id = "rtb-0ffffffffffffffff".into();
    o.route_tables.push(dup);
    let p = plan::plan(&spec, &o);
    assert!(p.is_empty());
    let n = p
        .notes
        .iter()
        .find(|n| n.subject == "route_table")
        .expect("a note about the duplicate route table");
    assert_eq!(n.level, NoteLevel::Warning);
    assert!(n.message.contains("rtb-0ffffffffffffffff"), "{}", n.message);
}

/// A second VPC or security group tagged as the cluster's (which anyone with ec2:CreateTags
/// can make, and which might be listed first) is a blocker, not a guess: the nodes and their
/// secrets would go into that network or behind those rules.
#[test]
fn a_second_vpc_or_security_group_tagged_as_the_clusters_is_a_blocker() {
    let spec = example();
    for which in ["vpc", "sg"] {
        let mut o = converged(&spec);
        if which == "vpc" {
            let mut theirs = o.vpcs[0].clone();
            theirs.id = "vpc-00000000000000000".into();
            o.vpcs.insert(0, theirs);
        } else {
            let mut theirs = o.security_groups[0].clone();
            theirs.id = "sg-00000000000000000".into();
            theirs.ingress.clear();
            o.security_groups.insert(0, theirs);
        }
        let p = plan::plan(&spec, &o);
        let n = p
            .notes
            .iter()
            .find(|n| n.subject == which)
            .expect("a note about the second one");
        assert_eq!(n.level, NoteLevel::Blocker, "{which}: {}", n.message);
        assert!(n.message.contains("00000000000000000"), "{}", n.message);
    }
}

/// A cluster built when the bus was open to `redis_cidrs` gets the narrower rule from the next
/// plan: the bus from the group itself is authorized, the old CIDR rule revoked, with a reason
/// that says so (not "added out of band").
#[test]
fn the_bus_open_to_the_vpc_is_narrowed_to_the_nodes() {
    let spec = example();
    let mut o = converged(&spec);
    let ingress = &mut o.security_groups[0].ingress;
    let own = ingress
        .iter()
        .position(|r| r.source == observed::SELF_SOURCE)
        .expect("the converged group has the bus from itself");
    ingress[own].source = "10.0.0.0/16".into();
    let p = plan::plan(&spec, &o);
    let text = render::plan::human(&p, false);
    assert_eq!(
        p.step("sg.rule[bus self]").map(|s| s.action),
        Some(Action::Create),
        "{text}"
    );
    let revoke = p.step("sg.rule[tcp 16379 10.0.0.0/16]").expect(&text);
    assert_eq!(revoke.action, Action::Delete);
    assert!(
        revoke.reason.contains("no longer to 10.0.0.0/16"),
        "{}",
        revoke.reason
    );
    apply_and_converge(&spec, o, &p);
}

#[test]
fn a_pending_node_is_named_not_passed_over_in_silence() {
    // A rerun right after a killed launch: the instance exists but is still pending, so nothing
    // inside it can be observed or planned; the plan says so instead of showing nothing for it.
    let spec = example();
    let mut o = converged(&spec);
    let id = o.instances[2].id.clone();
    let node = o.instances[2].tags["redisctl:node"].clone();
    o.instances[2].state = "pending".into();
    o.nodes.remove(&node);
    let p = plan::plan(&spec, &o);
    let note = p
        .notes
        .iter()
        .find(|n| n.subject == format!("node.{node}"))
        .unwrap_or_else(|| panic!("no note for node.{node}: {:#?}", p.notes));
    assert_eq!(note.level, NoteLevel::Warning);
    assert!(
        note.message.contains(&format!("instance {id} is pending")),
        "{}",
        note.message
    );
    assert!(
        !p.steps
            .iter()
            .any(|s| s.address.starts_with(&format!("node.{node}."))),
        "nothing is planned inside a pending node"
    );
}

/// A node launched without a public IP (the subnet's MapPublicIpOnLaunch not yet in effect at
/// its launch: the chaos campaign's cycle 23, twice), never reached: EC2 never gives it one,
/// so it is replaced (nothing on it to keep, no --allow-replace needed) and the plan converges.
/// One that was reached once (its host key pinned) is not touched: it may hold data.
#[test]
fn a_node_launched_without_a_public_ip_and_never_reached_is_replaced() {
    let spec = example();
    // An apply from nothing killed after its launches (phase 2).
    let first = plan::plan(&spec, &crate::fixtures::empty_region());
    let mut cut = first.clone();
    cut.steps.retain(|s| s.phase <= plan::Phase::Instances);
    let mut sim = crate::sim::Sim::new(&spec, crate::fixtures::empty_region());
    sim.apply(&cut);
    let mut o = sim.o;
    let i = o
        .instances
        .iter()
        .position(|i| i.tags.get("redisctl:node").map(String::as_str) == Some("redis-node-1b"))
        .unwrap();
    o.instances[i].public_ip = None;
    o.instances[i].tags.remove("redisctl:host-key");
    o.nodes.insert(
        "redis-node-1b".into(),
        observed::NodeObservation::Unreachable {
            reason: "the instance has no public-ip address".into(),
            host_key_changed: false,
        },
    );
    let p = plan::plan(&spec, &o);
    let step = p
        .step("node.redis-node-1b")
        .unwrap_or_else(|| panic!("{}", render::plan::human(&p, false)));
    assert_eq!(step.action, Action::Replace);
    assert!(
        step.reason.contains("launched without a public IP"),
        "{}",
        step.reason
    );
    assert!(!step.destroys_data, "nothing on it to keep");
    assert!(p.destroys_data().next().is_none());
    assert!(p.blockers().next().is_none(), "{:?}", p.notes);
    assert!(
        p.notes
            .iter()
            .all(|n| !n.message.contains("has no public IP")),
        "{:?}",
        p.notes
    );
    apply_and_converge(&spec, o.clone(), &p);

    // Reached once (its host key pinned as a tag): left alone; it may hold data.
    let mut pinned = o;
    pinned.instances[i]
        .tags
        .insert("redisctl:host-key".into(), "SHA256:x".into());
    let p = plan::plan(&spec, &pinned);
    assert!(p.step("node.redis-node-1b").is_none());
}

/// A kernel value changed on a running node (`sysctl -w`), its file intact: the kernel step
/// alone puts it back, named with its values, and nothing restarts.
#[test]
fn a_kernel_value_changed_by_hand_is_put_back_without_a_restart() {
    let spec = example();
    let mut o = converged(&spec);
    assert!(
        plan::plan(&spec, &o).steps.is_empty(),
        "a converged cluster's kernel settings are in force"
    );
    if let Some(NodeObservation::Reached(f)) = o.nodes.get_mut("redis-node-1b") {
        f.kernel.overcommit_memory = "0".into();
        f.kernel.thp = "[always] madvise never".into();
    }
    let p = plan::plan(&spec, &o);
    let steps: Vec<&str> = p.steps.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(steps, ["node.redis-node-1b.kernel"]);
    let text = render::plan::human(&p, false);
    assert!(
        text.contains("vm.overcommit_memory changed in the running kernel")
            || text.contains(
                "vm.overcommit_memory, transparent_hugepage changed in the running kernel"
            ),
        "{text}"
    );
    assert!(
        text.contains("\"0\" -> \"1 (in force now, no restart)\""),
        "{text}"
    );
    assert!(
        text.contains("\"always\" -> \"madvise (in force now, no restart)\""),
        "{text}"
    );
    assert_eq!(
        p.steps[0].ops,
        [Op::Node(NodeOp::ApplyKernel {
            node: "redis-node-1b".into()
        })]
    );
    apply_and_converge(&spec, o, &p);
}
