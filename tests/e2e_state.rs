//! The S3 state backend (issue #18), end to end in the sandbox: two "machines" (two working
//! directories, each with the spec and nothing else) share one cluster's state in a bucket.
//! A second apply while the first runs is refused with the holder named; the first killed with
//! SIGKILL leaves its lock, which `force-unlock` clears (only by its ID); the second machine's
//! apply then finishes the first one's work (the SSH key, the CA and the pins it wrote were
//! saved as it wrote them); both machines plan nothing; every object is encrypted with the
//! spec's KMS key; no private key is left on either machine's disk; `state pull` / `push`
//! move the state and refuse another CA; an unversioned bucket and an unknown KMS key are
//! refused before anything is done.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Cluster, text};
use redisctl_sandbox::testing::Sandbox;

const KMS: &str = "alias/aws/s3";

fn s3() -> (tokio::runtime::Runtime, aws_sdk_s3::Client) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        )
    });
    (rt, client)
}

fn make_bucket(rt: &tokio::runtime::Runtime, c: &aws_sdk_s3::Client, name: &str, versions: bool) {
    rt.block_on(async {
        c.create_bucket().bucket(name).send().await.unwrap();
        if versions {
            c.put_bucket_versioning()
                .bucket(name)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
    });
}

/// The spec with the S3 backend, and Redis open to the operator's machine (for the client).
fn with_state(bucket: &str, kms: &str) -> impl Fn(String) -> String {
    let table =
        format!("\n[state]\nbackend = \"s3\"\nbucket = \"{bucket}\"\nkms_key = \"{kms}\"\n");
    move |t: String| format!("{}{table}", common::redis_open_to_operator(t))
}

/// A redis-py cluster client configured from `output --json` alone (and a client
/// certificate): it writes and reads a key, and prints the nodes it found.
const CLIENT: &str = r#"
import json, os, sys
from redis.cluster import RedisCluster
out = json.load(open(sys.argv[1]))
d = sys.argv[2]
host, port = out["endpoints"].split(",")[0].rsplit(":", 1)
assert "app" in out["users"].split(","), out["users"]
open(d + "/bundle.crt", "w").write(out["ca_bundle"])
rc = RedisCluster(
    host=host, port=int(port), username="app", password=os.environ["APP_PW"],
    ssl=True, ssl_certfile=d + "/app.crt", ssl_keyfile=d + "/app.key",
    ssl_ca_certs=d + "/bundle.crt", ssl_check_hostname=True,
)
rc.set("patient:output", "ok")
assert rc.get("patient:output") == b"ok"
rc.delete("patient:output")
print(",".join(sorted("%s:%s" % (n.host, n.port) for n in rc.get_nodes())))
"#;

/// The private copies of the state this machine holds (redisctl's temporary directories).
fn private_copies() -> Vec<PathBuf> {
    let mut bases = vec![PathBuf::from("/dev/shm"), std::env::temp_dir()];
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        bases.push(x.into());
    }
    bases
        .iter()
        .filter_map(|b| std::fs::read_dir(b).ok())
        .flat_map(|d| d.flatten())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("redisctl-state-")
        })
        .map(|e| e.path())
        .collect()
}

/// No private key of the state anywhere under `dir` (a machine's working directory).
fn assert_no_key_under(dir: &Path) {
    for e in walk(dir) {
        let name = e.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !["ca.key", "ssh_ed25519", "known_hosts"].contains(&name.as_str()),
            "{} is on the machine's disk",
            e.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn two_machines_share_one_state_in_s3_with_a_lock() {
    let _sb = Sandbox::acquire();
    let account = common::account::now();
    let (rt, s3) = s3();
    let bucket = format!("redisctl-e2e-state-{}", std::process::id());
    make_bucket(&rt, &s3, &bucket, true);
    let lock_key = "prod-redis/lock.json";
    // An object's content, as the bucket holds it.
    let object = |key: &str| -> Vec<u8> {
        rt.block_on(async {
            let o = s3
                .get_object()
                .bucket(&bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            o.body.collect().await.unwrap().to_vec()
        })
    };
    let lock_exists = || {
        rt.block_on(s3.head_object().bucket(&bucket).key(lock_key).send())
            .is_ok()
    };

    // Refused before anything is done: a bucket without versions, a KMS key KMS does not have.
    let unversioned = format!("{bucket}-nov");
    make_bucket(&rt, &s3, &unversioned, false);
    let c = Cluster::new("state-refused", with_state(&unversioned, KMS));
    let out = c.run(&["plan"]);
    let said = text(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("does not keep versions"), "{said}");
    assert!(said.contains("put-bucket-versioning"), "{said}");
    let c = Cluster::new("state-refused", with_state(&bucket, "alias/no-such-key"));
    let out = c.run(&["apply", "--yes"]);
    let said = text(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("KMS.NotFoundException") && said.contains("alias/no-such-key"),
        "{said}"
    );
    drop(c);
    common::account::assert_as_before(&account, "prod-redis", &[]);

    let a = Cluster::new("state-a", with_state(&bucket, KMS));
    let b = Cluster::new("state-b", with_state(&bucket, KMS));

    // Machine A applies from nothing; while it runs, B's apply is refused with A named.
    let mut first = a
        .cmd(&["apply", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !lock_exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "A never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = b.run(&["apply", "--yes"]);
    let said = text(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("is locked by") && said.contains(&format!("(pid {})", first.id())),
        "{said}"
    );
    assert!(said.contains("running `apply`"), "{said}");
    // A plan takes no lock.
    let out = b.run(&["plan"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A is killed half-way (its instances launched): its lock stays.
    std::thread::sleep(Duration::from_secs(4));
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(lock_exists(), "the killed run's lock is gone");
    let out = b.run(&["apply", "--yes"]);
    let said = text(&out.stderr);
    assert!(!out.status.success(), "{said}");
    let id = said
        .split("lock ID ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(|s| s.trim_end_matches([':', '.', ',']).to_string())
        .unwrap_or_else(|| panic!("no lock ID in: {said}"));
    assert!(
        said.contains(&format!("redisctl force-unlock {id}")),
        "{said}"
    );
    // Only the lock's own ID removes it.
    let out = b.run(&["force-unlock", "0000000000000000"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&format!("is {id}, not 0000000000000000")));
    assert!(lock_exists());
    let said = b.ok(&["force-unlock", &id]);
    assert!(said.contains(&format!("Lock {id}")), "{said}");
    assert!(!lock_exists());

    // B finishes what A started, with A's SSH key, CA and pins (saved as A wrote them).
    let pulled = b.dir.join("pulled");
    let said = b.ok(&["apply", "--yes"]);
    assert!(said.contains("Apply complete!"), "{said}");
    b.ok(&["state", "pull", "--to", pulled.to_str().unwrap()]);
    a.learn_state(&pulled);
    b.learn_state(&pulled);
    use std::os::unix::fs::PermissionsExt;
    for (f, mode) in [
        ("ca.key", 0o600),
        ("ssh_ed25519", 0o600),
        ("known_hosts", 0o600),
        ("ca.crt", 0o644),
    ] {
        let m = std::fs::metadata(pulled.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{f}");
    }
    assert_eq!(
        std::fs::metadata(&pulled).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(!lock_exists(), "apply left its lock");
    // Both machines see the same cluster, pins and CA: nothing to do.
    a.assert_converged();
    b.assert_converged();
    a.ok(&["verify"]);

    // `output --json` is what an application needs: a client configured from it alone (and a
    // client certificate machine A issues, under the lock, into the shared inventory) connects
    // and finds exactly the endpoints it named.
    let outputs = a.ok(&["output", "--json"]);
    let json_line = outputs.lines().find(|l| l.starts_with('{')).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(json_line).unwrap();
    std::fs::write(a.dir.join("output.json"), json_line).unwrap();
    a.ok(&["client-cert", "app", "--out", "tls", "--days", "30"]);
    a.learn_state(&pulled);
    std::fs::write(a.dir.join("client.py"), CLIENT).unwrap();
    let out = std::process::Command::new(common::python())
        .arg(a.dir.join("client.py"))
        .arg(a.dir.join("output.json"))
        .arg(a.dir.join("tls"))
        .env("APP_PW", common::APP_PW)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the client failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let mut named: Vec<&str> = parsed["endpoints"].as_str().unwrap().split(',').collect();
    named.sort();
    assert_eq!(text(&out.stdout).trim(), named.join(","));
    std::fs::remove_dir_all(a.dir.join("tls")).unwrap();
    // The inventory line machine A wrote is machine B's too.
    let inventory = b.dir.join("inventory");
    b.ok(&["state", "pull", "--to", inventory.to_str().unwrap()]);
    let lines = std::fs::read_to_string(inventory.join("client-certs.jsonl")).unwrap();
    assert!(lines.contains("\"app\""), "{lines}");
    std::fs::remove_dir_all(&inventory).unwrap();

    // Every object is encrypted with the spec's key.
    let objects = rt.block_on(async {
        s3.list_objects_v2()
            .bucket(&bucket)
            .prefix("prod-redis/state/")
            .send()
            .await
            .unwrap()
    });
    let keys: Vec<String> = objects
        .contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect();
    for f in ["ca.crt", "ca.key", "known_hosts", "ssh_ed25519"] {
        assert!(keys.contains(&format!("prod-redis/state/{f}")), "{keys:?}");
    }
    for k in &keys {
        let h = rt
            .block_on(s3.head_object().bucket(&bucket).key(k).send())
            .unwrap();
        assert_eq!(
            h.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms),
            "{k}"
        );
        assert_eq!(h.ssekms_key_id(), Some(KMS), "{k}");
    }

    // Migration: the pulled copy pushes back (the same CA); a directory with another CA is
    // refused, and so is a pull over it.
    b.ok(&["state", "push", "--from", pulled.to_str().unwrap()]);
    let other = b.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("ca.crt"), "another CA\n").unwrap();
    let out = b.run(&["state", "push", "--from", other.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already holds a different cluster CA"),
        "{}",
        text(&out.stderr)
    );
    let out = b.run(&["state", "pull", "--to", other.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("holds a different cluster CA"));
    std::fs::remove_dir_all(&pulled).unwrap();
    std::fs::remove_dir_all(&other).unwrap();

    // A signal before apply's steps run (at its prompt: a Ctrl-C, a cancelled CI job)
    // releases the lock and removes the private copy.
    a.edit(|t| t.replace("\"patient:*\"]", "\"patient:*\", \"report:*\"]"));
    let (mut child, screen) = a.apply_at_prompt();
    assert!(lock_exists(), "apply holds the lock at its prompt");
    let lock = object(lock_key);
    let holder: serde_json::Value = serde_json::from_slice(&lock).unwrap();
    let pid = holder["pid"].as_i64().unwrap() as i32;
    assert_eq!(holder["command"], "apply");
    // SAFETY: the pid is redisctl's, the child of this test's `script`.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    child.wait().unwrap();
    let said = text(&screen.lock().unwrap());
    assert!(said.contains("releasing the state's lock"), "{said}");
    assert!(!lock_exists(), "the lock outlived a SIGTERM at the prompt");
    assert_eq!(private_copies(), Vec::<PathBuf>::new());
    a.edit(|t| t.replace(", \"report:*\"]", "]"));

    // A rename a killed run saved half (the new name written, the old one not yet removed:
    // `ca.next.key` next to `ca.key` with the same key) is finished by the next run.
    let key = object("prod-redis/state/ca.key");
    rt.block_on(
        s3.put_object()
            .bucket(&bucket)
            .key("prod-redis/state/ca.next.key")
            .body(key.into())
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(KMS)
            .send(),
    )
    .unwrap();
    b.assert_converged();
    assert!(
        rt.block_on(
            s3.head_object()
                .bucket(&bucket)
                .key("prod-redis/state/ca.next.key")
                .send()
        )
        .is_err(),
        "the half-saved rename was not finished"
    );

    // No private key on either machine's disk, no private copy left (the killed run's was
    // removed by the next run on this machine).
    assert_no_key_under(&a.dir);
    assert_no_key_under(&b.dir);
    assert_eq!(private_copies(), Vec::<PathBuf>::new());

    b.ok(&["destroy", "--yes"]);
    common::account::assert_as_before(&account, "prod-redis", &[]);
    assert_eq!(private_copies(), Vec::<PathBuf>::new());
}
