//! A running cluster's shape changed: a node joins (CLUSTER MEET from a member, then CLUSTER
//! REPLICATE if it is to be a replica), slots move to a new master (`redis-cli --cluster
//! reshard`, which migrates each slot's keys with MIGRATE and hands the slot over while clients
//! follow the ASK/MOVED redirects), and slots a killed move left open are finished (`redis-cli
//! --cluster fix`). Each is idempotent: a node already met is not met again, a replica of the
//! right master is left as it is, and the planner computes the moves from the slots as they
//! are, so a rerun after a kill moves only what is left.

use std::time::{Duration, Instant};

use super::{NodeError, NodeRuntime, admin_cli, admin_cli_command, admin_cli_command_at};
use crate::redis::parse::{self, ClusterNode};

/// How long a node may take to be known by the cluster after its MEET, and to know its master.
const JOIN_BOUND: Duration = Duration::from_secs(120);
/// How long Redis gives a manual failover (CLUSTER_MF_TIMEOUT, 5 s), with a margin for a
/// loaded host.
const MANUAL_FAILOVER: Duration = Duration::from_secs(7);
/// How many times [`NodeRuntime::take_over`] asks.
const TAKEOVER_ATTEMPTS: u32 = 3;

/// Redis's `auth_retry_time`: how long a replica's last election stays in its memory
/// (twice `auth_timeout`, itself twice `cluster-node-timeout`, at least 2 s).
fn election_memory(node_timeout_ms: u32) -> Duration {
    Duration::from_millis(2 * (2 * u64::from(node_timeout_ms)).max(2000))
}

/// What `node`'s Redis log says of its elections: the seconds since the last one started, or
/// None when it started none since Redis last started (an election's state lives in memory).
const LAST_ELECTION_SCRIPT: &str = r#"log=LOGFILE
last=$(cat "$log.1" "$log" 2>/dev/null | grep -E 'Starting a failover election|Ready to accept connections' | tail -n 1)
now=$(date +%s.%N)
case "$last" in
  *Starting*) t=$(echo "$last" | awk '{print $2" "$3" "$4" "$5}'); echo "$now $(date -d "$t" +%s.%N)";;
  *) echo "$now none";;
esac"#;

/// A bound on one `redis-cli --cluster reshard` or `fix` (it has none of its own).
const RESHARD_BOUND_SECS: u32 = 1800;

impl NodeRuntime {
    /// `node`'s own line of its `CLUSTER NODES`.
    pub(super) async fn myself(&self, node: &str) -> Result<ClusterNode, NodeError> {
        self.cluster_nodes_of(node)
            .await?
            .into_iter()
            .find(|x| x.is_myself())
            .ok_or_else(|| NodeError::Failed {
                node: node.into(),
                what: "CLUSTER NODES has no myself line".into(),
            })
    }

    /// `node` joins the cluster `via` belongs to; then it replicates `replica_of`, if named.
    pub async fn join_cluster(
        &self,
        node: &str,
        via: &str,
        replica_of: Option<&str>,
    ) -> Result<(), NodeError> {
        let me = self.myself(node).await?;
        let ip = self.node_spec(node)?.private_ip.to_string();
        let port = self.spec.redis.port;
        let known = |view: &[ClusterNode]| {
            view.iter().any(|x| {
                x.id == me.id && !x.flags.iter().any(|f| f == "handshake" || f == "noaddr")
            })
        };
        if !known(&self.cluster_nodes_of(via).await?) {
            crate::progress::status(format!("{via} meets {node} (CLUSTER MEET)"));
            self.cluster_command(via, &format!("CLUSTER MEET {ip} {port} {}", port + 10000))
                .await?;
        }
        let started = Instant::now();
        while !known(&self.cluster_nodes_of(via).await?) {
            if started.elapsed() > JOIN_BOUND {
                return Err(NodeError::Timeout {
                    what: format!("{node} to join the cluster ({via} does not know it yet)"),
                    waited: started.elapsed(),
                });
            }
            crate::progress::status(format!("waiting for {node} to join"));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let Some(master) = replica_of else {
            return Ok(());
        };
        let master_id = self.myself(master).await?.id;
        if me.master_id.as_deref() == Some(master_id.as_str()) {
            return Ok(());
        }
        // The node must know the master before it can replicate it (gossip brings it).
        let started = Instant::now();
        loop {
            let view = self.cluster_nodes_of(node).await?;
            if view.iter().any(|x| x.id == master_id && x.is_master()) {
                break;
            }
            if started.elapsed() > JOIN_BOUND {
                return Err(NodeError::Timeout {
                    what: format!("{node} to learn of its master {master}"),
                    waited: started.elapsed(),
                });
            }
            crate::progress::status(format!("waiting for {node} to learn of {master}"));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        crate::progress::status(format!("{node} becomes a replica of {master}"));
        self.cluster_command(node, &format!("CLUSTER REPLICATE {master_id}"))
            .await
    }

    /// `redis-cli --cluster <args>` on `via`, bounded, the password on stdin.
    async fn cluster_tool(&self, via: &str, what: &str, args: &str) -> Result<String, NodeError> {
        let s = self.session(via).await?;
        // (redis-cli says why it refuses on stdout: sent to stderr, whose end a failure shows.)
        let script = format!(
            "REDISCLI_AUTH=\"$(cat)\" timeout {RESHARD_BOUND_SECS} {} --cluster {args} 1>&2",
            admin_cli_command(&self.spec)
        );
        let out = s.sudo_ok(what, &script, self.stdin()).await?;
        Ok(out.stdout_str())
    }

    fn address(&self, node: &str) -> Result<String, NodeError> {
        Ok(format!(
            "{}:{}",
            self.node_spec(node)?.private_ip,
            self.spec.redis.port
        ))
    }

    /// Wait (bounded) until `redis-cli --cluster check` finds every node agreeing on the slots
    /// and every slot covered, as `reshard` requires before it moves anything (right after a
    /// join or a move, the nodes' views catch up by gossip).
    async fn wait_agreement(&self, via: &str) -> Result<String, NodeError> {
        let addr = self.address(via)?;
        let s = self.session(via).await?;
        let script = format!(
            "REDISCLI_AUTH=\"$(cat)\" timeout 60 {} --cluster check {addr} 2>&1",
            admin_cli_command(&self.spec)
        );
        let started = Instant::now();
        loop {
            let out = s.sudo(&script, self.stdin()).await?;
            let text = out.stdout_str();
            if text.contains("[OK] All nodes agree about slots configuration.")
                && text.contains("[OK] All 16384 slots covered.")
            {
                return Ok(text);
            }
            if started.elapsed() > JOIN_BOUND {
                let said: Vec<&str> = text
                    .lines()
                    .filter(|l| l.starts_with("[ERR]") || l.starts_with("[WARNING]"))
                    .take(3)
                    .collect();
                return Err(NodeError::Timeout {
                    what: format!(
                        "every node to agree on the slots ({via}: {})",
                        said.join("; ")
                    ),
                    waited: started.elapsed(),
                });
            }
            crate::progress::status("waiting for every node to agree on the slots");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Finish every slot a killed move left open (`redis-cli --cluster fix`).
    pub async fn fix_slots(&self, via: &str) -> Result<(), NodeError> {
        crate::progress::status(format!(
            "finishing slots left open by an interrupted move (redis-cli --cluster fix on {via})"
        ));
        let addr = self.address(via)?;
        self.cluster_tool(
            via,
            "redis-cli --cluster fix",
            &format!("fix {addr} --cluster-yes"),
        )
        .await?;
        Ok(())
    }

    /// Move the `count` lowest slots `from` serves to `to`, with their keys. `from_ip`: `from`
    /// is a node leaving the cluster (not in the spec), known by that address.
    pub async fn move_slots(
        &self,
        via: &str,
        from: &str,
        from_ip: Option<&str>,
        to: &str,
        count: u32,
    ) -> Result<(), NodeError> {
        // Every node must agree on the configuration, or redis-cli refuses to reshard; a slot
        // a killed move left open is finished first. (Not the spec's node count: while a
        // scale-in moves slots, the leaving nodes are still members.)
        self.wait_state_ok(via).await?;
        self.wait_members_healthy().await?;
        let open = self
            .cluster_nodes_of(via)
            .await?
            .iter()
            .any(|x| !x.migrating.is_empty() || !x.importing.is_empty());
        if open {
            self.fix_slots(via).await?;
        }
        // A slot a killed move left open only on a node the plan does not look into (a
        // node leaving the cluster shows its own migrating mark alone): `check` sees every
        // node's, and reshard would refuse the cluster.
        if self.wait_agreement(via).await?.contains("slots are open") {
            self.fix_slots(via).await?;
            self.wait_agreement(via).await?;
        }
        let from_id = match from_ip {
            Some(ip) => self.member_at(via, from, ip).await?.id,
            None => self.myself(from).await?.id,
        };
        let to_id = self.myself(to).await?.id;
        crate::progress::status(format!(
            "moving {count} slots from {from} to {to} (redis-cli --cluster reshard on {via})"
        ));
        let addr = self.address(via)?;
        // Right after a join the nodes' views still converge by gossip, and reshard refuses a
        // cluster whose nodes disagree for a moment after `check` found them agreeing: it is
        // tried again (nothing was moved: it refuses before it moves anything), a few times.
        let mut tries = 0;
        loop {
            tries += 1;
            let moved = self
                .cluster_tool(
                    via,
                    "redis-cli --cluster reshard",
                    &format!(
                        "reshard {addr} --cluster-from {from_id} --cluster-to {to_id} --cluster-slots {count} --cluster-yes --cluster-pipeline 100"
                    ),
                )
                .await;
            match moved {
                Ok(_) => return Ok(()),
                Err(e) if tries < 4 && e.to_string().contains("fix your cluster problems") => {
                    tracing::info!(via, "reshard refused the cluster for now: {e}");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if self.wait_agreement(via).await?.contains("slots are open") {
                        self.fix_slots(via).await?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Wait (bounded) until `via` reports `cluster_state:ok` with every slot assigned.
    async fn wait_state_ok(&self, via: &str) -> Result<(), NodeError> {
        let started = Instant::now();
        loop {
            let s = self.session(via).await?;
            let out = s
                .sudo_ok(
                    "CLUSTER INFO",
                    &format!("{} CLUSTER INFO", admin_cli(&self.spec)),
                    self.stdin(),
                )
                .await?;
            let said = match parse::cluster_info(&out.stdout_str()) {
                Ok(c) if c.cluster_state == "ok" && c.slots_assigned == 16384 => return Ok(()),
                Ok(c) => format!(
                    "cluster_state:{} slots_assigned:{}",
                    c.cluster_state, c.slots_assigned
                ),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > JOIN_BOUND {
                return Err(NodeError::Timeout {
                    what: format!("the cluster to be ok ({via}: {said})"),
                    waited: started.elapsed(),
                });
            }
            crate::progress::status(format!("waiting for the cluster to be ok ({said})"));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The member of `via`'s cluster at `ip` (a node not in the spec, named `name` in messages).
    async fn member_at(&self, via: &str, name: &str, ip: &str) -> Result<ClusterNode, NodeError> {
        self.cluster_nodes_of(via)
            .await?
            .into_iter()
            .find(|x| x.ip == ip)
            .ok_or_else(|| NodeError::Failed {
                node: via.into(),
                what: format!("{name} ({ip}) is not a member of the cluster {via} knows"),
            })
    }

    /// Waits until `node`, a replica about to be asked `CLUSTER FAILOVER`, has no election of
    /// its own in Redis's memory.
    ///
    /// Redis 7.0 keeps a replica's last election (its start, its votes, its epoch) after it
    /// won and became a replica again. Asked to fail over within `2 × cluster-node-timeout`
    /// of that election's start, it "wins" at once with the old epoch, serves its master's
    /// slots for a moment, loses them to the master's newer epoch and resyncs from it: the
    /// writes it took in between are lost (found by e2e_swap's writer in CI: 1 of 5482
    /// acknowledged writes, read back as missing; the replica's log said "Failover election
    /// won" with no election started, its master's "Manual failover timed out"). Asked
    /// between that and `4 × cluster-node-timeout`, it cannot start an election at all and
    /// the master's writes wait 5 s for nothing ("Failover attempt expired"). So the replica
    /// is asked only once its last election started longer ago than that (or it started none
    /// since Redis started), read from its log; waiting here, before any write pause.
    pub(super) async fn await_elections_forgotten(&self, node: &str) -> Result<(), NodeError> {
        let memory = election_memory(self.spec.redis.cluster_node_timeout_ms);
        let s = self.session(node).await?;
        let out = s
            .sudo_ok(
                "read the last election from the Redis log",
                &LAST_ELECTION_SCRIPT.replace("LOGFILE", crate::redis::conf::LOG_FILE),
                None,
            )
            .await?;
        let text = out.stdout_str();
        let mut fields = text.split_whitespace();
        let now: Option<f64> = fields.next().and_then(|x| x.parse().ok());
        let last: Option<f64> = fields.next().and_then(|x| x.parse().ok());
        let (Some(now), Some(last)) = (now, last) else {
            return Ok(());
        };
        let age = Duration::from_secs_f64((now - last).max(0.0));
        // A margin for the log's millisecond stamps and the poll of Redis's cron (100 ms).
        let wait = (memory + Duration::from_millis(500)).saturating_sub(age);
        if wait.is_zero() {
            return Ok(());
        }
        tracing::info!(
            node,
            "its last failover election started {:.1}s ago: waiting {:.1}s before CLUSTER FAILOVER (Redis 7.0 reuses a recent election's votes and epoch)",
            age.as_secs_f64(),
            wait.as_secs_f64()
        );
        crate::progress::status(format!(
            "{node} won or ran an election {}s ago: waiting {}s until Redis forgets it (a failover asked sooner could lose writes)",
            age.as_secs(),
            wait.as_secs() + 1
        ));
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// `node`, a replica, takes over from its master (`CLUSTER FAILOVER`: the master stops
    /// writes, the replica catches up, then they swap), waiting (bounded) until it serves as
    /// master. Nothing is done to a node that is a master already.
    ///
    /// Each ask waits first until the node's last election is forgotten
    /// ([`Self::await_elections_forgotten`]), then gives the failover [`MANUAL_FAILOVER`] to
    /// win. An attempt can lose its election: the masters refuse to vote about one master
    /// twice within `2 × cluster-node-timeout` (a shard that just failed over the other way).
    /// The next ask comes once that attempt's own election is forgotten, which is later than
    /// that window; [`TAKEOVER_ATTEMPTS`] asks at most.
    pub async fn take_over(&self, node: &str) -> Result<(), NodeError> {
        let me = self.myself(node).await?;
        if me.is_master() {
            return Ok(());
        }
        crate::progress::status(format!(
            "{node} takes over from its master (CLUSTER FAILOVER)"
        ));
        let started = Instant::now();
        for attempt in 1..=TAKEOVER_ATTEMPTS {
            self.await_elections_forgotten(node).await?;
            // (A late win while waiting: asking a master to fail over is an error.)
            if self.myself(node).await?.is_master() {
                return Ok(());
            }
            self.cluster_command(node, "CLUSTER FAILOVER").await?;
            let asked = Instant::now();
            while asked.elapsed() < MANUAL_FAILOVER {
                if self.myself(node).await?.is_master() {
                    if attempt > 1 {
                        tracing::info!(node, attempt, "took over after {:?}", started.elapsed());
                    }
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            if attempt < TAKEOVER_ATTEMPTS {
                tracing::info!(
                    node,
                    "CLUSTER FAILOVER did not win its election within {MANUAL_FAILOVER:?} (the masters refuse a second failover of one master within twice cluster-node-timeout): asking again once Redis has forgotten this election"
                );
                crate::progress::status(format!(
                    "{node}: the other masters did not vote (a failover of this shard shortly before); asking again"
                ));
            }
        }
        Err(NodeError::Timeout {
            what: format!(
                "{node} to take over from its master (CLUSTER FAILOVER, {TAKEOVER_ATTEMPTS} attempts)"
            ),
            waited: started.elapsed(),
        })
    }

    /// `node` (not in the spec, at `ip`) leaves the cluster: refused while it serves slots or
    /// a spec node still replicates it; then every spec node that knows it forgets it (all
    /// within CLUSTER FORGET's 60-second ban, so that no one learns of it again by gossip),
    /// and it is reset from `via` (best effort: it is about to be terminated). Idempotent: a
    /// node no one knows any more is only reset.
    pub async fn leave_cluster(&self, node: &str, ip: &str, via: &str) -> Result<(), NodeError> {
        let spec_nodes: Vec<String> = self
            .spec
            .nodes
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect();
        let mut knowers = Vec::new();
        let mut id = None;
        for n in &spec_nodes {
            let view = self.cluster_nodes_of(n).await?;
            if let Some(m) = view.iter().find(|x| x.ip == ip && !x.is_myself()) {
                if m.slot_count() > 0 {
                    return Err(NodeError::Failed {
                        node: n.clone(),
                        what: format!(
                            "{node} ({ip}) still serves {} slots: it cannot leave the cluster before they are moved (run apply again: the plan moves them first)",
                            m.slot_count()
                        ),
                    });
                }
                if let Some(r) = view
                    .iter()
                    .find(|x| x.is_myself() && x.master_id.as_deref() == Some(m.id.as_str()))
                {
                    return Err(NodeError::Failed {
                        node: n.clone(),
                        what: format!(
                            "{n} ({}) is still a replica of {node}: it must replicate another master first (run apply again)",
                            r.ip
                        ),
                    });
                }
                id = Some(m.id.clone());
                knowers.push(n.clone());
            }
        }
        if let Some(id) = &id {
            crate::progress::status(format!("every node forgets {node} (CLUSTER FORGET)"));
            for n in &knowers {
                self.cluster_command(n, &format!("CLUSTER FORGET {id}"))
                    .await?;
            }
            // Other nodes that leave too, still members: they must forget it as well, or
            // their gossip brings it back once the 60-second ban has passed (best effort:
            // each is forgotten and reset in its own turn).
            let spec_ips: Vec<String> = spec_nodes
                .iter()
                .filter_map(|n| self.node_spec(n).ok().map(|x| x.private_ip.to_string()))
                .collect();
            for other in self.cluster_nodes_of(via).await? {
                if other.ip != ip && !other.ip.is_empty() && !spec_ips.contains(&other.ip) {
                    let said = self
                        .remote_cli(via, &other.ip, &format!("CLUSTER FORGET {id}"))
                        .await?;
                    tracing::info!(node, other = %other.ip, "CLUSTER FORGET on a leaving node: {said}");
                }
            }
        }
        // Reset it so that it stops gossiping about a cluster it is no longer part of.
        let said = self.remote_cli(via, ip, "CLUSTER RESET SOFT").await?;
        if said != "OK" {
            crate::progress::status(format!(
                "{node} ({ip}) could not be reset ({said}): it is terminated next"
            ));
        }
        Ok(())
    }

    /// One command as the operator user, from `via` to the node at `ip` (not a spec node, so
    /// not reached over SSH), the password on stdin; its answer (or error), trimmed.
    async fn remote_cli(&self, via: &str, ip: &str, args: &str) -> Result<String, NodeError> {
        let addr: std::net::Ipv4Addr = ip.parse().map_err(|_| NodeError::Failed {
            node: via.into(),
            what: format!("{ip:?} is not an IPv4 address"),
        })?;
        let s = self.session(via).await?;
        let cli = admin_cli_command_at(&self.spec, addr);
        let out = s
            .sudo(
                &format!("REDISCLI_AUTH=\"$(cat)\" {cli} {args} 2>&1"),
                self.stdin(),
            )
            .await?;
        Ok(out.stdout_str().trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_election_is_remembered_four_node_timeouts() {
        assert_eq!(election_memory(15_000), Duration::from_secs(60));
        assert_eq!(election_memory(60_000), Duration::from_secs(240));
        // auth_timeout is at least 2 s.
        assert_eq!(election_memory(100), Duration::from_secs(4));
    }
}
