use std::path::Path;

use super::{Error, exit, load_with_state};
use crate::cli::AdoptArgs;
use crate::render::{self, Shell};

/// `redisctl adopt --vpc ID|NAME`: the report, the plan of the first apply, the question, then
/// the tags (one CreateTags per resource). The state lock is held throughout: the adoption
/// and an apply must not interleave.
pub async fn run(config: &Path, args: &AdoptArgs, shell: &Shell) -> Result<u8, Error> {
    let (loaded, _state) = load_with_state(config, shell, crate::state::Access::Write("adopt"))?;
    let spec = &loaded.spec;
    // The local lock too: an apply or destroy must not run while resources become the
    // cluster's.
    let _lock = crate::state_dir::lock(&spec.cluster.state_dir, "adopt").map_err(Error::Refused)?;
    let (world, adoption) = crate::observe::observe_adopting(spec, &args.vpc).await?;
    shell.out(&render::adopt::report(
        &spec.cluster.name,
        &args.vpc,
        &adoption,
    ));
    let Some(world) = world else {
        return Err(Error::Refused(format!(
            "{} reason(s) above stop the adoption; write the spec lines they name and run adopt again",
            adoption.problems.len()
        )));
    };
    let plan = crate::plan::plan(spec, &world.observed);
    shell.out("\nOnce they are tagged, the first `redisctl apply` will do this:\n\n");
    render::plan::show(shell, &plan, false);
    if plan.blockers().next().is_some() {
        return Err(Error::Refused(
            "the first apply would be blocked (see the blockers above): nothing was tagged; resolve them and run adopt again".into(),
        ));
    }
    render::console::confirm(
        shell,
        args.yes,
        &format!(
            "Tag these {} resources as cluster {}'s?",
            adoption.claims.len(),
            spec.cluster.name
        ),
    )?;
    // The VPC last: an adoption interrupted before it is found again by the same --vpc (its
    // Name is still the one given).
    let (vpc, rest): (Vec<_>, Vec<_>) = adoption.claims.iter().partition(|c| c.address == "vpc");
    for c in rest.into_iter().chain(vpc) {
        world
            .aws
            .retag(&c.id, &c.tags, &[])
            .await
            .map_err(|e| Error::Refused(format!(
                "tagging {} ({}) failed: {e}. The resources tagged before it are the cluster's now: run adopt again to tag the rest",
                c.address, c.id
            )))?;
    }
    shell.out(&format!(
        "\nAdopted: {} resources tagged as cluster {}'s. Run `redisctl plan` to review, then `redisctl apply`.\n",
        adoption.claims.len(),
        spec.cluster.name
    ));
    Ok(exit::OK)
}
