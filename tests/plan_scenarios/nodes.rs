//! The nodes (phases 3 to 7): reaching them (the SSH key, host keys, an unreachable node), their
//! files' modes, configuration restarts with and without replicas, nodes without systemd.

use redisctl::observed::{InitSystem, NodeFacts, NodeObservation, Observed};
use redisctl::plan::{self, Action, NodeOp, NoteLevel, Op};
use redisctl::redis::{conf, systemd, users_acl};
use redisctl::render;

use crate::fixtures::{example, example_text, spec_from};
use crate::sim::{Sim, apply_and_converge, converged, observed_for};
use crate::snapshot;

#[test]
fn a_lost_private_key_blocks_the_plan() {
    let spec = example();
    let mut o = converged(&spec);
    o.local_public_key = None;
    let p = plan::plan(&spec, &o);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1);
    assert!(b[0].message.contains("private key"), "{}", b[0].message);
}

#[test]
fn an_unreachable_node_makes_the_plan_incomplete_and_a_changed_host_key_blocks_it() {
    let spec = example();
    let mut o = converged(&spec);
    o.nodes.insert(
        "redis-node-1b".into(),
        NodeObservation::Unreachable {
            reason: "ssh: connection timed out".into(),
            host_key_changed: false,
        },
    );
    let p = plan::plan(&spec, &o);
    // Nothing to do that can be seen, but the plan does not claim the node matches.
    assert!(p.is_empty(), "{}", render::plan::human(&p, false));
    assert_eq!(p.unobserved, ["node.redis-node-1b"]);
    assert!(p.blockers().next().is_none());
    let text = render::plan::human(&p, false);
    assert!(
        text.starts_with("No changes found for cluster prod-redis (us-east-1), but node.redis-node-1b could not be observed: the plan is incomplete."),
        "{text}"
    );
    assert!(!text.contains("matches the spec"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&render::plan::json(&p)).unwrap();
    assert_eq!(v["unobserved"], serde_json::json!(["node.redis-node-1b"]));

    o.nodes.insert(
        "redis-node-1b".into(),
        NodeObservation::Unreachable {
            reason: "host key of node redis-node-1b changed".into(),
            host_key_changed: true,
        },
    );
    let p = plan::plan(&spec, &o);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{:?}", p.notes);
    assert_eq!(b[0].subject, "node.redis-node-1b");
    assert!(b[0].message.contains("host key"), "{}", b[0].message);
}

/// `chmod`/`chown` on a node, out of band: set back in place without a restart, except where a
/// file is rewritten anyway (the rewrite sets its mode).
#[test]
fn file_modes_changed_out_of_band_are_set_back() {
    let spec = example();
    let mut o = converged(&spec);
    fn facts<'a>(o: &'a mut Observed, node: &str) -> &'a mut NodeFacts {
        match o.nodes.get_mut(node) {
            Some(NodeObservation::Reached(f)) => f,
            _ => panic!("{node} not reached"),
        }
    }
    let a = facts(&mut o, "redis-node-1a");
    assert_eq!(a.modes.len(), 8, "{:?}", a.modes);
    a.modes
        .insert(conf::NODE_KEY.path.into(), "0644 root:redis".into());
    a.modes
        .insert(users_acl::USERS_ACL.path.into(), "0640 root:root".into());
    // Debian's own mode for /etc/redis (its upgrades set it back without a statoverride).
    a.modes
        .insert("/etc/redis".into(), "2770 redis:redis".into());
    // On 1b the ACL file's mode is wrong but its content differs too: the ACL step rewrites it.
    let b = facts(&mut o, "redis-node-1b");
    b.modes
        .insert(users_acl::USERS_ACL.path.into(), "0666 root:redis".into());
    b.files
        .insert(users_acl::USERS_ACL.path.into(), Some("0".repeat(64)));
    let p = plan::plan(&spec, &o);
    snapshot("modes", &render::plan::human(&p, false));
    let addrs: Vec<&str> = p.steps.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(
        addrs,
        ["node.redis-node-1b.acl", "node.redis-node-1a.modes"]
    );
    let modes = p.step("node.redis-node-1a.modes").unwrap();
    assert_eq!(modes.action, Action::Update);
    assert_eq!(modes.changes.len(), 3, "{:?}", modes.changes);
    assert_eq!(
        modes.ops,
        [Op::Node(NodeOp::SetFileModes {
            node: "redis-node-1a".into()
        })]
    );
    apply_and_converge(&spec, o, &p);
}

#[test]
fn a_symbolic_link_at_a_managed_path_is_a_blocker() {
    let spec = example();
    let mut o = converged(&spec);
    let Some(NodeObservation::Reached(a)) = o.nodes.get_mut("redis-node-1a") else {
        panic!("1a not reached");
    };
    a.modes.insert(
        users_acl::USERS_ACL.path.into(),
        redisctl::redis::files::SYMLINK.into(),
    );
    let p = plan::plan(&spec, &o);
    let blockers: Vec<&str> = p.blockers().map(|n| n.message.as_str()).collect();
    assert_eq!(blockers.len(), 1, "{blockers:?}");
    assert!(
        blockers[0].starts_with("/etc/redis/users.acl on the node is a symbolic link"),
        "{}",
        blockers[0]
    );
    // Not a mode to set back: nothing chmods through it.
    assert!(p.step("node.redis-node-1a.modes").is_none(), "{p:?}");
}

/// A redis-server started by hand on a node (the reference procedure's `sudo redis-server
/// conf &`, or a debugging session) is not redisctl's unit: the plan stops there, naming it.
#[test]
fn a_redis_started_by_hand_is_a_blocker() {
    let spec = example();
    let mut o = converged(&spec);
    let Some(NodeObservation::Reached(a)) = o.nodes.get_mut("redis-node-1a") else {
        panic!("1a not reached");
    };
    a.foreign_redis.push(redisctl::observed::ForeignRedis {
        pid: 4242,
        user: "root".into(),
        dir: "/var/lib/redis".into(),
    });
    let p = plan::plan(&spec, &o);
    let blockers: Vec<&str> = p.blockers().map(|n| n.message.as_str()).collect();
    assert_eq!(blockers.len(), 1, "{blockers:?}");
    assert!(
        blockers[0].starts_with("a redis-server runs on the node outside redisctl's unit redis-server@cluster.service (pid 4242 as root, data in /var/lib/redis)"),
        "{}",
        blockers[0]
    );
}

/// The example as 3 masters with a replica each, its nodes derived (six).
fn six(t: String) -> String {
    let t = t.replace("replicas_per_master = 0", "replicas_per_master = 1");
    let start = t.find("\n[[nodes.node]]").unwrap();
    let end = t.find("\n[ssh]").unwrap();
    format!("{}{}", &t[..start], &t[end..])
}

#[test]
fn with_replicas_a_config_restart_says_the_master_hands_over_first() {
    let spec = spec_from(&six(example_text()));
    let o = converged(&spec);
    let changed = spec_from(&six(
        example_text().replace("# maxmemory = \"", "maxmemory = \"")
    ));
    let mut sim = Sim::new(&changed, o);
    sim.observe_local();
    let p = plan::plan(&changed, &sim.o);
    let cfg: Vec<&plan::Step> = p
        .steps
        .iter()
        .filter(|s| s.address.ends_with(".config"))
        .collect();
    assert_eq!(cfg.len(), 6, "{}", render::plan::human(&p, false));
    for s in &cfg {
        assert!(
            s.reason.contains("hands its slots to a replica"),
            "{}",
            s.reason
        );
    }
    // Without replicas there is nobody to hand over to, and the plan does not say so.
    let three = spec_from(&example_text().replace("# maxmemory = \"", "maxmemory = \""));
    let mut sim = Sim::new(&three, converged(&example()));
    sim.observe_local();
    let p = plan::plan(&three, &sim.o);
    let cfg: Vec<&plan::Step> = p
        .steps
        .iter()
        .filter(|s| s.address.ends_with(".config"))
        .collect();
    assert_eq!(cfg.len(), 3, "{}", render::plan::human(&p, false));
    assert!(cfg.iter().all(|s| !s.reason.contains("hands its slots")));
}

#[test]
fn nodes_without_systemd_are_started_and_restarted_by_redisctl() {
    let spec = example();
    let mut o = converged(&spec);
    // The nodes have no init system: nothing is enabled, no drop-in, no stock unit.
    for n in o.nodes.values_mut() {
        let NodeObservation::Reached(f) = n else {
            panic!()
        };
        f.init = InitSystem::None;
        f.service_enabled = false;
        f.stock_service_enabled = false;
        f.stock_service_active = false;
        f.files.insert(systemd::DROP_IN.path.into(), None);
        f.cluster_state_file = true;
    }
    // Converged as it is: "enabled" means nothing there, and the drop-in is not needed.
    let again = plan::plan(&spec, &o);
    assert!(
        again.is_empty(),
        "a converged cluster without systemd plans changes:\n{}",
        render::plan::human(&again, false)
    );

    // Node 2's host restarted: nothing started Redis (it kept its cluster state file). And the
    // spec now caps memory: every node's configuration changes.
    let NodeObservation::Reached(f) = o.nodes.get_mut("redis-node-1b").unwrap() else {
        panic!()
    };
    f.service_active = false;
    f.cluster = None;
    let spec = spec_from(&example_text().replace("[redis]\n", "[redis]\nmaxmemory = \"256mb\"\n"));
    assert_eq!(spec.redis.maxmemory.as_deref(), Some("256mb"));
    let o = Sim::new(&spec, o).o;
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    snapshot("no-systemd", &render::plan::human(&p, false));
    assert!(
        !p.notes.iter().any(|n| n.level == NoteLevel::Blocker),
        "{:?}",
        p.notes
    );
    let restart = |node: &str| match &p.step(&format!("node.{node}.config")).unwrap().ops[0] {
        Op::Node(NodeOp::WriteConfig { restart, .. }) => *restart,
        _ => panic!(),
    };
    // The stopped one is started (no restart); the others restart one at a time.
    assert!(!restart("redis-node-1b"));
    assert!(restart("redis-node-1a") && restart("redis-node-1c"));
    let c = p.step("node.redis-node-1c.config").unwrap();
    assert_eq!(c.depends_on, ["node.redis-node-1a.config"]);
    let text = render::plan::human(&p, false);
    assert!(!text.contains("enabled"), "{text}");
    assert!(!text.contains(systemd::DROP_IN.path), "{text}");
    apply_and_converge(&spec, o, &p);
}

/// A password rotation: the ACL files change (loaded live, nothing restarted) and the step says
/// both passwords are accepted; every plan notes the rotation until it ends. A node that
/// refuses the operator's password is a blocker that says how to change it.
#[test]
fn a_password_rotation_updates_the_acl_files_and_a_refused_operator_blocks() {
    let before = example();
    let o = converged(&before);
    let rotating = spec_from(&example_text().replace(
        "password_env = \"REDIS_APP_PASSWORD\"",
        "password_env = \"REDIS_APP_PASSWORD_NEW\"\nprevious_password_env = \"REDIS_APP_PASSWORD\"",
    ));
    // The rotating spec seen by the same nodes (its desired files computed locally).
    let o = observed_for(&rotating, o);
    let p = plan::plan(&rotating, &o);
    let addrs: Vec<&str> = p.steps.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(
        addrs,
        [
            "node.redis-node-1a.acl",
            "node.redis-node-1b.acl",
            "node.redis-node-1c.acl"
        ]
    );
    for s in &p.steps {
        assert_eq!(s.action, Action::Update);
        assert!(
            s.reason.contains(
                "Password rotation of app: the new password and the previous one are both accepted"
            ),
            "{}",
            s.reason
        );
    }
    let noted = |p: &plan::Plan| {
        p.notes.iter().any(|n| {
            n.subject == "user.app" && n.message.starts_with("password rotation in progress")
        })
    };
    assert!(noted(&p), "{:?}", p.notes);
    let after = apply_and_converge(&rotating, o, &p);
    let again = plan::plan(&rotating, &after);
    assert!(again.is_empty() && noted(&again), "{:?}", again);

    // The operator's password refused by a node (changed without naming the previous one).
    let mut o = converged(&before);
    let Some(NodeObservation::Reached(a)) = o.nodes.get_mut("redis-node-1a") else {
        panic!("1a not reached");
    };
    a.operator_auth = redisctl::observed::OperatorAuth::Refused;
    let p = plan::plan(&before, &o);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{:?}", p.notes);
    assert_eq!(b[0].subject, "node.redis-node-1a");
    assert!(
        b[0].message.starts_with(
            "Redis on the node refuses the password of the operator user admin (WRONGPASS): "
        ) && b[0].message.contains("previous_password_env"),
        "{}",
        b[0].message
    );
}

/// `--rotate replication-password` on a cluster with replicas, in one apply: a new password
/// made, every replication user accepting both, every node logging in with the new one (set
/// live, no restart), then the new one in force and the old one dropped. An apply killed after
/// the ACL phase is finished by a plain plan (the rotation is under way in the state
/// directory). Without replicas there is nothing to rotate: a blocker.
#[test]
fn a_replication_password_rotation_runs_in_one_apply_and_resumes_after_a_kill() {
    let spec = spec_from(&six(example_text()));
    let o = converged(&spec);
    let acl_before = o.local.desired_files["redis-node-1a"][users_acl::USERS_ACL.path].clone();
    let conf_before = o.local.desired_files["redis-node-1a"][conf::CONF.path].clone();
    let rotate = plan::Requests {
        rotate_replication_password: true,
        ..Default::default()
    };
    let p = plan::plan_with(&spec, &o, rotate);
    // (The ACL files' hashes hold the replication password, derived from the run's own CA.)
    let text = render::plan::human(&p, false);
    let masked: String = text
        .split("sha256:")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                format!("sha256:…{}", &part[12..])
            }
        })
        .collect();
    snapshot("rotate-replication-password", &masked);
    assert!(p.blockers().next().is_none(), "{:?}", p.notes);
    assert_eq!(p.steps[0].address, "pki.replication.next");
    let nodes: Vec<String> = spec.nodes.nodes.iter().map(|n| n.name.clone()).collect();
    for n in &nodes {
        let acl = p.step(&format!("node.{n}.acl")).unwrap();
        assert!(acl.depends_on.contains(&"pki.replication.next".to_string()));
        let cfg = p.step(&format!("node.{n}.config")).unwrap();
        assert!(
            matches!(
                &cfg.ops[..],
                [Op::Node(NodeOp::WriteConfig {
                    restart: false,
                    live: true,
                    ..
                })]
            ),
            "{:?}",
            cfg.ops
        );
        let last = p.step(&format!("node.{n}.replication")).unwrap();
        assert_eq!(last.depends_on, vec!["pki.replication.promote".to_string()]);
    }
    let promote = p.step("pki.replication.promote").unwrap();
    for n in &nodes {
        assert!(promote.depends_on.contains(&format!("node.{n}.config")));
        assert!(promote.depends_on.contains(&format!("node.{n}.acl")));
    }
    let after = apply_and_converge(&spec, o.clone(), &p);
    assert!(!after.local.replication_rotating);
    // A new password: the files the nodes hold now differ from before.
    assert_ne!(
        after.local.desired_files["redis-node-1a"][users_acl::USERS_ACL.path],
        acl_before
    );
    assert_ne!(
        after.local.desired_files["redis-node-1a"][conf::CONF.path],
        conf_before
    );

    // Killed after the ACL phase: the new password exists, the nodes accept both, none logs in
    // with it yet. A plain plan finishes: masterauth set live, the promotion, the old dropped.
    let o2 = converged(&spec);
    let p = plan::plan_with(&spec, &o2, rotate);
    let mut cut = p.clone();
    cut.steps.retain(|s| s.phase <= plan::Phase::Acl);
    let mut sim = Sim::new(&spec, o2);
    sim.apply(&cut);
    sim.observe_local();
    assert!(sim.o.local.replication_rotating);
    let resumed = plan::plan(&spec, &sim.o);
    assert!(resumed.step("pki.replication.next").is_none());
    assert!(
        resumed.step("node.redis-node-1a.acl").is_none(),
        "{}",
        render::plan::human(&resumed, false)
    );
    assert!(
        resumed
            .step("node.redis-node-1a.config")
            .unwrap()
            .reason
            .contains("replication password rotation")
    );
    assert!(resumed.step("pki.replication.promote").is_some());
    apply_and_converge(&spec, sim.o, &resumed);

    // No replicas, no replication password.
    let three = example();
    let o3 = converged(&three);
    let p = plan::plan_with(&three, &o3, rotate);
    let b: Vec<_> = p.blockers().collect();
    assert_eq!(b.len(), 1, "{:?}", p.notes);
    assert!(b[0].message.contains("no replication password to rotate"));
}

/// `--rotate ssh-key`, in one apply: every node accepts the new key before it becomes the key,
/// the key pair takes it, and only then each node (in a new session with the new key) drops the
/// old one. The simulation keeps each node's accepted keys and refuses a revoke on a node that
/// would not accept the new key. Killed after the promotion, a plain plan finishes (the old
/// public key in the state directory says the end is under way).
#[test]
fn an_ssh_key_rotation_accepts_the_new_key_everywhere_before_the_old_one_goes() {
    let spec = example();
    let o = converged(&spec);
    let old = o.local_public_key.clone().unwrap();
    let rotate = plan::Requests {
        rotate_ssh_key: true,
        ..Default::default()
    };
    let p = plan::plan_with(&spec, &o, rotate);
    snapshot("rotate-ssh-key", &render::plan::human(&p, false));
    assert!(p.blockers().next().is_none(), "{:?}", p.notes);
    let promote = p.step("ssh_key.promote").unwrap();
    let rotate_kp = p.step("key_pair.rotate").unwrap();
    assert_eq!(rotate_kp.depends_on, vec!["ssh_key.promote".to_string()]);
    for n in &spec.nodes.nodes {
        let authorize = format!("node.{}.ssh_key", n.name);
        assert!(promote.depends_on.contains(&authorize));
        let revoke = p.step(&format!("node.{}.ssh_key.revoke", n.name)).unwrap();
        assert!(revoke.depends_on.contains(&"ssh_key.promote".to_string()));
    }
    let mut sim = Sim::new(&spec, o.clone());
    sim.apply(&p);
    let new = sim.o.local_public_key.clone().unwrap();
    assert_ne!(new, old);
    for n in &spec.nodes.nodes {
        assert_eq!(sim.accepts(&n.name), Some(&vec![new.clone()]), "{}", n.name);
    }
    assert!(sim.o.local.ssh_next_public_key.is_none());
    assert!(sim.o.local.ssh_previous_public_key.is_none());
    assert_eq!(sim.o.key_pairs[0].public_key.as_deref(), Some(new.as_str()));
    let again = plan::plan(&spec, &sim.o);
    assert!(again.is_empty(), "{}", render::plan::human(&again, false));

    // Killed right after the promotion (before the key pair and the revokes): a plain plan
    // replaces the key pair and takes the old key off every node, quietly (no warning that
    // running nodes keep their boot key: they are given the new one).
    let mut cut = p.clone();
    let at = cut
        .steps
        .iter()
        .position(|s| s.address == "ssh_key.promote")
        .unwrap();
    cut.steps.truncate(at + 1);
    let mut sim = Sim::new(&spec, o);
    sim.apply(&cut);
    assert!(sim.o.local.ssh_previous_public_key.is_some());
    let resumed = plan::plan(&spec, &sim.o);
    assert!(
        resumed.step("key_pair").is_some(),
        "{}",
        render::plan::human(&resumed, false)
    );
    assert!(resumed.step("ssh_key.next").is_none() && resumed.step("ssh_key.promote").is_none());
    assert!(resumed.step("ssh_key.previous").is_some());
    assert!(
        resumed
            .notes
            .iter()
            .all(|n| !n.message.contains("keep the key they booted with"))
    );
    sim.apply(&resumed);
    let again = plan::plan(&spec, &sim.o);
    assert!(again.is_empty(), "{}", render::plan::human(&again, false));
}

/// `redis.package_version`: a version other than the installed one is rolled out node by node
/// (each a restart that waits for the one before, a master handing its slots over first);
/// "latest" follows the archive's newest; without the key nothing is ever changed.
#[test]
fn a_redis_package_version_is_rolled_out_one_node_at_a_time() {
    let six = |t: String, version: Option<&str>| {
        six(match version {
            Some(v) => t.replace(
                "appendonly = true",
                &format!("appendonly = true\npackage_version = \"{v}\""),
            ),
            None => t,
        })
    };
    let spec = spec_from(&six(example_text(), None));
    let mut o = converged(&spec);
    let newest = crate::sim::ARCHIVE_NEWEST;
    let older = "5:7.0.15-1~deb12u1";
    // Without the key, an archive with something newer changes nothing.
    for f in o.nodes.values_mut() {
        if let NodeObservation::Reached(f) = f {
            assert_eq!(f.redis_version.as_deref(), Some(newest));
            f.redis_candidate = Some("9:9".into());
        }
    }
    assert!(plan::plan(&spec, &o).is_empty());

    let pinned = spec_from(&six(example_text(), Some(older)));
    assert_eq!(
        pinned.redis.package_version,
        Some(redisctl::spec::types::PackageVersion::Exact(older.into()))
    );
    let p = plan::plan(&pinned, &observed_for(&pinned, o.clone()));
    snapshot("package-version", &render::plan::human(&p, false));
    let steps: Vec<&plan::Step> = p
        .steps
        .iter()
        .filter(|s| s.address.ends_with(".package"))
        .collect();
    assert_eq!(steps.len(), 6, "{}", render::plan::human(&p, false));
    for (i, s) in steps.iter().enumerate() {
        assert!(matches!(
            &s.ops[..],
            [Op::Node(NodeOp::UpgradeRedis { restart: true, version, .. })] if version == older
        ));
        assert!(
            s.reason.contains("hands its slots to a replica"),
            "{}",
            s.reason
        );
        if i > 0 {
            assert!(s.depends_on.contains(&steps[i - 1].address));
        }
    }
    let o = apply_and_converge(&pinned, observed_for(&pinned, o), &p);

    // "latest": back to the archive's newest.
    let latest = spec_from(&six(example_text(), Some("latest")));
    let mut o = observed_for(&latest, o);
    for f in o.nodes.values_mut() {
        if let NodeObservation::Reached(f) = f {
            f.redis_candidate = Some(newest.into());
        }
    }
    let p = plan::plan(&latest, &o);
    assert_eq!(
        p.steps
            .iter()
            .filter(|s| s.address.ends_with(".package"))
            .count(),
        6
    );
    apply_and_converge(&latest, o, &p);

    // A version that is not one: an error at its key.
    let bad = six(example_text(), Some("7.0; rm -rf /"));
    let errors = redisctl::spec::parse(
        &bad,
        std::path::Path::new("/ops"),
        &redisctl::spec::SourceMap::new(&bad),
    )
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|d| d.path.as_deref() == Some("redis.package_version")),
        "{errors:?}"
    );
}

/// `--update-os`: every node's OS updates, one node at a time (a restart chain, with the
/// master's hand-over), only when asked.
#[test]
fn os_updates_run_node_by_node_only_when_asked() {
    let spec = spec_from(&six(example_text()));
    let o = converged(&spec);
    assert!(plan::plan(&spec, &o).is_empty());
    let asked = plan::Requests {
        update_os: true,
        ..Default::default()
    };
    let p = plan::plan_with(&spec, &o, asked);
    let steps: Vec<&plan::Step> = p
        .steps
        .iter()
        .filter(|s| s.address.ends_with(".os"))
        .collect();
    assert_eq!(steps.len(), 6, "{}", render::plan::human(&p, false));
    for (i, s) in steps.iter().enumerate() {
        assert!(matches!(
            &s.ops[..],
            [Op::Node(NodeOp::UpdateOs { restart: true, .. })]
        ));
        assert!(
            s.reason.contains("hands its slots to a replica"),
            "{}",
            s.reason
        );
        if i > 0 {
            assert!(s.depends_on.contains(&steps[i - 1].address));
        }
    }
    let mut sim = Sim::new(&spec, o);
    sim.apply(&p);
    assert!(plan::plan(&spec, &sim.o).is_empty());
}

/// The nodes of `o` as the reference procedure leaves them: Redis started by hand as root in
/// /var/lib/redis (a cluster member by its state file), none of redisctl's files, its unit
/// neither enabled nor running, no answer to redisctl's users.
fn started_by_hand(spec: &redisctl::spec::Spec, o: &mut Observed) {
    let ranges = [(0u16, 5460u16), (5461, 10922), (10923, 16383)];
    let members = |me: usize| -> Vec<redisctl::observed::Member> {
        spec.nodes
            .nodes
            .iter()
            .enumerate()
            .map(|(k, n)| redisctl::observed::Member {
                id: format!("{k:040x}"),
                ip: n.private_ip.to_string(),
                myself: k == me,
                master: true,
                slots: vec![ranges[k]],
                ..Default::default()
            })
            .collect()
    };
    for (k, n) in spec.nodes.nodes.iter().enumerate() {
        let Some(NodeObservation::Reached(f)) = o.nodes.get_mut(&n.name) else {
            panic!("{} not reached", n.name);
        };
        for h in f.files.values_mut() {
            *h = None;
        }
        f.node_cert_pem = None;
        f.node_key_present = false;
        f.service_enabled = false;
        f.service_active = false;
        f.cluster = None;
        f.cluster_state_file = true;
        f.foreign_redis = vec![redisctl::observed::ForeignRedis {
            pid: 700 + k as u32,
            user: "root".into(),
            dir: conf::DATA_DIR.into(),
        }];
        f.state_file_view = Some(redisctl::observed::ClusterView {
            slots_assigned: 16384,
            known_nodes: 3,
            size: 3,
            own_slots: Some(u32::from(ranges[k].1 - ranges[k].0) + 1),
            members: members(k),
            ..Default::default()
        });
        f.data_not_redis = Some(format!("{}/nodes-6379.conf", conf::DATA_DIR));
    }
}

#[test]
fn a_cluster_started_by_hand_is_taken_over_with_its_data() {
    let spec = example();
    let mut o = converged(&spec);
    started_by_hand(&spec, &mut o);
    let o = observed_for(&spec, o);
    let p = plan::plan(&spec, &o);
    let text = render::plan::human(&p, false);
    assert!(p.blockers().next().is_none(), "{text}");
    let takeovers: Vec<String> = spec
        .nodes
        .nodes
        .iter()
        .map(|n| format!("node.{}.takeover", n.name))
        .collect();
    for (k, t) in takeovers.iter().enumerate() {
        let s = p.step(t).unwrap_or_else(|| panic!("no {t}:\n{text}"));
        assert_eq!(
            s.ops,
            [Op::Node(NodeOp::TakeOverRedis {
                node: spec.nodes.nodes[k].name.clone(),
                pid: Some(700 + k as u32),
            })]
        );
        // Every node starts under redisctl only once every hand-started server is stopped.
        let cfg = p
            .step(&format!("node.{}.config", spec.nodes.nodes[k].name))
            .unwrap();
        for other in &takeovers {
            assert!(
                cfg.depends_on.contains(other),
                "{}: {:?}",
                cfg.address,
                cfg.depends_on
            );
        }
    }
    // The cluster the state files name is waited for, never created.
    assert!(p.step("cluster").is_none(), "{text}");
    let health = p.step("cluster.health").expect("cluster.health");
    assert!(
        health.reason.contains("cluster state files"),
        "{}",
        health.reason
    );
    snapshot("takeover", &text);
    // Applied, the next plan is empty.
    apply_and_converge(&spec, o, &p);
}

#[test]
fn a_take_over_killed_before_redis_started_is_finished_by_the_next_apply() {
    let spec = example();
    let mut o = converged(&spec);
    started_by_hand(&spec, &mut o);
    // The take-over ran everywhere (the hand servers stopped, the files redis's), then apply
    // was killed before any node started under redisctl: no Redis answers.
    for n in &spec.nodes.nodes {
        if let Some(NodeObservation::Reached(f)) = o.nodes.get_mut(&n.name) {
            f.foreign_redis.clear();
            f.data_not_redis = None;
        }
    }
    let o = observed_for(&spec, o);
    let p = plan::plan(&spec, &o);
    let text = render::plan::human(&p, false);
    assert!(p.blockers().next().is_none(), "{text}");
    assert!(!text.contains(".takeover"), "{text}");
    assert!(
        p.step("cluster").is_none(),
        "a cluster create on nodes that hold one:\n{text}"
    );
    assert!(p.step("cluster.health").is_some(), "{text}");
    apply_and_converge(&spec, o, &p);
}

#[test]
fn a_hand_started_redis_outside_the_data_directory_is_not_taken_over() {
    let spec = example();
    let mut o = converged(&spec);
    started_by_hand(&spec, &mut o);
    if let Some(NodeObservation::Reached(f)) = o.nodes.get_mut("redis-node-1b") {
        f.foreign_redis[0].dir = "/srv/redis".into();
    }
    let o = observed_for(&spec, o);
    let p = plan::plan(&spec, &o);
    let blockers: Vec<&plan::Note> = p.blockers().collect();
    assert_eq!(blockers.len(), 1, "{blockers:?}");
    assert_eq!(blockers[0].subject, "node.redis-node-1b");
    assert!(
        blockers[0]
            .message
            .contains("(pid 701 as root, data in /srv/redis)")
            && blockers[0].message.contains("redisctl takes over, with its data, one redis-server that keeps its data in /var/lib/redis"),
        "{}",
        blockers[0].message
    );
}

#[test]
fn settings_changed_at_runtime_are_put_back_live() {
    let spec = example();
    let mut o = converged(&spec);
    // What CONFIG GET and ss answer on 1b after `CONFIG SET port 6380 protected-mode no`.
    let node = spec.nodes.nodes[1].clone();
    let mut config: std::collections::BTreeMap<String, String> = conf::live_values(&spec, &node)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    config.insert("port".into(), "6380".into());
    config.insert("protected-mode".into(), "no".into());
    let ip = node.private_ip.to_string();
    let listeners = vec![
        format!("{ip}:6379"),
        format!("{ip}:16379"),
        "127.0.0.1:6379".into(),
        "127.0.0.1:16379".into(),
        // (in the order `ss` happened to list them: not the plan's)
        "127.0.0.1:6380".into(),
        format!("{ip}:6380"),
    ];
    for n in &spec.nodes.nodes {
        let Some(NodeObservation::Reached(f)) = o.nodes.get_mut(&n.name) else {
            panic!();
        };
        f.runtime = Some(if n.name == node.name {
            redisctl::observed::RuntimeView {
                config: config.clone(),
                listeners: Some(listeners.clone()),
            }
        } else {
            redisctl::observed::RuntimeView {
                config: conf::live_values(&spec, n)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                listeners: Some(vec![]),
            }
        });
    }
    let p = plan::plan(&spec, &o);
    let text = render::plan::human(&p, false);
    assert!(p.blockers().next().is_none(), "{text}");
    let s = p
        .step("node.redis-node-1b.runtime")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        s.ops,
        [Op::Node(NodeOp::SetRuntime {
            node: "redis-node-1b".into(),
            settings: vec![
                ("port".into(), "0".into()),
                ("protected-mode".into(), "yes".into())
            ],
        })]
    );
    assert!(
        text.contains("~ port           = \"6380\" -> \"0 (CONFIG SET, no restart)\"")
            && text.contains(&format!("~ listening on   = \"{ip}:6380, 127.0.0.1:6380\"")),
        "{text}"
    );
    assert!(
        text.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{text}"
    );
    assert!(!text.contains(".config"), "no restart: {text}");
    apply_and_converge(&spec, o, &p);
}
