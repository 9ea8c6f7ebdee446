//! Planner scenarios: a spec and an observed state in, the rendered plan out, compared with a
//! reviewed snapshot. Every scenario that applies a plan applies it to a simulated region
//! ([`sim`]) and checks that planning again makes no changes.
//!
//! To add a scenario for a new plan step:
//! - the world it starts from goes in [`fixtures`] if other scenarios can use it (a spec
//!   written as an edit of cluster.toml.example, an observed state, an image; the clock is
//!   `fixtures::NOW`), else in the scenario itself;
//! - a new `Op` must be carried out by the simulator: `Sim::op` (sim.rs) matches every `Op`
//!   without a wildcard, so the compiler names the operation until it changes `Observed` as
//!   the executor and the next observation would;
//! - the scenario goes in the file of its phase or family below, and a scenario that applies a
//!   plan ends with `apply_and_converge`, which asserts that planning again is empty;
//! - `snapshot(name, &render::plan::human(&p, false))` compares what users read with
//!   tests/scenarios/<name>.txt: `UPDATE_SNAPSHOTS=1 cargo test --test plan_scenarios` writes
//!   them, then review `git diff tests/scenarios/` before committing.

mod fixtures;
mod sim;

mod certificates;
mod create;
mod destroy;
mod drift;
mod egress;
mod encryption;
mod formation;
mod instances;
mod nodes;
mod topology;

/// Compare a rendered plan with its reviewed snapshot, tests/scenarios/`name`.txt.
fn snapshot(name: &str, actual: &str) {
    redisctl::snapshot::assert_snapshot("tests/scenarios", &format!("{name}.txt"), actual);
}
