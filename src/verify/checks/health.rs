//! Cluster health and slot coverage, from each node's CLUSTER INFO / NODES and INFO
//! replication; and which master serves a slot.

use std::collections::{BTreeMap, BTreeSet};

use super::{NodeProbe, first_line, reached};
use crate::redis::parse::{self, ClusterNode, SlotRange};
use crate::spec::Spec;
use crate::verify::Check;

fn by_ip(spec: &Spec, ip: &str) -> String {
    spec.nodes
        .nodes
        .iter()
        .find(|n| n.private_ip.to_string() == ip)
        .map(|n| n.name.clone())
        .unwrap_or_else(|| format!("{ip} (not in the spec)"))
}

/// Every node `cluster_state:ok`, 16384 slots assigned, all nodes known; the spec's number of
/// masters; replicas linked to their master when the spec asks for replicas.
pub fn health(spec: &Spec, probes: &[NodeProbe]) -> Check {
    let want_nodes = spec.nodes.nodes.len() as u32;
    let mut passed = true;
    let mut ev = Vec::new();
    let mut masters_seen: Option<(String, usize)> = None;
    let mut replicas = 0usize;
    for p in probes {
        let Some(out) = reached(p, &mut passed, &mut ev) else {
            continue;
        };
        let role = parse::info(&out.replication)
            .get("Replication")
            .cloned()
            .unwrap_or_default();
        let role_text = match role.get("role").map(String::as_str) {
            Some("slave") => {
                replicas += 1;
                let link = role.get("master_link_status").cloned().unwrap_or_default();
                if link != "up" {
                    passed = false;
                }
                format!("role:replica master_link_status:{link}")
            }
            Some(r) => format!("role:{r}"),
            None => {
                passed = false;
                format!("role:? ({})", first_line(&out.replication))
            }
        };
        match parse::cluster_info(&out.cluster_info) {
            Ok(c) => {
                let ok = c.cluster_state == "ok"
                    && c.slots_assigned == 16384
                    && c.known_nodes == want_nodes;
                passed &= ok;
                ev.push(format!(
                    "{}: cluster_state:{} cluster_slots_assigned:{} cluster_known_nodes:{}/{want_nodes} {role_text}",
                    p.node, c.cluster_state, c.slots_assigned, c.known_nodes
                ));
            }
            Err(_) => {
                passed = false;
                ev.push(format!(
                    "{}: CLUSTER INFO failed: {}",
                    p.node,
                    first_line(&out.cluster_info)
                ));
            }
        }
        if masters_seen.is_none()
            && let Ok(nodes) = parse::cluster_nodes(&out.cluster_nodes)
        {
            let n = nodes
                .iter()
                .filter(|n| n.is_master() && !n.is_failing() && n.slot_count() > 0)
                .count();
            masters_seen = Some((p.node.clone(), n));
            passed &= layout(spec, &nodes, &mut ev);
            for n in nodes.iter().filter(|n| n.is_failing()) {
                passed = false;
                ev.push(format!(
                    "{} sees {} flagged {}",
                    p.node,
                    by_ip(spec, &n.ip),
                    n.flags.join(",")
                ));
            }
        }
    }
    let want_masters = spec.nodes.masters as usize;
    match masters_seen {
        Some((from, n)) => {
            passed &= n == want_masters;
            ev.push(format!(
                "masters serving slots: {n} (spec: {want_masters}, as {from} sees them)"
            ));
        }
        None => {
            passed = false;
            ev.push("no node answered CLUSTER NODES".into());
        }
    }
    let want_replicas = want_masters * spec.nodes.replicas_per_master as usize;
    if want_replicas > 0 || replicas > 0 {
        passed &= replicas == want_replicas;
        ev.push(format!("replicas: {replicas} (spec: {want_replicas})"));
    }
    Check {
        name: "cluster health".into(),
        passed,
        evidence: ev,
    }
}

/// The layout as one node sees it: each master's share of the slots (within the planner's
/// tolerance of an even share), no slot left migrating or importing, and which replicas are in
/// another AZ than their master (said, not judged: a failover can move a master to its
/// replica's AZ). False when the shares or an open slot fail.
fn layout(spec: &Spec, nodes: &[ClusterNode], ev: &mut Vec<String>) -> bool {
    let mut ok = true;
    let masters: Vec<&ClusterNode> = nodes
        .iter()
        .filter(|n| n.is_master() && n.slot_count() > 0)
        .collect();
    if !masters.is_empty() {
        let even = 16384.0 / masters.len() as f64;
        let allowed = even * crate::plan::SLOT_SHARE_TOLERANCE + 1.0;
        let mut shares: Vec<(String, u32)> = masters
            .iter()
            .map(|m| (by_ip(spec, &m.ip), m.slot_count()))
            .collect();
        shares.sort();
        let off: Vec<&(String, u32)> = shares
            .iter()
            .filter(|(_, c)| (f64::from(*c) - even).abs() > allowed)
            .collect();
        ok &= off.is_empty();
        ev.push(format!(
            "slots per master: {} ({})",
            shares
                .iter()
                .map(|(n, c)| format!("{n} {c}"))
                .collect::<Vec<_>>()
                .join(", "),
            if off.is_empty() {
                format!("each within 2 % of {even:.0}")
            } else {
                format!("{} more than 2 % away from {even:.0}: WRONG", off.len())
            }
        ));
    }
    let open: Vec<String> = nodes
        .iter()
        .filter(|n| !n.migrating.is_empty() || !n.importing.is_empty())
        .map(|n| by_ip(spec, &n.ip))
        .collect();
    if !open.is_empty() {
        ok = false;
        ev.push(format!(
            "slots left migrating/importing on {}: WRONG (apply finishes the move)",
            open.join(", ")
        ));
    }
    let az = |ip: &str| {
        spec.nodes
            .nodes
            .iter()
            .find(|n| n.private_ip.to_string() == ip)
            .map(|n| n.az.clone())
    };
    let replicas: Vec<&ClusterNode> = nodes.iter().filter(|n| n.is_replica()).collect();
    if !replicas.is_empty() {
        let same: Vec<String> = replicas
            .iter()
            .filter_map(|r| {
                let m = nodes
                    .iter()
                    .find(|m| Some(m.id.as_str()) == r.master_id.as_deref())?;
                (az(&r.ip).is_some() && az(&r.ip) == az(&m.ip)).then(|| {
                    format!(
                        "{} replicates {} in its own AZ",
                        by_ip(spec, &r.ip),
                        by_ip(spec, &m.ip)
                    )
                })
            })
            .collect();
        // Judged as the planner judges it: wrong only where a replica would lead its shard
        // better (fewer masters in one AZ, then fewer of the shard in the master's AZ); apply
        // then makes it the master.
        let shards: Vec<(String, Vec<String>)> = masters
            .iter()
            .map(|m| {
                let replicas = replicas
                    .iter()
                    .filter(|r| r.master_id.as_deref() == Some(m.id.as_str()))
                    .map(|r| by_ip(spec, &r.ip))
                    .collect();
                (by_ip(spec, &m.ip), replicas)
            })
            .collect();
        let better: Vec<String> =
            crate::plan::better_leaders(&spec.nodes.nodes, &shards, &|_| true)
                .into_iter()
                .zip(&shards)
                .filter_map(|(l, (m, _))| Some(format!("{} instead of {m}", l?.node)))
                .collect();
        ok &= better.is_empty();
        ev.push(format!(
            "replicas in another AZ than their master: {} of {}{}{}",
            replicas.len() - same.len(),
            replicas.len(),
            if same.is_empty() {
                String::new()
            } else {
                format!(" ({})", same.join("; "))
            },
            if better.is_empty() {
                String::new()
            } else {
                format!(
                    "; WRONG: a replica would lead its shard from a better AZ ({}): apply makes it the master",
                    better.join(", ")
                )
            }
        ));
    }
    ok
}

/// The masters' slot ranges as one node sees them: ip -> ranges.
fn slot_map(nodes: &[ClusterNode]) -> BTreeMap<String, Vec<SlotRange>> {
    nodes
        .iter()
        .filter(|n| n.is_master() && !n.slots.is_empty())
        .map(|n| {
            let mut r = n.slots.clone();
            r.sort();
            (n.ip.clone(), r)
        })
        .collect()
}

/// Gaps and overlaps in `ranges` over 0–16383.
fn holes(ranges: &[SlotRange]) -> Vec<String> {
    let mut all = ranges.to_vec();
    all.sort();
    let mut next: u32 = 0;
    let mut out = Vec::new();
    for r in &all {
        let (s, e) = (u32::from(r.start), u32::from(r.end));
        if s > next {
            out.push(format!("gap {next}-{}", s - 1));
        } else if s < next {
            out.push(format!("overlap at {s}"));
        }
        next = next.max(e + 1);
    }
    if next <= 16383 {
        out.push(format!("gap {next}-16383"));
    }
    out
}

/// CLUSTER NODES covers 0–16383 with no gaps, every node agrees, each master in a different AZ
/// where the spec's nodes make that possible.
pub fn slots(spec: &Spec, probes: &[NodeProbe]) -> Check {
    let name = "slot coverage";
    let views: Vec<(&NodeProbe, Vec<ClusterNode>)> = probes
        .iter()
        .filter_map(|p| {
            let o = p.out.as_ref().ok()?;
            Some((p, parse::cluster_nodes(&o.cluster_nodes).ok()?))
        })
        .collect();
    let Some((first, nodes)) = views.first() else {
        return Check::fail(name, vec!["no node answered CLUSTER NODES".into()]);
    };
    let map = slot_map(nodes);
    let mut passed = true;
    let mut ev = Vec::new();
    let az_of = |ip: &str| {
        spec.nodes
            .nodes
            .iter()
            .find(|n| n.private_ip.to_string() == ip)
            .map(|n| n.az.clone())
    };
    let mut all = Vec::new();
    for (ip, ranges) in &map {
        let count: u32 = ranges.iter().map(SlotRange::count).sum();
        let list: Vec<String> = ranges.iter().map(ToString::to_string).collect();
        ev.push(format!(
            "{} ({ip}, {}): {} ({count} slots)",
            by_ip(spec, ip),
            az_of(ip).unwrap_or_else(|| "?".into()),
            list.join(",")
        ));
        all.extend(ranges.iter().copied());
    }
    let h = holes(&all);
    if h.is_empty() {
        ev.push(format!(
            "0-16383 covered, no gaps or overlaps (as {} sees it)",
            first.node
        ));
    } else {
        passed = false;
        ev.push(format!("not covered: {}", h.join(", ")));
    }
    for (p, other) in views.iter().skip(1) {
        if slot_map(other) != map {
            passed = false;
            ev.push(format!(
                "{} sees a different slot map than {}",
                p.node, first.node
            ));
        }
    }
    let master_azs: BTreeSet<String> = map.keys().filter_map(|ip| az_of(ip)).collect();
    let spec_azs: BTreeSet<&str> = spec.nodes.nodes.iter().map(|n| n.az.as_str()).collect();
    let possible = map.len().min(spec_azs.len());
    let spread = master_azs.len() >= possible;
    passed &= spread;
    ev.push(format!(
        "masters in {} AZ(s): {} ({possible} possible){}",
        master_azs.len(),
        master_azs.iter().cloned().collect::<Vec<_>>().join(", "),
        if spread { "" } else { ": masters share an AZ" }
    ));
    Check {
        name: name.into(),
        passed,
        evidence: ev,
    }
}

/// The master that serves `slot`, as the first node that answered sees it: (node name, ip).
pub fn owner(spec: &Spec, probes: &[NodeProbe], slot: u16) -> Option<(String, String)> {
    probes.iter().find_map(|p| {
        let nodes = parse::cluster_nodes(&p.out.as_ref().ok()?.cluster_nodes).ok()?;
        nodes
            .iter()
            .filter(|n| n.is_master() && !n.is_failing())
            .find(|n| n.slots.iter().any(|r| r.start <= slot && slot <= r.end))
            .map(|n| (by_ip(spec, &n.ip), n.ip.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_gaps() {
        let r = |s, e| SlotRange { start: s, end: e };
        assert!(holes(&[r(0, 5460), r(5461, 10922), r(10923, 16383)]).is_empty());
        assert_eq!(
            holes(&[r(0, 5460), r(10923, 16383)]),
            vec!["gap 5461-10922".to_string()]
        );
        assert_eq!(holes(&[r(0, 100)]), vec!["gap 101-16383".to_string()]);
    }

    /// `CLUSTER NODES` of the reference spec's three nodes (10.0.1.10, 10.0.2.10, 10.0.3.10)
    /// with the given slot ranges, and a fourth line: a replica at 10.0.1.11 of the first.
    fn view(a: &str, b: &str, c: &str) -> Vec<ClusterNode> {
        let text = format!(
            "id1 10.0.1.10:6379@16379 myself,master - 0 0 1 connected {a}\n\
             id2 10.0.2.10:6379@16379 master - 0 0 2 connected {b}\n\
             id3 10.0.3.10:6379@16379 master - 0 0 3 connected {c}\n\
             id4 10.0.1.11:6379@16379 slave id1 0 0 1 connected\n"
        );
        parse::cluster_nodes(&text).unwrap()
    }

    #[test]
    fn a_master_a_replica_would_lead_from_a_better_az_is_wrong() {
        // redis-node-1b-2 (us-east-1b, like redis-node-1b) leads the first shard after a
        // failover; its replica redis-node-1a is alone in us-east-1a.
        let mut spec = crate::redis::test_spec::reference();
        let mut extra = spec.nodes.nodes[1].clone();
        extra.name = "redis-node-1b-2".into();
        extra.private_ip = "10.0.2.11".parse().unwrap();
        spec.nodes.nodes.push(extra);
        let text = "id1 10.0.1.10:6379@16379 myself,slave id4 0 0 1 connected\n\
                    id2 10.0.2.10:6379@16379 master - 0 0 2 connected 5461-10922\n\
                    id3 10.0.3.10:6379@16379 master - 0 0 3 connected 10923-16383\n\
                    id4 10.0.2.11:6379@16379 master - 0 0 4 connected 0-5460\n";
        let nodes = parse::cluster_nodes(text).unwrap();
        let mut ev = Vec::new();
        assert!(!layout(&spec, &nodes, &mut ev));
        assert!(
            ev[1].ends_with(
                "WRONG: a replica would lead its shard from a better AZ (redis-node-1a instead of redis-node-1b-2): apply makes it the master"
            ),
            "{ev:?}"
        );
        // Back as the spec made it: right.
        let text = text
            .replace(
                "myself,slave id4 0 0 1 connected",
                "myself,master - 0 0 5 connected 0-5460",
            )
            .replace(
                "master - 0 0 4 connected 0-5460",
                "slave id1 0 0 5 connected",
            );
        let mut ev = Vec::new();
        assert!(
            layout(&spec, &parse::cluster_nodes(&text).unwrap(), &mut ev),
            "{ev:?}"
        );
    }

    #[test]
    fn the_layout_is_judged() {
        let mut spec = crate::redis::test_spec::reference();
        let mut extra = spec.nodes.nodes[0].clone();
        extra.name = "redis-node-1a-2".into();
        extra.private_ip = "10.0.1.11".parse().unwrap();
        spec.nodes.nodes.push(extra);
        let mut ev = Vec::new();
        assert!(layout(
            &spec,
            &view("0-5460", "5461-10922", "10923-16383"),
            &mut ev
        ));
        assert!(ev[0].contains("each within 2 % of 5461"), "{ev:?}");
        assert!(
            ev[1]
                == "replicas in another AZ than their master: 0 of 1 (redis-node-1a-2 replicates redis-node-1a in its own AZ)",
            "{ev:?}"
        );
        // 300 slots moved by hand: more than 2 % off.
        let mut ev = Vec::new();
        assert!(!layout(
            &spec,
            &view("0-5760", "5761-10922", "10923-16383"),
            &mut ev
        ));
        assert!(
            ev[0].contains("2 more than 2 % away from 5461: WRONG"),
            "{ev:?}"
        );
        // A slot left migrating.
        let mut ev = Vec::new();
        assert!(!layout(
            &spec,
            &view(
                "0-5460 [5460->-id2]",
                "5461-10922 [5460-<-id1]",
                "10923-16383"
            ),
            &mut ev
        ));
        assert!(
            ev[1].contains("slots left migrating/importing on"),
            "{ev:?}"
        );
    }
}
