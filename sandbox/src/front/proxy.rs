//! The HTTP proxy in front of moto: a request comes in, is counted by action, may meet an
//! injected fault, and is forwarded to moto unchanged; moto's answer goes back unchanged. For
//! the [`machines::ACTIONS`] it holds the machine lock from the checks before moto to the
//! physical effect after it, and answers only once that effect is done (or failed: then with
//! an EC2 `InternalError`).

use crate::faults::{Effect, Faults, Stats};
use crate::front::machines::{self, Before, Machines};
use crate::front::moto::{Auth, Moto, param};
use crate::logging::log;
use crate::xml;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
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
    /// Serialises the actions that touch machines and volume directories.
    pub machine: tokio::sync::Mutex<()>,
    requests: AtomicU64,
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
    pub fn new(moto: Moto, machines: Machines, faults: Faults) -> Proxy {
        Proxy {
            moto,
            machines,
            stats: Mutex::new(Stats::new()),
            faults: Mutex::new(faults),
            machine: tokio::sync::Mutex::new(()),
            requests: AtomicU64::new(1),
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
        if !machines::ACTIONS.contains(&action.as_str()) {
            return Ok(self
                .pass_through(parts.method, &path, &parts.headers, body)
                .await);
        }
        let auth = Auth::from(&parts.headers);
        let _guard = self.machine.lock().await;
        let started = Instant::now();
        // Checks moto does not make but AWS does, and what must be read before moto forgets it.
        let before = match self.machines.before(&auth, &action, &params).await {
            Ok(Before::Refuse {
                status,
                code,
                message,
            }) => return Ok(self.error(status, code, &message)),
            Ok(b) => b,
            Err(e) => {
                log(&format!("{action}: cannot prepare: {e:#}"));
                return Ok(self.error(500, "InternalError", &format!("redisctl-sandbox: {e:#}")));
            }
        };
        let (status, headers, resp_body) = match self
            .moto
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
            if let Err(e) = self
                .machines
                .effect(&auth, &action, &params, &text, before)
                .await
            {
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
        match self.moto.forward(method, path, headers, body).await {
            Ok((status, headers, body)) => rebuild(status, &headers, body),
            Err(e) => self.error(503, "Unavailable", &format!("redisctl-sandbox: {e:#}")),
        }
    }
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
