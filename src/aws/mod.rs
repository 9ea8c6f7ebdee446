//! The EC2 edge: calls with bounded waiters, tag filters and error mapping (resource, step and
//! what to do next). Built by the AWS-layer issue.
