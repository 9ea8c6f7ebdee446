//! Where the sandbox keeps things on the machine. `REDISCTL_SANDBOX_ROOT` moves all three roots
//! under one directory (state/, cache/, run/), e.g. for a second checkout's experiments; network
//! names (namespaces, bridge, routes) are fixed, so only one sandbox runs per machine.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Paths {
    /// venv, volumes, snapshots, logs, AMI list.
    pub state: PathBuf,
    /// base-<content hash>/ trees.
    pub cache: PathBuf,
    /// pid files, the control socket, the test lock.
    pub run: PathBuf,
}

impl Paths {
    pub fn from_env() -> Paths {
        match std::env::var_os("REDISCTL_SANDBOX_ROOT") {
            Some(root) if !root.is_empty() => {
                let root = PathBuf::from(root);
                Paths {
                    state: root.join("state"),
                    cache: root.join("cache"),
                    run: root.join("run"),
                }
            }
            _ => Paths {
                state: PathBuf::from("/var/lib/redisctl-sandbox"),
                cache: PathBuf::from("/var/cache/redisctl-sandbox"),
                run: PathBuf::from("/run/redisctl-sandbox"),
            },
        }
    }
    pub fn venv(&self) -> PathBuf {
        self.state.join("venv")
    }
    pub fn volumes(&self) -> PathBuf {
        self.state.join("volumes")
    }
    pub fn volume(&self, id: &str) -> PathBuf {
        self.volumes().join(id)
    }
    pub fn snapshots(&self) -> PathBuf {
        self.state.join("snapshots")
    }
    pub fn snapshot(&self, id: &str) -> PathBuf {
        self.snapshots().join(id)
    }
    pub fn logs(&self) -> PathBuf {
        self.state.join("logs")
    }
    pub fn amis(&self) -> PathBuf {
        self.state.join("amis.json")
    }
    /// The base tree in use, recorded by `up` for the front.
    pub fn current_base(&self) -> PathBuf {
        self.run.join("base")
    }
    pub fn moto_pid(&self) -> PathBuf {
        self.run.join("moto.pid")
    }
    pub fn front_pid(&self) -> PathBuf {
        self.run.join("front.pid")
    }
    pub fn host_pids(&self) -> PathBuf {
        self.run.join("hosts")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.run.join("control.sock")
    }
    pub fn test_lock(&self) -> PathBuf {
        self.run.join("test.lock")
    }
    /// Serialises `up` and `down` (outside the run directory, which `down` removes).
    pub fn lifecycle_lock(&self) -> PathBuf {
        self.run.with_extension("lock")
    }
    /// Root-namespace routes that `up` added, one per line, for `down`.
    pub fn routes_file(&self) -> PathBuf {
        self.run.join("routes")
    }
}
