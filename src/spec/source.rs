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
    lines: Box<Lines>,
}

/// Where the lines start and how many characters precede a byte, so that a location is a
/// binary search, not a scan of the file, however many diagnostics a file has.
#[derive(Debug, Clone, Default)]
struct Lines {
    /// Byte offset of each line's start.
    starts: Vec<usize>,
    /// UTF-8 continuation bytes before every [`CHUNK`]-th byte: a column is counted in
    /// characters over at most one chunk.
    continuations: Vec<usize>,
}

const CHUNK: usize = 256;

fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

impl SourceMap {
    /// Index a document that parsed. A document that does not parse has an empty map; its
    /// errors carry their own spans.
    pub fn new(text: &str) -> Self {
        let bytes = text.as_bytes();
        let starts = std::iter::once(0)
            .chain(
                bytes
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        let continuations = std::iter::once(0)
            .chain(bytes.chunks(CHUNK).scan(0, |seen, chunk| {
                *seen += chunk.iter().filter(|b| is_continuation(**b)).count();
                Some(*seen)
            }))
            .collect();
        let mut map = SourceMap {
            text: text.to_owned(),
            entries: BTreeMap::new(),
            lines: Box::new(Lines {
                starts,
                continuations,
            }),
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

    /// 1-based line and column (in characters) of a byte offset.
    pub fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.lines.starts.partition_point(|&s| s <= offset).max(1);
        let line_start = self.lines.starts.get(line - 1).copied().unwrap_or(0);
        let column = self.chars_before(offset) - self.chars_before(line_start) + 1;
        Location { line, column }
    }

    /// Characters in the text before byte `offset` (a character that starts before it counts).
    fn chars_before(&self, offset: usize) -> usize {
        let chunk = offset / CHUNK;
        let Some(&before) = self.lines.continuations.get(chunk) else {
            return 0;
        };
        let tail = &self.text.as_bytes()[chunk * CHUNK..offset];
        offset - before - tail.iter().filter(|b| is_continuation(**b)).count()
    }

    /// The text of a 1-based line, for showing under a diagnostic.
    pub fn line_text(&self, line: usize) -> Option<&str> {
        let start = *self.lines.starts.get(line.checked_sub(1)?)?;
        if start == self.text.len() && line > 1 {
            // After the last newline: no line there (as `str::lines` has it).
            return None;
        }
        let end = self
            .lines
            .starts
            .get(line)
            .map_or(self.text.len(), |next| next - 1);
        let text = &self.text[start..end];
        Some(text.strip_suffix('\r').unwrap_or(text))
    }

    /// A line to show under a diagnostic: the line, or for a long one (a minified file, a long
    /// inline array) the part around `column`, so that showing many diagnostics does not show
    /// the same huge line again and again.
    pub fn line_excerpt(&self, line: usize, column: usize) -> Option<String> {
        const WIDTH: usize = 120;
        let text = self.line_text(line)?;
        if text.len() <= WIDTH {
            return Some(text.to_string());
        }
        let skip = column.saturating_sub(1 + WIDTH / 2);
        let mut chars = text.chars().skip(skip);
        let excerpt: String = chars.by_ref().take(WIDTH).collect();
        let before = if skip > 0 { "…" } else { "" };
        let after = if chars.next().is_some() { "…" } else { "" };
        Some(format!("{before}{excerpt}{after}"))
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

    /// Line and column the slow way: count newlines and characters from the start.
    fn scanned(text: &str, offset: usize) -> Location {
        let before = &text.as_bytes()[..offset];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let column = before[start..]
            .iter()
            .filter(|b| !is_continuation(**b))
            .count()
            + 1;
        Location { line, column }
    }

    #[test]
    fn locations_are_those_a_scan_of_the_text_finds() {
        // Lines of many lengths, characters of one to four bytes across chunk boundaries, CRLF.
        let mut text = String::new();
        for i in 0..40 {
            let unit: String = "aé€𝔘".chars().take(i % 4 + 1).collect();
            text.push_str(&unit.repeat(i * 7));
            text.push_str(["\n", "\r\n"][i % 2]);
        }
        text.push_str(&"é".repeat(700));
        let m = SourceMap::new(&text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(
                m.location(offset),
                scanned(&text, offset.min(text.len())),
                "offset {offset}"
            );
        }
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(m.line_text(i + 1), Some(*line), "line {}", i + 1);
        }
        assert_eq!(m.line_text(lines.len() + 1), None);
        assert_eq!(m.line_text(0), None);
        assert_eq!(SourceMap::new("a\n").line_text(2), None);
    }

    #[test]
    fn a_long_line_is_shown_around_the_column() {
        let line = format!("users = [{}]", "{}, ".repeat(100_000));
        let m = SourceMap::new(&line);
        let shown = m.line_excerpt(1, 200_000).unwrap();
        assert_eq!(shown.chars().count(), 122, "{shown}");
        assert!(shown.starts_with('…') && shown.ends_with('…'), "{shown}");
        assert!(m.line_excerpt(1, 1).unwrap().starts_with("users = [{}, "));
        assert_eq!(SourceMap::new("a = 1").line_excerpt(1, 1).unwrap(), "a = 1");
    }

    #[test]
    fn guesses_path_for_syntax_errors() {
        let m = SourceMap::new("[redis]\nport = = 3\n");
        assert_eq!(m.path_near_line(2).as_deref(), Some("redis.port"));
    }
}
