//! The EC2 front: an HTTP server in the operator namespace that forwards every request to moto
//! unchanged and returns moto's answer, and for the actions that touch machines performs the
//! physical effect synchronously, after moto said yes and before answering. It learns ids, IPs
//! and attachments from moto's XML (and from Describe calls of its own, signed with the
//! caller's Authorization header so moto picks the same account and region). It also counts
//! requests per action and injects faults, both driven through the control socket.

use crate::control::{HostStatus, Request as Ctl, Response as CtlResponse};
use crate::faults::{Effect, Faults, Stats};
use crate::hosts::{self, HostSpec, Running};
use crate::logging::log;
use crate::paths::Paths;
use crate::{cloudinit, net, xml};
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};

/// How long a host gets to shut down cleanly before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(60);
const MOTO_START_LIMIT: Duration = Duration::from_secs(90);
/// One request to moto (moto answers in milliseconds; this only bounds a hung moto).
const MOTO_CALL_LIMIT: Duration = Duration::from_secs(120);

/// The connection is dropped without an answer (an injected fault).
#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}
impl std::error::Error for Dropped {}

struct Host {
    private_ip: String,
    root_volume: Option<String>,
    running: Option<Running>,
}

pub struct Front {
    paths: Paths,
    base: PathBuf,
    moto: Client<HttpConnector, Full<Bytes>>,
    stats: Mutex<Stats>,
    faults: Mutex<Faults>,
    hosts: Mutex<HashMap<String, Host>>,
    /// Serialises the actions that touch machines and volume directories.
    machine: tokio::sync::Mutex<()>,
    requests: AtomicU64,
}

/// The caller's signing headers, reused on the front's own calls to moto.
#[derive(Clone, Default)]
struct Auth(Vec<(String, HeaderValue)>);

impl Auth {
    fn from(headers: &HeaderMap) -> Auth {
        Auth(
            ["authorization", "x-amz-date", "x-amz-security-token"]
                .iter()
                .filter_map(|h| headers.get(*h).map(|v| (h.to_string(), v.clone())))
                .collect(),
        )
    }
}

const MACHINE_ACTIONS: &[&str] = &[
    "RunInstances",
    "StartInstances",
    "StopInstances",
    "RebootInstances",
    "TerminateInstances",
    "CreateSnapshot",
    "CopySnapshot",
    "DeleteSnapshot",
    "CreateVolume",
    "DeleteVolume",
    "AttachVolume",
    "DetachVolume",
];

/// Request parameters `Name.N` in order.
fn numbered(params: &[(String, String)], prefix: &str) -> Vec<String> {
    let mut v: Vec<(u32, String)> = params
        .iter()
        .filter_map(|(k, val)| {
            let n = k.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
            Some((n, val.clone()))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
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

impl Front {
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

    /// Sends a request to moto as it came and returns status, headers and body.
    async fn forward(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes)> {
        let uri = format!("http://{}{}", crate::MOTO_ADDR, path);
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            if !matches!(
                k.as_str(),
                "host" | "connection" | "content-length" | "transfer-encoding"
            ) {
                req = req.header(k, v);
            }
        }
        let req = req.body(Full::new(body))?;
        let call = async {
            let resp = self
                .moto
                .request(req)
                .await
                .context("moto did not answer")?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .context("moto's answer broke off")?
                .to_bytes();
            Ok::<_, anyhow::Error>((parts.status, parts.headers, body))
        };
        tokio::time::timeout(MOTO_CALL_LIMIT, call)
            .await
            .with_context(|| {
                format!(
                    "moto did not answer {path} within {}s",
                    MOTO_CALL_LIMIT.as_secs()
                )
            })?
    }

    /// One EC2 call of the front's own to moto; an error answer is an error.
    async fn ec2(&self, auth: &Auth, params: &[(&str, &str)]) -> Result<String> {
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Version", "2016-11-15");
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        for (k, v) in &auth.0 {
            headers.insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes())?,
                v.clone(),
            );
        }
        let (status, _, body) = self
            .forward(Method::POST, "/", &headers, Bytes::from(form))
            .await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            let action = params
                .iter()
                .find(|(k, _)| *k == "Action")
                .map(|(_, v)| *v)
                .unwrap_or("?");
            bail!(
                "moto refused the front's {action} ({status}): {}",
                xml::error_code(&text).unwrap_or(text)
            );
        }
        Ok(text)
    }

    async fn describe_instance(&self, auth: &Auth, id: &str) -> Result<xml::Instance> {
        let body = self
            .ec2(
                auth,
                &[("Action", "DescribeInstances"), ("InstanceId.1", id)],
            )
            .await?;
        xml::instances(&body)?
            .into_iter()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| anyhow!("moto does not know instance {id}"))
    }

    async fn handle(
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
        let fault = self.faults.lock().unwrap().check(&action);
        if let Some(effect) = fault {
            log(&format!("{action}: injected fault {effect:?}"));
            return match effect {
                Effect::Drop => Err(Dropped),
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
            };
        }
        if !MACHINE_ACTIONS.contains(&action.as_str()) {
            return Ok(self
                .pass_through(parts.method, &path, &parts.headers, body)
                .await);
        }
        let auth = Auth::from(&parts.headers);
        let _guard = self.machine.lock().await;
        let started = Instant::now();
        // Checks moto does not make but AWS does, and what must be read before moto forgets it.
        let before = match self.before(&auth, &action, &params).await {
            Ok(Before::Refuse(resp)) => return Ok(resp),
            Ok(b) => b,
            Err(e) => {
                log(&format!("{action}: cannot prepare: {e:#}"));
                return Ok(self.error(500, "InternalError", &format!("redisctl-sandbox: {e:#}")));
            }
        };
        let (status, headers, resp_body) = match self
            .forward(parts.method, &path, &parts.headers, body)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Ok(self.error(503, "Unavailable", &format!("redisctl-sandbox: {e:#}")));
            }
        };
        if status.is_success() {
            let text = String::from_utf8_lossy(&resp_body).into_owned();
            if let Err(e) = self.effect(&auth, &action, &params, &text, before).await {
                log(&format!("{action}: the physical effect failed: {e:#}"));
                return Ok(self.error(
                    500,
                    "InternalError",
                    &format!("redisctl-sandbox could not carry out {action}: {e:#}"),
                ));
            }
            log(&format!(
                "{action}: done in {} ms",
                started.elapsed().as_millis()
            ));
        }
        Ok(rebuild(status, &headers, resp_body))
    }

    async fn pass_through(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        match self.forward(method, path, headers, body).await {
            Ok((status, headers, body)) => rebuild(status, &headers, body),
            Err(e) => self.error(503, "Unavailable", &format!("redisctl-sandbox: {e:#}")),
        }
    }

    async fn before(
        &self,
        auth: &Auth,
        action: &str,
        params: &[(String, String)],
    ) -> Result<Before> {
        match action {
            "StartInstances" => {
                for id in numbered(params, "InstanceId") {
                    let inst = match self.describe_instance(auth, &id).await {
                        Ok(i) => i,
                        Err(_) => continue, // moto gives the proper NotFound error
                    };
                    if inst.root_volume().is_none() {
                        let dev = inst.root_device_name.unwrap_or_else(|| "/dev/sda1".into());
                        return Ok(Before::Refuse(self.error(
                            400,
                            "IncorrectState",
                            &format!("Unable to start instance {id}: it has no volume attached at its root device {dev}"),
                        )));
                    }
                }
                Ok(Before::Nothing)
            }
            "TerminateInstances" => {
                let mut vols = Vec::new();
                for id in numbered(params, "InstanceId") {
                    if let Ok(inst) = self.describe_instance(auth, &id).await {
                        vols.extend(
                            inst.block_devices
                                .into_iter()
                                .filter(|b| b.delete_on_termination)
                                .map(|b| b.volume_id),
                        );
                    }
                }
                Ok(Before::Volumes(vols))
            }
            _ => Ok(Before::Nothing),
        }
    }

    async fn effect(
        &self,
        auth: &Auth,
        action: &str,
        params: &[(String, String)],
        body: &str,
        before: Before,
    ) -> Result<()> {
        match action {
            "RunInstances" | "StartInstances" => {
                let ids: Vec<String> = xml::instances(body)?
                    .into_iter()
                    .map(|i| i.instance_id)
                    .collect();
                for id in ids {
                    self.boot(auth, &id).await?;
                }
            }
            "StopInstances" => {
                let ids: Vec<String> = xml::instances(body)?
                    .into_iter()
                    .map(|i| i.instance_id)
                    .collect();
                self.stop_many(&ids).await;
            }
            "RebootInstances" => {
                let ids = numbered(params, "InstanceId");
                self.stop_many(&ids).await;
                for id in ids {
                    self.boot(auth, &id).await?;
                }
            }
            "TerminateInstances" => {
                let ids: Vec<String> = xml::instances(body)?
                    .into_iter()
                    .map(|i| i.instance_id)
                    .collect();
                self.stop_many(&ids).await;
                for id in &ids {
                    self.hosts.lock().unwrap().remove(id);
                    let ns = net::host_netns(id);
                    tokio::task::spawn_blocking(move || net::delete_netns(&ns)).await?;
                }
                if let Before::Volumes(vols) = before {
                    for v in vols {
                        remove_dir(self.paths.volume(&v)).await?;
                    }
                }
            }
            "CreateSnapshot" => {
                let vol = param(params, "VolumeId").context("CreateSnapshot without VolumeId")?;
                let snap = xml::first_text(body, "snapshotId")?
                    .context("moto's CreateSnapshot answer has no snapshotId")?;
                copy_dir(self.paths.volume(vol), self.paths.snapshot(&snap)).await?;
            }
            "CopySnapshot" => {
                let src = param(params, "SourceSnapshotId")
                    .context("CopySnapshot without SourceSnapshotId")?;
                let snap = xml::first_text(body, "snapshotId")?
                    .context("moto's CopySnapshot answer has no snapshotId")?;
                copy_dir(self.paths.snapshot(src), self.paths.snapshot(&snap)).await?;
            }
            "CreateVolume" => {
                let vol = xml::first_text(body, "volumeId")?
                    .context("moto's CreateVolume answer has no volumeId")?;
                match param(params, "SnapshotId") {
                    Some(snap) if !snap.is_empty() => {
                        copy_dir(self.paths.snapshot(snap), self.paths.volume(&vol)).await?
                    }
                    _ => tokio::fs::create_dir_all(self.paths.volume(&vol)).await?,
                }
            }
            "DeleteVolume" => {
                if let Some(v) = param(params, "VolumeId") {
                    remove_dir(self.paths.volume(v)).await?;
                }
            }
            "DeleteSnapshot" => {
                if let Some(s) = param(params, "SnapshotId") {
                    remove_dir(self.paths.snapshot(s)).await?;
                }
            }
            // Attach/Detach only change moto's record; the root volume is read from it at boot.
            _ => {}
        }
        Ok(())
    }

    /// Boots an instance's host (no-op when it runs): network, first-boot files, nspawn.
    async fn boot(&self, auth: &Auth, id: &str) -> Result<()> {
        if self
            .hosts
            .lock()
            .unwrap()
            .get(id)
            .and_then(|h| h.running.as_ref())
            .is_some_and(|r| r.is_running())
        {
            return Ok(());
        }
        let inst = self.describe_instance(auth, id).await?;
        let root = inst
            .root_volume()
            .map(|b| b.volume_id.clone())
            .with_context(|| format!("{id} has no root volume attached"))?;
        let ip = inst
            .private_ip
            .clone()
            .with_context(|| format!("{id} has no private IP"))?;
        let subnet = inst
            .subnet_id
            .clone()
            .with_context(|| format!("{id} is in no subnet"))?;
        let cidr = xml::subnet_cidr(
            &self
                .ec2(
                    auth,
                    &[("Action", "DescribeSubnets"), ("SubnetId.1", &subnet)],
                )
                .await?,
        )?
        .with_context(|| format!("moto gave no CIDR block for {subnet}"))?;
        let upper = self.paths.volume(&root);
        tokio::fs::create_dir_all(&upper).await?;

        let marker = upper.join("var/lib/cloud/data/instance-id");
        let initialised = tokio::fs::read_to_string(&marker)
            .await
            .is_ok_and(|s| s.trim() == id);
        if !initialised {
            let key = match &inst.key_name {
                Some(k) => xml::key_public(
                    &self
                        .ec2(
                            auth,
                            &[
                                ("Action", "DescribeKeyPairs"),
                                ("KeyName.1", k),
                                ("IncludePublicKey", "true"),
                            ],
                        )
                        .await?,
                )?,
                None => None,
            };
            let ud = xml::user_data(
                &self
                    .ec2(
                        auth,
                        &[
                            ("Action", "DescribeInstanceAttribute"),
                            ("InstanceId", id),
                            ("Attribute", "userData"),
                        ],
                    )
                    .await?,
            )?;
            let cfg = match ud {
                Some(b64) => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .context("the instance's user data is not base64")?;
                    let text = String::from_utf8_lossy(&raw).into_owned();
                    let cfg = cloudinit::parse_user_data(&text)?;
                    match &cfg {
                        None => log(&format!("{id}: user data is not #cloud-config; ignored")),
                        Some(c) if !c.ignored.is_empty() => log(&format!(
                            "{id}: cloud-config keys not emulated, ignored: {}",
                            c.ignored.join(", ")
                        )),
                        _ => {}
                    }
                    cfg
                }
                None => None,
            };
            let base = self.base.clone();
            let (upper2, id2, ip2) = (upper.clone(), id.to_string(), ip.clone());
            tokio::task::spawn_blocking(move || {
                cloudinit::apply(
                    &base,
                    &upper2,
                    &cloudinit::FirstBoot {
                        instance_id: &id2,
                        private_ip: &ip2,
                        key_pair_public: key.as_deref(),
                        cloud_config: cfg.as_ref(),
                    },
                )
            })
            .await??;
        }

        let ipv4: Ipv4Addr = ip.parse().with_context(|| format!("bad private IP {ip}"))?;
        let (id2, cidr2) = (id.to_string(), cidr.clone());
        tokio::task::spawn_blocking(move || net::ensure_host(&id2, ipv4, &cidr2)).await??;

        std::fs::create_dir_all(self.paths.host_pids())?;
        let spec = HostSpec {
            instance_id: id.to_string(),
            base: self.base.clone(),
            upper,
            netns: net::host_netns(id),
            log: self.paths.logs().join(format!("{id}.log")),
            pid_file: self.paths.host_pids().join(format!("{id}.pid")),
            init: if inst.image_id.as_deref() == Some(crate::NOINIT_AMI) {
                hosts::Init::None {
                    hostname: cloudinit::hostname_for(&ip),
                }
            } else {
                hosts::Init::Systemd
            },
        };
        let noinit = matches!(spec.init, hosts::Init::None { .. });
        let running = hosts::boot(spec)?;
        log(&format!(
            "{id}: booting at {ip} (root volume {root}, {}, pid {})",
            if noinit { "no init system" } else { "systemd" },
            running.pid.load(Ordering::SeqCst)
        ));
        self.hosts.lock().unwrap().insert(
            id.to_string(),
            Host {
                private_ip: ip,
                root_volume: Some(root),
                running: Some(running),
            },
        );
        Ok(())
    }

    async fn stop_many(&self, ids: &[String]) {
        let to_stop: Vec<(String, Running)> = {
            let hosts = self.hosts.lock().unwrap();
            ids.iter()
                .filter_map(|id| Some((id.clone(), hosts.get(id)?.running.clone()?)))
                .collect()
        };
        let mut set = tokio::task::JoinSet::new();
        for (id, r) in to_stop {
            set.spawn(async move {
                let t = Instant::now();
                hosts::stop(&r, &id, STOP_GRACE).await;
                log(&format!("{id}: stopped in {} ms", t.elapsed().as_millis()));
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// Every host stopped and forgotten, every host namespace removed.
    async fn remove_all_hosts(&self) -> Result<()> {
        let ids: Vec<String> = self.hosts.lock().unwrap().keys().cloned().collect();
        self.stop_many(&ids).await;
        self.hosts.lock().unwrap().clear();
        tokio::task::spawn_blocking(|| {
            for ns in net::sandbox_namespaces() {
                if ns != crate::OPERATOR_NETNS {
                    net::delete_netns(&ns);
                }
            }
            crate::proc::run_quiet("ip", &["addr", "flush", "dev", crate::BRIDGE]);
        })
        .await?;
        Ok(())
    }

    async fn reset(&self) -> Result<serde_json::Value> {
        let _guard = self.machine.lock().await;
        let t = Instant::now();
        self.remove_all_hosts().await?;
        for dir in [self.paths.volumes(), self.paths.snapshots()] {
            remove_dir(dir.clone()).await?;
            tokio::fs::create_dir_all(&dir).await?;
        }
        let (status, _, body) = self
            .forward(
                Method::POST,
                "/moto-api/reset",
                &HeaderMap::new(),
                Bytes::new(),
            )
            .await?;
        if !status.is_success() {
            bail!(
                "moto refused its reset ({status}): {}",
                String::from_utf8_lossy(&body)
            );
        }
        self.stats.lock().unwrap().clear();
        self.faults.lock().unwrap().list.clear();
        log(&format!("reset in {} ms", t.elapsed().as_millis()));
        Ok(serde_json::json!({ "millis": t.elapsed().as_millis() as u64 }))
    }

    fn status(&self) -> Vec<HostStatus> {
        let hosts = self.hosts.lock().unwrap();
        let mut out: Vec<HostStatus> = hosts
            .iter()
            .map(|(id, h)| {
                let (state, pid, boots) = match &h.running {
                    Some(r) if r.is_running() => (
                        "running".to_string(),
                        Some(r.pid.load(Ordering::SeqCst)),
                        r.boots.load(Ordering::SeqCst),
                    ),
                    Some(r) => (
                        format!(
                            "stopped ({})",
                            r.last_exit.lock().unwrap().clone().unwrap_or_default()
                        ),
                        None,
                        r.boots.load(Ordering::SeqCst),
                    ),
                    None => ("stopped".to_string(), None, 0),
                };
                HostStatus {
                    instance_id: id.clone(),
                    state,
                    private_ip: h.private_ip.clone(),
                    root_volume: h.root_volume.clone(),
                    pid,
                    boots,
                }
            })
            .collect();
        out.sort_by(|a, b| a.private_ip.cmp(&b.private_ip));
        out
    }

    async fn control(self: Arc<Self>, req: Ctl) -> CtlResponse {
        let result: Result<serde_json::Value> = async {
            Ok(match req {
                Ctl::Ping => {
                    serde_json::json!({ "moto": crate::MOTO_ADDR, "front": crate::FRONT_ADDR })
                }
                Ctl::Stats { reset } => {
                    let mut stats = self.stats.lock().unwrap();
                    let v = serde_json::to_value(&*stats)?;
                    if reset {
                        stats.clear();
                    }
                    v
                }
                Ctl::FaultsAdd { fault } => {
                    log(&format!("fault added: {fault:?}"));
                    self.faults.lock().unwrap().list.push(fault);
                    serde_json::Value::Null
                }
                Ctl::FaultsList => serde_json::to_value(&self.faults.lock().unwrap().list)?,
                Ctl::FaultsClear => {
                    self.faults.lock().unwrap().list.clear();
                    serde_json::Value::Null
                }
                Ctl::Reset => self.reset().await?,
                Ctl::Status => serde_json::to_value(self.status())?,
                Ctl::StopAll => {
                    let _guard = self.machine.lock().await;
                    self.remove_all_hosts().await?;
                    serde_json::Value::Null
                }
            })
        }
        .await;
        match result {
            Ok(v) => CtlResponse::ok(v),
            Err(e) => CtlResponse::err(e),
        }
    }
}

enum Before {
    Nothing,
    Refuse(Response<Full<Bytes>>),
    Volumes(Vec<String>),
}

fn rebuild(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    for (k, v) in headers {
        if !matches!(
            k.as_str(),
            "connection" | "content-length" | "transfer-encoding" | "server" | "date"
        ) {
            r.headers_mut().append(k, v.clone());
        }
    }
    r
}

/// Copies a volume or snapshot directory with owners, modes, xattrs and overlay whiteouts.
async fn copy_dir(src: PathBuf, dst: PathBuf) -> Result<()> {
    if tokio::fs::metadata(&dst).await.is_ok() {
        bail!("{} already exists", dst.display());
    }
    if let Some(parent) = dst.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    if tokio::fs::metadata(&src).await.is_err() {
        // A volume that never booted: an empty upper layer is the pristine image.
        tokio::fs::create_dir_all(&dst).await?;
        return Ok(());
    }
    // Copied under a temporary name and renamed: a copy cut short (the front killed) never
    // passes for a complete disk.
    let mut partial = dst.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    remove_dir(partial.clone()).await?;
    let out = tokio::process::Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&src)
        .arg(&partial)
        .output()
        .await
        .context("cannot run cp")?;
    if !out.status.success() {
        bail!(
            "cp -a {} {} failed: {}",
            src.display(),
            dst.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    tokio::fs::rename(&partial, &dst)
        .await
        .with_context(|| format!("cannot rename {} to {}", partial.display(), dst.display()))?;
    Ok(())
}

async fn remove_dir(dir: PathBuf) -> Result<()> {
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// Entry point of the hidden `__front` subcommand; the process is already in the operator
/// network namespace (the CLI spawns it there).
pub fn daemon(paths: Paths) -> Result<()> {
    let base = PathBuf::from(
        std::fs::read_to_string(paths.current_base())
            .context("no base recorded; the front is started by `redisctl-sandbox up`")?
            .trim(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(paths, base))
}

async fn serve(paths: Paths, base: PathBuf) -> Result<()> {
    let moto: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    // moto is up once it answers anything.
    let t = Instant::now();
    loop {
        let req = Request::get(format!("http://{}/moto-api/data.json", crate::MOTO_ADDR))
            .body(Full::new(Bytes::new()))?;
        if moto.request(req).await.is_ok() {
            break;
        }
        if t.elapsed() > MOTO_START_LIMIT {
            bail!(
                "moto did not answer on {} within {}s",
                crate::MOTO_ADDR,
                MOTO_START_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    log(&format!(
        "moto answers on {} after {} ms",
        crate::MOTO_ADDR,
        t.elapsed().as_millis()
    ));
    std::fs::create_dir_all(paths.volumes())?;
    std::fs::create_dir_all(paths.snapshots())?;
    std::fs::create_dir_all(paths.logs())?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let front = Arc::new(Front {
        paths: paths.clone(),
        base,
        moto,
        stats: Mutex::new(Stats::new()),
        faults: Mutex::new(Faults::new(seed)),
        hosts: Mutex::new(HashMap::new()),
        machine: tokio::sync::Mutex::new(()),
        requests: AtomicU64::new(1),
    });

    let http = TcpListener::bind(crate::FRONT_ADDR)
        .await
        .with_context(|| format!("cannot listen on {}", crate::FRONT_ADDR))?;
    let sock = paths.control_socket();
    std::fs::remove_file(&sock).ok();
    let ctl = UnixListener::bind(&sock)
        .with_context(|| format!("cannot listen on {}", sock.display()))?;
    log(&format!(
        "EC2 front on http://{} (control {})",
        crate::FRONT_ADDR,
        sock.display()
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = http.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let f = front.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| f.clone().handle(req));
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await
                        && !e.to_string().contains("dropped by an injected fault")
                    {
                        log(&format!("HTTP connection ended with an error: {e}"));
                    }
                });
            }
            accepted = ctl.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let f = front.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut line = String::new();
                    if BufReader::new(r).read_line(&mut line).await.is_err() {
                        return;
                    }
                    let resp = match serde_json::from_str::<Ctl>(&line) {
                        Ok(req) => f.control(req).await,
                        Err(e) => CtlResponse::err(format!("bad control request: {e}")),
                    };
                    let mut out = serde_json::to_string(&resp).unwrap_or_default();
                    out.push('\n');
                    w.write_all(out.as_bytes()).await.ok();
                });
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    log("shutting down: stopping every host");
    front.remove_all_hosts().await.ok();
    std::fs::remove_file(&sock).ok();
    Ok(())
}
