//! redisctl: deploy and keep a production Redis Cluster on AWS EC2 from one declarative TOML
//! file. docs/architecture.md describes the layers, which only point down:
//! commands -> render -> workflow / verify -> observe -> plan (pure) -> exec -> the edges
//! (aws, node, ssh, pki, redis) -> progress, private_fs, state_dir, observed, spec.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod exec;
pub mod node;
pub mod observe;
pub mod observed;
pub mod pki;
pub mod plan;
pub mod private_fs;
pub mod progress;
pub mod redis;
pub mod render;
#[doc(hidden)]
pub mod snapshot;
pub mod spec;
pub mod ssh;
pub mod state;
pub mod state_dir;
pub mod verify;
pub mod workflow;
