//! Secret values referenced by the spec (ACL passwords). They are read only when a command
//! needs them (plan/apply/verify, not validate), are never printed (`Debug` and `Display` are
//! redacted), and leave redisctl only as SHA-256 hashes in users.acl or on an SSH stdin.

use std::fmt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::types::{SecretSource, Spec};

/// A secret value. Deliberately not `Serialize`, and redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value, for the few places that must send it (an SSH stdin, a Redis AUTH).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Lower-case hex SHA-256, the form Redis ACL files take (`#<hash>`).
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("user `{user}`: environment variable {var} is not set")]
    EnvMissing { user: String, var: String },
    #[error("user `{user}`: environment variable {var} is empty")]
    EnvEmpty { user: String, var: String },
    #[error("user `{user}`: cannot read password file {}", path.display())]
    File {
        user: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "user `{user}`: the password from {from} holds a line break: redisctl hands passwords to the nodes one per line; use a password of one line"
    )]
    LineBreak { user: String, from: String },
    #[error(
        "user `{user}`: the previous password is the current one: a rotation gives password_env/password_file the new password and previous_password_env/previous_password_file the one clients use now (or, when the rotation is over, remove the previous_password key)"
    )]
    PreviousIsCurrent { user: String },
    #[error("user `{user}`: password file {} is empty", path.display())]
    FileEmpty { user: String, path: PathBuf },
    #[error(
        "user `{user}`: password file {} is readable by group or others (mode {mode:o}); run chmod 600 on it",
        path.display()
    )]
    FileMode {
        user: String,
        path: PathBuf,
        mode: u32,
    },
}

/// Read one user's password from its source. A password file's trailing newline is dropped; a
/// line break or NUL left in it is refused (a password goes to the nodes as one line).
pub fn read(user: &str, source: &SecretSource) -> Result<Secret, SecretError> {
    let s = read_raw(user, source)?;
    if s.0.contains(['\n', '\r', '\0']) {
        return Err(SecretError::LineBreak {
            user: user.into(),
            from: match source {
                SecretSource::Env(v) => format!("environment variable {v}"),
                SecretSource::File(p) => format!("file {}", p.display()),
            },
        });
    }
    Ok(s)
}

fn read_raw(user: &str, source: &SecretSource) -> Result<Secret, SecretError> {
    match source {
        SecretSource::Env(var) => match std::env::var(var) {
            Ok(v) if v.is_empty() => Err(SecretError::EnvEmpty {
                user: user.into(),
                var: var.clone(),
            }),
            Ok(v) => Ok(Secret(v)),
            Err(_) => Err(SecretError::EnvMissing {
                user: user.into(),
                var: var.clone(),
            }),
        },
        SecretSource::File(path) => {
            use std::os::unix::fs::PermissionsExt;
            let err = |source| SecretError::File {
                user: user.into(),
                path: path.clone(),
                source,
            };
            let mode = std::fs::metadata(path).map_err(err)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(SecretError::FileMode {
                    user: user.into(),
                    path: path.clone(),
                    mode: mode & 0o777,
                });
            }
            let text = std::fs::read_to_string(path).map_err(err)?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() {
                return Err(SecretError::FileEmpty {
                    user: user.into(),
                    path: path.clone(),
                });
            }
            Ok(Secret(value.to_string()))
        }
    }
}

/// The passwords of every enabled user, in spec order: each user's current password, then,
/// while it is rotated, its previous one under the same name (so the first entry of a name is
/// always the current password). All problems at once.
pub fn read_all(spec: &Spec) -> Result<Vec<(String, Secret)>, Vec<SecretError>> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for u in spec.users.iter().filter(|u| u.enabled) {
        let current = u.password.as_ref().map(|src| read(&u.name, src));
        let previous = u.previous_password.as_ref().map(|src| read(&u.name, src));
        match (current, previous) {
            (Some(Ok(c)), Some(Ok(p))) if c == p => errors.push(SecretError::PreviousIsCurrent {
                user: u.name.clone(),
            }),
            (current, previous) => {
                for r in [current, previous].into_iter().flatten() {
                    match r {
                        Ok(s) => ok.push((u.name.clone(), s)),
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(errors)
    }
}

/// SHA-256 over every user's name and the SHA-256 of its password: changes when any password
/// changes, and tells nothing about them.
pub fn digest(secrets: &[(String, Secret)]) -> String {
    let mut h = Sha256::new();
    for (user, s) in secrets {
        h.update(user.as_bytes());
        h.update([0]);
        h.update(s.sha256_hex().as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_hash_is_sha256() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(
            s.sha256_hex(),
            "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7"
        );
    }

    #[test]
    fn file_secrets_need_mode_600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("redisctl-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let src = SecretSource::File(f.clone());
        assert!(matches!(
            read("app", &src),
            Err(SecretError::FileMode { .. })
        ));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read("app", &src).unwrap().expose(), "s3cret");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_line_break_in_a_password_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("redisctl-secret-nl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "two\nlines\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read("app", &SecretSource::File(f.clone())).unwrap_err();
        assert!(matches!(e, SecretError::LineBreak { .. }), "{e}");
        assert!(
            !e.to_string().contains("two"),
            "the value is not shown: {e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rotation_reads_the_current_password_first_then_the_previous() {
        // Unique variable names: tests run in parallel in one process.
        let (cur, prev) = ("REDISCTL_TEST_ROT_CUR", "REDISCTL_TEST_ROT_PREV");
        // SAFETY: no other test reads or writes these two variables.
        unsafe {
            std::env::set_var(cur, "new-pass");
            std::env::set_var(prev, "old-pass");
        }
        let mut spec = crate::redis::test_spec::reference();
        // Only the operator: the other users' variables are not set here.
        spec.users.retain(|u| u.operator);
        let u = spec.users.iter_mut().find(|u| u.operator).unwrap();
        let name = u.name.clone();
        u.password = Some(SecretSource::Env(cur.into()));
        u.previous_password = Some(SecretSource::Env(prev.into()));
        let all = read_all(&spec).unwrap();
        let mine: Vec<&str> = all
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, s)| s.expose())
            .collect();
        assert_eq!(mine, ["new-pass", "old-pass"]);
        let with = digest(&all);
        // The same password twice is no rotation: refused, naming the user.
        unsafe { std::env::set_var(prev, "new-pass") };
        let e = read_all(&spec).unwrap_err();
        assert!(
            matches!(&e[..], [SecretError::PreviousIsCurrent { user }] if *user == name),
            "{e:?}"
        );
        // Without the previous password, the digest (which a saved plan carries) differs.
        let u = spec.users.iter_mut().find(|u| u.operator).unwrap();
        u.previous_password = None;
        assert_ne!(digest(&read_all(&spec).unwrap()), with);
    }

    #[test]
    fn missing_env_names_the_user_and_variable() {
        let e = read(
            "app",
            &SecretSource::Env("REDISCTL_TEST_SURELY_UNSET_VAR".into()),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "user `app`: environment variable REDISCTL_TEST_SURELY_UNSET_VAR is not set"
        );
    }
}
