//! The control socket between the CLI (and tests) and the front: one JSON request per line,
//! one JSON response per line. A unix socket, so it works from any network namespace.

use crate::faults::Fault;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Request {
    Ping,
    Stats {
        reset: bool,
    },
    FaultsAdd {
        fault: Fault,
    },
    FaultsList,
    FaultsClear,
    Reset,
    Status,
    /// Stop and remove every host (for `down`).
    StopAll,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            ok: true,
            error: None,
            data,
        }
    }
    pub fn err(e: impl std::fmt::Display) -> Response {
        Response {
            ok: false,
            error: Some(format!("{e:#}")),
            data: serde_json::Value::Null,
        }
    }
}

/// One host as `status` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostStatus {
    pub instance_id: String,
    pub state: String,
    pub private_ip: String,
    pub root_volume: Option<String>,
    pub pid: Option<u32>,
    pub boots: u64,
}

/// Sends one request and waits (at most `timeout`) for its answer.
pub fn call(socket: &Path, req: &Request, timeout: Duration) -> Result<serde_json::Value> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the sandbox front on {} (is the sandbox up?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .with_context(|| {
            format!(
                "no answer from the sandbox front within {}s to {req:?}",
                timeout.as_secs()
            )
        })?;
    if answer.is_empty() {
        bail!("the sandbox front closed the control connection without answering {req:?}");
    }
    let resp: Response =
        serde_json::from_str(&answer).context("the sandbox front sent a malformed answer")?;
    if !resp.ok {
        bail!(
            "{}",
            resp.error
                .unwrap_or_else(|| "the sandbox front reported an error".into())
        );
    }
    Ok(resp.data)
}
