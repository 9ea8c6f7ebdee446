//! The CLI's refusals, which need no sandbox.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_redisctl-sandbox");

#[test]
fn up_names_exactly_what_is_missing() {
    if unsafe { libc::geteuid() } != 0 {
        let out = Command::new(BIN).arg("up").output().unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("must run as root"));
        return;
    }
    // With nothing on PATH every tool is missing; `up` stops before changing anything.
    let out = Command::new(BIN)
        .arg("up")
        .env("PATH", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for pkg in [
        "mmdebstrap",
        "systemd-container",
        "iproute2",
        "openssh-client",
        "dpkg",
    ] {
        assert!(
            err.contains(&format!("(Debian package {pkg})")),
            "{pkg} not named in:\n{err}"
        );
    }
    assert!(err.contains("--install-prereqs"), "{err}");
}

#[test]
fn a_fault_must_say_what_it_does() {
    let out = Command::new(BIN)
        .args(["faults", "add", "--action", "RunInstances"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("say what the fault does"));
    let out = Command::new(BIN)
        .args([
            "faults",
            "add",
            "--action",
            "X",
            "--http-status",
            "503",
            "--rate",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate must be between 0 and 1"));
}

#[test]
fn a_sandbox_root_down_could_not_safely_clear_is_refused() {
    // `status` only reads, so a regression here cannot remove anything.
    for bad in [
        "",
        "/",
        "/run",
        "/usr",
        "/tmp",
        "relative",
        "/tmp/../run",
        "/var/lib",
    ] {
        let out = Command::new(BIN)
            .arg("status")
            .env("REDISCTL_SANDBOX_ROOT", bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("REDISCTL_SANDBOX_ROOT") && err.contains("refused")
                || err.contains("set but empty"),
            "{bad:?}: {err}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).is_empty(),
            "{bad:?}: status ran"
        );
    }
}
