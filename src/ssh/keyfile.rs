//! The operator's SSH key: generated once (ed25519, mode 0600, in a 0700 directory), loaded
//! afterwards. Only its public half is ever sent anywhere (ImportKeyPair).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read SSH private key {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SSH private key {} is not an OpenSSH private key (or is passphrase-protected): {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
    #[error(
        "SSH private key {} is readable by group or others (mode {mode:o}); run chmod 600 on it",
        path.display()
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error("cannot write SSH private key {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The public key (OpenSSH text) of the private key at `path`, if the file exists.
pub fn public_key(path: &Path) -> Result<Option<String>, KeyFileError> {
    if !path.exists() {
        return Ok(None);
    }
    let key = load(path)?;
    Ok(Some(openssh_public(key.public_key())))
}

/// Load the private key, refusing a file that others can read.
pub fn load(path: &Path) -> Result<PrivateKey, KeyFileError> {
    let meta = std::fs::metadata(path).map_err(|source| KeyFileError::Read {
        path: path.into(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Mode {
            path: path.into(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.into(),
        source,
    })?;
    PrivateKey::from_openssh(text.as_bytes()).map_err(|e| KeyFileError::Parse {
        path: path.into(),
        detail: e.to_string(),
    })
}

/// Load the key at `path`, or generate a new ed25519 key there. Returns the public key text.
pub fn ensure(path: &Path, comment: &str) -> Result<String, KeyFileError> {
    if path.exists() {
        return Ok(openssh_public(load(path)?.public_key()));
    }
    let werr = |source| KeyFileError::Write {
        path: path.into(),
        source,
    };
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .map_err(werr)?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    seed.fill(0);
    key.set_comment(comment);
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| werr(std::io::Error::other(e.to_string())))?;
    // The key's directory is made private if redisctl makes it; one that exists (`~/.ssh`,
    // `~`, `/tmp`) is its owner's and keeps its mode: the key file itself is 0600.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_fs::dir_if_missing(dir).map_err(werr)?;
    }
    crate::private_fs::write_private(path, text.as_bytes()).map_err(werr)?;
    Ok(openssh_public(key.public_key()))
}

/// Where an SSH key rotation keeps the new key until every node accepts it: `<key>.next`.
pub fn next_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".next");
    p.into()
}

/// Where an SSH key rotation keeps the replaced public key until every node stopped accepting
/// it: `<key>.previous.pub`.
pub fn previous_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".previous.pub");
    p.into()
}

/// The public key a rotation replaced, if its end is still under way.
pub fn previous_public_key(path: &Path) -> Result<Option<String>, KeyFileError> {
    let previous = previous_path(path);
    match std::fs::read_to_string(&previous) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyFileError::Read {
            path: previous,
            source,
        }),
    }
}

/// The new key becomes the key (`<key>.next` renamed over it), after the public key it
/// replaces is written to `<key>.previous.pub` (kept until every node stopped accepting it). A
/// kill between the two is finished by calling this again.
pub fn promote(path: &Path) -> Result<(), KeyFileError> {
    let next = next_path(path);
    if !next.exists() {
        return Ok(());
    }
    let previous = previous_path(path);
    if !previous.exists()
        && let Some(old) = public_key(path)?
    {
        crate::private_fs::write_atomic(&previous, format!("{old}\n").as_bytes(), 0o644).map_err(
            |source| KeyFileError::Write {
                path: previous.clone(),
                source,
            },
        )?;
    }
    crate::private_fs::rename(&next, path).map_err(|source| KeyFileError::Write {
        path: path.into(),
        source,
    })
}

/// The end of a rotation: the replaced public key forgotten.
pub fn drop_previous(path: &Path) -> Result<(), KeyFileError> {
    let previous = previous_path(path);
    crate::private_fs::remove(&previous).map_err(|source| KeyFileError::Write {
        path: previous,
        source,
    })
}

/// The `type base64` of an OpenSSH public key line (without its comment): what
/// authorized_keys lines are matched by.
pub fn key_body(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn openssh_public(k: &PublicKey) -> String {
    k.to_openssh().expect("an in-memory public key encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_with_mode_600_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("redisctl-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("state/ssh_ed25519");
        let public = ensure(&path, "redisctl test").unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(
            ensure(&path, "other").unwrap(),
            public,
            "an existing key is kept"
        );
        assert_eq!(public_key(&path).unwrap().as_deref(), Some(public.as_str()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load(&path),
            Err(KeyFileError::Mode { mode: 0o644, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_directory_of_the_key_keeps_its_mode() {
        let dir = std::env::temp_dir().join(format!("redisctl-keydir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure(&dir.join("id_redisctl"), "redisctl test").unwrap();
        let dmode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o755, "the key's existing directory was chmod'ed");
        let kmode = std::fs::metadata(dir.join("id_redisctl"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(kmode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::*;

    /// A rotation on disk: the new key made beside the key, promoted over it with the old
    /// public key kept, a promotion cut short finished by a second call, then the old one
    /// forgotten.
    #[test]
    fn a_key_rotation_promotes_the_new_key_and_keeps_the_old_public_key_until_the_end() {
        let dir = std::env::temp_dir().join(format!("redisctl-key-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("ssh_ed25519");
        let old = ensure(&path, "old").unwrap();
        let new = ensure(&next_path(&path), "new").unwrap();
        assert_ne!(key_body(&old), key_body(&new));
        assert_eq!(previous_public_key(&path).unwrap(), None);
        // Cut short after the previous key was written: the second call renames.
        crate::private_fs::write_atomic(&previous_path(&path), old.as_bytes(), 0o644).unwrap();
        promote(&path).unwrap();
        promote(&path).unwrap();
        assert_eq!(public_key(&path).unwrap().as_deref(), Some(new.as_str()));
        assert!(!next_path(&path).exists());
        assert_eq!(
            previous_public_key(&path).unwrap().map(|k| key_body(&k)),
            Some(key_body(&old))
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop_previous(&path).unwrap();
        drop_previous(&path).unwrap();
        assert_eq!(previous_public_key(&path).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
