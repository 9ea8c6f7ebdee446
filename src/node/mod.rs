//! The node runtime: everything redisctl does inside the nodes, over SSH. It resolves each
//! node's instance and address, opens one pinned session per node and reuses it, observes the
//! node's facts for the planner, and carries out the node operations of a plan.
//!
//! Secrets only travel on a session's stdin (redis-cli reads the operator password from
//! `REDISCLI_AUTH="$(cat)"`) or inside files written 0640; never on a command line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use russh::keys::PrivateKey;
use tokio::sync::Mutex;

mod noinit;
pub mod redis_cli;
mod swap;
pub use swap::KeysBefore;

use crate::aws::{Aws, NodeInstance};
use crate::observed::{ClusterView, InitSystem, NodeFacts, NodeObservation, Observed, tags};
use crate::pki::{self, Ca};
use crate::redis::{NodeFile, conf, files, parse, systemd, users_acl};
use crate::spec::secrets::Secret;
use crate::spec::{Spec, SshVia};
use crate::ssh::{self, HostKeyPolicy, KnownHosts, Session, SshError, Target, Timeouts};

/// The longest `redis-cli --cluster create` may take (it has no bound of its own).
const CLUSTER_CREATE_BOUND_SECS: u32 = 180;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("node {node}: {what}")]
    Failed { node: String, what: String },
    #[error("node {node}: no running instance found in EC2")]
    NoInstance { node: String },
    #[error("the cluster CA in {dir}")]
    Ca {
        dir: String,
        #[source]
        source: pki::PkiError,
    },
    #[error("cannot read the EC2 instances of the cluster")]
    Aws(#[source] crate::aws::AwsError),
    #[error("gave up after {}s waiting for {what}", waited.as_secs())]
    Timeout { what: String, waited: Duration },
}

impl NodeError {
    pub fn hint(&self) -> String {
        match self {
            NodeError::Ssh(SshError::HostKeyChanged { .. }) => {
                "do not continue until you know why the host key changed (see above)".into()
            }
            NodeError::Ssh(_) | NodeError::Timeout { .. } => {
                "check the node (is it running, is SSH open from here?) and run apply again: finished steps are skipped".into()
            }
            NodeError::Aws(e) => e.hint(),
            _ => "fix the cause above and run apply again: finished steps are skipped".into(),
        }
    }
}

pub struct NodeRuntime {
    spec: Spec,
    aws: Aws,
    known: KnownHosts,
    via: SshVia,
    timeouts: Timeouts,
    secrets: Vec<(String, Secret)>,
    operator_password: Secret,
    sessions: Mutex<BTreeMap<String, Session>>,
    instances: Mutex<BTreeMap<String, NodeInstance>>,
    ca: Mutex<Option<Arc<Ca>>>,
    /// Whether each node runs systemd, learnt once per session (see [`noinit`]).
    systemd: Mutex<BTreeMap<String, bool>>,
}

/// How nodes are reached: `REDISCTL_SSH_VIA` wins over the spec.
pub fn ssh_via(spec: &Spec) -> SshVia {
    std::env::var(SshVia::ENV)
        .ok()
        .and_then(|v| SshVia::parse(&v))
        .unwrap_or(spec.ssh.via)
}

/// The `redis-cli` of a node, over TLS with the node's own certificate (it has clientAuth),
/// as the operator user whose password `$(cat)` reads from stdin.
pub fn redis_cli(spec: &Spec) -> String {
    format!("REDISCLI_AUTH=\"$(cat)\" {}", redis_cli_command(spec))
}

/// [`redis_cli`] without the password prefix (for wrapping it in `timeout`, or for
/// `redisctl redis-cli`, which sets REDISCLI_AUTH its own way).
pub(crate) fn redis_cli_command(spec: &Spec) -> String {
    format!(
        "redis-cli --tls --cacert {} --cert {} --key {} -h 127.0.0.1 -p {} --user {} --no-auth-warning",
        conf::CA_CERT.path,
        conf::NODE_CERT.path,
        conf::NODE_KEY.path,
        spec.redis.port,
        ssh::sh_quote(&spec.operator_user().name)
    )
}

/// How [`NodeRuntime::open`] reaches sshd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Wait (bounded by `ssh.ready_timeout_secs`) for a node that may still be booting.
    WaitForSshd,
    /// One bounded attempt: a node that does not answer is reported.
    Once,
}

/// Whether [`NodeRuntime::open`] may meet a node whose host key was never pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pinning {
    /// Yes: the key it presents is returned for the caller to pin (apply, observation).
    OnFirstContact,
    /// No: only a pinned key is trusted (verify, `redisctl redis-cli`).
    Required,
}

/// A session opened by [`NodeRuntime::open`].
struct Opened {
    session: Session,
    /// The host key the node presented (OpenSSH public key).
    host_key: String,
    instance_id: String,
    /// Nothing was pinned for this instance: `host_key` was not checked.
    first_contact: bool,
}

impl NodeRuntime {
    pub fn new(spec: &Spec, aws: Aws, secrets: Vec<(String, Secret)>) -> Result<Self, NodeError> {
        crate::state_dir::ensure(&spec.cluster.state_dir).map_err(|e| NodeError::Failed {
            node: "-".into(),
            what: format!(
                "cannot create the state directory {}: {e}",
                spec.cluster.state_dir.display()
            ),
        })?;
        let known = KnownHosts::open(&spec.cluster.state_dir)?;
        let op = spec.operator_user().name.clone();
        let operator_password = secrets
            .iter()
            .find(|(u, _)| *u == op)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| NodeError::Failed {
                node: "-".into(),
                what: format!("the operator user {op} has no password"),
            })?;
        Ok(NodeRuntime {
            spec: spec.clone(),
            aws,
            known,
            via: ssh_via(spec),
            timeouts: Timeouts::from(&spec.ssh),
            secrets,
            operator_password,
            sessions: Mutex::new(BTreeMap::new()),
            instances: Mutex::new(BTreeMap::new()),
            ca: Mutex::new(None),
            systemd: Mutex::new(BTreeMap::new()),
        })
    }

    /// The operator's SSH key, read when a connection is made (apply may generate it first).
    fn key(&self) -> Result<PrivateKey, NodeError> {
        ssh::keyfile::load(&self.spec.ssh.private_key).map_err(|e| NodeError::Failed {
            node: "-".into(),
            what: e.to_string(),
        })
    }

    fn stdin(&self) -> Option<&[u8]> {
        Some(self.operator_password.expose().as_bytes())
    }

    /// The CA from the state directory (loaded once).
    async fn ca(&self) -> Result<Arc<Ca>, NodeError> {
        let mut guard = self.ca.lock().await;
        if let Some(ca) = guard.as_ref() {
            return Ok(ca.clone());
        }
        let dir = &self.spec.cluster.state_dir;
        let ca = Ca::load(dir).map_err(|source| NodeError::Ca {
            dir: dir.display().to_string(),
            source,
        })?;
        let ca = Arc::new(ca);
        *guard = Some(ca.clone());
        Ok(ca)
    }

    /// Create the CA if it is missing (its key stays in the state directory, 0600).
    pub async fn ensure_ca(&self) -> Result<(), NodeError> {
        let dir = &self.spec.cluster.state_dir;
        let (ca, _) = Ca::load_or_create(
            dir,
            &self.spec.cluster.name,
            SystemTime::now(),
            pki::CA_VALIDITY_DAYS,
        )
        .map_err(|source| NodeError::Ca {
            dir: dir.display().to_string(),
            source,
        })?;
        *self.ca.lock().await = Some(Arc::new(ca));
        Ok(())
    }

    /// The CA certificate and the files' hashes every node must have, if the CA exists.
    pub async fn local_facts(
        &self,
    ) -> Result<(Option<String>, BTreeMap<String, BTreeMap<String, String>>), NodeError> {
        let dir = &self.spec.cluster.state_dir;
        if !dir.join(pki::CA_CERT_FILE).exists() && !dir.join(pki::CA_KEY_FILE).exists() {
            return Ok((None, BTreeMap::new()));
        }
        let ca = self.ca().await?;
        let hashes = files::desired_hashes(&self.spec, &self.secrets, &ca).map_err(|e| {
            NodeError::Failed {
                node: "-".into(),
                what: e.to_string(),
            }
        })?;
        Ok((Some(ca.cert_pem().to_string()), hashes))
    }

    /// One DescribeInstances for every node of the cluster.
    async fn refresh_instances(&self) -> Result<(), NodeError> {
        let found = self
            .aws
            .node_instances(&self.spec.cluster.name)
            .await
            .map_err(NodeError::Aws)?;
        let mut map = self.instances.lock().await;
        map.clear();
        for i in found {
            map.insert(i.node.clone(), i);
        }
        Ok(())
    }

    async fn instance(&self, node: &str) -> Result<NodeInstance, NodeError> {
        if let Some(i) = self.instances.lock().await.get(node) {
            return Ok(i.clone());
        }
        self.refresh_instances().await?;
        self.instances
            .lock()
            .await
            .get(node)
            .cloned()
            .ok_or_else(|| NodeError::NoInstance { node: node.into() })
    }

    fn target(&self, node: &str, info: &NodeInstance) -> Result<Target, NodeError> {
        let ip = match self.via {
            SshVia::PrivateIp => info.private_ip,
            SshVia::PublicIp => info.public_ip,
        }
        .ok_or_else(|| NodeError::Failed {
            node: node.into(),
            what: format!(
                "the instance has no {} address to reach it by (ssh.via / REDISCTL_SSH_VIA)",
                self.via.as_str()
            ),
        })?;
        Ok(Target {
            node: node.into(),
            instance_id: info.id.clone(),
            addr: SocketAddr::new(ip.into(), 22),
        })
    }

    fn policy(&self, info: &NodeInstance) -> HostKeyPolicy {
        let pinned = self.known.get(&info.id);
        if pinned.is_none() && info.host_key_fp.is_none() {
            HostKeyPolicy::FirstContact
        } else {
            HostKeyPolicy::Pinned {
                key_openssh: pinned,
                fingerprint: info.host_key_fp.clone(),
            }
        }
    }

    /// The node's session, opened (and, at first contact, pinned) when first needed; waits for
    /// sshd (a node that just booted).
    async fn session(&self, node: &str) -> Result<Session, NodeError> {
        if let Some(s) = self.sessions.lock().await.get(node)
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let o = self
            .open(node, Reach::WaitForSshd, Pinning::OnFirstContact)
            .await?;
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
    /// the pinned one (or, at first contact and with `Pinning::OnFirstContact`, taken as it is
    /// and returned to be pinned). `Pinning::Required` refuses a node never pinned before any
    /// connection is made.
    async fn open(&self, node: &str, reach: Reach, pinning: Pinning) -> Result<Opened, NodeError> {
        let info = self.instance(node).await?;
        let target = self.target(node, &info)?;
        let policy = self.policy(&info);
        let first_contact = policy == HostKeyPolicy::FirstContact;
        if first_contact && pinning == Pinning::Required {
            return Err(NodeError::Ssh(SshError::NothingPinned {
                node: node.into(),
                instance_id: info.id,
            }));
        }
        let (user, key) = (&self.spec.ssh.user, self.key()?);
        let connected = match reach {
            Reach::WaitForSshd => {
                crate::progress::status(format!("waiting for sshd on {node} ({})", target.addr));
                Session::wait_and_connect(&target, user, &key, &policy, &self.timeouts).await
            }
            Reach::Once => Session::connect(&target, user, &key, &policy, &self.timeouts).await,
        };
        let (session, host_key) = connected.map_err(|e| self.known.annotate(e))?;
        Ok(Opened {
            session,
            host_key,
            instance_id: info.id,
            first_contact,
        })
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
        if let Some(i) = self.instances.lock().await.get_mut(node) {
            i.host_key_fp = Some(fp);
        }
        Ok(())
    }

    // ---- observation ------------------------------------------------------------------------

    /// Facts of every running node of the spec, concurrently. A node that does not answer is
    /// `Unreachable`, with the reason. With `wait` (apply), a node whose sshd is not up yet (it
    /// was just launched or started) is waited for, up to `ssh.ready_timeout`.
    pub async fn observe(
        self: &Arc<Self>,
        observed: &Observed,
        wait: bool,
    ) -> BTreeMap<String, NodeObservation> {
        let running: Vec<String> = observed
            .instances
            .iter()
            .filter(|i| i.state == "running")
            .filter_map(|i| i.tags.get(tags::NODE).cloned())
            .filter(|n| self.spec.nodes.nodes.iter().any(|x| &x.name == n))
            .collect();
        // The instances are known already: no DescribeInstances per node.
        {
            let mut map = self.instances.lock().await;
            for i in observed.instances.iter().filter(|i| i.state == "running") {
                if let Some(node) = i.tags.get(tags::NODE) {
                    map.insert(
                        node.clone(),
                        NodeInstance {
                            node: node.clone(),
                            id: i.id.clone(),
                            private_ip: i.private_ip,
                            public_ip: i.public_ip,
                            host_key_fp: i.tags.get(tags::HOST_KEY).cloned(),
                        },
                    );
                }
            }
        }
        let mut set = tokio::task::JoinSet::new();
        for node in running {
            let me = self.clone();
            set.spawn(async move {
                let r = me.observe_node(&node, wait).await;
                (node, r)
            });
        }
        let mut out = BTreeMap::new();
        while let Some(j) = set.join_next().await {
            let (node, r) = j.expect("observation task");
            out.insert(
                node,
                match r {
                    Ok(f) => NodeObservation::Reached(Box::new(f)),
                    Err(e) => NodeObservation::Unreachable {
                        host_key_changed: matches!(
                            e,
                            NodeError::Ssh(SshError::HostKeyChanged { .. })
                        ),
                        reason: e.to_string(),
                    },
                },
            );
        }
        out
    }

    async fn observe_node(&self, node: &str, wait: bool) -> Result<NodeFacts, NodeError> {
        let reach = if wait {
            Reach::WaitForSshd
        } else {
            Reach::Once
        };
        let Opened {
            session,
            host_key,
            first_contact,
            ..
        } = self.open(node, reach, Pinning::OnFirstContact).await?;
        let paths = [
            conf::CONF.path,
            systemd::DROP_IN.path,
            users_acl::USERS_ACL.path,
            conf::CA_CERT.path,
        ];
        let mut script = String::from("set +e\n");
        script.push_str("if dpkg-query -W -f='${Status}' redis-server 2>/dev/null | grep -q 'install ok installed'; then echo installed=yes; else echo installed=no; fi\n");
        for (i, p) in paths.iter().enumerate() {
            let q = ssh::sh_quote(p);
            script.push_str(&format!(
                "if [ -f {q} ]; then h=$(sha256sum < {q}); echo \"file{i}=${{h%% *}}\"; else echo \"file{i}=-\"; fi\n"
            ));
        }
        script.push_str(&format!(
            "[ -f {} ] && echo key=yes || echo key=no\n",
            conf::NODE_KEY.path
        ));
        script.push_str(&files::stat_script());
        // With systemd, the units' states; without it (see `noinit`), the processes and the
        // init script's runlevel links, in the same words.
        script.push_str(&format!(
            "if {}; then\necho init=systemd\nredis_active() {{ systemctl is-active --quiet {}; }}\n",
            noinit::IS_SYSTEMD,
            systemd::SERVICE
        ));
        for (k, unit, what) in [
            ("svc_enabled", systemd::SERVICE, "is-enabled"),
            ("svc_active", systemd::SERVICE, "is-active"),
            ("stock_enabled", systemd::STOCK_SERVICE, "is-enabled"),
            ("stock_active", systemd::STOCK_SERVICE, "is-active"),
        ] {
            script.push_str(&format!(
                "echo {k}=$(systemctl {what} {unit} 2>/dev/null)\n"
            ));
        }
        script.push_str(&format!(
            "else\necho init=none\nredis_active() {{ {} >/dev/null 2>&1; }}\necho svc_enabled=\nredis_active && echo svc_active=active\n{} && echo stock_enabled=enabled\n{} >/dev/null 2>&1 && echo stock_active=active\nfi\n",
            noinit::is_active(),
            noinit::STOCK_ENABLED,
            noinit::stock_is_active()
        ));
        script.push_str(&format!(
            "[ -s {}/nodes-{}.conf ] && echo state_file=yes\n",
            conf::DATA_DIR,
            self.spec.redis.port
        ));
        script.push_str(&format!(
            "echo '--cert--'; cat {} 2>/dev/null; echo '--end--'\n",
            conf::NODE_CERT.path
        ));
        script.push_str(&format!(
            "if redis_active; then echo '--cluster--'; {} CLUSTER INFO 2>&1; echo '--end--'; fi\n",
            redis_cli(&self.spec)
        ));
        let out = session.sudo(&script, self.stdin()).await?;
        session.close().await;
        let text = out.stdout_str();
        let value = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let section = |name: &str| -> Option<String> {
            let marker = format!("--{name}--\n");
            let start = text.find(&marker)? + marker.len();
            let end = text[start..].find("--end--")? + start;
            let s = text[start..end].to_string();
            (!s.trim().is_empty()).then_some(s)
        };
        let mut files = BTreeMap::new();
        for (i, p) in paths.iter().enumerate() {
            let h = value(&format!("file{i}"));
            files.insert(p.to_string(), (h != "-" && !h.is_empty()).then_some(h));
        }
        let modes = files::parse_modes(&text);
        let cluster = section("cluster")
            .and_then(|t| parse::cluster_info(&t).ok())
            .map(|c| ClusterView {
                state: c.cluster_state.clone(),
                slots_assigned: c.slots_assigned,
                known_nodes: c.known_nodes,
                size: c.size,
            });
        Ok(NodeFacts {
            host_key_fingerprint: ssh::fingerprint(&host_key),
            host_key,
            first_contact,
            redis_installed: value("installed") == "yes",
            files,
            node_cert_pem: section("cert"),
            node_key_present: value("key") == "yes",
            modes,
            init: if value("init") == "none" {
                InitSystem::None
            } else {
                InitSystem::Systemd
            },
            service_enabled: value("svc_enabled") == "enabled",
            service_active: value("svc_active") == "active",
            stock_service_enabled: value("stock_enabled") == "enabled",
            stock_service_active: value("stock_active") == "active",
            cluster,
            cluster_state_file: value("state_file") == "yes",
        })
    }

    // ---- operations --------------------------------------------------------------------------

    pub async fn install_redis(&self, node: &str) -> Result<(), NodeError> {
        let s = self.session(node).await?;
        crate::progress::status(
            "apt-get install redis-server redis-tools (waits up to 600 s for the package lock)",
        );
        // policy-rc.d keeps the stock service from ever starting (no plaintext Redis, not even
        // for a moment); apt waits for a lock held by unattended-upgrades or cloud-init.
        let script = format!(
            "set -e
export DEBIAN_FRONTEND=noninteractive
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq redis-server redis-tools >/dev/null
if {}; then
systemctl disable --now {} >/dev/null 2>&1 || true
else
{}fi
",
            noinit::IS_SYSTEMD,
            systemd::STOCK_SERVICE,
            noinit::stock_off()
        );
        s.sudo_ok("install redis-server", &script, None).await?;
        Ok(())
    }

    fn node_spec(&self, node: &str) -> Result<&crate::spec::Node, NodeError> {
        self.spec
            .nodes
            .nodes
            .iter()
            .find(|n| n.name == node)
            .ok_or_else(|| NodeError::Failed {
                node: node.into(),
                what: "not in the spec".into(),
            })
    }

    pub async fn install_tls(&self, node: &str, restart: bool) -> Result<(), NodeError> {
        let ca = self.ca().await?;
        let n = self.node_spec(node)?;
        let cert = ca
            .issue_node(
                &n.name,
                &pki::node_sans(n.private_ip),
                SystemTime::now(),
                self.spec.tls.cert_days,
            )
            .map_err(|e| NodeError::Failed {
                node: node.into(),
                what: format!("cannot issue its certificate: {e}"),
            })?;
        let s = self.session(node).await?;
        s.sudo_ok(
            "create /etc/redis/tls",
            &format!("install -d -m 0750 -o root -g redis {}", conf::TLS_DIR),
            None,
        )
        .await?;
        s.upload(&conf::CA_CERT, ca.cert_pem().as_bytes()).await?;
        s.upload(&conf::NODE_KEY, cert.key_pem.expose().as_bytes())
            .await?;
        s.upload(&conf::NODE_CERT, cert.cert_pem.as_bytes()).await?;
        if restart {
            self.restart_and_wait(node, &s).await?;
        }
        Ok(())
    }

    async fn file(&self, node: &str, which: NodeFile) -> Result<String, NodeError> {
        let ca = self.ca().await?;
        let n = self.node_spec(node)?;
        let all = files::node_files(&self.spec, n, &self.secrets, &ca).map_err(|e| {
            NodeError::Failed {
                node: node.into(),
                what: e.to_string(),
            }
        })?;
        Ok(all
            .into_iter()
            .find(|(f, _)| f.path == which.path)
            .map(|(_, c)| c)
            .expect("every node file is rendered"))
    }

    pub async fn write_acl(&self, node: &str, reload: bool) -> Result<(), NodeError> {
        let content = self.file(node, users_acl::USERS_ACL).await?;
        let s = self.session(node).await?;
        if reload {
            // Check the rules against the live server first: a file ACL LOAD refuses would also
            // be refused at the next restart.
            for u in self.spec.users.iter() {
                let quote = |v: Vec<String>| {
                    v.iter()
                        .map(|a| ssh::sh_quote(a))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let args = quote(users_acl::dry_run_args(u));
                let cleanup = quote(users_acl::dry_run_cleanup_args(&users_acl::dry_run_user(
                    &u.name,
                )));
                let script = format!(
                    "pw=\"$(cat)\"; out=$(printf %s \"$pw\" | {cli} {args}); printf %s \"$pw\" | {cli} {cleanup} >/dev/null; [ \"$out\" = OK ] || {{ echo \"$out\" >&2; exit 1; }}",
                    cli = redis_cli(&self.spec)
                );
                s.sudo_ok(
                    &format!("check the ACL rules of user {}", u.name),
                    &script,
                    self.stdin(),
                )
                .await?;
            }
        }
        s.upload(&users_acl::USERS_ACL, content.as_bytes()).await?;
        if reload {
            let out = s
                .sudo_ok(
                    "ACL LOAD",
                    &format!("{} ACL LOAD", redis_cli(&self.spec)),
                    self.stdin(),
                )
                .await?;
            let text = out.stdout_str();
            if text.trim() != "OK" {
                return Err(NodeError::Failed {
                    node: node.into(),
                    what: format!("ACL LOAD answered: {}", text.trim()),
                });
            }
        }
        Ok(())
    }

    /// Every file redisctl writes that exists on `node` gets its mode and owner back.
    pub async fn set_file_modes(&self, node: &str) -> Result<(), NodeError> {
        let s = self.session(node).await?;
        let mut script = String::from("set -e\n");
        for f in &files::MANAGED {
            let q = ssh::sh_quote(f.path);
            script.push_str(&format!(
                "if [ -e {q} ]; then chown {}:{} {q}; chmod {:o} {q}; fi\n",
                f.owner, f.group, f.mode
            ));
        }
        s.sudo_ok("set file modes and owners", &script, None)
            .await?;
        Ok(())
    }

    pub async fn write_config(&self, node: &str, restart: bool) -> Result<(), NodeError> {
        let content = self.file(node, conf::CONF).await?;
        let s = self.session(node).await?;
        s.upload(&conf::CONF, content.as_bytes()).await?;
        if self.has_systemd(node, &s).await? {
            s.upload(&systemd::DROP_IN, systemd::render_drop_in().as_bytes())
                .await?;
            let mut script = String::from("set -e\n");
            for argv in systemd::enable_commands() {
                script.push_str(&argv.join(" "));
                script.push_str(" >/dev/null 2>&1\n");
            }
            s.sudo_ok("enable redis-server@cluster", &script, None)
                .await?;
        } else if !restart {
            // No init system: nothing to enable; start it unless it runs.
            s.sudo_ok(
                "start redis-server as user redis (no systemd)",
                &noinit::start(),
                None,
            )
            .await?;
        }
        if restart {
            self.restart_and_wait(node, &s).await?;
        } else {
            self.wait_ping(node, &s).await?;
        }
        Ok(())
    }

    /// Restarts Redis on `node` and waits until it answers and the cluster is healthy. A master
    /// with a replica hands its slots over first (CLUSTER FAILOVER on the replica), so clients
    /// see no outage; it comes back as a replica.
    async fn restart_and_wait(&self, node: &str, s: &Session) -> Result<(), NodeError> {
        if self.spec.nodes.replicas_per_master > 0 {
            crate::progress::status(format!(
                "failover: a replica of {node} takes over its slots"
            ));
            self.failover_away(node, false).await?;
        }
        crate::progress::status(format!("restarting Redis on {node}"));
        if self.has_systemd(node, s).await? {
            s.sudo_ok(
                "restart redis-server@cluster",
                &format!("systemctl restart {}", systemd::SERVICE),
                None,
            )
            .await?;
        } else {
            self.stop_redis(node, s).await?;
            s.sudo_ok(
                "start redis-server as user redis (no systemd)",
                &noinit::start(),
                None,
            )
            .await?;
        }
        self.wait_ping(node, s).await?;
        self.wait_cluster_healthy(self.spec.nodes.nodes.len()).await
    }

    /// Stops Redis cleanly (SIGTERM: it flushes the AOF and saves its cluster state), by
    /// systemd or, without it, by its pidfile with a bounded wait until it exited.
    pub(crate) async fn stop_redis(&self, node: &str, s: &Session) -> Result<(), NodeError> {
        if self.has_systemd(node, s).await? {
            s.sudo_ok(
                "stop redis-server@cluster",
                &format!("systemctl stop {}", systemd::SERVICE),
                None,
            )
            .await?;
        } else {
            s.sudo_ok(
                "stop redis-server (SIGTERM, wait until it exits; no systemd)",
                &noinit::stop(),
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// Whether the node runs systemd (`sd_booted()`), asked once per node and remembered until
    /// its session is dropped.
    async fn has_systemd(&self, node: &str, s: &Session) -> Result<bool, NodeError> {
        if let Some(b) = self.systemd.lock().await.get(node) {
            return Ok(*b);
        }
        let out = s.sudo(noinit::IS_SYSTEMD, None).await?;
        let b = out.status == 0;
        self.systemd.lock().await.insert(node.into(), b);
        Ok(b)
    }

    /// On a node without systemd, start Redis unless it runs (nothing else would: there is no
    /// init). A no-op under systemd, which starts it at boot.
    async fn start_without_init(&self, node: &str) -> Result<(), NodeError> {
        let s = self.session(node).await?;
        if !self.has_systemd(node, &s).await? {
            s.sudo_ok(
                "start redis-server as user redis (no systemd)",
                &noinit::start(),
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// Stopped nodes were started: on nodes without systemd start Redis (nothing else does),
    /// then wait (bounded) until the cluster is healthy with `n` nodes.
    pub async fn wait_healthy(&self, n: usize) -> Result<(), NodeError> {
        for node in self.spec.nodes.nodes.iter().map(|x| x.name.clone()) {
            self.start_without_init(&node).await?;
        }
        self.wait_cluster_healthy(n).await
    }

    /// Wait (bounded) until the node's Redis answers PING.
    async fn wait_ping(&self, node: &str, s: &Session) -> Result<(), NodeError> {
        let start = Instant::now();
        let bound = Duration::from_secs(120);
        loop {
            let out = s
                .sudo(&format!("{} PING", redis_cli(&self.spec)), self.stdin())
                .await?;
            if out.status == 0 && out.stdout_str().trim() == "PONG" {
                return Ok(());
            }
            if start.elapsed() > bound {
                return Err(NodeError::Timeout {
                    what: format!(
                        "Redis on node {node} to answer PING (last: {} {})",
                        out.stdout_str().trim(),
                        out.stderr_str().trim()
                    ),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Wait (bounded) until every node says cluster_state:ok, 16384 slots, `n` nodes known, sees
    /// every replica as a replica (right after `--cluster create`, gossip can still show a
    /// replica as a master without slots), and every replica's link to its master is up.
    async fn wait_cluster_healthy(&self, n: usize) -> Result<(), NodeError> {
        let replicas = n.saturating_sub(self.spec.nodes.masters as usize);
        let start = Instant::now();
        let bound = Duration::from_secs(180);
        let names: Vec<String> = self
            .spec
            .nodes
            .nodes
            .iter()
            .map(|x| x.name.clone())
            .collect();
        crate::progress::status(format!(
            "waiting for a healthy cluster ({n} nodes, 16384 slots, replica links up)"
        ));
        loop {
            let mut last = None;
            for node in &names {
                let s = self.session(node).await?;
                // CLUSTER INFO, then the replication section: a replica counts as healthy only
                // once its link to the master is up (it syncs a few seconds after create).
                let cli = redis_cli(&self.spec);
                let out = s
                    .sudo(
                        &format!("pw=\"$(cat)\"; printf %s \"$pw\" | {cli} CLUSTER INFO; echo '--replication--'; printf %s \"$pw\" | {cli} INFO replication; echo '--nodes--'; printf %s \"$pw\" | {cli} CLUSTER NODES"),
                        self.stdin(),
                    )
                    .await?;
                let text = out.stdout_str();
                let (info, rest) = text.split_once("--replication--").unwrap_or((&text, ""));
                let (replication, nodes) = rest.split_once("--nodes--").unwrap_or((rest, ""));
                let replica_down = replication.contains("role:slave")
                    && !replication.contains("master_link_status:up");
                let seen_replicas = parse::cluster_nodes(nodes)
                    .map(|v| v.iter().filter(|x| x.is_replica()).count())
                    .unwrap_or(0);
                match parse::cluster_info(info) {
                    Ok(_) if replica_down => {
                        last = Some(format!("{node}: replica link to its master is not up yet"))
                    }
                    Ok(_) if seen_replicas != replicas => {
                        last = Some(format!(
                            "{node}: sees {seen_replicas} replicas, want {replicas}"
                        ))
                    }
                    Ok(c)
                        if c.cluster_state == "ok"
                            && c.slots_assigned == 16384
                            && c.known_nodes as usize == n => {}
                    Ok(c) => {
                        last = Some(format!(
                            "{node}: cluster_state:{} slots_assigned:{} known_nodes:{}",
                            c.cluster_state, c.slots_assigned, c.known_nodes
                        ))
                    }
                    Err(_) => last = Some(format!("{node}: {}", info.trim())),
                }
            }
            let Some(last) = last else { return Ok(()) };
            if start.elapsed() > bound {
                return Err(NodeError::Timeout {
                    what: format!("a healthy cluster (last: {last})"),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub async fn create_cluster(&self, nodes: &[String], replicas: u32) -> Result<(), NodeError> {
        let first = nodes.first().ok_or_else(|| NodeError::Failed {
            node: "-".into(),
            what: "no nodes".into(),
        })?;
        let s = self.session(first).await?;
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| {
                self.node_spec(n)
                    .map(|x| format!("{}:{}", x.private_ip, self.spec.redis.port))
            })
            .collect::<Result<_, _>>()?;
        // redis-cli waits for the cluster to join with no bound of its own (a bus that cannot
        // connect, a node that goes away): bound it here.
        let script = format!(
            "REDISCLI_AUTH=\"$(cat)\" timeout {CLUSTER_CREATE_BOUND_SECS} {} --cluster create {} --cluster-replicas {replicas} --cluster-yes",
            redis_cli_command(&self.spec),
            addrs.join(" ")
        );
        crate::progress::status(format!(
            "waiting for redis-cli --cluster create on {first} (bounded: {CLUSTER_CREATE_BOUND_SECS}s)"
        ));
        s.sudo_ok("redis-cli --cluster create", &script, self.stdin())
            .await?;
        self.wait_cluster_healthy(nodes.len()).await
    }

    // ---- for verify --------------------------------------------------------------------------

    /// Look up every node's instance (one DescribeInstances), before concurrent work that would
    /// otherwise each look them up.
    pub(crate) async fn locate_all(&self) -> Result<(), NodeError> {
        self.refresh_instances().await
    }

    /// Open the node's session with one bounded attempt (no waiting for sshd to come up): a
    /// check reports a node that does not answer promptly. Like `redisctl redis-cli`, verify
    /// never pins: it only trusts a host key that apply pinned (locally or in the instance's
    /// tag), so evidence is never gathered from a host nobody vouched for.
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
    /// The host key must match the pinned one; a node whose key was never pinned (nothing in
    /// the state directory nor in the instance's tag) is refused, not pinned: only apply pins.
    pub(crate) async fn pinned_session(&self, node: &str) -> Result<Session, NodeError> {
        Ok(self
            .open(node, Reach::Once, Pinning::Required)
            .await?
            .session)
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
