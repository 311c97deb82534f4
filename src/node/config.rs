//! `NodeConfig`: everything a node needs to know at start, chosen by the driver.

use std::time::Duration;

use crate::types::{ClusterId, MemberId};

/// Settings of one member's core.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: MemberId,
    pub cluster_id: ClusterId,
    /// Used to derive the IDs of members added at runtime (etcd's `--initial-cluster-token`).
    pub cluster_token: String,
    /// Raft's tick: leaders send heartbeats this often (etcd's `--heartbeat-interval`).
    pub heartbeat_interval: Duration,
    /// Followers start an election after this long without a leader (etcd's `--election-timeout`).
    pub election_timeout: Duration,
    /// Applied entries between snapshots (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// Applied entries after which the next commit of the storage engine is fsynced: a restart
    /// after a crash replays about this many entries from the WAL at most.
    pub durable_commit_entries: u64,
    /// Entries kept in the log behind a snapshot for slow followers.
    pub catch_up_entries: u64,
    /// Memory the in-memory raft log may hold before its applied entries are trimmed down to
    /// the last `catch_up_entries` (see [`LOG_MEMORY_BYTES`]).
    pub log_memory_bytes: usize,
    /// Proposals and reads waiting for an answer; more are refused with "too many requests".
    pub max_pending_requests: usize,
    /// How long a request may wait for raft before it fails with "request timed out".
    pub request_timeout: Duration,
    /// Largest raft message payload (bytes of entries per append).
    pub max_size_per_msg: u64,
    /// Appends in flight to one follower.
    pub max_inflight_msgs: usize,
    /// How often watchers created with `progress_notify` get an empty progress response (etcd: 10 min).
    pub watch_progress_interval: Duration,
    /// Events per watch catch-up response (a revision's events are never split).
    pub watch_max_events_per_response: usize,
    /// Index entries (keys and versions) one step of a `HashKV` reads at most, beyond the rest
    /// of its last key: the driver's work between two of its other requests stays bounded
    /// however large the history (stet's `--experimental-hash-kv-step-entries`).
    pub hash_kv_step_entries: usize,
    /// The leader promotes a learner to a voter once it has caught up (stet's
    /// `--experimental-auto-promote-learners`; etcd leaves it to a person, etcd-io/etcd#15107).
    pub auto_promote_learners: bool,
    /// FOR THE SIMULATOR'S SELF-TEST ONLY: answer linearizable reads from local state without
    /// ReadIndex, which is wrong (stale reads); the simulator must catch it.
    pub unsafe_local_linearizable_reads: bool,
    /// FOR THE SIMULATOR'S SELF-TEST ONLY: change the value of every put this member applies,
    /// so its state diverges from the others'; the simulator must catch it.
    pub self_test_corrupt_applied_puts: bool,
    /// FOR THE SIMULATOR'S SELF-TEST ONLY: answer every range with a count one too high (on every
    /// member alike, so only a model of the store can tell).
    pub self_test_miscount_ranges: bool,
    /// FOR THE SIMULATOR'S SELF-TEST ONLY: apply every client request without checking its
    /// user's permissions; the simulator's permission oracle must catch it.
    pub self_test_ignore_permissions: bool,
    /// Largest encoded client request accepted for proposal (etcd's `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// Most operations in one txn branch (etcd's `--max-txn-ops`).
    pub max_txn_ops: usize,
    /// The storage engine file's size past which writes are refused with NOSPACE (etcd's
    /// `--quota-backend-bytes`); `None` turns the quota off.
    pub quota_backend_bytes: Option<u64>,
    /// Seeds the node's own RNG: election timeouts, lease IDs, member ID salts, the incarnation.
    /// The driver must give each start of a member a different seed (the server draws one from the
    /// OS; the simulator derives one from the run's seed and the member's restart count), or a
    /// restarted member could repeat its previous life's lease IDs.
    pub seed: u64,
}

/// etcd's default space quota: 2 GiB.
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 << 30;

/// The most entries applied between durable commits of the storage engine (etcd fsyncs every
/// batch; one fsync per this many entries keeps the flushes off most commits).
pub const DURABLE_COMMIT_ENTRIES: u64 = 10_000;

/// Index entries one step of a `HashKV` reads (see `NodeConfig::hash_kv_step_entries`): about
/// a third of a millisecond of the driver's time on this project's test machine, so a hash of
/// a million keys takes ~200 steps with everything else served in between.
pub const HASH_KV_STEP_ENTRIES: usize = 10_000;

/// The in-memory raft log's budget: past it, applied entries older than the last
/// `catch_up_entries` are dropped, whatever the snapshot count. etcd keeps every entry since its
/// last snapshot in memory (up to `--snapshot-count` of them, 100,000 by default: ~30 MB of
/// 256-byte puts, ~100 MB of 1 KiB ones). A follower further behind than the log reaches gets
/// the engine's state instead, which stet streams from its file without re-encoding it.
pub const LOG_MEMORY_BYTES: usize = 4 << 20;

impl NodeConfig {
    /// etcd's defaults for a member with the given identity.
    pub fn new(id: MemberId, cluster_id: ClusterId) -> Self {
        NodeConfig {
            id,
            cluster_id,
            cluster_token: "etcd-cluster".to_string(),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            snapshot_count: 100_000,
            durable_commit_entries: DURABLE_COMMIT_ENTRIES,
            catch_up_entries: 5_000,
            log_memory_bytes: LOG_MEMORY_BYTES,
            max_pending_requests: 10_000,
            request_timeout: Duration::from_secs(5),
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            watch_progress_interval: Duration::from_secs(600),
            watch_max_events_per_response: crate::watch::MAX_EVENTS_PER_RESPONSE,
            hash_kv_step_entries: HASH_KV_STEP_ENTRIES,
            auto_promote_learners: false,
            unsafe_local_linearizable_reads: false,
            self_test_corrupt_applied_puts: false,
            self_test_miscount_ranges: false,
            self_test_ignore_permissions: false,
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            quota_backend_bytes: Some(DEFAULT_QUOTA_BACKEND_BYTES),
            seed: id.0,
        }
    }

    /// Sets the snapshot count and, with it, the entries between durable engine commits: as
    /// many, at most [`DURABLE_COMMIT_ENTRIES`] (each snapshot's own commit is durable too; a
    /// durable commit costs a flush of the file and of redb's allocator state, so not more often).
    pub fn set_snapshot_count(&mut self, snapshot_count: u64) {
        self.snapshot_count = snapshot_count;
        self.durable_commit_entries = snapshot_count.clamp(1, DURABLE_COMMIT_ENTRIES);
    }

    /// Election timeout in heartbeat ticks (at least 2, as raft requires).
    pub fn election_ticks(&self) -> usize {
        let heartbeat = self.heartbeat_interval.as_micros().max(1);
        let ticks = self.election_timeout.as_micros() / heartbeat;
        usize::try_from(ticks).unwrap_or(usize::MAX).max(2)
    }

    /// The shortest lease TTL granted, in seconds: etcd's 1.5 election timeouts, rounded up.
    pub fn min_lease_ttl_seconds(&self) -> i64 {
        let micros = self.election_timeout.as_micros() * 3 / 2;
        i64::try_from(micros.div_ceil(1_000_000))
            .unwrap_or(i64::MAX)
            .max(1)
    }
}
