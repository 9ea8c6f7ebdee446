//! Phases 3-7, inside the nodes: install, TLS, ACL, config + service, cluster create. The
//! observed facts of each node (files' hashes, certificate, services, the cluster's view) are
//! compared with what the spec and the local secrets say they must be (as hashes, computed
//! before planning). Nodes that are created or replaced in this plan get every step. A node that
//! cannot be reached is a note; its steps wait for a plan that can see it.
//!
//! Changes to a running cluster are careful: an ACL change is written and loaded with ACL LOAD
//! (no restart); a config or certificate change restarts one node at a time, each waiting for
//! the cluster to be healthy before the next.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::builder::Builder;
use super::model::*;
use crate::observed::{InitSystem, NodeFacts, NodeObservation, tags};
use crate::pki::{self, WantedCert};
use crate::redis::{conf, files, systemd, users_acl};

enum NodeNow<'a> {
    /// Created or replaced by this plan, or not yet running: everything is to do.
    Fresh,
    Reached(&'a NodeFacts),
    /// Stopped (the AWS layer starts it) or unreachable: nothing planned inside it.
    Waiting,
}

pub(super) fn plan_inside_nodes(b: &mut Builder<'_>) {
    let spec = b.spec;
    let obs = b.observed;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(obs.local.now);
    let n_nodes = spec.nodes.nodes.len();

    // The CA is local state; every certificate step depends on it.
    if obs.local.ca_cert_pem.is_none() {
        b.steps.push(
            Step::new(
                "pki.ca",
                Action::Create,
                Phase::Tls,
                "the cluster has no CA yet",
            )
            .changes(vec![
                Change::create("subject", pki::ca_common_name(&spec.cluster.name)),
                Change::create(
                    "key",
                    format!(
                        "{}/ca.key (0600, never leaves this machine)",
                        spec.cluster.state_dir.display()
                    ),
                ),
            ])
            .op(Op::Local(LocalOp::EnsureCa)),
        );
    }

    // The CA's own end: node certificates never outlive it, so in its last renew_before_days
    // every apply would re-issue them all. redisctl does not rotate a CA (it would need both
    // CAs trusted during the roll): say so early.
    if let Some(ca) = &obs.local.ca_cert_pem
        && let Ok(info) = pki::inspect(ca, ca)
    {
        let window = Duration::from_secs(u64::from(spec.tls.renew_before_days) * 86_400);
        let message = match info.not_after.duration_since(now) {
            Err(_) => Some(
                "the cluster CA has expired: no node certificate it signed is valid any more"
                    .to_string(),
            ),
            Ok(left) if left <= window => Some(format!(
                "the cluster CA expires in {} days: node certificates are cut off at its end and will be re-issued on every apply",
                left.as_secs() / 86_400
            )),
            Ok(_) => None,
        };
        if let Some(m) = message {
            b.notes.push(Note {
                level: NoteLevel::Warning,
                subject: "pki.ca".into(),
                message: format!(
                    "{m}. redisctl does not rotate the CA: plan the rotation by hand (docs/runbook.md, \"certificate renewal\")"
                ),
            });
        }
    }

    // Client certificates redisctl issued (its inventory): the newest of each name nearing its
    // end. redisctl cannot renew them in place (they live with the applications).
    let mut newest: BTreeMap<&str, &crate::observed::ClientCert> = BTreeMap::new();
    for c in &obs.local.client_certs {
        let e = newest.entry(c.cn.as_str()).or_insert(c);
        if c.not_after > e.not_after {
            *e = c;
        }
    }
    let window = u64::from(spec.tls.renew_before_days) * 86_400;
    for (cn, c) in newest {
        let renew = format!(
            "issue its successor with `redisctl client-cert {cn} --out DIR --force` and deploy it"
        );
        let message = if c.not_after <= obs.local.now {
            format!(
                "client certificate CN={cn} (serial {}) has expired: a client presenting it is refused; {renew}",
                c.serial
            )
        } else if c.not_after - obs.local.now <= window {
            let days = (c.not_after - obs.local.now) / 86_400;
            format!(
                "client certificate CN={cn} (serial {}) expires {}; {renew} before then",
                c.serial,
                match days {
                    0 => "within a day".to_string(),
                    1 => "in 1 day".to_string(),
                    n => format!("in {n} days"),
                }
            )
        } else {
            continue;
        };
        b.notes.push(Note {
            level: NoteLevel::Warning,
            subject: format!("client_cert.{cn}"),
            message,
        });
    }

    // Does a cluster already exist? Then changes roll one node at a time.
    let reached: Vec<&NodeFacts> = obs
        .nodes
        .values()
        .filter_map(|n| match n {
            NodeObservation::Reached(f) => Some(f.as_ref()),
            NodeObservation::Unreachable { .. } => None,
        })
        .collect();
    let formed = reached.iter().any(|f| {
        f.cluster
            .as_ref()
            .is_some_and(|c| c.slots_assigned == 16384 && c.known_nodes as usize == n_nodes)
    });
    let partly = !formed
        && reached.iter().any(|f| {
            f.cluster
                .as_ref()
                .is_some_and(|c| c.slots_assigned > 0 || c.known_nodes > 1)
        });

    // A running cluster whose nodes trust another CA than the one in the state directory (the
    // CA files were lost, or replaced): re-issuing from a new CA one node at a time would split
    // the cluster bus (a restarted node and the others refuse each other). Refuse; the CA must
    // be restored from a backup.
    if formed || partly {
        let foreign: Vec<&str> = spec
            .nodes
            .nodes
            .iter()
            .filter(|n| match obs.nodes.get(&n.name) {
                Some(NodeObservation::Reached(f)) => {
                    match (&f.node_cert_pem, &obs.local.ca_cert_pem) {
                        (Some(_), None) => true,
                        (Some(cert), Some(ca)) => {
                            pki::inspect(cert, ca).is_ok_and(|info| !info.signed_by_ca)
                        }
                        (None, _) => false,
                    }
                }
                _ => false,
            })
            .map(|n| n.name.as_str())
            .collect();
        if !foreign.is_empty() {
            let dir = spec.cluster.state_dir.display();
            b.notes.push(Note {
                level: NoteLevel::Blocker,
                subject: "pki.ca".into(),
                message: format!(
                    "the cluster runs with certificates from a CA that is not the one in {dir} ({}): {}. A new CA would split the cluster while nodes restart one by one. Restore ca.key and ca.crt from your backup into {dir} and plan again (docs/runbook.md, \"the state directory, lost or damaged\")",
                    if obs.local.ca_cert_pem.is_none() {
                        "there is none"
                    } else {
                        "it differs"
                    },
                    foreign.join(", ")
                ),
            });
        }
    }

    // Rolling restarts: each waits for the previous one of its phase (phases run one after
    // another, so a chain never crosses phases: all certificate restarts are done before the
    // first configuration restart starts).
    // With replicas, a master hands its slots over before it restarts (node::restart_and_wait).
    let handover = if spec.nodes.replicas_per_master > 0 {
        " (a master first hands its slots to a replica: CLUSTER FAILOVER)"
    } else {
        ""
    };
    let mut previous_tls_restart: Option<String> = None;
    let mut previous_config_restart: Option<String> = None;
    let mut service_steps = Vec::new();
    let mut waiting = Vec::new();
    for node in &spec.nodes.nodes {
        let addr = format!("node.{}", node.name);
        let instance_step = b
            .steps
            .iter()
            .find(|s| s.address == addr)
            .map(|s| (s.action, s.ops.clone()));
        let instance = obs.instances.iter().find(|i| {
            i.tags.get(tags::NODE) == Some(&node.name)
                && i.tags.get(tags::ROLE).map(String::as_str) == Some("node")
        });
        let state = match (&instance_step, instance) {
            (Some((Action::Create | Action::Replace, _)), _) | (_, None) => NodeNow::Fresh,
            (Some((_, ops)), Some(_))
                if ops
                    .iter()
                    .any(|o| matches!(o, Op::Ec2(Ec2Op::StartInstance { .. }))) =>
            {
                b.notes.push(Note {
                    level: NoteLevel::Info,
                    subject: addr.clone(),
                    message: "the node is stopped: apply starts it; Redis comes back (systemd starts it; on a host without systemd, apply does) and rejoins the cluster".into(),
                });
                NodeNow::Waiting
            }
            (_, Some(i)) if i.state != "running" => NodeNow::Waiting,
            (_, Some(i)) => match obs.nodes.get(&node.name) {
                Some(NodeObservation::Reached(f)) => {
                    if f.first_contact {
                        b.steps.push(
                            Step::new(
                                format!("{addr}.host_key"),
                                Action::Create,
                                Phase::Install,
                                "first contact: pin the host key this plan saw (locally and as an instance tag)",
                            )
                            .changes(vec![Change::create("fingerprint", &f.host_key_fingerprint)])
                            .op(Op::Node(NodeOp::PinHostKey {
                                node: node.name.clone(),
                                instance: i.id.clone(),
                                host_key: f.host_key.clone(),
                            })),
                        );
                    }
                    NodeNow::Reached(f)
                }
                Some(NodeObservation::Unreachable {
                    reason,
                    host_key_changed: true,
                }) => {
                    // Never talk past a changed host key: someone may be in the middle.
                    b.notes.push(Note {
                        level: NoteLevel::Blocker,
                        subject: addr.clone(),
                        message: format!(
                            "{reason}. Nothing is applied until this is resolved (docs/runbook.md, \"an unreachable node\")"
                        ),
                    });
                    NodeNow::Waiting
                }
                Some(NodeObservation::Unreachable { reason, .. }) => {
                    b.notes.push(Note {
                        level: NoteLevel::Warning,
                        subject: addr.clone(),
                        message: format!(
                            "running but unreachable over SSH ({reason}); nothing is planned inside it. Check that security_group.ssh_cidrs covers this machine and that the node is healthy, then plan again"
                        ),
                    });
                    NodeNow::Waiting
                }
                None => NodeNow::Waiting,
            },
        };
        let fresh = matches!(state, NodeNow::Fresh);
        let facts = match state {
            NodeNow::Waiting => {
                waiting.push(addr.clone());
                continue;
            }
            NodeNow::Fresh => None,
            NodeNow::Reached(f) => Some(f),
        };
        let after_instance = if fresh && b.steps.iter().any(|s| s.address == addr) {
            vec![addr.clone()]
        } else {
            vec![]
        };
        let desired = obs.local.desired_files.get(&node.name);
        let differs = |path: &str| -> bool {
            match facts {
                None => true,
                Some(f) => {
                    let have = f.files.get(path).cloned().flatten();
                    have.is_none() || desired.and_then(|d| d.get(path)) != have.as_ref()
                }
            }
        };
        let running = facts.is_some_and(|f| f.service_active);
        // Without an init system redisctl runs Redis itself (node::noinit): nothing to enable,
        // no systemd drop-in, no stock unit. A node not reached yet counts as systemd.
        let no_init = facts.is_some_and(|f| f.init == InitSystem::None);
        let stock_name = if no_init {
            "redis-server init script"
        } else {
            systemd::STOCK_SERVICE
        };

        // Phase 3: install.
        let install_addr = format!("{addr}.install");
        let needs_install = facts.is_none_or(|f| !f.redis_installed);
        let stock_on = facts.is_some_and(|f| f.stock_service_enabled || f.stock_service_active);
        let mut last = after_instance.clone();
        if needs_install || stock_on {
            b.steps.push(
                Step::new(
                    install_addr.clone(),
                    if needs_install {
                        Action::Create
                    } else {
                        Action::Update
                    },
                    Phase::Install,
                    if needs_install {
                        "Redis is not installed"
                    } else {
                        "the stock redis-server service must not run"
                    },
                )
                .changes(if needs_install {
                    vec![
                        Change::create("packages", "redis-server redis-tools"),
                        Change::create(systemd::STOCK_SERVICE, "stopped, disabled"),
                    ]
                } else {
                    vec![Change::update(
                        stock_name,
                        "enabled or running",
                        "stopped, disabled",
                    )]
                })
                .depends_on(last.clone())
                .op(Op::Node(NodeOp::InstallRedis {
                    node: node.name.clone(),
                })),
            );
            last = vec![install_addr.clone()];
        }

        // Phase 4: TLS files.
        let tls_reason = match facts {
            None => Some("no certificate yet".to_string()),
            Some(f) => match (&f.node_cert_pem, &obs.local.ca_cert_pem) {
                (None, _) => Some("no certificate on the node".into()),
                _ if !f.node_key_present => Some("no private key on the node".into()),
                (Some(_), None) => Some("the cluster CA is new".into()),
                (Some(cert), Some(ca)) => match pki::inspect(cert, ca) {
                    Err(e) => Some(format!("the certificate on the node cannot be read: {e}")),
                    Ok(info) => pki::reissue_reason(
                        &info,
                        &WantedCert::node(&node.name, node.private_ip),
                        now,
                        spec.tls.renew_before_days,
                    )
                    .map(|r| r.to_string())
                    .or_else(|| {
                        differs(conf::CA_CERT.path)
                            .then(|| "the CA certificate on the node differs".to_string())
                    }),
                },
            },
        };
        let tls_addr = format!("{addr}.tls");
        let tls_rewrites = tls_reason.is_some();
        if let Some(reason) = tls_reason {
            let mut deps = last.clone();
            if b.steps.iter().any(|s| s.address == "pki.ca") {
                deps.push("pki.ca".into());
            }
            let restart = running && formed;
            if restart && let Some(p) = &previous_tls_restart {
                deps.push(p.clone());
            }
            b.steps.push(
                Step::new(
                    tls_addr.clone(),
                    if facts.is_none_or(|f| f.node_cert_pem.is_none()) {
                        Action::Create
                    } else {
                        Action::Update
                    },
                    Phase::Tls,
                    if restart {
                        format!("{reason}; Redis restarts to load it{handover}")
                    } else {
                        reason
                    },
                )
                .changes(vec![
                    Change::create(
                        "certificate",
                        format!(
                            "CN={}, IP SANs {} 127.0.0.1, serverAuth+clientAuth, {} days",
                            node.name, node.private_ip, spec.tls.cert_days
                        ),
                    ),
                    Change::create(
                        "files",
                        format!(
                            "{} {} {}",
                            conf::CA_CERT.path,
                            conf::NODE_CERT.path,
                            conf::NODE_KEY.path
                        ),
                    ),
                ])
                .depends_on(deps)
                .op(Op::Node(NodeOp::InstallTls {
                    node: node.name.clone(),
                    restart,
                })),
            );
            if restart {
                previous_tls_restart = Some(tls_addr.clone());
            }
            last = vec![tls_addr];
        }

        // Phase 5: ACL.
        let acl_rewrites = differs(users_acl::USERS_ACL.path);
        if acl_rewrites {
            let acl_addr = format!("{addr}.acl");
            let reload = running;
            b.steps.push(
                Step::new(
                    acl_addr.clone(),
                    if facts.is_some_and(|f| {
                        f.files
                            .get(users_acl::USERS_ACL.path)
                            .cloned()
                            .flatten()
                            .is_some()
                    }) {
                        Action::Update
                    } else {
                        Action::Create
                    },
                    Phase::Acl,
                    if reload {
                        "the ACL users differ from the spec; loaded with ACL LOAD, no restart"
                    } else {
                        "the ACL file is not there yet"
                    },
                )
                .changes(vec![Change {
                    attribute: users_acl::USERS_ACL.path.into(),
                    before: facts
                        .and_then(|f| f.files.get(users_acl::USERS_ACL.path).cloned().flatten())
                        .map(|h| Value::Known(format!("sha256:{}", &h[..12]))),
                    after: Some(
                        desired
                            .and_then(|d| d.get(users_acl::USERS_ACL.path))
                            .map_or(Value::KnownAfterApply, |h| {
                                Value::Known(format!("sha256:{}", &h[..12]))
                            }),
                    ),
                    forces_replacement: false,
                    ignored_because: None,
                }])
                .depends_on(last.clone())
                .op(Op::Node(NodeOp::WriteAcl {
                    node: node.name.clone(),
                    reload,
                })),
            );
            last = vec![acl_addr];
        }

        // Phase 6: config and service.
        let conf_differs = differs(conf::CONF.path) || (!no_init && differs(systemd::DROP_IN.path));
        let service_off =
            facts.is_none_or(|f| !(f.service_enabled || no_init) || !f.service_active);
        if conf_differs || service_off {
            let cfg_addr = format!("{addr}.config");
            let restart = running && conf_differs;
            let mut deps = last.clone();
            if restart
                && formed
                && let Some(p) = &previous_config_restart
            {
                deps.push(p.clone());
            }
            let mut changes = Vec::new();
            if conf_differs {
                changes.push(Change::create(conf::CONF.path, "rendered from the spec"));
            }
            if service_off && no_init {
                changes.push(Change::update(
                    "redis-server",
                    "stopped",
                    "running as user redis (no systemd: started by redisctl)",
                ));
            } else if service_off {
                changes.push(Change::update(
                    systemd::SERVICE,
                    "stopped",
                    "enabled, running",
                ));
            }
            b.steps.push(
                Step::new(
                    cfg_addr.clone(),
                    if fresh { Action::Create } else { Action::Update },
                    Phase::Config,
                    match (restart, formed, no_init) {
                    (true, true, false) => format!("the configuration differs; the node restarts, one at a time, each waiting for a healthy cluster{handover}"),
                    (true, true, true) => format!("the configuration differs; the node restarts (no systemd: SIGTERM, wait until Redis exits, start it again as user redis), one at a time, each waiting for a healthy cluster{handover}"),
                    (true, false, false) => "the configuration differs; Redis restarts".into(),
                    (true, false, true) => "the configuration differs; Redis restarts (no systemd: SIGTERM, wait until it exits, start it again as user redis)".into(),
                    (false, _, false) => "Redis is not running as redis-server@cluster yet".into(),
                    (false, _, true) => "Redis is not running; the host has no systemd, so redisctl starts redis-server as user redis".into(),
                },
                )
                .changes(changes)
                .depends_on(deps)
                .op(Op::Node(NodeOp::WriteConfig { node: node.name.clone(), restart })),
            );
            if restart && formed {
                previous_config_restart = Some(cfg_addr.clone());
            }
            last = vec![cfg_addr];
        }

        // Modes and owners changed out of band, on files no step above rewrites (a rewrite
        // sets them): set back, with no restart.
        if let Some(f) = facts {
            let rewritten = |path: &str| {
                if path == conf::CONF.path || path == systemd::DROP_IN.path {
                    conf_differs
                } else if path == users_acl::USERS_ACL.path {
                    acl_rewrites
                } else {
                    tls_rewrites
                }
            };
            let changes: Vec<Change> = files::MANAGED
                .iter()
                // Without systemd there is no drop-in.
                .filter(|m| !(rewritten(m.path) || no_init && m.path == systemd::DROP_IN.path))
                .filter_map(|m| {
                    let have = f.modes.get(m.path)?;
                    (*have != m.mode_owner()).then(|| Change::update(m.path, have, m.mode_owner()))
                })
                .collect();
            if !changes.is_empty() {
                let modes_addr = format!("{addr}.modes");
                b.steps.push(
                    Step::new(
                        modes_addr.clone(),
                        Action::Update,
                        Phase::Config,
                        "file modes or owners were changed out of band; set back, no restart",
                    )
                    .changes(changes)
                    .depends_on(last.clone())
                    .op(Op::Node(NodeOp::SetFileModes {
                        node: node.name.clone(),
                    })),
                );
                last = vec![modes_addr];
            }
        }
        service_steps.extend(last.into_iter().filter(|a| a.starts_with(&addr)));
    }

    // Phase 7: the cluster.
    if formed {
        let outside: Vec<&str> = spec
            .nodes
            .nodes
            .iter()
            .filter(|n| {
                let fresh = b.steps.iter().any(|s| {
                    s.address == format!("node.{}", n.name)
                        && matches!(s.action, Action::Create | Action::Replace)
                });
                // A node whose Redis is down but kept its cluster state file rejoins when
                // started (e.g. a host without systemd after a reboot).
                let alone = matches!(obs.nodes.get(&n.name), Some(NodeObservation::Reached(f))
                if match &f.cluster {
                    Some(c) => (c.known_nodes as usize) < n_nodes,
                    None => f.service_active || !f.cluster_state_file,
                });
                fresh || alone
            })
            .map(|n| n.name.as_str())
            .collect();
        if !outside.is_empty() {
            b.notes.push(Note {
                level: NoteLevel::Blocker,
                subject: "cluster".into(),
                message: format!(
                    "{} would not be part of the running cluster: joining a node to an existing cluster (and re-homing the slots of a replaced master) is not supported yet; see docs/runbook.md",
                    outside.join(", ")
                ),
            });
        }
        if !waiting.is_empty()
            && b.steps
                .iter()
                .any(|s| matches!(s.ops.first(), Some(Op::Ec2(Ec2Op::StartInstance { .. }))))
        {
            b.steps.push(
                Step::new(
                    "cluster.health",
                    Action::Run,
                    Phase::ClusterCreate,
                    "stopped nodes are started; wait until they rejoin",
                )
                .changes(vec![Change::create(
                    "wait_for",
                    format!("cluster_state:ok, 16384 slots, {n_nodes} nodes"),
                )])
                .depends_on(waiting.clone())
                .op(Op::Node(NodeOp::WaitHealthy { nodes: n_nodes })),
            );
        }
        return;
    }
    if partly {
        b.notes.push(Note {
            level: NoteLevel::Blocker,
            subject: "cluster".into(),
            message: format!(
                "the cluster is partly formed (some nodes know each other or hold slots, but not all {n_nodes} with 16384 slots): redisctl will not guess. See docs/runbook.md, or run `redis-cli --cluster check`/`fix` on a node"
            ),
        });
        return;
    }
    if !waiting.is_empty() {
        b.notes.push(Note {
            level: NoteLevel::Warning,
            subject: "cluster".into(),
            message: format!(
                "cluster create waits for every node to be reachable ({} are not)",
                waiting.join(", ")
            ),
        });
        return;
    }
    let nodes: Vec<String> = spec.nodes.nodes.iter().map(|n| n.name.clone()).collect();
    b.steps.push(
        Step::new(
            "cluster",
            Action::Run,
            Phase::ClusterCreate,
            format!(
                "no cluster yet: redis-cli --cluster create as {}",
                spec.operator_user().name
            ),
        )
        .changes(vec![
            Change::create("masters", spec.nodes.masters.to_string()),
            Change::create(
                "replicas_per_master",
                spec.nodes.replicas_per_master.to_string(),
            ),
            Change::create(
                "nodes",
                spec.nodes
                    .nodes
                    .iter()
                    .map(|n| format!("{}:{}", n.private_ip, spec.redis.port))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ])
        .depends_on(service_steps)
        .op(Op::Node(NodeOp::CreateCluster {
            nodes,
            replicas: spec.nodes.replicas_per_master,
        })),
    );
}
