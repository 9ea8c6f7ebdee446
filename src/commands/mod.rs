//! Thin glue: each subcommand parses its arguments and calls one function of the core.

mod validate;

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
    #[error(
        "`redisctl {command}` is not built yet ({what}); nothing was read from or changed in AWS"
    )]
    NotBuilt {
        command: &'static str,
        what: &'static str,
    },
}

pub fn run(cli: Cli, shell: &Shell) -> ExitCode {
    let result = match &cli.command {
        Command::Validate(args) => validate::run(&cli.config, args, shell),
        Command::Plan(_) => not_built(&cli.config, shell, "plan", "the AWS-layer issue"),
        Command::Apply(_) => not_built(&cli.config, shell, "apply", "the AWS-layer issue"),
        Command::Destroy(_) => not_built(&cli.config, shell, "destroy", "the AWS-layer issue"),
        Command::Verify(_) => not_built(&cli.config, shell, "verify", "the node-layer issue"),
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

/// Commands of later issues: the spec is still checked (so CI gets real errors), then the
/// command says plainly that it does not exist yet and fails.
fn not_built(
    config: &Path,
    shell: &Shell,
    command: &'static str,
    what: &'static str,
) -> Result<u8, Error> {
    load_spec(config, shell)?;
    Err(Error::NotBuilt { command, what })
}
