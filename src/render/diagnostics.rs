//! Spec diagnostics in the compiler style users know:
//!
//! ```text
//! error: network.subnets[1].cidr: 10.1.2.0/24 is not inside the VPC CIDR 10.0.0.0/16
//!   --> cluster.toml:14:1
//!    |
//! 14 | cidr = "10.1.2.0/24"
//!    |
//!    = help: …
//! ```

use std::path::Path;

use super::{Shell, Style};
use crate::spec::{Diagnostic, Severity, SourceMap};

pub fn render(shell: &Shell, file: &Path, source: &SourceMap, d: &Diagnostic) -> String {
    let (label, style) = match d.severity {
        Severity::Error => ("error:", Style::Error),
        Severity::Warning => ("warning:", Style::Warning),
    };
    let mut out = format!("{} ", shell.err_style(style, label));
    if let Some(p) = &d.path {
        out.push_str(&shell.err_style(Style::Bold, p));
        out.push_str(": ");
    }
    out.push_str(&d.message);
    out.push('\n');
    if let Some(loc) = d.location {
        let num = loc.line.to_string();
        let pad = " ".repeat(num.len());
        out.push_str(&format!(
            "{pad}--> {}:{}:{}\n",
            file.display(),
            loc.line,
            loc.column
        ));
        if let Some(text) = source.line_text(loc.line) {
            out.push_str(&format!("{pad} |\n{num} | {text}\n{pad} |\n"));
        }
        if let Some(h) = &d.help {
            out.push_str(&format!("{pad} = help: {h}\n"));
        }
    } else if let Some(h) = &d.help {
        out.push_str(&format!("  = help: {h}\n"));
    }
    out
}

pub fn render_all(shell: &Shell, file: &Path, source: &SourceMap, list: &[Diagnostic]) -> String {
    list.iter()
        .map(|d| render(shell, file, source, d))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `validate`'s one line for a valid spec: what it describes, and how many warnings it has.
pub fn valid(shell: &Shell, config: &Path, loaded: &crate::spec::Loaded) -> String {
    let spec = &loaded.spec;
    let azs: std::collections::BTreeSet<&str> =
        spec.nodes.nodes.iter().map(|n| n.az.as_str()).collect();
    let warnings = match loaded.warnings.len() {
        0 => String::new(),
        1 => " (1 warning)".into(),
        n => format!(" ({n} warnings)"),
    };
    format!(
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
    )
}
