//! The ACL checks: each user's rules tried on the live cluster, and the `default` user off.

use super::{Cli, CliRun, NodeProbe, Outcome, reached, read_cli};
use crate::redis::acl::{self, CommandRule};
use crate::redis::keyspace::glob;
use crate::spec::AclUser;
use crate::verify::Check;

/// A concrete key inside `pattern` (`session:*` → `session:redisctl-verify`), if one is easy
/// to make.
pub fn key_in(pattern: &str) -> Option<String> {
    let k: String = pattern
        .replace('*', "redisctl-verify")
        .replace('?', "x")
        .chars()
        .filter(|c| !matches!(c, '[' | ']' | '\\' | '^'))
        .collect();
    (glob(pattern, &k) && !k.is_empty()).then_some(k)
}

/// A key no pattern of `keys` covers, if there is one.
pub fn key_outside(keys: &[String]) -> Option<String> {
    ["redisctl-verify:outside", "zz-redisctl-verify-outside"]
        .into_iter()
        .find(|k| !keys.iter().any(|p| glob(p, k)))
        .map(String::from)
}

/// One command tried as a user, and what its rules say should happen.
#[derive(Debug, Clone)]
pub struct Try {
    /// For people: `SET session:redisctl-verify`.
    pub label: String,
    pub argv: Vec<String>,
    pub expect_allowed: bool,
    /// Why the rules say so, for the evidence.
    pub because: String,
}

/// The commands to try as `user`: a write and a read on a key inside its first key pattern, a
/// write outside its patterns, FLUSHALL (with an argument it refuses, so that nothing is ever
/// flushed), CONFIG GET and CLUSTER SLOTS. Expectations come from [`acl::allows`].
pub fn acl_tries(user: &AclUser, token: &str) -> Vec<Try> {
    let rules: &[CommandRule] = &user.commands;
    let says = |cmd: &str| acl::allows(rules, cmd);
    let rule_word = |ok: bool| if ok { "allowed" } else { "denied" };
    let mut out = Vec::new();
    let inside = user.keys.iter().find_map(|p| key_in(p));
    match &inside {
        Some(k) => {
            out.push(Try {
                label: format!("SET {k}"),
                argv: vec![
                    "SET".into(),
                    k.clone(),
                    token.into(),
                    "PX".into(),
                    "60000".into(),
                ],
                expect_allowed: says("set"),
                because: format!("set {} by its commands", rule_word(says("set"))),
            });
            out.push(Try {
                label: format!("GET {k}"),
                argv: vec!["GET".into(), k.clone()],
                expect_allowed: says("get"),
                because: format!("get {} by its commands", rule_word(says("get"))),
            });
        }
        None => {
            out.push(Try {
                label: "GET redisctl-verify".into(),
                argv: vec!["GET".into(), "redisctl-verify".into()],
                expect_allowed: false,
                because: "it has no key patterns".into(),
            });
        }
    }
    if inside.is_some()
        && let Some(k) = key_outside(&user.keys)
    {
        out.push(Try {
            label: format!("SET {k}"),
            argv: vec!["SET".into(), k, token.into(), "PX".into(), "60000".into()],
            expect_allowed: false,
            because: format!("key outside {}", user.keys.join(" ")),
        });
    }
    for (label, argv, cmd) in [
        (
            "FLUSHALL (with an invalid argument: never flushes)",
            vec!["FLUSHALL", "REDISCTL-VERIFY-PROBE"],
            "flushall",
        ),
        (
            "CONFIG GET maxmemory",
            vec!["CONFIG", "GET", "maxmemory"],
            "config|get",
        ),
        ("CLUSTER SLOTS", vec!["CLUSTER", "SLOTS"], "cluster|slots"),
    ] {
        out.push(Try {
            label: label.into(),
            argv: argv.into_iter().map(String::from).collect(),
            expect_allowed: says(cmd),
            because: format!("{cmd} {} by its commands", rule_word(says(cmd))),
        });
    }
    out
}

/// The ACL row of one user from the outcomes of its tries (same order).
pub fn acl_check(user: &str, tries: &[Try], outcomes: Result<Vec<Outcome>, String>) -> Check {
    let name = format!("acl {user}");
    let outcomes = match outcomes {
        Ok(o) => o,
        Err(why) => return Check::fail(name, vec![why]),
    };
    let mut passed = outcomes.len() == tries.len();
    let mut evidence = Vec::new();
    for (t, o) in tries.iter().zip(&outcomes) {
        let (ok, seen) = match o {
            // A value read is data: not shown (only whether there was one).
            Outcome::Allowed(r)
                if t.argv[0] == "GET" && r != "(nil)" && !r.starts_with("read back") =>
            {
                (t.expect_allowed, "ran (a value)".to_string())
            }
            Outcome::Allowed(r) => (t.expect_allowed, format!("ran ({r})")),
            Outcome::Denied(r) => (!t.expect_allowed, r.clone()),
            Outcome::Broken(r) => (false, format!("no verdict: {r}")),
        };
        passed &= ok;
        let want = if t.expect_allowed { "allow" } else { "deny" };
        let mark = if ok { "ok" } else { "WRONG" };
        evidence.push(format!(
            "{}: {seen} [expected {want}: {}] {mark}",
            t.label, t.because
        ));
    }
    Check {
        name,
        passed,
        evidence,
    }
}

/// What one of `default user off`'s tries came to: the refusal it expects (`NOAUTH`,
/// `WRONGPASS`), any other reply of the server (the default user let it in), or no verdict.
fn refused_with(run: &CliRun, expected: &str, wrong: &str, passed: &mut bool) -> String {
    match read_cli(run) {
        Cli::Reply(r) if r.starts_with(&format!("{expected} ")) => r,
        Cli::Reply(r) => {
            *passed = false;
            format!("ANSWERED ({r}) [expected {expected}: {wrong}] WRONG")
        }
        Cli::Dropped(why) => {
            *passed = false;
            format!("probe failed: the server dropped the connection: {why} WRONG")
        }
        Cli::Failed(why) => {
            *passed = false;
            format!("probe failed: {why} WRONG")
        }
    }
}

/// An ACL rule as `ACL LIST` prints it, with every password and hash of one left out:
/// `#<sha256>`, `!<sha256>`, `>password` and `<password` each become their sign and `…`.
pub fn redact_rule(line: &str) -> String {
    line.split(' ')
        .map(|t| match t.chars().next() {
            Some(c @ ('#' | '!' | '>' | '<')) if t.len() > 1 => format!("{c}…"),
            _ => t.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `ACL LIST` shows the `default` user on (`Ok(Some(rule))`, the rule redacted) or
/// off (`Ok(None)`); `Err`: the listing could not be read.
fn default_in_acl_list(run: &CliRun) -> Result<Option<String>, String> {
    match read_cli(run) {
        Cli::Reply(_) => {}
        Cli::Dropped(why) => return Err(format!("the server dropped the connection: {why}")),
        Cli::Failed(why) => return Err(redact_rule(&why)),
    }
    let Some(line) = run
        .out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("user default "))
    else {
        let first = run.out.lines().map(str::trim).find(|l| !l.is_empty());
        return Err(format!(
            "no `user default` line in its reply ({})",
            redact_rule(&super::first_line(first.unwrap_or("")))
        ));
    };
    // One flag of the two is printed; the last one counts, as when Redis reads rules.
    let on = line.split(' ').rfind(|t| *t == "on" || *t == "off") == Some("on");
    Ok(on.then(|| redact_rule(line)))
}

/// No command runs without credentials (`NOAUTH`), `AUTH default <wrong>` is refused
/// (`WRONGPASS`), and `ACL LIST` shows the `default` user off: a default user turned on with a
/// password passes the first two (a connection must still authenticate) and is caught by the
/// third. Any other reply fails the check as `ANSWERED`; a probe that got no reply (redis-cli
/// missing, no connection, no answer) fails it as `probe failed: …`.
pub fn default_off(probes: &[NodeProbe]) -> Check {
    let mut passed = true;
    let mut ev = Vec::new();
    for p in probes {
        let Some(o) = reached(p, &mut passed, &mut ev) else {
            continue;
        };
        let a = refused_with(
            &o.noauth,
            "NOAUTH",
            "a command ran without credentials: the default user is on",
            &mut passed,
        );
        let b = refused_with(
            &o.wrongpass,
            "WRONGPASS",
            "the default user accepted a password",
            &mut passed,
        );
        let c = match default_in_acl_list(&o.acl_list) {
            Ok(None) => "default off".to_string(),
            Ok(Some(rule)) => {
                passed = false;
                format!("{rule} [expected off: the default user is enabled] WRONG")
            }
            Err(why) => {
                passed = false;
                format!("probe failed: {why} WRONG")
            }
        };
        ev.push(format!(
            "{}: PING without credentials: {a}; AUTH default <wrong>: {b}; ACL LIST: {c}",
            p.node
        ));
    }
    Check {
        name: "default user off".into(),
        passed,
        evidence: ev,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(noauth: (&str, i32), wrongpass: (&str, i32)) -> NodeProbe {
        let run = |(out, rc): (&str, i32)| CliRun {
            out: out.into(),
            rc: Some(rc),
        };
        NodeProbe {
            node: "redis-node-1a".into(),
            ip: std::net::Ipv4Addr::new(10, 0, 1, 10),
            az: "a".into(),
            out: Ok(crate::verify::checks::ProbeOut {
                noauth: run(noauth),
                wrongpass: run(wrongpass),
                acl_list: run((LIST_OFF, 0)),
                ..Default::default()
            }),
        }
    }

    const NOAUTH: &str = "NOAUTH Authentication required.\n";
    const HASH: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
    /// What redis-cli 7.0.15 printed for `ACL LIST` on a node redisctl made (the hash is
    /// SHA-256 of "password").
    const LIST_OFF: &str = "user admin on sanitize-payload #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 ~* &* +@all\nuser default off sanitize-payload resetchannels -@all\n";
    const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.\n";

    #[test]
    fn default_off_is_read_exactly() {
        let c = default_off(&[probe((NOAUTH, 0), (WRONGPASS, 0))]);
        assert!(c.passed, "{c:?}");
        assert_eq!(
            c.evidence,
            [
                "redis-node-1a: PING without credentials: NOAUTH Authentication required.; AUTH \
              default <wrong>: WRONGPASS invalid username-password pair or user is disabled.; \
              ACL LIST: default off"
            ]
        );
        // `ACL SETUSER default on nopass +@all ~*`: what redis-cli 7.0.15 printed then.
        let c = default_off(&[probe(("PONG\n", 0), ("OK\n", 0))]);
        assert!(!c.passed);
        assert_eq!(
            c.evidence,
            [
                "redis-node-1a: PING without credentials: ANSWERED (PONG) [expected NOAUTH: a \
              command ran without credentials: the default user is on] WRONG; AUTH default \
              <wrong>: ANSWERED (OK) [expected WRONGPASS: the default user accepted a password] \
              WRONG; ACL LIST: default off"
            ]
        );
        // On, but with no commands: still a logged-in connection.
        let c = default_off(&[probe(
            (
                "NOPERM this user has no permissions to run the 'ping' command\n",
                0,
            ),
            (WRONGPASS, 0),
        )]);
        assert!(!c.passed);
        assert!(c.evidence[0].contains("ANSWERED (NOPERM"), "{c:?}");
        // A broken probe is never a refusal: redis-cli missing, no connection, a client-side
        // TLS error, no answer.
        for (out, rc, said) in [
            (
                "sh: 1: redis-cli: not found\n",
                127,
                "probe failed: redis-cli could not run (exit 127)",
            ),
            (
                "Could not connect to Redis at 10.0.1.10:6379: Connection refused\n",
                1,
                "probe failed: Could not connect to Redis at 10.0.1.10:6379: Connection refused (exit 1) WRONG",
            ),
            (
                "Could not negotiate a TLS connection: Invalid CA Certificate File/Directory\n",
                1,
                "probe failed: Could not negotiate a TLS connection",
            ),
            (
                "",
                124,
                "probe failed: no answer within the probe's timeout",
            ),
            (
                "Error: Connection reset by peer\n",
                1,
                "probe failed: the server dropped the connection: Connection reset by peer WRONG",
            ),
        ] {
            let c = default_off(&[probe((out, rc), (out, rc))]);
            assert!(!c.passed, "{out:?}");
            assert!(
                c.evidence[0].contains(&format!("PING without credentials: {said}")),
                "{c:?}"
            );
            assert!(
                c.evidence[0].contains(&format!("AUTH default <wrong>: {said}")),
                "{c:?}"
            );
        }
        // The exit status never recorded: no verdict either.
        let mut p = probe((NOAUTH, 0), (WRONGPASS, 0));
        if let Ok(o) = p.out.as_mut() {
            o.noauth.rc = None;
        }
        let c = default_off(&[p]);
        assert!(!c.passed);
        assert!(
            c.evidence[0].contains("probe failed: no exit status recorded"),
            "{c:?}"
        );
    }

    #[test]
    fn default_on_with_a_password_is_caught_by_acl_list() {
        // `ACL SETUSER default on >secret`: a connection must still authenticate, so NOAUTH
        // and WRONGPASS come back as for a user that is off. ACL LIST tells.
        let mut p = probe((NOAUTH, 0), (WRONGPASS, 0));
        let on = format!(
            "user admin on #{HASH} ~* &* +@all\nuser default on sanitize-payload #{HASH} resetchannels -@all\n"
        );
        if let Ok(o) = p.out.as_mut() {
            o.acl_list = CliRun {
                out: on,
                rc: Some(0),
            };
        }
        let c = default_off(&[p]);
        assert!(!c.passed, "{c:?}");
        assert!(
            c.evidence[0].ends_with(
                "; ACL LIST: user default on sanitize-payload #… resetchannels -@all [expected \
                 off: the default user is enabled] WRONG"
            ),
            "{c:?}"
        );
        assert!(!c.evidence[0].contains(&HASH[..12]), "{c:?}");
        // A listing that cannot be read is no verdict: refused to the operator, no default
        // line, redis-cli failed; no hash printed from any of them.
        for (out, rc, said) in [
            (
                "NOPERM User admin has no permissions to run the 'acl|list' command\n".to_string(),
                0,
                "probe failed: no `user default` line in its reply (NOPERM User admin has no permissions",
            ),
            (
                format!("user admin on #{HASH} ~* &* +@all\n"),
                0,
                "probe failed: no `user default` line in its reply (user admin on #… ~* &* +@all) WRONG",
            ),
            (
                "".to_string(),
                124,
                "probe failed: no answer within the probe's timeout (exit 124) WRONG",
            ),
        ] {
            let mut p = probe((NOAUTH, 0), (WRONGPASS, 0));
            if let Ok(o) = p.out.as_mut() {
                o.acl_list = CliRun { out, rc: Some(rc) };
            }
            let c = default_off(&[p]);
            assert!(!c.passed);
            assert!(
                c.evidence[0].contains(&format!("ACL LIST: {said}")),
                "{c:?}"
            );
            assert!(!c.evidence[0].contains(&HASH[..12]), "{c:?}");
        }
        assert_eq!(
            redact_rule("user x on >pw <old !abc #def ~k:* +get"),
            "user x on >… <… !… #… ~k:* +get"
        );
    }

    #[test]
    fn keys_inside_and_outside_patterns() {
        assert_eq!(key_in("cache:*").as_deref(), Some("cache:redisctl-verify"));
        assert_eq!(key_outside(&["*".into()]), None);
        assert_eq!(
            key_outside(&["session:*".into()]).as_deref(),
            Some("redisctl-verify:outside")
        );
    }

    #[test]
    fn app_tries_follow_its_rules() {
        let spec = crate::redis::test_spec::reference();
        let app = spec.users.iter().find(|u| u.name == "app").unwrap();
        let tries = acl_tries(app, "t");
        let get = |l: &str| tries.iter().find(|t| t.label.starts_with(l)).unwrap();
        assert!(get("SET session:redisctl-verify").expect_allowed);
        assert!(!get("SET redisctl-verify:outside").expect_allowed);
        assert!(!get("FLUSHALL").expect_allowed);
        assert!(!get("CONFIG GET").expect_allowed);
        assert!(get("CLUSTER SLOTS").expect_allowed);
    }
}
