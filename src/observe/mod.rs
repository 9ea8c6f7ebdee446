//! Observation: everything the planner is told about the world, gathered in one place.
//!
//! `Observed` (plain data, in `observed/`) is filled from three sources: EC2 (a constant number
//! of tag-filtered Describe calls, `aws::observe`), each running node over SSH (one sudo script
//! per node, `node::NodeRuntime::observe`), and the operator's machine — the clock, the SSH key
//! pair, the cluster CA, the hashes the node files must have (rendered from the spec, the
//! passwords and the CA, so the planner never sees a secret), and the client-certificate
//! inventory. Nothing here decides anything: the planner does.

use std::sync::Arc;

use crate::aws::{Aws, AwsError};
use crate::node::{NodeError, NodeRuntime};
use crate::observed::Observed;
use crate::spec::Spec;
use crate::spec::secrets::SecretError;

/// How much of the world to observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nodes {
    /// EC2 and the local facts only (destroy, verify).
    Skip,
    /// Each running node once; one that does not answer is a fact (plan).
    Look,
    /// Wait for nodes whose sshd is still coming up (apply: a node launched or started by an
    /// interrupted run is not mistaken for an unreachable one).
    Wait,
}

/// The world as observed, with the edges that observed it (and will change it).
pub struct World {
    pub observed: Observed,
    pub aws: Aws,
    /// The node runtime, unless the nodes were skipped.
    pub nodes: Option<Arc<NodeRuntime>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot read the state of cluster {cluster} from AWS")]
    Aws {
        cluster: String,
        #[source]
        source: AwsError,
    },
    #[error(transparent)]
    KeyFile(#[from] crate::ssh::keyfile::KeyFileError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Secrets(Vec<SecretError>),
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl ObserveError {
    /// What to do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            ObserveError::Aws { source, .. } => Some(source.hint()),
            ObserveError::Node(e) => Some(e.hint()),
            ObserveError::Secrets(_) => Some(secrets_hint()),
            ObserveError::KeyFile(_) => None,
        }
    }
}

/// What to do about passwords that cannot be read.
fn secrets_hint() -> String {
    "set the password_env variables (or create the password_file files) the spec names for its users".into()
}

/// The passwords the spec names, read from the environment or their files.
pub fn secrets(spec: &Spec) -> Result<Vec<(String, crate::spec::secrets::Secret)>, ObserveError> {
    crate::spec::secrets::read_all(spec).map_err(ObserveError::Secrets)
}

/// Read the cluster's state from EC2, the local facts and (unless `Nodes::Skip`) each running
/// node over SSH.
pub async fn observe(spec: &Spec, nodes: Nodes) -> Result<World, ObserveError> {
    let aws = Aws::connect(&spec.cluster.region).await;
    let mut observed = read_aws(&aws, spec).await?;
    if nodes == Nodes::Wait && settle_pending(&aws, &observed).await {
        observed = read_aws(&aws, spec).await?;
    }
    complete(spec, aws, observed, nodes).await
}

/// `redisctl adopt`'s look: the cluster's own resources (by tag), everything in the VPC `vpc`
/// names (an id or a Name tag), which of those are the spec's ([`crate::plan::adopt`]), and,
/// when nothing stops the adoption, the world as it will be once they are tagged: the nodes
/// observed as `plan` does (a host key met for the first time is checked against the
/// instance's console output and pinned only by the apply), so that the plan made from it is
/// what the first apply will change.
pub async fn observe_adopting(
    spec: &Spec,
    vpc: &str,
) -> Result<(Option<World>, crate::plan::adopt::Adoption), ObserveError> {
    let aws = Aws::connect(&spec.cluster.region).await;
    let current = read_aws(&aws, spec).await?;
    let aws_err = |source| ObserveError::Aws {
        cluster: spec.cluster.name.clone(),
        source,
    };
    let ids = aws.vpc_ids(vpc).await.map_err(aws_err)?;
    let found = match ids.as_slice() {
        [id] => crate::aws::observe_scope(&aws, spec, crate::aws::Scope::Vpc(id))
            .await
            .map_err(aws_err)?,
        _ => Observed {
            vpcs: ids
                .iter()
                .map(|id| crate::observed::Vpc {
                    id: id.clone(),
                    cidr: String::new(),
                    state: String::new(),
                    dns_support: None,
                    dns_hostnames: None,
                    tags: [("Name".to_string(), vpc.to_string())].into(),
                })
                .collect(),
            ..Observed::default()
        },
    };
    let adoption = crate::plan::adopt::adoption(spec, vpc, &found, &current);
    if !adoption.problems.is_empty() {
        return Ok((None, adoption));
    }
    let mut observed = crate::plan::adopt::as_tagged(&found, &adoption.claims);
    observed.set_aside_strangers();
    let world = complete(spec, aws, observed, Nodes::Look).await?;
    Ok((Some(world), adoption))
}

/// The local facts and (unless `Nodes::Skip`) each running node, added to what EC2 showed.
async fn complete(
    spec: &Spec,
    aws: Aws,
    mut observed: Observed,
    nodes: Nodes,
) -> Result<World, ObserveError> {
    observed.local_public_key = crate::ssh::keyfile::public_key(&spec.ssh.private_key)?;
    let key = &spec.ssh.private_key;
    observed.local.ssh_next_public_key =
        crate::ssh::keyfile::public_key(&crate::ssh::keyfile::next_path(key))?;
    observed.local.ssh_previous_public_key = crate::ssh::keyfile::previous_public_key(key)?;
    // The planner's clock (it never reads one itself): seconds since the epoch.
    observed.local.now = crate::pki::client::unix(std::time::SystemTime::now());
    observed.local.client_certs = crate::pki::client::inventory(&spec.cluster.state_dir);
    let mut runtime = None;
    if nodes != Nodes::Skip {
        let secrets = secrets(spec)?;
        observed.local.secrets_digest = crate::spec::secrets::digest(&secrets);
        let rt = Arc::new(NodeRuntime::new(spec, aws.clone(), secrets)?);
        let local = rt.local_facts().await?;
        observed.local.ca_cert_pem = local.ca_cert_pem;
        observed.local.ca_next_cert_pem = local.ca_next_cert_pem;
        observed.local.replication_rotating = local.replication_rotating;
        observed.local.desired_files = local.desired_files;
        if observed.local_public_key.is_some() {
            let trips = crate::ssh::round_trips();
            observed.nodes = rt.observe(&observed, nodes == Nodes::Wait).await;
            tracing::info!(
                nodes = observed.nodes.len(),
                ssh_round_trips = crate::ssh::round_trips() - trips,
                "nodes observed"
            );
        }
        runtime = Some(rt);
    }
    Ok(World {
        observed,
        aws,
        nodes: runtime,
    })
}

/// The cluster's resources in EC2 (strangers set aside).
async fn read_aws(aws: &Aws, spec: &Spec) -> Result<Observed, ObserveError> {
    let mut observed =
        crate::aws::observe(aws, spec)
            .await
            .map_err(|source| ObserveError::Aws {
                cluster: spec.cluster.name.clone(),
                source,
            })?;
    observed.set_aside_strangers();
    Ok(observed)
}

/// Apply waits (within `Aws::instance_wait`) for node instances that are still `pending`
/// (launched or started by a run interrupted a moment ago) or `stopping` (stopped by an
/// encryption swap interrupted a moment ago) to leave it: inside such an instance nothing can
/// be observed, and nothing is planned for it until it is `running` or `stopped` (the swap
/// resumes on a stopped one), so the run would fail on it (the chaos campaign saw a killed
/// swap's rerun fail twice with "no running instance found" while EC2 was still stopping the
/// node) or its final look find that node's steps still to do. Whether there were any (then
/// EC2 is read again). A wait that fails (a launch EC2 ended) is no error here: the planner
/// judges the state it ended in.
async fn settle_pending(aws: &Aws, observed: &Observed) -> bool {
    let pending = pending_nodes(observed);
    for id in &pending {
        tracing::info!("node instance {id} is pending or stopping: waiting for it before planning");
        if let Err(e) = aws.wait_instance(id, &["running", "stopped"]).await {
            tracing::info!("{e}");
        }
    }
    !pending.is_empty()
}

/// The node instances EC2 shows `pending` or `stopping`.
fn pending_nodes(observed: &Observed) -> Vec<String> {
    observed
        .instances
        .iter()
        .filter(|i| {
            matches!(i.state.as_str(), "pending" | "stopping")
                && i.tags.contains_key(crate::observed::tags::NODE)
        })
        .map(|i| i.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{Instance, tags};

    #[test]
    fn apply_waits_for_pending_and_stopping_node_instances_only() {
        let node = |id: &str, state: &str, tagged: bool| Instance {
            tags: if tagged {
                [(tags::NODE.to_string(), format!("n-{id}"))].into()
            } else {
                Default::default()
            },
            ..Instance::bare(id, state)
        };
        let observed = Observed {
            instances: vec![
                node("i-1", "running", true),
                node("i-2", "pending", true),
                node("i-3", "pending", false),
                node("i-4", "stopped", true),
                node("i-5", "stopping", true),
                node("i-6", "shutting-down", true),
            ],
            ..Observed::default()
        };
        assert_eq!(pending_nodes(&observed), ["i-2", "i-5"]);
    }
}
