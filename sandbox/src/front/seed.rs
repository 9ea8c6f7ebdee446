//! A used account: what a real AWS account holds before redisctl ever runs in it, made straight
//! in moto (no host boots: the instances are records, as another team's machines would be to
//! this sandbox). What `redisctl apply` and `destroy` must leave exactly as they found it:
//!
//! - moto's default VPC (172.31.0.0/16, its default subnets and group), always there;
//! - a key pair of the spec's key name that redisctl did not make (another public key, no tag);
//! - an untagged VPC with the reference spec's CIDR blocks (10.0.0.0/16, 10.0.1.0/24 …), an
//!   internet gateway, a security group open to SSH from anywhere, and an instance at the
//!   reference spec's first node address (10.0.1.10);
//! - another redisctl cluster (`other-team`), tagged as redisctl tags: VPC, subnet, security
//!   group, key pair, an instance tagged with the same node name as the reference spec's first
//!   node, its volume and a snapshot;
//! - 110 instances that came and went (terminated, one reservation each): more than moto's
//!   page of DescribeInstances holds, as in an account with years of history.

use crate::front::moto::{Auth, Moto};
use crate::xml;
use anyhow::{Context, Result};
use base64::Engine;

/// The public key of the key pair another team made under the spec's key name.
const FOREIGN_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIwBhMRVCDzP6JcC4+aHaK3+EmlRx8TpjWTJvQtmS5vL another-team@laptop";

/// The cluster name of the other redisctl cluster in the account.
pub const OTHER_CLUSTER: &str = "other-team";

async fn call(moto: &Moto, params: &[(&str, &str)], id: &str) -> Result<String> {
    let body = moto.ec2(&Auth::sandbox(), params).await?;
    xml::first_text(&body, id)?.with_context(|| format!("moto's answer has no {id}"))
}

/// `TagSpecification.1` parameters for `kind` with `tags`.
fn tagged<'a>(kind: &'a str, tags: &'a [(&'a str, &'a str)]) -> Vec<(String, String)> {
    let mut out = vec![(
        "TagSpecification.1.ResourceType".to_string(),
        kind.to_string(),
    )];
    for (n, (k, v)) in tags.iter().enumerate() {
        out.push((
            format!("TagSpecification.1.Tag.{}.Key", n + 1),
            k.to_string(),
        ));
        out.push((
            format!("TagSpecification.1.Tag.{}.Value", n + 1),
            v.to_string(),
        ));
    }
    out
}

async fn call_tagged(
    moto: &Moto,
    params: &[(&str, &str)],
    kind: &str,
    tags: &[(&str, &str)],
    id: &str,
) -> Result<String> {
    let extra = tagged(kind, tags);
    let mut all: Vec<(&str, &str)> = params.to_vec();
    all.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    call(moto, &all, id).await
}

/// Seeds the region; returns the ids made (key pairs by name).
pub async fn used_account(moto: &Moto, key_name: &str) -> Result<Vec<String>> {
    let mut made = Vec::new();
    let material = base64::engine::general_purpose::STANDARD.encode(FOREIGN_KEY);
    made.push(
        call(
            moto,
            &[
                ("Action", "ImportKeyPair"),
                ("KeyName", key_name),
                ("PublicKeyMaterial", &material),
            ],
            "keyName",
        )
        .await?,
    );

    // An untagged VPC with the reference spec's addresses.
    let vpc = call(
        moto,
        &[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")],
        "vpcId",
    )
    .await?;
    made.push(vpc.clone());
    let mut subnets = Vec::new();
    for (cidr, az) in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")] {
        let s = call(
            moto,
            &[
                ("Action", "CreateSubnet"),
                ("VpcId", &vpc),
                ("CidrBlock", cidr),
                ("AvailabilityZone", az),
            ],
            "subnetId",
        )
        .await?;
        made.push(s.clone());
        subnets.push(s);
    }
    let igw = call(
        moto,
        &[("Action", "CreateInternetGateway")],
        "internetGatewayId",
    )
    .await?;
    moto.ec2(
        &Auth::sandbox(),
        &[
            ("Action", "AttachInternetGateway"),
            ("InternetGatewayId", &igw),
            ("VpcId", &vpc),
        ],
    )
    .await?;
    made.push(igw);
    let sg = call(
        moto,
        &[
            ("Action", "CreateSecurityGroup"),
            ("GroupName", "legacy-web"),
            ("GroupDescription", "an old web server"),
            ("VpcId", &vpc),
        ],
        "groupId",
    )
    .await?;
    moto.ec2(
        &Auth::sandbox(),
        &[
            ("Action", "AuthorizeSecurityGroupIngress"),
            ("GroupId", &sg),
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("IpPermissions.1.FromPort", "22"),
            ("IpPermissions.1.ToPort", "22"),
            ("IpPermissions.1.IpRanges.1.CidrIp", "0.0.0.0/0"),
        ],
    )
    .await?;
    made.push(sg.clone());
    made.push(
        call(
            moto,
            &[
                ("Action", "RunInstances"),
                ("ImageId", crate::NOINIT_AMI),
                ("InstanceType", "t3.small"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("SubnetId", &subnets[0]),
                ("PrivateIpAddress", "10.0.1.10"),
                ("SecurityGroupId.1", &sg),
            ],
            "instanceId",
        )
        .await?,
    );

    // Another redisctl cluster, tagged as redisctl tags its own.
    let other = [
        ("redisctl:cluster", OTHER_CLUSTER),
        ("Name", "other-team-redis"),
    ];
    let vpc = call_tagged(
        moto,
        &[("Action", "CreateVpc"), ("CidrBlock", "10.8.0.0/16")],
        "vpc",
        &other,
        "vpcId",
    )
    .await?;
    made.push(vpc.clone());
    let subnet = call_tagged(
        moto,
        &[
            ("Action", "CreateSubnet"),
            ("VpcId", &vpc),
            ("CidrBlock", "10.8.1.0/24"),
            ("AvailabilityZone", "us-east-1a"),
        ],
        "subnet",
        &other,
        "subnetId",
    )
    .await?;
    made.push(subnet.clone());
    let sg = call_tagged(
        moto,
        &[
            ("Action", "CreateSecurityGroup"),
            ("GroupName", "other-team-redis"),
            ("GroupDescription", "redisctl cluster other-team"),
            ("VpcId", &vpc),
        ],
        "security-group",
        &other,
        "groupId",
    )
    .await?;
    made.push(sg.clone());
    let other_key = call_tagged(
        moto,
        &[
            ("Action", "ImportKeyPair"),
            ("KeyName", "other-team-key"),
            ("PublicKeyMaterial", &material),
        ],
        "key-pair",
        &other,
        "keyName",
    )
    .await?;
    made.push(other_key);
    let node = [
        ("redisctl:cluster", OTHER_CLUSTER),
        ("redisctl:node", "redis-node-1a"),
        ("Name", "other-team-redis-node-1a"),
    ];
    let instance = call_tagged(
        moto,
        &[
            ("Action", "RunInstances"),
            ("ImageId", crate::NOINIT_AMI),
            ("InstanceType", "t3.small"),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("SubnetId", &subnet),
            ("PrivateIpAddress", "10.8.1.10"),
            ("SecurityGroupId.1", &sg),
            ("KeyName", "other-team-key"),
        ],
        "instance",
        &node,
        "instanceId",
    )
    .await?;
    made.push(instance);
    let volume = call_tagged(
        moto,
        &[
            ("Action", "CreateVolume"),
            ("AvailabilityZone", "us-east-1a"),
            ("Size", "8"),
            ("VolumeType", "gp3"),
        ],
        "volume",
        &other,
        "volumeId",
    )
    .await?;
    made.push(volume.clone());
    made.push(
        call_tagged(
            moto,
            &[("Action", "CreateSnapshot"), ("VolumeId", &volume)],
            "snapshot",
            &other,
            "snapshotId",
        )
        .await?,
    );
    // Instances that came and went: more reservations than moto answers in one page of
    // DescribeInstances (100), all terminated, in the default VPC. Not in `made`: nothing of
    // them is left to check but their records.
    gone(moto, 110).await?;
    Ok(made)
}

/// `count` instances launched one reservation at a time in the default VPC, then terminated.
async fn gone(moto: &Moto, count: usize) -> Result<()> {
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(
            call(
                moto,
                &[
                    ("Action", "RunInstances"),
                    ("ImageId", crate::NOINIT_AMI),
                    ("InstanceType", "t3.micro"),
                    ("MinCount", "1"),
                    ("MaxCount", "1"),
                ],
                "instanceId",
            )
            .await?,
        );
    }
    for chunk in ids.chunks(50) {
        let names: Vec<String> = (1..=chunk.len())
            .map(|i| format!("InstanceId.{i}"))
            .collect();
        let mut params: Vec<(&str, &str)> = vec![("Action", "TerminateInstances")];
        params.extend(
            names
                .iter()
                .map(String::as_str)
                .zip(chunk.iter().map(String::as_str)),
        );
        moto.ec2(&Auth::sandbox(), &params).await?;
    }
    Ok(())
}
