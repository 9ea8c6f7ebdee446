//! `redisctl-sandbox`: see docs/sandbox.md.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use redisctl_sandbox::control::{self, RegionChange, RegionSettings, RegionStatus, Request};
use redisctl_sandbox::faults::{
    DEFAULT_HOLD_SECS, DEFAULT_LAUNCH_FAILURE, DEFAULT_START_FAILURE, Effect, Fault, Hook, Then,
    default_status,
};
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
        /// Speed factor of the timed region: sandbox seconds per modelled AWS second (1 = as
        /// on AWS, 0 = instant). Default: $REDISCTL_SANDBOX_SPEED, else 0.05.
        #[arg(long)]
        speed: Option<f64>,
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
    /// Kill a process or hold an answer exactly when a request sets a tag (docs/sandbox.md,
    /// "Hooks").
    Hooks {
        #[command(subcommand)]
        command: HooksCmd,
    },
    /// Show (and change) the timed region's settings and what it did since the last reset.
    Region {
        /// Sandbox seconds per modelled AWS second (1 = as on AWS, 0 = instant).
        #[arg(long)]
        speed: Option<f64>,
        /// Probability that a create is hidden for the eventual-consistency window (0..1).
        #[arg(long)]
        consistency_rate: Option<f64>,
        /// Probability that a termination leaves lingering dependencies (0..1).
        #[arg(long)]
        lingering_rate: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Fill the region with what a used AWS account holds: the default VPC, a key pair named
    /// KEY_NAME that redisctl did not make, an untagged VPC and instance with the reference
    /// spec's addresses, another redisctl cluster's tagged resources (docs/sandbox.md).
    Seed {
        /// The name of the foreign key pair (the spec's ssh.key_name, to see it refused).
        #[arg(long, default_value = "prod-redis-key")]
        key_name: String,
        #[arg(long)]
        json: bool,
    },
    /// Internal: the EC2 front daemon (started by `up`).
    #[command(name = "__front", hide = true)]
    Front {
        #[arg(long, default_value_t = control::DEFAULT_SPEED)]
        speed: f64,
    },
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

#[derive(Subcommand)]
enum HooksCmd {
    /// Add a hook: e.g. `--action CreateTags --tag redisctl:stage=swap:3-volume-created --kill
    /// PID`. It fires once the request took effect, before its answer. Prints its id.
    Add {
        /// EC2 action name, or `*` for every action.
        #[arg(long)]
        action: String,
        /// KEY=VALUE: the request sets tag KEY to VALUE; KEY alone: any value, or a DeleteTags
        /// of KEY.
        #[arg(long)]
        tag: String,
        /// SIGKILL to this process, and close the connection without the answer.
        #[arg(long, conflicts_with = "hold")]
        kill: Option<u32>,
        /// Hold the answer until `hooks release ID` (or --max-secs).
        #[arg(long)]
        hold: bool,
        /// How long a hold lasts unreleased.
        #[arg(long, default_value_t = DEFAULT_HOLD_SECS, requires = "hold")]
        max_secs: u64,
        /// Fire this many times.
        #[arg(long, default_value_t = 1)]
        times: u64,
    },
    /// List the hooks and what they did.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Answer the requests hook ID holds.
    Release { id: u64 },
    /// Remove every hook (held requests are answered).
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
    /// Close the connection without answering (the request never reaches moto).
    #[arg(long)]
    drop_connection: bool,
    /// Let the request take effect, then close the connection without its answer.
    #[arg(long)]
    lose_response: bool,
    /// RunInstances: answered `pending`, then `terminated` with a state reason (--reason).
    #[arg(long)]
    launch_fails: bool,
    /// StartInstances: answered `pending`, then `stopped` again with a state reason (--reason).
    #[arg(long)]
    start_fails: bool,
    /// CreateVolume: the volume goes from `creating` to `error`.
    #[arg(long)]
    volume_fails: bool,
    /// The state reason code of --launch-fails (default Client.InvalidKMSKey.InvalidState) or
    /// --start-fails (default Server.InsufficientInstanceCapacity).
    #[arg(long)]
    reason: Option<String>,
    /// Fire this many times, then disappear (default: until cleared).
    #[arg(long)]
    times: Option<u64>,
    /// Fire with this probability per matching request (0..1).
    #[arg(long)]
    rate: Option<f64>,
}

/// The effect the fault flags ask for; exactly one must be given.
fn effect_from(a: &FaultArgs) -> Result<Effect> {
    let reason = |default: &str| a.reason.clone().unwrap_or_else(|| default.to_string());
    let mut asked = Vec::new();
    if let Some(code) = &a.error {
        let status = a.http_status.unwrap_or_else(|| default_status(code));
        asked.push(Effect::Error {
            code: code.clone(),
            status,
        });
    } else if let Some(status) = a.http_status {
        asked.push(Effect::Status { status });
    }
    for (on, effect) in [
        (a.drop_connection, Effect::Drop),
        (a.lose_response, Effect::LoseResponse),
        (
            a.launch_fails,
            Effect::LaunchFails {
                reason: reason(DEFAULT_LAUNCH_FAILURE),
            },
        ),
        (
            a.start_fails,
            Effect::StartFails {
                reason: reason(DEFAULT_START_FAILURE),
            },
        ),
        (a.volume_fails, Effect::VolumeFails),
    ] {
        if on {
            asked.push(effect);
        }
    }
    if asked.len() != 1 {
        bail!(
            "say what the fault does (one of): --error CODE [--http-status N], --http-status N, --drop-connection, --lose-response, --launch-fails [--reason CODE], --start-fails [--reason CODE], --volume-fails"
        );
    }
    let effect = asked.remove(0);
    if a.reason.is_some()
        && !matches!(
            effect,
            Effect::LaunchFails { .. } | Effect::StartFails { .. }
        )
    {
        bail!("--reason goes with --launch-fails or --start-fails");
    }
    if let Some(only) = effect.only_for()
        && a.action != only
    {
        bail!("this fault is for --action {only}, not {}", a.action);
    }
    Ok(effect)
}

fn fault_from(a: FaultArgs) -> Result<Fault> {
    let effect = effect_from(&a)?;
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

fn hooks(paths: &Paths, command: HooksCmd) -> Result<()> {
    match command {
        HooksCmd::Add {
            action,
            tag,
            kill,
            hold,
            max_secs,
            times,
        } => {
            let then = match (kill, hold) {
                (Some(pid), false) => Then::Kill { pid },
                (None, true) => Then::Hold { max_secs },
                _ => bail!("say what the hook does: --kill PID or --hold"),
            };
            let (key, value) = match tag.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (tag.as_str(), None),
            };
            let mut hook = Hook::on_tag(&action, key, value, then);
            hook.times = times;
            let v = ctl(paths, Request::HooksAdd { hook })?;
            println!("{}", v["id"]);
        }
        HooksCmd::List { json } => {
            let v = ctl(paths, Request::HooksList)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let hooks: Vec<Hook> = serde_json::from_value(v)?;
            if hooks.is_empty() {
                println!("no hooks");
            }
            for h in hooks {
                println!(
                    "{}: {} tag {}={}: {:?}, {} left",
                    h.id,
                    h.action,
                    h.tag_key,
                    h.tag_value.as_deref().unwrap_or("*"),
                    h.then,
                    h.times
                );
                for f in h.fired {
                    println!(
                        "    fired at {} ms on {} ({}): {}",
                        f.at_ms,
                        f.resources.join(" "),
                        f.value.as_deref().unwrap_or("no value"),
                        f.outcome
                    );
                }
            }
        }
        HooksCmd::Release { id } => {
            let v = ctl(paths, Request::HooksRelease { id })?;
            println!("{} released", v["released"]);
        }
        HooksCmd::Clear => {
            ctl(paths, Request::HooksClear)?;
        }
    }
    Ok(())
}

fn ctl(paths: &Paths, req: Request) -> Result<serde_json::Value> {
    control::call(&paths.control_socket(), &req, Duration::from_secs(30))
}

fn print_region(r: &RegionStatus) -> Result<()> {
    let s = &r.settings;
    println!(
        "speed factor {} (a modelled 20 s lasts {:.2} s), consistency rate {}, lingering rate {}",
        s.speed,
        20.0 * s.speed,
        s.consistency_rate,
        s.lingering_rate
    );
    let counters = serde_json::to_value(&r.counters)?;
    for (name, n) in counters.as_object().into_iter().flatten() {
        println!("{:>8}  {name}", n.as_u64().unwrap_or(0));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = match Paths::try_from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("redisctl-sandbox: {e:#}");
            return ExitCode::from(1);
        }
    };
    let result: Result<bool> = (|| {
        match cli.command {
            Cmd::Up {
                install_prereqs,
                speed,
            } => lifecycle::up(&paths, install_prereqs, lifecycle::speed_asked(speed)?)?,
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
            Cmd::Hooks { command } => hooks(&paths, command)?,
            Cmd::Region {
                speed,
                consistency_rate,
                lingering_rate,
                json,
            } => {
                let change = RegionChange {
                    speed,
                    consistency_rate,
                    lingering_rate,
                };
                let v = ctl(&paths, Request::Region { change })?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print_region(&serde_json::from_value(v)?)?;
                }
            }
            Cmd::Seed { key_name, json } => {
                let v = ctl(&paths, Request::Seed { key_name })?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    for id in v["made"].as_array().into_iter().flatten() {
                        println!("{}", id.as_str().unwrap_or_default());
                    }
                }
            }
            Cmd::Front { speed } => {
                let settings = RegionSettings::default().with(&RegionChange {
                    speed: Some(speed),
                    ..Default::default()
                })?;
                front::daemon(paths.clone(), settings)?
            }
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
