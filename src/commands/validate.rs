use std::path::Path;

use super::{Error, exit, load_spec};
use crate::cli::ValidateArgs;
use crate::render::{Shell, Style};

pub fn run(config: &Path, args: &ValidateArgs, shell: &Shell) -> Result<u8, Error> {
    let loaded = load_spec(config, shell)?;
    let spec = &loaded.spec;
    if args.resolved {
        shell.out(&spec.to_toml());
        return Ok(exit::OK);
    }
    let azs: std::collections::BTreeSet<&str> =
        spec.nodes.nodes.iter().map(|n| n.az.as_str()).collect();
    let warnings = match loaded.warnings.len() {
        0 => String::new(),
        1 => " (1 warning)".into(),
        n => format!(" ({n} warnings)"),
    };
    shell.out(&format!(
        "{} {} is valid{warnings}: cluster {} in {}, {} nodes ({} masters × {} replicas) in {} AZs, {} ACL users\n",
        shell.out_style(Style::Ok, "ok:"),
        config.display(),
        spec.cluster.name,
        spec.cluster.region,
        spec.nodes.nodes.len(),
        spec.nodes.masters,
        spec.nodes.replicas_per_master,
        azs.len(),
        spec.users.len(),
    ));
    Ok(exit::OK)
}
