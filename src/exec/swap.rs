//! Carrying out `Op::Swap`: the stages of phase 8 for one node, each recorded in the
//! instance's `redisctl:stage` tag once done (with the ids it produced in `redisctl:swap-*`
//! tags), so that a rerun, by anyone, continues after the last recorded stage and never repeats
//! a destructive one. Until the last stage the plaintext volume is not touched beyond a detach,
//! so every failure can be rolled back (docs/runbook.md).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Ctx, OpError};
use crate::aws::{AwsError, InstanceNow};
use crate::node::{KeysBefore, NodeError};
use crate::observed::{self, Tags, tags};
use crate::plan::encryption::{Seen, SwapInFlight, prove_swap};
use crate::plan::{Ref, SwapRootVolume};
use crate::plan::{SwapStage, stage_of};

/// How long a node waits after its start for the cluster to be whole again (without replicas
/// every node is swapped at once: the others' snapshots must finish too).
const REJOIN_WAIT: Duration = Duration::from_secs(3600);

/// Set when a swap of this run fails: the other nodes' swaps stop waiting for a whole cluster
/// that cannot come (their stage stays recorded; a rerun continues them).
static A_SWAP_FAILED: AtomicBool = AtomicBool::new(false);

const SWAP_TAGS: [&str; 5] = [
    tags::STAGE,
    tags::SWAP_KEYS,
    tags::SWAP_OLD_VOLUME,
    tags::SWAP_SNAPSHOT,
    tags::SWAP_NEW_VOLUME,
];

#[derive(Debug, thiserror::Error)]
#[error("root volume swap of node {node} stopped while {during} (last stage done: {})", done.map(SwapStage::as_str).unwrap_or("none"))]
pub struct SwapError {
    pub node: String,
    pub instance: String,
    pub device: String,
    pub during: &'static str,
    pub done: Option<SwapStage>,
    pub old_volume: Option<String>,
    #[source]
    pub source: Box<OpError>,
}

impl SwapError {
    pub fn hint(&self) -> String {
        if self.done >= Some(SwapStage::Verified) {
            return "the swap itself is done and verified: fix the cause above and run apply again; it only removes the plaintext snapshot and old volume".into();
        }
        let Some(old) = self.old_volume.as_deref() else {
            return "nothing was changed: the node still runs on its plaintext root volume (if Redis had paused writes for the swap, the pause ends by itself within 2 minutes). Fix the cause above and run apply again".into();
        };
        format!(
            "nothing is lost: the plaintext root volume {old} is untouched. Fix the cause above and run apply again: the swap continues from the recorded stage and repeats none. Or roll back by hand (docs/runbook.md, \"a failed swap\"): stop instance {}, detach the encrypted volume if it is attached, attach {old} at {}, delete the instance's redisctl:stage and redisctl:swap-* tags (before the start, or an apply in between continues the swap), then start it",
            self.instance, self.device
        )
    }
}

struct Run<'a> {
    ctx: &'a Ctx,
    op: &'a SwapRootVolume,
    instance: String,
    tags: Tags,
    stage: Option<SwapStage>,
}

impl Run<'_> {
    fn fail(&self, during: &'static str, e: impl Into<OpError>) -> Box<SwapError> {
        Box::new(SwapError {
            node: self.op.node.clone(),
            instance: self.instance.clone(),
            device: self.op.device.clone(),
            during,
            done: self.stage,
            old_volume: self.tags.get(tags::SWAP_OLD_VOLUME).cloned(),
            source: Box::new(e.into()),
        })
    }

    fn missing(&self, during: &'static str, tag: &str) -> Box<SwapError> {
        self.fail(
            during,
            AwsError::Local {
                what: format!(
                    "instance {} is at swap stage {} but has no {tag} tag",
                    self.instance,
                    self.stage.map(SwapStage::as_str).unwrap_or("none")
                ),
                source: "the swap's tags were changed by hand".into(),
            },
        )
    }

    fn tag(&self, during: &'static str, k: &str) -> Result<String, Box<SwapError>> {
        self.tags
            .get(k)
            .cloned()
            .ok_or_else(|| self.missing(during, k))
    }

    /// Record a finished stage (and what it produced) on the instance.
    async fn record(
        &mut self,
        stage: SwapStage,
        during: &'static str,
        extra: &[(&str, String)],
    ) -> Result<(), Box<SwapError>> {
        let mut set = Tags::new();
        set.insert(tags::STAGE.into(), stage.as_str().into());
        for (k, v) in extra {
            set.insert((*k).into(), v.clone());
        }
        self.ctx
            .aws
            .retag(&self.instance, &set, &[])
            .await
            .map_err(|e| self.fail(during, e))?;
        self.tags.extend(set);
        self.stage = Some(stage);
        tracing::info!(node = %self.op.node, stage = stage.as_str(), "swap stage done");
        Ok(())
    }

    /// Look again at the instance and at every id its swap tags name, and refuse unless each is
    /// proven this node's (`plan::encryption::prove_swap`): the planner proved it from the
    /// observation, but anyone with ec2:CreateTags may have changed tags since. Returns the
    /// volumes and snapshots that exist (the ones gone are deleted already).
    async fn prove(&self, during: &'static str) -> Result<Proven, Box<SwapError>> {
        let Some(stage) = self.stage else {
            return Ok(Proven::default());
        };
        let aws = &self.ctx.aws;
        let now = aws
            .instance_now(&self.instance)
            .await
            .map_err(|e| self.fail(during, e))?;
        let mut found = Proven::default();
        for k in [tags::SWAP_OLD_VOLUME, tags::SWAP_NEW_VOLUME] {
            if let Some(id) = self.tags.get(k) {
                let v = aws
                    .volume_by_id(id)
                    .await
                    .map_err(|e| self.fail(during, e))?;
                found.volumes.insert(id.clone(), v);
            }
        }
        if let Some(id) = self.tags.get(tags::SWAP_SNAPSHOT) {
            let x = aws
                .snapshot_by_id(id)
                .await
                .map_err(|e| self.fail(during, e))?;
            found.snapshots.insert(id.clone(), x);
        }
        check_chain(self.op, &self.instance, stage, &self.tags, &now, &found)
            .map_err(|e| self.fail(during, e))?;
        Ok(found)
    }

    async fn state(&self, during: &'static str) -> Result<String, Box<SwapError>> {
        Ok(self
            .ctx
            .aws
            .instance_now(&self.instance)
            .await
            .map_err(|e| self.fail(during, e))?
            .state)
    }
}

/// What a fresh look found of the ids the swap tags name: `None` for an id EC2 does not know.
#[derive(Debug, Default)]
struct Proven {
    volumes: BTreeMap<String, Option<observed::Volume>>,
    snapshots: BTreeMap<String, Option<observed::Snapshot>>,
}

impl Proven {
    fn exists(&self, id: &str) -> bool {
        matches!(self.volumes.get(id), Some(Some(_)))
            || matches!(self.snapshots.get(id), Some(Some(_)))
    }
}

/// The executor's side of the proof (pure, so that it is tested without EC2): the swap tags this
/// run acts on are still the instance's, and every id they name is this node's.
fn check_chain(
    op: &SwapRootVolume,
    instance: &str,
    stage: SwapStage,
    run_tags: &Tags,
    now: &InstanceNow,
    found: &Proven,
) -> Result<(), AwsError> {
    let refuse = |why: String| {
        AwsError::Local {
        what: format!(
            "refusing to continue the root volume swap of node {} on instance {instance}: {why}",
            op.node
        ),
        source: "nothing was deleted: redisctl touches only volumes and snapshots it proves are this node's. Run `redisctl plan`: it names what is wrong and what to do".into(),
    }
    };
    for k in SWAP_TAGS {
        if now.tags.get(k) != run_tags.get(k) {
            return Err(refuse(format!(
                "its {k} tag was changed during the run (now {}, was {})",
                now.tags.get(k).map(String::as_str).unwrap_or("(none)"),
                run_tags.get(k).map(String::as_str).unwrap_or("(none)")
            )));
        }
    }
    let cluster = op.volume_tags.get(tags::CLUSTER).ok_or_else(|| {
        refuse(format!(
            "internal: the plan's volume tags have no {}",
            tags::CLUSTER
        ))
    })?;
    let facts = SwapInFlight {
        cluster,
        node: &op.node,
        az: &op.az,
        instance,
        stage,
        tags: run_tags,
        root: now.block_devices.get(&op.device).map(String::as_str),
    };
    let volume = |id: &str| match found.volumes.get(id) {
        Some(Some(v)) => Seen::Found(v),
        Some(None) => Seen::Gone,
        None => Seen::Unobserved,
    };
    let snapshot = |id: &str| match found.snapshots.get(id) {
        Some(Some(x)) => Seen::Found(x),
        Some(None) => Seen::Gone,
        None => Seen::Unobserved,
    };
    prove_swap(&facts, volume, snapshot).map_err(refuse)
}

fn not_stopped(instance: &str, state: &str) -> AwsError {
    AwsError::Local {
        what: format!(
            "instance {instance} is {state} in the middle of the swap: it was started by someone else, so the snapshot may miss writes"
        ),
        source: "refusing to continue; roll back (docs/runbook.md) and plan again".into(),
    }
}

/// Swap one node's root volume; returns the encrypted volume's id.
pub(super) async fn swap(
    ctx: &Ctx,
    op: &SwapRootVolume,
    made: &BTreeMap<String, String>,
) -> Result<Option<String>, OpError> {
    let r = swap_stages(ctx, op, made).await;
    if r.is_err() {
        A_SWAP_FAILED.store(true, Ordering::Relaxed);
    }
    r
}

async fn swap_stages(
    ctx: &Ctx,
    op: &SwapRootVolume,
    made: &BTreeMap<String, String>,
) -> Result<Option<String>, OpError> {
    let instance = match &op.instance {
        Ref::Id(id) => id.clone(),
        Ref::Step(a) => made.get(a).cloned().ok_or_else(|| AwsError::Local {
            what: format!("internal: {a} has not produced an id"),
            source: "dependency order".into(),
        })?,
    };
    let nodes = ctx.nodes()?;
    let now = ctx.aws.instance_now(&instance).await?;
    let mut run = Run {
        ctx,
        op,
        stage: stage_of(&now.tags),
        tags: now.tags,
        instance,
    };
    // A stage recorded before this run: its tags may be anyone's.
    run.prove("checking the swap in flight").await?;
    let node = op.node.as_str();
    let started = Instant::now();
    let mut down_since = None;
    // This run handed the node's slots to its replica: it takes them back once verified.
    let mut handed = false;

    // 0 + 1: durable Redis, its key count, stop. Redone while the instance still runs.
    if run.stage < Some(SwapStage::Stopped) {
        let state = now.state.clone();
        if state == "running" {
            let during = "preparing Redis (failover, AOF rewrite, key count)";
            crate::progress::status(during);
            if op.failover {
                handed = nodes
                    .swap_failover(node)
                    .await
                    .map_err(|e| run.fail(during, e))?
                    .is_some();
            }
            let before = nodes
                .swap_prepare(node)
                .await
                .map_err(|e| run.fail(during, e))?;
            let old = now.block_devices.get(&op.device).cloned().ok_or_else(|| {
                run.fail(
                    during,
                    AwsError::Local {
                        what: format!("instance {} has no volume at {}", run.instance, op.device),
                        source: "the plan's root device is not attached".into(),
                    },
                )
            })?;
            run.record(
                SwapStage::Prepared,
                during,
                &[
                    (tags::SWAP_KEYS, before.to_tag()),
                    (tags::SWAP_OLD_VOLUME, old),
                ],
            )
            .await?;
            let during = "stopping Redis and the instance";
            crate::progress::status(during);
            nodes
                .swap_stop_redis(node)
                .await
                .map_err(|e| run.fail(during, e))?;
            down_since = Some(Instant::now());
        } else if run.stage.is_none() {
            return Err(run
                .fail(
                    "preparing Redis",
                    NodeError::Failed {
                        node: node.into(),
                        what: format!(
                            "the instance is {state} and no key count was recorded before; start it (apply does when no swap is in flight) and plan again"
                        ),
                    },
                )
                .into());
        }
        let during = "stopping the instance";
        crate::progress::status(during);
        if state != "stopped" {
            run.ctx
                .aws
                .stop_and_wait(&run.instance)
                .await
                .map_err(|e| run.fail(during, e))?;
        }
        run.record(SwapStage::Stopped, during, &[]).await?;
    }
    let before = {
        let t = run.tag("reading the swap's tags", tags::SWAP_KEYS)?;
        KeysBefore::parse(&t)
            .ok_or_else(|| run.missing("reading the swap's tags", tags::SWAP_KEYS))?
    };
    let old = run.tag("reading the swap's tags", tags::SWAP_OLD_VOLUME)?;

    // 2: the plaintext snapshot.
    if run.stage < Some(SwapStage::Snapshotted) {
        let during = "snapshotting the plaintext root volume";
        crate::progress::status(during);
        let state = run.state(during).await?;
        if state != "stopped" {
            return Err(run.fail(during, not_stopped(&run.instance, &state)).into());
        }
        let snap = run
            .ctx
            .aws
            .ensure_snapshot(&old, &op.snapshot_tags)
            .await
            .map_err(|e| run.fail(during, e))?;
        run.record(
            SwapStage::Snapshotted,
            during,
            &[(tags::SWAP_SNAPSHOT, snap)],
        )
        .await?;
    }
    let snap = run.tag("reading the swap's tags", tags::SWAP_SNAPSHOT)?;

    // 3: the encrypted volume, directly from the snapshot (docs/runbook.md says why).
    if run.stage < Some(SwapStage::VolumeCreated) {
        let during = "creating the encrypted volume";
        crate::progress::status(during);
        let vol = run
            .ctx
            .aws
            .ensure_encrypted_volume(&snap, &op.az, &op.volume_type, &op.kms_key, &op.volume_tags)
            .await
            .map_err(|e| run.fail(during, e))?;
        run.record(
            SwapStage::VolumeCreated,
            during,
            &[(tags::SWAP_NEW_VOLUME, vol)],
        )
        .await?;
    }
    let new = run.tag("reading the swap's tags", tags::SWAP_NEW_VOLUME)?;

    // 4: detach the old root, attach the new one at the same device.
    if run.stage < Some(SwapStage::Attached) {
        let during = "swapping the root volume";
        crate::progress::status(during);
        run.prove(during).await?;
        let state = run.state(during).await?;
        if state != "stopped" {
            return Err(run.fail(during, not_stopped(&run.instance, &state)).into());
        }
        run.ctx
            .aws
            .swap_attachment(&run.instance, &op.device, &old, &new)
            .await
            .map_err(|e| run.fail(during, e))?;
        run.record(SwapStage::Attached, during, &[]).await?;
    }

    // 5: start; SSH with the pinned host key, then Redis (systemd starts it at boot).
    if run.stage < Some(SwapStage::Started) {
        let during = "starting the node on the encrypted volume";
        crate::progress::status(during);
        let state = run.state(during).await?;
        let aws = &run.ctx.aws;
        // Running without the stage recorded: an earlier run started it and stopped before
        // seeing SSH and Redis. Stop and start it again rather than trust a boot nobody saw.
        if state != "stopped" {
            aws.wait_instance(&run.instance, &["running", "stopped"])
                .await
                .map_err(|e| run.fail(during, e))?;
            aws.stop_and_wait(&run.instance)
                .await
                .map_err(|e| run.fail(during, e))?;
        }
        aws.start_instance(&run.instance)
            .await
            .map_err(|e| run.fail(during, e))?;
        nodes
            .swap_wait_back(node)
            .await
            .map_err(|e| run.fail(during, e))?;
        run.record(SwapStage::Started, during, &[]).await?;
    }

    // 6: rejoined, cluster ok, the keys are all there.
    if run.stage < Some(SwapStage::Verified) {
        let during = "verifying the cluster and the data";
        crate::progress::status(during);
        let keys = nodes
            .swap_verify(node, op.cluster_nodes, before, REJOIN_WAIT, &|| {
                A_SWAP_FAILED.load(Ordering::Relaxed)
            })
            .await
            .map_err(|e| run.fail(during, e))?;
        if let Some(t) = down_since {
            tracing::info!(
                node,
                keys,
                "swap: Redis was down {:.1}s",
                t.elapsed().as_secs_f64()
            );
        }
        run.record(SwapStage::Verified, during, &[]).await?;
        if handed {
            // Back as a replica of the node that took its slots: it takes them back, so the
            // swap leaves every master where it was (a swap killed before this is left to
            // the planner, which restores the masters' AZs: nodes/topology.rs).
            let during = "taking its slots back from its replica (CLUSTER FAILOVER)";
            crate::progress::status(during);
            nodes
                .take_over(node)
                .await
                .map_err(|e| run.fail(during, e))?;
        }
    }

    // 7: only now remove the plaintext (or keep it, tagged, for a rollback).
    let during = "removing the plaintext snapshot and old volume";
    crate::progress::status(during);
    // Nothing is deleted that is not proven this node's now.
    let proven = run.prove(during).await?;
    let aws = &run.ctx.aws;
    // Copies a killed run may have made twice (see `swap_strays`) go whatever is kept.
    let (stray_snaps, stray_vols) = aws
        .swap_strays(&old, &op.snapshot_tags, &op.volume_tags, &[&new, &snap])
        .await
        .map_err(|e| run.fail(during, e))?;
    for v in &stray_vols {
        tracing::info!(node, volume = %v, "swap: removing a stray volume made from the plaintext snapshot");
        aws.delete_volume(v)
            .await
            .map_err(|e| run.fail(during, e))?;
    }
    for s in &stray_snaps {
        tracing::info!(node, snapshot = %s, "swap: removing a stray plaintext snapshot");
        aws.delete_snapshot(s)
            .await
            .map_err(|e| run.fail(during, e))?;
    }
    if op.keep_old {
        let mut kept = Tags::new();
        kept.insert(tags::KEPT_FOR_ROLLBACK.into(), node.to_string());
        for id in [&old, &snap].into_iter().filter(|id| proven.exists(id)) {
            aws.retag(id, &kept, &[])
                .await
                .map_err(|e| run.fail(during, e))?;
        }
    } else {
        aws.delete_snapshot(&snap)
            .await
            .map_err(|e| run.fail(during, e))?;
        aws.delete_volume(&old)
            .await
            .map_err(|e| run.fail(during, e))?;
    }
    aws.retag(&run.instance, &Tags::new(), &SWAP_TAGS)
        .await
        .map_err(|e| run.fail(during, e))?;
    tracing::info!(node, "swap done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(Some(new))
}

impl From<Box<SwapError>> for OpError {
    fn from(e: Box<SwapError>) -> Self {
        OpError::Swap(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "vol-0old";
    const SNAP: &str = "snap-0plain";
    const NEW: &str = "vol-0new";

    fn node_tags() -> Tags {
        [
            (tags::CLUSTER.to_string(), "prod".to_string()),
            (tags::NODE.to_string(), "n1".to_string()),
        ]
        .into()
    }

    fn op() -> SwapRootVolume {
        SwapRootVolume {
            node: "n1".into(),
            instance: Ref::Id("i-1".into()),
            az: "us-east-1a".into(),
            device: "/dev/sda1".into(),
            volume_type: "gp3".into(),
            kms_key: "alias/aws/ebs".into(),
            failover: false,
            cluster_nodes: 3,
            snapshot_tags: node_tags(),
            volume_tags: node_tags(),
            keep_old: false,
        }
    }

    fn vol(id: &str, encrypted: bool, from: Option<&str>) -> Option<observed::Volume> {
        Some(observed::Volume {
            id: id.into(),
            size_gib: 8,
            volume_type: "gp3".into(),
            encrypted,
            kms_key_id: None,
            az: "us-east-1a".into(),
            state: "available".into(),
            snapshot_id: from.map(String::from),
            attachment: None,
            tags: node_tags(),
        })
    }

    /// A verified swap: the instance runs on NEW (from SNAP, of OLD), all tagged for n1.
    fn verified() -> (Tags, InstanceNow, Proven) {
        let mut t = node_tags();
        for (k, v) in [
            (tags::STAGE, SwapStage::Verified.as_str()),
            (tags::SWAP_KEYS, "master:1"),
            (tags::SWAP_OLD_VOLUME, OLD),
            (tags::SWAP_SNAPSHOT, SNAP),
            (tags::SWAP_NEW_VOLUME, NEW),
        ] {
            t.insert(k.into(), v.into());
        }
        let now = InstanceNow {
            state: "running".into(),
            tags: t.clone(),
            block_devices: [("/dev/sda1".to_string(), NEW.to_string())].into(),
        };
        let mut found = Proven::default();
        found.volumes.insert(OLD.into(), vol(OLD, false, None));
        found.volumes.insert(NEW.into(), vol(NEW, true, Some(SNAP)));
        found.snapshots.insert(
            SNAP.into(),
            Some(observed::Snapshot {
                id: SNAP.into(),
                volume_id: Some(OLD.into()),
                state: "completed".into(),
                encrypted: false,
                tags: node_tags(),
            }),
        );
        (t, now, found)
    }

    fn check(t: &Tags, now: &InstanceNow, found: &Proven) -> Result<(), String> {
        check_chain(&op(), "i-1", SwapStage::Verified, t, now, found).map_err(|e| e.to_string())
    }

    #[test]
    fn the_deletes_wait_for_a_proven_chain() {
        let (t, now, found) = verified();
        check(&t, &now, &found).unwrap();
        // Deleted already (an interrupted last stage): nothing to prove, nothing to delete.
        let mut gone = Proven::default();
        gone.volumes.insert(OLD.into(), None);
        gone.volumes.insert(NEW.into(), vol(NEW, true, Some(SNAP)));
        gone.snapshots.insert(SNAP.into(), None);
        check(&t, &now, &gone).unwrap();
        assert!(!gone.exists(OLD) && found.exists(OLD) && found.exists(SNAP));
    }

    #[test]
    fn a_volume_not_tagged_for_the_node_is_refused_by_id() {
        let (t, now, mut found) = verified();
        let old = found.volumes.get_mut(OLD).unwrap().as_mut().unwrap();
        old.tags = [("team".to_string(), "payments".to_string())].into();
        let e = check(&t, &now, &found).unwrap_err();
        assert!(e.contains("refusing") && e.contains(OLD), "{e}");
        assert!(e.contains("not tagged redisctl:cluster=prod"), "{e}");
    }

    #[test]
    fn a_snapshot_of_another_volume_is_refused() {
        let (t, now, mut found) = verified();
        let s = found.snapshots.get_mut(SNAP).unwrap().as_mut().unwrap();
        s.volume_id = Some("vol-0other".into());
        let e = check(&t, &now, &found).unwrap_err();
        assert!(
            e.contains(SNAP) && e.contains("was taken of vol-0other"),
            "{e}"
        );
    }

    #[test]
    fn a_tag_changed_since_the_run_read_it_is_refused() {
        let (t, mut now, found) = verified();
        now.tags
            .insert(tags::SWAP_OLD_VOLUME.into(), "vol-0victim".into());
        let e = check(&t, &now, &found).unwrap_err();
        assert!(e.contains("was changed during the run"), "{e}");
    }

    #[test]
    fn an_id_not_looked_at_is_refused() {
        let (t, now, mut found) = verified();
        found.volumes.remove(OLD);
        let e = check(&t, &now, &found).unwrap_err();
        assert!(e.contains(OLD) && e.contains("was not observed"), "{e}");
    }
}
