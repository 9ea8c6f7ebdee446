//! Reaching a node: its instance found by tags (one DescribeInstances for all nodes, cached),
//! its address chosen by `ssh.via` / `REDISCTL_SSH_VIA`, and its host key checked: against the
//! state directory's pin, or, for an instance never pinned here, against the host keys its
//! console output lists. Only apply and observation may meet a node never pinned, and they pin
//! what it presents (locally, and as the instance's tag for others to see); verify and
//! `redisctl redis-cli` refuse it.

use std::net::{Ipv4Addr, SocketAddr};

use russh::keys::PrivateKey;

use super::{NodeError, NodeRuntime};
use crate::aws::NodeInstance;
use crate::spec::SshVia;
use crate::ssh::{self, HostKeyPolicy, Session, Target};

/// How [`NodeRuntime::open`] reaches sshd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    /// Wait (bounded by `ssh.ready_timeout_secs`) for a node that may still be booting.
    WaitForSshd,
    /// One bounded attempt: a node that does not answer is reported.
    Once,
}

/// A session opened by [`NodeRuntime::open`].
pub(super) struct Opened {
    pub(super) session: Session,
    /// The host key the node presented (OpenSSH public key).
    pub(super) host_key: String,
    pub(super) instance_id: String,
    /// Nothing was pinned for this instance in the state directory: `host_key` was checked
    /// against the console's list or the plan's key, and the caller pins it.
    pub(super) first_contact: bool,
}

impl NodeRuntime {
    /// The operator's SSH key, read when a connection is made (apply may generate it first).
    fn key(&self) -> Result<PrivateKey, NodeError> {
        ssh::keyfile::load(&self.spec.ssh.private_key).map_err(|e| NodeError::Failed {
            node: "-".into(),
            what: e.to_string(),
        })
    }

    /// One DescribeInstances for every node of the cluster.
    async fn refresh_instances(&self) -> Result<(), NodeError> {
        let found = self
            .aws
            .node_instances(&self.spec.cluster.name)
            .await
            .map_err(NodeError::Aws)?;
        *self.instances.lock().await = self.claims(found);
        Ok(())
    }

    /// The instances that claim each node of the spec: only those at the node's private IP
    /// (an instance is a node only in the cluster's subnet and security group, which the
    /// callers checked, and at the spec's address).
    pub(super) fn claims(
        &self,
        found: impl IntoIterator<Item = NodeInstance>,
    ) -> std::collections::BTreeMap<String, Vec<NodeInstance>> {
        let mut map: std::collections::BTreeMap<String, Vec<NodeInstance>> = Default::default();
        for i in found {
            let at_its_place = self
                .spec
                .nodes
                .nodes
                .iter()
                .any(|n| n.name == i.node && i.private_ip == Some(n.private_ip));
            if at_its_place {
                map.entry(i.node.clone()).or_default().push(i);
            }
        }
        map
    }

    /// The instance was started (or replaced) by an EC2 operation: its node's address and
    /// session are read and made again at next use (a start gives a new public IP).
    pub async fn started(&self, instance: &str) {
        let nodes: Vec<String> = self
            .instances
            .lock()
            .await
            .iter()
            .filter(|(_, claims)| claims.iter().any(|i| i.id == instance))
            .map(|(n, _)| n.clone())
            .collect();
        for node in nodes {
            self.relocate(&node).await;
        }
    }

    /// Forget the node's address and session: both are read and made again at next use.
    pub(super) async fn relocate(&self, node: &str) {
        self.forget(node).await;
        self.instances.lock().await.remove(node);
    }

    async fn instance(&self, node: &str) -> Result<NodeInstance, NodeError> {
        if !self.instances.lock().await.contains_key(node) {
            self.refresh_instances().await?;
        }
        match self.instances.lock().await.get(node).map(Vec::as_slice) {
            None | Some([]) => Err(NodeError::NoInstance { node: node.into() }),
            Some([one]) => Ok(one.clone()),
            Some(many) => Err(NodeError::Failed {
                node: node.into(),
                what: format!(
                    "{} running instances claim to be this node ({}): redisctl reaches none of them; terminate the one(s) redisctl did not make (its pinned host keys are in the state directory's known_hosts)",
                    many.len(),
                    many.iter()
                        .map(|i| i.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// Where to reach the node (its address by `ssh.via`). An instance just launched or
    /// started may be listed `pending`, or `running`, before its public IP shows (EC2 gives a
    /// new one at every start); with `Reach::WaitForSshd` the instance is looked at again until
    /// it does, within `ssh.ready_timeout_secs`, and the wait ends at once if the instance
    /// leaves `pending`/`running` (as the wait for sshd does). The address found is kept for
    /// the node's later sessions.
    async fn target(
        &self,
        node: &str,
        info: &mut NodeInstance,
        reach: Reach,
    ) -> Result<Target, NodeError> {
        let started = std::time::Instant::now();
        let bound = self.spec.ssh.ready_timeout;
        // As listed: only running instances are a node's ([`Aws::node_instances`]).
        let mut state = "running".to_string();
        let mut pause = std::time::Duration::from_millis(250);
        let (mut looked, mut hopeless) = (false, false);
        loop {
            let ip = match address(self.via, &state, info.private_ip, info.public_ip) {
                Address::At(ip) => ip,
                Address::Ended(state) => {
                    return Err(NodeError::Failed {
                        node: node.into(),
                        what: format!(
                            "instance {} is {state} while redisctl waited for its {} address: nothing was sent to it. Run apply again (it starts a stopped node; a swap in flight continues from its recorded stage)",
                            info.id,
                            self.via.as_str()
                        ),
                    });
                }
                Address::NotYet
                    if reach == Reach::Once || hopeless || started.elapsed() >= bound =>
                {
                    return Err(no_address(
                        self.via,
                        node,
                        &info.id,
                        &state,
                        started.elapsed(),
                    ));
                }
                Address::NotYet => {
                    crate::progress::status(format!(
                        "waiting for EC2 to show {node}'s {} address (instance {}, {state})",
                        self.via.as_str(),
                        info.id
                    ));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                    // A look that fails is not a reason to stop waiting (bounded above).
                    looked = true;
                    match self.aws.instance_seen(&info.id).await {
                        Ok(Some(seen)) => {
                            state = seen.state;
                            info.private_ip = seen.private_ip;
                            info.public_ip = seen.public_ip;
                            // Running for longer than a boot takes: none is coming.
                            hopeless = !may_come(seen.launched_secs_ago, bound);
                        }
                        Ok(None) => state = "terminated".into(),
                        Err(e) => tracing::debug!("node {node}: {e}; looking again"),
                    }
                    continue;
                }
            };
            if looked {
                self.remember_address(node, info).await;
            }
            return Ok(Target {
                node: node.into(),
                instance_id: info.id.clone(),
                addr: SocketAddr::new(ip.into(), 22),
            });
        }
    }

    /// The node's instance as last seen (its addresses), for the node's next sessions.
    async fn remember_address(&self, node: &str, info: &NodeInstance) {
        if let Some(claims) = self.instances.lock().await.get_mut(node) {
            for i in claims.iter_mut().filter(|i| i.id == info.id) {
                i.private_ip = info.private_ip;
                i.public_ip = info.public_ip;
            }
        }
    }

    /// How the node's host key is checked: against the local pin (the state directory's
    /// known_hosts) when there is one; else against what the instance's console output lists
    /// (cloud-init prints the host keys there at first boot), which an account insider who can
    /// write tags and launch instances cannot forge for this instance. The `redisctl:host-key`
    /// tag is a shared cache only: if it names a key the console does not list, someone wrote
    /// it, and the node is refused. With `Reach::WaitForSshd` (a node that may still be
    /// booting) the console is read again until cloud-init has written it, within
    /// `ssh.ready_timeout_secs`. While apply carries out a plan that saw the instance at first
    /// contact, the key that plan showed is the only one accepted. The flag: not pinned here
    /// yet (the caller pins the key presented).
    async fn policy(
        &self,
        node: &str,
        info: &NodeInstance,
        reach: Reach,
    ) -> Result<(HostKeyPolicy, bool), NodeError> {
        // The local pin; else, while apply carries out a plan that saw this instance at first
        // contact, the key that plan showed (and no other the console may list), to be pinned.
        let pinned = self.known.get(&info.id).map(|k| (k, false));
        if let Some((key, to_pin)) =
            pinned.or_else(|| self.expected_host_key(&info.id).map(|k| (k, true)))
        {
            let policy = HostKeyPolicy::Pinned {
                key_openssh: Some(key),
                fingerprint: None,
            };
            return Ok((policy, to_pin));
        }
        let started = std::time::Instant::now();
        let fingerprints = loop {
            let console = self
                .aws
                .console_output(&info.id)
                .await
                .map_err(NodeError::Aws)?;
            let fps = console
                .as_deref()
                .map(ssh::known_hosts::console_fingerprints)
                .unwrap_or_default();
            if !fps.is_empty() {
                break fps;
            }
            if reach == Reach::Once || started.elapsed() >= self.spec.ssh.ready_timeout {
                return Err(NodeError::Failed {
                    node: node.into(),
                    what: format!(
                        "its host key cannot be verified: nothing is pinned for instance {} in this state directory, and its console output lists no host keys (cloud-init prints them at first boot; EC2 may take a few minutes to show them). No secret was sent to it. Run the command again later, or restore the state directory that pinned it",
                        info.id
                    ),
                });
            }
            crate::progress::status(format!(
                "waiting for {node}'s console output to list its host keys"
            ));
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        };
        if let Some(tag) = &info.host_key_fp
            && !fingerprints.iter().any(|f| f == tag.trim())
        {
            return Err(NodeError::Failed {
                node: node.into(),
                what: format!(
                    "the redisctl:host-key tag of instance {} names {tag}, a key its console output does not list ({}): someone other than redisctl wrote the tag. redisctl reaches it by neither; find out who changed the tag",
                    info.id,
                    fingerprints.join(", ")
                ),
            });
        }
        Ok((HostKeyPolicy::Console { fingerprints }, true))
    }

    /// Apply is about to carry out a plan that pins `host_key` for `instance` (first contact
    /// at planning): every connection to that instance until then must present exactly that
    /// key, and the first one pins it, before any other step runs on the node.
    pub fn expect_host_key(&self, instance: &str, host_key: &str) {
        self.expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(instance.into(), host_key.into());
    }

    fn expected_host_key(&self, instance: &str) -> Option<String> {
        self.expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance)
            .cloned()
    }

    /// The node's session, opened (and, at first contact, pinned) when first needed; waits for
    /// sshd (a node that just booted).
    pub(super) async fn session(&self, node: &str) -> Result<Session, NodeError> {
        if let Some(s) = self.sessions.lock().await.get(node)
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let o = self.open(node, Reach::WaitForSshd).await?;
        if o.first_contact {
            // A node this run created (or never reached): pin what it presented.
            self.pin(node, &o.instance_id, &o.host_key).await?;
        }
        let session = o.session;
        self.sessions
            .lock()
            .await
            .insert(node.into(), session.clone());
        Ok(session)
    }

    /// A new session to `node`, reached as apply reaches it: its instance found by tags, the
    /// spec's user and key, its address (`REDISCTL_SSH_VIA`), and the host key checked against
    /// the pinned one (or, at first contact, one its console output lists, returned to be
    /// pinned).
    pub(super) async fn open(&self, node: &str, reach: Reach) -> Result<Opened, NodeError> {
        let mut info = self.instance(node).await?;
        let target = self.target(node, &mut info, reach).await?;
        let (policy, first_contact) = self.policy(node, &info, reach).await?;
        let (user, key) = (&self.spec.ssh.user, self.key()?);
        let connected = match reach {
            Reach::WaitForSshd => {
                crate::progress::status(format!("waiting for sshd on {node} ({})", target.addr));
                // Waiting for sshd only makes sense while the instance runs: one that someone
                // (an interrupted run's request landing late, a person) is stopping ends the
                // wait at once, not after ssh.ready_timeout_secs.
                tokio::select! {
                    r = Session::wait_and_connect(&target, user, &key, &policy, &self.timeouts) => r,
                    e = self.until_not_running(node, &info.id) => return Err(e),
                }
            }
            Reach::Once => Session::connect(&target, user, &key, &policy, &self.timeouts).await,
        };
        // The key the plan being applied showed: checked at first contact, and also once the
        // plan's own pin step (which runs beside this node's first step) has pinned it.
        let planned = match (&policy, self.expected_host_key(&info.id)) {
            (
                HostKeyPolicy::Pinned {
                    key_openssh: Some(k),
                    ..
                },
                Some(shown),
            ) => ssh::fingerprint(k) == ssh::fingerprint(&shown),
            _ => false,
        };
        let (session, host_key) = connected.map_err(|e| match e {
            ssh::SshError::HostKeyChanged {
                expected_fp,
                got_fp,
                ..
            } if planned => NodeError::Failed {
                node: node.into(),
                what: format!(
                    "instance {} presented host key {got_fp}, not {expected_fp}, the key the plan being applied showed at first contact; nothing was sent to it and nothing pinned. Plan again and check the fingerprint it shows (its console output lists the keys it was born with)",
                    info.id
                ),
            },
            e => NodeError::Ssh(self.known.annotate(e)),
        })?;
        Ok(Opened {
            session,
            host_key,
            instance_id: info.id,
            first_contact,
        })
    }

    /// Resolves (with the error to report) once the instance is neither pending nor running:
    /// looked at every few seconds; an error reading it is not a reason to stop waiting.
    async fn until_not_running(&self, node: &str, instance: &str) -> NodeError {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            if let Ok(Some(state)) = self.aws.instance_state(instance).await
                && state != "pending"
                && state != "running"
            {
                return NodeError::Failed {
                    node: node.into(),
                    what: format!(
                        "instance {instance} is {state} while redisctl waited for its sshd: nothing was sent to it. Run apply again (it starts a stopped node; a swap in flight continues from its recorded stage)"
                    ),
                };
            }
        }
    }

    /// Pin a host key locally and as the instance's `redisctl:host-key` tag (so another
    /// operator or CI checks against the same key).
    pub async fn pin(&self, node: &str, instance: &str, host_key: &str) -> Result<(), NodeError> {
        self.known.pin(instance, host_key)?;
        let fp = ssh::fingerprint(host_key);
        self.aws
            .tag_host_key(instance, &fp)
            .await
            .map_err(NodeError::Aws)?;
        if let Some(claims) = self.instances.lock().await.get_mut(node) {
            for i in claims.iter_mut().filter(|i| i.id == instance) {
                i.host_key_fp = Some(fp.clone());
            }
        }
        Ok(())
    }

    /// An SSH key rotation: the new public key added to the login user's authorized_keys, next
    /// to the current one (once: lines are matched by key type and body, not by comment).
    pub async fn authorize_ssh_key(&self, node: &str) -> Result<(), NodeError> {
        let next = ssh::keyfile::next_path(&self.spec.ssh.private_key);
        let public = ssh::keyfile::public_key(&next)
            .map_err(|e| NodeError::Failed {
                node: node.into(),
                what: e.to_string(),
            })?
            .ok_or_else(|| NodeError::Failed {
                node: node.into(),
                what: format!(
                    "the new SSH key {} is missing (an SSH key rotation under way): plan again",
                    next.display()
                ),
            })?;
        let s = self.session(node).await?;
        let script = "set -eu\nIFS= read -r line\nbody=$(printf '%s' \"$line\" | cut -d' ' -f1,2)\nmkdir -p \"$HOME/.ssh\"\nchmod 700 \"$HOME/.ssh\"\nf=\"$HOME/.ssh/authorized_keys\"\ntouch \"$f\"\nchmod 600 \"$f\"\ngrep -qF \"$body\" \"$f\" || printf '%s\\n' \"$line\" >> \"$f\"\n";
        self.user_script(
            node,
            &s,
            "add the new SSH key to authorized_keys",
            script,
            &public,
        )
        .await
    }

    /// The end of an SSH key rotation on a node: its session closed and a new one opened with
    /// the key now in force (the new one: the step proves it logs in before anything is taken
    /// away), then the replaced public key removed from authorized_keys; refused, changing
    /// nothing, if the file would not keep the new key.
    pub async fn revoke_ssh_key(&self, node: &str) -> Result<(), NodeError> {
        let key = &self.spec.ssh.private_key;
        let failed = |what: String| NodeError::Failed {
            node: node.into(),
            what,
        };
        let previous = ssh::keyfile::previous_public_key(key).map_err(|e| failed(e.to_string()))?;
        let Some(previous) = previous else {
            return Ok(());
        };
        let current = ssh::keyfile::public_key(key)
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed(format!("the SSH key {} is missing", key.display())))?;
        if let Some(old) = self.sessions.lock().await.remove(node) {
            old.close().await;
        }
        let s = self.session(node).await?;
        let script = "set -eu\nIFS= read -r old\nIFS= read -r new\nf=\"$HOME/.ssh/authorized_keys\"\ngrep -qF \"$new\" \"$f\" || { echo \"the new key is not in $f: nothing removed\" >&2; exit 1; }\ngrep -vF \"$old\" \"$f\" > \"$f.redisctl\" || true\ngrep -qF \"$new\" \"$f.redisctl\" || { rm -f \"$f.redisctl\"; echo \"removing the old key would remove the new one: nothing removed\" >&2; exit 1; }\nchmod 600 \"$f.redisctl\"\nmv \"$f.redisctl\" \"$f\"\n";
        let stdin = format!(
            "{}\n{}",
            ssh::keyfile::key_body(&previous),
            ssh::keyfile::key_body(&current)
        );
        self.user_script(
            node,
            &s,
            "remove the replaced SSH key from authorized_keys",
            script,
            &stdin,
        )
        .await
    }

    /// `script` run as the login user (not root: its own authorized_keys), `stdin` given; a
    /// non-zero exit names `what`.
    async fn user_script(
        &self,
        node: &str,
        s: &Session,
        what: &str,
        script: &str,
        stdin: &str,
    ) -> Result<(), NodeError> {
        let out = s
            .run(
                &format!("sh -c {}", ssh::sh_quote(script)),
                Some(format!("{stdin}\n").as_bytes()),
            )
            .await?;
        if out.status != 0 {
            return Err(NodeError::Failed {
                node: node.into(),
                what: format!("{what}: {}", out.stderr_str().trim()),
            });
        }
        Ok(())
    }

    /// Look up every node's instance (one DescribeInstances), before concurrent work that would
    /// otherwise each look them up.
    pub(crate) async fn locate_all(&self) -> Result<(), NodeError> {
        self.refresh_instances().await
    }

    /// Open the node's session with one bounded attempt (no waiting for sshd to come up): a
    /// check reports a node that does not answer promptly. Like `redisctl redis-cli`, verify
    /// never pins: it only trusts a host key that apply pinned in this state directory, so
    /// evidence is never gathered from a host nobody vouched for.
    pub(crate) async fn reach(&self, node: &str) -> Result<(), NodeError> {
        if let Some(s) = self.sessions.lock().await.get(node)
            && !s.is_closed()
        {
            return Ok(());
        }
        let session = self.pinned_session(node).await?;
        self.sessions.lock().await.insert(node.into(), session);
        Ok(())
    }

    /// A new session to the node for `redisctl redis-cli`: found by its tags and reached as
    /// apply reaches it (same user, key, address, `REDISCTL_SSH_VIA`), with one bounded attempt.
    /// The host key must match the pinned one; a node whose key was never pinned in the state
    /// directory (a tag is not a pin) is refused before any connection, not pinned: only apply
    /// pins.
    pub(crate) async fn pinned_session(&self, node: &str) -> Result<Session, NodeError> {
        let info = self.instance(node).await?;
        if self.known.get(&info.id).is_none() {
            return Err(NodeError::Ssh(crate::ssh::SshError::NothingPinned {
                node: node.into(),
                instance_id: info.id,
            }));
        }
        Ok(self.open(node, Reach::Once).await?.session)
    }

    /// `sudo sh -c <script>` on the node over its session (opened when needed), `stdin` passed
    /// through (secrets go there). The exit status is in the output, not an error.
    pub(crate) async fn sudo_on(
        &self,
        node: &str,
        script: &str,
        stdin: Option<&[u8]>,
    ) -> Result<ssh::Output, NodeError> {
        let s = self.session(node).await?;
        Ok(s.sudo(script, stdin).await?)
    }

    pub async fn close(&self) {
        let sessions: Vec<Session> = std::mem::take(&mut *self.sessions.lock().await)
            .into_values()
            .collect();
        for s in sessions {
            s.close().await;
        }
    }
}

/// What one look at a node's instance means for reaching it by `via`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    At(Ipv4Addr),
    /// `pending` or `running` without that address yet: it may come.
    NotYet,
    /// Neither `pending` nor `running` (stopping, stopped, terminated …): none is coming.
    Ended(String),
}

fn address(
    via: SshVia,
    state: &str,
    private_ip: Option<Ipv4Addr>,
    public_ip: Option<Ipv4Addr>,
) -> Address {
    if state != "pending" && state != "running" {
        return Address::Ended(state.into());
    }
    let ip = match via {
        SshVia::PrivateIp => private_ip,
        SshVia::PublicIp => public_ip,
    };
    ip.map_or(Address::NotYet, Address::At)
}

/// Whether an address may still come to an instance (last) launched or started
/// `launched_secs_ago` (unknown: it may): EC2 shows it within moments of the launch, so one that
/// has run for longer than `ready` (`ssh.ready_timeout_secs`) without it gets none by waiting
/// (launched into a subnet that maps no public IP).
fn may_come(launched_secs_ago: Option<i64>, ready: std::time::Duration) -> bool {
    launched_secs_ago.is_none_or(|age| age < ready.as_secs() as i64)
}

/// The node's instance shows no address to reach it by (after `waited`, when it was waited
/// for): what it means and what to do.
fn no_address(
    via: SshVia,
    node: &str,
    instance: &str,
    state: &str,
    waited: std::time::Duration,
) -> NodeError {
    let after = if waited.as_secs() > 0 {
        format!(" (EC2 showed none for {}s)", waited.as_secs())
    } else {
        String::new()
    };
    let what = match via {
        SshVia::PublicIp => {
            "EC2 gives an instance a public IP at launch and at every start only in a subnet that maps one (MapPublicIpOnLaunch) or when the launch asks for one: check the instance and its subnet in the EC2 console, or reach the nodes at their private IPs from inside the VPC (ssh.via = \"private-ip\", or REDISCTL_SSH_VIA=private-ip)"
        }
        SshVia::PrivateIp => {
            "every instance in a VPC has a private IP once it runs: check the instance in the EC2 console"
        }
    };
    NodeError::Failed {
        node: node.into(),
        what: format!(
            "the instance has no {} address to reach it by (ssh.via / REDISCTL_SSH_VIA): instance {instance} is {state}{after}. {what}; then run apply again (finished steps are skipped)",
            via.as_str()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: Option<Ipv4Addr> = Some(Ipv4Addr::new(10, 0, 1, 10));
    const PUBLIC: Option<Ipv4Addr> = Some(Ipv4Addr::new(198, 51, 100, 7));

    #[test]
    fn an_instance_just_launched_or_started_is_waited_for_until_its_address_shows() {
        // Listed running (or pending) before EC2 shows its public IP: wait, not fail.
        for state in ["pending", "running"] {
            assert_eq!(
                address(SshVia::PublicIp, state, PRIVATE, None),
                Address::NotYet
            );
            assert_eq!(
                address(SshVia::PublicIp, state, PRIVATE, PUBLIC),
                Address::At(PUBLIC.unwrap())
            );
        }
        assert_eq!(
            address(SshVia::PrivateIp, "running", PRIVATE, None),
            Address::At(PRIVATE.unwrap())
        );
        // An instance that left pending/running gets no address by waiting.
        for state in ["stopping", "stopped", "shutting-down", "terminated"] {
            assert_eq!(
                address(SshVia::PublicIp, state, PRIVATE, PUBLIC),
                Address::Ended(state.into())
            );
        }
    }

    #[test]
    fn only_an_instance_launched_or_started_within_the_ready_timeout_may_still_get_one() {
        let ready = std::time::Duration::from_secs(300);
        assert!(may_come(Some(2), ready));
        assert!(may_come(None, ready));
        assert!(!may_come(Some(3600), ready));
    }

    #[test]
    fn no_address_names_the_node_the_instance_and_what_to_do() {
        let e = no_address(
            SshVia::PublicIp,
            "redis-node-1c",
            "i-1",
            "running",
            std::time::Duration::from_secs(300),
        )
        .to_string();
        for part in [
            "node redis-node-1c: the instance has no public-ip address to reach it by",
            "instance i-1 is running (EC2 showed none for 300s)",
            "MapPublicIpOnLaunch",
            "REDISCTL_SSH_VIA=private-ip",
            "run apply again",
        ] {
            assert!(e.contains(part), "{part} in {e}");
        }
    }
}
