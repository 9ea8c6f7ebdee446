//! The part of cloud-init that the sandbox plays at an instance's first boot: the key pair's
//! public key and `#cloud-config` `ssh_authorized_keys` for `ubuntu`, `ssh_keys` (host keys, so a
//! client can pin a key it generated itself) or freshly generated host keys, the hostname and
//! /etc/hosts. Everything is written into the root volume's overlay upper directory before the
//! host boots, with the owners and modes cloud-init would give. Like cloud-init, it runs once per
//! instance id (recorded in /var/lib/cloud/data/instance-id on the volume).

use crate::safefs::{Dir, PrivateTemp};
use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::MetadataExt;
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

/// The owner and mode of a directory the sandbox creates in the upper layer: those the same
/// directory has in the base (so the overlay shows the base's metadata), root 0755 otherwise.
/// The base is the sandbox's own tree.
fn base_meta(base: &Path) -> impl Fn(&str) -> (u32, u32, u32) + '_ {
    move |rel| match fs::metadata(base.join(rel)) {
        Ok(m) => (m.mode() & 0o7777, m.uid(), m.gid()),
        Err(_) => (0o755, 0, 0),
    }
}

/// The directory `rel` of the upper layer, its missing parts created as in the base. No symlink
/// in the guest's volume is followed (see [`crate::safefs`]): one where a directory is expected
/// is an error naming it.
fn upper_dir(base: &Path, upper: &Dir, rel: &str) -> Result<Dir> {
    let meta = base_meta(base);
    upper
        .subdir(rel, Some(&meta))?
        .with_context(|| format!("{} was not created", upper.path().join(rel).display()))
}

fn write_file(
    base: &Path,
    upper: &Dir,
    rel: &str,
    content: &str,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    upper_dir(base, upper, dir)?.write_file(name, content.as_bytes(), mode, uid, gid)
}

fn make_dir(base: &Path, upper: &Dir, rel: &str, mode: u32, uid: u32, gid: u32) -> Result<()> {
    upper_dir(base, upper, rel)?.set_owner_mode(mode, uid, gid)
}

/// A host key made by ssh-keygen in a private temporary directory (never in the guest's
/// volume, where a planted symlink would lead it): (private, public).
fn generate_host_key(kind: &str, comment: &str) -> Result<(String, String)> {
    let tmp = PrivateTemp::new("rsbx-keygen")?;
    let key = tmp.path().join("key");
    crate::proc::run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            kind,
            "-N",
            "",
            "-C",
            comment,
            "-f",
            &key.to_string_lossy(),
        ],
    )?;
    Ok((
        fs::read_to_string(&key)?,
        fs::read_to_string(key.with_extension("pub"))?,
    ))
}

const MARKER_DIR: &str = "var/lib/cloud/data";
const MARKER_FILE: &str = "instance-id";

/// Whether the volume `upper` was initialised for this instance (its
/// /var/lib/cloud/data/instance-id names it). Read without following a symlink and only from a
/// small regular file: anything else is "no".
pub fn initialised(upper: &Path, instance_id: &str) -> bool {
    let Ok(upper) = Dir::open(upper) else {
        return false;
    };
    initialised_in(&upper, instance_id)
}

fn initialised_in(upper: &Dir, instance_id: &str) -> bool {
    let Ok(Some(dir)) = upper.subdir(MARKER_DIR, None) else {
        return false;
    };
    matches!(
        dir.read_file(MARKER_FILE, 4096),
        Ok(Some(bytes)) if String::from_utf8_lossy(&bytes).trim() == instance_id
    )
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
///
/// Nothing is written, created, chowned or chmodded through a symlink in the volume: the guest
/// owns every path in it (and a volume can come from another instance), so `/home/ubuntu/.ssh`
/// or `/etc/ssh` may point anywhere on this machine. A symlink where a directory is expected
/// makes this an error that names it; one at a file's name is replaced by the file.
pub fn apply(base: &Path, upper: &Path, fb: &FirstBoot) -> Result<bool> {
    let upper = &Dir::open(upper)?;
    if initialised_in(upper, fb.instance_id) {
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
    let etc_ssh = upper_dir(base, upper, "etc/ssh")?;
    for (name, _) in etc_ssh.entries()? {
        if name.starts_with("ssh_host_") {
            etc_ssh.remove_file(&name)?;
        }
    }
    let keys: Vec<(String, String, String)> = if given.is_empty() {
        let mut made = Vec::new();
        for kind in ["ed25519", "ecdsa"] {
            let (private, public) = generate_host_key(kind, &format!("root@{hostname}"))?;
            made.push((kind.to_string(), private, public));
        }
        made
    } else {
        given
    };
    for (kind, private, public) in &keys {
        let mut private = private.clone();
        if !private.ends_with('\n') {
            private.push('\n');
        }
        etc_ssh.write_file(
            &format!("ssh_host_{kind}_key"),
            private.as_bytes(),
            0o600,
            0,
            0,
        )?;
        etc_ssh.write_file(
            &format!("ssh_host_{kind}_key.pub"),
            format!("{}\n", public.trim()).as_bytes(),
            0o644,
            0,
            0,
        )?;
    }
    write_file(
        base,
        upper,
        &format!("{MARKER_DIR}/{MARKER_FILE}"),
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

    /// A base with /etc/ssh, /home/ubuntu (1000) and the ubuntu user.
    fn test_base() -> tempfile::TempDir {
        let base = tempfile::tempdir().unwrap();
        fs::create_dir_all(base.path().join("etc/ssh")).unwrap();
        fs::create_dir_all(base.path().join("home/ubuntu")).unwrap();
        std::os::unix::fs::chown(base.path().join("home/ubuntu"), Some(1000), Some(1000)).unwrap();
        fs::write(
            base.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n",
        )
        .unwrap();
        base
    }

    #[test]
    fn symlinks_the_guest_planted_are_never_followed() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let base = test_base();
        let cfg = parse_user_data("#cloud-config\nssh_keys:\n  ed25519_private: PRIV\n  ed25519_public: ssh-ed25519 PUB host\n").unwrap().unwrap();
        let fb = FirstBoot {
            instance_id: "i-1",
            private_ip: "10.0.1.10",
            key_pair_public: Some("ssh-ed25519 KP k"),
            cloud_config: Some(&cfg),
        };
        // The machine's own files, as a guest's symlinks would name them (/root/.ssh,
        // /etc/ssh, /etc/shadow).
        let host = tempfile::tempdir().unwrap();
        let root_ssh = host.path().join("root-ssh");
        let etc_ssh = host.path().join("etc-ssh");
        fs::create_dir(&root_ssh).unwrap();
        fs::create_dir(&etc_ssh).unwrap();
        fs::set_permissions(&root_ssh, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root_ssh.join("authorized_keys"), "host\n").unwrap();
        fs::write(etc_ssh.join("ssh_host_ed25519_key"), "HOST KEY\n").unwrap();
        let shadow = host.path().join("shadow");
        fs::write(&shadow, "root:*:1::::::\n").unwrap();
        let untouched = || {
            let m = fs::metadata(&root_ssh).unwrap();
            assert_eq!(
                (m.uid(), m.mode() & 0o777),
                (0, 0o755),
                "the host's dir was chowned/chmodded"
            );
            assert_eq!(
                fs::read_to_string(root_ssh.join("authorized_keys")).unwrap(),
                "host\n"
            );
            assert_eq!(
                fs::read_to_string(etc_ssh.join("ssh_host_ed25519_key")).unwrap(),
                "HOST KEY\n"
            );
            assert_eq!(fs::read_dir(&etc_ssh).unwrap().count(), 1);
            assert_eq!(fs::read_to_string(&shadow).unwrap(), "root:*:1::::::\n");
            let m = fs::metadata(&shadow).unwrap();
            assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o644));
        };
        fs::set_permissions(&shadow, fs::Permissions::from_mode(0o644)).unwrap();

        // /home/ubuntu/.ssh -> /root/.ssh: refused, naming the path.
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir_all(upper.path().join("home/ubuntu")).unwrap();
        symlink(&root_ssh, upper.path().join("home/ubuntu/.ssh")).unwrap();
        let err = format!("{:#}", apply(base.path(), upper.path(), &fb).unwrap_err());
        assert!(err.contains("refusing to follow the symlink"), "{err}");
        assert!(
            err.contains(&upper.path().join("home/ubuntu/.ssh").display().to_string()),
            "{err}"
        );
        untouched();

        // /etc/ssh -> the machine's /etc/ssh: refused, its keys neither removed nor replaced.
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir_all(upper.path().join("etc")).unwrap();
        symlink(&etc_ssh, upper.path().join("etc/ssh")).unwrap();
        let err = format!("{:#}", apply(base.path(), upper.path(), &fb).unwrap_err());
        assert!(
            err.contains(&upper.path().join("etc/ssh").display().to_string()),
            "{err}"
        );
        untouched();

        // Symlinks at files' names (/etc/hostname -> /etc/shadow, authorized_keys,
        // a host key): replaced by the files, the targets untouched.
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir_all(upper.path().join("etc/ssh")).unwrap();
        fs::create_dir_all(upper.path().join("home/ubuntu/.ssh")).unwrap();
        symlink(&shadow, upper.path().join("etc/hostname")).unwrap();
        symlink(
            &shadow,
            upper.path().join("etc/ssh/ssh_host_ed25519_key.pub"),
        )
        .unwrap();
        symlink(
            root_ssh.join("authorized_keys"),
            upper.path().join("home/ubuntu/.ssh/authorized_keys"),
        )
        .unwrap();
        fs::create_dir_all(upper.path().join("var/lib/cloud/data")).unwrap();
        symlink(&shadow, upper.path().join("var/lib/cloud/data/instance-id")).unwrap();
        assert!(apply(base.path(), upper.path(), &fb).unwrap());
        untouched();
        let u = upper.path();
        for (rel, text) in [
            ("etc/hostname", "ip-10-0-1-10\n"),
            ("etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 PUB host\n"),
            ("home/ubuntu/.ssh/authorized_keys", "ssh-ed25519 KP k\n"),
            ("var/lib/cloud/data/instance-id", "i-1\n"),
        ] {
            assert!(
                fs::symlink_metadata(u.join(rel)).unwrap().is_file(),
                "{rel}"
            );
            assert_eq!(fs::read_to_string(u.join(rel)).unwrap(), text, "{rel}");
        }
        let ak = fs::metadata(u.join("home/ubuntu/.ssh/authorized_keys")).unwrap();
        assert_eq!((ak.uid(), ak.mode() & 0o777), (1000, 0o600));
        assert!(initialised(u, "i-1"));
    }

    #[test]
    fn generated_host_keys_land_in_the_volume() {
        let base = test_base();
        let upper = tempfile::tempdir().unwrap();
        let fb = FirstBoot {
            instance_id: "i-2",
            private_ip: "10.0.1.11",
            key_pair_public: None,
            cloud_config: None,
        };
        assert!(apply(base.path(), upper.path(), &fb).unwrap());
        for kind in ["ed25519", "ecdsa"] {
            let private = upper.path().join(format!("etc/ssh/ssh_host_{kind}_key"));
            let public = upper
                .path()
                .join(format!("etc/ssh/ssh_host_{kind}_key.pub"));
            assert_eq!(fs::metadata(&private).unwrap().mode() & 0o777, 0o600);
            assert_eq!(fs::metadata(&public).unwrap().mode() & 0o777, 0o644);
            assert!(
                fs::read_to_string(&public)
                    .unwrap()
                    .ends_with(" root@ip-10-0-1-11\n")
            );
            assert!(
                fs::read_to_string(&private)
                    .unwrap()
                    .contains("PRIVATE KEY")
            );
        }
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
