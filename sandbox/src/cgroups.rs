//! One cgroup per host, in the hierarchies a guest's systemd uses.
//!
//! nspawn runs with `--keep-unit --register=no`: it does not ask a host systemd for a scope of
//! its own, and puts its `payload` (the guest) and `supervisor` cgroups below the cgroup it was
//! started in. Every host is started by the same front, so without this module every guest's
//! systemd would work in the *same* `payload` subtree: while several guests boot at once, one
//! removes a unit cgroup (`payload/system.slice/x.service`) that another is attaching a process
//! to, and that unit fails ("Failed to attach to cgroup … No such file or directory"). When the
//! unit is `systemd-user-sessions.service`, `/run/nologin` stays and the guest refuses every
//! login but root's for good. So each nspawn is moved, before it starts, into
//! `redisctl-sandbox/<instance id>` at the root of the named `systemd` hierarchy and of the
//! unified (v2) one, wherever they are mounted (a fixed place, so that `down` finds them from
//! any shell), and that tree is removed when the host is gone.

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The directory below the front's cgroup that holds one cgroup per host.
pub const PARENT: &str = "redisctl-sandbox";

/// The mount points of the named systemd v1 hierarchy and of the unified v2 one (a hybrid
/// machine has both; a pure v2 machine mounts v2 at /sys/fs/cgroup).
fn hierarchies() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let v1 = Path::new("/sys/fs/cgroup/systemd");
    if v1.join("cgroup.procs").exists() {
        out.push(v1.to_path_buf());
    }
    for v2 in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let v2 = Path::new(v2);
        if v2.join("cgroup.controllers").exists() {
            out.push(v2.to_path_buf());
            break;
        }
    }
    out
}

/// The v1 hierarchies of the memory and CPU controllers, where a host is held to its instance
/// type's size (a hybrid machine like this one; on a pure v2 machine the unified hierarchy does
/// both, see [`size`]).
fn controllers() -> Vec<PathBuf> {
    ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.join("cgroup.procs").exists())
        .collect()
}

/// What an instance type gives a host (DescribeInstanceTypes: `memoryInfo/sizeInMiB`,
/// `vCpuInfo/defaultVCpus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub memory_mib: u64,
    pub vcpus: u64,
}

/// The CFS period the CPU quota is given in (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// Writes `value` into a cgroup's control file.
fn set(dir: &Path, file: &str, value: &str) -> Result<()> {
    fs::write(dir.join(file), value)
        .with_context(|| format!("cannot write {value} into {}/{file}", dir.display()))
}

/// Holds a host's cgroups to `size`: memory (no swap beyond it) and CPU time (vCPUs × period).
fn size(dir: &Path, size: Size) -> Result<()> {
    let bytes = (size.memory_mib * 1024 * 1024).to_string();
    let quota = (size.vcpus * CPU_PERIOD_US).to_string();
    if dir.join("memory.limit_in_bytes").exists() {
        set(dir, "memory.limit_in_bytes", &bytes)?;
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            set(dir, "memory.memsw.limit_in_bytes", &bytes)?;
        }
    }
    if dir.join("cpu.cfs_quota_us").exists() {
        set(dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
        set(dir, "cpu.cfs_quota_us", &quota)?;
    }
    if dir.join("memory.max").exists() {
        set(dir, "memory.max", &bytes)?;
        if dir.join("memory.swap.max").exists() {
            set(dir, "memory.swap.max", "0")?;
        }
    }
    if dir.join("cpu.max").exists() {
        set(dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
    }
    Ok(())
}

/// On a unified hierarchy, the memory and CPU controllers for the hosts' cgroups (enabled in
/// the parents' `cgroup.subtree_control`; best effort: where the machine does not delegate them,
/// hosts are not held to a size and the front logs it).
fn enable_v2_controllers(mount: &Path) {
    for dir in [mount.to_path_buf(), mount.join(PARENT)] {
        for c in ["+memory", "+cpu"] {
            fs::write(dir.join("cgroup.subtree_control"), c).ok();
        }
    }
}

/// Where a host's cgroups are (they may not exist).
fn host_dirs(instance_id: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .chain(controllers())
        .map(|mount| mount.join(PARENT).join(instance_id))
        .collect()
}

/// Empty cgroups under `dir` and `dir` itself, deepest first (a cgroup with processes or
/// children in use stays, and is reported by the caller's check).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    fs::remove_dir(dir).ok();
}

/// A fresh cgroup for the host in each hierarchy (what an earlier boot left is removed first),
/// opened for the move: write `0` into each file from the child before it execs.
/// With `size`, the host is held to it (memory and CPU); returns whether it could be (the
/// controllers are there).
pub fn prepare(instance_id: &str, host_size: Option<Size>) -> Result<(Vec<fs::File>, bool)> {
    let mut procs = Vec::new();
    let mut sized = false;
    for mount in hierarchies() {
        if mount.join("cgroup.controllers").exists() && controllers().is_empty() {
            fs::create_dir_all(mount.join(PARENT)).ok();
            enable_v2_controllers(&mount);
        }
    }
    for dir in host_dirs(instance_id) {
        remove_tree(&dir);
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the host's cgroup {}", dir.display()))?;
        if let Some(sz) = host_size {
            size(&dir, sz)?;
            sized |= dir.join("memory.limit_in_bytes").exists() || dir.join("memory.max").exists();
        }
        procs.push(
            fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .with_context(|| format!("cannot open {}/cgroup.procs", dir.display()))?,
        );
    }
    Ok((procs, sized))
}

/// Remove a host's cgroups once it is gone.
pub fn remove(instance_id: &str) {
    for dir in host_dirs(instance_id) {
        remove_tree(&dir);
    }
}

/// Remove the parent of all hosts' cgroups (`down`). Returns what could not be removed.
pub fn remove_all() -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .chain(controllers())
        .map(|mount| mount.join(PARENT))
        .filter(|d| {
            remove_tree(d);
            d.exists()
        })
        .collect()
}

/// The cgroup (in the named systemd hierarchy, else the unified one) that process `pid` is in.
pub fn of_process(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let find = |key: &str| {
        text.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            (controllers == key).then(|| path.to_string())
        })
    };
    find("name=systemd").or_else(|| find(""))
}
