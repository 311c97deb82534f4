//! stet's deterministic simulator: whole clusters of the production server (`stet::server`, the
//! real WAL, snapshots, peer transport and gRPC services) on madsim's deterministic scheduler,
//! network and clocks, under partitions, loss, broken peer connections, crashes with lost or torn
//! unsynced writes, bit flips, pauses, skewed clocks and membership changes, with oracles for raft
//! safety, durability, liveness, linearizability, every request shape, watches and leases. A seed
//! fixes a run; a failure replays from its seed.
//!
//! Code map: `world` (shared state of a run; hosts, disks, clocks), `records` (what clients and
//! members leave for the oracles), `member` (a member process: the production server with real
//! flags), `env` (the simulated machine under it), `report` (what members tell the oracles),
//! `client`, `rpc`, `rich`, `watcher`, `leases` (clients over gRPC, and the watch and lease
//! oracles), `nemesis` (faults), `membership` (the operator: leader removal, churn,
//! force-new-cluster), `clock` (per-member clocks), `disk` (disks that survive crashes), `net`
//! (addresses), `observer` (raft safety), `durability` (a restart keeps what was acknowledged),
//! `checker` (linearizability), `revisions` (the model of every request shape), `scenario`
//! (scenarios and the run of one seed), `visualize` (a failing seed's history as an HTML page),
//! `wait` (deadlines on madsim's clock that register one timer).

/// The simulator allocates and frees small objects at a high rate (messages, futures, protobuf
/// buffers); mimalloc takes about a tenth off its CPU time next to glibc's allocator. It is the
/// allocator of every binary that links the simulator (`stet-sim` and its tests), as it is the
/// `stet` binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets the process's heap up for the simulator, once, before the first seed runs
/// (`scenario::run` calls it): mimalloc keeps the pages it freed instead of handing them back to
/// the system, and transparent huge pages are off. Each seed runs on a fresh thread; with
/// mimalloc's defaults the memory one seed freed went back to the system and the next seed
/// faulted it in again, each fresh huge page zeroed by the kernel (2 MiB a fault): page faults
/// took ~10 % of the CPU time (perf, `mixed` seeds 0..12); with both settings one thread's CPU
/// time for `mixed` seeds 0..20 fell 6 % (`BENCHMARKS.md`, session 32). The production server
/// sets its own (`stet::server::heap::configure`); a simulated member never touches these.
pub fn configure_heap() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        stet::server::heap::set_purge_delay(-1);
        stet::server::heap::disable_huge_pages();
    });
}

pub mod auth;
pub mod backup;
pub mod checker;
pub mod client;
pub mod clock;
pub mod disk;
pub mod durability;
pub mod env;
pub mod in_use;
pub mod leases;
pub mod member;
pub mod membership;
pub mod nemesis;
pub mod net;
pub mod observer;
pub mod prev_kv;
pub mod records;
pub mod report;
pub mod revisions;
pub mod rich;
pub mod rpc;
pub mod scenario;
pub mod visualize;
pub mod wait;
pub mod watcher;
pub mod world;
