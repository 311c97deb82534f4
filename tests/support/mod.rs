//! A deterministic in-process cluster for tests: real `Node`s with real WAL and snapshot code on
//! `MemDisk`s, wired by a message queue with seeded random delays, partitions and crashes. Plain
//! Rust, no async: the harness owns the clock and the order of everything, so a seed fixes a run.
//!
//! Faults for chaos tests: symmetric isolation, one-way link cuts, message loss, duplication and
//! wide random delays (reordering), paused members, and crashes that lose or tear unsynced data.
//! Every entry a member applies is recorded by index, and a member applying a different entry at
//! an index another member already applied fails the run at once.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use raft::eraftpb::{Message, MessageType};
use raft::StateRole;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use std::path::Path;

use stet::disk::{Breaker, CrashFault, Disk as _, MemDisk, PowerCut, SharedDisk};
use stet::engine::Engine;
use stet::node::DurableState;
use stet::node::{is_engine_state, StateChunk};
use stet::node::{
    ClientError, ClientRequest, ClientResponse, Input, Node, NodeConfig, Output, Persist, RequestId,
};
use stet::proto::etcdserverpb as pb;
use stet::storage::{MemberStorage, StorageLayout};
use stet::time::Instant;
use stet::types::{ClusterId, MemberId};
use stet::wal::{Metadata, WalOptions};

pub type Reply = Result<ClientResponse, ClientError>;

/// One simulated member: its node (absent while crashed), its disk for the WAL and snapshots,
/// and the disk its storage engine's file is on.
pub struct Member {
    pub node: Option<Node>,
    pub storage: Option<MemberStorage<MemDisk>>,
    pub disk: Option<MemDisk>,
    pub engine_disk: SharedDisk,
    /// The running process's power: cut when it crashes, so nothing it drops writes after.
    power: Breaker,
    pub config: NodeConfig,
    pub removed: bool,
    pub snapshots_installed: u64,
}

impl Member {
    /// A new member's process, with an empty engine disk; `start` starts its node on the engine.
    fn new(config: NodeConfig) -> Self {
        let engine_disk = SharedDisk::new();
        engine_disk
            .lock()
            .create_dir_all(Path::new("/data/member"))
            .expect("engine directory");
        Member {
            node: None,
            storage: None,
            disk: None,
            engine_disk,
            power: Breaker::new(),
            config,
            removed: false,
            snapshots_installed: 0,
        }
    }

    /// Opens the engine file on this member's engine disk for a new process.
    fn open_engine(&mut self) -> Engine {
        self.power = Breaker::new();
        let (disk, power) = (self.engine_disk.clone(), self.power.clone());
        let handle = move || PowerCut::with_breaker(disk.clone(), power.clone());
        Engine::open(handle, Path::new(ENGINE_PATH), 1 << 20).expect("open the engine")
    }
}

/// Opens member `id`'s WAL and snapshots from its disk, checking they are its own.
fn reopen(disk: MemDisk, id: u64, cluster_id: ClusterId) -> (MemberStorage<MemDisk>, DurableState) {
    let expected = Metadata {
        member_id: id,
        cluster_id: cluster_id.0,
    };
    let (storage, durable, _report) =
        MemberStorage::open(disk, layout(), wal_options(), Some(expected)).expect("reopen");
    (storage, durable)
}

/// Where each member's engine file lives on its engine disk.
const ENGINE_PATH: &str = "/data/member/engine.redb";

/// How the network treats messages, beyond partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetFaults {
    /// Chance in percent that a sent message is lost.
    pub loss_percent: u32,
    /// Chance in percent that a sent message is delivered twice.
    pub duplicate_percent: u32,
    /// Each copy is delayed uniformly in [500 us, max_delay_us); wide ranges reorder messages.
    pub max_delay_us: u64,
}

impl Default for NetFaults {
    fn default() -> Self {
        NetFaults {
            loss_percent: 0,
            duplicate_percent: 0,
            max_delay_us: 3_000,
        }
    }
}

/// A write the harness's disk has not carried out yet (see `Cluster::disk_latency_max_us`).
enum Io {
    Persist(Persist),
    SaveSnapshot(raft::eraftpb::Snapshot),
}

/// Bytes of rows per chunk of a state sent to a follower: small, so larger states take several.
const HARNESS_STATE_CHUNK_BYTES: usize = 16 * 1024;

/// Timer wake-ups at one instant beyond which a member is taken to wake for ever.
const MAX_WAKES_AT_ONE_INSTANT: u32 = 10_000;

/// What was applied at one log index: (term, entry type, crc32 of the data).
pub type AppliedEntry = (u64, i32, u32);

/// A cluster of members on one simulated clock.
pub struct Cluster {
    pub members: BTreeMap<u64, Member>,
    pub now: Instant,
    rng: ChaCha8Rng,
    /// Messages on the wire by (delivery time, send sequence): (to, message).
    in_flight: BTreeMap<(Instant, u64), (u64, Message)>,
    /// The rows of the states leaders sent, by (from, to, snapshot index): delivered as chunks
    /// right before their `MsgSnapshot`, as the transport sends them on one connection.
    state_chunks: BTreeMap<(u64, u64, u64), Vec<Vec<u8>>>,
    /// The instant of the latest timer wake-ups and how many happened at it.
    wakes_at_now: (Instant, u32),
    seq: u64,
    /// Members cut off from everyone (both directions).
    pub isolated: BTreeSet<u64>,
    /// Cut links (from, to): messages from `from` to `to` are dropped on delivery.
    pub cuts: BTreeSet<(u64, u64)>,
    /// Members whose process is stopped for a while: no timers fire and nothing is delivered to
    /// them (messages wait on the wire) until they are resumed.
    pub paused: BTreeSet<u64>,
    pub net: NetFaults,
    /// When non-zero, each member's disk carries out writes in order, each after a random delay
    /// below this, and only then reports them persisted; a crash loses the writes not done yet.
    pub disk_latency_max_us: u64,
    /// Writes waiting on the disks, by (completion time, seq): (member, write).
    pending_io: BTreeMap<(Instant, u64), (u64, Io)>,
    pub replies: BTreeMap<RequestId, Reply>,
    /// Messages delivered, by raft message type.
    pub delivered: BTreeMap<i32, u64>,
    /// When each reply in `replies` arrived.
    pub reply_times: BTreeMap<RequestId, Instant>,
    /// Every entry any member applied, by index (oracle: committed entries never change).
    pub applied_log: BTreeMap<u64, AppliedEntry>,
    /// Up to which index each running member's applied entries were checked.
    checked_applied: BTreeMap<u64, u64>,
    /// Each running member's log beyond what it applied, as it asked the harness to persist it
    /// (its in-memory log may already be compacted when the harness looks).
    logs: BTreeMap<u64, BTreeMap<u64, AppliedEntry>>,
    /// Applied entries a member compacted away (or got in a snapshot) before the harness could
    /// look at them, and applied entries compared with what another member applied there.
    pub applied_unchecked: u64,
    pub applied_compared: u64,
    next_request: RequestId,
    /// Every observable step, for determinism checks.
    pub trace: Vec<String>,
    /// (term, leader) pairs ever reported, to check one leader per term.
    pub leaders_by_term: BTreeMap<u64, BTreeSet<u64>>,
    logger: slog::Logger,
    pub snapshot_count: u64,
    pub catch_up_entries: u64,
    cluster_id: ClusterId,
    /// Whether leaders promote caught-up learners themselves.
    auto_promote_learners: bool,
}

pub fn layout() -> StorageLayout {
    StorageLayout::new(std::path::Path::new("/data"), None)
}

pub fn wal_options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 16 * 1024,
    }
}

impl Cluster {
    /// Boots a new cluster of `size` members with IDs 1..=size.
    pub fn new(size: u64, seed: u64) -> Self {
        Self::with_snapshots(size, seed, 10_000, 1_000)
    }

    /// A new cluster whose leaders promote caught-up learners themselves
    /// (`NodeConfig::auto_promote_learners`).
    pub fn auto_promoting(size: u64, seed: u64) -> Self {
        Self::build(size, seed, 10_000, 1_000, true)
    }

    pub fn with_snapshots(size: u64, seed: u64, snapshot_count: u64, catch_up: u64) -> Self {
        Self::build(size, seed, snapshot_count, catch_up, false)
    }

    fn build(
        size: u64,
        seed: u64,
        snapshot_count: u64,
        catch_up: u64,
        auto_promote_learners: bool,
    ) -> Self {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let ids: Vec<u64> = (1..=size).collect();
        let cluster_id = ClusterId(0xc1);
        let initial: Vec<pb::Member> = ids
            .iter()
            .map(|&id| pb::Member {
                id,
                name: format!("m{id}"),
                peer_ur_ls: vec![format!("http://10.0.0.{id}:2380")],
                client_ur_ls: vec![format!("http://10.0.0.{id}:2379")],
                is_learner: false,
            })
            .collect();
        let mut cluster = Cluster {
            members: BTreeMap::new(),
            now: Instant::from_micros(1_000_000),
            rng: ChaCha8Rng::seed_from_u64(seed),
            in_flight: BTreeMap::new(),
            state_chunks: BTreeMap::new(),
            wakes_at_now: (Instant::from_micros(0), 0),
            seq: 0,
            isolated: BTreeSet::new(),
            cuts: BTreeSet::new(),
            paused: BTreeSet::new(),
            net: NetFaults::default(),
            disk_latency_max_us: 0,
            pending_io: BTreeMap::new(),
            replies: BTreeMap::new(),
            delivered: BTreeMap::new(),
            reply_times: BTreeMap::new(),
            applied_log: BTreeMap::new(),
            checked_applied: BTreeMap::new(),
            logs: BTreeMap::new(),
            applied_unchecked: 0,
            applied_compared: 0,
            next_request: 1,
            trace: Vec::new(),
            leaders_by_term: BTreeMap::new(),
            logger,
            snapshot_count,
            catch_up_entries: catch_up,
            cluster_id,
            auto_promote_learners,
        };
        for &id in &ids {
            let config = cluster.config_for(id, seed);
            let metadata = Metadata {
                member_id: id,
                cluster_id: cluster_id.0,
            };
            let storage =
                MemberStorage::create(MemDisk::new(), layout(), metadata, wal_options()).unwrap();
            let mut member = Member::new(config.clone());
            let engine = member.open_engine();
            let node = Node::bootstrap(config, &initial, engine, cluster.now, &cluster.logger)
                .expect("bootstrap");
            member.node = Some(node);
            member.storage = Some(storage);
            cluster.members.insert(id, member);
        }
        for id in ids {
            cluster.drain(id);
        }
        cluster
    }

    fn config_for(&self, id: u64, seed: u64) -> NodeConfig {
        let mut config = NodeConfig::new(MemberId(id), self.cluster_id);
        config.heartbeat_interval = Duration::from_millis(10);
        config.election_timeout = Duration::from_millis(100);
        config.set_snapshot_count(self.snapshot_count);
        config.catch_up_entries = self.catch_up_entries;
        config.request_timeout = Duration::from_secs(2);
        config.seed = seed.wrapping_mul(1_000_003).wrapping_add(id);
        config.auto_promote_learners = self.auto_promote_learners;
        config
    }

    pub fn node(&self, id: u64) -> &Node {
        self.members[&id].node.as_ref().expect("member is running")
    }

    /// The one running leader, if exactly one running member thinks it leads in the highest term.
    pub fn leader(&self) -> Option<u64> {
        let leaders: Vec<(u64, u64)> = self
            .members
            .iter()
            .filter_map(|(id, m)| m.node.as_ref().map(|n| (*id, n)))
            .filter(|(id, n)| n.role() == StateRole::Leader && !self.isolated.contains(id))
            .map(|(id, n)| (n.term(), id))
            .collect();
        leaders.iter().max().map(|&(_, id)| id)
    }

    /// Runs the cluster for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.step(until) {}
        self.now = until;
    }

    /// Runs until `done` holds or `limit` of simulated time passes; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        let until = self.now + limit;
        while !done(self) {
            if !self.step(until) {
                return done(self);
            }
        }
        true
    }

    pub fn wait_for_leader(&mut self) -> u64 {
        assert!(
            self.run_until(Duration::from_secs(10), |c| c.leader().is_some()),
            "no leader elected"
        );
        self.leader().expect("leader")
    }

    /// Advances to the next event before `until`; false when there is none.
    fn step(&mut self, until: Instant) -> bool {
        let next_timer = self
            .members
            .iter()
            .filter(|(id, _)| !self.paused.contains(id))
            .filter_map(|(id, m)| m.node.as_ref().and_then(|n| Some((n.poll_timeout()?, *id))))
            .min();
        let next_message = self
            .in_flight
            .iter()
            .find(|(_, (to, _))| !self.paused.contains(to))
            .map(|(key, _)| *key);
        let next_io = self
            .pending_io
            .iter()
            .find(|(_, (id, _))| !self.paused.contains(id))
            .map(|(key, _)| *key);
        let first_other = [next_timer.map(|t| t.0), next_message.map(|m| m.0)]
            .into_iter()
            .flatten()
            .min();
        if let Some(key) = next_io.filter(|io| first_other.is_none_or(|t| io.0 <= t)) {
            if key.0 > until {
                return false;
            }
            self.now = self.now.max(key.0);
            let (id, io) = self.pending_io.remove(&key).expect("pending io");
            self.complete_io(id, io);
            return true;
        }
        let message_first = match (next_timer, next_message) {
            (Some((t, _)), Some((m, _))) => m <= t,
            (None, Some(_)) => true,
            _ => false,
        };
        if message_first {
            let key = next_message.expect("message");
            if key.0 > until {
                return false;
            }
            self.now = self.now.max(key.0);
            let (to, message) = self.in_flight.remove(&key).expect("in flight");
            self.deliver(to, message);
            return true;
        }
        let Some((at, id)) = next_timer else {
            return false;
        };
        if at > until {
            return false;
        }
        self.now = self.now.max(at);
        self.check_timer_moves(id);
        self.input(id, Input::Tick);
        true
    }

    /// A timer that fires again and again without time moving is a livelock the test would
    /// otherwise only show as a hang.
    fn check_timer_moves(&mut self, id: u64) {
        let (at, wakes) = &mut self.wakes_at_now;
        if *at == self.now {
            *wakes += 1;
        } else {
            (*at, *wakes) = (self.now, 1);
        }
        assert!(
            *wakes <= MAX_WAKES_AT_ONE_INSTANT,
            "member {id}'s timer fired {wakes} times at {:?} without time moving: its \
             poll_timeout does not advance",
            self.now
        );
    }

    /// A snapshot stream broke: its sender's transport would notice and say so (raft's leader
    /// sends the follower nothing else until it hears how the snapshot went).
    fn report_snapshot_failed(&mut self, from: u64, to: u64) {
        let report = Input::SnapshotReport {
            to: MemberId(to),
            ok: false,
        };
        self.input(from, report);
    }

    /// Carries out a write the disk held back, then tells the member.
    fn complete_io(&mut self, id: u64, io: Io) {
        let Some(storage) = self.members.get_mut(&id).and_then(|m| m.storage.as_mut()) else {
            return;
        };
        match io {
            Io::Persist(persist) => {
                storage.persist(&persist).expect("persist");
                let ready_number = persist.ready_number;
                self.input(id, Input::Persisted { ready_number });
            }
            Io::SaveSnapshot(snapshot) => {
                storage.save_snapshot(&snapshot).expect("save snapshot");
            }
        }
    }

    /// Queues a write behind the member's earlier ones if the disk is slow (or still busy).
    fn queue_io(&mut self, id: u64, io: Io) -> Option<Io> {
        let busy_until = self
            .pending_io
            .iter()
            .filter(|(_, (member, _))| *member == id)
            .map(|(key, _)| key.0)
            .max();
        if self.disk_latency_max_us == 0 && busy_until.is_none() {
            return Some(io);
        }
        let latency_us = match self.disk_latency_max_us {
            0 => 0,
            max => self.rng.gen_range(0..max),
        };
        let at = (self.now + Duration::from_micros(latency_us)).max(busy_until.unwrap_or(self.now));
        self.seq += 1;
        self.pending_io.insert((at, self.seq), (id, io));
        None
    }

    /// Puts a message from member `id` on the wire, with the network's faults.
    fn send_message(&mut self, id: u64, message: Message) {
        let net = self.net;
        // Snapshots travel on their own stream: they are not lost silently, only cut
        // off (reported to the sender on delivery).
        let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        let lost = net.loss_percent > 0 && self.rng.gen_range(0..100) < net.loss_percent;
        let lost = lost && !is_snapshot;
        let copies =
            if net.duplicate_percent > 0 && self.rng.gen_range(0..100) < net.duplicate_percent {
                2
            } else {
                1
            };
        for _ in 0..copies {
            let max_delay_us = net.max_delay_us.max(501);
            let delay = Duration::from_micros(self.rng.gen_range(500..max_delay_us));
            self.seq += 1;
            if (is_snapshot || !self.isolated.contains(&id)) && !lost {
                self.in_flight
                    .insert((self.now + delay, self.seq), (message.to, message.clone()));
            }
        }
    }

    fn deliver(&mut self, to: u64, message: Message) {
        let running = self.members.get(&to).is_some_and(|m| m.node.is_some());
        let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        let from = message.from;
        if !running
            || self.isolated.contains(&to)
            || self.isolated.contains(&from)
            || self.cuts.contains(&(from, to))
        {
            if is_snapshot {
                self.report_snapshot_failed(from, to);
            }
            return;
        }
        *self
            .delivered
            .entry(message.get_msg_type() as i32)
            .or_default() += 1;
        if is_snapshot && is_engine_state(message.get_snapshot()) {
            let index = message.get_snapshot().get_metadata().index;
            let chunks = self
                .state_chunks
                .remove(&(from, to, index))
                .unwrap_or_default();
            for (seq, rows) in chunks.into_iter().enumerate() {
                let chunk = StateChunk {
                    from: MemberId(from),
                    index,
                    term: message.get_snapshot().get_metadata().term,
                    seq: seq as u64,
                    rows,
                };
                self.input(to, Input::StateChunk(chunk));
            }
        }
        self.input(to, Input::Peer(message));
        if is_snapshot {
            if let Some(m) = self.members.get_mut(&to) {
                m.snapshots_installed += 1;
            }
            self.input(
                from,
                Input::SnapshotReport {
                    to: MemberId(to),
                    ok: true,
                },
            );
        }
    }

    /// Feeds an input to a running member and carries out everything it asks.
    pub fn input(&mut self, id: u64, input: Input) {
        let now = self.now;
        let Some(node) = self.members.get_mut(&id).and_then(|m| m.node.as_mut()) else {
            return;
        };
        node.handle(now, input);
        self.drain(id);
        self.check_applied(id);
    }

    /// Records the entries member `id` applied since the last look, and fails if another member
    /// applied a different entry at the same index.
    fn check_applied(&mut self, id: u64) {
        let Some(node) = self.members.get(&id).and_then(|m| m.node.as_ref()) else {
            return;
        };
        let applied = node.applied_index();
        let from = self.checked_applied.get(&id).copied().unwrap_or(0);
        if applied <= from {
            return;
        }
        let snapshot = node.log().latest_snapshot().get_metadata();
        if snapshot.index > from && snapshot.index <= applied {
            if let Some(&(term, _, _)) = self.applied_log.get(&snapshot.index) {
                assert_eq!(
                    term, snapshot.term,
                    "member {id} holds a snapshot at index {} of term {} but term {term} was applied there",
                    snapshot.index, snapshot.term
                );
            }
        }
        let log = self.logs.entry(id).or_default();
        for index in from + 1..=applied {
            let Some(&record) = log.get(&index) else {
                self.applied_unchecked += 1; // it came in a snapshot
                continue;
            };
            let known = match self.applied_log.entry(index) {
                std::collections::btree_map::Entry::Vacant(vacant) => *vacant.insert(record),
                std::collections::btree_map::Entry::Occupied(occupied) => {
                    self.applied_compared += 1;
                    *occupied.get()
                }
            };
            assert_eq!(
                known, record,
                "member {id} applied (term, type, crc) {record:?} at index {index}, another member applied {known:?}"
            );
        }
        // Applied entries never change; only what follows them is still needed.
        *log = log.split_off(&(applied + 1));
        self.checked_applied.insert(id, applied);
    }

    fn drain(&mut self, id: u64) {
        loop {
            let Some(member) = self.members.get_mut(&id) else {
                return;
            };
            let Some(node) = member.node.as_mut() else {
                return;
            };
            let Some(output) = node.poll_output() else {
                return;
            };
            let line = format!("{} {}: {}", self.now.as_micros(), id, describe(&output));
            if std::env::var_os("STET_HARNESS_TRACE").is_some() {
                eprintln!("{line}");
            }
            self.trace.push(line);
            match output {
                Output::Persist(persist) => {
                    let log = self.logs.entry(id).or_default();
                    if persist.snapshot.is_some() {
                        log.clear();
                    }
                    if let Some(first) = persist.entries.first() {
                        log.split_off(&first.index);
                        log.extend(persist.entries.iter().map(|e| (e.index, applied_entry(e))));
                    }
                    let Some(Io::Persist(persist)) = self.queue_io(id, Io::Persist(persist)) else {
                        continue;
                    };
                    let member = self.members.get_mut(&id).expect("member");
                    let storage = member.storage.as_mut().expect("storage");
                    storage.persist(&persist).expect("persist");
                    let now = self.now;
                    member.node.as_mut().expect("running").handle(
                        now,
                        Input::Persisted {
                            ready_number: persist.ready_number,
                        },
                    );
                }
                Output::SaveSnapshot(snapshot) => {
                    let Some(Io::SaveSnapshot(snapshot)) =
                        self.queue_io(id, Io::SaveSnapshot(snapshot))
                    else {
                        continue;
                    };
                    let member = self.members.get_mut(&id).expect("member");
                    let storage = member.storage.as_mut().expect("storage");
                    storage.save_snapshot(&snapshot).expect("save snapshot");
                }
                Output::SendState { message, mut state } => {
                    let mut chunks = Vec::new();
                    while let Some(rows) =
                        state.next_chunk(HARNESS_STATE_CHUNK_BYTES).expect("export")
                    {
                        chunks.push(rows);
                    }
                    let index = message.get_snapshot().get_metadata().index;
                    self.state_chunks
                        .insert((message.from, message.to, index), chunks);
                    self.send_message(id, message);
                }
                Output::Send(message) => self.send_message(id, message),
                Output::Reply {
                    id: request,
                    result,
                } => {
                    self.replies.insert(request, result);
                    self.reply_times.insert(request, self.now);
                }
                Output::Watch { .. } => {}
                Output::LeaderChanged { term, leader } => {
                    if let Some(leader) = leader {
                        self.leaders_by_term
                            .entry(term)
                            .or_default()
                            .insert(leader.0);
                    }
                }
                Output::Removed => {
                    member.removed = true;
                }
                Output::Fatal { reason } => panic!("member {id} failed: {reason}"),
                Output::CloseFile(file) => file.close(),
                Output::CommitState { number, job } => {
                    job.run();
                    let now = self.now;
                    let member = self.members.get_mut(&id).expect("member");
                    let node = member.node.as_mut().expect("running");
                    node.handle(now, Input::StateCommitted { number });
                }
                // Tokens are the runtime's; the harness drives bare nodes.
                Output::Tokens(_) => {}
            }
        }
    }

    /// Sends a client request to a member; returns its id (the reply lands in `replies`).
    pub fn request(&mut self, to: u64, request: ClientRequest) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        if std::env::var_os("STET_HARNESS_TRACE").is_some() {
            let mut text = format!("{} -> {to}: request {id} {request:?}", self.now.as_micros());
            text.truncate(300);
            eprintln!("{text}");
        }
        self.input(to, Input::client(id, request));
        id
    }

    /// Sends a request and runs until it is answered.
    pub fn call(&mut self, to: u64, request: ClientRequest) -> Reply {
        let id = self.request(to, request);
        assert!(
            self.run_until(Duration::from_secs(10), |c| c.replies.contains_key(&id)),
            "request {id} to member {to} got no answer"
        );
        self.replies.remove(&id).expect("reply")
    }

    pub fn put(&mut self, to: u64, key: &str, value: &str) -> Reply {
        self.call(
            to,
            ClientRequest::Put(pb::PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            }),
        )
    }

    /// A serializable (local) read of one key on a member.
    pub fn local_get(&self, id: u64, key: &str) -> Option<Vec<u8>> {
        let range = pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            serializable: true,
            ..Default::default()
        };
        let response = self.node(id).state().kv.range(&range).ok()?;
        response.kvs.first().map(|kv| kv.value.clone())
    }

    /// A linearizable read through a member.
    pub fn get(&mut self, to: u64, key: &str) -> Option<Vec<u8>> {
        let range = pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        match self.call(to, ClientRequest::Range(range)) {
            Ok(ClientResponse::Range(r)) => r.kvs.first().map(|kv| kv.value.clone()),
            other => panic!("get failed: {other:?}"),
        }
    }

    /// Crashes a member: its process stops and its disk loses what was not synced.
    /// Writes of member `id` the slow disk has not carried out yet.
    pub fn pending_writes(&self, id: u64) -> usize {
        self.pending_io
            .values()
            .filter(|(member, _)| *member == id)
            .count()
    }

    pub fn crash(&mut self, id: u64) {
        self.crash_with(id, CrashFault::TearUnsynced);
    }

    /// Stops a member cleanly: what it wrote is synced first, and its engine closed (which makes
    /// its last commits durable), so nothing is lost.
    pub fn stop(&mut self, id: u64) {
        if let Some(member) = self.members.get_mut(&id) {
            if let Some(storage) = member.storage.as_mut() {
                storage.sync().expect("sync before a clean stop");
            }
            member.node = None;
        }
        self.crash_with(id, CrashFault::LoseUnsynced);
    }

    /// Crashes a member, its disks suffering `fault` to what was not synced.
    pub fn crash_with(&mut self, id: u64, fault: CrashFault) {
        let member = self.members.get_mut(&id).expect("member");
        member.power.cut();
        member.node = None;
        if let Some(storage) = member.storage.take() {
            let mut disk = storage.into_disk();
            disk.crash(fault, &mut self.rng);
            member.disk = Some(disk);
        }
        member.engine_disk.lock().crash(fault, &mut self.rng);
        let mut broken_snapshots = Vec::new();
        self.in_flight.retain(|_, (to, message)| {
            if *to == id && message.get_msg_type() == MessageType::MsgSnapshot {
                broken_snapshots.push(message.from);
            }
            *to != id
        });
        for from in broken_snapshots {
            self.report_snapshot_failed(from, id);
        }
        self.pending_io.retain(|_, (member, _)| *member != id);
        self.paused.remove(&id);
        self.checked_applied.remove(&id);
        self.logs.remove(&id);
    }

    /// Restarts a crashed member from its disk.
    pub fn restart(&mut self, id: u64) {
        self.restart_from_disk(id, false);
    }

    /// Restarts a crashed member from its disk with `--force-new-cluster`: it keeps its data and
    /// becomes the only member. It rewrites the log after its durable commit index, so the
    /// "applied entries never change" oracle forgets what other members applied beyond it.
    pub fn restart_forced(&mut self, id: u64) {
        self.restart_from_disk(id, true);
    }

    /// The applied index of a crashed member's engine file as a restart would find it (read from a
    /// copy, so the probe changes nothing).
    pub fn engine_applied_index(&self, id: u64) -> u64 {
        let copy = SharedDisk::new();
        *copy.lock() = self.members[&id].engine_disk.lock().clone();
        let engine = Engine::open(stet::disk::handles(&copy), Path::new(ENGINE_PATH), 1 << 20);
        engine.expect("open a copy of the engine").applied().index
    }

    /// Tries to restart a crashed member from its disk and returns why it refused; the member
    /// stays crashed (its disk as it was).
    pub fn restart_refusal(&mut self, id: u64) -> Option<String> {
        let now = self.now;
        let member = self.members.get_mut(&id).expect("member");
        let disk = member.disk.clone().expect("crashed member has a disk");
        let (_, durable) = reopen(disk, id, self.cluster_id);
        let engine = member.open_engine();
        let restarted = Node::restart(member.config.clone(), durable, engine, now, &self.logger);
        member.power.cut();
        restarted.err().map(|error| error.to_string())
    }

    fn restart_from_disk(&mut self, id: u64, force_new_cluster: bool) {
        let now = self.now;
        let member = self.members.get_mut(&id).expect("member");
        let disk = member.disk.take().expect("crashed member has a disk");
        let (storage, durable) = reopen(disk, id, self.cluster_id);
        // Each life of a member gets its own seed, as the node requires.
        member.config.seed = member.config.seed.wrapping_add(0x1_0000);
        let node = if force_new_cluster {
            let commit = durable.hard_state.commit;
            self.applied_log.split_off(&(commit + 1));
            let engine = member.open_engine();
            Node::restart_forced(member.config.clone(), durable, engine, now, &self.logger)
                .expect("restart with --force-new-cluster")
        } else {
            let engine = member.open_engine();
            Node::restart(member.config.clone(), durable, engine, now, &self.logger)
                .expect("restart")
        };
        let applied = node.applied_index();
        let log = node
            .log()
            .held_entries()
            .iter()
            .map(|e| (e.index, applied_entry(e)))
            .collect();
        self.logs.insert(id, log);
        member.node = Some(node);
        member.storage = Some(storage);
        self.checked_applied.insert(id, applied);
        self.drain(id);
        self.check_applied(id);
    }

    /// Starts a member that was added to the cluster, with an empty data dir.
    pub fn start_joining(&mut self, id: u64, seed: u64) {
        let config = self.config_for(id, seed);
        let metadata = Metadata {
            member_id: id,
            cluster_id: self.cluster_id.0,
        };
        let storage =
            MemberStorage::create(MemDisk::new(), layout(), metadata, wal_options()).unwrap();
        let mut member = Member::new(config.clone());
        let engine = member.open_engine();
        let node = Node::join(config, engine, self.now, &self.logger).expect("join");
        member.node = Some(node);
        member.storage = Some(storage);
        self.members.insert(id, member);
    }

    /// Each running member's KV hash at its current revision, keyed by member.
    pub fn kv_hashes(&self) -> BTreeMap<u64, (i64, u32)> {
        self.members
            .iter()
            .filter_map(|(id, m)| m.node.as_ref().map(|n| (*id, n)))
            .map(|(id, n)| {
                let kv = &n.state().kv;
                let revision = kv.current_revision();
                (id, (revision, kv.hash_kv(revision).map_or(0, |h| h.0)))
            })
            .collect()
    }

    /// One line per member with its raft state, for failure messages.
    pub fn describe_members(&self) -> String {
        let mut lines = Vec::new();
        for (id, member) in &self.members {
            let io = self.pending_io.values().filter(|(m, _)| m == id).count();
            let line = match &member.node {
                None => format!("member {id}: down"),
                Some(n) => format!(
                    "member {id}: {:?} term {} leader {:?} commit {} applied {} log {}..={} snapshot {} pending io {io} paused {}",
                    n.role(),
                    n.term(),
                    n.leader(),
                    n.commit_index(),
                    n.applied_index(),
                    raft::Storage::first_index(n.log()).unwrap_or(0),
                    raft::Storage::last_index(n.log()).unwrap_or(0),
                    n.log().latest_snapshot().get_metadata().index,
                    self.paused.contains(id),
                ),
            };
            lines.push(line);
        }
        lines.push(format!("{} messages in flight", self.in_flight.len()));
        lines.join("\n")
    }

    /// Asserts Raft's election safety over the whole run: at most one leader per term.
    pub fn assert_one_leader_per_term(&self) {
        for (term, leaders) in &self.leaders_by_term {
            assert!(leaders.len() <= 1, "term {term} had leaders {leaders:?}");
        }
    }

    /// A hash of the trace, to compare runs.
    pub fn trace_hash(&self) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        for line in &self.trace {
            hasher.update(line.as_bytes());
        }
        hasher.finalize()
    }
}

fn applied_entry(entry: &raft::eraftpb::Entry) -> AppliedEntry {
    (
        entry.term,
        entry.get_entry_type() as i32,
        crc32fast::hash(&entry.data),
    )
}

fn describe(output: &Output) -> String {
    match output {
        Output::Persist(p) => format!(
            "persist #{} entries={} hs={:?} snap={}",
            p.ready_number,
            p.entries.len(),
            p.hard_state.as_ref().map(|h| (h.term, h.vote, h.commit)),
            p.snapshot.is_some()
        ),
        Output::SaveSnapshot(s) => format!("save snapshot {}", s.get_metadata().index),
        Output::SendState { message: m, .. } => format!(
            "send state {}->{} index={}",
            m.from,
            m.to,
            m.get_snapshot().get_metadata().index
        ),
        Output::Send(m) => format!(
            "send {:?} {}->{} term={} index={} entries={}",
            m.get_msg_type(),
            m.from,
            m.to,
            m.term,
            m.index,
            m.entries.len()
        ),
        Output::Reply { id, result } => {
            if std::env::var_os("STET_HARNESS_TRACE").is_some() {
                let mut text = format!("reply {id} {result:?}");
                text.truncate(300);
                text
            } else {
                format!("reply {id} ok={}", result.is_ok())
            }
        }
        Output::Watch { stream, response } => {
            format!("watch {stream} events={}", response.events.len())
        }
        Output::LeaderChanged { term, leader } => format!("leader {term} {leader:?}"),
        Output::Removed => "removed".to_string(),
        Output::Fatal { reason } => format!("fatal {reason}"),
        Output::CloseFile(file) => format!("close {file:?}"),
        Output::Tokens(change) => format!("tokens {change:?}"),
        Output::CommitState { number, .. } => format!("commit state #{number}"),
    }
}
