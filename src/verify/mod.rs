//! `redisctl verify`: the acceptance checks on the live cluster, each a row with a verdict and
//! the evidence it was reached on.
//!
//! The model: gather, then judge. One probe script per node, all nodes at once over their
//! pinned sessions, collects what redis-cli prints (CLUSTER INFO / NODES, INFO replication,
//! an unauthenticated and a plaintext PING, the node certificate); one DescribeVolumes reads the
//! root volumes; the security group and the instances' metadata options come from the same
//! observation `plan` makes. Then, with the slot map known, the data write and one script per
//! ACL user run concurrently. The judging in [`eval`] is pure. A node that cannot be reached
//! fails the checks that needed it, with the reason; it never stops the others.
//!
//! Nothing destructive runs: FLUSHALL is tried with an argument the server refuses after the
//! permission check, test keys expire within a minute and are deleted when allowed, and
//! `patient:12345` is written only if absent (`SET … NX`). Passwords travel only on the SSH
//! stdin, and every evidence line is scrubbed of them before it is shown.

pub mod eval;
pub mod render;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::aws::Aws;
use crate::node::{NodeError, NodeRuntime};
use crate::observed::Observed;
use crate::redis::conf;
use crate::spec::Spec;
use crate::spec::secrets::Secret;
use crate::ssh::sh_quote;
use eval::{NodeProbe, Outcome, ProbeOut};

/// One row: a check, its verdict and what was seen.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub evidence: Vec<String>,
}

impl Check {
    pub fn fail(name: impl Into<String>, evidence: Vec<String>) -> Check {
        Check {
            name: name.into(),
            passed: false,
            evidence,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub cluster: String,
    pub checks: Vec<Check>,
    pub elapsed: Duration,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

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
fn prelude(spec: &Spec, user: &str) -> String {
    format!(
        "set +e\npw=\"$(cat)\"\ntls={}\nas_user() {{ h=$1; shift; REDISCLI_AUTH=\"$pw\" timeout 15 redis-cli $tls -h \"$h\" --user {} --no-auth-warning \"$@\" 2>&1; echo \"@@rc=$?\"; }}\n",
        sh_quote(&tls_opts(spec)),
        sh_quote(user)
    )
}

fn section_cmd(name: &str, cmd: &str) -> String {
    format!("echo '@@{name}@@'; {cmd}; echo '@@end@@'\n")
}

/// The text between `@@name@@` and the next `@@end@@`, without the `@@rc=` line.
fn section(text: &str, name: &str) -> String {
    let marker = format!("@@{name}@@\n");
    let Some(start) = text.find(&marker).map(|i| i + marker.len()) else {
        return String::new();
    };
    let end = text[start..]
        .find("@@end@@")
        .map(|i| i + start)
        .unwrap_or(text.len());
    text[start..end]
        .lines()
        .filter(|l| !l.starts_with("@@rc="))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The exit status a section recorded with `@@rc=`.
fn section_rc(text: &str, name: &str) -> Option<i32> {
    let marker = format!("@@{name}@@\n");
    let start = text.find(&marker)? + marker.len();
    let end = text[start..].find("@@end@@")? + start;
    text[start..end]
        .lines()
        .find_map(|l| l.strip_prefix("@@rc="))
        .and_then(|v| v.trim().parse().ok())
}

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
        &format!("as_user 127.0.0.1 CLUSTER KEYSLOT {}", eval::DATA_KEY),
    ));
    s.push_str(&section_cmd(
        "noauth",
        &format!("timeout 10 redis-cli $tls -h {ip} PING 2>&1"),
    ));
    s.push_str(&section_cmd(
        "wrongpass",
        &format!(
            "timeout 10 redis-cli $tls -h {ip} AUTH default redisctl-verify-not-the-password 2>&1"
        ),
    ));
    s.push_str(&section_cmd(
        "plaintext",
        &format!("timeout 10 redis-cli -h {ip} -p {port} PING 2>&1"),
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
    for (label, target, flag) in eval::HANDSHAKES {
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
    s
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
            eval::first_line(&out.stderr_str())
        ));
    }
    Ok(ProbeOut {
        tls_ping: section(&t, "ping"),
        cluster_info: section(&t, "info"),
        cluster_nodes: section(&t, "nodes"),
        replication: section(&t, "replication"),
        keyslot: section(&t, "keyslot"),
        noauth: section(&t, "noauth"),
        wrongpass: section(&t, "wrongpass"),
        plaintext: section(&t, "plaintext"),
        cert: section(&t, "cert"),
        modes: section(&t, "modes"),
        handshakes: section(&t, "handshakes"),
    })
}

/// An error with its causes, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Run `argv` lists as `user` on `node`, one section each; the outcomes in order.
async fn run_as(
    rt: &NodeRuntime,
    spec: &Spec,
    node: &str,
    user: &str,
    pw: &Secret,
    cmds: &[(String, Vec<String>)],
) -> Result<Vec<(String, Option<i32>)>, String> {
    let mut s = prelude(spec, user);
    for (i, (host, argv)) in cmds.iter().enumerate() {
        let args: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
        s.push_str(&section_cmd(
            &format!("c{i}"),
            &format!("as_user {} {}", sh_quote(host), args.join(" ")),
        ));
    }
    s.push_str("echo '@@done@@'\n");
    let out = rt
        .sudo_on(node, &s, Some(pw.expose().as_bytes()))
        .await
        .map_err(|e| chain(&e))?;
    let t = out.stdout_str();
    if !t.contains("@@done@@") {
        return Err(format!(
            "on {node}: the script did not finish (exit {}): {}",
            out.status,
            eval::first_line(&out.stderr_str())
        ));
    }
    Ok((0..cmds.len())
        .map(|i| {
            let n = format!("c{i}");
            (section(&t, &n), section_rc(&t, &n))
        })
        .collect())
}

/// The ACL row of one user, its commands run on `node`.
async fn acl_user(
    rt: Arc<NodeRuntime>,
    spec: Arc<Spec>,
    node: String,
    user: String,
    pw: Secret,
    token: String,
) -> Check {
    let u = spec
        .users
        .iter()
        .find(|u| u.name == user)
        .expect("the user is in the spec");
    let tries = eval::acl_tries(u, &token);
    let cmds: Vec<(String, Vec<String>)> = tries
        .iter()
        .map(|t| {
            let mut a = vec!["-c".to_string()];
            a.extend(t.argv.iter().cloned());
            ("127.0.0.1".to_string(), a)
        })
        .collect();
    let outcomes = run_as(&rt, &spec, &node, &user, &pw, &cmds).await.map(|v| {
        v.into_iter()
            .map(|(t, rc)| eval::classify(&t, rc))
            .collect::<Vec<_>>()
    });
    // A GET that ran must return what the SET wrote.
    let outcomes = outcomes.map(|mut v| {
        for (t, o) in tries.iter().zip(v.iter_mut()) {
            if t.argv[0] == "GET"
                && tries
                    .iter()
                    .any(|s| s.argv[0] == "SET" && s.argv[1] == t.argv[1] && s.expect_allowed)
                && let Outcome::Allowed(r) = o
            {
                *o = if *r == token {
                    Outcome::Allowed("read back the value written".into())
                } else {
                    Outcome::Broken(format!("read back `{r}`, not the value written"))
                };
            }
        }
        v
    });
    let mut check = eval::acl_check(&user, &tries, outcomes);
    check.evidence.insert(0, format!("as {user} on {node}"));
    check
}

/// Write `patient:12345` (if absent) as the data writer, read it through `redis-cli -c` and
/// directly on the owning master, then delete it.
async fn data(
    rt: Arc<NodeRuntime>,
    spec: Arc<Spec>,
    probes: Arc<Vec<NodeProbe>>,
    node: String,
    pw: Secret,
    token: String,
) -> Check {
    let name = "data distribution";
    let key = eval::DATA_KEY;
    let writer = eval::data_writer(&spec).name.clone();
    let slot = eval::key_slot(key);
    let mut ev = Vec::new();
    let redis_slot = probes
        .iter()
        .find_map(|p| p.out.as_ref().ok())
        .map(|o| eval::first_line(&o.keyslot))
        .unwrap_or_default();
    let mut passed = redis_slot == slot.to_string();
    ev.push(format!(
        "CLUSTER KEYSLOT {key} = {redis_slot} (CRC16 here: {slot})"
    ));
    let Some((owner, owner_ip)) = eval::owner(&spec, &probes, slot) else {
        ev.push(format!("no master serves slot {slot}"));
        return Check::fail(name, ev);
    };
    ev.push(format!("slot {slot} is served by {owner} ({owner_ip})"));
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let local = "127.0.0.1".to_string();
    let cmds = vec![
        (
            local.clone(),
            s(&["-c", "SET", key, &token, "NX", "PX", "120000"]),
        ),
        (local.clone(), s(&["-c", "GET", key])),
        (owner_ip.clone(), s(&["GET", key])),
    ];
    let out = match run_as(&rt, &spec, &node, &writer, &pw, &cmds).await {
        Ok(o) => o,
        Err(why) => {
            ev.push(why);
            return Check::fail(name, ev);
        }
    };
    let set = eval::first_line(&out[0].0);
    let created = set == "OK";
    let read = |i: usize| match eval::classify(&out[i].0, out[i].1) {
        Outcome::Allowed(v) if created && v == token => (true, "the value written".to_string()),
        Outcome::Allowed(v) if !created && v != "(nil)" => (true, "the existing value".to_string()),
        Outcome::Allowed(v) if v.starts_with("MOVED") => (false, v),
        Outcome::Allowed(_) => (false, "a different value".to_string()),
        Outcome::Denied(r) | Outcome::Broken(r) => (false, r),
    };
    if created {
        ev.push(format!(
            "SET {key} as {writer} via {node} with redis-cli -c: OK"
        ));
    } else if set.is_empty() || set == "(nil)" {
        ev.push(format!(
            "{key} already exists: left as it is (SET NX wrote nothing)"
        ));
    } else {
        passed = false;
        ev.push(format!("SET {key} as {writer}: {set}"));
    }
    let (ok_c, what_c) = read(1);
    let (ok_o, what_o) = read(2);
    passed &= ok_c && ok_o;
    ev.push(format!("GET through redis-cli -c from {node}: {what_c}"));
    ev.push(format!("GET on {owner} directly (no redirect): {what_o}"));
    if created {
        let del = vec![(local, s(&["-c", "DEL", key]))];
        let deleted = run_as(&rt, &spec, &node, &writer, &pw, &del)
            .await
            .map(|o| eval::first_line(&o[0].0));
        ev.push(match deleted {
            Ok(r) if r == "1" => format!("deleted {key}"),
            Ok(r) => format!("DEL {key}: {r} (it expires within 2 minutes)"),
            Err(e) => format!("DEL {key}: {e} (it expires within 2 minutes)"),
        });
    }
    Check {
        name: name.into(),
        passed,
        evidence: ev,
    }
}

/// Root volumes: one DescribeVolumes of every node's root volume.
async fn volumes(spec: &Spec, observed: &Observed, aws: &Aws) -> Check {
    let name = "root volumes encrypted";
    let mut ev = Vec::new();
    let mut passed = true;
    let mut wanted: Vec<(String, String, String)> = Vec::new();
    for n in &spec.nodes.nodes {
        let Some(i) = eval::node_instance(observed, &n.name) else {
            passed = false;
            ev.push(format!("{}: no instance", n.name));
            continue;
        };
        let root = i
            .root_device_name
            .as_ref()
            .and_then(|d| i.block_devices.get(d));
        match root {
            Some(v) => wanted.push((n.name.clone(), i.id.clone(), v.clone())),
            None => {
                passed = false;
                ev.push(format!("{} ({}): no root volume attached", n.name, i.id));
            }
        }
    }
    if !wanted.is_empty() {
        let ids: Vec<String> = wanted.iter().map(|w| w.2.clone()).collect();
        match aws
            .client
            .describe_volumes()
            .set_volume_ids(Some(ids))
            .send()
            .await
        {
            Err(e) => {
                passed = false;
                ev.push(chain(&crate::aws::api_err(
                    "DescribeVolumes",
                    &spec.cluster.name,
                    e,
                )));
            }
            Ok(out) => {
                for (node, inst, vol) in &wanted {
                    let v = out.volumes().iter().find(|v| v.volume_id() == Some(vol));
                    let Some(v) = v else {
                        passed = false;
                        ev.push(format!("{node} ({inst}): {vol} not found"));
                        continue;
                    };
                    let enc = v.encrypted() == Some(true);
                    if spec.nodes.root_volume.encrypted {
                        passed &= enc;
                    }
                    ev.push(format!(
                        "{node} ({inst}) {vol}: Encrypted={} KmsKeyId={}",
                        enc,
                        v.kms_key_id().unwrap_or("-")
                    ));
                }
            }
        }
    }
    if !spec.nodes.root_volume.encrypted {
        ev.push("the spec does not ask for encryption".into());
    }
    Check {
        name: name.into(),
        passed,
        evidence: ev,
    }
}

/// Replace every secret value in the evidence (defence in depth: none should be there).
fn scrub(checks: &mut [Check], secrets: &[(String, Secret)]) {
    for c in checks {
        for line in &mut c.evidence {
            for (_, s) in secrets {
                if !s.expose().is_empty() && line.contains(s.expose()) {
                    *line = line.replace(s.expose(), "<redacted>");
                }
            }
        }
    }
}

/// Run every check against the live cluster. Errors only when the checks cannot start at all
/// (the state directory, the known hosts); a node that does not answer is a failed check.
pub async fn run(
    spec: &Spec,
    observed: &Observed,
    aws: &Aws,
    secrets: Vec<(String, Secret)>,
) -> Result<Report, NodeError> {
    let started = Instant::now();
    let rt = Arc::new(NodeRuntime::new(spec, aws.clone(), secrets.clone())?);
    let spec_a = Arc::new(spec.clone());
    let pw = |user: &str| {
        secrets
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, s)| s.clone())
    };
    let op_pw = pw(&spec.operator_user().name).expect("NodeRuntime::new checked it");
    let token = format!(
        "redisctl-verify-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );

    // Phase 1: every node probed at once; the root volumes meanwhile.
    let located = rt.locate_all().await.map_err(|e| chain(&e));
    let mut set = tokio::task::JoinSet::new();
    for (i, n) in spec.nodes.nodes.iter().enumerate() {
        let (rt, spec, pw, located) = (rt.clone(), spec_a.clone(), op_pw.clone(), located.clone());
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
    let vols = volumes(spec, observed, aws);
    let (mut probes, vol_check) = tokio::join!(
        async {
            let mut v = Vec::new();
            while let Some(j) = set.join_next().await {
                v.push(j.expect("probe task"));
            }
            v.sort_by_key(|(i, _)| *i);
            v.into_iter().map(|(_, p)| p).collect::<Vec<_>>()
        },
        vols
    );
    probes.shrink_to_fit();
    let probes = Arc::new(probes);

    // Phase 2: the data write and the ACL users, concurrently, on reachable nodes.
    // Masters first: commands run there without a replica's READONLY in the way.
    let mut reachable: Vec<(bool, String)> = probes
        .iter()
        .filter_map(|p| {
            let o = p.out.as_ref().ok()?;
            Some((o.replication.contains("role:slave"), p.node.clone()))
        })
        .collect();
    reachable.sort_by_key(|(replica, _)| *replica);
    let reachable: Vec<String> = reachable.into_iter().map(|(_, n)| n).collect();
    let mut checks = vec![eval::health(spec, &probes), eval::slots(spec, &probes)];
    let mut later = tokio::task::JoinSet::new();
    if reachable.is_empty() {
        checks.push(Check::fail(
            "data distribution",
            vec!["no node could be reached".into()],
        ));
    } else {
        let writer = eval::data_writer(spec).name.clone();
        let owner = eval::owner(spec, &probes, eval::key_slot(eval::DATA_KEY)).map(|o| o.0);
        // Write through a node that does not own the slot, so that the redirect is exercised.
        let via = reachable
            .iter()
            .find(|n| Some(*n) != owner.as_ref())
            .unwrap_or(&reachable[0])
            .clone();
        match pw(&writer) {
            Some(p) => {
                later.spawn(data(
                    rt.clone(),
                    spec_a.clone(),
                    probes.clone(),
                    via,
                    p,
                    token.clone(),
                ));
            }
            None => checks.push(Check::fail(
                "data distribution",
                vec![format!("user {writer} has no password")],
            )),
        }
    }
    let users: Vec<&crate::spec::AclUser> = spec.users.iter().filter(|u| u.enabled).collect();
    let mut acl_checks: Vec<(usize, Check)> = Vec::new();
    let mut acl_set = tokio::task::JoinSet::new();
    for (i, u) in users.iter().enumerate() {
        match (pw(&u.name), reachable.get(i % reachable.len().max(1))) {
            (Some(p), Some(node)) => {
                let fut = acl_user(
                    rt.clone(),
                    spec_a.clone(),
                    node.clone(),
                    u.name.clone(),
                    p,
                    token.clone(),
                );
                acl_set.spawn(async move { (i, fut.await) });
            }
            (None, _) => acl_checks.push((
                i,
                Check::fail(format!("acl {}", u.name), vec!["it has no password".into()]),
            )),
            (_, None) => acl_checks.push((
                i,
                Check::fail(
                    format!("acl {}", u.name),
                    vec!["no node could be reached".into()],
                ),
            )),
        }
    }
    while let Some(j) = later.join_next().await {
        checks.push(j.expect("data task"));
    }
    while let Some(j) = acl_set.join_next().await {
        acl_checks.push(j.expect("acl task"));
    }
    acl_checks.sort_by_key(|(i, _)| *i);
    checks.extend(acl_checks.into_iter().map(|(_, c)| c));

    checks.push(eval::default_off(&probes));
    checks.push(eval::tls_only(spec, &probes));
    checks.push(eval::tls_protocols(spec, &probes));
    let ca_path = spec.cluster.state_dir.join(crate::pki::CA_CERT_FILE);
    let ca = std::fs::read_to_string(&ca_path)
        .map_err(|e| format!("cannot read the cluster CA {}: {e}", ca_path.display()));
    checks.push(eval::certificates(
        &probes,
        ca.as_deref().map_err(Clone::clone),
        SystemTime::now(),
    ));
    checks.push(eval::file_modes(&probes));
    checks.push(vol_check);
    checks.push(eval::security_group(spec, observed));
    checks.push(eval::instance_metadata(spec, observed));
    rt.close().await;
    scrub(&mut checks, &secrets);
    Ok(Report {
        cluster: spec.cluster.name.clone(),
        checks,
        elapsed: started.elapsed(),
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
        assert!(s.contains("redis-cli -h 10.0.1.10 -p 6379 PING"));
    }

    #[test]
    fn scrubs_secrets() {
        let mut c = vec![Check::fail("x", vec!["saw hunter2 here".into()])];
        scrub(&mut c, &[("app".into(), Secret::new("hunter2".into()))]);
        assert_eq!(c[0].evidence[0], "saw <redacted> here");
    }
}
