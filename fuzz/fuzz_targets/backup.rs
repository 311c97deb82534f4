//! Restoring a backup (`stet::backup`): the input, after a control byte, is either a whole backup
//! file (its SHA-256 must match, so nearly all inputs stop there), or — the usual case — the
//! content of one, which the target pads and hashes itself so that the records, the metadata and
//! the rows are what gets fuzzed. Parsing must never panic; a backup that parses must be
//! restored into an engine or refused, and a restored engine must load as a state or be refused,
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use stet::backup;
use stet::engine::Engine;
use stet::state::StateMachine;
use stet_fuzz::MIN_TTL_SECONDS;

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let sealed;
    let bytes = if control & 1 == 1 {
        let _ = backup::decode(data);
        data
    } else {
        let mut content = data.to_vec();
        let padded = content.len().div_ceil(backup::BLOCK).max(1) * backup::BLOCK;
        content.resize(padded, 0);
        let hash = Sha256::digest(&content);
        content.extend_from_slice(&hash);
        sealed = content;
        &sealed
    };
    let Ok(parsed) = backup::parse(bytes) else {
        return;
    };
    let mut engine = Engine::in_memory(1 << 20).expect("an engine in memory");
    if parsed.restore_into(&mut engine).is_ok() {
        let _ = StateMachine::from_engine(engine, MIN_TTL_SECONDS);
    }
});
