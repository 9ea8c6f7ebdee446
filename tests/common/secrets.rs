//! The one secrets scanner of the end-to-end tests: every password (each ACL user's, and the
//! replication password where the nodes have one, also base64-encoded) and the whole body of
//! every private key (the cluster CA's, the SSH key's, each node's TLS key) looked for in what a
//! test collects: redisctl's output (every `Cluster::run`, `ok` and `ok_within` is scanned on
//! its own), saved plans, node journals and process listings.
//!
//! A key is found in any layout: its base64 body is looked for whole with all whitespace (and
//! escaped `\n`, as in JSON) taken out of both sides, and each of its 64-character PEM lines but
//! the first (which every key of its type shares) on its own, so a key printed re-wrapped, as a
//! JSON string, or in part is found too. Lines that also occur in the key's public counterpart
//! (its certificate, its `.pub` file) are not secret and not looked for.
//!
//! A finding is reported by the secret's label and where it was (which output, line and
//! offset), never by its value.

#![allow(dead_code)]

use std::path::Path;

use base64::Engine as _;

/// What one secret is looked for as.
#[derive(Debug, Clone)]
struct Secret {
    label: String,
    /// Looked for in the text as it is.
    exact: Vec<String>,
    /// Looked for in the text with whitespace and escaped line breaks taken out.
    squeezed: Vec<String>,
}

/// The secrets a test knows of, and the scan.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    known: Vec<Secret>,
}

/// `text` without ASCII whitespace and without the escapes `\n`, `\r`, `\t` (a PEM in JSON).
fn squeeze(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == '\\' && matches!(chars.peek(), Some('n' | 'r' | 't')) {
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

/// The base64 body of a PEM (every line between its `-----` lines), line by line.
fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----") && !l.contains(':'))
        .map(String::from)
        .collect()
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// The labels of the secrets known, in order (for a test's own check that it has them all).
    pub fn labels(&self) -> Vec<String> {
        self.known.iter().map(|s| s.label.clone()).collect()
    }

    /// Known once: the same label with other values (a key replaced) is one more secret.
    fn add(&mut self, s: Secret) {
        if !self
            .known
            .iter()
            .any(|k| k.label == s.label && k.exact == s.exact && k.squeezed == s.squeezed)
        {
            self.known.push(s);
        }
    }

    /// A password: looked for as it is and base64-encoded.
    pub fn password(&mut self, label: &str, pw: &str) {
        assert!(!pw.is_empty(), "{label}: an empty password");
        self.add(Secret {
            label: label.to_string(),
            exact: vec![
                pw.to_string(),
                base64::engine::general_purpose::STANDARD.encode(pw),
            ],
            squeezed: Vec::new(),
        });
    }

    /// A private key (PEM), with the text of its public counterparts (certificate, `.pub`), if
    /// any: the whole body, and each body line but the first that is not public. False (and
    /// nothing learnt) when `pem` holds no key body (a test may have emptied or garbled a file).
    pub fn key(&mut self, label: &str, pem: &str, public: &str) -> bool {
        let lines = pem_body_lines(pem);
        if lines.concat().len() < 64 {
            return false;
        }
        let public = squeeze(public);
        let mut squeezed = vec![lines.concat()];
        squeezed.extend(
            lines
                .iter()
                .skip(1)
                .filter(|l| l.len() >= 32 && !public.contains(l.as_str()))
                .cloned(),
        );
        self.add(Secret {
            label: label.to_string(),
            exact: Vec::new(),
            squeezed,
        });
        true
    }

    /// The keys in a state directory, as far as they exist: the CA key (public: `ca.crt`) and
    /// the SSH key (public: `ssh_ed25519.pub`). Known keys stay known when the files go or
    /// change.
    pub fn state_dir(&mut self, dir: &Path) {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        if let Some(k) = read("ca.key") {
            let _ = self.key(
                "the cluster CA key",
                &k,
                &read("ca.crt").unwrap_or_default(),
            );
        }
        // A CA rotation's new CA, and the replication password its end writes down.
        if let Some(k) = read("ca.next.key") {
            let _ = self.key(
                "the new CA key of a rotation",
                &k,
                &read("ca.next.crt").unwrap_or_default(),
            );
        }
        if let Some(pw) = read("replication.secret") {
            self.password("the replication password", pw.trim());
        }
        if let Some(pw) = read("replication.next.secret") {
            self.password("a rotation's new replication password", pw.trim());
        }
        if let Some(k) = read("ssh_ed25519") {
            let _ = self.key(
                "the SSH private key",
                &k,
                &read("ssh_ed25519.pub").unwrap_or_default(),
            );
        }
    }

    /// Where each known secret occurs in `haystack`: `<label> at line L (byte B)`, no value.
    pub fn leaks(&self, haystack: &str) -> Vec<String> {
        let mut found = Vec::new();
        let squeezed = std::cell::OnceCell::new();
        for s in &self.known {
            for n in &s.exact {
                if let Some(at) = haystack.find(n.as_str()) {
                    let line = haystack[..at].matches('\n').count() + 1;
                    found.push(format!("{} at line {line} (byte {at})", s.label));
                    break;
                }
            }
            let sq: &String = squeezed.get_or_init(|| squeeze(haystack));
            let hits = s
                .squeezed
                .iter()
                .filter(|n| sq.contains(n.as_str()))
                .count();
            if hits > 0 {
                found.push(format!(
                    "{} ({hits} of its {} pieces, whitespace ignored)",
                    s.label,
                    s.squeezed.len()
                ));
            }
        }
        found
    }

    /// No known secret in `haystack`; the failure names the secrets and where, never a value.
    pub fn assert_absent(&self, what: &str, haystack: &str) {
        let leaks = self.leaks(haystack);
        assert!(
            leaks.is_empty(),
            "a secret appears in {what}: {}",
            leaks.join("; ")
        );
    }
}

/// What a node holds and shows, gathered over `on_node` (a root shell on `ip`): its TLS key
/// (with its certificate as the public side) and, where it has one, the replication password
/// from `redis-cluster.conf` (`masterauth`: the same on every node, derived from the CA key).
pub fn learn_node(secrets: &mut Secrets, ip: &str, on_node: &dyn Fn(&str, &str) -> String) {
    // Each part between markers: what else the command prints (ssh's own notes) is not read.
    let out = on_node(
        ip,
        "echo @@key@@; cat /etc/redis/tls/redis.key; echo @@cert@@; cat /etc/redis/tls/redis.crt; echo @@auth@@; sed -n \"s/^masterauth //p\" /etc/redis/redis-cluster.conf; echo @@end@@",
    );
    let part = |from: &str, to: &str| -> String {
        let start = out
            .find(from)
            .unwrap_or_else(|| panic!("{ip}: no {from} in what the node printed"))
            + from.len();
        let end = out[start..]
            .find(to)
            .unwrap_or_else(|| panic!("{ip}: no {to} in what the node printed"))
            + start;
        out[start..end].to_string()
    };
    let (key, cert, auth) = (
        part("@@key@@", "@@cert@@"),
        part("@@cert@@", "@@auth@@"),
        part("@@auth@@", "@@end@@"),
    );
    assert!(
        secrets.key(&format!("the TLS key of node {ip}"), &key, &cert),
        "{ip}: the node's TLS key was not read"
    );
    let auth = auth.trim().trim_matches('"');
    if !auth.is_empty() {
        secrets.password("the replication password", auth);
    }
}

/// Every node's journal (all of it, every unit) and its process list (each process's command
/// line from `/proc/*/cmdline`) scanned for every known secret.
pub fn assert_nodes_keep_secrets(
    secrets: &Secrets,
    ips: &[&str],
    on_node: &dyn Fn(&str, &str) -> String,
) {
    for ip in ips {
        let journal = on_node(ip, "journalctl --no-pager -o cat");
        assert!(
            journal.lines().count() > 10,
            "{ip}: the journal was not read: {} lines",
            journal.lines().count()
        );
        secrets.assert_absent(&format!("the journal of node {ip}"), &journal);
        let ps = on_node(
            ip,
            "for f in /proc/[0-9]*/cmdline; do tr \"\\000\" \" \" 2>/dev/null < \"$f\"; echo; done",
        );
        assert!(
            ps.contains("redis-server") && ps.contains("sshd"),
            "{ip}: the process list was not read"
        );
        secrets.assert_absent(&format!("the process list of node {ip}"), &ps);
        eprintln!(
            "figure: node {ip}: {} journal lines and {} command lines scanned for {} secrets",
            journal.lines().count(),
            ps.lines().filter(|l| !l.trim().is_empty()).count(),
            secrets.known.len()
        );
    }
}
