//! `redisctl client-cert NAME --out DIR`: a client certificate from the cluster CA for an
//! application ([`crate::pki::client`] issues it, writes it and keeps the inventory).

use std::path::Path;
use std::time::SystemTime;

use super::{Error, exit, load_spec};
use crate::cli::ClientCertArgs;
use crate::pki::client::{self, ClientCertError, ClientCertRequest};
use crate::render::Shell;
use crate::spec::TlsAuthClients;

pub fn run(config: &Path, args: &ClientCertArgs, shell: &Shell) -> Result<u8, Error> {
    client::check_name(&args.name).map_err(refused)?;
    let loaded = load_spec(config, shell)?;
    let spec = &loaded.spec;
    let days = args.days.unwrap_or(spec.tls.cert_days);
    let now = SystemTime::now();
    let request = ClientCertRequest {
        name: &args.name,
        out: &args.out,
        days,
        force: args.force,
    };
    let issued =
        client::issue_client_cert(&spec.cluster.state_dir, request, now).map_err(refused)?;

    if spec.tls.auth_clients == TlsAuthClients::No {
        shell.warning(
            "tls.auth_clients is \"no\": the nodes do not ask clients for a certificate, so this one is not needed to connect",
        );
    }
    if args.json {
        shell.out(&format!("{}\n", issued.record));
        return Ok(exit::OK);
    }
    let info = &issued.info;
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
        issuer = issued.issuer,
        cert = issued.cert_file.display(),
        key = issued.key_file.display(),
        ca_file = issued.ca_file.display(),
        until = utc(info.not_after),
        serial = info.serial,
        fp = colons(&info.fingerprint_sha256),
        inventory = issued.inventory.display(),
        port = spec.redis.port,
    ));
    Ok(exit::OK)
}

/// A refusal is the user's to fix (no hint); a PKI error keeps its causes.
fn refused(e: ClientCertError) -> Error {
    match e {
        ClientCertError::Pki(e) => Error::Pki(e),
        other => Error::Refused(other.to_string()),
    }
}

/// `2027-11-26 10:00:00 UTC`.
fn utc(t: SystemTime) -> String {
    let secs = client::unix(t);
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// `ab:cd:…` in upper case, as `openssl x509 -fingerprint -sha256` prints it.
fn colons(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_as_openssl_prints_them() {
        assert_eq!(super::colons("ab01ff"), "AB:01:FF");
    }
}
