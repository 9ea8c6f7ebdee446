//! `redisctl redis-cli [NODE] [-- ARGS...]`: redis-cli on a node of the cluster, with the TLS
//! and user settings that apply uses ([`crate::node::redis_cli`] says how, and how the
//! password travels).

use std::path::Path;

use super::Error;
use crate::cli::RedisCliArgs;
use crate::node::redis_cli::{self, RedisCliError};
use crate::render::Shell;

pub async fn run(config: &Path, args: &RedisCliArgs, _shell: &Shell) -> Result<u8, Error> {
    // The spec's warnings are not repeated here (validate, plan and apply show them): stderr
    // is redis-cli's.
    let mut loaded = crate::spec::load(config)?;
    let _state = crate::state::open(&mut loaded.spec, crate::state::Access::Read)?;
    redis_cli::run(&loaded.spec, &loaded.path, args.node.as_deref(), &args.args)
        .await
        .map_err(|e| match e {
            RedisCliError::Node(e) => Error::Node(e),
            RedisCliError::Step {
                message,
                source,
                hint,
            } => Error::NodeStep {
                message,
                source,
                hint,
            },
        })
}
