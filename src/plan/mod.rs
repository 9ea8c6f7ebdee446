//! The planner: `plan(&Spec, &Observed) -> Plan`, pure and synchronous (no tokio, no AWS, no
//! SSH, no clock or randomness except what is passed in). It never imports `observed`'s async
//! fillers, `exec`, `aws` or `ssh`. Built by the AWS-layer issue; nothing here yet.
