//! `redisctl client-cert NAME --out DIR`: a client certificate from the cluster CA for an
//! application ([`crate::pki::client`] issues it, writes it and keeps the inventory).

use std::path::Path;
use std::time::SystemTime;

use super::{Error, exit, load_with_state};
use crate::cli::ClientCertArgs;
use crate::pki::client::{self, ClientCertError, ClientCertRequest};
use crate::render::{self, Shell};
use crate::spec::TlsAuthClients;

pub fn run(config: &Path, args: &ClientCertArgs, shell: &Shell) -> Result<u8, Error> {
    client::check_name(&args.name).map_err(refused)?;
    let (loaded, _state) =
        load_with_state(config, shell, crate::state::Access::Write("client-cert"))?;
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
    shell.out(&render::client_cert::issued(
        &issued, spec, &args.name, days, now,
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
