//! Slot arithmetic of a shape change: the even share of each master, and the moves (lowest
//! slots first, from the masters with the most to spare) that reach it.

/// Slots in a cluster.
pub(super) const SLOTS: u32 = 16384;

/// A master may be this share of its even slot count away from it before the planner moves
/// slots (what `redis-cli --cluster rebalance` allows by default: 2 %).
pub const TOLERANCE: f64 = 0.02;

/// A slot move: `count` slots, the lowest numbered that `from` serves (`ranges`), to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub from: String,
    pub to: String,
    pub count: u32,
    pub ranges: Vec<(u16, u16)>,
}

/// Slot ranges, both ends included.
pub(super) type Ranges = Vec<(u16, u16)>;

/// The slots `count` of `ranges` (ascending) that go first, and what is left.
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
/// first `SLOTS % n` of them by current size one more, and empty every node of `leaving` (a
/// master that leaves the cluster or becomes a replica); none when nothing leaves and every
/// master is within [`TOLERANCE`] of its share.
pub fn balance(masters: &[(String, Ranges)], leaving: &[(String, Ranges)]) -> Vec<Move> {
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
    let off = leaving.iter().any(|(_, r)| count(r) > 0)
        || masters.iter().any(|(_, r)| {
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
    let all: Vec<&(String, Ranges)> = masters.iter().chain(leaving).collect();
    target.resize(all.len(), 0);
    let mut held: Vec<Ranges> = all.iter().map(|(_, r)| r.clone()).collect();
    let mut moves = Vec::new();
    for to in 0..masters.len() {
        while count(&held[to]) < target[to] {
            let deficit = target[to] - count(&held[to]);
            // The donor with the most to spare.
            let Some(from) = (0..all.len())
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
                from: all[from].0.clone(),
                to: all[to].0.clone(),
                count: n,
                ranges: taken,
            });
        }
    }
    moves
}

pub(super) fn ranges_text(r: &[(u16, u16)]) -> String {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
        let moves = balance(&masters, &[]);
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
        assert!(balance(&list, &[]).is_empty());
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
        assert!(balance(&masters, &[]).is_empty());
        let masters = vec![
            ("a".to_string(), vec![(0, 5760)]),
            ("b".to_string(), vec![(5761, 10922)]),
            ("c".to_string(), vec![(10923, 16383)]),
        ];
        let moves = balance(&masters, &[]);
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
