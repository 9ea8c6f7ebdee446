//! Diagnostics about a spec: what is wrong, the key path, and where in the file.

use serde::Serialize;

use super::source::{Location, SourceMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Key path such as `network.subnets[1].cidr`; `None` only when the file could not be
    /// parsed far enough to tell.
    pub path: Option<String>,
    pub message: String,
    pub help: Option<String>,
    pub location: Option<Location>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Collects diagnostics during validation; locations are filled in from the source map.
pub(crate) struct Diags<'a> {
    source: &'a SourceMap,
    pub(crate) list: Vec<Diagnostic>,
}

impl<'a> Diags<'a> {
    pub(crate) fn new(source: &'a SourceMap) -> Self {
        Diags {
            source,
            list: Vec::new(),
        }
    }

    fn push(&mut self, severity: Severity, path: &str, message: String, help: Option<String>) {
        self.list.push(Diagnostic {
            severity,
            path: Some(path.to_string()),
            message: shorten_quoted(&message),
            help,
            location: self.source.locate(path),
        });
    }

    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Error, path, message.into(), None);
    }

    pub(crate) fn error_help(
        &mut self,
        path: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(Severity::Error, path, message.into(), Some(help.into()));
    }

    pub(crate) fn warn(&mut self, path: &str, message: impl Into<String>, help: impl Into<String>) {
        self.push(Severity::Warning, path, message.into(), Some(help.into()));
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.list.iter().any(Diagnostic::is_error)
    }
}

/// The longest value a message quotes in full.
const QUOTED: usize = 60;

/// `message` with every value it quotes (between backticks or double quotes) cut to [`QUOTED`]
/// characters: a message names the value, the line under it shows where it is. A value of a
/// megabyte was quoted whole (serde quotes a string of the wrong type, escaped).
pub(crate) fn shorten_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut quote: Option<char> = None;
    let mut kept = 0;
    let mut escaped = false;
    for c in message.chars() {
        match quote {
            None => {
                if c == '`' || c == '"' {
                    quote = Some(c);
                    kept = 0;
                }
                out.push(c);
            }
            Some(q) if c == q && !escaped => {
                if kept > QUOTED {
                    out.push('…');
                }
                out.push(c);
                quote = None;
            }
            Some(_) => {
                escaped = !escaped && c == '\\';
                kept += 1;
                if kept <= QUOTED {
                    out.push(c);
                }
            }
        }
    }
    if quote.is_some() && kept > QUOTED {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shorten_quoted;

    #[test]
    fn quoted_values_are_cut_not_the_message() {
        let long = "x".repeat(100_000);
        let cut = format!("{}…", "x".repeat(60));
        assert_eq!(
            shorten_quoted(&format!(
                "invalid type: string \"{long}\", expected an integer"
            )),
            format!("invalid type: string \"{cut}\", expected an integer")
        );
        assert_eq!(
            shorten_quoted(&format!("`{long}` is not an AWS region; `us-east-1`")),
            format!("`{cut}` is not an AWS region; `us-east-1`")
        );
        let escaped = format!("\"{}\\\"{}\" and \"ok\"", "a".repeat(10), "b".repeat(70));
        assert_eq!(
            shorten_quoted(&escaped),
            format!("\"{}\\\"{}…\" and \"ok\"", "a".repeat(10), "b".repeat(48))
        );
        let short = "duplicate user `admin` (also users[0])";
        assert_eq!(shorten_quoted(short), short);
    }
}
