//! The VPC as EC2 enforces it (docs/sandbox.md, "The VPC as EC2 enforces it"): public IPs that
//! lead to their instance only through an internet gateway route and change at every start,
//! security groups enforced outside the hosts, and egress to the internet (the apt archive) only
//! from a public IP behind an internet gateway or through an available NAT gateway. Run inside the sandbox:
//! `redisctl-sandbox exec -- cargo test -p redisctl-sandbox --test network`.

mod common;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, IpPermission, NatGatewayState, UserIdGroupPair,
};
use common::*;
use std::time::{Duration, Instant};

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

/// Egress as EC2 has it: the archive (the distribution mirror's stand-in on the emulated
/// internet) is reached only from a public IP behind an internet gateway route, and is seen
/// coming from that public IP.
#[tokio::test]
async fn egress_leaves_from_the_public_ip_behind_an_internet_gateway_only() {
    let sb = Sandbox::acquire();
    let ec2 = client().await;
    let net = network(&ec2).await;
    let keys = Keys::new();
    import_key(&ec2, "op", &keys).await;
    let subnet = &net.subnets[0].0;
    // One host without a public IP, then one with.
    run_instance(&ec2, subnet, "10.0.1.11", "op", true, None).await;
    ec2.modify_subnet_attribute()
        .subnet_id(subnet)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .unwrap();
    let id = run_instance(&ec2, subnet, "10.0.1.10", "op", true, None).await;
    let ip = public_ip(&ec2, &id).await.expect("a public IP");
    wait_ssh(&keys, "10.0.1.10", BOOT_LIMIT);
    wait_ssh(&keys, "10.0.1.11", BOOT_LIMIT);

    // No route to an internet gateway: nothing gets out (dropped: a bounded timeout).
    let before = archive_log_len(&sb);
    assert!(!reaches_archive(&keys, "10.0.1.10"));
    let (ok, text) = apt_update(&keys, "10.0.1.10");
    assert!(!ok, "apt-get update worked with no way out:\n{text}");
    assert!(archive_sources_since(&sb, before).is_empty());

    internet_route(&ec2, &net.vpc, subnet).await;
    let before = archive_log_len(&sb);
    apt_update_ok(&keys, "10.0.1.10");
    assert_eq!(archive_sources_since(&sb, before), vec![ip.clone()]);
    ssh_ok(
        &keys,
        "10.0.1.10",
        "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-tools >/dev/null && redis-cli --version",
    );

    // The same route, no public IP: dropped, as on EC2.
    let before = archive_log_len(&sb);
    assert!(!reaches_archive(&keys, "10.0.1.11"));
    let t = Instant::now();
    let (ok, text) = apt_update(&keys, "10.0.1.11");
    assert!(!ok, "apt-get update worked without a public IP:\n{text}");
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert!(archive_sources_since(&sb, before).is_empty());
}

/// A private subnet routing 0.0.0.0/0 to a NAT gateway (in a public subnet, with an Elastic IP)
/// gets out once the gateway is `available`, from the gateway's address; not after
/// DeleteNatGateway. While the gateway is not `deleted`, its Elastic IP cannot be released and
/// its subnet cannot be deleted.
#[tokio::test]
async fn a_nat_gateway_takes_a_private_subnet_out_and_holds_its_subnet_and_address() {
    let sb = Sandbox::acquire();
    let ec2 = client().await;
    let net = network(&ec2).await;
    let keys = Keys::new();
    import_key(&ec2, "op", &keys).await;
    let public = &net.subnets[0].0;
    let private = &net.subnets[1].0;
    internet_route(&ec2, &net.vpc, public).await;

    let eip = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .unwrap();
    let (alloc, eip_ip) = (eip.allocation_id.unwrap(), eip.public_ip.unwrap());
    assert!(eip_ip.starts_with("198.51.100."), "{eip_ip}");
    let nat = ec2
        .create_nat_gateway()
        .subnet_id(public)
        .allocation_id(&alloc)
        .send()
        .await
        .unwrap()
        .nat_gateway
        .unwrap();
    assert_eq!(nat.state(), Some(&NatGatewayState::Pending));
    let nat = nat.nat_gateway_id.unwrap();
    let rt = ec2
        .create_route_table()
        .vpc_id(&net.vpc)
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
            .nat_gateway_id(&nat)
            .send()
    })
    .await;
    until_found("AssociateRouteTable", || {
        ec2.associate_route_table()
            .route_table_id(&rt)
            .subnet_id(private)
            .send()
    })
    .await;
    run_instance(&ec2, private, "10.0.2.10", "op", true, None).await;
    wait_ssh(&keys, "10.0.2.10", BOOT_LIMIT);

    // While `pending`, nothing gets out.
    let probed = reaches_archive(&keys, "10.0.2.10");
    if nat_state(&ec2, &nat).await == "pending" {
        assert!(!probed, "out through a pending NAT gateway");
    }
    let t = Instant::now();
    while nat_state(&ec2, &nat).await != "available" {
        assert!(t.elapsed() < SETTLE_LIMIT, "the NAT gateway stays pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "figure: NAT gateway available {:?} after the host's SSH",
        t.elapsed()
    );
    let before = archive_log_len(&sb);
    apt_update_ok(&keys, "10.0.2.10");
    assert_eq!(archive_sources_since(&sb, before), vec![eip_ip.clone()]);

    // Its address and its subnet are in use.
    let err = ec2
        .release_address()
        .allocation_id(&alloc)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidIPAddress.InUse"), "{err:?}");
    let err = ec2
        .delete_subnet()
        .subnet_id(public)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("DependencyViolation"), "{err:?}");

    ec2.delete_nat_gateway()
        .nat_gateway_id(&nat)
        .send()
        .await
        .unwrap();
    assert!(!reaches_archive(&keys, "10.0.2.10"));
    let (ok, text) = apt_update(&keys, "10.0.2.10");
    assert!(!ok, "apt-get update worked after DeleteNatGateway:\n{text}");
    let t = Instant::now();
    loop {
        let state = nat_state(&ec2, &nat).await;
        if state == "deleted" {
            break;
        }
        assert_eq!(state, "deleting");
        let err = ec2
            .release_address()
            .allocation_id(&alloc)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("InvalidIPAddress.InUse"), "{err:?}");
        assert!(t.elapsed() < SETTLE_LIMIT, "the NAT gateway stays deleting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ec2.release_address()
        .allocation_id(&alloc)
        .send()
        .await
        .unwrap();
    ec2.delete_subnet().subnet_id(public).send().await.unwrap();
}

async fn nat_state(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    let out = ec2
        .describe_nat_gateways()
        .nat_gateway_ids(id)
        .send()
        .await
        .unwrap();
    out.nat_gateways()[0]
        .state()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default()
}
