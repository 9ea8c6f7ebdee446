use std::path::Path;

use super::{Error, Nodes, confirm, error_record, exit, interrupted, load_spec, observe};
use crate::cli::ApplyArgs;
use crate::exec;
use crate::plan::{self, Plan, fingerprint, saved::SavedPlan};
use crate::render::progress::{ProgressDisplay, Mode};
use crate::render::{self, Shell, Style};

pub async fn run(config: &Path, args: &ApplyArgs, shell: &Shell) -> Result<u8, Error> {
    if args.json && !args.yes && args.plan.is_none() {
        return Err(Error::Refused(
            "--json shows no prompt: pass --yes, or apply a saved plan file".into(),
        ));
    }
    with_display(shell, args.json, async |display| {
        apply(config, args, shell, display).await
    })
    .await
}

/// Runs `f` with the progress display for apply and destroy; an error ends a JSON stream with
/// its `error` record, and the live region is cleared before anything else is printed.
pub(super) async fn with_display(
    shell: &Shell,
    json: bool,
    f: impl AsyncFnOnce(&ProgressDisplay) -> Result<u8, Error>,
) -> Result<u8, Error> {
    let mut display = ProgressDisplay::new(shell, Mode::choose(json));
    let result = f(&display).await;
    if let Err(e) = &result {
        display.record("error", error_record(e));
    }
    display.finish();
    result
}

async fn apply(
    config: &Path,
    args: &ApplyArgs,
    shell: &Shell,
    display: &ProgressDisplay,
) -> Result<u8, Error> {
    let json = display.mode() == Mode::Json;
    // The plan in words on stdout, or as the first record of the JSON stream.
    let show = |p: &Plan| {
        if json {
            display.record(
                "plan",
                serde_json::json!({ "plan": render::plan::json_value(p) }),
            );
        } else {
            shell.out(&render::plan::human(p, shell.color_out()));
        }
    };
    let loaded = load_spec(config, shell)?;
    let spec = &loaded.spec;
    let _lock = crate::state_dir::lock(&spec.cluster.state_dir, "apply").map_err(Error::Refused)?;
    let world = observe(spec, Nodes::Wait).await?;
    let observed = &world.observed;
    let mut plan: Plan = match &args.plan {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| Error::PlanFile {
                action: "read",
                path: file.clone(),
                source: Box::new(e),
            })?;
            let saved = SavedPlan::from_json(&text).map_err(|e| Error::PlanFile {
                action: "read",
                path: file.clone(),
                source: Box::new(e),
            })?;
            if let Some(why) = saved.staleness(&fingerprint::of(spec, observed)) {
                return Err(Error::Refused(format!(
                    "saved plan {} is stale: {why}; nothing was changed. Run `redisctl plan --out {}` again",
                    file.display(),
                    file.display()
                )));
            }
            if saved.plan.cluster != spec.cluster.name {
                return Err(Error::Refused(format!(
                    "saved plan {} is for cluster {}, not {}",
                    file.display(),
                    saved.plan.cluster,
                    spec.cluster.name
                )));
            }
            show(&saved.plan);
            saved.plan
        }
        None => {
            let p = plan::plan(spec, observed);
            show(&p);
            p
        }
    };
    if plan.blockers().next().is_some() {
        return Err(Error::Refused(
            "the plan has blockers (above); nothing was changed".into(),
        ));
    }
    if plan.is_empty() && !plan.unobserved.is_empty() {
        return Err(Error::Refused(format!(
            "nothing to apply that can be seen, but {} could not be observed over SSH, so the cluster is not proven to match the spec; see docs/runbook.md (\"an unreachable node\")",
            plan.unobserved.join(", ")
        )));
    }
    if plan.is_empty() {
        display.record(
            "apply_complete",
            serde_json::json!({"changes": false, "summary": plan.summary(), "elapsed_s": 0.0, "phases": []}),
        );
        return Ok(exit::OK);
    }
    let destroying: Vec<&str> = plan.destroys_data().map(|s| s.address.as_str()).collect();
    if !destroying.is_empty() && !args.allow_replace {
        return Err(Error::Refused(format!(
            "the plan destroys data on {}; nothing was changed. Re-run with --allow-replace if that is intended",
            destroying.join(", ")
        )));
    }
    if args.keep_old_volumes {
        for op in plan.steps.iter_mut().flat_map(|s| s.ops.iter_mut()) {
            if let plan::Op::SwapRootVolume(swap) = op {
                swap.keep_old = true;
            }
        }
    }
    if args.plan.is_none() {
        confirm(shell, args.yes, "Do you want to perform these actions?")?;
    }
    if !json {
        shell.err("\n");
    }
    let report = exec::apply(
        &world.ctx,
        &plan,
        args.parallelism.into(),
        display,
        interrupted(),
    )
    .await?;
    let s = plan.summary();
    // Prove convergence: planning again must find nothing to do.
    // (Ctrl-C still stops it: the executor's signal listener is gone.)
    let after = tokio::select! {
        r = observe(spec, Nodes::Look) => r?.observed,
        _ = interrupted() => return Err(Error::Refused(
            "interrupted during the final check: the steps are done; run `redisctl plan` to see whether the cluster matches the spec".into(),
        )),
    };
    let again = plan::plan(spec, &after);
    if !again.unobserved.is_empty() {
        return Err(Error::Refused(format!(
            "apply finished, but {} could not be observed over SSH afterwards, so it is not proven to match the spec; see `redisctl plan` and docs/runbook.md (\"an unreachable node\")",
            again.unobserved.join(", ")
        )));
    }
    if !again.is_empty() {
        return Err(Error::Refused(format!(
            "apply finished, but planning again still finds {} step(s) to do ({}); run `redisctl plan` to see why, then apply again",
            again.steps.len(),
            again
                .steps
                .iter()
                .map(|s| s.address.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if json {
        display.record(
            "apply_complete",
            serde_json::json!({
                "changes": true,
                "summary": s,
                "elapsed_s": report.elapsed.as_secs_f64(),
                "phases": phase_records(&plan, &report),
            }),
        );
        return Ok(exit::OK);
    }
    shell.out(&format!(
        "\n{} {} added, {} changed, {} destroyed in {:.1}s.\n",
        shell.out_style(Style::Ok, "Apply complete!"),
        s.add,
        s.change,
        s.destroy,
        report.elapsed.as_secs_f64()
    ));
    for (phase, took) in &report.phases {
        let steps = plan.steps.iter().filter(|s| s.phase == *phase).count();
        shell.out(&format!(
            "  phase {} {:<15} {steps:>3} step{} {:>7.1}s\n",
            phase.number(),
            phase.title(),
            if steps == 1 { " " } else { "s" },
            took.as_secs_f64()
        ));
    }
    Ok(exit::OK)
}

/// Each phase's step count and duration, for the closing JSON record.
pub(super) fn phase_records(plan: &Plan, report: &exec::Report) -> Vec<serde_json::Value> {
    report
        .phases
        .iter()
        .map(|(phase, took)| {
            serde_json::json!({
                "phase": phase.number(),
                "title": phase.title(),
                "steps": plan.steps.iter().filter(|s| s.phase == *phase).count(),
                "elapsed_s": took.as_secs_f64(),
            })
        })
        .collect()
}
