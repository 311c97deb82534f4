//! The machine a member runs on, as the member runtime sees it: the member's own clock, handles on
//! its disk, fsync, the seed of each start, and the points where a simulator may watch the runtime
//! or stop it. [`OsEnvironment`] is the real machine (a monotonic clock, [`FsDisk`], fsync on a
//! blocking thread); the simulator (`sim/`) supplies a simulated machine, so the one runtime in
//! `server/` runs in production and under simulated faults alike.
//!
//! Nothing here decides anything about replication, ordering or storage: an environment only
//! answers "what time is it", "give me the disk", "make this file durable" and watches.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use crate::disk::{Disk, DiskError};
use crate::node::{Node, NodeConfig};
use crate::time::Instant;
use crate::wal::WalOptions;

#[cfg(not(madsim))]
pub use os::OsEnvironment;

/// A future the runtime can hold across turns of its loop.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A handle on the member's disk.
pub type BoxDisk = Box<dyn Disk + Send>;

/// How the member's node came to be at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    /// A new cluster, from `--initial-cluster`.
    Bootstrap,
    /// A new member of a running cluster (`--initial-cluster-state existing`).
    Join,
    /// From the data directory.
    Restart,
    /// From the data directory with `--force-new-cluster`.
    ForceNewCluster,
}

/// Moments inside the runtime at which a simulator may stop the member (a crash lands exactly
/// there). In production they pass unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// A snapshot received from the leader has its file durable; its WAL record is not written.
    ReceivedSnapshotFile,
    /// The member's own snapshot file is durable (written on the side); its WAL marker is not
    /// written and no WAL segment was released for it yet.
    OwnSnapshotFile,
    /// The member just sent a vote for a candidate.
    VoteSent,
    /// An engine commit is about to be written off the driver: the simulator makes it take
    /// simulated time, as a disk does, so reads and writes meet commits in flight.
    EngineCommitWriting,
}

/// Bounds of the runtime's buffers that an environment may tighten: the simulator does, so that its
/// runs reach what happens at the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Watch responses buffered per stream; a stream that falls this far behind catches up
    /// from history once its client reads again (see `driver/streams.rs`).
    pub watch_stream_buffer: usize,
    /// `--max-request-bytes`: the size past which a watcher created with `fragment` gets its
    /// responses in parts.
    pub max_request_bytes: usize,
    /// Raft messages larger than this travel to a peer in parts (snapshots).
    pub peer_message_part_bytes: usize,
    /// A pause between two steps of a `HashKV` (none in production): the simulator stretches its
    /// small hashes over simulated time, so writes, compactions and crashes come in between.
    pub hash_kv_step_pause: Duration,
    /// Keys in the first part of a unary range read in parts
    /// (`range_stream::FIRST_PART_KEYS`); the simulator's stores are small, so it reads its
    /// ranges in parts of a few keys.
    pub range_first_part_keys: i64,
    /// What a count part of a limited range spends at most
    /// (`range_stream::COUNT_PART_KEYS`); the simulator's are a few keys.
    pub range_count_part_keys: i64,
    /// A pause before each later part of a range read in parts (none in production): the
    /// simulator stretches its small ranges over simulated time, so writes and compactions come
    /// in between their parts.
    pub range_part_pause: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            watch_stream_buffer: 1024,
            max_request_bytes: 1_572_864,
            peer_message_part_bytes: crate::peer_wire::MAX_FRAME_PAYLOAD,
            hash_kv_step_pause: Duration::ZERO,
            range_first_part_keys: super::range_stream::FIRST_PART_KEYS,
            range_count_part_keys: super::range_stream::COUNT_PART_KEYS,
            range_part_pause: Duration::ZERO,
        }
    }
}

/// What goes wrong with one write to a peer connection (only a simulator says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// The connection is reset after the first `after` bytes of the write reached the peer.
    Reset { after: usize },
    /// The connection stalls for `pause` after the first `after` bytes, then goes on.
    Stall { after: usize, pause: Duration },
}

/// Mistakes the simulator's self-tests plant in the runtime, to prove that its oracles catch
/// them. No environment but those tests' plants any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mistake {
    /// Group commit reports writes durable without fsyncing them.
    SkipGroupCommitFsync,
    /// A watch response that finds its stream's buffer full is dropped, and the stream goes on.
    DropWatchResponseWhenFull,
    /// Engine files replaced by a defragmentation are never closed nor removed.
    KeepReplacedEngineFiles,
    /// WAL segments released from the log keep their files: none is ever removed.
    KeepReleasedWalFiles,
    /// An own snapshot releases no WAL segment: the log grows for ever.
    NeverReleaseWal,
    /// A backup (`Maintenance.Snapshot`) leaves out the first rows of the state.
    BackupDropsFirstRows,
    /// The clock comparison with a peer takes the offset with the wrong sign.
    MisreadPeerClock,
    /// `--force-new-cluster` keeps the old cluster ID.
    ForcedStartKeepsClusterId,
    /// A restart ignores the identity recorded by a forced start (`forced_identity`).
    IgnoreForcedIdentity,
    /// The corruption check finds no peer divergent, whatever the hashes say.
    IgnoreDivergentPeers,
    /// A member stopped by a full disk never starts again, even once there is space.
    StayDownAfterFullDisk,
    /// Every simple token names the user who logged in last on the member (`server::auth`).
    TokensNameLastLogin,
    /// The engine's bytes in use are never measured: `db_size_in_use` stays the file's size.
    InUseNeverMeasured,
    /// Watch events go out with the key-value they replaced (`prev_kv`) stripped of its value.
    WatchPrevKvWithoutValue,
    /// A put's answer returns the key-value it replaced (`prev_kv`) stripped of its value.
    PutPrevKvWithoutValue,
    /// A joining member takes its identity from the least recent answer naming its peer URLs,
    /// even an ID another answer lists as removed (`server::join`; etcd takes the first answer,
    /// which can be that one).
    JoinTakesStalestAnswer,
    /// A leader-only request (lease keep-alive, time-to-live, promotion) that finds no leader is
    /// refused with "no leader" at once, not after waiting for the election (`server::route`).
    SkipElectionWait,
    /// A `HashKV` that needs more than one step fails with "request timed out" after the first
    /// (`DriverHandle::hash_kv`).
    HashKvTimesOutAfterFirstStep,
    /// A unary range read in parts whose pinned revision a compaction passed fails with the
    /// compaction's error instead of starting over (`range_stream::gather_restarting`).
    NeverRestartCompactedRange,
}

/// The machine under the member runtime.
pub trait Environment: Send + Sync + 'static {
    /// The member's clock: time since an origin of the environment's choosing, never backwards.
    fn now(&self) -> Instant;

    /// Resolves once the member's clock reads `at` or later.
    fn sleep_until(&self, at: Instant) -> BoxFuture<()>;

    /// The member's wall clock, in microseconds since the Unix epoch (what members compare to
    /// find clock skew; nothing orders by it).
    fn wall_clock_micros(&self) -> u64;

    /// A new handle on the member's disk. Handles see each other's writes.
    fn disk(&self) -> BoxDisk;

    /// Makes the bytes written to `path` so far durable, off the runtime's task.
    fn sync_file(&self, path: PathBuf) -> BoxFuture<Result<(), DiskError>>;

    /// Runs [`prepare_segment_file`](crate::wal::prepare::prepare_segment_file) (a durable file
    /// of `len_bytes` zeros at `path`) off the runtime's task.
    fn prepare_segment(&self, path: PathBuf, len_bytes: u64) -> BoxFuture<Result<(), DiskError>>;

    /// Removes the files at `paths` (released WAL segments), off the runtime's task; a file
    /// already gone is not an error.
    fn remove_files(&self, paths: Vec<PathBuf>) -> BoxFuture<Result<(), DiskError>>;

    /// A seed for this start of the member (every start needs its own: `NodeConfig::seed`).
    fn seed(&self) -> u64;

    /// 32 bytes to seed the random source of login tokens and password salts. Production draws
    /// them from the OS (`OsEnvironment` overrides this); the default stretches `seed`, which
    /// is what the simulator wants (deterministic) and never what a real member may use.
    fn secret_seed(&self) -> [u8; 32] {
        use rand::{Rng, SeedableRng};
        rand_chacha::ChaCha20Rng::seed_from_u64(self.seed()).gen()
    }

    /// WAL settings.
    fn wal_options(&self) -> WalOptions {
        WalOptions::default()
    }

    /// The last word on the node's settings before it starts (knobs no flag sets).
    fn adjust_node_config(&self, _config: &mut NodeConfig) {}

    /// Bounds of the runtime's buffers.
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// What goes wrong with a write of `len` bytes to peer `to`'s connection (nothing, on a real
    /// machine: its faults show up as errors of the write itself).
    fn peer_write_fault(&self, _to: u64, _len: usize) -> Option<WriteFault> {
        None
    }

    /// Whether a self-test planted `mistake` (never, outside the simulator's self-tests).
    fn planted(&self, _mistake: Mistake) -> bool {
        false
    }

    /// The node was just started.
    fn started(&self, _node: &Node, _kind: StartKind) {}

    /// The member stopped on a full disk and waits for space to start again.
    fn waiting_for_space(&self, _reason: &str) {}

    /// A clock comparison with `peer` is about to start (for the simulator's oracle).
    fn clock_comparison_started(&self, _peer: u64) {}

    /// A clock comparison found `peer`'s clock `offset_micros` ahead of this member's, over a
    /// round trip of `round_trip_micros` (the estimate's error is at most half of it).
    fn clock_offset_measured(&self, _peer: u64, _offset_micros: i64, _round_trip_micros: u64) {}

    /// What the node counts on being durable may have changed (`Node::durable_marks`): the
    /// driver just told it that writes are durable (`Input::Persisted`), or it took inputs, among
    /// which a new leader's entries may have truncated its log (raft then counts on less).
    fn durable_marks_changed(&self, _node: &Node) {}

    /// The node changed leader (`leader` is `None` when it lost it).
    fn leader_changed(&self, _node: &Node, _term: u64, _leader: Option<u64>) {}

    /// The driver finished a turn of its loop: every output so far is carried out. A future
    /// returned here is awaited before the next turn.
    fn after_turn(&self, _node: &Node) -> Option<BoxFuture<()>> {
        None
    }

    /// The runtime reached `point`. A future returned here is awaited before it goes on.
    fn checkpoint(&self, _point: Checkpoint) -> Option<BoxFuture<()>> {
        None
    }
}

#[cfg(not(madsim))]
mod os {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use super::{BoxDisk, BoxFuture, Environment};
    use crate::disk::{Disk, DiskError};
    use crate::server::blocking;
    use crate::server::fs_disk::FsDisk;
    use crate::time::Instant;
    use crate::wal::prepare::prepare_segment_file;
    use crate::wal::remove_released_files;

    /// The real machine: a monotonic clock from the process's start, the local file system, fsync on a
    /// blocking thread, and a fresh random seed per start.
    #[derive(Debug, Clone)]
    pub struct OsEnvironment {
        origin: std::time::Instant,
    }

    impl OsEnvironment {
        pub fn new() -> Arc<Self> {
            Arc::new(OsEnvironment {
                origin: std::time::Instant::now(),
            })
        }
    }

    /// Runs a disk job on a blocking thread; a job that panicked fails as an error on `path`.
    fn disk_job<F>(path: PathBuf, job: F) -> BoxFuture<Result<(), DiskError>>
    where
        F: FnOnce() -> Result<(), DiskError> + Send + 'static,
    {
        Box::pin(async move {
            blocking::run(job).await.unwrap_or_else(|error| {
                Err(DiskError::Io {
                    path,
                    source: std::io::Error::other(error),
                })
            })
        })
    }

    impl Environment for OsEnvironment {
        fn now(&self) -> Instant {
            let micros = self.origin.elapsed().as_micros();
            Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
        }

        fn wall_clock_micros(&self) -> u64 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| {
                    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
                })
        }

        fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
            let deadline = self.origin + Duration::from_micros(at.as_micros());
            Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                deadline,
            )))
        }

        fn disk(&self) -> BoxDisk {
            Box::new(FsDisk::new())
        }

        fn sync_file(&self, path: PathBuf) -> BoxFuture<Result<(), DiskError>> {
            let named = path.clone();
            disk_job(named, move || FsDisk::new().sync(&path))
        }

        fn prepare_segment(
            &self,
            path: PathBuf,
            len_bytes: u64,
        ) -> BoxFuture<Result<(), DiskError>> {
            let named = path.clone();
            disk_job(named, move || {
                prepare_segment_file(&mut FsDisk::new(), &path, len_bytes)
            })
        }

        fn remove_files(&self, paths: Vec<PathBuf>) -> BoxFuture<Result<(), DiskError>> {
            let named = paths.first().cloned().unwrap_or_default();
            disk_job(named, move || {
                remove_released_files(&mut FsDisk::new(), &paths)
            })
        }

        fn seed(&self) -> u64 {
            rand::random()
        }

        fn secret_seed(&self) -> [u8; 32] {
            // thread_rng: ChaCha seeded from the OS, reseeded as it goes.
            rand::random()
        }
    }
}
