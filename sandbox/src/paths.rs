//! Where the sandbox keeps things on the machine. `REDISCTL_SANDBOX_ROOT` moves all three roots
//! under one directory (state/, cache/, run/), e.g. for a second checkout's experiments; network
//! names (namespaces, bridge, routes) are fixed, so only one sandbox runs per machine.
//!
//! The sandbox runs as root and `down` removes directories, so the root is checked
//! ([`check_root`]: absolute, normalized, not a system directory) and `up` marks the root it
//! made with [`MARKER`]; `down` removes nothing under a root without it
//! ([`Paths::check_claimed`]).

use anyhow::{Context, Result, bail};
use std::path::{Component, Path, PathBuf};

/// The variable that moves the sandbox's directories.
pub const ROOT_ENV: &str = "REDISCTL_SANDBOX_ROOT";

/// The file `up` writes in the root given by [`ROOT_ENV`]; `down` removes nothing under a root
/// without it.
pub const MARKER: &str = ".redisctl-sandbox";

/// What a root made by the sandbox may hold besides the marker (an older `up` made these
/// without one; `up` adopts such a root).
const ROOT_LAYOUT: &[&str] = &["state", "cache", "run", "run.lock", MARKER];

#[derive(Debug, Clone)]
pub struct Paths {
    /// venv, volumes, snapshots, the hosts' kernel values, logs, AMI list.
    pub state: PathBuf,
    /// base-<content hash>/ trees.
    pub cache: PathBuf,
    /// pid files, the control socket, the test lock.
    pub run: PathBuf,
    /// `REDISCTL_SANDBOX_ROOT`, checked; `None` for the default directories.
    pub root: Option<PathBuf>,
}

/// Directories that hold the machine's own files: a sandbox root may be none of them, nor
/// anything under the first group.
const SYSTEM_TREES: &[&str] = &[
    "/proc", "/sys", "/dev", "/etc", "/boot", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
    "/libx32", "/efi",
];
const SYSTEM_DIRS: &[&str] = &[
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libx32",
    "/usr/libexec",
    "/usr/include",
    "/usr/share",
    "/usr/src",
    "/usr/local",
    "/usr/games",
    "/var/lib",
    "/var/cache",
    "/var/log",
    "/var/tmp",
    "/var/run",
    "/var/lock",
    "/var/spool",
    "/var/mail",
    "/var/opt",
    "/var/backups",
    "/var/local",
    "/var/crash",
    "/run/user",
    "/run/lock",
    "/run/netns",
    "/run/systemd",
    "/run/shm",
    "/run/mount",
    "/run/udev",
    "/run/dbus",
    "/run/sshd",
    "/dev/shm",
];

/// Refuses a `REDISCTL_SANDBOX_ROOT` that `down` could not safely clear under: it must be an
/// absolute, normalized path (no `.`, `..`, empty component or trailing slash) of at least two
/// components that is not a system directory (`/`, `/usr`, `/run`, `/tmp`, `/var/lib`, a home
/// directory `/home/NAME`, anything under /proc, /sys, /dev, /etc, …), also once the symlinks
/// in its existing part are resolved. Returns the path.
pub fn check_root(value: &std::ffi::OsStr) -> Result<PathBuf> {
    let Some(text) = value.to_str() else {
        bail!("{ROOT_ENV}={value:?} is not valid UTF-8");
    };
    if text.is_empty() {
        bail!(
            "{ROOT_ENV} is set but empty: unset it for the default directories, or give an absolute path such as /srv/redisctl-sandbox"
        );
    }
    check_root_path(text).with_context(|| format!("{ROOT_ENV}={text} is refused"))?;
    // The same rules for what the path is once its existing part's symlinks are resolved
    // (/srv/sb -> / is /).
    let path = Path::new(text);
    let mut existing = path;
    let mut rest = Vec::new();
    while !existing.exists() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
            break;
        };
        rest.push(name);
        existing = parent;
    }
    if let Ok(mut real) = existing.canonicalize() {
        for name in rest.iter().rev() {
            real.push(name);
        }
        let real_text = real.to_string_lossy();
        if real_text != text {
            check_root_path(&real_text).with_context(|| {
                format!("{ROOT_ENV}={text} is refused: it resolves to {real_text}")
            })?;
        }
    }
    Ok(path.to_path_buf())
}

fn check_root_path(text: &str) -> Result<()> {
    if !text.starts_with('/') {
        bail!("the sandbox root must be an absolute path");
    }
    let parts: Vec<&str> = text[1..].split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        let normal: PathBuf = Path::new(text)
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        bail!(
            "the sandbox root must be a normalized path (no '.', '..', '//' or trailing '/'; not {text}{})",
            if text.contains("..") {
                String::new()
            } else {
                format!(", write {}", normal.display())
            }
        );
    }
    if parts.len() < 2 {
        bail!(
            "the sandbox root must be at least two levels deep (e.g. /srv/redisctl-sandbox), not a top-level directory"
        );
    }
    let path = Path::new(text);
    if let Some(tree) = SYSTEM_TREES.iter().find(|t| path.starts_with(t)) {
        bail!("the sandbox root must not be in {tree}, a system directory");
    }
    if SYSTEM_DIRS.iter().any(|d| path == Path::new(d)) || (parts.len() == 2 && parts[0] == "home")
    {
        bail!("{text} is a system directory; give a directory of the sandbox's own below it");
    }
    if std::env::var_os("HOME").is_some_and(|h| Path::new(&h) == path) {
        bail!("{text} is the home directory");
    }
    Ok(())
}

impl Paths {
    /// The directories from the environment, `REDISCTL_SANDBOX_ROOT` checked ([`check_root`]).
    pub fn try_from_env() -> Result<Paths> {
        match std::env::var_os(ROOT_ENV) {
            Some(root) => Paths::under(Path::new(&root)),
            None => Ok(Paths {
                state: PathBuf::from("/var/lib/redisctl-sandbox"),
                cache: PathBuf::from("/var/cache/redisctl-sandbox"),
                run: PathBuf::from("/run/redisctl-sandbox"),
                root: None,
            }),
        }
    }

    /// [`Paths::try_from_env`] for tests and helpers: panics with its message.
    pub fn from_env() -> Paths {
        Paths::try_from_env().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The layout under `root`, checked as `REDISCTL_SANDBOX_ROOT` is ([`check_root`]).
    pub fn under(root: &Path) -> Result<Paths> {
        let root = check_root(root.as_os_str())?;
        Ok(Paths {
            state: root.join("state"),
            cache: root.join("cache"),
            run: root.join("run"),
            root: Some(root),
        })
    }

    /// Called by `up` before it makes anything: creates the root given by
    /// `REDISCTL_SANDBOX_ROOT` and writes [`MARKER`] in it. A root that exists without a marker
    /// is taken only when it is empty or holds nothing but the sandbox's own layout (state/,
    /// cache/, run/, run.lock: an older `up`'s); any other directory is refused, naming what it
    /// holds. The default directories carry the sandbox's name and need no marker.
    pub fn claim(&self) -> Result<()> {
        let Some(root) = &self.root else {
            return Ok(());
        };
        let marker = root.join(MARKER);
        if marker.is_file() {
            return Ok(());
        }
        if root.exists() {
            let foreign: Vec<String> = std::fs::read_dir(root)
                .with_context(|| format!("cannot read {}", root.display()))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !ROOT_LAYOUT.contains(&n.as_str()))
                .collect();
            if !foreign.is_empty() {
                bail!(
                    "{ROOT_ENV}={} is a directory the sandbox did not make (it holds {}); give a new or empty directory",
                    root.display(),
                    foreign.join(", ")
                );
            }
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        std::fs::write(
            &marker,
            "made by `redisctl-sandbox up`: `down` removes volumes, snapshots and the run directory only under a root with this file\n",
        )
        .with_context(|| format!("cannot write {}", marker.display()))?;
        Ok(())
    }

    /// Called by `down` (and before any removal of volumes): a root given by
    /// `REDISCTL_SANDBOX_ROOT` must carry [`MARKER`], so nothing is removed from a directory
    /// `up` did not make. Says whether there is anything to take down (false: the root does not
    /// exist); the default directories always pass.
    pub fn check_claimed(&self) -> Result<bool> {
        let Some(root) = &self.root else {
            return Ok(true);
        };
        if !root.exists() {
            return Ok(false);
        }
        if !root.join(MARKER).is_file() {
            bail!(
                "refusing to remove anything under {ROOT_ENV}={}: it has no {MARKER}, so `redisctl-sandbox up` did not make it (a sandbox made there by an older version: run `redisctl-sandbox up` once, which marks its own root, then `down`)",
                root.display()
            );
        }
        Ok(true)
    }

    pub fn venv(&self) -> PathBuf {
        self.state.join("venv")
    }
    pub fn volumes(&self) -> PathBuf {
        self.state.join("volumes")
    }
    pub fn volume(&self, id: &str) -> PathBuf {
        self.volumes().join(id)
    }
    pub fn snapshots(&self) -> PathBuf {
        self.state.join("snapshots")
    }
    pub fn snapshot(&self, id: &str) -> PathBuf {
        self.snapshots().join(id)
    }
    /// The hosts' own kernel values ([`crate::kernel`]), one directory per instance.
    pub fn kernel_values(&self) -> PathBuf {
        self.state.join("kernel")
    }
    pub fn host_kernel(&self, id: &str) -> PathBuf {
        self.kernel_values().join(id)
    }
    pub fn logs(&self) -> PathBuf {
        self.state.join("logs")
    }
    pub fn amis(&self) -> PathBuf {
        self.state.join("amis.json")
    }
    /// The base tree in use, recorded by `up` for the front.
    pub fn current_base(&self) -> PathBuf {
        self.run.join("base")
    }
    pub fn moto_pid(&self) -> PathBuf {
        self.run.join("moto.pid")
    }
    pub fn front_pid(&self) -> PathBuf {
        self.run.join("front.pid")
    }
    pub fn host_pids(&self) -> PathBuf {
        self.run.join("hosts")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.run.join("control.sock")
    }
    pub fn test_lock(&self) -> PathBuf {
        self.run.join("test.lock")
    }
    /// Serialises `up` and `down` (outside the run directory, which `down` removes).
    pub fn lifecycle_lock(&self) -> PathBuf {
        self.run.with_extension("lock")
    }
    /// The value of fs.inotify.max_user_instances `up` found before it raised it, for `down`.
    pub fn inotify_saved(&self) -> PathBuf {
        self.run.join("inotify-max-user-instances")
    }
    /// Root-namespace routes that `up` added, one per line, for `down`.
    pub fn routes_file(&self) -> PathBuf {
        self.run.join("routes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn a_root_down_could_not_safely_clear_is_refused() {
        for bad in [
            "",
            "relative/dir",
            "./sb",
            "/",
            "/usr",
            "/run",
            "/tmp",
            "/var",
            "/home",
            "/root",
            "/srv",
            "/etc/sb",
            "/proc/1",
            "/sys/fs",
            "/dev/shm/sb",
            "/boot/x",
            "/usr/lib",
            "/var/lib",
            "/var/tmp",
            "/run/user",
            "/home/alice",
            "/tmp/../run",
            "/tmp/a/../../run",
            "/tmp//sb",
            "/tmp/./sb",
            "/tmp/sb/",
            "//tmp/sb",
        ] {
            let err = match check_root(OsStr::new(bad)) {
                Ok(p) => panic!("{bad:?} was taken as {}", p.display()),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains(ROOT_ENV), "{bad:?}: {err}");
        }
        for good in [
            "/tmp/sb",
            "/srv/redisctl-sandbox",
            "/var/lib/redisctl-sandbox",
            "/home/alice/sb",
        ] {
            assert_eq!(check_root(OsStr::new(good)).unwrap(), Path::new(good));
        }
        // A symlink to a system directory is judged by what it names.
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/usr", &link).unwrap();
        let err = format!("{:#}", check_root(link.as_os_str()).unwrap_err());
        assert!(err.contains("resolves to /usr"), "{err}");
        let err = format!(
            "{:#}",
            check_root(link.join("lib").as_os_str()).unwrap_err()
        );
        assert!(err.contains("resolves to /usr/lib"), "{err}");
    }

    #[test]
    fn down_removes_only_under_a_root_up_marked() {
        let dir = tempfile::tempdir().unwrap();
        // Someone's directory with files of their own: up refuses it, down too.
        let theirs = dir.path().join("theirs");
        std::fs::create_dir_all(theirs.join("run")).unwrap();
        std::fs::write(theirs.join("notes.txt"), "mine").unwrap();
        let p = Paths::under(&theirs).unwrap();
        let err = format!("{:#}", p.claim().unwrap_err());
        assert!(err.contains(ROOT_ENV) && err.contains("notes.txt"), "{err}");
        assert!(!theirs.join(MARKER).exists());
        let err = format!("{:#}", p.check_claimed().unwrap_err());
        assert!(
            err.contains("refusing to remove anything under") && err.contains(MARKER),
            "{err}"
        );
        // A root holding only the sandbox's layout (an older up's) is adopted; a new one made.
        let older = dir.path().join("older");
        std::fs::create_dir_all(older.join("state/volumes")).unwrap();
        std::fs::write(older.join("run.lock"), "").unwrap();
        let p = Paths::under(&older).unwrap();
        assert!(p.check_claimed().is_err());
        p.claim().unwrap();
        assert!(p.check_claimed().unwrap());
        let new = Paths::under(&dir.path().join("new")).unwrap();
        assert!(
            !new.check_claimed().unwrap(),
            "nothing there: nothing to take down"
        );
        new.claim().unwrap();
        assert!(new.check_claimed().unwrap());
    }
}
