//! Apply's progress in its three forms, against the sandbox: the `--json` event stream (every
//! line an object; the plan first; each step started and finished; what steps waited for; the
//! closing record), the live display on a terminal (a pseudo-terminal made by `script`), and the
//! error record that ends a stream when apply cannot go on.

mod common;

use common::{Cluster, text};
use redisctl_sandbox::testing::Sandbox;
use serde_json::Value;

fn records(stdout: &[u8]) -> Vec<Value> {
    text(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

fn kinds(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect()
}

#[test]
fn json_stream_live_display_and_error_record() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("progress", |t| t);

    // Without a password the stream is one error record, and nothing was created.
    let out = c
        .cmd(&["apply", "--yes", "--json"])
        .env_remove("REDIS_APP_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let recs = records(&out.stdout);
    assert_eq!(kinds(&recs), ["error"], "{recs:?}");
    let message = recs[0]["message"].as_str().unwrap();
    assert!(message.contains("REDIS_APP_PASSWORD"), "{message}");
    assert!(recs[0]["hint"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(text(&out.stderr).contains("REDIS_APP_PASSWORD"));
    // --json never prompts.
    let out = c.run(&["apply", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--json shows no prompt"));

    // From nothing, as a JSON stream.
    let out = c.run(&["apply", "--yes", "--json"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let recs = records(&out.stdout);
    let k = kinds(&recs);
    assert_eq!(k.first(), Some(&"plan"));
    assert_eq!(k.last(), Some(&"apply_complete"));
    assert!(recs.iter().all(|r| r["v"] == 1 && r["ts"].is_f64()));
    let plan = &recs[0]["plan"];
    let addresses: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    assert!(addresses.len() > 30, "{addresses:?}");
    for a in &addresses {
        for kind in ["step_started", "step_finished"] {
            assert_eq!(
                recs.iter()
                    .filter(|r| r["type"] == kind && r["address"] == *a)
                    .count(),
                1,
                "{kind} of {a}"
            );
        }
    }
    // Steps say what they wait for: instances to run, sshd, the cluster to form.
    let statuses: Vec<&str> = recs
        .iter()
        .filter(|r| r["type"] == "step_status")
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    for want in [
        "waiting for instance",
        "waiting for sshd",
        "assigning the slots of",
    ] {
        assert!(
            statuses.iter().any(|s| s.starts_with(want)),
            "no status {want:?} in {statuses:?}"
        );
    }
    let done = recs.last().unwrap();
    assert_eq!(done["summary"], plan["summary"]);
    let phases = done["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 7, "phases 1-7 ran: {phases:?}");
    let numbers: Vec<u64> = phases
        .iter()
        .map(|p| p["phase"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7]);
    // Nothing for people on stdout; no secret anywhere.
    assert!(!stdout.contains("Apply complete!"));
    c.assert_no_secret("apply --json's stdout", &stdout);
    c.assert_no_secret("apply --json's stderr", &stderr);
    c.assert_converged();

    // On a terminal: a config change rolls out with the live display (redrawn in place, each
    // running step with what it waits for), then the summary.
    c.edit_spec("# maxmemory = \"", "maxmemory = \"");
    let cmd = format!("{} apply --yes --config {}", common::BIN, c.spec.display());
    let out = c
        .shell(&["script", "-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let tty = text(&out.stdout);
    assert!(out.status.success(), "{tty}\n{}", text(&out.stderr));
    c.assert_no_secret("apply's terminal display", &tty);
    assert!(tty.contains("\x1b[J"), "no live redraw:\n{tty:?}");
    assert!(
        tty.contains("· waiting for a healthy cluster"),
        "no live status row:\n{tty}"
    );
    assert!(tty.contains("Apply complete!"), "{tty}");
    c.assert_converged();

    // A forged pin for one node: the plan has a blocker and apply refuses.
    let known = c.dir.join(".redisctl/prod-redis/known_hosts");
    let pinned = std::fs::read_to_string(&known).unwrap();
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII8lL1Zfr+rNqvJsZES0EFmqgHMAS7sqFgf7o0q2ZMTH";
    let (one, _) = pinned.split_once('\n').unwrap();
    let forged = pinned.replacen(
        one,
        &format!("{} {other}", one.split(' ').next().unwrap()),
        1,
    );
    std::fs::write(&known, forged).unwrap();
    let plan = c.run(&["plan", "--detailed-exitcode"]);
    let apply = c.run(&["apply", "--yes"]);
    std::fs::write(&known, &pinned).unwrap();
    assert_eq!(plan.status.code(), Some(1));
    let shown = format!("{}{}", text(&plan.stdout), text(&plan.stderr));
    assert!(
        shown.contains("blocker:") && shown.contains("host key"),
        "{shown}"
    );
    assert_eq!(apply.status.code(), Some(1));
    assert!(text(&apply.stderr).contains("the plan has blockers"));
    c.assert_converged();

    // The CA files gone from the state directory of a running cluster: a blocker (a new CA
    // would split the cluster), not a routine re-issue; back once they are restored.
    let state = c.dir.join(".redisctl/prod-redis");
    let aside = c.dir.join("ca-backup");
    std::fs::create_dir_all(&aside).unwrap();
    for f in ["ca.key", "ca.crt"] {
        std::fs::rename(state.join(f), aside.join(f)).unwrap();
    }
    let plan = c.run(&["plan", "--detailed-exitcode"]);
    let apply = c.run(&["apply", "--yes"]);
    for f in ["ca.key", "ca.crt"] {
        std::fs::rename(aside.join(f), state.join(f)).unwrap();
    }
    assert_eq!(plan.status.code(), Some(1));
    let shown = text(&plan.stdout);
    assert!(
        shown.contains("blocker: pki.ca:") && shown.contains("Restore ca.key and ca.crt"),
        "{shown}"
    );
    assert_eq!(apply.status.code(), Some(1));
    assert!(text(&apply.stderr).contains("the plan has blockers"));
    c.assert_converged();

    // sshd down on one node (back by itself in 40 s): the plan is incomplete, not "no changes".
    common::Cluster::on_node(
        &c,
        common::IPS[2],
        "systemd-run --on-active=40s systemctl start ssh.service && systemctl stop ssh.service",
        "",
    );
    let plan = c.run(&["plan", "--detailed-exitcode"]);
    let (o, e) = (text(&plan.stdout), text(&plan.stderr));
    assert_eq!(plan.status.code(), Some(1), "{o}\n{e}");
    assert!(
        o.contains("No changes found")
            && o.contains("could not be observed: the plan is incomplete"),
        "{o}"
    );
    assert!(!o.contains("matches the spec"), "{o}");
    assert!(e.contains("the plan is incomplete"), "{e}");
    // apply refuses to call a plan with nothing visible to do "complete". It does not wait for
    // that sshd: the node has run longer than ssh.ready_timeout_secs (here the least, 10 s), so
    // it is not booting, it is unreachable (a node started within the timeout is waited for).
    c.edit_spec("ready_timeout_secs = 300", "ready_timeout_secs = 10");
    let t = std::time::Instant::now();
    let apply = c.run(&["apply", "--yes"]);
    let waited = t.elapsed();
    let e = text(&apply.stderr);
    assert_eq!(apply.status.code(), Some(1), "{e}");
    assert!(
        e.contains("nothing to apply that can be seen, but node.redis-node-1c could not be observed over SSH"),
        "{e}"
    );
    assert!(waited < std::time::Duration::from_secs(9), "{waited:?}");
    eprintln!(
        "figure: apply with one node's sshd down refused after {:.1} s",
        waited.as_secs_f64()
    );
    c.edit_spec("ready_timeout_secs = 10", "ready_timeout_secs = 300");
    let t = std::time::Instant::now();
    while c.plan_exit() != 0 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(120),
            "sshd did not come back"
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }

    let out = c.run(&["destroy", "--yes", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let recs = records(&out.stdout);
    let k = kinds(&recs);
    assert_eq!(k.first(), Some(&"plan"));
    assert_eq!(k.last(), Some(&"destroy_complete"));
    let planned = recs[0]["plan"]["steps"].as_array().unwrap().len();
    assert!(planned > 10, "{planned}");
    assert_eq!(recs.last().unwrap()["destroyed"], planned);
    assert_eq!(
        recs.iter().filter(|r| r["type"] == "step_finished").count(),
        planned
    );
}
