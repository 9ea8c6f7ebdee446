//! Masters apart: after failovers, a cluster of the spec's shape can have two masters in one
//! AZ (losing that AZ then costs two shards their master) or a master whose replicas share its
//! AZ. Planned back apart with a failover.

use crate::observed::NodeObservation;

use super::super::builder::Builder;
use super::super::model::*;
use super::topology::{Named, failover, health, swap_in_flight};

/// A cluster of the spec's shape whose failovers put masters together: each shard (a master
/// and its replicas) is led, where it can be, by a member in an AZ no other master is in, then
/// by one with the fewest of its shard in its own AZ (losing an AZ then costs the fewest
/// masters, and no shard its last copy). A replica that does better than its master takes
/// over (`CLUSTER FAILOVER`, only from a replica whose link to its master is up); a replica
/// left in its master's AZ is noted. Returns whether anything was planned.
pub(super) fn anti_affinity(
    b: &mut Builder<'_>,
    named: &[Named],
    service_steps: &[String],
) -> bool {
    if swap_in_flight(b) {
        return false;
    }
    let spec = b.spec;
    let az_of = |name: &str| {
        spec.nodes
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|x| x.az.clone())
            .unwrap_or_default()
    };
    let link_up = |name: &str| {
        matches!(b.observed.nodes.get(name), Some(NodeObservation::Reached(f))
            if f.cluster.as_ref().and_then(|c| c.link_up) == Some(true))
    };
    // Shards: master name → replica names.
    let mut shards: Vec<(String, Vec<String>)> = named
        .iter()
        .filter(|x| x.member.master && x.member.slot_count() > 0)
        .map(|x| (x.name.clone(), Vec::new()))
        .collect();
    for x in named.iter().filter(|x| !x.member.master) {
        let master = named
            .iter()
            .find(|m| Some(m.member.id.as_str()) == x.member.master_id.as_deref());
        if let Some(m) = master
            && let Some(s) = shards.iter_mut().find(|(n, _)| *n == m.name)
        {
            s.1.push(x.name.clone());
        }
    }
    let leaders = better_leaders(&spec.nodes.nodes, &shards, &link_up);
    let mut takeovers: Vec<(String, String, String)> = Vec::new();
    for (i, (master, _)) in shards.iter().enumerate() {
        let Some(Leader {
            node: r,
            now,
            better,
        }) = &leaders[i]
        else {
            continue;
        };
        takeovers.push((
            r.clone(),
            master.clone(),
            if better.0 < now.0 {
                format!(
                    "{master} is a master in {} with {} other master(s); {r}, its replica in {}, takes over (CLUSTER FAILOVER) so that losing one AZ costs fewer masters",
                    az_of(master),
                    now.0,
                    az_of(r)
                )
            } else {
                format!(
                    "{} of {master}'s replicas are in its AZ ({}); with {r} as master ({}), {}: it takes over (CLUSTER FAILOVER)",
                    now.1,
                    az_of(master),
                    az_of(r),
                    better.1
                )
            },
        ));
    }
    let leaders: Vec<String> = shards
        .iter()
        .zip(&leaders)
        .map(|((m, _), l)| l.as_ref().map_or_else(|| m.clone(), |l| l.node.clone()))
        .collect();
    for (i, (_, replicas)) in shards.iter().enumerate() {
        let leader = &leaders[i];
        let same: Vec<&String> = std::iter::once(&shards[i].0)
            .chain(replicas)
            .filter(|m| *m != leader && az_of(m) == az_of(leader))
            .collect();
        if !same.is_empty() {
            b.note(
                NoteLevel::Info,
                &format!("cluster.{leader}"),
                format!(
                    "{} in the same AZ as {leader}, the master it replicates ({}): no other node of the shard can lead it from another AZ",
                    same.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    az_of(leader)
                ),
            );
        }
    }
    if takeovers.is_empty() {
        return false;
    }
    let mut last = Vec::new();
    for (r, master, reason) in takeovers {
        last.push(failover(b, &r, &master, reason, service_steps));
    }
    health(b, last);
    true
}

/// A replica that should lead its shard instead of its master: (other masters in its AZ, other
/// members of the shard in its AZ) now and with it as master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub node: String,
    pub now: (usize, usize),
    pub better: (usize, usize),
}

/// For each shard (master, replicas: spec node names), in order, the replica that leads it
/// better (see [`anti_affinity`]): fewer other masters in its AZ, then fewer of its shard in
/// its AZ; only replicas `eligible` says may take over. A shard's new leader counts for the
/// shards after it. Shared with `verify`, which fails a layout this would change.
pub fn better_leaders(
    nodes: &[crate::spec::Node],
    shards: &[(String, Vec<String>)],
    eligible: &dyn Fn(&str) -> bool,
) -> Vec<Option<Leader>> {
    let az_of = |name: &str| {
        nodes
            .iter()
            .find(|n| n.name == name)
            .map(|x| x.az.as_str())
            .unwrap_or_default()
    };
    let mut leaders: Vec<String> = shards.iter().map(|(m, _)| m.clone()).collect();
    let mut out = Vec::new();
    for (i, (master, replicas)) in shards.iter().enumerate() {
        let members: Vec<&String> = std::iter::once(master).chain(replicas).collect();
        let score = |leader: &str| {
            let az = az_of(leader);
            let masters_there = leaders
                .iter()
                .enumerate()
                .filter(|(j, l)| *j != i && az_of(l) == az)
                .count();
            let same = members
                .iter()
                .filter(|m| m.as_str() != leader && az_of(m) == az)
                .count();
            (masters_there, same)
        };
        let now = score(master);
        let best = replicas
            .iter()
            .filter(|r| eligible(r))
            .map(|r| (score(r), r))
            .min_by(|a, b| a.0.cmp(&b.0));
        match best {
            Some((better, r)) if better < now => {
                leaders[i] = r.clone();
                out.push(Some(Leader {
                    node: r.clone(),
                    now,
                    better,
                }));
            }
            _ => out.push(None),
        }
    }
    out
}
