//! A scripted EC2 endpoint for unit tests of the edge's decisions around its calls (what a
//! launch does with the answers it gets): a local HTTP/1.1 server that answers each request by
//! its `Action` with what the test's script says, and an [`Aws`] client of it with short
//! bounds and no SDK retries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Aws;

/// An answer: HTTP status and body.
pub(crate) type Answer = (u16, String);

/// The EC2 endpoint: `answer(action, n)` gives the answer to the `n`th request (from 0) for
/// `action`; every action asked is recorded in order.
pub(crate) struct FakeEc2 {
    pub url: String,
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl FakeEc2 {
    pub async fn start(answer: impl Fn(&str, usize) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::<String>::new()));
        let answer = Arc::new(answer);
        let log = asked.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (answer, log) = (answer.clone(), log.clone());
                tokio::spawn(async move {
                    while let Some(body) = read_request(&mut stream).await {
                        let action = action_of(&body);
                        let n = {
                            let mut log = log.lock().unwrap();
                            let n = log.iter().filter(|a| **a == action).count();
                            log.push(action.clone());
                            n
                        };
                        let (status, text) = answer(&action, n);
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: text/xml;charset=UTF-8\r\ncontent-length: {}\r\n\r\n",
                            text.len()
                        );
                        let sent = stream.write_all(head.as_bytes()).await.is_ok()
                            && stream.write_all(text.as_bytes()).await.is_ok();
                        if !sent {
                            return;
                        }
                    }
                });
            }
        });
        FakeEc2 { url, asked }
    }

    /// A client of this endpoint: one attempt per call (no SDK retries), waits bounded by
    /// `bound`, polls every 10 ms.
    pub fn client(&self, bound: Duration) -> Aws {
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build();
        Aws {
            client: aws_sdk_ec2::Client::from_conf(conf),
            instance_wait: bound,
            dependency_wait: bound,
            consistency_wait: bound,
            poll: Duration::from_millis(10),
            fresh: super::settle::Fresh::default(),
            retries: super::Retries::default(),
        }
    }

    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// One request's body, or `None` when the connection ends.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned())
}

/// The `Action` of a Query request body.
fn action_of(body: &str) -> String {
    body.split('&')
        .find_map(|p| p.strip_prefix("Action="))
        .unwrap_or_default()
        .to_string()
}

/// An EC2 error answer (HTTP 400).
pub(crate) fn error(code: &str, message: &str) -> Answer {
    (
        400,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>r</RequestID></Response>"
        ),
    )
}

/// A DescribeInstances answer listing `instances` as (id, state, private IP).
pub(crate) fn instances(instances: &[(&str, &str, &str)]) -> Answer {
    let items: String = instances
        .iter()
        .map(|(id, state, ip)| {
            format!(
                "<item><reservationId>r-{id}</reservationId><instancesSet><item><instanceId>{id}</instanceId><instanceState><code>0</code><name>{state}</name></instanceState><privateIpAddress>{ip}</privateIpAddress></item></instancesSet></item>"
            )
        })
        .collect();
    (
        200,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><reservationSet>{items}</reservationSet></DescribeInstancesResponse>"
        ),
    )
}

/// A RunInstances answer with one instance `id`, `pending`.
pub(crate) fn launched(id: &str) -> Answer {
    (
        200,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<RunInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><reservationId>r-1</reservationId><instancesSet><item><instanceId>{id}</instanceId><instanceState><code>0</code><name>pending</name></instanceState></item></instancesSet></RunInstancesResponse>"
        ),
    )
}
