//! Raw spec -> typed [`Spec`]: defaults filled in, every rule checked, every problem reported
//! with its key path (all of them at once, not only the first).
//!
//! One file per section of the spec; a section that derives from another (subnets from the
//! region, the SSH key name from the cluster name) takes that section's checked value, so one
//! mistake is reported once, where it was made. `checks` holds the small syntax checks they share.

mod checks;
mod cluster;
mod network;
mod nodes;
mod redis;
mod root_volume;
mod security_group;
mod ssh;
mod state;
mod tls;
mod users;

use std::path::Path;

use crate::spec::diag::Diags;
use crate::spec::raw::RawSpec;
use crate::spec::types::Spec;

pub use checks::usable_ip;
pub use cluster::REGIONS;

/// Validate a parsed spec. `base_dir` is the directory of the spec file: relative paths in the
/// spec (state_dir, private_key, password_file) are relative to it.
pub(crate) fn validate(raw: &RawSpec, base_dir: &Path, d: &mut Diags<'_>) -> Option<Spec> {
    let cluster = cluster::cluster(raw.cluster.as_ref(), base_dir, d);
    let raw_via = raw.ssh.as_ref().and_then(|s| s.via.as_deref());
    let network = network::network(raw.network.as_ref(), &cluster, raw_via, d);
    let security_group = security_group::security_group(raw.security_group.as_ref(), &network, d);
    let nodes = nodes::nodes(raw.nodes.as_ref(), &network, d);
    let ssh = ssh::ssh(raw.ssh.as_ref(), &cluster, base_dir, d);
    let tls = tls::tls(raw.tls.as_ref(), d);
    let redis = redis::redis(
        raw.redis.as_ref(),
        security_group.as_ref(),
        nodes.as_ref().map(|n| n.instance_type.as_str()),
        d,
    );
    let users = users::users(&raw.users, base_dir, d);
    let state = state::state(raw.state.as_ref(), &cluster, d);
    if let (Some(network), Some(nodes), Some(ssh)) = (&network, &nodes, &ssh) {
        network::ways_out(network, nodes, ssh, d);
    }
    if d.has_errors() {
        return None;
    }
    Some(Spec {
        cluster: cluster?.0,
        network: network?,
        security_group: security_group?,
        nodes: nodes?,
        ssh: ssh?,
        tls: tls?,
        redis: redis?,
        users: users?,
        state: state?,
    })
}
