//! The verify report for people (a table: check, result, evidence) and for CI (versioned JSON).

use serde::Serialize;

use super::{Shell, Style};
use crate::verify::{Check, Report};

/// Bumped when a field changes meaning or goes away; new fields do not bump it.
pub const JSON_FORMAT_VERSION: &str = "1.0";

/// The table, then one summary line.
pub fn human(report: &Report, color: bool) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max("CHECK".len());
    let mut out = format!(
        "{}\n",
        Shell::paint(
            color,
            Style::Bold,
            &format!("{:<width$}  {:<6}  EVIDENCE", "CHECK", "RESULT")
        )
    );
    for c in &report.checks {
        let (style, word) = if c.passed {
            (Style::Ok, "pass")
        } else {
            (Style::Error, "FAIL")
        };
        let result = Shell::paint(color, style, &format!("{word:<6}"));
        let mut lines = c.evidence.iter();
        out.push_str(&format!(
            "{:<width$}  {result}  {}\n",
            c.name,
            lines.next().map(String::as_str).unwrap_or("")
        ));
        for l in lines {
            out.push_str(&format!("{:<width$}  {:<6}  {l}\n", "", ""));
        }
    }
    let failed: Vec<&str> = report.failed().map(|c| c.name.as_str()).collect();
    let secs = report.elapsed.as_secs_f64();
    if failed.is_empty() {
        out.push_str(&format!(
            "\n{} all {} checks passed on cluster {} in {secs:.1}s.\n",
            Shell::paint(color, Style::Ok, "Verified:"),
            report.checks.len(),
            report.cluster
        ));
    } else {
        out.push_str(&format!(
            "\n{} {} of {} checks failed on cluster {} in {secs:.1}s: {}.\n",
            Shell::paint(color, Style::Error, "Verify failed:"),
            failed.len(),
            report.checks.len(),
            report.cluster,
            failed.join(", ")
        ));
    }
    out
}

#[derive(Serialize)]
struct Json<'a> {
    format_version: &'static str,
    cluster: &'a str,
    passed: bool,
    elapsed_ms: u128,
    checks: &'a [Check],
}

/// `{"format_version", "cluster", "passed", "elapsed_ms", "checks": [{name, passed, evidence}]}`.
pub fn json(report: &Report) -> String {
    let doc = Json {
        format_version: JSON_FORMAT_VERSION,
        cluster: &report.cluster,
        passed: report.passed(),
        elapsed_ms: report.elapsed.as_millis(),
        checks: &report.checks,
    };
    serde_json::to_string_pretty(&doc).expect("the report serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn table_and_json() {
        let r = Report {
            cluster: "c".into(),
            checks: vec![
                Check {
                    name: "cluster health".into(),
                    passed: true,
                    evidence: vec!["a".into(), "b".into()],
                },
                Check::fail("tls only", vec!["x".into()]),
            ],
            elapsed: Duration::from_millis(1500),
        };
        let h = human(&r, false);
        assert!(
            h.contains("cluster health  pass    a\n                        b\n"),
            "{h}"
        );
        assert!(h.contains("tls only        FAIL    x\n"), "{h}");
        assert!(
            h.contains("1 of 2 checks failed on cluster c in 1.5s: tls only."),
            "{h}"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["format_version"], "1.0");
        assert_eq!(v["passed"], false);
        assert_eq!(v["checks"][1]["name"], "tls only");
    }
}
