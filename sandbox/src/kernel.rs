//! Each host's own view of the two global kernel values Redis reads at startup:
//! `/proc/sys/vm/overcommit_memory` and `/sys/kernel/mm/transparent_hugepage/enabled`.
//!
//! The hosts share this machine's kernel, and nspawn mounts a guest's `/proc/sys` (but
//! `/proc/sys/net`, which is the guest's own network namespace's) and `/sys` read-only, so a
//! guest could not set either value as an EC2 instance does (`sysctl -p`, systemd-sysctl at
//! boot, a tmpfiles.d `w` line) — and must never set this machine's. So each host gets a small
//! regular file per value (`state/kernel/<instance-id>/`, [`crate::paths::Paths::host_kernel`]),
//! bound over that path inside its container only, writable by the guest's root; everything
//! else of `/proc/sys` and `/sys` stays read-only.
//!
//! A kernel set with `sysctl -w` forgets it at reboot and starts from its defaults; the guest's
//! boot then applies its own `/etc/sysctl.d` and `/etc/tmpfiles.d`. So [`prepare`] writes the
//! defaults of an Ubuntu 24.04 EC2 instance (`0`, `always [madvise] never`) at every boot of the
//! host (launch, start, RebootInstances, a guest `reboot`), before nspawn starts, and the
//! guest's systemd-sysctl and systemd-tmpfiles-setup write into the files as the boot goes.
//! (Debian's systemd-sysctl.service runs only when `/proc/sys/net/` is writable: the guest's
//! own, see [`crate::hosts`]; it skips the keys the guest may not set, EROFS being no error to
//! it.)
//!
//! How nspawn (252) is made to do it, with its own `--bind` and no mount after the guest started:
//! - a bind whose destination is under `/proc` is made *inside* the container (after its own
//!   `/proc` is mounted), so its source is a path of the container's: the files are first bound
//!   one by one at [`STAGING`] (`/run/host`, where nspawn puts what the host gives a container),
//!   then from there over the `/proc` path;
//! - a bind under `/sys` would be made before nspawn mounts the container's sysfs (with a
//!   network namespace of its own, nspawn mounts `/sys/kernel` from the inner child) and be
//!   hidden by it; naming the destination `/proc/self/root/sys/…` makes nspawn treat it as one
//!   under `/proc` and make it after sysfs, at the resolved `/sys/…` path.
//!
//! Only the files' inodes reach the container, not their directory, so a guest cannot put
//! anything else there. Nothing is mounted in this machine's mount namespace: the binds exist
//! in the container's and go with it.
//!
//! A service whose unit mounts a `/proc` of its own (`ProtectProc=`, `ProcSubset=`: systemd
//! unmounts everything under `/proc` and mounts a new procfs) would read this machine's value
//! there. Debian's and Ubuntu's Redis units do (`ProtectProc=invisible`), so a systemd host gets
//! [`UNIT_DROP_IN`] for them, read-only in `/run/systemd/system` (the runtime unit directory):
//! it binds the host's files into the service's namespace, after its procfs, read-only as
//! `ProtectKernelTunables=` has them. (`/sys` is bound recursively by systemd: the
//! transparent hugepage file stays.)
//!
//! The files are files: a write replaces what is read only from where it starts. `echo`,
//! `sysctl` and `sysctl -p` truncate; systemd-sysctl and a tmpfiles.d `w` line do not (the kernel
//! takes any write as the whole value), so `w …/enabled - - - - never` over the default leaves
//! `nevers [madvise] never`. Nothing checks what is written (the kernel refuses `5` or
//! `sometimes` with EINVAL) or shows the selected word in brackets after `echo madvise`.

use anyhow::{Context, Result};
use std::path::Path;

/// One kernel value a host has a file of its own for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    /// The file's name in the host's directory and under [`STAGING`].
    pub file: &'static str,
    /// The path the guest reads and writes (and this machine's own value there).
    pub path: &'static str,
    /// What the kernel shows after a boot, as on EC2's Ubuntu 24.04.
    pub default: &'static str,
}

pub const OVERCOMMIT_MEMORY: Value = Value {
    file: "overcommit_memory",
    path: "/proc/sys/vm/overcommit_memory",
    default: "0\n",
};

pub const TRANSPARENT_HUGEPAGE: Value = Value {
    file: "transparent_hugepage_enabled",
    path: "/sys/kernel/mm/transparent_hugepage/enabled",
    default: "always [madvise] never\n",
};

pub const VALUES: [Value; 2] = [OVERCOMMIT_MEMORY, TRANSPARENT_HUGEPAGE];

/// Where the files are bound first inside the container (see the module doc).
pub const STAGING: &str = "/run/host/redisctl-sandbox";

/// The units that mount a `/proc` of their own and read a value there: the Redis server's, as
/// Debian and Ubuntu ship them (the template is what redisctl runs, `redis-server@cluster`).
pub const UNITS_WITH_OWN_PROC: [&str; 2] = ["redis-server.service", "redis-server@.service"];

/// The drop-in those units get on a systemd host (see the module doc).
pub const UNIT_DROP_IN: &str = "\
# redisctl-sandbox: this unit mounts a /proc of its own (ProtectProc=), which would show the
# sandbox machine's kernel values, not this host's: the host's own, read-only.
[Service]
BindReadOnlyPaths=-/run/host/redisctl-sandbox/overcommit_memory:/proc/sys/vm/overcommit_memory
";
const UNIT_DROP_IN_FILE: &str = "unit-drop-in.conf";
const UNIT_DROP_IN_NAME: &str = "50-redisctl-sandbox.conf";

/// The values this machine's kernel has: a kernel built without transparent hugepages has no
/// `/sys/kernel/mm/transparent_hugepage`, and its hosts have none either (nspawn could not
/// make the mount point in sysfs).
pub fn present() -> Vec<Value> {
    VALUES
        .into_iter()
        .filter(|v| Path::new(v.path).exists())
        .collect()
}

/// A kernel boot of the host whose files are in `dir`: every value of `values` gets its default
/// (the file replaced whole, never written through: [`crate::safefs::Dir::write_file`], 0644
/// root, as the kernel's), `dir` is made (0700) if missing. Returns nspawn's options that bind
/// them into the container, and [`UNIT_DROP_IN`] when the host boots `systemd`.
pub fn prepare(dir: &Path, values: &[Value], systemd: bool) -> Result<Vec<String>> {
    let parent = dir
        .parent()
        .with_context(|| format!("{} has no parent directory", dir.display()))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable name", dir.display()))?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let host = crate::safefs::Dir::open(parent)?
        .subdir(name, Some(&|_| (0o700, 0, 0)))?
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut args = Vec::new();
    for v in values {
        host.write_file(v.file, v.default.as_bytes(), 0o644, 0, 0)?;
        let staged = format!("{STAGING}/{}", v.file);
        args.push(format!("--bind={}:{staged}", dir.join(v.file).display()));
        let dest = match v.path.strip_prefix("/sys/") {
            Some(rest) => format!("/proc/self/root/sys/{rest}"),
            None => v.path.to_string(),
        };
        args.push(format!("--bind={staged}:{dest}"));
    }
    if systemd && values.contains(&OVERCOMMIT_MEMORY) {
        host.write_file(UNIT_DROP_IN_FILE, UNIT_DROP_IN.as_bytes(), 0o644, 0, 0)?;
        for unit in UNITS_WITH_OWN_PROC {
            args.push(format!(
                "--bind-ro={}:/run/systemd/system/{unit}.d/{UNIT_DROP_IN_NAME}",
                dir.join(UNIT_DROP_IN_FILE).display()
            ));
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn every_boot_starts_from_the_defaults_bound_through_the_staging_path() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: the files are given to root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("kernel/i-1");
        let args = prepare(&dir, &VALUES, false).unwrap();
        let d = dir.display();
        assert_eq!(
            args,
            [
                format!("--bind={d}/overcommit_memory:/run/host/redisctl-sandbox/overcommit_memory"),
                "--bind=/run/host/redisctl-sandbox/overcommit_memory:/proc/sys/vm/overcommit_memory"
                    .to_string(),
                format!(
                    "--bind={d}/transparent_hugepage_enabled:/run/host/redisctl-sandbox/transparent_hugepage_enabled"
                ),
                "--bind=/run/host/redisctl-sandbox/transparent_hugepage_enabled:/proc/self/root/sys/kernel/mm/transparent_hugepage/enabled"
                    .to_string(),
            ]
        );
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
        let om = dir.join("overcommit_memory");
        assert_eq!(std::fs::read_to_string(&om).unwrap(), "0\n");
        let meta = std::fs::metadata(&om).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o644, 0));

        // What the guest wrote before the reboot is gone; a symlink put in a file's place is
        // replaced, not written through.
        std::fs::write(&om, "1\n").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        let thp = dir.join("transparent_hugepage_enabled");
        std::fs::remove_file(&thp).unwrap();
        std::os::unix::fs::symlink(&outside, &thp).unwrap();
        prepare(&dir, &VALUES, false).unwrap();
        assert_eq!(std::fs::read_to_string(&om).unwrap(), "0\n");
        assert_eq!(
            std::fs::read_to_string(&thp).unwrap(),
            "always [madvise] never\n"
        );
        assert!(!std::fs::symlink_metadata(&thp).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");

        // A machine without transparent hugepages: that value is neither written nor bound. A
        // systemd host: the Redis units get the drop-in, read-only.
        let other = tmp.path().join("kernel/i-2");
        let args = prepare(&other, &[OVERCOMMIT_MEMORY], true).unwrap();
        assert!(!other.join(TRANSPARENT_HUGEPAGE.file).exists());
        let o = other.display();
        assert_eq!(
            args[2..],
            [
                format!(
                    "--bind-ro={o}/unit-drop-in.conf:/run/systemd/system/redis-server.service.d/50-redisctl-sandbox.conf"
                ),
                format!(
                    "--bind-ro={o}/unit-drop-in.conf:/run/systemd/system/redis-server@.service.d/50-redisctl-sandbox.conf"
                ),
            ]
        );
        assert_eq!(
            std::fs::read_to_string(other.join("unit-drop-in.conf")).unwrap(),
            UNIT_DROP_IN
        );
        assert!(UNIT_DROP_IN.contains(&format!(
            "\nBindReadOnlyPaths=-{STAGING}/{}:{}\n",
            OVERCOMMIT_MEMORY.file, OVERCOMMIT_MEMORY.path
        )));
    }
}
