//! The checks that run commands as a spec user on one node: each user's ACL tries, and the
//! data write through a node that does not own the key's slot.

use std::sync::Arc;

use super::checks::acl::{acl_check, acl_tries};
use super::checks::data::{DATA_KEY, data_writer};
use super::checks::health::owner;
use super::checks::{NodeProbe, Outcome, classify, first_line};
use super::probe::{prelude, section, section_cmd, section_rc};
use super::{Check, chain, password};
use crate::node::NodeRuntime;
use crate::redis::keyspace::key_slot;
use crate::spec::Spec;
use crate::spec::secrets::Secret;
use crate::ssh::sh_quote;

/// The data write and each enabled user's ACL row, concurrently, on the nodes that answered
/// the probe: [data distribution, acl users in the spec's order…].
pub(super) async fn user_checks(
    rt: &Arc<NodeRuntime>,
    spec: &Arc<Spec>,
    probes: &Arc<Vec<NodeProbe>>,
    secrets: &[(String, Secret)],
    token: &str,
) -> Vec<Check> {
    let pw = |user: &str| password(secrets, user);
    let token = token.to_string();
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
    let mut checks = Vec::new();
    let mut later = tokio::task::JoinSet::new();
    if reachable.is_empty() {
        checks.push(Check::fail(
            "data distribution",
            vec!["no node could be reached".into()],
        ));
    } else {
        let writer = data_writer(spec).name.clone();
        let owner = owner(spec, probes, key_slot(DATA_KEY)).map(|o| o.0);
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
                    spec.clone(),
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
                    spec.clone(),
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
    checks
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
            first_line(&out.stderr_str())
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
    let tries = acl_tries(u, &token);
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
            .map(|(t, rc)| classify(&t, rc))
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
    let mut check = acl_check(&user, &tries, outcomes);
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
    let key = DATA_KEY;
    let writer = data_writer(&spec).name.clone();
    let slot = key_slot(key);
    let mut ev = Vec::new();
    let redis_slot = probes
        .iter()
        .find_map(|p| p.out.as_ref().ok())
        .map(|o| first_line(&o.keyslot))
        .unwrap_or_default();
    let mut passed = redis_slot == slot.to_string();
    ev.push(format!(
        "CLUSTER KEYSLOT {key} = {redis_slot} (CRC16 here: {slot})"
    ));
    let Some((owner, owner_ip)) = owner(&spec, &probes, slot) else {
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
    let set = first_line(&out[0].0);
    let created = set == "OK";
    let read = |i: usize| match classify(&out[i].0, out[i].1) {
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
            .map(|o| first_line(&o[0].0));
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
