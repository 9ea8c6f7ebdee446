//! The local state directory (`.redisctl/<cluster>/`): the only local state, and only what must
//! stay secret — the CA key, the SSH private key, pinned host keys. Mode 0700.

use std::path::Path;

/// An exclusive lock on the state directory (`<dir>/apply.lock`), held while apply or destroy
/// runs: two runs from the same state directory (an operator and a cron job, two terminals)
/// never interleave their steps. Released when dropped or when the process dies. It does not
/// reach other machines (see docs/runbook.md).
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
}

/// Takes the lock without waiting; the error names the process that holds it.
pub fn lock(dir: &Path, command: &str) -> Result<Lock, String> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    crate::private_fs::private_dir(dir)
        .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
    let path = dir.join("apply.lock");
    let mut file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a file descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(format!(
            "another redisctl run holds {} ({}); wait for it to finish: two runs must not change the same cluster at once",
            path.display(),
            match holder.trim() {
                "" => "unknown process".to_string(),
                h => h.to_string(),
            }
        ));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = writeln!(file, "{command}, pid {}", std::process::id());
    Ok(Lock { _file: file })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_lock_is_refused_with_the_holder_and_free_after_drop() {
        let dir = std::env::temp_dir().join(format!("redisctl-lock-{}", std::process::id()));
        let first = super::lock(&dir, "apply").unwrap();
        let err = super::lock(&dir, "destroy").unwrap_err();
        assert!(
            err.contains(&format!("apply, pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        super::lock(&dir, "destroy").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
