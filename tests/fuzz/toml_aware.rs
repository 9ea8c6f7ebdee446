//! TOML-aware mutations of a spec, line by line: values of the wrong type or out of every
//! range, duplicated keys and tables, tables repeated thousands of times, keys moved under
//! another table, deep nesting (arrays, inline tables, dotted keys and headers), unicode, NULs
//! and very long strings.

use crate::bytes::NUMBERS;
use crate::rng::Rng;

/// What the seeds hold: their keys, table headers, values and lines.
#[derive(Default)]
pub struct Dict {
    pub keys: Vec<String>,
    pub headers: Vec<String>,
    pub values: Vec<String>,
    pub lines: Vec<String>,
}

impl Dict {
    pub fn new(seeds: &[Vec<u8>]) -> Self {
        let mut d = Dict::default();
        for seed in seeds {
            for line in String::from_utf8_lossy(seed).lines() {
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                if t.starts_with('[') {
                    d.headers.push(t.to_string());
                } else if let Some((k, v)) = t.split_once('=') {
                    d.keys.push(k.trim().to_string());
                    d.values.push(v.trim().to_string());
                }
                d.lines.push(t.to_string());
            }
        }
        for list in [&mut d.keys, &mut d.headers, &mut d.values, &mut d.lines] {
            list.sort();
            list.dedup();
        }
        d
    }

    /// Tokens for the byte-level mutations.
    pub fn tokens(&self) -> Vec<Vec<u8>> {
        let mut t: Vec<Vec<u8>> = self
            .keys
            .iter()
            .chain(&self.headers)
            .map(|s| s.as_bytes().to_vec())
            .collect();
        for s in [
            "=",
            " = ",
            "\n",
            "\r\n",
            "[",
            "]",
            "[[",
            "]]",
            "{",
            "}",
            ",",
            ".",
            "\"",
            "'",
            "\"\"\"",
            "'''",
            "\\",
            "\\u0000",
            "\\U0010FFFF",
            "\\uD800",
            "\\x00",
            "\\e",
            "#",
            "\u{0}",
            "\u{feff}",
            "\u{202e}",
            "\u{2028}",
            "é",
            "İ",
            "ß",
            "𝔘",
            "👍🏽",
            "true",
            "false",
            "inf",
            "nan",
            "-inf",
            "1979-05-27T07:32:00Z",
            "1979-05-27",
            "07:32:00",
        ] {
            t.push(s.as_bytes().to_vec());
        }
        t.extend(NUMBERS.iter().map(|n| n.as_bytes().to_vec()));
        t
    }
}

/// Strings the validators compare against, and strings that break naive text handling.
const STRINGS: &[&str] = &[
    "",
    " ",
    "a",
    "ab",
    "admin",
    "default",
    "redisctl-replication",
    "redisctl-dry-run-x",
    "+@all",
    "-@all",
    "+@read",
    "-@dangerous",
    "+cluster|slots",
    "+cluster|",
    "|",
    "+",
    "-",
    "@",
    "+@",
    "~*",
    "&*",
    "%RW~*",
    "*",
    "on",
    "off",
    "nopass",
    ">pw",
    "#0123",
    "resetkeys",
    "allkeys",
    "10.0.0.0/16",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "0.0.0.0/32",
    "0.0.0.0/1",
    "128.0.0.0/1",
    "10.0.0.0/9",
    "10.0.0.0/31",
    "255.255.255.255/32",
    "10.0.1.0/24",
    "10.0.1.0/28",
    "10.0.1.0/29",
    "10.0.1.0/33",
    "10.0.1.256/24",
    "10.0.1.10",
    "10.0.1.255",
    "10.0.1.3",
    "10.0.0.0/",
    "/24",
    "::1",
    "::/0",
    "us-east-1",
    "us-east-1a",
    "us-east-1z",
    "us-east-1aa",
    "us-gov-west-1",
    "us-",
    "-",
    "t3.small",
    "t3.",
    ".small",
    "ami-0123456789abcdef0",
    "ami-01234567",
    "ami-",
    "ubuntu-24.04",
    "alias/aws/ebs",
    "alias/",
    "arn:aws:kms:us-east-1:123456789012:key/01234567-89ab-cdef-0123-456789abcdef",
    "arn:aws:kms:::::",
    "mrk-",
    "gp3",
    "gp2",
    "io2",
    "st1",
    "swap",
    "at-launch",
    "public-ip",
    "private-ip",
    "nat-gateway",
    "none",
    "TLSv1.2",
    "TLSv1.3",
    "SSLv3",
    "yes",
    "no",
    "optional",
    "allkeys-lru",
    "noeviction",
    "1gb",
    "0",
    "0gb",
    "100%",
    "75%",
    "101%",
    "0%",
    "%",
    "1.5gb",
    "18446744073709551616gb",
    "99999999999999999999mb",
    "1kb",
    "b",
    "~/x",
    "~",
    "/",
    "/etc/shadow",
    "../..",
    ".",
    "ubuntu",
    "root",
    "_",
    "A",
    "CORPUS_ADMIN_PASSWORD",
    "9VAR",
    "Name",
    "aws:x",
    "redisctl:cluster",
    "é",
    "İ",
    "ß",
    "ﬃ",
    "Ǆ",
    "\u{0301}",
    "\u{202e}",
    "\u{feff}",
    "\u{fffd}",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "👍🏽",
    "a\u{0}b",
    "\u{7f}",
    "line\nbreak",
    "tab\there",
    "cr\rhere",
];

/// A TOML string literal holding `s`, in one of TOML's four forms where `s` fits it.
fn quoted(rng: &mut Rng, s: &str) -> String {
    let basic = |s: &str| {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    };
    let plain = !s.chars().any(|c| c.is_control() || c == '\'' || c == '"');
    match rng.below(4) {
        1 if plain => format!("'{s}'"),
        2 if plain => format!("\"\"\"\n{s}\"\"\""),
        3 if plain => format!("'''{s}'''"),
        _ => basic(s),
    }
}

/// A random TOML value, often of the wrong type for the key it lands on.
pub fn value(rng: &mut Rng, dict: &Dict, depth: usize) -> String {
    match rng.below(17) {
        0 | 1 => rng.pick(NUMBERS).to_string(),
        2 => rng
            .pick(&[
                "inf",
                "-inf",
                "+inf",
                "nan",
                "-nan",
                "0x7f",
                "0xFFFFFFFFFFFFFFFF",
                "0o777",
                "0b101",
                "1_000",
                "01",
                "1__0",
                "+1",
                "-0.0",
                "1e",
                "1.",
                ".5",
                "1e1000",
            ])
            .to_string(),
        3 => rng.pick(&["true", "false", "True", "yes"]).to_string(),
        4..=6 => {
            let s = *rng.pick(STRINGS);
            quoted(rng, s)
        }
        7 => {
            // A long string: a repeated seed string or character.
            let unit = if rng.chance(50) {
                (*rng.pick(STRINGS)).to_string()
            } else {
                rng.pick(&["a", "é", "𝔘", "\\u0000", "\\\\", "-", "*"])
                    .to_string()
            };
            let times = rng.count(300_000) / unit.len().max(1) + 1;
            format!("\"{}\"", unit.repeat(times).replace(['"', '\n'], ""))
        }
        8 => rng
            .pick(&[
                "1979-05-27T07:32:00Z",
                "1979-05-27T00:32:00.999999-07:00",
                "1979-05-27",
                "07:32:00",
                "0000-00-00",
                "9999-12-31T23:59:60Z",
                "1979-02-30",
            ])
            .to_string(),
        9 | 10 if depth < 4 => {
            let n = rng.count(64);
            let items: Vec<String> = (0..n).map(|_| value(rng, dict, depth + 1)).collect();
            format!("[{}]", items.join(", "))
        }
        11 if depth < 4 => {
            let n = rng.count(8);
            let items: Vec<String> = (0..n)
                .map(|_| {
                    let k = if rng.chance(70) && !dict.keys.is_empty() {
                        rng.pick(&dict.keys).clone()
                    } else {
                        let s = rng_string(rng);
                        quoted(rng, s)
                    };
                    format!("{k} = {}", value(rng, dict, depth + 1))
                })
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        12 => rng
            .pick(&["[]", "{}", "\"\"", "''", "[[]]", "[{}]"])
            .to_string(),
        13 | 14 if !dict.values.is_empty() => rng.pick(&dict.values).clone(),
        15 => {
            // Escapes, valid and not.
            let e = *rng.pick(&[
                "\\u0000",
                "\\U0010FFFF",
                "\\U00110000",
                "\\uD800",
                "\\x41",
                "\\e",
                "\\q",
                "\\",
                "\\u12",
                "\\UFFFFFFFF",
            ]);
            format!("\"a{e}b\"")
        }
        _ => deep(rng),
    }
}

fn rng_string(rng: &mut Rng) -> &'static str {
    rng.pick::<&str>(STRINGS)
}

/// Nesting as deep as a reader may try to recurse.
fn deep(rng: &mut Rng) -> String {
    let depth = rng.count(100_000);
    match rng.below(3) {
        0 => format!("{}1{}", "[".repeat(depth), "]".repeat(depth)),
        1 => format!("{}1{}", "{a=".repeat(depth), "}".repeat(depth)),
        _ => format!("{}{}", "[".repeat(depth), "{a=[".repeat(depth / 3)),
    }
}

/// Apply one TOML-aware mutation to `text`.
pub fn mutate(rng: &mut Rng, text: &str, dict: &Dict, max_len: usize) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let n = lines.len();
    let is_kv = |l: &str| {
        let t = l.trim_start();
        !t.starts_with('[') && !t.starts_with('#') && t.contains('=')
    };
    let kv: Vec<usize> = (0..n).filter(|&i| is_kv(&lines[i])).collect();
    let headers: Vec<usize> = (0..n)
        .filter(|&i| lines[i].trim_start().starts_with('['))
        .collect();
    match rng.below(13) {
        0 | 1 if !kv.is_empty() => {
            // A value replaced: often of the wrong type, or out of range.
            let i = *rng.pick(&kv);
            let key = lines[i]
                .split_once('=')
                .map(|(k, _)| k.to_string())
                .unwrap_or_default();
            lines[i] = format!("{key}= {}", value(rng, dict, 0));
        }
        2 if n > 0 => {
            // A line duplicated: a duplicate key, or a repeated header.
            let i = rng.below(n);
            let at = if rng.chance(50) {
                i + 1
            } else {
                rng.below(n + 1)
            };
            let line = lines[i].clone();
            lines.insert(at, line);
        }
        3 if n > 0 => {
            lines.remove(rng.below(n));
        }
        4 if !dict.lines.is_empty() => {
            let line = rng.pick(&dict.lines).clone();
            lines.insert(rng.below(n + 1), line);
        }
        5 if !headers.is_empty() => {
            // A table (its header and keys) repeated, up to thousands of times.
            let h = *rng.pick(&headers);
            let end = headers.iter().copied().find(|&j| j > h).unwrap_or(n);
            let section: Vec<String> = lines[h..end].to_vec();
            let size: usize = section.iter().map(|l| l.len() + 1).sum::<usize>().max(1);
            let times = rng.count(5000).min(max_len / size + 1);
            let at = if rng.chance(70) {
                end
            } else {
                rng.below(n + 1)
            };
            let copies: Vec<String> = std::iter::repeat_n(section, times).flatten().collect();
            lines.splice(at..at, copies);
        }
        6 if !kv.is_empty() && !dict.keys.is_empty() => {
            // A key renamed: to another known key, or to something strange.
            let i = *rng.pick(&kv);
            let v = lines[i]
                .split_once('=')
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let key = match rng.below(4) {
                0 => {
                    let s = rng_string(rng);
                    quoted(rng, s)
                }
                1 => format!("{}.{}", rng.pick(&dict.keys), rng.pick(&dict.keys)),
                _ => rng.pick(&dict.keys).clone(),
            };
            lines[i] = format!("{key} ={v}");
        }
        7 => {
            // A header: known, as an array of tables or not, unknown, or dotted very deep.
            let header = match rng.below(4) {
                0 if !dict.headers.is_empty() => rng.pick(&dict.headers).clone(),
                1 if !dict.headers.is_empty() => toggle_array(rng.pick::<String>(&dict.headers)),
                2 => {
                    let depth = rng.count(50_000);
                    format!("[{}]", vec!["a"; depth].join("."))
                }
                _ => format!("[{}]", rng_string(rng)),
            };
            lines.insert(rng.below(n + 1), header);
        }
        8 => {
            // A deeply nested value or dotted key.
            let line = if rng.chance(50) {
                let depth = rng.count(50_000);
                format!("{} = 1", vec!["a"; depth].join("."))
            } else {
                format!("users = {}", deep(rng))
            };
            lines.insert(rng.below(n + 1), line);
        }
        9 if n > 1 => {
            // A line moved under another table.
            let line = lines.remove(rng.below(n));
            lines.insert(rng.below(n), line);
        }
        10 if !headers.is_empty() => {
            let h = *rng.pick(&headers);
            lines[h] = toggle_array(&lines[h]);
        }
        11 if !dict.keys.is_empty() => {
            let key = rng.pick(&dict.keys).clone();
            let line = format!("{key} = {}", value(rng, dict, 0));
            lines.insert(rng.below(n + 1), line);
        }
        _ if !kv.is_empty() && !dict.values.is_empty() => {
            // A value that is right for another key.
            let i = *rng.pick(&kv);
            let key = lines[i]
                .split_once('=')
                .map(|(k, _)| k.to_string())
                .unwrap_or_default();
            lines[i] = format!("{key}= {}", rng.pick(&dict.values));
        }
        _ => {}
    }
    let sep = if rng.chance(3) { "\r\n" } else { "\n" };
    let mut out = lines.join(sep);
    if out.len() > max_len {
        let mut cut = max_len;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// `[x]` <-> `[[x]]`.
fn toggle_array(header: &str) -> String {
    let t = header.trim();
    if let Some(inner) = t.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
        format!("[{inner}]")
    } else if let Some(inner) = t.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        format!("[[{inner}]]")
    } else {
        t.to_string()
    }
}
