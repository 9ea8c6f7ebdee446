//! End-to-end: an apply killed (SIGKILL) while the cluster is being formed — inside phase 7,
//! during `redis-cli --cluster create` and then during what the next apply plans to finish it —
//! is finished by the next apply: every slot assigned, every node met, the replicas made, and
//! `verify` passes. (Before, the rerun stopped at a blocker: "would not be part of the running
//! cluster", or "partly formed".) And (second test) an apply killed inside each node phase in
//! turn — install, TLS, ACL, config — each rerun killed in the next one, is finished too.
//! Run inside the sandbox: `redisctl-sandbox exec -- cargo test --test e2e_formation`.

mod common;

use std::time::Duration;

use common::{Cluster, text};
use redisctl_sandbox::testing::Sandbox;

/// Three masters with a replica each (six nodes: the replicas are the last stage of a
/// formation).
fn six(t: String) -> String {
    let t = t.replace("replicas_per_master = 0", "replicas_per_master = 1");
    common::derived_nodes(&t)
}

/// `apply --yes`, killed `after` the cluster step started. Returns what it printed, or `None`
/// when it finished before the kill.
fn apply_killed_in_phase_7(c: &Cluster, after: Duration) -> Option<String> {
    // The first phase-7 step: `cluster` (create, or finish a formation), or a node's join
    // (`cluster.<node>`) when every slot is assigned and the nodes left are empty.
    c.apply_killed_after("cluster", after)
}

#[test]
fn an_apply_killed_while_the_cluster_is_formed_is_finished_by_the_next_apply() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("formation", six);
    // Each apply is killed a little later into phase 7 than the one before: while the slots
    // are assigned, while the nodes meet and join, while the replicas are made, while the
    // cluster settles. Each rerun plans what the last one left.
    let mut kills = 0;
    for ms in [150, 600, 1500, 3000, 5000] {
        let plan = c.run(&["plan"]);
        let plan = format!("{}{}", text(&plan.stdout), text(&plan.stderr));
        assert!(
            !plan.contains("blocker:"),
            "a kill at {ms} ms left a blocker:\n{plan}"
        );
        if !plan.contains("── phase 7") {
            eprintln!("figure: nothing left to do in phase 7 after {kills} kills");
            break;
        }
        let step = plan
            .lines()
            .skip_while(|l| !(l.contains("# cluster") && l.contains(" will be run")))
            .nth(1)
            .unwrap_or("(no cluster step)")
            .trim()
            .to_string();
        match apply_killed_in_phase_7(&c, Duration::from_millis(ms)) {
            Some(_) => {
                kills += 1;
                eprintln!("figure: killed {ms} ms into phase 7; it was planned as {step}");
            }
            None => {
                eprintln!("figure: apply finished within {ms} ms of phase 7 ({step})");
                break;
            }
        }
    }
    assert!(kills >= 3, "only {kills} kills landed in phase 7");
    let out = c.ok(&["apply", "--yes"]);
    assert!(
        out.contains("Apply complete!") || out.contains("No changes."),
        "{out}"
    );
    c.assert_converged();
    let report = c.ok(&["verify"]);
    assert!(report.contains("masters serving slots: 3"), "{report}");
    c.ok(&["destroy", "--yes"]);
}

#[test]
fn an_apply_killed_inside_each_node_phase_is_finished_by_the_next_apply() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("nodekills", |t| t);
    // The first apply is killed soon after install starts; each rerun is killed in the next
    // node phase it reaches, so that every one of them is cut once. (TLS and the ACL files
    // take one round trip per node: tens of milliseconds for three nodes.)
    let mut cut = Vec::new();
    for (marker, ms) in [
        ("phase 3: install", 1500),
        ("phase 4: tls", 20),
        ("phase 5: acl", 10),
        ("phase 6: config", 300),
    ] {
        let plan = c.run(&["plan"]);
        let plan = format!("{}{}", text(&plan.stdout), text(&plan.stderr));
        assert!(!plan.contains("blocker:"), "a kill left a blocker:\n{plan}");
        let phase = marker.split(':').next().unwrap();
        if !plan.contains(&format!("── {phase}:")) {
            eprintln!("figure: nothing left to do in {phase}");
            continue;
        }
        match c.apply_killed_after(marker, Duration::from_millis(ms)) {
            Some(_) => {
                eprintln!("figure: killed {ms} ms into {marker}");
                cut.push(phase);
            }
            None => eprintln!("figure: apply finished within {ms} ms of {marker}"),
        }
    }
    assert!(cut.len() >= 3, "only {cut:?} were cut");
    let out = c.ok(&["apply", "--yes"]);
    assert!(out.contains("Apply complete!"), "{out}");
    c.assert_converged();
    c.ok(&["verify"]);
    c.ok(&["destroy", "--yes"]);
}
