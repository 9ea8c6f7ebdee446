//! Redis on a host without an init system (no systemd as PID 1: a minimal or container image).
//! DESIGN.md phase 6: "on hosts without systemd, started directly as the redis user".
//!
//! How it runs there, and why:
//! - **Detection** is `sd_booted()`'s: `/run/systemd/system` exists only when systemd is PID 1.
//!   Having the systemd package installed (the redis-server package pulls it in on Debian) is
//!   not enough: `systemctl` without a running manager cannot start anything.
//! - **The same configuration file.** `/etc/redis/redis-cluster.conf` is byte-identical to the
//!   systemd case (so its hash, the plan and a saved plan do not depend on the init system); it
//!   says `daemonize no` + `supervised systemd` for the template unit, so the start command
//!   overrides exactly those two on its command line (`--supervised no --daemonize yes`; later
//!   arguments win). Its `pidfile` (/run/redis-cluster/redis-server.pid) is the unit's
//!   `PIDFile=`; the directory, which the unit's `RuntimeDirectory=` makes, is made here (2755
//!   redis:redis, as the unit does; /run is a tmpfs, so at every start).
//! - **Started as the redis user** by `start-stop-daemon` (dpkg's, on every Debian and Ubuntu,
//!   what the package's own init script uses): `--chuid redis:redis`, the unit's `UMask=007`
//!   and `LimitNOFILE=65535`; `--pidfile` + `--exec` make the start idempotent (a running
//!   server is left alone) and the status check exact (the pidfile's process must be
//!   /usr/bin/redis-server, not just any process that reused the pid).
//! - **Stopped cleanly**: SIGTERM to the pidfile's process, which Redis handles like SHUTDOWN
//!   (it fsyncs the AOF, saves if it has save points, and exits), then a wait until it is gone
//!   (bounded: 120 s); never SIGKILL. A server that does not exit is an error to look at, not
//!   something to kill.
//! - **Nothing restarts it** after a reboot or a crash (there is no init). After StartInstances
//!   (a swap, or a stopped node that apply starts) redisctl starts it itself; a node found with
//!   Redis down is planned as "start redis-server". Nothing applies the kernel settings at boot
//!   either (`redis::kernel`: no systemd-sysctl, no tmpfiles): every start puts them in force
//!   first, once redisctl has written them. The systemd drop-in's hardening (read-only
//!   /etc/redis, ProtectSystem=strict…) has no equivalent here: see docs/security.md.
//!
//! The scripts run under `sudo sh -c` and take no secret.

use crate::redis::{conf, kernel};

/// The `sd_booted()` test: true (exit 0) when systemd is the running init.
pub const IS_SYSTEMD: &str = "[ -d /run/systemd/system ]";

/// The server binary (a symlink in Debian's package; `--exec` follows it).
const DAEMON: &str = "/usr/bin/redis-server";
/// The run directory of the pidfile (the unit's `RuntimeDirectory=redis-cluster`).
const RUN_DIR: &str = "/run/redis-cluster";
/// The stock init script's pidfile.
const STOCK_PID_FILE: &str = "/run/redis/redis-server.pid";
/// How long a stop waits for Redis to exit after SIGTERM (it may be writing its AOF/RDB).
pub const STOP_BOUND_SECS: u32 = 120;

fn status(pidfile: &str) -> String {
    format!("start-stop-daemon --status --pidfile {pidfile} --exec {DAEMON}")
}

/// Exit 0 when the cluster's redis-server runs (the pidfile's process is alive and is
/// redis-server).
pub fn is_active() -> String {
    status(conf::PID_FILE)
}

/// Exit 0 when the stock server (started by the package's init script) runs.
pub fn stock_is_active() -> String {
    status(STOCK_PID_FILE)
}

/// Exit 0 when the package's init script is linked to start in a runlevel (a sysvinit host
/// would start the stock server at boot).
pub const STOCK_ENABLED: &str = "ls /etc/rc[2345].d/S[0-9][0-9]redis-server >/dev/null 2>&1";

/// Stop the stock server if it runs and unlink its init script from the runlevels; the
/// package's postinst started nothing (policy-rc.d answered 101).
pub fn stock_off() -> String {
    format!(
        "start-stop-daemon --stop --quiet --oknodo --retry TERM/{STOP_BOUND_SECS} --pidfile {STOCK_PID_FILE} --exec {DAEMON}\n\
         update-rc.d redis-server disable >/dev/null 2>&1 || true\n"
    )
}

/// Start redis-server as the redis user unless it runs already, then check it stays up (a
/// configuration or TLS file it cannot load makes it exit at once: show its log then, read
/// with the redis user's rights, as the log's directory is that user's and a link planted there
/// must not show root's files).
pub fn start() -> String {
    format!(
        "set -e
install -d -m 2755 -o redis -g redis {RUN_DIR}
ulimit -n 65535 2>/dev/null || true
if [ -f {sysctl} ]; then
{kernel}fi
# A pidfile left by a server that died names no redis-server: remove it, so that the wait
# below sees the new server's.
{active} || rm -f {pid}
start-stop-daemon --start --quiet --oknodo --umask 007 --chuid redis:redis --pidfile {pid} --exec {DAEMON} -- {conf} --supervised no --daemonize yes
i=0
while [ ! -s {pid} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
i=0
while [ $i -lt 10 ]; do
  if ! {active}; then
    echo 'redis-server exited right after its start; the end of {log}:' >&2
    runuser -u redis -- tail -n 20 {log} >&2 || true
    exit 1
  fi
  sleep 0.1
  i=$((i + 1))
done
",
        pid = conf::PID_FILE,
        conf = conf::CONF.path,
        active = is_active(),
        log = conf::LOG_FILE,
        sysctl = kernel::SYSCTL.path,
        kernel = kernel::apply_script(false),
    )
}

/// Stop redis-server cleanly: SIGTERM, then wait until it has exited (bounded). Not running is
/// fine.
pub fn stop() -> String {
    format!(
        "if ! start-stop-daemon --stop --quiet --oknodo --retry TERM/{STOP_BOUND_SECS} --pidfile {pid} --exec {DAEMON}; then
  echo 'redis-server did not exit within {STOP_BOUND_SECS}s of SIGTERM (it is still running; see {log})' >&2
  exit 1
fi
",
        pid = conf::PID_FILE,
        log = conf::LOG_FILE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_overrides_only_the_process_settings_of_the_shared_config() {
        let s = start();
        assert!(s.contains(
            "--chuid redis:redis --pidfile /run/redis-cluster/redis-server.pid --exec /usr/bin/redis-server -- /etc/redis/redis-cluster.conf --supervised no --daemonize yes"
        ));
        assert!(s.contains("--oknodo"), "a running server is left alone");
        assert!(s.contains("--umask 007"));
        // The config keeps the unit's pidfile, so start and status agree on it.
        let spec = crate::redis::test_spec::reference();
        let c = conf::render(&spec, &spec.nodes.nodes[0], None);
        assert!(c.contains(&format!("pidfile {}\n", conf::PID_FILE)));
        assert!(conf::PID_FILE.starts_with(&format!("{RUN_DIR}/")));
    }

    #[test]
    fn the_stop_is_sigterm_with_a_bounded_wait_never_sigkill() {
        let s = stop();
        assert!(s.contains("--retry TERM/120 "));
        assert!(!s.contains("KILL"));
        assert!(!stock_off().contains("KILL"));
    }
}
