//! Requests EC2 refuses are refused by the sandbox (moto takes them): one test per check of
//! `front/model.rs`, against EC2's own service model. Run inside the sandbox:
//! `redisctl-sandbox exec -- cargo test -p redisctl-sandbox --test strict`.

mod common;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, InstanceType};
use common::*;
use std::io::{Read, Write};

/// A Query request as it comes over the wire (status, body), signed for EC2 in the sandbox's
/// region (the front and moto do not check signatures).
fn raw(params: &[(&str, &str)]) -> (u16, String) {
    let body: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "%20")))
        .collect::<Vec<_>>()
        .join("&");
    let mut s = std::net::TcpStream::connect(redisctl_sandbox::FRONT_ADDR).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIASANDBOXSANDBOX00/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        redisctl_sandbox::FRONT_ADDR,
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out)
}

fn refused(params: &[(&str, &str)], code: &str, message: &str) {
    let (status, body) = raw(params);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(&format!("<Code>{code}</Code>")), "{body}");
    assert!(body.contains(message), "{body}");
}

#[tokio::test]
async fn an_unknown_parameter_is_refused() {
    let sb = Sandbox::acquire();
    refused(
        &[
            ("Action", "DescribeVpcs"),
            ("Version", "2016-11-15"),
            ("VpcIdentifier.1", "vpc-1"),
        ],
        "UnknownParameter",
        "The parameter VpcIdentifier is not recognized",
    );
    assert_eq!(sb.region().counters.invalid_requests, 1);
    // The same request as EC2 spells it goes through.
    let (status, body) = raw(&[
        ("Action", "DescribeVpcs"),
        ("Version", "2016-11-15"),
        ("Filter.1.Name", "cidr"),
        ("Filter.1.Value.1", "10.0.0.0/16"),
    ]);
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_missing_required_parameter_is_refused() {
    let _sb = Sandbox::acquire();
    refused(
        &[
            ("Action", "AttachInternetGateway"),
            ("Version", "2016-11-15"),
            ("VpcId", "vpc-1"),
        ],
        "MissingParameter",
        "The request must contain the parameter InternetGatewayId",
    );
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_refused() {
    let _sb = Sandbox::acquire();
    refused(
        &[
            ("Action", "DescribeInstances"),
            ("Version", "2016-11-15"),
            ("MaxResults", "many"),
        ],
        "InvalidParameterValue",
        "Value (many) for parameter MaxResults is invalid.",
    );
}

#[tokio::test]
async fn a_value_outside_its_enum_is_refused() {
    let _sb = Sandbox::acquire();
    let ec2 = client().await;
    let net = network(&ec2).await;
    let err = ec2
        .run_instances()
        .image_id(noble_ami(&ec2).await)
        .instance_type(InstanceType::from("t9.mega"))
        .min_count(1)
        .max_count(1)
        .subnet_id(&net.subnets[0].0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    assert!(
        err.message().unwrap_or_default().contains("InstanceType"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unknown_filter_name_is_refused() {
    let _sb = Sandbox::acquire();
    let ec2 = client().await;
    // DescribeVpcs calls the primary CIDR block `cidr`; `cidr-block` is DescribeSubnets'.
    let err = ec2
        .describe_vpcs()
        .filters(
            Filter::builder()
                .name("cidr-block")
                .values("10.0.0.0/16")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    assert_eq!(err.message(), Some("The filter 'cidr-block' is invalid"));
    ec2.describe_vpcs()
        .filters(Filter::builder().name("cidr").values("10.0.0.0/16").build())
        .filters(Filter::builder().name("tag:team").values("x").build())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_kms_key_that_does_not_exist_fails_the_launch_and_the_volume_after_yes() {
    use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, VolumeType};
    let sb = Sandbox::acquire();
    let ec2 = client().await;
    let net = network(&ec2).await;
    let out = ec2
        .run_instances()
        .image_id(noble_ami(&ec2).await)
        .instance_type(InstanceType::T2Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(&net.subnets[0].0)
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sda1")
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(8)
                        .volume_type(VolumeType::Gp3)
                        .encrypted(true)
                        .kms_key_id("alias/no-such-key")
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("EC2 says yes first");
    let id = out.instances()[0].instance_id().unwrap().to_string();
    wait_state(&ec2, &id, "terminated").await;
    let d = ec2
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    let reason = d.reservations()[0].instances()[0]
        .state_reason()
        .and_then(|r| r.code())
        .unwrap_or_default()
        .to_string();
    assert_eq!(reason, "Client.InvalidKMSKey.InvalidState");

    let vol = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .encrypted(true)
        .kms_key_id("alias/no-such-key")
        .send()
        .await
        .expect("EC2 says yes first")
        .volume_id
        .unwrap();
    wait_volume(&ec2, &vol, "error").await;
    // The AWS managed key is there in every account.
    let ok = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .encrypted(true)
        .kms_key_id("alias/aws/ebs")
        .send()
        .await
        .unwrap()
        .volume_id
        .unwrap();
    wait_volume(&ec2, &ok, "available").await;
    assert_eq!(sb.region().counters.launches_failed, 1);
    assert_eq!(sb.region().counters.volumes_failed, 1);
}
