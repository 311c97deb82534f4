//! Applying committed entry data: input is `[len: u16 LE][first request][second request]`, each an
//! `InternalRequest` protobuf, applied in turn to a populated state machine. Any committed bytes
//! must apply without panicking, and the resulting state must snapshot and restore.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use stet::auth::AuthInfo;
use stet::proto::stetpb::InternalRequest;
use stet::time::Instant;
use stet_fuzz::{assert_snapshot_round_trips, populated_state, split_prefixed};

fuzz_target!(|data: &[u8]| {
    let is_leader = data.first().is_some_and(|b| b & 1 == 1);
    let (first, second) = split_prefixed(data.get(1..).unwrap_or_default());
    let mut state = populated_state();
    let mut now = Instant::from_micros(2_000_000);
    let mut applied_any = false;
    for bytes in [first, second] {
        let Ok(request) = InternalRequest::decode(bytes) else {
            continue;
        };
        let Some(body) = request.request else {
            continue;
        };
        let revision_before = state.kv.current_revision();
        let requester = request.requester.map(AuthInfo::from);
        // As a node applies them: a member's own commands (origin 0) are not checked.
        let applied = if request.origin == 0 {
            state.apply_internal(body, now, is_leader)
        } else {
            state.apply(body, requester.as_ref(), now, is_leader)
        };
        assert!(applied.reply.is_some(), "every request gets an answer");
        let revision = state.kv.current_revision();
        assert!(revision >= revision_before, "the revision went backwards");
        if !applied.events.is_empty() {
            assert!(revision > revision_before, "events without a new revision");
        }
        now = now + std::time::Duration::from_secs(1);
        applied_any = true;
    }
    if applied_any {
        assert_snapshot_round_trips(&state);
    }
});
