//! The cluster CA and its two files in the state directory.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use super::PkiError;
use crate::private_fs;

/// The CA certificate in the state directory (mode 0644).
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA private key in the state directory (mode 0600; never leaves it).
pub const CA_KEY_FILE: &str = "ca.key";

/// How long a new CA is valid: ten years. A CA is never replaced silently (every node
/// certificate hangs on it); the planner warns as its end approaches.
pub const CA_VALIDITY_DAYS: u32 = 3650;

/// Whether [`Ca::load_or_create`] found a CA or made one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaStatus {
    Loaded,
    Created,
}

/// The cluster CA: its certificate and its signing key.
pub struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    pub(super) issuer: Issuer<'static, KeyPair>,
    not_after: SystemTime,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.subject())
            .field("not_after", &self.not_after)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The CA's common name for a cluster.
pub fn ca_common_name(cluster: &str) -> String {
    format!("redisctl {cluster} CA")
}

impl Ca {
    /// A new CA for `cluster`: ECDSA P-256 (what OpenSSL on Debian/Ubuntu and every Redis client
    /// handles best), basic constraints CA with path length 0 (it signs only end-entity
    /// certificates), key usage keyCertSign + cRLSign, valid from `now` for `validity_days`.
    pub fn create(cluster: &str, now: SystemTime, validity_days: u32) -> Result<Ca, PkiError> {
        let generate = |source| PkiError::Generate {
            what: "the cluster CA".into(),
            source,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, ca_common_name(cluster));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.not_before, params.not_after) = super::validity(now, validity_days, "CA")?;
        let cert = params.self_signed(&key).map_err(generate)?;
        Ca::from_pem(&cert.pem(), &key.serialize_pem(), "the new CA")
    }

    /// A CA from its certificate and key (PEM); checks that the key is the certificate's and
    /// that the certificate is a CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str, what: &str) -> Result<Ca, PkiError> {
        let parsed = super::inspect::parse(cert_pem, what)?;
        if !parsed.info.is_ca {
            return Err(PkiError::NotCa { what: what.into() });
        }
        let key = KeyPair::from_pem(key_pem).map_err(|source| PkiError::BadKey {
            what: what.into(),
            source,
        })?;
        if key.public_key_raw() != parsed.public_key_raw {
            return Err(PkiError::KeyMismatch {
                cert: PathBuf::from(format!("{what} certificate")),
                key: PathBuf::from(format!("{what} key")),
            });
        }
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| PkiError::BadCertificate {
                what: what.into(),
                source: Box::new(e),
            })?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            cert_der: parsed.der,
            issuer,
            not_after: parsed.info.not_after,
        })
    }

    /// Load the CA from `dir` (`ca.crt` + `ca.key`). Refuses a key file readable by group or
    /// others and a key that does not belong to the certificate.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        Ca::load_pair(dir, CA_CERT_FILE, CA_KEY_FILE)
    }

    /// [`Ca::load`] from other file names in `dir` (a rotation's new CA, or the new CA's
    /// certificate with the key a promotion cut short already moved).
    pub fn load_pair(dir: &Path, cert_file: &str, key_file: &str) -> Result<Ca, PkiError> {
        let cert_path = dir.join(cert_file);
        let key_path = dir.join(key_file);
        let mode = fs::metadata(&key_path)
            .map_err(|source| PkiError::Read {
                path: key_path.clone(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(PkiError::KeyMode {
                path: key_path,
                mode: mode & 0o777,
            });
        }
        let read = |p: &Path| {
            fs::read_to_string(p).map_err(|source| PkiError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let what = cert_path.display().to_string();
        Ca::from_pem(&cert_pem, &key_pem, &what).map_err(|e| match e {
            PkiError::KeyMismatch { .. } => PkiError::KeyMismatch {
                cert: cert_path.clone(),
                key: key_path.clone(),
            },
            PkiError::BadKey { source, .. } => PkiError::BadKey {
                what: key_path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    /// Write the CA into the private directory `dir` (created, or tightened, to 0700):
    /// `ca.crt` 0644, `ca.key` 0600, each atomically with its exact mode from the first byte
    /// ([`private_fs`]), so the key is never readable by others, not even for a moment, and a
    /// crash leaves either the old file or the new one.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        self.save_as(dir, CA_CERT_FILE, CA_KEY_FILE)
    }

    /// [`Ca::save`] under other names; the key is written first, so that a certificate file
    /// (what tells a CA exists) is never there without its key.
    pub fn save_as(&self, dir: &Path, cert_file: &str, key_file: &str) -> Result<(), PkiError> {
        private_dir(dir)?;
        let write = |name: &str, bytes: &[u8], mode| {
            let path = dir.join(name);
            private_fs::write_atomic(&path, bytes, mode)
                .map_err(|source| PkiError::Write { path, source })
        };
        let key_pem = self.issuer.key().serialize_pem();
        write(key_file, key_pem.as_bytes(), private_fs::FILE_MODE)?;
        write(cert_file, self.cert_pem.as_bytes(), 0o644)
    }

    /// The cluster's CA from `dir`, or a new one written there if `dir` has none. A CA made
    /// for another cluster name, or one of the two files without the other, is an error:
    /// replacing a CA silently would orphan every node certificate it signed.
    pub fn load_or_create(
        dir: &Path,
        cluster: &str,
        now: SystemTime,
        validity_days: u32,
    ) -> Result<(Ca, CaStatus), PkiError> {
        if dir.exists() {
            private_dir(dir)?;
        }
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let ca = Ca::load(dir)?;
                let expected = ca_common_name(cluster);
                let found = ca.subject();
                if found != expected {
                    return Err(PkiError::OtherCluster {
                        dir: dir.to_path_buf(),
                        found,
                        expected,
                    });
                }
                Ok((ca, CaStatus::Loaded))
            }
            (false, false) => {
                let ca = Ca::create(cluster, now, validity_days)?;
                ca.save(dir)?;
                Ok((ca, CaStatus::Created))
            }
            (true, false) => Err(PkiError::IncompleteCa {
                dir: dir.to_path_buf(),
                present: cert_path,
                missing: key_path,
            }),
            (false, true) => Err(PkiError::IncompleteCa {
                dir: dir.to_path_buf(),
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    /// The CA certificate (PEM), as installed on every node as /etc/redis/tls/ca.crt.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// SHA-256 of the CA certificate (DER), lower-case hex: what tells two CAs of the same
    /// name apart (a rotation's old and new CA), recorded with each client certificate.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&self.cert_der))
    }

    /// The CA's common name (`redisctl <cluster> CA`).
    pub fn subject(&self) -> String {
        super::inspect::parse(&self.cert_pem, "CA")
            .ok()
            .and_then(|p| p.info.subject_cn)
            .unwrap_or_default()
    }

    /// When the CA itself expires (the planner warns ahead of it; a CA is never replaced
    /// silently).
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

impl Ca {
    /// A secret derived from the CA key: HMAC-SHA256(CA private key (PKCS#8 DER), `label`),
    /// hex. Stable for as long as the CA is, stored nowhere, and reproducible by any operator
    /// who holds the state directory; for credentials that only redisctl itself uses, such as
    /// the replication user's password (`label` = `"replication-password"`).
    pub fn derive_secret(&self, label: &str) -> crate::spec::secrets::Secret {
        let key = self.issuer.key().serialize_der();
        crate::spec::secrets::Secret::new(hex::encode(hmac_sha256(&key, label.as_bytes())))
    }
}

/// [`private_fs::private_dir`], its error as the state directory's.
fn private_dir(dir: &Path) -> Result<(), PkiError> {
    private_fs::private_dir(dir).map_err(|source| PkiError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// HMAC-SHA256 (RFC 2104) over sha2, which is already a dependency.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn t0() -> SystemTime {
        // 2026-01-01T00:00:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("redisctl-pki-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_persists_and_loads_back() {
        let base = tmpdir("ca");
        let dir = base.join("state/prod");
        let (ca, status) = Ca::load_or_create(&dir, "prod", t0(), 3650).unwrap();
        assert_eq!(status, CaStatus::Created);
        assert_eq!(ca.subject(), "redisctl prod CA");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(CA_CERT_FILE)), 0o644);
        assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert_eq!(
            ca.not_after(),
            t0() + Duration::from_secs(3650 * 86_400),
            "valid for exactly validity_days from now"
        );

        let (again, status) =
            Ca::load_or_create(&dir, "prod", t0() + Duration::from_secs(60), 3650).unwrap();
        assert_eq!(status, CaStatus::Loaded);
        assert_eq!(again.cert_pem(), ca.cert_pem());
        assert!(format!("{again:?}").contains("<redacted>"));
        assert!(!format!("{again:?}").contains("PRIVATE"));
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn hmac_matches_rfc_4231_and_derived_secrets_are_stable() {
        // RFC 4231 test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        let dir = tmpdir("derive");
        let (ca, _) = Ca::load_or_create(&dir, "prod", t0(), 30).unwrap();
        let (again, _) = Ca::load_or_create(&dir, "prod", t0(), 30).unwrap();
        let a = ca.derive_secret("replication-password");
        assert_eq!(a, again.derive_secret("replication-password"));
        assert_ne!(a, ca.derive_secret("other"));
        assert_ne!(
            a,
            Ca::create("prod", t0(), 30)
                .unwrap()
                .derive_secret("replication-password")
        );
        assert_eq!(a.expose().len(), 64);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ca_certificate_is_a_p256_ca() {
        let ca = Ca::create("c1", t0(), 30).unwrap();
        let (_, x) = x509_parser::pem::parse_x509_pem(ca.cert_pem().as_bytes()).unwrap();
        let x = x.parse_x509().unwrap();
        let bc = x.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert_eq!(
            x.public_key().algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        assert_eq!(x.subject().to_string(), "CN=redisctl c1 CA");
        assert_eq!(x.issuer().to_string(), "CN=redisctl c1 CA");
        x.verify_signature(None).unwrap();
    }

    #[test]
    fn refuses_a_loose_key_other_clusters_and_half_a_ca() {
        let dir = tmpdir("refuse");
        Ca::load_or_create(&dir, "prod", t0(), 30).unwrap();

        fs::set_permissions(dir.join(CA_KEY_FILE), fs::Permissions::from_mode(0o640)).unwrap();
        let e = Ca::load_or_create(&dir, "prod", t0(), 30).unwrap_err();
        assert!(matches!(e, PkiError::KeyMode { mode: 0o640, .. }), "{e}");
        assert!(e.to_string().contains("run chmod 600"));
        fs::set_permissions(dir.join(CA_KEY_FILE), fs::Permissions::from_mode(0o600)).unwrap();

        let e = Ca::load_or_create(&dir, "staging", t0(), 30).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the CA in {} is `redisctl prod CA`, not `redisctl staging CA`: each cluster needs its own state directory",
                dir.display()
            )
        );

        // A loose directory is tightened, as every private directory is (`private_fs`).
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        Ca::load_or_create(&dir, "prod", t0(), 30).unwrap();
        assert_eq!(mode(&dir), 0o700);

        // A key from another CA.
        let other = Ca::create("prod", t0(), 30).unwrap();
        let other_key = other.issuer.key().serialize_pem();
        private_fs::write_private(&dir.join(CA_KEY_FILE), other_key.as_bytes()).unwrap();
        let e = Ca::load_or_create(&dir, "prod", t0(), 30).unwrap_err();
        assert!(matches!(e, PkiError::KeyMismatch { .. }), "{e}");

        fs::remove_file(dir.join(CA_KEY_FILE)).unwrap();
        let e = Ca::load_or_create(&dir, "prod", t0(), 30).unwrap_err();
        assert!(matches!(e, PkiError::IncompleteCa { .. }), "{e}");
        assert!(dir.join(CA_CERT_FILE).exists(), "nothing was replaced");
        fs::remove_dir_all(&dir).unwrap();
    }
}
