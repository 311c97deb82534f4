//! Restoring the state machine from snapshot bytes (what a follower installs from its leader or
//! reads from disk). A restored state must serve reads and writes, hash, and snapshot again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stet::proto::etcdserverpb as pb;
use stet::proto::stetpb::internal_request::Request;
use stet::state::StateMachine;
use stet::time::Instant;
use stet_fuzz::{assert_snapshot_round_trips, MIN_TTL_SECONDS};

fuzz_target!(|data: &[u8]| {
    let Ok(mut state) = StateMachine::from_snapshot_bytes(data, MIN_TTL_SECONDS) else {
        return;
    };
    assert_snapshot_round_trips(&state);
    let all = pb::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let _ = state.kv.range(&all);
    let _ = state.kv.hash_kv(0);
    let _ = state.kv.hash_kv(state.kv.compact_revision());
    let _ = state
        .kv
        .events_since(state.kv.compact_revision() + 1, &[0], &[0]);
    let now = Instant::from_micros(5_000_000);
    let leases = state.lessor.leases();
    let lease = leases.first().copied().unwrap_or(0);
    let put = Request::Put(pb::PutRequest {
        key: b"fuzz".to_vec(),
        value: b"v".to_vec(),
        lease,
        prev_kv: true,
        ..Default::default()
    });
    // Applied as a member's own commands: a restored auth store that is enabled checks no one.
    let _ = state.apply_internal(put, now, true);
    for id in leases.into_iter().take(4) {
        let revoke = Request::LeaseRevoke(pb::LeaseRevokeRequest { id });
        let _ = state.apply_internal(revoke, now, true);
    }
    let compact = Request::Compaction(pb::CompactionRequest {
        revision: state.kv.current_revision(),
        ..Default::default()
    });
    let _ = state.apply_internal(compact, now, true);
    let _ = state.kv.range(&all);
    assert_snapshot_round_trips(&state);
});
