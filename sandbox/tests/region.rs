//! The sandbox's "done when" checks for instances as hosts, through the real aws-sdk-ec2
//! against the front and the real `ssh` client against booted hosts: a launch boots a host
//! reachable by SSH with apt, stop/start keeps its files, terminate removes it, a reboot comes
//! back, cloud-config, three launches at once, the no-init image. Run inside the sandbox:
//! `redisctl-sandbox exec -- cargo test -p redisctl-sandbox`. Each test takes the shared sandbox
//! (lock + reset) first, and fails when there is no sandbox. The root swap and snapshots are in
//! `volumes.rs`, stats and faults in `control.rs`.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn run_instance_boots_a_host_reachable_by_ssh_with_apt() {
    let sb = Sandbox::acquire();
    let (ec2, net, keys) = ready_to_launch().await;
    public_subnet(&ec2, &net).await;

    let t = Instant::now();
    let id = run_instance(&ec2, &net.subnets[0].0, "10.0.1.10", "op", true, None).await;
    let launched = t.elapsed();
    let ssh_after = wait_ssh(&keys, "10.0.1.10", BOOT_LIMIT);
    eprintln!(
        "figure: RunInstances answered in {launched:?}; SSH login {ssh_after:?} after the call"
    );

    // Real systemd as PID 1, fully up.
    assert_eq!(
        ssh_ok(&keys, "10.0.1.10", "systemctl is-system-running --wait").trim(),
        "running"
    );
    assert_eq!(
        ssh_ok(&keys, "10.0.1.10", "hostname").trim(),
        "ip-10-0-1-10"
    );
    assert_eq!(ssh_ok(&keys, "10.0.1.10", "id -un").trim(), "ubuntu");
    // Password logins are off.
    assert!(ssh_ok(&keys, "10.0.1.10", "sudo sshd -T").contains("passwordauthentication no"));

    // The real install step, from the archive on the emulated internet (through the internet
    // gateway, from the host's public IP).
    let out = ssh_ok(
        &keys,
        "10.0.1.10",
        "sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null && redis-server --version && systemctl is-active redis-server",
    );
    assert!(out.contains("v=7.0.15"), "{out}");
    assert!(out.trim_end().ends_with("active"), "{out}");

    // No route off the machine from the operator namespace or from the host (no packet sent).
    let route = std::process::Command::new("ip")
        .args(["route", "get", "192.0.2.1"])
        .output()
        .unwrap();
    assert!(
        !route.status.success(),
        "the operator namespace has a route off the machine"
    );
    // The host's only way out is its subnet's gateway, the bridge in the operator namespace.
    let links = ssh_ok(
        &keys,
        "10.0.1.10",
        "ls /sys/class/net | sort | tr '\\n' ' '",
    );
    assert_eq!(links.trim(), "eth0 lo");
    assert!(ssh_ok(&keys, "10.0.1.10", "ip route get 192.0.2.1").contains("via 10.0.1.1 dev eth0"));

    // A t2.micro has 1 GiB (DescribeInstanceTypes): more than that is not there for a process.
    let held = ssh(
        &keys,
        "10.0.1.10",
        "python3 -c 'b = bytearray(1536 * 1024 * 1024); print(len(b))'",
    );
    assert!(
        !held.status.success(),
        "1.5 GiB fit in a t2.micro: {}",
        String::from_utf8_lossy(&held.stdout)
    );
    assert!(
        ssh_ok(
            &keys,
            "10.0.1.10",
            "python3 -c 'b = bytearray(512 * 1024 * 1024); print(len(b))'"
        )
        .contains("536870912")
    );

    let hosts = sb.hosts();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].instance_id, id);
    assert_eq!(hosts[0].state, "running");
    if let Some(pid) = hosts[0].pid {
        eprintln!(
            "figure: memory per idle host (PSS of its processes): {} MiB",
            host_pss_kib(pid) / 1024
        );
    }
}

/// Sum of the proportional set size of a process and all its descendants.
fn host_pss_kib(root: u32) -> u64 {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split_whitespace().nth(1).unwrap().parse().unwrap();
        children.entry(ppid).or_default().push(pid);
    }
    let mut total = 0;
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            total += s
                .lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0);
        }
        todo.extend(children.get(&p).cloned().unwrap_or_default());
    }
    total
}

#[tokio::test]
async fn a_file_survives_stop_and_start_and_ssh_is_refused_while_stopped() {
    let sb = Sandbox::acquire();
    let (ec2, net, keys) = ready_to_launch().await;
    let id = run_instance(&ec2, &net.subnets[0].0, "10.0.1.20", "op", false, None).await;
    wait_ssh(&keys, "10.0.1.20", BOOT_LIMIT);
    ssh_ok(
        &keys,
        "10.0.1.20",
        "echo kept > /home/ubuntu/kept.txt && sudo sh -c 'echo root-kept > /etc/kept.conf' && sync",
    );

    let t = Instant::now();
    ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    eprintln!(
        "figure: StopInstances (clean shutdown) answered in {:?}",
        t.elapsed()
    );
    let stopping = wait_state(&ec2, &id, "stopped").await;
    eprintln!("figure: stopping → stopped after {stopping:?}");
    let out = ssh(&keys, "10.0.1.20", "true");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Connection refused"), "while stopped: {err}");
    assert!(
        sb.hosts().iter().all(|h| h.state.starts_with("stopped")),
        "{:?}",
        sb.hosts()
    );

    ec2.start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_ssh(&keys, "10.0.1.20", BOOT_LIMIT);
    assert_eq!(
        ssh_ok(
            &keys,
            "10.0.1.20",
            "cat /home/ubuntu/kept.txt /etc/kept.conf"
        ),
        "kept\nroot-kept\n"
    );
}

#[tokio::test]
async fn terminate_removes_the_host() {
    let sb = Sandbox::acquire();
    let (ec2, net, keys) = ready_to_launch().await;
    let id = run_instance(&ec2, &net.subnets[0].0, "10.0.1.40", "op", true, None).await;
    wait_ssh(&keys, "10.0.1.40", BOOT_LIMIT);
    let root = root_volume(&ec2, &id).await;
    let pid = sb.hosts()[0].pid.expect("a running host has a pid");
    assert!(sb.paths.volume(&root).exists());

    ec2.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_state(&ec2, &id, "terminated").await;
    assert!(sb.hosts().is_empty(), "{:?}", sb.hosts());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "nspawn {pid} still runs"
    );
    assert!(!std::path::Path::new(&format!("/run/netns/rsbx-{id}")).exists());
    assert!(
        !sb.paths.volume(&root).exists(),
        "the root volume (DeleteOnTermination) is still on disk"
    );
    let out = ssh(&keys, "10.0.1.40", "true");
    assert!(!out.status.success());
}

#[tokio::test]
async fn a_guest_reboot_comes_back_by_itself() {
    let sb = Sandbox::acquire();
    let (ec2, net, keys) = ready_to_launch().await;
    let id = run_instance(&ec2, &net.subnets[0].0, "10.0.1.50", "op", true, None).await;
    wait_ssh(&keys, "10.0.1.50", BOOT_LIMIT);
    let first_pid = sb.hosts()[0].pid;
    let _ = ssh(
        &keys,
        "10.0.1.50",
        "sudo systemd-run --on-active=1 --timer-property=AccuracySec=10ms systemctl reboot",
    );
    let t = Instant::now();
    loop {
        let h = &sb.hosts()[0];
        if h.boots == 2 && h.state == "running" {
            assert_ne!(h.pid, first_pid);
            break;
        }
        assert!(
            t.elapsed() < BOOT_LIMIT,
            "the host did not come back after a guest reboot: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_ssh(&keys, "10.0.1.50", BOOT_LIMIT);
    assert_eq!(
        ssh_ok(&keys, "10.0.1.50", "systemctl is-system-running --wait").trim(),
        "running"
    );

    // RebootInstances through the API: a clean shutdown and a new boot, data kept.
    ssh_ok(&keys, "10.0.1.50", "echo kept > kept.txt && sync");
    let before = sb.hosts()[0].pid;
    ec2.reboot_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    assert_ne!(sb.hosts()[0].pid, before);
    wait_ssh(&keys, "10.0.1.50", BOOT_LIMIT);
    assert_eq!(ssh_ok(&keys, "10.0.1.50", "cat kept.txt"), "kept\n");
}

#[tokio::test]
async fn a_stop_right_after_launch_is_still_a_clean_shutdown() {
    let sb = Sandbox::acquire();
    let (ec2, net, keys) = ready_to_launch().await;
    let id = run_instance(&ec2, &net.subnets[0].0, "10.0.1.70", "op", true, None).await;
    // No wait: the guest's systemd is still starting when the stop arrives.
    ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    let hosts = sb.hosts();
    assert_eq!(
        hosts[0].state, "stopped (exit status: 0)",
        "not a clean shutdown: {hosts:?}"
    );
    wait_state(&ec2, &id, "stopped").await;
    ec2.start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_ssh(&keys, "10.0.1.70", BOOT_LIMIT);
}

#[tokio::test]
async fn cloud_config_keys_hostnames_and_routing_between_subnets() {
    let _sb = Sandbox::acquire();
    let (ec2, net, keys) = ready_to_launch().await;

    // A host key generated here, given through user data, pinned before the first contact.
    let host_key = keys.dir.path().join("hostkey");
    keygen(&host_key, "root@node");
    let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
    let extra = keys.dir.path().join("extra");
    keygen(&extra, "extra");
    let extra_pub = std::fs::read_to_string(extra.with_extension("pub")).unwrap();
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let user_data = format!(
        "#cloud-config\nssh_authorized_keys:\n  - {}\nssh_keys:\n  ed25519_private: |\n{}\n  ed25519_public: {}\n",
        extra_pub.trim(),
        indent(&std::fs::read_to_string(&host_key).unwrap()),
        host_pub.trim()
    );
    std::fs::write(
        keys.known_hosts(),
        format!("10.0.2.10 {}\n", host_pub.trim()),
    )
    .unwrap();

    run_instance(&ec2, &net.subnets[0].0, "10.0.1.10", "op", true, None).await;
    run_instance(
        &ec2,
        &net.subnets[1].0,
        "10.0.2.10",
        "op",
        true,
        Some(&user_data),
    )
    .await;
    wait_ssh(&keys, "10.0.1.10", BOOT_LIMIT);
    // Strict: only the pinned host key is accepted; the extra key from user data logs in.
    let t = Instant::now();
    let out = loop {
        let out = ssh_with(&keys, &extra, "10.0.2.10", "hostname", true);
        if out.status.success() || t.elapsed() > BOOT_LIMIT {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ip-10-0-2-10");

    // Hosts in different subnets reach each other through the VPC router (the bridge).
    ssh_ok(
        &keys,
        "10.0.1.10",
        "timeout 5 bash -c 'echo > /dev/tcp/10.0.2.10/22'",
    );
    ssh_ok(&keys, "10.0.1.10", "ping -c1 -W2 10.0.2.10 >/dev/null");
}

#[tokio::test]
async fn three_hosts_launched_at_once_all_come_up() {
    let sb = Sandbox::acquire();
    let (ec2, net, keys) = ready_to_launch().await;
    let ips = ["10.0.1.11", "10.0.2.12", "10.0.1.13"];
    let t = Instant::now();
    let (s1, s2) = (&net.subnets[0].0, &net.subnets[1].0);
    let (a, b, c) = tokio::join!(
        run_instance(&ec2, s1, ips[0], "op", true, None),
        run_instance(&ec2, s2, ips[1], "op", true, None),
        run_instance(&ec2, s1, ips[2], "op", true, None),
    );
    let launched = t.elapsed();
    for ip in ips {
        wait_ssh(&keys, ip, BOOT_LIMIT);
    }
    eprintln!(
        "figure: 3 concurrent RunInstances answered in {launched:?}; all 3 SSH logins after {:?}",
        t.elapsed()
    );
    let hosts = sb.hosts();
    assert_eq!(hosts.len(), 3);
    for id in [a, b, c] {
        assert!(
            hosts
                .iter()
                .any(|h| h.instance_id == id && h.state == "running"),
            "{hosts:?}"
        );
    }
    for h in &hosts {
        eprintln!(
            "figure: idle host {} PSS {} MiB",
            h.private_ip,
            host_pss_kib(h.pid.unwrap()) / 1024
        );
    }
    // Each guest's systemd has a cgroup tree of its own (guests booting at once used to remove
    // each other's unit cgroups), and every unit of the boot started: none failed.
    for h in &hosts {
        // nspawn itself sits in `supervisor` below its host's cgroup, the guest in `payload`.
        let own = format!("/{}/{}/", redisctl_sandbox::cgroups::PARENT, h.instance_id);
        let cg = redisctl_sandbox::cgroups::of_process(h.pid.unwrap()).unwrap_or_default();
        assert!(cg.starts_with(&own), "{cg} is not below {own}: {h:?}");
    }
    for ip in ips {
        ssh_ok(
            &keys,
            ip,
            "s=$(systemctl is-system-running --wait); [ \"$s\" = running ] || { echo \"$s\"; systemctl --failed --no-legend; exit 1; }",
        );
    }
    // Full mesh over the VPC router.
    ssh_ok(
        &keys,
        ips[0],
        "ping -c1 -W2 10.0.2.12 >/dev/null && ping -c1 -W2 10.0.1.13 >/dev/null",
    );
}

/// The no-init image: the same base booted without systemd (a shell script is PID 1). SSH,
/// sudo, the hostname and apt (from a public subnet) work; nothing says systemd booted; a
/// daemon started later (the stock redis-server, by the package's init script) is stopped
/// cleanly by StopInstances, and nothing starts it again at the next boot.
#[tokio::test]
async fn a_host_without_an_init_system_runs_sshd_and_stops_cleanly() {
    let sb = Sandbox::acquire();
    let (ec2, net, keys) = ready_to_launch().await;
    public_subnet(&ec2, &net).await;
    let ip = "10.0.1.80";
    let id = run_instance_from(
        &ec2,
        redisctl_sandbox::NOINIT_AMI,
        &net.subnets[0].0,
        ip,
        "op",
        true,
        None,
    )
    .await;
    let ssh_after = wait_ssh(&keys, ip, BOOT_LIMIT);
    eprintln!("figure: no-init host: SSH login {ssh_after:?} after RunInstances");

    // sd_booted() is false: no /run/systemd/system; PID 1 is the sandbox's init script.
    assert_eq!(
        ssh_ok(
            &keys,
            ip,
            "if [ -d /run/systemd/system ]; then echo systemd; else echo none; fi"
        )
        .trim(),
        "none"
    );
    assert_eq!(ssh_ok(&keys, ip, "cat /proc/1/comm").trim(), "bash");
    assert!(
        !ssh(&keys, ip, "systemctl is-system-running")
            .status
            .success(),
        "systemctl talks to a system manager on a host without one"
    );
    assert_eq!(ssh_ok(&keys, ip, "hostname").trim(), "ip-10-0-1-80");
    assert_eq!(ssh_ok(&keys, ip, "sudo id -un").trim(), "root");

    // apt, from the archive. Without a runlevel invoke-rc.d starts nothing; the package's init script
    // starts the stock server (a daemon re-parented to PID 1) when asked.
    let out = ssh_ok(
        &keys,
        ip,
        "sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null 2>&1 && redis-server --version",
    );
    assert!(out.contains("v=7.0.15"), "{out}");
    assert!(!ssh(&keys, ip, "redis-cli ping").status.success());
    let out = ssh_ok(
        &keys,
        ip,
        "sudo /etc/init.d/redis-server start >/dev/null && for i in $(seq 100); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.1; done; redis-cli ping && redis-cli set kept yes",
    );
    assert_eq!(out, "PONG\nOK\n");

    ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    let hosts = sb.hosts();
    assert_eq!(
        hosts[0].state, "stopped (exit status: 0)",
        "not a clean shutdown: {hosts:?}"
    );
    let console = std::fs::read_to_string(sb.paths.logs().join(format!("{id}.log"))).unwrap();
    assert!(
        console.contains("sandbox-init: every process stopped"),
        "{console}"
    );
    assert!(!console.contains("SIGKILL"), "{console}");

    wait_state(&ec2, &id, "stopped").await;
    ec2.start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_ssh(&keys, ip, BOOT_LIMIT);
    // Redis got SIGTERM and shut down by itself (saving its data); no init started it again.
    let log = ssh_ok(&keys, ip, "sudo cat /var/log/redis/redis-server.log");
    assert!(
        log.contains("Received SIGTERM scheduling shutdown"),
        "{log}"
    );
    assert!(log.contains("ready to exit, bye bye"), "{log}");
    assert!(
        !ssh(&keys, ip, "redis-cli ping").status.success(),
        "something started redis-server at boot on a host without an init system"
    );
    assert_eq!(
        ssh_ok(
            &keys,
            ip,
            "sudo -u redis redis-server --port 6390 --daemonize yes --dir /var/lib/redis --dbfilename dump.rdb >/dev/null && for i in $(seq 100); do redis-cli -p 6390 ping >/dev/null 2>&1 && break; sleep 0.1; done; redis-cli -p 6390 get kept"
        )
        .trim(),
        "yes"
    );
}
