//! Finishing a cluster whose formation an interrupted apply left half done (a kill or Ctrl-C
//! while `redis-cli --cluster create` ran). `redis-cli --cluster create` assigns the slots
//! (ADDSLOTS on each master), sets the config epochs, makes the nodes meet (CLUSTER MEET from
//! the first node), waits for the join, then makes the replicas (CLUSTER REPLICATE); it cannot
//! be run again on nodes that hold slots or know each other. So:
//!
//! - **Not every slot assigned yet** (killed before or during ADDSLOTS): no client could have
//!   written (a cluster without full coverage refuses every query), and the planner checked
//!   that no node holds a key. Every node is reset (`CLUSTER RESET HARD`, which Redis itself
//!   refuses on a master holding keys) and the cluster created again.
//! - **Every slot assigned** (killed during MEET, the join or the replicas): the nodes meet
//!   (CLUSTER MEET is a no-op for a node already known), then each node that serves no slot
//!   and is not a replica yet becomes the replica of the master with the fewest replicas,
//!   another AZ's first; then the wait for a healthy cluster.
//!
//! Each step is idempotent: a run killed here is finished by the next apply the same way.

use std::time::{Duration, Instant};

use super::{NodeError, NodeRuntime, admin_cli};
use crate::redis::parse::{self, ClusterNode};

/// How long the nodes may take to know each other after the MEETs.
const JOIN_BOUND: Duration = Duration::from_secs(120);

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
        let s = self.session(node).await?;
        let out = s
            .sudo_ok(
                args,
                &format!("{} {args}", admin_cli(&self.spec)),
                self.stdin(),
            )
            .await?;
        let answer = out.stdout_str();
        if answer.trim() != "OK" {
            return Err(NodeError::Failed {
                node: node.into(),
                what: format!("{args} answered: {}", answer.trim()),
            });
        }
        Ok(())
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

    /// Make the nodes of a cluster whose every slot is assigned meet, and the empty ones
    /// replicas (see the module doc).
    pub async fn complete_cluster(&self, nodes: &[String], replicas: u32) -> Result<(), NodeError> {
        let first = nodes.first().ok_or_else(|| NodeError::Failed {
            node: "-".into(),
            what: "no nodes".into(),
        })?;
        crate::progress::status(format!("{first} meets every node (CLUSTER MEET)"));
        for node in &nodes[1..] {
            let n = self.node_spec(node)?;
            self.cluster_command(
                first,
                &format!(
                    "CLUSTER MEET {} {} {}",
                    n.private_ip,
                    self.spec.redis.port,
                    self.spec.redis.port + 10000
                ),
            )
            .await?;
        }
        let started = Instant::now();
        loop {
            let view = self.cluster_nodes_of(first).await?;
            let joined = view
                .iter()
                .filter(|x| !x.flags.iter().any(|f| f == "handshake" || f == "noaddr"))
                .count();
            if joined >= nodes.len() {
                break;
            }
            if started.elapsed() > JOIN_BOUND {
                return Err(NodeError::Timeout {
                    what: format!(
                        "every node to join ({first} knows {joined} of {})",
                        nodes.len()
                    ),
                    waited: started.elapsed(),
                });
            }
            crate::progress::status(format!(
                "waiting for the nodes to join ({joined} of {})",
                nodes.len()
            ));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if replicas > 0 {
            // Each node's own line: what another node says of it may lag behind (right after
            // the MEETs, a master's slots are not gossiped yet, and it looks empty).
            let mut selves = Vec::new();
            for node in nodes {
                selves.push((node.clone(), self.myself(node).await?));
            }
            for (node, master) in self.replica_assignment(&selves)? {
                crate::progress::status(format!("{node} becomes a replica of {master}"));
                let id = selves
                    .iter()
                    .find(|(n, _)| *n == master)
                    .map(|(_, x)| x.id.clone())
                    .unwrap_or_default();
                self.cluster_command(&node, &format!("CLUSTER REPLICATE {id}"))
                    .await?;
            }
        }
        self.wait_cluster_healthy(nodes.len()).await
    }

    /// (replica, master): each spec node that serves no slot and is not a replica (by its own
    /// line of CLUSTER NODES) becomes the replica of the master with the fewest replicas, one
    /// in another AZ first.
    fn replica_assignment(
        &self,
        selves: &[(String, ClusterNode)],
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
            let pick = replicas_of
                .iter_mut()
                .min_by_key(|(m, count)| {
                    let same_az = self.node_spec(m).is_ok_and(|s| &s.az == az);
                    (*count, same_az)
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
