//! Fingerprints of what a plan was computed from. A saved plan carries them; apply recomputes
//! them from the spec and a fresh observation and refuses the plan when either differs.

use sha2::{Digest, Sha256};

use super::model::Fingerprint;
use crate::observed::Observed;
use crate::spec::Spec;

/// SHA-256 of the observed state's canonical JSON (observation sorts every list by id). The
/// observation time is left out: only the world counts.
pub fn observed(observed: &Observed) -> String {
    let mut o = observed.clone();
    o.local.now = 0;
    let json = serde_json::to_vec(&o).expect("observed state serializes");
    hex::encode(Sha256::digest(&json))
}

/// SHA-256 of the resolved spec (every default explicit; no secret values are in it).
pub fn spec(spec: &Spec) -> String {
    hex::encode(Sha256::digest(spec.to_toml().as_bytes()))
}

pub fn of(s: &Spec, o: &Observed) -> Fingerprint {
    Fingerprint {
        spec: spec(s),
        observed: observed(o),
    }
}
