//! Thin glue: each subcommand parses its arguments and calls one function of the core.

mod apply;
mod client_cert;
mod destroy;
mod plan;
mod redis_cli;
mod validate;
mod verify;

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::render::{Shell, diagnostics};
use crate::spec::{self, LoadError, Loaded};

/// Exit codes of the CLI contract.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    /// `plan --detailed-exitcode`: changes present.
    pub const CHANGES: u8 = 2;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Already rendered as diagnostics; only the summary line is printed.
    #[error(transparent)]
    Spec(#[from] LoadError),
    #[error("cannot read the state of cluster {cluster} from AWS")]
    Observe {
        cluster: String,
        #[source]
        source: crate::aws::AwsError,
    },
    #[error(transparent)]
    KeyFile(#[from] crate::ssh::keyfile::KeyFileError),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Secrets(Vec<crate::spec::secrets::SecretError>),
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    #[error(transparent)]
    Exec(Box<crate::exec::ExecError>),
    #[error("{0}")]
    Refused(String),
    /// A step on one node failed (`redis-cli`): the message names the node and the step.
    #[error("{message}")]
    NodeStep {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
        hint: String,
    },
    #[error("cannot {action} plan file {}", path.display())]
    PlanFile {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<crate::exec::ExecError> for Error {
    fn from(e: crate::exec::ExecError) -> Self {
        Error::Exec(Box::new(e))
    }
}

impl Error {
    /// What to do next, printed after the error.
    fn hint(&self) -> Option<String> {
        match self {
            Error::Observe { source, .. } => Some(source.hint()),
            Error::Exec(e) => e.hint(),
            Error::Node(e) => Some(e.hint()),
            Error::NodeStep { hint, .. } => Some(hint.clone()),
            Error::Secrets(_) => Some(
                "set the password_env variables (or create the password_file files) the spec names for its users".into(),
            ),
            _ => None,
        }
    }
}

pub fn run(cli: Cli, shell: &Shell) -> ExitCode {
    let result = match &cli.command {
        Command::Validate(args) => validate::run(&cli.config, args, shell),
        Command::Plan(args) => runtime().block_on(plan::run(&cli.config, args, shell)),
        Command::Apply(args) => runtime().block_on(apply::run(&cli.config, args, shell)),
        Command::Destroy(args) => runtime().block_on(destroy::run(&cli.config, args, shell)),
        Command::Verify(args) => runtime().block_on(verify::run(&cli.config, args, shell)),
        Command::RedisCli(args) => runtime().block_on(redis_cli::run(&cli.config, args, shell)),
        Command::ClientCert(args) => client_cert::run(&cli.config, args, shell),
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut cmd, "redisctl", &mut script);
            shell.out(&String::from_utf8_lossy(&script));
            Ok(exit::OK)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(shell, &e);
            ExitCode::from(exit::ERROR)
        }
    }
}

/// The closing record of a `--json` stream that ends in an error: the message with its causes,
/// and what to do next (the same words as on stderr).
pub(crate) fn error_record(e: &Error) -> serde_json::Value {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    serde_json::json!({ "message": message, "hint": e.hint() })
}

fn report(shell: &Shell, e: &Error) {
    if let Error::Spec(LoadError::Invalid {
        path,
        source_map,
        diagnostics: list,
    }) = e
    {
        shell.err(&diagnostics::render_all(shell, path, source_map, list));
        shell.err("\n");
    }
    shell.error(e);
    if let Some(h) = e.hint() {
        shell.err(&format!("  what to do: {h}\n"));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// The world as observed, with what it takes to change it.
pub(crate) struct World {
    pub ctx: crate::exec::Ctx,
    pub observed: crate::observed::Observed,
}

/// How much of the world to observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nodes {
    /// EC2 only (destroy).
    Skip,
    /// Each running node once; one that does not answer is a fact (plan).
    Look,
    /// Wait for nodes whose sshd is still coming up (apply: a node launched or started by an
    /// interrupted run is not mistaken for an unreachable one).
    Wait,
}

/// Connect to EC2 and read the cluster's state, the local facts (SSH key, CA, the hashes the
/// node files must have) and each running node over SSH.
pub(crate) async fn observe(spec: &crate::spec::Spec, nodes: Nodes) -> Result<World, Error> {
    let aws = crate::aws::Aws::connect(&spec.cluster.region).await;
    let mut observed = crate::aws::observe(&aws, spec)
        .await
        .map_err(|source| Error::Observe {
            cluster: spec.cluster.name.clone(),
            source,
        })?;
    observed.local_public_key = crate::ssh::keyfile::public_key(&spec.ssh.private_key)?;
    observed.local.now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    observed.local.client_certs = crate::pki::client::inventory(&spec.cluster.state_dir);
    let mut runtime = None;
    if nodes != Nodes::Skip {
        let secrets = crate::spec::secrets::read_all(spec).map_err(Error::Secrets)?;
        observed.local.secrets_digest = crate::spec::secrets::digest(&secrets);
        let rt = std::sync::Arc::new(crate::node::NodeRuntime::new(spec, aws.clone(), secrets)?);
        let (ca, hashes) = rt.local_facts().await?;
        observed.local.ca_cert_pem = ca;
        observed.local.desired_files = hashes;
        if observed.local_public_key.is_some() {
            observed.nodes = rt.observe(&observed, nodes == Nodes::Wait).await;
        }
        runtime = Some(rt);
    }
    Ok(World {
        ctx: crate::exec::Ctx {
            aws,
            nodes: runtime,
        },
        observed,
    })
}

/// Ask for `yes` on a terminal; refuse without one unless `--yes` was given.
pub(crate) fn confirm(shell: &Shell, yes: bool, question: &str) -> Result<(), Error> {
    use std::io::IsTerminal;
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Refused(
            "no terminal to confirm on: pass --yes, or apply a saved plan file".into(),
        ));
    }
    shell.err(&format!(
        "\n{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    ));
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Error::Refused(format!("cannot read the answer: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Error::Refused("cancelled: nothing was changed".into()))
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: the executor stops starting new steps.
pub(crate) async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    // A second signal (either) stops at once.
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => std::process::exit(130),
            _ = term.recv() => std::process::exit(143),
        }
    });
}

/// Load the spec and print its warnings (every command starts here).
pub(crate) fn load_spec(path: &Path, shell: &Shell) -> Result<Loaded, Error> {
    let loaded = spec::load(path)?;
    if !loaded.warnings.is_empty() {
        shell.err(&diagnostics::render_all(
            shell,
            &loaded.path,
            &loaded.source,
            &loaded.warnings,
        ));
        shell.err("\n");
    }
    Ok(loaded)
}
