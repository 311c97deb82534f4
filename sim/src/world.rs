//! The world of one simulation run: the settings every member and client share, the hosts members
//! run on, each member's disk and clock (which outlive the member's process), the observer, the
//! client history and the trace. madsim kills and restarts member processes; the world is what
//! survives them. Members are known by their real IDs (derived from their peer URLs, or given by
//! `member add`), hosts by a small number (`net`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use madsim::task::NodeId;
use stet::node::NodeConfig;
use stet::proto::etcdserverpb as pb;
use stet::server::config::{self, ServerConfig};
use stet::server::env::Mistake;
use stet::time::Instant;
use stet::types::ClusterId;
use stet::wal::WalOptions;

use crate::checker::Operation;
use crate::clock::ClockModel;
use crate::disk::SharedDisk;
use crate::observer::Observer;
use crate::records::{KvEvents, LeaseOp, Recovery, Revocations, RichOp, WatchLog};
use stet::disk::Breaker;

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
    /// The node's in-memory raft log budget (small, so applied entries are trimmed past the
    /// latest snapshot and followers behind the trimmed log need a fresh one).
    pub log_memory_bytes: usize,
    pub request_timeout: Duration,
    pub segment_size_bytes: u64,
    /// Range of simulated fsync latency.
    pub fsync_latency_us: (u64, u64),
    /// Self-test of the oracles: a fault planted on purpose, which they must catch.
    pub self_test: Option<SelfTest>,
    /// Watch responses buffered per stream in the runtime (small, so streams reach the bound).
    pub watch_stream_buffer: usize,
    /// Events per watch catch-up response (small, so catch-ups take several).
    pub watch_max_events_per_response: usize,
    /// Index entries per step of a member's `HashKV` (production: 10,000): small, so that the
    /// simulator's histories are hashed in many steps with writes and compactions in between.
    pub hash_kv_step_entries: usize,
    /// Simulated time between two steps of a `HashKV` (production: none), so that writes,
    /// compactions and crashes land in the middle of hashes.
    pub hash_kv_step_pause: Duration,
    /// Keys in the first part of a unary range read in parts (production: 1,024): small, so
    /// that the simulator's ranges are read in several parts with writes, compactions and
    /// crashes in between.
    pub range_first_part_keys: i64,
    /// Keys of the index a count part of a limited range walks at most (production: 32,768):
    /// small, so that what follows a limited range's keys is counted in several parts.
    pub range_count_part_keys: i64,
    /// Simulated time before each later part of a range read in parts (production: none), so
    /// that compactions pass the revisions ranges pinned while they read.
    pub range_part_pause: Duration,
    /// Raft messages larger than this go to peers in parts (small, so snapshots are split).
    pub peer_message_part_bytes: usize,
    /// How often a write to a peer connection is cut (reset) or stalls part-way.
    pub peer_fault_rate: f64,
    /// How often watchers created with `progress_notify` get a periodic progress response.
    pub watch_progress_interval: Duration,
    /// Now and then an fsync takes this long instead (the long tail of a real disk).
    pub slow_fsync_latency_us: (u64, u64),
    /// How often an fsync is slow.
    pub slow_fsync_rate: f64,
    /// `--quota-backend-bytes`, if the scenario sets one (small, so runs reach it).
    pub quota_backend_bytes: Option<u64>,
    /// `--max-request-bytes`, if the scenario sets one (small, so watch responses are larger
    /// and watchers that ask for it get them in fragments); rich clients then write some values
    /// large next to it.
    pub max_request_bytes: Option<usize>,
    /// `--experimental-auto-promote-learners`: leaders promote caught-up learners.
    pub auto_promote_learners: bool,
}

impl Settings {
    pub fn new(seed: u64) -> Self {
        Settings {
            seed,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            snapshot_count: 32,
            catch_up_entries: 4,
            log_memory_bytes: [2 << 10, 8 << 10, 64 << 10][(seed % 3) as usize],
            request_timeout: Duration::from_secs(3),
            segment_size_bytes: 64 * 1024,
            fsync_latency_us: (100, 2_000),
            self_test: None,
            watch_stream_buffer: 8,
            watch_max_events_per_response: 4,
            hash_kv_step_entries: 16,
            hash_kv_step_pause: Duration::from_millis([0, 3, 20][(seed / 3 % 3) as usize]),
            range_first_part_keys: 2,
            range_count_part_keys: 2,
            range_part_pause: Duration::from_millis([0, 10, 100][(seed / 9 % 3) as usize]),
            peer_message_part_bytes: 1024,
            peer_fault_rate: 0.0,
            watch_progress_interval: Duration::from_secs(2),
            slow_fsync_latency_us: (10_000, 200_000),
            slow_fsync_rate: 0.02,
            quota_backend_bytes: None,
            max_request_bytes: None,
            auto_promote_learners: false,
        }
    }
}

/// Faults planted on purpose, to prove the oracles catch them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfTest {
    /// Members answer linearizable reads from local state (stale reads).
    LocalReads,
    /// One member changes the value of every put it applies (its state diverges).
    CorruptAppliedPuts,
    /// Every member answers ranges with a count one too high (the members agree; only a model
    /// of the store can tell).
    MiscountRanges,
    /// One member's clock runs twice as fast as its clock model says (its leases expire early).
    FastClock,
    /// A mistake planted in the runtime.
    Mistake(Mistake),
    /// Leaders never promote learners, though the flag asks them to.
    NoAutoPromotion,
    /// The rich client's merge of a streamed range leaves out the first of several chunks (a
    /// wrong answer where every member is right: only the revision oracle's model can tell).
    DropStreamedChunk,
    /// Watchers take each fragment of a response for a whole response (a revision's events then
    /// come in parts, which the watch oracle must catch).
    UnjoinedFragments,
    /// Members apply every request without checking its user's permissions.
    IgnorePermissions,
}

impl SelfTest {
    /// Whether one member's applied state diverges from the others' (the corruption check's
    /// self-test needs one to overlook).
    pub fn diverges(self) -> bool {
        matches!(
            self,
            SelfTest::CorruptAppliedPuts | SelfTest::Mistake(Mistake::IgnoreDivergentPeers)
        )
    }
}

/// What the world knows of a running member (for the nemesis and the final checks).
#[derive(Debug, Clone, Default)]
pub struct MemberStatus {
    pub running: bool,
    /// Stopped on a full disk, waiting in-process for space to start again.
    pub waiting_for_space: bool,
    pub is_leader: bool,
    pub term: u64,
    pub applied_index: u64,
    pub revision: i64,
    pub removed: bool,
}

/// A moment inside a member at which the nemesis can ask for a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// A snapshot's file (own or received) is durable but its WAL record is not written yet.
    SnapshotFile,
    /// An own snapshot's file is written on the side under its temporary name, not yet fsynced.
    SnapshotWriting,
    /// Group commit wrote to the WAL and is about to fsync it.
    BeforeFsync,
    /// The member just sent its vote for a candidate.
    VoteSent,
    /// The member just applied a compaction.
    Compaction,
    /// The member just applied a membership change.
    ConfChange,
}

/// How a host's member process is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// A member of the initial cluster (`--initial-cluster-state new`).
    Initial,
    /// A member added at runtime joining the cluster (`--initial-cluster-state existing`) with
    /// this `--initial-cluster`.
    Join { initial_cluster: String },
    /// The survivor of a lost majority, restarted under a new name as the recovery runbook does:
    /// `--initial-cluster` names only itself (ignored: its data directory exists).
    Alone,
}

/// Where every member keeps its data, on its own simulated disk.
pub const DATA_DIR: &str = "/data";

/// A simulated machine: a madsim node with its own IP, running one member process at a time.
#[derive(Debug, Clone)]
pub struct Host {
    /// The madsim node, once created.
    pub node: Option<NodeId>,
    /// The member that runs (or last ran) here.
    pub member: Option<u64>,
    /// The member's name (`--name`).
    pub name: String,
    pub launch: Launch,
}

/// The shared state of one run.
pub struct World {
    pub settings: Mutex<Settings>,
    pub cluster_id: ClusterId,
    /// The cluster every member must start in: the initial one, until a `--force-new-cluster`
    /// start makes a new one.
    pub current_cluster: Mutex<ClusterId>,
    /// Members that started in another cluster than the current one, or forced starts that
    /// kept the old cluster.
    pub identity_violations: Mutex<Vec<String>>,
    /// Members named by CORRUPT alarms any member applied (the corruption check's verdicts), each
    /// with where it was first seen.
    pub corrupt_alarms: Mutex<BTreeMap<u64, String>>,
    /// The initial members, with their IDs as the server derives them.
    pub initial: Vec<pb::Member>,
    /// `--initial-cluster` of the initial members.
    pub initial_cluster: String,
    pub hosts: Mutex<BTreeMap<u64, Host>>,
    pub disks: Mutex<BTreeMap<u64, SharedDisk>>,
    /// Each member's power switch for its current process: a killed process's disk handles
    /// (e.g. the storage engine closing when its future is dropped, after the kill) write nothing.
    pub power: Mutex<BTreeMap<u64, Breaker>>,
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
    /// Members the operator removed from the cluster: each must stop by itself.
    pub removed: Mutex<BTreeSet<u64>>,
    /// The member whose next start is a `--force-new-cluster` restart.
    pub force_new_cluster: Mutex<Option<u64>>,
    /// What the force-new-cluster recovery did, for the scoped checks (`membership`).
    pub recovery: Mutex<Option<Recovery>>,
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
    /// What rich clients (every request shape) did and saw.
    pub rich_history: Mutex<Vec<RichOp>>,
    /// The auth administrator's changes, and the auth users' requests (`crate::auth`).
    pub auth_changes: Mutex<Vec<crate::auth::oracle::Change>>,
    pub auth_ops: Mutex<Vec<crate::auth::oracle::UserOp>>,
    /// When a member first applied the revoke of each lease (global µs).
    pub lease_revocations: Mutex<Revocations>,
    /// A self-test's distortion of one member's clock that its clock model does not show:
    /// (member, extra drift in ppm).
    pub clock_distortion: Mutex<Option<(u64, i64)>>,
    /// Each (member, peer) clock comparison under way: the true offset when it started.
    pub clock_comparisons: Mutex<BTreeMap<(u64, u64), i64>>,
    /// Clock comparisons whose result is off the true offset by more than they could be.
    pub clock_violations: Mutex<Vec<String>>,
    /// Leader-only requests refused with "no leader" before the member had waited
    /// `stet::server::route::ELECTION_WAIT` for an election (the election-wait oracle).
    pub early_no_leader: Mutex<Vec<String>>,
    /// What each member last counted on being durable (the per-member durability oracle).
    pub durable: Mutex<BTreeMap<u64, stet::node::DurableMarks>>,
    /// The first thing the per-member durability oracle found lost.
    pub durability_violation: Mutex<Option<String>>,
    /// An armed crash point, and where to tell the nemesis which member reached it.
    pub crash_point: Mutex<Option<(CrashPoint, futures::channel::oneshot::Sender<u64>)>>,
    /// madsim's elapsed time when the run started.
    start: Duration,
    time: madsim::time::TimeHandle,
}

/// How often simulated leaders run the corruption check.
pub const CORRUPT_CHECK_TIME: &str = "2s";

/// The cluster token every simulated cluster uses.
pub const CLUSTER_TOKEN: &str = "sim";

impl World {
    /// A world with hosts 1..=size, each running a member of the initial cluster.
    pub fn new(settings: Settings, size: u64) -> Self {
        let initial_cluster = (1..=size)
            .map(|h| format!("m{h}={}", crate::net::peer_url(h)))
            .collect::<Vec<_>>()
            .join(",");
        let hosts: BTreeMap<u64, Host> = (1..=size)
            .map(|h| {
                let host = Host {
                    node: None,
                    member: None,
                    name: format!("m{h}"),
                    launch: Launch::Initial,
                };
                (h, host)
            })
            .collect();
        let mut world = World {
            settings: Mutex::new(settings),
            cluster_id: ClusterId(0),
            current_cluster: Mutex::new(ClusterId(0)),
            identity_violations: Mutex::new(Vec::new()),
            corrupt_alarms: Mutex::new(BTreeMap::new()),
            initial: Vec::new(),
            initial_cluster,
            hosts: Mutex::new(hosts),
            disks: Mutex::new(BTreeMap::new()),
            power: Mutex::new(BTreeMap::new()),
            clocks: Mutex::new(BTreeMap::new()),
            status: Mutex::new(BTreeMap::new()),
            observer: Mutex::new(Observer::default()),
            history: Mutex::new(Vec::new()),
            trace: Mutex::new(Vec::new()),
            refused: Mutex::new(BTreeMap::new()),
            gone: Mutex::new(BTreeSet::new()),
            removed: Mutex::new(BTreeSet::new()),
            force_new_cluster: Mutex::new(None),
            clock_comparisons: Mutex::new(BTreeMap::new()),
            clock_violations: Mutex::new(Vec::new()),
            recovery: Mutex::new(None),
            starts: Mutex::new(BTreeMap::new()),
            kv_events: Mutex::new(KvEvents::default()),
            watch_logs: Mutex::new(Vec::new()),
            compacted_at_create: Mutex::new(BTreeMap::new()),
            compactions: Mutex::new(Vec::new()),
            lease_history: Mutex::new(Vec::new()),
            rich_history: Mutex::new(Vec::new()),
            auth_changes: Mutex::new(Vec::new()),
            auth_ops: Mutex::new(Vec::new()),
            lease_revocations: Mutex::new(BTreeMap::new()),
            clock_distortion: Mutex::new(None),
            early_no_leader: Mutex::new(Vec::new()),
            durable: Mutex::new(BTreeMap::new()),
            durability_violation: Mutex::new(None),
            crash_point: Mutex::new(None),
            start: madsim::time::TimeHandle::current().elapsed(),
            time: madsim::time::TimeHandle::current(),
        };
        // The IDs are the server's own: derived from the flags exactly as it derives them.
        let first = world
            .server_config(1, false)
            .expect("the simulator's flags for the first member parse");
        world.cluster_id = first.cluster_id;
        *world.current_cluster.get_mut().expect("not shared yet") = first.cluster_id;
        world.initial = first.initial_members.clone();
        {
            let hosts = world.hosts.get_mut().expect("not shared yet");
            for (h, host) in hosts.iter_mut() {
                let url = crate::net::peer_url(*h);
                host.member = first
                    .initial_members
                    .iter()
                    .find(|m| m.peer_ur_ls == [url.clone()])
                    .map(|m| m.id);
            }
        }
        for member in &world.initial {
            let clocks = world.clocks.get_mut().expect("not shared yet");
            clocks.insert(member.id, ClockModel::exact());
        }
        world
    }

    /// The flags of the next start of the member on `host` (a `--force-new-cluster` restart if
    /// `force_new_cluster`), parsed by the server's own flag parser.
    pub fn server_config(
        &self,
        host: u64,
        force_new_cluster: bool,
    ) -> Result<ServerConfig, String> {
        let args = self.server_args(host, force_new_cluster)?;
        match config::parse(args, |_| None) {
            Ok(Some(config)) => Ok(config),
            Ok(None) => Err("the flags asked for the version".to_string()),
            Err(error) => Err(error.to_string()),
        }
    }

    fn server_args(&self, host: u64, force_new_cluster: bool) -> Result<Vec<String>, String> {
        let (name, launch) = {
            let hosts = lock(&self.hosts);
            let entry = hosts.get(&host).ok_or(format!("no host {host}"))?;
            (entry.name.clone(), entry.launch.clone())
        };
        let settings = lock(&self.settings).clone();
        let (peer, client) = (crate::net::peer_url(host), crate::net::client_url(host));
        let (initial_cluster, state) = match launch {
            Launch::Initial => (self.initial_cluster.clone(), "new"),
            Launch::Join { initial_cluster } => (initial_cluster, "existing"),
            Launch::Alone => (format!("{name}={peer}"), "new"),
        };
        let mut args = vec![
            "stet".to_string(),
            format!("--name={name}"),
            format!("--data-dir={DATA_DIR}"),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-state={state}"),
            format!("--initial-cluster-token={CLUSTER_TOKEN}"),
            format!(
                "--heartbeat-interval={}",
                settings.heartbeat_interval.as_millis()
            ),
            format!(
                "--election-timeout={}",
                settings.election_timeout.as_millis()
            ),
            format!("--snapshot-count={}", settings.snapshot_count),
            format!(
                "--quota-backend-bytes={}",
                settings.quota_backend_bytes.unwrap_or(0)
            ),
            format!(
                "--experimental-snapshot-catchup-entries={}",
                settings.catch_up_entries
            ),
            // bcrypt's least cost: hashing is what it is for the auth scenario's logins, and a
            // simulated member runs it in place.
            "--bcrypt-cost=4".to_string(),
            // Short enough that tokens expire within runs (their users log in again).
            "--auth-token-ttl=3".to_string(),
        ];
        if let Some(bytes) = settings.max_request_bytes {
            args.push(format!("--max-request-bytes={bytes}"));
        }
        if force_new_cluster {
            args.push("--force-new-cluster".to_string());
        }
        if settings.auto_promote_learners {
            args.push("--experimental-auto-promote-learners".to_string());
        }
        args.push(format!(
            "--experimental-corrupt-check-time={CORRUPT_CHECK_TIME}"
        ));
        args.push("--experimental-initial-corrupt-check".to_string());
        Ok(args)
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

    /// Member `peer`'s clock minus member `member`'s right now, in microseconds (what a clock
    /// comparison between them should find).
    pub fn true_clock_offset(&self, member: u64, peer: u64) -> i64 {
        let (ours, theirs) = (self.local_now(member), self.local_now(peer));
        i64::try_from(theirs.as_micros()).unwrap_or(i64::MAX)
            - i64::try_from(ours.as_micros()).unwrap_or(i64::MAX)
    }

    /// Every member's clock model as the oracles know it (without a self-test's distortion).
    pub fn declared_clocks(&self) -> Vec<ClockModel> {
        let distortion = *lock(&self.clock_distortion);
        lock(&self.clocks)
            .iter()
            .map(|(id, clock)| match distortion {
                Some((member, extra)) if member == *id => ClockModel {
                    drift_ppm: clock.drift_ppm - extra,
                    ..clock.clone()
                },
                _ => clock.clone(),
            })
            .collect()
    }

    /// How long to wait globally until member `id`'s clock reaches `deadline`.
    pub fn global_wait(&self, id: u64, deadline: Instant) -> Duration {
        let elapsed = self.elapsed();
        let clocks = lock(&self.clocks);
        let exact = ClockModel::exact();
        let clock = clocks.get(&id).unwrap_or(&exact);
        clock.global_wait(clock.local(elapsed), deadline)
    }

    /// Appends a line to the run's trace, stamped with the global time.
    pub fn trace(&self, line: impl AsRef<str>) {
        let at = self.elapsed().as_micros();
        lock(&self.trace).push(format!("{:>10.3}s {}", at as f64 / 1e6, line.as_ref()));
    }

    /// Powers member `id`'s disk for a new process: the previous process's handles stay cut off.
    pub fn power_on(&self, id: u64) -> Breaker {
        let breaker = Breaker::new();
        if let Some(old) = lock(&self.power).insert(id, breaker.clone()) {
            old.cut();
        }
        breaker
    }

    /// Cuts member `id`'s process off its disk: call it right before killing the process.
    pub fn power_off(&self, id: u64) {
        if let Some(breaker) = lock(&self.power).get(&id) {
            breaker.cut();
        }
    }

    /// The disk of member `id` (created empty if it has none).
    pub fn disk(&self, id: u64) -> SharedDisk {
        lock(&self.disks).entry(id).or_default().clone()
    }

    /// The host member `id` runs on.
    pub fn host_of(&self, id: u64) -> Option<u64> {
        lock(&self.hosts)
            .iter()
            .find(|(_, host)| host.member == Some(id))
            .map(|(h, _)| *h)
    }

    /// The madsim node member `id` runs on.
    pub fn node_of(&self, id: u64) -> Option<NodeId> {
        lock(&self.hosts)
            .values()
            .find(|host| host.member == Some(id))
            .and_then(|host| host.node)
    }

    /// The seed of the next start of member `id` (each start gets its own: `NodeConfig::seed`).
    pub fn next_seed(&self, id: u64) -> u64 {
        let seed = lock(&self.settings).seed;
        // Each start of a member gets its own seed (NodeConfig::seed's contract): a restart that
        // drew the same incarnation and lease IDs as its previous life reissued lease IDs clients
        // had seen revoked (found by the lease oracle, watch seed 768).
        let restarts = {
            let mut starts = lock(&self.starts);
            let count = starts.entry(id).or_insert(0);
            *count += 1;
            *count - 1
        };
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(id)
            .wrapping_add(restarts.wrapping_mul(0x0100_0000_01b3))
    }

    /// Node settings no flag sets, for every start.
    pub fn adjust_node_config(&self, config: &mut NodeConfig) {
        let settings = lock(&self.settings).clone();
        config.request_timeout = settings.request_timeout;
        config.log_memory_bytes = settings.log_memory_bytes;
        config.unsafe_local_linearizable_reads = settings.self_test == Some(SelfTest::LocalReads);
        // One member only, so that it disagrees with the others.
        config.self_test_corrupt_applied_puts = settings.self_test.is_some_and(|t| t.diverges())
            && self.initial.first().is_some_and(|m| m.id == config.id.0);
        config.self_test_miscount_ranges = settings.self_test == Some(SelfTest::MiscountRanges);
        config.self_test_ignore_permissions =
            settings.self_test == Some(SelfTest::IgnorePermissions);
        if settings.self_test == Some(SelfTest::NoAutoPromotion) {
            config.auto_promote_learners = false;
        }
        config.watch_progress_interval = settings.watch_progress_interval;
        config.watch_max_events_per_response = settings.watch_max_events_per_response;
        config.hash_kv_step_entries = settings.hash_kv_step_entries;
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

    /// Members that are part of the run (placed on a host), sorted.
    pub fn member_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = lock(&self.hosts)
            .values()
            .filter_map(|host| host.member)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Members clients and faults may target: placed, not gone, not known to be removed.
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

    /// The client address of member `id`.
    pub fn client_addr(&self, id: u64) -> Option<std::net::SocketAddr> {
        self.host_of(id).map(crate::net::client_addr)
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
    /// gets a wait to sit in (the nemesis kills it inside the wait, so the crash lands exactly
    /// there).
    pub fn reached(&self, member: u64, point: CrashPoint) -> Option<crate::wait::Deadline> {
        let tell = {
            let mut armed = lock(&self.crash_point);
            match armed.take() {
                Some((p, tell)) if p == point => tell,
                other => {
                    *armed = other;
                    return None;
                }
            }
        };
        self.trace(format!("member {member:x} reached crash point {point:?}"));
        tell.send(member)
            .ok()
            .map(|()| crate::wait::Deadline::after(Duration::from_millis(50)))
    }
}
