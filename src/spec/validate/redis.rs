//! `[redis]`: the port (its bus at +10000, clear of Sentinel's), timeouts and memory settings.

use super::checks::{int_in, is_memory_size};
use crate::spec::diag::Diags;
use crate::spec::instance_memory;
use crate::spec::raw::RawRedis;
use crate::spec::types::{PackageVersion, Redis, SecurityGroup};

const MAXMEMORY_POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

pub(super) fn redis(
    raw: Option<&RawRedis>,
    sg: Option<&SecurityGroup>,
    instance_type: Option<&str>,
    d: &mut Diags<'_>,
) -> Option<Redis> {
    let default = RawRedis::default();
    let raw = raw.unwrap_or(&default);
    let port = int_in(raw.port, 6379, 1024, 55535, "redis.port", d);
    if raw.port.is_some_and(|p| p > 55535)
        && let Some(last) = d.list.last_mut()
    {
        last.help = Some("the cluster bus uses port + 10000, which must stay below 65536".into());
    }
    if let Some(p) = port
        && sg.is_some_and(|s| s.sentinel)
        && (26379..=26381).contains(&p)
    {
        d.error(
            "redis.port",
            format!("{p} collides with the Sentinel ports 26379-26381"),
        );
    }
    let timeout = int_in(
        raw.cluster_node_timeout_ms,
        15000,
        100,
        600_000,
        "redis.cluster_node_timeout_ms",
        d,
    );
    if let Some(m) = &raw.maxmemory
        && !is_memory_size(m)
    {
        d.error(
            "redis.maxmemory",
            format!("`{m}` is not a memory size like 512mb or 2gb"),
        );
    }
    let maxmemory = maxmemory(raw.maxmemory.as_deref(), instance_type, d);
    if let Some(pol) = &raw.maxmemory_policy
        && !MAXMEMORY_POLICIES.contains(&pol.as_str())
    {
        d.error(
            "redis.maxmemory_policy",
            format!(
                "`{pol}` is not a maxmemory policy (one of {})",
                MAXMEMORY_POLICIES.join(", ")
            ),
        );
    }
    let package_version = match raw.package_version.as_deref() {
        None => None,
        Some("latest") => Some(PackageVersion::Latest),
        Some(v) if is_debian_version(v) => Some(PackageVersion::Exact(v.to_string())),
        Some(v) => {
            d.error_help(
                "redis.package_version",
                format!("`{v}` is not a Debian package version"),
                "use \"latest\", or a version as `apt-cache policy redis-server` shows it, such as 5:7.0.15-1~deb12u1",
            );
            None
        }
    };
    Some(Redis {
        port: port? as u16,
        cluster_node_timeout_ms: timeout?,
        appendonly: raw.appendonly.unwrap_or(true),
        maxmemory,
        maxmemory_policy: raw.maxmemory_policy.clone(),
        cluster_require_full_coverage: raw.cluster_require_full_coverage.unwrap_or(true),
        package_version,
    })
}

/// A Debian version (`[epoch:]upstream[-revision]`): starts with a digit, then letters,
/// digits and `.+~:-` only (what `apt-get install redis-server=VERSION` takes, and nothing a
/// shell would read).
fn is_debian_version(v: &str) -> bool {
    v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | ':' | '-'))
}

/// `maxmemory` as given, or derived from the instance type's memory (less what the OS and a
/// saving fork need); a warning when the given value leaves less than that, or when the type's
/// memory is unknown and none is given (Redis would grow until the OOM killer ends it).
fn maxmemory(
    given: Option<&str>,
    instance_type: Option<&str>,
    d: &mut Diags<'_>,
) -> Option<String> {
    let memory = instance_type.and_then(instance_memory::memory_mib);
    if let Some(m) = given
        && instance_memory::bytes(m) == Some(0)
    {
        // Redis reads 0 as "no limit".
        d.warn(
            "redis.maxmemory",
            format!(
                "`{m}` means no limit to Redis: it would grow until the kernel's OOM killer ends it"
            ),
            match memory {
                Some(mem) => format!(
                    "leave maxmemory out for the default ({}mb on a {})",
                    instance_memory::default_maxmemory_mib(mem),
                    instance_type.unwrap_or_default()
                ),
                None => {
                    "set redis.maxmemory to about three quarters of the instance's memory".into()
                }
            },
        );
        return Some(m.to_string());
    }
    match (given, memory) {
        (Some(m), Some(mem)) => {
            let reserve = instance_memory::reserve_mib(mem);
            if let Some(b) = instance_memory::bytes(m)
                && b > (mem - reserve.min(mem)) * 1024 * 1024
            {
                d.warn(
                    "redis.maxmemory",
                    format!(
                        "`{m}` leaves less than {reserve} MiB of the {mem} MiB of a {} for the OS and for the copy a save (RDB, AOF rewrite) makes",
                        instance_type.unwrap_or_default()
                    ),
                    format!(
                        "at most {}mb, or leave maxmemory out for that default",
                        instance_memory::default_maxmemory_mib(mem)
                    ),
                );
            }
            Some(m.to_string())
        }
        (Some(m), None) => Some(m.to_string()),
        (None, Some(mem)) => Some(format!("{}mb", instance_memory::default_maxmemory_mib(mem))),
        (None, None) => {
            if let Some(t) = instance_type {
                d.warn(
                    "nodes.instance_type",
                    format!(
                        "no maxmemory, and redisctl does not know how much memory a {t} has: Redis would grow until the kernel's OOM killer ends it"
                    ),
                    "set redis.maxmemory to about three quarters of the instance's memory",
                );
            }
            None
        }
    }
}
