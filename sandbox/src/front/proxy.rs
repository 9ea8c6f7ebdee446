//! The HTTP proxy in front of moto: a request comes in, is counted by action, may meet an
//! injected fault, may be answered from the ClientToken table ([`Tokens`]) or refused by the
//! timed region ([`Region`]), and is forwarded to moto unchanged (but a TerminateInstances
//! without the instances moto already terminated: their items are EC2's); moto's answer is recorded in
//! the region's timeline and goes back as the region shows it now (states, progress, hidden
//! items), once the hooks it meets ([`HookPoint`]: a kill, a hold) are carried out. For the [`machines::ACTIONS`] it holds the machine lock from the checks before moto
//! to the physical effect after it, and answers only once that effect is done (or failed: then
//! with an EC2 `InternalError`). Failures due later (a launch that fails after `pending`) are
//! carried out by tasks of their own, under the machine lock.

use crate::faults::{Effect, Faults, Stats};
use crate::front::hooks::{After, HookPoint};
use crate::front::machines::{self, Before, Machines};
use crate::front::moto::{
    self, Auth, Moto, numbered, param, rebuild, with_aws_defaults, with_instances,
};
use crate::front::network::{self, Network};
use crate::front::region::{self, Due, Outcome, Region};
use crate::front::tokens::{Seen, Tokens};
use crate::logging::log;
use crate::xml;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The connection is dropped without an answer (an injected fault).
#[derive(Debug)]
pub struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}
impl std::error::Error for Dropped {}

pub struct Proxy {
    pub moto: Moto,
    pub machines: Machines,
    pub stats: Mutex<Stats>,
    pub faults: Mutex<Faults>,
    /// The timed region: what clients see of moto's records, and when.
    pub region: Mutex<Region>,
    pub tokens: Mutex<Tokens>,
    /// Kills and holds at a chosen request (`hooks`).
    pub hooks: HookPoint,
    /// Public IPs, the internet gateway and the security groups, enforced.
    pub network: Network,
    /// EC2's service model, which every request is checked against (`None`: not found).
    model: Option<crate::front::model::Model>,
    /// Serialises the actions that touch machines and volume directories.
    pub machine: tokio::sync::Mutex<()>,
    /// Serialises the requests that carry a ClientToken.
    token_lock: tokio::sync::Mutex<()>,
    requests: AtomicU64,
    /// Requests read and not yet answered (or dropped): carried on after their client is gone.
    pub in_flight: AtomicU64,
}

/// Counts a request in flight until it is done.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn xml_response(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    r
}

impl Proxy {
    pub fn new(
        moto: Moto,
        machines: Machines,
        faults: Faults,
        region: Region,
        model: Option<crate::front::model::Model>,
    ) -> Proxy {
        Proxy {
            moto,
            machines,
            stats: Mutex::new(Stats::new()),
            faults: Mutex::new(faults),
            region: Mutex::new(region),
            tokens: Mutex::new(Tokens::default()),
            hooks: HookPoint::default(),
            network: Network::default(),
            model,
            machine: tokio::sync::Mutex::new(()),
            token_lock: tokio::sync::Mutex::new(()),
            requests: AtomicU64::new(1),
            in_flight: AtomicU64::new(0),
        }
    }

    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        format!("00000000-5a4d-b0c5-0000-{n:012x}")
    }

    fn error(&self, status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
        xml_response(
            status,
            xml::error_response(code, message, &self.request_id()),
        )
    }

    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Dropped> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Err(Dropped),
        };
        // Once a request is read, it is carried out to the end in its own task, as AWS does: a
        // client that goes away (killed, timed out) must not cancel the copy of a snapshot or a
        // volume half-way, or leave moto's record without its physical effect.
        tokio::spawn(self.process(parts, body))
            .await
            .unwrap_or(Err(Dropped))
    }

    async fn process(
        self: Arc<Self>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Result<Response<Full<Bytes>>, Dropped> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(&self.in_flight);
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let mut params: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        if parts.method == Method::POST {
            params.extend(form_urlencoded::parse(&body).into_owned());
        }
        let action = param(&params, "Action").unwrap_or("").to_string();
        if path.starts_with("/moto-api") || action.is_empty() {
            return Ok(self
                .pass_through(parts.method, &path, &parts.headers, body)
                .await);
        }
        *self
            .stats
            .lock()
            .unwrap()
            .entry(action.clone())
            .or_insert(0) += 1;
        let fault = self
            .faults
            .lock()
            .unwrap()
            .check_where(&action, |e| !e.reaches_moto());
        if let Some(effect) = fault {
            log(&format!("{action}: injected fault {effect:?}"));
            return self.faulted(effect);
        }
        if let Some(r) = self.model.as_ref().and_then(|m| m.check(&action, &params)) {
            log(&format!(
                "{action}: refused as EC2 would: {} {}",
                r.code, r.message
            ));
            self.region.lock().unwrap().counters.invalid_requests += 1;
            return Ok(self.error(400, r.code, &r.message));
        }
        let (answer, fault) = self.answer(parts, path, &action, &params, body).await;
        if answer.status().is_success()
            && self.hooks.after_effect(&action, &params).await == After::Drop
        {
            return Err(Dropped);
        }
        if fault == Some(Effect::LoseResponse) {
            self.region.lock().unwrap().counters.lost_responses += 1;
            return Err(Dropped);
        }
        Ok(answer)
    }

    /// Draws a fault that reaches moto for a request that does (`replayed`: its answer is a
    /// remembered one, which only a lost answer can meet).
    fn reaching_fault(&self, action: &str, replayed: bool) -> Option<Effect> {
        let fault = self.faults.lock().unwrap().check_where(action, |e| {
            e.reaches_moto() && (!replayed || *e == Effect::LoseResponse)
        });
        if let Some(effect) = &fault {
            log(&format!("{action}: injected fault {effect:?}"));
        }
        fault
    }

    /// EC2 checks a KMS key after it said yes ("the action can appear to complete, but
    /// eventually fails"): a launch naming a key KMS does not have ends `terminated` with
    /// `Client.InvalidKMSKey.InvalidState`, a volume goes to `error`. moto never checks.
    async fn kms_failure(&self, action: &str, params: &[(String, String)]) -> Option<Effect> {
        let keys: Vec<&str> = params
            .iter()
            .filter(|(k, _)| match action {
                "RunInstances" => {
                    k.starts_with("BlockDeviceMapping.") && k.ends_with(".Ebs.KmsKeyId")
                }
                "CreateVolume" => k == "KmsKeyId",
                _ => false,
            })
            .map(|(_, v)| v.as_str())
            .collect();
        for key in keys {
            match self.moto.kms_key_exists(key).await {
                Ok(true) => {}
                Ok(false) => {
                    log(&format!(
                        "{action}: KMS has no key {key}: it will fail after yes"
                    ));
                    return Some(match action {
                        "RunInstances" => Effect::LaunchFails {
                            reason: crate::faults::DEFAULT_LAUNCH_FAILURE.into(),
                        },
                        _ => Effect::VolumeFails,
                    });
                }
                Err(e) => log(&format!("{action}: cannot ask KMS about {key}: {e:#}")),
            }
        }
        None
    }

    /// The answer of a fault that answers instead of moto.
    fn faulted(&self, effect: Effect) -> Result<Response<Full<Bytes>>, Dropped> {
        match effect {
            Effect::Status { status } => {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                Ok(r)
            }
            Effect::Error { code, status } => Ok(self.error(
                status,
                &code,
                &format!("{code} (injected by redisctl-sandbox)"),
            )),
            _ => Err(Dropped),
        }
    }

    /// The answer as EC2 gives it: a remembered ClientToken's answer, a refusal of the timed
    /// region, the region's answer to terminating instances moto already terminated, or moto's
    /// answer (with the machine effect) as the region shows it now; and the
    /// fault drawn for a request that reached moto (or a replay), if one fired. A request the
    /// region refuses draws none: it never took effect.
    async fn answer(
        self: &Arc<Self>,
        parts: hyper::http::request::Parts,
        path: String,
        action: &str,
        params: &[(String, String)],
        body: Bytes,
    ) -> (Response<Full<Bytes>>, Option<Effect>) {
        let token = param(params, "ClientToken")
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        // Requests with a token are carried out one at a time, so that a retry sees the answer.
        let _token_guard = match &token {
            Some(_) => Some(self.token_lock.lock().await),
            None => None,
        };
        let now = Instant::now();
        if let Some(t) = &token
            && let Some(r) = self.remembered(action, t, params, now)
        {
            return (r, self.reaching_fault(action, true));
        }
        let refusal = self.region.lock().unwrap().refuse(action, params, now);
        if let Some(r) = refusal {
            log(&format!("{action}: the timed region answers {}", r.code));
            return (self.error(400, r.code, &r.message), None);
        }
        let mut fault = self.reaching_fault(action, false);
        if fault.is_none() {
            fault = self.kms_failure(action, params).await;
        }
        let auth = Auth::from(&parts.headers);
        let ids = numbered(params, "InstanceId");
        let previous = self.region.lock().unwrap().shown_states(&ids, now);
        let mut terminated = if action == "TerminateInstances" {
            // After the machine actions asked before this one (the lock is fair), which may
            // terminate these instances.
            drop(self.machine.lock().await);
            self.instances_before(&auth, &ids).await
        } else {
            Vec::new()
        };
        let gone = region::already_terminated(&mut terminated);
        let live: Vec<String> = ids.iter().filter(|i| !gone.contains(i)).cloned().collect();
        if !gone.is_empty() && live.is_empty() {
            log(&format!(
                "{action}: {} already terminated: EC2's answer, not moto's",
                gone.join(" ")
            ));
            let region = self.region.lock().unwrap();
            let answer = region.terminated_answer(&gone, &self.request_id(), Instant::now());
            return (xml_response(200, answer), fault);
        }
        let narrowed;
        let (path, params, body) = if gone.is_empty() {
            (path, params, body)
        } else {
            let (p, b) = with_instances(params, &live);
            narrowed = p;
            let path = path.split('?').next().unwrap_or("/").to_string();
            (path, &narrowed[..], b)
        };
        // What decides a new instance's public IP, for the log: the subnet attribute as set,
        // and the launch (the chaos campaign once saw launches without one, cause unknown).
        if matches!(action, "ModifySubnetAttribute" | "RunInstances") {
            let keep = |k: &str| {
                k == "SubnetId"
                    || k == "PrivateIpAddress"
                    || k.starts_with("MapPublicIpOnLaunch")
                    || k.contains("AssociatePublicIpAddress")
            };
            let shown: Vec<String> = params
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            log(&format!("{action}: to moto with {}", shown.join(" ")));
        }
        let (status, headers, resp_body) = match self
            .call(
                &auth,
                parts.method,
                &path,
                &parts.headers,
                action,
                params,
                body,
            )
            .await
        {
            Ok(r) => r,
            Err(answer) => return (answer, fault),
        };
        if !status.is_success() {
            if action == "TerminateInstances"
                && String::from_utf8_lossy(&resp_body)
                    .contains("InvalidNetworkInterfaceID.NotFound")
                && let Some(answer) = self.terminated_by_another(&auth, &ids).await
            {
                return (answer, fault);
            }
            let answer = moto::refusal(action, status, &headers, resp_body, &self.request_id());
            return (answer, fault);
        }
        let text = String::from_utf8_lossy(&resp_body).into_owned();
        let shown = match self.timed(
            &auth,
            action,
            params,
            &text,
            fault.as_ref(),
            &terminated,
            &previous,
        ) {
            Ok(shown) => shown,
            Err(e) => {
                log(&format!(
                    "{action}: the timed region cannot read moto's answer: {e:#}"
                ));
                text
            }
        };
        let shown = if gone.is_empty() {
            shown
        } else {
            let region = self.region.lock().unwrap();
            region.with_terminated(&shown, &gone, Instant::now())
        };
        if let Some(t) = &token {
            self.tokens
                .lock()
                .unwrap()
                .remember(action, t, params, shown.clone(), Instant::now());
        }
        (rebuild(status, &headers, Bytes::from(shown)), fault)
    }

    /// moto refused a TerminateInstances because the instances' network interfaces were gone:
    /// another termination of the same instances (a run killed a moment ago, whose request
    /// moto was still carrying out) deleted them first. EC2 answers a terminate of terminating
    /// instances with their state; so does the front, once moto shows them terminated (it is
    /// asked again for up to 2 s). None: they are not, and moto's refusal stands.
    async fn terminated_by_another(
        &self,
        auth: &Auth,
        ids: &[String],
    ) -> Option<Response<Full<Bytes>>> {
        for _ in 0..20 {
            let mut now = self.instances_before(auth, ids).await;
            let gone = region::already_terminated(&mut now);
            if gone.len() == ids.len() {
                log(&format!(
                    "TerminateInstances: {} terminated by another request meanwhile: EC2's answer, not moto's",
                    gone.join(" ")
                ));
                let region = self.region.lock().unwrap();
                let answer = region.terminated_answer(&gone, &self.request_id(), Instant::now());
                return Some(xml_response(200, answer));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        None
    }

    /// The answer remembered for a ClientToken, or `IdempotentParameterMismatch`.
    fn remembered(
        &self,
        action: &str,
        token: &str,
        params: &[(String, String)],
        now: Instant,
    ) -> Option<Response<Full<Bytes>>> {
        let memory = self.region.lock().unwrap().token_memory();
        let seen = self
            .tokens
            .lock()
            .unwrap()
            .seen(action, token, params, now, memory);
        let mut region = self.region.lock().unwrap();
        match seen {
            Seen::New => None,
            Seen::Replay(body) => {
                region.counters.token_replays += 1;
                log(&format!(
                    "{action}: ClientToken {token} seen before: its answer again"
                ));
                Some(xml_response(200, body))
            }
            Seen::Mismatch => {
                region.counters.idempotent_mismatches += 1;
                Some(self.error(
                    400,
                    "IdempotentParameterMismatch",
                    &format!(
                        "Client token {token} was already used with different parameters for {action}"
                    ),
                ))
            }
        }
    }

    /// The instances as moto holds them before a termination (for what they leave behind).
    async fn instances_before(&self, auth: &Auth, ids: &[String]) -> Vec<xml::Instance> {
        let mut out = Vec::new();
        for id in ids {
            if let Ok(i) = self.moto.describe_instance(auth, id).await {
                out.push(i);
            }
        }
        out
    }

    /// Records a successful request in the timed region, schedules the failures it will
    /// carry out, and returns moto's answer as the region shows it now.
    #[allow(clippy::too_many_arguments)]
    fn timed(
        self: &Arc<Self>,
        auth: &Auth,
        action: &str,
        params: &[(String, String)],
        body: &str,
        fault: Option<&Effect>,
        terminated: &[xml::Instance],
        previous: &HashMap<String, &'static str>,
    ) -> anyhow::Result<String> {
        let now = Instant::now();
        let mut region = self.region.lock().unwrap();
        let due = region.record(action, params, body, fault, terminated, now)?;
        for d in due {
            tokio::spawn(self.clone().carry_out(auth.clone(), d));
        }
        if action == "CreateNatGateway"
            && let Some(id) = xml::first_text(body, "natGatewayId")?
        {
            let after = region.nat_available_in(&id, now).unwrap_or_default();
            tokio::spawn(self.clone().reconcile_later(auth.clone(), after));
        }
        let shown = region.rewrite(action, body, previous, now)?;
        let speed = region.settings.speed;
        drop(region);
        if action == "GetConsoleOutput" {
            return self.console_output(params, &shown, speed, now);
        }
        if matches!(action, "DescribeInstances" | "RunInstances") {
            let ips = self.network.ips.lock().unwrap();
            return xml::rewrite_boots(&shown, |id| xml::BootView {
                public_ip: ips.shown(id),
                launched: self.machines.last_start(id),
            });
        }
        Ok(shown)
    }

    /// GetConsoleOutput as EC2 answers for an Ubuntu image: the console of the instance's last
    /// boot whose output is posted by now (cloud-init's host key block from the keys on its
    /// root volume), else the boot before's, else no `output` (never booted, or not yet
    /// posted). A boot's output is posted `CONSOLE_LATEST_SECS` after it with `Latest=true`,
    /// `CONSOLE_BUFFERED_SECS` after it without. moto's own answer is a fixed sample text.
    fn console_output(
        &self,
        params: &[(String, String)],
        body: &str,
        speed: f64,
        now: Instant,
    ) -> anyhow::Result<String> {
        use crate::front::region::{CONSOLE_BUFFERED_SECS, CONSOLE_LATEST_SECS, scaled};
        use base64::Engine;
        let id = param(params, "InstanceId").unwrap_or("");
        let latest = param(params, "Latest").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let delay = scaled(
            if latest {
                CONSOLE_LATEST_SECS
            } else {
                CONSOLE_BUFFERED_SECS
            },
            speed,
        );
        let posts = self.machines.console(id);
        let post = posts
            .iter()
            .rev()
            .find(|p| !p.text.is_empty() && now >= p.booted + delay);
        let b64 = post.map(|p| base64::engine::general_purpose::STANDARD.encode(&p.text));
        xml::rewrite_console(
            body,
            post.zip(b64.as_deref())
                .map(|(p, b)| (b, p.booted_at + delay)),
        )
    }

    /// At the end of `pending`, a launch that fails is terminated (moto, host, volumes) and a
    /// start that fails is stopped, as TerminateInstances and StopInstances would.
    async fn carry_out(self: Arc<Self>, auth: Auth, due: Due) {
        tokio::time::sleep(due.after).await;
        let _guard = self.machine.lock().await;
        if !self.region.lock().unwrap().is_due(&due) {
            return;
        }
        let (action, name) = match due.outcome {
            Outcome::Terminated => ("TerminateInstances", "launch"),
            Outcome::Stopped => ("StopInstances", "start"),
        };
        let params = vec![("InstanceId.1".to_string(), due.instance.clone())];
        let held = match due.outcome {
            Outcome::Terminated => {
                self.instances_before(&auth, std::slice::from_ref(&due.instance))
                    .await
            }
            Outcome::Stopped => Vec::new(),
        };
        let result = async {
            let before = self.machines.before(&auth, action, &params).await?;
            let body = self
                .moto
                .ec2(
                    &auth,
                    &[("Action", action), ("InstanceId.1", &due.instance)],
                )
                .await?;
            self.machines
                .effect(&auth, action, &params, &body, before)
                .await
        }
        .await;
        let result = match result {
            Ok(()) => self.reconcile(&auth).await,
            e => e,
        };
        match result {
            Ok(()) => log(&format!("{}: the {name} failed (injected)", due.instance)),
            Err(e) => log(&format!(
                "{}: cannot carry out the failed {name}: {e:#}",
                due.instance
            )),
        }
        let mut region = self.region.lock().unwrap();
        region.carried_out(&due);
        // A failed launch leaves its interface behind for a while, as a termination does.
        region.linger(&held, Instant::now());
    }

    /// moto's answer, with the physical effect for the [`machines::ACTIONS`]; `Err` is the
    /// front's own answer (a refusal, or the effect failed).
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        auth: &Auth,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        action: &str,
        params: &[(String, String)],
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes), Response<Full<Bytes>>> {
        let body = with_aws_defaults(action, params, body);
        let unavailable =
            |e: anyhow::Error| self.error(503, "Unavailable", &format!("redisctl-sandbox: {e:#}"));
        if action == "AllocateAddress" {
            return self
                .allocate_address(auth, method, path, headers, params, body)
                .await;
        }
        if !machines::ACTIONS.contains(&action) {
            let answer = self
                .moto
                .forward(method, path, headers, body)
                .await
                .map_err(unavailable)?;
            if answer.0.is_success() && action == "CreateVpc" {
                let text = String::from_utf8_lossy(&answer.2).into_owned();
                self.network
                    .default_group_rule(&self.moto, auth, &text)
                    .await
                    .map_err(|e| self.network_failed(action, e))?;
            }
            if answer.0.is_success() && network::ACTIONS.contains(&action) {
                let _guard = self.machine.lock().await;
                self.reconcile(auth)
                    .await
                    .map_err(|e| self.network_failed(action, e))?;
            }
            return Ok(answer);
        }
        let _guard = self.machine.lock().await;
        let started = Instant::now();
        // Checks moto does not make but AWS does, and what must be read before moto forgets it.
        let before = match self.machines.before(auth, action, params).await {
            Ok(Before::Refuse {
                status,
                code,
                message,
            }) => return Err(self.error(status, code, &message)),
            Ok(b) => b,
            Err(e) => {
                log(&format!("{action}: cannot prepare: {e:#}"));
                return Err(self.error(500, "InternalError", &format!("redisctl-sandbox: {e:#}")));
            }
        };
        let (status, headers, resp_body) = self
            .moto
            .forward(method, path, headers, body)
            .await
            .map_err(unavailable)?;
        if status.is_success() {
            let text = String::from_utf8_lossy(&resp_body).into_owned();
            if let Err(e) = self
                .machines
                .effect(auth, action, params, &text, before)
                .await
            {
                log(&format!("{action}: the physical effect failed: {e:#}"));
                return Err(self.error(
                    500,
                    "InternalError",
                    &format!("redisctl-sandbox could not carry out {action}: {e:#}"),
                ));
            }
            if network::ACTIONS.contains(&action) {
                self.reconcile(auth)
                    .await
                    .map_err(|e| self.network_failed(action, e))?;
            }
            log(&format!(
                "{action}: done in {} ms",
                started.elapsed().as_millis()
            ));
        }
        Ok((status, headers, resp_body))
    }

    /// The network decided again from moto's records (under the machine lock).
    pub async fn reconcile(&self, auth: &Auth) -> anyhow::Result<()> {
        let running = self.machines.running_ids();
        let nat_states = self.region.lock().unwrap().nat_states(Instant::now());
        self.network
            .reconcile(&self.moto, auth, &running, &nat_states)
            .await
    }

    /// A NAT gateway becomes `available` when its `pending` window ends: the network is decided
    /// again then (under the machine lock).
    async fn reconcile_later(self: Arc<Self>, auth: Auth, after: std::time::Duration) {
        tokio::time::sleep(after).await;
        let _guard = self.machine.lock().await;
        if let Err(e) = self.reconcile(&auth).await {
            log(&format!(
                "cannot enforce the network when a NAT gateway became available: {e:#}"
            ));
        }
    }

    /// AllocateAddress: the front picks the Elastic IP (moto's would be 127.x.y.z) from the
    /// public range, so that traffic leaving from it has somewhere to come back to.
    async fn allocate_address(
        &self,
        auth: &Auth,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        params: &[(String, String)],
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes), Response<Full<Bytes>>> {
        let _guard = self.machine.lock().await;
        let body = if param(params, "Address").is_some() {
            body
        } else {
            let Some(ip) = self.network.ips.lock().unwrap().allocate_elastic() else {
                return Err(self.error(
                    400,
                    "AddressLimitExceeded",
                    "The maximum number of addresses has been reached.",
                ));
            };
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (k, v) in form_urlencoded::parse(&body) {
                form.append_pair(&k, &v);
            }
            form.append_pair("Address", &ip.to_string());
            Bytes::from(form.finish())
        };
        let answer = self
            .moto
            .forward(method, path, headers, body)
            .await
            .map_err(|e| self.error(503, "Unavailable", &format!("redisctl-sandbox: {e:#}")))?;
        self.reconcile(auth)
            .await
            .map_err(|e| self.network_failed("AllocateAddress", e))?;
        Ok(answer)
    }

    fn network_failed(&self, action: &str, e: anyhow::Error) -> Response<Full<Bytes>> {
        log(&format!("{action}: cannot enforce the network: {e:#}"));
        self.error(
            500,
            "InternalError",
            &format!("redisctl-sandbox could not enforce the network after {action}: {e:#}"),
        )
    }

    async fn pass_through(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        if let Some(key) = super::s3::kms_key(&method, headers) {
            match self.moto.kms_key_exists(&key).await {
                Ok(true) => {}
                Ok(false) => {
                    log(&format!(
                        "S3 {method} {path}: refused as S3 would: KMS key {key} not found"
                    ));
                    return xml_response(400, super::s3::kms_not_found(&key));
                }
                Err(e) => {
                    return self.error(503, "Unavailable", &format!("redisctl-sandbox: {e:#}"));
                }
            }
        }
        match self.moto.forward(method.clone(), path, headers, body).await {
            Ok((status, headers, body)) => rebuild(
                status,
                &headers,
                super::s3::fix_response(&method, path, body),
            ),
            Err(e) => self.error(503, "Unavailable", &format!("redisctl-sandbox: {e:#}")),
        }
    }
}
