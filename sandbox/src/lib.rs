//! redisctl-sandbox: an emulated AWS EC2 region on one Linux machine.
//!
//! Three parts (see docs/sandbox.md): moto as the control plane, the EC2 *front* (an HTTP proxy
//! in front of moto that turns machine actions into real effects), and real systemd-booted hosts
//! (`systemd-nspawn --boot` over a shared read-only Debian base, one overlay upper directory per
//! EBS volume) as instances. Everything runs inside network namespaces with no route off the
//! machine.

pub mod base;
pub mod cgroups;
pub mod cloudinit;
pub mod console;
pub mod control;
pub mod faults;
pub mod front;
pub mod hosts;
pub mod kernel;
pub mod lifecycle;
pub mod limits;
pub mod logging;
pub mod net;
pub mod paths;
pub mod prereqs;
pub mod proc;
pub mod safefs;
pub mod testing;
pub mod xml;

/// The operator network namespace: moto, the front and redisctl run here.
pub const OPERATOR_NETNS: &str = "rsbx-op";
/// The bridge in the operator namespace that plays the VPC router.
pub const BRIDGE: &str = "rsbx-br0";
/// Prefix of every host network namespace (`rsbx-i-0123…`).
pub const HOST_NETNS_PREFIX: &str = "rsbx-";
/// Where the front listens, inside the operator namespace.
pub const FRONT_ADDR: &str = "127.0.0.1:4566";
/// Where moto listens, inside the operator namespace.
pub const MOTO_ADDR: &str = "127.0.0.1:5000";
/// The pinned control plane.
pub const MOTO_REQUIREMENT: &str = "moto[server]==5.2.5";
/// The region the sandbox advertises (moto serves any region; this is the default one).
pub const REGION: &str = "us-east-1";
/// The image whose instances boot without an init system (`debian-12-minimal-noinit-20250115`,
/// owned by the sandbox's own account): a small shell script is PID 1 instead of systemd, as in
/// a minimal container image. See docs/sandbox.md.
pub const NOINIT_AMI: &str = "ami-0deb12a0000000001";

/// The environment that `exec` sets and `env` prints.
pub fn client_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", format!("http://{FRONT_ADDR}")),
        ("AWS_REGION", REGION.to_string()),
        ("AWS_DEFAULT_REGION", REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", "AKIASANDBOXSANDBOX00".to_string()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "sandbox-secret-key-not-a-real-one".to_string(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("REDISCTL_SANDBOX_NETNS", OPERATOR_NETNS.to_string()),
    ]
}
