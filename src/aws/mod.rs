//! The EC2 edge: a client configured from the standard AWS chain (and `AWS_ENDPOINT_URL`),
//! the tag-filtered Describe calls that fill `Observed`, and the idempotent "ensure" operations
//! the executor runs. Every wait is bounded and names what it waits for; every failure names
//! the call, the resource, AWS's error code, and what to do next.

mod describe;
#[cfg(test)]
mod fake;
mod inspect;
mod instances;
mod nat;
mod network;
mod nodes;
mod ops;
mod settle;
mod volumes;

use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use crate::observed::Tags;

pub use describe::{Scope, observe, observe_scope};
pub use inspect::VolumeFacts;
pub use nodes::{InstanceSeen, NodeInstance};
pub use settle::Retries;
pub use volumes::{InstanceNow, VolumeNow};

/// Seconds from an EC2 time as observation records it (`LaunchTime`, RFC 3339) to `now`.
pub fn seconds_since(ec2_time: &str, now: std::time::SystemTime) -> Option<i64> {
    use aws_sdk_ec2::primitives::{DateTime, DateTimeFormat};
    let t = DateTime::from_str(ec2_time, DateTimeFormat::DateTime).ok()?;
    let now = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(now - t.secs())
}

/// The EC2 client and the bounds of its waits.
#[derive(Clone)]
pub struct Aws {
    client: Client,
    /// How long to wait for an instance to reach a state.
    pub instance_wait: Duration,
    /// How long to retry a call that AWS refuses because of a dependency still going away.
    pub dependency_wait: Duration,
    /// How long to retry a call naming an id this run created that EC2 does not know yet, and
    /// how long the final checks wait for Describe results to show what was done.
    pub consistency_wait: Duration,
    /// The longest pause between two polls of a wait.
    pub poll: Duration,
    fresh: settle::Fresh,
    /// The retries this client made, by EC2 error code.
    pub retries: Retries,
}

impl Aws {
    /// A client for `region` (the spec's region wins over `AWS_REGION`). Throttling, 5xx and
    /// dropped connections are retried by the SDK (standard mode, 6 attempts with backoff).
    pub async fn connect(region: &str) -> Self {
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(6)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            )
            .load()
            .await;
        Aws {
            client: Client::new(&conf),
            instance_wait: Duration::from_secs(600),
            dependency_wait: Duration::from_secs(300),
            consistency_wait: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            fresh: settle::Fresh::default(),
            retries: Retries::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{call} ({resource}) failed: {code}: {message}")]
    Api {
        call: &'static str,
        resource: String,
        code: String,
        message: String,
    },
    #[error("{call} ({resource}) failed: {detail}")]
    Transport {
        call: &'static str,
        resource: String,
        detail: String,
    },
    #[error("gave up after {waited:?} waiting for {what}")]
    Timeout { what: String, waited: Duration },
    /// EC2 accepted a request, then the resource ended in a state that is not the one waited
    /// for (a launch that terminated, a start that fell back to `stopped`, a volume in `error`).
    #[error("{what}: EC2 put it in state `{state}`{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Ended {
        what: String,
        state: String,
        /// EC2's `StateReason` (`code: message`), when it gave one.
        reason: Option<String>,
    },
    #[error("{what}")]
    Local {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl AwsError {
    /// AWS's error code, when AWS answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// EC2 ended the resource for a reason of its own side (`Server.*`: an internal error, no
    /// capacity now), which a new attempt may not meet.
    pub fn ended_on_server_side(&self) -> bool {
        matches!(self, AwsError::Ended { reason: Some(r), .. } if r.starts_with("Server."))
    }

    /// What the operator should do next.
    pub fn hint(&self) -> String {
        match self {
            AwsError::Api { code, call, .. } => match code.as_str() {
                "UnauthorizedOperation" | "AuthFailure" => format!(
                    "the AWS credentials in use may not call ec2:{call}; check the IAM policy, then run the same command (apply or destroy) again"
                ),
                "RequestLimitExceeded" | "Throttling" => {
                    "AWS kept throttling after retries; wait a minute and run the same command (apply or destroy) again: it continues where it stopped".into()
                }
                "InsufficientInstanceCapacity" => {
                    "the AZ has no capacity for this instance type now; try again later or choose another nodes.instance_type".into()
                }
                "Unsupported" => {
                    "EC2 does not offer this instance type (or one of its options) in this AZ; check `aws ec2 describe-instance-type-offerings --location-type availability-zone` and choose another nodes.instance_type or AZ".into()
                }
                "VcpuLimitExceeded" | "InstanceLimitExceeded" | "VpcLimitExceeded" => {
                    "an account quota is reached; raise it in Service Quotas or free resources".into()
                }
                _ => "fix the cause above and run the same command (apply or destroy) again: completed steps are kept and skipped".into(),
            },
            AwsError::Transport { .. } => {
                "the EC2 endpoint could not be reached or answered badly; check network access and AWS_ENDPOINT_URL / AWS_REGION, then run the same command (apply or destroy) again".into()
            }
            AwsError::Timeout { .. } => {
                "run the same command (apply or destroy) again later: it re-observes and continues where it stopped".into()
            }
            AwsError::Ended { reason, .. } => ended_hint(reason.as_deref()),
            AwsError::Local { .. } => "fix the local problem above and run again".into(),
        }
    }
}

/// What to do when EC2 ended a resource in a state that was not asked for, by its reason.
fn ended_hint(reason: Option<&str>) -> String {
    let reason = reason.unwrap_or_default();
    let next = "then run the same command again: it launches or creates anew (a new idempotency token), and leaves the failed resource to EC2";
    if reason.contains("KMS") {
        format!(
            "the EBS KMS key cannot be used: check that the key in encryption.kms_key is enabled and that its key policy lets EC2 use it for this account (kms:CreateGrant, kms:Decrypt, kms:GenerateDataKeyWithoutPlaintext), {next}"
        )
    } else if reason.contains("InsufficientInstanceCapacity") {
        format!(
            "the AZ has no capacity for this instance type now; wait or choose another nodes.instance_type, {next}"
        )
    } else if reason.contains("VolumeLimitExceeded") || reason.contains("InstanceLimitExceeded") {
        format!("an account quota is reached; raise it in Service Quotas or free resources, {next}")
    } else {
        format!(
            "read EC2's reason above (also in the console's instance or volume details), {next}"
        )
    }
}

/// How many times a launch, a start or a volume that EC2 ended on its own side is tried.
const ATTEMPTS: u32 = 5;

/// A ClientToken for one attempt at a create: random, so no two runs (and no two attempts in
/// a run) share one, and kept by the caller for the retries of the same attempt. EC2 allows
/// 64 ASCII characters.
fn attempt_token(what: &str) -> Result<String, AwsError> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| AwsError::Local {
            what: format!("cannot make an idempotency token for {what}"),
            source: Box::new(e),
        })?;
    Ok(format!("redisctl-{}", hex::encode(bytes)))
}

/// A Describe filter with one value.
fn filter(name: &str, value: &str) -> Filter {
    filter_any(name, &[value])
}

/// A Describe filter that matches any of `values`.
fn filter_any(name: &str, values: &[&str]) -> Filter {
    values
        .iter()
        .fold(Filter::builder().name(name), |b, v| b.values(*v))
        .build()
}

/// The tags a resource is created with (TagSpecifications).
fn tag_spec(kind: ResourceType, t: &Tags) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(kind);
    for (k, v) in t {
        b = b.tags(Tag::builder().key(k).value(v).build());
    }
    b.build()
}

/// Map an SDK error for `call` on `resource`.
pub(crate) fn api_err<E, R>(call: &'static str, resource: &str, e: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match e.code() {
        Some(code) => AwsError::Api {
            call,
            resource: resource.to_string(),
            code: code.to_string(),
            message: e.message().unwrap_or("(no message)").to_string(),
        },
        None => {
            let mut detail = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                detail.push_str(": ");
                detail.push_str(&s.to_string());
                src = s.source();
            }
            AwsError::Transport {
                call,
                resource: resource.to_string(),
                detail,
            }
        }
    }
}

/// Poll `check` until it yields a value, at most `bound`, saying what it waits for. Polls
/// start at 100 ms and double up to `every`.
pub(crate) async fn wait_for<T, F, Fut>(
    what: String,
    bound: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, AwsError>>,
{
    let start = Instant::now();
    let mut backoff = settle::Backoff::new(every);
    crate::progress::status(format!("waiting for {what}"));
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if start.elapsed() >= bound {
            return Err(AwsError::Timeout {
                what,
                waited: start.elapsed(),
            });
        }
        tracing::debug!("waiting for {what} ({:?} so far)", start.elapsed());
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str) -> AwsError {
        AwsError::Api {
            call: "RunInstances",
            resource: "node redis-node-1a".into(),
            code: code.into(),
            message: "-".into(),
        }
    }

    #[test]
    fn unsupported_says_the_type_is_not_offered_there() {
        assert!(
            api("Unsupported")
                .hint()
                .contains("does not offer this instance type")
        );
        assert!(
            api("InsufficientInstanceCapacity")
                .hint()
                .contains("no capacity")
        );
    }

    #[test]
    fn only_a_reason_on_ec2s_side_is_tried_again() {
        let ended = |reason: &str| AwsError::Ended {
            what: "while waiting for instance i-1 to be running".into(),
            state: "terminated".into(),
            reason: Some(reason.into()),
        };
        assert!(ended("Server.InternalError: Internal error on launch").ended_on_server_side());
        let kms = ended(
            "Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state",
        );
        assert!(!kms.ended_on_server_side());
        assert!(kms.hint().contains("the EBS KMS key cannot be used"));
        assert!(
            kms.to_string()
                .contains("EC2 put it in state `terminated` (Client.InvalidKMSKey")
        );
    }

    #[test]
    fn tokens_differ_per_attempt_and_fit_ec2s_limit() {
        let (a, b) = (attempt_token("x").unwrap(), attempt_token("x").unwrap());
        assert_ne!(a, b);
        assert!(a.len() <= 64 && a.is_ascii(), "{a}");
    }
}
