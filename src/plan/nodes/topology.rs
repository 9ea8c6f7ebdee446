//! Phase 7 on a running cluster: its shape made the spec's. Nodes the spec has and the cluster
//! does not (more masters, more replicas) join it; a master the spec wants and the cluster
//! lacks is chosen among them (or among members that serve nothing) and given its share of the
//! slots, moved from the masters that hold more than theirs; the others become replicas of the
//! masters with the fewest, another AZ's first. Everything is planned from the cluster as the
//! nodes report it (slots, roles, links), so a cluster changed by hand is judged as it is: a
//! manual failover is not undone, a reshard within [`TOLERANCE`](super::slots::TOLERANCE) is left alone, and a move a
//! killed apply left open is finished before anything else.

use std::collections::{BTreeMap, BTreeSet};

use super::super::builder::Builder;
use super::super::model::*;
use std::net::Ipv4Addr;

use crate::observed::{ClusterView, Member, NodeObservation, Observed};
use crate::spec::types::Node;

use super::slots::{Ranges, SLOTS, balance, ranges_text};

/// The cluster as the best-informed node sees it.
struct View<'a> {
    /// The spec node that answered.
    via: &'a Node,
    members: &'a [Member],
}

/// The view of the reached spec node that knows the most nodes of a cluster with every slot
/// assigned (spec order breaks ties). None: no such node, or it listed no members.
fn view<'a>(b: &Builder<'a>) -> Option<View<'a>> {
    let mut best: Option<(&Node, &ClusterView)> = None;
    for n in &b.spec.nodes.nodes {
        let Some(NodeObservation::Reached(f)) = b.observed.nodes.get(&n.name) else {
            continue;
        };
        let Some(c) = f.cluster.as_ref() else {
            continue;
        };
        if c.slots_assigned != SLOTS || c.members.is_empty() {
            continue;
        }
        if best.is_none_or(|(_, v)| c.members.len() > v.members.len()) {
            best = Some((n, c));
        }
    }
    best.map(|(via, c)| View {
        via,
        members: &c.members,
    })
}

/// The addresses of the members of the running cluster that are not failing, as any node the
/// plan reached sees them.
pub(in crate::plan) fn member_ips(obs: &Observed) -> BTreeSet<Ipv4Addr> {
    obs.nodes
        .values()
        .filter_map(|n| match n {
            NodeObservation::Reached(f) => f.cluster.as_ref(),
            _ => None,
        })
        .flat_map(|c| &c.members)
        .filter(|m| !m.failing && !m.handshake)
        .filter_map(|m| m.ip.parse().ok())
        .collect()
}

/// A member of the cluster as the plan names it: a spec node, or a node leaving the cluster
/// (its instance's `redisctl:node` tag).
pub(super) struct Named<'a> {
    pub(super) name: String,
    pub(super) member: &'a Member,
    /// Not in the spec: it leaves.
    pub(super) leaving: bool,
}

/// Plan joins, slot moves and departures on a running cluster. Returns false (nothing
/// planned) when this is not a running cluster's shape change: no node sees every slot
/// assigned, a spec node outside the cluster holds slots or keys (an interrupted formation,
/// finished elsewhere), or the cluster knows a node that is failing.
pub(super) fn plan(
    b: &mut Builder<'_>,
    created: &BTreeSet<String>,
    service_steps: &[String],
) -> bool {
    let spec = b.spec;
    let Some(v) = view(b) else {
        return false;
    };
    if v.members
        .iter()
        .any(|m| m.failing || m.handshake || m.ip.is_empty())
    {
        return false;
    }
    let spec_by_ip: BTreeMap<String, &Node> = spec
        .nodes
        .nodes
        .iter()
        .map(|n| (n.private_ip.to_string(), n))
        .collect();
    // Every member, named; one that is neither a spec node nor one of the cluster's
    // instances is not redisctl's to remove.
    let mut named: Vec<Named> = Vec::new();
    let mut strangers = Vec::new();
    for m in v.members {
        if let Some(n) = spec_by_ip.get(&m.ip) {
            named.push(Named {
                name: n.name.clone(),
                member: m,
                leaving: false,
            });
        } else if let Some(l) = b.leaving.iter().find(|l| l.ip.to_string() == m.ip) {
            named.push(Named {
                name: l.name.clone(),
                member: m,
                leaving: true,
            });
        } else {
            strangers.push(m.ip.clone());
        }
    }
    if !strangers.is_empty() {
        b.note(
            NoteLevel::Blocker,
            "cluster",
            format!(
                "the cluster has {} ({}) that {} neither in the spec nor one of the cluster's instances: redisctl does not remove a node it did not make; find out who added it, and remove it with redis-cli --cluster del-node, or put it in the spec",
                if strangers.len() == 1 { "a member" } else { "members" },
                strangers.join(", "),
                if strangers.len() == 1 { "is" } else { "are" },
            ),
        );
        return true;
    }
    // A member of the spec whose node this plan could not look into (its instance stopped
    // by a swap in flight, pending, or unreachable) may be shown by the others as it was a
    // moment ago (a master that has just handed its slots over and stopped is shown as an
    // empty master until it is flagged failing): nothing is reshaped until every member is
    // seen from inside.
    if named.iter().any(|x| {
        !x.leaving
            && !matches!(
                b.observed.nodes.get(&x.name),
                Some(NodeObservation::Reached(_))
            )
    }) {
        return false;
    }
    let name_of_id: BTreeMap<&str, &str> = named
        .iter()
        .map(|x| (x.member.id.as_str(), x.name.as_str()))
        .collect();
    let leaving_ids: BTreeSet<&str> = named
        .iter()
        .filter(|x| x.leaving)
        .map(|x| x.member.id.as_str())
        .collect();
    // Spec nodes outside the cluster: each must be new, or empty and alone.
    let mut joiners: Vec<&Node> = Vec::new();
    for n in &spec.nodes.nodes {
        if spec_by_ip.contains_key(&n.private_ip.to_string())
            && named.iter().any(|x| x.name == n.name)
        {
            continue;
        }
        let empty = created.contains(&n.name)
            || matches!(b.observed.nodes.get(&n.name), Some(NodeObservation::Reached(f))
            if match &f.cluster {
                Some(c) => c.own_slots == Some(0) && c.keys == Some(0) && c.known_nodes <= 1,
                None => !f.cluster_state_file,
            });
        if !empty {
            return false;
        }
        joiners.push(n);
    }
    let node_by_name = |name: &str| spec.nodes.nodes.iter().find(|n| n.name == name);
    let az_of = |name: &str| node_by_name(name).map(|x| x.az.clone()).unwrap_or_default();
    // The spec's members: masters that serve slots; masters of nothing (no role yet: a join
    // a killed apply left half done); replicas of a staying master; replicas of a node that
    // leaves (orphans: they take over from it, or replicate another).
    let mut masters: Vec<(String, Ranges)> = Vec::new();
    let mut roleless: Vec<&Node> = Vec::new();
    let mut orphans: Vec<(&Node, String)> = Vec::new();
    let mut replicas_of: BTreeMap<String, usize> = BTreeMap::new();
    // The spec's replicas of a staying node, with their master now.
    let mut existing: Vec<(&Node, String)> = Vec::new();
    for n in &spec.nodes.nodes {
        let Some(x) = named.iter().find(|x| x.name == n.name) else {
            continue;
        };
        let m = x.member;
        if m.master && m.slot_count() > 0 {
            masters.push((n.name.clone(), m.slots.clone()));
        } else if m.master {
            roleless.push(n);
        } else {
            match m.master_id.as_deref() {
                Some(id) if leaving_ids.contains(id) => {
                    orphans.push((n, name_of_id[id].to_string()));
                }
                Some(id) if name_of_id.contains_key(id) => {
                    *replicas_of.entry(name_of_id[id].to_string()).or_default() += 1;
                    existing.push((n, name_of_id[id].to_string()));
                }
                _ => roleless.push(n),
            }
        }
    }
    // Leaving masters give their slots away; the spec may want fewer masters than serve now
    // (the extra ones hand their slots over and become replicas).
    let mut donors: Vec<(String, Ranges)> = named
        .iter()
        .filter(|x| x.leaving && x.member.master && x.member.slot_count() > 0)
        .map(|x| (x.name.clone(), x.member.slots.clone()))
        .collect();
    let want = spec.nodes.masters as usize;
    // A replica of a leaving master takes over from it (CLUSTER FAILOVER: its slots stay
    // where their data is) while the spec wants more masters than stay.
    let mut takeovers: Vec<(&Node, String)> = Vec::new();
    for d in donors.iter_mut() {
        if masters.len() >= want {
            break;
        }
        if let Some(i) = orphans.iter().position(|(_, m)| *m == d.0) {
            let (n, from) = orphans.remove(i);
            masters.push((n.name.clone(), std::mem::take(&mut d.1)));
            takeovers.push((n, from));
        }
    }
    donors.retain(|(_, r)| !r.is_empty());
    if !takeovers.is_empty() && swap_in_flight(b) {
        return false;
    }
    // Without replicas in the spec, the replication login is gone from every node (phases
    // 5-6) before phase 7: a replica of a leaving master could no longer take over from it.
    if spec.nodes.replicas_per_master == 0 && (!takeovers.is_empty() || !orphans.is_empty()) {
        let list: Vec<String> = takeovers
            .iter()
            .chain(orphans.iter())
            .map(|(n, from)| format!("{} replicates {from}", n.name))
            .collect();
        b.note(
            NoteLevel::Blocker,
            "cluster",
            format!(
                "{}, which the spec drops, and the spec has no replicas any more (their login would be gone before the replica could take over): make each such replica a master first (`redisctl redis-cli <node> -- CLUSTER FAILOVER`), then plan again",
                list.join("; ")
            ),
        );
        return true;
    }
    // Too many masters: those in the AZs with the most masters, the last in the spec's order
    // first (a derived layout lists its masters first), hand their slots over and become
    // replicas.
    let spec_index = |name: &str| spec.nodes.nodes.iter().position(|n| n.name == name);
    let mut demoted: Vec<&Node> = Vec::new();
    while masters.len() > want {
        let az_load = |az: &str, masters: &[(String, Ranges)]| {
            masters.iter().filter(|(m, _)| az_of(m) == az).count()
        };
        let (i, _) = masters
            .iter()
            .enumerate()
            .max_by_key(|(_, (m, _))| (az_load(&az_of(m), &masters), spec_index(m)))
            .expect("not empty");
        let (name, ranges) = masters.remove(i);
        demoted.push(node_by_name(&name).expect("a spec node"));
        donors.push((name, ranges));
    }
    // New masters: members without a role first, then the joiners; each in the AZ with the
    // fewest masters.
    let mut candidates: Vec<&Node> = roleless.iter().chain(joiners.iter()).copied().collect();
    let mut new_masters: Vec<&Node> = Vec::new();
    while masters.len() + new_masters.len() < want && !candidates.is_empty() {
        let az_load = |az: &str| {
            masters.iter().filter(|(m, _)| az_of(m) == az).count()
                + new_masters.iter().filter(|x| x.az == az).count()
        };
        let (i, _) = candidates
            .iter()
            .enumerate()
            .min_by_key(|(i, n)| (az_load(&n.az), *i))
            .expect("not empty");
        new_masters.push(candidates.remove(i));
    }
    for n in &new_masters {
        masters.push((n.name.clone(), Vec::new()));
    }
    // Replicas of a master that hands its slots over follow it (Redis moves them to the node
    // that takes its last slot): they are given a master like the others, after the moves.
    let demoted_names: Vec<&str> = demoted.iter().map(|n| n.name.as_str()).collect();
    let followers: Vec<&Node> = existing
        .iter()
        .filter(|(_, m)| demoted_names.contains(&m.as_str()))
        .map(|(n, _)| *n)
        .collect();
    existing.retain(|(_, m)| !demoted_names.contains(&m.as_str()));
    for d in &demoted_names {
        replicas_of.remove(*d);
    }
    // The rest become replicas (orphans re-pointed, masters handing over last): of the
    // master with the fewest, another AZ's first.
    let orphan_nodes: Vec<&Node> = orphans.iter().map(|(n, _)| *n).collect();
    let mut replica_of: BTreeMap<&str, String> = BTreeMap::new();
    for n in candidates
        .iter()
        .chain(&orphan_nodes)
        .chain(&demoted)
        .chain(&followers)
    {
        let pick = masters
            .iter()
            .map(|(m, _)| m)
            .min_by_key(|m| {
                let same_az = az_of(m) == n.az;
                (replicas_of.get(*m).copied().unwrap_or(0), same_az)
            })
            .cloned();
        if let Some(m) = pick {
            *replicas_of.entry(m.clone()).or_default() += 1;
            replica_of.insert(n.name.as_str(), m);
        }
    }
    // Existing replicas join in: a master with more than the spec's replicas gives one to a
    // master with fewer (another AZ's first).
    for (n, m) in &existing {
        replica_of.insert(n.name.as_str(), m.clone());
    }
    let want_r = spec.nodes.replicas_per_master as usize;
    let count = |m: &str, of: &BTreeMap<&str, String>| of.values().filter(|x| *x == m).count();
    loop {
        let over = masters
            .iter()
            .map(|(m, _)| m)
            .find(|m| count(m, &replica_of) > want_r);
        let under = masters
            .iter()
            .map(|(m, _)| m)
            .filter(|m| count(m, &replica_of) < want_r)
            .min_by_key(|m| count(m, &replica_of));
        let (Some(over), Some(under)) = (over.cloned(), under.cloned()) else {
            break;
        };
        let Some(r) = replica_of
            .iter()
            .filter(|(_, m)| **m == over)
            .map(|(r, _)| *r)
            .min_by_key(|r| az_of(r) == az_of(&under))
        else {
            break;
        };
        replica_of.insert(r, under);
    }
    // A greedy choice can leave the last replica with only its own AZ's master: swap masters
    // with another replica given a master here when that puts both in other AZs. (A replica
    // that keeps its master is left where it is: redis-cli --cluster create's layout is kept.)
    let names: Vec<&str> = replica_of
        .iter()
        .filter(|(r, m)| !existing.iter().any(|(n, was)| n.name == **r && was == *m))
        .map(|(r, _)| *r)
        .collect();
    for &r in &names {
        if az_of(r) != az_of(&replica_of[r]) {
            continue;
        }
        let swap = names.iter().copied().find(|&r2| {
            r2 != r && az_of(r) != az_of(&replica_of[r2]) && az_of(r2) != az_of(&replica_of[r])
        });
        if let Some(r2) = swap {
            let (m1, m2) = (replica_of[r].clone(), replica_of[r2].clone());
            replica_of.insert(r, m2);
            replica_of.insert(r2, m1);
        }
    }
    let moves = balance(&masters, &donors);
    // A node shows its migrating/importing marks on its own line only: every reached node's.
    let open: Vec<u16> = b
        .observed
        .nodes
        .values()
        .filter_map(|n| match n {
            NodeObservation::Reached(f) => f.cluster.as_ref(),
            _ => None,
        })
        .flat_map(|c| c.members.iter())
        .flat_map(|m| m.open_slots.iter().copied())
        .collect::<BTreeSet<u16>>()
        .into_iter()
        .collect();
    let becoming_replica: Vec<&Node> = roleless
        .iter()
        .filter(|n| replica_of.contains_key(n.name.as_str()))
        .copied()
        .collect();
    // Existing replicas given another master above.
    let repointed: Vec<(&Node, String)> = existing
        .iter()
        .filter(|(n, m)| replica_of.get(n.name.as_str()) != Some(m))
        .map(|(n, m)| (*n, m.clone()))
        .collect();
    let leavers: Vec<&Named> = named.iter().filter(|x| x.leaving).collect();
    if joiners.is_empty()
        && becoming_replica.is_empty()
        && moves.is_empty()
        && open.is_empty()
        && leavers.is_empty()
        && takeovers.is_empty()
        && orphan_nodes.is_empty()
        && demoted.is_empty()
        && repointed.is_empty()
    {
        return super::affinity::anti_affinity(b, &named, service_steps);
    }
    let via = v.via.name.clone();
    let mut last: Vec<String> = service_steps.to_vec();
    if !open.is_empty() {
        let addr = "cluster.slots.open".to_string();
        b.steps.push(
            Step::new(
                &addr,
                Action::Run,
                Phase::ClusterCreate,
                format!(
                    "slot {} {} left open (migrating/importing) by an interrupted move: it is finished first",
                    ranges_text(&open.iter().map(|s| (*s, *s)).collect::<Vec<_>>()),
                    if open.len() == 1 { "was" } else { "were" }
                ),
            )
            .changes(vec![Change::create("fix", "redis-cli --cluster fix")])
            .depends_on(last.clone())
            .op(Op::Node(NodeOp::FixSlots { via: via.clone() })),
        );
        last = vec![addr];
    }
    let role_text = |n: &Node| match replica_of.get(n.name.as_str()) {
        Some(m) => format!(
            "a replica of {m}{}",
            if az_of(m) != n.az {
                " (another AZ)"
            } else {
                " (same AZ: no other has room)"
            }
        ),
        None => "a master (slots below)".into(),
    };
    let mut first = Vec::new();
    for (n, from) in &takeovers {
        let reason = format!(
            "{from} leaves the cluster: {}, its replica, takes over its slots where their data already is (CLUSTER FAILOVER)",
            n.name
        );
        first.push(failover(b, &n.name, from, reason, &last));
    }
    let join_step = |b: &mut Builder<'_>, n: &Node, reason: String, after: &[String]| {
        let addr = format!("cluster.{}", n.name);
        let role = role_text(n);
        b.steps.push(
            Step::new(&addr, Action::Run, Phase::ClusterCreate, reason)
                .changes(vec![Change::create(
                    "join",
                    format!("CLUSTER MEET from {via}; {role}"),
                )])
                .depends_on(after.to_vec())
                .op(Op::Node(NodeOp::JoinCluster {
                    node: n.name.clone(),
                    via: via.clone(),
                    replica_of: replica_of.get(n.name.as_str()).cloned(),
                })),
        );
        addr
    };
    for n in joiners.iter().chain(becoming_replica.iter()) {
        let joined = named.iter().any(|x| x.name == n.name);
        let reason = if joined {
            format!(
                "{} is in the cluster but serves nothing: it becomes {}",
                n.name,
                role_text(n)
            )
        } else {
            format!(
                "{} is not in the cluster: it joins as {}",
                n.name,
                role_text(n)
            )
        };
        first.push(join_step(b, n, reason, &last));
    }
    for (n, from) in &orphans {
        let reason = format!(
            "{} replicates {from}, which leaves the cluster: it becomes {}",
            n.name,
            role_text(n)
        );
        first.push(join_step(b, n, reason, &last));
    }
    for (n, from) in &repointed {
        let reason = format!(
            "{} replicates {from} ({} replica(s) wanted per master, each in another AZ than its master where it can be): it becomes {}",
            n.name,
            want_r,
            role_text(n)
        );
        first.push(join_step(b, n, reason, &last));
    }
    if !first.is_empty() {
        last = first;
    }
    let keys_of = |name: &str| -> Option<u64> {
        match b.observed.nodes.get(name) {
            Some(NodeObservation::Reached(f)) => f.cluster.as_ref().and_then(|c| c.keys),
            _ => None,
        }
    };
    let slots_of = |name: &str| -> u32 {
        named
            .iter()
            .find(|x| x.name == name)
            .map(|x| x.member.slot_count())
            .unwrap_or(0)
    };
    for (i, m) in moves.iter().enumerate() {
        let addr = format!("cluster.slots.{}", i + 1);
        let keys = match (keys_of(&m.from), slots_of(&m.from)) {
            (Some(k), s) if s > 0 => format!(
                ", about {} keys",
                (k as f64 * f64::from(m.count) / f64::from(s)).round() as u64
            ),
            _ => String::new(),
        };
        let from_ip = named
            .iter()
            .find(|x| x.leaving && x.name == m.from)
            .map(|x| x.member.ip.clone());
        b.steps.push(
            Step::new(
                &addr,
                Action::Run,
                Phase::ClusterCreate,
                format!(
                    "{} slots move from {}{} to {} with their keys, while clients keep working (each slot: MIGRATE its keys, then hand it over)",
                    m.count,
                    m.from,
                    if from_ip.is_some() { " (leaving)" } else { "" },
                    m.to
                ),
            )
            .changes(vec![Change::create(
                "slots",
                format!("{} ({} slots{keys}) {} -> {}", ranges_text(&m.ranges), m.count, m.from, m.to),
            )])
            .depends_on(last.clone())
            .op(Op::Node(NodeOp::MoveSlots {
                via: via.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                count: m.count,
                from_ip,
            })),
        );
        last = vec![addr];
    }
    let mut after_moves = Vec::new();
    for n in &demoted {
        let reason = format!(
            "the spec has {want} masters: {} has handed its slots over, it becomes {}",
            n.name,
            role_text(n)
        );
        after_moves.push(join_step(b, n, reason, &last));
    }
    for n in &followers {
        let reason = format!(
            "{} replicated a master that has handed its slots over: it becomes {}",
            n.name,
            role_text(n)
        );
        after_moves.push(join_step(b, n, reason, &last));
    }
    if !after_moves.is_empty() {
        last = after_moves;
    }
    let mut gone = Vec::new();
    for x in &leavers {
        let Some(l) = b.leaving.iter().find(|l| l.name == x.name).cloned() else {
            continue;
        };
        let addr = format!("cluster.{}", x.name);
        b.steps.push(
            Step::new(
                &addr,
                Action::Run,
                Phase::ClusterCreate,
                format!(
                    "{} is not in the spec: it leaves the cluster{}",
                    x.name,
                    if x.member.master && x.member.slot_count() > 0 {
                        " once its slots have moved (above)"
                    } else {
                        ""
                    }
                ),
            )
            .changes(vec![Change::delete(
                "member",
                format!(
                    "{} ({}): CLUSTER FORGET on every node, then CLUSTER RESET",
                    x.member.id, x.member.ip
                ),
            )])
            .depends_on(last.clone())
            .op(Op::Node(NodeOp::LeaveCluster {
                node: x.name.clone(),
                ip: x.member.ip.clone(),
                via: via.clone(),
            })),
        );
        let node_addr = format!("node.{}", x.name);
        b.steps.push(
            Step::new(
                &node_addr,
                Action::Delete,
                Phase::ClusterCreate,
                "node is not in the spec: terminated once it has left the cluster",
            )
            .changes(vec![
                Change::delete("instance_id", &l.instance),
                Change::delete("private_ip", l.ip.to_string()),
            ])
            .destroying_data()
            .depends_on(vec![addr])
            .op(Op::Ec2(Ec2Op::TerminateInstance {
                instance: l.instance.clone(),
            })),
        );
        gone.push(node_addr);
    }
    if !gone.is_empty() {
        last = gone;
    }
    health(b, last);
    true
}

/// A root volume swap is in flight: its node is handed over, stopped or being verified as a
/// replica, and phase 8 finishes it after phase 7; a failover now would break its checks.
pub(super) fn swap_in_flight(b: &Builder<'_>) -> bool {
    b.observed
        .instances
        .iter()
        .any(|i| stage_of(&i.tags).is_some())
}

/// `node`, a replica of `master`, takes over from it (`cluster.<node>`); returns the address.
pub(super) fn failover(
    b: &mut Builder<'_>,
    node: &str,
    master: &str,
    reason: String,
    after: &[String],
) -> String {
    let addr = format!("cluster.{node}");
    b.steps.push(
        Step::new(&addr, Action::Run, Phase::ClusterCreate, reason)
            .changes(vec![Change::update(
                "role",
                format!("replica of {master}"),
                "master",
            )])
            .depends_on(after.to_vec())
            .op(Op::Node(NodeOp::Failover { node: node.into() })),
    );
    addr
}

/// The last step of a shape change: wait until every node agrees on the new one.
pub(super) fn health(b: &mut Builder<'_>, after: Vec<String>) {
    let n_nodes = b.spec.nodes.nodes.len();
    b.steps.push(
        Step::new(
            "cluster.health",
            Action::Run,
            Phase::ClusterCreate,
            "the cluster's new shape: wait until every node agrees",
        )
        .changes(vec![Change::create(
            "wait_for",
            format!("cluster_state:ok, 16384 slots, {n_nodes} nodes, replica links up"),
        )])
        .depends_on(after)
        .op(Op::Node(NodeOp::WaitHealthy { nodes: n_nodes })),
    );
}

/// The node instances the spec no longer has that are cluster members but that this plan
/// does not take out of the cluster (the cluster is not healthy, or a node is being
/// replaced): said, not terminated.
pub(super) fn note_leaving_left(b: &mut Builder<'_>) {
    let left: Vec<String> = b
        .leaving
        .iter()
        .filter(|l| !b.planned(&format!("node.{}", l.name)))
        .map(|l| l.name.clone())
        .collect();
    for name in left {
        b.note(
            NoteLevel::Warning,
            &format!("node.{name}"),
            format!(
                "{name} is not in the spec but is a member of the running cluster: it is taken out (its slots moved to the others, forgotten by every node) and terminated once the rest of the cluster is healthy and every node reachable; nothing is done to it now"
            ),
        );
    }
}
