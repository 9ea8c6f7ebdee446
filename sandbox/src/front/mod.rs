//! The EC2 front: the daemon in the operator namespace that EC2 clients talk to instead of
//! moto. It waits for moto, listens for HTTP (`proxy`) and on the control socket (stats,
//! faults, reset, status, region, seed, stop-all), and stops every host when it is told to end.
//!
//! Inside, imports point one way: the proxy checks each request against EC2's model (`model`),
//! uses the timed region (`region`, what clients see and when), the ClientToken table
//! (`tokens`), the machine effects (`machines`, which use the volume store `volumes` and
//! [`crate::hosts`]) and the VPC's enforced network (`network`: public IPs, the internet
//! gateway, security groups); `seed` fills a region as a used account; all of them talk to moto
//! through `moto`; everything logs through [`crate::logging`].

mod archive;
mod hooks;
mod machines;
mod model;
mod moto;
mod network;
mod proxy;
mod region;
mod s3;
mod seed;
mod tokens;
mod volumes;

use crate::control::{RegionSettings, RegionStatus, Request as Ctl, Response as CtlResponse};
use crate::faults::Faults;
use crate::logging::log;
use crate::paths::Paths;
use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use machines::Machines;
use moto::Moto;
use proxy::Proxy;
use region::Region;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};

/// Entry point of the hidden `__front` subcommand; the process is already in the operator
/// network namespace (the CLI spawns it there).
pub fn daemon(paths: Paths, settings: RegionSettings) -> Result<()> {
    let base = PathBuf::from(
        std::fs::read_to_string(paths.current_base())
            .context("no base recorded; the front is started by `redisctl-sandbox up`")?
            .trim(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(paths, base, settings))
}

async fn serve(paths: Paths, base: PathBuf, settings: RegionSettings) -> Result<()> {
    let archive_dir = crate::base::archive_dir(&base);
    let (moto, waited) = Moto::connect().await?;
    log(&format!(
        "moto answers on {} after {} ms",
        crate::MOTO_ADDR,
        waited.as_millis()
    ));
    std::fs::create_dir_all(paths.volumes())?;
    std::fs::create_dir_all(paths.snapshots())?;
    std::fs::create_dir_all(paths.logs())?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let model = match model::Model::load(&paths.venv()) {
        Ok(m) => Some(m),
        Err(e) => {
            log(&format!(
                "requests are NOT checked against EC2's model (moto takes what EC2 refuses): {e:#}"
            ));
            None
        }
    };
    let proxy = Arc::new(Proxy::new(
        moto.clone(),
        Machines::new(paths.clone(), base, moto),
        Faults::new(seed),
        Region::new(settings, seed.rotate_left(17)),
        model,
    ));
    log(&format!("timed region: {settings:?}"));
    proxy
        .network
        .clear()
        .await
        .context("cannot set up the VPC's network rules")?;

    // The distribution mirror's stand-in on the emulated internet (ends with the front).
    let archive_addr = std::net::SocketAddr::from((crate::net::ARCHIVE_ADDR, 80));
    let archive_listener = TcpListener::bind(archive_addr)
        .await
        .with_context(|| format!("cannot listen on {archive_addr} (the archive's address)"))?;
    let archive_log = paths.logs().join("archive.log");
    log(&format!(
        "apt archive {} served at {} (requests in {})",
        archive_dir.display(),
        crate::net::ARCHIVE_URL,
        archive_log.display()
    ));
    let archive_task =
        tokio::spawn(
            async move { archive::serve(archive_listener, &archive_dir, archive_log).await },
        );

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
                let f = proxy.clone();
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
                let f = proxy.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut line = String::new();
                    if BufReader::new(r).read_line(&mut line).await.is_err() {
                        return;
                    }
                    let resp = match serde_json::from_str::<Ctl>(&line) {
                        Ok(req) => control(&f, req).await,
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
    archive_task.abort();
    log("shutting down: stopping every host");
    proxy.machines.remove_all_hosts().await.ok();
    std::fs::remove_file(&sock).ok();
    Ok(())
}

async fn control(proxy: &Proxy, req: Ctl) -> CtlResponse {
    let result: Result<serde_json::Value> = async {
        Ok(match req {
            Ctl::Ping => {
                serde_json::json!({ "moto": crate::MOTO_ADDR, "front": crate::FRONT_ADDR })
            }
            Ctl::Stats { reset } => {
                let mut stats = proxy.stats.lock().unwrap();
                let v = serde_json::to_value(&*stats)?;
                if reset {
                    stats.clear();
                }
                v
            }
            Ctl::FaultsAdd { fault } => {
                log(&format!("fault added: {fault:?}"));
                proxy.faults.lock().unwrap().list.push(fault);
                serde_json::Value::Null
            }
            Ctl::FaultsList => serde_json::to_value(&proxy.faults.lock().unwrap().list)?,
            Ctl::FaultsClear => {
                proxy.faults.lock().unwrap().list.clear();
                serde_json::Value::Null
            }
            Ctl::HooksAdd { hook } => {
                let id = proxy.hooks.add(hook).map_err(anyhow::Error::msg)?;
                serde_json::json!({ "id": id })
            }
            Ctl::HooksList => serde_json::to_value(proxy.hooks.list())?,
            Ctl::HooksRelease { id } => {
                serde_json::json!({ "released": proxy.hooks.release(id) })
            }
            Ctl::HooksClear => {
                proxy.hooks.clear();
                serde_json::Value::Null
            }
            Ctl::Idle { timeout_ms } => {
                let t = Instant::now();
                let busy = || proxy.in_flight.load(std::sync::atomic::Ordering::SeqCst);
                while busy() > 0 && t.elapsed().as_millis() < u128::from(timeout_ms) {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                serde_json::json!({ "in_flight": busy(), "waited_ms": t.elapsed().as_millis() as u64 })
            }
            Ctl::Reset => reset(proxy).await?,
            Ctl::Status => serde_json::to_value(proxy.machines.status())?,
            Ctl::Region { change } => {
                let mut region = proxy.region.lock().unwrap();
                let settings = region.settings.with(&change)?;
                if settings != region.settings {
                    log(&format!("timed region: {settings:?}"));
                }
                region.settings = settings;
                serde_json::to_value(RegionStatus {
                    settings,
                    counters: region.counters.clone(),
                })?
            }
            Ctl::Seed { key_name } => {
                let _guard = proxy.machine.lock().await;
                let made = seed::used_account(&proxy.moto, &key_name).await?;
                proxy.reconcile(&moto::Auth::sandbox()).await?;
                log(&format!("seeded a used account: {}", made.join(", ")));
                serde_json::json!({ "made": made })
            }
            Ctl::StopAll => {
                let _guard = proxy.machine.lock().await;
                proxy.machines.remove_all_hosts().await?;
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

/// An empty region again: no host, no volume or snapshot, nothing in moto, no stats, faults,
/// hooks (a held request is answered), timeline or ClientTokens (the region's settings stay).
async fn reset(proxy: &Proxy) -> Result<serde_json::Value> {
    let _guard = proxy.machine.lock().await;
    let t = Instant::now();
    proxy.machines.reset().await?;
    proxy.moto.reset().await?;
    proxy.stats.lock().unwrap().clear();
    proxy.faults.lock().unwrap().list.clear();
    proxy.hooks.clear();
    proxy.region.lock().unwrap().clear();
    proxy.tokens.lock().unwrap().clear();
    proxy.network.clear().await?;
    log(&format!("reset in {} ms", t.elapsed().as_millis()));
    Ok(serde_json::json!({ "millis": t.elapsed().as_millis() as u64 }))
}
