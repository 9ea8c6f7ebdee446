//! Observed state: what live AWS and the nodes look like, as plain data (`Observed`), and the
//! async code that fills it (a constant number of tag-filtered Describe calls, plus one SSH
//! session per reachable node). Built by the AWS-layer and node-layer issues; nothing here yet.
