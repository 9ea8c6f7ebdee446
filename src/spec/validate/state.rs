//! `[state]`: where the state directory's files are kept between runs — on this machine (the
//! default) or in an S3 bucket, encrypted with a KMS key and locked across machines.

use super::checks::is_kms_key;
use super::cluster::{ClusterOut, REGIONS};
use crate::spec::diag::Diags;
use crate::spec::raw::RawState;
use crate::spec::types::{S3Backend, StateBackend};

pub(super) fn state(
    raw: Option<&RawState>,
    cluster: &Option<ClusterOut>,
    d: &mut Diags<'_>,
) -> Option<StateBackend> {
    let Some(raw) = raw else {
        return Some(StateBackend::Local);
    };
    match raw.backend.as_deref() {
        None | Some("local") => {
            for (key, set) in [
                ("bucket", raw.bucket.is_some()),
                ("prefix", raw.prefix.is_some()),
                ("kms_key", raw.kms_key.is_some()),
                ("region", raw.region.is_some()),
            ] {
                if set {
                    d.error_help(
                        &format!("state.{key}"),
                        "only an S3 backend has this key",
                        "set backend = \"s3\", or remove the key",
                    );
                }
            }
            Some(StateBackend::Local)
        }
        Some("s3") => {
            let (cluster, _) = cluster.as_ref()?;
            let bucket = match &raw.bucket {
                None => {
                    d.error("state.bucket", "an S3 backend needs its bucket");
                    String::new()
                }
                Some(b) => {
                    if !is_bucket_name(b) {
                        d.error(
                            "state.bucket",
                            format!("`{b}` is not an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, beginning and ending with a letter or digit"),
                        );
                    }
                    b.clone()
                }
            };
            let prefix = raw.prefix.clone().unwrap_or_else(|| cluster.name.clone());
            if prefix.is_empty()
                || prefix.len() > 512
                || prefix.starts_with('/')
                || prefix.ends_with('/')
                || prefix.contains("//")
                || !prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                d.error(
                    "state.prefix",
                    format!("`{prefix}` is not a key prefix: letters, digits, - _ . and / between parts, without a leading or trailing /"),
                );
            }
            let kms_key = match &raw.kms_key {
                None => {
                    d.error_help(
                        "state.kms_key",
                        "an S3 backend needs the KMS key its objects are encrypted with (SSE-KMS): the state holds the CA key and the SSH private key",
                        "name a key id, key ARN or alias (kms_key = \"alias/redisctl-state\")",
                    );
                    String::new()
                }
                Some(k) => {
                    if !is_kms_key(k) {
                        d.error(
                            "state.kms_key",
                            format!(
                                "`{k}` is not a KMS key id, key ARN, alias (alias/…) or alias ARN"
                            ),
                        );
                    }
                    k.clone()
                }
            };
            let region = raw.region.clone().unwrap_or_else(|| cluster.region.clone());
            if !REGIONS.contains(&region.as_str()) {
                d.error("state.region", format!("`{region}` is not an AWS region"));
            }
            Some(StateBackend::S3(S3Backend {
                bucket,
                prefix,
                kms_key,
                region,
            }))
        }
        Some(other) => {
            d.error(
                "state.backend",
                format!("`{other}` is not a state backend: use \"local\" or \"s3\""),
            );
            None
        }
    }
}

/// S3's rules for a bucket name (general purpose buckets).
fn is_bucket_name(b: &str) -> bool {
    let bytes = b.as_bytes();
    (3..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[b.len() - 1].is_ascii_alphanumeric()
        && !b.contains("..")
        && b.parse::<std::net::Ipv4Addr>().is_err()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bucket_names() {
        for ok in ["abc", "acme-redis-state", "a.b-c.d1"] {
            assert!(super::is_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Acme",
            "-abc",
            "abc-",
            "a..b",
            "10.0.0.1",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(!super::is_bucket_name(bad), "{bad}");
        }
    }
}
