//! The Redis side of the root volume swap (phase 8): hand a master's role to a replica, make
//! Redis durable and count its keys with writes paused, stop it; after the new disk boots, wait
//! for SSH (the pinned host key: the disk is a copy, the key must not change) and Redis, and
//! verify the node rejoined with its keys.

use std::time::{Duration, Instant};

use super::{NodeError, NodeRuntime, admin_cli};
use crate::redis::parse;

/// The node's role and key count when it was stopped (the `redisctl:swap-keys` tag:
/// `master:N` or `replica:N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeysBefore {
    pub master: bool,
    pub keys: u64,
}

impl KeysBefore {
    pub fn to_tag(self) -> String {
        format!(
            "{}:{}",
            if self.master { "master" } else { "replica" },
            self.keys
        )
    }

    pub fn parse(s: &str) -> Option<KeysBefore> {
        let (role, n) = s.split_once(':')?;
        Some(KeysBefore {
            master: match role {
                "master" => true,
                "replica" => false,
                _ => return None,
            },
            keys: n.parse().ok()?,
        })
    }
}

/// How long the writes stay paused while the node is made durable and stopped (Redis lifts the
/// pause by itself afterwards; the stop comes well before).
const PAUSE_MS: u64 = 120_000;

impl NodeRuntime {
    fn failed(node: &str, what: String) -> NodeError {
        NodeError::Failed {
            node: node.into(),
            what,
        }
    }

    /// redis-cli `args` on `node` as the operator (the password on stdin).
    async fn cli(&self, node: &str, args: &str) -> Result<String, NodeError> {
        let s = self.session(node).await?;
        let out = s
            .sudo(&format!("{} {args}", admin_cli(&self.spec)), self.stdin())
            .await?;
        if out.status != 0 {
            return Err(Self::failed(
                node,
                format!(
                    "redis-cli {args} failed: {} {}",
                    out.stdout_str().trim(),
                    out.stderr_str().trim()
                ),
            ));
        }
        Ok(out.stdout_str())
    }

    /// If `node` is a master with a replica, make a replica take over (CLUSTER FAILOVER on it)
    /// and wait until `node` is a replica. A master without a healthy replica is an error.
    pub async fn swap_failover(&self, node: &str) -> Result<(), NodeError> {
        self.failover_away(node, true).await.map(|_| ())
    }

    /// [`swap_failover`](Self::swap_failover) that, unless `required`, leaves a master without a
    /// healthy replica as it is (`Ok(false)`): a restart then takes its slots away for seconds.
    pub(crate) async fn failover_away(
        &self,
        node: &str,
        required: bool,
    ) -> Result<bool, NodeError> {
        let text = self.cli(node, "CLUSTER NODES").await?;
        let nodes = parse::cluster_nodes(&text)
            .map_err(|e| Self::failed(node, format!("CLUSTER NODES: {e}")))?;
        let Some(me) = nodes.iter().find(|n| n.is_myself()) else {
            return Err(Self::failed(node, "CLUSTER NODES has no `myself`".into()));
        };
        // A replica, or a master that serves no slots (no cluster yet): nothing to hand over.
        if !me.is_master() || me.slots.is_empty() {
            return Ok(false);
        }
        let replica = nodes.iter().find(|n| {
            n.is_replica() && !n.is_failing() && n.master_id.as_deref() == Some(me.id.as_str())
        });
        let Some(replica) = replica else {
            if !required {
                tracing::warn!(
                    node,
                    "a master without a healthy replica: restarting it makes its slots unavailable for a few seconds"
                );
                return Ok(false);
            }
            return Err(Self::failed(
                node,
                "a master without a healthy replica: stopping it would take its slots down; wait until its replica is back and run apply again".into(),
            ));
        };
        let Some(replica_node) = self
            .spec
            .nodes
            .nodes
            .iter()
            .find(|n| n.private_ip.to_string() == replica.ip)
            .map(|n| n.name.clone())
        else {
            return Err(Self::failed(
                node,
                format!("its replica {} is not a node of the spec", replica.ip),
            ));
        };
        let answer = self.cli(&replica_node, "CLUSTER FAILOVER").await?;
        if answer.trim() != "OK" {
            return Err(Self::failed(
                &replica_node,
                format!("CLUSTER FAILOVER answered: {}", answer.trim()),
            ));
        }
        let start = Instant::now();
        loop {
            let info = parse::info(&self.cli(node, "INFO replication").await?);
            if info
                .get("Replication")
                .and_then(|r| r.get("role"))
                .is_some_and(|r| r == "slave")
            {
                tracing::info!(node, replica = %replica_node, "failover done in {:?}", start.elapsed());
                return Ok(true);
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(NodeError::Timeout {
                    what: format!(
                        "node {node} to become a replica of {replica_node} after CLUSTER FAILOVER"
                    ),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Pause writes, rewrite the AOF and wait for it, then count the keys: what the node holds
    /// when it is stopped.
    pub async fn swap_prepare(&self, node: &str) -> Result<KeysBefore, NodeError> {
        let info = parse::info(&self.cli(node, "INFO replication").await?);
        let master = info
            .get("Replication")
            .and_then(|r| r.get("role"))
            .is_none_or(|r| r == "master");
        if master {
            let pause = self
                .cli(node, &format!("CLIENT PAUSE {PAUSE_MS} WRITE"))
                .await?;
            if pause.trim() != "OK" {
                return Err(Self::failed(
                    node,
                    format!("CLIENT PAUSE answered: {}", pause.trim()),
                ));
            }
        }
        self.cli(node, "BGREWRITEAOF").await?;
        let start = Instant::now();
        loop {
            let p = parse::info(&self.cli(node, "INFO persistence").await?);
            let field = |k: &str| p.get("Persistence").and_then(|s| s.get(k)).cloned();
            let busy = field("aof_rewrite_in_progress").as_deref() == Some("1")
                || field("aof_rewrite_scheduled").as_deref() == Some("1");
            if !busy {
                if field("aof_last_bgrewrite_status").as_deref() != Some("ok") {
                    return Err(Self::failed(
                        node,
                        format!(
                            "the AOF rewrite failed (aof_last_bgrewrite_status:{})",
                            field("aof_last_bgrewrite_status").unwrap_or_default()
                        ),
                    ));
                }
                break;
            }
            if start.elapsed() > Duration::from_secs(600) {
                return Err(NodeError::Timeout {
                    what: format!("the AOF rewrite on node {node}"),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let n = self.cli(node, "DBSIZE").await?;
        let keys = n
            .trim()
            .parse()
            .map_err(|_| Self::failed(node, format!("DBSIZE answered: {}", n.trim())))?;
        Ok(KeysBefore { master, keys })
    }

    /// Stop Redis cleanly (it flushes the AOF) and forget the session: the instance stops next.
    pub async fn swap_stop_redis(&self, node: &str) -> Result<(), NodeError> {
        let s = self.session(node).await?;
        self.stop_redis(node, &s).await?;
        self.forget(node).await;
        Ok(())
    }

    /// Drop the node's session (the host is going down or came back on a new disk).
    pub async fn forget(&self, node: &str) {
        self.systemd.lock().await.remove(node);
        if let Some(s) = self.sessions.lock().await.remove(node) {
            s.close().await;
        }
    }

    /// After the start: wait for SSH (pinned host key) and for Redis to answer PING. systemd
    /// starts Redis at boot; on a host without it nothing does, so redisctl starts it here.
    pub async fn swap_wait_back(&self, node: &str) -> Result<(), NodeError> {
        self.relocate(node).await;
        self.start_without_init(node).await?;
        let s = self.session(node).await?;
        self.wait_ping(node, &s).await
    }

    /// The node rejoined: its view is `cluster_state:ok` with every slot and `n` nodes (so every
    /// master is back), and it holds the keys it held before the stop (a master: exactly the
    /// count; a replica: its link to the master is up, then it holds what the master has).
    pub async fn swap_verify(
        &self,
        node: &str,
        n: usize,
        before: KeysBefore,
        bound: Duration,
        abort: &(dyn Fn() -> bool + Sync),
    ) -> Result<u64, NodeError> {
        let start = Instant::now();
        loop {
            let info = self.cli(node, "CLUSTER INFO").await?;
            let last = match parse::cluster_info(&info) {
                Ok(c)
                    if c.cluster_state == "ok"
                        && c.slots_assigned == 16384
                        && c.known_nodes as usize == n =>
                {
                    None
                }
                Ok(c) => Some(format!(
                    "cluster_state:{} slots_assigned:{} known_nodes:{}",
                    c.cluster_state, c.slots_assigned, c.known_nodes
                )),
                Err(_) => Some(info.trim().to_string()),
            };
            let link_ok = if before.master {
                true
            } else {
                let r = parse::info(&self.cli(node, "INFO replication").await?);
                r.get("Replication")
                    .and_then(|x| x.get("master_link_status"))
                    .is_some_and(|s| s == "up")
            };
            match (last, link_ok) {
                (None, true) => break,
                (last, _) => {
                    if abort() {
                        return Err(Self::failed(
                            node,
                            format!(
                                "back on its encrypted volume, but another node's swap failed, so the cluster cannot become whole in this run (last: {}); run apply again once the cause is fixed",
                                last.unwrap_or_else(|| "replication link down".into())
                            ),
                        ));
                    }
                    if start.elapsed() > bound {
                        return Err(NodeError::Timeout {
                            what: format!(
                                "node {node} to rejoin a healthy cluster (last: {}) — the other nodes' swaps must finish too",
                                last.unwrap_or_else(|| "replication link down".into())
                            ),
                            waited: start.elapsed(),
                        });
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let n = self.cli(node, "DBSIZE").await?;
        let keys: u64 = n
            .trim()
            .parse()
            .map_err(|_| Self::failed(node, format!("DBSIZE answered: {}", n.trim())))?;
        if before.master && keys != before.keys {
            return Err(Self::failed(
                node,
                format!(
                    "holds {keys} keys after the swap but held {} before the stop",
                    before.keys
                ),
            ));
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::KeysBefore;

    #[test]
    fn keys_tag_round_trips() {
        for k in [
            KeysBefore {
                master: true,
                keys: 3334,
            },
            KeysBefore {
                master: false,
                keys: 0,
            },
        ] {
            assert_eq!(KeysBefore::parse(&k.to_tag()), Some(k));
        }
        assert_eq!(KeysBefore::parse("3334"), None);
    }
}
