//! Where redisctl keeps its state between runs: the state directory (the CA key and
//! certificate, the SSH key, the pinned host keys, the client-certificate inventory, the
//! secrets of a rotation under way).
//!
//! - **Local** (the default): `cluster.state_dir` on this machine, mode 0700; apply and destroy
//!   hold a `flock` on it ([`crate::state_dir::lock`]), which reaches this machine only.
//! - **S3** (`[state] backend = "s3"`): each file is an object `<prefix>/state/<name>`,
//!   encrypted with SSE-KMS under the spec's key, in a bucket that must keep versions. A run
//!   reads them into a private directory (mode 0700) in memory-backed storage where there is
//!   one (`$XDG_RUNTIME_DIR`, else `/dev/shm`), points the spec at it, and saves every file it
//!   writes there before the write returns ([`crate::private_fs::Mirror`]): a run killed at any
//!   point has saved everything it wrote. The directory is removed on every way out (return,
//!   error, panic, a second Ctrl-C); one left by a killed run is removed by the next run on
//!   that machine. Apply, destroy, client-cert and `state push` hold a lock across machines: the
//!   object `<prefix>/lock.json`, created with a conditional write (`If-None-Match: *`) that
//!   S3 refuses while it exists; it names its holder, and `redisctl force-unlock ID` removes
//!   the lock of a run that died. Plan, verify, output and redis-cli take no lock.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::spec::Spec;
use crate::spec::types::{S3Backend, StateBackend};

/// What a command does with the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads it (plan, verify, output, redis-cli): no lock.
    Read,
    /// Changes the cluster or the state (apply, destroy, client-cert): the lock, named so.
    Write(&'static str),
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StateError {
    pub message: String,
    pub hint: String,
}

fn err(message: impl Into<String>, hint: impl Into<String>) -> StateError {
    StateError {
        message: message.into(),
        hint: hint.into(),
    }
}

/// The state of one run, open until dropped: with S3, the lock (if taken) is released and the
/// private directory removed when it is.
pub struct State {
    remote: Option<Arc<Session>>,
}

impl Drop for State {
    fn drop(&mut self) {
        if let Some(s) = self.remote.take() {
            s.close();
        }
    }
}

/// Open the state of `spec` for a command: with an S3 backend, its files are read into a
/// private directory that `spec.cluster.state_dir` (and the SSH key, when it lives there) now
/// name, and the lock is taken for [`Access::Write`].
pub fn open(spec: &mut Spec, access: Access) -> Result<State, StateError> {
    let StateBackend::S3(backend) = spec.state.clone() else {
        return Ok(State { remote: None });
    };
    remove_stale_dirs();
    let remote = Remote::connect(&backend)?;
    remote.check_bucket()?;
    let dir = private_temp_dir()?;
    let session = Arc::new(Session {
        remote: remote.clone(),
        dir: dir.clone(),
        lock: Mutex::new(None),
        closed: Mutex::new(false),
    });
    // From here on, every way out removes the directory (and releases the lock): a signal
    // too, unless the command handles it itself (apply's steps stop gracefully).
    register_cleanup(&session);
    watch_signals();
    let state = State {
        remote: Some(session.clone()),
    };
    if let Access::Write(command) = access {
        let id = remote.acquire_lock(command)?;
        *session.lock.lock().unwrap() = Some(id);
    }
    remote.download_all(&dir)?;
    let old = spec.cluster.state_dir.clone();
    if let Ok(rel) = spec.ssh.private_key.strip_prefix(&old) {
        spec.ssh.private_key = dir.join(rel);
    }
    spec.cluster.state_dir = dir.clone();
    crate::private_fs::set_mirror(Some(Arc::new(S3Mirror {
        remote: remote.clone(),
        dir,
    })));
    Ok(state)
}

/// `redisctl force-unlock ID`: removes the lock `id` of a run that died; refuses another lock.
pub fn force_unlock(spec: &Spec, id: &str) -> Result<String, StateError> {
    let StateBackend::S3(backend) = &spec.state else {
        return Err(err(
            "the state is local (no [state] backend = \"s3\" in the spec): its lock is a flock that ends with the process holding it",
            "nothing to unlock; if a run seems stuck, end it (its pid is in apply.lock)",
        ));
    };
    let remote = Remote::connect(backend)?;
    match remote.read_lock()? {
        None => Err(err(
            format!("no lock is held on {}", remote.where_()),
            "nothing to unlock",
        )),
        Some(l) if l.id == id => {
            remote.delete(&remote.lock_key())?;
            Ok(format!(
                "Lock {id} on {} removed (it was held by {}).",
                remote.where_(),
                l.describe()
            ))
        }
        Some(l) => Err(err(
            format!(
                "the lock on {} is {}, not {id}: it is held by {}",
                remote.where_(),
                l.id,
                l.describe()
            ),
            "check that run first; force-unlock removes only the lock whose ID it is given",
        )),
    }
}

/// `redisctl state push`: the local state directory `from` into the S3 backend, under the lock;
/// refused when the backend already holds a different CA.
pub fn push(spec: &Spec, from: &Path) -> Result<String, StateError> {
    let StateBackend::S3(backend) = &spec.state else {
        return Err(not_s3("push"));
    };
    let local = local_files(from)?;
    if !local.iter().any(|(n, _, _)| n == crate::pki::CA_CERT_FILE) {
        return Err(err(
            format!(
                "{} holds no cluster CA ({}): it is not a redisctl state directory",
                from.display(),
                crate::pki::CA_CERT_FILE
            ),
            "name the state directory with --from",
        ));
    }
    let remote = Remote::connect(backend)?;
    remote.check_bucket()?;
    let id = remote.acquire_lock("state push")?;
    let result = (|| {
        let theirs = remote.list()?;
        if theirs.iter().any(|n| n == crate::pki::CA_CERT_FILE) {
            let (_, remote_ca) = remote.get(&remote.state_key(crate::pki::CA_CERT_FILE))?;
            let local_ca = &local
                .iter()
                .find(|(n, _, _)| n == crate::pki::CA_CERT_FILE)
                .expect("checked above")
                .1;
            if &remote_ca != local_ca {
                return Err(err(
                    format!(
                        "{} already holds a different cluster CA: pushing {} would replace the CA its cluster's nodes trust",
                        remote.where_(),
                        from.display()
                    ),
                    "check which state belongs to this cluster; to move another cluster's state, give it its own prefix",
                ));
            }
        }
        for (name, bytes, mode) in &local {
            remote.put(name, bytes, *mode)?;
        }
        Ok(format!(
            "{} files of {} pushed to {} (encrypted with {}). The local copy holds the CA key and the SSH key: once the S3 backend is in use, delete it (rm -r {}).",
            local.len(),
            from.display(),
            remote.where_(),
            backend.kms_key,
            from.display()
        ))
    })();
    remote.release_lock(&id);
    result
}

/// `redisctl state pull`: the S3 backend's files into the local directory `to` (created 0700);
/// refused when `to` holds a different CA.
pub fn pull(spec: &Spec, to: &Path) -> Result<String, StateError> {
    let StateBackend::S3(backend) = &spec.state else {
        return Err(not_s3("pull"));
    };
    let remote = Remote::connect(backend)?;
    let names = remote.list()?;
    if names.is_empty() {
        return Err(err(
            format!("{} holds no state", remote.where_()),
            "check the bucket and prefix of [state]",
        ));
    }
    let ca = to.join(crate::pki::CA_CERT_FILE);
    if ca.exists() && names.iter().any(|n| n == crate::pki::CA_CERT_FILE) {
        let (_, theirs) = remote.get(&remote.state_key(crate::pki::CA_CERT_FILE))?;
        let ours = std::fs::read(&ca).map_err(|e| io_err(&ca, "read", e))?;
        if ours != theirs {
            return Err(err(
                format!(
                    "{} holds a different cluster CA than {}: pulling would replace it",
                    to.display(),
                    remote.where_()
                ),
                "pull into an empty directory (--to DIR)",
            ));
        }
    }
    crate::private_fs::private_dir(to).map_err(|e| io_err(to, "create", e))?;
    let n = remote.download_all(to)?;
    Ok(format!(
        "{n} files of {} pulled into {} (mode 0700; the CA key and the SSH key are in it).",
        remote.where_(),
        to.display()
    ))
}

fn not_s3(what: &str) -> StateError {
    err(
        format!("`state {what}` moves the state to or from an S3 backend, and the spec has none"),
        "add a [state] table with backend = \"s3\", bucket and kms_key (docs/spec.md)",
    )
}

fn io_err(path: &Path, what: &str, e: io::Error) -> StateError {
    err(
        format!("cannot {what} {}: {e}", path.display()),
        "check the path and its permissions",
    )
}

/// The files of a local state directory (name, content, mode); its lock and temporary files
/// left out.
fn local_files(dir: &Path) -> Result<Vec<(String, Vec<u8>, u32)>, StateError> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, "read", e))?;
    for e in entries {
        let e = e.map_err(|e| io_err(dir, "read", e))?;
        let name = e.file_name().to_string_lossy().to_string();
        let meta = e.metadata().map_err(|x| io_err(&e.path(), "read", x))?;
        if !meta.is_file() || !is_state_file(&name) {
            continue;
        }
        let bytes = std::fs::read(e.path()).map_err(|x| io_err(&e.path(), "read", x))?;
        out.push((name, bytes, meta.permissions().mode() & 0o7777));
    }
    out.sort();
    Ok(out)
}

/// A file of the state (not the local lock, not a temporary file of an atomic write).
fn is_state_file(name: &str) -> bool {
    name != "apply.lock" && !name.starts_with('.')
}

/// One run's S3 state: its private directory and its lock.
struct Session {
    remote: Remote,
    dir: PathBuf,
    lock: Mutex<Option<String>>,
    closed: Mutex<bool>,
}

impl Session {
    /// Release the lock and remove the directory (once).
    fn close(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if *closed {
            return;
        }
        *closed = true;
        crate::private_fs::set_mirror(None);
        if let Some(id) = self.lock.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.remote.release_lock(&id);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            eprintln!(
                "warning: cannot remove the private state copy {}: {e}; remove it by hand",
                self.dir.display()
            );
        }
    }
}

static OPEN: Mutex<Vec<Arc<Session>>> = Mutex::new(Vec::new());

fn register_cleanup(s: &Arc<Session>) {
    OPEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(s.clone());
}

/// Before the process exits without unwinding (a second Ctrl-C): every open state closed.
pub fn close_all() {
    let open: Vec<Arc<Session>> =
        std::mem::take(&mut *OPEN.lock().unwrap_or_else(|e| e.into_inner()));
    for s in open {
        s.close();
    }
}

static CALLER_HANDLES_SIGNALS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The command handles SIGINT and SIGTERM itself from now on (apply and destroy while their
/// steps run: the first signal stops new steps, a second one exits after [`close_all`]).
pub fn caller_handles_signals() {
    CALLER_HANDLES_SIGNALS.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// While an S3 state is open, SIGINT or SIGTERM (a Ctrl-C at the prompt, a cancelled CI job)
/// releases the lock and removes the private copy before the process exits, unless the
/// command handles the signal itself ([`caller_handles_signals`]).
fn watch_signals() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("redisctl-signals".into())
            .spawn(|| {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (Ok(mut int), Ok(mut term)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) else {
                        return;
                    };
                    loop {
                        let code = tokio::select! {
                            _ = int.recv() => 130,
                            _ = term.recv() => 143,
                        };
                        if CALLER_HANDLES_SIGNALS.load(std::sync::atomic::Ordering::SeqCst) {
                            continue;
                        }
                        eprintln!(
                            "interrupted: releasing the state's lock and removing its private copy"
                        );
                        close_all();
                        std::process::exit(code);
                    }
                });
            });
    });
}

/// Where private copies go: memory-backed storage where there is one.
fn temp_base() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && d.is_dir()
    {
        return d;
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        return shm.into();
    }
    std::env::temp_dir()
}

const TEMP_PREFIX: &str = "redisctl-state-";

fn private_temp_dir() -> Result<PathBuf, StateError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = temp_base().join(format!("{TEMP_PREFIX}{}-{nanos:08x}", std::process::id()));
    use std::os::unix::fs::DirBuilderExt;
    // Never wider than 0700 (the umask can only narrow it), and a new directory: create fails
    // on one that exists.
    std::fs::DirBuilder::new()
        .mode(crate::private_fs::DIR_MODE)
        .create(&dir)
        .map_err(|e| io_err(&dir, "create the private state directory", e))?;
    Ok(dir)
}

/// Private copies left by runs that were killed (their pid is gone) are removed.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(temp_base()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(TEMP_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The lock object's content.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LockInfo {
    id: String,
    command: String,
    who: String,
    pid: u32,
    since: String,
    redisctl: String,
}

impl LockInfo {
    fn describe(&self) -> String {
        format!(
            "{} (pid {}) running `{}` since {}",
            self.who, self.pid, self.command, self.since
        )
    }
}

/// The S3 side, driven from a thread of its own (its own runtime): callers block until S3 has
/// answered, from synchronous code (a file write) as from async code.
#[derive(Clone)]
struct Remote {
    backend: S3Backend,
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &Client) + Send>;

impl Remote {
    fn connect(backend: &S3Backend) -> Result<Remote, StateError> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let region = backend.region.clone();
        std::thread::Builder::new()
            .name("redisctl-s3".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let client = rt.block_on(async {
                    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
                        .region(aws_config::Region::new(region))
                        .load()
                        .await;
                    // An endpoint of its own (the sandbox, a gateway) serves buckets by path.
                    let s3 = aws_sdk_s3::config::Builder::from(&conf)
                        .force_path_style(conf.endpoint_url().is_some())
                        .build();
                    Client::from_conf(s3)
                });
                let _ = ready_tx.send(Ok(()));
                while let Ok(job) = rx.recv() {
                    job(&rt, &client);
                }
            })
            .map_err(|e| err(format!("cannot start the S3 client: {e}"), "run again"))?;
        ready_rx
            .recv()
            .map_err(|_| err("the S3 client did not start", "run again"))?
            .map_err(|e| err(format!("the S3 client did not start: {e}"), "run again"))?;
        Ok(Remote {
            backend: backend.clone(),
            jobs: tx,
        })
    }

    /// Run `f` on the S3 thread and wait for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(Client) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>
        + Send
        + 'static,
    ) -> Result<T, StateError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .send(Box::new(move |rt, client| {
                let _ = tx.send(rt.block_on(f(client.clone())));
            }))
            .map_err(|_| err("the S3 client stopped", "run again"))?;
        rx.recv()
            .map_err(|_| err("the S3 client stopped", "run again"))
    }

    fn where_(&self) -> String {
        format!("s3://{}/{}", self.backend.bucket, self.backend.prefix)
    }

    fn state_key(&self, name: &str) -> String {
        format!("{}/state/{name}", self.backend.prefix)
    }

    fn lock_key(&self) -> String {
        format!("{}/lock.json", self.backend.prefix)
    }

    fn s3_error<
        E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + Send + Sync + 'static,
    >(
        &self,
        call: &str,
        key: &str,
        e: aws_sdk_s3::error::SdkError<E>,
    ) -> StateError {
        let detail = match &e {
            aws_sdk_s3::error::SdkError::ServiceError(s) => {
                let m = aws_sdk_s3::error::ProvideErrorMetadata::meta(s.err());
                format!(
                    "{}: {} (HTTP {})",
                    m.code().unwrap_or("error"),
                    m.message().unwrap_or(""),
                    s.raw().status().as_u16()
                )
            }
            other => {
                let mut s = other.to_string();
                let mut src = std::error::Error::source(other);
                while let Some(x) = src {
                    s.push_str(": ");
                    s.push_str(&x.to_string());
                    src = x.source();
                }
                s
            }
        };
        err(
            format!(
                "S3 {call} of s3://{}/{key} failed: {detail}",
                self.backend.bucket
            ),
            format!(
                "check that the bucket {} exists in {}, that these credentials may read and write it and use the KMS key {}, then run the same command again",
                self.backend.bucket, self.backend.region, self.backend.kms_key
            ),
        )
    }

    /// The bucket exists and keeps versions (an overwritten or deleted CA key can be recovered).
    fn check_bucket(&self) -> Result<(), StateError> {
        let bucket = self.backend.bucket.clone();
        let r = self.call(move |c| {
            Box::pin(async move { c.get_bucket_versioning().bucket(bucket).send().await })
        })?;
        let out = r.map_err(|e| self.s3_error("GetBucketVersioning", "", e))?;
        if out.status() != Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled) {
            return Err(err(
                format!(
                    "the state bucket {} does not keep versions: an overwritten or deleted CA key could not be recovered",
                    self.backend.bucket
                ),
                format!(
                    "enable versioning on it (aws s3api put-bucket-versioning --bucket {} --versioning-configuration Status=Enabled), then run the same command again",
                    self.backend.bucket
                ),
            ));
        }
        Ok(())
    }

    /// The names of the state's files.
    fn list(&self) -> Result<Vec<String>, StateError> {
        let bucket = self.backend.bucket.clone();
        let prefix = format!("{}/state/", self.backend.prefix);
        let p = prefix.clone();
        let r = self.call(move |c| {
            Box::pin(async move {
                let mut names = Vec::new();
                let mut pages = c
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(p.clone())
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    for o in page?.contents() {
                        if let Some(k) = o.key().and_then(|k| k.strip_prefix(&p)) {
                            names.push(k.to_string());
                        }
                    }
                }
                Ok(names)
            })
        })?;
        r.map_err(|e| self.s3_error("ListObjectsV2", &prefix, e))
    }

    /// An object's (mode, content).
    fn get(&self, key: &str) -> Result<(u32, Vec<u8>), StateError> {
        let (bucket, k) = (self.backend.bucket.clone(), key.to_string());
        let r = self.call(move |c| {
            Box::pin(async move {
                let o = c.get_object().bucket(bucket).key(k).send().await?;
                let mode = o
                    .metadata()
                    .and_then(|m| m.get("mode"))
                    .and_then(|m| u32::from_str_radix(m, 8).ok())
                    .unwrap_or(crate::private_fs::FILE_MODE);
                let bytes = o.body.collect().await.map(|b| b.to_vec());
                Ok((mode, bytes))
            })
        })?;
        let (mode, bytes) = r.map_err(|e| self.s3_error("GetObject", key, e))?;
        let bytes = bytes.map_err(|e| {
            err(
                format!("reading s3://{}/{key} failed: {e}", self.backend.bucket),
                "run the same command again",
            )
        })?;
        Ok((mode, bytes))
    }

    /// Every file of the state into `dir`; how many.
    fn download_all(&self, dir: &Path) -> Result<usize, StateError> {
        let names = self.list()?;
        for name in &names {
            if name.contains('/') || !is_state_file(name) {
                continue;
            }
            let (mode, bytes) = self.get(&self.state_key(name))?;
            let path = dir.join(name);
            crate::private_fs::write_local(&path, &bytes, mode & 0o644)
                .map_err(|e| io_err(&path, "write", e))?;
        }
        self.finish_renames(dir, &names)?;
        Ok(names.len())
    }

    /// A rename in the state directory is saved as a write of the new name, then a delete of
    /// the old one: a run killed between the two left both, with the same content (`ca.key`
    /// and `ca.next.key` after a CA rotation's promotion). Finished here: the old name goes.
    fn finish_renames(&self, dir: &Path, names: &[String]) -> Result<(), StateError> {
        for name in names {
            let Some(target) = name
                .contains(".next")
                .then(|| name.replacen(".next", "", 1))
            else {
                continue;
            };
            let (from, to) = (dir.join(name), dir.join(&target));
            let same = matches!(
                (std::fs::read(&from), std::fs::read(&to)),
                (Ok(a), Ok(b)) if a == b
            );
            if same {
                self.delete(&self.state_key(name))?;
                std::fs::remove_file(&from).map_err(|e| io_err(&from, "remove", e))?;
                tracing::warn!(
                    "{}: {name} was already renamed to {target} by a run that was killed before it removed {name}: removed now",
                    self.where_()
                );
            }
        }
        Ok(())
    }

    /// A file of the state saved, encrypted with the backend's KMS key.
    fn put(&self, name: &str, bytes: &[u8], mode: u32) -> Result<(), StateError> {
        let key = self.state_key(name);
        let (bucket, k, kms) = (
            self.backend.bucket.clone(),
            key.clone(),
            self.backend.kms_key.clone(),
        );
        let body = bytes.to_vec();
        let r = self.call(move |c| {
            Box::pin(async move {
                c.put_object()
                    .bucket(bucket)
                    .key(k)
                    .body(ByteStream::from(body))
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(kms)
                    .metadata("mode", format!("{mode:o}"))
                    .send()
                    .await
            })
        })?;
        r.map(|_| ())
            .map_err(|e| self.s3_error("PutObject", &key, e))
    }

    fn delete(&self, key: &str) -> Result<(), StateError> {
        let (bucket, k) = (self.backend.bucket.clone(), key.to_string());
        let r = self.call(move |c| {
            Box::pin(async move { c.delete_object().bucket(bucket).key(k).send().await })
        })?;
        r.map(|_| ())
            .map_err(|e| self.s3_error("DeleteObject", key, e))
    }

    /// The lock object, if one exists.
    fn read_lock(&self) -> Result<Option<LockInfo>, StateError> {
        let (bucket, k) = (self.backend.bucket.clone(), self.lock_key());
        let r = self.call(move |c| {
            Box::pin(async move {
                match c.get_object().bucket(bucket).key(k).send().await {
                    Ok(o) => Ok(Some(o.body.collect().await.map(|b| b.to_vec()))),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                    Err(e) => Err(e),
                }
            })
        })?;
        let Some(bytes) = r.map_err(|e| self.s3_error("GetObject", &self.lock_key(), e))? else {
            return Ok(None);
        };
        let bytes = bytes.map_err(|e| err(format!("reading the lock failed: {e}"), "run again"))?;
        Ok(Some(serde_json::from_slice(&bytes).unwrap_or(LockInfo {
            id: "(unreadable)".into(),
            command: "?".into(),
            who: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            pid: 0,
            since: "?".into(),
            redisctl: "?".into(),
        })))
    }

    /// Take the lock for `command`: its id, or an error naming the holder.
    fn acquire_lock(&self, command: &str) -> Result<String, StateError> {
        let info = LockInfo {
            id: random_id(),
            command: command.into(),
            who: format!("{}@{}", user_name(), host_name()),
            pid: std::process::id(),
            since: now_rfc3339(),
            redisctl: env!("CARGO_PKG_VERSION").into(),
        };
        let body = serde_json::to_vec_pretty(&info).expect("the lock serializes");
        for _ in 0..3 {
            let (bucket, k, kms, b) = (
                self.backend.bucket.clone(),
                self.lock_key(),
                self.backend.kms_key.clone(),
                body.clone(),
            );
            let r = self.call(move |c| {
                Box::pin(async move {
                    c.put_object()
                        .bucket(bucket)
                        .key(k)
                        .if_none_match("*")
                        .body(ByteStream::from(b))
                        .content_type("application/json")
                        .server_side_encryption(ServerSideEncryption::AwsKms)
                        .ssekms_key_id(kms)
                        .send()
                        .await
                })
            })?;
            match r {
                Ok(_) => return Ok(info.id),
                Err(e) => {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    // 412: the lock exists; 409: another conditional write of it is under way.
                    if status != Some(412) && status != Some(409) {
                        return Err(self.s3_error("PutObject (the lock)", &self.lock_key(), e));
                    }
                }
            }
            if let Some(holder) = self.read_lock()? {
                return Err(err(
                    format!(
                        "the state in {} is locked by {}: lock ID {}",
                        self.where_(),
                        holder.describe(),
                        holder.id
                    ),
                    format!(
                        "wait for that run to finish; if it died (its machine is gone, or it was killed), run `redisctl force-unlock {}`",
                        holder.id
                    ),
                ));
            }
            // Released between the two calls: try again.
        }
        Err(err(
            format!("the lock on {} kept changing hands", self.where_()),
            "run the same command again",
        ))
    }

    /// Release the lock `id` if it is still ours (a warning otherwise: never fails a run that
    /// is ending).
    fn release_lock(&self, id: &str) {
        match self.read_lock() {
            Ok(Some(l)) if l.id == id => {
                if let Err(e) = self.delete(&self.lock_key()) {
                    eprintln!(
                        "warning: the lock {id} on {} could not be released: {e}; run `redisctl force-unlock {id}`",
                        self.where_()
                    );
                }
            }
            Ok(Some(l)) => eprintln!(
                "warning: the lock on {} is no longer ours ({} holds it as {}); left in place",
                self.where_(),
                l.describe(),
                l.id
            ),
            Ok(None) => eprintln!(
                "warning: the lock {id} on {} was removed while this run held it (force-unlock?)",
                self.where_()
            ),
            Err(e) => eprintln!(
                "warning: the lock {id} on {} could not be checked: {e}; if it remains, run `redisctl force-unlock {id}`",
                self.where_()
            ),
        }
    }
}

/// Every file written in the private copy, saved to S3 before the write returns.
struct S3Mirror {
    remote: Remote,
    dir: PathBuf,
}

impl crate::private_fs::Mirror for S3Mirror {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn wrote(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !is_state_file(&name) {
            return Ok(());
        }
        self.remote
            .put(&name, bytes, mode)
            .map_err(|e| io::Error::other(format!("{e} ({})", e.hint)))
    }

    fn removed(&self, path: &Path) -> io::Result<()> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !is_state_file(&name) {
            return Ok(());
        }
        self.remote
            .delete(&self.remote.state_key(&name))
            .map_err(|e| io::Error::other(format!("{e} ({})", e.hint)))
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        bytes = n.to_le_bytes();
    }
    hex::encode(bytes)
}

fn user_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        // SAFETY: getuid has no preconditions.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }))
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).to_string()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "now".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn state_files_leave_out_the_lock_and_temporary_files() {
        assert!(super::is_state_file("ca.key"));
        assert!(super::is_state_file("ssh_ed25519.next"));
        assert!(!super::is_state_file("apply.lock"));
        assert!(!super::is_state_file(".ca.key.tmp-12-0"));
    }

    #[test]
    fn lock_ids_differ() {
        assert_ne!(super::random_id(), super::random_id());
        assert_eq!(super::random_id().len(), 16);
    }
}
