//! Volumes and snapshots in time: a volume `creating` (or ending in `error`, a failure after
//! yes), attachments `attaching` and `detaching`, a snapshot `pending` with a rising
//! `progress`; and AttachVolume refused while the volume is not `available`.

use super::{ATTACHING_SECS, CREATING_SECS, DETACHING_SECS, Refusal, Region, SNAPSHOT_SECS};
use crate::faults::Effect;
use crate::front::moto::param;
use crate::xml::{self, Attachment, SnapshotView, VolumeView};
use anyhow::{Context, Result};
use std::time::Instant;

#[derive(Default)]
pub(super) struct VolumeClock {
    creating_until: Option<Instant>,
    fails: bool,
    attaching: Option<(String, Instant)>,
    detaching: Option<(Attachment, Instant)>,
}

pub(super) struct SnapshotClock {
    started: Instant,
    until: Instant,
}

/// A pending snapshot's progress: linear over its window, 99% at most until it completes.
fn progress(s: &SnapshotClock, now: Instant) -> u8 {
    let total = s.until.saturating_duration_since(s.started).as_secs_f64();
    let done = now.saturating_duration_since(s.started).as_secs_f64();
    if total <= 0.0 {
        return 99;
    }
    ((done / total * 100.0).floor() as u8).min(99)
}

impl Region {
    fn volume_status(&self, id: &str, now: Instant) -> Option<&'static str> {
        let v = self.volumes.get(id)?;
        if v.creating_until.is_some_and(|t| now < t) {
            Some("creating")
        } else if v.fails {
            Some("error")
        } else {
            None
        }
    }

    /// How an answer shows a volume now.
    pub(super) fn volume_view(&self, id: &str, hide: bool, now: Instant) -> VolumeView {
        let v = self.volumes.get(id);
        let active = |t: &Instant| now < *t;
        VolumeView {
            hide,
            status: self.volume_status(id, now),
            attaching: v
                .and_then(|v| v.attaching.as_ref())
                .filter(|(_, t)| active(t))
                .map(|(i, _)| i.clone()),
            detaching: v
                .and_then(|v| v.detaching.as_ref())
                .filter(|(_, t)| active(t))
                .map(|(a, _)| a.clone()),
        }
    }

    /// How an answer shows a snapshot now.
    pub(super) fn snapshot_view(&self, id: &str, hide: bool, now: Instant) -> SnapshotView {
        SnapshotView {
            hide,
            pending: self
                .snapshots
                .get(id)
                .filter(|s| now < s.until)
                .map(|s| progress(s, now)),
        }
    }

    /// AttachVolume of a volume still `creating`, or in `error`.
    pub(super) fn not_attachable(
        &self,
        params: &[(String, String)],
        now: Instant,
    ) -> Option<Refusal> {
        let id = param(params, "VolumeId")?;
        self.volume_status(id, now).map(|_| Refusal {
            code: "IncorrectState",
            message: format!("{id} is not 'available'."),
        })
    }

    /// The volumes' and snapshots' side of [`Region::record`].
    pub(super) fn record_storage(
        &mut self,
        action: &str,
        params: &[(String, String)],
        body: &str,
        fault: Option<&Effect>,
        now: Instant,
    ) -> Result<()> {
        match action {
            "CreateVolume" => {
                let id = xml::first_text(body, "volumeId")?
                    .context("moto's CreateVolume answer has no volumeId")?;
                let until = now + self.window(CREATING_SECS);
                self.volumes.insert(
                    id,
                    VolumeClock {
                        creating_until: Some(until),
                        fails: fault == Some(&Effect::VolumeFails),
                        ..VolumeClock::default()
                    },
                );
                if fault == Some(&Effect::VolumeFails) {
                    self.counters.volumes_failed += 1;
                }
            }
            "CreateSnapshot" | "CopySnapshot" => {
                let id = xml::first_text(body, "snapshotId")?
                    .with_context(|| format!("moto's {action} answer has no snapshotId"))?;
                let until = now + self.window(SNAPSHOT_SECS);
                self.snapshots.insert(
                    id,
                    SnapshotClock {
                        started: now,
                        until,
                    },
                );
            }
            "AttachVolume" => {
                if let Some(a) = xml::attachment(body)? {
                    let until = now + self.window(ATTACHING_SECS);
                    let v = self.volumes.entry(a.volume_id).or_default();
                    v.attaching = Some((a.instance_id, until));
                    v.detaching = None;
                }
            }
            "DetachVolume" => {
                if let Some(a) = xml::attachment(body)? {
                    let until = now + self.window(DETACHING_SECS);
                    let v = self.volumes.entry(a.volume_id.clone()).or_default();
                    v.attaching = None;
                    v.detaching = Some((a, until));
                }
            }
            "DeleteVolume" => {
                if let Some(id) = param(params, "VolumeId") {
                    self.volumes.remove(id);
                }
            }
            "DeleteSnapshot" => {
                if let Some(id) = param(params, "SnapshotId") {
                    self.snapshots.remove(id);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;
    use std::collections::HashMap;

    #[test]
    fn volumes_create_attach_detach_and_fail() {
        let mut r = region();
        let t0 = Instant::now();
        let created = r#"<CreateVolumeResponse><volumeId>vol-1</volumeId><status>available</status><attachmentSet/></CreateVolumeResponse>"#;
        let answer = r.rewrite("CreateVolume", created, &HashMap::new(), t0);
        assert_eq!(answer.unwrap(), created, "no timeline yet: moto's answer");
        r.record("CreateVolume", &[], created, None, &[], t0)
            .unwrap();
        let answer = r
            .rewrite("CreateVolume", created, &HashMap::new(), t0)
            .unwrap();
        assert!(answer.contains("<status>creating</status>"), "{answer}");
        let attach = p(&[("VolumeId", "vol-1"), ("InstanceId", "i-1")]);
        assert_eq!(
            r.refuse("AttachVolume", &attach, t0 + scaled(4.0, 1.0))
                .unwrap()
                .code,
            "IncorrectState"
        );
        let t1 = t0 + scaled(CREATING_SECS, 1.0);
        assert_eq!(r.refuse("AttachVolume", &attach, t1), None);

        let attached = r#"<AttachVolumeResponse><volumeId>vol-1</volumeId><instanceId>i-1</instanceId><device>/dev/sdf</device><status>attaching</status><attachTime>t</attachTime></AttachVolumeResponse>"#;
        r.record("AttachVolume", &attach, attached, None, &[], t1)
            .unwrap();
        let in_use = r#"<DescribeVolumesResponse><volumeSet><item><volumeId>vol-1</volumeId><status>in-use</status><attachmentSet><item><volumeId>vol-1</volumeId><instanceId>i-1</instanceId><status>attached</status></item></attachmentSet></item></volumeSet></DescribeVolumesResponse>"#;
        let shown = r
            .rewrite("DescribeVolumes", in_use, &HashMap::new(), t1)
            .unwrap();
        assert!(shown.contains("<status>attaching</status>"), "{shown}");
        let t2 = t1 + scaled(ATTACHING_SECS, 1.0);
        assert_eq!(
            r.rewrite("DescribeVolumes", in_use, &HashMap::new(), t2)
                .unwrap(),
            in_use
        );

        let detached = attached
            .replace("Attach", "Detach")
            .replace("attaching", "detaching");
        r.record("DetachVolume", &attach, &detached, None, &[], t2)
            .unwrap();
        let available = r#"<DescribeVolumesResponse><volumeSet><item><volumeId>vol-1</volumeId><status>available</status><attachmentSet/></item></volumeSet></DescribeVolumesResponse>"#;
        let shown = r
            .rewrite("DescribeVolumes", available, &HashMap::new(), t2)
            .unwrap();
        assert!(shown.contains("<status>in-use</status>"), "{shown}");
        assert!(
            shown.contains(
                "<instanceId>i-1</instanceId><device>/dev/sdf</device><status>detaching</status>"
            ),
            "{shown}"
        );
        let t3 = t2 + scaled(DETACHING_SECS, 1.0);
        assert_eq!(
            r.rewrite("DescribeVolumes", available, &HashMap::new(), t3)
                .unwrap(),
            available
        );

        let created2 = created.replace("vol-1", "vol-2");
        r.record(
            "CreateVolume",
            &[],
            &created2,
            Some(&Effect::VolumeFails),
            &[],
            t0,
        )
        .unwrap();
        let shown = r
            .rewrite("CreateVolume", &created2, &HashMap::new(), t3)
            .unwrap();
        assert!(shown.contains("<status>error</status>"), "{shown}");
        let attach2 = p(&[("VolumeId", "vol-2")]);
        assert_eq!(
            r.refuse("AttachVolume", &attach2, t3).unwrap().code,
            "IncorrectState"
        );
        assert_eq!(r.counters.volumes_failed, 1);
    }

    #[test]
    fn snapshot_progress_rises_then_completes() {
        let mut r = region();
        let t0 = Instant::now();
        let body = r#"<CreateSnapshotResponse><snapshotId>snap-1</snapshotId><status>completed</status><progress>100%</progress></CreateSnapshotResponse>"#;
        r.record("CreateSnapshot", &[], body, None, &[], t0)
            .unwrap();
        let at = |secs: f64| {
            r.rewrite(
                "CreateSnapshot",
                body,
                &HashMap::new(),
                t0 + scaled(secs, 1.0),
            )
            .unwrap()
        };
        assert!(at(0.0).contains("<status>pending</status><progress>0%</progress>"));
        assert!(at(SNAPSHOT_SECS / 2.0).contains("<progress>50%</progress>"));
        assert_eq!(at(SNAPSHOT_SECS), body);
    }
}
