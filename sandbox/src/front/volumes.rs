//! The volume store: one directory per EBS volume (a host's overlay upper layer) and one per
//! snapshot, under the sandbox's state directory. A snapshot, a copied snapshot and a volume
//! restored from a snapshot are full copies (`cp -a`, reflinked where the filesystem can);
//! moto keeps the records, this store only the bytes.

use crate::paths::Paths;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

pub struct Volumes {
    paths: Paths,
}

impl Volumes {
    pub fn new(paths: Paths) -> Volumes {
        Volumes { paths }
    }

    /// The volume's directory, created empty (a pristine disk) if it has none yet.
    pub async fn ensure(&self, volume: &str) -> Result<PathBuf> {
        let dir = self.paths.volume(volume);
        tokio::fs::create_dir_all(&dir).await?;
        Ok(dir)
    }

    /// A new volume: a copy of the snapshot, or empty.
    pub async fn create(&self, volume: &str, snapshot: Option<&str>) -> Result<()> {
        match snapshot {
            Some(snap) if !snap.is_empty() => {
                copy_dir(self.paths.snapshot(snap), self.paths.volume(volume)).await
            }
            _ => Ok(tokio::fs::create_dir_all(self.paths.volume(volume)).await?),
        }
    }

    pub async fn snapshot(&self, volume: &str, snapshot: &str) -> Result<()> {
        copy_dir(self.paths.volume(volume), self.paths.snapshot(snapshot)).await
    }

    pub async fn copy_snapshot(&self, source: &str, snapshot: &str) -> Result<()> {
        copy_dir(self.paths.snapshot(source), self.paths.snapshot(snapshot)).await
    }

    pub async fn delete_volume(&self, volume: &str) -> Result<()> {
        remove_dir(self.paths.volume(volume)).await
    }

    pub async fn delete_snapshot(&self, snapshot: &str) -> Result<()> {
        remove_dir(self.paths.snapshot(snapshot)).await
    }

    /// Every volume and snapshot gone; the two directories are left empty.
    pub async fn clear(&self) -> Result<()> {
        for dir in [self.paths.volumes(), self.paths.snapshots()] {
            remove_dir(dir.clone()).await?;
            tokio::fs::create_dir_all(&dir).await?;
        }
        Ok(())
    }
}

/// Copies a volume or snapshot directory with owners, modes, xattrs and overlay whiteouts.
async fn copy_dir(src: PathBuf, dst: PathBuf) -> Result<()> {
    if tokio::fs::metadata(&dst).await.is_ok() {
        bail!("{} already exists", dst.display());
    }
    if let Some(parent) = dst.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    if tokio::fs::metadata(&src).await.is_err() {
        // A volume that never booted: an empty upper layer is the pristine image.
        tokio::fs::create_dir_all(&dst).await?;
        return Ok(());
    }
    // Copied under a temporary name and renamed: a copy cut short (the front killed) never
    // passes for a complete disk.
    let mut partial = dst.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    remove_dir(partial.clone()).await?;
    let out = tokio::process::Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&src)
        .arg(&partial)
        .output()
        .await
        .context("cannot run cp")?;
    if !out.status.success() {
        bail!(
            "cp -a {} {} failed: {}",
            src.display(),
            dst.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    tokio::fs::rename(&partial, &dst)
        .await
        .with_context(|| format!("cannot rename {} to {}", partial.display(), dst.display()))?;
    Ok(())
}

/// Removes a volume or snapshot directory (the guest's files): never following a symlink,
/// never crossing into a mount (see [`crate::safefs::remove_tree`]); a missing one is fine.
async fn remove_dir(dir: PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || crate::safefs::remove_tree(&dir)).await?
}
