//! Security groups as EC2 enforces them, for tests that build a VPC by hand: the operator (the
//! sandbox's internet address, as in the reference spec's `ssh_cidrs`) may reach SSH. Every test
//! crate uses it (the sandbox's own tests include this file by path, as `settle.rs`).

use std::time::{Duration, Instant};

/// The operator's address as the VPC sees it, as a CIDR block.
pub fn operator_cidr() -> String {
    format!("{}/32", redisctl_sandbox::net::OPERATOR_ADDR)
}

/// Opens port 22 of the VPC's default security group (which new instances get) to the
/// operator: the default group lets in only its own members, as on AWS.
pub async fn operator_may_ssh(ec2: &aws_sdk_ec2::Client, vpc: &str) {
    let filter = |k: &str, v: &str| {
        aws_sdk_ec2::types::Filter::builder()
            .name(k)
            .values(v)
            .build()
    };
    let t = Instant::now();
    let group = loop {
        let out = ec2
            .describe_security_groups()
            .filters(filter("vpc-id", vpc))
            .filters(filter("group-name", "default"))
            .send()
            .await
            .unwrap();
        if let Some(g) = out.security_groups().first() {
            break g.group_id().unwrap().to_string();
        }
        // A new VPC's default group may not be listed yet (eventual consistency).
        assert!(
            t.elapsed() < super::settle::SETTLE_LIMIT,
            "the default security group of {vpc} is not listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    super::settle::until_found("AuthorizeSecurityGroupIngress", || {
        ec2.authorize_security_group_ingress()
            .group_id(&group)
            .ip_permissions(
                aws_sdk_ec2::types::IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(
                        aws_sdk_ec2::types::IpRange::builder()
                            .cidr_ip(operator_cidr())
                            .build(),
                    )
                    .build(),
            )
            .send()
    })
    .await;
}
