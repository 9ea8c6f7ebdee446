//! The node probe: one script per node, run with sudo over its pinned session, that prints
//! what the checks judge in `@@name@@ … @@end@@` sections; and the shell pieces the commands
//! run as other users share with it.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::chain;
use super::checks::data::DATA_KEY;
use super::checks::first_line;
use super::checks::tls::HANDSHAKES;
use super::checks::{CliRun, NodeProbe, ProbeOut};
use crate::node::NodeRuntime;
use crate::redis::conf;
use crate::spec::Spec;
use crate::spec::secrets::Secret;
use crate::ssh::sh_quote;

/// The TLS options of redis-cli on a node (the node's own certificate has clientAuth).
fn tls_opts(spec: &Spec) -> String {
    format!(
        "--tls --cacert {} --cert {} --key {} -p {}",
        conf::CA_CERT.path,
        conf::NODE_CERT.path,
        conf::NODE_KEY.path,
        spec.redis.port
    )
}

/// A shell prelude: `pw` from stdin, `$tls`, and `as_user HOST ARGS…` running redis-cli as
/// `user` (password in REDISCLI_AUTH, never in argv), bounded to 15 s.
pub(super) fn prelude(spec: &Spec, user: &str) -> String {
    format!(
        "set +e\npw=\"$(cat)\"\ntls={}\nas_user() {{ h=$1; shift; REDISCLI_AUTH=\"$pw\" timeout 15 redis-cli $tls -h \"$h\" --user {} --no-auth-warning \"$@\" 2>&1; echo \"@@rc=$?\"; }}\n",
        sh_quote(&tls_opts(spec)),
        sh_quote(user)
    )
}

pub(super) fn section_cmd(name: &str, cmd: &str) -> String {
    format!("echo '@@{name}@@'; {cmd}; echo '@@end@@'\n")
}

/// The text between `@@name@@` and the next `@@end@@`, without the `@@rc=` line.
pub(super) fn section(text: &str, name: &str) -> String {
    section_raw(text, name)
        .lines()
        .filter(|l| !l.starts_with("@@rc="))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text between `@@name@@` and the next `@@end@@`, as printed (`@@rc=` lines kept).
pub(super) fn section_raw(text: &str, name: &str) -> String {
    let marker = format!("@@{name}@@\n");
    let Some(start) = text.find(&marker).map(|i| i + marker.len()) else {
        return String::new();
    };
    let end = text[start..]
        .find("@@end@@")
        .map(|i| i + start)
        .unwrap_or(text.len());
    text[start..end].to_string()
}

/// A section that ran one command and recorded its exit status with `@@rc=`.
fn section_run(text: &str, name: &str) -> CliRun {
    CliRun {
        out: section(text, name),
        rc: section_rc(text, name),
    }
}

/// The exit status a section recorded with `@@rc=`.
pub(super) fn section_rc(text: &str, name: &str) -> Option<i32> {
    let marker = format!("@@{name}@@\n");
    let start = text.find(&marker)? + marker.len();
    let end = text[start..].find("@@end@@")? + start;
    text[start..end]
        .lines()
        .find_map(|l| l.strip_prefix("@@rc="))
        .and_then(|v| v.trim().parse().ok())
}

/// The probe's shell for the plaintext section (`NODE_IP` and `REDIS_PORT` filled in): every
/// TCP socket a process named redis-server listens on (`ss -ltnp`), and a plaintext `PING` to
/// the node's address and Redis port and to each of those sockets (a wildcard address tried at
/// the node's address), each bounded to 10 s.
pub const PLAINTEXT_SCRIPT: &str = r#"l=$(ss -Hltnp 2>&1); r=$?; echo "ss rc=$r"
[ "$r" -eq 0 ] || printf '%s\n' "$l" | head -n 1 | sed 's/^/ss! /'
s=$(printf '%s\n' "$l" | grep '"redis-server"' | awk '{print $4}' | sort -u)
printf '%s\n' "$s" | sed '/^$/d; s/^/listen /'
{ echo "NODE_IP REDIS_PORT"; printf '%s\n' "$s" | sed -E '/^$/d; s/^\[?(.*[^]])\]?:([0-9]+)$/\1 \2/; s/^(0\.0\.0\.0|\*|::) /NODE_IP /'; } | awk '!seen[$0]++' | while read -r h p; do echo "try $h $p"; timeout 10 redis-cli -h "$h" -p "$p" PING </dev/null 2>&1; echo "@@rc=$?"; done"#;

fn probe_script(spec: &Spec, ip: Ipv4Addr) -> String {
    let op = &spec.operator_user().name;
    let port = spec.redis.port;
    let mut s = prelude(spec, op);
    s.push_str(&section_cmd("ping", "as_user 127.0.0.1 PING"));
    s.push_str(&section_cmd("info", "as_user 127.0.0.1 CLUSTER INFO"));
    s.push_str(&section_cmd("nodes", "as_user 127.0.0.1 CLUSTER NODES"));
    s.push_str(&section_cmd(
        "replication",
        "as_user 127.0.0.1 INFO replication",
    ));
    s.push_str(&section_cmd(
        "keyslot",
        &format!("as_user 127.0.0.1 CLUSTER KEYSLOT {}", DATA_KEY),
    ));
    s.push_str(&section_cmd("acl_list", "as_user 127.0.0.1 ACL LIST"));
    s.push_str(&section_cmd(
        "noauth",
        &format!("timeout 10 redis-cli $tls -h {ip} PING </dev/null 2>&1; echo \"@@rc=$?\""),
    ));
    s.push_str(&section_cmd(
        "wrongpass",
        &format!(
            "timeout 10 redis-cli $tls -h {ip} AUTH default redisctl-verify-not-the-password </dev/null 2>&1; echo \"@@rc=$?\""
        ),
    ));
    s.push_str(&section_cmd(
        "plaintext",
        &PLAINTEXT_SCRIPT
            .replace("NODE_IP", &ip.to_string())
            .replace("REDIS_PORT", &port.to_string()),
    ));
    s.push_str(&section_cmd(
        "cert",
        &format!("cat {} 2>&1", conf::NODE_CERT.path),
    ));
    // The TLS handshake itself (openssl, on the node): each protocol version offered alone on
    // the client port (old ones with the client's own floor lowered, so that a refusal is the
    // server's), then the cluster bus port; each verifies the node's certificate against the
    // CA and the node's IP, presenting the node's certificate as the client.
    let verify_args = format!(
        "-CAfile {} -cert {} -key {} -verify_ip {ip} -verify_return_error -brief",
        conf::CA_CERT.path,
        conf::NODE_CERT.path,
        conf::NODE_KEY.path
    );
    let mut hs = String::new();
    for (label, target, flag) in HANDSHAKES {
        let port = if *target == "bus" {
            spec.redis.bus_port()
        } else {
            port
        };
        hs.push_str(&format!(
            "o=$(timeout 10 openssl s_client -connect {ip}:{port} {flag} {verify_args} </dev/null 2>&1); echo \"{label} rc=$? $(printf '%s' \"$o\" | grep -m1 -E 'Protocol version|alert|error|rror:|not found')\"; "
        ));
    }
    s.push_str(&section_cmd("handshakes", hs.trim_end_matches("; ")));
    s.push_str(&format!(
        "echo '@@modes@@'\n{}echo '@@end@@'\n",
        crate::redis::files::stat_script()
    ));
    // The kernel values in force, and the running server's own open-files limit.
    s.push_str(&format!(
        "echo '@@kernel@@'\n{}p=$(cat {} 2>/dev/null); [ -n \"$p\" ] && grep -H 'Max open files' /proc/$p/limits 2>/dev/null\necho '@@end@@'\n",
        crate::redis::kernel::observe_script(),
        conf::PID_FILE
    ));
    // Since the last start only: the start's line resets what was collected.
    s.push_str(&section_cmd(
        "redis_log",
        &format!(
            "awk '/Redis is starting/ {{ s = $0 \"\\n\" }} /WARNING/ {{ s = s $0 \"\\n\" }} END {{ printf \"%s\", s }}' {} 2>&1",
            conf::LOG_FILE
        ),
    ));
    s
}

/// Every node of the spec probed at once (none if `located` failed: that reason for each),
/// in the spec's order.
pub(super) async fn probe_all(
    rt: &Arc<NodeRuntime>,
    spec: &Arc<Spec>,
    pw: &Secret,
    located: Result<(), String>,
) -> Vec<NodeProbe> {
    let mut set = tokio::task::JoinSet::new();
    for (i, n) in spec.nodes.nodes.iter().enumerate() {
        let (rt, spec, pw, located) = (rt.clone(), spec.clone(), pw.clone(), located.clone());
        let (name, ip, az) = (n.name.clone(), n.private_ip, n.az.clone());
        set.spawn(async move {
            let out = match located {
                Err(e) => Err(e),
                Ok(()) => probe(&rt, &spec, &name, ip, &pw).await,
            };
            (
                i,
                NodeProbe {
                    node: name,
                    ip,
                    az,
                    out,
                },
            )
        });
    }
    let mut v = Vec::new();
    while let Some(j) = set.join_next().await {
        v.push(j.expect("probe task"));
    }
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, p)| p).collect()
}

async fn probe(
    rt: &NodeRuntime,
    spec: &Spec,
    node: &str,
    ip: Ipv4Addr,
    pw: &Secret,
) -> Result<ProbeOut, String> {
    rt.reach(node).await.map_err(|e| chain(&e))?;
    let out = rt
        .sudo_on(node, &probe_script(spec, ip), Some(pw.expose().as_bytes()))
        .await
        .map_err(|e| chain(&e))?;
    let t = out.stdout_str();
    if !t.contains("@@cert@@") {
        return Err(format!(
            "the probe script did not run (exit {}): {}",
            out.status,
            first_line(&out.stderr_str())
        ));
    }
    Ok(ProbeOut {
        tls_ping: section(&t, "ping"),
        cluster_info: section(&t, "info"),
        cluster_nodes: section(&t, "nodes"),
        replication: section(&t, "replication"),
        keyslot: section(&t, "keyslot"),
        noauth: section_run(&t, "noauth"),
        wrongpass: section_run(&t, "wrongpass"),
        acl_list: section_run(&t, "acl_list"),
        plaintext: section_raw(&t, "plaintext"),
        cert: section(&t, "cert"),
        modes: section(&t, "modes"),
        handshakes: section(&t, "handshakes"),
        kernel: section(&t, "kernel"),
        redis_log: section(&t, "redis_log"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_exit_status() {
        let t = "@@a@@\nOK\n@@rc=0\n@@end@@\n@@b@@\nNOPERM x\n@@rc=1\n@@end@@\n";
        assert_eq!(section(t, "a"), "OK");
        assert_eq!(section(t, "b"), "NOPERM x");
        assert_eq!(section_rc(t, "b"), Some(1));
        assert_eq!(section(t, "c"), "");
    }

    #[test]
    fn scripts_carry_no_secret_and_read_stdin() {
        let spec = crate::redis::test_spec::reference();
        let s = probe_script(&spec, "10.0.1.10".parse().unwrap());
        assert!(s.contains("pw=\"$(cat)\""));
        assert!(s.contains("REDISCLI_AUTH=\"$pw\""));
        assert!(s.contains("echo \"10.0.1.10 6379\""));
        assert!(s.contains("timeout 10 redis-cli -h \"$h\" -p \"$p\" PING"));
        assert!(!s.contains("NODE_IP") && !s.contains("REDIS_PORT"));
        // The node runs it with `sh -c`: it parses.
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &s])
            .output()
            .expect("sh runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
