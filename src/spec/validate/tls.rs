//! `[tls]`: protocols (nothing older than TLSv1.2), certificate lifetime and renewal, client auth.

use super::checks::int_in;
use crate::spec::diag::Diags;
use crate::spec::raw::RawTls;
use crate::spec::types::{CaRotation, Tls, TlsAuthClients, TlsProtocol};

pub(super) fn tls(raw: Option<&RawTls>, d: &mut Diags<'_>) -> Option<Tls> {
    let default = RawTls::default();
    let raw = raw.unwrap_or(&default);
    let mut protocols = Vec::new();
    match &raw.protocols {
        None => protocols = vec![TlsProtocol::V1_2, TlsProtocol::V1_3],
        Some(list) => {
            if list.is_empty() {
                d.error(
                    "tls.protocols",
                    "needs at least one protocol (TLSv1.2, TLSv1.3)",
                );
            }
            for (i, p) in list.iter().enumerate() {
                let path = format!("tls.protocols[{i}]");
                match p.as_str() {
                    "TLSv1.2" => protocols.push(TlsProtocol::V1_2),
                    "TLSv1.3" => protocols.push(TlsProtocol::V1_3),
                    "TLSv1" | "TLSv1.0" | "TLSv1.1" | "SSLv3" => d.error_help(
                        &path,
                        format!("{p} is not allowed: it is broken and deprecated (RFC 8996)"),
                        "use TLSv1.2 and TLSv1.3",
                    ),
                    other => d.error(
                        &path,
                        format!("`{other}` is not a TLS protocol: use \"TLSv1.2\" or \"TLSv1.3\""),
                    ),
                }
            }
            protocols.sort();
            protocols.dedup();
        }
    }
    let cert_days = int_in(raw.cert_days, 365, 1, 3650, "tls.cert_days", d);
    let renew = int_in(
        raw.renew_before_days,
        30,
        1,
        3649,
        "tls.renew_before_days",
        d,
    );
    if let (Some(c), Some(r)) = (cert_days, renew)
        && r >= c
    {
        d.error(
            "tls.renew_before_days",
            format!("{r} days is not shorter than the certificate lifetime ({c} days): every plan would re-issue certificates"),
        );
    }
    let auth_clients = match raw.auth_clients.as_deref() {
        None | Some("yes") => TlsAuthClients::Yes,
        Some("optional") => TlsAuthClients::Optional,
        Some("no") => TlsAuthClients::No,
        Some(other) => {
            d.error(
                "tls.auth_clients",
                format!("`{other}` is not one of \"yes\", \"optional\", \"no\""),
            );
            TlsAuthClients::Yes
        }
    };
    let ca_rotation = match raw.ca_rotation.as_deref() {
        None => None,
        Some("trust") => Some(CaRotation::Trust),
        Some("reissue") => Some(CaRotation::Reissue),
        Some("abort") => Some(CaRotation::Abort),
        Some(other) => {
            d.error_help(
                "tls.ca_rotation",
                format!("`{other}` is not a stage of a CA rotation"),
                "use \"trust\" (a new CA trusted next to the old one), then \"reissue\" (node certificates from the new CA); remove the key to finish, or \"abort\" to go back to the old CA (docs/runbook.md, \"Rotate the cluster CA\")",
            );
            None
        }
    };
    Some(Tls {
        protocols,
        cert_days: cert_days?,
        renew_before_days: renew?,
        auth_clients,
        ca_rotation,
    })
}
