//! Local files that hold secrets (the CA key, the operator's SSH key, pinned host keys, issued
//! client keys) and the directories that keep them. Every such write in redisctl goes through
//! here, so there is one answer to "who can read it, and what does a crash leave behind".
//!
//! A file is written atomically with an exact mode: a temporary file in the same directory is
//! created with `O_EXCL` (a planted file or symlink is never followed), set to the mode
//! regardless of the umask (never wider than asked, not even for a moment, and never narrower
//! either), written, synced, renamed over the target, and the directory synced. A crash leaves
//! the old file or the new one; a failure at any step removes the temporary file.
//!
//! With a remote state backend ([`crate::state`]), the state directory is a private copy and a
//! [`Mirror`] stands behind it: every file written, renamed or removed here under that
//! directory is saved there before the call returns (a write the backend refuses fails like a
//! local one), so that a run killed at any point has lost nothing it wrote.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The mode of a private file.
pub const FILE_MODE: u32 = 0o600;
/// The mode of a private directory.
pub const DIR_MODE: u32 = 0o700;

/// Create `dir` (and missing parents) as a private directory, mode exactly 0700; an existing
/// directory with a wider mode is tightened to 0700.
///
/// Tightened, not refused. A directory found at 0755 is nearly always the umask's doing (a
/// `mkdir`, a restore with `cp -r` or `tar x`), and the remedy has no choice in it: the user
/// asked for redisctl's state to live there, and that state is private, so a refusal would only
/// tell them to run `chmod 700` themselves. Nothing has leaked through a loose directory but
/// file names: the secret files in it are each 0600, and a secret file found readable by others
/// is still refused where it is read (the CA key, the SSH key), because that may have leaked
/// and only the user can judge what to rotate. This was already the rule `apply` ran by (the
/// node runtime tightens the state directory before it loads the CA).
///
/// Not silently: tightening an existing directory is logged as a warning naming it and its old
/// mode. Only for directories that are redisctl's own (the state directory); a directory that
/// merely holds one of its files (`~`, `/tmp`, the parent of `ssh.private_key`) goes through
/// [`dir_if_missing`].
pub fn private_dir(dir: &Path) -> io::Result<()> {
    let existed = dir.is_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    // The creation mode was filtered by the umask, and the directory may have existed.
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
        if existed {
            tracing::warn!(
                "{}: mode {mode:04o} tightened to 0700 (redisctl's state directory is private)",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Create `dir` (and missing parents) private, mode 0700, if it does not exist; an existing
/// directory is left as it is (it is someone's: `~`, `/tmp`, a keys directory).
pub fn dir_if_missing(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    private_dir(dir)
}

/// Where the files of one directory are saved besides it (a remote state backend).
pub trait Mirror: Send + Sync {
    /// The directory whose files are mirrored (its direct children only).
    fn dir(&self) -> &Path;
    /// `path` (a file of [`Self::dir`]) was written: save its content and mode.
    fn wrote(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()>;
    /// `path` was removed.
    fn removed(&self, path: &Path) -> io::Result<()>;
}

static MIRROR: std::sync::RwLock<Option<std::sync::Arc<dyn Mirror>>> = std::sync::RwLock::new(None);

/// Mirror the writes under `m.dir()` from now on (`None`: no longer).
pub fn set_mirror(m: Option<std::sync::Arc<dyn Mirror>>) {
    *MIRROR.write().unwrap_or_else(|e| e.into_inner()) = m;
}

/// The mirror of `path`'s directory, if one is set.
fn mirror_of(path: &Path) -> Option<std::sync::Arc<dyn Mirror>> {
    let m = MIRROR.read().unwrap_or_else(|e| e.into_inner()).clone()?;
    (parent(path) == m.dir()).then_some(m)
}

/// Rename `from` to `to` (files of one directory), mirrored.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    if let Some(m) = mirror_of(to) {
        let bytes = fs::read(to)?;
        let mode = fs::metadata(to)?.permissions().mode() & 0o7777;
        m.wrote(to, &bytes, mode)?;
        m.removed(from)?;
    }
    Ok(())
}

/// Remove the file `path`, mirrored; a file already gone is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(m) = mirror_of(path) {
        m.removed(path)?;
    }
    Ok(())
}

/// Write `bytes` to `path` atomically, mode exactly 0600 (see the module's header).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic(path, bytes, FILE_MODE)
}

/// [`write_private`] with another exact `mode`, for the public halves written next to private
/// files (a certificate, 0644).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_local(path, bytes, mode)?;
    if let Some(m) = mirror_of(path) {
        m.wrote(path, bytes, mode)?;
    }
    Ok(())
}

/// [`write_atomic`] without the mirror: a file read from the backend itself.
pub(crate) fn write_local(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_path(path);
    // A leftover of a crashed process that had this pid: stale, and named for us only.
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & FILE_MODE)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent(path))
}

/// Append `bytes` to `path` and sync; a new file is created 0600 (exactly, whatever the umask).
/// For append-only records (the client certificate inventory), where a rewrite would risk
/// losing earlier lines.
pub fn append_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    if f.metadata()?.permissions().mode() & 0o777 != FILE_MODE {
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    }
    f.write_all(bytes)?;
    f.sync_all()?;
    if let Some(m) = mirror_of(path) {
        m.wrote(path, &fs::read(path)?, FILE_MODE)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `.<name>.tmp-<pid>-<n>` next to `path`: hidden, unique within this process (two threads may
/// write the same file), and recognisable as ours.
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set by [`modes_are_exact_whatever_the_umask`] for the child process it runs.
    const UMASK_ENV: &str = "REDISCTL_TEST_UMASK";

    fn tmpdir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("redisctl-private-fs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp"))
            .collect()
    }

    #[test]
    fn writes_replace_atomically_and_leave_nothing_behind() {
        let d = tmpdir("write");
        let p = d.join("secret");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600);
        write_atomic(&d.join("public"), b"cert", 0o644).unwrap();
        assert_eq!(mode(&d.join("public")), 0o644);
        assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failing_write_leaves_no_temporary_file() {
        let d = tmpdir("fail");
        // A non-empty directory where the file should go: the rename fails.
        let p = d.join("taken");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("inside"), b"x").unwrap();
        assert!(write_private(&p, b"secret").is_err());
        assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
        // No directory to write in: nothing is created anywhere.
        assert!(write_private(&d.join("missing/file"), b"secret").is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_existing_loose_directory_is_tightened() {
        let d = tmpdir("dir");
        let state = d.join("a/b/state");
        private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        fs::write(d.join("file"), b"").unwrap();
        assert!(
            private_dir(&d.join("file")).is_err(),
            "a file is no directory"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn appends_keep_earlier_lines_and_a_private_mode() {
        let d = tmpdir("append");
        let p = d.join("log.jsonl");
        append_private(&p, b"one\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        append_private(&p, b"two\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "one\ntwo\n");
        assert_eq!(mode(&p), 0o600);
        fs::remove_dir_all(&d).unwrap();
    }

    /// The umask belongs to the process, and other tests run in this one's threads: each umask
    /// is tried in a child process that runs only [`umask_child`].
    #[test]
    fn modes_are_exact_whatever_the_umask() {
        for umask in ["0", "277"] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "private_fs::tests::umask_child", "--nocapture"])
                .env(UMASK_ENV, umask)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("umask child ran"),
                "umask {umask}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn umask_child() {
        let Ok(umask) = std::env::var(UMASK_ENV) else {
            return;
        };
        let umask = u32::from_str_radix(&umask, 8).unwrap();
        let d = tmpdir(&format!("umask-{umask:o}"));
        // SAFETY: umask only sets the process's file creation mask.
        unsafe { libc::umask(umask as libc::mode_t) };
        let state = d.join("state");
        private_dir(&state).unwrap();
        write_private(&state.join("key"), b"k").unwrap();
        write_atomic(&state.join("cert"), b"c", 0o644).unwrap();
        append_private(&state.join("log"), b"l\n").unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("key")), 0o600);
        assert_eq!(mode(&state.join("cert")), 0o644);
        assert_eq!(mode(&state.join("log")), 0o600);
        fs::remove_dir_all(&d).unwrap();
        println!("umask child ran");
    }
}
