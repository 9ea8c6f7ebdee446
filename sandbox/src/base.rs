//! The read-only Debian 12 base tree every host boots from, built once with mmdebstrap and
//! cached under a content hash of its recipe (suite, mirrors, package list, customize script),
//! so that a changed recipe builds a new base and an unchanged one is reused. The apt archive
//! the build downloads (redis-server, redis-tools and what they need) is not in the base: it is
//! moved to [`archive_dir`] next to it, which the front serves over HTTP on the emulated
//! internet ([`crate::net::ARCHIVE_URL`]).

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
const RECIPE_VERSION: &str = "2";
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

/// The apt archive built with a base (`<cache>/archive-<hash>/`, `Packages` and the .debs),
/// next to the base tree `base`.
pub fn archive_dir(base: &std::path::Path) -> PathBuf {
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().replacen("base-", "archive-", 1))
        .unwrap_or_else(|| "archive".into());
    base.with_file_name(name)
}

/// Whether a base and its archive are complete.
fn complete(base: &std::path::Path) -> bool {
    base.join("etc/apt/sources.list.d/sandbox.list").exists()
        && archive_dir(base).join("Packages").exists()
}

/// Returns the base tree, building it (and its archive) first when the cache has none for this
/// recipe.
pub fn ensure(paths: &Paths) -> Result<PathBuf> {
    let target = dir(paths);
    if complete(&target) {
        return Ok(target);
    }
    let archive = archive_dir(&target);
    for stale in [&target, &archive] {
        if stale.exists() {
            crate::safefs::remove_tree(stale)
                .with_context(|| format!("cannot remove the incomplete {}", stale.display()))?;
        }
    }
    std::fs::create_dir_all(&paths.cache)?;
    std::fs::create_dir_all(paths.logs())?;
    // Leftovers of an interrupted build.
    for entry in std::fs::read_dir(&paths.cache)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if (name.starts_with("base-") || name.starts_with("archive-")) && name.contains(".tmp") {
            crate::safefs::remove_tree(&entry.path()).ok();
        }
    }
    let tmp = paths
        .cache
        .join(format!("base-{}.tmp{}", content_hash(), std::process::id()));
    let tmp_archive = paths.cache.join(format!(
        "archive-{}.tmp{}",
        content_hash(),
        std::process::id()
    ));
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
        .arg(format!(
            "--customize-hook=sh {} \"$1\" {}",
            script.display(),
            tmp_archive.display()
        ))
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
            crate::safefs::remove_tree(&tmp).ok();
            crate::safefs::remove_tree(&tmp_archive).ok();
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
        crate::safefs::remove_tree(&tmp).ok();
        crate::safefs::remove_tree(&tmp_archive).ok();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        bail!(
            "mmdebstrap failed ({status}) building the base; last lines of {}:\n{}",
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    // The archive first: a base without its archive is incomplete (and rebuilt).
    std::fs::rename(&tmp_archive, &archive)
        .with_context(|| format!("cannot move the new archive to {}", archive.display()))?;
    std::fs::rename(&tmp, &target)
        .with_context(|| format!("cannot move the new base to {}", target.display()))?;
    eprintln!(
        "base built in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        target.display()
    );
    Ok(target)
}

/// Removes cached bases (and archives) of other recipes (called when no host runs).
pub fn prune(paths: &Paths, keep: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(&paths.cache) else {
        return;
    };
    let keep_archive = archive_dir(keep);
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with("base-") || name.starts_with("archive-"))
            && e.path() != keep
            && e.path() != keep_archive
            && e.path().is_dir()
        {
            eprintln!(
                "removing the base of an older recipe: {}",
                e.path().display()
            );
            crate::safefs::remove_tree(&e.path()).ok();
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

    #[test]
    fn the_archive_sits_next_to_its_base_and_is_the_only_source() {
        let base = std::path::Path::new("/var/cache/redisctl-sandbox/base-0123456789abcdef");
        assert_eq!(
            super::archive_dir(base),
            std::path::Path::new("/var/cache/redisctl-sandbox/archive-0123456789abcdef")
        );
        assert!(
            super::CUSTOMIZE.contains(&format!(
                "'deb [trusted=yes] {} ./'",
                crate::net::ARCHIVE_URL
            )),
            "customize.sh names another archive than net::ARCHIVE_URL"
        );
    }
}
