//! End-to-end: redisctl in an account that is already in use (`redisctl-sandbox seed`: the
//! default VPC, a key pair of the spec's name that another team made, an untagged VPC and
//! instance with the spec's own addresses, another redisctl cluster's tagged resources). The
//! account is snapshotted resource by resource before, while the cluster runs and after
//! destroy: nothing redisctl did not make is changed or removed, and destroy leaves exactly what
//! was there. Run inside the sandbox's operator namespace:
//! `redisctl-sandbox exec -- cargo test -p redisctl --test e2e_used_account -- --nocapture`.

mod common;

use common::account::{Account, differences, snapshot};
use common::{Cluster, text};
use redisctl_sandbox::testing::Sandbox;

fn account() -> Account {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ec2 = common::ec2_client().await;
        snapshot(&ec2).await
    })
}

#[test]
fn in_a_used_account_apply_and_destroy_change_nothing_redisctl_did_not_make() {
    let sb = Sandbox::acquire();
    let seeded = sb.seed_used_account("prod-redis-key");
    let before = account();
    for id in &seeded {
        assert!(
            before.contains_key(id) || before.contains_key(&format!("key-pair {id}")),
            "{id} was seeded but is not in the account: {:?}",
            before.keys().collect::<Vec<_>>()
        );
    }
    eprintln!(
        "figure: the used account holds {} resources before redisctl runs",
        before.len()
    );

    let c = Cluster::new("used", |t| t);
    // The key pair of the spec's name is another team's: the plan names it as a blocker, and
    // apply changes nothing.
    let out = c.run(&["plan"]);
    let plan = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        plan.contains("key pair prod-redis-key") && plan.contains("not made by redisctl"),
        "{plan}"
    );
    let out = c.run(&["apply", "--yes"]);
    assert!(
        !out.status.success(),
        "apply went ahead over another team's key pair:\n{}",
        text(&out.stdout)
    );
    assert_eq!(differences(&before, &account()), Vec::<String>::new());

    // With a key name of its own, the cluster is built beside what was there.
    c.edit_spec(
        "key_name = \"prod-redis-key\"",
        "key_name = \"prod-redis-ops\"",
    );
    c.ok(&["apply", "--yes"]);
    c.ok(&["verify"]);
    c.assert_converged();
    let running = account();
    let touched: Vec<String> = differences(&before, &running)
        .into_iter()
        .filter(|d| !d.starts_with("added:"))
        .collect();
    assert!(
        touched.is_empty(),
        "apply changed what it did not make:\n{}",
        touched.join("\n")
    );
    eprintln!(
        "figure: the cluster added {} resources",
        running.len() - before.len()
    );

    c.ok(&["destroy", "--yes"]);
    let after = account();
    let left = differences(&before, &after);
    assert!(
        left.is_empty(),
        "the account after destroy is not the account before:\n{}",
        left.join("\n")
    );
}
