//! Migrating an etcd backup (`stet::migrate`): the input is an etcd bbolt database file. Reading
//! its pages and rows must never panic or loop; a file that imports must load as a state or be
//! refused, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stet::engine::Engine;
use stet::migrate;
use stet::state::StateMachine;
use stet_fuzz::MIN_TTL_SECONDS;

fuzz_target!(|data: &[u8]| {
    let mut engine = Engine::in_memory(1 << 20).expect("an engine in memory");
    if migrate::import(data, &mut engine, |_| {}).is_ok() && engine.start_new_cluster(7).is_ok() {
        let _ = StateMachine::from_engine(engine, MIN_TTL_SECONDS);
    }
});
