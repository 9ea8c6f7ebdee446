//! The simulated cluster: one list of members (what every node's `CLUSTER NODES` shows, each
//! with its own `myself`), kept by the cluster operations of phase 7.

use redisctl::observed::{ClusterView, Member};

use super::Sim;

const SLOTS: u32 = 16384;

fn count(r: &[(u16, u16)]) -> u32 {
    r.iter()
        .map(|(a, b)| u32::from(*b) - u32::from(*a) + 1)
        .sum()
}

/// The lowest `n` slots of `r`, and what is left.
/// Slot ranges, both ends included.
type Ranges = Vec<(u16, u16)>;

fn take_lowest(r: &[(u16, u16)], mut n: u32) -> (Ranges, Ranges) {
    let (mut taken, mut left) = (Vec::new(), Vec::new());
    let mut sorted = r.to_vec();
    sorted.sort_unstable();
    for (a, b) in sorted {
        let len = u32::from(b) - u32::from(a) + 1;
        if n == 0 {
            left.push((a, b));
        } else if len <= n {
            taken.push((a, b));
            n -= len;
        } else {
            let cut = a + n as u16;
            taken.push((a, cut - 1));
            left.push((cut, b));
            n = 0;
        }
    }
    (taken, left)
}

impl Sim {
    fn id_of(node: &str) -> String {
        format!("id-{node}")
    }

    fn ip_of(&self, node: &str) -> String {
        self.spec
            .nodes
            .nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.private_ip.to_string())
            .unwrap_or_else(|| panic!("{node} is not in the spec"))
    }

    /// The members as the cluster's nodes show them (empty: no cluster).
    pub(super) fn members(&self) -> Vec<Member> {
        use redisctl::observed::NodeObservation;
        self.o
            .nodes
            .values()
            .filter_map(|n| match n {
                NodeObservation::Reached(f) => f.cluster.as_ref(),
                _ => None,
            })
            .map(|c| c.members.clone())
            .max_by_key(|m| m.len())
            .unwrap_or_default()
    }

    /// Every member's view made from `members`.
    pub(super) fn set_members(&mut self, members: Vec<Member>) {
        let masters = members
            .iter()
            .filter(|m| m.master && count(&m.slots) > 0)
            .count() as u32;
        let names: Vec<String> = self
            .spec
            .nodes
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect();
        for name in names {
            let id = Self::id_of(&name);
            let Some(me) = members.iter().find(|m| m.id == id).cloned() else {
                continue;
            };
            let view: Vec<Member> = members
                .iter()
                .map(|m| Member {
                    myself: m.id == id,
                    ..m.clone()
                })
                .collect();
            let f = self.facts(&name);
            let kept = f.cluster.take().unwrap_or_default();
            f.cluster = Some(ClusterView {
                state: "ok".into(),
                slots_assigned: SLOTS,
                known_nodes: members.len() as u32,
                size: masters,
                own_slots: Some(count(&me.slots)),
                replica: !me.master,
                keys: kept.keys.or(Some(0)),
                link_up: (!me.master).then_some(true),
                members: view,
            });
        }
    }

    /// A cluster made of `nodes` as `redis-cli --cluster create` makes it (every node on its
    /// own address): the first masters serve the slots, split evenly; the others, rotated by
    /// one ("rotating the list sometimes helps to get better initial anti-affinity"), are
    /// given `replicas` to each master in turn.
    pub(super) fn create_cluster(&mut self, nodes: &[String], replicas: u32) {
        let total = nodes.len() as u32;
        let masters = total / (1 + replicas);
        let mut rest: Vec<&String> = nodes[masters as usize..].iter().collect();
        if !rest.is_empty() {
            rest.rotate_left(1);
        }
        let mut start = 0u32;
        let mut members = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let i = i as u32;
            let mut m = Member {
                id: Self::id_of(n),
                ip: self.ip_of(n),
                master: i < masters,
                ..Default::default()
            };
            if i < masters {
                let own = SLOTS / masters + u32::from(i < SLOTS % masters);
                m.slots = vec![(start as u16, (start + own - 1) as u16)];
                start += own;
            } else {
                let at = rest.iter().position(|r| *r == n).expect("a replica") as u32;
                let master = (at / replicas.max(1)).min(masters - 1);
                m.master_id = Some(Self::id_of(&nodes[master as usize]));
            }
            members.push(m);
        }
        self.set_members(members);
    }

    pub(super) fn join(&mut self, node: &str, replica_of: Option<&str>) {
        let mut members = self.members();
        assert!(
            !members.is_empty(),
            "{node} joins a cluster that does not exist"
        );
        let id = Self::id_of(node);
        let ip = self.ip_of(node);
        members.retain(|m| m.id != id);
        members.push(Member {
            id,
            ip,
            master: replica_of.is_none(),
            master_id: replica_of.map(Self::id_of),
            ..Default::default()
        });
        self.set_members(members);
    }

    pub(super) fn move_slots(&mut self, from: &str, to: &str, n: u32) {
        let mut members = self.members();
        let (fi, ti) = (
            members
                .iter()
                .position(|m| m.id == Self::id_of(from))
                .expect("from is a member"),
            members
                .iter()
                .position(|m| m.id == Self::id_of(to))
                .expect("to is a member"),
        );
        assert!(members[ti].master, "slots moved to a replica");
        assert!(
            count(&members[fi].slots) >= n,
            "{from} has fewer than {n} slots"
        );
        let (taken, left) = take_lowest(&members[fi].slots, n);
        members[fi].slots = left;
        members[ti].slots.extend(taken);
        if members[fi].slots.is_empty() {
            // Redis 7 (cluster-allow-replica-migration yes): a master that loses its last
            // slot becomes a replica of the node that took it, and so do its replicas.
            let (from_id, to_id) = (members[fi].id.clone(), members[ti].id.clone());
            for m in members.iter_mut() {
                if m.id == from_id || m.master_id.as_deref() == Some(from_id.as_str()) {
                    m.master = false;
                    m.master_id = Some(to_id.clone());
                }
            }
        }
        self.set_members(members);
    }

    /// The member at `ip` leaves: it must serve nothing and no one may replicate it.
    pub(super) fn leave(&mut self, ip: &str) {
        let mut members = self.members();
        let Some(i) = members.iter().position(|m| m.ip == ip) else {
            return;
        };
        let id = members[i].id.clone();
        assert_eq!(
            count(&members[i].slots),
            0,
            "{ip} leaves while it serves slots"
        );
        assert!(
            !members
                .iter()
                .any(|m| m.master_id.as_deref() == Some(id.as_str())),
            "{ip} leaves while a node replicates it"
        );
        members.remove(i);
        self.set_members(members);
    }

    pub(super) fn fix_slots(&mut self) {
        let mut members = self.members();
        for m in &mut members {
            m.open_slots.clear();
        }
        self.set_members(members);
    }
}

/// What an operator or a killed apply can leave, for the scenarios.
impl Sim {
    /// `n` slots moved from `from` to `to`, then `slot` (still `from`'s) left migrating.
    pub fn move_slots_left_open(&mut self, from: &str, to: &str, n: u32, slot: u16) {
        self.move_slots(from, to, n);
        let mut members = self.members();
        for m in &mut members {
            if m.id == Self::id_of(from) || m.id == Self::id_of(to) {
                m.open_slots = vec![slot];
            }
        }
        self.set_members(members);
    }

    /// `n` slots moved by hand (`redis-cli --cluster reshard`).
    pub fn move_slots_by_hand(&mut self, from: &str, to: &str, n: u32) {
        self.move_slots(from, to, n);
    }

    /// `CLUSTER FAILOVER` on replica `node`: it takes its master's slots, the master becomes
    /// its replica.
    pub fn fail_over_to(&mut self, node: &str) {
        let mut members = self.members();
        let id = Self::id_of(node);
        let i = members.iter().position(|m| m.id == id).expect("a member");
        let master_id = members[i].master_id.clone().expect("a replica");
        let j = members
            .iter()
            .position(|m| m.id == master_id)
            .expect("its master");
        members[i].slots = std::mem::take(&mut members[j].slots);
        members[i].master = true;
        members[i].master_id = None;
        members[j].master = false;
        members[j].master_id = Some(id);
        self.set_members(members);
    }
}
