//! The executor: carries a plan out phase by phase. Within a phase, a step starts as soon as
//! the steps it depends on are done, at most `parallelism` at a time. Every step is a list of
//! idempotent ensures, so a plan interrupted anywhere (an error, Ctrl-C, the process killed)
//! is completed by planning and applying again. Progress is reported as events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

mod swap;
pub use swap::SwapError;

use std::sync::Arc;

use crate::aws::{Aws, AwsError};
use crate::node::{NodeError, NodeRuntime};
use crate::plan::{Action, LocalOp, NodeOp, Op, Phase, Plan, Step};
use crate::progress::{self, Event, Progress};

/// What the executor works with: the EC2 edge, and the node runtime when the plan has node
/// steps.
#[derive(Clone)]
pub struct Ctx {
    pub aws: Aws,
    pub nodes: Option<Arc<NodeRuntime>>,
    /// The operator's SSH private key: a launch goes ahead only if the key pair it names still
    /// holds its public key (none: a run that launches nothing, destroy).
    pub ssh_key: Option<std::path::PathBuf>,
}

/// A failed operation, from any edge (boxed: errors travel far and are rare).
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Aws(Box<AwsError>),
    #[error(transparent)]
    Node(Box<NodeError>),
    #[error(transparent)]
    Swap(Box<SwapError>),
    /// The operator's machine (the state directory).
    #[error("{what}")]
    Local {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<AwsError> for OpError {
    fn from(e: AwsError) -> Self {
        OpError::Aws(Box::new(e))
    }
}

impl From<NodeError> for OpError {
    fn from(e: NodeError) -> Self {
        OpError::Node(Box::new(e))
    }
}

impl From<SwapError> for OpError {
    fn from(e: SwapError) -> Self {
        OpError::Swap(Box::new(e))
    }
}

impl OpError {
    pub fn hint(&self) -> String {
        match self {
            OpError::Aws(e) => e.hint(),
            OpError::Node(e) => e.hint(),
            OpError::Swap(e) => e.hint(),
            OpError::Local { .. } => "fix the local problem above and run again".into(),
        }
    }
}

impl Ctx {
    fn nodes(&self) -> Result<&NodeRuntime, OpError> {
        Ok(self.runtime()?)
    }

    fn runtime(&self) -> Result<&NodeRuntime, NodeError> {
        self.nodes.as_deref().ok_or_else(|| NodeError::Failed {
            node: "-".into(),
            what: "internal: a node step without the node runtime".into(),
        })
    }

    /// Carry out one operation on the edge its kind names; the id it produced, for EC2
    /// creates.
    pub async fn run_op(
        &self,
        op: &Op,
        made: &BTreeMap<String, String>,
    ) -> Result<Option<String>, OpError> {
        match op {
            Op::Ec2(op) => {
                if let (Some(name), Some(key)) = (op.launch_key(), &self.ssh_key) {
                    let public = crate::ssh::keyfile::public_key(key)
                        .ok()
                        .flatten()
                        .ok_or_else(|| OpError::Local {
                            what: format!(
                                "cannot read the public key of {} before a launch",
                                key.display()
                            ),
                            source: "missing or unreadable".into(),
                        })?;
                    self.aws
                        .key_pair_holds(name, &public, &key.display().to_string())
                        .await?;
                }
                let id = self.aws.run_op(op, made).await?;
                // A started instance has a new public IP: the node runtime reads it again.
                if let (Some(n), Some(instance)) = (&self.nodes, op.starts()) {
                    n.started(instance).await;
                }
                Ok(id)
            }
            Op::Node(op) => {
                // Node operations are ensures: one that lost its SSH connection is run once
                // more on a new connection (the runtime reconnects a closed session).
                match self.node_op(op).await {
                    Err(NodeError::Ssh(e)) if e.is_retryable() => {
                        tracing::warn!("{e}; retrying once on a new connection");
                        self.node_op(op).await?;
                    }
                    other => other?,
                }
                Ok(None)
            }
            Op::Local(op) => {
                self.local_op(op).await?;
                Ok(None)
            }
            Op::Swap(s) => swap::swap(self, s, made).await,
        }
    }

    async fn node_op(&self, op: &NodeOp) -> Result<(), NodeError> {
        let n = self.runtime()?;
        match op {
            NodeOp::PinHostKey {
                node,
                instance,
                host_key,
            } => n.pin(node, instance, host_key).await,
            NodeOp::InstallRedis { node } => n.install_redis(node).await,
            NodeOp::UpdateOs { node, restart } => n.update_os(node, *restart).await,
            NodeOp::UpgradeRedis {
                node,
                version,
                restart,
            } => n.upgrade_redis(node, version, *restart).await,
            NodeOp::InstallTls { node, reload, cert } => n.install_tls(node, *reload, *cert).await,
            NodeOp::WriteAcl { node, reload } => n.write_acl(node, *reload).await,
            NodeOp::ApplyKernel { node } => n.apply_kernel(node).await,
            NodeOp::AuthorizeSshKey { node } => n.authorize_ssh_key(node).await,
            NodeOp::RevokeSshKey { node } => n.revoke_ssh_key(node).await,
            NodeOp::WriteConfig {
                node,
                restart,
                live,
            } => n.write_config(node, *restart, *live).await,
            NodeOp::SetFileModes { node } => n.set_file_modes(node).await,
            NodeOp::TakeOverRedis { node, pid } => n.take_over_redis(node, *pid).await,
            NodeOp::SetRuntime { node, settings } => n.set_runtime(node, settings).await,
            NodeOp::CreateCluster { nodes, replicas } => n.create_cluster(nodes, *replicas).await,
            NodeOp::CompleteCluster { nodes, replicas } => {
                n.complete_cluster(nodes, *replicas).await
            }
            NodeOp::ReformCluster { nodes, replicas } => n.reform_cluster(nodes, *replicas).await,
            NodeOp::JoinCluster {
                node,
                via,
                replica_of,
            } => n.join_cluster(node, via, replica_of.as_deref()).await,
            NodeOp::MoveSlots {
                via,
                from,
                to,
                count,
                from_ip,
            } => {
                n.move_slots(via, from, from_ip.as_deref(), to, *count)
                    .await
            }
            NodeOp::Failover { node } => n.take_over(node).await,
            NodeOp::LeaveCluster { node, ip, via } => n.leave_cluster(node, ip, via).await,
            NodeOp::FixSlots { via } => n.fix_slots(via).await,
            NodeOp::WaitHealthy { nodes } => n.wait_healthy(*nodes).await,
        }
    }

    async fn local_op(&self, op: &LocalOp) -> Result<(), OpError> {
        match op {
            // The node runtime keeps the CA it loads or makes: it signs the nodes' certificates.
            LocalOp::EnsureCa => Ok(self.runtime()?.ensure_ca().await?),
            LocalOp::Ca { step } => Ok(self.runtime()?.rotate_ca(*step).await?),
            LocalOp::Replication { step } => Ok(self.runtime()?.rotate_replication(*step).await?),
            LocalOp::SshKey { step, private_key } => {
                use crate::plan::SshKeyStep;
                use crate::ssh::keyfile;
                let key = std::path::Path::new(private_key);
                match step {
                    SshKeyStep::CreateNext => {
                        keyfile::ensure(&keyfile::next_path(key), "redisctl").map(|_| ())
                    }
                    SshKeyStep::Promote => keyfile::promote(key),
                    SshKeyStep::DropPrevious => keyfile::drop_previous(key),
                }
                .map_err(|e| OpError::Local {
                    what: format!("cannot rotate the SSH key {private_key}"),
                    source: Box::new(e),
                })
            }
            LocalOp::EnsureSshKey {
                private_key,
                key_pair,
            } => {
                let comment = format!("redisctl {key_pair}");
                crate::ssh::keyfile::ensure(std::path::Path::new(private_key), &comment).map_err(
                    |e| OpError::Local {
                        what: format!("cannot prepare the SSH key for key pair {key_pair}"),
                        source: Box::new(e),
                    },
                )?;
                Ok(())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("step {address} failed")]
    Step {
        address: String,
        #[source]
        source: OpError,
    },
    #[error(
        "interrupted: {done} of {total} steps done; run the same command again to finish (every step is safe to repeat)"
    )]
    Interrupted { done: usize, total: usize },
}

impl ExecError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ExecError::Step { source, .. } => Some(source.hint()),
            ExecError::Interrupted { .. } => None,
        }
    }
}

/// A finished step: its address, action, start time, and the id it made (or the error).
type StepResult = (String, Action, Instant, Result<Option<String>, OpError>);

#[derive(Debug, Default)]
pub struct Report {
    pub phases: Vec<(Phase, Duration)>,
    pub steps_done: usize,
    pub elapsed: Duration,
}

/// Carry out `plan`. On the first failure no new step starts; steps already running finish;
/// the first error is returned. `interrupt` resolves when the user asks to stop (Ctrl-C).
pub async fn apply(
    ctx: &Ctx,
    plan: &Plan,
    parallelism: usize,
    progress: &dyn Progress,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<Report, ExecError> {
    let start = Instant::now();
    // A node the plan met at first contact is reached only if it presents the key the plan
    // showed, which its first connection pins (before any step runs on it).
    if let Some(n) = &ctx.nodes {
        for op in plan.steps.iter().flat_map(|s| &s.ops) {
            if let Op::Node(NodeOp::PinHostKey {
                instance, host_key, ..
            }) = op
            {
                n.expect_host_key(instance, host_key);
            }
        }
    }
    let mut made: BTreeMap<String, String> = BTreeMap::new();
    let mut report = Report::default();
    let mut phases: Vec<Phase> = plan.steps.iter().map(|s| s.phase).collect();
    phases.dedup();
    let phases: Vec<Phase> = {
        let mut seen = BTreeSet::new();
        phases.into_iter().filter(|p| seen.insert(*p)).collect()
    };
    tokio::pin!(interrupt);
    let mut interrupted = false;
    // Steps finished so far, across phases (a destroy plan runs its phases in reverse).
    let mut done: BTreeSet<String> = BTreeSet::new();
    // Step tasks report their status here; the loop below hands it to `progress`.
    let (status_tx, mut status_rx) = mpsc::unbounded_channel::<Event>();
    for phase in phases {
        let steps: Vec<&Step> = plan.steps.iter().filter(|s| s.phase == phase).collect();
        progress.event(Event::PhaseStarted {
            phase,
            steps: steps.len(),
        });
        let phase_start = Instant::now();
        let trips_before = crate::ssh::round_trips();
        let mut pending: Vec<&Step> = steps.clone();
        let mut running: JoinSet<StepResult> = JoinSet::new();
        let mut running_names: BTreeSet<String> = BTreeSet::new();
        let mut failure: Option<ExecError> = None;
        loop {
            if failure.is_none() && !interrupted {
                let mut i = 0;
                while i < pending.len() && running.len() < parallelism {
                    let s = pending[i];
                    if s.depends_on.iter().all(|d| done.contains(d)) {
                        pending.remove(i);
                        progress.event(Event::StepStarted {
                            address: s.address.clone(),
                            action: s.action,
                        });
                        let (ctx, ops, made, address, action) = (
                            ctx.clone(),
                            s.ops.clone(),
                            made.clone(),
                            s.address.clone(),
                            s.action,
                        );
                        running_names.insert(address.clone());
                        let scope = (address.clone(), status_tx.clone());
                        running.spawn(progress::in_step(scope, async move {
                            let t = Instant::now();
                            let mut id = None;
                            for op in &ops {
                                match ctx.run_op(op, &made).await {
                                    Ok(Some(x)) => id = Some(x),
                                    Ok(None) => {}
                                    Err(e) => return (address, action, t, Err(e)),
                                }
                            }
                            (address, action, t, Ok(id))
                        }));
                    } else {
                        i += 1;
                    }
                }
            }
            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                // Statuses first: one sent just before its step ended is shown before the end.
                biased;
                Some(e) = status_rx.recv() => {
                    progress.event(e);
                    continue;
                }
                j = running.join_next() => j,
                _ = &mut interrupt, if !interrupted => {
                    interrupted = true;
                    progress.event(Event::Interrupted { running: running_names.iter().cloned().collect() });
                    continue;
                }
            };
            let Some(joined) = joined else { break };
            let (address, action, t, result) = joined.expect("a step task does not panic");
            running_names.remove(&address);
            match result {
                Ok(id) => {
                    progress.event(Event::StepFinished {
                        address: address.clone(),
                        action,
                        id: id.clone(),
                        elapsed: t.elapsed(),
                    });
                    if let Some(id) = id {
                        made.insert(address.clone(), id);
                    }
                    done.insert(address);
                    report.steps_done += 1;
                }
                Err(source) => {
                    progress.event(Event::StepFailed {
                        address: address.clone(),
                        elapsed: t.elapsed(),
                    });
                    if failure.is_none() {
                        failure = Some(ExecError::Step { address, source });
                    }
                }
            }
        }
        if let Some(f) = failure {
            return Err(f);
        }
        if interrupted {
            return Err(ExecError::Interrupted {
                done: report.steps_done,
                total: plan.steps.len(),
            });
        }
        debug_assert!(
            pending.is_empty(),
            "a well-ordered plan leaves no step behind"
        );
        let elapsed = phase_start.elapsed();
        tracing::info!(
            phase = phase.number(),
            ssh_round_trips = crate::ssh::round_trips() - trips_before,
            seconds = elapsed.as_secs_f64(),
            "phase finished"
        );
        progress.event(Event::PhaseFinished { phase, elapsed });
        report.phases.push((phase, elapsed));
    }
    report.elapsed = start.elapsed();
    Ok(report)
}
