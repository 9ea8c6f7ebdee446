//! The cluster CA and node certificates (rcgen): the CA key stays in the state directory (0600)
//! and never reaches a node; node certificates carry IP SANs and both serverAuth and clientAuth.
//! Built by the node-layer issue.
