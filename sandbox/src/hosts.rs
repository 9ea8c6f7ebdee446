//! Booted hosts: one `systemd-nspawn --boot` per running instance, over the shared read-only
//! base with the root volume's directory as the overlay's upper layer. A supervisor task per
//! host boots it again when the guest reboots (nspawn exits 133) and reports when it is gone.

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
}

/// A running (or just exited) host.
#[derive(Debug, Clone)]
pub struct Running {
    pub pid: Arc<AtomicU32>,
    pub boots: Arc<AtomicU64>,
    stop_requested: Arc<AtomicBool>,
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
    // nspawn itself runs in the host's namespace too, so that the sysfs it mounts for the guest
    // shows the guest's own links (not the operator namespace's).
    let ns = std::fs::File::open(crate::net::netns_path(&spec.netns))
        .with_context(|| format!("the network namespace {} is missing", spec.netns))?;
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new("systemd-nspawn");
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .arg("-D")
        .arg(&base)
        .arg(format!("--overlay={}:{}:/", base, spec.upper.display()))
        .args([
            "--boot",
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
        // Never let a guest write the machine's /proc/sys.
        .env_remove("SYSTEMD_NSPAWN_API_VFS_WRITABLE")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false)
        .spawn()
        .context("cannot start systemd-nspawn")?;
    drop(ns);
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
                crate::front::log(&format!(
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
                        crate::front::log(&format!(
                            "{}: cannot boot it again after reboot: {e:#}",
                            spec.instance_id
                        ));
                    }
                }
            } else if !r.stop_requested.load(Ordering::SeqCst) {
                crate::front::log(&format!(
                    "{}: host exited by itself ({described})",
                    spec.instance_id
                ));
            }
            *r.last_exit.lock().unwrap() = Some(described);
            std::fs::remove_file(&spec.pid_file).ok();
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

/// Clean shutdown: SIGTERM to nspawn, which asks the guest's systemd to halt (SIGRTMIN+3), a
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
            unsafe { libc::kill(init, libc::SIGRTMIN() + 3) };
        }
    }
    crate::front::log(&format!(
        "warning: {instance_id} did not shut down within {}s of SIGTERM; sending SIGKILL",
        grace.as_secs()
    ));
    signal(r, libc::SIGKILL);
    if tokio::time::timeout(Duration::from_secs(15), done.wait_for(|d| *d))
        .await
        .is_err()
    {
        crate::front::log(&format!(
            "warning: {instance_id}'s nspawn still has not exited after SIGKILL"
        ));
    }
}
