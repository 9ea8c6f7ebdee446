//! The EC2 calls the node runtime makes: which instance (and address, and pinned host-key
//! fingerprint) each node name has now, and the host-key pin written as a tag.

use std::net::Ipv4Addr;

use super::describe::tag_map;
use super::settle::Backoff;
use super::{Aws, AwsError, api_err, filter};
use crate::observed::tags;

/// A running instance of the cluster that carries a node tag.
#[derive(Debug, Clone)]
pub struct NodeInstance {
    pub node: String,
    pub id: String,
    pub private_ip: Option<Ipv4Addr>,
    pub public_ip: Option<Ipv4Addr>,
    /// The `redisctl:host-key` tag.
    pub host_key_fp: Option<String>,
}

/// An instance's state and addresses at one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSeen {
    pub state: String,
    pub private_ip: Option<Ipv4Addr>,
    pub public_ip: Option<Ipv4Addr>,
    /// Seconds since its last launch or start (EC2's `LaunchTime`).
    pub launched_secs_ago: Option<i64>,
}

impl Aws {
    /// Every running node instance of `cluster`, in the order EC2 lists them: one
    /// DescribeInstances, repeated (within [`Aws::consistency_wait`]) while an instance this
    /// run launched is not listed yet.
    pub async fn node_instances(&self, cluster: &str) -> Result<Vec<NodeInstance>, AwsError> {
        let start = std::time::Instant::now();
        let mut backoff = Backoff::new(self.poll);
        loop {
            let found = self.node_instances_once(cluster).await?;
            let listed: Vec<&str> = found.iter().map(|i| i.id.as_str()).collect();
            let missing = self.fresh.missing_from("i-", &listed);
            if missing.is_empty() || start.elapsed() >= self.consistency_wait {
                return Ok(found);
            }
            self.retries.count("DescribeInstances:unlisted");
            let wait = backoff.next_delay();
            tracing::info!(
                "DescribeInstances ({cluster}): {} launched by this run not listed yet; retrying in {wait:?}",
                missing.join(", ")
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// The running instances tagged as the cluster's nodes that sit in one of its node subnets
    /// and in its security group (both tagged, in one VPC): tags alone are not identity (see
    /// `Observed::set_aside_strangers`, the same rule at observation).
    async fn node_instances_once(&self, cluster: &str) -> Result<Vec<NodeInstance>, AwsError> {
        let by_tags = |role: tags::Role| {
            vec![
                filter(&format!("tag:{}", tags::CLUSTER), cluster),
                filter(&format!("tag:{}", tags::ROLE), role.as_str()),
            ]
        };
        let (out, subnets, groups) = tokio::try_join!(
            async {
                self.client
                    .describe_instances()
                    .filters(filter(&format!("tag:{}", tags::CLUSTER), cluster))
                    // A `pending` instance may have no address yet, or not its final one.
                    .filters(filter("instance-state-name", "running"))
                    .send()
                    .await
                    .map_err(|e| api_err("DescribeInstances", cluster, e))
            },
            async {
                self.client
                    .describe_subnets()
                    .set_filters(Some(by_tags(tags::Role::Subnet)))
                    .send()
                    .await
                    .map_err(|e| api_err("DescribeSubnets", cluster, e))
            },
            async {
                self.client
                    .describe_security_groups()
                    .set_filters(Some(by_tags(tags::Role::SecurityGroup)))
                    .send()
                    .await
                    .map_err(|e| api_err("DescribeSecurityGroups", cluster, e))
            },
        )?;
        // (subnet, its VPC) and (group, its VPC) of the cluster.
        let subnets: Vec<(&str, &str)> = subnets
            .subnets()
            .iter()
            .filter_map(|s| Some((s.subnet_id()?, s.vpc_id()?)))
            .collect();
        let groups: Vec<(&str, &str)> = groups
            .security_groups()
            .iter()
            .filter_map(|g| Some((g.group_id()?, g.vpc_id()?)))
            .collect();
        let ours = |i: &aws_sdk_ec2::types::Instance| -> bool {
            let held: Vec<&str> = i
                .security_groups()
                .iter()
                .filter_map(|g| g.group_id())
                .collect();
            crate::observed::in_cluster_network(i.subnet_id(), &held, &subnets, &groups)
        };
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| ours(i))
            .filter_map(|i| {
                let t = tag_map(i.tags());
                Some(NodeInstance {
                    node: t.get(tags::NODE)?.clone(),
                    id: i.instance_id().unwrap_or_default().to_string(),
                    private_ip: i.private_ip_address().and_then(|a| a.parse().ok()),
                    public_ip: i.public_ip_address().and_then(|a| a.parse().ok()),
                    host_key_fp: t.get(tags::HOST_KEY).cloned(),
                })
            })
            .collect())
    }

    /// The instance's state name (`running`, `stopping` …), `None` when EC2 does not list it.
    pub async fn instance_state(&self, instance: &str) -> Result<Option<String>, AwsError> {
        Ok(self.instance_seen(instance).await?.map(|i| i.state))
    }

    /// The instance's state and addresses as EC2 lists them now, `None` when it does not.
    pub async fn instance_seen(&self, instance: &str) -> Result<Option<InstanceSeen>, AwsError> {
        let named = [instance];
        let out = self
            .settle("DescribeInstances", instance, &named, &[], || {
                self.client
                    .describe_instances()
                    .instance_ids(instance)
                    .send()
            })
            .await
            .map_err(|e| api_err("DescribeInstances", instance, e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| {
                Some(InstanceSeen {
                    state: i.state()?.name()?.as_str().to_string(),
                    private_ip: i.private_ip_address().and_then(|a| a.parse().ok()),
                    public_ip: i.public_ip_address().and_then(|a| a.parse().ok()),
                    launched_secs_ago: i.launch_time().and_then(|t| {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .ok()?;
                        Some(now.as_secs() as i64 - t.secs())
                    }),
                })
            }))
    }

    /// The instance's console output as EC2 holds it now (`Latest`), decoded; `None` while
    /// it has none (EC2 gives none before the instance has booted and written to it).
    pub async fn console_output(&self, instance: &str) -> Result<Option<String>, AwsError> {
        // `Latest` (the output as it is now, not the buffered copy EC2 posts minutes later) is
        // for Nitro instances; others (a t2) answer UnsupportedOperation: ask without it.
        let named = [instance];
        let ask = |latest: bool| {
            self.settle("GetConsoleOutput", instance, &named, &[], move || {
                self.client
                    .get_console_output()
                    .instance_id(instance)
                    .set_latest(latest.then_some(true))
                    .send()
            })
        };
        let out = match ask(true).await {
            Err(e) if super::ops::is_code(&e, &["UnsupportedOperation"]) => ask(false).await,
            other => other,
        }
        .map_err(|e| api_err("GetConsoleOutput", instance, e))?;
        let Some(b64) = out.output().filter(|o| !o.trim().is_empty()) else {
            return Ok(None);
        };
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| AwsError::Local {
                what: format!("the console output of {instance} is not base64"),
                source: Box::new(e),
            })?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Record a node's pinned host-key fingerprint as the instance's `redisctl:host-key` tag.
    pub async fn tag_host_key(&self, instance: &str, fingerprint: &str) -> Result<(), AwsError> {
        let set = [(tags::HOST_KEY.to_string(), fingerprint.to_string())]
            .into_iter()
            .collect();
        self.set_tags(instance, &set, &[]).await
    }
}
