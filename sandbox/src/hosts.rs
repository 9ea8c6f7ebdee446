//! Booted hosts: one `systemd-nspawn --boot` per running instance, over the shared read-only
//! base with the root volume's directory as the overlay's upper layer. A supervisor task per
//! host boots it again when the guest reboots (nspawn exits 133) and reports when it is gone.
//!
//! An instance of the no-init image ([`crate::NOINIT_AMI`]) is the same tree started without
//! `--boot`: [`NOINIT_SCRIPT`] is PID 1 instead of systemd (as in a minimal container image),
//! so nothing creates `/run/systemd/system` and nothing starts a service at boot.

use crate::logging::log;
use anyhow::{Context, Result};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// nspawn's exit status when the guest asked for a reboot.
const REBOOT_EXIT: i32 = 133;

#[derive(Debug, Clone)]
pub struct HostSpec {
    pub instance_id: String,
    pub base: PathBuf,
    /// The root volume's directory: the overlay's upper layer.
    pub upper: PathBuf,
    pub netns: String,
    pub log: PathBuf,
    pub pid_file: PathBuf,
    /// The host's own kernel values ([`crate::kernel`]): reset to the defaults at every boot
    /// and bound into the container.
    pub kernel: PathBuf,
    pub init: Init,
    /// The instance type's memory and vCPUs, which the host is held to (its cgroups).
    pub size: Option<crate::cgroups::Size>,
}

/// What runs as the host's PID 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// `--boot`: the base's systemd.
    Systemd,
    /// No init system: [`NOINIT_SCRIPT`] as PID 1, with this hostname (systemd would have set
    /// it from /etc/hostname; without `--boot` nspawn sets the one it is given).
    None { hostname: String },
}

/// PID 1 of a host without an init system: what a minimal container's init does and no more.
/// It starts sshd (which needs /run/sshd), reaps orphans (bash reaps every child on SIGCHLD,
/// including processes that daemonized and were re-parented to it), and on SIGTERM (nspawn's
/// `--kill-signal`, i.e. StopInstances) sends SIGTERM to every other process (sshd, sessions,
/// a redis-server started later), waits up to 50 s for them to exit, SIGKILLs what is left
/// with a warning on the console, and exits 0: a clean stop.
pub const NOINIT_SCRIPT: &str = r#"set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
stopping=
trap 'stopping=1' TERM INT
mkdir -p /run/sshd && chmod 0755 /run/sshd
/usr/sbin/sshd -D -e &
echo "sandbox-init: no init system; sshd started (pid $!)"
while [ -z "$stopping" ]; do
  sleep infinity &
  wait $!
  kill $! 2>/dev/null
done
echo "sandbox-init: SIGTERM: stopping every process"
kill -TERM -1 2>/dev/null
others() {
  local p line state
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    # Not PID 1, nor the subshell of `$(others)` itself.
    [ "$p" = 1 ] || [ "$p" = "$BASHPID" ] && continue
    read -r line < "/proc/$p/stat" 2>/dev/null || continue
    state=${line##*) }
    state=${state%% *}
    [ "$state" = Z ] && continue
    echo "$p"
    return 0
  done
  return 1
}
i=0
while others >/dev/null && [ $i -lt 500 ]; do
  sleep 0.1
  i=$((i + 1))
done
if left=$(others); then
  echo "sandbox-init: warning: pid $left still runs 50 s after SIGTERM; SIGKILL to every process"
  kill -KILL -1 2>/dev/null
fi
echo "sandbox-init: every process stopped; exiting"
exit 0
"#;

/// A running (or just exited) host.
#[derive(Debug, Clone)]
pub struct Running {
    pub pid: Arc<AtomicU32>,
    pub boots: Arc<AtomicU64>,
    stop_requested: Arc<AtomicBool>,
    /// What asks the guest's PID 1 to halt: SIGRTMIN+3 for systemd, SIGTERM for the no-init
    /// script.
    halt_signal: i32,
    done: watch::Receiver<bool>,
    pub last_exit: Arc<Mutex<Option<String>>>,
}

impl Running {
    pub fn is_running(&self) -> bool {
        !*self.done.borrow()
    }
}

fn spawn_nspawn(spec: &HostSpec) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("cannot open {}", spec.log.display()))?;
    let base = spec.base.display().to_string();
    // A boot: the kernel values start from their defaults (crate::kernel).
    let values = crate::kernel::present();
    for v in crate::kernel::VALUES.iter().filter(|v| !values.contains(v)) {
        crate::logging::log(&format!(
            "{}: this machine's kernel has no {}; neither has the host",
            spec.instance_id, v.path
        ));
    }
    let kernel_binds = crate::kernel::prepare(&spec.kernel, &values, spec.init == Init::Systemd)
        .with_context(|| format!("{}: cannot reset its kernel values", spec.instance_id))?;
    // nspawn itself runs in the host's namespace too, so that nothing it sets up for the guest
    // sees the operator namespace's links (the guest's sysfs is mounted from inside the
    // container, see SYSTEMD_NSPAWN_API_VFS_WRITABLE below).
    let ns = std::fs::File::open(crate::net::netns_path(&spec.netns))
        .with_context(|| format!("the network namespace {} is missing", spec.netns))?;
    let fd = ns.as_raw_fd();
    // Its own cgroups (see crate::cgroups): the child moves itself there before it execs.
    let (cgroup_procs, sized) = crate::cgroups::prepare(&spec.instance_id, spec.size)?;
    if let (Some(size), false) = (spec.size, sized) {
        crate::logging::log(&format!(
            "{}: not held to {size:?}: this machine's cgroups have no memory controller for it",
            spec.instance_id
        ));
    }
    let cgroup_fds: Vec<i32> = cgroup_procs.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new("systemd-nspawn");
    match &spec.init {
        Init::Systemd => {
            cmd.arg("--boot");
        }
        Init::None { hostname } => {
            // Without --boot nspawn kills the container with SIGKILL on SIGTERM: ask it to pass
            // SIGTERM to our PID 1 instead, which stops everything cleanly.
            cmd.arg("--kill-signal=SIGTERM")
                .arg(format!("--hostname={hostname}"));
        }
    }
    unsafe {
        cmd.pre_exec(move || {
            for &cg in &cgroup_fds {
                if libc::write(cg, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.arg("-D")
        .arg(&base)
        .arg(format!("--overlay={}:{}:/", base, spec.upper.display()))
        .args([
            "--register=no",
            "--keep-unit",
            "--resolv-conf=off",
            "--link-journal=no",
            "--console=read-only",
        ])
        .arg(format!(
            "--network-namespace-path={}",
            crate::net::netns_path(&spec.netns)
        ))
        .arg(format!("--machine={}", spec.instance_id))
        .args(&kernel_binds);
    if matches!(spec.init, Init::None { .. }) {
        cmd.args(["--", "/bin/bash", "-c", NOINIT_SCRIPT, "sandbox-init"]);
    }
    let child = cmd
        // Never let a guest write the machine's /proc/sys: read-only but /proc/sys/net, which is
        // the guest's own network namespace's (nspawn leaves it writable with a network
        // namespace of its making, not with --network-namespace-path). As on EC2, a guest sets
        // net.core.somaxconn & co. for itself, and Debian's systemd-sysctl.service (which runs
        // only where /proc/sys/net is writable) applies /etc/sysctl.d at boot. This also makes
        // nspawn mount the guest's sysfs from inside its network namespace: /sys holds block,
        // bus, class, dev, devices, fs/cgroup and kernel. See crate::kernel for the two global
        // values a host has a copy of.
        .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false)
        .spawn()
        .context("cannot start systemd-nspawn")?;
    drop(ns);
    drop(cgroup_procs);
    if let Some(pid) = child.id() {
        crate::proc::write_pid(&spec.pid_file, pid)?;
    }
    Ok(child)
}

/// Boots a host and supervises it.
pub fn boot(spec: HostSpec) -> Result<Running> {
    let mut child = spawn_nspawn(&spec)?;
    let (done_tx, done) = watch::channel(false);
    let running = Running {
        pid: Arc::new(AtomicU32::new(child.id().unwrap_or(0))),
        boots: Arc::new(AtomicU64::new(1)),
        stop_requested: Arc::new(AtomicBool::new(false)),
        halt_signal: match spec.init {
            Init::Systemd => libc::SIGRTMIN() + 3,
            Init::None { .. } => libc::SIGTERM,
        },
        done,
        last_exit: Arc::new(Mutex::new(None)),
    };
    let r = running.clone();
    tokio::spawn(async move {
        loop {
            let status = child.wait().await;
            let code = status.as_ref().ok().and_then(|s| s.code());
            let described = match &status {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            if code == Some(REBOOT_EXIT) && !r.stop_requested.load(Ordering::SeqCst) {
                log(&format!(
                    "{}: guest rebooted; booting it again",
                    spec.instance_id
                ));
                match spawn_nspawn(&spec) {
                    Ok(c) => {
                        child = c;
                        r.pid.store(child.id().unwrap_or(0), Ordering::SeqCst);
                        r.boots.fetch_add(1, Ordering::SeqCst);
                        if r.stop_requested.load(Ordering::SeqCst) {
                            signal(&r, libc::SIGTERM);
                        }
                        continue;
                    }
                    Err(e) => {
                        log(&format!(
                            "{}: cannot boot it again after reboot: {e:#}",
                            spec.instance_id
                        ));
                    }
                }
            } else if !r.stop_requested.load(Ordering::SeqCst) {
                log(&format!(
                    "{}: host exited by itself ({described})",
                    spec.instance_id
                ));
            }
            *r.last_exit.lock().unwrap() = Some(described);
            std::fs::remove_file(&spec.pid_file).ok();
            crate::cgroups::remove(&spec.instance_id);
            done_tx.send(true).ok();
            break;
        }
    });
    Ok(running)
}

fn signal(r: &Running, sig: i32) {
    let pid = r.pid.load(Ordering::SeqCst) as i32;
    if pid > 0 {
        unsafe { libc::kill(pid, sig) };
    }
}

/// The container's PID 1 (as seen from here): nspawn's child process.
fn container_init(nspawn: i32) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let ppid = stat[close + 1..].split_whitespace().nth(1);
        if ppid.and_then(|p| p.parse::<i32>().ok()) == Some(nspawn) {
            return Some(pid);
        }
    }
    None
}

/// Clean shutdown: SIGTERM to nspawn, which asks the guest's systemd to halt (SIGRTMIN+3; a
/// host without an init system gets SIGTERM, see [`NOINIT_SCRIPT`]), a
/// bounded wait, then SIGKILL with a logged warning. A guest whose systemd is still starting has
/// no handler yet and loses that request (seen with a stop right after a launch), so while the
/// host runs the request is repeated to the guest's PID 1 directly — not by another SIGTERM to
/// nspawn, which would make it kill the container at once.
pub async fn stop(r: &Running, instance_id: &str, grace: Duration) {
    r.stop_requested.store(true, Ordering::SeqCst);
    if !r.is_running() {
        return;
    }
    let mut done = r.done.clone();
    let start = std::time::Instant::now();
    signal(r, libc::SIGTERM);
    while start.elapsed() < grace {
        if tokio::time::timeout(Duration::from_secs(2), done.wait_for(|d| *d))
            .await
            .is_ok()
        {
            return;
        }
        let nspawn = r.pid.load(Ordering::SeqCst) as i32;
        if let Some(init) = container_init(nspawn) {
            unsafe { libc::kill(init, r.halt_signal) };
        }
    }
    log(&format!(
        "warning: {instance_id} did not shut down within {}s of SIGTERM; sending SIGKILL",
        grace.as_secs()
    ));
    signal(r, libc::SIGKILL);
    if tokio::time::timeout(Duration::from_secs(15), done.wait_for(|d| *d))
        .await
        .is_err()
    {
        log(&format!(
            "warning: {instance_id}'s nspawn still has not exited after SIGKILL"
        ));
    }
}
