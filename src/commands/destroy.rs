use std::path::Path;

use super::{Error, Nodes, confirm, exit, interrupted, load_spec, observe};
use crate::cli::DestroyArgs;
use crate::exec;
use crate::plan;
use crate::render::{self, Shell, Style};

pub async fn run(config: &Path, args: &DestroyArgs, shell: &Shell) -> Result<u8, Error> {
    let loaded = load_spec(config, shell)?;
    let spec = &loaded.spec;
    let world = observe(spec, Nodes::Skip).await?;
    let observed = &world.observed;
    let p = plan::plan_destroy(spec, observed);
    if p.is_empty() {
        shell.out(&format!(
            "Nothing to destroy: nothing in {} is tagged redisctl:cluster={}.\n",
            spec.cluster.region, spec.cluster.name
        ));
        return Ok(exit::OK);
    }
    shell.out(&render::plan::human(&p, shell.color_out()));
    confirm(
        shell,
        args.yes,
        &format!(
            "Do you really want to destroy cluster {} and all its data?",
            spec.cluster.name
        ),
    )?;
    shell.err("\n");
    let progress = render::progress::Lines { shell: *shell };
    let report = exec::apply(&world.ctx, &p, 8, &progress, interrupted()).await?;
    // Prove it: nothing tagged for the cluster is left.
    let after = observe(spec, Nodes::Skip).await?.observed;
    let left = after.leftovers();
    if !left.is_empty() {
        return Err(Error::Refused(format!(
            "destroy finished but these are still tagged redisctl:cluster={}: {}; run destroy again",
            spec.cluster.name,
            left.join(", ")
        )));
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
