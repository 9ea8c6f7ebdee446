//! Volumes and snapshots under booted hosts, through the real aws-sdk-ec2 and `ssh`: the root
//! swap to an encrypted volume made from a snapshot (what redisctl's encryption phase does), an
//! encrypted snapshot copy, and deletes that free the disk. Run inside the sandbox:
//! `redisctl-sandbox exec -- cargo test -p redisctl-sandbox --test volumes`. Each test takes the
//! shared sandbox (lock + reset) first, and fails when there is no sandbox.

mod common;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use common::*;
use std::time::Instant;

#[tokio::test]
async fn root_swap_to_an_encrypted_volume_keeps_the_snapshot_contents() {
    let _sb = Sandbox::acquire();
    let (ec2, net, keys) = ready_to_launch().await;
    let (subnet, az) = net.subnets[0].clone();
    let id = run_instance(&ec2, &subnet, "10.0.1.30", "op", false, None).await;
    wait_ssh(&keys, "10.0.1.30", BOOT_LIMIT);
    ssh_ok(
        &keys,
        "10.0.1.30",
        "echo before > /home/ubuntu/before.txt && sync",
    );
    let old_root = root_volume(&ec2, &id).await;

    ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    let snap = ec2
        .create_snapshot()
        .volume_id(&old_root)
        .send()
        .await
        .unwrap()
        .snapshot_id
        .unwrap();
    // A file written after the snapshot must not come back.
    wait_state(&ec2, &id, "stopped").await;
    ec2.start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_ssh(&keys, "10.0.1.30", BOOT_LIMIT);
    ssh_ok(
        &keys,
        "10.0.1.30",
        "echo after > /home/ubuntu/after.txt && sync",
    );
    ec2.stop_instances().instance_ids(&id).send().await.unwrap();

    let t = Instant::now();
    let new_root = until_found("CreateVolume from the new snapshot", || {
        ec2.create_volume()
            .snapshot_id(&snap)
            .availability_zone(&az)
            .encrypted(true)
            .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
            .send()
    })
    .await
    .volume_id
    .unwrap();
    wait_state(&ec2, &id, "stopped").await;
    ec2.detach_volume()
        .volume_id(&old_root)
        .instance_id(&id)
        .send()
        .await
        .unwrap();

    // No root volume: starting fails as on AWS.
    let err = ec2
        .start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("IncorrectState"), "{err:?}");

    wait_volume(&ec2, &new_root, "available").await;
    ec2.attach_volume()
        .volume_id(&new_root)
        .instance_id(&id)
        .device("/dev/sda1")
        .send()
        .await
        .unwrap();
    ec2.start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_ssh(&keys, "10.0.1.30", BOOT_LIMIT); // same host key: known_hosts would refuse a new one
    eprintln!(
        "figure: volume from snapshot + detach + attach + start + SSH: {:?}",
        t.elapsed()
    );
    assert_eq!(
        ssh_ok(&keys, "10.0.1.30", "cat /home/ubuntu/before.txt"),
        "before\n"
    );
    assert_eq!(
        ssh_ok(
            &keys,
            "10.0.1.30",
            "test -e /home/ubuntu/after.txt && echo present || echo absent"
        )
        .trim(),
        "absent"
    );

    assert_eq!(root_volume(&ec2, &id).await, new_root);
    let vols = ec2
        .describe_volumes()
        .volume_ids(&new_root)
        .send()
        .await
        .unwrap();
    let v = &vols.volumes()[0];
    assert_eq!(v.encrypted(), Some(true));
    assert_eq!(v.attachments()[0].device(), Some("/dev/sda1"));
    assert_eq!(v.attachments()[0].instance_id(), Some(id.as_str()));
}

#[tokio::test]
async fn encrypted_snapshot_copy_then_volume_and_deletes_free_the_disk() {
    let sb = Sandbox::acquire();
    let (ec2, net, keys) = ready_to_launch().await;
    let (subnet, az) = net.subnets[0].clone();
    let id = run_instance(&ec2, &subnet, "10.0.1.60", "op", false, None).await;
    wait_ssh(&keys, "10.0.1.60", BOOT_LIMIT);
    ssh_ok(
        &keys,
        "10.0.1.60",
        "echo data > /home/ubuntu/data.txt && sync",
    );
    let old_root = root_volume(&ec2, &id).await;
    ec2.stop_instances().instance_ids(&id).send().await.unwrap();

    let plain = ec2
        .create_snapshot()
        .volume_id(&old_root)
        .send()
        .await
        .unwrap()
        .snapshot_id
        .unwrap();
    let copy = until_found("CopySnapshot of the new snapshot", || {
        ec2.copy_snapshot()
            .source_snapshot_id(&plain)
            .source_region("us-east-1")
            .encrypted(true)
            .send()
    })
    .await
    .snapshot_id
    .unwrap();
    let new_root = until_found("CreateVolume from the copy", || {
        ec2.create_volume()
            .snapshot_id(&copy)
            .availability_zone(&az)
            .send()
    })
    .await
    .volume_id
    .unwrap();
    wait_volume(&ec2, &new_root, "available").await;
    wait_state(&ec2, &id, "stopped").await;
    ec2.detach_volume()
        .volume_id(&old_root)
        .instance_id(&id)
        .send()
        .await
        .unwrap();
    ec2.attach_volume()
        .volume_id(&new_root)
        .instance_id(&id)
        .device("/dev/sda1")
        .send()
        .await
        .unwrap();
    ec2.start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_ssh(&keys, "10.0.1.60", BOOT_LIMIT);
    assert_eq!(
        ssh_ok(&keys, "10.0.1.60", "cat /home/ubuntu/data.txt"),
        "data\n"
    );

    // Deleting the plaintext snapshot and old volume removes their data from the disk.
    for dir in [sb.paths.snapshot(&plain), sb.paths.volume(&old_root)] {
        assert!(dir.exists(), "{} missing", dir.display());
    }
    ec2.delete_snapshot()
        .snapshot_id(&plain)
        .send()
        .await
        .unwrap();
    ec2.delete_volume()
        .volume_id(&old_root)
        .send()
        .await
        .unwrap();
    assert!(!sb.paths.snapshot(&plain).exists());
    assert!(!sb.paths.volume(&old_root).exists());
    assert!(sb.paths.snapshot(&copy).exists());
}
