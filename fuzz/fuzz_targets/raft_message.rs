//! Peer messages from the network stepped into a node (layout: `stet_fuzz::NodeHarness`). A node
//! must survive any bytes a peer sends: bad messages are dropped, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protobuf::Message as _;
use raft::eraftpb::Message;
use stet_fuzz::{split_prefixed, NodeHarness};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut messages = Vec::new();
    while !rest.is_empty() && messages.len() < 8 {
        let (part, tail) = split_prefixed(rest);
        if let Ok(message) = Message::parse_from_bytes(part) {
            messages.push(message);
        }
        if tail.len() == rest.len() {
            break;
        }
        rest = tail;
    }
    if messages.is_empty() {
        return;
    }
    let mut harness = NodeHarness::new(flags);
    for message in messages {
        harness.step(message);
    }
    harness.advance(std::time::Duration::from_secs(2));
});
