//! Redis keyspace semantics the cluster itself applies: which slot a key hashes to, and which
//! keys a glob pattern (of `KEYS`, `SCAN MATCH` or an ACL key pattern) covers.

/// Redis Cluster's key slot: CRC16 (XMODEM) of the key, or of its `{hash tag}`, mod 16384.
pub fn key_slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let mut part = b;
    if let Some(open) = b.iter().position(|&c| c == b'{')
        && let Some(len) = b[open + 1..].iter().position(|&c| c == b'}')
        && len > 0
    {
        part = &b[open + 1..open + 1 + len];
    }
    let mut crc: u16 = 0;
    for &byte in part {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// Redis glob matching (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), enough for key patterns.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn m(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| m(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && m(&p[1..], &t[1..]),
            Some('[') => {
                let Some(close) = p.iter().skip(1).position(|&c| c == ']') else {
                    return !t.is_empty() && t[0] == '[' && m(&p[1..], &t[1..]);
                };
                let Some(&c) = t.first() else { return false };
                let class = &p[1..close + 1];
                let (neg, class) = match class.first() {
                    Some('^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        let (a, b) = (class[i].min(class[i + 2]), class[i].max(class[i + 2]));
                        hit |= a <= c && c <= b;
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != neg && m(&p[close + 2..], &t[1..])
            }
            Some('\\') if p.len() > 1 => !t.is_empty() && t[0] == p[1] && m(&p[2..], &t[1..]),
            Some(&c) => !t.is_empty() && t[0] == c && m(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    m(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis() {
        // Values from CLUSTER KEYSLOT on Redis 7.0.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
        assert_eq!(key_slot("123456789"), 0x31C3);
    }

    #[test]
    fn globs() {
        assert!(glob("session:*", "session:redisctl-verify"));
        assert!(!glob("session:*", "redisctl-verify:outside"));
        assert!(glob("*", "anything"));
        assert!(glob("h?llo", "hello"));
        assert!(glob("h[ae]llo", "hallo"));
        assert!(!glob("h[^e]llo", "hello"));
        assert!(glob("h[a-c]llo", "hbllo"));
    }
}
