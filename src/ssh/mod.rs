//! The SSH edge (russh): the operator's key file now; with the node layer, one connection per
//! node reused for all its steps, host keys pinned, sudo commands with secrets on stdin, atomic
//! uploads.

pub mod keyfile;
