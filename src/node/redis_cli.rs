//! `redisctl redis-cli [NODE] [-- ARGS...]`: redis-cli on a node of the cluster, with the TLS
//! and user settings that apply uses (issue #7).
//!
//! redis-cli runs **on the node**, over the node's SSH session (found by its tags, reached and
//! host-key checked as apply does, see [`NodeRuntime::pinned_session`]), as root
//! through `sudo -n sh -c '<script>'` (the node's key is 0640 root:redis), against 127.0.0.1
//! with `--tls`, the cluster CA, the node's certificate and key, `--user <operator>` and `-c`.
//!
//! # The password
//!
//! The operator user's password never appears on a command line (ours, sudo's, the shell's or
//! redis-cli's), in a process list, in sudo's journal or in a log. It goes on the SSH channel's
//! stdin as the first line, base64-encoded, and the remote script reads it with the shell's
//! `read` builtin (which reads a pipe one byte at a time, so it takes that line and nothing
//! else), decodes it with `printf` (a builtin) into `base64 -d`, and exports it as
//! REDISCLI_AUTH for the `exec`ed redis-cli. Base64 keeps a password with any bytes (a newline,
//! a quote, a terminal control character such as ^C or ^U) from being cut short or interpreted.
//!
//! - With ARGS (one command) the channel's stdin is that line and then EOF: local stdin is not
//!   read (like `ssh -n`), so a script's loop over its own stdin is not consumed.
//! - Without ARGS and without a terminal, local stdin follows the line: redis-cli reads its
//!   commands from it (`printf 'PING\nDBSIZE\n' | redisctl redis-cli`).
//! - Without ARGS on a terminal (interactive), the channel gets a PTY and everything written to
//!   it goes through a terminal's line discipline, which would echo the password back to the
//!   screen. So: the PTY is requested with ECHO off (sshd sets the modes before the command
//!   starts), the script turns echo off once more and then prints a ready marker; only when the
//!   marker has arrived does redisctl send the password line (so it can never meet a terminal
//!   with echo on, nor go to a sudo that failed), and only after that does it relay the user's
//!   keys. The script turns echo back on and `exec`s redis-cli; the marker line is not shown.
//!   redis-cli's `--askpass` was not used: its prompt turns echo off only once redis-cli runs,
//!   so a password written right after exec could be echoed first, and it would need the
//!   password on the PTY without any check that a prompt is there.
//!
//! The channel itself (the PTY, the local terminal in raw mode, the wait for the marker, the
//! window size, signals) is [`crate::ssh::relay`].

use std::path::Path;
use std::time::Duration;

use super::{NodeError, NodeRuntime, admin_cli_command};
use crate::spec::Spec;
use crate::spec::secrets::Secret;
use crate::ssh::SshError;
use crate::ssh::relay::{self, Mode, READY, RelayError, Remote};
use crate::ssh::sh_quote;

/// Reads the first line of stdin (the base64 password) into REDISCLI_AUTH, nothing more.
const AUTH: &str = "IFS= read -r p && REDISCLI_AUTH=$(printf %s \"$p\" | base64 -d) && unset p && export REDISCLI_AUTH || { echo 'redisctl: no password on stdin' >&2; exit 1; }";

/// Why redis-cli did not run to its end on the node.
#[derive(Debug, thiserror::Error)]
pub enum RedisCliError {
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The message names the node and the step.
    #[error("{message}")]
    Step {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
        hint: String,
    },
}

/// redis-cli on `node` (the spec's first when `None`) with `args`, relayed
/// to this process's terminal or pipes; returns its exit status. `spec_path` names the spec in
/// messages.
pub async fn run(
    spec: &Spec,
    spec_path: &Path,
    node: Option<&str>,
    args: &[String],
) -> Result<u8, RedisCliError> {
    let node = pick_node(spec, node, spec_path)?.to_string();
    let mode = Mode::choose(!args.is_empty());

    // The operator's password only (the other users' are not needed here).
    let op = spec.operator_user();
    let source = op.password.as_ref().ok_or_else(|| RedisCliError::Step {
        message: format!(
            "the operator user `{}` has no password in the spec",
            op.name
        ),
        source: None,
        hint: "give the operator user a password_env or password_file".into(),
    })?;
    let password = crate::spec::secrets::read(&op.name, source).map_err(|e| RedisCliError::Step {
        message: format!(
            "redis-cli on node {node}: cannot read the password of the operator user `{}`",
            op.name
        ),
        source: Some(Box::new(e)),
        hint: "set the environment variable (password_env) or create the file (password_file) the spec names for it, as for apply".into(),
    })?;

    let aws = crate::aws::Aws::connect(&spec.cluster.region).await;
    let rt = NodeRuntime::new(spec, aws, vec![(op.name.clone(), password.clone())])?;
    let session = rt
        .pinned_session(&node)
        .await
        .map_err(|e| connect_error(spec, &node, e))?;
    // During a rotation of the operator's password, the nodes may still hold only the
    // previous one (stage 1, before the apply that loads both): the node says which it takes.
    let password = match &op.previous_password {
        None => password,
        Some(source) => {
            let previous = crate::spec::secrets::read(&op.name, source).map_err(|e| {
                RedisCliError::Step {
                    message: format!(
                        "redis-cli on node {node}: cannot read the previous password of the operator user `{}`",
                        op.name
                    ),
                    source: Some(Box::new(e)),
                    hint: "set the environment variable (previous_password_env) or create the file (previous_password_file) the spec names for it, as for apply".into(),
                }
            })?;
            let probe = format!(
                "IFS= read -r pw; REDISCLI_AUTH=\"$pw\" {} PING 2>&1",
                admin_cli_command(spec)
            );
            let out = session
                .sudo(&probe, Some(format!("{}\n", password.expose()).as_bytes()))
                .await
                .map_err(|e| connect_error(spec, &node, NodeError::Ssh(e)))?;
            if out.stdout_str().contains("WRONGPASS") {
                previous
            } else {
                password
            }
        }
    };
    let formatted = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let command = remote_command(&admin_cli_command(spec), args, mode, formatted);
    let first_line = password_line(&password);
    let remote = Remote {
        command: &command,
        program: "redis-cli",
        first_line: &first_line,
        mode,
        ready_bound: spec.ssh.connect_timeout.max(Duration::from_secs(30)),
    };
    let result = relay::relay(&session, remote).await;
    session.close().await;
    result.map_err(|e| relay_error(&node, e))
}

/// The node asked for, or the spec's first; an unknown name lists the valid ones.
fn pick_node<'a>(
    spec: &'a Spec,
    wanted: Option<&str>,
    path: &Path,
) -> Result<&'a str, RedisCliError> {
    let names: Vec<&str> = spec.nodes.nodes.iter().map(|n| n.name.as_str()).collect();
    let first = names.first().copied().ok_or_else(|| RedisCliError::Step {
        message: format!("the spec {} has no nodes", path.display()),
        source: None,
        hint: "add [[nodes.node]] entries to the spec".into(),
    })?;
    match wanted {
        None => Ok(first),
        Some(w) => names
            .iter()
            .copied()
            .find(|n| *n == w)
            .ok_or_else(|| RedisCliError::Step {
                message: format!(
                    "no node `{w}` in {}; its nodes are: {}",
                    path.display(),
                    names.join(", ")
                ),
                source: None,
                hint: format!("name one of those nodes, or none for the first ({first})"),
            }),
    }
}

/// An error of finding or reaching the node, with the step and what to do next.
fn connect_error(spec: &Spec, node: &str, e: NodeError) -> RedisCliError {
    let (what, hint): (String, String) = match &e {
        NodeError::NoInstance { .. } => (
            format!(
                "no running instance tagged redisctl:cluster={} redisctl:node={node} in EC2",
                spec.cluster.name
            ),
            "start or create it with `redisctl apply` (`redisctl plan` shows what is missing)"
                .into(),
        ),
        NodeError::Aws(_) => (
            "cannot look its instance up in EC2".into(),
            "check the AWS credentials, AWS_REGION and AWS_ENDPOINT_URL, then try again".into(),
        ),
        NodeError::Ssh(SshError::HostKeyChanged { .. }) => (
            "the SSH host key is not the pinned one".into(),
            "do not connect until you know why the host key changed (see above)".into(),
        ),
        NodeError::Ssh(SshError::NothingPinned { .. }) => (
            "no pinned SSH host key to check it against".into(),
            "run `redisctl apply` first: it pins each node's host key at first contact (a key the instance's console output lists, in this state directory's known_hosts)".into(),
        ),
        NodeError::Ssh(SshError::AuthFailed { .. }) => (
            "SSH authentication failed".into(),
            "check that ssh.private_key in the spec is the key of the cluster's key pair".into(),
        ),
        NodeError::Ssh(_) | NodeError::Failed { .. } | NodeError::Timeout { .. } => (
            "cannot connect over SSH".into(),
            format!(
                "check that the instance is running and that port 22 is open from here; {}=private-ip|public-ip chooses the address",
                crate::spec::SshVia::ENV
            ),
        ),
        NodeError::Ca { .. } => ("cannot read the cluster CA".into(), e.hint()),
    };
    RedisCliError::Step {
        message: format!("redis-cli on node {node}: {what}"),
        source: Some(Box::new(e)),
        hint,
    }
}

/// A failure of the relay, with the node in the message and what to do next.
fn relay_error(node: &str, e: RelayError) -> RedisCliError {
    let hint = match &e {
        RelayError::Step { .. } => "check the node (is it running, does SSH answer?) and try again",
        RelayError::PtyRefused => {
            "run it without a terminal: `redisctl redis-cli NODE -- COMMAND`, or pipe the commands into it"
        }
        RelayError::ExecRefused => {
            "check the node's sshd (it must allow commands for the SSH user) and try again"
        }
        RelayError::NotReady { .. } => {
            "check that the SSH user may run `sudo -n` on the node (apply needs it too) and try again"
        }
        RelayError::NoExitStatus => {
            "the node or the network went away; check the node and try again"
        }
    };
    let message = format!("redis-cli on node {node}: {e}");
    let source = match e {
        RelayError::Step { source, .. } => Some(source),
        _ => None,
    };
    RedisCliError::Step {
        message,
        source,
        hint: hint.into(),
    }
}

/// The command line of the SSH channel: `sudo -n sh -c '<script>'` (no secret in it).
fn remote_command(cli: &str, args: &[String], mode: Mode, formatted: bool) -> String {
    format!(
        "sudo -n sh -c {}",
        sh_quote(&remote_script(cli, args, mode, formatted))
    )
}

/// The script: read the password line, then `exec` redis-cli in cluster mode with ARGS (each
/// shell-quoted). `formatted`: the local stdout is a terminal, so ask for redis-cli's
/// human-readable replies as a local redis-cli would give them.
fn remote_script(cli: &str, args: &[String], mode: Mode, formatted: bool) -> String {
    let mut cli = format!("{cli} -c");
    if formatted && mode != Mode::Interactive {
        cli.push_str(" --no-raw");
    }
    for a in args {
        cli.push(' ');
        cli.push_str(&sh_quote(a));
    }
    match mode {
        // No history file: a typed `ACL SETUSER … >password` would stay on the node.
        Mode::Interactive => format!(
            "stty -echo 2>/dev/null; printf '%s\\n' '{READY}'; {AUTH}; stty echo 2>/dev/null; export REDISCLI_HISTFILE=/dev/null; exec {cli}"
        ),
        Mode::Command | Mode::Pipe => format!("{AUTH}; exec {cli}"),
    }
}

/// The first line of the channel's stdin.
fn password_line(password: &Secret) -> Secret {
    let mut line = base64(password.expose().as_bytes());
    line.push('\n');
    Secret::new(line)
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const CLI: &str = "redis-cli --tls --cacert /etc/redis/tls/ca.crt -h 127.0.0.1 -p 6379 --user 'admin' --no-auth-warning";

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// Run a remote command line as the node would: the login shell parses it (here without
    /// sudo), `sh -c` parses the script.
    fn run_like_the_node(command: &str, stdin: &[u8]) -> String {
        let command = command
            .strip_prefix("sudo -n ")
            .expect("the command runs under sudo -n");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn base64_matches_the_standard_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn the_command_line_has_every_setting_and_no_password() {
        let pw = Secret::new("s3cret-pw".into());
        let cmd = remote_command(CLI, &args(&["CLUSTER", "INFO"]), Mode::Command, false);
        assert!(cmd.starts_with("sudo -n sh -c '"), "{cmd}");
        assert!(cmd.contains("exec redis-cli --tls"), "{cmd}");
        assert!(cmd.contains(" -c "), "cluster mode: {cmd}");
        assert!(!cmd.contains("--no-raw"), "{cmd}");
        assert!(!cmd.contains(pw.expose()) && !cmd.contains(&base64(b"s3cret-pw")));
        assert!(!cmd.contains(" -a ") && !cmd.contains("--pass"), "{cmd}");
        assert!(
            !cmd.contains(READY),
            "the marker is for interactive mode only"
        );
        let formatted = remote_command(CLI, &[], Mode::Pipe, true);
        assert!(formatted.contains(" -c --no-raw"), "{formatted}");
        let tty = remote_command(CLI, &[], Mode::Interactive, true);
        assert!(!tty.contains("--no-raw"), "{tty}");
        assert!(tty.contains(READY) && tty.contains("stty -echo"), "{tty}");
        assert!(tty.contains("REDISCLI_HISTFILE=/dev/null"), "{tty}");
    }

    #[test]
    fn arguments_reach_redis_cli_exactly_through_both_shells() {
        let nasty = args(&[
            "SET",
            "k y",
            "it's \"quoted\" $HOME `id` $(id) \\ ; | & * ? ~ #",
            "line1\nline2",
            "",
            "-c",
        ]);
        // A stand-in for redis-cli that prints what it got: its password, each argument, and
        // whatever stdin is left.
        let fake = "sh -c 'printf \"auth=%s\\n\" \"$REDISCLI_AUTH\"; printf \"arg=[%s]\\n\" \"$@\"; echo rest:; cat' fake";
        let cmd = remote_command(fake, &nasty, Mode::Command, false);
        let pw = Secret::new("pw with spaces, 'quotes' \"and\" $x `y` \\ and ünicode".into());
        let out = run_like_the_node(&cmd, password_line(&pw).expose().as_bytes());
        let mut want = format!("auth={}\narg=[-c]\n", pw.expose());
        for a in &nasty {
            want.push_str(&format!("arg=[{a}]\n"));
        }
        want.push_str("rest:\n");
        assert_eq!(out, want);
    }

    #[test]
    fn the_password_line_is_read_and_the_rest_of_stdin_is_left_for_redis_cli() {
        let fake = "sh -c 'printf \"auth=%s\\n\" \"$REDISCLI_AUTH\"; cat' fake";
        let cmd = remote_command(fake, &[], Mode::Pipe, false);
        let pw = Secret::new("first\nsecond line of a strange password".into());
        let mut stdin = password_line(&pw).expose().as_bytes().to_vec();
        stdin.extend_from_slice(b"PING\nDBSIZE\n");
        let out = run_like_the_node(&cmd, &stdin);
        assert_eq!(
            out,
            "auth=first\nsecond line of a strange password\nPING\nDBSIZE\n"
        );
    }

    #[test]
    fn interactive_script_prints_the_marker_before_it_reads() {
        let fake = "sh -c 'printf \"auth=%s\\n\" \"$REDISCLI_AUTH\"; cat' fake";
        let cmd = remote_command(fake, &[], Mode::Interactive, false);
        let pw = Secret::new("pw".into());
        let mut stdin = password_line(&pw).expose().as_bytes().to_vec();
        stdin.extend_from_slice(b"PING\n");
        let out = run_like_the_node(&cmd, &stdin);
        assert_eq!(out, format!("{READY}\nauth=pw\nPING\n"));
    }

    #[test]
    fn missing_password_line_stops_before_redis_cli() {
        let fake = "echo ran";
        let cmd = remote_command(fake, &[], Mode::Command, false);
        let command = cmd.strip_prefix("sudo -n ").unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stdout).is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no password on stdin"));
    }

    #[test]
    fn nodes_are_picked_by_name_or_the_first() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster.toml.example"))
                .unwrap();
        let source = crate::spec::SourceMap::new(&text);
        let (spec, _) =
            crate::spec::parse(&text, Path::new("/specs"), &source).expect("the example is valid");
        let path = Path::new("cluster.toml");
        assert_eq!(pick_node(&spec, None, path).unwrap(), "redis-node-1a");
        assert_eq!(
            pick_node(&spec, Some("redis-node-1c"), path).unwrap(),
            "redis-node-1c"
        );
        let e = pick_node(&spec, Some("redis-node-9"), path).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("no node `redis-node-9`")
                && text.contains("redis-node-1a, redis-node-1b, redis-node-1c"),
            "{text}"
        );
    }
}
