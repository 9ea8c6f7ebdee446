//! Phase 7 on a running cluster: its shape made the spec's. Nodes the spec has and the cluster
//! does not (more masters, more replicas) join it; a master the spec wants and the cluster
//! lacks is chosen among them (or among members that serve nothing) and given its share of the
//! slots, moved from the masters that hold more than theirs; the others become replicas of the
//! masters with the fewest, another AZ's first. Everything is planned from the cluster as the
//! nodes report it (slots, roles, links), so a cluster changed by hand is judged as it is: a
//! manual failover is not undone, a reshard within [`TOLERANCE`] is left alone, and a move a
//! killed apply left open is finished before anything else.

use std::collections::{BTreeMap, BTreeSet};

use super::super::builder::Builder;
use super::super::model::*;
use crate::observed::{ClusterView, Member, NodeObservation};
use crate::spec::types::Node;

/// Slots in a cluster.
const SLOTS: u32 = 16384;

/// A master may be this share of its even slot count away from it before the planner moves
/// slots (what `redis-cli --cluster rebalance` allows by default: 2 %).
pub const TOLERANCE: f64 = 0.02;

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

/// A slot move: `count` slots, the lowest numbered that `from` serves (`ranges`), to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub from: String,
    pub to: String,
    pub count: u32,
    pub ranges: Vec<(u16, u16)>,
}

/// The slots `count` of `ranges` (ascending) that go first, and what is left.
/// Slot ranges, both ends included.
type Ranges = Vec<(u16, u16)>;

fn take_lowest(ranges: &[(u16, u16)], count: u32) -> (Ranges, Ranges) {
    let mut taken = Vec::new();
    let mut left = Vec::new();
    let mut need = count;
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    for (a, b) in sorted {
        let len = u32::from(b) - u32::from(a) + 1;
        if need == 0 {
            left.push((a, b));
        } else if len <= need {
            taken.push((a, b));
            need -= len;
        } else {
            let cut = a + need as u16;
            taken.push((a, cut - 1));
            left.push((cut, b));
            need = 0;
        }
    }
    (taken, left)
}

/// The moves that give every master in `masters` (name, slot ranges) its even share, the
/// first `SLOTS % n` of them by current size one more; none when every master is within
/// [`TOLERANCE`] of its share.
pub fn balance(masters: &[(String, Vec<(u16, u16)>)]) -> Vec<Move> {
    let n = masters.len() as u32;
    if n == 0 {
        return Vec::new();
    }
    let count = |r: &[(u16, u16)]| -> u32 {
        r.iter()
            .map(|(a, b)| u32::from(*b) - u32::from(*a) + 1)
            .sum()
    };
    let even = SLOTS / n;
    let off = masters.iter().any(|(_, r)| {
        (f64::from(count(r)) - f64::from(even)).abs() > f64::from(even) * TOLERANCE + 1.0
    });
    if !off {
        return Vec::new();
    }
    // The larger ones keep the extra slot: fewer moves.
    let mut order: Vec<usize> = (0..masters.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(count(&masters[i].1)), i));
    let mut target = vec![even; masters.len()];
    for &i in order.iter().take((SLOTS % n) as usize) {
        target[i] += 1;
    }
    let mut held: Vec<Vec<(u16, u16)>> = masters.iter().map(|(_, r)| r.clone()).collect();
    let mut moves = Vec::new();
    for to in 0..masters.len() {
        while count(&held[to]) < target[to] {
            let deficit = target[to] - count(&held[to]);
            // The donor with the most to spare.
            let Some(from) = (0..masters.len())
                .filter(|&i| count(&held[i]) > target[i])
                .max_by_key(|&i| (count(&held[i]) - target[i], std::cmp::Reverse(i)))
            else {
                break;
            };
            let n = deficit.min(count(&held[from]) - target[from]);
            let (taken, left) = take_lowest(&held[from], n);
            held[from] = left;
            held[to].extend(taken.iter().copied());
            moves.push(Move {
                from: masters[from].0.clone(),
                to: masters[to].0.clone(),
                count: n,
                ranges: taken,
            });
        }
    }
    moves
}

fn ranges_text(r: &[(u16, u16)]) -> String {
    let mut parts: Vec<String> = r
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if parts.len() > 6 {
        let more = parts.len() - 5;
        parts.truncate(5);
        parts.push(format!("and {more} more ranges"));
    }
    parts.join(", ")
}

/// Plan joins and slot moves on a running cluster. Returns false (nothing planned) when this
/// is not a running cluster's shape change: no node sees every slot assigned, a spec node
/// outside the cluster holds slots or keys (an interrupted formation, finished elsewhere),
/// or the cluster knows a node that is failing or that the spec does not have.
pub(super) fn plan(
    b: &mut Builder<'_>,
    created: &BTreeSet<String>,
    service_steps: &[String],
) -> bool {
    let spec = b.spec;
    let Some(v) = view(b) else {
        return false;
    };
    let by_ip: BTreeMap<&str, &Member> = v
        .members
        .iter()
        .filter(|m| !m.ip.is_empty())
        .map(|m| (m.ip.as_str(), m))
        .collect();
    let spec_ips: BTreeSet<String> = spec
        .nodes
        .nodes
        .iter()
        .map(|n| n.private_ip.to_string())
        .collect();
    let leaving: Vec<&Member> = v
        .members
        .iter()
        .filter(|m| !m.ip.is_empty() && !spec_ips.contains(&m.ip) && !m.failing)
        .collect();
    if !leaving.is_empty() {
        let masters = leaving
            .iter()
            .filter(|m| m.master && m.slot_count() > 0)
            .count();
        b.note(
            NoteLevel::Blocker,
            "cluster",
            format!(
                "the cluster has {} the spec does not ({}): removing {} from a running cluster ({}then forgetting them on every node) is not supported yet; put the nodes back in the spec",
                if leaving.len() == 1 { "a node" } else { "nodes" },
                leaving.iter().map(|m| m.ip.as_str()).collect::<Vec<_>>().join(", "),
                if masters > 0 { "masters" } else { "replicas" },
                if masters > 0 { "moving their slots away first, " } else { "" },
            ),
        );
        return true;
    }
    if v.members
        .iter()
        .any(|m| m.failing || m.handshake || !spec_ips.contains(&m.ip))
    {
        return false;
    }
    let name_of_id: BTreeMap<&str, &str> = spec
        .nodes
        .nodes
        .iter()
        .filter_map(|n| {
            by_ip
                .get(n.private_ip.to_string().as_str())
                .map(|m| (m.id.as_str(), n.name.as_str()))
        })
        .collect();
    // Spec nodes outside the cluster: each must be new, or empty and alone.
    let mut joiners: Vec<&Node> = Vec::new();
    for n in &spec.nodes.nodes {
        if by_ip.contains_key(n.private_ip.to_string().as_str()) {
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
    // Members that serve slots are masters; members that are masters of nothing have no
    // role yet (a join a killed apply left half done).
    let mut masters: Vec<(String, Vec<(u16, u16)>)> = Vec::new();
    let mut roleless: Vec<&Node> = Vec::new();
    let mut replicas_of: BTreeMap<String, usize> = BTreeMap::new();
    for n in &spec.nodes.nodes {
        let Some(m) = by_ip.get(n.private_ip.to_string().as_str()) else {
            continue;
        };
        if m.master && m.slot_count() > 0 {
            masters.push((n.name.clone(), m.slots.clone()));
        } else if m.master {
            roleless.push(n);
        } else if let Some(master) = m.master_id.as_deref().and_then(|id| name_of_id.get(id)) {
            *replicas_of.entry(master.to_string()).or_default() += 1;
        }
    }
    let want = spec.nodes.masters as usize;
    if masters.len() > want {
        b.note(
            NoteLevel::Blocker,
            "cluster",
            format!(
                "the cluster has {} masters serving slots and the spec {want}: removing masters from a running cluster (moving their slots away first) is not supported yet; set masters back to {}",
                masters.len(),
                masters.len()
            ),
        );
        return true;
    }
    // New masters: members without a role first, then the joiners; each in the AZ with the
    // fewest masters.
    let mut candidates: Vec<&Node> = roleless.iter().chain(joiners.iter()).copied().collect();
    let mut new_masters: Vec<&Node> = Vec::new();
    while masters.len() + new_masters.len() < want && !candidates.is_empty() {
        let az_load = |az: &str| {
            masters
                .iter()
                .filter(|(m, _)| node_by_name(m).is_some_and(|x| x.az == az))
                .count()
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
    // The rest become replicas: of the master with the fewest, another AZ's first.
    let mut replica_of: BTreeMap<&str, String> = BTreeMap::new();
    for n in &candidates {
        let pick = masters
            .iter()
            .map(|(m, _)| m)
            .min_by_key(|m| {
                let same_az = node_by_name(m).is_some_and(|x| x.az == n.az);
                (replicas_of.get(*m).copied().unwrap_or(0), same_az)
            })
            .cloned();
        if let Some(m) = pick {
            *replicas_of.entry(m.clone()).or_default() += 1;
            replica_of.insert(n.name.as_str(), m);
        }
    }
    // A greedy choice can leave the last replica with only its own AZ's master: swap masters
    // with another new replica when that puts both in other AZs.
    let az_of = |name: &str| node_by_name(name).map(|x| x.az.clone()).unwrap_or_default();
    let names: Vec<&str> = replica_of.keys().copied().collect();
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
    let moves = balance(&masters);
    let open: Vec<u16> = v
        .members
        .iter()
        .flat_map(|m| m.open_slots.iter().copied())
        .collect::<BTreeSet<u16>>()
        .into_iter()
        .collect();
    let becoming_replica: Vec<&Node> = roleless
        .iter()
        .filter(|n| replica_of.contains_key(n.name.as_str()))
        .copied()
        .collect();
    if joiners.is_empty() && becoming_replica.is_empty() && moves.is_empty() && open.is_empty() {
        return false;
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
    let mut joins = Vec::new();
    for n in joiners.iter().chain(becoming_replica.iter()) {
        let role = match replica_of.get(n.name.as_str()) {
            Some(m) => {
                let other_az = node_by_name(m).is_some_and(|x| x.az != n.az);
                format!(
                    "a replica of {m}{}",
                    if other_az {
                        " (another AZ)"
                    } else {
                        " (same AZ: no other has room)"
                    }
                )
            }
            None => "a master (slots below)".into(),
        };
        let addr = format!("cluster.{}", n.name);
        let joined = by_ip.contains_key(n.private_ip.to_string().as_str());
        b.steps.push(
            Step::new(
                &addr,
                Action::Run,
                Phase::ClusterCreate,
                if joined {
                    format!(
                        "{} is in the cluster but serves nothing: it becomes {role}",
                        n.name
                    )
                } else {
                    format!("{} is not in the cluster: it joins as {role}", n.name)
                },
            )
            .changes(vec![Change::create(
                "join",
                format!("CLUSTER MEET from {via}; {role}"),
            )])
            .depends_on(last.clone())
            .op(Op::Node(NodeOp::JoinCluster {
                node: n.name.clone(),
                via: via.clone(),
                replica_of: replica_of.get(n.name.as_str()).cloned(),
            })),
        );
        joins.push(addr);
    }
    if !joins.is_empty() {
        last = joins;
    }
    let keys_of = |name: &str| -> Option<u64> {
        match b.observed.nodes.get(name) {
            Some(NodeObservation::Reached(f)) => f.cluster.as_ref().and_then(|c| c.keys),
            _ => None,
        }
    };
    let slots_of = |name: &str| -> u32 {
        by_ip
            .get(
                node_by_name(name)
                    .map(|n| n.private_ip.to_string())
                    .unwrap_or_default()
                    .as_str(),
            )
            .map(|m| m.slot_count())
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
        b.steps.push(
            Step::new(
                &addr,
                Action::Run,
                Phase::ClusterCreate,
                format!(
                    "{} slots move from {} to {} with their keys, while clients keep working (each slot: MIGRATE its keys, then hand it over)",
                    m.count, m.from, m.to
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
            })),
        );
        last = vec![addr];
    }
    let n_nodes = spec.nodes.nodes.len();
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
        .depends_on(last)
        .op(Op::Node(NodeOp::WaitHealthy { nodes: n_nodes })),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(r: &[(u16, u16)]) -> u32 {
        r.iter()
            .map(|(a, b)| u32::from(*b) - u32::from(*a) + 1)
            .sum()
    }

    #[test]
    fn three_to_four_masters_moves_a_quarter() {
        let m = |n: &str, r: Vec<(u16, u16)>| (n.to_string(), r);
        let masters = vec![
            m("a", vec![(0, 5460)]),
            m("b", vec![(5461, 10922)]),
            m("c", vec![(10923, 16383)]),
            m("d", vec![]),
        ];
        let moves = balance(&masters);
        assert_eq!(moves.len(), 3, "{moves:?}");
        assert!(moves.iter().all(|x| x.to == "d"));
        let got: u32 = moves.iter().map(|x| x.count).sum();
        assert_eq!(got, 4096);
        // Each donor gives its lowest slots.
        for x in &moves {
            let lowest = masters.iter().find(|(n, _)| *n == x.from).unwrap().1[0].0;
            assert_eq!(x.ranges[0].0, lowest, "{moves:?}");
        }
        for x in &moves {
            assert_eq!(count(&x.ranges), x.count);
        }
        // Balanced: nothing more to do.
        let mut after: BTreeMap<String, Vec<(u16, u16)>> = masters.iter().cloned().collect();
        for x in &moves {
            let (taken, left) = take_lowest(&after[&x.from], x.count);
            after.insert(x.from.clone(), left);
            after.get_mut(&x.to).unwrap().extend(taken);
        }
        let list: Vec<(String, Vec<(u16, u16)>)> = after.into_iter().collect();
        assert!(balance(&list).is_empty());
        for (_, r) in &list {
            assert!((4095..=4097).contains(&count(r)), "{list:?}");
        }
    }

    #[test]
    fn within_tolerance_is_left_alone() {
        let masters = vec![
            ("a".to_string(), vec![(0, 5560)]),
            ("b".to_string(), vec![(5561, 10922)]),
            ("c".to_string(), vec![(10923, 16383)]),
        ];
        // 5561 against 5461: 100 off, under 2 % (109).
        assert!(balance(&masters).is_empty());
        let masters = vec![
            ("a".to_string(), vec![(0, 5760)]),
            ("b".to_string(), vec![(5761, 10922)]),
            ("c".to_string(), vec![(10923, 16383)]),
        ];
        let moves = balance(&masters);
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!((moves[0].from.as_str(), moves[0].to.as_str()), ("a", "b"));
        assert_eq!(moves[0].count, 299);
    }

    #[test]
    fn lowest_slots_are_taken_across_ranges() {
        let (t, l) = take_lowest(&[(10, 12), (0, 2)], 4);
        assert_eq!(t, vec![(0, 2), (10, 10)]);
        assert_eq!(l, vec![(11, 12)]);
    }
}
