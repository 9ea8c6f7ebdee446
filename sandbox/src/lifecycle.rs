//! `up`, `down`, `exec` and the other commands of the CLI.

use crate::control::{self, HostStatus, Request};
use crate::paths::Paths;
use crate::prereqs::{check_prereqs, ensure_venv};
use crate::proc::{self, alive, read_pid, terminate};
use crate::{OPERATOR_NETNS, base, net, safefs};
use anyhow::{Context, Result, bail};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AMIS: &str = include_str!("../amis.json");
const FRONT_NEEDLE: &str = "__front";
const MOTO_NEEDLE: &str = "moto_server";

/// Starts a daemon in the operator network namespace (same mount namespace as us, so the host
/// namespaces it creates are visible to everyone), in its own session, and records its pid.
fn spawn_in_operator(mut cmd: Command, log: &Path, pid_file: &Path) -> Result<u32> {
    let ns = std::fs::File::open(net::netns_path(OPERATOR_NETNS))
        .context("the operator namespace is missing")?;
    let fd = ns.as_raw_fd();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().context("cannot start a sandbox daemon")?;
    proc::write_pid(pid_file, child.id())?;
    drop(ns);
    Ok(child.id())
}

fn front_alive(paths: &Paths) -> bool {
    read_pid(&paths.front_pid()).is_some_and(|p| alive(p, FRONT_NEEDLE))
}

fn moto_alive(paths: &Paths) -> bool {
    read_pid(&paths.moto_pid()).is_some_and(|p| alive(p, MOTO_NEEDLE))
}

/// Whether the running front executes the same file as this process (cargo replaces the
/// binary on a rebuild, so a front started before the rebuild runs a deleted inode).
fn front_is_current_build(paths: &Paths) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(pid) = read_pid(&paths.front_pid()) else {
        return false;
    };
    let (Ok(running), Ok(me)) = (
        std::fs::metadata(format!("/proc/{pid}/exe")),
        std::env::current_exe().and_then(std::fs::metadata),
    ) else {
        return false;
    };
    running.dev() == me.dev() && running.ino() == me.ino()
}

fn ping(paths: &Paths) -> bool {
    control::call(
        &paths.control_socket(),
        &Request::Ping,
        Duration::from_secs(5),
    )
    .is_ok()
}

/// The speed factor `up` gives the front: `--speed`, else `REDISCTL_SANDBOX_SPEED`, else none
/// (the front's default, [`control::DEFAULT_SPEED`]).
pub fn speed_asked(flag: Option<f64>) -> Result<Option<f64>> {
    if flag.is_some() {
        return Ok(flag);
    }
    match std::env::var(control::SPEED_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            Ok(Some(v.trim().parse().with_context(|| {
                format!("{}={v} is not a number", control::SPEED_ENV)
            })?))
        }
        _ => Ok(None),
    }
}

/// Starts the region (see docs/sandbox.md); `speed` is the timed region's speed factor (when
/// the sandbox is already up, it is applied to the running front).
pub fn up(paths: &Paths, install_prereqs: bool, speed: Option<f64>) -> Result<()> {
    let t = Instant::now();
    let settings = control::RegionSettings::default().with(&control::RegionChange {
        speed,
        ..Default::default()
    })?;
    check_prereqs(install_prereqs)?;
    // Marks the root as the sandbox's (refusing one that holds someone's files), so that `down`
    // later removes things only under it.
    paths.claim()?;
    let _lock = proc::lock_file(
        &paths.lifecycle_lock(),
        Duration::from_secs(30 * 60),
        "another redisctl-sandbox up or down to finish",
    )?;
    for dir in [
        &paths.state,
        &paths.cache,
        &paths.run,
        &paths.logs(),
        &paths.host_pids(),
    ] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let base = base::ensure(paths)?;
    ensure_venv(paths)?;
    std::fs::write(paths.amis(), AMIS)?;

    let moto_ok = moto_alive(paths);
    let front_ok = front_alive(paths) && ping(paths);
    let current_base = std::fs::read_to_string(paths.current_base()).unwrap_or_default();
    let stale = if !(moto_ok && front_ok) {
        None
    } else if !front_is_current_build(paths) {
        Some("the running EC2 front is from an older build of redisctl-sandbox")
    } else if current_base.trim() != base.to_string_lossy() {
        Some("the running hosts boot from an older base")
    } else {
        None
    };
    if let Some(why) = stale {
        eprintln!("{why}: restarting the sandbox (the region starts empty)");
        let _test = proc::lock_file(
            &paths.test_lock(),
            Duration::from_secs(10 * 60),
            "the test that is using the sandbox to finish",
        )?;
        stop_everything(paths)?;
    } else if moto_ok && front_ok {
        net::ensure_operator()?;
        net::add_blackholes(&paths.routes_file())?;
        if let Some(said) = crate::limits::raise(&paths.inotify_saved())? {
            println!("{said}");
        }
        if speed.is_some() {
            control::call(
                &paths.control_socket(),
                &Request::Region {
                    change: control::RegionChange {
                        speed,
                        ..Default::default()
                    },
                },
                Duration::from_secs(10),
            )?;
        }
        println!("sandbox already up ({:.1}s)", t.elapsed().as_secs_f64());
        return Ok(());
    }
    if stale.is_none() && (moto_ok || front_alive(paths) || !net::sandbox_namespaces().is_empty()) {
        eprintln!(
            "warning: a partial sandbox was found (moto or the front had died); clearing it and starting a fresh region"
        );
        stop_everything(paths)?;
    }
    std::fs::write(paths.current_base(), base.to_string_lossy().as_bytes())?;
    base::prune(paths, &base);
    net::ensure_operator()?;
    net::add_blackholes(&paths.routes_file())?;
    if let Some(said) = crate::limits::raise(&paths.inotify_saved())? {
        println!("{said}");
    }

    let mut moto = Command::new(paths.venv().join("bin/moto_server"));
    moto.args([
        "-H",
        "127.0.0.1",
        "-p",
        crate::MOTO_ADDR.rsplit(':').next().unwrap_or("5000"),
    ])
    .env("MOTO_ENABLE_AMI_VALIDATION", "true")
    .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
    .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "true")
    .env("MOTO_AMIS_PATH", paths.amis());
    spawn_in_operator(moto, &paths.logs().join("moto.log"), &paths.moto_pid())?;

    let mut front = Command::new(std::env::current_exe()?);
    front
        .arg(FRONT_NEEDLE)
        .arg("--speed")
        .arg(settings.speed.to_string());
    spawn_in_operator(front, &paths.logs().join("front.log"), &paths.front_pid())?;

    proc::wait_until(
        Duration::from_secs(90),
        "moto and the EC2 front to answer (see logs/front.log, logs/moto.log)",
        || {
            if !front_alive(paths) {
                return true; // fail fast below
            }
            ping(paths)
        },
    )?;
    if !front_alive(paths) {
        let log = std::fs::read_to_string(paths.logs().join("front.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        bail!(
            "the EC2 front exited during start:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    println!(
        "sandbox up in {:.1}s: EC2 endpoint http://{} in network namespace {OPERATOR_NETNS}, speed factor {}; run commands with `redisctl-sandbox exec -- CMD`",
        t.elapsed().as_secs_f64(),
        crate::FRONT_ADDR,
        settings.speed
    );
    Ok(())
}

/// Ends every process and removes every host namespace the sandbox made (not the operator
/// namespace or routes).
fn stop_everything(paths: &Paths) -> Result<()> {
    if front_alive(paths) {
        if let Err(e) = control::call(
            &paths.control_socket(),
            &Request::StopAll,
            Duration::from_secs(300),
        ) {
            eprintln!("warning: the front could not stop the hosts itself: {e:#}");
        }
        if let Some(pid) = read_pid(&paths.front_pid()) {
            terminate(pid, FRONT_NEEDLE, Duration::from_secs(90), "the EC2 front");
        }
    }
    std::fs::remove_file(paths.front_pid()).ok();
    if let Some(pid) = read_pid(&paths.moto_pid()) {
        terminate(pid, MOTO_NEEDLE, Duration::from_secs(15), "moto");
    }
    std::fs::remove_file(paths.moto_pid()).ok();
    // Hosts whose front is gone.
    if let Ok(entries) = std::fs::read_dir(paths.host_pids()) {
        for e in entries.flatten() {
            if let Some(pid) = read_pid(&e.path()) {
                terminate(
                    pid,
                    "systemd-nspawn",
                    Duration::from_secs(60),
                    &format!("host {}", e.file_name().to_string_lossy()),
                );
            }
            std::fs::remove_file(e.path()).ok();
        }
    }
    for ns in net::sandbox_namespaces() {
        if ns != OPERATOR_NETNS {
            net::delete_netns(&ns);
        }
    }
    clear_volumes(paths)?;
    std::fs::remove_file(paths.control_socket()).ok();
    Ok(())
}

/// Removes the volume and snapshot directories and the hosts' kernel values, only under a root
/// `up` marked ([`Paths::check_claimed`]): every mount at or under them is unmounted first
/// (deepest first), then the trees are removed without following a symlink or crossing into a
/// mount ([`safefs::remove_tree`]; one that could not be unmounted is an error and nothing in it
/// is touched).
pub fn clear_volumes(paths: &Paths) -> Result<()> {
    paths.check_claimed()?;
    remove_unmounted(&[paths.volumes(), paths.snapshots(), paths.kernel_values()])
}

/// Unmounts what is mounted at or under `dirs`, then removes them ([`safefs::remove_tree`]).
fn remove_unmounted(dirs: &[PathBuf]) -> Result<()> {
    unmount_under(dirs)?;
    for dir in dirs {
        safefs::remove_tree(dir)?;
    }
    Ok(())
}

/// The mount points of this process's mount namespace, in /proc/self/mountinfo's order (the
/// field's octal escapes, `\040` for a space, decoded).
fn mount_points() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| {
            let b = m.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                let octal = b.get(i + 1..i + 4).and_then(|d| {
                    std::str::from_utf8(d)
                        .ok()
                        .and_then(|d| u8::from_str_radix(d, 8).ok())
                });
                match (b[i], octal) {
                    (b'\\', Some(c)) => {
                        out.push(c);
                        i += 4;
                    }
                    (c, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from_vec(out))
        })
        .collect()
}

/// Mount points at or under any of `dirs` (also as their symlinks resolve), deepest first
/// (and, at one path, the last mounted first).
pub fn mounts_under(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = dirs.to_vec();
    roots.extend(dirs.iter().filter_map(|d| d.canonicalize().ok()));
    let mut found: Vec<PathBuf> = mount_points()
        .into_iter()
        .rev()
        .filter(|m| roots.iter().any(|r| m.starts_with(r)))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found
}

/// Unmounts every mount at or under `dirs`, deepest first (detached, the mount point not
/// followed if it is a symlink), until none is left; an error names what stays mounted.
pub fn unmount_under(dirs: &[PathBuf]) -> Result<()> {
    for _ in 0..16 {
        let mounts = mounts_under(dirs);
        if mounts.is_empty() {
            return Ok(());
        }
        for m in &mounts {
            eprintln!("warning: unmounting leftover {}", m.display());
            let c = std::ffi::CString::new(m.as_os_str().as_bytes())?;
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) } != 0 {
                eprintln!(
                    "warning: cannot unmount {}: {}",
                    m.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    let left = mounts_under(dirs);
    if !left.is_empty() {
        bail!(
            "cannot unmount {}: nothing under it is removed",
            left.iter()
                .map(|m| m.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Mount points under the sandbox's directories or named namespaces (`/run/netns/rsbx-…`).
pub fn sandbox_mounts(paths: &Paths) -> Vec<String> {
    let roots = [paths.state.clone(), paths.cache.clone(), paths.run.clone()];
    mount_points()
        .into_iter()
        .filter(|m| {
            roots.iter().any(|r| m.starts_with(r))
                || m.to_string_lossy()
                    .starts_with(&format!("/run/netns/{}", crate::HOST_NETNS_PREFIX))
        })
        .map(|m| m.to_string_lossy().into_owned())
        .collect()
}

/// Processes whose command line names the sandbox's directories (moto, nspawn hosts) or the
/// front.
pub fn sandbox_processes(paths: &Paths) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let needles = [
        paths.state.to_string_lossy().into_owned(),
        paths.cache.to_string_lossy().into_owned(),
        format!("redisctl-sandbox {FRONT_NEEDLE}"),
    ];
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Some(c) = proc::cmdline(pid)
            && needles.iter().any(|n| c.contains(n.as_str()))
        {
            out.push((pid, c));
        }
    }
    out
}

pub fn down(paths: &Paths) -> Result<()> {
    let t = Instant::now();
    // Nothing is stopped or removed for a root `up` did not make.
    if !paths.check_claimed()? {
        println!(
            "sandbox down: {} does not exist",
            paths
                .root
                .as_deref()
                .unwrap_or(Path::new("the root"))
                .display()
        );
        return Ok(());
    }
    let _lock = proc::lock_file(
        &paths.lifecycle_lock(),
        Duration::from_secs(30 * 60),
        "another redisctl-sandbox up or down to finish",
    )?;
    // Let a test that is using the sandbox finish first (bounded: a stuck test does not keep
    // the sandbox up for ever).
    let _test = match proc::lock_file(
        &paths.test_lock(),
        Duration::from_secs(10 * 60),
        "the test that is using the sandbox to finish",
    ) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("warning: {e:#}; going down anyway");
            None
        }
    };
    stop_everything(paths)?;
    net::delete_netns(OPERATOR_NETNS);
    net::remove_blackholes(&paths.routes_file());
    if let Err(e) = crate::limits::restore(&paths.inotify_saved()) {
        eprintln!("warning: {e:#}");
    }
    // Leftover mounts of the sandbox's (deepest first), before anything under them is removed.
    let mut leftovers: Vec<PathBuf> = sandbox_mounts(paths)
        .into_iter()
        .map(PathBuf::from)
        .collect();
    leftovers.dedup();
    unmount_under(&leftovers)?;
    remove_unmounted(std::slice::from_ref(&paths.run))?;
    let left = sandbox_processes(paths);
    let ns = net::sandbox_namespaces();
    let cgroups = crate::cgroups::remove_all();
    if !left.is_empty() || !ns.is_empty() || !cgroups.is_empty() {
        bail!(
            "down left things behind: processes {left:?}, namespaces {ns:?}, cgroups {cgroups:?}"
        );
    }
    println!("sandbox down in {:.1}s", t.elapsed().as_secs_f64());
    Ok(())
}

fn require_up(paths: &Paths) -> Result<()> {
    if !net::exists(OPERATOR_NETNS) || !front_alive(paths) {
        bail!("the sandbox is not up; run `redisctl-sandbox up` first");
    }
    Ok(())
}

pub fn reset(paths: &Paths) -> Result<()> {
    require_up(paths)?;
    let t = Instant::now();
    control::call(
        &paths.control_socket(),
        &Request::Reset,
        Duration::from_secs(300),
    )?;
    println!("region reset in {:.2}s", t.elapsed().as_secs_f64());
    Ok(())
}

pub fn status(paths: &Paths) -> Result<bool> {
    let moto = read_pid(&paths.moto_pid()).filter(|p| alive(*p, MOTO_NEEDLE));
    let front = read_pid(&paths.front_pid()).filter(|p| alive(*p, FRONT_NEEDLE));
    let show = |p: Option<i32>| {
        p.map(|p| format!("running (pid {p})"))
            .unwrap_or_else(|| "not running".into())
    };
    println!(
        "operator netns {OPERATOR_NETNS}: {}",
        if net::exists(OPERATOR_NETNS) {
            "present"
        } else {
            "absent"
        }
    );
    println!("moto  http://{}: {}", crate::MOTO_ADDR, show(moto));
    println!("front http://{}: {}", crate::FRONT_ADDR, show(front));
    println!(
        "base  {}",
        std::fs::read_to_string(paths.current_base())
            .unwrap_or_else(|_| "(none recorded)".into())
            .trim()
    );
    if front.is_none() {
        return Ok(false);
    }
    let hosts: Vec<HostStatus> = match control::call(
        &paths.control_socket(),
        &Request::Status,
        Duration::from_secs(10),
    ) {
        Ok(v) => serde_json::from_value(v)?,
        Err(e) => {
            println!("front not answering: {e:#}");
            return Ok(false);
        }
    };
    if hosts.is_empty() {
        println!("hosts: none");
    }
    for h in hosts {
        println!(
            "host  {}  {:<15} {}  root {}  boots {}{}",
            h.instance_id,
            h.private_ip,
            h.state,
            h.root_volume.unwrap_or_else(|| "-".into()),
            h.boots,
            h.pid.map(|p| format!("  pid {p}")).unwrap_or_default()
        );
    }
    Ok(moto.is_some())
}

pub fn env_lines() -> String {
    let mut s = format!(
        "# valid inside the network namespace {OPERATOR_NETNS} (redisctl-sandbox exec, or ip netns exec {OPERATOR_NETNS})\n"
    );
    for (k, v) in crate::client_env() {
        s.push_str(&format!("export {k}='{v}'\n"));
    }
    s
}

/// Replaces this process with `cmd` in the operator namespace, with the client environment.
pub fn exec(paths: &Paths, cmd: &[String]) -> Result<()> {
    require_up(paths)?;
    let Some((program, args)) = cmd.split_first() else {
        bail!("exec needs a command: redisctl-sandbox exec -- CMD…")
    };
    net::enter_operator_netns()?;
    let mut c = Command::new(program);
    c.args(args);
    for (k, v) in crate::client_env() {
        c.env(k, v);
    }
    c.env("REDISCTL_SANDBOX_BIN", std::env::current_exe()?);
    let err = c.exec();
    bail!("cannot run {program}: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safefs::tests::bind_mount;

    #[test]
    fn volumes_are_unmounted_before_removal_and_removed_only_where_up_marked() {
        let dir = tempfile::tempdir().unwrap();
        // A directory of the machine's, bind-mounted into a volume (as a leftover mount would
        // be): `down` must unmount it, not empty it.
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("canary"), "keep").unwrap();
        let paths = Paths::under(&dir.path().join("root")).unwrap();
        paths.claim().unwrap();
        let vol = paths.volume("vol-1");
        std::fs::create_dir_all(vol.join("home/deep/mnt")).unwrap();
        std::fs::create_dir_all(vol.join("mnt")).unwrap();
        std::fs::write(vol.join("file"), "x").unwrap();
        std::fs::create_dir_all(paths.snapshot("snap-1")).unwrap();
        std::fs::create_dir_all(paths.host_kernel("i-1")).unwrap();
        std::fs::write(paths.host_kernel("i-1").join("overcommit_memory"), "1\n").unwrap();
        let Some(_outer) = bind_mount(host.path(), &vol.join("mnt")) else {
            return; // not root
        };
        let Some(_inner) = bind_mount(host.path(), &vol.join("home/deep/mnt")) else {
            return;
        };
        assert_eq!(mounts_under(&[paths.volumes()]).len(), 2);
        assert_eq!(
            mounts_under(&[paths.volumes()])[0],
            vol.join("home/deep/mnt"),
            "deepest first"
        );
        clear_volumes(&paths).unwrap();
        assert_eq!(
            std::fs::read_to_string(host.path().join("canary")).unwrap(),
            "keep"
        );
        assert!(mounts_under(&[paths.volumes()]).is_empty());
        assert!(!paths.volumes().exists() && !paths.snapshots().exists());
        assert!(!paths.kernel_values().exists());

        // A state directory `up` did not mark: refused, nothing removed.
        let theirs = Paths::under(&dir.path().join("theirs")).unwrap();
        std::fs::create_dir_all(theirs.volume("vol-2")).unwrap();
        std::fs::write(theirs.volume("vol-2").join("file"), "theirs").unwrap();
        let err = format!("{:#}", clear_volumes(&theirs).unwrap_err());
        assert!(err.contains(crate::paths::MARKER), "{err}");
        assert!(theirs.volume("vol-2").join("file").exists());
    }
}
