//! A deterministic in-process cluster for tests: real `Node`s with real WAL and snapshot code on
//! `MemDisk`s, wired by a message queue with seeded random delays, partitions and crashes. Plain
//! Rust, no async: the harness owns the clock and the order of everything, so a seed fixes a run.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use raft::eraftpb::{Message, MessageType};
use raft::StateRole;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use stet::disk::{CrashFault, MemDisk};
use stet::node::{
    ClientError, ClientRequest, ClientResponse, Input, Node, NodeConfig, Output, RequestId,
};
use stet::proto::etcdserverpb as pb;
use stet::storage::{MemberStorage, StorageLayout};
use stet::time::Instant;
use stet::types::{ClusterId, MemberId};
use stet::wal::{Metadata, WalOptions};

pub type Reply = Result<ClientResponse, ClientError>;

/// One simulated member: its node (absent while crashed) and its disk.
pub struct Member {
    pub node: Option<Node>,
    pub storage: Option<MemberStorage<MemDisk>>,
    pub disk: Option<MemDisk>,
    pub config: NodeConfig,
    pub removed: bool,
    pub snapshots_installed: u64,
}

struct InFlight {
    deliver_at: Instant,
    seq: u64,
    to: u64,
    message: Message,
}

/// A cluster of members on one simulated clock.
pub struct Cluster {
    pub members: BTreeMap<u64, Member>,
    pub now: Instant,
    rng: ChaCha8Rng,
    in_flight: Vec<InFlight>,
    seq: u64,
    /// Members cut off from everyone (both directions).
    pub isolated: BTreeSet<u64>,
    pub replies: BTreeMap<RequestId, Reply>,
    next_request: RequestId,
    /// Every observable step, for determinism checks.
    pub trace: Vec<String>,
    /// (term, leader) pairs ever reported, to check one leader per term.
    pub leaders_by_term: BTreeMap<u64, BTreeSet<u64>>,
    logger: slog::Logger,
    pub snapshot_count: u64,
    pub catch_up_entries: u64,
    cluster_id: ClusterId,
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

    pub fn with_snapshots(size: u64, seed: u64, snapshot_count: u64, catch_up: u64) -> Self {
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
            in_flight: Vec::new(),
            seq: 0,
            isolated: BTreeSet::new(),
            replies: BTreeMap::new(),
            next_request: 1,
            trace: Vec::new(),
            leaders_by_term: BTreeMap::new(),
            logger,
            snapshot_count,
            catch_up_entries: catch_up,
            cluster_id,
        };
        for &id in &ids {
            let config = cluster.config_for(id, seed);
            let metadata = Metadata {
                member_id: id,
                cluster_id: cluster_id.0,
            };
            let storage =
                MemberStorage::create(MemDisk::new(), layout(), metadata, wal_options()).unwrap();
            let node = Node::bootstrap(config.clone(), &initial, cluster.now, &cluster.logger)
                .expect("bootstrap");
            cluster.members.insert(
                id,
                Member {
                    node: Some(node),
                    storage: Some(storage),
                    disk: None,
                    config,
                    removed: false,
                    snapshots_installed: 0,
                },
            );
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
        config.snapshot_count = self.snapshot_count;
        config.catch_up_entries = self.catch_up_entries;
        config.request_timeout = Duration::from_secs(2);
        config.seed = seed.wrapping_mul(1_000_003).wrapping_add(id);
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
            .filter_map(|(id, m)| m.node.as_ref().and_then(|n| Some((n.poll_timeout()?, *id))))
            .min();
        let next_message = self
            .in_flight
            .iter()
            .enumerate()
            .min_by_key(|(_, f)| (f.deliver_at, f.seq))
            .map(|(i, f)| (f.deliver_at, i));
        let message_first = match (next_timer, next_message) {
            (Some((t, _)), Some((m, _))) => m <= t,
            (None, Some(_)) => true,
            _ => false,
        };
        if message_first {
            let (at, index) = next_message.expect("message");
            if at > until {
                return false;
            }
            self.now = self.now.max(at);
            let flight = self.in_flight.swap_remove(index);
            self.deliver(flight.to, flight.message);
            return true;
        }
        let Some((at, id)) = next_timer else {
            return false;
        };
        if at > until {
            return false;
        }
        self.now = self.now.max(at);
        self.input(id, Input::Tick);
        true
    }

    fn deliver(&mut self, to: u64, message: Message) {
        let running = self.members.get(&to).is_some_and(|m| m.node.is_some());
        if !running || self.isolated.contains(&to) || self.isolated.contains(&message.from) {
            return;
        }
        let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        let from = message.from;
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
            self.trace.push(format!(
                "{} {}: {}",
                self.now.as_micros(),
                id,
                describe(&output)
            ));
            match output {
                Output::Persist(persist) => {
                    let storage = member.storage.as_mut().expect("storage");
                    storage.persist(&persist).expect("persist");
                    let now = self.now;
                    node.handle(
                        now,
                        Input::Persisted {
                            ready_number: persist.ready_number,
                        },
                    );
                }
                Output::SaveSnapshot(snapshot) => {
                    let storage = member.storage.as_mut().expect("storage");
                    storage.save_snapshot(&snapshot).expect("save snapshot");
                }
                Output::Send(message) => {
                    let delay = Duration::from_micros(self.rng.gen_range(500..3_000));
                    self.seq += 1;
                    if !self.isolated.contains(&id) {
                        self.in_flight.push(InFlight {
                            deliver_at: self.now + delay,
                            seq: self.seq,
                            to: message.to,
                            message,
                        });
                    }
                }
                Output::Reply {
                    id: request,
                    result,
                } => {
                    self.replies.insert(request, result);
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
            }
        }
    }

    /// Sends a client request to a member; returns its id (the reply lands in `replies`).
    pub fn request(&mut self, to: u64, request: ClientRequest) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.input(to, Input::Client { id, request });
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
    pub fn crash(&mut self, id: u64) {
        let member = self.members.get_mut(&id).expect("member");
        member.node = None;
        if let Some(storage) = member.storage.take() {
            let mut disk = storage.into_disk();
            disk.crash(CrashFault::TearUnsynced, &mut self.rng);
            member.disk = Some(disk);
        }
        self.in_flight.retain(|f| f.to != id);
    }

    /// Restarts a crashed member from its disk.
    pub fn restart(&mut self, id: u64) {
        let now = self.now;
        let member = self.members.get_mut(&id).expect("member");
        let disk = member.disk.take().expect("crashed member has a disk");
        let expected = Metadata {
            member_id: id,
            cluster_id: self.cluster_id.0,
        };
        let (storage, durable, _report) =
            MemberStorage::open(disk, layout(), wal_options(), Some(expected)).expect("reopen");
        // Each life of a member gets its own seed, as the node requires.
        member.config.seed = member.config.seed.wrapping_add(0x1_0000);
        let node =
            Node::restart(member.config.clone(), durable, now, &self.logger).expect("restart");
        member.node = Some(node);
        member.storage = Some(storage);
        self.drain(id);
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
        let node = Node::join(config.clone(), self.now, &self.logger).expect("join");
        self.members.insert(
            id,
            Member {
                node: Some(node),
                storage: Some(storage),
                disk: None,
                config,
                removed: false,
                snapshots_installed: 0,
            },
        );
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
        Output::Send(m) => format!(
            "send {:?} {}->{} term={} index={} entries={}",
            m.get_msg_type(),
            m.from,
            m.to,
            m.term,
            m.index,
            m.entries.len()
        ),
        Output::Reply { id, result } => format!("reply {id} ok={}", result.is_ok()),
        Output::Watch { stream, response } => {
            format!("watch {stream} events={}", response.events.len())
        }
        Output::LeaderChanged { term, leader } => format!("leader {term} {leader:?}"),
        Output::Removed => "removed".to_string(),
        Output::Fatal { reason } => format!("fatal {reason}"),
    }
}
