//! Redis's production checklist on each node: the kernel values it depends on, as they are in
//! force, and what Redis itself said about them — the `WARNING` lines it logged since it last
//! started.

use super::{NodeProbe, reached};
use crate::redis::kernel::{self, KernelValues};
use crate::verify::Check;

/// The `WARNING` lines of a Redis log since its last start (`Redis is starting`): what the
/// probe's awk printed, one per line.
pub fn warnings_since_start(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in log.lines() {
        if l.contains("Redis is starting") {
            out.clear();
        } else if l.contains("WARNING") {
            out.push(l.trim().to_string());
        }
    }
    out
}

/// The values in force are the checklist's, and Redis logged no warning since it started.
pub fn checklist(probes: &[NodeProbe]) -> Check {
    let mut passed = true;
    let mut ev = Vec::new();
    for p in probes {
        let Some(o) = reached(p, &mut passed, &mut ev) else {
            continue;
        };
        let v = kernel::parse(&o.kernel);
        let files = kernel::open_files(&o.kernel);
        let values = format!(
            "{}; redis-server's open files limit {}",
            describe(&v),
            files.map_or("(unreadable)".to_string(), |n| n.to_string())
        );
        let drift = kernel::drift(&v);
        let warnings = warnings_since_start(&o.redis_log);
        let mut wrong: Vec<String> = drift
            .iter()
            .map(|(name, have, want)| format!("{name} is {have:?} [expected {want}]"))
            .collect();
        match files {
            Some(n) if n >= kernel::OPEN_FILES_NEEDED => {}
            Some(n) => wrong.push(format!(
                "redis-server may open {n} files [at least {} for maxclients 10000]",
                kernel::OPEN_FILES_NEEDED
            )),
            None => wrong
                .push("redis-server's open files limit could not be read (is it running?)".into()),
        }
        // A warning's text is Redis's (no secret); long ones are cut.
        wrong.extend(warnings.iter().map(|w| {
            let w = w
                .split_once("WARNING")
                .map(|(_, r)| format!("WARNING{r}"))
                .unwrap_or_else(|| w.clone());
            let mut s: String = w.chars().take(160).collect();
            if w.chars().count() > 160 {
                s.push('…');
            }
            format!("Redis logged: {s}")
        }));
        if wrong.is_empty() {
            ev.push(format!(
                "{}: {values}; no WARNING in Redis's log since it started",
                p.node
            ));
        } else {
            passed = false;
            ev.push(format!("{}: {values}; {} WRONG", p.node, wrong.join("; ")));
        }
    }
    Check {
        name: "production checklist".into(),
        passed,
        evidence: ev,
    }
}

fn describe(v: &KernelValues) -> String {
    format!(
        "vm.overcommit_memory={} net.core.somaxconn={} transparent_hugepage={}",
        v.overcommit_memory,
        v.somaxconn,
        kernel::thp_mode(&v.thp)
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::verify::checks::ProbeOut;

    fn probe(kernel: &str, redis_log: &str) -> NodeProbe {
        NodeProbe {
            node: "n1".into(),
            ip: Ipv4Addr::new(10, 0, 1, 10),
            az: "a".into(),
            out: Ok(ProbeOut {
                kernel: kernel.into(),
                redis_log: redis_log.into(),
                ..Default::default()
            }),
        }
    }

    const GOOD: &str = "/proc/sys/vm/overcommit_memory:1\n/proc/sys/net/core/somaxconn:4096\n/sys/kernel/mm/transparent_hugepage/enabled:always [madvise] never\n/proc/812/limits:Max open files            65535                65535                files\n";
    const START: &str =
        "1:C 07 Dec 2026 12:00:00.000 # oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo";
    const OVERCOMMIT: &str = "1:M 07 Dec 2026 12:00:00.001 # WARNING Memory overcommit must be enabled! Without it, a background save or replication may fail under low memory condition.";

    #[test]
    fn passes_with_the_values_and_no_warning_since_the_last_start() {
        // A warning from before the last start is history.
        let log = format!("{START}\n{OVERCOMMIT}\n{START}\n1:M ready to accept connections\n");
        let c = checklist(&[probe(GOOD, &log)]);
        assert!(c.passed, "{c:?}");
        assert_eq!(
            c.evidence,
            [
                "n1: vm.overcommit_memory=1 net.core.somaxconn=4096 transparent_hugepage=madvise; redis-server's open files limit 65535; no WARNING in Redis's log since it started"
            ]
        );
    }

    #[test]
    fn a_low_open_files_limit_fails() {
        let c = checklist(&[probe(
            &GOOD.replace("65535                65535", "1024                 4096"),
            "",
        )]);
        assert!(!c.passed);
        assert!(
            c.evidence[0].ends_with(
                "redis-server may open 1024 files [at least 10032 for maxclients 10000] WRONG"
            ),
            "{c:?}"
        );
    }

    #[test]
    fn fails_with_the_value_and_the_warning_as_evidence() {
        let log = format!("{START}\n{OVERCOMMIT}\n");
        let c = checklist(&[probe(
            &GOOD.replace("overcommit_memory:1", "overcommit_memory:0"),
            &log,
        )]);
        assert!(!c.passed);
        assert_eq!(
            c.evidence,
            [
                "n1: vm.overcommit_memory=0 net.core.somaxconn=4096 transparent_hugepage=madvise; redis-server's open files limit 65535; vm.overcommit_memory is \"0\" [expected 1]; Redis logged: WARNING Memory overcommit must be enabled! Without it, a background save or replication may fail under low memory condition. WRONG"
            ]
        );
    }
}
