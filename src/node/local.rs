//! What the node runtime keeps on the operator's machine: the cluster CA in the state
//! directory, and the node files rendered from the spec, the secrets and that CA (with their
//! hashes, which the planner compares with what each node holds).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::{NodeError, NodeRuntime};
use crate::pki::{self, Ca};
use crate::redis::{NodeFile, files};

impl NodeRuntime {
    /// The CA from the state directory (loaded once).
    pub(super) async fn ca(&self) -> Result<Arc<Ca>, NodeError> {
        let mut guard = self.ca.lock().await;
        if let Some(ca) = guard.as_ref() {
            return Ok(ca.clone());
        }
        let dir = &self.spec.cluster.state_dir;
        let ca = Ca::load(dir).map_err(|source| NodeError::Ca {
            dir: dir.display().to_string(),
            source,
        })?;
        let ca = Arc::new(ca);
        *guard = Some(ca.clone());
        Ok(ca)
    }

    /// Create the CA if it is missing (its key stays in the state directory, 0600).
    pub async fn ensure_ca(&self) -> Result<(), NodeError> {
        let dir = &self.spec.cluster.state_dir;
        let (ca, _) = Ca::load_or_create(
            dir,
            &self.spec.cluster.name,
            SystemTime::now(),
            pki::CA_VALIDITY_DAYS,
        )
        .map_err(|source| NodeError::Ca {
            dir: dir.display().to_string(),
            source,
        })?;
        *self.ca.lock().await = Some(Arc::new(ca));
        Ok(())
    }

    /// The CA certificate and the files' hashes every node must have, if the CA exists.
    pub async fn local_facts(
        &self,
    ) -> Result<(Option<String>, BTreeMap<String, BTreeMap<String, String>>), NodeError> {
        let dir = &self.spec.cluster.state_dir;
        if !dir.join(pki::CA_CERT_FILE).exists() && !dir.join(pki::CA_KEY_FILE).exists() {
            return Ok((None, BTreeMap::new()));
        }
        let ca = self.ca().await?;
        let hashes = files::desired_hashes(&self.spec, &self.secrets, &ca).map_err(|e| {
            NodeError::Failed {
                node: "-".into(),
                what: e.to_string(),
            }
        })?;
        Ok((Some(ca.cert_pem().to_string()), hashes))
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
