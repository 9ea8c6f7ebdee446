//! `[[users]]`: the ACL users, their password sources (never inline), key and channel patterns,
//! command rules, and exactly one operator able to run cluster operations.

use std::collections::BTreeMap;
use std::path::Path;

use super::checks::{expand_home, is_env_name};
use crate::redis::acl::{self, CommandRule};
use crate::spec::diag::Diags;
use crate::spec::raw::RawUser;
use crate::spec::types::{AclUser, SecretSource};

pub(super) fn users(raw: &[RawUser], base_dir: &Path, d: &mut Diags<'_>) -> Option<Vec<AclUser>> {
    if raw.is_empty() {
        d.error_help(
            "users",
            "no ACL users: at least the user redisctl operates with is needed",
            "add a [[users]] entry with operator = true (see cluster.toml.example)",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut names = BTreeMap::new();
    for (i, u) in raw.iter().enumerate() {
        let p = format!("users[{i}]");
        let Some(name) = &u.name else {
            d.error(&format!("{p}.name"), "is required");
            continue;
        };
        if name == "default" {
            d.error_help(
                &format!("{p}.name"),
                "the `default` user is always off in a redisctl cluster and cannot be configured",
                "give the user another name",
            );
            continue;
        }
        // redisctl's own users: the replication user (its password derived from the CA) and
        // the throwaway users of ACL dry runs.
        if name == crate::redis::users_acl::REPLICATION_USER
            || name.starts_with(crate::redis::users_acl::DRY_RUN_PREFIX)
        {
            d.error_help(
                &format!("{p}.name"),
                format!("`{name}` is a name redisctl keeps for its own users"),
                "give the user another name",
            );
            continue;
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            d.error(
                &format!("{p}.name"),
                format!("`{name}` is not a valid user name: letters, digits, _ - ."),
            );
        }
        if let Some(j) = names.insert(name.clone(), i) {
            d.error(
                &format!("{p}.name"),
                format!("duplicate user `{name}` (also users[{j}])"),
            );
        }
        let enabled = u.enabled.unwrap_or(true);
        if u.password.is_some() {
            d.error_help(
                &format!("{p}.password"),
                "inline passwords are not allowed: the spec is not a place for secrets",
                "use password_env = \"ENV_VAR\" or password_file = \"path\"",
            );
        }
        let password = secret_source(
            d,
            &p,
            ("password_env", &u.password_env),
            ("password_file", &u.password_file),
            base_dir,
        )
        .map(|(src, _)| src);
        if u.password_env.is_none() && u.password_file.is_none() && enabled && u.password.is_none()
        {
            d.error_help(
                &format!("{p}.password_env"),
                format!("user `{name}` is enabled but has no password source"),
                "set password_env or password_file",
            );
        }
        let previous_password = secret_source(
            d,
            &p,
            ("previous_password_env", &u.previous_password_env),
            ("previous_password_file", &u.previous_password_file),
            base_dir,
        );
        let previous_password = match previous_password {
            Some((_, key)) if !enabled => {
                d.error_help(
                    &format!("{p}.{key}"),
                    format!("user `{name}` is disabled: it has no password to rotate"),
                    format!("remove {key}"),
                );
                None
            }
            Some((src, key)) if password.as_ref() == Some(&src) => {
                d.error_help(
                    &format!("{p}.{key}"),
                    "names the same source as the current password: a rotation needs the new password and the previous one from two places",
                    "put the new password in another variable or file for password_env/password_file, and name the one clients use now here",
                );
                None
            }
            Some((src, _)) => Some(src),
            None => None,
        };
        let keys = patterns(u.keys.as_ref(), &format!("{p}.keys"), d);
        let channels = patterns(u.channels.as_ref(), &format!("{p}.channels"), d);
        let mut commands = Vec::new();
        match &u.commands {
            None => d.error_help(
                &format!("{p}.commands"),
                "is required: list the command rules, e.g. [\"+@read\", \"+@write\", \"-@dangerous\"]",
                "rules apply in order, as in Redis ACL",
            ),
            Some(list) => {
                for (j, r) in list.iter().enumerate() {
                    match CommandRule::parse(r) {
                        Ok(rule) => commands.push(rule),
                        Err(e) => d.error(&format!("{p}.commands[{j}]"), e.to_string()),
                    }
                }
            }
        }
        let operator = u.operator.unwrap_or(false);
        if operator {
            if !enabled {
                d.error(&format!("{p}.enabled"), "the operator user must be enabled");
            }
            let missing = acl::missing(&commands, acl::OPERATOR_COMMANDS);
            if u.commands.is_some() && !missing.is_empty() {
                d.error_help(
                    &format!("{p}.commands"),
                    format!(
                        "the operator user `{name}` cannot run cluster operations: missing {}",
                        missing.join(", ")
                    ),
                    "the operator user is normally an admin with [\"+@all\"]",
                );
            }
        } else if enabled && u.commands.is_some() && !keys.is_empty() {
            let missing = acl::missing(&commands, acl::CLUSTER_CLIENT_COMMANDS);
            if !missing.is_empty() {
                d.warn(
                    &format!("{p}.commands"),
                    format!(
                        "user `{name}` cannot run {}: cluster-aware client libraries will fail to connect",
                        missing.join(", ")
                    ),
                    format!(
                        "add {}",
                        missing.iter().map(|c| format!("\"+{c}\"")).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        out.push(AclUser {
            name: name.clone(),
            enabled,
            password,
            previous_password,
            keys,
            channels,
            commands,
            operator,
        });
    }
    let operators: Vec<usize> = raw
        .iter()
        .enumerate()
        .filter(|(_, u)| u.operator == Some(true))
        .map(|(i, _)| i)
        .collect();
    match operators.as_slice() {
        [] => d.error_help(
            "users",
            "no user is marked operator = true: redisctl needs one user for cluster operations",
            "mark the admin user with operator = true",
        ),
        [_] => {}
        [_, rest @ ..] => {
            for i in rest {
                d.error(
                    &format!("users[{i}].operator"),
                    format!(
                        "only one user can be the operator; users[{}] already is",
                        operators[0]
                    ),
                );
            }
        }
    }
    Some(out)
}

fn patterns(raw: Option<&Vec<String>>, path: &str, d: &mut Diags<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, p) in raw.into_iter().flatten().enumerate() {
        if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            d.error(
                &format!("{path}[{i}]"),
                format!("`{p}` is not a valid pattern: no spaces or control characters"),
            );
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// A secret's source from its pair of keys (`…_env`, `…_file`): an error at the file key when
/// both are given, at the env key when its value is no variable name; with the key it came from.
fn secret_source(
    d: &mut Diags<'_>,
    p: &str,
    (env_key, env): (&'static str, &Option<String>),
    (file_key, file): (&'static str, &Option<String>),
    base_dir: &Path,
) -> Option<(SecretSource, &'static str)> {
    match (env, file) {
        (Some(_), Some(_)) => {
            d.error(
                &format!("{p}.{file_key}"),
                format!("give either {env_key} or {file_key}, not both"),
            );
            None
        }
        (Some(env), None) => {
            if !is_env_name(env) {
                d.error(
                    &format!("{p}.{env_key}"),
                    format!("`{env}` is not an environment variable name (A-Z, 0-9, _)"),
                );
            }
            Some((SecretSource::Env(env.clone()), env_key))
        }
        (None, Some(f)) => Some((SecretSource::File(base_dir.join(expand_home(f))), file_key)),
        (None, None) => None,
    }
}
