//! What the node runtime keeps on the operator's machine: the cluster CA in the state
//! directory, and the node files rendered from the spec, the secrets and that CA (with their
//! hashes, which the planner compares with what each node holds).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::{NodeError, NodeRuntime};
use crate::pki::{self, Authority, Ca};
use crate::redis::{NodeFile, files};

/// What [`NodeRuntime::local_facts`] finds on the operator's machine.
#[derive(Debug, Default)]
pub struct LocalFacts {
    pub ca_cert_pem: Option<String>,
    pub ca_next_cert_pem: Option<String>,
    pub replication_rotating: bool,
    pub desired_files: BTreeMap<String, BTreeMap<String, String>>,
}

impl NodeRuntime {
    /// The cluster's CAs from the state directory, at the rotation stage the spec asks for
    /// (loaded once; a local step that changes them forgets it).
    pub(super) async fn ca(&self) -> Result<Arc<Authority>, NodeError> {
        let mut guard = self.ca.lock().await;
        if let Some(ca) = guard.as_ref() {
            return Ok(ca.clone());
        }
        let dir = &self.spec.cluster.state_dir;
        let ca = Authority::load(dir, self.spec.tls.ca_rotation)
            .map_err(|source| NodeError::Ca {
                dir: dir.display().to_string(),
                source,
            })?
            .ok_or_else(|| NodeError::Ca {
                dir: dir.display().to_string(),
                source: pki::PkiError::Read {
                    path: dir.join(pki::CA_CERT_FILE),
                    source: std::io::ErrorKind::NotFound.into(),
                },
            })?;
        let ca = Arc::new(ca);
        *guard = Some(ca.clone());
        Ok(ca)
    }

    /// Create the CA if it is missing (its key stays in the state directory, 0600).
    pub async fn ensure_ca(&self) -> Result<(), NodeError> {
        let dir = &self.spec.cluster.state_dir;
        Ca::load_or_create(
            dir,
            &self.spec.cluster.name,
            SystemTime::now(),
            pki::CA_VALIDITY_DAYS,
        )
        .map_err(|source| NodeError::Ca {
            dir: dir.display().to_string(),
            source,
        })?;
        *self.ca.lock().await = None;
        Ok(())
    }

    /// A CA rotation's local steps: the new CA made (`pki.ca.next`), made the CA in force at
    /// the end (`pki.ca.promote`), or removed by an abort (`pki.ca.drop_next`).
    pub async fn rotate_ca(&self, step: crate::plan::CaStep) -> Result<(), NodeError> {
        use crate::plan::CaStep;
        let dir = &self.spec.cluster.state_dir;
        match step {
            CaStep::CreateNext => pki::create_next(dir, &self.spec.cluster.name, SystemTime::now()),
            CaStep::Promote => pki::promote(dir),
            CaStep::DropNext => pki::drop_next(dir),
        }
        .map_err(|source| NodeError::Ca {
            dir: dir.display().to_string(),
            source,
        })?;
        *self.ca.lock().await = None;
        Ok(())
    }

    /// A replication password rotation's local steps: the new password made
    /// (`pki.replication.next`), then made the one in force (`pki.replication.promote`).
    pub async fn rotate_replication(
        &self,
        step: crate::plan::ReplicationStep,
    ) -> Result<(), NodeError> {
        use crate::plan::ReplicationStep;
        let dir = &self.spec.cluster.state_dir;
        match step {
            ReplicationStep::CreateNext => pki::create_replication_next(dir),
            ReplicationStep::Promote => pki::promote_replication(dir),
        }
        .map_err(|source| NodeError::Ca {
            dir: dir.display().to_string(),
            source,
        })?;
        *self.ca.lock().await = None;
        Ok(())
    }

    /// The CA certificates (the one in force, a rotation's new one) and the files' hashes every
    /// node must have, if the CA exists.
    pub async fn local_facts(&self) -> Result<LocalFacts, NodeError> {
        let dir = &self.spec.cluster.state_dir;
        if !dir.join(pki::CA_CERT_FILE).exists() && !dir.join(pki::CA_KEY_FILE).exists() {
            return Ok(LocalFacts::default());
        }
        let ca = self.ca().await?;
        let hashes = files::desired_hashes(&self.spec, &self.secrets, &ca).map_err(|e| {
            NodeError::Failed {
                node: "-".into(),
                what: e.to_string(),
            }
        })?;
        Ok(LocalFacts {
            ca_cert_pem: Some(ca.current_pem().to_string()),
            ca_next_cert_pem: ca.next().map(|c| c.cert_pem().to_string()),
            replication_rotating: ca.replication_rotating(),
            desired_files: hashes,
        })
    }

    pub(super) async fn file(&self, node: &str, which: NodeFile) -> Result<String, NodeError> {
        let ca = self.ca().await?;
        let n = self.node_spec(node)?;
        let all = files::node_files(&self.spec, n, &self.secrets, &ca).map_err(|e| {
            NodeError::Failed {
                node: node.into(),
                what: e.to_string(),
            }
        })?;
        Ok(all
            .into_iter()
            .find(|(f, _)| f.path == which.path)
            .map(|(_, c)| c)
            .expect("every node file is rendered"))
    }
}
