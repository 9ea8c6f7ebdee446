//! `redisctl client-cert NAME --out DIR`: a client certificate from the cluster CA for an
//! application, for servers with `tls.auth_clients = "yes"` (the default), where every client
//! must present one.
//!
//! The CA key never leaves the state directory: the certificate is signed here, on the
//! operator's machine. The new private key is written once, 0600, to the directory asked for
//! (a temporary file created with that mode, synced, renamed), and never printed. Each issue is
//! appended to `<state_dir>/client-certs.jsonl` (0600) with the CN, serial, validity and
//! fingerprint — the inventory a revocation would need, since Redis checks no CRL.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Error, exit, load_spec};
use crate::cli::ClientCertArgs;
use crate::pki::{self, CA_CERT_FILE, CA_KEY_FILE, Ca};
use crate::render::Shell;
use crate::spec::TlsAuthClients;

/// The inventory of issued client certificates, in the state directory.
pub const INVENTORY_FILE: &str = "client-certs.jsonl";

/// A name usable as a CN and as a file name: 1–64 of `[A-Za-z0-9._-]`, not starting with `.`
/// or `-`.
fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with(['.', '-']) {
        return Err(format!(
            "client name {name:?} is not usable: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-' (it becomes the certificate's CN and the file names)"
        ));
    }
    Ok(())
}

/// The client certificates issued so far, from the inventory in `state_dir` (none when it does
/// not exist). A line that does not parse is skipped with a warning in the log.
pub(crate) fn inventory(state_dir: &Path) -> Vec<crate::observed::ClientCert> {
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

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2027-11-26 10:00:00 UTC`.
fn utc(t: SystemTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix(t) as i64)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix(t).to_string())
}

/// `ab:cd:…` in upper case, as `openssl x509 -fingerprint -sha256` prints it.
fn colons(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

pub fn run(config: &Path, args: &ClientCertArgs, shell: &Shell) -> Result<u8, Error> {
    check_name(&args.name).map_err(Error::Refused)?;
    let loaded = load_spec(config, shell)?;
    let spec = &loaded.spec;
    let state = &spec.cluster.state_dir;
    if !state.join(CA_CERT_FILE).exists() && !state.join(CA_KEY_FILE).exists() {
        return Err(Error::Refused(format!(
            "there is no cluster CA in {}: `redisctl apply` creates it with the cluster; run apply first, or restore the state directory (docs/runbook.md, \"The state directory: lost or damaged\")",
            state.display()
        )));
    }
    let ca = Ca::load(state)?;
    let key_path = args.out.join(format!("{}.key", args.name));
    let cert_path = args.out.join(format!("{}.crt", args.name));
    let ca_path = args.out.join(CA_CERT_FILE);
    if !args.force {
        for p in [&key_path, &cert_path] {
            if p.exists() {
                return Err(Error::Refused(format!(
                    "{} exists: pass --force to replace it (the certificate it belongs to stays valid until it expires; Redis checks no revocation list)",
                    p.display()
                )));
            }
        }
    }
    if spec.tls.auth_clients == TlsAuthClients::No {
        shell.warning(
            "tls.auth_clients is \"no\": the nodes do not ask clients for a certificate, so this one is not needed to connect",
        );
    }
    let days = args.days.unwrap_or(spec.tls.cert_days);
    let now = SystemTime::now();
    let issued = ca.issue_client(&args.name, now, days)?;
    let info = pki::inspect(&issued.cert_pem, ca.cert_pem())?;

    std::fs::create_dir_all(&args.out).map_err(|source| pki::PkiError::CreateDir {
        path: args.out.clone(),
        source,
    })?;
    let write = |path: &Path, bytes: &[u8], mode| {
        crate::private_fs::write_atomic(path, bytes, mode).map_err(|source| pki::PkiError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    // The key first: a certificate is never left without its key.
    write(&key_path, issued.key_pem.expose().as_bytes(), 0o600)?;
    write(&cert_path, issued.cert_pem.as_bytes(), 0o644)?;
    write(&ca_path, ca.cert_pem().as_bytes(), 0o644)?;

    let record = serde_json::json!({
        "issued_at": unix(now),
        "cn": args.name,
        "serial": info.serial,
        "not_before": unix(info.not_before),
        "not_after": unix(info.not_after),
        "sha256": info.fingerprint_sha256,
        "issuer": ca.subject(),
        "cert_file": absolute(&cert_path),
    });
    let inventory = state.join(INVENTORY_FILE);
    crate::private_fs::append_private(&inventory, format!("{record}\n").as_bytes()).map_err(
        |source| pki::PkiError::Write {
            path: inventory.clone(),
            source,
        },
    )?;

    if args.json {
        shell.out(&format!("{record}\n"));
        return Ok(exit::OK);
    }
    let lifetime = info
        .not_after
        .duration_since(now)
        .map(|d| (d.as_secs() + 43_200) / 86_400)
        .unwrap_or(0);
    let capped = if lifetime < u64::from(days) {
        " (cut to the CA's own end)"
    } else {
        ""
    };
    let first = spec
        .nodes
        .nodes
        .first()
        .map(|n| n.private_ip.to_string())
        .unwrap_or_default();
    shell.out(&format!(
        "Issued a client certificate for CN={name} (clientAuth only), signed by {issuer}.\n\
         \n  certificate   {cert}\n  private key   {key} (0600: give it to the application only; it is not kept anywhere else)\n  cluster CA    {ca_file}\n  valid until   {until} ({lifetime} days{capped})\n  serial        {serial}\n  SHA-256       {fp}\n  recorded in   {inventory}\n\
         \nThe certificate only identifies the client to TLS: it still logs in as an ACL user with its\npassword. For example:\n  redis-cli --tls --cacert {ca_file} --cert {cert} --key {key} \\\n    -h {first} -p {port} --user <user> --askpass -c\n",
        name = args.name,
        issuer = ca.subject(),
        cert = cert_path.display(),
        key = key_path.display(),
        ca_file = ca_path.display(),
        until = utc(info.not_after),
        serial = info.serial,
        fp = colons(&info.fingerprint_sha256),
        inventory = inventory.display(),
        port = spec.redis.port,
    ));
    Ok(exit::OK)
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

    #[test]
    fn fingerprints_as_openssl_prints_them() {
        assert_eq!(colons("ab01ff"), "AB:01:FF");
    }
}
