//! Forming a cluster, and finishing one whose formation an interrupted apply left half done.
//!
//! **Formation** makes the layout of [`crate::redis::formation`] directly, each step one round
//! trip per node, all nodes at once: (1) each master is given its slots (CLUSTER ADDSLOTS) and
//! every node a config epoch of its own (CLUSTER SET-CONFIG-EPOCH, which a node takes only
//! while it knows no other node); (2) every node meets the nodes after it in the spec's order,
//! so every pair meets once, directly, without waiting for gossip to carry the news; (3) once
//! every node knows every other, each replica follows its master (CLUSTER REPLICATE); (4) every
//! node MEETs every other once more, which tells each node the others' slots and roles at once
//! (see [`NodeRuntime::announce`]); then the wait for a healthy cluster. (`redis-cli --cluster
//! create` met every node from the first only and waited on gossip in one-second steps: 23 s
//! for 12 nodes.)
//!
//! **An interrupted formation** (a kill or Ctrl-C in the middle of it):
//!
//! - **Not every slot assigned yet** (killed before or during the ADDSLOTS): no client could
//!   have written (a cluster without full coverage refuses every query), and the planner
//!   checked that no node holds a key. Every node is reset (`CLUSTER RESET HARD`, which Redis
//!   itself refuses on a master holding keys) and the cluster formed again.
//! - **Every slot assigned** (killed during MEET, the join or the replicas): the nodes meet
//!   (CLUSTER MEET is a no-op for a node already known), then each node that serves no slot
//!   and is not a replica yet becomes the replica of the master with the fewest replicas,
//!   another AZ's first (the formation's own choice when that master serves slots); then the
//!   wait for a healthy cluster.
//!
//! Each step is idempotent: a run killed here is finished by the next apply the same way.

use std::time::{Duration, Instant};

use super::{NodeError, NodeRuntime, admin_cli, admin_cli_command};
use crate::redis::formation::{self as layout, Formation};
use crate::redis::parse::{self, ClusterNode};

/// How long the nodes may take to know each other after the MEETs.
const JOIN_BOUND: Duration = Duration::from_secs(120);
/// Between two looks at every node while they join.
const JOIN_POLL: Duration = Duration::from_millis(100);

/// The first error of a round run on every node at once, or the round's results.
fn all_ok<T>(results: Vec<Result<T, NodeError>>) -> Result<Vec<T>, NodeError> {
    results.into_iter().collect()
}

impl NodeRuntime {
    /// `CLUSTER NODES` as `node` sees it.
    pub(super) async fn cluster_nodes_of(&self, node: &str) -> Result<Vec<ClusterNode>, NodeError> {
        let s = self.session(node).await?;
        let out = s
            .sudo_ok(
                "CLUSTER NODES",
                &format!("{} CLUSTER NODES", admin_cli(&self.spec)),
                self.stdin(),
            )
            .await?;
        parse::cluster_nodes(&out.stdout_str()).map_err(|e| NodeError::Failed {
            node: node.into(),
            what: format!("CLUSTER NODES: {e}"),
        })
    }

    /// One Redis command as the operator user on `node`; its answer must be `OK`.
    pub(super) async fn cluster_command(&self, node: &str, args: &str) -> Result<(), NodeError> {
        self.cli_batch_ok(node, args, &[args.to_string()]).await
    }

    /// Reset every node of a cluster whose formation stopped before every slot was assigned,
    /// then create it (see the module doc).
    pub async fn reform_cluster(&self, nodes: &[String], replicas: u32) -> Result<(), NodeError> {
        crate::progress::status("resetting the half-formed cluster (CLUSTER RESET HARD)");
        for node in nodes {
            // Redis refuses this on a master that holds keys: nothing is lost by accident.
            self.cluster_command(node, "CLUSTER RESET HARD").await?;
        }
        self.create_cluster(nodes, replicas).await
    }

    /// The formation of `nodes` (the spec's, in its order) with `replicas` replicas each.
    fn formation_of(&self, nodes: &[String], replicas: u32) -> Result<Formation, NodeError> {
        let specs: Vec<crate::spec::Node> = nodes
            .iter()
            .map(|n| self.node_spec(n).cloned())
            .collect::<Result<_, _>>()?;
        Ok(layout::formation(
            &specs,
            nodes.len() / (1 + replicas as usize),
        ))
    }

    /// Form a cluster of `nodes`, none of which knows another or serves a slot (see the module
    /// doc): slots and epochs, every pair met, replicas attached, then a healthy cluster.
    pub async fn create_cluster(&self, nodes: &[String], replicas: u32) -> Result<(), NodeError> {
        let f = self.formation_of(nodes, replicas)?;
        crate::progress::status(format!(
            "assigning the slots of {} masters and a config epoch to each of {} nodes",
            f.masters.len(),
            nodes.len()
        ));
        let assigned = futures_util::future::join_all(nodes.iter().enumerate().map(|(i, node)| {
            let mut cmds = Vec::new();
            if let Some((_, a, b)) = f.masters.iter().find(|(m, _, _)| m == node) {
                let slots: Vec<String> = (*a..=*b).map(|s| s.to_string()).collect();
                cmds.push(format!("CLUSTER ADDSLOTS {}", slots.join(" ")));
            }
            cmds.push(format!("CLUSTER SET-CONFIG-EPOCH {}", i + 1));
            async move {
                self.cli_batch_ok(node, "CLUSTER ADDSLOTS, SET-CONFIG-EPOCH", &cmds)
                    .await
            }
        }))
        .await;
        all_ok(assigned)?;
        self.meet_and_join(nodes).await?;
        self.attach_replicas(nodes, &f).await?;
        self.announce(nodes).await?;
        self.wait_cluster_healthy(nodes.len()).await
    }

    /// Make the nodes of a cluster whose every slot is assigned meet, and the empty ones
    /// replicas (see the module doc).
    pub async fn complete_cluster(&self, nodes: &[String], replicas: u32) -> Result<(), NodeError> {
        self.meet_and_join(nodes).await?;
        if replicas > 0 {
            let f = self.formation_of(nodes, replicas)?;
            self.attach_replicas(nodes, &f).await?;
        }
        self.announce(nodes).await?;
        self.wait_cluster_healthy(nodes.len()).await
    }

    /// Every node tells every other node, directly, what it now is (its slots, or whose
    /// replica it is): a CLUSTER MEET to a node it already knows sends a MEET message, whose
    /// header the receiver takes as it takes a ping's (the handshake entry the sender made
    /// for it is dropped at the answer). Otherwise each node learns another's slots and role
    /// only from that node's own pings, about one node a second, and the last ones at
    /// cluster-node-timeout / 2: a cluster of 12 nodes said `cluster_state:ok` everywhere
    /// some 6 s after it was formed.
    async fn announce(&self, nodes: &[String]) -> Result<(), NodeError> {
        crate::progress::status(format!(
            "every node tells every other what it serves (CLUSTER MEET, {} nodes)",
            nodes.len()
        ));
        self.meet_all(nodes, |i, j| j != i).await
    }

    /// Each node `nodes[i]` MEETs each `nodes[j]` for which `pair(i, j)`, in one round trip
    /// per node, all nodes at once.
    async fn meet_all(
        &self,
        nodes: &[String],
        pair: impl Fn(usize, usize) -> bool,
    ) -> Result<(), NodeError> {
        let port = self.spec.redis.port;
        let mut meets: Vec<(&String, Vec<String>)> = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let mut cmds = Vec::new();
            let others = nodes.iter().enumerate().filter(|(j, _)| pair(i, *j));
            for other in others.map(|(_, o)| o) {
                let ip = self.node_spec(other)?.private_ip;
                cmds.push(format!("CLUSTER MEET {ip} {port} {}", port + 10000));
            }
            if !cmds.is_empty() {
                meets.push((node, cmds));
            }
        }
        all_ok(
            futures_util::future::join_all(
                meets
                    .iter()
                    .map(|(node, cmds)| self.cli_batch_ok(node, "CLUSTER MEET", cmds)),
            )
            .await,
        )?;
        Ok(())
    }

    /// Every node meets the nodes after it (each pair once, directly; a node already known is
    /// a no-op), all at once; then the wait (bounded, every node looked at every
    /// [`JOIN_POLL`]) until every node knows every other, handshakes done.
    async fn meet_and_join(&self, nodes: &[String]) -> Result<(), NodeError> {
        crate::progress::status(format!(
            "every pair of the {} nodes meets (CLUSTER MEET)",
            nodes.len()
        ));
        self.meet_all(nodes, |i, j| j > i).await?;
        let started = Instant::now();
        // Only the nodes that did not know every other at the last look are looked at again
        // (a handshake done stays done): fewer redis-cli runs competing with the nodes' own
        // gossip for the CPU as the join goes on.
        let mut behind: Vec<(&String, usize)> = nodes.iter().map(|n| (n, 0)).collect();
        loop {
            let views = all_ok(
                futures_util::future::join_all(
                    behind.iter().map(|(n, _)| self.cluster_nodes_of(n)),
                )
                .await,
            )?;
            let joined = |view: &[ClusterNode]| {
                view.iter()
                    .filter(|x| !x.flags.iter().any(|f| f == "handshake" || f == "noaddr"))
                    .count()
            };
            behind = behind
                .iter()
                .zip(&views)
                .map(|((n, _), v)| (*n, joined(v)))
                .filter(|(_, k)| *k < nodes.len())
                .collect();
            let Some((slowest, knows)) = behind.iter().min_by_key(|(_, k)| *k).copied() else {
                return Ok(());
            };
            if started.elapsed() > JOIN_BOUND {
                return Err(NodeError::Timeout {
                    what: format!(
                        "every node to know every other ({} of {} do not yet; {slowest} knows {knows} of {})",
                        behind.len(),
                        nodes.len(),
                        nodes.len()
                    ),
                    waited: started.elapsed(),
                });
            }
            crate::progress::status(format!(
                "waiting for the nodes to know each other ({} of {} do not yet)",
                behind.len(),
                nodes.len()
            ));
            tokio::time::sleep(JOIN_POLL).await;
        }
    }

    /// Each node that serves no slot and is no replica yet follows its master (CLUSTER
    /// REPLICATE, all at once): the formation's choice when that master serves slots, else
    /// the one [`Self::replica_assignment`] picks.
    async fn attach_replicas(&self, nodes: &[String], f: &Formation) -> Result<(), NodeError> {
        // Each node's own line: what another node says of it may lag behind (right after the
        // MEETs, a master's slots are not gossiped yet, and it looks empty).
        let selves: Vec<(String, ClusterNode)> = nodes
            .iter()
            .cloned()
            .zip(all_ok(
                futures_util::future::join_all(nodes.iter().map(|n| self.myself(n))).await,
            )?)
            .collect();
        let pairs = self.replica_assignment(&selves, f)?;
        if pairs.is_empty() {
            return Ok(());
        }
        crate::progress::status(format!(
            "{} replicas follow their masters (CLUSTER REPLICATE)",
            pairs.len()
        ));
        let id_of = |name: &str| {
            selves
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, x)| x.id.clone())
                .unwrap_or_default()
        };
        let attached = futures_util::future::join_all(pairs.iter().map(|(node, master)| {
            let cmd = vec![format!("CLUSTER REPLICATE {}", id_of(master))];
            async move { self.cli_batch_ok(node, "CLUSTER REPLICATE", &cmd).await }
        }))
        .await;
        all_ok(attached)?;
        Ok(())
    }

    /// `cmds` on `node` in one round trip ([`Self::cli_batch`]); each must answer `OK` (an
    /// error names each command that did not, and its answer). `what` names the round trip if
    /// it fails as a whole.
    pub(super) async fn cli_batch_ok(
        &self,
        node: &str,
        what: &str,
        cmds: &[String],
    ) -> Result<(), NodeError> {
        let s = self.session(node).await?;
        let (script, input) = self.cli_batch_script(cmds);
        let out = s.sudo_ok(what, &script, Some(&input)).await?;
        let text = out.stdout_str();
        let answers: Vec<&str> = text.lines().map(str::trim).collect();
        if answers.len() != cmds.len() || answers.iter().any(|a| *a != "OK") {
            let shown: Vec<String> = cmds
                .iter()
                .map(|c| c.chars().take(60).collect::<String>())
                .zip(
                    answers
                        .iter()
                        .map(|a| a.to_string())
                        .chain(std::iter::repeat("(no answer)".to_string())),
                )
                .filter(|(_, a)| a != "OK")
                .map(|(c, a)| format!("{c} answered: {a}"))
                .collect();
            return Err(NodeError::Failed {
                node: node.into(),
                what: shown.join("; "),
            });
        }
        Ok(())
    }

    /// `cmds` on `node` in one round trip and one redis-cli connection, which reads them on its
    /// stdin after the password (the first line, which `read` takes, leaving the rest to
    /// redis-cli); its answers one after another, raw, on stdout.
    pub(super) async fn cli_batch(
        &self,
        node: &str,
        cmds: &[String],
    ) -> Result<crate::ssh::Output, NodeError> {
        let s = self.session(node).await?;
        let (script, input) = self.cli_batch_script(cmds);
        Ok(s.sudo(&script, Some(&input)).await?)
    }

    /// The script and stdin of [`Self::cli_batch`].
    fn cli_batch_script(&self, cmds: &[String]) -> (String, Vec<u8>) {
        let password = self.stdin().unwrap_or_default();
        let mut input = password.to_vec();
        for c in cmds {
            input.push(b'\n');
            input.extend_from_slice(c.as_bytes());
        }
        input.push(b'\n');
        // `read` takes the first line (the password: one line, see spec::secrets::read) and
        // no more; nothing about the password shows in the command line (not even its length).
        let script = format!(
            "IFS= read -r pw; REDISCLI_AUTH=\"$pw\" {}",
            admin_cli_command(&self.spec)
        );
        (script, input)
    }

    /// (replica, master): each spec node that serves no slot and is not a replica (by its own
    /// line of CLUSTER NODES) becomes the replica of its master in `f` if that one serves
    /// slots, else of the master with the fewest replicas, one in another AZ first.
    fn replica_assignment(
        &self,
        selves: &[(String, ClusterNode)],
        f: &Formation,
    ) -> Result<Vec<(String, String)>, NodeError> {
        let mut replicas_of: Vec<(&String, usize)> = selves
            .iter()
            .filter(|(_, x)| x.is_master() && x.slot_count() > 0)
            .map(|(m, x)| {
                let count = selves
                    .iter()
                    .filter(|(_, r)| r.master_id.as_deref() == Some(x.id.as_str()))
                    .count();
                (m, count)
            })
            .collect();
        let mut out = Vec::new();
        for (node, x) in selves {
            if x.is_replica() || x.slot_count() > 0 {
                continue;
            }
            let az = &self.node_spec(node)?.az;
            let planned = f.master_of(node);
            let pick = replicas_of
                .iter_mut()
                .min_by_key(|(m, count)| {
                    let same_az = self.node_spec(m).is_ok_and(|s| &s.az == az);
                    (Some(m.as_str()) != planned, *count, same_az)
                })
                .ok_or_else(|| NodeError::Failed {
                    node: node.clone(),
                    what: "no master serves slots to replicate".into(),
                })?;
            pick.1 += 1;
            out.push((node.clone(), pick.0.clone()));
        }
        Ok(out)
    }
}
