//! Generated protobuf types: etcd's v3 wire messages (`mvccpb`, `authpb`, `etcdserverpb`) and
//! stet's own durable messages (`stetpb`). Decoding untrusted bytes with `prost::Message::decode`
//! returns an error and never panics. Built with `--cfg madsim`, the gRPC services and clients are
//! madsim's simulated ones (see `build.rs`); the messages are the same.

#![allow(clippy::all, missing_docs)]

/// etcd's key-value and event messages.
pub mod mvccpb {
    #[cfg(not(madsim))]
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
    #[cfg(madsim)]
    include!(concat!(env!("OUT_DIR"), "/sim/mvccpb.rs"));
}

/// etcd's users, roles and key permissions.
pub mod authpb {
    #[cfg(not(madsim))]
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
    #[cfg(madsim)]
    include!(concat!(env!("OUT_DIR"), "/sim/authpb.rs"));
}

/// etcd's v3 API request and response messages.
pub mod etcdserverpb {
    #[cfg(not(madsim))]
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    #[cfg(madsim)]
    include!(concat!(env!("OUT_DIR"), "/sim/etcdserverpb.rs"));
}

/// stet's raft entry payloads and snapshot contents.
pub mod stetpb {
    #[cfg(not(madsim))]
    include!(concat!(env!("OUT_DIR"), "/stetpb.rs"));
    #[cfg(madsim)]
    include!(concat!(env!("OUT_DIR"), "/sim/stetpb.rs"));
}

/// What members say to each other besides raft messages: handshake, membership query, forwarded
/// requests.
pub mod stetpeerpb {
    #[cfg(not(madsim))]
    include!(concat!(env!("OUT_DIR"), "/stetpeerpb.rs"));
    #[cfg(madsim)]
    include!(concat!(env!("OUT_DIR"), "/sim/stetpeerpb.rs"));
}
