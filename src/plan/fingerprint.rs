//! Fingerprints of what a plan was computed from. A saved plan carries them; apply recomputes
//! them from the spec and a fresh observation and refuses the plan when either differs.
//!
//! The desired side is the spec plus a digest of the passwords it names, so a changed password
//! makes a saved plan stale as a spec change does. The observed side is everything that was seen
//! (AWS, the nodes, the local CA), without the observation time and without what is derived
//! from both sides (the node files' desired hashes).

use sha2::{Digest, Sha256};

use super::model::Fingerprint;
use crate::observed::Observed;
use crate::spec::Spec;

/// SHA-256 of the observed state's canonical JSON (observation sorts every list by id),
/// without the observation time and the desired files (those are the spec's side).
pub fn observed(observed: &Observed) -> String {
    let mut o = observed.clone();
    o.local.now = 0;
    o.local.desired_files.clear();
    o.local.secrets_digest.clear();
    o.local.client_certs.clear();
    // How many keys each node holds moves with every write of a live application: a saved
    // plan would be stale before it could be applied (seen in the rotation test, whose client
    // writes throughout). The plan uses it only to say about how many keys a slot move moves.
    for n in o.nodes.values_mut() {
        if let crate::observed::NodeObservation::Reached(f) = n
            && let Some(c) = f.cluster.as_mut()
        {
            c.keys = None;
        }
    }
    let json = serde_json::to_vec(&o).expect("observed state serializes");
    hex::encode(Sha256::digest(&json))
}

/// SHA-256 of the resolved spec (every default explicit; no secret values are in it) and of
/// the digest of the passwords it names.
pub fn spec(spec: &Spec, observed: &Observed) -> String {
    let mut h = Sha256::new();
    // With the S3 backend, the state directory is a private copy made for this run: where it
    // is (and the SSH key in it) is not part of what was planned.
    let mut spec = spec.clone();
    if matches!(spec.state, crate::spec::types::StateBackend::S3(_)) {
        let copy = std::path::PathBuf::from("(s3 state)");
        if let Ok(rel) = spec.ssh.private_key.strip_prefix(&spec.cluster.state_dir) {
            spec.ssh.private_key = copy.join(rel);
        }
        spec.cluster.state_dir = copy;
    }
    h.update(spec.to_toml().as_bytes());
    h.update(observed.local.secrets_digest.as_bytes());
    hex::encode(h.finalize())
}

pub fn of(s: &Spec, o: &Observed) -> Fingerprint {
    Fingerprint {
        spec: spec(s, o),
        observed: observed(o),
    }
}

#[cfg(test)]
mod tests {
    use crate::observed::{ClusterView, NodeFacts, NodeObservation, Observed};

    fn with_keys(keys: u64, state: &str) -> Observed {
        let mut o = Observed::default();
        o.nodes.insert(
            "n1".into(),
            NodeObservation::Reached(Box::new(NodeFacts {
                cluster: Some(ClusterView {
                    state: state.into(),
                    keys: Some(keys),
                    ..ClusterView::default()
                }),
                ..NodeFacts::default()
            })),
        );
        o
    }

    /// A live application's writes do not make a saved plan stale; the cluster's state does.
    #[test]
    fn key_counts_are_not_part_of_the_observed_fingerprint() {
        assert_eq!(
            super::observed(&with_keys(10, "ok")),
            super::observed(&with_keys(12_345, "ok"))
        );
        assert_ne!(
            super::observed(&with_keys(10, "ok")),
            super::observed(&with_keys(10, "fail"))
        );
    }
}
