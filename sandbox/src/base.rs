//! The read-only Debian 12 base tree every host boots from, built once with mmdebstrap and
//! cached under a content hash of its recipe (suite, mirrors, package list, customize script),
//! so that a changed recipe builds a new base and an unchanged one is reused.

use crate::paths::Paths;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const SUITE: &str = "bookworm";
pub const MIRRORS: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "iproute2",
    "iputils-ping",
    "procps",
    "less",
    "ca-certificates",
    "python3",
];
const CUSTOMIZE: &str = include_str!("../base/customize.sh");
/// Bump when the way the base is built changes outside the inputs hashed below.
const RECIPE_VERSION: &str = "1";
const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);

pub fn content_hash() -> String {
    let mut h = Sha256::new();
    for part in [
        RECIPE_VERSION,
        SUITE,
        &MIRRORS.join("\n"),
        &PACKAGES.join(","),
        CUSTOMIZE,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())[..16].to_string()
}

pub fn dir(paths: &Paths) -> PathBuf {
    paths.cache.join(format!("base-{}", content_hash()))
}

/// Returns the base tree, building it first when the cache has none for this recipe.
pub fn ensure(paths: &Paths) -> Result<PathBuf> {
    let target = dir(paths);
    if target.join("opt/sandbox-apt/Packages").exists() {
        return Ok(target);
    }
    std::fs::create_dir_all(&paths.cache)?;
    std::fs::create_dir_all(paths.logs())?;
    // Leftovers of an interrupted build.
    for entry in std::fs::read_dir(&paths.cache)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("base-") && name.contains(".tmp") {
            std::fs::remove_dir_all(entry.path()).ok();
        }
    }
    let tmp = paths
        .cache
        .join(format!("base-{}.tmp{}", content_hash(), std::process::id()));
    let script = paths.cache.join(format!("customize-{}.sh", content_hash()));
    std::fs::write(&script, CUSTOMIZE)?;
    let log_path = paths.logs().join("base-build.log");
    let log = std::fs::File::create(&log_path)?;
    eprintln!(
        "building the Debian 12 base tree with mmdebstrap (once per recipe, ~30 s; log: {})",
        log_path.display()
    );
    let started = Instant::now();
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg("--variant=apt")
        .arg("--mode=root")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(format!("--customize-hook=sh {} \"$1\"", script.display()))
        .arg(SUITE)
        .arg(&tmp)
        .args(MIRRORS)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut child = cmd.spawn().context("cannot run mmdebstrap")?;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if started.elapsed() > BUILD_LIMIT {
            child.kill().ok();
            child.wait().ok();
            std::fs::remove_dir_all(&tmp).ok();
            bail!(
                "mmdebstrap did not finish the base within {}s; see {}",
                BUILD_LIMIT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::fs::remove_file(&script).ok();
    if !status.success() {
        std::fs::remove_dir_all(&tmp).ok();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        bail!(
            "mmdebstrap failed ({status}) building the base; last lines of {}:\n{}",
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    std::fs::rename(&tmp, &target)
        .with_context(|| format!("cannot move the new base to {}", target.display()))?;
    eprintln!(
        "base built in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        target.display()
    );
    Ok(target)
}

/// Removes cached bases of other recipes (called when no host runs).
pub fn prune(paths: &Paths, keep: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(&paths.cache) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("base-") && e.path() != keep && e.path().is_dir() {
            eprintln!(
                "removing the base of an older recipe: {}",
                e.path().display()
            );
            std::fs::remove_dir_all(e.path()).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_is_stable_and_short() {
        assert_eq!(super::content_hash(), super::content_hash());
        assert_eq!(super::content_hash().len(), 16);
    }
}
