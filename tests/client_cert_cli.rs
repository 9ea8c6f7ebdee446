//! `redisctl client-cert`: a client certificate from the cluster CA in the state directory,
//! through the real binary, with no AWS and no node (the CA is made here as `apply` makes it).
//! Key 0600 and never printed, the certificate clientAuth-only and signed by the CA, the key
//! belonging to the certificate, the inventory line, and the refusals that write nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use redisctl::pki::{self, Ca};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "redisctl-client-cert-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/cluster.toml.example"),
        d.join("cluster.toml"),
    )
    .unwrap();
    d
}

fn redisctl(d: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redisctl"))
        .args(args)
        .current_dir(d)
        .env("NO_COLOR", "1")
        .output()
        .expect("run redisctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The state directory with a CA, as apply leaves it.
fn with_ca(d: &Path) -> Ca {
    let state = d.join(".redisctl/prod-redis");
    let ca = Ca::create("prod-redis", SystemTime::now(), 3650).unwrap();
    ca.save(&state).unwrap();
    Ca::load(&state).unwrap()
}

#[test]
fn issues_a_client_certificate_signed_by_the_cluster_ca() {
    let d = dir("issue");
    let ca = with_ca(&d);
    let out = redisctl(&d, &["client-cert", "app", "--out", "tls", "--days", "30"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    println!("{stdout}");
    assert!(!stdout.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"));
    assert!(
        stdout.contains("Issued a client certificate for CN=app (clientAuth only)"),
        "{stdout}"
    );
    assert!(stdout.contains("tls/app.key (0600"), "{stdout}");

    let (key, cert, ca_file) = (
        d.join("tls/app.key"),
        d.join("tls/app.crt"),
        d.join("tls/ca.crt"),
    );
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&cert), 0o644);
    assert_eq!(std::fs::read_to_string(&ca_file).unwrap(), ca.cert_pem());
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let info = pki::inspect(&cert_pem, ca.cert_pem()).unwrap();
    assert!(info.signed_by_ca);
    assert_eq!(info.subject_cn.as_deref(), Some("app"));
    assert!(
        info.client_auth && !info.server_auth && !info.is_ca,
        "{info:?}"
    );
    let days = info
        .not_after
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs_f64()
        / 86_400.0;
    assert!((29.9..30.01).contains(&days), "{days}");
    assert!(stdout.contains(&info.serial), "{stdout}");

    // The key is the certificate's: the same public key.
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let pair = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let der = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .unwrap()
        .1
        .contents;
    let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        x.public_key().subject_public_key.data.as_ref(),
        pair.public_key_raw()
    );

    // The inventory: one line per issue, no key.
    let inventory = d.join(".redisctl/prod-redis/client-certs.jsonl");
    assert_eq!(mode(&inventory), 0o600);
    let lines = std::fs::read_to_string(&inventory).unwrap();
    assert!(!lines.contains("PRIVATE"));
    let rec: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    assert_eq!(rec["cn"], "app");
    assert_eq!(rec["serial"], info.serial.as_str());
    assert_eq!(rec["sha256"], info.fingerprint_sha256.as_str());

    // Not replaced without --force; replaced with it (a new key and serial), recorded again.
    let again = redisctl(&d, &["client-cert", "app", "--out", "tls"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("app.key exists: pass --force"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), key_pem);
    let forced = redisctl(
        &d,
        &["client-cert", "app", "--out", "tls", "--force", "--json"],
    );
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let rec2: serde_json::Value = serde_json::from_str(text(&forced.stdout).trim()).unwrap();
    assert_ne!(rec2["serial"], rec["serial"]);
    assert_ne!(std::fs::read_to_string(&key).unwrap(), key_pem);
    assert_eq!(
        std::fs::read_to_string(&inventory).unwrap().lines().count(),
        2
    );
}

#[test]
fn refusals_write_nothing() {
    let d = dir("refuse");
    // No CA yet: apply makes it.
    let out = redisctl(&d, &["client-cert", "app", "--out", "tls"]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("there is no cluster CA in ./.redisctl/prod-redis:"),
        "{e}"
    );
    assert!(e.contains("run apply first"), "{e}");
    assert!(!d.join("tls").exists());

    with_ca(&d);
    // A name that is not a plain file name.
    let out = redisctl(&d, &["client-cert", "../app", "--out", "tls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("client name \"../app\" is not usable"));
    assert!(!d.join("tls").exists() && !d.join("app.key").exists());

    // A CA key readable by others is refused (as apply refuses it).
    let key = d.join(".redisctl/prod-redis/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = redisctl(&d, &["client-cert", "app", "--out", "tls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("run chmod 600 on it"),
        "{}",
        text(&out.stderr)
    );
    assert!(!d.join("tls").exists());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Never past the CA's own end.
    let d2 = dir("short-ca");
    let state = d2.join(".redisctl/prod-redis");
    let short = Ca::create(
        "prod-redis",
        SystemTime::now() - Duration::from_secs(86_400),
        11,
    )
    .unwrap();
    short.save(&state).unwrap();
    let out = redisctl(
        &d2,
        &["client-cert", "app", "--out", "tls", "--days", "365"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("cut to the CA's own end"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn never_writes_into_the_state_directory_nor_over_another_ca() {
    let d = dir("state");
    with_ca(&d);
    let state = d.join(".redisctl/prod-redis");
    let key_before = std::fs::read(state.join("ca.key")).unwrap();
    // `ca` is the CA's own file name, refused whatever the directory.
    let out = redisctl(
        &d,
        &[
            "client-cert",
            "ca",
            "--out",
            ".redisctl/prod-redis",
            "--force",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("client name \"ca\" is not usable"),
        "{}",
        text(&out.stderr)
    );
    // Any name, into the state directory (or below it), with --force: refused.
    for out_dir in [".redisctl/prod-redis", ".redisctl/prod-redis/clients"] {
        let out = redisctl(&d, &["client-cert", "app", "--out", out_dir, "--force"]);
        assert!(!out.status.success(), "{out_dir}");
        assert!(
            text(&out.stderr).contains("is the state directory (or inside it)"),
            "{out_dir}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(std::fs::read(state.join("ca.key")).unwrap(), key_before);
    assert!(!state.join("app.key").exists());
    // Another cluster's ca.crt in the output directory is not replaced without --force.
    std::fs::create_dir_all(d.join("tls")).unwrap();
    let other = Ca::create("other", SystemTime::now(), 3650).unwrap();
    std::fs::write(d.join("tls/ca.crt"), other.cert_pem()).unwrap();
    let out = redisctl(&d, &["client-cert", "app", "--out", "tls"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("holds another CA certificate"),
        "{}",
        text(&out.stderr)
    );
    assert!(!d.join("tls/app.key").exists(), "a refusal wrote the key");
    let out = redisctl(&d, &["client-cert", "app", "--out", "tls", "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// During a CA rotation (a new CA in the state directory): the certificate comes from the new
/// CA (it must outlive the old one), `ca.crt` holds both CAs (the application keeps trusting
/// the nodes through every stage), the inventory line names the new CA, and a directory whose
/// ca.crt holds only the old CA is updated without --force (nothing of it is lost).
#[test]
fn during_a_ca_rotation_issues_from_the_new_ca_with_both_as_the_bundle() {
    let d = dir("rotation");
    let old = with_ca(&d);
    let state = d.join(".redisctl/prod-redis");
    pki::create_next(&state, "prod-redis", SystemTime::now()).unwrap();
    let next = Ca::load_pair(&state, pki::NEXT_CERT_FILE, pki::NEXT_KEY_FILE).unwrap();
    std::fs::create_dir_all(d.join("tls")).unwrap();
    std::fs::write(d.join("tls/ca.crt"), old.cert_pem()).unwrap();
    let out = redisctl(&d, &["client-cert", "app", "--out", "tls", "--days", "30"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let cert = std::fs::read_to_string(d.join("tls/app.crt")).unwrap();
    assert!(pki::inspect(&cert, next.cert_pem()).unwrap().signed_by_ca);
    assert!(!pki::inspect(&cert, old.cert_pem()).unwrap().signed_by_ca);
    let bundle = std::fs::read_to_string(d.join("tls/ca.crt")).unwrap();
    assert!(bundle.contains(old.cert_pem().trim()) && bundle.contains(next.cert_pem().trim()));
    let inventory = pki::client::inventory(&state);
    assert_eq!(
        inventory[0].ca_sha256.as_deref(),
        Some(next.fingerprint().as_str())
    );

    // Another cluster's CA in the directory is still refused without --force.
    let other = Ca::create("prod-redis", SystemTime::now(), 3650).unwrap();
    std::fs::create_dir_all(d.join("elsewhere")).unwrap();
    std::fs::write(d.join("elsewhere/ca.crt"), other.cert_pem()).unwrap();
    let out = redisctl(&d, &["client-cert", "app", "--out", "elsewhere"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("holds another CA certificate"),
        "{}",
        text(&out.stderr)
    );
}

/// `redisctl output`: what an application needs, from the spec and the state directory only;
/// one value raw; the CA bundle (both CAs during a rotation); an unknown name refused.
#[test]
fn output_prints_the_endpoints_and_the_ca_bundle_offline() {
    let d = dir("output");
    let ca = with_ca(&d);
    let out = redisctl(&d, &["output"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("cluster = prod-redis\n"), "{text}");
    assert!(
        text.contains("endpoints = 10.0.1.10:6379,10.0.2.10:6379,10.0.3.10:6379\n"),
        "{text}"
    );
    assert!(text.contains("ca_rotation = no rotation\n"), "{text}");
    assert!(text.contains(ca.cert_pem().trim()), "{text}");
    let out = redisctl(&d, &["output", "endpoints"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "10.0.1.10:6379,10.0.2.10:6379,10.0.3.10:6379\n"
    );
    let state = d.join(".redisctl/prod-redis");
    pki::create_next(&state, "prod-redis", SystemTime::now()).unwrap();
    let next = Ca::load_pair(&state, pki::NEXT_CERT_FILE, pki::NEXT_KEY_FILE).unwrap();
    let out = redisctl(&d, &["output", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bundle = json["ca_bundle"].as_str().unwrap();
    assert!(bundle.contains(ca.cert_pem().trim()) && bundle.contains(next.cert_pem().trim()));
    assert_eq!(json["ca_rotation"], "stage 3 of 3, the end", "{json}");
    let out = redisctl(&d, &["output", "password"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no output named \"password\""));
}
