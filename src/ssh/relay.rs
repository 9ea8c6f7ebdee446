//! A terminal relay over one SSH channel, for `redisctl redis-cli` (what runs at the other end,
//! and why the password goes the way it does, is in `node/redis_cli.rs`): the remote
//! command's stdout and stderr to ours, a secret first line on its stdin, then our stdin
//! ([`Mode`]).
//!
//! Interactive, the channel gets a PTY requested with ECHO off, and the first line waits for
//! the remote script's ready marker ([`READY`]): it is sent only once the marker has arrived, so
//! it can never meet a terminal with echo on, nor go to a sudo that failed, and the user's keys
//! are relayed only after it. Output before the marker is held back, and the marker line is not
//! shown. The wait is bounded ([`Remote::ready_bound`]).
//!
//! The local terminal is put in raw mode for the interactive session and restored on every way
//! out (a guard: return, error, panic; SIGINT/SIGTERM/SIGHUP end the session through it); the
//! remote PTY follows the local window size.

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use russh::{ChannelMsg, Pty, Sig};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::Session;
use crate::spec::secrets::Secret;

/// What the remote script prints, in interactive mode, once echo is off and it waits for the
/// first line. Not shown to the user.
pub const READY: &str = "redisctl-7e1d-ready-for-password";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// ARGS given: one command, no stdin.
    Command,
    /// No ARGS, no terminal: the commands come on stdin.
    Pipe,
    /// No ARGS, stdin and stdout are a terminal: a PTY session.
    Interactive,
}

impl Mode {
    /// One command when there are arguments; otherwise interactive on a terminal (stdin and
    /// stdout), else commands piped in on stdin.
    pub fn choose(has_args: bool) -> Mode {
        if has_args {
            Mode::Command
        } else if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            Mode::Interactive
        } else {
            Mode::Pipe
        }
    }
}

/// What to run on the channel and how.
#[derive(Debug, Clone, Copy)]
pub struct Remote<'a> {
    /// The channel's command line (no secret in it).
    pub command: &'a str,
    /// What it starts, for messages (`redis-cli`).
    pub program: &'a str,
    /// The channel's first stdin bytes (a line), sent before anything else.
    pub first_line: &'a Secret,
    pub mode: Mode,
    /// How long an interactive session waits for [`READY`].
    pub ready_bound: Duration,
}

/// Why the relay could not run the command to its end.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot {what}")]
    Step {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the node refused a terminal (PTY)")]
    PtyRefused,
    #[error("the node refused to run the command")]
    ExecRefused,
    #[error("the node did not ask for the password within {}s", waited.as_secs())]
    NotReady { waited: Duration },
    #[error("the SSH connection closed without an exit status")]
    NoExitStatus,
}

fn step(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> RelayError {
    RelayError::Step {
        what: what.into(),
        source: Box::new(e),
    }
}

/// The output that follows the ready marker line (and any before it), once it has arrived.
fn after_ready(buf: &[u8]) -> Option<Vec<u8>> {
    let m = READY.as_bytes();
    let at = buf.windows(m.len()).position(|w| w == m)?;
    let mut rest = at + m.len();
    while rest < buf.len() && (buf[rest] == b'\r' || buf[rest] == b'\n') {
        rest += 1;
    }
    // Wait for the end of the marker line if it has not arrived yet.
    if rest == at + m.len() {
        return None;
    }
    let mut out = buf[..at].to_vec();
    out.extend_from_slice(&buf[rest..]);
    Some(out)
}

/// Local stdin in chunks, read by a plain thread: a read blocked on a terminal must not keep
/// the process from exiting when the session ends (a tokio blocking task would).
fn stdin_chunks() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    rx
}

/// The local terminal in raw mode while it lives; restored when dropped.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enter() -> std::io::Result<RawMode> {
        // SAFETY: termios is plain data; tcgetattr fills it, cfmakeraw edits a copy.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, &t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(RawMode { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enter`.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, &self.saved);
        }
    }
}

/// The local window size (columns, rows); 80x24 when unknown.
fn window_size() -> (u32, u32) {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        // SAFETY: TIOCGWINSZ fills a winsize.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0
            && ws.ws_col > 0
            && ws.ws_row > 0
        {
            return (u32::from(ws.ws_col), u32::from(ws.ws_row));
        }
    }
    (80, 24)
}

fn write_to(mut w: impl Write, data: &[u8]) -> std::io::Result<()> {
    w.write_all(data)?;
    w.flush()
}

/// Run `remote.command` on a new channel of the session and relay it: stdout to stdout, stderr
/// to stderr, local stdin (Pipe, Interactive) after the first line. Returns the remote exit
/// status (128 + the signal's number for a command killed by one; 141, 130, 143 or 129 when
/// the session ends here on a closed stdout, SIGINT, SIGTERM or SIGHUP).
pub async fn relay(session: &Session, remote: Remote<'_>) -> Result<u8, RelayError> {
    let Remote {
        command,
        program,
        first_line,
        mode,
        ready_bound,
    } = remote;
    let interactive = mode == Mode::Interactive;
    // Handlers first: from here on a signal ends the session through the loop below (and so
    // restores the terminal), never by the default action.
    let mut sigint = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut sigterm = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut sighup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let mut winch = signal(SignalKind::window_change()).expect("SIGWINCH handler");
    let channel = session
        .open_channel()
        .await
        .map_err(|e| step("open an SSH channel", e))?;
    let (mut rd, wr) = channel.split();
    let mut _raw = None;
    if interactive {
        let (cols, rows) = window_size();
        let term = std::env::var("TERM")
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "xterm".into());
        wr.request_pty(true, &term, cols, rows, 0, 0, &[(Pty::ECHO, 0)])
            .await
            .map_err(|e| step("request a terminal (PTY)", e))?;
        loop {
            match rd.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) => return Err(RelayError::PtyRefused),
                Some(_) => {}
                None => {
                    return Err(step(
                        "request a terminal (PTY)",
                        std::io::Error::other("the channel closed"),
                    ));
                }
            }
        }
        _raw = Some(RawMode::enter().map_err(|e| step("put the terminal in raw mode", e))?);
    }
    wr.exec(true, command)
        .await
        .map_err(|e| step(&format!("start {program}"), e))?;

    let mut stdin = (mode != Mode::Command).then(stdin_chunks);
    let start_writer = |stdin: Option<mpsc::Receiver<Vec<u8>>>| {
        let mut w = wr.make_writer();
        let line = first_line.expose().as_bytes().to_vec();
        tokio::spawn(async move {
            if w.write_all(&line).await.is_err() {
                return;
            }
            if let Some(mut rx) = stdin {
                while let Some(chunk) = rx.recv().await {
                    if w.write_all(&chunk).await.is_err() || w.flush().await.is_err() {
                        return;
                    }
                }
            }
            let _ = w.shutdown().await;
        })
    };
    // Interactive: output is held back until the ready marker; then the first line goes.
    let mut pending: Option<Vec<u8>> = None;
    let mut writer = None;
    if interactive {
        pending = Some(Vec::new());
    } else {
        writer = Some(start_writer(stdin.take()));
    }
    let ready_deadline = tokio::time::Instant::now() + ready_bound;

    let mut interrupts = 0;
    let mut status = None;
    let code = loop {
        tokio::select! {
            msg = rd.wait() => match msg {
                None => {
                    if let Some(buf) = pending.take() {
                        let _ = write_to(std::io::stdout(), &buf);
                    }
                    match status {
                        Some(s) => break u8::try_from(s).unwrap_or(u8::MAX),
                        None => {
                            drop(_raw.take());
                            return Err(RelayError::NoExitStatus);
                        }
                    }
                }
                Some(ChannelMsg::Data { data }) => {
                    let shown = match pending.as_mut() {
                        None => Some(data.to_vec()),
                        Some(buf) => {
                            buf.extend_from_slice(&data);
                            let rest = after_ready(buf);
                            if rest.is_some() {
                                pending = None;
                                writer = Some(start_writer(stdin.take()));
                            }
                            rest
                        }
                    };
                    if let Some(bytes) = shown
                        && write_to(std::io::stdout(), &bytes).is_err()
                    {
                        // stdout went away (`| head`): end as a killed writer would.
                        let _ = wr.close().await;
                        break 141;
                    }
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    let _ = write_to(std::io::stderr(), &data);
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    status = Some(128 + super::remote::signal_number(&signal_name))
                }
                Some(ChannelMsg::Failure) => {
                    drop(_raw.take());
                    return Err(RelayError::ExecRefused);
                }
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(ready_deadline), if pending.is_some() => {
                let _ = wr.close().await;
                drop(_raw.take());
                if let Some(buf) = pending.take() {
                    let _ = write_to(std::io::stdout(), &buf);
                }
                return Err(RelayError::NotReady { waited: ready_bound });
            }
            Some(_) = winch.recv(), if interactive => {
                let (cols, rows) = window_size();
                let _ = wr.window_change(cols, rows, 0, 0).await;
            }
            Some(_) = sigint.recv() => {
                // A first Ctrl-C (no terminal here) interrupts the remote redis-cli; a second
                // one, or one sent to an interactive session, gives up.
                interrupts += 1;
                if interactive || interrupts > 1 {
                    let _ = wr.close().await;
                    break 130;
                }
                let _ = wr.signal(Sig::INT).await;
            }
            Some(_) = sigterm.recv() => {
                let _ = wr.signal(Sig::TERM).await;
                let _ = wr.close().await;
                break 143;
            }
            Some(_) = sighup.recv() => {
                let _ = wr.signal(Sig::HUP).await;
                let _ = wr.close().await;
                break 129;
            }
        }
    };
    if let Some(w) = writer {
        w.abort();
    }
    drop(_raw);
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_marker_is_cut_out_once_its_line_ended() {
        let m = READY.as_bytes();
        assert_eq!(after_ready(b"nothing yet"), None);
        assert_eq!(after_ready(m), None, "the line end has not arrived");
        let mut buf = m.to_vec();
        buf.extend_from_slice(b"\r\n127.0.0.1:6379> ");
        assert_eq!(after_ready(&buf).unwrap(), b"127.0.0.1:6379> ");
        let mut buf = b"before ".to_vec();
        buf.extend_from_slice(m);
        buf.extend_from_slice(b"\n");
        assert_eq!(after_ready(&buf).unwrap(), b"before ");
    }
}
