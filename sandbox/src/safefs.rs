//! File operations the sandbox (which runs as root) does in trees it does not trust: a guest's
//! root volume (the overlay upper directory, written by the guest and moved between instances
//! with its volume) and the directories `down`, `reset` and DeleteVolume remove.
//!
//! - [`Dir`]: a directory opened component by component from a trusted one with
//!   `O_NOFOLLOW`, so a symlink the guest planted (`/home/ubuntu/.ssh -> /root/.ssh`,
//!   `/etc/ssh -> /etc`) is refused with an error naming its path instead of being followed
//!   onto the machine. Everything then happens relative to the open descriptor (`mkdirat`,
//!   `fchown`/`fchmod` on the descriptor, `openat(O_NOFOLLOW)`, `renameat`, `unlinkat`); a file
//!   is written whole under a temporary name and renamed over the old name, so a symlink or a
//!   hard link at that name is replaced, never written through.
//! - [`remove_tree`]: a recursive removal that never follows a symlink and stops with an error
//!   at a mount point instead of descending into it.

use anyhow::{Context, Result, bail};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

fn cstring(name: &OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

fn check(ret: libc::c_int) -> std::io::Result<libc::c_int> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// One path component: not empty, `.`, `..` or containing a slash.
fn component(name: &str) -> Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("{name:?} is not a plain file name");
    }
    Ok(name)
}

fn openat(
    dir: RawFd,
    name: &OsStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> std::io::Result<OwnedFd> {
    let c = cstring(name)?;
    let fd = check(unsafe {
        libc::openat(
            dir,
            c.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::c_uint,
        )
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_dir_at(dir: RawFd, name: &OsStr) -> std::io::Result<OwnedFd> {
    openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

/// `fstatat` without following a symlink at `name` (`name` empty: the descriptor itself).
fn lstat_at(dir: RawFd, name: &OsStr) -> std::io::Result<libc::stat> {
    let c = cstring(name)?;
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = if name.is_empty() {
        libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    check(unsafe { libc::fstatat(dir, c.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

fn file_type(mode: libc::mode_t) -> libc::mode_t {
    mode & libc::S_IFMT
}

fn describe(mode: libc::mode_t) -> &'static str {
    match file_type(mode) {
        libc::S_IFLNK => "a symlink",
        libc::S_IFDIR => "a directory",
        libc::S_IFREG => "a regular file",
        libc::S_IFCHR => "a character device (an overlay whiteout?)",
        libc::S_IFBLK => "a block device",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        _ => "of an unknown type",
    }
}

/// The names in an open directory (without `.` and `..`).
fn list(dir: RawFd) -> std::io::Result<Vec<OsString>> {
    let dup = check(unsafe { libc::fcntl(dir, libc::F_DUPFD_CLOEXEC, 0) })?;
    let d = unsafe { libc::fdopendir(dup) };
    if d.is_null() {
        let e = std::io::Error::last_os_error();
        unsafe { libc::close(dup) };
        return Err(e);
    }
    // The duplicate shares the offset with `dir`: start from the beginning.
    unsafe { libc::rewinddir(d) };
    let mut names = Vec::new();
    let result = loop {
        unsafe { *libc::__errno_location() = 0 };
        let e = unsafe { libc::readdir(d) };
        if e.is_null() {
            let err = std::io::Error::last_os_error();
            break if err.raw_os_error().unwrap_or(0) == 0 {
                Ok(())
            } else {
                Err(err)
            };
        }
        let name = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    };
    unsafe { libc::closedir(d) };
    result.map(|()| names)
}

/// The owner and mode a directory is given when [`Dir::subdir`] creates it, from its path
/// relative to the directory `subdir` was called on.
pub type NewDirMeta<'a> = &'a dyn Fn(&str) -> (u32, u32, u32);

/// A directory opened without following a symlink (see the module doc).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the directory `path`; its last component must not be a symlink (the path up to it
    /// is the sandbox's own, e.g. `/var/lib/redisctl-sandbox/volumes`).
    pub fn open(path: &Path) -> Result<Dir> {
        let fd = open_dir_at(libc::AT_FDCWD, path.as_os_str()).map_err(|e| {
            refusal(
                libc::AT_FDCWD,
                path.as_os_str(),
                path,
                e,
                "open the directory",
            )
        })?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path this directory was reached by (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the directory `rel` (`a/b/c`, relative, no `..`) below this one, one component at a
    /// time, never following a symlink: a symlink (or a file) where a directory is expected is
    /// an error naming its path. A missing directory is made when `create` is given (with the
    /// owner and mode it returns for the directory's path relative to this one), else the answer
    /// is `None`. `rel` empty is this directory again.
    pub fn subdir(&self, rel: &str, create: Option<NewDirMeta>) -> Result<Option<Dir>> {
        let mut fd = self.fd.try_clone()?;
        let mut path = self.path.clone();
        let mut so_far = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            let part = component(part)?;
            path.push(part);
            if !so_far.is_empty() {
                so_far.push('/');
            }
            so_far.push_str(part);
            let name = OsStr::new(part);
            let next = match open_dir_at(fd.as_raw_fd(), name) {
                Ok(next) => next,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let Some(meta) = create else {
                        return Ok(None);
                    };
                    let c = cstring(name)?;
                    match check(unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), 0o700) }) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("cannot create {}", path.display()));
                        }
                    }
                    let next = open_dir_at(fd.as_raw_fd(), name).map_err(|e| {
                        refusal(fd.as_raw_fd(), name, &path, e, "open the directory")
                    })?;
                    let (mode, uid, gid) = meta(&so_far);
                    set_owner_mode(&next, &path, mode, uid, gid)?;
                    next
                }
                Err(e) => {
                    return Err(refusal(
                        fd.as_raw_fd(),
                        name,
                        &path,
                        e,
                        "open the directory",
                    ));
                }
            };
            fd = next;
        }
        Ok(Some(Dir { fd, path }))
    }

    /// Gives this directory an owner and a mode (on the open descriptor, so nothing is
    /// followed).
    pub fn set_owner_mode(&self, mode: u32, uid: u32, gid: u32) -> Result<()> {
        set_owner_mode(&self.fd, &self.path, mode, uid, gid)
    }

    /// Replaces the file `name` in this directory with `content`, owner and mode, atomically:
    /// written whole under a temporary name (created, never opened if it exists), then renamed
    /// over `name`. What was at `name` (a file, a symlink, a hard link to another file) is
    /// replaced, not written through; a directory there is an error.
    pub fn write_file(
        &self,
        name: &str,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = component(name)?;
        let target = self.path.join(name);
        let tmp = format!(
            ".{name}.rsbx-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let tmp_os = OsStr::new(&tmp);
        let fd = openat(
            self.fd.as_raw_fd(),
            tmp_os,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .with_context(|| format!("cannot create {}", self.path.join(&tmp).display()))?;
        let written = (|| -> Result<()> {
            set_owner_mode(&fd, &target, mode, uid, gid)?;
            let mut file = std::fs::File::from(fd);
            file.write_all(content)?;
            file.sync_all()?;
            let (from, to) = (cstring(tmp_os)?, cstring(OsStr::new(name))?);
            check(unsafe {
                libc::renameat(
                    self.fd.as_raw_fd(),
                    from.as_ptr(),
                    self.fd.as_raw_fd(),
                    to.as_ptr(),
                )
            })?;
            Ok(())
        })();
        if let Err(e) = written {
            if let Ok(c) = cstring(tmp_os) {
                unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
            }
            return Err(e.context(format!("cannot write {}", target.display())));
        }
        unsafe { libc::fsync(self.fd.as_raw_fd()) };
        Ok(())
    }

    /// Reads the regular file `name` in this directory, at most `limit` bytes (more is an
    /// error); `None` when there is nothing by that name. A symlink, FIFO, device or directory
    /// there is an error: nothing is followed or opened that could block or never end.
    pub fn read_file(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let name = component(name)?;
        let path = self.path.join(name);
        let os = OsStr::new(name);
        let st = match lstat_at(self.fd.as_raw_fd(), os) {
            Ok(st) => st,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if file_type(st.st_mode) != libc::S_IFREG {
            bail!(
                "refusing to read {}: it is {}, not a regular file",
                path.display(),
                describe(st.st_mode)
            );
        }
        let fd = openat(
            self.fd.as_raw_fd(),
            os,
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
            0,
        )
        .map_err(|e| refusal(self.fd.as_raw_fd(), os, &path, e, "read"))?;
        let st = lstat_at(fd.as_raw_fd(), OsStr::new(""))?;
        if file_type(st.st_mode) != libc::S_IFREG {
            bail!(
                "refusing to read {}: it is {}",
                path.display(),
                describe(st.st_mode)
            );
        }
        let mut buf = Vec::new();
        std::fs::File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if buf.len() as u64 > limit {
            bail!(
                "refusing to read {}: larger than {limit} bytes",
                path.display()
            );
        }
        Ok(Some(buf))
    }

    /// The entries of this directory with their file types (`S_IFREG`, `S_IFLNK`, …, of the
    /// entry itself, not of what a symlink names).
    pub fn entries(&self) -> Result<Vec<(String, libc::mode_t)>> {
        let names = list(self.fd.as_raw_fd())
            .with_context(|| format!("cannot list {}", self.path.display()))?;
        let mut out = Vec::new();
        for name in names {
            let st = match lstat_at(self.fd.as_raw_fd(), &name) {
                Ok(st) => st,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot stat {}", self.path.join(&name).display())
                    });
                }
            };
            out.push((name.to_string_lossy().into_owned(), file_type(st.st_mode)));
        }
        Ok(out)
    }

    /// Removes the entry `name` (not a directory) from this directory: a symlink itself, never
    /// what it names. Nothing there is fine.
    pub fn remove_file(&self, name: &str) -> Result<()> {
        let name = component(name)?;
        let c = cstring(OsStr::new(name))?;
        match check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot remove {}", self.path.join(name).display()))
            }
        }
    }
}

fn set_owner_mode(fd: &OwnedFd, path: &Path, mode: u32, uid: u32, gid: u32) -> Result<()> {
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })
        .with_context(|| format!("cannot chown {} to {uid}:{gid}", path.display()))?;
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })
        .with_context(|| format!("cannot chmod {} to {mode:o}", path.display()))?;
    Ok(())
}

/// The error for an `openat(O_NOFOLLOW)` that failed: a symlink or a non-directory is named as
/// such.
fn refusal(dir: RawFd, name: &OsStr, path: &Path, e: std::io::Error, what: &str) -> anyhow::Error {
    if let Ok(st) = lstat_at(dir, name) {
        let t = file_type(st.st_mode);
        if t == libc::S_IFLNK {
            let to = std::fs::read_link(path)
                .map(|t| format!(" (-> {})", t.display()))
                .unwrap_or_default();
            return anyhow::anyhow!(
                "refusing to follow the symlink {}{to}: the sandbox never follows a symlink inside a guest's volume or a tree it removes",
                path.display()
            );
        }
        if what == "open the directory" && t != libc::S_IFDIR {
            return anyhow::anyhow!(
                "{} is {}, not a directory",
                path.display(),
                describe(st.st_mode)
            );
        }
    }
    anyhow::Error::new(e).context(format!("cannot {what} {}", path.display()))
}

/// What `statx` says of an entry: its type, and whether it is the root of a mount (another
/// mount than `mnt_id`/`dev`, or flagged `STATX_ATTR_MOUNT_ROOT`).
struct Entry {
    mode: libc::mode_t,
    mnt_id: Option<u64>,
    dev: (u32, u32),
    mount_root: bool,
}

fn statx_at(dir: RawFd, name: &OsStr) -> std::io::Result<Entry> {
    let c = cstring(name)?;
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let mut flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_SYNC_AS_STAT;
    if name.is_empty() {
        flags |= libc::AT_EMPTY_PATH;
    }
    check(unsafe {
        libc::statx(
            dir,
            c.as_ptr(),
            flags,
            libc::STATX_TYPE | libc::STATX_MNT_ID,
            &mut stx,
        )
    })?;
    let root_flag = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok(Entry {
        mode: stx.stx_mode as libc::mode_t,
        mnt_id: (stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id),
        dev: (stx.stx_dev_major, stx.stx_dev_minor),
        mount_root: stx.stx_attributes_mask & root_flag != 0 && stx.stx_attributes & root_flag != 0,
    })
}

fn crosses(e: &Entry, parent: &Entry) -> bool {
    e.mount_root
        || e.dev != parent.dev
        || matches!((e.mnt_id, parent.mnt_id), (Some(a), Some(b)) if a != b)
}

/// Removes the directory `path` and everything under it, like `rm -r --one-file-system` but
/// stricter: a symlink is removed, never followed (`path` itself included), and a mount point
/// anywhere in the tree (or `path` itself being one) stops the removal with an error naming it
/// (what was removed before stays removed; nothing inside the mount is touched). A missing
/// `path` is fine.
pub fn remove_tree(path: &Path) -> Result<()> {
    let fd = match open_dir_at(libc::AT_FDCWD, path.as_os_str()) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(refusal(
                libc::AT_FDCWD,
                path.as_os_str(),
                path,
                e,
                "open the directory",
            ));
        }
    };
    let top = statx_at(fd.as_raw_fd(), OsStr::new(""))
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if top.mount_root {
        bail!(
            "refusing to remove {}: it is a mount point (unmount it first)",
            path.display()
        );
    }
    remove_contents(&fd, path, &top)?;
    drop(fd);
    match std::fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

fn remove_contents(dir: &OwnedFd, path: &Path, this: &Entry) -> Result<()> {
    let names = list(dir.as_raw_fd()).with_context(|| format!("cannot list {}", path.display()))?;
    for name in names {
        let child = path.join(&name);
        let e = match statx_at(dir.as_raw_fd(), &name) {
            Ok(e) => e,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot stat {}", child.display()));
            }
        };
        if crosses(&e, this) {
            bail!(
                "refusing to remove {}: it is a mount point, and a removal never crosses into a mount (unmount it first)",
                child.display()
            );
        }
        let c = cstring(&name)?;
        if file_type(e.mode) == libc::S_IFDIR {
            let sub = open_dir_at(dir.as_raw_fd(), &name).map_err(|err| {
                refusal(dir.as_raw_fd(), &name, &child, err, "open the directory")
            })?;
            // The directory opened is the one looked at (not a mount put there since).
            let opened = statx_at(sub.as_raw_fd(), OsStr::new(""))?;
            if crosses(&opened, this) {
                bail!(
                    "refusing to remove {}: it is a mount point, and a removal never crosses into a mount (unmount it first)",
                    child.display()
                );
            }
            remove_contents(&sub, &child, this)?;
            drop(sub);
            match check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
            {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot remove {}", child.display()));
                }
            }
        } else {
            match check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot remove {}", child.display()));
                }
            }
        }
    }
    Ok(())
}

/// A directory of this process's own under the temporary directory (mode 0700, made fresh, so
/// nothing else can have planted anything in it), for tools that write files by path
/// (ssh-keygen); removed with [`remove_tree`] when dropped.
pub struct PrivateTemp(PathBuf);

impl PrivateTemp {
    pub fn new(prefix: &str) -> Result<PrivateTemp> {
        use std::os::unix::fs::DirBuilderExt;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(PrivateTemp(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateTemp {
    fn drop(&mut self) {
        remove_tree(&self.0).ok();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    #[test]
    fn subdir_and_write_refuse_symlinks_and_replace_what_is_at_the_name() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "host").unwrap();
        fs::create_dir(root.path().join("a")).unwrap();
        symlink(outside.path(), root.path().join("a/link")).unwrap();
        let d = Dir::open(root.path()).unwrap();
        let err = d.subdir("a/link/x", Some(&|_| (0o755, 0, 0))).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("refusing to follow the symlink"), "{msg}");
        assert!(
            msg.contains(&root.path().join("a/link").display().to_string()),
            "{msg}"
        );
        assert!(!outside.path().join("x").exists());
        assert!(d.subdir("a/link", None).is_err());
        assert!(d.subdir("a/missing", None).unwrap().is_none());
        assert!(d.subdir("a/../a", None).is_err());

        // A symlink at a file's name is replaced, not written through.
        let a = d.subdir("a", None).unwrap().unwrap();
        symlink(outside.path().join("secret"), root.path().join("a/f")).unwrap();
        a.write_file("f", b"new", 0o640, 0, 0).unwrap();
        assert_eq!(
            fs::read_to_string(outside.path().join("secret")).unwrap(),
            "host"
        );
        let meta = fs::symlink_metadata(root.path().join("a/f")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!(fs::read_to_string(root.path().join("a/f")).unwrap(), "new");
        // No temporary file left.
        assert_eq!(fs::read_dir(root.path().join("a")).unwrap().count(), 2);

        // Reading: a symlink or a FIFO is refused, not followed or opened.
        assert!(a.read_file("link", 10).is_err());
        let fifo = CString::new(root.path().join("a/fifo").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(a.read_file("fifo", 10).is_err());
        assert!(a.read_file("f", 2).is_err(), "over the limit");
        assert_eq!(a.read_file("f", 3).unwrap().unwrap(), b"new");
        assert!(a.read_file("none", 3).unwrap().is_none());

        // Made directories get the owner and mode asked for.
        let made = d
            .subdir(
                "b/c",
                Some(&|rel| {
                    if rel == "b" {
                        (0o711, 0, 0)
                    } else {
                        (0o700, 1000, 1000)
                    }
                }),
            )
            .unwrap()
            .unwrap();
        assert_eq!(made.path(), root.path().join("b/c"));
        let b = fs::metadata(root.path().join("b")).unwrap();
        assert_eq!(b.mode() & 0o777, 0o711);
        let c = fs::metadata(root.path().join("b/c")).unwrap();
        assert_eq!((c.mode() & 0o777, c.uid()), (0o700, 1000));
    }

    /// A bind mount made for a test, unmounted (lazily) when dropped.
    pub(crate) struct Mounted(PathBuf);
    impl Drop for Mounted {
        fn drop(&mut self) {
            let c = CString::new(self.0.as_os_str().as_bytes()).unwrap();
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }

    pub(crate) fn bind_mount(src: &Path, dst: &Path) -> Option<Mounted> {
        let (s, d) = (
            CString::new(src.as_os_str().as_bytes()).unwrap(),
            CString::new(dst.as_os_str().as_bytes()).unwrap(),
        );
        let r = unsafe {
            libc::mount(
                s.as_ptr(),
                d.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if r != 0 {
            eprintln!(
                "cannot bind-mount (not root?): {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(Mounted(dst.to_path_buf()))
    }

    #[test]
    fn remove_tree_stops_at_a_mount_and_never_follows_a_symlink() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("canary"), "keep").unwrap();
        let tree = root.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/file"), "x").unwrap();
        symlink(host.path(), tree.join("a/to-host")).unwrap();
        // Without a mount: everything under the tree goes, nothing the symlink names.
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(host.path().join("canary").exists());
        remove_tree(&tree).unwrap();

        // A mount inside the tree: refused, naming it, the mount's files untouched.
        fs::create_dir_all(tree.join("a/mnt")).unwrap();
        fs::write(tree.join("a/file"), "x").unwrap();
        let Some(_m) = bind_mount(host.path(), &tree.join("a/mnt")) else {
            return;
        };
        let err = remove_tree(&tree).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("mount point"), "{msg}");
        assert!(
            msg.contains(&tree.join("a/mnt").display().to_string()),
            "{msg}"
        );
        assert_eq!(
            fs::read_to_string(host.path().join("canary")).unwrap(),
            "keep"
        );
        // The tree's root being the mount: refused too.
        let err = remove_tree(&tree.join("a/mnt")).unwrap_err();
        assert!(format!("{err:#}").contains("mount point"));
        assert!(host.path().join("canary").exists());
        // A symlink as the tree itself: refused.
        symlink(host.path(), root.path().join("link")).unwrap();
        assert!(remove_tree(&root.path().join("link")).is_err());
        assert!(host.path().join("canary").exists());
    }
}
