//! The part of cloud-init that the sandbox plays at an instance's first boot: the key pair's
//! public key and `#cloud-config` `ssh_authorized_keys` for `ubuntu`, `ssh_keys` (host keys, so a
//! client can pin a key it generated itself) or freshly generated host keys, the hostname and
//! /etc/hosts. Everything is written into the root volume's overlay upper directory before the
//! host boots, with the owners and modes cloud-init would give. Like cloud-init, it runs once per
//! instance id (recorded in /var/lib/cloud/data/instance-id on the volume).

use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// What the sandbox understands of `#cloud-config` user data.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CloudConfig {
    pub ssh_authorized_keys: Vec<String>,
    /// (key type, private key, public key) for rsa / ecdsa / ed25519.
    pub ssh_keys: Vec<(String, String, String)>,
    /// Top-level keys present that the sandbox ignores (logged).
    pub ignored: Vec<String>,
}

/// Parses decoded user data. `None` when it is not `#cloud-config` (e.g. a shell script, which
/// the sandbox does not run).
pub fn parse_user_data(text: &str) -> Result<Option<CloudConfig>> {
    if !text.starts_with("#cloud-config") {
        return Ok(None);
    }
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).context("user data says #cloud-config but is not valid YAML")?;
    let mut cfg = CloudConfig::default();
    let Some(map) = value.as_mapping() else {
        return Ok(Some(cfg));
    };
    for (k, v) in map {
        let Some(key) = k.as_str() else { continue };
        match key {
            "ssh_authorized_keys" => {
                let Some(seq) = v.as_sequence() else {
                    bail!("cloud-config ssh_authorized_keys must be a list of strings");
                };
                for entry in seq {
                    match entry.as_str() {
                        Some(s) => cfg.ssh_authorized_keys.push(s.trim().to_string()),
                        None => bail!("cloud-config ssh_authorized_keys must be a list of strings"),
                    }
                }
            }
            "ssh_keys" => {
                let Some(keys) = v.as_mapping() else {
                    bail!("cloud-config ssh_keys must be a mapping like ed25519_private: …");
                };
                let get = |name: String| {
                    keys.get(name.as_str())
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                };
                for kind in ["rsa", "ecdsa", "ed25519"] {
                    let private = get(format!("{kind}_private"));
                    let public = get(format!("{kind}_public"));
                    match (private, public) {
                        (Some(private), Some(public)) => {
                            cfg.ssh_keys.push((kind.to_string(), private, public))
                        }
                        (None, None) => {}
                        _ => {
                            bail!("cloud-config ssh_keys has only one half of the {kind} key pair")
                        }
                    }
                }
            }
            other => cfg.ignored.push(other.to_string()),
        }
    }
    Ok(Some(cfg))
}

/// AWS's default hostname for a private IP: `ip-10-0-1-10`.
pub fn hostname_for(ip: &str) -> String {
    format!("ip-{}", ip.replace('.', "-"))
}

/// Creates `upper/rel`'s missing parent directories, each with the owner and mode the same
/// directory has in the base (so the overlay shows the base's metadata), root 0755 otherwise.
fn ensure_parents(base: &Path, upper: &Path, rel: &str) -> Result<()> {
    let mut so_far = std::path::PathBuf::new();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        so_far.push(part);
        let dir = upper.join(&so_far);
        if dir.exists() {
            continue;
        }
        fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let (mode, uid, gid) = match fs::metadata(base.join(&so_far)) {
            Ok(m) => (m.mode() & 0o7777, m.uid(), m.gid()),
            Err(_) => (0o755, 0, 0),
        };
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
    }
    Ok(())
}

fn write_file(
    base: &Path,
    upper: &Path,
    rel: &str,
    content: &str,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    ensure_parents(base, upper, rel)?;
    let path = upper.join(rel);
    fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
    Ok(())
}

fn make_dir(base: &Path, upper: &Path, rel: &str, mode: u32, uid: u32, gid: u32) -> Result<()> {
    ensure_parents(base, upper, &format!("{rel}/x"))?;
    let path = upper.join(rel);
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
    Ok(())
}

/// The `ubuntu` user's uid and gid in the base.
fn ubuntu_ids(base: &Path) -> Result<(u32, u32)> {
    let passwd = fs::read_to_string(base.join("etc/passwd"))
        .context("cannot read the base's /etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "ubuntu" {
            return Ok((f[2].parse()?, f[3].parse()?));
        }
    }
    bail!("the base has no ubuntu user")
}

pub struct FirstBoot<'a> {
    pub instance_id: &'a str,
    pub private_ip: &'a str,
    pub key_pair_public: Option<&'a str>,
    pub cloud_config: Option<&'a CloudConfig>,
}

/// Writes the first-boot files into `upper`. Returns false (and writes nothing) when this volume
/// was already initialised for this instance.
pub fn apply(base: &Path, upper: &Path, fb: &FirstBoot) -> Result<bool> {
    const MARKER: &str = "var/lib/cloud/data/instance-id";
    if fs::read_to_string(upper.join(MARKER)).is_ok_and(|s| s.trim() == fb.instance_id) {
        return Ok(false);
    }
    let hostname = hostname_for(fb.private_ip);
    write_file(
        base,
        upper,
        "etc/hostname",
        &format!("{hostname}\n"),
        0o644,
        0,
        0,
    )?;
    write_file(
        base,
        upper,
        "etc/hosts",
        &format!(
            "127.0.0.1 localhost\n{} {hostname}\n\n::1 localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n",
            fb.private_ip
        ),
        0o644,
        0,
        0,
    )?;

    let (uid, gid) = ubuntu_ids(base)?;
    let mut keys = Vec::new();
    if let Some(k) = fb.key_pair_public {
        keys.push(k.trim().to_string());
    }
    if let Some(cfg) = fb.cloud_config {
        keys.extend(cfg.ssh_authorized_keys.iter().cloned());
    }
    make_dir(base, upper, "home/ubuntu/.ssh", 0o700, uid, gid)?;
    let mut authorized = keys.join("\n");
    if !authorized.is_empty() {
        authorized.push('\n');
    }
    write_file(
        base,
        upper,
        "home/ubuntu/.ssh/authorized_keys",
        &authorized,
        0o600,
        uid,
        gid,
    )?;

    // Host keys: the ones user data gives, or new ones, never the base's (it has none).
    let given = fb
        .cloud_config
        .map(|c| c.ssh_keys.clone())
        .unwrap_or_default();
    ensure_parents(base, upper, "etc/ssh/x")?;
    for entry in fs::read_dir(upper.join("etc/ssh"))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            fs::remove_file(entry.path())?;
        }
    }
    if given.is_empty() {
        for kind in ["ed25519", "ecdsa"] {
            let path = upper.join(format!("etc/ssh/ssh_host_{kind}_key"));
            let path = path.to_string_lossy();
            crate::proc::run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    kind,
                    "-N",
                    "",
                    "-C",
                    &format!("root@{hostname}"),
                    "-f",
                    &path,
                ],
            )?;
        }
    } else {
        for (kind, private, public) in &given {
            let mut private = private.clone();
            if !private.ends_with('\n') {
                private.push('\n');
            }
            write_file(
                base,
                upper,
                &format!("etc/ssh/ssh_host_{kind}_key"),
                &private,
                0o600,
                0,
                0,
            )?;
            write_file(
                base,
                upper,
                &format!("etc/ssh/ssh_host_{kind}_key.pub"),
                &format!("{}\n", public.trim()),
                0o644,
                0,
                0,
            )?;
        }
    }
    write_file(
        base,
        upper,
        MARKER,
        &format!("{}\n", fb.instance_id),
        0o644,
        0,
        0,
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_host_keys() {
        let text = "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA one\n  - ssh-rsa BBBB two\nssh_keys:\n  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    abc\n    -----END OPENSSH PRIVATE KEY-----\n  ed25519_public: ssh-ed25519 CCCC host\npackages: [redis]\n";
        let cfg = parse_user_data(text).unwrap().unwrap();
        assert_eq!(
            cfg.ssh_authorized_keys,
            ["ssh-ed25519 AAAA one", "ssh-rsa BBBB two"]
        );
        assert_eq!(cfg.ssh_keys.len(), 1);
        let (kind, private, public) = &cfg.ssh_keys[0];
        assert_eq!(kind, "ed25519");
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n"));
        assert_eq!(public, "ssh-ed25519 CCCC host");
        assert_eq!(cfg.ignored, ["packages"]);
    }

    #[test]
    fn not_cloud_config() {
        assert_eq!(parse_user_data("#!/bin/sh\necho hi\n").unwrap(), None);
        assert_eq!(parse_user_data("").unwrap(), None);
    }

    #[test]
    fn bad_cloud_config_is_an_error() {
        assert!(parse_user_data("#cloud-config\nssh_authorized_keys: notalist\n").is_err());
        assert!(parse_user_data("#cloud-config\nssh_keys:\n  rsa_private: x\n").is_err());
        assert!(parse_user_data("#cloud-config\n: : :\n  - [").is_err());
    }

    #[test]
    fn empty_cloud_config() {
        assert_eq!(
            parse_user_data("#cloud-config\n").unwrap(),
            Some(CloudConfig::default())
        );
    }

    #[test]
    fn aws_hostname() {
        assert_eq!(hostname_for("10.0.1.10"), "ip-10-0-1-10");
    }

    #[test]
    fn writes_first_boot_files_with_owners() {
        let base = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir_all(base.path().join("etc/ssh")).unwrap();
        fs::create_dir_all(base.path().join("home/ubuntu")).unwrap();
        std::os::unix::fs::chown(base.path().join("home/ubuntu"), Some(1000), Some(1000)).unwrap();
        fs::write(
            base.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n",
        )
        .unwrap();
        let cfg = parse_user_data("#cloud-config\nssh_authorized_keys: [ssh-ed25519 EXTRA x]\nssh_keys:\n  ed25519_private: PRIV\n  ed25519_public: ssh-ed25519 PUB host\n").unwrap().unwrap();
        let fb = FirstBoot {
            instance_id: "i-1",
            private_ip: "10.0.1.10",
            key_pair_public: Some("ssh-ed25519 KP k"),
            cloud_config: Some(&cfg),
        };
        assert!(apply(base.path(), upper.path(), &fb).unwrap());
        let u = upper.path();
        let home = fs::metadata(u.join("home/ubuntu")).unwrap();
        assert_eq!((home.uid(), home.mode() & 0o777), (1000, 0o755));
        let ssh = fs::metadata(u.join("home/ubuntu/.ssh")).unwrap();
        assert_eq!((ssh.uid(), ssh.mode() & 0o777), (1000, 0o700));
        let ak = u.join("home/ubuntu/.ssh/authorized_keys");
        assert_eq!(
            fs::read_to_string(&ak).unwrap(),
            "ssh-ed25519 KP k\nssh-ed25519 EXTRA x\n"
        );
        assert_eq!(fs::metadata(&ak).unwrap().mode() & 0o777, 0o600);
        let hk = u.join("etc/ssh/ssh_host_ed25519_key");
        assert_eq!(fs::read_to_string(&hk).unwrap(), "PRIV\n");
        assert_eq!(fs::metadata(&hk).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_to_string(u.join("etc/hostname")).unwrap(),
            "ip-10-0-1-10\n"
        );
        // Second boot of the same instance: nothing rewritten.
        fs::write(&ak, "changed\n").unwrap();
        assert!(!apply(base.path(), upper.path(), &fb).unwrap());
        assert_eq!(fs::read_to_string(&ak).unwrap(), "changed\n");
    }
}
