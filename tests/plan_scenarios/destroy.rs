//! destroy: everything the cluster owns, removed in reverse order.

use redisctl::plan;
use redisctl::render;

use crate::fixtures::example;
use crate::sim::{Sim, converged};
use crate::snapshot;

#[test]
fn destroy_removes_everything_in_reverse_order() {
    let spec = example();
    let o = converged(&spec);
    let p = plan::plan_destroy(&spec, &o);
    p.check_order().unwrap();
    snapshot("destroy", &render::plan::human(&p, false));
    let mut sim = Sim::new(&spec, o);
    sim.apply(&p);
    assert_eq!(sim.o.leftovers(), Vec::<String>::new());
    // Terminating an instance removed its root volume already (delete on termination).
    assert!(plan::plan_destroy(&spec, &sim.o).is_empty());
}
