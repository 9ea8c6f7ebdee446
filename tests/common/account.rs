//! What an AWS account holds, resource by resource, to compare before and after a run: every
//! VPC, subnet, route table, internet gateway, security group (with its rules), NAT gateway
//! (not yet `deleted`), Elastic IP, instance (in any state but `terminated`: stopped ones are
//! the account's), volume, snapshot of the account and key pair, keyed by id (key pairs by
//! name) and described by the SDK's own rendering of it. A resource that is changed, removed or
//! added shows up.
//!
//! [`now`] and [`assert_as_before`] are the check every end-to-end destroy ends with: taken
//! through the SDK, independently of destroy's own report. [`assert_only_defaults`] is the same
//! check against a region just reset (the default VPC and what comes with it), for a test that
//! took no snapshot first.

use std::collections::BTreeMap;

pub type Account = BTreeMap<String, String>;

/// One resource of the account.
pub struct Resource {
    /// What it is: `vpc`, `subnet`, `route table`, `internet gateway`, `security group`,
    /// `NAT gateway`, `Elastic IP`, `instance`, `volume`, `snapshot`, `key pair`.
    pub kind: &'static str,
    /// Its key in an [`Account`]: the id (key pairs: `key-pair NAME`).
    pub key: String,
    /// Its `redisctl:cluster` tag, if any.
    pub cluster: Option<String>,
    /// Part of every fresh region: the default VPC, its default subnets, its internet gateway,
    /// its main route table and its default security group, the snapshots of the region's
    /// images.
    pub default: bool,
    /// The SDK's rendering of it.
    pub described: String,
}

fn cluster_tag(tags: &[aws_sdk_ec2::types::Tag]) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some("redisctl:cluster"))
        .and_then(|t| t.value())
        .map(str::to_string)
}

/// Every resource of the account, kind by kind.
pub async fn resources(ec2: &aws_sdk_ec2::Client) -> Vec<Resource> {
    let mut out = Vec::new();
    let mut add = |kind, key: String, cluster, default, described: String| {
        out.push(Resource {
            kind,
            key,
            cluster,
            default,
            described,
        })
    };
    let vpcs = ec2.describe_vpcs().send().await.unwrap();
    let default_vpcs: Vec<String> = vpcs
        .vpcs()
        .iter()
        .filter(|v| v.is_default() == Some(true))
        .filter_map(|v| v.vpc_id().map(str::to_string))
        .collect();
    let in_default = |vpc: Option<&str>| vpc.is_some_and(|v| default_vpcs.iter().any(|d| d == v));
    for v in vpcs.vpcs() {
        let default = v.is_default() == Some(true);
        add(
            "vpc",
            v.vpc_id().unwrap().into(),
            cluster_tag(v.tags()),
            default,
            format!("{v:?}"),
        );
    }
    for s in ec2.describe_subnets().send().await.unwrap().subnets() {
        add(
            "subnet",
            s.subnet_id().unwrap().into(),
            cluster_tag(s.tags()),
            s.default_for_az() == Some(true) && in_default(s.vpc_id()),
            format!("{s:?}"),
        );
    }
    for r in ec2
        .describe_route_tables()
        .send()
        .await
        .unwrap()
        .route_tables()
    {
        let main = r.associations().iter().any(|a| a.main() == Some(true));
        add(
            "route table",
            r.route_table_id().unwrap().into(),
            cluster_tag(r.tags()),
            main && in_default(r.vpc_id()),
            format!("{r:?}"),
        );
    }
    for g in ec2
        .describe_internet_gateways()
        .send()
        .await
        .unwrap()
        .internet_gateways()
    {
        let default =
            !g.attachments().is_empty() && g.attachments().iter().all(|a| in_default(a.vpc_id()));
        add(
            "internet gateway",
            g.internet_gateway_id().unwrap().into(),
            cluster_tag(g.tags()),
            default,
            format!("{g:?}"),
        );
    }
    for g in ec2
        .describe_security_groups()
        .send()
        .await
        .unwrap()
        .security_groups()
    {
        add(
            "security group",
            g.group_id().unwrap().into(),
            cluster_tag(g.tags()),
            g.group_name() == Some("default") && in_default(g.vpc_id()),
            format!("{g:?}"),
        );
    }
    for n in ec2
        .describe_nat_gateways()
        .send()
        .await
        .unwrap()
        .nat_gateways()
    {
        // A deleted NAT gateway stays listed for a while; it is no longer the account's.
        if n.state().map(|s| s.as_str()) != Some("deleted") {
            add(
                "NAT gateway",
                n.nat_gateway_id().unwrap().into(),
                cluster_tag(n.tags()),
                false,
                format!("{n:?}"),
            );
        }
    }
    for a in ec2.describe_addresses().send().await.unwrap().addresses() {
        let key = a
            .allocation_id()
            .or(a.public_ip())
            .expect("an Elastic IP has an allocation id or an address")
            .to_string();
        add(
            "Elastic IP",
            key,
            cluster_tag(a.tags()),
            false,
            format!("{a:?}"),
        );
    }
    for r in ec2
        .describe_instances()
        .send()
        .await
        .unwrap()
        .reservations()
    {
        for i in r.instances() {
            // Terminated instances stay listed for a while; every other state (stopped,
            // stopping, shutting-down included) is still the account's.
            if i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated") {
                add(
                    "instance",
                    i.instance_id().unwrap().into(),
                    cluster_tag(i.tags()),
                    false,
                    format!("{i:?}"),
                );
            }
        }
    }
    for v in ec2.describe_volumes().send().await.unwrap().volumes() {
        add(
            "volume",
            v.volume_id().unwrap().into(),
            cluster_tag(v.tags()),
            false,
            format!("{v:?}"),
        );
    }
    for s in ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .unwrap()
        .snapshots()
    {
        // The region's catalogue of images comes with their snapshots (moto lists them as
        // the account's own).
        let catalogue = s
            .description()
            .is_some_and(|d| d.starts_with("Auto-created snapshot for AMI "));
        add(
            "snapshot",
            s.snapshot_id().unwrap().into(),
            cluster_tag(s.tags()),
            catalogue,
            format!("{s:?}"),
        );
    }
    for k in ec2.describe_key_pairs().send().await.unwrap().key_pairs() {
        add(
            "key pair",
            format!("key-pair {}", k.key_name().unwrap()),
            cluster_tag(k.tags()),
            false,
            format!("{k:?}"),
        );
    }
    out
}

pub async fn snapshot(ec2: &aws_sdk_ec2::Client) -> Account {
    resources(ec2)
        .await
        .into_iter()
        .map(|r| (r.key, r.described))
        .collect()
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

/// The account now, through the SDK (from a test's own thread, outside any runtime): take it
/// right after `Sandbox::acquire`, before the test makes anything, for [`assert_as_before`].
pub fn now() -> Account {
    block(async { snapshot(&super::ec2_client().await).await })
}

/// After destroy, through the SDK: the account holds exactly what `before` held, resource kind
/// by resource kind (module doc), and nothing tagged `redisctl:cluster=<cluster>` that was not
/// there before. `left_on_purpose`: keys of resources the test made itself, out of band, that
/// destroy must leave alone (they may differ from `before` in any way).
pub fn assert_as_before(before: &Account, cluster: &str, left_on_purpose: &[&str]) {
    let now = block(async { resources(&super::ec2_client().await).await });
    let after: Account = now
        .iter()
        .map(|r| (r.key.clone(), r.described.clone()))
        .collect();
    let mut problems: Vec<String> = differences(before, &after)
        .into_iter()
        .filter(|d| {
            // "added: KEY\n  now …": the key is the rest of the first line.
            let key = d
                .lines()
                .next()
                .and_then(|l| l.split_once(": "))
                .map(|(_, k)| k);
            !left_on_purpose.iter().any(|k| key == Some(*k))
        })
        .collect();
    for r in &now {
        if r.cluster.as_deref() == Some(cluster)
            && !before.contains_key(&r.key)
            && !left_on_purpose.contains(&r.key.as_str())
        {
            problems.push(format!(
                "left: {} {} tagged redisctl:cluster={cluster}",
                r.kind, r.key
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the account is not as it was before the test ({} resources checked through the SDK):\n{}",
        now.len(),
        problems.join("\n")
    );
}

/// After destroy, through the SDK, for a test that took no snapshot first: the account holds
/// nothing but what a reset region holds (the default VPC, its default subnets, internet
/// gateway, main route table and default security group, the images' snapshots), and nothing tagged
/// `redisctl:cluster=<cluster>`. `left_on_purpose` as in [`assert_as_before`].
pub fn assert_only_defaults(cluster: &str, left_on_purpose: &[&str]) {
    let now = block(async { resources(&super::ec2_client().await).await });
    let problems: Vec<String> = now
        .iter()
        .filter(|r| !left_on_purpose.contains(&r.key.as_str()))
        .filter(|r| !r.default || r.cluster.as_deref() == Some(cluster))
        .map(|r| match &r.cluster {
            Some(c) => format!("left: {} {} tagged redisctl:cluster={c}", r.kind, r.key),
            None => format!("left: {} {}: {}", r.kind, r.key, r.described),
        })
        .collect();
    assert!(
        problems.is_empty(),
        "the account holds more than a fresh region ({} resources checked through the SDK):\n{}",
        now.len(),
        problems.join("\n")
    );
}

/// Every difference between two snapshots, one line each (empty: the same account).
pub fn differences(before: &Account, after: &Account) -> Vec<String> {
    let mut out = Vec::new();
    for (id, was) in before {
        match after.get(id) {
            None => out.push(format!("removed: {id}")),
            Some(now) if now != was => out.push(format!("changed: {id}\n  was {was}\n  now {now}")),
            _ => {}
        }
    }
    for (id, now) in after.iter().filter(|(id, _)| !before.contains_key(*id)) {
        out.push(format!("added: {id}\n  now {now}"));
    }
    out
}
