//! The SSH edge (russh): one connection per node reused for all its steps, host keys pinned,
//! sudo commands with secrets on stdin, atomic uploads. Built by the node-layer issue.
