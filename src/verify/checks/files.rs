//! The modes and owners of the files redisctl writes on each node.

use super::{NodeProbe, reached};
use crate::redis::{files, systemd};
use crate::verify::Check;

/// Every file redisctl writes on a node has the mode and owner it writes (the node key is not
/// readable by others; the configuration and the ACL hashes are root:redis 0640), and so do
/// their directories (root's: the redis user cannot plant a link there); none is a symbolic
/// link.
pub fn file_modes(probes: &[NodeProbe]) -> Check {
    let mut passed = true;
    let mut ev = Vec::new();
    for p in probes {
        let Some(o) = reached(p, &mut passed, &mut ev) else {
            continue;
        };
        let mut wrong = Vec::new();
        let mut right = 0;
        let seen = files::parse_modes(&o.modes);
        for f in files::MANAGED_DIRS.iter().chain(&files::MANAGED) {
            match seen.get(f.path) {
                Some(s) if *s == f.mode_owner() => right += 1,
                Some(s) if s == files::SYMLINK => {
                    wrong.push(format!("{} is a symbolic link (not followed)", f.path))
                }
                Some(s) => wrong.push(format!("{} is {s} [expected {}]", f.path, f.mode_owner())),
                // Only systemd hosts have the drop-in (see node::noinit).
                None if f.path == systemd::DROP_IN.path => {}
                None => wrong.push(format!("{} is missing", f.path)),
            }
        }
        passed &= wrong.is_empty();
        if wrong.is_empty() {
            ev.push(format!(
                "{}: {right} files and directories with their modes and owners",
                p.node
            ));
        } else {
            ev.push(format!("{}: {} WRONG", p.node, wrong.join("; ")));
        }
    }
    Check {
        name: "file modes".into(),
        passed,
        evidence: ev,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::verify::checks::ProbeOut;

    #[test]
    fn file_modes_name_each_wrong_file() {
        let listing = |key: &str| {
            format!(
                "2750 root:redis /etc/redis\n2750 root:redis /etc/redis/tls\n640 root:redis /etc/redis/redis-cluster.conf\n644 root:root /etc/systemd/system/redis-server@.service.d/redisctl.conf\n640 root:redis /etc/redis/users.acl\n644 root:redis /etc/redis/tls/ca.crt\n644 root:redis /etc/redis/tls/redis.crt\n{key}"
            )
        };
        let probe = |node: &str, modes: String| NodeProbe {
            node: node.into(),
            ip: Ipv4Addr::new(10, 0, 1, 10),
            az: "a".into(),
            out: Ok(ProbeOut {
                modes,
                ..Default::default()
            }),
        };
        let good = probe("n1", listing("640 root:redis /etc/redis/tls/redis.key"));
        let c = file_modes(std::slice::from_ref(&good));
        assert!(c.passed, "{c:?}");
        assert_eq!(
            c.evidence,
            ["n1: 8 files and directories with their modes and owners"]
        );
        let bad = probe("n2", listing("644 ubuntu:redis /etc/redis/tls/redis.key"));
        let gone = probe(
            "n3",
            listing("missing /etc/redis/tls/redis.key").replace(
                "644 root:root /etc/systemd/system/redis-server@.service.d/redisctl.conf",
                "missing /etc/systemd/system/redis-server@.service.d/redisctl.conf",
            ),
        );
        let planted = probe(
            "n4",
            listing("640 root:redis /etc/redis/tls/redis.key")
                .replace(
                    "2750 root:redis /etc/redis\n",
                    "2770 redis:redis /etc/redis\n",
                )
                .replace(
                    "640 root:redis /etc/redis/users.acl",
                    "link /etc/redis/users.acl",
                ),
        );
        let c = file_modes(&[good, bad, gone, planted]);
        assert!(!c.passed);
        assert_eq!(
            c.evidence[1],
            "n2: /etc/redis/tls/redis.key is 0644 ubuntu:redis [expected 0640 root:redis] WRONG"
        );
        // No drop-in is right on a host without systemd; a missing key is not.
        assert_eq!(
            c.evidence[2],
            "n3: /etc/redis/tls/redis.key is missing WRONG"
        );
        // A directory the redis user can write, and a link planted there.
        assert_eq!(
            c.evidence[3],
            "n4: /etc/redis is 2770 redis:redis [expected 2750 root:redis]; /etc/redis/users.acl is a symbolic link (not followed) WRONG"
        );
    }
}
