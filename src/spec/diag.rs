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
            message,
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
