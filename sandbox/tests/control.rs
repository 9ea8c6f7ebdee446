//! The front's control side as a client sees it: requests counted per action (`stats`),
//! injected faults (an AWS error code, a bare status, a dropped connection, throttles the SDK's
//! retries ride through, a rate) and hooks (a process killed, an answer held, exactly when a
//! request set a tag). Run inside the sandbox:
//! `redisctl-sandbox exec -- cargo test -p redisctl-sandbox --test control`. Each test takes the
//! shared sandbox (lock + reset) first, and fails when there is no sandbox.

mod common;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use common::*;
use redisctl_sandbox::faults::{Effect, Fault, Hook};

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

async fn tags_of(ec2: &aws_sdk_ec2::Client, id: &str) -> Vec<(String, String)> {
    let out = ec2
        .describe_tags()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("resource-id")
                .values(id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn create_tag(ec2: &aws_sdk_ec2::Client, id: &str, key: &str, value: &str) -> bool {
    ec2.create_tags()
        .resources(id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(key)
                .value(value)
                .build(),
        )
        .send()
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_kills_a_process_when_its_tag_is_set_and_holds_an_answer_until_released() {
    use std::os::unix::process::ExitStatusExt;
    let sb = Sandbox::acquire();
    let ec2 = client().await;
    let once = client_without_retries().await;
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    until_found("DescribeVpcs", || async {
        ec2.describe_vpcs().vpc_ids(&vpc).send().await
    })
    .await;

    // A kill: the process named dies when the tag gets its value, and the request that set it
    // took effect but is never answered.
    let mut victim = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let id = sb.add_hook(Hook::kill_on_tag("CreateTags", "stage", "3", victim.id()));
    assert!(
        create_tag(&once, &vpc, "stage", "2").await,
        "another value is answered"
    );
    assert!(sb.hook(id).fired.is_empty());
    assert!(
        !create_tag(&once, &vpc, "stage", "3").await,
        "the request that met the hook gets no answer"
    );
    let status = victim.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "SIGKILL: {status}");
    assert!(
        tags_of(&ec2, &vpc)
            .await
            .contains(&("stage".into(), "3".into())),
        "the request took effect"
    );
    let fired = sb.hook(id).fired;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].resources, std::slice::from_ref(&vpc));
    assert_eq!(fired[0].value.as_deref(), Some("3"));
    assert_eq!(fired[0].outcome, format!("killed pid {}", victim.id()));
    assert!(create_tag(&once, &vpc, "stage", "3").await, "a spent hook");

    // A hold: the answer waits until the test releases it.
    let id = sb.add_hook(Hook::hold_on_tag("CreateTags", "stage", "4"));
    let call = {
        let (ec2, vpc) = (ec2.clone(), vpc.clone());
        tokio::spawn(async move { create_tag(&ec2, &vpc, "stage", "4").await })
    };
    let start = std::time::Instant::now();
    let hook = loop {
        let h = sb.hook(id);
        if !h.fired.is_empty() {
            break h;
        }
        assert!(
            start.elapsed().as_secs() < 30,
            "the hold never fired: {h:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(hook.fired[0].outcome, "holding");
    assert!(
        tags_of(&ec2, &vpc)
            .await
            .contains(&("stage".into(), "4".into())),
        "held after it took effect"
    );
    assert!(!call.is_finished(), "not answered while held");
    let busy = redisctl_sandbox::control::call(
        &sb.paths.control_socket(),
        &redisctl_sandbox::control::Request::Idle { timeout_ms: 200 },
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        busy["in_flight"], 1,
        "the held request is in flight: {busy}"
    );
    assert_eq!(sb.release_hook(id), 1);
    assert!(call.await.unwrap(), "answered once released");
    sb.wait_idle(std::time::Duration::from_secs(10));
    let outcome = sb.hook(id).fired[0].outcome.clone();
    assert!(outcome.starts_with("released after "), "{outcome}");
    eprintln!("figure: a held CreateTags: {outcome}");
}
