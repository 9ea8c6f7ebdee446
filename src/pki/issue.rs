//! Certificates the CA signs: one per node (server and cluster-bus peer) and one for redisctl's
//! own Redis user (client only).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};

use super::{Ca, PkiError};

/// A private key in PEM (PKCS#8). Held in memory only, redacted in `Debug`, never `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPem(String);

impl KeyPem {
    /// The PEM text, for the one place that sends it (the upload to its node).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPem(<redacted>)")
    }
}

/// A freshly issued certificate and its new private key.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: KeyPem,
}

/// The IP SANs of a node certificate: the node's private IP (other nodes and clients in the
/// VPC) and 127.0.0.1 (redis-cli on the node itself, as `redis-cli --cluster create` is run).
pub fn node_sans(private_ip: Ipv4Addr) -> Vec<IpAddr> {
    vec![IpAddr::V4(private_ip), IpAddr::V4(Ipv4Addr::LOCALHOST)]
}

impl Ca {
    /// A node certificate: CN = node name, IP SANs = `sans` (see [`node_sans`]), EKUs
    /// serverAuth **and** clientAuth (the cluster bus is mutual TLS: each node is a client of
    /// the others, and without clientAuth the cluster never forms), valid from `now` for
    /// `days`, with a new P-256 key.
    ///
    /// Key usage is digitalSignature only: with an ECDSA key TLS uses the key to sign
    /// (ECDHE), never to encipher, and RFC 5480 §3 does not allow keyEncipherment for EC keys.
    pub fn issue_node(
        &self,
        name: &str,
        sans: &[IpAddr],
        now: SystemTime,
        days: u32,
    ) -> Result<IssuedCert, PkiError> {
        let mut params = leaf(name, now, days, &format!("node certificate `{name}`"))?;
        params.subject_alt_names = sans.iter().copied().map(SanType::IpAddress).collect();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params, &format!("node certificate `{name}`"))
    }

    /// A client certificate for redisctl's own Redis user (CN = the user name, clientAuth
    /// only), for servers with `tls-auth-clients yes`.
    pub fn issue_client(
        &self,
        user: &str,
        now: SystemTime,
        days: u32,
    ) -> Result<IssuedCert, PkiError> {
        let what = format!("client certificate `{user}`");
        let mut params = leaf(user, now, days, &what)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, &what)
    }

    fn sign(&self, mut params: CertificateParams, what: &str) -> Result<IssuedCert, PkiError> {
        // A certificate outliving its CA would fail verification from the CA's expiry on.
        let ca_end = super::to_offset(self.not_after(), what)?;
        if params.not_after > ca_end {
            params.not_after = ca_end;
        }
        let generate = |source| PkiError::Generate {
            what: what.into(),
            source,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: KeyPem(key.serialize_pem()),
        })
    }
}

fn leaf(cn: &str, now: SystemTime, days: u32, what: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = super::validity(now, days, what)?;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    #[test]
    fn node_certificate_has_both_ekus_ip_sans_and_our_issuer() {
        let ca = Ca::create("prod", t0(), 3650).unwrap();
        let ip: Ipv4Addr = "10.0.1.10".parse().unwrap();
        let issued = ca
            .issue_node("redis-node-1a", &node_sans(ip), t0(), 365)
            .unwrap();
        assert!(
            issued
                .key_pem
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert_eq!(format!("{:?}", issued.key_pem), "KeyPem(<redacted>)");
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));

        let (_, pem) = x509_parser::pem::parse_x509_pem(issued.cert_pem.as_bytes()).unwrap();
        let x = pem.parse_x509().unwrap();
        assert_eq!(x.subject().to_string(), "CN=redis-node-1a");
        assert_eq!(x.issuer().to_string(), "CN=redisctl prod CA");
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
        assert!(!x.is_ca());
        assert_eq!(
            x.validity().not_after.timestamp(),
            1_767_225_600 + 365 * 86_400
        );
        assert_eq!(x.validity().not_before.timestamp(), 1_767_225_600 - 300);

        let info = crate::pki::inspect(&issued.cert_pem, ca.cert_pem()).unwrap();
        assert_eq!(
            info.ip_sans,
            vec![IpAddr::V4(ip), IpAddr::V4(Ipv4Addr::LOCALHOST)]
        );
        assert!(info.signed_by_ca);

        // The key belongs to the certificate.
        let key = KeyPair::from_pem(issued.key_pem.expose()).unwrap();
        assert_eq!(
            key.public_key_raw(),
            &*x.public_key().subject_public_key.data
        );

        // Every issue makes a new key.
        let again = ca
            .issue_node("redis-node-1a", &node_sans(ip), t0(), 365)
            .unwrap();
        assert_ne!(again.key_pem, issued.key_pem);
    }

    #[test]
    fn never_outlives_the_ca() {
        let ca = Ca::create("prod", t0(), 10).unwrap();
        let issued = ca
            .issue_node("n1", &node_sans("10.0.1.10".parse().unwrap()), t0(), 365)
            .unwrap();
        let info = crate::pki::inspect(&issued.cert_pem, ca.cert_pem()).unwrap();
        assert_eq!(info.not_after, ca.not_after());
    }

    #[test]
    fn client_certificate_is_client_only() {
        let ca = Ca::create("prod", t0(), 3650).unwrap();
        let issued = ca.issue_client("admin", t0(), 365).unwrap();
        let info = crate::pki::inspect(&issued.cert_pem, ca.cert_pem()).unwrap();
        assert_eq!(info.subject_cn.as_deref(), Some("admin"));
        assert!(info.client_auth && !info.server_auth);
        assert!(info.ip_sans.is_empty());
        assert!(info.signed_by_ca);
    }
}
