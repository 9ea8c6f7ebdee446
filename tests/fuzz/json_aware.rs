//! JSON-aware mutations of a saved plan: a node of the document replaced by a value of another
//! type, a key removed or added, an array element repeated, a string swapped for another
//! string of the seeds (an operation's or an edge's name), a subtree moved from another plan,
//! numbers past every range, deep nesting, duplicate keys and escapes a `Value` cannot hold.

use serde_json::{Map, Value};

use crate::bytes::NUMBERS;
use crate::rng::Rng;

/// What the seed plans hold: their keys, strings and subtrees.
#[derive(Default)]
pub struct Dict {
    pub keys: Vec<String>,
    pub strings: Vec<String>,
    pub subtrees: Vec<Value>,
}

impl Dict {
    pub fn new(seeds: &[Vec<u8>]) -> Self {
        let mut d = Dict::default();
        for seed in seeds {
            if let Ok(v) = serde_json::from_slice::<Value>(seed) {
                d.collect(&v);
            }
        }
        d.keys.sort();
        d.keys.dedup();
        d.strings.sort();
        d.strings.dedup();
        d
    }

    fn collect(&mut self, v: &Value) {
        match v {
            Value::String(s) if s.len() < 200 => self.strings.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| self.collect(i)),
            Value::Object(m) => {
                for (k, v) in m {
                    self.keys.push(k.clone());
                    self.collect(v);
                }
            }
            _ => {}
        }
        if matches!(v, Value::Object(_) | Value::Array(_))
            && self.subtrees.len() < 5000
            && v.to_string().len() < 4096
        {
            self.subtrees.push(v.clone());
        }
    }

    /// Tokens for the byte-level mutations.
    pub fn tokens(&self) -> Vec<Vec<u8>> {
        let mut t: Vec<Vec<u8>> = self
            .keys
            .iter()
            .map(|k| format!("\"{k}\":").into_bytes())
            .chain(
                self.strings
                    .iter()
                    .take(500)
                    .map(|s| format!("\"{s}\"").into_bytes()),
            )
            .collect();
        for s in [
            "{", "}", "[", "]", ",", ":", "\"", "null", "true", "false", "\\u0000", "\\ud800",
            "\\udc00", "\\", "\u{0}", "\u{feff}", "é", "𝔘",
        ] {
            t.push(s.as_bytes().to_vec());
        }
        t.extend(NUMBERS.iter().map(|n| n.as_bytes().to_vec()));
        t
    }
}

/// Text that replaces a placeholder string after serialization: what a `Value` cannot hold.
fn raw(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => rng.pick(NUMBERS).to_string(),
        1 => {
            let depth = rng.count(100_000);
            format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
        }
        2 => {
            let depth = rng.count(100_000);
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        }
        3 => "{\"kind\": 1, \"kind\": 2}".into(),
        4 => rng
            .pick(&[
                "\"\\ud800\"",
                "\"\\udc00\\ud800\"",
                "\"\\u0000\"",
                "\"\\uZZZZ\"",
                "\"\u{0}\"",
                "-",
                "1.",
                "01",
                "NaN",
                "Infinity",
            ])
            .to_string(),
        _ => {
            let len = rng.count(1_000_000);
            format!("\"{}\"", "é".repeat(len / 2 + 1))
        }
    }
}

fn scalar(rng: &mut Rng, dict: &Dict) -> Value {
    match rng.below(8) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => serde_json::from_str(rng.pick::<&str>(&NUMBERS[..17])).unwrap_or(Value::Null),
        3 => Value::from(-1.5),
        4 if !dict.strings.is_empty() => Value::String(rng.pick(&dict.strings).clone()),
        5 => Value::String(String::new()),
        6 => Value::String(
            rng.pick(&["a\u{0}b", "é", "\u{202e}", "𝔘", "../../etc", "\n"])
                .to_string(),
        ),
        _ => Value::from(u64::MAX),
    }
}

/// A random value, often of another type than the node it replaces.
fn value(rng: &mut Rng, dict: &Dict) -> Value {
    match rng.below(6) {
        0 if !dict.subtrees.is_empty() => rng.pick(&dict.subtrees).clone(),
        1 => Value::Array(vec![]),
        2 => Value::Object(Map::new()),
        3 => Value::Array((0..rng.count(8)).map(|_| scalar(rng, dict)).collect()),
        _ => scalar(rng, dict),
    }
}

/// Number of nodes under and including `v`.
fn size(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(size).sum(),
        Value::Object(m) => m.values().map(size).sum(),
        _ => 0,
    }
}

/// The `k`-th node in pre-order.
fn nth<'a>(v: &'a mut Value, k: &mut usize) -> Option<&'a mut Value> {
    if *k == 0 {
        return Some(v);
    }
    *k -= 1;
    match v {
        Value::Array(items) => items.iter_mut().find_map(|i| nth(i, k)),
        Value::Object(m) => m.values_mut().find_map(|i| nth(i, k)),
        _ => None,
    }
}

/// Apply one JSON-aware mutation; `None` when `data` is not JSON.
pub fn mutate(rng: &mut Rng, data: &[u8], dict: &Dict, max_len: usize) -> Option<Vec<u8>> {
    let mut doc: Value = serde_json::from_slice(data).ok()?;
    let total = size(&doc);
    let mut k = rng.below(total);
    let node = nth(&mut doc, &mut k)?;
    let mut raws = Vec::new();
    match rng.below(10) {
        0 | 1 => *node = value(rng, dict),
        2 => match node {
            Value::Object(m) if !m.is_empty() => {
                let key = m
                    .keys()
                    .nth(rng.below(m.len()))
                    .cloned()
                    .unwrap_or_default();
                m.remove(&key);
            }
            _ => *node = Value::Null,
        },
        3 => {
            if let Value::Object(m) = node {
                let key = if rng.chance(70) && !dict.keys.is_empty() {
                    rng.pick(&dict.keys).clone()
                } else {
                    "unknown_key".into()
                };
                m.insert(key, value(rng, dict));
            }
        }
        4 => {
            if let Value::Array(items) = node
                && !items.is_empty()
            {
                let i = rng.below(items.len());
                let item = items[i].clone();
                let times = rng
                    .count(10_000)
                    .min(max_len / (item.to_string().len() + 1) + 1);
                items.splice(i..i, std::iter::repeat_n(item, times));
            }
        }
        5 => {
            if let Value::Array(items) = node {
                let keep = rng.below(items.len() + 1);
                items.truncate(keep);
            }
        }
        6 if !dict.strings.is_empty() => {
            *node = Value::String(rng.pick(&dict.strings).clone());
        }
        7 => {
            raws.push(raw(rng));
            *node = Value::String(format!("@@RAW{}@@", raws.len() - 1));
        }
        8 => {
            // Wrapped in an array or an object: one level more than the reader expects.
            let inner = std::mem::take(node);
            *node = if rng.chance(50) {
                Value::Array(vec![inner])
            } else {
                let mut m = Map::new();
                m.insert(rng.pick(&dict.keys).clone(), inner);
                Value::Object(m)
            };
        }
        _ => {
            if let Value::Object(m) = node
                && let Some(key) = m.keys().nth(rng.below(m.len().max(1))).cloned()
            {
                // A subtree from another plan under a key it has there.
                let other = dict
                    .subtrees
                    .iter()
                    .skip(rng.below(dict.subtrees.len()))
                    .find_map(|t| t.as_object().and_then(|o| o.get(&key)).cloned());
                if let Some(other) = other {
                    m.insert(key, other);
                }
            }
        }
    }
    let mut text = if rng.chance(50) {
        serde_json::to_string_pretty(&doc).ok()?
    } else {
        serde_json::to_string(&doc).ok()?
    };
    for (i, r) in raws.iter().enumerate() {
        text = text.replace(&format!("\"@@RAW{i}@@\""), r);
    }
    let mut out = text.into_bytes();
    out.truncate(max_len);
    Some(out)
}
