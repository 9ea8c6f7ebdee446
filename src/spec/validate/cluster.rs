//! `[cluster]`: the name every resource derives from, the region, the user's tags, the state dir.

use std::collections::BTreeMap;
use std::path::Path;

use super::checks::{expand_home, is_dns_label};
use crate::spec::diag::Diags;
use crate::spec::raw::RawCluster;
use crate::spec::types::Cluster;

/// AWS regions (commercial, GovCloud, China) as of 2026.
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

const DEFAULT_REGION: &str = "us-east-1";

/// A checked cluster block, plus whether its name was valid (names derive from it).
pub(super) type ClusterOut = (Cluster, bool);

pub(super) fn cluster(
    raw: Option<&RawCluster>,
    base_dir: &Path,
    d: &mut Diags<'_>,
) -> Option<ClusterOut> {
    let default = RawCluster::default();
    let raw = raw.unwrap_or(&default);
    let mut ok = true;
    let name = match &raw.name {
        None => {
            d.error_help(
                "cluster.name",
                "is required",
                "add `name = \"prod-redis\"` under [cluster]; it is used in every tag and resource name",
            );
            ok = false;
            String::new()
        }
        Some(n) => {
            if !is_dns_label(n, 32) {
                d.error(
                    "cluster.name",
                    format!(
                        "`{n}` is not a valid cluster name: use 2-32 lower-case letters, digits and -, starting with a letter and not ending with -"
                    ),
                );
                ok = false;
            }
            n.clone()
        }
    };
    let region = raw.region.clone().unwrap_or_else(|| DEFAULT_REGION.into());
    if !REGIONS.contains(&region.as_str()) {
        let near: Vec<&str> = REGIONS
            .iter()
            .copied()
            .filter(|r| r.split('-').next() == region.split('-').next())
            .collect();
        d.error_help(
            "cluster.region",
            format!("`{region}` is not an AWS region"),
            if near.is_empty() {
                format!("known regions: {}", REGIONS.join(", "))
            } else {
                format!("did you mean one of: {}", near.join(", "))
            },
        );
        ok = false;
    }
    let mut tags = BTreeMap::new();
    for (k, v) in raw.tags.iter().flatten() {
        let path = format!("cluster.tags.{k}");
        let lower = k.to_ascii_lowercase();
        if lower.starts_with("redisctl:") || lower.starts_with("aws:") {
            d.error(
                &path,
                format!("tag key `{k}` is reserved (redisctl: and aws: prefixes are managed)"),
            );
        } else if k == "Name" {
            d.error(
                &path,
                "the Name tag is set by redisctl for each resource; choose another key",
            );
        } else if k.is_empty() || k.chars().count() > 128 {
            d.error(&path, "a tag key has 1 to 128 characters");
        } else if v.chars().count() > 256 {
            d.error(&path, "a tag value has at most 256 characters");
        }
        tags.insert(k.clone(), v.clone());
    }
    // Per resource: Name + redisctl:cluster + redisctl:role + redisctl:node (+ stage) = 5.
    if tags.len() > 45 {
        d.error(
            "cluster.tags",
            format!(
                "{} tags: AWS allows 50 per resource and redisctl uses 5",
                tags.len()
            ),
        );
    }
    let state_dir = match &raw.state_dir {
        Some(s) => base_dir.join(expand_home(s)),
        None => base_dir.join(".redisctl").join(&name),
    };
    Some((
        Cluster {
            name,
            region,
            tags,
            state_dir,
        },
        ok,
    ))
}
