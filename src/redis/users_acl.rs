//! `/etc/redis/users.acl`, the ACL file Redis reads at start, the `ACL SETUSER` dry run that
//! checks a user's rules on the live server before the file is replaced, and the shell lines
//! that then make the running server's users what the file says ([`live_load_script`]).
//!
//! The file has one `user` line per user and nothing else: Redis refuses comment lines in an
//! ACL file, so the file carries no header. Passwords appear only as `#<sha256>`; the
//! plaintext never reaches a node. `default` is always first and always `off` with no
//! password, keys, channels or commands. Every user line states its key and channel lists
//! from a reset, so the result does not depend on `acl-pubsub-default`.

use crate::redis::acl::{CommandRule, RuleTarget};
use crate::spec::secrets::Secret;
use crate::spec::{AclUser, Spec};

use super::NodeFile;

/// The ACL file, named by `aclfile` in the configuration.
pub const USERS_ACL: NodeFile = NodeFile {
    path: "/etc/redis/users.acl",
    mode: 0o640,
    owner: "root",
    group: "redis",
};

/// The `default` user's line: off, no password (not `nopass`), nothing allowed.
pub const DEFAULT_USER_LINE: &str = "user default off resetpass resetkeys resetchannels -@all";

/// The user replicas log in as (only with replicas; see [`super::conf::ReplicationAuth`]).
pub const REPLICATION_USER: &str = "redisctl-replication";
/// What replication needs on the master and nothing more (Redis ACL documentation).
pub const REPLICATION_RULES: &[&str] = &["+psync", "+replconf", "+ping"];

/// The label of the replication password derived from the CA key
/// ([`crate::pki::Ca::derive_secret`]); a CA rotation keeps it in the state directory
/// ([`crate::pki::Authority::replication_secret`]).
pub use crate::pki::REPLICATION_SECRET_LABEL;

/// Prefix of the throwaway users of the `ACL SETUSER` dry run.
pub const DRY_RUN_PREFIX: &str = "redisctl-dry-run-";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsersAclError {
    #[error("user `{user}` is enabled but its password was not read")]
    MissingSecret { user: String },
}

/// The rule tokens of a user line after `user <name>`: state, password hash, keys, channels,
/// commands. `hashes` are the lower-case hex SHA-256 of the passwords the user logs in with
/// (none: no password; two while a password is rotated: Redis accepts either).
pub fn user_rules(user: &AclUser, hashes: &[String]) -> Vec<String> {
    let mut rules = vec![if user.enabled { "on" } else { "off" }.to_string()];
    rules.push("resetpass".into());
    rules.extend(hashes.iter().map(|h| format!("#{h}")));
    rules.push("resetkeys".into());
    rules.extend(user.keys.iter().map(|k| format!("~{k}")));
    rules.push("resetchannels".into());
    rules.extend(user.channels.iter().map(|c| format!("&{c}")));
    // From no commands at all, the spec's rules apply in order (unless they start from a
    // blanket `+@all` / `-@all` themselves).
    let starts_blanket = matches!(
        user.commands.first(),
        Some(CommandRule { target: RuleTarget::Category(c), .. }) if c == "all"
    );
    if !starts_blanket {
        rules.push("-@all".into());
    }
    rules.extend(user.commands.iter().map(|c| c.to_string()));
    rules
}

/// Render users.acl. `secrets` holds the passwords of the enabled users (as
/// [`crate::spec::secrets::read_all`] returns them); `replication` adds the replication user
/// with the given passwords (none: no replication user; two during a rotation).
pub fn render(
    spec: &Spec,
    secrets: &[(String, Secret)],
    replication: &[Secret],
) -> Result<String, UsersAclError> {
    let mut out = String::new();
    out.push_str(DEFAULT_USER_LINE);
    out.push('\n');
    for user in &spec.users {
        // The current password's hash, then (while it is rotated) the previous one's.
        let hashes: Vec<String> = secrets
            .iter()
            .filter(|(name, _)| *name == user.name)
            .map(|(_, secret)| secret.sha256_hex())
            .collect();
        if hashes.is_empty() && user.enabled {
            return Err(UsersAclError::MissingSecret {
                user: user.name.clone(),
            });
        }
        // A disabled user keeps no password: it cannot log in, and nothing of its old secret
        // stays on the nodes.
        let hashes = if user.enabled { hashes } else { Vec::new() };
        push_line(&mut out, &user.name, &user_rules(user, &hashes));
    }
    if !replication.is_empty() {
        // The login first, then (during a rotation) the password it replaces.
        let mut rules = vec!["on".to_string(), "resetpass".into()];
        rules.extend(replication.iter().map(|pw| format!("#{}", pw.sha256_hex())));
        rules.extend(["resetkeys".into(), "resetchannels".into(), "-@all".into()]);
        rules.extend(REPLICATION_RULES.iter().map(|r| r.to_string()));
        push_line(&mut out, REPLICATION_USER, &rules);
    }
    Ok(out)
}

fn push_line(out: &mut String, name: &str, rules: &[String]) {
    out.push_str("user ");
    out.push_str(name);
    for r in rules {
        out.push(' ');
        out.push_str(r);
    }
    out.push('\n');
}

/// The throwaway user name of the dry run for `user`.
pub fn dry_run_user(user: &str) -> String {
    format!("{DRY_RUN_PREFIX}{user}")
}

/// The dry run of one user's rules: `ACL SETUSER <throwaway> reset off …` with the user's keys,
/// channels and commands but no password, so the live server reports any rule `ACL LOAD`
/// would refuse (an unknown command name, a bad pattern) while the old file is still in
/// place. The throwaway user is `off` and has no password, so it can never log in; the
/// executor removes it with [`dry_run_cleanup_args`], and the next `ACL LOAD` drops it anyway.
pub fn dry_run_args(user: &AclUser) -> Vec<String> {
    let probe = AclUser {
        enabled: false,
        ..user.clone()
    };
    let mut args = vec![
        "ACL".to_string(),
        "SETUSER".into(),
        dry_run_user(&user.name),
        "reset".into(),
    ];
    args.extend(user_rules(&probe, &[]));
    args
}

/// The shell lines (POSIX sh, run as root on the node once the file at `path` is written) that
/// make the running server's users what the file says, keeping the connections of users that
/// stay. `cli` is the redis-cli command line logged in as the operator user.
///
/// Not `ACL LOAD`: Redis 7.0 frees every user on `ACL LOAD` and with them closes every
/// connection logged in as any user but `default`, so each ACL change (a password rotation
/// too) would cut every application connection on every node, and a client in the middle of
/// its login fails. Instead, one `ACL SETUSER <name> reset <rules>` per line of the file (each
/// atomic in Redis: the user is rebuilt from nothing, so the result is the file's line, and
/// connections stay logged in), read from the file on the node so that no hash is on a
/// command line, each token in double quotes for redis-cli (a `"` or `\` in a pattern
/// escaped); then `ACL DELUSER` for the users the server has and the file does not (Redis
/// closes their connections), and `CLIENT KILL USER` for the users the file turns `off` other
/// than `default` (a disabled user keeps no session; unauthenticated connections, which are
/// `default`'s, are left alone). Should any `ACL SETUSER` be refused (the dry run makes that
/// unlikely), `ACL LOAD` from the written file puts the whole set in place at once and the
/// step fails with Redis's answer.
///
/// Passwords are checked at login: a session opened with a password the file no longer
/// holds (the end of a rotation) stays open until it closes.
pub fn live_load_script(cli: &str, path: &str) -> String {
    let path = crate::ssh::sh_quote(path);
    format!(
        r#"n=$(grep -c '^user ' {path}) || true
out=$(sed -n '/^user /{{s/["\\]/\\&/g;s/[^ ][^ ]*/"&"/g;s/^"user" \("[^ ]*"\) /ACL SETUSER \1 reset /p;}}' {path} | {cli} 2>&1) || true
ok=$(printf '%s\n' "$out" | grep -cx OK) || true
if [ "$ok" != "$n" ]; then
  back=$({cli} ACL LOAD 2>&1) || true
  echo "ACL SETUSER from the ACL file: $ok of $n users set; Redis answered: $(printf '%s\n' "$out" | grep -vx OK | head -n 3); ACL LOAD then answered: $back" >&2
  exit 1
fi
set -f
keep=" $(sed -n 's/^user \([^ ]*\) .*/\1/p' {path} | tr '\n' ' ')"
live=$({cli} ACL USERS 2>&1) || true
case "$live" in *ERR*|*NOAUTH*|*WRONGPASS*|*NOPERM*|*"Could not connect"*) echo "ACL USERS answered: $live" >&2; exit 1;; esac
gone=""
for u in $live; do
  case "$keep" in *" $u "*) ;; *) gone="$gone $u";; esac
done
if [ -n "$gone" ]; then
  out=$({cli} ACL DELUSER $gone 2>&1) || true
  case "$out" in ''|*[!0-9]*) echo "ACL DELUSER$gone answered: $out" >&2; exit 1;; esac
fi
for u in $(sed -n 's/^user \([^ ]*\) off .*/\1/p' {path}); do
  [ "$u" = default ] && continue
  out=$({cli} CLIENT KILL USER "$u" 2>&1) || true
  case "$out" in ''|*[!0-9]*) echo "CLIENT KILL USER $u answered: $out" >&2; exit 1;; esac
done
set +f
"#
    )
}

/// `ACL DELUSER <throwaway>` after a dry run.
pub fn dry_run_cleanup_args(user: &str) -> Vec<String> {
    vec!["ACL".into(), "DELUSER".into(), dry_run_user(user)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::test_spec;

    fn secrets() -> Vec<(String, Secret)> {
        vec![
            ("admin".into(), Secret::new("admin-Secret-1".into())),
            ("app".into(), Secret::new("app-Secret-2".into())),
            ("dev".into(), Secret::new("dev-Secret-3".into())),
        ]
    }

    #[test]
    fn reference_users_match_the_reviewed_snapshot() {
        let spec = test_spec::reference();
        let out = render(&spec, &secrets(), &[]).unwrap();
        test_spec::assert_snapshot("users.acl", &out);
        assert!(out.starts_with("user default off resetpass"));
        assert!(
            out.lines().all(|l| l.starts_with("user ")),
            "only user lines: Redis refuses comments in an ACL file"
        );
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn never_a_plaintext_password() {
        let spec = test_spec::reference();
        let repl = Secret::new("repl-Secret-4".into());
        let out = render(&spec, &secrets(), std::slice::from_ref(&repl)).unwrap();
        for (_, s) in secrets()
            .iter()
            .chain([(String::new(), repl.clone())].iter())
        {
            assert!(!out.contains(s.expose()), "a plaintext password leaked");
            assert!(out.contains(&format!("#{}", s.sha256_hex())));
        }
        assert!(!out.contains('>'), "no `>password` rule at all");
        assert!(!out.contains("nopass"));
        assert!(out.ends_with(&format!(
            "user redisctl-replication on resetpass #{} resetkeys resetchannels -@all +psync +replconf +ping\n",
            repl.sha256_hex()
        )));
        // During a replication password rotation both are accepted, the login first.
        let next = Secret::new("repl-Secret-5".into());
        let out = render(&spec, &secrets(), &[next.clone(), repl.clone()]).unwrap();
        assert!(out.ends_with(&format!(
            "user redisctl-replication on resetpass #{} #{} resetkeys resetchannels -@all +psync +replconf +ping\n",
            next.sha256_hex(),
            repl.sha256_hex()
        )));
    }

    #[test]
    fn missing_secret_is_an_error_and_disabled_users_have_no_password() {
        let spec = test_spec::reference();
        let mut s = secrets();
        s.retain(|(n, _)| n != "app");
        assert_eq!(
            render(&spec, &s, &[]).unwrap_err().to_string(),
            "user `app` is enabled but its password was not read"
        );
        let mut s = secrets();
        s.push(("retired".into(), Secret::new("old".into())));
        let out = render(&spec, &s, &[]).unwrap();
        let retired = out
            .lines()
            .find(|l| l.starts_with("user retired "))
            .unwrap();
        assert_eq!(
            retired,
            "user retired off resetpass resetkeys ~old:* resetchannels -@all +@read"
        );
    }

    #[test]
    fn a_rotated_password_is_accepted_next_to_the_new_one() {
        let spec = test_spec::reference();
        let mut s = secrets();
        let old = Secret::new("app-Old-9".into());
        // As read_all gives them: the current password first, then the previous one.
        s.insert(2, ("app".into(), old.clone()));
        let out = render(&spec, &s, &[]).unwrap();
        let app = out.lines().find(|l| l.starts_with("user app ")).unwrap();
        assert!(
            app.starts_with(&format!(
                "user app on resetpass #{} #{} resetkeys",
                Secret::new("app-Secret-2".into()).sha256_hex(),
                old.sha256_hex()
            )),
            "{app}"
        );
        assert!(!out.contains(old.expose()));
        // The other users are as without the rotation.
        let plain = render(&spec, &secrets(), &[]).unwrap();
        for (a, b) in out.lines().zip(plain.lines()) {
            assert!(a == b || a.starts_with("user app "), "{a} / {b}");
        }
    }

    #[test]
    fn dry_run_has_the_rules_and_no_password() {
        let spec = test_spec::reference();
        let app = spec.users.iter().find(|u| u.name == "app").unwrap();
        let args = dry_run_args(app);
        assert_eq!(
            args[..7],
            [
                "ACL",
                "SETUSER",
                "redisctl-dry-run-app",
                "reset",
                "off",
                "resetpass",
                "resetkeys"
            ]
        );
        assert!(args.contains(&"~patient:*".to_string()));
        assert!(args.contains(&"&app:*".to_string()));
        assert!(args.contains(&"+cluster|slots".to_string()));
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with('#') || a.starts_with('>'))
        );
        assert_eq!(
            dry_run_cleanup_args("app"),
            ["ACL", "DELUSER", "redisctl-dry-run-app"]
        );
    }
}
