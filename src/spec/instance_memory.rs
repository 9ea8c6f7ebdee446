//! How much memory an EC2 instance type has, offline (validate runs without AWS), and the
//! `maxmemory` that leaves the rest to the OS: Redis without a limit grows until the kernel's OOM
//! killer ends it, and one that forks to save (RDB, AOF rewrite) needs room for the pages its
//! child copies.
//!
//! The table is AWS's published sizes for the families a Redis node is usually given: the
//! burstable `t2`/`t3`/`t3a`/`t4g` sizes, and for general purpose (`m`), compute (`c`) and
//! memory optimised (`r`) families from generation 5 on, 4, 2 and 8 GiB per vCPU (`medium` 1
//! vCPU, `large` 2, `xlarge` 4, `Nxlarge` 4·N). Other types are unknown here: validate then asks
//! for an explicit `maxmemory`.

/// MiB of memory of an instance type, when the table knows it.
pub fn memory_mib(instance_type: &str) -> Option<u64> {
    let (family, size) = instance_type.split_once('.')?;
    let burstable = ["t2", "t3", "t3a", "t4g"];
    if burstable.contains(&family) {
        let gib_x2: u64 = match size {
            "nano" => 1,
            "micro" => 2,
            "small" => 4,
            "medium" => 8,
            "large" => 16,
            "xlarge" => 32,
            "2xlarge" => 64,
            _ => return None,
        };
        return Some(gib_x2 * 512);
    }
    let class = family.chars().next()?;
    let generation: u32 = family[1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    let per_vcpu_gib = match class {
        'm' => 4,
        'c' => 2,
        'r' => 8,
        _ => return None,
    };
    if generation < 5 {
        return None;
    }
    let vcpus: u64 = match size {
        "medium" => 1,
        "large" => 2,
        "xlarge" => 4,
        _ => 4 * size.strip_suffix("xlarge")?.parse::<u64>().ok()?,
    };
    Some(vcpus * per_vcpu_gib * 1024)
}

/// What the OS, the page cache and a saving fork's copied pages need: a quarter of the memory,
/// at least 256 MiB (a quarter is what ElastiCache reserves by default).
pub fn reserve_mib(memory_mib: u64) -> u64 {
    (memory_mib / 4).max(256)
}

/// The `maxmemory` redisctl sets when the spec gives none: the memory less the reserve.
pub fn default_maxmemory_mib(memory_mib: u64) -> u64 {
    memory_mib.saturating_sub(reserve_mib(memory_mib))
}

/// The digits and the unit (its bytes) of a Redis memory size: `512mb`, `2gb`, `100000`; `1g` is
/// 10⁹ as Redis reads it. `None` when the unit is not one of Redis's or there are no digits.
pub fn split_size(size: &str) -> Option<(&str, u64)> {
    let end = size
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(size.len());
    let unit: u64 = match size[end..].to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    (end > 0).then(|| (&size[..end], unit))
}

/// Bytes of a Redis memory size (see [`split_size`]).
pub fn bytes(size: &str) -> Option<u64> {
    let (digits, unit) = split_size(size)?;
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_aws_publishes_them() {
        assert_eq!(memory_mib("t2.micro"), Some(1024));
        assert_eq!(memory_mib("t3.nano"), Some(512));
        assert_eq!(memory_mib("t4g.2xlarge"), Some(32 * 1024));
        assert_eq!(memory_mib("m5.large"), Some(8 * 1024));
        assert_eq!(memory_mib("m6g.medium"), Some(4 * 1024));
        assert_eq!(memory_mib("r7g.xlarge"), Some(32 * 1024));
        assert_eq!(memory_mib("r6i.4xlarge"), Some(128 * 1024));
        assert_eq!(memory_mib("c7gn.2xlarge"), Some(16 * 1024));
        // Older or other families are not guessed.
        assert_eq!(memory_mib("r4.large"), None);
        assert_eq!(memory_mib("x2gd.large"), None);
        assert_eq!(memory_mib("m5.metal"), None);
    }

    #[test]
    fn the_default_leaves_a_quarter_or_256_mib() {
        assert_eq!(default_maxmemory_mib(1024), 768);
        assert_eq!(default_maxmemory_mib(512), 256);
        assert_eq!(default_maxmemory_mib(8192), 6144);
    }

    #[test]
    fn memory_sizes_as_redis_reads_them() {
        assert_eq!(bytes("512mb"), Some(512 << 20));
        assert_eq!(bytes("1g"), Some(1_000_000_000));
        assert_eq!(bytes("2GB"), Some(2 << 30));
        assert_eq!(bytes("100"), Some(100));
        assert_eq!(bytes("12xb"), None);
    }
}
