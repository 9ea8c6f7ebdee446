//! moto as the front sees it: a request forwarded as it came (bounded in time), the front's own
//! EC2 calls signed with the caller's headers (so moto picks the same account and region), and
//! the Query parameters of a request. Below the proxy and the machine effects, which both talk
//! to moto through it.

use crate::xml;
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};

const MOTO_START_LIMIT: Duration = Duration::from_secs(90);
/// One request to moto (moto answers in milliseconds; this only bounds a hung moto).
const MOTO_CALL_LIMIT: Duration = Duration::from_secs(120);

/// The caller's signing headers, reused on the front's own calls to moto.
#[derive(Clone, Default)]
pub struct Auth(Vec<(String, HeaderValue)>);

impl Auth {
    pub fn from(headers: &HeaderMap) -> Auth {
        Auth(
            ["authorization", "x-amz-date", "x-amz-security-token"]
                .iter()
                .filter_map(|h| headers.get(*h).map(|v| (h.to_string(), v.clone())))
                .collect(),
        )
    }
}

impl Auth {
    /// The headers of the sandbox's own client (`client_env`): for calls no client made (seeding
    /// a region), so that moto takes them for EC2 in the sandbox's account and region.
    pub fn sandbox() -> Auth {
        Auth(vec![("authorization".into(), sandbox_scope("ec2"))])
    }
}

/// An `Authorization` header of the sandbox's own client for `service`: moto does not check
/// signatures, and picks the service (and account, region) from the credential scope.
fn sandbox_scope(service: &str) -> HeaderValue {
    let key = crate::client_env()
        .into_iter()
        .find(|(k, _)| *k == "AWS_ACCESS_KEY_ID")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let header = format!(
        "AWS4-HMAC-SHA256 Credential={key}/20260101/{}/{service}/aws4_request, SignedHeaders=host, Signature=0",
        crate::REGION
    );
    HeaderValue::from_str(&header).expect("an ASCII header")
}

/// Request parameters `Name.N` in order.
pub fn numbered(params: &[(String, String)], prefix: &str) -> Vec<String> {
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

/// Request parameters from pairs (for tests of what reads them).
#[cfg(test)]
pub fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The body moto gets for a client's request: as it came, except that a RunInstances into a
/// subnet that names no network interface gets its primary interface spelled out, deleted on
/// termination as on AWS (`SubnetId` and `PrivateIpAddress` move into `NetworkInterface.1`).
/// Otherwise moto keeps that interface, and with it the private IP in its subnet, forever: the
/// address of a terminated instance could never be given to a new one.
pub fn with_aws_defaults(action: &str, params: &[(String, String)], body: Bytes) -> Bytes {
    let names_interfaces = params
        .iter()
        .any(|(k, _)| k.starts_with("NetworkInterface."));
    if action != "RunInstances" || names_interfaces || param(params, "SubnetId").is_none() {
        return body;
    }
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "SubnetId" | "PrivateIpAddress" => {
                form.append_pair(&format!("NetworkInterface.1.{k}"), &v)
            }
            _ => form.append_pair(&k, &v),
        };
    }
    form.append_pair("NetworkInterface.1.DeviceIndex", "0");
    form.append_pair("NetworkInterface.1.DeleteOnTermination", "true");
    Bytes::from(form.finish())
}

/// The request with only these of its instances (`InstanceId.N`, numbered again from 1), as
/// parameters and as the form body moto gets; the other parameters as they came.
pub fn with_instances(
    params: &[(String, String)],
    ids: &[String],
) -> (Vec<(String, String)>, Bytes) {
    let numbered = |k: &str| {
        k.strip_prefix("InstanceId.")
            .is_some_and(|n| n.parse::<u32>().is_ok())
    };
    let mut out: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !numbered(k))
        .cloned()
        .collect();
    out.extend(
        ids.iter()
            .enumerate()
            .map(|(n, id)| (format!("InstanceId.{}", n + 1), id.clone())),
    );
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&out)
        .finish();
    (out, Bytes::from(body))
}

/// An answer of moto's as the client gets it: its status, headers (but those of the
/// connection) and body.
pub fn rebuild(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Response<Full<Bytes>> {
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

/// moto's refusal of a client's request, as EC2 gives one: an awsquery XML error as it came;
/// anything else (a failure of moto's own, such as an exception it does not map to an EC2
/// error, which its server answers HTTP 500 with an HTML page) is EC2's `InternalError` (HTTP
/// 500, which clients retry) with an XML body. EC2 always answers with one: the SDK cannot
/// read a body without ("error parsing XML: no root element") and reports neither a code nor
/// what happened.
pub fn refusal(
    action: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
    request_id: &str,
) -> Response<Full<Bytes>> {
    if xml::error_code(&String::from_utf8_lossy(&body)).is_some() {
        return rebuild(status, headers, body);
    }
    let shown: String = String::from_utf8_lossy(&body).chars().take(200).collect();
    crate::logging::log(&format!(
        "{action}: moto failed ({status}) without an EC2 error, answered InternalError: {shown:?}"
    ));
    let mut r = Response::new(Full::new(Bytes::from(xml::error_response(
        "InternalError",
        "An internal error has occurred.",
        request_id,
    ))));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    r
}

#[derive(Clone)]
pub struct Moto {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Moto {
    /// Waits until moto answers anything; returns how long that took.
    pub async fn connect() -> Result<(Moto, Duration)> {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let t = Instant::now();
        loop {
            let req = Request::get(format!("http://{}/moto-api/data.json", crate::MOTO_ADDR))
                .body(Full::new(Bytes::new()))?;
            if client.request(req).await.is_ok() {
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
        Ok((Moto { client }, t.elapsed()))
    }

    /// Sends a request to moto as it came and returns status, headers and body.
    pub async fn forward(
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
                .client
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
    pub async fn ec2(&self, auth: &Auth, params: &[(&str, &str)]) -> Result<String> {
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

    /// Whether KMS (moto's) has the key: a key id, key ARN, alias name or alias ARN, as EC2
    /// takes them. The AWS managed keys (`alias/aws/ebs`) exist in every account.
    pub async fn kms_key_exists(&self, key: &str) -> Result<bool> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("TrentService.DescribeKey"),
        );
        headers.insert("authorization", sandbox_scope("kms"));
        let body = serde_json::json!({ "KeyId": key }).to_string();
        let (status, _, answer) = self
            .forward(Method::POST, "/", &headers, Bytes::from(body))
            .await?;
        if status.is_success() {
            return Ok(true);
        }
        let text = String::from_utf8_lossy(&answer);
        if text.contains("NotFoundException") {
            return Ok(false);
        }
        bail!("moto's KMS answered DescribeKey of {key} with {status}: {text}")
    }

    pub async fn describe_instance(&self, auth: &Auth, id: &str) -> Result<xml::Instance> {
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

    /// moto forgets everything it holds.
    pub async fn reset(&self) -> Result<()> {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_instances_into_a_subnet_gets_a_primary_interface_deleted_on_termination() {
        let body = Bytes::from(
            "Action=RunInstances&SubnetId=subnet-1&PrivateIpAddress=10.0.1.10&MaxCount=1",
        );
        let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        let sent = with_aws_defaults("RunInstances", &params, body);
        let sent: Vec<(String, String)> = form_urlencoded::parse(&sent).into_owned().collect();
        let p = |k: &str| param(&sent, k).map(str::to_string);
        assert_eq!(p("SubnetId"), None);
        assert_eq!(
            p("NetworkInterface.1.SubnetId").as_deref(),
            Some("subnet-1")
        );
        assert_eq!(
            p("NetworkInterface.1.PrivateIpAddress").as_deref(),
            Some("10.0.1.10")
        );
        assert_eq!(
            p("NetworkInterface.1.DeleteOnTermination").as_deref(),
            Some("true")
        );
        assert_eq!(p("MaxCount").as_deref(), Some("1"));

        let named = vec![
            ("SubnetId".to_string(), "s".to_string()),
            (
                "NetworkInterface.1.DeviceIndex".to_string(),
                "0".to_string(),
            ),
        ];
        assert_eq!(
            with_aws_defaults("RunInstances", &named, Bytes::from("x=1")),
            Bytes::from("x=1")
        );
        assert_eq!(
            with_aws_defaults("CreateVpc", &params, Bytes::from("x=1")),
            Bytes::from("x=1")
        );
    }

    #[test]
    fn a_failure_of_motos_own_is_answered_as_an_ec2_internal_error() {
        // What moto's server sends for an exception it does not map (a launch at an address
        // in use): HTTP 500 and werkzeug's HTML page.
        let html = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n";
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/html"));
        let r = refusal(
            "RunInstances",
            StatusCode::INTERNAL_SERVER_ERROR,
            &headers,
            Bytes::from(html),
            "req-1",
        );
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()["content-type"], "text/xml;charset=UTF-8");
        let body = body_text(r);
        assert_eq!(
            xml::error_code(&body).as_deref(),
            Some("InternalError"),
            "{body}"
        );
        // An empty body too.
        let r = refusal(
            "DetachVolume",
            StatusCode::INTERNAL_SERVER_ERROR,
            &HeaderMap::new(),
            Bytes::new(),
            "req-2",
        );
        assert_eq!(
            xml::error_code(&body_text(r)).as_deref(),
            Some("InternalError")
        );
        // An EC2 error of moto's goes as it came.
        let ec2 = xml::error_response("InvalidSubnetID.NotFound", "no such subnet", "r");
        let r = refusal(
            "RunInstances",
            StatusCode::BAD_REQUEST,
            &headers,
            Bytes::from(ec2.clone()),
            "req-3",
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body_text(r), ec2);
    }

    fn body_text(r: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn a_termination_narrowed_to_its_live_instances_is_numbered_again() {
        let asked = params(&[
            ("Action", "TerminateInstances"),
            ("InstanceId.1", "i-gone"),
            ("InstanceId.2", "i-live"),
            ("Version", "2016-11-15"),
        ]);
        let (sent, body) = with_instances(&asked, &["i-live".to_string()]);
        let expected = params(&[
            ("Action", "TerminateInstances"),
            ("Version", "2016-11-15"),
            ("InstanceId.1", "i-live"),
        ]);
        assert_eq!(sent, expected);
        assert_eq!(
            body,
            Bytes::from("Action=TerminateInstances&Version=2016-11-15&InstanceId.1=i-live")
        );
    }
}
