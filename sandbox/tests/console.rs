//! GetConsoleOutput as EC2 answers for an Ubuntu image: cloud-init's host key fingerprints and
//! keys, from the keys the host's sshd actually serves, so that a client can verify a new
//! instance's host key through a channel nobody with only EC2 tag rights can write. Run inside
//! the sandbox: `redisctl-sandbox exec -- cargo test -p redisctl-sandbox --test console`.

mod common;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const BOOT_LIMIT: Duration = Duration::from_secs(60);
/// The region's speed in these tests: `Latest` output after 20 s × 0.05 = 1 s, the buffered
/// output after 180 s × 0.05 = 9 s.
const SPEED: f64 = 0.05;

/// The decoded console output (`None`: no `output` in the answer).
async fn console(ec2: &aws_sdk_ec2::Client, id: &str, latest: bool) -> Option<String> {
    use base64::Engine;
    let out = until_found(id, || {
        ec2.get_console_output()
            .instance_id(id)
            .latest(latest)
            .send()
    })
    .await;
    assert_eq!(out.instance_id(), Some(id));
    assert!(out.timestamp().is_some(), "no timestamp: {out:?}");
    out.output().filter(|o| !o.is_empty()).map(|o| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(o)
                .expect("output is not base64"),
        )
        .unwrap()
    })
}

/// Waits (bounded) until the console shows output; returns it and how long that took.
async fn wait_console(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    latest: bool,
    limit: Duration,
) -> (String, Duration) {
    let t = Instant::now();
    loop {
        if let Some(text) = console(ec2, id, latest).await {
            return (text, t.elapsed());
        }
        assert!(
            t.elapsed() < limit,
            "no console output for {id} (Latest={latest}) after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The fingerprint lines between the markers, without cloud-init's logger prefix
/// (`<14>Jan 15 10:00:00 ec2: `), as a client reads them.
fn fingerprints(console: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in console.lines() {
        let Some((_, rest)) = line.split_once("ec2: ") else {
            continue;
        };
        match rest.trim() {
            "-----BEGIN SSH HOST KEY FINGERPRINTS-----" => inside = true,
            "-----END SSH HOST KEY FINGERPRINTS-----" => inside = false,
            l if inside => out.push(l.to_string()),
            _ => {}
        }
    }
    out
}

/// The public key lines of the KEYS block.
fn key_lines(console: &str) -> Vec<String> {
    let start = console
        .find("-----BEGIN SSH HOST KEY KEYS-----\n")
        .expect("no BEGIN SSH HOST KEY KEYS");
    let end = console
        .find("-----END SSH HOST KEY KEYS-----")
        .expect("no END SSH HOST KEY KEYS");
    console[start..end]
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// The `SHA256:…` fingerprint of the line of type `label` (`ED25519`).
fn fingerprint_of(lines: &[String], label: &str) -> Option<String> {
    lines
        .iter()
        .find(|l| l.ends_with(&format!("({label})")))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
}

/// What `ssh-keygen -l` says of a key (`SHA256:…`) given as `type base64 …`.
fn keygen_fingerprint(key_line: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("k.pub");
    std::fs::write(&f, format!("{key_line}\n")).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen -lf {key_line}");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// The ed25519 host key the host's sshd presents (`ssh-keyscan` from the operator namespace):
/// `ssh-ed25519 AAAA…`.
fn served_ed25519(ip: &str) -> String {
    let out = Command::new("ssh-keyscan")
        .args(["-T", "5", "-t", "ed25519", ip])
        .output()
        .expect("ssh-keyscan (openssh-client) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("ssh-ed25519"))
        .unwrap_or_else(|| panic!("ssh-keyscan {ip} gave no ed25519 key: {text}"));
    line.split_whitespace()
        .skip(1)
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn console_output_prints_the_host_keys_sshd_serves() {
    let sb = Sandbox::acquire();
    let _speed = at_speed(&sb, SPEED);
    let ec2 = client().await;
    let net = network(&ec2).await;
    let keys = Keys::new();
    import_key(&ec2, "op", &keys).await;

    let id = run_instance(&ec2, &net.subnets[0].0, "10.0.1.10", "op", false, None).await;
    let booted = Instant::now();
    // Nothing is posted yet: the buffered output comes minutes after a boot on EC2.
    assert_eq!(console(&ec2, &id, false).await, None);

    let (text, waited) = wait_console(&ec2, &id, true, BOOT_LIMIT).await;
    eprintln!(
        "figure: console output (Latest=true) shown {waited:?} after the first ask, {:?} after RunInstances answered",
        booted.elapsed()
    );
    eprintln!("the console of {id}:\n{text}");
    assert!(!text.contains("2.6.16-xenU"), "moto's sample text: {text}");
    let fps = fingerprints(&text);
    assert!(
        fps.iter()
            .all(|l| l.starts_with("256 SHA256:") && l.contains(" root@ip-10-0-1-10 (")),
        "{fps:?}\n{text}"
    );
    assert_eq!(fps.len(), 2, "ed25519 and ecdsa: {text}");
    wait_ssh(&keys, "10.0.1.10", BOOT_LIMIT);
    let served = served_ed25519("10.0.1.10");
    let console_fp = fingerprint_of(&fps, "ED25519").expect("no ED25519 fingerprint");
    assert_eq!(console_fp, keygen_fingerprint(&served), "{text}");
    assert!(
        key_lines(&text)
            .iter()
            .any(|l| l.starts_with(&format!("{served} "))),
        "the served key is not in the KEYS block: {text}"
    );
    // The host's own file says the same.
    let file = ssh_ok(&keys, "10.0.1.10", "cat /etc/ssh/ssh_host_ed25519_key.pub");
    assert_eq!(keygen_fingerprint(file.trim()), console_fp);

    // Without Latest, the same output once EC2 posted it (9 s at this speed).
    let (buffered, _) = wait_console(&ec2, &id, false, BOOT_LIMIT).await;
    eprintln!(
        "figure: buffered console output (Latest=false) shown {:?} after RunInstances answered",
        booted.elapsed()
    );
    assert_eq!(buffered, text);

    // EC2 keeps the console of a stopped instance; after a start it shows the new boot's,
    // with the same keys (cloud-init does not make new ones for the same instance).
    ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    wait_state(&ec2, &id, "stopped").await;
    assert_eq!(
        console(&ec2, &id, true).await.as_deref(),
        Some(text.as_str())
    );
    ec2.start_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_ssh(&keys, "10.0.1.10", BOOT_LIMIT);
    let t = Instant::now();
    let again = loop {
        let c = console(&ec2, &id, true).await.unwrap();
        if c != text || t.elapsed() > BOOT_LIMIT {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(again, text, "the console of the new boot");
    assert_eq!(
        fingerprint_of(&fingerprints(&again), "ED25519"),
        Some(console_fp)
    );

    // Terminated: still answered (EC2 keeps the last output for a while; the region lists a
    // terminated instance for ever). An id the region never had: InvalidInstanceID.NotFound.
    ec2.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    wait_state(&ec2, &id, "terminated").await;
    assert!(console(&ec2, &id, true).await.is_some());
    let err = ec2
        .get_console_output()
        .instance_id("i-0123456789abcdef0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidInstanceID.NotFound"), "{err:?}");
}

#[tokio::test]
async fn console_output_prints_host_keys_given_in_cloud_config() {
    let sb = Sandbox::acquire();
    let _speed = at_speed(&sb, SPEED);
    let ec2 = client().await;
    let net = network(&ec2).await;
    let keys = Keys::new();
    import_key(&ec2, "op", &keys).await;

    let host_key = keys.dir.path().join("hostkey");
    keygen(&host_key, "root@pinned");
    let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let user_data = format!(
        "#cloud-config\nssh_keys:\n  ed25519_private: |\n{}\n  ed25519_public: {}\n",
        indent(&std::fs::read_to_string(&host_key).unwrap()),
        host_pub.trim()
    );
    let id = run_instance(
        &ec2,
        &net.subnets[1].0,
        "10.0.2.10",
        "op",
        false,
        Some(&user_data),
    )
    .await;
    let (text, _) = wait_console(&ec2, &id, true, BOOT_LIMIT).await;
    let fps = fingerprints(&text);
    // Only the given key: cloud-init makes no others when ssh_keys gives some.
    assert_eq!(fps.len(), 1, "{text}");
    let given_fp = keygen_fingerprint(host_pub.trim());
    assert_eq!(
        fps[0],
        format!("256 {given_fp} root@pinned (ED25519)"),
        "{text}"
    );
    assert_eq!(key_lines(&text), [host_pub.trim().to_string()]);
    wait_ssh(&keys, "10.0.2.10", BOOT_LIMIT);
    assert_eq!(keygen_fingerprint(&served_ed25519("10.0.2.10")), given_fp);
}
