//! The world of one simulation run: the settings every member and client share, each member's disk
//! and clock (which outlive the member's process), the observer, the client history and the trace.
//! madsim kills and restarts member processes; the world is what survives them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use stet::node::NodeConfig;
use stet::proto::etcdserverpb as pb;
use stet::storage::StorageLayout;
use stet::time::Instant;
use stet::types::{ClusterId, MemberId};
use stet::wal::WalOptions;

use crate::checker::Operation;
use crate::clock::ClockModel;
use crate::disk::SharedDisk;
use crate::leases::LeaseOp;
use crate::observer::Observer;
use crate::watcher::{KvEvents, WatchLog};

/// Locks a mutex, carrying on after a panic elsewhere (the run is failing anyway).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Settings of a run that members read when they (re)start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub snapshot_count: u64,
    pub catch_up_entries: u64,
    pub request_timeout: Duration,
    pub segment_size_bytes: u64,
    /// Range of simulated fsync latency.
    pub fsync_latency_us: (u64, u64),
    /// Probability that a member sends a raft message twice.
    pub duplicate_rate: f64,
    /// Self-test of the oracles: members answer linearizable reads from local state (a bug).
    pub unsafe_local_reads: bool,
    /// Self-test of the watch oracle: each member silently drops one watch response that carries
    /// events instead of routing it to its client (a bug the watch oracle must catch).
    pub drop_watch_event: bool,
    /// How often watchers created with `progress_notify` get a periodic progress response.
    pub watch_progress_interval: Duration,
}

impl Settings {
    pub fn new(seed: u64) -> Self {
        Settings {
            seed,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            snapshot_count: 32,
            catch_up_entries: 4,
            request_timeout: Duration::from_secs(3),
            segment_size_bytes: 64 * 1024,
            fsync_latency_us: (100, 2_000),
            duplicate_rate: 0.0,
            unsafe_local_reads: false,
            drop_watch_event: false,
            watch_progress_interval: Duration::from_secs(2),
        }
    }
}

/// What the world knows of a running member (for the nemesis and the final checks).
#[derive(Debug, Clone, Default)]
pub struct MemberStatus {
    pub running: bool,
    pub is_leader: bool,
    pub term: u64,
    pub applied_index: u64,
    pub revision: i64,
    pub removed: bool,
}

/// A moment inside a member at which the nemesis can ask for a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// A snapshot's file is durable but its WAL record is not written yet.
    SnapshotFile,
    /// The member just applied a compaction.
    Compaction,
    /// The member just applied a membership change.
    ConfChange,
}

/// The shared state of one run.
pub struct World {
    pub settings: Mutex<Settings>,
    pub cluster_id: ClusterId,
    pub initial: Vec<pb::Member>,
    pub disks: Mutex<BTreeMap<u64, SharedDisk>>,
    pub clocks: Mutex<BTreeMap<u64, ClockModel>>,
    pub status: Mutex<BTreeMap<u64, MemberStatus>>,
    pub observer: Mutex<Observer>,
    pub history: Mutex<Vec<Operation>>,
    pub trace: Mutex<Vec<String>>,
    /// Members that refused to start (a clean error on corrupt data is allowed, never wrong data).
    pub refused: Mutex<BTreeMap<u64, String>>,
    /// Members that left the run for good (removed, or lost with the majority): never restarted,
    /// never sent client requests.
    pub gone: Mutex<BTreeSet<u64>>,
    /// The member whose next start is a `--force-new-cluster` restart.
    pub force_new_cluster: Mutex<Option<u64>>,
    /// What the force-new-cluster recovery did, for the scoped checks (`membership`).
    pub recovery: Mutex<Option<crate::membership::Recovery>>,
    /// How many times each member's node was configured (started).
    pub starts: Mutex<BTreeMap<u64, u64>>,
    /// Every revision's events as members applied them (the watch oracle's authority).
    pub kv_events: Mutex<KvEvents>,
    /// What watching clients received, one log per logical watch.
    pub watch_logs: Mutex<Vec<WatchLog>>,
    /// The compact revision of the member's store when it took each watch create, by stream.
    pub compacted_at_create: Mutex<BTreeMap<u64, i64>>,
    /// Compactions clients asked for (revision, acknowledged).
    pub compactions: Mutex<Vec<(i64, bool)>>,
    /// What lease clients did and saw.
    pub lease_history: Mutex<Vec<LeaseOp>>,
    /// An armed crash point, and where to tell the nemesis which member reached it.
    pub crash_point: Mutex<Option<(CrashPoint, futures::channel::oneshot::Sender<u64>)>>,
    /// madsim's elapsed time when the run started.
    start: Duration,
    time: madsim::time::TimeHandle,
}

impl World {
    /// A world with members 1..=size, all in the initial cluster.
    pub fn new(settings: Settings, size: u64) -> Self {
        crate::net::clear_added_members();
        let initial: Vec<pb::Member> = (1..=size)
            .map(|id| pb::Member {
                id,
                name: format!("m{id}"),
                peer_ur_ls: vec![crate::net::member_addr(id).to_string()],
                client_ur_ls: vec![crate::net::member_addr(id).to_string()],
                is_learner: false,
            })
            .collect();
        let disks = (1..=size).map(|id| (id, SharedDisk::new())).collect();
        let clocks = (1..=size).map(|id| (id, ClockModel::exact())).collect();
        World {
            settings: Mutex::new(settings),
            cluster_id: ClusterId(0x5e7),
            initial,
            disks: Mutex::new(disks),
            clocks: Mutex::new(clocks),
            status: Mutex::new(BTreeMap::new()),
            observer: Mutex::new(Observer::default()),
            history: Mutex::new(Vec::new()),
            trace: Mutex::new(Vec::new()),
            refused: Mutex::new(BTreeMap::new()),
            gone: Mutex::new(BTreeSet::new()),
            force_new_cluster: Mutex::new(None),
            recovery: Mutex::new(None),
            starts: Mutex::new(BTreeMap::new()),
            kv_events: Mutex::new(KvEvents::default()),
            watch_logs: Mutex::new(Vec::new()),
            compacted_at_create: Mutex::new(BTreeMap::new()),
            compactions: Mutex::new(Vec::new()),
            lease_history: Mutex::new(Vec::new()),
            crash_point: Mutex::new(None),
            start: madsim::time::TimeHandle::current().elapsed(),
            time: madsim::time::TimeHandle::current(),
        }
    }

    /// Global simulated time since the run started.
    pub fn elapsed(&self) -> Duration {
        // Straight from madsim's clock rather than through the libc clock hook or `Instant`
        // arithmetic (a hot path).
        self.time.elapsed() - self.start
    }

    /// A member's own clock reading now.
    pub fn local_now(&self, id: u64) -> Instant {
        let elapsed = self.elapsed();
        match lock(&self.clocks).get(&id) {
            Some(clock) => clock.local(elapsed),
            None => ClockModel::exact().local(elapsed),
        }
    }

    /// How long to wait globally until member `id`'s clock reaches `deadline`.
    pub fn global_wait(&self, id: u64, deadline: Instant) -> Duration {
        let elapsed = self.elapsed();
        let clocks = lock(&self.clocks);
        let exact = ClockModel::exact();
        let clock = clocks.get(&id).unwrap_or(&exact);
        clock.global_wait(clock.local(elapsed), deadline)
    }

    /// What member `id`'s clock model is made of: offset, drift and how many jumps (the nemesis only
    /// ever adds jumps). Equal shapes map a local deadline to the same global time.
    pub fn clock_shape(&self, id: u64) -> (u64, i64, usize) {
        match lock(&self.clocks).get(&id) {
            Some(clock) => (clock.offset_us, clock.drift_ppm, clock.jumps.len()),
            None => (0, 0, 0),
        }
    }

    /// Appends a line to the run's trace, stamped with the global time.
    pub fn trace(&self, line: impl AsRef<str>) {
        let at = self.elapsed().as_micros();
        lock(&self.trace).push(format!("{:>10.3}s {}", at as f64 / 1e6, line.as_ref()));
    }

    /// The disk of member `id` (created empty if it has none).
    pub fn disk(&self, id: u64) -> SharedDisk {
        lock(&self.disks).entry(id).or_default().clone()
    }

    /// The node settings of member `id` for its next start (each start gets a new seed).
    pub fn node_config(&self, id: u64) -> NodeConfig {
        let settings = lock(&self.settings).clone();
        let mut config = NodeConfig::new(MemberId(id), self.cluster_id);
        config.cluster_token = "sim".to_string();
        config.heartbeat_interval = settings.heartbeat_interval;
        config.election_timeout = settings.election_timeout;
        config.snapshot_count = settings.snapshot_count;
        config.catch_up_entries = settings.catch_up_entries;
        config.request_timeout = settings.request_timeout;
        config.unsafe_local_linearizable_reads = settings.unsafe_local_reads;
        config.watch_progress_interval = settings.watch_progress_interval;
        // Each start of a member gets its own seed (NodeConfig::seed's contract): a restart that
        // drew the same incarnation and lease IDs as its previous life reissued lease IDs clients
        // had seen revoked (found by the lease oracle, watch seed 768).
        let restarts = {
            let mut starts = lock(&self.starts);
            let count = starts.entry(id).or_insert(0);
            *count += 1;
            *count - 1
        };
        config.seed = settings
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(id)
            .wrapping_add(restarts.wrapping_mul(0x0100_0000_01b3));
        config
    }

    /// Where every member keeps its data on its disk.
    pub fn layout(&self) -> StorageLayout {
        StorageLayout::new(Path::new("/data"), None)
    }

    pub fn wal_options(&self) -> WalOptions {
        WalOptions {
            segment_size_bytes: lock(&self.settings).segment_size_bytes,
        }
    }

    /// The member currently leading in the highest term, if any is running.
    pub fn leader(&self) -> Option<u64> {
        lock(&self.status)
            .iter()
            .filter(|(_, s)| s.running && s.is_leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(id, _)| *id)
    }

    /// Members that are part of the run (ever started), sorted.
    pub fn member_ids(&self) -> Vec<u64> {
        lock(&self.disks).keys().copied().collect()
    }

    /// Members clients and faults may target: started, not gone, not known to be removed.
    /// Falls back to `fallback` before anything started.
    pub fn live_members(&self, fallback: &[u64]) -> Vec<u64> {
        let gone = lock(&self.gone).clone();
        let status = lock(&self.status);
        let live: Vec<u64> = self
            .member_ids()
            .into_iter()
            .filter(|id| !gone.contains(id))
            .filter(|id| !status.get(id).is_some_and(|s| s.removed))
            .collect();
        if live.is_empty() {
            fallback.to_vec()
        } else {
            live
        }
    }
}

impl World {
    /// The highest revision any member has reported (for clients choosing watch start revisions).
    pub fn max_revision(&self) -> i64 {
        lock(&self.status)
            .values()
            .map(|s| s.revision)
            .max()
            .unwrap_or(1)
    }
}

impl World {
    /// Called by a member at `point`: if the nemesis armed that point, the member reports it and
    /// waits (the nemesis kills it inside the wait, so the crash lands exactly there).
    pub async fn maybe_crash_at(&self, member: u64, point: CrashPoint) {
        let armed = {
            let mut armed = lock(&self.crash_point);
            match armed.take() {
                Some((p, tell)) if p == point => Some(tell),
                other => {
                    *armed = other;
                    None
                }
            }
        };
        if let Some(tell) = armed {
            self.trace(format!("member {member} reached crash point {point:?}"));
            if tell.send(member).is_ok() {
                madsim::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
