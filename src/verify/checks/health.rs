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
}
