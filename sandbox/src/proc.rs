//! Processes and commands: run a tool and say what failed, pid files, bounded stops.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command to completion; on failure the error names the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{program}`"))?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            program,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`] but an error is only logged: for best-effort cleanup.
pub fn run_quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn write_pid(path: &Path, pid: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, format!("{pid}\n"))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The command line of a process, NUL separators turned into spaces.
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim()
            .to_string(),
    )
}

/// True when `pid` runs and its command line contains `needle` (guards against a reused pid).
pub fn alive(pid: i32, needle: &str) -> bool {
    // A zombie still has a cmdline of "" — treat it as gone.
    match cmdline(pid) {
        Some(c) => !c.is_empty() && c.contains(needle),
        None => false,
    }
}

/// Stops a process we started: SIGTERM, wait up to `grace` for it to go, then SIGKILL with a
/// warning. Returns true when it had to escalate.
pub fn terminate(pid: i32, needle: &str, grace: Duration, what: &str) -> bool {
    if !alive(pid, needle) {
        return false;
    }
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid, needle) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "warning: {what} (pid {pid}) did not stop within {}s of SIGTERM; sending SIGKILL",
        grace.as_secs()
    );
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && alive(pid, needle) {
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Polls `check` every 100 ms until it returns true or `limit` passes; the error says what it
/// waited for.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    loop {
        if check() {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("timed out after {}s waiting for {what}", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Takes an exclusive `flock` on `path` (created if missing), waiting up to `limit` in the
/// kernel's queue (fair to other waiters); says what it waits for when it has to wait. The lock
/// lasts as long as the returned file. On a timeout the waiting thread stays queued until the
/// process exits, so this is for short-lived commands (the CLI), not for tests.
pub fn lock_file(path: &Path, limit: Duration, what: &str) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(f);
    }
    eprintln!("waiting for {what} (lock {})", path.display());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ok = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0;
        tx.send((ok, f)).ok();
    });
    match rx.recv_timeout(limit) {
        Ok((true, f)) => Ok(f),
        Ok((false, _)) => bail!(
            "cannot lock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ),
        Err(_) => bail!(
            "timed out after {}s waiting for {what} (lock {})",
            limit.as_secs(),
            path.display()
        ),
    }
}
