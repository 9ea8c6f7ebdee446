//! What an AWS account holds, resource by resource, to compare before and after a run: every
//! VPC, subnet, route table, internet gateway, security group (with its rules), instance,
//! volume, snapshot of the account and key pair, keyed by id (key pairs by name) and described
//! by the SDK's own rendering of it. A resource that is changed, removed or added shows up.

use std::collections::BTreeMap;

pub type Account = BTreeMap<String, String>;

pub async fn snapshot(ec2: &aws_sdk_ec2::Client) -> Account {
    let mut a = Account::new();
    for v in ec2.describe_vpcs().send().await.unwrap().vpcs() {
        a.insert(v.vpc_id().unwrap().into(), format!("{v:?}"));
    }
    for s in ec2.describe_subnets().send().await.unwrap().subnets() {
        a.insert(s.subnet_id().unwrap().into(), format!("{s:?}"));
    }
    for r in ec2
        .describe_route_tables()
        .send()
        .await
        .unwrap()
        .route_tables()
    {
        a.insert(r.route_table_id().unwrap().into(), format!("{r:?}"));
    }
    for g in ec2
        .describe_internet_gateways()
        .send()
        .await
        .unwrap()
        .internet_gateways()
    {
        a.insert(g.internet_gateway_id().unwrap().into(), format!("{g:?}"));
    }
    for g in ec2
        .describe_security_groups()
        .send()
        .await
        .unwrap()
        .security_groups()
    {
        a.insert(g.group_id().unwrap().into(), format!("{g:?}"));
    }
    for r in ec2
        .describe_instances()
        .send()
        .await
        .unwrap()
        .reservations()
    {
        for i in r.instances() {
            // Terminated instances stay listed for a while; only the live ones are the account's.
            if i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated") {
                a.insert(i.instance_id().unwrap().into(), format!("{i:?}"));
            }
        }
    }
    for v in ec2.describe_volumes().send().await.unwrap().volumes() {
        a.insert(v.volume_id().unwrap().into(), format!("{v:?}"));
    }
    for s in ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .unwrap()
        .snapshots()
    {
        a.insert(s.snapshot_id().unwrap().into(), format!("{s:?}"));
    }
    for k in ec2.describe_key_pairs().send().await.unwrap().key_pairs() {
        a.insert(
            format!("key-pair {}", k.key_name().unwrap()),
            format!("{k:?}"),
        );
    }
    a
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
    for id in after.keys().filter(|id| !before.contains_key(*id)) {
        out.push(format!("added: {id}"));
    }
    out
}
