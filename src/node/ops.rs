//! The node operations of a plan: install Redis, its TLS files, the ACL file, the config and
//! the service, file modes, restarts (with replicas, a master hands its slots over first),
//! cluster creation, and the waits for a node and for a healthy cluster: every wait is bounded
//! and says what it waits for.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use super::{NodeError, NodeRuntime, admin_cli, admin_cli_command, noinit};
use crate::pki;
use crate::redis::parse::ClusterNode;
use crate::redis::{conf, files, kernel, parse, systemd, users_acl};
use crate::ssh::{self, Session};

/// A node's view of the cluster as the nodes must agree on it: each node's role, the slots of
/// a master and the master of a replica (a node in handshake aside).
fn shape_of(view: &[ClusterNode]) -> String {
    let mut lines: Vec<String> = view
        .iter()
        .filter(|x| !x.flags.iter().any(|f| f == "handshake"))
        .map(|x| match &x.master_id {
            Some(m) if x.is_replica() => format!("{} replicates {m}", x.id),
            _ => format!("{} serves {:?}", x.id, x.slots),
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Between two looks at every node while waiting for a healthy cluster.
const HEALTH_POLL: Duration = Duration::from_millis(500);
/// How long a healthy cluster must stay so (every look in between healthy) before the wait
/// ends.
const HEALTH_HOLD: Duration = Duration::from_secs(1);

/// The start of a package installation's script: policy-rc.d keeps the stock service from ever
/// starting (no plaintext Redis, not even for a moment; removed on exit), and apt waits for a
/// lock held by unattended-upgrades or cloud-init, then fetches the index.
const APT_PRELUDE: &str = "set -e
export DEBIAN_FRONTEND=noninteractive
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get -o DPkg::Lock::Timeout=600 update -qq --error-on=any
";

/// After the packages are installed: the stock service stopped and disabled (redisctl runs
/// its own; a package's maintainer scripts may have enabled it), the directories root's.
fn after_install() -> String {
    format!(
        "if {}; then\nsystemctl disable --now {} >/dev/null 2>&1 || true\nelse\n{}fi\n{}",
        noinit::IS_SYSTEMD,
        systemd::STOCK_SERVICE,
        noinit::stock_off(),
        files::secure_script()
    )
}

impl NodeRuntime {
    pub async fn install_redis(&self, node: &str) -> Result<(), NodeError> {
        let s = self.session(node).await?;
        crate::progress::status(
            "apt-get install redis-server redis-tools (waits up to 600 s for the package lock)",
        );
        let script = format!(
            "{APT_PRELUDE}apt-get -o DPkg::Lock::Timeout=600 install -y -qq {} >/dev/null\n{}",
            self.packages(),
            after_install()
        );
        // A node with no way to the archive fails here: say where to look.
        s.sudo_ok(
            "install redis-server from the package archive (which the node reaches by network.egress: its public IP, or the NAT gateway)",
            &script,
            None,
        )
        .await?;
        Ok(())
    }

    /// The CA bundle of the rotation's stage on `node` and, with `cert`, a new key and
    /// certificate from the stage's signing CA, in one round trip; with `reload` (Redis runs),
    /// Redis re-reads them: a CONFIG SET of its tls-* paths reloads the TLS context (refused,
    /// and the old one kept, if a file does not load). No restart: the connections made (the
    /// cluster bus, replication, clients) stay up; new ones are made with the new files.
    /// The packages to install: pinned to `redis.package_version` when it names one (the
    /// version is checked by the spec's validation, and quoted all the same).
    fn packages(&self) -> String {
        match &self.spec.redis.package_version {
            Some(crate::spec::types::PackageVersion::Exact(v)) => format!(
                "{} {}",
                ssh::sh_quote(&format!("redis-server={v}")),
                ssh::sh_quote(&format!("redis-tools={v}"))
            ),
            _ => "redis-server redis-tools".to_string(),
        }
    }

    /// Another redis-server (and redis-tools) version on a node that has one: installed from
    /// the archive with the stock service kept off, then, with `restart`, Redis restarted
    /// onto it as a configuration change restarts it (a master first hands its slots to a
    /// replica; then the wait for a healthy cluster). Data stays on disk (AOF/RDB) across it.
    pub async fn upgrade_redis(
        &self,
        node: &str,
        version: &str,
        restart: bool,
    ) -> Result<(), NodeError> {
        let s = self.session(node).await?;
        crate::progress::status(format!(
            "{node}: apt-get install redis-server={version} redis-tools={version}"
        ));
        // The stock service stays off, as install leaves it (a package's maintainer scripts
        // may enable it again); the directories stay root's (the statoverride install made).
        let script = format!(
            "{APT_PRELUDE}apt-get -o DPkg::Lock::Timeout=600 install -y -qq --allow-downgrades -o Dpkg::Options::=--force-confold {} {} >/dev/null\n{}",
            ssh::sh_quote(&format!("redis-server={version}")),
            ssh::sh_quote(&format!("redis-tools={version}")),
            after_install()
        );
        s.sudo_ok(
            &format!("install redis-server {version} from the package archive"),
            &script,
            None,
        )
        .await?;
        if restart {
            self.restart_and_wait(node, &s).await?;
        }
        Ok(())
    }

    /// The OS's pending updates on `node`: the index fetched, redis-server and redis-tools
    /// held at their version (`redis.package_version` moves them, not this), `apt-get upgrade`
    /// with the configuration files kept, the holds released on every exit path. When a
    /// package changed and `restart`, Redis is restarted onto the new libraries as a
    /// configuration change restarts it (a master hands its slots over first). A kernel update
    /// is installed but not booted: the step says so (`/var/run/reboot-required`).
    pub async fn update_os(&self, node: &str, restart: bool) -> Result<(), NodeError> {
        let s = self.session(node).await?;
        crate::progress::status(format!(
            "{node}: apt-get upgrade (Redis's own packages held)"
        ));
        let script = "set -e
export DEBIAN_FRONTEND=noninteractive
apt-mark hold redis-server redis-tools >/dev/null
trap 'apt-mark unhold redis-server redis-tools >/dev/null' EXIT
apt-get -o DPkg::Lock::Timeout=600 update -qq --error-on=any
before=$(dpkg-query -W -f='${Package} ${Version}\\n' | sha256sum)
apt-get -o DPkg::Lock::Timeout=600 upgrade -y -qq -o Dpkg::Options::=--force-confold >/dev/null
after=$(dpkg-query -W -f='${Package} ${Version}\\n' | sha256sum)
if [ \"$before\" = \"$after\" ]; then echo changed=no; else echo changed=yes; fi
if [ -f /var/run/reboot-required ]; then echo reboot=yes; fi
";
        let out = s
            .sudo_ok(
                "install the OS's pending updates (apt-get upgrade)",
                script,
                None,
            )
            .await?;
        let said = out.stdout_str();
        if said.contains("reboot=yes") {
            tracing::warn!(
                "{node}: an update needs a reboot (/var/run/reboot-required); redisctl does not reboot nodes: reboot it by hand, one node at a time"
            );
            crate::progress::status(format!(
                "{node}: an update needs a reboot; redisctl does not reboot nodes"
            ));
        }
        if restart && said.contains("changed=yes") {
            self.restart_and_wait(node, &s).await?;
        }
        Ok(())
    }

    pub async fn install_tls(&self, node: &str, reload: bool, cert: bool) -> Result<(), NodeError> {
        let ca = self.ca().await?;
        let n = self.node_spec(node)?;
        let bundle = ca.node_bundle();
        let issued = if cert {
            Some(
                ca.signer()
                    .issue_node(
                        &n.name,
                        &pki::node_sans(n.private_ip),
                        SystemTime::now(),
                        self.spec.tls.cert_days,
                    )
                    .map_err(|e| NodeError::Failed {
                        node: node.into(),
                        what: format!("cannot issue its certificate: {e}"),
                    })?,
            )
        } else {
            None
        };
        let s = self.session(node).await?;
        let mut files: Vec<(&crate::redis::NodeFile, &[u8])> =
            vec![(&conf::CA_CERT, bundle.as_bytes())];
        if let Some(c) = &issued {
            files.push((&conf::NODE_KEY, c.key_pem.expose().as_bytes()));
            files.push((&conf::NODE_CERT, c.cert_pem.as_bytes()));
        }
        // One round trip: the directories made root's, then the files.
        s.upload_all(
            if cert {
                "write the CA bundle, the node key and certificate"
            } else {
                "write the CA bundle"
            },
            &files::secure_script(),
            &files,
            "",
        )
        .await?;
        if reload {
            crate::progress::status(format!("{node}: Redis reloads its TLS files"));
            let set = if cert {
                format!(
                    "CONFIG SET tls-ca-cert-file {} tls-cert-file {} tls-key-file {}",
                    conf::CA_CERT.path,
                    conf::NODE_CERT.path,
                    conf::NODE_KEY.path
                )
            } else {
                format!("CONFIG SET tls-ca-cert-file {}", conf::CA_CERT.path)
            };
            self.cli_batch_ok(node, "reload the TLS files (CONFIG SET tls-*)", &[set])
                .await?;
        }
        Ok(())
    }

    /// The ACL file on `node`; with `reload`, Redis running, in one round trip: each user's
    /// rules checked against the live server first (a file Redis refuses would also be
    /// refused at the next restart), the directories made root's, the file written
    /// atomically, then the running server's users made the file's without closing the
    /// connections of users that stay ([`users_acl::live_load_script`]).
    pub async fn write_acl(&self, node: &str, reload: bool) -> Result<(), NodeError> {
        let content = self.file(node, users_acl::USERS_ACL).await?;
        let s = self.session(node).await?;
        if !reload {
            s.upload_all(
                "write /etc/redis/users.acl",
                &files::secure_script(),
                &[(&users_acl::USERS_ACL, content.as_bytes())],
                "",
            )
            .await?;
            return Ok(());
        }
        let cli = format!("REDISCLI_AUTH=\"$pw\" {}", admin_cli_command(&self.spec));
        let password = self.stdin().unwrap_or_default();
        // The password on the first line (`read` takes it and no more, so that the file's
        // content stays on stdin for the upload), then the file.
        let mut script = String::from("set -eu\nIFS= read -r pw\n");
        // Every user's dry run in one redis-cli connection (its commands in a here-document,
        // as redis-cli reads them: `sdssplitargs` quoting), then one DELUSER of the throwaway
        // users; an answer per command, in order. No secret is in them (the probes have no
        // password).
        let mut cmds = String::new();
        let mut dry_users = Vec::new();
        for u in self.spec.users.iter() {
            let args: Vec<String> = users_acl::dry_run_args(u)
                .iter()
                .map(|a| crate::redis::conf::quote(a))
                .collect();
            cmds.push_str(&args.join(" "));
            cmds.push('\n');
            dry_users.push(users_acl::dry_run_user(&u.name));
        }
        let mut cleanup = vec!["ACL".to_string(), "DELUSER".into()];
        cleanup.extend(dry_users);
        cmds.push_str(
            &cleanup
                .iter()
                .map(|a| crate::redis::conf::quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        );
        cmds.push('\n');
        let names: Vec<&str> = self.spec.users.iter().map(|u| u.name.as_str()).collect();
        script.push_str(&format!(
            "out=$({cli} 2>&1 <<'REDISCTL_DRY_RUN'\n{cmds}REDISCTL_DRY_RUN\n) || true\n\
             case \"$out\" in *WRONGPASS*|*NOAUTH*) echo \"Redis on the node refuses the password of the operator user {op}: $out\" >&2; exit 1;; esac\n\
             i=0\n\
             for u in {users}; do\n\
               i=$((i+1)); a=$(printf '%s\\n' \"$out\" | sed -n \"${{i}}p\")\n\
               [ \"$a\" = OK ] || {{ echo \"the ACL rules of user $u are refused by Redis: $a\" >&2; exit 1; }}\n\
             done\n",
            op = self.spec.operator_user().name,
            users = names.join(" "),
        ));
        script.push_str(&files::secure_script());
        script.push('\n');
        script.push_str(&ssh::upload_script(&users_acl::USERS_ACL));
        script.push_str(&users_acl::live_load_script(
            &cli,
            users_acl::USERS_ACL.path,
        ));
        let mut input = password.to_vec();
        input.push(b'\n');
        input.extend_from_slice(content.as_bytes());
        s.sudo_ok(
            "check the ACL rules, write /etc/redis/users.acl, set the users live",
            &script,
            Some(&input),
        )
        .await?;
        Ok(())
    }

    /// The kernel settings' files, then their values put in force (`sysctl -p`, and
    /// `systemd-tmpfiles --create` or, without systemd, the THP mode written), in one round
    /// trip. No restart: forks and new connections follow the values in force.
    pub async fn apply_kernel(&self, node: &str) -> Result<(), NodeError> {
        let sysctl = self.file(node, kernel::SYSCTL).await?;
        let tmpfiles = self.file(node, kernel::TMPFILES).await?;
        let s = self.session(node).await?;
        let systemd = self.has_systemd(node, &s).await?;
        s.upload_all(
            "write the kernel settings (sysctl.d, tmpfiles.d) and put them in force",
            "",
            &[
                (&kernel::SYSCTL, sysctl.as_bytes()),
                (&kernel::TMPFILES, tmpfiles.as_bytes()),
            ],
            &kernel::apply_script(systemd),
        )
        .await?;
        Ok(())
    }

    /// Every file redisctl writes that exists on `node` gets its mode and owner back.
    pub async fn set_file_modes(&self, node: &str) -> Result<(), NodeError> {
        let s = self.session(node).await?;
        // The directories first: then no one but root can swap a file for a link under the
        // chown and chmod below (and a link already there was refused).
        let mut script = format!("set -e\n{}", files::secure_script());
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

    /// A Redis started by hand taken over with its data (`plan/nodes/takeover.rs`): the
    /// hand-started server `pid` stopped with SIGTERM and waited for (only while that pid is
    /// still a redis-server working in the data directory: after a kill of this step, or a
    /// reboot, it is gone and the rest is done again); the data directory made the redis
    /// user's (`chown -R -P`: a symbolic link is changed itself, never followed); `dump.rdb`
    /// renamed to the file redisctl's configuration names, unless that one exists.
    pub async fn take_over_redis(&self, node: &str, pid: Option<u32>) -> Result<(), NodeError> {
        let s = self.session(node).await?;
        let dir = ssh::sh_quote(conf::DATA_DIR);
        let mut script = String::from("set -e\n");
        if let Some(pid) = pid {
            script.push_str(&format!(
                "p=/proc/{pid}; c=; read -r c < $p/comm 2>/dev/null || true\n\
                 if [ \"$c\" = redis-server ] && [ \"$(readlink $p/cwd 2>/dev/null)\" = {dir} ]; then\n\
                   kill -TERM {pid}\n\
                   i=0; while [ -d $p ]; do\n\
                     i=$((i+1)); if [ $i -gt 1200 ]; then echo 'redis-server (pid {pid}) did not exit within 120 s of SIGTERM: it may still be saving a large dataset; look at its log, wait for it to exit, then apply again' >&2; exit 3; fi\n\
                     sleep 0.1\n\
                   done\n\
                 fi\n"
            ));
        }
        script.push_str(&format!(
            "chown -R -P redis:redis {dir}\n\
             if [ -f {dir}/dump.rdb ] && [ ! -e {dir}/{rdb} ]; then mv {dir}/dump.rdb {dir}/{rdb}; fi\n",
            rdb = conf::RDB_FILE
        ));
        s.sudo_ok(
            "stop the Redis started by hand and make its data the redis user's",
            &script,
            None,
        )
        .await?;
        Ok(())
    }

    /// Settings changed at runtime put back, one `CONFIG SET` each, in one connection (the
    /// values are the spec's, never a secret).
    pub async fn set_runtime(
        &self,
        node: &str,
        settings: &[(String, String)],
    ) -> Result<(), NodeError> {
        let cmds: Vec<String> = settings
            .iter()
            .map(|(k, v)| format!("CONFIG SET {k} \"{v}\""))
            .collect();
        self.cli_batch_ok(
            node,
            "put back settings changed at runtime (CONFIG SET)",
            &cmds,
        )
        .await
    }

    pub async fn write_config(
        &self,
        node: &str,
        restart: bool,
        live: bool,
    ) -> Result<(), NodeError> {
        let content = self.file(node, conf::CONF).await?;
        let s = self.session(node).await?;
        // Live (the replication login, which CONFIG SET changes): the running node first, then
        // the file. A kill between the two leaves the file as it was, so the next plan sets the
        // login again; the other order could leave the file saying done while the node still
        // logs in to its master with the password being replaced (found by CI: a replication
        // password rotation killed 20 ms into phase 6, then a replica's link down for good once
        // the rotation ended).
        if live {
            self.set_replication_login(node, &s).await?;
        }
        // One round trip: the directories made root's, the configuration (and, under systemd,
        // the drop-in, then the unit enabled; without an init, Redis started unless it runs).
        let drop_in = systemd::render_drop_in();
        if self.has_systemd(node, &s).await? {
            let mut enable = String::new();
            for argv in systemd::enable_commands() {
                enable.push_str(&argv.join(" "));
                enable.push_str(" >/dev/null 2>&1\n");
            }
            s.upload_all(
                "write the configuration and the drop-in, enable redis-server@cluster",
                &files::secure_script(),
                &[
                    (&conf::CONF, content.as_bytes()),
                    (&systemd::DROP_IN, drop_in.as_bytes()),
                ],
                &enable,
            )
            .await?;
        } else {
            // No init system: nothing to enable; start it unless it runs.
            let start = if restart {
                String::new()
            } else {
                noinit::start()
            };
            s.upload_all(
                "write the configuration, start redis-server as user redis (no systemd)",
                &files::secure_script(),
                &[(&conf::CONF, content.as_bytes())],
                &start,
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

    /// `masteruser`/`masterauth` set on the running node as the file now says (the replication
    /// login with replicas, empty without); the password on stdin, never in an argument.
    async fn set_replication_login(&self, node: &str, s: &Session) -> Result<(), NodeError> {
        let ca = self.ca().await?;
        let secret = crate::redis::files::replication_secret(&self.spec, &ca);
        let user = if secret.is_some() {
            crate::redis::users_acl::REPLICATION_USER
        } else {
            ""
        };
        let mut stdin = secret
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        stdin.push('\n');
        stdin.push_str(self.operator_password.expose());
        let cli = admin_cli_command(&self.spec);
        let script = format!(
            "IFS= read -r rp; pw=\"$(cat)\"\nu=$(REDISCLI_AUTH=\"$pw\" {cli} CONFIG SET masteruser {}) || exit 1\na=$(printf %s \"$rp\" | REDISCLI_AUTH=\"$pw\" {cli} -x CONFIG SET masterauth) || exit 1\necho \"$u $a\"\n",
            crate::ssh::sh_quote(user)
        );
        crate::progress::status(format!(
            "setting the replication login on {node} (CONFIG SET)"
        ));
        let out = s
            .sudo_ok(
                "CONFIG SET masteruser/masterauth",
                &script,
                Some(stdin.as_bytes()),
            )
            .await?;
        if out.stdout_str().trim() != "OK OK" {
            return Err(NodeError::Failed {
                node: node.into(),
                what: format!(
                    "CONFIG SET masteruser/masterauth answered: {}",
                    out.stdout_str().trim()
                ),
            });
        }
        Ok(())
    }

    /// Restarts Redis on `node` and waits until it answers and the cluster is healthy. A master
    /// with a replica hands its slots over first (CLUSTER FAILOVER on the replica), so clients
    /// see no outage; once the cluster is healthy again it takes them back, so that a rolling
    /// restart leaves every master where it was (in its AZ: `plan/nodes/topology.rs`).
    async fn restart_and_wait(&self, node: &str, s: &Session) -> Result<(), NodeError> {
        let mut handed = false;
        if self.spec.nodes.replicas_per_master > 0 {
            crate::progress::status(format!(
                "failover: a replica of {node} takes over its slots"
            ));
            handed = self.failover_away(node, false).await?;
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
        self.wait_members_healthy().await?;
        if handed {
            self.take_over(node).await?;
            self.wait_members_healthy().await?;
        }
        Ok(())
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
    pub(super) async fn start_without_init(&self, node: &str) -> Result<(), NodeError> {
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
    pub(super) async fn wait_ping(&self, node: &str, s: &Session) -> Result<(), NodeError> {
        let start = Instant::now();
        let bound = Duration::from_secs(120);
        loop {
            let out = s
                .sudo(&format!("{} PING", admin_cli(&self.spec)), self.stdin())
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
    /// every replica as a replica (right after the formation, gossip can still show a
    /// replica as a master without slots), and every replica's link to its master is up.
    pub(super) async fn wait_cluster_healthy(&self, n: usize) -> Result<(), NodeError> {
        self.wait_healthy_as(Some(n)).await
    }

    /// Wait (bounded) until every node of the spec that is a member of the cluster (a node not
    /// joined yet, alone, is passed over) says cluster_state:ok with 16384 slots and, for a
    /// replica, its link to its master up, whatever the number of nodes and replicas: the
    /// cluster is healthy again after a node's restart, also while this apply's phase 7 is
    /// still to add nodes to it or take nodes out.
    pub(super) async fn wait_members_healthy(&self) -> Result<(), NodeError> {
        self.wait_healthy_as(None).await
    }

    /// `exact`: the number of nodes every node must know (and of replicas, that less the
    /// spec's masters); `None`: members only, any number.
    async fn wait_healthy_as(&self, exact: Option<usize>) -> Result<(), NodeError> {
        let n = exact.unwrap_or(0);
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
        crate::progress::status(match exact {
            Some(n) => {
                format!("waiting for a healthy cluster ({n} nodes, 16384 slots, replica links up)")
            }
            None => "waiting for a healthy cluster (16384 slots, replica links up)".to_string(),
        });
        let mut healthy_since: Option<Instant> = None;
        loop {
            // Every node at once: a round costs one round trip, not one per node.
            let verdicts = futures_util::future::join_all(
                names
                    .iter()
                    .map(|node| self.health_of(node, exact.is_some(), replicas, n)),
            )
            .await;
            let mut last = None;
            let mut shapes = BTreeSet::new();
            for v in verdicts {
                let (why, shape) = v?;
                if let Some(why) = why {
                    last = Some(why);
                }
                shapes.extend(shape);
            }
            // Every member sees the same shape (which node serves which slots, which replicates
            // which): right after a replica is re-pointed or a node forgotten, the others learn
            // it by gossip, and a plan made from a node that has not yet would undo it.
            if last.is_none() && shapes.len() > 1 {
                last = Some(format!(
                    "the nodes do not agree yet on the cluster's shape ({} views)",
                    shapes.len()
                ));
            }
            let Some(last) = last else {
                // Healthy, and still so a moment later: a node that just came back can say ok
                // and then, its bus links not all up yet, find itself in a minority (seen in
                // CI: verify right after an apply found one node's cluster_state:fail).
                match healthy_since {
                    Some(t) if t.elapsed() >= HEALTH_HOLD => return Ok(()),
                    Some(_) => {}
                    None => healthy_since = Some(Instant::now()),
                }
                tokio::time::sleep(HEALTH_POLL).await;
                continue;
            };
            healthy_since = None;
            if start.elapsed() > bound {
                return Err(NodeError::Timeout {
                    what: format!("a healthy cluster (last: {last})"),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// What keeps `node` from being healthy (see [`Self::wait_healthy_as`]), or None. `exact`:
    /// it must know `n` nodes and see `replicas` replicas.
    async fn health_of(
        &self,
        node: &str,
        exact: bool,
        replicas: usize,
        n: usize,
    ) -> Result<(Option<String>, Option<String>), NodeError> {
        // CLUSTER INFO, the replication section (a replica counts as healthy only once its
        // link to the master is up: it syncs a few seconds after create) and CLUSTER NODES,
        // over one connection, ECHO marking where each answer ends.
        let out = self
            .cli_batch(
                node,
                &[
                    "CLUSTER INFO".into(),
                    "ECHO --replication--".into(),
                    "INFO replication".into(),
                    "ECHO --nodes--".into(),
                    "CLUSTER NODES".into(),
                ],
            )
            .await?;
        let text = out.stdout_str();
        let (info, rest) = text.split_once("--replication--").unwrap_or((&text, ""));
        let (replication, nodes) = rest.split_once("--nodes--").unwrap_or((rest, ""));
        let replica_down =
            replication.contains("role:slave") && !replication.contains("master_link_status:up");
        let view = parse::cluster_nodes(nodes).unwrap_or_default();
        let seen_replicas = view.iter().filter(|x| x.is_replica()).count();
        let cluster = parse::cluster_info(info);
        let member = cluster.as_ref().is_ok_and(|c| c.known_nodes > 1);
        let verdict = match cluster {
            // Not a member yet (a new node phase 7 joins later).
            Ok(c) if !exact && c.known_nodes <= 1 && c.slots_assigned == 0 => None,
            Ok(_) if replica_down => {
                Some(format!("{node}: replica link to its master is not up yet"))
            }
            Ok(_) if exact && seen_replicas != replicas => Some(format!(
                "{node}: sees {seen_replicas} replicas, want {replicas}"
            )),
            Ok(c)
                if c.cluster_state == "ok"
                    && c.slots_assigned == 16384
                    && (!exact || c.known_nodes as usize == n) =>
            {
                None
            }
            Ok(c) => Some(format!(
                "{node}: cluster_state:{} slots_assigned:{} known_nodes:{}",
                c.cluster_state, c.slots_assigned, c.known_nodes
            )),
            Err(_) => Some(format!("{node}: {}", info.trim())),
        };
        Ok((verdict, member.then(|| shape_of(&view))))
    }
}
