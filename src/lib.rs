//! stet: a replicated, strongly consistent key-value store with etcd's v3 API.
//!
//! Everything outside [`server`] is the sans-IO core: it reads no clock, opens no file or socket
//! and spawns nothing. Time, peer messages and
//! disk completions come in as inputs to the node; what to persist, send and answer comes out as
//! outputs. See `ARCHITECTURE.md` for the map.

pub mod alarm;
pub mod auth;
pub mod backup;
pub mod disk;
pub mod engine;
pub mod kv;
pub mod lease;
pub mod member;
pub mod migrate;
pub mod node;
pub mod peer_wire;
pub mod proto;
pub mod raftlog;
pub mod request;
pub mod server;
pub mod snap;
pub mod state;
pub mod storage;
pub mod time;
pub mod types;
pub mod wal;
pub mod watch;
