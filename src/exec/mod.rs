//! The executor: carries out a plan's steps phase by phase, each an idempotent "ensure", steps
//! of different nodes concurrently, progress reported as events. Built by the AWS-layer issue.
