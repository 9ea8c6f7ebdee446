//! The simulated nodes: reached on first use (with a host key), given the files the spec
//! renders for them.

use redisctl::observed::{NodeFacts, NodeObservation};

use super::Sim;

impl Sim {
    pub(super) fn facts(&mut self, node: &str) -> &mut NodeFacts {
        let e = self.o.nodes.entry(node.to_string()).or_insert_with(|| {
            NodeObservation::Reached(Box::new(NodeFacts {
                host_key: format!("ssh-ed25519 HOSTKEYOF{node}"),
                host_key_fingerprint: format!("SHA256:fp-{node}"),
                // EC2's Ubuntu: the kernel's defaults.
                kernel: redisctl::redis::kernel::KernelValues {
                    overcommit_memory: "0".into(),
                    somaxconn: "4096".into(),
                    thp: "always [madvise] never".into(),
                },
                ..NodeFacts::default()
            }))
        });
        match e {
            NodeObservation::Reached(f) => f,
            NodeObservation::Unreachable { .. } => panic!("{node} is unreachable"),
        }
    }

    pub(super) fn desired(&self, node: &str, path: &str) -> Option<String> {
        self.o
            .local
            .desired_files
            .get(node)
            .and_then(|d| d.get(path))
            .cloned()
    }
}

/// A write (temp file, chown, chmod, rename) leaves each file with its own mode and owner.
/// Every write makes the directories root's first (`files::secure_script`).
pub(super) fn written(f: &mut NodeFacts, files: &[redisctl::redis::NodeFile]) {
    for m in redisctl::redis::files::MANAGED_DIRS.iter().chain(files) {
        f.modes.insert(m.path.into(), m.mode_owner());
    }
}
