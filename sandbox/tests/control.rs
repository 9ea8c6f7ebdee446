//! The front's control side as a client sees it: requests counted per action (`stats`) and
//! injected faults (an AWS error code, a bare status, a dropped connection, throttles the SDK's
//! retries ride through, a rate). Run inside the sandbox:
//! `redisctl-sandbox exec -- cargo test -p redisctl-sandbox --test control`. Each test takes the
//! shared sandbox (lock + reset) first, and fails when there is no sandbox.

mod common;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use common::*;
use redisctl_sandbox::faults::{Effect, Fault};

#[tokio::test]
async fn stats_count_requests_per_action() {
    let sb = Sandbox::acquire();
    let ec2 = client().await;
    for _ in 0..3 {
        ec2.describe_vpcs().send().await.unwrap();
    }
    ec2.describe_subnets().send().await.unwrap();
    let stats = sb.stats(true);
    assert_eq!(stats.get("DescribeVpcs"), Some(&3), "{stats:?}");
    assert_eq!(stats.get("DescribeSubnets"), Some(&1), "{stats:?}");
    assert!(
        sb.stats(false).is_empty(),
        "stats --reset clears the counts"
    );
}

#[tokio::test]
async fn faults_throttle_fail_and_drop() {
    let sb = Sandbox::acquire();
    let once = client_without_retries().await;
    let fault = |effect: Effect, times: Option<u64>| Fault {
        action: "DescribeVpcs".into(),
        effect,
        times,
        rate: None,
        fired: 0,
    };

    // An AWS error code, as the SDK sees it.
    sb.add_fault(fault(
        Effect::Error {
            code: "RequestLimitExceeded".into(),
            status: 503,
        },
        Some(1),
    ));
    let err = once.describe_vpcs().send().await.unwrap_err();
    assert_eq!(err.code(), Some("RequestLimitExceeded"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    once.describe_vpcs()
        .send()
        .await
        .expect("the fault fired once only");

    // A bare 503.
    sb.add_fault(fault(Effect::Status { status: 503 }, Some(1)));
    let err = once.describe_vpcs().send().await.unwrap_err();
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(503),
        "{err:?}"
    );

    // A dropped connection.
    sb.add_fault(fault(Effect::Drop, Some(1)));
    let err = once.describe_vpcs().send().await.unwrap_err();
    assert!(
        matches!(err, aws_sdk_ec2::error::SdkError::DispatchFailure(_)),
        "{err:?}"
    );

    // The SDK's own retries ride through two throttles; the front saw three requests.
    sb.stats(true);
    sb.add_fault(fault(
        Effect::Error {
            code: "RequestLimitExceeded".into(),
            status: 503,
        },
        Some(2),
    ));
    client()
        .await
        .describe_vpcs()
        .send()
        .await
        .expect("retried through the throttling");
    assert_eq!(sb.stats(false).get("DescribeVpcs"), Some(&3));

    // A rate: roughly that share of requests fail.
    sb.add_fault(Fault {
        rate: Some(0.5),
        ..fault(Effect::Status { status: 500 }, None)
    });
    let mut failed = 0;
    for _ in 0..40 {
        if once.describe_vpcs().send().await.is_err() {
            failed += 1;
        }
    }
    assert!(
        (5..=35).contains(&failed),
        "{failed} of 40 failed at rate 0.5"
    );
    sb.clear_faults();
    once.describe_vpcs().send().await.unwrap();
}
