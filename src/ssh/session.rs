//! One russh connection per node, reused for every command of that node (the commands are in
//! `remote.rs`).
//!
//! - Host keys: [`HostKeyPolicy::Pinned`] accepts exactly the pinned key (from the state
//!   directory's known_hosts); [`HostKeyPolicy::Console`] accepts a key whose fingerprint the
//!   instance printed on its console at first boot, and returns it for the caller to pin. There
//!   is no accept-anything mode, and a tag (which anyone in the account can write) is never a
//!   pin.
//! - Errors are classified for the caller: nobody answering yet (sshd booting) is waited for,
//!   a login refused while the node boots too, a changed host key never.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{Disconnect, Preferred};

use super::known_hosts::{fingerprint_of, openssh, parse};

/// How long an authentication refusal that gives no reason is retried: on EC2 cloud-init may
/// write `authorized_keys` after sshd has started (see [`Session::wait_and_connect`]).
pub const BOOT_LOGIN_GRACE: Duration = Duration::from_secs(15);

/// Where and who: one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: String,
    pub instance_id: String,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// One connection attempt (TCP, key exchange, authentication).
    pub connect: Duration,
    /// How long to wait for sshd after an instance boots.
    pub ready: Duration,
    /// One command.
    pub command: Duration,
}

impl From<&crate::spec::Ssh> for Timeouts {
    fn from(s: &crate::spec::Ssh) -> Timeouts {
        Timeouts {
            connect: s.connect_timeout,
            ready: s.ready_timeout,
            command: s.command_timeout,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Must present exactly this key (from KnownHosts) or a key of this fingerprint. When
    /// both are given, both must match.
    Pinned {
        key_openssh: Option<String>,
        fingerprint: Option<String>,
    },
    /// First contact: a key whose fingerprint is one of these, which the instance's console
    /// output listed (cloud-init prints the host keys at first boot to the serial console,
    /// which only EC2 and the instance itself write; `GetConsoleOutput`). The caller pins the
    /// key presented.
    Console { fingerprints: Vec<String> },
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "host key of node {node} ({instance_id}) changed: expected {expected_fp}, got {got_fp}; if the instance was rebuilt on purpose, remove its line from {} and the redisctl:host-key tag; otherwise someone may be intercepting the connection",
        known_hosts.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "known_hosts in the state directory".into())
    )]
    HostKeyChanged {
        node: String,
        instance_id: String,
        expected_fp: String,
        got_fp: String,
        /// Filled in by [`super::KnownHosts::annotate`].
        known_hosts: Option<PathBuf>,
    },
    #[error(
        "node {node} ({instance_id}) has no host key pinned in this state directory (a redisctl:host-key tag is not a pin; only apply pins, at first contact, a key the instance's console output lists); run `redisctl apply` first, or use the state directory that pinned it"
    )]
    NothingPinned { node: String, instance_id: String },
    #[error(
        "node {node} is unreachable over SSH at {addr} (waited {:.1}s); check that the instance is running and port 22 is open from here",
        waited.as_secs_f64()
    )]
    Unreachable {
        node: String,
        addr: SocketAddr,
        waited: Duration,
        #[source]
        source: Box<russh::Error>,
    },
    #[error(
        "SSH authentication as {user} on node {node} failed{}",
        match server_said {
            Some(m) if is_booting(m) => format!(" (the server said: {m:?}); the node still refused logins as booting when the wait for it ended (ssh.ready_timeout_secs). If it stays so, its systemd-user-sessions.service failed and left /run/nologin: reboot the instance, then run the command again"),
            Some(m) => format!(" (the server said: {m:?}); the node refuses logins for that reason: fix it on the node, then run the command again"),
            None => "; check that the instance's key pair matches the spec's private key".into(),
        }
    )]
    AuthFailed {
        node: String,
        user: String,
        /// What sshd told the client before refusing (a banner, e.g. pam_nologin's "System is
        /// booting up…"): a key that was refused for a reason other than itself.
        server_said: Option<String>,
    },
    #[error("{what} on node {node} timed out after {}s", after.as_secs())]
    Timeout {
        node: String,
        what: String,
        after: Duration,
    },
    #[error("{what} on node {node} failed with exit status {status}: {stderr_tail}")]
    Command {
        node: String,
        what: String,
        status: u32,
        stderr_tail: String,
    },
    #[error(
        "SSH connection to node {node} dropped during {what}; safe to retry an idempotent step"
    )]
    Dropped {
        node: String,
        what: String,
        #[source]
        source: Box<russh::Error>,
    },
    #[error("SSH protocol error with node {node} during {what}")]
    Protocol {
        node: String,
        what: String,
        #[source]
        source: Box<russh::Error>,
    },
    #[error("cannot read or write the pinned host keys {}", path.display())]
    KnownHosts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not an OpenSSH public key: {detail}")]
    BadKey { detail: String },
}

impl SshError {
    /// A dropped connection or reset: an idempotent step is safe to retry on a new connection.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SshError::Dropped { .. } | SshError::Unreachable { .. }
        )
    }
}

/// The client-side handler: checks the server's key against the policy and records it.
pub(super) struct Client {
    policy: HostKeyPolicy,
    seen: Arc<Mutex<Option<PublicKey>>>,
    rejected: Arc<Mutex<bool>>,
    banner: Arc<Mutex<String>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.banner.lock().unwrap().push_str(banner);
        Ok(())
    }

    async fn check_server_key(
        &mut self,
        server: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = server else {
            // Only plain keys are asked for; a certificate is not what was pinned.
            *self.rejected.lock().unwrap() = true;
            return Ok(false);
        };
        *self.seen.lock().unwrap() = Some(key.clone());
        let ok = match &self.policy {
            HostKeyPolicy::Console { fingerprints } => {
                let fp = fingerprint_of(key);
                fingerprints.iter().any(|f| f.trim() == fp)
            }
            HostKeyPolicy::Pinned {
                key_openssh,
                fingerprint,
            } => {
                let key_ok = key_openssh
                    .as_deref()
                    .map(|k| parse(k).is_ok_and(|p| p.key_data() == key.key_data()));
                let fp_ok = fingerprint
                    .as_deref()
                    .map(|f| f.trim() == fingerprint_of(key));
                match (key_ok, fp_ok) {
                    (None, None) => false,
                    (a, b) => a.unwrap_or(true) && b.unwrap_or(true),
                }
            }
        };
        if !ok {
            *self.rejected.lock().unwrap() = true;
        }
        Ok(ok)
    }
}

pub(super) struct Inner {
    pub(super) handle: Handle<Client>,
    pub(super) node: String,
    pub(super) command_timeout: Duration,
}

/// One authenticated connection to a node; cheap to clone (an `Arc` inside), and several
/// commands may run on it at once (one channel each).
#[derive(Clone)]
pub struct Session {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("node", &self.inner.node)
            .finish()
    }
}

/// Host key algorithms we offer: ed25519 and ECDSA first, RSA only with SHA-2; a pinned key's
/// own algorithm first of all, so that the server shows the key we pinned.
fn host_key_algorithms(policy: &HostKeyPolicy) -> Vec<Algorithm> {
    let mut algs: Vec<Algorithm> = Preferred::DEFAULT
        .key
        .iter()
        .filter(|a| !matches!(a, Algorithm::Rsa { hash: None }))
        .cloned()
        .collect();
    if let HostKeyPolicy::Pinned {
        key_openssh: Some(k),
        ..
    } = policy
        && let Ok(k) = parse(k)
    {
        let alg = k.algorithm();
        if let Some(i) = algs.iter().position(|a| *a == alg) {
            let a = algs.remove(i);
            algs.insert(0, a);
        }
    }
    algs
}

/// Whether sshd's message before a refusal is pam_nologin's while systemd boots
/// (`/run/nologin`, written by systemd-tmpfiles and removed by systemd-user-sessions).
fn is_booting(server_said: &str) -> bool {
    server_said.contains("System is booting up")
}

/// Errors that mean "nobody answered yet" (sshd still booting, host down, reset).
fn is_unreachable(e: &russh::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        russh::Error::IO(io) => matches!(
            io.kind(),
            K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::TimedOut
                | K::UnexpectedEof
                | K::BrokenPipe
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::NotConnected
                | K::AddrNotAvailable
        ),
        russh::Error::Disconnect
        | russh::Error::HUP
        | russh::Error::ConnectionTimeout
        | russh::Error::Elapsed(_)
        | russh::Error::SendError
        | russh::Error::RecvError => true,
        _ => false,
    }
}

/// Errors that mean an established connection went away.
pub(super) fn is_dropped(e: &russh::Error) -> bool {
    is_unreachable(e)
        || matches!(
            e,
            russh::Error::KeepaliveTimeout | russh::Error::InactivityTimeout
        )
}

impl Session {
    /// One attempt, bounded by `t.connect`. Returns the session and the server's host key
    /// (OpenSSH text, no comment).
    pub async fn connect(
        target: &Target,
        user: &str,
        key: &PrivateKey,
        policy: &HostKeyPolicy,
        t: &Timeouts,
    ) -> Result<(Session, String), SshError> {
        Self::attempt(target, user, key, policy, t, t.connect).await
    }

    async fn attempt(
        target: &Target,
        user: &str,
        key: &PrivateKey,
        policy: &HostKeyPolicy,
        t: &Timeouts,
        bound: Duration,
    ) -> Result<(Session, String), SshError> {
        if let HostKeyPolicy::Pinned {
            key_openssh: None,
            fingerprint: None,
        } = policy
        {
            return Err(SshError::NothingPinned {
                node: target.node.clone(),
                instance_id: target.instance_id.clone(),
            });
        }
        let started = Instant::now();
        let config = Arc::new(client::Config {
            preferred: Preferred {
                key: host_key_algorithms(policy).into(),
                ..Preferred::DEFAULT
            },
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 4,
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        });
        let seen = Arc::new(Mutex::new(None));
        let rejected = Arc::new(Mutex::new(false));
        let banner = Arc::new(Mutex::new(String::new()));
        let handler = Client {
            policy: policy.clone(),
            seen: seen.clone(),
            rejected: rejected.clone(),
            banner: banner.clone(),
        };
        tracing::debug!(node = %target.node, addr = %target.addr, "ssh connect");
        let node = &target.node;
        let unreachable = |source| SshError::Unreachable {
            node: node.clone(),
            addr: target.addr,
            waited: started.elapsed(),
            source: Box::new(source),
        };
        let handshake = async {
            let mut handle = client::connect(config, target.addr, handler).await?;
            let hash = handle.best_supported_rsa_hash().await?.flatten();
            let auth = handle
                .authenticate_publickey(
                    user,
                    PrivateKeyWithHashAlg::new(Arc::new(key.clone()), hash),
                )
                .await?;
            Ok::<_, russh::Error>((handle, auth.success()))
        };
        let (handle, authed) = match tokio::time::timeout(bound, handshake).await {
            Err(_) => return Err(unreachable(russh::Error::ConnectionTimeout)),
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                if *rejected.lock().unwrap() {
                    let got = seen.lock().unwrap().clone();
                    return Err(SshError::HostKeyChanged {
                        node: node.clone(),
                        instance_id: target.instance_id.clone(),
                        expected_fp: expected_fingerprint(policy),
                        got_fp: got
                            .map(|k| fingerprint_of(&k))
                            .unwrap_or_else(|| "a certificate".into()),
                        known_hosts: None,
                    });
                }
                if is_unreachable(&e) {
                    return Err(unreachable(e));
                }
                return Err(SshError::Protocol {
                    node: node.clone(),
                    what: "connect".into(),
                    source: Box::new(e),
                });
            }
        };
        if !authed {
            let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            let said = banner.lock().unwrap().trim().to_string();
            return Err(SshError::AuthFailed {
                node: node.clone(),
                user: user.into(),
                server_said: (!said.is_empty()).then_some(said),
            });
        }
        let host_key = seen
            .lock()
            .unwrap()
            .as_ref()
            .map(openssh)
            .expect("the host key was checked before authentication");
        tracing::debug!(node = %target.node, fingerprint = %super::fingerprint(&host_key), "ssh connected");
        Ok((
            Session {
                inner: Arc::new(Inner {
                    handle,
                    node: node.clone(),
                    command_timeout: t.command,
                }),
            },
            host_key,
        ))
    }

    /// Retry [`Session::connect`] until sshd answers (refused, timeout, reset while booting),
    /// bounded by `t.ready`. A host-key mismatch is not retried. A login refused because the
    /// node is still booting (pam_nologin says so) is waited for within `t.ready`; any other
    /// authentication refusal only within [`BOOT_LOGIN_GRACE`] of the first one.
    pub async fn wait_and_connect(
        target: &Target,
        user: &str,
        key: &PrivateKey,
        policy: &HostKeyPolicy,
        t: &Timeouts,
    ) -> Result<(Session, String), SshError> {
        let started = Instant::now();
        let mut refused_since: Option<Instant> = None;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let left = t.ready.saturating_sub(started.elapsed());
            let bound = t.connect.min(left.max(Duration::from_millis(100)));
            match Self::attempt(target, user, key, policy, t, bound).await {
                Err(SshError::Unreachable { source, .. }) => {
                    let waited = started.elapsed();
                    if waited + Duration::from_millis(500) >= t.ready {
                        tracing::debug!(node = %target.node, attempts, "ssh not ready, giving up");
                        return Err(SshError::Unreachable {
                            node: target.node.clone(),
                            addr: target.addr,
                            waited,
                            source,
                        });
                    }
                    tracing::debug!(node = %target.node, attempts, error = %source, "ssh not ready yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                // While a systemd host boots, /run/nologin ("System is booting up") exists until
                // systemd-user-sessions.service removes it, and sshd (started before that) refuses
                // every user but root through pam_nologin, telling the client why: that refusal
                // lasts as long as the boot does, so it is waited for like sshd itself.
                Err(SshError::AuthFailed {
                    server_said: Some(m),
                    ..
                }) if is_booting(&m) && started.elapsed() + Duration::from_secs(1) < t.ready => {
                    tracing::debug!(node = %target.node, attempts, server_said = %m, "login refused while the node boots (pam_nologin)");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                // A refusal without a reason is a wrong key, or a key not yet in place (cloud-init
                // writes authorized_keys while sshd already runs): retried for a short grace.
                Err(SshError::AuthFailed { .. })
                    if refused_since.get_or_insert_with(Instant::now).elapsed()
                        + Duration::from_secs(1)
                        < BOOT_LOGIN_GRACE
                        && started.elapsed() + Duration::from_secs(1) < t.ready =>
                {
                    tracing::debug!(node = %target.node, attempts, "authentication refused; the key may not be in place yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => return other,
            }
        }
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Whether the connection has gone away (then reconnect to go on).
    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    /// Say goodbye to the server (best effort).
    pub async fn close(self) {
        let _ = self
            .inner
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

fn expected_fingerprint(policy: &HostKeyPolicy) -> String {
    match policy {
        HostKeyPolicy::Pinned {
            key_openssh: Some(k),
            ..
        } => super::fingerprint(k),
        HostKeyPolicy::Pinned {
            fingerprint: Some(f),
            ..
        } => f.clone(),
        HostKeyPolicy::Console { fingerprints } => {
            format!("one of {} (the console output)", fingerprints.join(", "))
        }
        _ => "(nothing pinned)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_algorithm_goes_first_and_sha1_rsa_is_not_offered() {
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
        let algs = host_key_algorithms(&HostKeyPolicy::Pinned {
            key_openssh: Some(ecdsa.into()),
            fingerprint: None,
        });
        assert!(matches!(algs[0], Algorithm::Ecdsa { .. }), "{algs:?}");
        assert!(!algs.contains(&Algorithm::Rsa { hash: None }));
        let algs = host_key_algorithms(&HostKeyPolicy::Console {
            fingerprints: vec![],
        });
        assert_eq!(algs[0], Algorithm::Ed25519);
    }
}
