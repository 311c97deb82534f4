//! The adapter: everything that does real IO. `fs_disk` is the real `Disk`; with the `server`
//! feature, `run` starts one member: it opens or creates its data directory, starts the node, and
//! serves etcd's v3 gRPC API and the HTTP endpoints on every client URL, until a signal, removal or
//! a fatal error.

pub mod fs_disk;

#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod driver;
#[cfg(feature = "server")]
pub mod grpc;
#[cfg(feature = "server")]
pub mod h2_authority;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod log;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod peer;
#[cfg(feature = "server")]
mod run;
#[cfg(feature = "server")]
pub mod v2_members;

#[cfg(feature = "server")]
pub use run::{run, shutdown_signal, ServerError};
