//! The one setting of this machine's kernel the sandbox changes, and gives back at `down`:
//! `fs.inotify.max_user_instances`. Every booted host is a systemd that watches its files with
//! inotify (systemd, journald, logind, udev: about five instances each), and all hosts run as
//! this machine's root, so they share root's limit; at the stock 128, about 23 hosts exhaust it
//! (a guest's systemd then fails with "Too many open files") and a 30-node cluster cannot
//! boot. `up` raises it to [`WANT`] if it is lower, noting the value it found; `down` puts that
//! value back, unless someone changed the setting since.

use std::path::Path;

use anyhow::{Context, Result};

const SETTING: &str = "/proc/sys/fs/inotify/max_user_instances";
/// Room for about 200 hosts.
pub const WANT: u64 = 1024;

fn read(path: &Path) -> Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: {:?} is not a number", path.display(), text.trim()))
}

/// Raise the limit to [`WANT`] when it is lower; the value found is kept in `saved` (once: a
/// second `up` keeps the first value found). Returns what was done, for `up` to say.
pub fn raise(saved: &Path) -> Result<Option<String>> {
    let now = read(Path::new(SETTING))?;
    if now >= WANT {
        return Ok(None);
    }
    if !saved.exists() {
        std::fs::write(saved, format!("{now}\n"))
            .with_context(|| format!("cannot write {}", saved.display()))?;
    }
    std::fs::write(SETTING, format!("{WANT}\n"))
        .with_context(|| format!("cannot raise {SETTING} to {WANT}"))?;
    Ok(Some(format!(
        "fs.inotify.max_user_instances raised from {now} to {WANT} for the hosts' systemd (put back at down)"
    )))
}

/// Put back the value `raise` found, if the setting is still the one it set; forget it.
pub fn restore(saved: &Path) -> Result<()> {
    if !saved.exists() {
        return Ok(());
    }
    let was = read(saved)?;
    if read(Path::new(SETTING))? == WANT {
        std::fs::write(SETTING, format!("{was}\n"))
            .with_context(|| format!("cannot put {SETTING} back to {was}"))?;
    }
    std::fs::remove_file(saved).with_context(|| format!("cannot remove {}", saved.display()))?;
    Ok(())
}
