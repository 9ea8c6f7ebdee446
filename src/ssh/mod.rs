//! The SSH edge (russh): the operator's key file; one connection per node reused for all its
//! steps, host keys pinned (by instance id, in the state directory and as the instance's
//! `redisctl:host-key` tag), sudo commands with secrets on stdin, atomic uploads; a terminal
//! relay over one channel (`redisctl redis-cli`).

pub mod keyfile;
pub mod known_hosts;
pub mod relay;
pub mod session;

mod remote;

pub use known_hosts::{KnownHosts, fingerprint};
pub use remote::{Output, round_trips, sh_quote, upload_script};
pub use session::{HostKeyPolicy, Session, SshError, Target, Timeouts};
