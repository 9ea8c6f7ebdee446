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
