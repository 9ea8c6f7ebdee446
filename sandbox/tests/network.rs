//! The VPC as EC2 enforces it (docs/sandbox.md, "The VPC as EC2 enforces it"): public IPs that
//! lead to their instance only through an internet gateway route and change at every start, and
//! security groups enforced outside the hosts. Run inside the sandbox:
//! `redisctl-sandbox exec -- cargo test -p redisctl-sandbox --test network`.

mod common;

use aws_sdk_ec2::types::{AttributeBooleanValue, IpPermission, UserIdGroupPair};
use common::*;
use std::time::Duration;

const BOOT_LIMIT: Duration = Duration::from_secs(60);

/// The instance as DescribeInstances shows it now.
async fn described(ec2: &aws_sdk_ec2::Client, id: &str) -> aws_sdk_ec2::types::Instance {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0].clone()
}

async fn launch_time(ec2: &aws_sdk_ec2::Client, id: &str) -> i64 {
    described(ec2, id).await.launch_time().unwrap().secs()
}

async fn public_ip(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<String> {
    described(ec2, id)
        .await
        .public_ip_address()
        .map(str::to_string)
}

/// An internet gateway attached to the VPC and a route table sending 0.0.0.0/0 to it, for
/// `subnet`. Returns the route table's id.
async fn internet_route(ec2: &aws_sdk_ec2::Client, vpc: &str, subnet: &str) -> String {
    let igw = ec2
        .create_internet_gateway()
        .send()
        .await
        .unwrap()
        .internet_gateway
        .unwrap()
        .internet_gateway_id
        .unwrap();
    until_found("AttachInternetGateway", || {
        ec2.attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(vpc)
            .send()
    })
    .await;
    let rt = ec2
        .create_route_table()
        .vpc_id(vpc)
        .send()
        .await
        .unwrap()
        .route_table
        .unwrap()
        .route_table_id
        .unwrap();
    until_found("CreateRoute", || {
        ec2.create_route()
            .route_table_id(&rt)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send()
    })
    .await;
    until_found("AssociateRouteTable", || {
        ec2.associate_route_table()
            .route_table_id(&rt)
            .subnet_id(subnet)
            .send()
    })
    .await;
    rt
}

#[tokio::test]
async fn a_public_ip_leads_to_its_instance_through_the_gateway_and_changes_at_start() {
    let _sb = Sandbox::acquire();
    let ec2 = client().await;
    let net = network(&ec2).await;
    let keys = Keys::new();
    import_key(&ec2, "op", &keys).await;
    let subnet = &net.subnets[0].0;
    ec2.modify_subnet_attribute()
        .subnet_id(subnet)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .unwrap();
    let id = run_instance(&ec2, subnet, "10.0.1.10", "op", true, None).await;
    let ip = public_ip(&ec2, &id).await.expect("a public IP");
    assert!(ip.starts_with("198.51.100."), "{ip}");

    // No route to the internet gateway yet: the public IP leads nowhere (a timeout), the
    // private one is reached as through a VPN.
    wait_ssh(&keys, "10.0.1.10", BOOT_LIMIT);
    assert!(!ssh(&keys, &ip, "true").status.success());

    let rt = internet_route(&ec2, &net.vpc, subnet).await;
    // The node sees the operator's internet address.
    let client = ssh_ok(&keys, &ip, "echo $SSH_CLIENT");
    assert!(client.starts_with("203.0.113.7 "), "{client}");

    // Without the route, no way in from the internet.
    ec2.delete_route()
        .route_table_id(&rt)
        .destination_cidr_block("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    assert!(!ssh(&keys, &ip, "true").status.success());
    ec2.create_route()
        .route_table_id(&rt)
        .destination_cidr_block("0.0.0.0/0")
        .gateway_id(
            ec2.describe_internet_gateways()
                .send()
                .await
                .unwrap()
                .internet_gateways()[0]
                .internet_gateway_id()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    ssh_ok(&keys, &ip, "true");

    // A stop takes the address back; a start gives a new one (and a new LaunchTime, the
    // last start's, as on EC2).
    let first_launch = launch_time(&ec2, &id).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    wait_state(&ec2, &id, "stopped").await;
    assert_eq!(
        public_ip(&ec2, &id).await,
        None,
        "a stopped instance has no public IP"
    );
    ec2.start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_state(&ec2, &id, "running").await;
    let new_ip = public_ip(&ec2, &id).await.expect("a public IP after start");
    assert_ne!(new_ip, ip, "a start gives a new public IP");
    assert!(
        launch_time(&ec2, &id).await > first_launch,
        "LaunchTime is the last start"
    );
    wait_ssh(&keys, &new_ip, BOOT_LIMIT);
    assert!(
        !ssh(&keys, &ip, "true").status.success(),
        "the old address leads nowhere"
    );
}

#[tokio::test]
async fn security_groups_are_enforced_outside_the_hosts() {
    let _sb = Sandbox::acquire();
    let ec2 = client().await;
    let net = network(&ec2).await;
    let keys = Keys::new();
    import_key(&ec2, "op", &keys).await;
    run_instance(&ec2, &net.subnets[0].0, "10.0.1.10", "op", true, None).await;
    run_instance(&ec2, &net.subnets[1].0, "10.0.2.10", "op", true, None).await;
    wait_ssh(&keys, "10.0.1.10", BOOT_LIMIT);
    wait_ssh(&keys, "10.0.2.10", BOOT_LIMIT);
    let probe = "timeout 3 bash -c 'echo > /dev/tcp/10.0.2.10/22'";
    // The default group lets its own members in (all traffic).
    ssh_ok(&keys, "10.0.1.10", probe);

    let groups = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(&net.vpc)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let sg = groups.security_groups()[0].group_id().unwrap().to_string();
    let own = IpPermission::builder()
        .ip_protocol("-1")
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(&sg).build())
        .build();
    ec2.revoke_security_group_ingress()
        .group_id(&sg)
        .ip_permissions(own.clone())
        .send()
        .await
        .unwrap();
    // A new connection between members is refused now (dropped: a timeout) ...
    assert!(!ssh(&keys, "10.0.1.10", probe).status.success());
    // ... whatever the host's root does to its own firewall: the group is not in the host.
    ssh(
        &keys,
        "10.0.2.10",
        "sudo nft flush ruleset 2>/dev/null; sudo iptables -F 2>/dev/null",
    );
    assert!(!ssh(&keys, "10.0.1.10", probe).status.success());
    // The operator's SSH rule still holds.
    ssh_ok(&keys, "10.0.2.10", "true");

    ec2.authorize_security_group_ingress()
        .group_id(&sg)
        .ip_permissions(own)
        .send()
        .await
        .unwrap();
    ssh_ok(&keys, "10.0.1.10", probe);
}
