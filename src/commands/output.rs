use std::path::Path;

use super::{Error, exit, load_with_state};
use crate::cli::OutputArgs;
use crate::render::Shell;
use crate::spec::Spec;

/// What `output` prints, in order: the values an application or a pipeline needs to reach the
/// cluster, from the spec and the state directory only (no AWS, no node, no secret).
fn outputs(spec: &Spec) -> Result<Vec<(&'static str, String)>, Error> {
    let port = spec.redis.port;
    let endpoints: Vec<String> = spec
        .nodes
        .nodes
        .iter()
        .map(|n| format!("{}:{port}", n.private_ip))
        .collect();
    let dir = &spec.cluster.state_dir;
    let authority = crate::pki::Authority::load(dir, spec.tls.ca_rotation).map_err(|e| {
        Error::Refused(format!(
            "cannot read the cluster CA in {}: {e}",
            dir.display()
        ))
    })?;
    let (ca_bundle, stage) = match &authority {
        Some(a) => (a.client_bundle(), a.stage().describe().to_string()),
        None => (String::new(), "no CA yet (apply makes it)".to_string()),
    };
    let users: Vec<&str> = spec
        .users
        .iter()
        .filter(|u| u.enabled)
        .map(|u| u.name.as_str())
        .collect();
    Ok(vec![
        ("cluster", spec.cluster.name.clone()),
        ("region", spec.cluster.region.clone()),
        ("endpoints", endpoints.join(",")),
        ("port", port.to_string()),
        (
            "tls_auth_clients",
            spec.tls.auth_clients.as_str().to_string(),
        ),
        ("users", users.join(",")),
        ("ca_rotation", stage),
        ("ca_bundle", ca_bundle),
    ])
}

/// `output [NAME] [--json]`: every output as `name = value` (the CA bundle, several lines, last),
/// one value raw (for `$(redisctl output endpoints)`), or a JSON object.
pub fn run(config: &Path, args: &OutputArgs, shell: &Shell) -> Result<u8, Error> {
    let (loaded, _state) = load_with_state(config, shell, crate::state::Access::Read)?;
    let all = outputs(&loaded.spec)?;
    if let Some(name) = &args.name {
        let Some((_, value)) = all.iter().find(|(n, _)| n == name) else {
            let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
            return Err(Error::Refused(format!(
                "no output named {name:?}; the outputs are: {}",
                names.join(", ")
            )));
        };
        shell.out(value);
        if !value.ends_with('\n') {
            shell.out("\n");
        }
        return Ok(exit::OK);
    }
    if args.json {
        let map: serde_json::Map<String, serde_json::Value> = all
            .into_iter()
            .map(|(n, v)| (n.to_string(), serde_json::Value::String(v)))
            .collect();
        shell.out(&format!("{}\n", serde_json::Value::Object(map)));
        return Ok(exit::OK);
    }
    for (name, value) in &all {
        if value.contains('\n') {
            shell.out(&format!("{name} =\n{value}"));
        } else {
            shell.out(&format!("{name} = {value}\n"));
        }
    }
    Ok(exit::OK)
}
