//! What `up` needs on the machine: the tools it runs (installed from Debian's packages with
//! `up --install-prereqs`) and the Python virtual environment that holds moto.

use crate::paths::Paths;
use crate::proc::{run, run_quiet};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A tool `up` needs, and the Debian package that has it.
struct Prereq {
    what: &'static str,
    package: &'static str,
    present: fn() -> bool,
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// The Python `up` uses for the venv: Debian's, when there is one.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

const PREREQS: &[Prereq] = &[
    Prereq {
        what: "mmdebstrap",
        package: "mmdebstrap",
        present: || on_path("mmdebstrap"),
    },
    Prereq {
        what: "debian-archive-keyring (for mmdebstrap)",
        package: "debian-archive-keyring",
        present: || Path::new("/usr/share/keyrings/debian-archive-keyring.gpg").exists(),
    },
    Prereq {
        what: "systemd-nspawn",
        package: "systemd-container",
        present: || on_path("systemd-nspawn"),
    },
    Prereq {
        what: "ip",
        package: "iproute2",
        present: || on_path("ip"),
    },
    Prereq {
        what: "nft (security groups and the internet gateway)",
        package: "nftables",
        present: || on_path("nft") || Path::new("/usr/sbin/nft").exists(),
    },
    Prereq {
        what: "ssh-keygen and ssh",
        package: "openssh-client",
        present: || on_path("ssh-keygen") && on_path("ssh"),
    },
    Prereq {
        what: "dpkg-deb",
        package: "dpkg",
        present: || on_path("dpkg-deb"),
    },
    Prereq {
        what: "python3 with venv and ensurepip",
        package: "python3-venv",
        present: || {
            Command::new(python())
                .args(["-c", "import venv, ensurepip"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        },
    },
];

pub fn missing_prereqs() -> Vec<(&'static str, &'static str)> {
    PREREQS
        .iter()
        .filter(|p| !(p.present)())
        .map(|p| (p.what, p.package))
        .collect()
}

/// The Debian packages `up --install-prereqs` installs.
pub fn prereq_packages() -> Vec<&'static str> {
    let mut v: Vec<&str> = PREREQS.iter().map(|p| p.package).collect();
    v.dedup();
    v
}

pub(crate) fn check_prereqs(install: bool) -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "redisctl-sandbox must run as root (it makes network namespaces, routes and containers)"
        );
    }
    let overlay = std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .contains("overlay")
        || run_quiet("modprobe", &["overlay"]);
    if !overlay {
        bail!("the kernel has no overlay filesystem (needed for the hosts' root volumes)");
    }
    let missing = missing_prereqs();
    if missing.is_empty() {
        return Ok(());
    }
    let pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    if !install {
        let list: Vec<String> = missing
            .iter()
            .map(|(w, p)| format!("  {w} (Debian package {p})"))
            .collect();
        bail!(
            "missing prerequisites:\n{}\ninstall them with `apt-get install -y {}` or run `redisctl-sandbox up --install-prereqs`",
            list.join("\n"),
            pkgs.join(" ")
        );
    }
    eprintln!("installing prerequisites: {}", pkgs.join(" "));
    let status = Command::new("apt-get")
        .arg("update")
        .arg("-q")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("apt-get update failed ({status})");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .args(&pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", pkgs.join(" "));
    }
    let still: Vec<&str> = missing_prereqs().iter().map(|(w, _)| *w).collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

pub(crate) fn ensure_venv(paths: &Paths) -> Result<()> {
    let venv = paths.venv();
    let marker = venv.join(".redisctl-sandbox-requirement");
    if venv.join("bin/moto_server").exists()
        && std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == crate::MOTO_REQUIREMENT)
    {
        return Ok(());
    }
    let t = Instant::now();
    eprintln!(
        "making the moto venv ({}) in {}",
        crate::MOTO_REQUIREMENT,
        venv.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv)?;
    }
    std::fs::create_dir_all(&paths.state)?;
    run(python(), &["-m", "venv", &venv.to_string_lossy()])?;
    let pip = venv.join("bin/pip");
    let mut child = Command::new(&pip)
        .args([
            "install",
            "--disable-pip-version-check",
            "-q",
            crate::MOTO_REQUIREMENT,
        ])
        .stdin(Stdio::null())
        .spawn()
        .context("cannot run pip")?;
    let limit = Duration::from_secs(15 * 60);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if t.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            bail!(
                "pip did not install {} within {}s",
                crate::MOTO_REQUIREMENT,
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        bail!("pip install {} failed ({status})", crate::MOTO_REQUIREMENT);
    }
    std::fs::write(&marker, crate::MOTO_REQUIREMENT)?;
    eprintln!("venv ready in {:.1}s", t.elapsed().as_secs_f64());
    Ok(())
}
