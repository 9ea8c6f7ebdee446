//! An instance's console output as an Ubuntu cloud image leaves it on EC2's serial console
//! (GetConsoleOutput): a few boot lines, then what cloud-init's `keys_to_console` module prints
//! (its helper `write-ssh-key-fingerprints`, piped through `logger --stderr -t ec2`): the host
//! keys' fingerprints as `ssh-keygen -l -f` gives them, each line prefixed `<14>Mon DD HH:MM:SS
//! ec2: `, and the public keys themselves, unprefixed:
//!
//! ```text
//! <14>Jan 15 10:00:00 ec2: #############################################################
//! <14>Jan 15 10:00:00 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
//! <14>Jan 15 10:00:00 ec2: 256 SHA256:… root@ip-10-0-1-10 (ECDSA)
//! <14>Jan 15 10:00:00 ec2: 256 SHA256:… root@ip-10-0-1-10 (ED25519)
//! <14>Jan 15 10:00:00 ec2: -----END SSH HOST KEY FINGERPRINTS-----
//! <14>Jan 15 10:00:00 ec2: #############################################################
//! -----BEGIN SSH HOST KEY KEYS-----
//! ecdsa-sha2-nistp256 AAAA… root@ip-10-0-1-10
//! ssh-ed25519 AAAA… root@ip-10-0-1-10
//! -----END SSH HOST KEY KEYS-----
//! ```
//!
//! The keys are the ones on the instance's root volume when its host boots (after the sandbox's
//! cloud-init wrote them, [`crate::cloudinit`]): what its sshd serves. Pure, apart from reading
//! the key files ([`host_keys`]).

use anyhow::{Context, Result, bail};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::SystemTime;

/// One OpenSSH public key, as a `.pub` file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key type name: `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, …
    pub kind: String,
    /// The decoded key blob (what the fingerprint hashes).
    pub blob: Vec<u8>,
    pub comment: Option<String>,
    /// The line as the file has it (trimmed).
    pub line: String,
}

impl PublicKey {
    /// Parses `type base64 [comment]`.
    pub fn parse(line: &str) -> Result<PublicKey> {
        let line = line.trim();
        let mut parts = line.splitn(3, char::is_whitespace);
        let kind = parts.next().filter(|s| !s.is_empty());
        let data = parts.next().map(str::trim).filter(|s| !s.is_empty());
        let (Some(kind), Some(data)) = (kind, data) else {
            bail!("not an OpenSSH public key: {line:?}");
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(data)
            .with_context(|| format!("the {kind} public key is not base64"))?;
        let comment = parts
            .next()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        Ok(PublicKey {
            kind: kind.to_string(),
            blob,
            comment,
            line: line.to_string(),
        })
    }

    /// `SHA256:` and the base64 (no padding) of the blob's SHA-256, as `ssh-keygen -l` prints.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(&self.blob);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }

    /// The key size `ssh-keygen -l` prints (256 for ed25519, the curve's for ecdsa, the
    /// modulus's bits for rsa, p's for dsa).
    pub fn bits(&self) -> Result<u32> {
        let fields = ssh_strings(&self.blob)?;
        let name = fields
            .first()
            .map(|f| String::from_utf8_lossy(f).into_owned());
        if name.as_deref() != Some(self.kind.as_str()) {
            bail!("the {} key's blob names another type", self.kind);
        }
        Ok(match self.kind.as_str() {
            "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => 256,
            k if k.starts_with("ecdsa-sha2-") || k.starts_with("sk-ecdsa-sha2-") => {
                match fields
                    .get(1)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                {
                    Some(c) if c == "nistp256" => 256,
                    Some(c) if c == "nistp384" => 384,
                    Some(c) if c == "nistp521" => 521,
                    other => bail!("unknown ECDSA curve {other:?}"),
                }
            }
            // ssh-rsa: e, n; ssh-dss: p, q, g, y.
            "ssh-rsa" => mpint_bits(fields.get(2).context("RSA key without a modulus")?)?,
            "ssh-dss" => mpint_bits(fields.get(1).context("DSA key without p")?)?,
            other => bail!("unknown key type {other}"),
        })
    }

    /// The type as `ssh-keygen -l` names it in parentheses.
    pub fn label(&self) -> &'static str {
        match self.kind.as_str() {
            "ssh-ed25519" => "ED25519",
            "sk-ssh-ed25519@openssh.com" => "ED25519-SK",
            "ssh-rsa" => "RSA",
            "ssh-dss" => "DSA",
            k if k.starts_with("sk-ecdsa-sha2-") => "ECDSA-SK",
            k if k.starts_with("ecdsa-sha2-") => "ECDSA",
            _ => "UNKNOWN",
        }
    }

    /// The line `ssh-keygen -l -f key.pub` prints: `256 SHA256:… root@host (ED25519)`.
    pub fn fingerprint_line(&self) -> Result<String> {
        Ok(format!(
            "{} {} {} ({})",
            self.bits()?,
            self.fingerprint(),
            self.comment.as_deref().unwrap_or("no comment"),
            self.label()
        ))
    }
}

/// The length-prefixed strings of an SSH wire-format blob.
fn ssh_strings(blob: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = blob;
    while !rest.is_empty() {
        if rest.len() < 4 {
            bail!("truncated key blob");
        }
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        if rest.len() < n {
            bail!("truncated key blob");
        }
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    Ok(out)
}

fn mpint_bits(m: &[u8]) -> Result<u32> {
    let Some(first) = m.iter().position(|b| *b != 0) else {
        bail!("zero-length integer in a key blob");
    };
    let len = (m.len() - first) as u32;
    Ok(len * 8 - m[first].leading_zeros())
}

/// The host keys `/etc/ssh/ssh_host_*key.pub` of a root file system seen through the overlay
/// (`upper` over `base`; a whiteout in `upper` hides the base's file), in the order of the
/// shell's glob (by name), as cloud-init's helper reads them.
///
/// The upper layer is the guest's: it is read without following a symlink (an `/etc/ssh` that
/// is a symlink is an error naming it), only from regular files of at most 64 KiB, so a guest
/// cannot make this read the machine's files or block on a FIFO.
pub fn host_keys(base: &Path, upper: &Path) -> Result<Vec<PublicKey>> {
    enum From {
        Base(std::path::PathBuf),
        Upper,
        Hidden,
    }
    let wanted = |name: &str| name.starts_with("ssh_host_") && name.ends_with("key.pub");
    let mut names = std::collections::BTreeMap::new();
    if let Ok(entries) = fs::read_dir(base.join("etc/ssh")) {
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if wanted(&name) {
                names.insert(name, From::Base(e.path()));
            }
        }
    }
    let upper_ssh = crate::safefs::Dir::open(upper)?.subdir("etc/ssh", None)?;
    if let Some(dir) = &upper_ssh {
        for (name, kind) in dir.entries()? {
            if wanted(&name) {
                // The upper layer's entry wins; anything but a regular file there (an overlay
                // whiteout, a symlink) is not read.
                let from = if kind == libc::S_IFREG {
                    From::Upper
                } else {
                    From::Hidden
                };
                names.insert(name, from);
            }
        }
    }
    let mut keys = Vec::new();
    for (name, from) in names {
        let text = match from {
            From::Hidden => continue,
            From::Base(path) => {
                let meta = fs::symlink_metadata(&path)?;
                if meta.file_type().is_char_device() || !meta.is_file() {
                    continue;
                }
                fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?
            }
            From::Upper => {
                let Some(dir) = &upper_ssh else { continue };
                let Some(bytes) = dir.read_file(&name, 64 * 1024)? else {
                    continue;
                };
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
            continue;
        };
        keys.push(PublicKey::parse(line).with_context(|| format!("/etc/ssh/{name}"))?);
    }
    Ok(keys)
}

/// A wall-clock time broken down (UTC): year, month 1–12, day, hour, minute, second.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// `<14>Jan  5 10:00:00 ec2: ` — logger's header (user.info, RFC 3164 time, tag `ec2`).
fn logger_prefix(t: SystemTime) -> String {
    let (_, mo, d, h, mi, s) = civil(t);
    format!(
        "<14>{} {d:>2} {h:02}:{mi:02}:{s:02} ec2: ",
        MONTHS[(mo - 1) as usize]
    )
}

/// `Wed, 15 Jan 2025 10:00:00 +0000`, as cloud-init writes times.
fn rfc2822(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    let days = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 86_400;
    format!(
        "{}, {d:02} {} {y} {h:02}:{mi:02}:{s:02} +0000",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(mo - 1) as usize]
    )
}

/// What cloud-init's `keys_to_console` prints (`write-ssh-key-fingerprints`, default
/// blacklists: every fingerprint, every key but `ssh-dss`), at time `at`.
pub fn keys_to_console(keys: &[PublicKey], at: SystemTime) -> Result<String> {
    let p = logger_prefix(at);
    let rule = "#".repeat(61);
    let mut out = format!("{p}\n{p}{rule}\n{p}-----BEGIN SSH HOST KEY FINGERPRINTS-----\n");
    for k in keys {
        out.push_str(&format!("{p}{}\n", k.fingerprint_line()?));
    }
    out.push_str(&format!(
        "{p}-----END SSH HOST KEY FINGERPRINTS-----\n{p}{rule}\n"
    ));
    out.push_str("-----BEGIN SSH HOST KEY KEYS-----\n");
    for k in keys.iter().filter(|k| k.kind != "ssh-dss") {
        out.push_str(&k.line);
        out.push('\n');
    }
    out.push_str("-----END SSH HOST KEY KEYS-----\n");
    Ok(out)
}

/// The console of one boot: a few kernel and systemd lines, cloud-init's, its key block, the
/// login prompt. `kernel` is the release the host runs (the machine's).
pub fn boot_output(
    hostname: &str,
    kernel: &str,
    keys: &[PublicKey],
    at: SystemTime,
) -> Result<String> {
    let when = rfc2822(at);
    let ci = "Cloud-init v. 24.4 (played by redisctl-sandbox)";
    let mut out = String::new();
    out.push_str(&format!("[    0.000000] Linux version {kernel}\n"));
    out.push_str(
        "[    0.000000] Command line: BOOT_IMAGE=/vmlinuz root=LABEL=cloudimg-rootfs ro console=tty1 console=ttyS0\n",
    );
    out.push_str("[    1.101342] systemd[1]: systemd running in system mode\n");
    out.push_str(&format!(
        "[    1.214556] systemd[1]: Hostname set to <{hostname}>.\n"
    ));
    out.push_str(&format!(
        "[    4.205110] cloud-init[412]: {ci} running 'init' at {when}. Up 4.20 seconds.\n"
    ));
    out.push_str(&format!(
        "[    4.731902] cloud-init[412]: Generating public/private host keys for {hostname}.\n"
    ));
    out.push_str(&format!(
        "[    6.514003] cloud-init[640]: {ci} running 'modules:config' at {when}. Up 6.51 seconds.\n"
    ));
    out.push_str(&keys_to_console(keys, at)?);
    out.push_str(&format!(
        "[    7.902118] cloud-init[702]: {ci} finished at {when}. Datasource DataSourceEc2Local.  Up 7.90 seconds\n"
    ));
    out.push_str(&format!(
        "\nDebian GNU/Linux 12 {hostname} ttyS0\n\n{hostname} login: \n"
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    // A fixed key (its fingerprint line in `fixed_fingerprint`).
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@ip-10-0-1-10";

    #[test]
    fn parses_a_public_key() {
        let k = PublicKey::parse(ED25519).unwrap();
        assert_eq!(k.kind, "ssh-ed25519");
        assert_eq!(k.comment.as_deref(), Some("root@ip-10-0-1-10"));
        assert_eq!(k.bits().unwrap(), 256);
        assert_eq!(k.label(), "ED25519");
        let bare = PublicKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
        )
        .unwrap();
        assert_eq!(bare.comment, None);
        assert!(
            bare.fingerprint_line()
                .unwrap()
                .contains(" no comment (ED25519)")
        );
        assert!(PublicKey::parse("ssh-ed25519").is_err());
        assert!(PublicKey::parse("ssh-ed25519 !!!").is_err());
    }

    /// The fingerprint lines equal `ssh-keygen -l -f` for keys of every type it makes here.
    #[test]
    fn fingerprint_lines_match_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, extra) in [
            ("ed25519", vec![]),
            ("ecdsa", vec![]),
            ("ecdsa", vec!["-b", "384"]),
            ("ecdsa", vec!["-b", "521"]),
            ("rsa", vec!["-b", "3072"]),
            ("rsa", vec!["-b", "1025"]),
        ] {
            let path = dir.path().join(format!("k-{kind}-{}", extra.join("")));
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C", "root@ip-10-0-1-10"])
                .args(&extra)
                .arg("-f")
                .arg(&path)
                .status()
                .unwrap();
            assert!(st.success());
            let pubfile = path.with_extension("pub");
            let want = Command::new("ssh-keygen")
                .arg("-l")
                .arg("-f")
                .arg(&pubfile)
                .output()
                .unwrap();
            assert!(want.status.success());
            let want = String::from_utf8(want.stdout).unwrap();
            let key = PublicKey::parse(&fs::read_to_string(&pubfile).unwrap()).unwrap();
            assert_eq!(
                key.fingerprint_line().unwrap(),
                want.trim(),
                "{kind} {extra:?}"
            );
        }
    }

    #[test]
    fn fixed_fingerprint() {
        // `echo "$ED25519" | ssh-keygen -lf -` (OpenSSH 9.2p1).
        let k = PublicKey::parse(ED25519).unwrap();
        assert_eq!(
            k.fingerprint_line().unwrap(),
            "256 SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU root@ip-10-0-1-10 (ED25519)"
        );
    }

    #[test]
    fn times_as_logger_and_cloud_init_write_them() {
        // 2025-01-05T09:08:07Z, a Sunday.
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_736_068_087);
        assert_eq!(logger_prefix(t), "<14>Jan  5 09:08:07 ec2: ");
        assert_eq!(rfc2822(t), "Sun, 05 Jan 2025 09:08:07 +0000");
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_736_935_200); // 2025-01-15T10:00:00Z
        assert_eq!(logger_prefix(t), "<14>Jan 15 10:00:00 ec2: ");
        assert_eq!(rfc2822(t), "Wed, 15 Jan 2025 10:00:00 +0000");
    }

    #[test]
    fn the_key_block_as_cloud_init_prints_it() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_736_935_200);
        let ed = PublicKey::parse(ED25519).unwrap();
        let fp = ed.fingerprint_line().unwrap();
        let dss = PublicKey {
            kind: "ssh-dss".into(),
            blob: vec![],
            comment: None,
            line: "ssh-dss AAAA".into(),
        };
        assert!(
            keys_to_console(&[ed.clone(), dss], t).is_err(),
            "an unreadable key is an error"
        );
        let text = keys_to_console(&[ed], t).unwrap();
        let p = "<14>Jan 15 10:00:00 ec2: ";
        let rule = "#".repeat(61);
        assert_eq!(
            text,
            format!(
                "{p}\n{p}{rule}\n{p}-----BEGIN SSH HOST KEY FINGERPRINTS-----\n{p}{fp}\n{p}-----END SSH HOST KEY FINGERPRINTS-----\n{p}{rule}\n-----BEGIN SSH HOST KEY KEYS-----\n{ED25519}\n-----END SSH HOST KEY KEYS-----\n"
            )
        );
        let boot = boot_output(
            "ip-10-0-1-10",
            "6.1.0-28-amd64",
            &[PublicKey::parse(ED25519).unwrap()],
            t,
        )
        .unwrap();
        assert!(boot.starts_with("[    0.000000] Linux version 6.1.0-28-amd64\n"));
        assert!(boot.contains(&text));
        assert!(boot.contains("Hostname set to <ip-10-0-1-10>."));
        assert!(boot.ends_with("ip-10-0-1-10 login: \n"));
    }

    #[test]
    fn host_keys_through_the_overlay_in_glob_order() {
        let base = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir_all(base.path().join("etc/ssh")).unwrap();
        fs::create_dir_all(upper.path().join("etc/ssh")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut pubs = Vec::new();
        for kind in ["ed25519", "ecdsa", "rsa"] {
            let p = dir.path().join(kind);
            assert!(
                Command::new("ssh-keygen")
                    .args([
                        "-q",
                        "-t",
                        kind,
                        "-N",
                        "",
                        "-C",
                        &format!("root@{kind}"),
                        "-f"
                    ])
                    .arg(&p)
                    .status()
                    .unwrap()
                    .success()
            );
            pubs.push(fs::read_to_string(p.with_extension("pub")).unwrap());
        }
        // The base's rsa key, hidden by the upper layer; the base's ecdsa key, shown.
        fs::write(base.path().join("etc/ssh/ssh_host_rsa_key.pub"), &pubs[2]).unwrap();
        fs::write(base.path().join("etc/ssh/ssh_host_ecdsa_key.pub"), &pubs[1]).unwrap();
        fs::write(
            upper.path().join("etc/ssh/ssh_host_ed25519_key.pub"),
            &pubs[0],
        )
        .unwrap();
        fs::write(upper.path().join("etc/ssh/ssh_host_ed25519_key"), "private").unwrap();
        fs::write(upper.path().join("etc/ssh/sshd_config"), "x").unwrap();
        let keys = host_keys(base.path(), upper.path()).unwrap();
        let kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(kinds, ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]);
        // The guest's /etc/ssh as a symlink to a directory of the machine: not followed.
        let planted = tempfile::tempdir().unwrap();
        fs::create_dir(planted.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("machine-ssh"),
            planted.path().join("etc/ssh"),
        )
        .unwrap();
        fs::create_dir(dir.path().join("machine-ssh")).unwrap();
        fs::write(
            dir.path().join("machine-ssh/ssh_host_rsa_key.pub"),
            &pubs[2],
        )
        .unwrap();
        let err = format!("{:#}", host_keys(base.path(), planted.path()).unwrap_err());
        assert!(err.contains("refusing to follow the symlink"), "{err}");
        // A whiteout (0/0 character device) in the upper layer hides the base's file; making
        // one needs root, which the sandbox's tests have.
        let wh = upper.path().join("etc/ssh/ssh_host_rsa_key.pub");
        let c = std::ffi::CString::new(wh.to_string_lossy().as_bytes()).unwrap();
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) } == 0 {
            let keys = host_keys(base.path(), upper.path()).unwrap();
            let kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
            assert_eq!(kinds, ["ecdsa-sha2-nistp256", "ssh-ed25519"]);
        }
    }
}
