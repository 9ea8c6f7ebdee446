//! Observation: what the planner needs to know of each node, gathered by one sudo script per
//! node over a session of its own (closed afterwards), all nodes concurrently.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::connect::{Opened, Reach};
use super::{NodeError, NodeRuntime, admin_cli_command, noinit};
use crate::aws::NodeInstance;
use crate::observed::{
    ClusterView, InitSystem, NodeFacts, NodeObservation, Observed, OperatorAuth, tags,
};
use crate::redis::{conf, files, kernel, parse, systemd, users_acl};
use crate::ssh::{self, SshError};

impl NodeRuntime {
    /// Facts of every running node of the spec, concurrently. A node that does not answer is
    /// `Unreachable`, with the reason. With `wait` (apply), a node whose sshd is not up yet (it
    /// was just launched or started) is waited for, up to `ssh.ready_timeout`.
    pub async fn observe(
        self: &Arc<Self>,
        observed: &Observed,
        wait: bool,
    ) -> BTreeMap<String, NodeObservation> {
        // Only a node launched or started less than `ssh.ready_timeout` ago may still be
        // booting: one that has run longer and does not answer is unreachable, and waiting the
        // whole timeout for it (a route or rule gone) would only delay the plan.
        let (ready, now) = (self.spec.ssh.ready_timeout, std::time::SystemTime::now());
        let running: Vec<(String, bool)> = observed
            .instances
            .iter()
            .filter(|i| i.state == "running")
            .filter_map(|i| {
                Some((
                    i.tags.get(tags::NODE)?.clone(),
                    wait && booting(i, ready, now),
                ))
            })
            .filter(|(n, _)| self.spec.nodes.nodes.iter().any(|x| &x.name == n))
            .collect();
        // The instances are known already: no DescribeInstances per node.
        // (`observed.instances` holds only instances in the cluster's network.)
        {
            let found = observed
                .instances
                .iter()
                .filter(|i| i.state == "running")
                .filter_map(|i| {
                    let node = i.tags.get(tags::NODE)?;
                    Some(NodeInstance {
                        node: node.clone(),
                        id: i.id.clone(),
                        private_ip: i.private_ip,
                        public_ip: i.public_ip,
                        host_key_fp: i.tags.get(tags::HOST_KEY).cloned(),
                    })
                })
                .collect::<Vec<_>>();
            *self.instances.lock().await = self.claims(found);
        }
        let mut set = tokio::task::JoinSet::new();
        for (node, wait) in running {
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
}

/// Whether the instance was (re)started less than `ready` before `now` (EC2's `LaunchTime` is
/// the last start); without a launch time, it may be.
fn booting(
    i: &crate::observed::Instance,
    ready: std::time::Duration,
    now: std::time::SystemTime,
) -> bool {
    i.launch_time
        .as_deref()
        .and_then(|t| crate::aws::seconds_since(t, now))
        .is_none_or(|age| age < ready.as_secs() as i64)
}

impl NodeRuntime {
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
        } = self.open(node, reach).await?;
        let paths = [
            conf::CONF.path,
            systemd::DROP_IN.path,
            users_acl::USERS_ACL.path,
            conf::CA_CERT.path,
            kernel::SYSCTL.path,
            kernel::TMPFILES.path,
        ];
        // Few processes: each costs milliseconds on a busy node, and this runs on every node at
        // every plan (one dpkg-query, one sha256sum, one find, one systemctl).
        let mut script = String::from("set +e\n");
        script.push_str("s=$(dpkg-query -W -f='${Status}|${Version}' redis-server 2>/dev/null)\ncase \"${s%%|*}\" in *'install ok installed') echo installed=yes;; *) echo installed=no;; esac\necho \"version=${s#*|}\"\n");
        // The archive's newest, only when the spec follows it (the index is fetched first).
        if self.spec.redis.package_version == Some(crate::spec::types::PackageVersion::Latest) {
            script.push_str("apt-get -o DPkg::Lock::Timeout=60 update -qq >/dev/null 2>&1\necho \"candidate=$(apt-cache policy redis-server 2>/dev/null | sed -n 's/^ *Candidate: //p')\"\n");
        }
        // `sha256sum` of the regular files among them (a directory or a missing path prints
        // no line: no hash), read back by path.
        let quoted: Vec<String> = paths.iter().map(|p| ssh::sh_quote(p)).collect();
        script.push_str(&format!(
            "echo '--sums--'; sha256sum {} 2>/dev/null; echo '--end--'\n",
            quoted.join(" ")
        ));
        script.push_str(&format!(
            "[ -f {} ] && echo key=yes || echo key=no\n",
            conf::NODE_KEY.path
        ));
        script.push_str(&files::stat_script());
        script.push_str(&kernel::observe_script());
        // With systemd, the units' states (one `systemctl show`: a block per unit, in the order
        // given, properties in systemd's order); without it (see `noinit`), the processes and
        // the init script's runlevel links, in the same words.
        script.push_str(&format!(
            "if {}; then\necho init=systemd\nactive=\nn=0\nunits=$(systemctl show -p ActiveState -p UnitFileState {} {} 2>/dev/null)\n\
             while IFS='=' read -r k v; do\n\
               case \"$k\" in\n\
                 '') n=$((n+1));;\n\
                 ActiveState) if [ $n = 0 ]; then active=$v; echo svc_active=$v; else echo stock_active=$v; fi;;\n\
                 UnitFileState) if [ $n = 0 ]; then echo svc_enabled=$v; else echo stock_enabled=$v; fi;;\n\
               esac\n\
             done <<EOF\n$units\nEOF\n\
             redis_active() {{ [ \"$active\" = active ]; }}\n",
            noinit::IS_SYSTEMD,
            systemd::SERVICE,
            systemd::STOCK_SERVICE,
        ));
        script.push_str(&format!(
            "else\necho init=none\nredis_active() {{ {} >/dev/null 2>&1; }}\necho svc_enabled=\nredis_active && echo svc_active=active\n{} && echo stock_enabled=enabled\n{} >/dev/null 2>&1 && echo stock_active=active\nfi\n",
            noinit::is_active(),
            noinit::STOCK_ENABLED,
            noinit::stock_is_active()
        ));
        // redis-server processes outside redisctl's unit (systemd hosts): the process names
        // are read with the shell's own `read`; the few that are redis-server cost a process
        // or three each. Forks of the unit's server share its cgroup and are skipped.
        script.push_str(&format!(
            "if {}; then for p in /proc/[0-9]*; do\n\
               c=; read -r c < \"$p/comm\" 2>/dev/null\n\
               [ \"$c\" = redis-server ] || continue\n\
               case \"$(cat \"$p/cgroup\" 2>/dev/null)\" in *redis-server@*) continue;; esac\n\
               echo \"foreign=${{p#/proc/}} $(stat -c %U \"$p\" 2>/dev/null) $(readlink \"$p/cwd\" 2>/dev/null)\"\n\
             done; fi\n",
            noinit::IS_SYSTEMD
        ));
        script.push_str(&format!(
            "[ -s {}/nodes-{}.conf ] && echo state_file=yes\n",
            conf::DATA_DIR,
            self.spec.redis.port
        ));
        // While redisctl's Redis does not run: the cluster as its state file says it was (a
        // Redis started by hand, or stopped, that redisctl starts), and the first file in the
        // data directory that is not the redis user's (a Redis run as root leaves its files
        // root's: redis-server could not write them under redisctl's unit).
        script.push_str(&format!(
            "if ! redis_active; then\n\
               echo '--statefile--'; cat {dir}/nodes-{port}.conf 2>/dev/null; echo '--end--'\n\
               o=$(find {dir} -mindepth 1 ! -user redis -print -quit 2>/dev/null); [ -n \"$o\" ] && echo \"foreign_owner=$o\"\n\
             fi\n",
            dir = conf::DATA_DIR,
            port = self.spec.redis.port
        ));
        script.push_str(&format!(
            "echo '--cert--'; cat {} 2>/dev/null; echo '--end--'\n",
            conf::NODE_CERT.path
        ));
        // The cluster's view in one redis-cli connection (CLUSTER INFO, CLUSTER NODES, DBSIZE,
        // the replication section), ECHO marking where each answer ends. The operator password
        // is on the first line of stdin; while it is rotated, the previous one on the second,
        // tried when Redis refuses the first (auth=previous), so that the apply that starts the
        // rotation can still log in.
        script.push_str(&format!(
            "if redis_active; then IFS= read -r pw; IFS= read -r prev || true\n\
             q() {{ printf 'ECHO --cluster--\\nCLUSTER INFO\\nECHO --end--\\nECHO --nodes--\\nCLUSTER NODES\\nECHO --end--\\nECHO --keys--\\nDBSIZE\\nECHO --end--\\nECHO --replication--\\nINFO replication\\nECHO --end--\\nECHO --config--\\nCONFIG GET {live}\\nECHO --end--\\n' | REDISCLI_AUTH=\"$1\" {cli} 2>&1; }}\n\
             out=$(q \"$pw\")\n\
             case \"$out\" in *WRONGPASS*)\n\
               if [ -n \"$prev\" ] && out2=$(q \"$prev\") && case \"$out2\" in *WRONGPASS*) false;; esac; then out=$out2; echo auth=previous; else echo auth=refused; fi;;\n\
             esac\n\
             printf '%s\\n' \"$out\"\n\
             if command -v ss >/dev/null; then echo '--listen--'; ss -Hltnp 2>/dev/null | grep '\"redis-server\"' | awk '{{print $4}}'; echo '--end--'; fi\n\
             fi\n",
            cli = admin_cli_command(&self.spec),
            live = conf::LIVE_KEYS.join(" ")
        ));
        let mut input = self.operator_password.expose().as_bytes().to_vec();
        input.push(b'\n');
        if let Some(prev) = &self.operator_previous {
            input.extend_from_slice(prev.expose().as_bytes());
            input.push(b'\n');
        }
        let out = session.sudo(&script, Some(&input)).await?;
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
        let sums = section("sums").unwrap_or_default();
        let mut files = BTreeMap::new();
        for p in paths {
            let h = sums.lines().find_map(|l| {
                let (h, path) = l.split_once("  ")?;
                (path == p).then(|| h.to_string())
            });
            files.insert(p.to_string(), h);
        }
        let modes = files::parse_modes(&text);
        let operator_auth = match value("auth").as_str() {
            "previous" => {
                self.use_previous
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                OperatorAuth::Previous
            }
            "refused" => OperatorAuth::Refused,
            _ => OperatorAuth::Current,
        };
        let cluster = section("cluster")
            .and_then(|t| parse::cluster_info(&t).ok())
            .map(|c| {
                let all = section("nodes")
                    .and_then(|t| parse::cluster_nodes(&t).ok())
                    .unwrap_or_default();
                let myself = all.iter().find(|n| n.is_myself()).cloned();
                let members = all.iter().map(parse::ClusterNode::member).collect();
                ClusterView {
                    state: c.cluster_state.clone(),
                    slots_assigned: c.slots_assigned,
                    known_nodes: c.known_nodes,
                    size: c.size,
                    own_slots: myself.as_ref().map(|m| m.slot_count()),
                    replica: myself.as_ref().is_some_and(|m| m.is_replica()),
                    keys: section("keys").and_then(|t| t.trim().parse().ok()),
                    link_up: section("replication").and_then(|t| {
                        t.lines()
                            .find_map(|l| l.trim().strip_prefix("master_link_status:"))
                            .map(|v| v == "up")
                    }),
                    members,
                }
            });
        Ok(NodeFacts {
            host_key_fingerprint: ssh::fingerprint(&host_key),
            host_key,
            first_contact,
            redis_installed: value("installed") == "yes",
            redis_version: Some(value("version")).filter(|v| !v.is_empty()),
            redis_candidate: Some(value("candidate")).filter(|v| !v.is_empty() && v != "(none)"),
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
            kernel: kernel::parse(&text),
            cluster_state_file: value("state_file") == "yes",
            operator_auth,
            foreign_redis: parse_foreign(&text),
            runtime: section("config").map(|config| crate::observed::RuntimeView {
                config: config_pairs(&config),
                // (An empty section: no socket of redis-server's, which `ss` shows as nothing.
                // Sorted: `ss` lists sockets in no fixed order, and a plan must not change with it.)
                listeners: text.contains("--listen--\n").then(|| {
                    let mut l: Vec<String> = section("listen")
                        .unwrap_or_default()
                        .lines()
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty())
                        .collect();
                    l.sort();
                    l.dedup();
                    l
                }),
            }),
            state_file_view: section("statefile").and_then(|t| state_file_view(&t)),
            data_not_redis: Some(value("foreign_owner")).filter(|v| !v.is_empty()),
        })
    }
}

/// The cluster as a node's state file (`nodes-<port>.conf`) says it was when its Redis last
/// wrote it: the lines of `CLUSTER NODES` and a last `vars` line. `None` when the file is
/// missing or not one Redis wrote. What Redis would say at once (state, keys, links) is not in
/// the file: `state` is empty, `keys` and `link_up` unknown.
fn state_file_view(text: &str) -> Option<ClusterView> {
    let lines: String = text
        .lines()
        .filter(|l| !l.starts_with("vars "))
        .map(|l| format!("{l}\n"))
        .collect();
    let all = parse::cluster_nodes(&lines).ok()?;
    let myself = all.iter().find(|n| n.is_myself())?.clone();
    let masters: Vec<&parse::ClusterNode> = all
        .iter()
        .filter(|n| !n.is_replica() && n.slot_count() > 0)
        .collect();
    Some(ClusterView {
        state: String::new(),
        slots_assigned: masters.iter().map(|n| n.slot_count()).sum(),
        known_nodes: all.len() as u32,
        size: masters.len() as u32,
        own_slots: Some(myself.slot_count()),
        replica: myself.is_replica(),
        keys: None,
        link_up: None,
        members: all.iter().map(parse::ClusterNode::member).collect(),
    })
}

/// `CONFIG GET`'s answer as redis-cli prints it: a name line, then its value line (possibly
/// empty). An error (`NOPERM`, `ERR`) is no pair.
fn config_pairs(text: &str) -> BTreeMap<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    if lines
        .first()
        .is_some_and(|l| l.starts_with("ERR") || l.starts_with("NOPERM"))
    {
        return BTreeMap::new();
    }
    lines
        .chunks(2)
        .filter_map(|p| match p {
            [k, v] => Some((k.trim().to_string(), v.trim().to_string())),
            _ => None,
        })
        .collect()
}

/// The `foreign=PID USER DIR` lines of the observation script.
fn parse_foreign(text: &str) -> Vec<crate::observed::ForeignRedis> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("foreign=")?.splitn(3, ' ');
            Some(crate::observed::ForeignRedis {
                pid: parts.next()?.parse().ok()?,
                user: parts.next().unwrap_or("").to_string(),
                dir: parts.next().unwrap_or("").trim().to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::booting;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn launched(at: Option<&str>) -> crate::observed::Instance {
        crate::observed::Instance {
            instance_type: "t2.micro".into(),
            launch_time: at.map(String::from),
            ..crate::observed::Instance::bare("i-1", "running")
        }
    }

    #[test]
    fn only_a_node_started_within_the_ready_timeout_is_waited_for() {
        let ready = Duration::from_secs(300);
        // 2026-12-06T05:27:17Z
        let start = UNIX_EPOCH + Duration::from_secs(1_796_534_837);
        let i = launched(Some("2026-12-06T05:27:17Z"));
        assert!(booting(&i, ready, start + Duration::from_secs(5)));
        assert!(!booting(&i, ready, start + Duration::from_secs(3600)));
        assert!(booting(&launched(None), ready, SystemTime::now()));
    }

    #[test]
    fn a_state_file_is_read_as_the_cluster_it_names() {
        // Redis 7.0.15's nodes-6379.conf of a 3-master cluster made by hand, as node 1b wrote it.
        let text = "\
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 10.0.1.57:6379@16379, master - 0 1796672190120 1 connected 0-5460
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 10.0.2.10:6379@16379, myself,master - 0 1796672189000 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 10.0.3.10:6379@16379, master - 0 1796672190623 3 connected 10923-16383
vars currentEpoch 3 lastVoteEpoch 0
";
        let v = super::state_file_view(text).unwrap();
        assert_eq!(
            (
                v.slots_assigned,
                v.known_nodes,
                v.size,
                v.own_slots,
                v.replica
            ),
            (16384, 3, 3, Some(5462), false)
        );
        let me: Vec<&str> = v
            .members
            .iter()
            .filter(|m| m.myself)
            .map(|m| m.ip.as_str())
            .collect();
        assert_eq!(me, ["10.0.2.10"]);
        // Not Redis's (or empty): no view.
        assert!(super::state_file_view("").is_none());
        assert!(super::state_file_view("vars currentEpoch 0 lastVoteEpoch 0\n").is_none());
        assert!(super::state_file_view("hello world\n").is_none());
    }

    #[test]
    fn hand_started_redis_processes_are_read_back() {
        let text =
            "installed=yes\nforeign=812 root /var/lib/redis\nforeign=9 redis \nforeign=x y z\n";
        let got = super::parse_foreign(text);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].pid, got[0].user.as_str(), got[0].dir.as_str()),
            (812, "root", "/var/lib/redis")
        );
        assert_eq!((got[1].pid, got[1].dir.as_str()), (9, ""));
    }
}
