//! The pure half of verify: what redis-cli printed on the nodes (and what EC2 said) in, checks
//! with evidence out. No I/O here, so every rule is unit-tested on captured text. One file per
//! family of checks; this file holds what they share: the probe's sections they read, and how a
//! command's output is read.

pub mod acl;
pub mod aws;
pub mod data;
pub mod files;
pub mod health;
pub mod kernel;
pub mod tls;

use std::net::Ipv4Addr;

/// What one node showed the probe, or why it could not be asked.
#[derive(Debug, Clone)]
pub struct NodeProbe {
    pub node: String,
    pub ip: Ipv4Addr,
    pub az: String,
    pub out: Result<ProbeOut, String>,
}

/// What `p` answered; for a node that could not be probed, `None`, with the check failed and
/// the reason in its evidence.
fn reached<'a>(p: &'a NodeProbe, passed: &mut bool, ev: &mut Vec<String>) -> Option<&'a ProbeOut> {
    match &p.out {
        Ok(o) => Some(o),
        Err(why) => {
            *passed = false;
            ev.push(format!("{}: unreachable: {why}", p.node));
            None
        }
    }
}

/// The raw sections of the per-node probe script.
#[derive(Debug, Clone, Default)]
pub struct ProbeOut {
    /// `PING` over TLS as the operator.
    pub tls_ping: String,
    pub cluster_info: String,
    pub cluster_nodes: String,
    pub replication: String,
    /// `CLUSTER KEYSLOT patient:12345`.
    pub keyslot: String,
    /// `PING` over TLS without credentials.
    pub noauth: CliRun,
    /// `AUTH default <not the password>` over TLS.
    pub wrongpass: CliRun,
    /// `ACL LIST` as the operator: the users Redis runs with (rules with password hashes;
    /// never printed as they are, see [`acl::redact_rule`]).
    pub acl_list: CliRun,
    /// The TCP sockets redis-server listens on (`ss`), and a plaintext `PING` to each and to
    /// the node's address and Redis port: the raw section, read by [`tls::plaintext_tries`].
    pub plaintext: String,
    /// The node certificate file.
    pub cert: String,
    /// What [`crate::redis::files::stat_script`] printed: the files redisctl writes that exist.
    pub modes: String,
    /// One line per [`tls::HANDSHAKES`] entry: `<label> rc=<openssl's exit> <its first telling
    /// line>` (`Protocol version: TLSv1.3`, an alert, an error).
    pub handshakes: String,
    /// [`crate::redis::kernel::observe_script`]'s lines: the kernel values in force.
    pub kernel: String,
    /// The `WARNING` lines of Redis's log since its last start (and the start's own line).
    pub redis_log: String,
}

/// The first non-empty line, trimmed, without redis-cli's `(error) ` prefix, at most 100
/// characters.
pub fn first_line(text: &str) -> String {
    let l = text
        .lines()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let l = l.strip_prefix("(error) ").unwrap_or(l);
    let mut s: String = l.chars().take(100).collect();
    if l.chars().count() > 100 {
        s.push('…');
    }
    s
}

/// What one redis-cli run printed (stdout and stderr) and its exit status (`None`: the probe
/// recorded none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliRun {
    pub out: String,
    pub rc: Option<i32>,
}

/// What one redis-cli run came to, read exactly. redis-cli 7.0 exits 0 when the server
/// answered, error replies included (`NOAUTH …`, `WRONGPASS …`, `ERR …`), and 1 on its own
/// errors (`Could not connect …`, `Error: …`, a TLS error); the strings below are the real
/// binary's (the tests hold them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cli {
    /// The server answered: the first line of its reply (`""` for an empty one).
    Reply(String),
    /// The server accepted the connection and dropped it without a Redis reply, as a TLS
    /// listener does to plaintext: `Error: Connection reset by peer` (Redis 7.0's TLS port),
    /// `Error: Server closed the connection` (a TLS server that read the whole
    /// request first, as `openssl s_server` does).
    Dropped(String),
    /// Anything else: the probe itself failed (redis-cli missing, no connection, no answer
    /// within the timeout, a client-side error), with what it printed and its exit status.
    Failed(String),
}

/// redis-cli's own messages: a first line that starts with one of these is never a reply.
const CLIENT_SIDE: &[&str] = &[
    "Could not connect to Redis at",
    "Could not negotiate a TLS connection",
    "AUTH failed:",
    "Error: ",
    "Unrecognized option",
];

/// What the server's dropping a connection looks like to redis-cli (exit 1).
const DROPPED: &[&str] = &[
    "Error: Connection reset by peer",
    "Error: Server closed the connection",
];

/// Read one redis-cli run exactly: see [`Cli`].
pub fn read_cli(run: &CliRun) -> Cli {
    let first = run
        .out
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let shown = |what: &str| {
        let l = first_line(&run.out);
        if l.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {l}")
        }
    };
    let rc = match run.rc {
        None => return Cli::Failed(shown("no exit status recorded")),
        Some(rc) => rc,
    };
    match rc {
        124 => return Cli::Failed(shown("no answer within the probe's timeout (exit 124)")),
        126 | 127 => return Cli::Failed(shown(&format!("redis-cli could not run (exit {rc})"))),
        _ => {}
    }
    let client_side = CLIENT_SIDE.iter().any(|p| first.starts_with(p));
    if rc == 0 && !client_side {
        return Cli::Reply(first_line(&run.out));
    }
    if rc == 1 && DROPPED.contains(&first) {
        return Cli::Dropped(first.strip_prefix("Error: ").unwrap_or(first).to_string());
    }
    Cli::Failed(if first.is_empty() {
        format!("no output (exit {rc})")
    } else {
        format!("{} (exit {rc})", first_line(&run.out))
    })
}

/// What a command run as some user came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server ran it (its reply, first line).
    Allowed(String),
    /// `NOPERM`.
    Denied(String),
    /// No answer to judge: not logged in, not connected, timed out.
    Broken(String),
}

/// Classify redis-cli's output of one command; `status` is its exit status. Only a reply of the
/// server ([`read_cli`]) is a verdict: `NOPERM` denied, anything else allowed, but for the replies
/// that say the command was never judged (not logged in, the cluster down).
pub fn classify(text: &str, status: Option<i32>) -> Outcome {
    let run = CliRun {
        out: text.to_string(),
        rc: status,
    };
    match read_cli(&run) {
        Cli::Dropped(why) => Outcome::Broken(format!("the server dropped the connection: {why}")),
        Cli::Failed(why) => Outcome::Broken(why),
        Cli::Reply(l) => {
            if let Some(l) = text
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("NOPERM"))
            {
                return Outcome::Denied(first_line(l));
            }
            if ["NOAUTH", "WRONGPASS", "CLUSTERDOWN"]
                .iter()
                .any(|p| l.starts_with(p))
            {
                return Outcome::Broken(l);
            }
            let more = text.lines().filter(|l| !l.trim().is_empty()).count();
            Outcome::Allowed(match (l.is_empty(), more) {
                (true, _) => "(nil)".into(),
                (false, 0 | 1) => l,
                (false, n) => format!("{l} … {n} lines"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(out: &str, rc: i32) -> CliRun {
        CliRun {
            out: out.into(),
            rc: Some(rc),
        }
    }

    /// What redis-cli 7.0.15 (Debian's, the nodes') printed and its exit status, captured
    /// against a TLS-only redis-server 7.0.15 with `default` off.
    #[test]
    fn reads_real_redis_cli_runs_exactly() {
        // Replies, error replies included, exit 0.
        assert_eq!(
            read_cli(&run("NOAUTH Authentication required.\n", 0)),
            Cli::Reply("NOAUTH Authentication required.".into())
        );
        assert_eq!(
            read_cli(&run(
                "WRONGPASS invalid username-password pair or user is disabled.\n",
                0
            )),
            Cli::Reply("WRONGPASS invalid username-password pair or user is disabled.".into())
        );
        assert_eq!(read_cli(&run("PONG\n", 0)), Cli::Reply("PONG".into()));
        assert_eq!(read_cli(&run("OK\n", 0)), Cli::Reply("OK".into()));
        // Plaintext to the TLS port and to the TLS bus port; TLS to a server that read first.
        assert_eq!(
            read_cli(&run("Error: Connection reset by peer\n", 1)),
            Cli::Dropped("Connection reset by peer".into())
        );
        assert_eq!(
            read_cli(&run("Error: Server closed the connection\n", 1)),
            Cli::Dropped("Server closed the connection".into())
        );
        // Nothing listening there (a wrong port): the probe failed, it is not a refusal.
        assert_eq!(
            read_cli(&run(
                "Could not connect to Redis at 10.0.1.10:6390: Connection refused\n",
                1
            )),
            Cli::Failed(
                "Could not connect to Redis at 10.0.1.10:6390: Connection refused (exit 1)".into()
            )
        );
        // redis-cli missing (sh, and timeout in front of it), no answer in time, a client-side
        // TLS error, the client's own login refused (exit 0, then the server's NOAUTH), anything
        // else redis-cli says about itself, an exit status that was never recorded.
        for (out, rc, want) in [
            (
                "sh: 1: redis-cli: not found\n",
                127,
                "redis-cli could not run (exit 127): sh: 1: redis-cli: not found",
            ),
            (
                "timeout: failed to run command 'redis-cli': No such file or directory\n",
                127,
                "redis-cli could not run (exit 127): timeout: failed to run command 'redis-cli': No such file or directory",
            ),
            ("\n", 124, "no answer within the probe's timeout (exit 124)"),
            (
                "Could not negotiate a TLS connection: Invalid CA Certificate File/Directory\nCould not negotiate a TLS connection: Invalid CA Certificate File/Directory\n",
                1,
                "Could not negotiate a TLS connection: Invalid CA Certificate File/Directory (exit 1)",
            ),
            (
                "AUTH failed: WRONGPASS invalid username-password pair or user is disabled.\nNOAUTH Authentication required.\n",
                0,
                "AUTH failed: WRONGPASS invalid username-password pair or user is disabled. (exit 0)",
            ),
            (
                "Error: Protocol error, got \"H\" as reply type byte\n",
                1,
                "Error: Protocol error, got \"H\" as reply type byte (exit 1)",
            ),
            ("", 1, "no output (exit 1)"),
            // A reply with a failing exit status is not one redis-cli 7.0 gives: not trusted.
            ("PONG\n", 2, "PONG (exit 2)"),
        ] {
            assert_eq!(read_cli(&run(out, rc)), Cli::Failed(want.into()), "{out:?}");
        }
        assert_eq!(
            read_cli(&CliRun {
                out: "PONG\n".into(),
                rc: None
            }),
            Cli::Failed("no exit status recorded: PONG".into())
        );
    }

    #[test]
    fn classifies_replies() {
        assert_eq!(classify("OK\n", Some(0)), Outcome::Allowed("OK".into()));
        assert!(matches!(
            classify(
                "NOPERM this user has no permissions to run the 'flushall' command\n",
                Some(0)
            ),
            Outcome::Denied(_)
        ));
        assert!(matches!(
            classify("ERR syntax error\n", Some(0)),
            Outcome::Allowed(_)
        ));
        assert!(matches!(
            classify(
                "AUTH failed: WRONGPASS invalid username-password pair or user is disabled.\nNOAUTH Authentication required.\n",
                Some(0)
            ),
            Outcome::Broken(_)
        ));
        assert!(matches!(
            classify("CLUSTERDOWN Hash slot not served\n", Some(0)),
            Outcome::Broken(_)
        ));
        assert!(matches!(classify("", Some(124)), Outcome::Broken(_)));
        assert_eq!(classify("\n", Some(0)), Outcome::Allowed("(nil)".into()));
        // redis-cli missing is no verdict (it used to read as a command that ran).
        assert_eq!(
            classify("sh: 1: redis-cli: not found\n", Some(127)),
            Outcome::Broken(
                "redis-cli could not run (exit 127): sh: 1: redis-cli: not found".into()
            )
        );
        // A value that mentions TLS or an error is still a value.
        assert_eq!(
            classify("TLS Error: in the value\n", Some(0)),
            Outcome::Allowed("TLS Error: in the value".into())
        );
    }
}
