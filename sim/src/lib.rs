//! stet's deterministic simulator: whole clusters of the real core (`stet::node::Node`, the real WAL
//! and snapshot code on simulated disks) on madsim's deterministic scheduler, under partitions, loss,
//! duplication, crashes with lost or torn unsynced writes, pauses and skewed clocks, with oracles for
//! raft safety, liveness, durability and linearizability. A seed fixes a run; a failure replays from
//! its seed.
//!
//! Code map: `world` (shared state of a run), `member` (a member process: node + storage driver),
//! `client` (workloads and history recording), `nemesis` (faults), `clock` (per-member clocks),
//! `disk` (disks that survive crashes), `net` (what travels between nodes), `membership`
//! (membership faults and force-new-cluster recovery), `observer` (raft safety), `checker`
//! (linearizability), `watcher` (watch clients and the watch oracle), `leases` (lease clients and
//! the lease oracle), `scenario` (scenarios and the run of one seed), `wait` (deadlines on madsim's
//! clock that register one timer).

pub mod checker;
pub mod client;
pub mod clock;
pub mod disk;
pub mod durability;
pub mod env;
pub mod leases;
pub mod member;
pub mod membership;
pub mod nemesis;
pub mod net;
pub mod observer;
pub mod report;
pub mod revisions;
pub mod rich;
pub mod rpc;
pub mod scenario;
pub mod wait;
pub mod watcher;
pub mod world;
