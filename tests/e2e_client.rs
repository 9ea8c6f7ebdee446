//! End-to-end: a real cluster-aware client library (redis-py's RedisCluster, over TLS with a
//! client certificate that `redisctl client-cert` issued from the cluster CA) logged in as the
//! app user writes and reads `patient:*` keys spread over all three masters, and is refused
//! outside its key patterns and FLUSHALL; without the certificate, TLS refuses it. The Python
//! venv with a pinned redis-py is made by scripts/test. Security groups are enforced: the client
//! is let in by `redis_cidrs`.

mod common;

use std::process::Command;

use common::{APP_PW, Cluster, text};
use redisctl_sandbox::testing::Sandbox;

const SCRIPT: &str = r#"
import json, os, sys
from redis.cluster import RedisCluster
from redis.exceptions import NoPermissionError, ResponseError

d = sys.argv[1]
if len(sys.argv) > 2 and sys.argv[2] == "no-cert":
    try:
        RedisCluster(
            host="10.0.1.10", port=6379, username="app", password=os.environ["APP_PW"],
            ssl=True, ssl_ca_certs=d + "/ca.crt", ssl_check_hostname=True,
        ).ping()
        print("connected")
    except Exception as e:
        print("refused: %s: %s" % (type(e).__name__, str(e).replace("\\n", " ")[:300]))
    # The reason, read for certain: with TLS 1.3 the server judges the client's (empty)
    # certificate after the client's handshake is done, so a client that writes first may see
    # the connection closed (EOF) before the alert. Reading waits for the alert.
    import socket, ssl
    ctx = ssl.create_default_context(cafile=d + "/ca.crt")
    try:
        with socket.create_connection(("10.0.1.10", 6379), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="10.0.1.10") as s:
                s.recv(1)
        print("tls: connected")
    except Exception as e:
        print("tls: %s: %s" % (type(e).__name__, e))
    sys.exit(0)
rc = RedisCluster(
    host="10.0.1.10", port=6379, username="app", password=os.environ["APP_PW"],
    ssl=True, ssl_certfile=d + "/app.crt", ssl_keyfile=d + "/app.key",
    ssl_ca_certs=d + "/ca.crt", ssl_check_hostname=True,
)
by_node = {}
for i in range(300):
    k = "patient:%d" % i
    rc.set(k, "record-%d" % i)
    assert rc.get(k) == ("record-%d" % i).encode(), k
    n = rc.get_node_from_key(k)
    by_node[n.host] = by_node.get(n.host, 0) + 1
def refused(f):
    try:
        f()
        return "allowed"
    except NoPermissionError as e:
        return "NOPERM"
    except ResponseError as e:
        return "NOPERM" if "NOPERM" in str(e) or "permission" in str(e) else "error: %s" % e
out = {
    "by_node": by_node,
    "outside_patterns": refused(lambda: rc.set("billing:1", "x")),
    "flushall": refused(lambda: rc.flushall()),
}
for i in range(300):
    rc.delete("patient:%d" % i)
print(json.dumps(out))
"#;

#[test]
fn redis_py_cluster_client_as_the_app_user() {
    let _sb = Sandbox::acquire();
    // The client runs on the operator's machine, which reaches the VPC as through a VPN from
    // the sandbox's internet address: Redis must be open to it (the default is the VPC only).
    let c = Cluster::new("client", common::redis_open_to_operator);
    c.ok(&["apply", "--yes"]);

    // A client certificate for the app from the cluster CA (tls.auth_clients = "yes").
    let issued = c.ok(&["client-cert", "app", "--out", "tls", "--days", "1"]);
    assert!(issued.contains("CN=app (clientAuth only)"), "{issued}");
    // One day is within tls.renew_before_days: plan says so, and plans nothing for it.
    let plan = c.ok(&["plan"]);
    assert!(
        plan.contains("client certificate CN=app (serial ") && plan.contains(") expires "),
        "{plan}"
    );
    assert!(plan.contains("No changes."), "{plan}");
    let tls = c.dir.join("tls");
    std::fs::write(c.dir.join("client.py"), SCRIPT).unwrap();

    // Without it, the node refuses the TLS handshake (the password alone is not enough).
    let out = Command::new(common::python())
        .arg(c.dir.join("client.py"))
        .arg(&tls)
        .arg("no-cert")
        .env("APP_PW", APP_PW)
        .output()
        .unwrap();
    let said = text(&out.stdout);
    let (client, handshake) = said.split_once('\n').unwrap_or((&said, ""));
    // redis-py is refused: by the alert, or by the connection closed under its first write.
    assert!(
        client.starts_with("refused: ")
            && (client.contains("CERTIFICATE_REQUIRED")
                || client.contains("EOF occurred in violation of protocol")),
        "{said}{}",
        text(&out.stderr)
    );
    // And the reason is the missing certificate.
    assert!(
        handshake.starts_with("tls: ") && handshake.contains("CERTIFICATE_REQUIRED"),
        "{said}{}",
        text(&out.stderr)
    );
    eprintln!("without a client certificate: {}", said.trim());

    let out = Command::new(common::python())
        .arg(c.dir.join("client.py"))
        .arg(&tls)
        .env("APP_PW", APP_PW)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "redis-py failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    eprintln!("figure: 300 patient:* keys by master: {}", v["by_node"]);
    let by_node = v["by_node"].as_object().unwrap();
    assert_eq!(
        by_node.len(),
        3,
        "keys land on all three masters: {by_node:?}"
    );
    assert!(
        by_node.values().all(|n| n.as_u64().unwrap() > 50),
        "{by_node:?}"
    );
    assert_eq!(v["outside_patterns"], "NOPERM", "{v}");
    assert_eq!(v["flushall"], "NOPERM", "{v}");
    c.ok(&["destroy", "--yes"]);
}

/// The client of the rotation test: a new RedisCluster (new connections, so a new login on
/// each node it reaches) for every write and read, with the password the file names at that
/// moment (`label:password`), until the stop file appears; and one connection opened at the
/// start and kept (`held`, a PING each round: an ACL change must not close it). Then its
/// counts as JSON.
const ROTATING_CLIENT: &str = r#"
import json, os, sys, time
import redis
from redis.cluster import RedisCluster

d, pwfile, stopfile = sys.argv[1:4]
stats = {"ok": {}, "failed": 0, "errors": [], "held": {"ok": 0, "failed": 0, "errors": []}}
label, pw = open(pwfile).read().strip().split(":", 1)
held = redis.Redis(
    host="10.0.1.10", port=6379, username="app", password=pw,
    ssl=True, ssl_certfile=d + "/app.crt", ssl_keyfile=d + "/app.key",
    ssl_ca_certs=d + "/ca.crt", ssl_check_hostname=True, single_connection_client=True,
)
i = 0
while not os.path.exists(stopfile):
    try:
        held.ping()
        stats["held"]["ok"] += 1
    except Exception as e:
        stats["held"]["failed"] += 1
        stats["held"]["errors"].append("%s: %s" % (type(e).__name__, str(e)[:200]))
    label, pw = open(pwfile).read().strip().split(":", 1)
    try:
        rc = RedisCluster(
            host="10.0.1.10", port=6379, username="app", password=pw,
            ssl=True, ssl_certfile=d + "/app.crt", ssl_keyfile=d + "/app.key",
            ssl_ca_certs=d + "/ca.crt", ssl_check_hostname=True,
        )
        k = "patient:rotation:%d" % i
        rc.set(k, "v%d" % i)
        assert rc.get(k) == ("v%d" % i).encode(), k
        rc.close()
        stats["ok"][label] = stats["ok"].get(label, 0) + 1
    except Exception as e:
        stats["failed"] += 1
        stats["errors"].append("%s %s: %s" % (label, type(e).__name__, str(e)[:200]))
    i += 1
    time.sleep(0.02)
print(json.dumps(stats))
"#;

/// Password rotation with a live client: the new password of `app` (and of the operator user,
/// whom redisctl itself logs in as) is accepted next to the previous one while clients move,
/// then the previous one is dropped; the client, logging in again for every request, never
/// fails. A password changed without a rotation is a blocker that says what to do.
#[test]
fn a_password_rotation_fails_no_login() {
    let _sb = Sandbox::acquire();
    const APP_NEW: &str = "app-rotated-pw-73f1";
    const ADMIN_NEW: &str = "admin-rotated-pw-e590";
    let c = Cluster::new("rotation", common::redis_open_to_operator);
    c.learn_password("the new password of app", APP_NEW);
    c.learn_password("the new password of admin", ADMIN_NEW);
    let with_new = |args: &[&str]| {
        let out = c
            .cmd(args)
            .env("REDIS_APP_PASSWORD_NEW", APP_NEW)
            .env("REDIS_ADMIN_PASSWORD_NEW", ADMIN_NEW)
            .output()
            .unwrap();
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        c.assert_no_secret(&format!("redisctl {args:?}"), &all);
        (out.status.code(), all)
    };
    c.ok(&["apply", "--yes"]);
    c.ok(&["client-cert", "app", "--out", "tls", "--days", "30"]);
    let tls = c.dir.join("tls");
    std::fs::write(c.dir.join("rotating.py"), ROTATING_CLIENT).unwrap();
    let pwfile = c.dir.join("client-password");
    let stop = c.dir.join("client-stop");
    std::fs::write(&pwfile, format!("old:{APP_PW}")).unwrap();
    let client = Command::new(common::python())
        .arg(c.dir.join("rotating.py"))
        .arg(&tls)
        .arg(&pwfile)
        .arg(&stop)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));

    // Stage 1: the new passwords, the previous ones kept. Only the ACL files change (loaded
    // live), and redisctl logs in as admin with the previous password, which the nodes hold.
    c.edit(|t| {
        t.replace(
            "password_env = \"REDIS_ADMIN_PASSWORD\"",
            "password_env = \"REDIS_ADMIN_PASSWORD_NEW\"\nprevious_password_env = \"REDIS_ADMIN_PASSWORD\"",
        )
        .replace(
            "password_env = \"REDIS_APP_PASSWORD\"",
            "password_env = \"REDIS_APP_PASSWORD_NEW\"\nprevious_password_env = \"REDIS_APP_PASSWORD\"",
        )
    });
    // `redisctl redis-cli` in stage 1, before the apply: the nodes hold only the previous
    // password of the operator, which the node says it takes (it is tried second).
    let out = c
        .shell(&[
            common::BIN,
            "--config",
            c.spec.to_str().unwrap(),
            "redis-cli",
            "--",
            "PING",
        ])
        .env("REDIS_APP_PASSWORD_NEW", APP_NEW)
        .env("REDIS_ADMIN_PASSWORD_NEW", ADMIN_NEW)
        .output()
        .unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    c.assert_no_secret("redisctl redis-cli in stage 1", &said);
    assert!(
        out.status.success() && said.contains("PONG"),
        "redis-cli during the rotation: {said}"
    );
    let (code, plan) = with_new(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(2), "changes to make:\n{plan}");
    assert!(
        plan.contains("Password rotation of admin, app: the new password and the previous one are both accepted"),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to add, 3 to change, 0 to destroy"),
        "only the three ACL files:\n{plan}"
    );
    let (code, applied) = with_new(&["apply", "--yes"]);
    assert_eq!(code, Some(0), "{applied}");
    let (code, plan) = with_new(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{plan}");
    assert!(
        plan.contains("No changes.") && plan.contains("password rotation in progress"),
        "{plan}"
    );
    // Both passwords of app log in on every node.
    for ip in common::IPS {
        for pw in [APP_PW, APP_NEW] {
            let out = c.on_node(ip, &app_ping(), pw);
            assert_eq!(out.lines().next(), Some("PONG"), "app on {ip}: {out}");
        }
    }

    // The client moves to the new password; then stage 2 drops the previous ones.
    std::fs::write(&pwfile, format!("new:{APP_NEW}")).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    c.edit(|t| {
        t.replace("\nprevious_password_env = \"REDIS_ADMIN_PASSWORD\"", "")
            .replace("\nprevious_password_env = \"REDIS_APP_PASSWORD\"", "")
    });
    let (code, applied) = with_new(&["apply", "--yes"]);
    assert_eq!(code, Some(0), "{applied}");
    assert!(!applied.contains("Password rotation"), "{applied}");
    std::thread::sleep(std::time::Duration::from_secs(1));
    std::fs::write(&stop, "").unwrap();
    let out = client.wait_with_output().unwrap();
    let stats: serde_json::Value = serde_json::from_str(text(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("{e}: {} {}", text(&out.stdout), text(&out.stderr)));
    eprintln!("figure: rotating client {stats}");
    assert_eq!(stats["failed"], 0, "{stats}");
    // The connection opened before the rotation stayed open through both applies (Redis checks
    // a password at login; an ACL change sets users live instead of ACL LOAD, which closes
    // every connection).
    assert_eq!(stats["held"]["failed"], 0, "{stats}");
    assert!(stats["held"]["ok"].as_u64().unwrap() > 20, "{stats}");
    assert!(stats["ok"]["old"].as_u64().unwrap() > 10, "{stats}");
    assert!(stats["ok"]["new"].as_u64().unwrap() > 10, "{stats}");

    // The previous passwords are refused now, the new ones work; plan finds nothing to do.
    for ip in common::IPS {
        let old = c.on_node(ip, &app_ping(), APP_PW);
        assert!(
            old.contains("WRONGPASS"),
            "the old app password on {ip}: {old}"
        );
        let new = c.on_node(ip, &app_ping(), APP_NEW);
        assert_eq!(new.lines().next(), Some("PONG"), "{new}");
    }
    let old_admin = c.redis(common::IPS[0], "PING");
    assert!(old_admin.contains("WRONGPASS"), "{old_admin}");
    let (code, plan) = with_new(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{plan}");
    let (code, verified) = with_new(&["verify"]);
    assert_eq!(code, Some(0), "{verified}");

    // The operator's password changed without a rotation: redisctl cannot log in, and says
    // what to do instead of guessing at the cluster.
    c.edit(|t| t.replace("REDIS_ADMIN_PASSWORD_NEW", "REDIS_ADMIN_PASSWORD"));
    let (code, all) = with_new(&["plan"]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("refuses the password of the operator user admin (WRONGPASS)")
            && all.contains("previous_password_env"),
        "{all}"
    );
    c.edit(|t| t.replace("\"REDIS_ADMIN_PASSWORD\"", "\"REDIS_ADMIN_PASSWORD_NEW\""));

    // The failed-request window of a CA rotation without replicas (the figure next to the
    // 3 x 1 test's): a client making new TLS connections for every request through the three
    // stages, each one apply. Nothing restarts, so there is no window to expect.
    std::fs::write(c.dir.join("ca_client.py"), CA_ROTATING_CLIENT).unwrap();
    let dirfile = c.dir.join("ca-client-dir");
    let stop = c.dir.join("ca-client-stop");
    std::fs::write(&dirfile, format!("old:{}", tls.display())).unwrap();
    let client = Command::new(common::python())
        .arg(c.dir.join("ca_client.py"))
        .arg(&dirfile)
        .arg(&stop)
        .env("APP_PW", APP_NEW)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let t = std::time::Instant::now();
    c.edit(|t| t.replace("# ca_rotation = \"trust\"", "ca_rotation = \"trust\""));
    let (code, applied) = with_new(&["apply", "--yes"]);
    assert_eq!(code, Some(0), "{applied}");
    let (code, issued) = with_new(&[
        "client-cert",
        "app",
        "--out",
        "tls-new",
        "--days",
        "30",
        "--force",
    ]);
    assert_eq!(code, Some(0), "{issued}");
    std::fs::write(&dirfile, format!("new:{}", c.dir.join("tls-new").display())).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    for edit in [
        ("ca_rotation = \"trust\"", "ca_rotation = \"reissue\""),
        ("ca_rotation = \"reissue\"", "# ca_rotation = \"reissue\""),
    ] {
        c.edit(|t| t.replace(edit.0, edit.1));
        let (code, applied) = with_new(&["apply", "--yes"]);
        assert_eq!(code, Some(0), "{applied}");
    }
    let wall = t.elapsed();
    std::thread::sleep(std::time::Duration::from_secs(1));
    std::fs::write(&stop, "").unwrap();
    let out = client.wait_with_output().unwrap();
    let stats: serde_json::Value = serde_json::from_str(text(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("{e}: {} {}", text(&out.stdout), text(&out.stderr)));
    eprintln!(
        "figure: a CA rotation without replicas (3 applies, {:.1}s): client {stats}",
        wall.as_secs_f64()
    );
    assert_eq!(stats["failed"], 0, "{stats}");
    let (code, plan) = with_new(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{plan}");
    let (code, destroyed) = with_new(&["destroy", "--yes"]);
    assert_eq!(code, Some(0), "{destroyed}");
}

/// PING as app on the node, the password on stdin.
fn app_ping() -> String {
    "pw=\"$(cat)\"; REDISCLI_AUTH=\"$pw\" redis-cli --tls --cacert /etc/redis/tls/ca.crt --cert /etc/redis/tls/redis.crt --key /etc/redis/tls/redis.key -h 127.0.0.1 -p 6379 --user app --no-auth-warning PING 2>&1".into()
}

/// The client of the CA rotation test: a new RedisCluster (new TLS handshakes with every node
/// it reaches) for every write and read, with the client files of the directory the file
/// names at that moment (`label:dir`: the certificate, its key, the CA bundle), until the
/// stop file appears; then its counts as JSON. With "once", one try: "ok" or the error.
const CA_ROTATING_CLIENT: &str = r#"
import json, os, sys, time
from redis.cluster import RedisCluster

dirfile, stopfile, pw = sys.argv[1], sys.argv[2], os.environ["APP_PW"]
once = len(sys.argv) > 3 and sys.argv[3] == "once"
stats = {"ok": {}, "failed": 0, "errors": []}
i = 0
while once or not os.path.exists(stopfile):
    label, d = open(dirfile).read().strip().split(":", 1)
    try:
        rc = RedisCluster(
            host="10.0.1.10", port=6379, username="app", password=pw,
            ssl=True, ssl_certfile=d + "/app.crt", ssl_keyfile=d + "/app.key",
            ssl_ca_certs=d + "/ca.crt", ssl_check_hostname=True,
        )
        k = "patient:ca:%d" % i
        rc.set(k, "v%d" % i)
        assert rc.get(k) == ("v%d" % i).encode(), k
        rc.close()
        stats["ok"][label] = stats["ok"].get(label, 0) + 1
        if once:
            print("ok")
            sys.exit(0)
    except Exception as e:
        if once:
            print("refused: %s: %s" % (type(e).__name__, str(e)[:300]))
            sys.exit(0)
        stats["failed"] += 1
        stats["errors"].append("%s %s: %s" % (label, type(e).__name__, str(e)[:200]))
    i += 1
    time.sleep(0.02)
print(json.dumps(stats))
"#;

/// The replicas of the rotation test's 3 x 1 cluster (before any failover: none happens).
const REPLICA_IPS: [&str; 3] = ["10.0.1.11", "10.0.2.11", "10.0.3.11"];

/// CA rotation with a live client on a cluster with replicas, each stage's apply killed inside
/// its TLS phase and finished by the next: the new CA is trusted next to the old one (the
/// client moves to a certificate and a bundle from `client-cert`), node certificates are
/// re-issued from it, then the old CA is dropped and the new one promoted in the state
/// directory. Then the replication password is rotated (killed in phase 6, finished by a plain
/// apply), and the SSH key (likewise, in phase 3). Redis reloads its TLS files and sets
/// masterauth live at each step (no restart); the
/// client, which makes new TLS connections for every request, never fails; replicas reconnect
/// with the new CA's certificates and the new password; a client left on the old CA is refused
/// at the end.
#[test]
fn a_ca_rotation_fails_no_request() {
    let _sb = Sandbox::acquire();
    let c = Cluster::new("carotation", |t| {
        common::derived_nodes(
            &common::redis_open_to_operator(t)
                .replace("replicas_per_master = 0", "replicas_per_master = 1"),
        )
    });
    let all_ips: Vec<&str> = common::IPS
        .iter()
        .chain(REPLICA_IPS.iter())
        .copied()
        .collect();
    let links_up = || {
        REPLICA_IPS.iter().all(|ip| {
            c.redis(ip, "INFO replication")
                .contains("master_link_status:up")
        })
    };
    c.ok(&["apply", "--yes"]);
    c.ok(&["client-cert", "app", "--out", "tls-old", "--days", "30"]);
    let state = c.state_dir();
    let old_ca = std::fs::read_to_string(state.join("ca.crt")).unwrap();
    // Redis's run_id: new at every start (ssh's first-contact warning is left out).
    let pid = |ip: &str| {
        c.redis(ip, "INFO server")
            .lines()
            .find(|l| l.starts_with("run_id:"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let pids: Vec<String> = all_ips.iter().map(|ip| pid(ip)).collect();

    std::fs::write(c.dir.join("ca_client.py"), CA_ROTATING_CLIENT).unwrap();
    let dirfile = c.dir.join("client-dir");
    let stop = c.dir.join("client-stop");
    std::fs::write(&dirfile, format!("old:{}", c.dir.join("tls-old").display())).unwrap();
    let client = Command::new(common::python())
        .arg(c.dir.join("ca_client.py"))
        .arg(&dirfile)
        .arg(&stop)
        .env("APP_PW", APP_PW)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let ca_certs_on = |ip: &str| {
        c.on_node(ip, "grep -c 'BEGIN CERTIFICATE' /etc/redis/tls/ca.crt", "")
            .trim()
            .to_string()
    };
    // One stage: the plan shows what it says it does, the apply is killed inside its TLS phase
    // (when it has not finished first), the next apply finishes, and plan is empty after.
    let stage = |name: &str, says: &[&str]| {
        let plan = c.ok(&["plan"]);
        for s in says {
            assert!(plan.contains(s), "{name}: the plan lacks {s:?}:\n{plan}");
        }
        assert!(!plan.contains("blocker:"), "{plan}");
        match c.apply_killed_after("phase 4: tls", std::time::Duration::from_millis(15)) {
            Some(_) => eprintln!("figure: {name}: apply killed 15 ms into phase 4"),
            None => eprintln!("figure: {name}: apply finished before the kill"),
        }
        let out = c.ok(&["apply", "--yes"]);
        assert!(out.contains("Apply complete!"), "{out}");
        assert_eq!(c.plan_exit(), 0, "{name}: plan after apply is not empty");
    };

    // Stage 1: every node trusts both CAs; certificates stay.
    c.edit(|t| t.replace("# ca_rotation = \"trust\"", "ca_rotation = \"trust\""));
    stage(
        "trust",
        &[
            "+ pki.ca.next",
            "the node trusts the new CA next to the old one",
            "CN=app (serial ",
            "Plan: 1 to add, 6 to change, 0 to destroy",
        ],
    );
    for ip in &all_ips {
        assert_eq!(ca_certs_on(ip), "2", "{ip} trusts both CAs");
    }
    let new_ca = std::fs::read_to_string(state.join("ca.next.crt")).unwrap();
    // The client moves: a certificate from the new CA, and both CAs as its bundle.
    let issued = c.ok(&["client-cert", "app", "--out", "tls-new", "--days", "30"]);
    assert!(issued.contains("CN=app"), "{issued}");
    let bundle = std::fs::read_to_string(c.dir.join("tls-new/ca.crt")).unwrap();
    assert!(
        bundle.contains(old_ca.trim()) && bundle.contains(new_ca.trim()),
        "{bundle}"
    );
    std::fs::write(&dirfile, format!("new:{}", c.dir.join("tls-new").display())).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));

    // Stage 2: node certificates from the new CA, one node at a time; verify agrees.
    c.edit(|t| t.replace("ca_rotation = \"trust\"", "ca_rotation = \"reissue\""));
    stage(
        "reissue",
        &["re-issued from the new one", "Plan: 0 to add, 6 to change"],
    );
    let verified = c.ok(&["verify"]);
    assert!(verified.contains("signed by the cluster CA"), "{verified}");

    // Stage 3, the key removed: every node trusts only the new CA, which is promoted.
    c.edit(|t| t.replace("ca_rotation = \"reissue\"", "# ca_rotation = \"reissue\""));
    stage(
        "end",
        &["the node trusts only the new CA", "~ pki.ca.promote"],
    );
    for ip in &all_ips {
        assert_eq!(ca_certs_on(ip), "1", "{ip} trusts the new CA only");
    }
    assert_eq!(
        std::fs::read_to_string(state.join("ca.crt")).unwrap(),
        new_ca
    );
    assert!(!state.join("ca.next.crt").exists() && !state.join("ca.next.key").exists());
    // Replicas reconnect to their masters over TLS with the new CA's certificates (and the
    // replication password the CA rotation kept).
    for ip in REPLICA_IPS {
        c.redis(ip, "CLIENT KILL TYPE master");
    }
    common::eventually("every replica reconnected after the CA rotation", links_up);

    // The replication password, rotated in one apply: killed inside phase 6 (after the nodes
    // accept both passwords), finished by a plain apply.
    let read = |f: &str| std::fs::read_to_string(state.join(f)).unwrap();
    let password_before = read("replication.secret");
    // Planned and saved, then the saved plan applied (it carries the request).
    let plan = c.ok(&[
        "plan",
        "--rotate",
        "replication-password",
        "--out",
        "rotate.plan",
    ]);
    assert!(
        plan.contains("+ pki.replication.next") && plan.contains("~ pki.replication.promote"),
        "{plan}"
    );
    match c.killed_after(
        &["apply", "rotate.plan"],
        "phase 6: config",
        std::time::Duration::from_millis(20),
    ) {
        Some(_) => eprintln!("figure: replication password: apply killed 20 ms into phase 6"),
        None => eprintln!("figure: replication password: apply finished before the kill"),
    }
    let out = c.ok(&["apply", "--yes"]);
    assert!(
        out.contains("Apply complete!") || out.contains("No changes"),
        "{out}"
    );
    assert_eq!(
        c.plan_exit(),
        0,
        "plan after the replication password rotation"
    );
    let password_after = read("replication.secret");
    assert_ne!(password_after, password_before);
    assert!(!state.join("replication.next.secret").exists());
    // The old replication password is refused on every node, the new one accepted.
    let as_replication = "pw=\"$(cat)\"; REDISCLI_AUTH=\"$pw\" redis-cli --tls --cacert /etc/redis/tls/ca.crt --cert /etc/redis/tls/redis.crt --key /etc/redis/tls/redis.key -h 127.0.0.1 -p 6379 --user redisctl-replication --no-auth-warning PING";
    for ip in &all_ips {
        let old = c.on_node(ip, as_replication, password_before.trim());
        assert!(
            old.contains("WRONGPASS"),
            "the old replication password on {ip}: {old}"
        );
        let new = c.on_node(ip, as_replication, password_after.trim());
        assert_eq!(
            new.trim(),
            "PONG",
            "the new replication password on {ip}: {new}"
        );
    }
    for ip in REPLICA_IPS {
        c.redis(ip, "CLIENT KILL TYPE master");
    }
    common::eventually("every replica reconnected with the new password", links_up);

    // The SSH key, rotated in one apply (killed inside phase 3, finished by a plain apply): the
    // new key logs in everywhere, the old one nowhere, and the key pair holds the new one
    // (plan is empty: it compares the key pair's public key with the local key).
    let key = state.join("ssh_ed25519");
    let old_key = c.dir.join("old_ssh_key");
    std::fs::copy(&key, &old_key).unwrap();
    let plan = c.ok(&["plan", "--rotate", "ssh-key"]);
    assert!(
        plan.contains("+ ssh_key.next") && plan.contains("~ node.redis-node-1a.ssh_key.revoke"),
        "{plan}"
    );
    match c.killed_after(
        &["apply", "--yes", "--rotate", "ssh-key"],
        "phase 3: install",
        std::time::Duration::from_millis(150),
    ) {
        Some(_) => eprintln!("figure: ssh key: apply killed 150 ms into phase 3"),
        None => eprintln!("figure: ssh key: apply finished before the kill"),
    }
    let out = c.ok(&["apply", "--yes"]);
    assert!(
        out.contains("Apply complete!") || out.contains("No changes"),
        "{out}"
    );
    assert_eq!(c.plan_exit(), 0, "plan after the SSH key rotation");
    assert_ne!(
        std::fs::read(&key).unwrap(),
        std::fs::read(&old_key).unwrap(),
        "the key changed"
    );
    assert!(!state.join("ssh_ed25519.next").exists());
    assert!(!state.join("ssh_ed25519.previous.pub").exists());
    for ip in &all_ips {
        assert_eq!(
            c.on_node(ip, "echo in", "").trim(),
            "in",
            "the new key on {ip}"
        );
        let old = Command::new("ssh")
            .arg("-i")
            .arg(&old_key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o"])
            .arg(format!(
                "UserKnownHostsFile={}",
                c.dir.join("ssh_known_hosts").display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                "ConnectTimeout=10",
            ])
            .arg(format!("ubuntu@{ip}"))
            .arg("true")
            .output()
            .unwrap();
        assert!(
            !old.status.success() && text(&old.stderr).contains("Permission denied"),
            "the old key on {ip}: {}",
            text(&old.stderr)
        );
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    std::fs::write(&stop, "").unwrap();
    let out = client.wait_with_output().unwrap();
    let stats: serde_json::Value = serde_json::from_str(text(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("{e}: {} {}", text(&out.stdout), text(&out.stderr)));
    eprintln!("figure: client through a CA rotation {stats}");
    assert_eq!(stats["failed"], 0, "{stats}");
    assert!(stats["ok"]["old"].as_u64().unwrap() > 10, "{stats}");
    assert!(stats["ok"]["new"].as_u64().unwrap() > 10, "{stats}");
    // No node restarted: Redis reloaded its TLS files each time.
    let after: Vec<String> = all_ips.iter().map(|ip| pid(ip)).collect();
    assert_eq!(pids, after, "a node restarted during the rotation");

    // A client left on the old CA's files is refused now.
    std::fs::write(&dirfile, format!("old:{}", c.dir.join("tls-old").display())).unwrap();
    let out = Command::new(common::python())
        .arg(c.dir.join("ca_client.py"))
        .arg(&dirfile)
        .arg(&stop)
        .arg("once")
        .env("APP_PW", APP_PW)
        .output()
        .unwrap();
    let said = text(&out.stdout);
    assert!(said.starts_with("refused: "), "{said}{}", text(&out.stderr));
    c.ok(&["verify"]);
    c.ok(&["destroy", "--yes"]);
}
