//! The kernel settings of Redis's production checklist (its administration guide), put in place
//! the way a Debian/Ubuntu admin does, observed as they are in force, and repaired when they
//! drift:
//!
//! - `vm.overcommit_memory = 1`: a background save, an AOF rewrite or a replica's full sync
//!   forks the server; with the default heuristic (0) that fork can fail under memory pressure
//!   on a small instance (Redis warns "Memory overcommit must be enabled!" at startup).
//! - `net.core.somaxconn = 4096`: at least Redis's `tcp-backlog` (511), or the kernel truncates
//!   the listen backlog (Redis warns at startup). Per network namespace.
//! - Transparent huge pages `madvise`, not `always`: with `always`, copy-on-write after a fork
//!   copies 2 MB pages, which costs latency and memory (Redis warns; Redis 7 also turns THP off
//!   for its own process where it can).
//!
//! The first two go in `/etc/sysctl.d/` (applied at once with `sysctl -p FILE`, and at every boot
//! by systemd-sysctl); THP in a `/etc/tmpfiles.d/` line (`systemd-tmpfiles --create FILE`, and at
//! every boot). Without systemd (see `node::noinit`), the THP value is written directly; nothing
//! applies either file at boot there, and redisctl applies them again when it finds them off.
//! None needs a Redis restart to take effect for what matters (forks, new connections); the
//! startup warnings Redis already logged stay in its log until its next start.

use serde::{Deserialize, Serialize};

use super::NodeFile;

pub const SYSCTL: NodeFile = NodeFile {
    path: "/etc/sysctl.d/60-redisctl-redis.conf",
    mode: 0o644,
    owner: "root",
    group: "root",
};

pub const TMPFILES: NodeFile = NodeFile {
    path: "/etc/tmpfiles.d/redisctl-redis-thp.conf",
    mode: 0o644,
    owner: "root",
    group: "root",
};

/// Where the kernel shows transparent huge pages' mode (`always [madvise] never`).
pub const THP_PATH: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
pub const OVERCOMMIT_PATH: &str = "/proc/sys/vm/overcommit_memory";
pub const SOMAXCONN_PATH: &str = "/proc/sys/net/core/somaxconn";

/// The file descriptors Redis needs with its default `maxclients` (10000) and the 32 it keeps
/// for itself: below this, Redis lowers `maxclients` at startup (with no `WARNING` word in its
/// log). Debian's unit gives 65535 (`LimitNOFILE=`), and so does redisctl's start without
/// systemd.
pub const OPEN_FILES_NEEDED: u64 = 10_032;

/// The soft `Max open files` limit of a process from its `/proc/<pid>/limits` text.
pub fn open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.split_once("Max open files"))
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub const OVERCOMMIT: &str = "1";
pub const SOMAXCONN: &str = "4096";
pub const THP: &str = "madvise";

pub fn render_sysctl() -> String {
    format!(
        "\
# Written by redisctl; edits here are overwritten on the next apply.
# Redis forks for background saves, AOF rewrites and full syncs: let the fork succeed.
vm.overcommit_memory = {OVERCOMMIT}
# At least Redis's tcp-backlog (511).
net.core.somaxconn = {SOMAXCONN}
"
    )
}

pub fn render_tmpfiles() -> String {
    format!(
        "\
# Written by redisctl; edits here are overwritten on the next apply.
# Transparent huge pages only where a program asks (madvise), never for every page (Redis forks).
w {THP_PATH} - - - - {THP}
"
    )
}

/// The values in force on a node, as it showed them (empty when it could not be read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelValues {
    pub overcommit_memory: String,
    pub somaxconn: String,
    /// The file's text (`always [madvise] never`): [`thp_mode`] reads the selected mode.
    pub thp: String,
}

/// The selected mode of a THP `enabled` file: the bracketed word, or the only word.
pub fn thp_mode(text: &str) -> &str {
    let t = text.trim();
    match (t.find('['), t.find(']')) {
        (Some(a), Some(z)) if a < z => &t[a + 1..z],
        _ => t,
    }
}

/// A shell line printing `<path>:<value>` for each value in force (one `grep`: the shell's
/// own `read` will not do, dash reads a byte at a time and a sysctl file answers only its
/// first read: `4` of `4096`).
pub fn observe_script() -> String {
    format!("grep -H . {OVERCOMMIT_PATH} {SOMAXCONN_PATH} {THP_PATH} 2>/dev/null\n")
}

/// The values from [`observe_script`]'s lines (other lines are ignored).
pub fn parse(text: &str) -> KernelValues {
    let value = |path: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{path}:")))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    KernelValues {
        overcommit_memory: value(OVERCOMMIT_PATH),
        somaxconn: value(SOMAXCONN_PATH),
        thp: value(THP_PATH),
    }
}

/// Each setting not in force: (name, value in force, value wanted).
pub fn drift(v: &KernelValues) -> Vec<(&'static str, String, &'static str)> {
    let mut out = Vec::new();
    if v.overcommit_memory.trim() != OVERCOMMIT {
        out.push((
            "vm.overcommit_memory",
            v.overcommit_memory.trim().to_string(),
            OVERCOMMIT,
        ));
    }
    if v.somaxconn.trim() != SOMAXCONN {
        out.push((
            "net.core.somaxconn",
            v.somaxconn.trim().to_string(),
            SOMAXCONN,
        ));
    }
    if thp_mode(&v.thp) != THP {
        out.push(("transparent_hugepage", thp_mode(&v.thp).to_string(), THP));
    }
    out
}

/// Root's shell lines (under `set -e`) that put the files' values in force now.
pub fn apply_script(systemd: bool) -> String {
    let thp = if systemd {
        format!("systemd-tmpfiles --create {}\n", TMPFILES.path)
    } else {
        format!("echo {THP} > {THP_PATH}\n")
    };
    format!("sysctl -q -p {}\n{thp}", SYSCTL.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thp_mode_reads_the_bracketed_word_or_the_only_one() {
        assert_eq!(thp_mode("always [madvise] never\n"), "madvise");
        assert_eq!(thp_mode("[always] madvise never"), "always");
        assert_eq!(thp_mode("never\n"), "never");
        assert_eq!(thp_mode(""), "");
    }

    #[test]
    fn drift_names_each_value_off() {
        let good = KernelValues {
            overcommit_memory: "1".into(),
            somaxconn: "4096".into(),
            thp: "always [madvise] never".into(),
        };
        assert!(drift(&good).is_empty());
        let bad = KernelValues {
            overcommit_memory: "0".into(),
            somaxconn: "4096".into(),
            thp: "[always] madvise never".into(),
        };
        assert_eq!(
            drift(&bad),
            [
                ("vm.overcommit_memory", "0".to_string(), "1"),
                ("transparent_hugepage", "always".to_string(), "madvise")
            ]
        );
    }

    #[test]
    fn reads_the_soft_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax cpu time              unlimited            unlimited            seconds\nMax open files            65535                65535                files\n";
        assert_eq!(open_files(limits), Some(65535));
        assert_eq!(
            open_files(
                "/proc/7/limits:Max open files            1024                 4096                 files"
            ),
            Some(1024)
        );
        assert_eq!(open_files(""), None);
    }

    #[test]
    fn parses_what_grep_printed() {
        let v = parse(&format!(
            "installed=yes\n{OVERCOMMIT_PATH}:1\n{SOMAXCONN_PATH}:4096\n{THP_PATH}:always [madvise] never\n"
        ));
        assert_eq!(
            v,
            KernelValues {
                overcommit_memory: "1".into(),
                somaxconn: "4096".into(),
                thp: "always [madvise] never".into()
            }
        );
        assert_eq!(parse(""), KernelValues::default());
    }

    #[test]
    fn the_files_say_what_is_checked() {
        assert!(render_sysctl().contains("vm.overcommit_memory = 1\n"));
        assert!(render_sysctl().contains("net.core.somaxconn = 4096\n"));
        assert!(render_tmpfiles().contains(&format!("w {THP_PATH} - - - - madvise\n")));
    }
}
