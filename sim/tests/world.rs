//! The world's contract with the core: every start of a member gets a node seed of its own, so a
//! restarted member draws a new incarnation and new lease IDs (regression: watch seed 768 reissued
//! a revoked lease's ID after a crash).

use stet_sim::world::{Settings, World};

#[test]
fn each_start_of_a_member_gets_its_own_node_seed() {
    // A world reads madsim's clock, so it lives inside a madsim runtime.
    madsim::runtime::Runtime::new().block_on(async {
        let world = World::new(Settings::new(768), 5);
        let (three, four) = (world.initial[2].id, world.initial[3].id);
        let first = world.next_seed(three);
        let second = world.next_seed(three);
        let other = world.next_seed(four);
        assert_ne!(first, second);
        assert_ne!(first, other);
        assert_ne!(second, other);
    });
}
