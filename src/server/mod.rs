//! The member runtime: everything between the sans-IO `Node` and the machine. `run` starts one
//! member (`start`: open or create the data directory, start the node), runs its `driver` (the
//! loop that owns the node: group commit, own snapshot files, watch delivery, attribute
//! publishing), the peer transport (`peer`: raft messages, membership queries, forwarding) and
//! etcd's gRPC services (`grpc`, with `route` sending leader-only requests to the leader), until
//! a signal, removal or a fatal error. The machine itself — clock, disk, fsync — comes from an
//! `env::Environment`: the real one in production, a simulated one in `sim/`, which runs this
//! same code under `--cfg madsim`. The HTTP endpoints, the `:authority` rewriting listener and
//! the client connections' write batching and stream polling (`http`, `v2_members`,
//! `h2_authority`, `write_batch`, `conn_streams`, served from `listen`) are the only client-facing code the simulator does not run.

pub mod fs_disk;

#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod blocking;
#[cfg(feature = "server")]
pub mod config;
#[cfg(all(feature = "server", not(madsim)))]
pub mod conn_streams;
#[cfg(all(feature = "server", not(madsim)))]
pub mod dir_lock;
#[cfg(feature = "server")]
pub mod disk_space;
#[cfg(all(feature = "server", not(madsim)))]
pub mod doctor;
#[cfg(feature = "server")]
pub mod driver;
#[cfg(feature = "server")]
pub mod env;
#[cfg(feature = "server")]
pub mod forced_identity;
#[cfg(feature = "server")]
pub mod go_duration;
#[cfg(feature = "server")]
pub mod grpc;
#[cfg(feature = "server")]
mod grpc_auth;
#[cfg(all(feature = "server", not(madsim)))]
mod grpc_metrics;
#[cfg(all(feature = "server", not(madsim)))]
pub mod h2_authority;
#[cfg(feature = "server")]
pub mod handle;
#[cfg(feature = "server")]
pub mod heap;
#[cfg(all(feature = "server", not(madsim)))]
pub mod http;
#[cfg(feature = "server")]
mod join;
#[cfg(feature = "server")]
mod listen;
#[cfg(feature = "server")]
pub mod log;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod notified;
#[cfg(feature = "server")]
pub mod peer;
#[cfg(feature = "server")]
pub mod process_metrics;
#[cfg(feature = "server")]
pub mod range_stream;
#[cfg(feature = "server")]
pub mod route;
#[cfg(feature = "server")]
mod run;
#[cfg(feature = "server")]
mod start;
#[cfg(feature = "server")]
pub mod status;
#[cfg(feature = "server")]
pub mod stop;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(all(feature = "server", not(madsim)))]
mod v2_keys;
#[cfg(all(feature = "server", not(madsim)))]
pub mod v2_members;
#[cfg(feature = "server")]
pub mod version;
#[cfg(feature = "server")]
pub mod watch_fragment;
#[cfg(all(feature = "server", not(madsim)))]
pub mod write_batch;

#[cfg(all(feature = "server", not(madsim)))]
pub use run::{run, shutdown_signal};
#[cfg(feature = "server")]
pub use run::{run_in, ServerError};
