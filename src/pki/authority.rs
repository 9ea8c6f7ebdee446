//! The CAs of a cluster and the stage of a CA rotation: which CA signs node certificates,
//! which CAs the nodes trust (the bundle in /etc/redis/tls/ca.crt), which one signs client
//! certificates, and the replication user's password, which must not change with the CA.
//!
//! A rotation lives in the state directory next to the CA in force (`ca.crt`, `ca.key`):
//!
//! - `ca.next.key`, then `ca.next.crt`: the new CA, made at the first stage (`trust`). The
//!   certificate is written last: a key without it is a creation cut short, made again.
//! - the end (the spec no longer asks for a stage, every node trusts only the new CA): the
//!   replication password is first written to `replication.secret` (it was derived from the
//!   old CA's key), the client-certificate inventory records which CA issued its old lines,
//!   then `ca.next.key` becomes `ca.key` and `ca.next.crt` becomes `ca.crt`. A promotion cut
//!   short between the two renames leaves `ca.next.crt` with the new key already in `ca.key`:
//!   [`Authority::load`] reads that as the end still under way, and the next apply finishes it.
//! - an abort (`ca_rotation = "abort"`): every node trusts only the old CA again, then the new
//!   CA's files are removed.
//!
//! Which stage applies is a function of the spec and of whether a new CA exists
//! ([`CaStage::of`]), so that the planner (which sees only certificates) and the node runtime
//! (which holds the keys) agree.

use std::path::Path;
use std::time::SystemTime;

use super::{CA_CERT_FILE, CA_KEY_FILE, Ca, PkiError};
use crate::private_fs;
use crate::spec::secrets::Secret;
use crate::spec::types::CaRotation;

/// The new CA's certificate during a rotation.
pub const NEXT_CERT_FILE: &str = "ca.next.crt";
/// The new CA's key during a rotation (0600).
pub const NEXT_KEY_FILE: &str = "ca.next.key";
/// The replication user's password, once a CA rotation made it independent of the CA key.
pub const REPLICATION_SECRET_FILE: &str = "replication.secret";
/// A replication password rotation's new password (0600), until every node uses it.
pub const REPLICATION_NEXT_FILE: &str = "replication.next.secret";
/// The label of the replication password derived from the (first) CA key.
pub const REPLICATION_SECRET_LABEL: &str = "replication-password";

/// Where a CA rotation stands, from the spec's `tls.ca_rotation` and the state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaStage {
    /// No rotation: one CA signs and is trusted.
    Steady,
    /// Both CAs trusted; node certificates from the old one (the new CA is made if missing).
    Trust,
    /// Both CAs trusted; node certificates from the new one.
    Reissue,
    /// Only the new CA trusted, then it becomes the CA in force.
    Finish,
    /// Only the old CA trusted, then the new one is removed.
    Abort,
}

impl CaStage {
    pub fn of(asked: Option<CaRotation>, next_exists: bool) -> CaStage {
        match (asked, next_exists) {
            (None, false) | (Some(CaRotation::Abort), false) => CaStage::Steady,
            (None, true) => CaStage::Finish,
            (Some(CaRotation::Trust), _) => CaStage::Trust,
            (Some(CaRotation::Reissue), _) => CaStage::Reissue,
            (Some(CaRotation::Abort), true) => CaStage::Abort,
        }
    }

    /// The new CA signs node certificates.
    pub fn signs_with_next(self) -> bool {
        matches!(self, CaStage::Reissue | CaStage::Finish)
    }

    /// The nodes trust the old CA (the one in `ca.crt`).
    pub fn trusts_current(self) -> bool {
        !matches!(self, CaStage::Finish)
    }

    /// The nodes trust the new CA.
    pub fn trusts_next(self) -> bool {
        matches!(self, CaStage::Trust | CaStage::Reissue | CaStage::Finish)
    }

    /// Its name in plans and notes.
    pub fn describe(self) -> &'static str {
        match self {
            CaStage::Steady => "no rotation",
            CaStage::Trust => "stage 1 of 3, trust",
            CaStage::Reissue => "stage 2 of 3, reissue",
            CaStage::Finish => "stage 3 of 3, the end",
            CaStage::Abort => "abort",
        }
    }
}

/// The CA bundle the nodes trust at `stage`: the old CA first, then the new one. `next` is
/// None while the new CA does not exist yet (then only the old one can be trusted).
pub fn bundle(stage: CaStage, current: &str, next: Option<&str>) -> String {
    let mut out = String::new();
    let mut add = |pem: &str| {
        out.push_str(pem.trim_end());
        out.push('\n');
    };
    match next {
        None => add(current),
        Some(next) => {
            if stage.trusts_current() {
                add(current);
            }
            if stage.trusts_next() {
                add(next);
            }
        }
    }
    out
}

/// The cluster's CAs as the state directory holds them, at the stage the spec asks for.
pub struct Authority {
    /// The CA in force (`ca.crt`). None only while a promotion is cut short between its two
    /// renames (its key is gone; the new CA is all that is needed then).
    current: Option<Ca>,
    /// The old CA's certificate, also when its key is gone.
    current_pem: String,
    next: Option<Ca>,
    stage: CaStage,
    /// `replication.secret`, if written.
    replication: Option<Secret>,
    /// `replication.next.secret`: a replication password rotation under way.
    replication_next: Option<Secret>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("current", &self.current)
            .field("next", &self.next)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// One CA, no rotation (a new cluster; tests).
    pub fn single(ca: Ca) -> Authority {
        Authority {
            current_pem: ca.cert_pem().to_string(),
            current: Some(ca),
            next: None,
            stage: CaStage::Steady,
            replication: None,
            replication_next: None,
        }
    }

    /// Two CAs at `stage` (tests, the simulation).
    pub fn pair(current: Ca, next: Ca, stage: CaStage) -> Authority {
        Authority {
            current_pem: current.cert_pem().to_string(),
            current: Some(current),
            next: Some(next),
            stage,
            replication: None,
            replication_next: None,
        }
    }

    /// The CAs in `dir`, None when it holds no CA at all. Reads only (a plan writes nothing).
    pub fn load(dir: &Path, asked: Option<CaRotation>) -> Result<Option<Authority>, PkiError> {
        let has = |f: &str| dir.join(f).exists();
        if !has(CA_CERT_FILE) && !has(CA_KEY_FILE) {
            return Ok(None);
        }
        let replication = read_secret(dir, REPLICATION_SECRET_FILE)?;
        let replication_next = read_secret(dir, REPLICATION_NEXT_FILE)?;
        let next_cert = has(NEXT_CERT_FILE);
        if next_cert && !has(NEXT_KEY_FILE) {
            // A promotion cut short: the new key is already `ca.key`.
            if let Some(asked) = asked {
                return Err(PkiError::RotationEnding {
                    dir: dir.to_path_buf(),
                    asked: asked.as_str(),
                });
            }
            // The promotion wrote it before the rename; the old key it was derived from is gone.
            if replication.is_none() {
                return Err(PkiError::Read {
                    path: dir.join(REPLICATION_SECRET_FILE),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
            let next = Ca::load_pair(dir, NEXT_CERT_FILE, CA_KEY_FILE)?;
            let current_pem =
                std::fs::read_to_string(dir.join(CA_CERT_FILE)).map_err(|source| {
                    PkiError::Read {
                        path: dir.join(CA_CERT_FILE),
                        source,
                    }
                })?;
            return Ok(Some(Authority {
                current: None,
                current_pem,
                next: Some(next),
                stage: CaStage::Finish,
                replication,
                replication_next,
            }));
        }
        let current = Ca::load(dir)?;
        let next = if next_cert {
            Some(Ca::load_pair(dir, NEXT_CERT_FILE, NEXT_KEY_FILE)?)
        } else {
            None
        };
        Ok(Some(Authority {
            current_pem: current.cert_pem().to_string(),
            current: Some(current),
            stage: CaStage::of(asked, next.is_some()),
            next,
            replication,
            replication_next,
        }))
    }

    pub fn stage(&self) -> CaStage {
        self.stage
    }

    /// The CA in force's certificate (`ca.crt`).
    pub fn current_pem(&self) -> &str {
        &self.current_pem
    }

    pub fn next(&self) -> Option<&Ca> {
        self.next.as_ref()
    }

    /// The CA that signs node certificates at this stage.
    pub fn signer(&self) -> &Ca {
        match (&self.next, &self.current) {
            (Some(next), _) if self.stage.signs_with_next() => next,
            (_, Some(current)) => current,
            (Some(next), None) => next,
            (None, None) => unreachable!("an authority holds at least one CA"),
        }
    }

    /// The CA that signs client certificates: the newest (a client certificate issued during a
    /// rotation must outlive the old CA).
    pub fn newest(&self) -> &Ca {
        match (&self.next, &self.current) {
            (Some(next), _) if self.stage != CaStage::Abort => next,
            (_, Some(current)) => current,
            (Some(next), None) => next,
            (None, None) => unreachable!("an authority holds at least one CA"),
        }
    }

    /// What the nodes' /etc/redis/tls/ca.crt holds at this stage.
    pub fn node_bundle(&self) -> String {
        bundle(
            self.stage,
            &self.current_pem,
            self.next.as_ref().map(Ca::cert_pem),
        )
    }

    /// What an application trusts (`redisctl client-cert` writes it as ca.crt): every CA the
    /// state directory holds, so that it keeps working through every stage of a rotation.
    pub fn client_bundle(&self) -> String {
        let next = self.next.as_ref().map(Ca::cert_pem);
        bundle(
            if self.stage == CaStage::Abort {
                CaStage::Steady
            } else {
                CaStage::Trust
            },
            &self.current_pem,
            next,
        )
    }

    /// The password replicas log in with (`masterauth`): the new one while a replication
    /// password rotation is under way, else [`Authority::replication_secret`].
    pub fn replication_login(&self) -> Secret {
        self.replication_next
            .clone()
            .unwrap_or_else(|| self.replication_secret())
    }

    /// The passwords the replication user accepts: the login, and during a rotation the one
    /// it replaces (a replica not switched yet still gets in).
    pub fn replication_accepted(&self) -> Vec<Secret> {
        let mut all = vec![self.replication_login()];
        if self.replication_next.is_some() {
            all.push(self.replication_secret());
        }
        all
    }

    /// A replication password rotation is under way.
    pub fn replication_rotating(&self) -> bool {
        self.replication_next.is_some()
    }

    /// The replication password in force (before a rotation's new one replaces it):
    /// `replication.secret` once written, else derived from the CA key (as every cluster made
    /// before rotations has it).
    pub fn replication_secret(&self) -> Secret {
        if let Some(s) = &self.replication {
            return s.clone();
        }
        match &self.current {
            Some(ca) => ca.derive_secret(REPLICATION_SECRET_LABEL),
            // load() refuses a promotion cut short without replication.secret.
            None => unreachable!("a promotion under way has written replication.secret"),
        }
    }
}

fn read_secret(dir: &Path, name: &str) -> Result<Option<Secret>, PkiError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(Secret::new(s.trim().to_string()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read { path, source }),
    }
}

/// Make the rotation's new CA in `dir` (a no-op when it exists).
pub fn create_next(dir: &Path, cluster: &str, now: SystemTime) -> Result<(), PkiError> {
    if dir.join(NEXT_CERT_FILE).exists() {
        return Ok(());
    }
    let ca = Ca::create(cluster, now, super::CA_VALIDITY_DAYS)?;
    ca.save_as(dir, NEXT_CERT_FILE, NEXT_KEY_FILE)
}

/// The end of a rotation: the new CA becomes the CA in force (see the module's text for the
/// order, which a kill anywhere leaves finishable). `annotate` marks the inventory's lines
/// that name no CA as the old CA's.
pub fn promote(dir: &Path) -> Result<(), PkiError> {
    let write = |name: &str, bytes: &[u8], mode| {
        let path = dir.join(name);
        private_fs::write_atomic(&path, bytes, mode)
            .map_err(|source| PkiError::Write { path, source })
    };
    let rename = |from: &str, to: &str| {
        private_fs::rename(&dir.join(from), &dir.join(to)).map_err(|source| PkiError::Write {
            path: dir.join(to),
            source,
        })
    };
    if dir.join(NEXT_KEY_FILE).exists() {
        // The old key is still there: the first half has not run.
        let old = Ca::load(dir)?;
        if !dir.join(REPLICATION_SECRET_FILE).exists() {
            let secret = old.derive_secret(REPLICATION_SECRET_LABEL);
            write(
                REPLICATION_SECRET_FILE,
                secret.expose().as_bytes(),
                private_fs::FILE_MODE,
            )?;
        }
        super::client::annotate_inventory(dir, &old.fingerprint())?;
        rename(NEXT_KEY_FILE, CA_KEY_FILE)?;
    }
    if dir.join(NEXT_CERT_FILE).exists() {
        rename(NEXT_CERT_FILE, CA_CERT_FILE)?;
    }
    Ok(())
}

/// The start of a replication password rotation: a new random password (32 bytes from the
/// system's random source, hex) in `replication.next.secret`, 0600 (a no-op when it exists).
pub fn create_replication_next(dir: &Path) -> Result<(), PkiError> {
    let path = dir.join(REPLICATION_NEXT_FILE);
    if path.exists() {
        return Ok(());
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|source| PkiError::Read {
            path: "/dev/urandom".into(),
            source,
        })?;
    private_fs::write_atomic(&path, hex::encode(bytes).as_bytes(), private_fs::FILE_MODE)
        .map_err(|source| PkiError::Write { path, source })
}

/// The end of a replication password rotation: the new password becomes the one in force
/// (one rename: a kill leaves either the rotation under way or its end).
pub fn promote_replication(dir: &Path) -> Result<(), PkiError> {
    let next = dir.join(REPLICATION_NEXT_FILE);
    if !next.exists() {
        return Ok(());
    }
    let to = dir.join(REPLICATION_SECRET_FILE);
    private_fs::rename(&next, &to).map_err(|source| PkiError::Write { path: to, source })
}

/// An abort: the new CA's files removed (the certificate first: without it the key is a
/// creation cut short, which nothing reads).
pub fn drop_next(dir: &Path) -> Result<(), PkiError> {
    for name in [NEXT_CERT_FILE, NEXT_KEY_FILE] {
        private_fs::remove(&dir.join(name)).map_err(|source| PkiError::Write {
            path: dir.join(name),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::pki::ca::tests::t0;

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("redisctl-authority-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn load(dir: &Path, asked: Option<CaRotation>) -> Authority {
        Authority::load(dir, asked).unwrap().unwrap()
    }

    fn certs(bundle: &str) -> usize {
        bundle.matches("-----BEGIN CERTIFICATE-----").count()
    }

    #[test]
    fn stages_follow_the_spec_and_the_new_ca() {
        use CaRotation::*;
        assert_eq!(CaStage::of(None, false), CaStage::Steady);
        assert_eq!(CaStage::of(Some(Trust), false), CaStage::Trust);
        assert_eq!(CaStage::of(Some(Reissue), true), CaStage::Reissue);
        assert_eq!(CaStage::of(None, true), CaStage::Finish);
        assert_eq!(CaStage::of(Some(Abort), true), CaStage::Abort);
        assert_eq!(CaStage::of(Some(Abort), false), CaStage::Steady);
    }

    /// A whole rotation on disk: who signs and who is trusted at each stage; the replication
    /// password the same before and after the end (it was derived from the old key, which the
    /// end deletes); the inventory's old lines marked with the old CA.
    #[test]
    fn a_rotation_keeps_the_replication_password_and_marks_old_client_certificates() {
        let dir = tmpdir("rotation");
        let (old, _) = Ca::load_or_create(&dir, "prod", t0(), 30).unwrap();
        let replication = load(&dir, None).replication_secret();
        fs::write(
            dir.join(crate::pki::client::INVENTORY_FILE),
            "{\"cn\":\"app\",\"serial\":\"01\",\"not_after\":1}\n",
        )
        .unwrap();

        create_next(&dir, "prod", t0()).unwrap();
        assert_eq!(
            fs::metadata(dir.join(NEXT_KEY_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let trust = load(&dir, Some(CaRotation::Trust));
        let next_pem = trust.next().unwrap().cert_pem().to_string();
        assert_eq!(trust.signer().cert_pem(), old.cert_pem());
        assert_eq!(trust.newest().cert_pem(), next_pem);
        assert_eq!(certs(&trust.node_bundle()), 2);
        assert_eq!(certs(&trust.client_bundle()), 2);
        // Made once: a second call keeps it.
        create_next(&dir, "prod", t0()).unwrap();
        assert_eq!(
            load(&dir, Some(CaRotation::Trust)).newest().cert_pem(),
            next_pem
        );

        let reissue = load(&dir, Some(CaRotation::Reissue));
        assert_eq!(reissue.signer().cert_pem(), next_pem);
        assert_eq!(certs(&reissue.node_bundle()), 2);

        let finish = load(&dir, None);
        assert_eq!(finish.stage(), CaStage::Finish);
        assert_eq!(finish.node_bundle().trim(), next_pem.trim());
        assert_eq!(finish.replication_secret(), replication);

        promote(&dir).unwrap();
        let after = load(&dir, None);
        assert_eq!(after.stage(), CaStage::Steady);
        assert_eq!(after.current_pem(), next_pem);
        assert!(after.next().is_none());
        assert_eq!(after.replication_secret(), replication);
        assert_eq!(
            fs::metadata(dir.join(REPLICATION_SECRET_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let inventory = crate::pki::client::inventory(&dir);
        assert_eq!(
            inventory[0].ca_sha256.as_deref(),
            Some(old.fingerprint().as_str())
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The end killed between its two renames: `ca.next.crt` with the new key already in
    /// `ca.key`. Loading reads it as the end under way (the new CA signs and is trusted alone),
    /// a spec that asks for a stage is refused with what to do, and promoting again finishes.
    #[test]
    fn an_end_cut_short_between_its_renames_is_finished_by_the_next_one() {
        let dir = tmpdir("cut");
        Ca::load_or_create(&dir, "prod", t0(), 30).unwrap();
        let replication = load(&dir, None).replication_secret();
        create_next(&dir, "prod", t0()).unwrap();
        let next_pem = load(&dir, None).next().unwrap().cert_pem().to_string();
        // What promote() does up to its first rename.
        fs::write(dir.join(REPLICATION_SECRET_FILE), replication.expose()).unwrap();
        fs::rename(dir.join(NEXT_KEY_FILE), dir.join(CA_KEY_FILE)).unwrap();

        let cut = load(&dir, None);
        assert_eq!(cut.stage(), CaStage::Finish);
        assert_eq!(cut.signer().cert_pem(), next_pem);
        assert_eq!(cut.node_bundle().trim(), next_pem.trim());
        assert_eq!(cut.replication_secret(), replication);
        let err = Authority::load(&dir, Some(CaRotation::Trust)).unwrap_err();
        assert!(err.to_string().contains("remove tls.ca_rotation"), "{err}");

        promote(&dir).unwrap();
        let after = load(&dir, None);
        assert_eq!(after.current_pem(), next_pem);
        assert!(after.next().is_none());
        assert_eq!(after.replication_secret(), replication);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// An abort: the new CA's files go, the old CA stays in force; a new CA's key without its
    /// certificate (a creation cut short) is not a CA and is made again.
    #[test]
    fn an_abort_removes_the_new_ca_and_a_half_made_one_is_made_again() {
        let dir = tmpdir("abort");
        let (old, _) = Ca::load_or_create(&dir, "prod", t0(), 30).unwrap();
        create_next(&dir, "prod", t0()).unwrap();
        let abort = load(&dir, Some(CaRotation::Abort));
        assert_eq!(abort.signer().cert_pem(), old.cert_pem());
        assert_eq!(abort.node_bundle().trim(), old.cert_pem().trim());
        assert_eq!(abort.newest().cert_pem(), old.cert_pem());
        drop_next(&dir).unwrap();
        drop_next(&dir).unwrap();
        let after = load(&dir, Some(CaRotation::Abort));
        assert_eq!(after.stage(), CaStage::Steady);
        assert!(after.next().is_none());

        fs::write(dir.join(NEXT_KEY_FILE), "half").unwrap();
        assert!(load(&dir, Some(CaRotation::Trust)).next().is_none());
        create_next(&dir, "prod", t0()).unwrap();
        assert!(load(&dir, Some(CaRotation::Trust)).next().is_some());
        fs::remove_dir_all(&dir).unwrap();
    }
}
