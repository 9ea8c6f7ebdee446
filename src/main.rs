use std::process::ExitCode;

use clap::Parser;
use redisctl::cli::Cli;
use redisctl::render::Shell;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let shell = Shell::new(cli.no_color);
    redisctl::commands::run(cli, &shell)
}

/// `-v` turns on diagnostics for redisctl's own modules; `RUST_LOG` overrides. Logs go to
/// stderr and never carry secret values.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "redisctl=debug,warn",
        _ => "redisctl=trace,info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
