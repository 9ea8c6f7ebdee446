//! Phase 3: Redis installed from the distribution's packages, its stock service off (redisctl
//! runs its own).

use super::super::builder::Builder;
use super::super::model::*;
use super::NodeNow;
use crate::redis::systemd;

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
            node: n.node.name.clone(),
        })),
    );
    *last = vec![install_addr];
}
