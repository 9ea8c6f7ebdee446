//! The layout of a cluster formed from nothing: which nodes are masters and with which slots,
//! and which master each replica follows. Pure, so that the plan shows exactly what apply
//! makes (`node/formation.rs` makes it).
//!
//! - **Masters** are picked in the spec's order, each time from the AZ with the fewest masters
//!   so far (a derived layout lists one node per AZ in turn, so its first `masters` nodes).
//! - **Slots** are split as `redis-cli --cluster create` splits them (16384 / masters, rounded),
//!   in the masters' spec order: 3 masters serve 0-5460, 5461-10922 and 10923-16383.
//! - **Replicas** (the other nodes, in the spec's order) each follow the master with the fewest
//!   replicas so far, one in another AZ first; among those, the k-th replica prefers the master
//!   `k - 1 - round` places on (mod masters), so that the replicas of one AZ spread over the
//!   other AZs' masters round after round.

use crate::spec::Node;

/// The number of hash slots.
pub const SLOTS: u32 = 16384;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formation {
    /// Each master (spec order) and the slots it serves: (name, first, last).
    pub masters: Vec<(String, u16, u16)>,
    /// Each replica (spec order) and its master.
    pub replicas: Vec<(String, String)>,
}

/// The slots of `masters` masters, as `redis-cli --cluster create` assigns them.
pub fn slot_ranges(masters: usize) -> Vec<(u16, u16)> {
    let per = f64::from(SLOTS) / masters as f64;
    let mut out = Vec::with_capacity(masters);
    let (mut first, mut cursor) = (0u32, 0f64);
    for i in 0..masters {
        let mut last = (cursor + per - 1.0).round() as u32;
        if last > SLOTS - 1 || i == masters - 1 {
            last = SLOTS - 1;
        }
        last = last.max(first);
        out.push((first as u16, last as u16));
        first = last + 1;
        cursor += per;
    }
    out
}

/// The formation of `nodes` with `masters` masters (see the module doc). `masters` is at least
/// one and at most `nodes.len()` (the spec guarantees both).
pub fn formation(nodes: &[Node], masters: usize) -> Formation {
    let masters = masters.clamp(1, nodes.len().max(1));
    let mut picked: Vec<usize> = Vec::with_capacity(masters);
    while picked.len() < masters && picked.len() < nodes.len() {
        let load = |az: &str| picked.iter().filter(|&&i| nodes[i].az == az).count();
        let next = (0..nodes.len())
            .filter(|i| !picked.contains(i))
            .min_by_key(|&i| (load(&nodes[i].az), i))
            .expect("a node left");
        picked.push(next);
    }
    picked.sort_unstable();
    let ranges = slot_ranges(picked.len());
    let m = picked.len();
    let mut count = vec![0usize; m];
    let mut replicas = Vec::new();
    for (k, node) in nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !picked.contains(i))
        .map(|(_, n)| n)
        .enumerate()
    {
        let preferred = (k % m + m - 1 - (k / m) % m) % m;
        let j = (0..m)
            .min_by_key(|&j| {
                let same_az = nodes[picked[j]].az == node.az;
                (count[j], same_az, (j + m - preferred) % m)
            })
            .expect("a master");
        count[j] += 1;
        replicas.push((node.name.clone(), nodes[picked[j]].name.clone()));
    }
    Formation {
        masters: picked
            .iter()
            .zip(ranges)
            .map(|(&i, (a, b))| (nodes[i].name.clone(), a, b))
            .collect(),
        replicas,
    }
}

impl Formation {
    /// For a plan: "redis-node-1a 0-5460, … ; redis-node-1a-2 replicates redis-node-1c, …".
    pub fn describe(&self) -> String {
        let masters: Vec<String> = self
            .masters
            .iter()
            .map(|(n, a, b)| format!("{n} {a}-{b}"))
            .collect();
        if self.replicas.is_empty() {
            return format!("masters {}", masters.join(", "));
        }
        let replicas: Vec<String> = self
            .replicas
            .iter()
            .map(|(r, m)| format!("{r} → {m}"))
            .collect();
        format!(
            "masters {}; replicas {}",
            masters.join(", "),
            replicas.join(", ")
        )
    }

    /// The master of `node`, or None for a master.
    pub fn master_of(&self, node: &str) -> Option<&str> {
        self.replicas
            .iter()
            .find(|(r, _)| r == node)
            .map(|(_, m)| m.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, az: &str) -> Node {
        Node {
            name: name.into(),
            subnet: format!("s-{az}"),
            az: az.into(),
            private_ip: std::net::Ipv4Addr::LOCALHOST,
        }
    }

    /// A derived layout: one node per AZ in turn, `-2`, `-3` for the later rounds.
    fn derived(masters: usize, replicas: usize) -> Vec<Node> {
        let azs = ["a", "b", "c"];
        let mut out = Vec::new();
        for round in 0..=replicas {
            for i in 0..masters {
                let base = format!("redis-node-{}{}", i / 3 + 1, azs[i % 3]);
                let name = if round == 0 {
                    base
                } else {
                    format!("{base}-{}", round + 1)
                };
                out.push(node(&name, azs[i % 3]));
            }
        }
        out
    }

    fn az_of<'a>(nodes: &'a [Node], name: &str) -> &'a str {
        &nodes.iter().find(|n| n.name == name).unwrap().az
    }

    #[test]
    fn slots_are_split_as_redis_cli_splits_them() {
        assert_eq!(
            slot_ranges(3),
            vec![(0, 5460), (5461, 10922), (10923, 16383)]
        );
        assert_eq!(slot_ranges(1), vec![(0, 16383)]);
        for m in 1..=40 {
            let r = slot_ranges(m);
            assert_eq!(r.len(), m);
            assert_eq!(r[0].0, 0);
            assert_eq!(r[m - 1].1, 16383);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0, "{m}: {r:?}");
            }
            let sizes: Vec<u32> = r.iter().map(|(a, b)| u32::from(b - a) + 1).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "{m}: {sizes:?}");
        }
    }

    #[test]
    fn three_by_one_is_the_layout_redis_cli_made() {
        let nodes = derived(3, 1);
        let f = formation(&nodes, 3);
        assert_eq!(
            f.describe(),
            "masters redis-node-1a 0-5460, redis-node-1b 5461-10922, redis-node-1c 10923-16383; \
             replicas redis-node-1a-2 → redis-node-1c, redis-node-1b-2 → redis-node-1a, \
             redis-node-1c-2 → redis-node-1b"
        );
        assert_eq!(f.master_of("redis-node-1b-2"), Some("redis-node-1a"));
        assert_eq!(f.master_of("redis-node-1a"), None);
    }

    #[test]
    fn every_replica_is_in_another_az_than_its_master_and_the_load_is_even() {
        for (m, r) in [(3, 1), (3, 2), (6, 1), (6, 2), (9, 2), (15, 1), (12, 1)] {
            let nodes = derived(m, r);
            let f = formation(&nodes, m);
            assert_eq!(f.masters.len(), m);
            assert_eq!(f.replicas.len(), m * r);
            for (rep, master) in &f.replicas {
                assert_ne!(
                    az_of(&nodes, rep),
                    az_of(&nodes, master),
                    "{m}x{r}: {}",
                    f.describe()
                );
            }
            for (master, _, _) in &f.masters {
                let n = f.replicas.iter().filter(|(_, x)| x == master).count();
                assert_eq!(n, r, "{m}x{r}: {}", f.describe());
            }
            // Masters spread over the AZs.
            for az in ["a", "b", "c"] {
                let n = f
                    .masters
                    .iter()
                    .filter(|(x, _, _)| az_of(&nodes, x) == az)
                    .count();
                assert_eq!(n, m / 3, "{m}x{r}: {}", f.describe());
            }
        }
    }

    #[test]
    fn masters_are_spread_over_the_azs_whatever_the_spec_order() {
        // An explicit node list that names the AZ-a nodes first.
        let nodes = vec![
            node("a1", "a"),
            node("a2", "a"),
            node("b1", "b"),
            node("b2", "b"),
            node("c1", "c"),
            node("c2", "c"),
        ];
        let f = formation(&nodes, 3);
        let masters: Vec<&str> = f.masters.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(masters, ["a1", "b1", "c1"]);
        for (rep, master) in &f.replicas {
            assert_ne!(
                az_of(&nodes, rep),
                az_of(&nodes, master),
                "{}",
                f.describe()
            );
        }
    }

    #[test]
    fn one_az_and_no_replicas_are_fine() {
        let nodes = vec![node("x", "a"), node("y", "a"), node("z", "a")];
        let f = formation(&nodes, 3);
        assert_eq!(f.replicas, vec![]);
        assert_eq!(f.masters[2], ("z".to_string(), 10923, 16383));
        let f = formation(&nodes, 1);
        assert_eq!(f.masters, vec![("x".to_string(), 0, 16383)]);
        assert_eq!(f.replicas.len(), 2);
        assert!(f.replicas.iter().all(|(_, m)| m == "x"));
    }
}
