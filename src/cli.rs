//! The command-line contract (CI relies on it; see README "CLI at a glance").

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit status:
  0  success; for `plan --detailed-exitcode`: no changes, every node observed
  1  error: invalid spec, AWS or SSH failure, refused (stale plan, no confirmation, a
     blocker, a node that could not be observed), or a failed `verify` check
  2  `plan --detailed-exitcode` only: the plan has changes
  `redis-cli` exits with redis-cli's own status (1 also when it could not be started)

Environment:
  AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, …  the standard AWS configuration and credential chain
  REDISCTL_SSH_VIA   public-ip | private-ip: how nodes are reached (overrides ssh.via)
  NO_COLOR           any non-empty value turns colour off";

#[derive(Debug, Parser)]
#[command(
    name = "redisctl",
    version,
    about = "Deploy and keep a production, security-first Redis Cluster on AWS EC2 from one TOML file",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    /// The cluster spec
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        default_value = "cluster.toml"
    )]
    pub config: PathBuf,

    /// Never colour output (also: NO_COLOR=1)
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Diagnostic logging to stderr (-v debug, -vv trace); RUST_LOG also works
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the spec offline: syntax, every rule, and risky choices (warnings)
    #[command(after_help = "Exit status: 0 valid (warnings allowed), 1 invalid.")]
    Validate(ValidateArgs),
    /// Compare the spec with live AWS and the nodes and print what apply would do
    #[command(
        after_help = "Exit status: 0 success (no changes with --detailed-exitcode), 1 error (with --detailed-exitcode also: a node could not be observed), 2 changes (with --detailed-exitcode)."
    )]
    Plan(PlanArgs),
    /// Carry out a plan: computed now (with a prompt), or a saved plan file (no prompt)
    #[command(after_help = "Exit status: 0 applied, 1 error or refused.")]
    Apply(ApplyArgs),
    /// Remove everything redisctl made for this cluster, in reverse order
    #[command(after_help = "Exit status: 0 destroyed and proven empty, 1 error or refused.")]
    Destroy(DestroyArgs),
    /// Run the acceptance checks against the live cluster
    #[command(after_help = "Exit status: 0 every check passed, 1 a check failed or an error.")]
    Verify(VerifyArgs),
    /// Open redis-cli on a node: TLS, the cluster CA, the node's certificate, the operator user
    /// and its password (never on a command line), cluster mode
    #[command(
        name = "redis-cli",
        visible_alias = "cli",
        after_help = REDIS_CLI_HELP
    )]
    RedisCli(RedisCliArgs),
    /// Take in a cluster built without redisctl (by hand, from the reference procedure): find
    /// the spec's resources in a VPC, show what will be tagged and what the first apply will
    /// then change, and tag them after confirmation
    #[command(after_help = ADOPT_HELP)]
    Adopt(AdoptArgs),
    /// Print a plan saved by `plan --out` (no spec, no AWS, no node)
    #[command(
        after_help = "Exit status: 0 shown, 1 the file is not a redisctl plan file (or unreadable)."
    )]
    Show(ShowArgs),
    /// Print what applications and pipelines need to reach the cluster (endpoints, the CA
    /// bundle to trust, …), from the spec and the state directory only
    #[command(
        after_help = "Examples:\n  redisctl output                      every output\n  redisctl output endpoints            one value, raw: $(redisctl output endpoints)\n  redisctl output ca_bundle > ca.crt   the CA certificates an application trusts\n\nExit status: 0 printed, 1 an error (no such output, an unreadable spec or CA)."
    )]
    Output(OutputArgs),
    /// Issue a client certificate from the cluster CA for an application (tls.auth_clients)
    #[command(name = "client-cert", after_help = CLIENT_CERT_HELP)]
    ClientCert(ClientCertArgs),
    /// Remove the lock of a run that died from the S3 state backend (the ID its refusal named)
    #[command(
        name = "force-unlock",
        after_help = "Only the lock with this ID is removed: a lock taken since by another run is refused, with its holder named. Make sure the run that held it is gone (its machine, its process): two runs changing one cluster at once can leave it half-changed.\n\nExit status: 0 removed, 1 no such lock or an error."
    )]
    ForceUnlock(ForceUnlockArgs),
    /// Move the state directory to or from the S3 backend of the spec's [state]
    #[command(subcommand)]
    State(StateCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout
    #[command(after_help = "Example: redisctl completions bash > /etc/bash_completion.d/redisctl")]
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    /// The lock's ID (16 hex digits), as the refusal printed it
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Copy a local state directory into the S3 backend (under its lock); refused when the
    /// backend holds another CA
    #[command(after_help = "Exit status: 0 pushed, 1 refused or an error.")]
    Push {
        /// The local state directory [default: cluster.state_dir, or .redisctl/<cluster> next to the spec]
        #[arg(long, value_name = "DIR")]
        from: Option<std::path::PathBuf>,
    },
    /// Copy the S3 backend's state into a local directory (created 0700); refused when that
    /// directory holds another CA
    #[command(after_help = "Exit status: 0 pulled, 1 refused or an error.")]
    Pull {
        /// The local directory [default: cluster.state_dir, or .redisctl/<cluster> next to the spec]
        #[arg(long, value_name = "DIR")]
        to: Option<std::path::PathBuf>,
    },
}

const REDIS_CLI_HELP: &str = "\
Examples:
  redisctl redis-cli                                 interactive session on the first node
  redisctl redis-cli redis-node-1b -- CLUSTER INFO   one command; its output and exit status
  printf 'PING\\nDBSIZE\\n' | redisctl redis-cli       commands from stdin, one per line

redis-cli runs on the node (over SSH, host key checked against the pinned one) against
127.0.0.1 with -c: it follows MOVED redirects to the node that holds a key. The operator
user's password goes to it on the SSH channel's stdin; it is never on a command line, in a
process list or in a log. ARGS are on the node's command line (and in sudo's log): never put
a secret in them. With ARGS, stdin is not read.

Exit status: redis-cli's own; 1 if redisctl could not start it (the error says why).";

#[derive(Debug, Args)]
pub struct RedisCliArgs {
    /// The node, by its name in the spec; default: the spec's first node
    #[arg(value_name = "NODE")]
    pub node: Option<String>,
    /// A command and its arguments (or more redis-cli options), after `--`; without them an
    /// interactive session on a terminal, otherwise the commands on stdin
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

const CLIENT_CERT_HELP: &str = "\
Writes DIR/NAME.key (0600, never printed), DIR/NAME.crt and DIR/ca.crt. The certificate
says who the client is (CN=NAME, clientAuth only, signed by the cluster CA in the state
directory, valid for tls.cert_days unless --days); it does not log the client in: it still
needs an ACL user and password. Each issue is recorded (CN, serial, expiry, fingerprint; no
key) in <state_dir>/client-certs.jsonl. Redis checks no revocation list: a leaked key is
trusted until its certificate expires, so keep lifetimes short and keys on the application's
host only. An existing NAME.key or NAME.crt is not replaced without --force.

Example:
  redisctl client-cert app --out ./app-tls --days 90

Exit status: 0 issued, 1 error or refused (nothing written).";

#[derive(Debug, Args)]
pub struct ClientCertArgs {
    /// The client's name, its certificate's CN (letters, digits, '.', '_', '-'; at most 64)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to write NAME.key, NAME.crt and ca.crt (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
    /// Lifetime in days (default: the spec's tls.cert_days; never past the CA's own end)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: Option<u32>,
    /// Replace an existing NAME.key / NAME.crt in DIR
    #[arg(long)]
    pub force: bool,
    /// Print what was issued as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print the spec with every default filled in (TOML, to stdout)
    #[arg(long)]
    pub resolved: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Save the plan (with a fingerprint of the spec and of what was observed) for `apply FILE`
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the plan as versioned JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Exit 2 when there are changes, 0 when there are none (and every node was observed), 1
    /// on errors, blockers, or a node that could not be observed over SSH
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan a rotation of a secret redisctl keeps (once; an interrupted rotation is finished by
    /// any later apply)
    #[arg(long, value_name = "WHAT", value_enum)]
    pub rotate: Vec<Rotate>,
    /// Plan the OS's pending updates on every node, one node at a time (Redis restarted onto
    /// them as for a configuration change; its own packages held)
    #[arg(long)]
    pub update_os: bool,
}

/// What `--rotate` rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rotate {
    /// The password replicas log in to their master with (the redisctl-replication user)
    ReplicationPassword,
    /// The operator's SSH key (ssh.private_key, and the EC2 key pair)
    SshKey,
}

impl Rotate {
    /// The plan's requests for `--rotate` values and `--update-os`.
    pub fn requests(all: &[Rotate], update_os: bool) -> crate::plan::Requests {
        crate::plan::Requests {
            rotate_replication_password: all.contains(&Rotate::ReplicationPassword),
            rotate_ssh_key: all.contains(&Rotate::SshKey),
            update_os,
        }
    }
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// One output, printed raw (cluster, region, endpoints, port, tls_auth_clients, users,
    /// ca_rotation, ca_bundle)
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Every output as one JSON object
    #[arg(long, conflicts_with = "name")]
    pub json: bool,
}

const ADOPT_HELP: &str = "Write the spec to match the cluster (its subnets, its nodes' names, subnets and private IPs, the key pair its instances were launched with under [ssh] key_name and private_key), then run adopt: what differs and cannot change in place (a CIDR, a private IP, an instance type) is named with the spec line to write, and nothing is tagged until there is none. A resource is matched by EC2's facts (the VPC named here; subnets by Name or CIDR; the gateway attached; the route table of the subnets; instances by Name or private IP; their root volumes and their one security group), never by a tag. Tagging is all adopt changes; `redisctl apply` then converges the cluster.\n\nExit status: 0 tagged (or nothing to do), 1 refused (the reasons printed) or an error.";

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The VPC the cluster was built in: its id (vpc-…) or its Name tag
    #[arg(long, value_name = "ID|NAME")]
    pub vpc: String,
    /// Do not prompt before tagging
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A plan saved by `plan --out`
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the plan as versioned JSON (as `plan --json` does)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `plan --out`; applied without a prompt, refused if stale
    #[arg(value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Do not prompt; required when there is no terminal and no plan file
    #[arg(long)]
    pub yes: bool,
    /// Allow steps that replace a node (and destroy its data)
    #[arg(long)]
    pub allow_replace: bool,
    /// Rotate a secret redisctl keeps (once; an interrupted rotation is finished by any later
    /// apply); not with a plan file, which has its steps already
    #[arg(long, value_name = "WHAT", value_enum, conflicts_with = "plan")]
    pub rotate: Vec<Rotate>,
    /// Install the OS's pending updates on every node, one node at a time (Redis restarted
    /// onto them as for a configuration change; its own packages held); not with a plan file
    #[arg(long, conflicts_with = "plan")]
    pub update_os: bool,
    /// Keep the plaintext snapshot and old root volume of an encryption swap (tagged
    /// redisctl:kept-for-rollback) instead of deleting them; `destroy` removes them
    #[arg(long)]
    pub keep_old_volumes: bool,
    /// How many independent steps run at once
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: u16,
    /// Print progress as a JSON event stream on stdout, one object per line (for CI); needs
    /// --yes or a plan file
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Do not prompt; required when there is no terminal
    #[arg(long)]
    pub yes: bool,
    /// Print progress as a JSON event stream on stdout, one object per line (for CI); needs
    /// --yes
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the checks as JSON
    #[arg(long)]
    pub json: bool,
}
