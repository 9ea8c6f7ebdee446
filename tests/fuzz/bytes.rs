//! Byte-level mutations, blind to the format: bit flips, interesting bytes, deletions,
//! duplications, truncations, splices with another input, dictionary tokens, long repeats.

use crate::rng::Rng;

/// Bytes that change how a TOML or JSON reader reads what follows.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x08, 0x09, 0x0a, 0x0d, 0x1b, 0x20, b'"', b'\'', b'#', b'[', b']', b'{', b'}',
    b'=', b',', b'.', b':', b'\\', b'-', b'+', b'0', b'9', b'e', b'_', 0x7f, 0x80, 0xbf, 0xc0,
    0xe2, 0xed, 0xf0, 0xf4, 0xfe, 0xff,
];

/// Apply one byte-level mutation to `data`. `others` are inputs to splice from; `dict` tokens
/// of the format. The result is cut to `max_len`.
pub fn mutate(
    rng: &mut Rng,
    data: &mut Vec<u8>,
    others: &[&[u8]],
    dict: &[Vec<u8>],
    max_len: usize,
) {
    let len = data.len();
    match rng.below(14) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = *rng.pick(INTERESTING);
        }
        2 => {
            let i = rng.below(len + 1);
            let b = *rng.pick(INTERESTING);
            let n = rng.count(16);
            data.splice(i..i, std::iter::repeat_n(b, n));
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = rng.count(len - i);
            data.drain(i..i + n);
        }
        4 if len > 0 => {
            // A range repeated in place.
            let i = rng.below(len);
            let n = rng.count(len - i);
            let chunk = data[i..i + n].to_vec();
            let times = rng.count(4096).min(max_len / n + 1);
            let at = i + n;
            data.splice(at..at, chunk.iter().copied().cycle().take(n * times));
        }
        5 if len > 0 => data.truncate(rng.below(len)),
        6 if !others.is_empty() => {
            // Splice: this input's head, another's tail.
            let other = *rng.pick(others);
            let i = rng.below(len + 1);
            let j = rng.below(other.len() + 1);
            data.truncate(i);
            data.extend_from_slice(&other[j..]);
        }
        7 if !others.is_empty() => {
            let other = *rng.pick(others);
            if !other.is_empty() {
                let j = rng.below(other.len());
                let n = rng.count(other.len() - j);
                let i = rng.below(len + 1);
                data.splice(i..i, other[j..j + n].iter().copied());
            }
        }
        8 | 9 if !dict.is_empty() => {
            let token = rng.pick(dict).clone();
            let i = rng.below(len + 1);
            if rng.chance(30) && len > 0 {
                // Overwrite instead of insert.
                let end = (i + token.len()).min(len);
                data.splice(i..end, token);
            } else {
                data.splice(i..i, token);
            }
        }
        10 if len > 0 => {
            let i = rng.below(len);
            let n = rng.count(len - i).min(64);
            for b in &mut data[i..i + n] {
                *b = rng.next() as u8;
            }
        }
        11 => {
            // A number where a digit was: huge, negative, or out of every range.
            if let Some(i) = (0..8)
                .map(|_| rng.below(len.max(1)))
                .find(|&i| data.get(i).is_some_and(u8::is_ascii_digit))
            {
                let end = data[i..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(len, |p| i + p);
                let n = rng.pick(NUMBERS).as_bytes().to_vec();
                data.splice(i..end, n);
            }
        }
        12 if len > 1 => {
            // Two ranges swapped.
            let a = rng.below(len);
            let b = rng.below(len);
            let (a, b) = (a.min(b), a.max(b));
            let n = rng.count((b - a).max(1)).min(len - b);
            if a + n <= b {
                let first = data[a..a + n].to_vec();
                let second = data[b..b + n].to_vec();
                data[a..a + n].copy_from_slice(&second);
                data[b..b + n].copy_from_slice(&first);
            }
        }
        _ => {
            // A long run of one byte or of a dictionary token.
            let i = rng.below(len + 1);
            let unit = if rng.chance(50) && !dict.is_empty() {
                rng.pick(dict).clone()
            } else {
                vec![*rng.pick(INTERESTING)]
            };
            let times = rng.count(200_000).min(max_len / unit.len().max(1) + 1);
            let run: Vec<u8> = unit
                .iter()
                .copied()
                .cycle()
                .take(unit.len() * times)
                .collect();
            data.splice(i..i, run);
        }
    }
    data.truncate(max_len);
}

/// Numbers at and past the edges of the ranges readers check.
pub const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1",
    "2",
    "3",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "1e308",
    "1e309",
    "-1e999",
    "1.5",
    "0.1",
    "1e-400",
];
