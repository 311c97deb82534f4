//! A follower staging a state another member sends in chunks (`Export` → `Engine::stage_chunk`
//! → `Engine::install_staged`): the sender's engine from arbitrary rows (see `engine_from_rows`),
//! cut into chunks of a size the input picks, one byte of one chunk possibly damaged, or raw
//! input bytes staged as a chunk. A malformed or damaged chunk must be refused without staging
//! anything, never panic; what was installed must load as a state or be refused, never panic;
//! an undamaged transfer must install.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stet::engine::{Engine, Export};
use stet::state::StateMachine;
use stet_fuzz::{engine_from_rows, MIN_TTL_SECONDS};

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let mut receiver = Engine::in_memory(1 << 20).expect("an engine in memory");
    if control & 0x80 != 0 {
        let _ = receiver.stage_chunk(data);
        return;
    }
    let source = engine_from_rows(data);
    let applied = source.applied();
    let mut export = Export::new(std::sync::Arc::new(
        source.view().expect("a view of an engine in memory"),
    ));
    let max_bytes = 1 + usize::from(control & 0x3f) * 16;
    let damage = control & 0x40 != 0;
    let mut refused = false;
    let mut first = true;
    while let Some(mut chunk) = export.next_chunk(max_bytes).expect("an export in memory") {
        if damage && first {
            let at = data.len() % chunk.len();
            chunk[at] ^= 0x01;
        }
        first = false;
        refused |= receiver.stage_chunk(&chunk).is_err();
    }
    let installed = receiver.install_staged(applied).is_ok();
    assert!(
        installed || refused || applied.index == 0 && applied.term == 0,
        "an undamaged transfer at {applied:?} must install"
    );
    if installed {
        let _ = StateMachine::from_engine(receiver, MIN_TTL_SECONDS);
    }
});
