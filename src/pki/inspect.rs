//! Reading certificates observed on nodes, and the planner's question about them: keep it, or
//! re-issue it (and why)?

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::PkiError;

/// What a certificate says, as far as redisctl cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject_cn: Option<String>,
    pub issuer_cn: Option<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// IP SANs in certificate order.
    pub ip_sans: Vec<IpAddr>,
    pub server_auth: bool,
    pub client_auth: bool,
    pub is_ca: bool,
    /// Issued by the CA given to [`inspect`]: its issuer name is the CA's subject and the CA's
    /// key verifies its signature.
    pub signed_by_ca: bool,
    /// SHA-256 of the DER, lower-case hex (the usual certificate fingerprint).
    pub fingerprint_sha256: String,
    /// The serial number, lower-case hex.
    pub serial: String,
}

/// A parsed certificate with the bytes the CA code needs as well.
pub(super) struct Parsed {
    pub info: CertInfo,
    pub der: Vec<u8>,
    pub public_key_raw: Vec<u8>,
}

fn bad(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> PkiError {
    PkiError::BadCertificate {
        what: what.into(),
        source: Box::new(e),
    }
}

fn pem_der(pem: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| bad(what, e))?;
    if pem.label != "CERTIFICATE" {
        return Err(PkiError::BadCertificate {
            what: what.into(),
            source: format!("PEM block is `{}`, not `CERTIFICATE`", pem.label).into(),
        });
    }
    Ok(pem.contents)
}

fn x509<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, PkiError> {
    let (_, x) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(what, e))?;
    Ok(x)
}

fn common_name(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// Parse the first certificate of a PEM text.
pub(super) fn parse(pem: &str, what: &str) -> Result<Parsed, PkiError> {
    let der = pem_der(pem, what)?;
    let x = x509(&der, what)?;
    let mut ip_sans = Vec::new();
    if let Some(san) = x.subject_alternative_name().map_err(|e| bad(what, e))? {
        for name in &san.value.general_names {
            if let GeneralName::IPAddress(bytes) = name {
                match bytes.len() {
                    4 => ip_sans.push(IpAddr::V4(Ipv4Addr::new(
                        bytes[0], bytes[1], bytes[2], bytes[3],
                    ))),
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(bytes);
                        ip_sans.push(IpAddr::from(a));
                    }
                    _ => {}
                }
            }
        }
    }
    let (server_auth, client_auth) = match x.extended_key_usage().map_err(|e| bad(what, e))? {
        Some(eku) => (
            eku.value.server_auth || eku.value.any,
            eku.value.client_auth || eku.value.any,
        ),
        // No EKU extension: OpenSSL allows every purpose.
        None => (true, true),
    };
    let info = CertInfo {
        subject_cn: common_name(x.subject()),
        issuer_cn: common_name(x.issuer()),
        not_before: super::from_unix(x.validity().not_before.timestamp()),
        not_after: super::from_unix(x.validity().not_after.timestamp()),
        ip_sans,
        server_auth,
        client_auth,
        is_ca: x.is_ca(),
        signed_by_ca: false,
        fingerprint_sha256: hex::encode(Sha256::digest(&der)),
        serial: hex::encode(x.raw_serial()),
    };
    let public_key_raw = x.public_key().subject_public_key.data.to_vec();
    Ok(Parsed {
        info,
        der,
        public_key_raw,
    })
}

/// Read a certificate (PEM, as observed on a node) and check it against our CA certificate
/// (PEM). A certificate that cannot be parsed is an error, which the planner treats as a
/// reason to re-issue.
pub fn inspect(cert_pem: &str, ca_cert_pem: &str) -> Result<CertInfo, PkiError> {
    let mut parsed = parse(cert_pem, "certificate")?;
    let ca_der = pem_der(ca_cert_pem, "CA certificate")?;
    let ca = x509(&ca_der, "CA certificate")?;
    let der = parsed.der;
    let x = x509(&der, "certificate")?;
    parsed.info.signed_by_ca = x.issuer().as_raw() == ca.subject().as_raw()
        && x.verify_signature(Some(ca.public_key())).is_ok();
    Ok(parsed.info)
}

/// What a certificate on a node must be, as decided by the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedCert {
    pub cn: String,
    /// Compared as a set: order does not matter, extra or missing addresses do.
    pub ip_sans: Vec<IpAddr>,
    pub server_auth: bool,
    pub client_auth: bool,
}

impl WantedCert {
    /// A node's certificate: [`super::node_sans`], serverAuth and clientAuth.
    pub fn node(name: &str, private_ip: Ipv4Addr) -> Self {
        WantedCert {
            cn: name.into(),
            ip_sans: super::node_sans(private_ip),
            server_auth: true,
            client_auth: true,
        }
    }

    /// redisctl's client certificate for `user`.
    pub fn client(user: &str) -> Self {
        WantedCert {
            cn: user.into(),
            ip_sans: Vec::new(),
            server_auth: false,
            client_auth: true,
        }
    }
}

/// Why a certificate must be re-issued. For people (the plan's reason text) and for tests; the
/// action is the same whatever the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReissueReason {
    /// Not signed by our CA (another CA, or self-signed).
    OtherCa {
        issuer: Option<String>,
    },
    SubjectChanged {
        have: Option<String>,
        want: String,
    },
    SansChanged {
        have: Vec<IpAddr>,
        want: Vec<IpAddr>,
    },
    MissingEku {
        server_auth: bool,
        client_auth: bool,
    },
    NotYetValid,
    Expired,
    /// Expires within `renew_before_days`.
    ExpiresSoon {
        days_left: u64,
        renew_before_days: u32,
    },
}

fn ips(list: &[IpAddr]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for ReissueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReissueReason::OtherCa { issuer } => match issuer {
                Some(i) => write!(f, "signed by another CA (`{i}`)"),
                None => f.write_str("signed by another CA"),
            },
            ReissueReason::SubjectChanged { have, want } => write!(
                f,
                "issued to `{}`, want `{want}`",
                have.as_deref().unwrap_or("")
            ),
            ReissueReason::SansChanged { have, want } => {
                write!(f, "IP SANs are {}, want {}", ips(have), ips(want))
            }
            ReissueReason::MissingEku {
                server_auth,
                client_auth,
            } => {
                let mut missing = Vec::new();
                if *server_auth {
                    missing.push("serverAuth");
                }
                if *client_auth {
                    missing.push("clientAuth");
                }
                write!(f, "lacks the {} extended key usage", missing.join(" and "))
            }
            ReissueReason::NotYetValid => f.write_str("not valid yet"),
            ReissueReason::Expired => f.write_str("expired"),
            ReissueReason::ExpiresSoon {
                days_left,
                renew_before_days,
            } => write!(
                f,
                "expires in {days_left} day{} (renew_before_days = {renew_before_days})",
                if *days_left == 1 { "" } else { "s" }
            ),
        }
    }
}

/// Whether the plan must re-issue a certificate, and the first reason why (in the order of the
/// enum: trust, identity, usage, then time). `None`: keep it.
pub fn reissue_reason(
    info: &CertInfo,
    want: &WantedCert,
    now: SystemTime,
    renew_before_days: u32,
) -> Option<ReissueReason> {
    if !info.signed_by_ca {
        return Some(ReissueReason::OtherCa {
            issuer: info.issuer_cn.clone(),
        });
    }
    if info.subject_cn.as_deref() != Some(want.cn.as_str()) {
        return Some(ReissueReason::SubjectChanged {
            have: info.subject_cn.clone(),
            want: want.cn.clone(),
        });
    }
    let (mut have_set, mut want_set) = (info.ip_sans.clone(), want.ip_sans.clone());
    have_set.sort();
    have_set.dedup();
    want_set.sort();
    want_set.dedup();
    if have_set != want_set {
        return Some(ReissueReason::SansChanged {
            have: info.ip_sans.clone(),
            want: want.ip_sans.clone(),
        });
    }
    let lacks_server = want.server_auth && !info.server_auth;
    let lacks_client = want.client_auth && !info.client_auth;
    if lacks_server || lacks_client {
        return Some(ReissueReason::MissingEku {
            server_auth: lacks_server,
            client_auth: lacks_client,
        });
    }
    if info.not_before > now {
        return Some(ReissueReason::NotYetValid);
    }
    let left = match info.not_after.duration_since(now) {
        Ok(left) if !left.is_zero() => left,
        _ => return Some(ReissueReason::Expired),
    };
    if left <= Duration::from_secs(u64::from(renew_before_days) * 86_400) {
        return Some(ReissueReason::ExpiresSoon {
            days_left: left.as_secs() / 86_400,
            renew_before_days,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Ca;

    const DAY: u64 = 86_400;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn fresh_certificate_is_kept_until_the_renewal_window() {
        let ca = Ca::create("prod", t0(), 3650).unwrap();
        let c = ca
            .issue_node("n1", &crate::pki::node_sans(ip("10.0.1.10")), t0(), 365)
            .unwrap();
        let info = inspect(&c.cert_pem, ca.cert_pem()).unwrap();
        let want = WantedCert::node("n1", ip("10.0.1.10"));
        assert_eq!(reissue_reason(&info, &want, t0(), 30), None);
        let at = |days: u64| t0() + Duration::from_secs(days * DAY);
        assert_eq!(reissue_reason(&info, &want, at(334), 30), None);
        let r = reissue_reason(&info, &want, at(335) + Duration::from_secs(1), 30).unwrap();
        assert_eq!(
            r,
            ReissueReason::ExpiresSoon {
                days_left: 29,
                renew_before_days: 30
            }
        );
        assert_eq!(r.to_string(), "expires in 29 days (renew_before_days = 30)");
        assert_eq!(
            reissue_reason(&info, &want, at(365), 30),
            Some(ReissueReason::Expired)
        );
        assert_eq!(
            reissue_reason(&info, &want, t0() - Duration::from_secs(3600), 30),
            Some(ReissueReason::NotYetValid)
        );
    }

    #[test]
    fn changed_ip_other_ca_and_missing_client_auth_are_reissued() {
        let ca = Ca::create("prod", t0(), 3650).unwrap();
        let c = ca
            .issue_node("n1", &crate::pki::node_sans(ip("10.0.1.10")), t0(), 365)
            .unwrap();
        let info = inspect(&c.cert_pem, ca.cert_pem()).unwrap();

        let moved = WantedCert::node("n1", ip("10.0.1.11"));
        let r = reissue_reason(&info, &moved, t0(), 30).unwrap();
        assert_eq!(
            r.to_string(),
            "IP SANs are 10.0.1.10, 127.0.0.1, want 10.0.1.11, 127.0.0.1"
        );
        let renamed = WantedCert::node("n2", ip("10.0.1.10"));
        assert_eq!(
            reissue_reason(&info, &renamed, t0(), 30)
                .unwrap()
                .to_string(),
            "issued to `n1`, want `n2`"
        );

        // Same names, another CA (e.g. the state directory was lost and a CA made anew).
        let other = Ca::create("prod", t0(), 3650).unwrap();
        let info_other = inspect(&c.cert_pem, other.cert_pem()).unwrap();
        assert!(!info_other.signed_by_ca);
        assert_eq!(
            reissue_reason(
                &info_other,
                &WantedCert::node("n1", ip("10.0.1.10")),
                t0(),
                30
            )
            .unwrap()
            .to_string(),
            "signed by another CA (`redisctl prod CA`)"
        );

        // A client-only certificate where a node certificate belongs.
        let client = ca.issue_client("n1", t0(), 365).unwrap();
        let mut info = inspect(&client.cert_pem, ca.cert_pem()).unwrap();
        info.ip_sans = crate::pki::node_sans(ip("10.0.1.10"));
        assert_eq!(
            reissue_reason(&info, &WantedCert::node("n1", ip("10.0.1.10")), t0(), 30)
                .unwrap()
                .to_string(),
            "lacks the serverAuth extended key usage"
        );
    }

    #[test]
    fn a_hand_made_self_signed_server_certificate_is_reissued() {
        // As the hand procedure made it: self-signed, serverAuth only.
        let ca = Ca::create("prod", t0(), 3650).unwrap();
        let self_signed = {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(vec!["10.0.1.10".to_string()]).unwrap();
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            p.self_signed(&key).unwrap().pem()
        };
        let info = inspect(&self_signed, ca.cert_pem()).unwrap();
        assert!(!info.signed_by_ca);
        assert!(info.server_auth && !info.client_auth);
        assert_eq!(info.ip_sans, vec![IpAddr::V4(ip("10.0.1.10"))]);
        assert_eq!(info.fingerprint_sha256.len(), 64);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let ca = Ca::create("prod", t0(), 3650).unwrap();
        let e = inspect("not a certificate", ca.cert_pem()).unwrap_err();
        assert_eq!(e.to_string(), "certificate is not a valid PEM certificate");
        let key_pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(inspect(key_pem, ca.cert_pem()).is_err());
    }
}
