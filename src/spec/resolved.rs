//! The typed spec written back in the file's own shape, with every default explicit: what
//! `redisctl validate --resolved` prints. Feeding it back in yields the same [`Spec`].

use super::raw::*;
use super::types::*;

impl Spec {
    pub fn to_raw(&self) -> RawSpec {
        let path = |p: &std::path::Path| p.display().to_string();
        RawSpec {
            cluster: Some(RawCluster {
                name: Some(self.cluster.name.clone()),
                region: Some(self.cluster.region.clone()),
                state_dir: Some(path(&self.cluster.state_dir)),
                tags: Some(self.cluster.tags.clone()),
            }),
            network: Some(RawNetwork {
                vpc_cidr: Some(self.network.vpc_cidr.to_string()),
                subnets: Some(
                    self.network
                        .subnets
                        .iter()
                        .map(|s| RawSubnet {
                            name: Some(s.name.clone()),
                            az: Some(s.az.clone()),
                            cidr: Some(s.cidr.to_string()),
                        })
                        .collect(),
                ),
                egress: Some(self.network.egress.as_str().into()),
                nat_subnet: self.network.nat_subnet.as_ref().map(|s| RawSubnet {
                    name: Some(s.name.clone()),
                    az: Some(s.az.clone()),
                    cidr: Some(s.cidr.to_string()),
                }),
            }),
            security_group: Some(RawSecurityGroup {
                ssh_cidrs: Some(strings(&self.security_group.ssh_cidrs)),
                allow_ssh_from_anywhere: Some(self.security_group.allow_ssh_from_anywhere),
                redis_cidrs: Some(strings(&self.security_group.redis_cidrs)),
                sentinel: Some(self.security_group.sentinel),
            }),
            nodes: Some(RawNodes {
                instance_type: Some(self.nodes.instance_type.clone()),
                ami: Some(self.nodes.ami.to_string()),
                masters: Some(self.nodes.masters.into()),
                replicas_per_master: Some(self.nodes.replicas_per_master.into()),
                root_volume: Some(RawRootVolume {
                    size_gib: Some(self.nodes.root_volume.size_gib.into()),
                    volume_type: Some(self.nodes.root_volume.volume_type.clone()),
                    encrypted: Some(self.nodes.root_volume.encrypted),
                    kms_key: Some(self.nodes.root_volume.kms_key.clone()),
                    strategy: Some(self.nodes.root_volume.strategy.as_str().into()),
                }),
                image_has_redis: Some(self.nodes.image_has_redis),
                nodes: Some(
                    self.nodes
                        .nodes
                        .iter()
                        .map(|n| RawNode {
                            name: Some(n.name.clone()),
                            subnet: Some(n.subnet.clone()),
                            private_ip: Some(n.private_ip.to_string()),
                        })
                        .collect(),
                ),
            }),
            ssh: Some(RawSsh {
                user: Some(self.ssh.user.clone()),
                key_name: Some(self.ssh.key_name.clone()),
                private_key: Some(path(&self.ssh.private_key)),
                via: Some(self.ssh.via.as_str().into()),
                connect_timeout_secs: Some(self.ssh.connect_timeout.as_secs() as i64),
                ready_timeout_secs: Some(self.ssh.ready_timeout.as_secs() as i64),
                command_timeout_secs: Some(self.ssh.command_timeout.as_secs() as i64),
            }),
            tls: Some(RawTls {
                protocols: Some(
                    self.tls
                        .protocols
                        .iter()
                        .map(|p| p.as_str().to_string())
                        .collect(),
                ),
                cert_days: Some(self.tls.cert_days.into()),
                renew_before_days: Some(self.tls.renew_before_days.into()),
                auth_clients: Some(self.tls.auth_clients.as_str().into()),
                ca_rotation: self.tls.ca_rotation.map(|r| r.as_str().into()),
            }),
            redis: Some(RawRedis {
                port: Some(self.redis.port.into()),
                cluster_node_timeout_ms: Some(self.redis.cluster_node_timeout_ms.into()),
                appendonly: Some(self.redis.appendonly),
                maxmemory: self.redis.maxmemory.clone(),
                maxmemory_policy: self.redis.maxmemory_policy.clone(),
                package_version: self
                    .redis
                    .package_version
                    .as_ref()
                    .map(|v| v.as_str().to_string()),
                cluster_require_full_coverage: Some(self.redis.cluster_require_full_coverage),
            }),
            users: self
                .users
                .iter()
                .map(|u| {
                    // A secret's source as its two keys (`…_env`, `…_file`).
                    let keys = |src: &Option<SecretSource>| match src {
                        Some(SecretSource::Env(v)) => (Some(v.clone()), None),
                        Some(SecretSource::File(p)) => (None, Some(path(p))),
                        None => (None, None),
                    };
                    let (password_env, password_file) = keys(&u.password);
                    let (previous_password_env, previous_password_file) =
                        keys(&u.previous_password);
                    RawUser {
                        name: Some(u.name.clone()),
                        enabled: Some(u.enabled),
                        password: None,
                        password_env,
                        password_file,
                        previous_password_env,
                        previous_password_file,
                        keys: Some(u.keys.clone()),
                        channels: Some(u.channels.clone()),
                        commands: Some(u.commands.iter().map(|c| c.to_string()).collect()),
                        operator: Some(u.operator),
                    }
                })
                .collect(),
            state: Some(match &self.state {
                StateBackend::Local => RawState {
                    backend: Some("local".into()),
                    ..RawState::default()
                },
                StateBackend::S3(b) => RawState {
                    backend: Some("s3".into()),
                    bucket: Some(b.bucket.clone()),
                    prefix: Some(b.prefix.clone()),
                    kms_key: Some(b.kms_key.clone()),
                    region: Some(b.region.clone()),
                },
            }),
        }
    }

    /// The resolved spec as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.to_raw()).expect("a RawSpec always serializes")
    }
}

fn strings<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}
