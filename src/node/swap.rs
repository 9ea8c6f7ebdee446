//! The Redis side of the root volume swap (phase 8): hand a master's role to a replica (its keys
//! counted on both sides of the failover), make Redis durable and count its keys with writes
//! paused, stop it; after the new disk boots, wait for SSH (the pinned host key: the disk is a
//! copy, the key must not change) and Redis, and verify the node rejoined with its keys.
//!
//! The key counts are compared only where nothing can change them, so that they hold under live
//! traffic: a master's own count before its stop (writes paused) with its count after the swap
//! (the cluster is down in between, without replicas); across a failover, the master's count
//! with writes paused on it and on the replica that takes over, with that replica's count once
//! it is the master (still paused); and a swapped replica's count with its master's at the
//! same replication offset (the master's writes paused for that instant). A count taken before
//! the failover and compared after the swap would differ by every write clients made meanwhile.

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

/// The bound of the short write pauses around a counted failover and a replica's comparison
/// with its master: redisctl lifts them as soon as it has counted; if it dies first, Redis
/// lifts them by itself after this long.
const SHORT_PAUSE_MS: u64 = 30_000;

/// What a counted failover found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The replica that took over the node's slots.
    pub replica: String,
    /// The node's keys before the failover, which the replica holds after it.
    pub keys: u64,
    /// How long writes to the node's slots waited (paused, not refused).
    pub paused: Duration,
}

/// A replica holds `keys` and its master `master` holds `master_keys` at the same
/// replication offset: anything but equal is a key lost (or invented) by the swap.
fn compare_with_master(
    keys: u64,
    master: &str,
    master_keys: u64,
    offset: u64,
) -> Result<(), String> {
    if keys == master_keys {
        return Ok(());
    }
    Err(format!(
        "holds {keys} keys after the swap, but its master {master} holds {master_keys} at the same replication offset ({offset})"
    ))
}

/// The replica that took over from a master holds as many keys as the master did before the failover
/// (both counted with writes paused).
fn compare_handover(keys: u64, replica: &str, after: u64) -> Result<(), String> {
    if keys == after {
        return Ok(());
    }
    Err(format!(
        "the failover lost keys: it held {keys} keys before it (writes paused), {replica}, now the master of its slots, holds {after} after it (writes still paused)"
    ))
}

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

    /// `redis-cli args` on `node` must answer OK.
    async fn cli_ok(&self, node: &str, args: &str) -> Result<(), NodeError> {
        let answer = self.cli(node, args).await?;
        if answer.trim() != "OK" {
            return Err(Self::failed(
                node,
                format!("{args} answered: {}", answer.trim()),
            ));
        }
        Ok(())
    }

    async fn dbsize(&self, node: &str) -> Result<u64, NodeError> {
        let n = self.cli(node, "DBSIZE").await?;
        n.trim()
            .parse()
            .map_err(|_| Self::failed(node, format!("DBSIZE answered: {}", n.trim())))
    }

    /// A field of `INFO replication` on `node`.
    async fn replication(&self, node: &str, field: &str) -> Result<Option<String>, NodeError> {
        let info = parse::info(&self.cli(node, "INFO replication").await?);
        Ok(info.get("Replication").and_then(|r| r.get(field)).cloned())
    }

    /// The spec's node at a private IP.
    fn node_at(&self, ip: &str) -> Option<String> {
        self.spec
            .nodes
            .nodes
            .iter()
            .find(|n| n.private_ip.to_string() == ip)
            .map(|n| n.name.clone())
    }

    /// If `node` is a master with a replica, make a replica take over (CLUSTER FAILOVER on it)
    /// and wait until `node` is a replica, counting the keys on both sides: writes are paused
    /// on `node` and on the replica (they wait, they are not refused), `node`'s keys counted,
    /// the failover made, the replica's keys counted, the writes let go. The replica must hold
    /// exactly what `node` held. A master without a healthy replica is an error; a replica, or
    /// a master without slots, has nothing to hand over (`None`).
    pub async fn swap_failover(&self, node: &str) -> Result<Option<Handover>, NodeError> {
        self.hand_over(node, true, true).await
    }

    /// Like [`swap_failover`](Self::swap_failover) without the count; unless `required`, leaves
    /// a master without a healthy replica as it is (`Ok(false)`): a restart then takes its slots
    /// away for seconds.
    pub(crate) async fn failover_away(
        &self,
        node: &str,
        required: bool,
    ) -> Result<bool, NodeError> {
        Ok(self.hand_over(node, required, false).await?.is_some())
    }

    async fn hand_over(
        &self,
        node: &str,
        required: bool,
        count: bool,
    ) -> Result<Option<Handover>, NodeError> {
        let text = self.cli(node, "CLUSTER NODES").await?;
        let nodes = parse::cluster_nodes(&text)
            .map_err(|e| Self::failed(node, format!("CLUSTER NODES: {e}")))?;
        let Some(me) = nodes.iter().find(|n| n.is_myself()) else {
            return Err(Self::failed(node, "CLUSTER NODES has no `myself`".into()));
        };
        // A replica, or a master that serves no slots (no cluster yet): nothing to hand over.
        if !me.is_master() || me.slots.is_empty() {
            return Ok(None);
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
                return Ok(None);
            }
            return Err(Self::failed(
                node,
                "a master without a healthy replica: stopping it would take its slots down; wait until its replica is back and run apply again".into(),
            ));
        };
        let Some(replica_node) = self.node_at(&replica.ip) else {
            return Err(Self::failed(
                node,
                format!("its replica {} is not a node of the spec", replica.ip),
            ));
        };
        // Before any write pause: a replica that ran an election lately must not be asked yet.
        self.await_elections_forgotten(&replica_node).await?;
        if !count {
            self.failover_to(node, &replica_node).await?;
            return Ok(Some(Handover {
                replica: replica_node,
                keys: 0,
                paused: Duration::ZERO,
            }));
        }
        // Writes stop at `node` first. The replica is paused only once it has applied all that
        // `node` wrote (a paused replica holds back the writes its master streams to it, and
        // the failover waits for it to catch up); so, once it is the master, nothing reaches it
        // before it is counted.
        let pause = format!("CLIENT PAUSE {SHORT_PAUSE_MS} WRITE");
        let paused = Instant::now();
        self.cli_ok(node, &pause).await?;
        let counted = async {
            let keys = self.dbsize(node).await?;
            let offset = self.offset(node, "master_repl_offset").await?;
            self.wait_offset(&replica_node, offset).await?;
            self.cli_ok(&replica_node, &pause).await?;
            self.failover_to(node, &replica_node).await?;
            Ok::<_, NodeError>((keys, self.dbsize(&replica_node).await?))
        }
        .await;
        // The writes go on whatever happened (the pauses would end by themselves in 30 s).
        for n in [node, replica_node.as_str()] {
            if let Err(e) = self.cli_ok(n, "CLIENT UNPAUSE").await {
                tracing::warn!(
                    node = n,
                    "cannot lift the write pause (it ends by itself within 30 s): {e}"
                );
            }
        }
        let paused = paused.elapsed();
        let (keys, after) = counted?;
        compare_handover(keys, &replica_node, after).map_err(|what| Self::failed(node, what))?;
        tracing::info!(
            node,
            replica = %replica_node,
            keys,
            "failover: {keys} keys handed over; writes to its slots waited {} ms",
            paused.as_millis()
        );
        Ok(Some(Handover {
            replica: replica_node,
            keys,
            paused,
        }))
    }

    /// CLUSTER FAILOVER on `replica`, then wait (60 s at most) until `node` is a replica.
    async fn failover_to(&self, node: &str, replica: &str) -> Result<(), NodeError> {
        self.cli_ok(replica, "CLUSTER FAILOVER").await?;
        let start = Instant::now();
        loop {
            if self.replication(node, "role").await?.as_deref() == Some("slave") {
                tracing::info!(node, replica, "failover done in {:?}", start.elapsed());
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(NodeError::Timeout {
                    what: format!(
                        "node {node} to become a replica of {replica} after CLUSTER FAILOVER"
                    ),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A replica's keys and its master's at the same replication offset: the master's writes
    /// paused (they wait), its offset and keys read, the replica's keys read once it has
    /// applied the stream up to that offset, the writes let go. (A paused master may still send
    /// a PING, which moves the offset but no key.) Returns (the replica's keys, the master, its
    /// keys, the offset).
    async fn in_step_with_master(&self, node: &str) -> Result<(u64, String, u64, u64), NodeError> {
        let host = self
            .replication(node, "master_host")
            .await?
            .unwrap_or_default();
        let Some(master) = self.node_at(&host) else {
            return Err(Self::failed(
                node,
                format!("its master {host:?} is not a node of the spec"),
            ));
        };
        self.cli_ok(&master, &format!("CLIENT PAUSE {SHORT_PAUSE_MS} WRITE"))
            .await?;
        let counted = async {
            let offset = self.offset(&master, "master_repl_offset").await?;
            let master_keys = self.dbsize(&master).await?;
            self.wait_offset(node, offset).await?;
            Ok::<_, NodeError>((self.dbsize(node).await?, master_keys, offset))
        }
        .await;
        if let Err(e) = self.cli_ok(&master, "CLIENT UNPAUSE").await {
            tracing::warn!(node = %master, "cannot lift the write pause (it ends by itself within 30 s): {e}");
        }
        let (keys, master_keys, offset) = counted?;
        Ok((keys, master, master_keys, offset))
    }

    /// Waits (20 s at most) until the replica `node` has applied its master's stream up to
    /// `offset`.
    async fn wait_offset(&self, node: &str, offset: u64) -> Result<(), NodeError> {
        let start = Instant::now();
        while self.offset(node, "slave_repl_offset").await? < offset {
            if start.elapsed() > Duration::from_secs(20) {
                return Err(NodeError::Timeout {
                    what: format!("node {node} to reach its master's replication offset {offset}"),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn offset(&self, node: &str, field: &str) -> Result<u64, NodeError> {
        let v = self.replication(node, field).await?.unwrap_or_default();
        v.parse()
            .map_err(|_| Self::failed(node, format!("INFO replication {field}:{v}")))
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
        let keys = self.dbsize(node).await?;
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
    /// count; a replica: its link to the master is up, and it holds exactly what its master
    /// holds at the same replication offset).
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
                // At least the spec's nodes: while a swap is in flight phase 7 changes
                // nothing, so nodes the spec drops may still be members.
                Ok(c)
                    if c.cluster_state == "ok"
                        && c.slots_assigned == 16384
                        && c.known_nodes as usize >= n =>
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
        if !before.master {
            let (keys, master, master_keys, offset) = self.in_step_with_master(node).await?;
            compare_with_master(keys, &master, master_keys, offset)
                .map_err(|what| Self::failed(node, what))?;
            tracing::info!(node, keys, master = %master, "swap: the replica holds its master's {master_keys} keys at offset {offset}");
            return Ok(keys);
        }
        let keys = self.dbsize(node).await?;
        if keys != before.keys {
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
    use super::{KeysBefore, compare_handover, compare_with_master};

    #[test]
    fn a_key_missing_on_either_side_is_an_error() {
        compare_with_master(3334, "n1", 3334, 120).unwrap();
        let e = compare_with_master(3333, "n1", 3334, 120).unwrap_err();
        assert!(
            e.contains("holds 3333 keys after the swap, but its master n1 holds 3334"),
            "{e}"
        );
        compare_handover(3334, "n2", 3334).unwrap();
        let e = compare_handover(3334, "n2", 3333).unwrap_err();
        assert!(
            e.contains("the failover lost keys: it held 3334 keys before it (writes paused), n2"),
            "{e}"
        );
    }

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
