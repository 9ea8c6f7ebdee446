//! Client certificates for applications (`redisctl client-cert`), for servers with
//! `tls.auth_clients = "yes"` (the default), where every client must present one.
//!
//! The CA key never leaves the state directory: the certificate is signed on the operator's
//! machine. The new private key is written once, 0600, to the directory asked for
//! ([`crate::private_fs`]), and never printed. Each issue is appended to
//! `<state_dir>/client-certs.jsonl` (0600) with the CN, serial, validity and fingerprint — the
//! inventory a revocation would need, since Redis checks no CRL; the planner reads it back to
//! warn about certificates near their end.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Authority, CA_CERT_FILE, CA_KEY_FILE, CertInfo, PkiError};
use crate::observed::ClientCert;
use crate::private_fs;

/// The inventory of issued client certificates, in the state directory.
pub const INVENTORY_FILE: &str = "client-certs.jsonl";

/// Why a client certificate was not issued.
#[derive(Debug, thiserror::Error)]
pub enum ClientCertError {
    #[error(
        "client name {name:?} is not usable: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-' (it becomes the certificate's CN and the file names)"
    )]
    BadName { name: String },
    #[error(
        "there is no cluster CA in {}: `redisctl apply` creates it with the cluster; run apply first, or restore the state directory (docs/runbook.md, \"The state directory: lost or damaged\")",
        dir.display()
    )]
    NoCa { dir: PathBuf },
    #[error(
        "{} exists: pass --force to replace it (the certificate it belongs to stays valid until it expires; Redis checks no revocation list)",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error(
        "--out {} is the state directory (or inside it): client files never go where the CA key lives; write them elsewhere",
        out.display()
    )]
    IntoStateDir { out: PathBuf },
    #[error(
        "{} holds another CA certificate than this cluster's: another cluster's client files are there; write these elsewhere, or pass --force to replace it",
        path.display()
    )]
    OtherCa { path: PathBuf },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// A client certificate to issue: CN `name`, files `<out>/<name>.key`, `<name>.crt` and
/// `ca.crt`, valid `days` from now (cut to the CA's own end).
#[derive(Debug, Clone, Copy)]
pub struct ClientCertRequest<'a> {
    pub name: &'a str,
    pub out: &'a Path,
    pub days: u32,
    /// Replace an existing key and certificate of that name.
    pub force: bool,
}

/// A client certificate issued, written and recorded.
#[derive(Debug)]
pub struct IssuedClientCert {
    /// The inventory line (also what `--json` prints).
    pub record: serde_json::Value,
    pub info: CertInfo,
    /// The CA's common name.
    pub issuer: String,
    pub key_file: PathBuf,
    pub cert_file: PathBuf,
    pub ca_file: PathBuf,
    pub inventory: PathBuf,
}

/// A name usable as a CN and as a file name: 1–64 of `[A-Za-z0-9._-]`, not starting with `.`
/// or `-`.
pub fn check_name(name: &str) -> Result<(), ClientCertError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with(['.', '-']) {
        return Err(ClientCertError::BadName { name: name.into() });
    }
    // `ca` would write `ca.key` and `ca.crt`: the names of the CA's own files.
    if name.eq_ignore_ascii_case("ca") {
        return Err(ClientCertError::BadName { name: name.into() });
    }
    Ok(())
}

/// `p` with its symlinks and `..` resolved, also where its last components do not exist yet
/// (the nearest existing ancestor resolved, the rest appended).
fn resolved(p: &Path) -> Option<PathBuf> {
    let mut rest = Vec::new();
    let mut at = p;
    loop {
        if let Ok(real) = std::fs::canonicalize(if at.as_os_str().is_empty() {
            Path::new(".")
        } else {
            at
        }) {
            return Some(rest.into_iter().rev().fold(real, |acc, c| acc.join(c)));
        }
        rest.push(at.file_name()?.to_os_string());
        at = at.parent()?;
    }
}

/// Sign a client certificate with the CA of `state_dir` (loaded as apply loads it: a key
/// readable by others is refused), write the key first (a certificate is never left without
/// its key), then the certificate and the CA certificate, and append the inventory line.
/// Refuses, writing nothing, when there is no CA or when the files exist without `force`.
pub fn issue_client_cert(
    state_dir: &Path,
    req: ClientCertRequest<'_>,
    now: SystemTime,
) -> Result<IssuedClientCert, ClientCertError> {
    check_name(req.name)?;
    if !state_dir.join(CA_CERT_FILE).exists() && !state_dir.join(CA_KEY_FILE).exists() {
        return Err(ClientCertError::NoCa {
            dir: state_dir.into(),
        });
    }
    // The CA key lives in the state directory: nothing is written there or below it.
    if let (Some(state), Some(out)) = (resolved(state_dir), resolved(req.out))
        && out.starts_with(&state)
    {
        return Err(ClientCertError::IntoStateDir {
            out: req.out.into(),
        });
    }
    let Some(authority) = Authority::load(state_dir, None)? else {
        return Err(ClientCertError::NoCa {
            dir: state_dir.into(),
        });
    };
    // The newest CA signs (during a rotation, the new one: the certificate must outlive the
    // old CA), and the application trusts every CA the state directory holds.
    let ca = authority.newest();
    let bundle = authority.client_bundle();
    let key_file = req.out.join(format!("{}.key", req.name));
    let cert_file = req.out.join(format!("{}.crt", req.name));
    let ca_file = req.out.join(CA_CERT_FILE);
    if !req.force
        && let Some(path) = [&key_file, &cert_file].into_iter().find(|p| p.exists())
    {
        return Err(ClientCertError::Exists { path: path.clone() });
    }
    if !req.force
        && let Ok(there) = std::fs::read_to_string(&ca_file)
        && !same_cas(&there, &bundle)
    {
        return Err(ClientCertError::OtherCa { path: ca_file });
    }
    let issued = ca.issue_client(req.name, now, req.days)?;
    let info = super::inspect(&issued.cert_pem, ca.cert_pem())?;

    // The output directory is the user's, not a private one: only the key in it is private.
    std::fs::create_dir_all(req.out).map_err(|source| PkiError::CreateDir {
        path: req.out.into(),
        source,
    })?;
    let write = |path: &Path, bytes: &[u8], mode| {
        private_fs::write_atomic(path, bytes, mode).map_err(|source| PkiError::Write {
            path: path.into(),
            source,
        })
    };
    write(&key_file, issued.key_pem.expose().as_bytes(), 0o600)?;
    write(&cert_file, issued.cert_pem.as_bytes(), 0o644)?;
    write(&ca_file, bundle.as_bytes(), 0o644)?;

    let issuer = ca.subject();
    let record = serde_json::json!({
        "issued_at": unix(now),
        "cn": req.name,
        "serial": info.serial,
        "not_before": unix(info.not_before),
        "not_after": unix(info.not_after),
        "sha256": info.fingerprint_sha256,
        "issuer": issuer,
        "ca_sha256": ca.fingerprint(),
        "cert_file": absolute(&cert_file),
    });
    let inventory = state_dir.join(INVENTORY_FILE);
    private_fs::append_private(&inventory, format!("{record}\n").as_bytes()).map_err(|source| {
        PkiError::Write {
            path: inventory.clone(),
            source,
        }
    })?;
    Ok(IssuedClientCert {
        record,
        info,
        issuer,
        key_file,
        cert_file,
        ca_file,
        inventory,
    })
}

/// The client certificates issued so far, from the inventory in `state_dir` (none when it does
/// not exist). A line that does not parse is skipped with a warning in the log.
pub fn inventory(state_dir: &Path) -> Vec<ClientCert> {
    let Ok(text) = std::fs::read_to_string(state_dir.join(INVENTORY_FILE)) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(
                    "{}: a line that is not a client certificate record: {e}",
                    INVENTORY_FILE
                );
                None
            }
        })
        .collect()
}

/// Whether the CA file an application holds names only CAs of `bundle` (this cluster's: the
/// CA in force, or both during a rotation), so that writing the bundle over it loses nothing.
fn same_cas(there: &str, bundle: &str) -> bool {
    let certs = |text: &str| -> Vec<String> {
        text.split_inclusive("-----END CERTIFICATE-----")
            .map(|c| c.trim().to_string())
            .filter(|c| c.contains("-----BEGIN CERTIFICATE-----"))
            .collect()
    };
    let ours = certs(bundle);
    let theirs = certs(there);
    !theirs.is_empty() && theirs.iter().all(|c| ours.contains(c))
}

/// Marks the inventory's lines that name no issuing CA as issued by the CA with fingerprint
/// `ca_sha256` (the CA in force until a rotation's end: it issued every line written before
/// CA rotations recorded the CA). The file is rewritten atomically; lines it cannot read are
/// kept as they are.
pub fn annotate_inventory(state_dir: &Path, ca_sha256: &str) -> Result<(), PkiError> {
    let path = state_dir.join(INVENTORY_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let mut changed = false;
    let mut out = String::with_capacity(text.len() + 80);
    for line in text.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(mut m)) if !m.contains_key("ca_sha256") => {
                m.insert("ca_sha256".into(), ca_sha256.into());
                out.push_str(&serde_json::Value::Object(m).to_string());
                changed = true;
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    if !changed {
        return Ok(());
    }
    private_fs::write_atomic(&path, out.as_bytes(), private_fs::FILE_MODE)
        .map_err(|source| PkiError::Write { path, source })
}

/// Seconds since the epoch (0 before it).
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| PathBuf::from(p))
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["app", "billing-api.prod", "svc_1", "A"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "../ca",
            "ca",
            "CA",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn inventory_skips_what_it_cannot_read() {
        let dir = std::env::temp_dir().join(format!("redisctl-inventory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(inventory(&dir).is_empty());
        std::fs::write(
            dir.join(INVENTORY_FILE),
            "{\"cn\":\"app\",\"serial\":\"0a\",\"not_after\":1900000000,\"sha256\":\"x\"}\nnot json\n\n{\"cn\":\"b\",\"serial\":\"0b\",\"not_after\":1}\n",
        )
        .unwrap();
        let got = inventory(&dir);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].cn.as_str(), got[0].not_after),
            ("app", 1_900_000_000)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
