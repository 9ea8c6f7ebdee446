//! Instances in time: the transitional states (`pending`, `stopping`, `shutting-down`) and
//! what EC2 refuses meanwhile, the failures after yes that are carried out at the end of
//! `pending` ([`Due`]) and then shown with their `stateReason`, and what a terminated
//! instance still holds in its VPC for a while ([`Lingering`]).

use super::{
    LINGERING_SECS, PENDING_SECS, Refusal, Region, SHUTTING_DOWN_SECS, STOPPING_SECS, named,
};
use crate::faults::{Effect, state_reason_message};
use crate::front::moto::{numbered, param};
use crate::xml::{self, InstanceView};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A failure to carry out for real at the end of an instance's `pending` window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub instance: String,
    /// The phase it belongs to: a later action on the instance cancels it.
    pub serial: u64,
    pub after: Duration,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Terminated (a launch that failed).
    Terminated,
    /// Stopped again (a start that failed).
    Stopped,
}

struct Phase {
    state: &'static str,
    until: Instant,
    serial: u64,
    /// The reason code of a failure due at the end (shown `pending` until carried out).
    fails: Option<String>,
}

#[derive(Default)]
pub(super) struct InstanceClock {
    phase: Option<Phase>,
    /// The `stateReason` of the last failure, shown with moto's state.
    reason: Option<(String, String)>,
}

/// What a terminated instance still holds for a while.
pub(super) struct Lingering {
    vpc: Option<String>,
    subnet: Option<String>,
    groups: Vec<String>,
    ip: Option<String>,
    pub(super) until: Instant,
}

impl Region {
    /// The transitional state an instance shows, if any.
    fn shown(&self, id: &str, now: Instant) -> Option<&'static str> {
        let phase = self.instances.get(id)?.phase.as_ref()?;
        (now < phase.until || phase.fails.is_some()).then_some(phase.state)
    }

    /// The transitional states of these instances now (for the `previousState` of an answer).
    pub fn shown_states(&self, ids: &[String], now: Instant) -> HashMap<String, &'static str> {
        ids.iter()
            .filter_map(|id| Some((id.clone(), self.shown(id, now)?)))
            .collect()
    }

    /// How an answer shows an instance now; `previous` holds the transitional states the
    /// instances showed before the request.
    pub(super) fn instance_view(
        &self,
        id: &str,
        hide: bool,
        previous: &HashMap<String, &'static str>,
        now: Instant,
    ) -> InstanceView {
        let state = self.shown(id, now);
        InstanceView {
            hide,
            state,
            previous: previous.get(id).copied(),
            reason: self
                .instances
                .get(id)
                .filter(|_| state.is_none())
                .and_then(|c| c.reason.clone()),
        }
    }

    /// StartInstances of an instance that is still `stopping`.
    pub(super) fn not_startable(
        &self,
        params: &[(String, String)],
        now: Instant,
    ) -> Option<Refusal> {
        numbered(params, "InstanceId")
            .into_iter()
            .find(|id| self.shown(id, now) == Some("stopping"))
            .map(|id| Refusal {
                code: "IncorrectInstanceState",
                message: format!(
                    "The instance '{id}' is not in a state from which it can be started."
                ),
            })
    }

    /// A request that needs what a terminated instance still holds.
    pub(super) fn still_in_use(
        &self,
        action: &str,
        params: &[(String, String)],
    ) -> Option<Refusal> {
        let p = |name: &str| param(params, name);
        self.lingering.iter().find_map(|l| match action {
            "DetachInternetGateway" => {
                named(&l.vpc, params, "VpcId").map(Refusal::addresses_mapped)
            }
            "DeleteSubnet" => named(&l.subnet, params, "SubnetId").map(Refusal::subnet_in_use),
            "DeleteVpc" => named(&l.vpc, params, "VpcId").map(|vpc| Refusal {
                code: "DependencyViolation",
                message: format!("The vpc '{vpc}' has dependencies and cannot be deleted."),
            }),
            "DeleteSecurityGroup" => {
                let g = p("GroupId")?;
                l.groups.iter().any(|held| held == g).then(|| Refusal {
                    code: "DependencyViolation",
                    message: format!("resource {g} has a dependent object"),
                })
            }
            "RunInstances" => {
                let ip = p("PrivateIpAddress").or(p("NetworkInterface.1.PrivateIpAddress"))?;
                let subnet = p("SubnetId").or(p("NetworkInterface.1.SubnetId"));
                let same_subnet = subnet.is_none() || l.subnet.as_deref() == subnet;
                (l.ip.as_deref() == Some(ip) && same_subnet).then(|| Refusal {
                    code: "InvalidIPAddress.InUse",
                    message: format!("Address {ip} is in use."),
                })
            }
            _ => None,
        })
    }

    /// The instances' side of [`Region::record`]: the phases a launch, start, stop or
    /// termination begins, and the failures due at the end of `pending`.
    pub(super) fn record_instances(
        &mut self,
        action: &str,
        body: &str,
        fault: Option<&Effect>,
        terminated: &[xml::Instance],
        now: Instant,
    ) -> Result<Vec<Due>> {
        let ids = || -> Result<Vec<String>> {
            Ok(xml::instances(body)?
                .into_iter()
                .map(|i| i.instance_id)
                .collect())
        };
        let mut due = Vec::new();
        match action {
            "RunInstances" | "StartInstances" => {
                let fails = match fault {
                    Some(Effect::LaunchFails { reason }) if action == "RunInstances" => {
                        Some((reason.clone(), Outcome::Terminated))
                    }
                    Some(Effect::StartFails { reason }) if action == "StartInstances" => {
                        Some((reason.clone(), Outcome::Stopped))
                    }
                    _ => None,
                };
                for id in ids()? {
                    let serial = self.begin(&id, "pending", PENDING_SECS, now);
                    if let Some((reason, outcome)) = &fails {
                        self.instances
                            .get_mut(&id)
                            .and_then(|c| c.phase.as_mut())
                            .context("an instance phase just begun is missing")?
                            .fails = Some(reason.clone());
                        due.push(Due {
                            instance: id,
                            serial,
                            after: self.window(PENDING_SECS),
                            outcome: *outcome,
                        });
                    }
                }
            }
            "StopInstances" => {
                for id in ids()? {
                    self.begin(&id, "stopping", STOPPING_SECS, now);
                }
            }
            "TerminateInstances" => {
                for id in ids()? {
                    self.begin(&id, "shutting-down", SHUTTING_DOWN_SECS, now);
                }
                self.linger(terminated, now);
            }
            _ => {}
        }
        Ok(due)
    }

    /// An instance enters a transitional state; its last failure reason is forgotten.
    fn begin(&mut self, id: &str, state: &'static str, model_secs: f64, now: Instant) -> u64 {
        self.serial += 1;
        let until = now + self.window(model_secs);
        let clock = self.instances.entry(id.to_string()).or_default();
        clock.reason = None;
        clock.phase = Some(Phase {
            state,
            until,
            serial: self.serial,
            fails: None,
        });
        self.serial
    }

    /// The terminated instances' interfaces linger in their VPC for a while (each with
    /// probability `lingering_rate`): a termination asked for, or a launch that failed.
    pub fn linger(&mut self, terminated: &[xml::Instance], now: Instant) {
        let until = now + self.window(LINGERING_SECS);
        if until <= now {
            return;
        }
        for i in terminated {
            if self.chance(self.settings.lingering_rate) {
                self.lingering.push(Lingering {
                    vpc: i.vpc_id.clone(),
                    subnet: i.subnet_id.clone(),
                    groups: i.group_ids.clone(),
                    ip: i.private_ip.clone(),
                    until,
                });
            }
        }
    }

    /// Whether a failure is still to be carried out (no later action replaced its phase, no
    /// reset forgot it).
    pub fn is_due(&self, due: &Due) -> bool {
        self.instances
            .get(&due.instance)
            .and_then(|c| c.phase.as_ref())
            .is_some_and(|p| p.serial == due.serial && p.fails.is_some())
    }

    /// The failure was carried out: the instance shows moto's state with the reason.
    pub fn carried_out(&mut self, due: &Due) {
        if !self.is_due(due) {
            return;
        }
        let Some(clock) = self.instances.get_mut(&due.instance) else {
            return;
        };
        let code = clock.phase.take().and_then(|p| p.fails).unwrap_or_default();
        let message = state_reason_message(&code);
        clock.reason = Some((code, message));
        match due.outcome {
            Outcome::Terminated => self.counters.launches_failed += 1,
            Outcome::Stopped => self.counters.starts_failed += 1,
        }
    }
}

/// The instances of a TerminateInstances that moto has already terminated, taken out of its
/// records `before` the request (what is left is still to terminate). EC2 terminates an
/// instance that is `shutting-down` or `terminated` again without complaint (the API
/// reference: the call is idempotent); moto would delete its interfaces again and fail with
/// `InvalidNetworkInterfaceID.NotFound`, so the front answers for these ([`Region::terminated_answer`],
/// [`Region::with_terminated`]) and only the others reach moto.
pub fn already_terminated(before: &mut Vec<xml::Instance>) -> Vec<String> {
    let (gone, live) = std::mem::take(before)
        .into_iter()
        .partition(|i| i.state == "terminated");
    *before = live;
    gone.into_iter().map(|i| i.instance_id).collect()
}

impl Region {
    /// The `instancesSet` items EC2 answers for instances already terminating: nothing
    /// changes, each shows its state now (`shutting-down` while its window lasts, else
    /// `terminated`) as both `currentState` and `previousState`.
    fn terminated_items(&self, ids: &[String], now: Instant) -> String {
        ids.iter()
            .map(|id| {
                let state = self
                    .shown(id, now)
                    .filter(|s| *s == "shutting-down")
                    .unwrap_or("terminated");
                format!(
                    "<item><instanceId>{id}</instanceId>{}{}</item>",
                    xml::instance_state("currentState", state),
                    xml::instance_state("previousState", state)
                )
            })
            .collect()
    }

    /// EC2's answer to a TerminateInstances of instances that are all already terminating.
    pub fn terminated_answer(&self, ids: &[String], request_id: &str, now: Instant) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TerminateInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>{request_id}</requestId><instancesSet>{}</instancesSet></TerminateInstancesResponse>",
            self.terminated_items(ids, now)
        )
    }

    /// moto's answer to a TerminateInstances of the live instances, with the items of those
    /// the request also named that were already terminating.
    pub fn with_terminated(&self, body: &str, ids: &[String], now: Instant) -> String {
        match body.rfind("</instancesSet>") {
            Some(at) => format!(
                "{}{}{}",
                &body[..at],
                self.terminated_items(ids, now),
                &body[at..]
            ),
            None => body.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;
    use std::collections::HashMap;

    #[test]
    fn pending_then_running_and_hidden_meanwhile() {
        let mut r = region();
        let t0 = Instant::now();
        assert!(
            r.record("RunInstances", &[], RUN, None, &[], t0)
                .unwrap()
                .is_empty()
        );
        // Inside the consistency window the reservation is left out as a whole.
        let body = r
            .rewrite("DescribeInstances", DESCRIBE, &HashMap::new(), t0)
            .unwrap();
        assert!(!body.contains("r-1"), "{body}");
        let t1 = t0 + scaled(CONSISTENCY_SECS, 1.0);
        let shown = describe_shows(&r, t1);
        assert_eq!(shown[0].state, "pending");
        let body = r
            .rewrite("DescribeInstances", DESCRIBE, &HashMap::new(), t1)
            .unwrap();
        assert!(
            body.contains("<code>0</code><name>pending</name>"),
            "{body}"
        );
        assert_eq!(
            describe_shows(&r, t0 + scaled(PENDING_SECS, 1.0))[0].state,
            "running"
        );
    }

    #[test]
    fn a_stopping_instance_cannot_be_started_and_shows_its_previous_state() {
        let mut r = region();
        let t0 = Instant::now();
        let stop = r#"<StopInstancesResponse><instancesSet><item><instanceId>i-1</instanceId><currentState><code>64</code><name>stopping</name></currentState><previousState><code>16</code><name>running</name></previousState></item></instancesSet></StopInstancesResponse>"#;
        r.record("RunInstances", &[], RUN, None, &[], t0).unwrap();
        let ids = vec!["i-1".to_string()];
        let before = r.shown_states(&ids, t0);
        r.record("StopInstances", &[], stop, None, &[], t0).unwrap();
        let answer = r.rewrite("StopInstances", stop, &before, t0).unwrap();
        assert!(
            answer.contains("<previousState><code>0</code><name>pending</name></previousState>"),
            "{answer}"
        );
        let start = p(&[("InstanceId.1", "i-1")]);
        let t1 = t0 + scaled(CONSISTENCY_SECS, 1.0);
        assert_eq!(
            r.refuse("StartInstances", &start, t1).unwrap().code,
            "IncorrectInstanceState"
        );
        assert_eq!(
            r.refuse("StartInstances", &start, t0 + scaled(STOPPING_SECS, 1.0)),
            None
        );
        assert_eq!(r.counters.incorrect_state, 1);
    }

    #[test]
    fn a_failed_launch_stays_pending_until_carried_out_then_shows_its_reason() {
        let mut r = region();
        let t0 = Instant::now();
        let fault = Effect::LaunchFails {
            reason: "Client.InvalidKMSKey.InvalidState".into(),
        };
        let due = r
            .record("RunInstances", &[], RUN, Some(&fault), &[], t0)
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].after, scaled(PENDING_SECS, 1.0));
        assert_eq!(due[0].outcome, Outcome::Terminated);
        let late = t0 + Duration::from_secs(3600);
        assert_eq!(describe_shows(&r, late)[0].state, "pending");
        assert!(r.is_due(&due[0]));
        r.carried_out(&due[0]);
        assert!(!r.is_due(&due[0]));
        let body = r
            .rewrite("DescribeInstances", DESCRIBE, &HashMap::new(), late)
            .unwrap();
        assert!(
            body.contains("<stateReason><code>Client.InvalidKMSKey.InvalidState</code><message>Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state</message></stateReason>"),
            "{body}"
        );
        assert!(body.contains("<reason>Client.InvalidKMSKey"), "{body}");
        assert_eq!(r.counters.launches_failed, 1);
    }

    #[test]
    fn a_later_action_cancels_a_due_failure() {
        let mut r = region();
        let t0 = Instant::now();
        let fault = Effect::StartFails {
            reason: "Server.InsufficientInstanceCapacity".into(),
        };
        let start = RUN.replace("RunInstances", "StartInstances");
        let due = r
            .record("StartInstances", &[], &start, Some(&fault), &[], t0)
            .unwrap();
        assert_eq!(due[0].outcome, Outcome::Stopped);
        let term = start.replace("StartInstances", "TerminateInstances");
        r.record("TerminateInstances", &[], &term, None, &[], t0)
            .unwrap();
        assert!(!r.is_due(&due[0]));
        r.carried_out(&due[0]);
        assert_eq!(r.counters.starts_failed, 0);
    }

    /// moto's answer to the first TerminateInstances of i-1 (moto 5.2.5, as recorded).
    const TERMINATE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<TerminateInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><instancesSet><item><instanceId>i-1</instanceId><currentState><code>32</code><name>shutting-down</name></currentState><previousState><code>16</code><name>running</name></previousState></item></instancesSet><requestId>request-id</requestId></TerminateInstancesResponse>"#;

    #[test]
    fn terminating_again_is_answered_without_moto_as_the_instance_shows_now() {
        let mut r = region();
        let t0 = Instant::now();
        r.record("TerminateInstances", &[], TERMINATE, None, &[], t0)
            .unwrap();
        // A second TerminateInstances (a killed destroy run again) names i-1, which moto
        // terminated at once (a second termination there fails: its interface is gone),
        // and i-2, still running.
        let mut before = vec![
            xml::Instance {
                instance_id: "i-1".into(),
                state: "terminated".into(),
                ..xml::Instance::default()
            },
            xml::Instance {
                instance_id: "i-2".into(),
                state: "running".into(),
                ..xml::Instance::default()
            },
        ];
        let gone = already_terminated(&mut before);
        assert_eq!(gone, ["i-1"]);
        let left: Vec<&str> = before.iter().map(|i| i.instance_id.as_str()).collect();
        assert_eq!(left, ["i-2"]);

        // Inside its window it is still shutting down: shutting-down → shutting-down.
        let t1 = t0 + scaled(CONSISTENCY_SECS, 1.0);
        assert_eq!(
            r.terminated_answer(&gone, "req-1", t1),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<TerminateInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>req-1</requestId><instancesSet><item><instanceId>i-1</instanceId><currentState><code>32</code><name>shutting-down</name></currentState><previousState><code>32</code><name>shutting-down</name></previousState></item></instancesSet></TerminateInstancesResponse>"#
        );
        // After it: terminated → terminated. Nothing was recorded: the window did not restart.
        let late = t0 + scaled(SHUTTING_DOWN_SECS, 1.0);
        let answer = r.terminated_answer(&gone, "req-2", late);
        assert!(
            answer.contains("<currentState><code>48</code><name>terminated</name></currentState><previousState><code>48</code><name>terminated</name></previousState>"),
            "{answer}"
        );
        assert_eq!(xml::instances(&answer).unwrap()[0].state, "terminated");

        // Only i-2 reaches moto; its answer gets i-1's item too.
        let moto = TERMINATE.replace("i-1", "i-2");
        let both: Vec<(String, String)> = xml::instances(&r.with_terminated(&moto, &gone, late))
            .unwrap()
            .into_iter()
            .map(|i| (i.instance_id, i.state))
            .collect();
        let expected = [("i-2", "shutting-down"), ("i-1", "terminated")]
            .map(|(i, s)| (i.to_string(), s.to_string()));
        assert_eq!(both, expected);
    }

    #[test]
    fn a_termination_lingers_in_its_vpc() {
        let mut r = region();
        let t0 = Instant::now();
        let term = r#"<TerminateInstancesResponse><instancesSet><item><instanceId>i-1</instanceId><currentState><code>32</code><name>shutting-down</name></currentState></item></instancesSet></TerminateInstancesResponse>"#;
        let before = xml::Instance {
            instance_id: "i-1".into(),
            vpc_id: Some("vpc-1".into()),
            subnet_id: Some("subnet-1".into()),
            private_ip: Some("10.0.1.10".into()),
            group_ids: vec!["sg-1".into()],
            ..xml::Instance::default()
        };
        r.record("TerminateInstances", &[], term, None, &[before], t0)
            .unwrap();
        let t1 = t0 + scaled(CONSISTENCY_SECS, 1.0);
        let refused = |r: &mut Region, action: &str, ps: &[(&str, &str)], t| {
            r.refuse(action, &p(ps), t).map(|x| x.code)
        };
        assert_eq!(
            refused(
                &mut r,
                "DetachInternetGateway",
                &[("VpcId", "vpc-1"), ("InternetGatewayId", "igw-1")],
                t1
            ),
            Some("DependencyViolation")
        );
        assert_eq!(
            refused(&mut r, "DeleteSubnet", &[("SubnetId", "subnet-1")], t1),
            Some("DependencyViolation")
        );
        assert_eq!(
            refused(&mut r, "DeleteSecurityGroup", &[("GroupId", "sg-1")], t1),
            Some("DependencyViolation")
        );
        assert_eq!(
            refused(
                &mut r,
                "RunInstances",
                &[("SubnetId", "subnet-1"), ("PrivateIpAddress", "10.0.1.10")],
                t1
            ),
            Some("InvalidIPAddress.InUse")
        );
        assert_eq!(
            refused(
                &mut r,
                "RunInstances",
                &[("SubnetId", "subnet-2"), ("PrivateIpAddress", "10.0.1.10")],
                t1
            ),
            None
        );
        assert_eq!(r.counters.lingering, 4);
        let t2 = t0 + scaled(LINGERING_SECS, 1.0);
        assert_eq!(
            refused(&mut r, "DeleteSubnet", &[("SubnetId", "subnet-1")], t2),
            None
        );
    }
}
