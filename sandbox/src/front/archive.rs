//! The distribution mirror's stand-in: the base's apt archive (`<cache>/archive-<hash>/`, see
//! [`crate::base::archive_dir`]) served over HTTP at [`crate::net::ARCHIVE_URL`] on the emulated
//! internet (the operator namespace's [`crate::net::ARCHIVE_ADDR`], port 80). Hosts reach it only
//! as EC2 instances reach the internet (the VPC's rules in `network`), so every request is logged
//! with the address it came from (`logs/archive.log`, one line each:
//! `GET /debian/Packages 200 from 198.51.100.23`): a host behind an internet gateway shows its
//! public IP, one behind a NAT gateway the NAT gateway's.
//!
//! GET and HEAD of the files at the top of the archive only (a flat repository): no listing, no
//! other directory, no `..`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Where the archive is served under (`deb [trusted=yes] http://192.0.2.80/debian ./`).
pub const PREFIX: &str = "/debian/";

/// The file names of the archive a request path may name, if any: `/debian/NAME` or
/// `/debian/./NAME`, NAME as sent and percent-decoded once (apt keeps an epoch's colon as `%3a`
/// in a .deb's file name, and a client may or may not encode the `%`), each a plain file name
/// (no `/`, not hidden, so no `..`).
pub fn file_names(path: &str) -> Vec<String> {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Vec::new();
    };
    let mut parts = rest.split('/').filter(|p| !p.is_empty() && *p != ".");
    let (Some(name), None) = (parts.next(), parts.next()) else {
        return Vec::new();
    };
    let plain = |n: &str| !n.is_empty() && !n.starts_with('.') && !n.contains(['/', '\\', '\0']);
    let mut out = Vec::new();
    for n in [Some(name.to_string()), percent_decode(name)]
        .into_iter()
        .flatten()
    {
        if plain(&n) && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One line of `archive.log`.
pub fn log_line(method: &Method, path: &str, status: StatusCode, from: &SocketAddr) -> String {
    format!("{method} {path} {} from {}", status.as_u16(), from.ip())
}

struct Archive {
    dir: PathBuf,
    log: PathBuf,
}

impl Archive {
    async fn answer(&self, req: &Request<Incoming>) -> (StatusCode, Bytes, u64) {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return (StatusCode::METHOD_NOT_ALLOWED, Bytes::new(), 0);
        }
        let mut found = None;
        for name in file_names(req.uri().path()) {
            let path = self.dir.join(name);
            if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
                found = Some(path);
                break;
            }
        }
        let Some(path) = found else {
            return (StatusCode::NOT_FOUND, Bytes::new(), 0);
        };
        if req.method() == Method::HEAD {
            let len = tokio::fs::metadata(&path)
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            return (StatusCode::OK, Bytes::new(), len);
        }
        match tokio::fs::read(&path).await {
            Ok(body) => {
                let len = body.len() as u64;
                (StatusCode::OK, Bytes::from(body), len)
            }
            Err(_) => (StatusCode::NOT_FOUND, Bytes::new(), 0),
        }
    }

    fn record(&self, line: &str) {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            crate::logging::log(&format!(
                "archive: cannot write {}: {e}",
                self.log.display()
            ));
        }
    }
}

/// Serves the archive in `dir` on `listener` until the task is dropped; logs to `log`.
pub async fn serve(listener: TcpListener, dir: &Path, log: PathBuf) {
    let archive = Arc::new(Archive {
        dir: dir.to_path_buf(),
        log,
    });
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            continue;
        };
        let archive = archive.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let archive = archive.clone();
                async move {
                    let (status, body, len) = archive.answer(&req).await;
                    archive.record(&log_line(req.method(), req.uri().path(), status, &from));
                    let mut r = Response::new(Full::new(body));
                    *r.status_mut() = status;
                    if status == StatusCode::OK {
                        r.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static("application/octet-stream"),
                        );
                        r.headers_mut()
                            .insert("content-length", hyper::header::HeaderValue::from(len));
                    }
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
                .ok();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_at_the_top_of_the_archive() {
        assert_eq!(file_names("/debian/Packages"), vec!["Packages"]);
        assert_eq!(file_names("/debian/./Packages"), vec!["Packages"]);
        assert_eq!(
            file_names("/debian/./redis-server_5%3a7.0.15-1~deb12u1_amd64.deb"),
            vec![
                "redis-server_5%3a7.0.15-1~deb12u1_amd64.deb",
                "redis-server_5:7.0.15-1~deb12u1_amd64.deb"
            ]
        );
        assert_eq!(
            file_names("/debian/redis-server_5%253a7.0.15_amd64.deb")[1],
            "redis-server_5%3a7.0.15_amd64.deb"
        );
        for bad in [
            "/debian/",
            "/debian/../base/etc/shadow",
            "/debian/..",
            "/debian/a/b",
            "/debian/.hidden",
            "/debian/%2e%2e",
            "/debian/..%2fx",
            "/debian/%2e%2e%2fetc%2fpasswd",
            "/etc/passwd",
            "/Packages",
        ] {
            assert!(
                file_names(bad)
                    .iter()
                    .all(|n| !n.starts_with('.') && !n.contains('/')),
                "{bad}: {:?}",
                file_names(bad)
            );
        }
        assert!(file_names("/debian/..").is_empty());
        assert!(file_names("/debian/%2e%2e%2fetc%2fpasswd").len() <= 1);
    }

    #[test]
    fn log_lines_name_the_source() {
        let from: SocketAddr = "198.51.100.23:40000".parse().unwrap();
        assert_eq!(
            log_line(&Method::GET, "/debian/Packages", StatusCode::OK, &from),
            "GET /debian/Packages 200 from 198.51.100.23"
        );
    }
}
