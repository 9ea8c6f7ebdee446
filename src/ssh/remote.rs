//! Commands on a [`Session`], each on a channel of its own and bounded by the command timeout;
//! a command killed by a signal reports 128 + its number.
//!
//! - Secrets travel on stdin only. Command text is not secret by contract (callers never put a
//!   secret in it), so `tracing` at debug level logs the command text; stdin and output are never
//!   logged.
//! - Commands run with `sudo -n sh -c '<script>'`; uploads go to a 0600 temp file in the target
//!   directory, get their owner and mode, then are renamed into place.

use std::collections::BTreeMap;

use russh::ChannelMsg;
use russh::client;

use super::session::{Session, SshError, is_dropped};

/// Commands run over SSH by this process so far (each one round trip: a channel opened, the
/// command run, its output read), for the figures of `apply -v` and `scripts/bench`.
static ROUND_TRIPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// [`ROUND_TRIPS`] now.
pub fn round_trips() -> u64 {
    ROUND_TRIPS.load(std::sync::atomic::Ordering::Relaxed)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Single-quote `s` for sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub(crate) fn signal_number(sig: &russh::Sig) -> u32 {
    use russh::Sig::*;
    match sig {
        HUP => 1,
        INT => 2,
        QUIT => 3,
        ILL => 4,
        ABRT => 6,
        FPE => 8,
        KILL => 9,
        USR1 => 10,
        SEGV => 11,
        PIPE => 13,
        ALRM => 14,
        TERM => 15,
        Custom(_) => 0,
    }
}

/// The last lines of stderr, for error messages (at most 20 lines / 2000 bytes).
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim_end();
    let lines: Vec<&str> = text.lines().collect();
    let mut t = lines[lines.len().saturating_sub(20)..].join("\n");
    if t.len() > 2000 {
        let mut cut = t.len() - 2000;
        while !t.is_char_boundary(cut) {
            cut += 1;
        }
        t = format!("…{}", &t[cut..]);
    }
    if t.is_empty() {
        "(no output on stderr)".into()
    } else {
        t
    }
}

impl Session {
    /// Run `command` (as the login user) with optional stdin, bounded by the command timeout;
    /// collect exit status and output. A command killed by a signal reports 128 + its number.
    pub async fn run(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let what: String = command.chars().take(60).collect();
        self.exec(&what, command, stdin).await
    }

    async fn exec(
        &self,
        what: &str,
        command: &str,
        stdin: Option<&[u8]>,
    ) -> Result<Output, SshError> {
        let node = &self.inner.node;
        tracing::debug!(node = %node, command, "ssh run");
        ROUND_TRIPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let after = self.inner.command_timeout;
        let deadline = tokio::time::Instant::now() + after;
        let timeout = || SshError::Timeout {
            node: node.clone(),
            what: what.into(),
            after,
        };
        let map = |e: russh::Error| {
            if is_dropped(&e) || self.is_closed() {
                SshError::Dropped {
                    node: node.clone(),
                    what: what.into(),
                    source: Box::new(e),
                }
            } else {
                SshError::Protocol {
                    node: node.clone(),
                    what: what.into(),
                    source: Box::new(e),
                }
            }
        };
        let channel = tokio::time::timeout_at(deadline, async {
            let channel = self.inner.handle.channel_open_session().await?;
            channel.exec(true, command).await?;
            Ok::<_, russh::Error>(channel)
        })
        .await
        .map_err(|_| timeout())?
        .map_err(map)?;
        let (mut rd, wr) = channel.split();
        let writer = async {
            if let Some(bytes) = stdin {
                wr.data(bytes).await?;
            }
            wr.eof().await
        };
        let reader = async {
            let mut out = Output {
                status: 0,
                stdout: Vec::new(),
                stderr: Vec::new(),
            };
            let mut status = None;
            while let Some(msg) = rd.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        status = Some(128 + signal_number(&signal_name))
                    }
                    ChannelMsg::Failure => return Err(russh::Error::RequestDenied),
                    _ => {}
                }
            }
            match status {
                Some(s) => {
                    out.status = s;
                    Ok(out)
                }
                // The channel closed without an exit status: the connection went away.
                None => Err(russh::Error::Disconnect),
            }
        };
        // A command that exits without reading its stdin may make the write fail; what counts
        // is the exit status.
        let done = tokio::time::timeout_at(deadline, async {
            let (_, out) = tokio::join!(writer, reader);
            out
        })
        .await;
        match done {
            Ok(out) => out.map_err(map),
            Err(_) => {
                // Close our end so that sshd ends the session rather than keep it open.
                let _ = wr.close().await;
                Err(timeout())
            }
        }
    }

    /// A new session channel on this connection, for a command whose input and output the
    /// caller streams itself (`redisctl redis-cli`): no command timeout applies (keepalives
    /// still notice a dead connection). Secrets go on the channel's stdin only, as everywhere.
    pub async fn open_channel(&self) -> Result<russh::Channel<client::Msg>, SshError> {
        let node = &self.inner.node;
        tracing::debug!(node = %node, "ssh open channel");
        self.inner.handle.channel_open_session().await.map_err(|e| {
            let (node, what, source) = (node.clone(), "open a channel".into(), Box::new(e));
            if is_dropped(&source) || self.is_closed() {
                SshError::Dropped { node, what, source }
            } else {
                SshError::Protocol { node, what, source }
            }
        })
    }

    /// `sudo -n sh -c '<script>'`, stdin passed through: secrets go on stdin, never in the script.
    pub async fn sudo(&self, script: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        self.run(&format!("sudo -n sh -c {}", sh_quote(script)), stdin)
            .await
    }

    /// Like [`Session::sudo`], but a non-zero exit is [`SshError::Command`] naming `what`.
    pub async fn sudo_ok(
        &self,
        what: &str,
        script: &str,
        stdin: Option<&[u8]>,
    ) -> Result<Output, SshError> {
        let out = self
            .exec(what, &format!("sudo -n sh -c {}", sh_quote(script)), stdin)
            .await?;
        if out.status != 0 {
            return Err(SshError::Command {
                node: self.inner.node.clone(),
                what: what.into(),
                status: out.status,
                stderr_tail: tail(&out.stderr),
            });
        }
        Ok(out)
    }

    /// Atomic upload with mode and owner: `content` goes on stdin into a temp file in the same
    /// directory, created under umask 077 (never readable by others, not even for a moment), gets
    /// its owner and mode, is synced, then renamed into place. A missing directory is made 0755
    /// root:root; a directory that a user other than root can change (or a link) is refused:
    /// that user could replace the temp file by a link under the chown and chmod.
    pub async fn upload(
        &self,
        file: &crate::redis::NodeFile,
        content: &[u8],
    ) -> Result<(), SshError> {
        self.sudo_ok(
            &format!("upload of {}", file.path),
            &upload_script(file),
            Some(content),
        )
        .await
        .map(|_| ())
    }

    /// Several files in one round trip: `before` (a script run first, under `set -e`), then
    /// each file written as [`Session::upload`] writes one, then `after`; the files' contents
    /// one after another on stdin, each read to its length. `what` names the round trip if it
    /// fails.
    pub async fn upload_all(
        &self,
        what: &str,
        before: &str,
        files: &[(&crate::redis::NodeFile, &[u8])],
        after: &str,
    ) -> Result<(), SshError> {
        let mut script = format!("set -e\n{before}\n");
        let mut input = Vec::new();
        for (file, content) in files {
            script.push_str(&upload_script_of_len(file, Some(content.len())));
            input.extend_from_slice(content);
        }
        script.push_str(after);
        self.sudo_ok(what, &script, Some(&input)).await.map(|_| ())
    }

    /// SHA-256 (lower-case hex) of remote files, `None` for a missing one, in one round trip
    /// (as root, so 0600 files are read too).
    pub async fn file_hashes(
        &self,
        paths: &[&str],
    ) -> Result<BTreeMap<String, Option<String>>, SshError> {
        let mut script = String::from("set -eu\n");
        for (i, p) in paths.iter().enumerate() {
            let q = sh_quote(p);
            script.push_str(&format!(
                "if [ -e {q} ]; then h=$(sha256sum < {q}); echo \"{i} ${{h%% *}}\"; else echo \"{i} -\"; fi\n"
            ));
        }
        let out = self.sudo_ok("file hashes", &script, None).await?;
        let mut hashes = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((i, h)) = line.split_once(' ') else {
                continue;
            };
            let Some(p) = i.parse::<usize>().ok().and_then(|i| paths.get(i)) else {
                continue;
            };
            let h = h.trim();
            let h = (h != "-").then(|| h.to_string());
            hashes.insert(p.to_string(), h);
        }
        if hashes.len() != paths.len() {
            return Err(SshError::Command {
                node: self.inner.node.clone(),
                what: "file hashes".into(),
                status: out.status,
                stderr_tail: format!(
                    "expected {} hashes, got {}: {}",
                    paths.len(),
                    hashes.len(),
                    tail(&out.stderr)
                ),
            });
        }
        Ok(hashes)
    }
}

/// The script of [`Session::upload`]: the rest of its stdin becomes `file` (see there). A
/// subshell of its own, so that a caller can run it within a larger script (after reading
/// what comes first on stdin).
pub fn upload_script(file: &crate::redis::NodeFile) -> String {
    upload_script_of_len(file, None)
}

/// [`upload_script`] reading exactly `len` bytes of stdin (GNU `head -c` reads no further, so
/// what follows is left for the next file), and refusing a short read; `None`: all of stdin.
fn upload_script_of_len(file: &crate::redis::NodeFile, len: Option<usize>) -> String {
    let path = file.path;
    let read = match len {
        Some(n) => format!(
            "head -c {n} > \"$tmp\"\n\
             [ \"$(wc -c < \"$tmp\")\" -eq {n} ] || {{ echo \"{path}: stdin ended before its {n} bytes\" >&2; exit 1; }}\n"
        ),
        None => "cat > \"$tmp\"\n".to_string(),
    };
    let dir = match path.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((d, _)) => d,
        None => ".",
    };
    format!(
        "(\n\
         set -eu\n\
         d={dir}\n\
         [ -d \"$d\" ] || install -d -m 0755 -o root -g root \"$d\"\n\
         if [ -L \"$d\" ] || [ -n \"$(find \"$d\" -maxdepth 0 \\( ! -user root -o -perm -0002 -o \\( -perm -0020 ! -group root \\) \\) -print)\" ]; then\n\
           echo \"refusing to write {path}: its directory $d can be changed by a user other than root ($(stat -c '%a %U:%G' \"$d\")), who could swap the file for a link while root sets its owner and mode\" >&2; exit 1\n\
         fi\n\
         umask 077\n\
         tmp=$(mktemp \"$d/.redisctl-upload.XXXXXX\")\n\
         trap 'rm -f \"$tmp\"' EXIT\n\
         {read}\
         chown {owner}:{group} \"$tmp\"\n\
         chmod {mode:04o} \"$tmp\"\n\
         sync \"$tmp\" 2>/dev/null || true\n\
         mv -f \"$tmp\" {path}\n\
         trap - EXIT\n\
         )\n",
        dir = sh_quote(dir),
        owner = sh_quote(file.owner),
        group = sh_quote(file.group),
        mode = file.mode,
        path = sh_quote(path),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn stderr_tail_is_bounded() {
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail(long.as_bytes());
        assert!(t.starts_with("line 80"), "{t}");
        assert_eq!(tail(b""), "(no output on stderr)");
    }
}
