//! Phase 3: Redis installed from the distribution's packages, its stock service off (redisctl
//! runs its own).

use super::super::builder::Builder;
use super::super::model::*;
use super::{NodeNow, Rolling};
use crate::redis::systemd;
use crate::spec::types::PackageVersion;

pub(super) fn install(b: &mut Builder<'_>, n: &NodeNow<'_>, last: &mut Vec<String>) {
    let needs_install = n.facts.is_none_or(|f| !f.redis_installed);
    let stock_on = n
        .facts
        .is_some_and(|f| f.stock_service_enabled || f.stock_service_active);
    if !(needs_install || stock_on) {
        return;
    }
    let stock_name = if n.no_init {
        "redis-server init script"
    } else {
        systemd::STOCK_SERVICE
    };
    let install_addr = format!("{}.install", n.addr);
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
                Change::create(
                    "packages",
                    match &b.spec.redis.package_version {
                        Some(PackageVersion::Exact(v)) => {
                            format!("redis-server={v} redis-tools={v}")
                        }
                        _ => "redis-server redis-tools".to_string(),
                    },
                ),
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
            node: n.node.name.clone(),
        })),
    );
    *last = vec![install_addr];
}

/// Another redis-server version than the installed one, when the spec asks for one (a
/// version, or the archive's newest): installed, then Redis restarted onto it, one node at a
/// time in a running cluster (a master first hands its slots to a replica), each waiting for
/// a healthy cluster, as a configuration change is rolled out. A node being installed gets
/// the wanted version at once.
pub(super) fn package(
    b: &mut Builder<'_>,
    n: &NodeNow<'_>,
    roll: &mut Rolling,
    last: &mut Vec<String>,
) {
    let Some(f) = n.facts.filter(|f| f.redis_installed) else {
        return;
    };
    let Some(have) = &f.redis_version else {
        return;
    };
    let want = match &b.spec.redis.package_version {
        None => return,
        Some(PackageVersion::Latest) => match &f.redis_candidate {
            Some(c) => c,
            None => return,
        },
        Some(PackageVersion::Exact(v)) => v,
    };
    if want == have {
        return;
    }
    let restart = n.running;
    let address = format!("{}.package", n.addr);
    let mut deps = last.clone();
    if restart
        && roll.formed
        && let Some(p) = &roll.previous_package_restart
    {
        deps.push(p.clone());
    }
    let reason = format!(
        "redis-server {have} is installed; the spec wants {want}{}",
        match (restart, roll.formed) {
            (true, true) => format!(
                "; the node restarts onto it, one at a time, each waiting for a healthy cluster{}",
                roll.handover
            ),
            (true, false) => "; Redis restarts onto it".to_string(),
            (false, _) => String::new(),
        }
    );
    b.steps.push(
        Step::new(address.clone(), Action::Update, Phase::Install, reason)
            .changes(vec![Change::update(
                "redis-server, redis-tools",
                have.as_str(),
                want.as_str(),
            )])
            .depends_on(deps)
            .op(Op::Node(NodeOp::UpgradeRedis {
                node: n.node.name.clone(),
                version: want.clone(),
                restart,
            })),
    );
    if restart && roll.formed {
        roll.previous_package_restart = Some(address.clone());
    }
    *last = vec![address];
}

/// `--update-os`: the OS's pending updates on a running node, one node at a time in a running
/// cluster (Redis restarted onto them like a configuration change, a master handing its slots
/// over first), chained with the package roll-out.
pub(super) fn os_updates(
    b: &mut Builder<'_>,
    n: &NodeNow<'_>,
    roll: &mut Rolling,
    last: &mut Vec<String>,
) {
    if !b.requests.update_os || n.facts.is_none_or(|f| !f.redis_installed) {
        return;
    }
    let restart = n.running;
    let address = format!("{}.os", n.addr);
    let mut deps = last.clone();
    if restart
        && roll.formed
        && let Some(p) = &roll.previous_package_restart
    {
        deps.push(p.clone());
    }
    b.steps.push(
        Step::new(
            address.clone(),
            Action::Update,
            Phase::Install,
            if restart && roll.formed {
                format!(
                    "--update-os: the OS's pending updates (Redis's own packages held); when a package changed, the node restarts onto it, one at a time, each waiting for a healthy cluster{}",
                    roll.handover
                )
            } else {
                "--update-os: the OS's pending updates (Redis's own packages held)".to_string()
            },
        )
        .changes(vec![Change::update(
            "packages",
            "as installed",
            "apt-get upgrade (known after apply)",
        )])
        .depends_on(deps)
        .op(Op::Node(NodeOp::UpdateOs {
            node: n.node.name.clone(),
            restart,
        })),
    );
    if restart && roll.formed {
        roll.previous_package_restart = Some(address.clone());
    }
    *last = vec![address];
}
