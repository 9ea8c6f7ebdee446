//! `redisctl-sandbox`: see docs/sandbox.md.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use redisctl_sandbox::control::{self, Request};
use redisctl_sandbox::faults::{Effect, Fault, default_status};
use redisctl_sandbox::paths::Paths;
use redisctl_sandbox::{front, lifecycle};
use std::process::ExitCode;
use std::time::Duration;

/// An emulated AWS EC2 region with real booted hosts, on this machine (run as root).
#[derive(Parser)]
#[command(name = "redisctl-sandbox", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build what is missing (base tree, moto venv) and start the region. Harmless when up.
    Up {
        /// apt-get install missing prerequisites instead of naming them.
        #[arg(long)]
        install_prereqs: bool,
    },
    /// Remove every host, namespace, route, mount and process of the sandbox.
    Down,
    /// Return the region to empty (moto reset, hosts and volumes removed), keeping it up.
    Reset,
    /// Tell what runs: moto, the front, the hosts. Exit 1 when the sandbox is not up.
    Status,
    /// Print the environment for clients (valid inside the operator namespace).
    Env,
    /// Run a command in the operator namespace with the client environment set.
    Exec {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Requests per EC2 action since the last reset.
    Stats {
        /// Clear the counts after printing them.
        #[arg(long)]
        reset: bool,
        #[arg(long)]
        json: bool,
    },
    /// Inject faults into the EC2 front.
    Faults {
        #[command(subcommand)]
        command: FaultsCmd,
    },
    /// Internal: the EC2 front daemon (started by `up`).
    #[command(name = "__front", hide = true)]
    Front,
}

#[derive(Subcommand)]
enum FaultsCmd {
    /// Add a fault: e.g. `--action RunInstances --error RequestLimitExceeded --times 2`.
    Add(FaultArgs),
    /// List the active faults.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove every fault.
    Clear,
}

#[derive(Args)]
struct FaultArgs {
    /// EC2 action name, or `*` for every action.
    #[arg(long)]
    action: String,
    /// Answer with this AWS error code (awsquery XML error).
    #[arg(long, conflicts_with = "drop_connection")]
    error: Option<String>,
    /// HTTP status: of the error (default: AWS's for the code), or alone a bare status.
    #[arg(long, conflicts_with = "drop_connection")]
    http_status: Option<u16>,
    /// Close the connection without answering.
    #[arg(long)]
    drop_connection: bool,
    /// Fire this many times, then disappear (default: until cleared).
    #[arg(long)]
    times: Option<u64>,
    /// Fire with this probability per matching request (0..1).
    #[arg(long)]
    rate: Option<f64>,
}

fn fault_from(a: FaultArgs) -> Result<Fault> {
    let effect = match (a.error, a.http_status, a.drop_connection) {
        (Some(code), status, false) => {
            let status = status.unwrap_or_else(|| default_status(&code));
            Effect::Error { code, status }
        }
        (None, Some(status), false) => Effect::Status { status },
        (None, None, true) => Effect::Drop,
        _ => bail!(
            "say what the fault does: --error CODE [--http-status N], --http-status N, or --drop-connection"
        ),
    };
    if let Some(r) = a.rate
        && !(0.0..=1.0).contains(&r)
    {
        bail!("--rate must be between 0 and 1, not {r}");
    }
    Ok(Fault {
        action: a.action,
        effect,
        times: a.times,
        rate: a.rate,
        fired: 0,
    })
}

fn ctl(paths: &Paths, req: Request) -> Result<serde_json::Value> {
    control::call(&paths.control_socket(), &req, Duration::from_secs(30))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = Paths::from_env();
    let result: Result<bool> = (|| {
        match cli.command {
            Cmd::Up { install_prereqs } => lifecycle::up(&paths, install_prereqs)?,
            Cmd::Down => lifecycle::down(&paths)?,
            Cmd::Reset => lifecycle::reset(&paths)?,
            Cmd::Status => return lifecycle::status(&paths),
            Cmd::Env => print!("{}", lifecycle::env_lines()),
            Cmd::Exec { command } => lifecycle::exec(&paths, &command)?,
            Cmd::Stats { reset, json } => {
                let v = ctl(&paths, Request::Stats { reset })?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    let map: std::collections::BTreeMap<String, u64> = serde_json::from_value(v)?;
                    let total: u64 = map.values().sum();
                    for (action, n) in &map {
                        println!("{n:>8}  {action}");
                    }
                    println!("{total:>8}  total");
                }
            }
            Cmd::Faults { command } => match command {
                FaultsCmd::Add(a) => {
                    ctl(
                        &paths,
                        Request::FaultsAdd {
                            fault: fault_from(a)?,
                        },
                    )?;
                }
                FaultsCmd::List { json } => {
                    let v = ctl(&paths, Request::FaultsList)?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&v)?);
                    } else {
                        let faults: Vec<Fault> = serde_json::from_value(v)?;
                        if faults.is_empty() {
                            println!("no faults");
                        }
                        for f in faults {
                            println!(
                                "{}: {:?}, {} left, rate {}, fired {}",
                                f.action,
                                f.effect,
                                f.times
                                    .map(|t| t.to_string())
                                    .unwrap_or_else(|| "unlimited".into()),
                                f.rate.map(|r| r.to_string()).unwrap_or_else(|| "1".into()),
                                f.fired
                            );
                        }
                    }
                }
                FaultsCmd::Clear => {
                    ctl(&paths, Request::FaultsClear)?;
                }
            },
            Cmd::Front => front::daemon(paths.clone())?,
        }
        Ok(true)
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("redisctl-sandbox: {e:#}");
            ExitCode::from(1)
        }
    }
}
