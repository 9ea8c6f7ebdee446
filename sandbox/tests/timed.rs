//! The timed region (docs/sandbox.md, "The timed region"), through the real aws-sdk-ec2: eventual
//! consistency, states that take time, failures after EC2 said yes, ClientToken memory, a lost
//! answer, and the dependencies a termination leaves for a while. Run inside the sandbox
//! (`redisctl-sandbox exec -- cargo test -p redisctl-sandbox`), at `common::TEST_SPEED`;
//! each test takes the shared sandbox (lock + reset) first. The behaviour is asserted before
//! the region's counters, so against an instant front a test fails on what a client sees.

mod common;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::operation::run_instances::RunInstancesOutput;
use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, InstanceType, VolumeType};
use common::*;
use std::time::{Duration, Instant};

/// A modelled duration (real AWS seconds) at the sandbox's speed factor.
fn modelled(sb: &Sandbox, secs: f64) -> Duration {
    Duration::from_secs_f64(secs * sb.region().settings.speed)
}

/// RunInstances as redisctl sends it, with an optional ClientToken; the result as it came.
async fn launch(
    ec2: &Client,
    subnet: &str,
    ip: &str,
    token: Option<&str>,
) -> Result<
    RunInstancesOutput,
    aws_sdk_ec2::error::SdkError<impl ProvideErrorMetadata + std::fmt::Debug>,
> {
    ec2.run_instances()
        .image_id(noble_ami(ec2).await)
        .instance_type(InstanceType::T2Micro)
        .min_count(1)
        .max_count(1)
        .key_name("op")
        .subnet_id(subnet)
        .private_ip_address(ip)
        .set_client_token(token.map(str::to_string))
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sda1")
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(8)
                        .volume_type(VolumeType::Gp3)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
}

fn first_instance(out: &RunInstancesOutput) -> (String, String) {
    let i = &out.instances()[0];
    (
        i.instance_id().unwrap().to_string(),
        i.state().unwrap().name().unwrap().as_str().to_string(),
    )
}

/// Every instance moto holds, in any state.
async fn instance_count(ec2: &Client) -> usize {
    let r = ec2.describe_instances().send().await.unwrap();
    r.reservations().iter().map(|r| r.instances().len()).sum()
}

async fn setup(ec2: &Client) -> (Net, Keys) {
    let net = network(ec2).await;
    let keys = Keys::new();
    import_key(ec2, "op", &keys).await;
    (net, keys)
}

/// 1. A new VPC, subnet and instance are NotFound by id (and left out of lists) right after
/// their create, then found.
#[tokio::test]
async fn new_resources_are_not_found_by_id_then_found() {
    let sb = Sandbox::acquire();
    let _speed = at_speed(&sb, TEST_SPEED);
    let ec2 = client().await;
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    let err = ec2.describe_vpcs().vpc_ids(&vpc).send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidVpcID.NotFound"), "{err:?}");
    assert_eq!(
        err.message(),
        Some(format!("The vpc ID '{vpc}' does not exist").as_str())
    );
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    let all = ec2.describe_vpcs().send().await.unwrap();
    assert!(
        all.vpcs().iter().all(|v| v.vpc_id() != Some(vpc.as_str())),
        "the new VPC is listed inside its consistency window"
    );
    let t = Instant::now();
    until_found(&vpc, || ec2.describe_vpcs().vpc_ids(&vpc).send()).await;
    eprintln!("figure: a new VPC found after {:?}", t.elapsed());

    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.0.1.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap()
        .subnet
        .unwrap()
        .subnet_id
        .unwrap();
    let err = ec2
        .describe_subnets()
        .subnet_ids(&subnet)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSubnetID.NotFound"), "{err:?}");
    until_found(&subnet, || {
        ec2.describe_subnets().subnet_ids(&subnet).send()
    })
    .await;

    let keys = Keys::new();
    import_key(&ec2, "op", &keys).await;
    let (id, _) = first_instance(&launch(&ec2, &subnet, "10.0.1.10", None).await.unwrap());
    let err = ec2
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidInstanceID.NotFound"), "{err:?}");
    // A request that names it otherwise is refused the same way.
    let err = ec2
        .create_tags()
        .resources(&id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("k")
                .value("v")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidInstanceID.NotFound"), "{err:?}");
    until_found(&id, || ec2.describe_instances().instance_ids(&id).send()).await;

    assert!(sb.region().counters.not_found >= 4, "{:?}", sb.region());
}

/// 2. Instances are `pending`, then `running`; `stopping` (and cannot be started), then
/// `stopped`; `shutting-down`, then `terminated`.
#[tokio::test]
async fn instance_states_take_time() {
    let sb = Sandbox::acquire();
    let _speed = at_speed(&sb, TEST_SPEED);
    let ec2 = client().await;
    let (net, _keys) = setup(&ec2).await;
    let t = Instant::now();
    let (id, state) = first_instance(
        &launch(&ec2, &net.subnets[0].0, "10.0.1.10", None)
            .await
            .unwrap(),
    );
    assert_eq!(state, "pending");
    assert_eq!(instance_state(&ec2, &id).await, "pending");
    wait_state(&ec2, &id, "running").await;
    let pending = t.elapsed();
    eprintln!("figure: pending → running after {pending:?}");
    assert!(pending >= modelled(&sb, 20.0).mul_f64(0.9), "{pending:?}");

    let out = ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    let change = &out.stopping_instances()[0];
    assert_eq!(
        change.current_state().unwrap().name().unwrap().as_str(),
        "stopping"
    );
    assert_eq!(instance_state(&ec2, &id).await, "stopping");
    let err = ec2
        .start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("IncorrectInstanceState"), "{err:?}");
    wait_state(&ec2, &id, "stopped").await;

    let out = ec2
        .terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    let change = &out.terminating_instances()[0];
    assert_eq!(
        change.current_state().unwrap().name().unwrap().as_str(),
        "shutting-down"
    );
    assert_eq!(
        change.previous_state().unwrap().name().unwrap().as_str(),
        "stopped"
    );
    assert_eq!(instance_state(&ec2, &id).await, "shutting-down");
    wait_state(&ec2, &id, "terminated").await;
    assert_eq!(sb.region().counters.incorrect_state, 1);
}

/// 2. Volumes are `creating`, attachments `attaching` and `detaching`, snapshots `pending`
/// with a rising progress, then `completed`.
#[tokio::test]
async fn volumes_attachments_and_snapshots_take_time() {
    let sb = Sandbox::acquire();
    let _speed = at_speed(&sb, TEST_SPEED);
    let ec2 = client().await;
    let (net, _keys) = setup(&ec2).await;
    let (subnet, az) = net.subnets[0].clone();
    let (id, _) = first_instance(&launch(&ec2, &subnet, "10.0.1.10", None).await.unwrap());
    let vol = ec2
        .create_volume()
        .availability_zone(&az)
        .size(1)
        .send()
        .await
        .unwrap();
    assert_eq!(vol.state().unwrap().as_str(), "creating");
    let vol = vol.volume_id.unwrap();
    wait_volume(&ec2, &vol, "available").await;
    ec2.attach_volume()
        .volume_id(&vol)
        .instance_id(&id)
        .device("/dev/sdf")
        .send()
        .await
        .unwrap();
    let attachment = |v: aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput| {
        let v = &v.volumes()[0];
        (
            v.state().unwrap().as_str().to_string(),
            v.attachments()
                .first()
                .and_then(|a| a.state())
                .map(|s| s.as_str().to_string()),
        )
    };
    let shown = attachment(
        ec2.describe_volumes()
            .volume_ids(&vol)
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(shown, ("in-use".into(), Some("attaching".into())));
    ec2.detach_volume()
        .volume_id(&vol)
        .instance_id(&id)
        .send()
        .await
        .unwrap();
    let shown = attachment(
        ec2.describe_volumes()
            .volume_ids(&vol)
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(shown, ("in-use".into(), Some("detaching".into())));
    wait_volume(&ec2, &vol, "available").await;

    let snap = ec2.create_snapshot().volume_id(&vol).send().await.unwrap();
    assert_eq!(snap.state().unwrap().as_str(), "pending");
    let snap = snap.snapshot_id.unwrap();
    let t = Instant::now();
    let progress = wait_snapshot(&ec2, &snap).await;
    eprintln!(
        "figure: snapshot pending → completed after {:?}, progress seen {progress:?}",
        t.elapsed()
    );
    assert_eq!(progress.last().map(String::as_str), Some("100%"));
    let numbers: Vec<u32> = progress
        .iter()
        .map(|p| p.trim_end_matches('%').parse().unwrap())
        .collect();
    assert!(numbers.len() >= 3, "{progress:?}");
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert!(t.elapsed() >= modelled(&sb, 60.0).mul_f64(0.8));
    assert!(sb.region().counters.incorrect_state <= 1);
}

/// 3. A launch EC2 accepted fails after `pending`: terminated, with the state reason; the host
/// and its volume are gone.
#[tokio::test]
async fn a_launch_that_fails_after_pending_ends_terminated_with_its_reason() {
    let sb = Sandbox::acquire();
    let _speed = at_speed(&sb, TEST_SPEED);
    let ec2 = client().await;
    let (net, _keys) = setup(&ec2).await;
    sb.fail_launches(1, None);
    let (id, state) = first_instance(
        &launch(&ec2, &net.subnets[0].0, "10.0.1.10", None)
            .await
            .unwrap(),
    );
    assert_eq!(state, "pending");
    let root = root_volume(&ec2, &id).await;
    assert_eq!(instance_state(&ec2, &id).await, "pending");
    wait_state(&ec2, &id, "terminated").await;
    let r = ec2
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    let i = &r.reservations()[0].instances()[0];
    let reason = i.state_reason().unwrap();
    assert_eq!(reason.code(), Some("Client.InvalidKMSKey.InvalidState"));
    assert_eq!(
        reason.message(),
        Some("Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state")
    );
    assert_eq!(i.state_transition_reason(), reason.message());
    assert!(sb.hosts().is_empty(), "{:?}", sb.hosts());
    assert!(!std::path::Path::new(&format!("/run/netns/rsbx-{id}")).exists());
    assert!(!sb.paths.volume(&root).exists());
    assert_eq!(sb.region().counters.launches_failed, 1);
}

/// 3. A start EC2 accepted falls back to `stopped` with the state reason; the host is stopped.
#[tokio::test]
async fn a_start_that_fails_falls_back_to_stopped() {
    let sb = Sandbox::acquire();
    let _speed = at_speed(&sb, TEST_SPEED);
    let ec2 = client().await;
    let (net, _keys) = setup(&ec2).await;
    let (id, _) = first_instance(
        &launch(&ec2, &net.subnets[0].0, "10.0.1.10", None)
            .await
            .unwrap(),
    );
    until_found(&id, || ec2.stop_instances().instance_ids(&id).send()).await;
    wait_state(&ec2, &id, "stopped").await;
    sb.fail_starts(1, None);
    let out = ec2
        .start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    let change = &out.starting_instances()[0];
    assert_eq!(
        change.current_state().unwrap().name().unwrap().as_str(),
        "pending"
    );
    assert_eq!(instance_state(&ec2, &id).await, "pending");
    wait_state(&ec2, &id, "stopped").await;
    let r = ec2
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    let reason = r.reservations()[0].instances()[0].state_reason().unwrap();
    assert_eq!(reason.code(), Some("Server.InsufficientInstanceCapacity"));
    assert!(
        sb.hosts().iter().all(|h| h.state.starts_with("stopped")),
        "{:?}",
        sb.hosts()
    );
    // The next start works.
    ec2.start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_state(&ec2, &id, "running").await;
    assert_eq!(sb.region().counters.starts_failed, 1);
}

/// 3. A volume EC2 accepted ends in `error` and cannot be attached.
#[tokio::test]
async fn a_volume_that_fails_ends_in_error() {
    let sb = Sandbox::acquire();
    let _speed = at_speed(&sb, TEST_SPEED);
    let ec2 = client().await;
    sb.fail_volumes(1);
    let vol = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .send()
        .await
        .unwrap()
        .volume_id
        .unwrap();
    wait_volume(&ec2, &vol, "error").await;
    let err = ec2
        .attach_volume()
        .volume_id(&vol)
        .instance_id("i-0123456789abcdef0")
        .device("/dev/sdf")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("IncorrectState"), "{err:?}");
    assert_eq!(sb.region().counters.volumes_failed, 1);
}

/// 4. The same ClientToken with the same parameters gets the first answer (also after the
/// instance is terminated; nothing is launched again); with other parameters it is refused.
#[tokio::test]
async fn a_client_token_replays_its_first_answer() {
    let sb = Sandbox::acquire();
    let _speed = at_speed(&sb, TEST_SPEED);
    let ec2 = client().await;
    let (net, _keys) = setup(&ec2).await;
    let subnet = &net.subnets[0].0;
    let first = launch(&ec2, subnet, "10.0.1.10", Some("tok-1"))
        .await
        .unwrap();
    let (id, _) = first_instance(&first);
    until_found(&id, || ec2.describe_instances().instance_ids(&id).send()).await;
    ec2.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_state(&ec2, &id, "terminated").await;

    let again = launch(&ec2, subnet, "10.0.1.10", Some("tok-1"))
        .await
        .unwrap();
    assert_eq!(first_instance(&again).0, id);
    assert_eq!(instance_count(&ec2).await, 1);
    assert!(sb.hosts().is_empty(), "{:?}", sb.hosts());

    let err = launch(&ec2, subnet, "10.0.1.11", Some("tok-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("IdempotentParameterMismatch"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    assert_eq!(instance_count(&ec2).await, 1);
    let c = sb.region().counters;
    assert_eq!((c.token_replays, c.idempotent_mismatches), (1, 1));
}

/// 5. A lost answer to RunInstances: the SDK retries with the same ClientToken and gets the
/// first answer: one instance.
#[tokio::test]
async fn a_lost_answer_to_run_instances_makes_one_instance() {
    let sb = Sandbox::acquire();
    let _speed = at_speed(&sb, TEST_SPEED);
    let ec2 = client().await;
    let (net, keys) = setup(&ec2).await;
    sb.stats(true);
    sb.lose_responses("RunInstances", 1);
    // The SDK fills in a ClientToken itself, as redisctl's calls do.
    let (id, _) = first_instance(
        &launch(&ec2, &net.subnets[0].0, "10.0.1.10", None)
            .await
            .expect("the SDK retried the lost answer"),
    );
    assert_eq!(sb.stats(false).get("RunInstances"), Some(&2));
    until_found(&id, || ec2.describe_instances().instance_ids(&id).send()).await;
    assert_eq!(instance_count(&ec2).await, 1);
    assert_eq!(sb.hosts().len(), 1);
    wait_ssh(&keys, "10.0.1.10", Duration::from_secs(60));
    let c = sb.region().counters;
    assert_eq!((c.lost_responses, c.token_replays), (1, 1));
}

/// 6. Right after a termination the VPC's gateway cannot be detached, the subnet not deleted
/// and the private IP not reused; after the window they can.
#[tokio::test]
async fn a_termination_leaves_dependencies_for_a_while() {
    let sb = Sandbox::acquire();
    let _speed = at_speed(&sb, TEST_SPEED);
    let ec2 = client().await;
    let (net, _keys) = setup(&ec2).await;
    let subnet = net.subnets[0].0.clone();
    let igw = ec2
        .create_internet_gateway()
        .send()
        .await
        .unwrap()
        .internet_gateway
        .unwrap()
        .internet_gateway_id
        .unwrap();
    until_found(&igw, || {
        ec2.attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&net.vpc)
            .send()
    })
    .await;
    let (id, _) = first_instance(&launch(&ec2, &subnet, "10.0.1.10", None).await.unwrap());
    until_found(&id, || ec2.describe_instances().instance_ids(&id).send()).await;
    ec2.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    let t = Instant::now();

    let err = ec2
        .detach_internet_gateway()
        .internet_gateway_id(&igw)
        .vpc_id(&net.vpc)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("DependencyViolation"), "{err:?}");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("has some mapped public address(es)"),
        "{err:?}"
    );
    let err = launch(&ec2, &subnet, "10.0.1.10", None).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidIPAddress.InUse"), "{err:?}");
    assert_eq!(err.message(), Some("Address 10.0.1.10 is in use."));

    // After the window: detached, and the address is free again.
    let limit = modelled(&sb, 40.0) + SETTLE_LIMIT;
    loop {
        match ec2
            .detach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&net.vpc)
            .send()
            .await
        {
            Ok(_) => break,
            Err(e) if e.code() == Some("DependencyViolation") && t.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("DetachInternetGateway after the window: {e:?}"),
        }
    }
    eprintln!(
        "figure: gateway detached {:?} after the termination",
        t.elapsed()
    );
    assert!(t.elapsed() >= modelled(&sb, 40.0).mul_f64(0.9));
    let (again, _) = first_instance(&launch(&ec2, &subnet, "10.0.1.10", None).await.unwrap());
    assert_ne!(again, id);
    assert!(sb.region().counters.lingering >= 3);
}
