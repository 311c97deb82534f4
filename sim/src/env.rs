//! The simulated machine a member process runs on: the production runtime (`stet::server`) takes
//! its clock, disk, fsync and seed from here. The clock is the member's skewed, drifting clock
//! (`clock`); the disk is the member's `SharedDisk`, which outlives the process; an fsync takes a
//! simulated time with a long tail, so a crash can land between a write and its fsync and a
//! leader's own fsync may finish after its followers' acknowledgements. The runtime's hooks feed
//! the oracles (`report`) and let the nemesis crash the member at chosen points.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;

use stet::disk::{Breaker, Disk, DiskError, PowerCut};
use stet::node::{Node, NodeConfig};
use stet::server::env::{
    BoxDisk, BoxFuture, Checkpoint, Environment, Limits, Mistake, StartKind, WriteFault,
};
use stet::time::Instant;
use stet::wal::prepare::prepare_segment_file;
use stet::wal::remove_released_files;
use stet::wal::WalOptions;

use crate::report::Reporter;
use crate::wait::Deadline;
use crate::world::{lock, CrashPoint, SelfTest, World};

/// One start of one member on the simulated machine.
pub struct SimEnvironment {
    world: Arc<World>,
    member: u64,
    /// The first start's seed, until that start takes it. A member stopped by a full disk starts
    /// again in the same process, on this environment: that start draws a seed of its own (the
    /// same seed again gave it its previous life's incarnation and request IDs, and an entry it
    /// proposed before stopping, applied after the restart, answered a new request with the
    /// same ID: disk-full seed 59).
    first_seed: Mutex<Option<u64>>,
    /// What login tokens and password salts are drawn from, for the whole process.
    secret: u64,
    reporter: Mutex<Reporter>,
    /// This process's power: cut when it is killed.
    power: Breaker,
}

impl SimEnvironment {
    pub fn new(world: Arc<World>, member: u64) -> Arc<Self> {
        let seed = world.next_seed(member);
        Arc::new(SimEnvironment {
            power: world.power_on(member),
            reporter: Mutex::new(Reporter::new(world.clone(), member)),
            world,
            member,
            first_seed: Mutex::new(Some(seed)),
            secret: seed,
        })
    }

    fn crash_point(&self, point: CrashPoint) -> Option<BoxFuture<()>> {
        let wait = self.world.reached(self.member, point)?;
        Some(Box::pin(wait))
    }

    /// How long the next fsync takes: usually short, now and then very long.
    fn fsync_latency(&self) -> Duration {
        let settings = lock(&self.world.settings).clone();
        let mut rng = madsim::rand::thread_rng();
        let (low, high) = if rng.gen_bool(settings.slow_fsync_rate) {
            settings.slow_fsync_latency_us
        } else {
            settings.fsync_latency_us
        };
        Duration::from_micros(rng.gen_range(low..=high))
    }
}

/// What a clock comparison may be off by beyond half its round trip.
const CLOCK_SLACK_MICROS: i64 = 1_000;

/// The wall clock every simulated member's clock starts from: 2026-01-01T00:00:00Z.
const WALL_CLOCK_ORIGIN_MICROS: u64 = 1_767_225_600_000_000;

impl Environment for SimEnvironment {
    fn now(&self) -> Instant {
        self.world.local_now(self.member)
    }

    fn wall_clock_micros(&self) -> u64 {
        // The member's own (skewed, drifting) clock, from a fixed calendar origin.
        WALL_CLOCK_ORIGIN_MICROS + self.now().as_micros()
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(Deadline::after(self.world.global_wait(self.member, at)))
    }

    fn disk(&self) -> BoxDisk {
        let disk = self.world.disk(self.member);
        Box::new(PowerCut::with_breaker(disk, self.power.clone()))
    }

    fn sync_file(&self, path: PathBuf) -> BoxFuture<Result<(), DiskError>> {
        let point = if path.extension().is_some_and(|e| e == "tmp") {
            CrashPoint::SnapshotWriting
        } else {
            CrashPoint::BeforeFsync
        };
        let crash = self.crash_point(point);
        let latency = Deadline::after(self.fsync_latency());
        let mut disk = self.world.disk(self.member);
        Box::pin(async move {
            if let Some(crash) = crash {
                crash.await;
            }
            latency.await;
            disk.sync(&path)
        })
    }

    fn prepare_segment(&self, path: PathBuf, len_bytes: u64) -> BoxFuture<Result<(), DiskError>> {
        // Through the power-cut breaker, so a crash can land between its writes and its fsync.
        let mut disk = PowerCut::with_breaker(self.world.disk(self.member), self.power.clone());
        let latency = Deadline::after(self.fsync_latency());
        Box::pin(async move {
            latency.await;
            prepare_segment_file(&mut disk, &path, len_bytes)
        })
    }

    fn remove_files(&self, paths: Vec<PathBuf>) -> BoxFuture<Result<(), DiskError>> {
        // Through the power-cut breaker, so a crash can land between two removals.
        let mut disk = PowerCut::with_breaker(self.world.disk(self.member), self.power.clone());
        let latency = Deadline::after(self.fsync_latency());
        Box::pin(async move {
            latency.await;
            remove_released_files(&mut disk, &paths)
        })
    }

    fn seed(&self) -> u64 {
        lock(&self.first_seed)
            .take()
            .unwrap_or_else(|| self.world.next_seed(self.member))
    }

    fn secret_seed(&self) -> [u8; 32] {
        use rand::{Rng, SeedableRng};
        rand_chacha::ChaCha20Rng::seed_from_u64(self.secret).gen()
    }

    fn wal_options(&self) -> WalOptions {
        self.world.wal_options()
    }

    fn adjust_node_config(&self, config: &mut NodeConfig) {
        self.world.adjust_node_config(config);
    }

    fn limits(&self) -> Limits {
        let settings = lock(&self.world.settings);
        Limits {
            watch_stream_buffer: settings.watch_stream_buffer,
            peer_message_part_bytes: settings.peer_message_part_bytes,
            hash_kv_step_pause: settings.hash_kv_step_pause,
            range_first_part_keys: settings.range_first_part_keys,
            range_count_part_keys: settings.range_count_part_keys,
            range_part_pause: settings.range_part_pause,
            ..Limits::default()
        }
    }

    fn peer_write_fault(&self, to: u64, len: usize) -> Option<WriteFault> {
        let rate = lock(&self.world.settings).peer_fault_rate;
        let mut rng = madsim::rand::thread_rng();
        if rate == 0.0 || !rng.gen_bool(rate) {
            return None;
        }
        let after = rng.gen_range(0..len.max(1));
        let fault = if rng.gen_bool(0.5) {
            WriteFault::Reset { after }
        } else {
            let pause = Duration::from_millis(rng.gen_range(50..2_000));
            WriteFault::Stall { after, pause }
        };
        self.world.trace(format!(
            "member {:x}: write of {len} bytes to {to:x} meets {fault:?}",
            self.member
        ));
        Some(fault)
    }

    fn clock_comparison_started(&self, peer: u64) {
        let truth = self.world.true_clock_offset(self.member, peer);
        lock(&self.world.clock_comparisons).insert((self.member, peer), truth);
    }

    fn clock_offset_measured(&self, peer: u64, offset_micros: i64, round_trip_micros: u64) {
        let after = self.world.true_clock_offset(self.member, peer);
        let before = lock(&self.world.clock_comparisons)
            .remove(&(self.member, peer))
            .unwrap_or(after);
        // The estimate is off by at most half the round trip (plus rounding); a clock that
        // jumped meanwhile moves the truth between its values before and after.
        let slack = i64::try_from(round_trip_micros / 2).unwrap_or(i64::MAX) + CLOCK_SLACK_MICROS;
        let (low, high) = (before.min(after) - slack, before.max(after) + slack);
        if !(low..=high).contains(&offset_micros) {
            lock(&self.world.clock_violations).push(format!(
                "member {:x} measured {peer:x}'s clock {offset_micros} µs ahead, truly {before}..{after} µs (round trip {round_trip_micros} µs)",
                self.member
            ));
        }
    }

    fn planted(&self, mistake: Mistake) -> bool {
        lock(&self.world.settings).self_test == Some(SelfTest::Mistake(mistake))
    }

    fn started(&self, node: &Node, kind: StartKind) {
        lock(&self.world.status)
            .entry(self.member)
            .or_default()
            .waiting_for_space = false;
        lock(&self.reporter).started(node, kind);
    }

    fn waiting_for_space(&self, reason: &str) {
        self.world.trace(format!(
            "member {:x} stopped on a full disk and waits for space: {reason}",
            self.member
        ));
        let mut status = lock(&self.world.status);
        let entry = status.entry(self.member).or_default();
        entry.running = false;
        entry.is_leader = false;
        entry.waiting_for_space = true;
    }

    fn durable_marks_changed(&self, node: &Node) {
        lock(&self.world.durable).insert(self.member, node.durable_marks());
    }

    fn leader_changed(&self, node: &Node, term: u64, leader: Option<u64>) {
        let leader = leader.unwrap_or(0);
        self.world.trace(format!(
            "member {:x} sees leader {leader:x} in term {term}",
            node.id().0
        ));
        if leader != 0 {
            lock(&self.world.observer).leader(term, leader);
        }
    }

    fn after_turn(&self, node: &Node) -> Option<BoxFuture<()>> {
        let point = lock(&self.reporter).report(node)?;
        self.crash_point(point)
    }

    fn checkpoint(&self, point: Checkpoint) -> Option<BoxFuture<()>> {
        if point == Checkpoint::ReceivedSnapshotFile {
            self.world.trace(format!(
                "member {:x} installs a snapshot from the leader",
                self.member
            ));
        }
        let point = match point {
            Checkpoint::ReceivedSnapshotFile | Checkpoint::OwnSnapshotFile => {
                CrashPoint::SnapshotFile
            }
            Checkpoint::VoteSent => CrashPoint::VoteSent,
            // A disk's time to write it (the commit's pages, and its fsync if durable).
            Checkpoint::EngineCommitWriting => {
                return Some(Box::pin(Deadline::after(self.fsync_latency())))
            }
        };
        self.crash_point(point)
    }
}
