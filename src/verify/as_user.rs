//! The checks that run commands as a spec user on one node: each user's ACL tries, and the
//! data write through a node that does not own the key's slot.

use std::sync::Arc;

use super::checks::acl::{acl_check, acl_tries};
use super::checks::data::{DATA_KEY, data_writer};
use super::checks::health::owner;
use super::checks::{NodeProbe, Outcome, classify, first_line};
use super::probe::{prelude, section, section_cmd, section_rc};
use super::{Check, chain};
use crate::node::NodeRuntime;
use crate::redis::keyspace::key_slot;
use crate::spec::Spec;
use crate::spec::secrets::Secret;
use crate::ssh::sh_quote;

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
pub(super) async fn acl_user(
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
pub(super) async fn data(
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
