//! Pinned SSH host keys: one file `known_hosts` in the state directory (mode 0600, directory
//! 0700), one line per node, `<instance-id> <openssh-public-key>`. Keys are pinned by instance id,
//! not by address: a replaced node is a new instance with a new key, and a private IP is reused.
//! The same key's fingerprint is also written on the instance as the `redisctl:host-key` tag, so
//! another operator (or CI) without this file still verifies the host.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use russh::keys::{HashAlg, PublicKey};

use super::SshError;

/// The file name inside the state directory.
pub const FILE: &str = "known_hosts";

/// Serialises read-modify-write of the file between the node tasks of one process.
static WRITE: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// The pinned keys of the state directory `state_dir` (created 0700 if missing).
    pub fn open(state_dir: &Path) -> Result<KnownHosts, SshError> {
        crate::private_fs::private_dir(state_dir).map_err(|source| SshError::KnownHosts {
            path: state_dir.into(),
            source,
        })?;
        Ok(KnownHosts {
            path: state_dir.join(FILE),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pinned key (OpenSSH public key text, no comment) of `instance_id`.
    pub fn get(&self, instance_id: &str) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        text.lines().find_map(|l| {
            let (id, key) = l.trim().split_once(' ')?;
            (id == instance_id).then(|| key.trim().to_string())
        })
    }

    /// Pin `key_openssh` for `instance_id`, replacing any earlier line for it. The file is
    /// rewritten atomically ([`crate::private_fs::write_private`]).
    pub fn pin(&self, instance_id: &str, key_openssh: &str) -> Result<(), SshError> {
        let key = normalize(key_openssh)?;
        self.rewrite(instance_id, Some(&key))
    }

    /// Drop the line of `instance_id` (after the instance is terminated).
    pub fn forget(&self, instance_id: &str) -> Result<(), SshError> {
        self.rewrite(instance_id, None)
    }

    /// Fills in this file's path in a [`SshError::HostKeyChanged`], so that its message says which
    /// file to edit.
    pub fn annotate(&self, err: SshError) -> SshError {
        match err {
            SshError::HostKeyChanged {
                node,
                instance_id,
                expected_fp,
                got_fp,
                known_hosts: None,
            } => SshError::HostKeyChanged {
                node,
                instance_id,
                expected_fp,
                got_fp,
                known_hosts: Some(self.path.clone()),
            },
            other => other,
        }
    }

    fn rewrite(&self, instance_id: &str, key: Option<&str>) -> Result<(), SshError> {
        if instance_id.is_empty() || instance_id.contains(char::is_whitespace) {
            return Err(SshError::BadKey {
                detail: format!("instance id {instance_id:?} cannot be a known_hosts entry"),
            });
        }
        let _guard = WRITE.lock().unwrap_or_else(|e| e.into_inner());
        let err = |source| SshError::KnownHosts {
            path: self.path.clone(),
            source,
        };
        let old = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(e)),
        };
        let mut text = String::new();
        for line in old.lines() {
            let id = line.split_whitespace().next().unwrap_or("");
            if !line.trim().is_empty() && id != instance_id {
                text.push_str(line.trim());
                text.push('\n');
            }
        }
        if let Some(key) = key {
            text.push_str(&format!("{instance_id} {key}\n"));
        }
        if text == old {
            return Ok(());
        }
        crate::private_fs::write_private(&self.path, text.as_bytes()).map_err(err)
    }
}

pub(crate) fn parse(key_openssh: &str) -> Result<PublicKey, SshError> {
    PublicKey::from_openssh(key_openssh.trim()).map_err(|e| SshError::BadKey {
        detail: e.to_string(),
    })
}

/// `<algorithm> <base64>` without the comment.
pub(crate) fn normalize(key_openssh: &str) -> Result<String, SshError> {
    let mut key = parse(key_openssh)?;
    key.set_comment("");
    Ok(openssh(&key))
}

pub(crate) fn openssh(key: &PublicKey) -> String {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh()
        .expect("an in-memory public key encodes")
        .trim()
        .to_string()
}

pub(crate) fn fingerprint_of(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// `SHA256:<base64>` fingerprint as OpenSSH prints it (`ssh-keygen -lf`), the value of the
/// instance tag `redisctl:host-key`. Text that is not an OpenSSH public key gives
/// `"(not an OpenSSH public key)"`, which never equals a real fingerprint.
pub fn fingerprint(key_openssh: &str) -> String {
    match parse(key_openssh) {
        Ok(k) => fingerprint_of(&k),
        Err(_) => "(not an OpenSSH public key)".to_string(),
    }
}

/// The host-key fingerprints an instance's console output lists: cloud-init prints, at first
/// boot, a `-----BEGIN SSH HOST KEY FINGERPRINTS-----` block (`256 SHA256:… root@host
/// (ED25519)`, lines prefixed `ec2: `) and a `-----BEGIN SSH HOST KEY KEYS-----` block (the
/// public keys). Both are read; the first of each block only (later text on the console is
/// not cloud-init's first boot).
pub fn console_fingerprints(console: &str) -> Vec<String> {
    fn block<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        let begin = format!("-----BEGIN SSH HOST KEY {name}-----");
        let end = format!("-----END SSH HOST KEY {name}-----");
        let start = text.find(&begin)? + begin.len();
        let stop = text[start..].find(&end)? + start;
        Some(&text[start..stop])
    }
    let mut out: Vec<String> = Vec::new();
    if let Some(b) = block(console, "FINGERPRINTS") {
        for word in b.split_whitespace() {
            if word.starts_with("SHA256:") && word.len() > 7 {
                out.push(word.to_string());
            }
        }
    }
    if let Some(b) = block(console, "KEYS") {
        for line in b.lines() {
            let line = line.trim().trim_start_matches("ec2:").trim();
            if let Ok(k) = parse(line) {
                out.push(fingerprint_of(&k));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvpHlLdaZM6IN8Ljm1CdOU5wpAb5nN0C6jzsl2pXDQm comment";

    #[test]
    fn the_console_lists_fingerprints_and_keys() {
        let fp = fingerprint(A);
        let console = format!(
            "[   12.3] cloud-init[800]: Cloud-init v. 24.1 running 'modules:final'\nec2: #############\nec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\nec2: 256 SHA256:AAAAbbbbCCCC root@ip-10-0-1-10 (ECDSA)\nec2: 256 {fp} root@ip-10-0-1-10 (ED25519)\nec2: -----END SSH HOST KEY FINGERPRINTS-----\nec2: #############\n-----BEGIN SSH HOST KEY KEYS-----\n{A}\n-----END SSH HOST KEY KEYS-----\n"
        );
        let fps = console_fingerprints(&console);
        assert!(fps.contains(&fp), "{fps:?}");
        assert!(fps.contains(&"SHA256:AAAAbbbbCCCC".to_string()), "{fps:?}");
        assert_eq!(fps.len(), 2, "{fps:?}");
        assert!(console_fingerprints("no cloud-init here").is_empty());
        // Unterminated blocks count for nothing.
        assert!(
            console_fingerprints("-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 SHA256:x")
                .is_empty()
        );
    }

    #[test]
    fn pin_get_forget_with_modes() {
        let dir = std::env::temp_dir().join(format!("redisctl-kh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let kh = KnownHosts::open(&dir.join("state")).unwrap();
        assert_eq!(kh.get("i-1"), None);
        kh.pin("i-1", A).unwrap();
        kh.pin("i-2", A).unwrap();
        let want = A.rsplit_once(' ').unwrap().0;
        assert_eq!(kh.get("i-1").as_deref(), Some(want));
        let mode = std::fs::metadata(kh.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(dir.join("state"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        kh.forget("i-1").unwrap();
        assert_eq!(kh.get("i-1"), None);
        assert_eq!(kh.get("i-2").as_deref(), Some(want));
        assert!(kh.pin("i-3", "not a key").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fingerprint_as_openssh_prints_it() {
        // ssh-keygen -lf of A.
        let fp = fingerprint(A);
        assert_eq!(fp, "SHA256:ELsjzBUs+BP7PkQfGbJcktdUvRHBctcmRtVFhAnTUc4");
        assert!(!fingerprint("junk").starts_with("SHA256:"));
    }
}
