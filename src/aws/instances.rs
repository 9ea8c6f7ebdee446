//! The nodes' instances and what belongs to them: the key pair, running (or adopting) an
//! instance, start, resize, IMDSv2, terminate, tags, and the bounded wait for an instance state.

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    AttributeValue, BlockDeviceMapping, EbsBlockDevice, HttpTokensState,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceType, ResourceType, Tag,
    VolumeType,
};

use super::ops::{is_code, tag_filters};
use super::{Aws, AwsError, api_err, filter, filter_any, tag_spec, wait_for};
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
            return Ok(Some(id.to_string()));
        }
        let out = c
            .import_key_pair()
            .key_name(name)
            .public_key_material(Blob::new(public.into_bytes()))
            .tag_specifications(tag_spec(ResourceType::KeyPair, tags))
            .send()
            .await
            .map_err(|e| api_err("ImportKeyPair", name, e))?;
        Ok(out.key_pair_id().map(String::from))
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
        let c = &self.client;
        let out = c
            .describe_instances()
            .set_filters(Some(tag_filters(&run.tags, &[tags::CLUSTER, tags::NODE])))
            .filters(filter_any(
                "instance-state-name",
                &["pending", "running", "stopping", "stopped"],
            ))
            .send()
            .await
            .map_err(|e| api_err("DescribeInstances", &run.node, e))?;
        let existing = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.instance_id());
        let id = match existing {
            Some(id) => id.to_string(),
            None => {
                let mut ebs = EbsBlockDevice::builder()
                    .volume_size(run.volume_size_gib as i32)
                    .volume_type(VolumeType::from(run.volume_type.as_str()))
                    .delete_on_termination(true)
                    .encrypted(run.encrypted);
                if let Some(k) = &run.kms_key {
                    ebs = ebs.kms_key_id(k);
                }
                let out = c
                    .run_instances()
                    .image_id(&run.image_id)
                    .instance_type(InstanceType::from(run.instance_type.as_str()))
                    .min_count(1)
                    .max_count(1)
                    .key_name(&run.key_name)
                    .subnet_id(subnet)
                    .private_ip_address(run.private_ip.to_string())
                    .security_group_ids(sg)
                    .client_token(&run.client_token)
                    .block_device_mappings(
                        BlockDeviceMapping::builder()
                            .device_name(&run.root_device)
                            .ebs(ebs.build())
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
                    .await
                    .map_err(|e| {
                        api_err(
                            "RunInstances",
                            &format!("node {} ({})", run.node, run.private_ip),
                            e,
                        )
                    })?;
                out.instances()
                    .first()
                    .and_then(|i| i.instance_id())
                    .unwrap_or_default()
                    .to_string()
            }
        };
        self.wait_instance(&id, &["running"]).await?;
        Ok(id)
    }

    pub(super) async fn start_instance(&self, instance: &str) -> Result<(), AwsError> {
        self.client
            .start_instances()
            .instance_ids(instance)
            .send()
            .await
            .map_err(|e| api_err("StartInstances", instance, e))?;
        self.wait_instance(instance, &["running"]).await
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
    pub(super) async fn set_tags(
        &self,
        resource: &str,
        set: &Tags,
        remove: &[String],
    ) -> Result<(), AwsError> {
        let c = &self.client;
        if !set.is_empty() {
            let mut req = c.create_tags().resources(resource);
            for (k, v) in set {
                req = req.tags(Tag::builder().key(k).value(v).build());
            }
            req.send()
                .await
                .map_err(|e| api_err("CreateTags", resource, e))?;
        }
        if !remove.is_empty() {
            let mut req = c.delete_tags().resources(resource);
            for k in remove {
                req = req.tags(Tag::builder().key(k).build());
            }
            req.send()
                .await
                .map_err(|e| api_err("DeleteTags", resource, e))?;
        }
        Ok(())
    }

    /// Wait until the instance is in one of `states` (a vanished instance counts as terminated).
    pub(crate) async fn wait_instance(
        &self,
        instance: &str,
        states: &[&str],
    ) -> Result<(), AwsError> {
        let c = self.client.clone();
        wait_for(
            format!("instance {instance} to be {}", states.join(" or ")),
            self.instance_wait,
            self.poll,
            || {
                let c = c.clone();
                async move {
                    let out = match c.describe_instances().instance_ids(instance).send().await {
                        Ok(o) => o,
                        Err(e) if is_code(&e, &["InvalidInstanceID.NotFound"]) => {
                            return Ok(states.contains(&"terminated").then_some(()));
                        }
                        Err(e) => return Err(api_err("DescribeInstances", instance, e)),
                    };
                    let state = out
                        .reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .find_map(|i| {
                            i.state()
                                .and_then(|s| s.name())
                                .map(|n| n.as_str().to_string())
                        });
                    Ok(match state {
                        Some(s) if states.contains(&s.as_str()) => Some(()),
                        None if states.contains(&"terminated") => Some(()),
                        _ => None,
                    })
                }
            },
        )
        .await
    }
}
