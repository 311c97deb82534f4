//! The load generator behind the `stet-bench` binary. It speaks only etcd's v3 gRPC API, so it
//! measures stet and etcd the same way: `load` owns the connections and the request loops (N clients
//! over M connections, put or range), `summary` turns what they measured into throughput and latency
//! percentiles. A failed request is counted by kind, never a panic.

pub mod load;
pub mod summary;

pub use load::{connect, fill, run, BenchError, Op, Plan, Workload};
pub use summary::{ErrorCounts, Report, Summary};
