//! The spec file as written: serde structs that mirror `cluster.toml` one to one.
//!
//! Every field is optional here so that defaults are filled in one place (validation) and
//! `validate --resolved` can print the same shape with every default made explicit. Unknown
//! keys are refused (`deny_unknown_fields`): a typo must never pass silently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    pub cluster: Option<RawCluster>,
    pub network: Option<RawNetwork>,
    pub security_group: Option<RawSecurityGroup>,
    pub nodes: Option<RawNodes>,
    pub ssh: Option<RawSsh>,
    pub tls: Option<RawTls>,
    pub redis: Option<RawRedis>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<RawUser>,
    pub state: Option<RawState>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub backend: Option<String>,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub kms_key: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: Option<String>,
    pub region: Option<String>,
    pub state_dir: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub vpc_cidr: Option<String>,
    pub subnets: Option<Vec<RawSubnet>>,
    pub egress: Option<String>,
    pub nat_subnet: Option<RawSubnet>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubnet {
    pub name: Option<String>,
    pub az: Option<String>,
    pub cidr: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurityGroup {
    pub ssh_cidrs: Option<Vec<String>>,
    pub allow_ssh_from_anywhere: Option<bool>,
    pub redis_cidrs: Option<Vec<String>>,
    pub sentinel: Option<bool>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNodes {
    pub instance_type: Option<String>,
    pub ami: Option<String>,
    pub masters: Option<i64>,
    pub replicas_per_master: Option<i64>,
    pub root_volume: Option<RawRootVolume>,
    pub image_has_redis: Option<bool>,
    #[serde(rename = "node")]
    pub nodes: Option<Vec<RawNode>>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Option<String>,
    pub subnet: Option<String>,
    pub private_ip: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRootVolume {
    pub size_gib: Option<i64>,
    #[serde(rename = "type")]
    pub volume_type: Option<String>,
    pub encrypted: Option<bool>,
    pub kms_key: Option<String>,
    pub strategy: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    pub user: Option<String>,
    pub key_name: Option<String>,
    pub private_key: Option<String>,
    pub via: Option<String>,
    pub connect_timeout_secs: Option<i64>,
    pub ready_timeout_secs: Option<i64>,
    pub command_timeout_secs: Option<i64>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub protocols: Option<Vec<String>>,
    pub cert_days: Option<i64>,
    pub renew_before_days: Option<i64>,
    pub auth_clients: Option<String>,
    pub ca_rotation: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub port: Option<i64>,
    pub cluster_node_timeout_ms: Option<i64>,
    pub appendonly: Option<bool>,
    pub maxmemory: Option<String>,
    pub maxmemory_policy: Option<String>,
    pub cluster_require_full_coverage: Option<bool>,
    pub package_version: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    /// Present only so that an inline password gets a precise error instead of
    /// "unknown field"; it is never used and never serialized.
    #[serde(default, skip_serializing)]
    pub password: Option<toml::Value>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub previous_password_env: Option<String>,
    pub previous_password_file: Option<String>,
    pub keys: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub commands: Option<Vec<String>>,
    pub operator: Option<bool>,
}
