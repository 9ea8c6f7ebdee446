//! The desired state: the spec file (`cluster.toml`), parsed into raw serde structs, then
//! validated into a typed [`Spec`] with every default filled in. Every problem is reported as a
//! [`Diagnostic`] with its key path and its line and column in the file.

mod diag;
pub mod instance_memory;
pub mod raw;
mod resolved;
pub mod secrets;
pub mod source;
pub mod types;
mod validate;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Severity};
pub use source::{Location, SourceMap};
pub use types::*;
pub use validate::{REGIONS, usable_ip};

/// The largest spec file read. A spec is a few kilobytes (the reference example is 6); a file
/// past this is refused without being read further, so that no file (a huge one by mistake, a
/// device that never ends) makes redisctl hold more than this in memory.
pub const MAX_SPEC_BYTES: usize = 1 << 20;

/// A spec that was read and validated, with its warnings.
#[derive(Debug)]
pub struct Loaded {
    pub spec: Spec,
    pub warnings: Vec<Diagnostic>,
    pub path: PathBuf,
    pub source: SourceMap,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the spec file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid spec ({} error{})", path.display(), count_errors(diagnostics), if count_errors(diagnostics) == 1 { "" } else { "s" })]
    Invalid {
        path: PathBuf,
        source_map: SourceMap,
        /// Errors and warnings, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

fn count_errors(d: &[Diagnostic]) -> usize {
    d.iter().filter(|d| d.is_error()).count()
}

/// Read and validate the spec file at `path` (at most one byte past [`MAX_SPEC_BYTES`]).
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SPEC_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    from_bytes(path, &bytes)
}

/// Validate the contents of the spec file `path` (what [`load`] read from it): relative paths
/// in it are relative to the file's directory. A file past [`MAX_SPEC_BYTES`], or that is not
/// UTF-8 text, is one diagnostic.
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Loaded, LoadError> {
    let invalid = |source_map: SourceMap, diagnostic: Diagnostic| LoadError::Invalid {
        path: path.to_path_buf(),
        source_map,
        diagnostics: vec![diagnostic],
    };
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(invalid(
            SourceMap::default(),
            Diagnostic {
                severity: Severity::Error,
                path: None,
                message: format!(
                    "the file is larger than {} KiB: a spec is a few kilobytes",
                    MAX_SPEC_BYTES >> 10
                ),
                help: Some("check that this is the cluster's spec file".into()),
                location: None,
            },
        ));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let source = SourceMap::new(std::str::from_utf8(good).unwrap_or_default());
            let location = Some(source.location(good.len()));
            return Err(invalid(
                source,
                Diagnostic {
                    severity: Severity::Error,
                    path: None,
                    message: format!(
                        "the file is not UTF-8 text: byte 0x{:02x} here is not part of a UTF-8 character",
                        bytes[e.valid_up_to()]
                    ),
                    help: Some("save the spec as UTF-8".into()),
                    location,
                },
            ));
        }
    };
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let source = SourceMap::new(text);
    match parse(text, base_dir, &source) {
        Ok((spec, warnings)) => Ok(Loaded {
            spec,
            warnings,
            path: path.to_path_buf(),
            source,
        }),
        Err(diagnostics) => Err(LoadError::Invalid {
            path: path.to_path_buf(),
            source_map: source,
            diagnostics,
        }),
    }
}

/// Parse and validate spec text. On success: the spec and its warnings; on failure: every
/// diagnostic (errors and warnings), sorted by position.
pub fn parse(
    text: &str,
    base_dir: &Path,
    source: &SourceMap,
) -> Result<(Spec, Vec<Diagnostic>), Vec<Diagnostic>> {
    let raw: raw::RawSpec = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(vec![toml_error(&e, source)]),
    };
    let mut d = diag::Diags::new(source);
    let spec = validate::validate(&raw, base_dir, &mut d);
    let mut list = d.list;
    list.sort_by_key(|d| {
        d.location
            .map(|l| (l.line, l.column))
            .unwrap_or((usize::MAX, 0))
    });
    match spec {
        Some(spec) if !list.iter().any(Diagnostic::is_error) => Ok((spec, list)),
        _ => Err(list),
    }
}

/// A serde or syntax error from the toml crate, located and given a key path.
fn toml_error(e: &toml::de::Error, source: &SourceMap) -> Diagnostic {
    let location = e.span().map(|s| source.location(s.start));
    let path = e
        .span()
        .and_then(|s| source.path_at(&s))
        .or_else(|| location.and_then(|l| source.path_near_line(l.line)));
    let message = diag::shorten_quoted(&plain_types(e.message().trim()));
    let help = if message.starts_with("unknown field") {
        Some("check the spelling against docs/spec.md; unknown keys are refused so typos cannot pass silently".into())
    } else {
        None
    };
    Diagnostic {
        severity: Severity::Error,
        path,
        message,
        help,
        location,
    }
}

/// serde speaks Rust ("expected i64"); the user wrote TOML.
fn plain_types(message: &str) -> String {
    [
        ("expected i64", "expected an integer"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
        ("invalid type: sequence", "invalid type: array"),
        ("invalid type: map", "invalid type: table"),
    ]
    .iter()
    .fold(message.to_string(), |m, (from, to)| m.replace(from, to))
}

#[cfg(test)]
mod tests;
