//! Small checks shared by the sections: CIDRs, ranged integers, AWS names and ids.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use crate::spec::diag::Diags;

pub(super) fn cidr(text: &str, path: &str, d: &mut Diags<'_>) -> Option<Ipv4Net> {
    match text.parse::<Ipv4Net>() {
        Ok(net) if net.network() != net.addr() => {
            d.error_help(
                path,
                format!("{text} has host bits set"),
                format!("did you mean {}?", net.trunc()),
            );
            None
        }
        Ok(net) => Some(net),
        Err(_) => {
            d.error(
                path,
                format!("`{text}` is not an IPv4 CIDR block like 10.0.1.0/24"),
            );
            None
        }
    }
}

/// An integer with a default and an inclusive range.
pub(super) fn int_in(
    v: Option<i64>,
    default: u32,
    min: u32,
    max: u32,
    path: &str,
    d: &mut Diags<'_>,
) -> Option<u32> {
    match v {
        None => Some(default),
        Some(v) if v >= i64::from(min) && v <= i64::from(max) => Some(v as u32),
        Some(v) => {
            d.error(
                path,
                format!("{v} is out of range: must be between {min} and {max}"),
            );
            None
        }
    }
}

/// AWS reserves the first four addresses and the last one of every subnet.
pub fn usable_ip(subnet: &Ipv4Net, ip: Ipv4Addr) -> bool {
    let base = u32::from(subnet.network());
    let last = u32::from(subnet.broadcast());
    let ip = u32::from(ip);
    ip >= base + 4 && ip < last
}

pub(super) fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

pub(super) fn is_private(n: &Ipv4Net) -> bool {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .any(|p| p.parse::<Ipv4Net>().expect("literal").contains(n))
}

pub(super) fn az_in_region(az: &str, region: &str) -> bool {
    az.strip_prefix(region)
        .is_some_and(|rest| rest.len() == 1 && rest.chars().all(|c| c.is_ascii_lowercase()))
}

/// `us-east-1a` -> `1a`.
pub(super) fn az_suffix(az: &str) -> &str {
    az.rsplit('-').next().unwrap_or(az)
}

pub(super) fn is_dns_label(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    (2..=max).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

pub(super) fn is_instance_type(s: &str) -> bool {
    match s.split_once('.') {
        Some((family, size)) => {
            family.len() >= 2
                && family
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase())
                && family
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !size.is_empty()
                && size
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        }
        None => false,
    }
}

pub(super) fn is_ami_id(s: &str) -> bool {
    s.strip_prefix("ami-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17)
            && h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    })
}

pub(super) fn is_kms_key(s: &str) -> bool {
    let uuid = |k: &str| {
        k.len() == 36
            && k.chars().enumerate().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            })
    };
    let alias = |a: &str| {
        a.strip_prefix("alias/").is_some_and(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c))
        })
    };
    if uuid(s) || alias(s) || s.starts_with("mrk-") {
        return true;
    }
    // arn:aws[-partition]:kms:region:account:key/<id> or :alias/<name>
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "kms"
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && (parts[5]
            .strip_prefix("key/")
            .is_some_and(|k| uuid(k) || k.starts_with("mrk-"))
            || alias(parts[5]))
}

pub(super) fn is_unix_user(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

pub(super) fn is_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

pub(super) fn is_memory_size(s: &str) -> bool {
    crate::spec::instance_memory::split_size(s).is_some()
}

pub(super) fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}
