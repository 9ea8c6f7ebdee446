use std::path::Path;

use super::{Error, Nodes, confirm, exit, interrupted, load_spec, observe};
use crate::cli::DestroyArgs;
use crate::exec;
use crate::plan;
use crate::render::progress::{ProgressDisplay, Mode};
use crate::render::{self, Shell, Style};

pub async fn run(config: &Path, args: &DestroyArgs, shell: &Shell) -> Result<u8, Error> {
    if args.json && !args.yes {
        return Err(Error::Refused("--json shows no prompt: pass --yes".into()));
    }
    super::apply::with_display(shell, args.json, async |display| {
        destroy(config, args, shell, display).await
    })
    .await
}

async fn destroy(
    config: &Path,
    args: &DestroyArgs,
    shell: &Shell,
    display: &ProgressDisplay,
) -> Result<u8, Error> {
    let json = display.mode() == Mode::Json;
    let loaded = load_spec(config, shell)?;
    let spec = &loaded.spec;
    let _lock =
        crate::state_dir::lock(&spec.cluster.state_dir, "destroy").map_err(Error::Refused)?;
    let world = observe(spec, Nodes::Skip).await?;
    let observed = &world.observed;
    let p = plan::plan_destroy(spec, observed);
    if json {
        display.record(
            "plan",
            serde_json::json!({ "plan": render::plan::json_value(&p) }),
        );
    }
    if p.is_empty() {
        if json {
            display.record(
                "destroy_complete",
                serde_json::json!({"changes": false, "destroyed": 0, "elapsed_s": 0.0, "phases": []}),
            );
        } else {
            shell.out(&format!(
                "Nothing to destroy: nothing in {} is tagged redisctl:cluster={}.\n",
                spec.cluster.region, spec.cluster.name
            ));
        }
        return Ok(exit::OK);
    }
    if !json {
        shell.out(&render::plan::human(&p, shell.color_out()));
    }
    confirm(
        shell,
        args.yes,
        &format!(
            "Do you really want to destroy cluster {} and all its data?",
            spec.cluster.name
        ),
    )?;
    if !json {
        shell.err("\n");
    }
    let report = exec::apply(&world.ctx, &p, 8, display, interrupted()).await?;
    // Prove it: nothing tagged for the cluster is left.
    let after = tokio::select! {
        r = observe(spec, Nodes::Skip) => r?.observed,
        _ = interrupted() => return Err(Error::Refused(
            "interrupted during the final check: the steps are done; run `redisctl destroy` again to confirm nothing is left".into(),
        )),
    };
    let left = after.leftovers();
    if !left.is_empty() {
        return Err(Error::Refused(format!(
            "destroy finished but these are still tagged redisctl:cluster={}: {}; run destroy again",
            spec.cluster.name,
            left.join(", ")
        )));
    }
    if json {
        display.record(
            "destroy_complete",
            serde_json::json!({
                "changes": true,
                "destroyed": p.steps.len(),
                "elapsed_s": report.elapsed.as_secs_f64(),
                "phases": super::apply::phase_records(&p, &report),
            }),
        );
        return Ok(exit::OK);
    }
    shell.out(&format!(
        "\n{} {} resources destroyed in {:.1}s; nothing tagged redisctl:cluster={} is left.\nLocal secrets in {} were kept; delete them when you no longer need them.\n",
        shell.out_style(Style::Ok, "Destroy complete!"),
        p.steps.len(),
        report.elapsed.as_secs_f64(),
        spec.cluster.name,
        spec.cluster.state_dir.display()
    ));
    Ok(exit::OK)
}
