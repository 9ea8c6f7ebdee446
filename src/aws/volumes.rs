//! The EC2 side of the root volume swap (phase 8): stop/start, the plaintext snapshot, the
//! encrypted volume from it, detach/attach at the root device, the stage tags. Every call is an
//! ensure: the snapshot and the volume are found again by their tags and origin, so a rerun
//! adopts what a crashed run made instead of making another.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    EbsInstanceBlockDeviceSpecification, Filter, InstanceBlockDeviceMappingSpecification,
    ResourceType, VolumeType,
};

use super::describe::{block_devices, snapshot, tag_map, volume};
use super::ops::tag_filters;
use super::{ATTEMPTS, Aws, AwsError, api_err, attempt_token, filter, tag_spec, wait_for};
use crate::observed::{self, Tags, tags};
use crate::plan::Ec2Op;

/// How long a snapshot of a root volume may take (the first one of a volume copies it all).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(3 * 3600);

/// The cluster/role/node tags of `t`, as Describe filters.
fn identity(t: &Tags) -> Vec<Filter> {
    tag_filters(t, &[tags::CLUSTER, tags::ROLE, tags::NODE])
}

/// An instance as the swap sees it.
#[derive(Debug, Clone)]
pub struct InstanceNow {
    pub state: String,
    pub tags: Tags,
    /// Device name -> volume id.
    pub block_devices: BTreeMap<String, String>,
}

/// A volume as the swap sees it.
#[derive(Debug, Clone)]
pub struct VolumeNow {
    pub state: String,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub attached_to: Option<(String, String)>,
}

impl Aws {
    pub async fn instance_now(&self, id: &str) -> Result<InstanceNow, AwsError> {
        let out = self
            .client
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| api_err("DescribeInstances", id, e))?;
        let i = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .ok_or_else(|| AwsError::Api {
                call: "DescribeInstances",
                resource: id.into(),
                code: "InvalidInstanceID.NotFound".into(),
                message: "the instance does not exist".into(),
            })?;
        Ok(InstanceNow {
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            tags: tag_map(i.tags()),
            block_devices: block_devices(i),
        })
    }

    /// The volume now; `None` when EC2 does not know it (after the bounded wait for one this
    /// run just created).
    pub async fn volume_now(&self, id: &str) -> Result<Option<VolumeNow>, AwsError> {
        let c = &self.client;
        let out = match self
            .settle("DescribeVolumes", id, &[id], &[], || {
                c.describe_volumes().volume_ids(id).send()
            })
            .await
        {
            Ok(o) => o,
            Err(e) if e.code() == Some("InvalidVolume.NotFound") => return Ok(None),
            Err(e) => return Err(api_err("DescribeVolumes", id, e)),
        };
        Ok(out.volumes().first().map(|v| VolumeNow {
            state: v
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            encrypted: v.encrypted().unwrap_or(false),
            kms_key_id: v.kms_key_id().map(String::from),
            attached_to: v
                .attachments()
                .iter()
                .filter(|a| a.state().is_some_and(|s| s.as_str() != "detached"))
                .find_map(|a| Some((a.instance_id()?.to_string(), a.device()?.to_string()))),
        }))
    }

    /// The volume as observation records it, looked up by id whatever its tags; `None` when
    /// EC2 does not know it.
    pub async fn volume_by_id(&self, id: &str) -> Result<Option<observed::Volume>, AwsError> {
        let c = &self.client;
        match self
            .settle("DescribeVolumes", id, &[id], &[], || {
                c.describe_volumes().volume_ids(id).send()
            })
            .await
        {
            Ok(o) => Ok(o.volumes().first().map(volume)),
            Err(e) if e.code() == Some("InvalidVolume.NotFound") => Ok(None),
            Err(e) => Err(api_err("DescribeVolumes", id, e)),
        }
    }

    /// The snapshot as observation records it, looked up by id whatever its tags or owner;
    /// `None` when EC2 does not know it (or it is another account's, not shared with this one).
    pub async fn snapshot_by_id(&self, id: &str) -> Result<Option<observed::Snapshot>, AwsError> {
        let c = &self.client;
        match self
            .settle("DescribeSnapshots", id, &[id], &[], || {
                c.describe_snapshots().snapshot_ids(id).send()
            })
            .await
        {
            Ok(o) => Ok(o.snapshots().first().map(snapshot)),
            Err(e) if e.code() == Some("InvalidSnapshot.NotFound") => Ok(None),
            Err(e) => Err(api_err("DescribeSnapshots", id, e)),
        }
    }

    /// Set and remove tags on one resource.
    pub async fn retag(&self, id: &str, set: &Tags, remove: &[&str]) -> Result<(), AwsError> {
        let remove: Vec<String> = remove.iter().map(|k| k.to_string()).collect();
        self.set_tags(id, set, &remove).await
    }

    pub async fn stop_and_wait(&self, id: &str) -> Result<(), AwsError> {
        self.client
            .stop_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| api_err("StopInstances", id, e))?;
        self.wait_instance(id, &["stopped"]).await
    }

    /// The snapshot of `volume` tagged `t` (adopted if a previous run made it), completed.
    pub async fn ensure_snapshot(&self, volume: &str, t: &Tags) -> Result<String, AwsError> {
        let c = &self.client;
        let out = c
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(identity(t)))
            .filters(filter("volume-id", volume))
            .send()
            .await
            .map_err(|e| api_err("DescribeSnapshots", volume, e))?;
        let existing = out
            .snapshots()
            .iter()
            .find(|s| s.state().is_none_or(|st| st.as_str() != "error"))
            .and_then(|s| s.snapshot_id());
        let id = match existing {
            Some(id) => id.to_string(),
            None => {
                let id = c
                    .create_snapshot()
                    .volume_id(volume)
                    .description(format!(
                        "redisctl: plaintext root of {} before the encryption swap",
                        t.get(tags::NODE).map(String::as_str).unwrap_or("?")
                    ))
                    .tag_specifications(tag_spec(ResourceType::Snapshot, t))
                    .send()
                    .await
                    .map_err(|e| api_err("CreateSnapshot", volume, e))?
                    .snapshot_id()
                    .unwrap_or_default()
                    .to_string();
                self.created(&id);
                id
            }
        };
        let sid = id.as_str();
        wait_for(
            format!("snapshot {id} of {volume} to complete"),
            SNAPSHOT_WAIT,
            self.poll,
            || async move {
                let out = self
                    .settle("DescribeSnapshots", sid, &[sid], &[], || {
                        c.describe_snapshots().snapshot_ids(sid).send()
                    })
                    .await
                    .map_err(|e| api_err("DescribeSnapshots", sid, e))?;
                let Some(s) = out.snapshots().first() else {
                    return Ok(None);
                };
                match s.state().map(|s| s.as_str()) {
                    Some("completed") => Ok(Some(())),
                    Some("error") => Err(AwsError::Ended {
                        what: format!("snapshot {sid} of {volume}"),
                        state: "error".into(),
                        reason: s.state_message().map(String::from),
                    }),
                    _ => {
                        let progress = s.progress().unwrap_or("0%");
                        crate::progress::status(format!("snapshot {sid} of {volume}: {progress}"));
                        Ok(None)
                    }
                }
            },
        )
        .await?;
        Ok(id)
    }

    /// The encrypted volume made from `snapshot` (adopted if a previous run made it), available
    /// (or already attached, on a rerun).
    pub async fn ensure_encrypted_volume(
        &self,
        snapshot: &str,
        az: &str,
        volume_type: &str,
        kms_key: &str,
        t: &Tags,
    ) -> Result<String, AwsError> {
        let c = &self.client;
        let out = c
            .describe_volumes()
            .set_filters(Some(identity(t)))
            .filters(filter("snapshot-id", snapshot))
            .send()
            .await
            .map_err(|e| api_err("DescribeVolumes", snapshot, e))?;
        // A volume EBS put in `error` holds nothing: it is removed, not adopted.
        for v in out.volumes().iter().filter(|v| v.encrypted() == Some(true)) {
            if let (Some(id), Some("error")) = (v.volume_id(), v.state().map(|s| s.as_str())) {
                tracing::info!("deleting volume {id}, which EBS left in state error");
                self.delete_volume(id).await?;
            }
        }
        let existing = out
            .volumes()
            .iter()
            .filter(|v| v.state().is_none_or(|s| s.as_str() != "error"))
            .find(|v| v.encrypted() == Some(true))
            .and_then(|v| v.volume_id());
        let mut existing = existing.map(String::from);
        let mut attempt = 1;
        loop {
            let id = match existing.take() {
                Some(id) => id,
                None => {
                    // One token per attempt: the SDK's retry of a create whose answer was lost
                    // gets the same volume; a new attempt never meets the token of one that
                    // failed.
                    let token = attempt_token(&format!("the volume from {snapshot}"))?;
                    let id = self
                        .settle("CreateVolume", snapshot, &[snapshot], &[], || {
                            c.create_volume()
                                .client_token(&token)
                                .snapshot_id(snapshot)
                                .availability_zone(az)
                                .volume_type(VolumeType::from(volume_type))
                                .encrypted(true)
                                .kms_key_id(kms_key)
                                .tag_specifications(tag_spec(ResourceType::Volume, t))
                                .send()
                        })
                        .await
                        .map_err(|e| api_err("CreateVolume", snapshot, e))?
                        .volume_id()
                        .unwrap_or_default()
                        .to_string();
                    self.created(&id);
                    id
                }
            };
            match self.wait_volume(&id, &["available", "in-use"]).await {
                Ok(_) => return Ok(id),
                Err(e @ AwsError::Ended { .. }) if attempt < ATTEMPTS => {
                    self.retries.count("volume ended in error");
                    tracing::warn!("{e}; deleting it and creating the volume again");
                    self.delete_volume(&id).await?;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Wait until the volume is in one of `states`; ends at once on `error`.
    async fn wait_volume(&self, id: &str, states: &[&str]) -> Result<VolumeNow, AwsError> {
        let what = format!("volume {id} to be {}", states.join(" or "));
        wait_for(what.clone(), self.instance_wait, self.poll, || {
            let what = what.clone();
            async move {
                match self.volume_now(id).await? {
                    Some(v) if states.contains(&v.state.as_str()) => Ok(Some(v)),
                    Some(v) if v.state == "error" => Err(AwsError::Ended {
                        what: format!("while waiting for {what}"),
                        state: v.state,
                        reason: Some(
                            "EBS could not create the volume; redisctl deletes it and makes a new one at the next run"
                                .into(),
                        ),
                    }),
                    _ => Ok(None),
                }
            }
        })
        .await
    }

    /// Detach `old` from the instance (with its instance id) and attach `new` at `device`;
    /// either half already done is skipped.
    pub async fn swap_attachment(
        &self,
        instance: &str,
        device: &str,
        old: &str,
        new: &str,
    ) -> Result<(), AwsError> {
        let c = &self.client;
        if let Some(v) = self.volume_now(old).await?
            && v.attached_to.as_ref().is_some_and(|(i, _)| i == instance)
        {
            self.settle("DetachVolume", old, &[old, instance], &[], || {
                c.detach_volume()
                    .volume_id(old)
                    .instance_id(instance)
                    .device(device)
                    .send()
            })
            .await
            .map_err(|e| api_err("DetachVolume", old, e))?;
            self.wait_volume(old, &["available"]).await?;
        }
        let now = self.volume_now(new).await?.ok_or_else(|| AwsError::Api {
            call: "DescribeVolumes",
            resource: new.into(),
            code: "InvalidVolume.NotFound".into(),
            message: "the encrypted volume is gone".into(),
        })?;
        match &now.attached_to {
            Some((i, d)) if i == instance && d == device => {}
            Some((i, d)) => {
                return Err(AwsError::Api {
                    call: "AttachVolume",
                    resource: new.into(),
                    code: "VolumeInUse".into(),
                    message: format!("the encrypted volume is attached to {i} at {d}"),
                });
            }
            None => {
                self.settle("AttachVolume", new, &[new, instance], &[], || {
                    c.attach_volume()
                        .volume_id(new)
                        .instance_id(instance)
                        .device(device)
                        .send()
                })
                .await
                .map_err(|e| api_err("AttachVolume", new, e))?;
            }
        }
        self.wait_volume(new, &["in-use"]).await?;
        // As at launch: the root goes with the instance (AttachVolume defaults to keeping it).
        self.settle(
            "ModifyInstanceAttribute",
            instance,
            &[new, instance],
            &[],
            || {
                c.modify_instance_attribute()
                    .instance_id(instance)
                    .block_device_mappings(
                        InstanceBlockDeviceMappingSpecification::builder()
                            .device_name(device)
                            .ebs(
                                EbsInstanceBlockDeviceSpecification::builder()
                                    .volume_id(new)
                                    .delete_on_termination(true)
                                    .build(),
                            )
                            .build(),
                    )
                    .send()
            },
        )
        .await
        .map_err(|e| api_err("ModifyInstanceAttribute", instance, e))?;
        Ok(())
    }

    pub async fn delete_volume(&self, id: &str) -> Result<(), AwsError> {
        self.run_op(&Ec2Op::DeleteVolume { id: id.into() }, &BTreeMap::new())
            .await
            .map(|_| ())
    }

    pub async fn delete_snapshot(&self, id: &str) -> Result<(), AwsError> {
        self.run_op(&Ec2Op::DeleteSnapshot { id: id.into() }, &BTreeMap::new())
            .await
            .map(|_| ())
    }

    /// Every copy a swap may have left of the plaintext root `old` besides `keep`: the node's
    /// snapshots of `old` (tagged `snapshot_tags`), and the node's unattached volumes made from
    /// them (tagged `volume_tags`). A run killed while a CreateSnapshot or CreateVolume was on
    /// its way may have made one that the rerun did not see yet and made again; the swap's last
    /// stage removes them all, so no plaintext (or stray encrypted) copy is left behind.
    pub async fn swap_strays(
        &self,
        old: &str,
        snapshot_tags: &Tags,
        volume_tags: &Tags,
        keep: &[&str],
    ) -> Result<(Vec<String>, Vec<String>), AwsError> {
        let c = &self.client;
        let snaps: Vec<String> = c
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(identity(snapshot_tags)))
            .filters(filter("volume-id", old))
            .send()
            .await
            .map_err(|e| api_err("DescribeSnapshots", old, e))?
            .snapshots()
            .iter()
            .filter_map(|s| s.snapshot_id().map(String::from))
            .collect();
        let mut vols = Vec::new();
        if !snaps.is_empty() {
            let out = c
                .describe_volumes()
                .set_filters(Some(identity(volume_tags)))
                .filters(
                    Filter::builder()
                        .name("snapshot-id")
                        .set_values(Some(snaps.clone()))
                        .build(),
                )
                .filters(filter("status", "available"))
                .send()
                .await
                .map_err(|e| api_err("DescribeVolumes", old, e))?;
            vols = out
                .volumes()
                .iter()
                .filter_map(|v| v.volume_id().map(String::from))
                .filter(|v| !keep.contains(&v.as_str()))
                .collect();
        }
        let snaps = snaps
            .into_iter()
            .filter(|s| !keep.contains(&s.as_str()))
            .collect();
        Ok((snaps, vols))
    }
}
