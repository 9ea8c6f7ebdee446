//! Thin glue: each subcommand parses its arguments and calls one function of the core
//! (`workflow/` for plan, apply and destroy), then hands the outcome to `render/`.

mod adopt;
mod apply;
mod client_cert;
mod destroy;
mod output;
mod plan;
mod redis_cli;
mod show;
mod state;
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

pub use crate::workflow::Error;

pub fn run(cli: Cli, shell: &Shell) -> ExitCode {
    let result = match &cli.command {
        Command::Validate(args) => validate::run(&cli.config, args, shell),
        Command::Plan(args) => runtime().block_on(plan::run(&cli.config, args, shell)),
        Command::Apply(args) => runtime().block_on(apply::run(&cli.config, args, shell)),
        Command::Destroy(args) => runtime().block_on(destroy::run(&cli.config, args, shell)),
        Command::Verify(args) => runtime().block_on(verify::run(&cli.config, args, shell)),
        Command::RedisCli(args) => runtime().block_on(redis_cli::run(&cli.config, args, shell)),
        Command::ClientCert(args) => client_cert::run(&cli.config, args, shell),
        Command::Adopt(args) => runtime().block_on(adopt::run(&cli.config, args, shell)),
        Command::Show(args) => show::run(args, shell),
        Command::Output(args) => output::run(&cli.config, args, shell),
        Command::ForceUnlock(args) => state::force_unlock(&cli.config, &args.id, shell),
        Command::State(cmd) => state::run(&cli.config, cmd, shell),
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

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: the executor stops starting new steps.
pub(crate) async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    crate::state::caller_handles_signals();
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    // A second signal (either) stops at once, after the S3 state's lock and private copy are
    // let go (exit runs no destructor).
    tokio::spawn(async move {
        let code = tokio::select! {
            _ = tokio::signal::ctrl_c() => 130,
            _ = term.recv() => 143,
        };
        crate::state::close_all();
        std::process::exit(code);
    });
}

/// [`load_spec`], then the state opened for `access` ([`crate::state::open`]): with an S3
/// backend, the spec's state directory is then a private copy, and the lock is held for a
/// write, until the returned [`crate::state::State`] is dropped.
pub(crate) fn load_with_state(
    path: &Path,
    shell: &Shell,
    access: crate::state::Access,
) -> Result<(Loaded, crate::state::State), Error> {
    let mut loaded = load_spec(path, shell)?;
    let state = crate::state::open(&mut loaded.spec, access)?;
    Ok((loaded, state))
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
