//! Test support: the reference cluster spec (DESIGN.md's three nodes and three roles, written
//! out here so that edits to cluster.toml.example do not move these snapshots) and snapshot
//! comparison against reviewed files in tests/snapshots/.

use std::path::Path;

use crate::spec::{SourceMap, Spec, parse};

pub const REFERENCE: &str = r#"
[cluster]
name = "prod-redis"
region = "us-east-1"

[network]
vpc_cidr = "10.0.0.0/16"

[security_group]
ssh_cidrs = ["203.0.113.7/32"]

[nodes]
masters = 3
replicas_per_master = 0

[[nodes.node]]
name = "redis-node-1a"
subnet = "redis-subnet-1a"
private_ip = "10.0.1.10"

[[nodes.node]]
name = "redis-node-1b"
subnet = "redis-subnet-1b"
private_ip = "10.0.2.10"

[[nodes.node]]
name = "redis-node-1c"
subnet = "redis-subnet-1c"
private_ip = "10.0.3.10"

[ssh]
key_name = "prod-redis-key"

[redis]
port = 6379
cluster_node_timeout_ms = 15000

[[users]]
name = "admin"
password_env = "REDIS_ADMIN_PASSWORD"
keys = ["*"]
channels = ["*"]
commands = ["+@all"]
operator = true

[[users]]
name = "app"
password_env = "REDIS_APP_PASSWORD"
keys = ["session:*", "cache:*", "patient:*"]
channels = ["app:*"]
commands = [
  "-@all",
  "+@read", "+@write", "+@keyspace", "+@string", "+@hash", "+@list", "+@set", "+@sortedset",
  "+@connection", "+@transaction",
  "-@dangerous", "-@admin",
  "+cluster|slots", "+cluster|shards", "+cluster|info", "+command",
]

[[users]]
name = "dev"
password_env = "REDIS_DEV_PASSWORD"
keys = ["*"]
channels = []
commands = [
  "-@all",
  "+@read", "+@connection",
  "-@dangerous",
  "+cluster|slots", "+cluster|shards", "+cluster|info", "+command",
]

[[users]]
name = "retired"
enabled = false
keys = ["old:*"]
commands = ["+@read"]
"#;

/// The reference spec, validated.
pub fn reference() -> Spec {
    match parse(REFERENCE, Path::new("/specs"), &SourceMap::new(REFERENCE)) {
        Ok((spec, _warnings)) => spec,
        Err(diags) => panic!("the reference test spec is invalid: {diags:#?}"),
    }
}

/// Compare `actual` with tests/snapshots/`name` (see [`crate::snapshot`]).
pub fn assert_snapshot(name: &str, actual: &str) {
    crate::snapshot::assert_snapshot("tests/snapshots", name, actual);
}
