//! Generated protobuf types: etcd's v3 wire messages (`mvccpb`, `etcdserverpb`) and stet's own
//! durable messages (`stetpb`). Decoding untrusted bytes with `prost::Message::decode` returns an
//! error and never panics.

#![allow(clippy::all, missing_docs)]

/// etcd's key-value and event messages.
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// etcd's v3 API request and response messages.
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// stet's raft entry payloads and snapshot contents.
pub mod stetpb {
    include!(concat!(env!("OUT_DIR"), "/stetpb.rs"));
}

/// What members say to each other besides raft messages: handshake, membership query, forwarded
/// requests.
pub mod stetpeerpb {
    include!(concat!(env!("OUT_DIR"), "/stetpeerpb.rs"));
}
