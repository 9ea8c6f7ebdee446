//! Each host's own `vm.overcommit_memory` and transparent hugepage setting
//! (`redisctl_sandbox::kernel`): root in the guest sets them as on an EC2 instance (sysctl -p of
//! a file in /etc/sysctl.d, echo into the path, a tmpfiles.d `w` line), they read back in the
//! guest and in nothing else — this machine's own values stay as they were — and every boot of
//! the host starts from the kernel's defaults, set again only by what the guest's own boot
//! applies. Run inside the sandbox:
//! `redisctl-sandbox exec -- cargo test -p redisctl-sandbox --test kernel_values`. Each test
//! takes the shared sandbox (lock + reset) first, and fails when there is no sandbox.

mod common;

use common::*;
use redisctl_sandbox::kernel::{OVERCOMMIT_MEMORY, TRANSPARENT_HUGEPAGE};

/// Both values as the guest reads them.
const READ: &str = "cat /proc/sys/vm/overcommit_memory /sys/kernel/mm/transparent_hugepage/enabled";
const DEFAULTS: &str = "0\nalways [madvise] never\n";

/// This machine's own values (none for transparent hugepages on a kernel without them).
fn machine() -> (String, Option<String>) {
    (
        std::fs::read_to_string(OVERCOMMIT_MEMORY.path).unwrap(),
        std::fs::read_to_string(TRANSPARENT_HUGEPAGE.path).ok(),
    )
}

/// The host's files are bound in its container's mount namespace only, never in this one.
fn assert_nothing_mounted_here(sb: &Sandbox) {
    let dir = sb.paths.kernel_values().display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !info.lines().any(|l| l.contains(&dir)),
        "a mount of {dir} in this machine's namespace:\n{info}"
    );
}

fn has_hugepages() -> bool {
    let has = machine().1.is_some();
    if !has {
        eprintln!(
            "this machine's kernel has no transparent hugepages: only overcommit_memory is checked"
        );
    }
    has
}

#[tokio::test]
async fn a_host_sets_its_own_kernel_values_and_each_boot_starts_from_the_defaults() {
    let before = machine();
    let sb = Sandbox::acquire();
    if !has_hugepages() {
        return;
    }
    let (ec2, net, keys) = ready_to_launch().await;
    let ip = "10.0.1.40";
    let id = run_instance(&ec2, &net.subnets[0].0, ip, "op", false, None).await;
    wait_ssh(&keys, ip, BOOT_LIMIT);
    let files = sb.paths.host_kernel(&id);
    assert_eq!(ssh_ok(&keys, ip, READ), DEFAULTS);
    assert_nothing_mounted_here(&sb);

    // As redisctl will: a file in /etc/sysctl.d applied with sysctl -p, and echo.
    ssh_ok(
        &keys,
        ip,
        "echo 'vm.overcommit_memory = 1' | sudo tee /etc/sysctl.d/60-redis.conf >/dev/null \
         && sudo sysctl -p /etc/sysctl.d/60-redis.conf \
         && echo never | sudo tee /sys/kernel/mm/transparent_hugepage/enabled >/dev/null",
    );
    assert_eq!(ssh_ok(&keys, ip, READ), "1\nnever\n");
    assert_eq!(
        ssh_ok(&keys, ip, "/usr/sbin/sysctl -n vm.overcommit_memory"),
        "1\n"
    );
    // The host's own files hold them, and nothing of this machine's.
    assert_eq!(
        std::fs::read_to_string(files.join(OVERCOMMIT_MEMORY.file)).unwrap(),
        "1\n"
    );
    assert_eq!(
        std::fs::read_to_string(files.join(TRANSPARENT_HUGEPAGE.file)).unwrap(),
        "never\n"
    );
    assert_eq!(machine(), before, "this machine's own values changed");
    // echo and sysctl -w land there too.
    ssh_ok(
        &keys,
        ip,
        "sudo sh -c 'echo 2 > /proc/sys/vm/overcommit_memory'",
    );
    assert_eq!(
        ssh_ok(&keys, ip, "cat /proc/sys/vm/overcommit_memory"),
        "2\n"
    );
    ssh_ok(&keys, ip, "sudo sysctl -w vm.overcommit_memory=1");
    assert_eq!(
        ssh_ok(&keys, ip, "cat /proc/sys/vm/overcommit_memory"),
        "1\n"
    );
    // /proc/sys/net is the guest's own network namespace's: writable, as on EC2, and nobody
    // else's (this test runs in the operator namespace).
    let somaxconn = || std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();
    let somaxconn_before = somaxconn();
    ssh_ok(&keys, ip, "sudo sysctl -w net.core.somaxconn=1000");
    assert_eq!(
        ssh_ok(&keys, ip, "cat /proc/sys/net/core/somaxconn"),
        "1000\n"
    );
    assert_eq!(somaxconn(), somaxconn_before);
    // Everything else of /proc/sys and /sys stays read-only.
    for cmd in [
        "sudo sysctl -w vm.swappiness=1",
        "sudo sh -c 'echo 1 > /proc/sys/vm/swappiness'",
        "sudo sh -c 'echo never > /sys/kernel/mm/transparent_hugepage/defrag'",
    ] {
        let out = ssh(&keys, ip, cmd);
        assert!(
            !out.status.success(),
            "{cmd} worked: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Read-only file system")
                || String::from_utf8_lossy(&out.stderr).contains("permission denied"),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(machine(), before, "this machine's own values changed");

    // A reboot: the kernel starts from its defaults, and the guest's systemd-sysctl applies
    // /etc/sysctl.d at boot; what was only echoed is gone.
    ec2.reboot_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_ssh(&keys, ip, BOOT_LIMIT);
    assert_eq!(ssh_ok(&keys, ip, READ), "1\nalways [madvise] never\n");
    assert_eq!(
        ssh_ok(&keys, ip, "systemctl is-active systemd-sysctl.service"),
        "active\n"
    );

    // Without the sysctl.d file and with a tmpfiles.d line, through a stop and a start: the
    // files stay while the instance is stopped; the boot resets them and systemd-tmpfiles-setup
    // writes the line. systemd-tmpfiles writes `w` lines at the start of the file without
    // truncating it (the kernel takes any write as the whole value; a file keeps the rest), so
    // the file reads "never" followed by what the default had after its first 5 bytes.
    ssh_ok(
        &keys,
        ip,
        "sudo rm /etc/sysctl.d/60-redis.conf \
         && echo 'w /sys/kernel/mm/transparent_hugepage/enabled - - - - never' \
            | sudo tee /etc/tmpfiles.d/60-redis-thp.conf >/dev/null",
    );
    ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    wait_state(&ec2, &id, "stopped").await;
    assert_eq!(
        std::fs::read_to_string(files.join(OVERCOMMIT_MEMORY.file)).unwrap(),
        "1\n",
        "a stopped host keeps its files"
    );
    ec2.start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_ssh(&keys, ip, BOOT_LIMIT);
    assert_eq!(ssh_ok(&keys, ip, READ), "0\nnevers [madvise] never\n");
    assert_nothing_mounted_here(&sb);
    assert_eq!(machine(), before, "this machine's own values changed");

    // The files go with the instance.
    ec2.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    assert!(!files.exists(), "{} is left", files.display());
    assert_eq!(machine(), before, "this machine's own values changed");
}

#[tokio::test]
async fn a_host_without_init_has_its_own_kernel_values_too_and_a_reset_removes_them() {
    let before = machine();
    let sb = Sandbox::acquire();
    if !has_hugepages() {
        return;
    }
    let (ec2, net, keys) = ready_to_launch().await;
    let ip = "10.0.1.41";
    let id = run_instance_from(
        &ec2,
        redisctl_sandbox::NOINIT_AMI,
        &net.subnets[0].0,
        ip,
        "op",
        false,
        None,
    )
    .await;
    wait_ssh(&keys, ip, BOOT_LIMIT);
    assert_eq!(
        ssh_ok(
            &keys,
            ip,
            "test -d /run/systemd/system && echo systemd || echo none"
        ),
        "none\n"
    );
    assert_eq!(ssh_ok(&keys, ip, READ), DEFAULTS);
    ssh_ok(
        &keys,
        ip,
        "sudo sh -c 'echo 1 > /proc/sys/vm/overcommit_memory \
         && echo never > /sys/kernel/mm/transparent_hugepage/enabled'",
    );
    assert_eq!(ssh_ok(&keys, ip, READ), "1\nnever\n");
    assert!(
        !ssh(&keys, ip, "sudo sysctl -w vm.swappiness=1")
            .status
            .success()
    );
    assert_nothing_mounted_here(&sb);
    assert_eq!(machine(), before, "this machine's own values changed");

    // A reset of the region takes them away with the host.
    let files = sb.paths.host_kernel(&id);
    assert!(files.exists());
    sb.reset();
    assert!(!files.exists(), "{} is left", files.display());
    assert_eq!(machine(), before, "this machine's own values changed");
}

#[tokio::test]
async fn redis_under_its_hardened_unit_reads_the_hosts_own_values() {
    let before = machine();
    let sb = Sandbox::acquire();
    if !has_hugepages() {
        return;
    }
    let (ec2, net, keys) = ready_to_launch().await;
    public_subnet(&ec2, &net).await;
    let ip = "10.0.1.42";
    run_instance(&ec2, &net.subnets[0].0, ip, "op", false, None).await;
    wait_ssh(&keys, ip, BOOT_LIMIT);
    ssh_ok(
        &keys,
        ip,
        "sudo sysctl -q -w vm.overcommit_memory=1 \
         && echo never | sudo tee /sys/kernel/mm/transparent_hugepage/enabled >/dev/null",
    );
    apt_update_ok(&keys, ip);
    ssh_ok(
        &keys,
        ip,
        "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null",
    );
    // The stock unit mounts a /proc of its own; it still shows the host's value.
    assert_eq!(
        ssh_ok(&keys, ip, "systemctl show -p ProtectProc redis-server"),
        "ProtectProc=invisible\n"
    );
    let seen = || {
        ssh_ok(
            &keys,
            ip,
            "p=$(systemctl show -p MainPID --value redis-server) && sudo cat \
             /proc/$p/root/proc/sys/vm/overcommit_memory \
             /proc/$p/root/sys/kernel/mm/transparent_hugepage/enabled",
        )
    };
    let warned = || {
        ssh_ok(
            &keys,
            ip,
            "sudo grep -c 'WARNING Memory overcommit must be enabled' /var/log/redis/redis-server.log || true",
        )
        .trim()
        .to_string()
    };
    assert_eq!(seen(), "1\nnever\n");
    assert_eq!(warned(), "0");
    // Back to the default and a restart: Redis reads 0 and warns, as on EC2.
    ssh_ok(
        &keys,
        ip,
        "sudo sysctl -q -w vm.overcommit_memory=0 && sudo systemctl restart redis-server",
    );
    assert_eq!(seen(), "0\nnever\n");
    assert_eq!(warned(), "1");
    assert_nothing_mounted_here(&sb);
    assert_eq!(machine(), before, "this machine's own values changed");
}
