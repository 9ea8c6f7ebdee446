//! The nodes' instances and what belongs to them: the key pair, running (or adopting) an
//! instance, start, resize, IMDSv2, terminate, tags, and the bounded wait for an instance state.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    AttributeValue, BlockDeviceMapping, EbsBlockDevice, HttpTokensState,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceType, ResourceType, Tag,
    VolumeType,
};

use std::time::Instant;

use super::ops::{is_code, tag_filters};
use super::settle::Backoff;
use super::{
    ATTEMPTS, Aws, AwsError, api_err, attempt_token, filter, filter_any, tag_spec, wait_for,
};
use crate::observed::{Tags, tags};
use crate::plan::RunInstance;

impl Aws {
    /// The key pair `name` (found, else imported from the public half of `private_key`).
    pub(super) async fn import_key_pair(
        &self,
        name: &str,
        private_key: &str,
        tags: &Tags,
    ) -> Result<Option<String>, AwsError> {
        let c = &self.client;
        // Made on the operator's machine by the step's `LocalOp::EnsureSshKey`.
        let unreadable = |source: Box<dyn std::error::Error + Send + Sync>| AwsError::Local {
            what: format!("cannot read the SSH key for key pair {name}"),
            source,
        };
        let public = crate::ssh::keyfile::public_key(std::path::Path::new(private_key))
            .map_err(|e| unreadable(Box::new(e)))?
            .ok_or_else(|| unreadable(format!("{private_key} does not exist").into()))?;
        let out = c
            .describe_key_pairs()
            .filters(filter("key-name", name))
            .send()
            .await
            .map_err(|e| api_err("DescribeKeyPairs", name, e))?;
        if let Some(id) = out.key_pairs().first().and_then(|k| k.key_pair_id()) {
            // There already: made by a run killed a moment ago, or by someone else since the
            // plan. It is used only if it holds this machine's key.
            self.key_pair_holds(name, &public, private_key).await?;
            return Ok(Some(id.to_string()));
        }
        let out = match c
            .import_key_pair()
            .key_name(name)
            .public_key_material(Blob::new(public.into_bytes()))
            .tag_specifications(tag_spec(ResourceType::KeyPair, tags))
            .send()
            .await
        {
            Ok(out) => out,
            // Imported by a run killed a moment ago, not listed yet (eventual consistency): it
            // is there, and its name is all a launch needs; a launch naming it may still meet
            // InvalidKeyPair.NotFound for a moment, as for one imported now.
            Err(e) if is_code(&e, &["InvalidKeyPair.Duplicate"]) => {
                self.created(name);
                // (Not listed yet: checked again before each launch that names it.)
                return Ok(None);
            }
            Err(e) => return Err(api_err("ImportKeyPair", name, e)),
        };
        self.created(name);
        Ok(out.key_pair_id().map(String::from))
    }

    /// The key pair `name` holds `public` (this machine's key, from `private_key`): checked
    /// right before every launch, since a key pair can be deleted and imported again under the
    /// same name by anyone with ec2:ImportKeyPair — during apply's confirmation prompt, say —
    /// and a launch puts whatever it holds in the new node's `authorized_keys`. A key pair not
    /// listed yet (imported a moment ago, eventual consistency) is not a refusal.
    pub async fn key_pair_holds(
        &self,
        name: &str,
        public: &str,
        private_key: &str,
    ) -> Result<(), AwsError> {
        let out = self
            .client
            .describe_key_pairs()
            .key_names(name)
            .include_public_key(true)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if is_code(&e, &["InvalidKeyPair.NotFound"]) => return Ok(()),
            Err(e) => return Err(api_err("DescribeKeyPairs", name, e)),
        };
        let Some(k) = out.key_pairs().first() else {
            return Ok(());
        };
        let held = k.public_key().unwrap_or_default();
        if crate::plan::naming::same_public_key(held, public) {
            return Ok(());
        }
        Err(AwsError::Local {
            what: format!(
                "key pair {name} ({}) holds another public key than {private_key}: it was deleted and imported again since the plan (CloudTrail's DeleteKeyPair and ImportKeyPair events say by whom); no node is launched with it",
                k.key_pair_id().unwrap_or("?")
            ),
            source: "refused".into(),
        })
    }

    pub(super) async fn delete_key_pair(&self, name: &str) -> Result<(), AwsError> {
        match self.client.delete_key_pair().key_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["InvalidKeyPair.NotFound"]) => Ok(()),
            Err(e) => Err(api_err("DeleteKeyPair", name, e)),
        }
    }

    /// The node's instance if one is already there (a rerun), else a new one; then wait until
    /// it runs.
    pub(super) async fn run_instance(
        &self,
        run: &RunInstance,
        subnet: &str,
        sg: &str,
    ) -> Result<String, AwsError> {
        let mut existing = self.node_instance(run).await?;
        let mut attempt = 1;
        loop {
            let id = match existing.take() {
                Some(id) => id,
                None => self.launch(run, subnet, sg).await?,
            };
            match self.wait_instance(&id, &["running"]).await {
                Ok(()) => return Ok(id),
                Err(e) => {
                    if matches!(e, AwsError::Ended { .. }) {
                        // Never to be listed as running: nothing waits for it to show.
                        self.fresh.forget(&id);
                    }
                    if !(e.ended_on_server_side() && attempt < ATTEMPTS) {
                        return Err(e);
                    }
                    self.retries.count("launch ended by EC2");
                    tracing::warn!("node {}: {e}; launching again", run.node);
                    attempt += 1;
                }
            }
        }
    }

    /// The node's instance as EC2 lists it now (`pending`, `running`, `stopping` or
    /// `stopped`), found by its cluster and node tags.
    async fn node_instance(&self, run: &RunInstance) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .describe_instances()
            .set_filters(Some(tag_filters(&run.tags, &[tags::CLUSTER, tags::NODE])))
            .filters(filter_any(
                "instance-state-name",
                &["pending", "running", "stopping", "stopped"],
            ))
            .send()
            .await
            .map_err(|e| api_err("DescribeInstances", &run.node, e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.instance_id())
            .map(String::from))
    }

    /// One RunInstances for the node. Its ClientToken is new for this attempt and the same
    /// for every retry of it (the SDK's, and ours below), so a launch whose answer was lost is
    /// answered again with the same instance, and a later run never meets an old token (EC2
    /// remembers one for at least 24 hours, also after the instance is terminated). Retried
    /// while EC2 does not know yet the subnet, group or key pair this run just made. When the
    /// node's fixed private IP is in use, or the answer could not be read, the node's own
    /// instance may hold it ([`launch_met`]): one that a run killed a moment ago launched,
    /// not listed yet when this run looked (eventual consistency; its request may even have
    /// been carried out after this run's look). Then that instance is the node's, as at a
    /// rerun; else the address is still held by the instance the node replaces (its interface
    /// goes some time after it terminates), and the launch is tried again within
    /// [`Aws::dependency_wait`].
    async fn launch(&self, run: &RunInstance, subnet: &str, sg: &str) -> Result<String, AwsError> {
        let token = attempt_token(&run.node)?;
        let mut ebs = EbsBlockDevice::builder()
            .volume_size(run.volume_size_gib as i32)
            .volume_type(VolumeType::from(run.volume_type.as_str()))
            .delete_on_termination(true)
            .encrypted(run.encrypted);
        if let Some(k) = &run.kms_key {
            ebs = ebs.kms_key_id(k);
        }
        let ebs = ebs.build();
        let resource = format!("node {} ({})", run.node, run.private_ip);
        let c = &self.client;
        let start = Instant::now();
        let mut backoff = Backoff::new(self.poll);
        loop {
            let sent = self
                .settle(
                    "RunInstances",
                    &resource,
                    &[subnet, sg, &run.key_name],
                    &[],
                    || {
                        c.run_instances()
                            .image_id(&run.image_id)
                            .instance_type(InstanceType::from(run.instance_type.as_str()))
                            .min_count(1)
                            .max_count(1)
                            .key_name(&run.key_name)
                            .subnet_id(subnet)
                            .private_ip_address(run.private_ip.to_string())
                            .security_group_ids(sg)
                            .client_token(&token)
                            .block_device_mappings(
                                BlockDeviceMapping::builder()
                                    .device_name(&run.root_device)
                                    .ebs(ebs.clone())
                                    .build(),
                            )
                            .metadata_options(
                                InstanceMetadataOptionsRequest::builder()
                                    .http_tokens(HttpTokensState::Required)
                                    .build(),
                            )
                            .tag_specifications(tag_spec(ResourceType::Instance, &run.tags))
                            .tag_specifications(tag_spec(ResourceType::Volume, &run.volume_tags))
                            .send()
                    },
                )
                .await;
            let e = match sent {
                Ok(out) => {
                    let id = out
                        .instances()
                        .first()
                        .and_then(|i| i.instance_id())
                        .unwrap_or_default()
                        .to_string();
                    self.created(&id);
                    return Ok(id);
                }
                Err(e) => e,
            };
            let met = launch_met(e.code());
            if met == Met::Refusal {
                return Err(api_err("RunInstances", &resource, e));
            }
            // (A look that fails is no answer: the launch's own error is reported.)
            if let Ok(Some(id)) = self.node_instance(run).await {
                self.retries.count("RunInstances:adopted");
                tracing::info!(
                    "RunInstances ({resource}): {}; the node's instance {id} is there (launched by an earlier run): taken as the node's",
                    e.code().unwrap_or("answer unreadable")
                );
                return Ok(id);
            }
            if met == Met::Unreadable || start.elapsed() >= self.dependency_wait {
                return Err(api_err("RunInstances", &resource, e));
            }
            let wait = backoff.next_delay();
            self.retries.count(IP_IN_USE);
            tracing::info!(
                "RunInstances ({resource}): {IP_IN_USE} after {:?}; retrying in {wait:?}",
                start.elapsed()
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Start the instance and wait until it runs; a start that EC2 ended on its own side is
    /// tried again, up to [`ATTEMPTS`] times.
    pub(crate) async fn start_instance(&self, instance: &str) -> Result<(), AwsError> {
        let mut attempt = 1;
        loop {
            self.client
                .start_instances()
                .instance_ids(instance)
                .send()
                .await
                .map_err(|e| api_err("StartInstances", instance, e))?;
            match self.wait_instance(instance, &["running"]).await {
                Err(e) if e.ended_on_server_side() && attempt < ATTEMPTS => {
                    self.retries.count("start ended by EC2");
                    tracing::warn!("{e}; starting it again");
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// Change the instance type; a running instance (`restart`) is stopped before and started
    /// after.
    pub(super) async fn modify_instance_type(
        &self,
        instance: &str,
        instance_type: &str,
        restart: bool,
    ) -> Result<(), AwsError> {
        let c = &self.client;
        if restart {
            c.stop_instances()
                .instance_ids(instance)
                .send()
                .await
                .map_err(|e| api_err("StopInstances", instance, e))?;
            self.wait_instance(instance, &["stopped"]).await?;
        }
        c.modify_instance_attribute()
            .instance_id(instance)
            .instance_type(AttributeValue::builder().value(instance_type).build())
            .send()
            .await
            .map_err(|e| api_err("ModifyInstanceAttribute", instance, e))?;
        if restart {
            self.start_instance(instance).await?;
        }
        Ok(())
    }

    pub(super) async fn require_imds_v2(&self, instance: &str) -> Result<(), AwsError> {
        self.client
            .modify_instance_metadata_options()
            .instance_id(instance)
            .http_tokens(HttpTokensState::Required)
            .http_endpoint(InstanceMetadataEndpointState::Enabled)
            .send()
            .await
            .map_err(|e| api_err("ModifyInstanceMetadataOptions", instance, e))?;
        Ok(())
    }

    pub(super) async fn terminate(&self, instance: &str) -> Result<(), AwsError> {
        self.fresh.forget(instance);
        match self
            .client
            .terminate_instances()
            .instance_ids(instance)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_code(&e, &["InvalidInstanceID.NotFound"]) => return Ok(()),
            Err(e) => return Err(api_err("TerminateInstances", instance, e)),
        }
        self.wait_instance(instance, &["terminated"]).await
    }

    /// Write the tags in `set`, then remove the keys in `remove`.
    pub(crate) async fn set_tags(
        &self,
        resource: &str,
        set: &Tags,
        remove: &[String],
    ) -> Result<(), AwsError> {
        let c = &self.client;
        if !set.is_empty() {
            self.settle("CreateTags", resource, &[resource], &[], || {
                let mut req = c.create_tags().resources(resource);
                for (k, v) in set {
                    req = req.tags(Tag::builder().key(k).value(v).build());
                }
                req.send()
            })
            .await
            .map_err(|e| api_err("CreateTags", resource, e))?;
        }
        if !remove.is_empty() {
            self.settle("DeleteTags", resource, &[resource], &[], || {
                let mut req = c.delete_tags().resources(resource);
                for k in remove {
                    req = req.tags(Tag::builder().key(k).build());
                }
                req.send()
            })
            .await
            .map_err(|e| api_err("DeleteTags", resource, e))?;
        }
        Ok(())
    }

    /// Wait until the instance is in one of `states` (a vanished instance counts as
    /// terminated). Ends at once, with EC2's `StateReason`, when the instance went where it
    /// cannot come back from ([`judge`]).
    pub(crate) async fn wait_instance(
        &self,
        instance: &str,
        states: &[&str],
    ) -> Result<(), AwsError> {
        let c = self.client.clone();
        let what = format!("instance {instance} to be {}", states.join(" or "));
        let seen = std::sync::Mutex::new(Vec::<String>::new());
        wait_for(what.clone(), self.instance_wait, self.poll, || {
            let (c, what, seen) = (c.clone(), what.clone(), &seen);
            async move {
                let out = match c.describe_instances().instance_ids(instance).send().await {
                    Ok(o) => o,
                    Err(e) if is_code(&e, &["InvalidInstanceID.NotFound"]) => {
                        if states.contains(&"terminated") {
                            return Ok(Some(()));
                        }
                        if self.fresh.contains(instance) {
                            self.retries.count("InvalidInstanceID.NotFound");
                            return Ok(None);
                        }
                        return Err(api_err("DescribeInstances", instance, e));
                    }
                    Err(e) => return Err(api_err("DescribeInstances", instance, e)),
                };
                let Some(i) = out.reservations().iter().flat_map(|r| r.instances()).next() else {
                    return Ok(states.contains(&"terminated").then_some(()));
                };
                let state = i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default();
                let reason = i.state_reason();
                let code = reason.and_then(|r| r.code());
                let mut seen = seen.lock().unwrap();
                let verdict = judge(states, &state, code, &seen);
                seen.push(state.clone());
                match verdict {
                    Look::Done => Ok(Some(())),
                    Look::Wait => Ok(None),
                    Look::Ended => Err(AwsError::Ended {
                        what: format!("while waiting for {what}"),
                        state,
                        reason: reason.map(|r| state_reason(r.code(), r.message())),
                    }),
                }
            }
        })
        .await
    }
}

/// What one look at an instance in `state` means for a wait for `want`.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    Done,
    Wait,
    /// It will not get there by itself.
    Ended,
}

/// The stop that redisctl (or an operator) asked for; any other reason for `stopped` while
/// waiting for `running` is a start that failed.
const USER_STOP: &str = "Client.UserInitiatedShutdown";

/// Judge a look at an instance: `state` now, `reason` the code of its `StateReason`, `seen`
/// the states seen earlier in the same wait. Waiting for `running`, `shutting-down` or
/// `terminated` is final (a launch that failed), and so is `stopped` once the start was seen
/// to move (`pending`) or when EC2 gives a reason other than a requested stop (a start that
/// failed); a `stopped` with neither may be the answer lagging behind the StartInstances.
fn judge(want: &[&str], state: &str, reason: Option<&str>, seen: &[String]) -> Look {
    if want.contains(&state) {
        return Look::Done;
    }
    let gone = matches!(state, "shutting-down" | "terminated");
    if want.contains(&"running") {
        if gone {
            return Look::Ended;
        }
        if state == "stopped"
            && (seen.iter().any(|s| s == "pending") || reason.is_some_and(|r| r != USER_STOP))
        {
            return Look::Ended;
        }
    }
    if want.contains(&"stopped") && gone {
        return Look::Ended;
    }
    Look::Wait
}

/// EC2's `StateReason` as one line: its message usually starts with its code already.
fn state_reason(code: Option<&str>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(c), Some(m)) if m.starts_with(c) => m.to_string(),
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => "no reason given".to_string(),
    }
}

/// EC2's code for a launch at a private IP that an interface holds.
const IP_IN_USE: &str = "InvalidIPAddress.InUse";

/// What a RunInstances that failed met, by EC2's error code (`None`: no code could be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Met {
    /// The node's private IP is in use.
    AddressInUse,
    /// No EC2 error could be read from the answer (after the SDK's retries): whether the
    /// instance was launched is not known.
    Unreadable,
    /// Any other refusal: reported as it is.
    Refusal,
}

fn launch_met(code: Option<&str>) -> Met {
    match code {
        Some(IP_IN_USE) => Met::AddressInUse,
        Some(_) => Met::Refusal,
        None => Met::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake;
    use super::*;
    use std::time::Duration;

    fn seen(states: &[&str]) -> Vec<String> {
        states.iter().map(|s| s.to_string()).collect()
    }

    fn run() -> RunInstance {
        let tags: crate::observed::Tags = [
            (tags::CLUSTER.to_string(), "c".to_string()),
            (tags::NODE.to_string(), "redis-node-1a".to_string()),
        ]
        .into_iter()
        .collect();
        RunInstance {
            node: "redis-node-1a".into(),
            image_id: "ami-1".into(),
            instance_type: "t3.micro".into(),
            subnet: crate::plan::Ref::Id("subnet-1".into()),
            security_group: crate::plan::Ref::Id("sg-1".into()),
            key_name: "k".into(),
            private_ip: "10.0.1.10".parse().unwrap(),
            root_device: "/dev/sda1".into(),
            volume_size_gib: 8,
            volume_type: "gp3".into(),
            encrypted: false,
            kms_key: None,
            tags: tags.clone(),
            volume_tags: tags,
        }
    }

    /// The launch's answers: RunInstances gets `run`, the looks for the node's instance (by
    /// tags) get nothing for the first `hidden` times, then the instance a killed run launched.
    async fn launch_meeting(
        run_answer: fn() -> fake::Answer,
        hidden: usize,
    ) -> (Result<String, AwsError>, Vec<String>) {
        let ec2 = fake::FakeEc2::start(move |action, n| match action {
            "RunInstances" => run_answer(),
            "DescribeInstances" if n < hidden => fake::instances(&[]),
            "DescribeInstances" => fake::instances(&[("i-killed", "pending", "10.0.1.10")]),
            _ => fake::error("UnknownAction", action),
        })
        .await;
        let aws = ec2.client(Duration::from_millis(500));
        let r = aws.launch(&run(), "subnet-1", "sg-1").await;
        (r, ec2.asked())
    }

    fn in_use() -> fake::Answer {
        fake::error(IP_IN_USE, "Address 10.0.1.10 is in use.")
    }

    #[tokio::test]
    async fn a_launch_whose_address_a_killed_runs_instance_holds_takes_that_instance() {
        // The killed run's instance is not listed at the first look (eventual consistency),
        // then is: it is the node's; no second instance, no wait for the address to free.
        let (r, asked) = launch_meeting(in_use, 1).await;
        assert_eq!(r.unwrap(), "i-killed");
        assert_eq!(
            asked,
            [
                "RunInstances",
                "DescribeInstances",
                "RunInstances",
                "DescribeInstances"
            ]
        );
    }

    #[tokio::test]
    async fn an_address_held_by_another_instance_is_waited_for_then_reported() {
        let (r, asked) = launch_meeting(in_use, usize::MAX).await;
        let e = r.unwrap_err();
        assert_eq!(e.code(), Some(IP_IN_USE), "{e}");
        assert!(asked.iter().filter(|a| *a == "RunInstances").count() > 1);
    }

    #[tokio::test]
    async fn an_unreadable_answer_takes_the_nodes_instance_if_it_is_there() {
        // HTTP 500 without an EC2 body (the SDK: "error parsing XML: no root element").
        let unreadable = || (500, "<!doctype html><title>500</title>".to_string());
        let (r, asked) = launch_meeting(unreadable, 0).await;
        assert_eq!(r.unwrap(), "i-killed");
        assert_eq!(asked, ["RunInstances", "DescribeInstances"]);
        // Not there: the launch's own failure, once.
        let (r, asked) = launch_meeting(unreadable, usize::MAX).await;
        assert!(matches!(r, Err(AwsError::Transport { .. })), "{r:?}");
        assert_eq!(asked, ["RunInstances", "DescribeInstances"]);
        // Any other refusal is reported as it is, without a look.
        let quota = || fake::error("InstanceLimitExceeded", "too many");
        let (r, asked) = launch_meeting(quota, 0).await;
        assert_eq!(r.unwrap_err().code(), Some("InstanceLimitExceeded"));
        assert_eq!(asked, ["RunInstances"]);
        // A launch EC2 answers is the new instance.
        let (r, _) = launch_meeting(|| fake::launched("i-new"), 0).await;
        assert_eq!(r.unwrap(), "i-new");
    }

    #[test]
    fn a_launch_that_terminated_ends_the_wait() {
        let none = seen(&[]);
        assert_eq!(judge(&["running"], "pending", None, &none), Look::Wait);
        assert_eq!(judge(&["running"], "running", None, &none), Look::Done);
        assert_eq!(
            judge(
                &["running"],
                "terminated",
                Some("Client.InvalidKMSKey.InvalidState"),
                &none
            ),
            Look::Ended
        );
        assert_eq!(
            judge(&["running"], "shutting-down", None, &none),
            Look::Ended
        );
    }

    #[test]
    fn a_start_that_fell_back_to_stopped_ends_the_wait() {
        // Right after StartInstances, `stopped` from the earlier stop may still be shown.
        assert_eq!(
            judge(&["running"], "stopped", Some(USER_STOP), &seen(&[])),
            Look::Wait
        );
        assert_eq!(judge(&["running"], "stopped", None, &seen(&[])), Look::Wait);
        assert_eq!(
            judge(
                &["running"],
                "stopped",
                Some(USER_STOP),
                &seen(&["stopped", "pending"])
            ),
            Look::Ended
        );
        assert_eq!(
            judge(
                &["running"],
                "stopped",
                Some("Server.InternalError"),
                &seen(&[])
            ),
            Look::Ended
        );
    }

    #[test]
    fn a_stop_ends_on_termination_only() {
        assert_eq!(
            judge(&["stopped"], "stopping", None, &seen(&[])),
            Look::Wait
        );
        assert_eq!(
            judge(&["stopped"], "terminated", None, &seen(&[])),
            Look::Ended
        );
        assert_eq!(
            judge(&["terminated"], "shutting-down", None, &seen(&[])),
            Look::Wait
        );
    }

    #[test]
    fn state_reasons_read_as_one_line() {
        assert_eq!(
            state_reason(
                Some("Client.InvalidKMSKey.InvalidState"),
                Some(
                    "Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state"
                )
            ),
            "Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state"
        );
        assert_eq!(
            state_reason(
                Some("Server.InternalError"),
                Some("Internal error on launch")
            ),
            "Server.InternalError: Internal error on launch"
        );
    }
}
