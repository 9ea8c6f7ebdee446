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
        if let Some(text) = source.line_excerpt(loc.line, loc.column) {
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

/// How many diagnostics are shown: past that, a count (a file far from a spec — a table
/// repeated thousands of times — has as many problems, and the first ones are what to fix).
pub const SHOWN: usize = 50;

pub fn render_all(shell: &Shell, file: &Path, source: &SourceMap, list: &[Diagnostic]) -> String {
    let mut out = list
        .iter()
        .take(SHOWN)
        .map(|d| render(shell, file, source, d))
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(rest) = list.get(SHOWN..).filter(|r| !r.is_empty()) {
        let errors = rest.iter().filter(|d| d.is_error()).count();
        out.push_str(&format!(
            "\n… and {} more not shown ({errors} error{}, {} warning{}): fix the ones above first\n",
            rest.len(),
            if errors == 1 { "" } else { "s" },
            rest.len() - errors,
            if rest.len() - errors == 1 { "" } else { "s" },
        ));
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_diagnostics_on_one_long_line_stay_short() {
        // Found by fuzzing: `users = [{}, {}, …]` on one line of a megabyte is an error per
        // user, and each one showed the whole line.
        let text = format!("users = [{}]\n", "{}, ".repeat(200_000));
        let source = SourceMap::new(&text);
        let list: Vec<Diagnostic> = (0..120)
            .map(|i| Diagnostic {
                severity: if i % 3 == 0 {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                path: Some(format!("users[{i}].name")),
                message: "is required".into(),
                help: None,
                location: Some(source.location(10 + 4 * i)),
            })
            .collect();
        let shown = render_all(&Shell::plain(), Path::new("c.toml"), &source, &list);
        assert!(shown.len() < 20_000, "{} bytes", shown.len());
        assert_eq!(shown.matches("is required").count(), SHOWN);
        assert!(
            shown.ends_with(
                "… and 70 more not shown (47 errors, 23 warnings): fix the ones above first\n"
            ),
            "{}",
            &shown[shown.len() - 200..]
        );
    }
}
