//! The cluster CA and node certificates (rcgen): the CA key stays in the state directory (0600)
//! and never reaches a node; node certificates carry IP SANs and both serverAuth and clientAuth.
//!
//! - [`Ca`] — the cluster CA: created once (ECDSA P-256), kept as `ca.crt` / `ca.key` in the
//!   state directory, loaded back for every apply. It signs node certificates and redisctl's
//!   own client certificate ([`Ca::issue_node`], [`Ca::issue_client`]); the new private keys
//!   exist only in memory ([`KeyPem`]) until the executor sends them to their node.
//! - [`Authority`] — the CAs of a cluster and the stage of a CA rotation: which CA signs node
//!   certificates, which ones the nodes trust, the replication password kept apart from the
//!   CA key.
//! - [`inspect`] / [`reissue_reason`] — what a certificate observed on a node says (expiry,
//!   SANs, EKUs, whether our CA signed it) and whether the plan must re-issue it.
//! - [`client`] — client certificates for applications, written to a directory of the
//!   operator's choice and recorded in the state directory's inventory.
//!
//! Nothing here reads the clock: every function that needs "now" takes it as a parameter, so
//! the planner stays a pure function of its inputs.

mod authority;
mod ca;
pub mod client;
mod inspect;
mod issue;

use std::path::PathBuf;

pub use authority::{
    Authority, CaStage, NEXT_CERT_FILE, NEXT_KEY_FILE, REPLICATION_NEXT_FILE,
    REPLICATION_SECRET_FILE, REPLICATION_SECRET_LABEL, bundle, create_next,
    create_replication_next, drop_next, promote, promote_replication,
};
pub use ca::{CA_CERT_FILE, CA_KEY_FILE, CA_VALIDITY_DAYS, Ca, CaStatus, ca_common_name};
pub use inspect::{CertInfo, ReissueReason, WantedCert, inspect, reissue_reason};
pub use issue::{IssuedCert, KeyPem, node_sans};

/// How far `not_before` is set before "now", so that a node whose clock is a little behind the
/// operator's does not reject a fresh certificate as not yet valid.
pub const BACKDATE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot create state directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "CA key {} is readable by group or others (mode {mode:o}); run chmod 600 on it",
        path.display()
    )]
    KeyMode { path: PathBuf, mode: u32 },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} exists but {} does not: the CA in {} is incomplete; restore the missing file from a backup (node certificates were signed by it) or remove the directory's CA files to start a new CA",
        present.display(), missing.display(), dir.display()
    )]
    IncompleteCa {
        dir: PathBuf,
        present: PathBuf,
        missing: PathBuf,
    },
    #[error(
        "the CA in {} is `{found}`, not `{expected}`: each cluster needs its own state directory",
        dir.display()
    )]
    OtherCluster {
        dir: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{} does not belong to {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{what} is not a CA certificate")]
    NotCa { what: String },
    #[error("{what} is not a valid PEM certificate")]
    BadCertificate {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what} is not a valid PEM private key")]
    BadKey {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot generate {what}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error(
        "the end of a CA rotation was cut short in {} (ca.next.crt is there, its key already moved to ca.key), and the spec asks for tls.ca_rotation = \"{asked}\": remove tls.ca_rotation from the spec and apply to finish the rotation",
        dir.display()
    )]
    RotationEnding { dir: PathBuf, asked: &'static str },
    #[error("{what}: a time outside what a certificate can hold")]
    Time { what: String },
}

/// `SystemTime` → the `time` crate's UTC date, whole seconds (X.509 times have no fractions).
fn to_offset(t: std::time::SystemTime, what: &str) -> Result<time::OffsetDateTime, PkiError> {
    let secs = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
    };
    secs.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(|| PkiError::Time { what: what.into() })
}

/// Unix seconds → `SystemTime` (negative values are before the epoch).
fn from_unix(secs: i64) -> std::time::SystemTime {
    let d = std::time::Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        std::time::UNIX_EPOCH + d
    } else {
        std::time::UNIX_EPOCH - d
    }
}

/// `not_before` / `not_after` for a certificate valid `days` from `now`.
fn validity(
    now: std::time::SystemTime,
    days: u32,
    what: &str,
) -> Result<(time::OffsetDateTime, time::OffsetDateTime), PkiError> {
    let start = now
        .checked_sub(BACKDATE)
        .ok_or_else(|| PkiError::Time { what: what.into() })?;
    let end = now
        .checked_add(std::time::Duration::from_secs(u64::from(days) * 86_400))
        .ok_or_else(|| PkiError::Time { what: what.into() })?;
    Ok((to_offset(start, what)?, to_offset(end, what)?))
}
