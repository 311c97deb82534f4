//! Loading a member's applied state from its storage engine at a restart, from arbitrary rows in
//! the engine's tables (see `engine_from_rows`). Loading must refuse what a member could not have
//! written, never panic; a loaded state must serve reads, hash, take writes, commit them and
//! snapshot again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stet::proto::etcdserverpb as pb;
use stet::proto::stetpb::internal_request::Request;
use stet::state::StateMachine;
use stet::time::Instant;
use stet_fuzz::{assert_snapshot_round_trips, engine_from_rows, MIN_TTL_SECONDS};

fuzz_target!(|data: &[u8]| {
    let engine = engine_from_rows(data);
    let Ok((mut state, _, _)) = StateMachine::from_engine(engine, MIN_TTL_SECONDS) else {
        return;
    };
    let all = pb::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let _ = state.kv.range(&all);
    let _ = state.kv.hash_kv(0);
    let _ = state
        .kv
        .events_since(state.kv.compact_revision(), &[0], &[0]);
    if state.kv.storage_failure().is_some() {
        return;
    }
    assert_snapshot_round_trips(&state);
    let put = Request::Put(pb::PutRequest {
        key: b"fuzz".to_vec(),
        value: b"v".to_vec(),
        prev_kv: true,
        ..Default::default()
    });
    let _ = state.apply_internal(put, Instant::from_micros(1_000_000), true);
    if state.kv.storage_failure().is_none() {
        state.commit(None, false).expect("a loaded state commits");
        let _ = state.kv.range(&all);
    }
});
