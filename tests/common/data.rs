//! Test data in a cluster: `n` keys written through a cluster client (redis-cli -c) on one
//! node, read back on another, and counted on the masters.

use super::{Cluster, IPS};

/// The test keys, in slot order (a cluster client then follows few redirects).
fn keys(n: usize) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("patient:{i}"),
                format!("record-{i}-{}", i * 7919 % 10007),
            )
        })
        .collect();
    k.sort_by_key(|(key, _)| redisctl::redis::keyspace::key_slot(key));
    k
}

/// Write `n` keys through redis-cli in cluster mode (-c) on node 1.
pub fn write_keys(c: &Cluster, n: usize) {
    let cmds: String = keys(n)
        .iter()
        .map(|(k, v)| format!("SET {k} {v}\n"))
        .collect();
    c.on_node(IPS[0], "cat > /root/set.cmds", &cmds);
    let out = c.redis(IPS[0], "-c < /root/set.cmds | grep -c '^OK$'");
    assert_eq!(out.trim(), n.to_string(), "every SET answered OK: {out}");
}

/// Read the `n` keys back through a cluster client on node 2; each must have its value.
pub fn read_keys(c: &Cluster, n: usize) {
    let k = keys(n);
    let cmds: String = k.iter().map(|(k, _)| format!("GET {k}\n")).collect();
    c.on_node(IPS[1], "cat > /root/get.cmds", &cmds);
    let out = c.redis(IPS[1], "-c < /root/get.cmds");
    let values: Vec<&str> = out.lines().filter(|l| l.starts_with("record-")).collect();
    assert_eq!(values.len(), n, "every key reads back");
    for ((key, want), got) in k.iter().zip(values) {
        assert_eq!(want, got, "{key}");
    }
}

pub fn dbsize_total(c: &Cluster) -> u64 {
    IPS.iter()
        .map(|ip| {
            let role = c.redis(ip, "ROLE");
            if role.starts_with("master") {
                c.redis(ip, "DBSIZE").trim().parse::<u64>().unwrap()
            } else {
                0
            }
        })
        .sum()
}
