//! Where each key of the spec file is: key paths (`network.subnets[1].cidr`) mapped to byte
//! spans, and byte offsets turned into line and column. Diagnostics use it to point at the line
//! that is wrong, for serde's errors (by span) and for semantic ones (by key path).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Serialize;
use toml::de::{DeTable, DeValue};

/// A 1-based line and column in the spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Span of the key (for array elements: of the element).
    key: Range<usize>,
    /// Span of the value.
    value: Range<usize>,
}

/// Key paths and spans of one spec file.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    text: String,
    entries: BTreeMap<String, Entry>,
}

impl SourceMap {
    /// Index a document that parsed. A document that does not parse has an empty map; its
    /// errors carry their own spans.
    pub fn new(text: &str) -> Self {
        let mut map = SourceMap {
            text: text.to_owned(),
            entries: BTreeMap::new(),
        };
        if let Ok(root) = DeTable::parse(text) {
            map.walk_table("", root.get_ref());
        }
        map
    }

    fn walk_table(&mut self, prefix: &str, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let path = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            self.entries.insert(
                path.clone(),
                Entry {
                    key: key.span(),
                    value: value.span(),
                },
            );
            self.walk_value(&path, value.get_ref());
        }
    }

    fn walk_value(&mut self, path: &str, value: &DeValue<'_>) {
        match value {
            DeValue::Table(t) => self.walk_table(path, t),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    self.entries.insert(
                        item_path.clone(),
                        Entry {
                            key: item.span(),
                            value: item.span(),
                        },
                    );
                    self.walk_value(&item_path, item.get_ref());
                }
            }
            _ => {}
        }
    }

    /// The location of a key path, or of its nearest ancestor that is in the file (a value
    /// that was defaulted is reported where its table is). A path with no ancestor in the file
    /// (a missing top-level table) is reported at the top of the file, as serde does.
    pub fn locate(&self, path: &str) -> Option<Location> {
        Some(
            self.locate_in_file(path)
                .unwrap_or(Location { line: 1, column: 1 }),
        )
    }

    fn locate_in_file(&self, path: &str) -> Option<Location> {
        let mut p = path;
        loop {
            if let Some(e) = self.entries.get(p) {
                // A value's own position is more useful than its key's for array elements and
                // scalars; for tables the key (header) is what a reader looks for.
                let start = if e.value.start < e.key.start || p.ends_with(']') {
                    e.value.start
                } else {
                    e.key.start
                };
                return Some(self.location(start));
            }
            p = parent_path(p)?;
        }
    }

    /// The innermost key path whose key or value contains `span.start`.
    pub fn path_at(&self, span: &Range<usize>) -> Option<String> {
        let at = span.start;
        self.entries
            .iter()
            .filter(|(_, e)| contains(&e.key, at) || contains(&e.value, at))
            .min_by_key(|(path, e)| {
                let len = if contains(&e.key, at) {
                    e.key.len()
                } else {
                    e.value.len()
                };
                (len, std::cmp::Reverse(path.len()))
            })
            .map(|(p, _)| p.clone())
    }

    /// 1-based line and column of a byte offset.
    pub fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location { line, column }
    }

    /// The text of a 1-based line, for showing under a diagnostic.
    pub fn line_text(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }

    /// Best-effort key path for a syntax error on `line` (the document did not parse, so there
    /// is no tree): the last `[table]` header above it and the key on the line, if any.
    pub fn path_near_line(&self, line: usize) -> Option<String> {
        let lines: Vec<&str> = self.text.lines().collect();
        let current = lines.get(line.checked_sub(1)?)?;
        let mut table = String::new();
        for l in lines[..line - 1].iter().rev() {
            let t = l.trim();
            if let Some(h) = t.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
                table = h.trim().to_string();
                break;
            }
            if let Some(h) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
                table = h.trim().to_string();
                break;
            }
        }
        let key = current
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.starts_with('#') && !k.starts_with('['));
        match (table.is_empty(), key) {
            (true, Some(k)) => Some(k.to_string()),
            (false, Some(k)) => Some(format!("{table}.{k}")),
            (false, None) => Some(table),
            (true, None) => None,
        }
    }
}

fn contains(r: &Range<usize>, at: usize) -> bool {
    r.start <= at && at < r.end.max(r.start + 1)
}

/// `a.b[1].c` -> `a.b[1]` -> `a.b` -> `a` -> None.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.ends_with(']') {
        return path.rfind('[').map(|i| &path[..i]);
    }
    path.rfind('.').map(|i| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[cluster]\nname = \"x\"\n\n[[network.subnets]]\nname = \"a\"\n\n[[network.subnets]]\nname = \"b\"\ncidr = \"10.0.2.0/24\"\n";

    #[test]
    fn locates_nested_array_keys() {
        let m = SourceMap::new(DOC);
        assert_eq!(m.locate("cluster.name").unwrap().line, 2);
        assert_eq!(m.locate("network.subnets[1].cidr").unwrap().line, 9);
        assert_eq!(
            m.locate("network.subnets[1].cidr").unwrap().column,
            1,
            "points at the key"
        );
        // A defaulted key is reported at its table's header.
        assert_eq!(m.locate("network.subnets[0].cidr").unwrap().line, 4);
    }

    #[test]
    fn finds_path_for_a_span() {
        let m = SourceMap::new(DOC);
        let off = DOC.find("10.0.2.0").unwrap();
        assert_eq!(
            m.path_at(&(off..off + 1)).as_deref(),
            Some("network.subnets[1].cidr")
        );
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("a.b[1].c"), Some("a.b[1]"));
        assert_eq!(parent_path("a.b[1]"), Some("a.b"));
        assert_eq!(parent_path("a"), None);
    }

    #[test]
    fn guesses_path_for_syntax_errors() {
        let m = SourceMap::new("[redis]\nport = = 3\n");
        assert_eq!(m.path_near_line(2).as_deref(), Some("redis.port"));
    }
}
