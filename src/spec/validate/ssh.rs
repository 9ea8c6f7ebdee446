//! `[ssh]`: login, key pair and private key, how nodes are reached, and the time bounds.

use std::path::Path;
use std::time::Duration;

use super::checks::{expand_home, int_in, is_unix_user};
use super::cluster::ClusterOut;
use crate::spec::diag::Diags;
use crate::spec::raw::RawSsh;
use crate::spec::types::{Ssh, SshVia};

pub(super) fn ssh(
    raw: Option<&RawSsh>,
    cluster: &Option<ClusterOut>,
    base_dir: &Path,
    d: &mut Diags<'_>,
) -> Option<Ssh> {
    let default = RawSsh::default();
    let raw = raw.unwrap_or(&default);
    let (cluster, _) = cluster.as_ref()?;
    let user = raw.user.clone().unwrap_or_else(|| "ubuntu".into());
    if !is_unix_user(&user) {
        d.error("ssh.user", format!("`{user}` is not a valid login name"));
    }
    let key_name = raw
        .key_name
        .clone()
        .unwrap_or_else(|| format!("redisctl-{}", cluster.name));
    if key_name.is_empty() || key_name.len() > 255 || !key_name.is_ascii() {
        d.error(
            "ssh.key_name",
            "a key pair name has 1 to 255 ASCII characters",
        );
    }
    let private_key = match &raw.private_key {
        Some(p) => base_dir.join(expand_home(p)),
        None => cluster.state_dir.join("ssh_ed25519"),
    };
    let via = match raw.via.as_deref() {
        None => SshVia::PublicIp,
        Some(v) => SshVia::parse(v).unwrap_or_else(|| {
            d.error(
                "ssh.via",
                format!("`{v}` is not a way to reach nodes: use \"public-ip\" or \"private-ip\""),
            );
            SshVia::PublicIp
        }),
    };
    let connect = int_in(
        raw.connect_timeout_secs,
        10,
        1,
        300,
        "ssh.connect_timeout_secs",
        d,
    );
    let ready = int_in(
        raw.ready_timeout_secs,
        300,
        10,
        3600,
        "ssh.ready_timeout_secs",
        d,
    );
    let command = int_in(
        raw.command_timeout_secs,
        900,
        10,
        7200,
        "ssh.command_timeout_secs",
        d,
    );
    Some(Ssh {
        user,
        key_name,
        private_key,
        via,
        connect_timeout: Duration::from_secs(connect?.into()),
        ready_timeout: Duration::from_secs(ready?.into()),
        command_timeout: Duration::from_secs(command?.into()),
    })
}
