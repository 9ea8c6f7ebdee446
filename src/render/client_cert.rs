//! What `redisctl client-cert` tells the operator about the certificate it issued.

use std::time::SystemTime;

use crate::pki::client::{self, IssuedClientCert};
use crate::spec::Spec;

/// The files, the validity (and whether the CA's own end cut it), the fingerprint, where it is
/// recorded, and how an application uses it.
pub fn issued(
    issued: &IssuedClientCert,
    spec: &Spec,
    name: &str,
    days: u32,
    now: SystemTime,
) -> String {
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
    format!(
        "Issued a client certificate for CN={name} (clientAuth only), signed by {issuer}.\n\
         \n  certificate   {cert}\n  private key   {key} (0600: give it to the application only; it is not kept anywhere else)\n  cluster CA    {ca_file}\n  valid until   {until} ({lifetime} days{capped})\n  serial        {serial}\n  SHA-256       {fp}\n  recorded in   {inventory}\n\
         \nThe certificate only identifies the client to TLS: it still logs in as an ACL user with its\npassword. For example:\n  redis-cli --tls --cacert {ca_file} --cert {cert} --key {key} \\\n    -h {first} -p {port} --user <user> --askpass -c\n",
        name = name,
        issuer = issued.issuer,
        cert = issued.cert_file.display(),
        key = issued.key_file.display(),
        ca_file = issued.ca_file.display(),
        until = utc(info.not_after),
        serial = info.serial,
        fp = colons(&info.fingerprint_sha256),
        inventory = issued.inventory.display(),
        port = spec.redis.port,
    )
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
