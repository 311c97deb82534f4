//! A simulated member process: the real `stet::node::Node` and `stet::storage::MemberStorage` on a
//! `SharedDisk`, driven by the same loop the server runs — feed an input with the member's own time,
//! carry out every output in order, sleep until `poll_timeout` — plus simulated fsync latency, so a
//! crash can land between a write and its fsync. After every step it reports to the observer.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use madsim::net::Endpoint;
use protobuf::Message as _;
use rand::Rng;

use stet::node::{ClientRequest, Input, Node, Output};
use stet::proto::etcdserverpb::WatchResponse;
use stet::storage::MemberStorage;
use stet::time::Instant;
use stet::wal::Metadata;

use crate::disk::SharedDisk;
use crate::net::{
    self, ClientEnvelope, RaftFrame, ReplyEnvelope, WatchEnvelope, TAG_CLIENT, TAG_RAFT, TAG_REPLY,
    TAG_WATCH,
};
use crate::wait::Deadline;
use crate::world::{lock, CrashPoint, World};

enum Inbound {
    Raft(RaftFrame),
    /// Kept in the box it arrived in: the queue to the member then moves a small value.
    Client(Box<ClientEnvelope>),
}

struct Member {
    id: u64,
    world: Arc<World>,
    node: Node,
    storage: MemberStorage<SharedDisk>,
    endpoint: Arc<Endpoint>,
    /// Requests in flight: the node's request id → (client address, client's request id).
    clients: BTreeMap<u64, (SocketAddr, u64)>,
    /// Open watch streams: stream id → (client address, sequence number of its next response).
    streams: BTreeMap<u64, (SocketAddr, u64)>,
    /// Watch responses with events routed so far (the self-test drops one of them).
    routed_event_responses: u64,
    next_request: u64,
    last_applied: u64,
    last_revision: i64,
    last_compact: i64,
    /// Voters and learners of the raft configuration last seen.
    last_members: (Vec<u64>, Vec<u64>),
    crash_points_checked_at: u64,
    /// (applied index, revision, term, is leader) at the last report.
    last_reported: Option<(u64, i64, u64, bool)>,
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// The whole life of a member process: start (bootstrap, join or restart from disk), then serve
/// until removed, failed or killed.
pub async fn run(world: Arc<World>, id: u64) {
    let Some(mut member) = start(&world, id).await else {
        return;
    };
    let (tx, mut inbox) = mpsc::unbounded();
    spawn_receiver(member.endpoint.clone(), TAG_RAFT, tx.clone(), |payload| {
        payload
            .downcast::<RaftFrame>()
            .ok()
            .map(|f| Inbound::Raft(*f))
    });
    spawn_receiver(member.endpoint.clone(), TAG_CLIENT, tx, |payload| {
        payload
            .downcast::<ClientEnvelope>()
            .ok()
            .map(Inbound::Client)
    });
    let mut alarm = Alarm::default();
    loop {
        if !member.carry_out_outputs().await {
            break;
        }
        member.report();
        member.crash_points().await;
        let Some(deadline) = member.node.poll_timeout() else {
            break;
        };
        alarm.set(&world, id, deadline);
        // `select_biased!`, not `select!`: the latter shuffles branches with an RNG madsim does not
        // control, which made runs differ within one process.
        let input = futures::select_biased! {
            inbound = inbox.next() => match inbound {
                Some(inbound) => member.input_for(inbound),
                None => break,
            },
            _ = alarm.ring().fuse() => Some(Input::Tick),
        };
        if let Some(input) = input {
            let now = world.local_now(id);
            member.node.handle(now, input);
        }
    }
    member.report();
    let mut status = lock(&world.status);
    let entry = status.entry(id).or_default();
    entry.running = false;
    entry.is_leader = false;
}

/// The member's wake-up for `Input::Tick` at the node's deadline. The deadline is kept while the
/// node's deadline and the member's clock stay the same, rather than made anew each turn of the
/// loop (most turns end with an input, not the timer): each one registered a madsim timer that
/// later woke the member for nothing (`wait`).
#[derive(Default)]
struct Alarm {
    deadline: Option<Deadline>,
    /// The node deadline and clock shape (`World::clock_shape`) `deadline` was set for.
    set_for: Option<(Instant, (u64, i64, usize))>,
}

impl Alarm {
    /// Sets the alarm to ring when member `id`'s clock reaches `at`; a deadline set for the same
    /// `at` on the same clock that has not passed yet is kept.
    fn set(&mut self, world: &World, id: u64, at: Instant) {
        let set_for = Some((at, world.clock_shape(id)));
        let passed = self.deadline.as_ref().is_none_or(Deadline::has_passed);
        if set_for == self.set_for && !passed {
            return;
        }
        self.deadline = Some(Deadline::after(world.global_wait(id, at)));
        self.set_for = set_for;
    }

    /// Resolves once the alarm rings.
    fn ring(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| match &mut self.deadline {
            Some(deadline) => deadline.poll_passed(cx),
            None => Poll::Pending,
        })
    }
}

async fn start(world: &Arc<World>, id: u64) -> Option<Member> {
    let disk = world.disk(id);
    let layout = world.layout();
    let config = world.node_config(id);
    let now = world.local_now(id);
    let metadata = Metadata {
        member_id: id,
        cluster_id: world.cluster_id.0,
    };
    let (node, storage) = if MemberStorage::exists(&disk, &layout) {
        let opened = MemberStorage::open(disk, layout, world.wal_options(), Some(metadata));
        let (storage, durable, report) = match opened {
            Ok(opened) => opened,
            Err(error) => return refuse(world, id, format!("storage: {error}")),
        };
        if let Some(torn) = &report.torn_tail {
            world.trace(format!(
                "member {id} repaired a torn WAL tail: {} bytes at {}:{}",
                torn.bytes_dropped,
                torn.file.display(),
                torn.offset
            ));
        }
        let forced = {
            let mut force = lock(&world.force_new_cluster);
            let forced = *force == Some(id);
            if forced {
                *force = None;
            }
            forced
        };
        let restarted = if forced {
            crate::membership::restart_forced(world, id, config, durable, now, &logger())
        } else {
            Node::restart(config, durable, now, &logger())
        };
        match restarted {
            Ok(node) => (node, storage),
            Err(error) => return refuse(world, id, format!("restart: {error}")),
        }
    } else {
        let storage = match MemberStorage::create(disk, layout, metadata, world.wal_options()) {
            Ok(storage) => storage,
            Err(error) => return refuse(world, id, format!("create: {error}")),
        };
        let node = if world.initial.iter().any(|m| m.id == id) {
            Node::bootstrap(config, &world.initial, now, &logger())
        } else {
            Node::join(config, now, &logger())
        };
        match node {
            Ok(node) => (node, storage),
            Err(error) => return refuse(world, id, format!("start: {error}")),
        }
    };
    let endpoint = match Endpoint::bind(net::member_addr(id)).await {
        Ok(endpoint) => Arc::new(endpoint),
        Err(error) => return refuse(world, id, format!("bind: {error}")),
    };
    world.trace(format!(
        "member {id} started (applied index {})",
        node.applied_index()
    ));
    let last_applied = node.applied_index();
    Some(Member {
        id,
        world: world.clone(),
        node,
        storage,
        endpoint,
        clients: BTreeMap::new(),
        streams: BTreeMap::new(),
        routed_event_responses: 0,
        next_request: 1,
        last_applied,
        last_revision: 0,
        last_compact: 0,
        last_members: (Vec::new(), Vec::new()),
        crash_points_checked_at: 0,
        last_reported: None,
    })
}

fn refuse(world: &World, id: u64, reason: String) -> Option<Member> {
    world.trace(format!("member {id} refused to start: {reason}"));
    lock(&world.refused).insert(id, reason);
    None
}

fn spawn_receiver(
    endpoint: Arc<Endpoint>,
    tag: u64,
    tx: mpsc::UnboundedSender<Inbound>,
    parse: fn(madsim::net::Payload) -> Option<Inbound>,
) {
    madsim::task::spawn_local(async move {
        while let Ok((payload, _from)) = endpoint.recv_from_raw(tag).await {
            if let Some(inbound) = parse(payload) {
                if tx.unbounded_send(inbound).is_err() {
                    return;
                }
            }
        }
    });
}

impl Member {
    fn input_for(&mut self, inbound: Inbound) -> Option<Input> {
        match inbound {
            Inbound::Raft(frame) => match raft::eraftpb::Message::parse_from_bytes(&frame.bytes) {
                Ok(message) if message.to == self.id => Some(Input::Peer(message)),
                Ok(_) => None,
                Err(error) => {
                    self.world.trace(format!(
                        "member {} dropped an undecodable message: {error}",
                        self.id
                    ));
                    None
                }
            },
            Inbound::Client(envelope) => {
                match &envelope.request {
                    ClientRequest::WatchCreate { stream, .. } => {
                        self.streams
                            .entry(*stream)
                            .or_insert((envelope.reply_to, 0));
                    }
                    ClientRequest::WatchClose { stream } => {
                        self.streams.remove(stream);
                    }
                    _ => {}
                }
                let id = self.next_request;
                self.next_request += 1;
                self.clients
                    .insert(id, (envelope.reply_to, envelope.request_id));
                Some(Input::Client {
                    id,
                    request: envelope.request,
                })
            }
        }
    }

    /// Carries out every pending output in order. Returns false when the member must stop.
    async fn carry_out_outputs(&mut self) -> bool {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Persist(mut persist) => {
                    let must_sync = persist.must_sync || persist.snapshot.is_some();
                    persist.must_sync = false;
                    if let Some(snapshot) = &persist.snapshot {
                        self.world.trace(format!(
                            "member {} installs the leader's snapshot at index {}",
                            self.id,
                            snapshot.get_metadata().index
                        ));
                    }
                    // A received snapshot's file is made durable first; a crash in the latency
                    // that follows leaves a file the WAL does not mention (a crash mid-snapshot).
                    if let Some(snapshot) = &persist.snapshot {
                        if let Err(error) = self.storage.write_snapshot_file(snapshot) {
                            return self.stop(format!("saving a snapshot file failed: {error}"));
                        }
                        self.world
                            .maybe_crash_at(self.id, CrashPoint::SnapshotFile)
                            .await;
                        self.disk_latency().await;
                    }
                    // Written now; fsynced after the simulated latency, so a crash in between loses it.
                    let result = self.storage.persist_after_snapshot_file(&persist);
                    if let Err(error) = result {
                        return self.stop(format!("persist failed: {error}"));
                    }
                    if must_sync {
                        self.disk_latency().await;
                        if let Err(error) = self.storage.sync() {
                            return self.stop(format!("fsync failed: {error}"));
                        }
                    }
                    let now = self.world.local_now(self.id);
                    self.node.handle(
                        now,
                        Input::Persisted {
                            ready_number: persist.ready_number,
                        },
                    );
                }
                Output::SaveSnapshot(snapshot) => {
                    // File first, then (after a crash window) its WAL marker and the release of
                    // older WAL segments: a crash mid-snapshot must leave a member that restarts.
                    if let Err(error) = self.storage.write_snapshot_file(&snapshot) {
                        return self.stop(format!("saving a snapshot file failed: {error}"));
                    }
                    self.world
                        .maybe_crash_at(self.id, CrashPoint::SnapshotFile)
                        .await;
                    self.disk_latency().await;
                    if let Err(error) = self.storage.finish_own_snapshot(&snapshot) {
                        return self.stop(format!("saving a snapshot failed: {error}"));
                    }
                }
                Output::Send(message) => self.send(message).await,
                Output::Reply { id, result } => {
                    if let Some((addr, request_id)) = self.clients.remove(&id) {
                        let reply = ReplyEnvelope { request_id, result };
                        let _ = self
                            .endpoint
                            .send_to_raw(addr, TAG_REPLY, Box::new(reply))
                            .await;
                    }
                }
                Output::Watch { stream, response } => self.route_watch(stream, response).await,
                Output::LeaderChanged { term, leader } => {
                    let leader = leader.map_or(0, |l| l.0);
                    self.world.trace(format!(
                        "member {} sees leader {leader} in term {term}",
                        self.id
                    ));
                    if leader != 0 {
                        lock(&self.world.observer).leader(term, leader);
                    }
                }
                Output::Removed => {
                    self.world.trace(format!(
                        "member {}: this member has been permanently removed from the cluster. Exiting.",
                        self.id
                    ));
                    lock(&self.world.status).entry(self.id).or_default().removed = true;
                    return false;
                }
                Output::Fatal { reason } => return self.stop(reason),
            }
        }
        true
    }

    /// Offers the crash points "just applied a compaction" and "just applied a membership change".
    async fn crash_points(&mut self) {
        if self.node.applied_index() == self.crash_points_checked_at {
            return;
        }
        self.crash_points_checked_at = self.node.applied_index();
        let state = self.node.state();
        let compact = state.kv.compact_revision();
        let conf = self.node.log().conf_state();
        let compacted = compact != self.last_compact;
        let reconfigured =
            conf.voters != self.last_members.0 || conf.learners != self.last_members.1;
        if reconfigured {
            self.last_members = (conf.voters.clone(), conf.learners.clone());
        }
        self.last_compact = compact;
        if compacted {
            self.world
                .maybe_crash_at(self.id, CrashPoint::Compaction)
                .await;
        }
        if reconfigured {
            self.world
                .maybe_crash_at(self.id, CrashPoint::ConfChange)
                .await;
        }
    }

    /// Waits as long as an fsync takes (the member's process can be killed meanwhile).
    async fn disk_latency(&self) {
        let (low, high) = lock(&self.world.settings).fsync_latency_us;
        let latency = madsim::rand::thread_rng().gen_range(low..=high);
        Deadline::after(std::time::Duration::from_micros(latency)).await;
    }

    fn stop(&mut self, reason: String) -> bool {
        self.world
            .trace(format!("member {} stopped: {reason}", self.id));
        lock(&self.world.refused).insert(self.id, reason);
        false
    }

    async fn send(&mut self, message: raft::eraftpb::Message) {
        let to = message.to;
        let Ok(bytes) = message.write_to_bytes() else {
            return;
        };
        let frame = RaftFrame {
            from: self.id,
            bytes,
        };
        let duplicate = {
            let rate = lock(&self.world.settings).duplicate_rate;
            rate > 0.0 && madsim::rand::thread_rng().gen_bool(rate)
        };
        if duplicate {
            let copy = Box::new(frame.clone());
            let _ = self
                .endpoint
                .send_to_raw(net::member_addr(to), TAG_RAFT, copy)
                .await;
        }
        let _ = self
            .endpoint
            .send_to_raw(net::member_addr(to), TAG_RAFT, Box::new(frame))
            .await;
    }

    /// Sends a watch response to the client stream that opened the watch, numbered in stream order.
    async fn route_watch(&mut self, stream: u64, response: WatchResponse) {
        let Some((addr, seq)) = self.streams.get_mut(&stream) else {
            return;
        };
        if !response.events.is_empty() {
            self.routed_event_responses += 1;
            // Self-test of the watch oracle: lose the 10th response with events, as a bug would.
            if self.routed_event_responses == 10 && lock(&self.world.settings).drop_watch_event {
                self.world.trace(format!(
                    "member {} drops a watch response on stream {stream} (self-test)",
                    self.id
                ));
                return;
            }
        }
        let envelope = WatchEnvelope {
            stream,
            seq: *seq,
            response,
        };
        *seq += 1;
        let addr = *addr;
        let _ = self
            .endpoint
            .send_to_raw(addr, TAG_WATCH, Box::new(envelope))
            .await;
    }

    /// Reports the member's state and newly applied entries to the world and the observer.
    fn report(&mut self) {
        let node = &self.node;
        let applied = node.applied_index();
        let revision = node.state().kv.current_revision();
        let seen = (
            applied,
            revision,
            node.term(),
            node.role() == raft::StateRole::Leader,
        );
        if self.last_reported == Some(seen) {
            return; // nothing new since the last report (most inputs are heartbeats)
        }
        self.last_reported = Some(seen);
        {
            let mut observer = lock(&self.world.observer);
            let held = node.log().held_entries();
            let first = held.first().map_or(u64::MAX, |e| e.index);
            for index in (self.last_applied + 1)..=applied {
                // Entries already compacted away (a snapshot jump) are not compared.
                let Some(entry) = index
                    .checked_sub(first)
                    .and_then(|offset| held.get(offset as usize))
                else {
                    continue;
                };
                observer.applied(self.id, index, entry.term, crc32fast::hash(&entry.data));
            }
            if revision > self.last_revision {
                let kv = &node.state().kv;
                // Everything applied since the last report, for the watch oracle's authority.
                let from = (self.last_revision + 1).max(kv.compact_revision());
                if let Ok(events) = kv.events_since(from, &[0], &[0]) {
                    lock(&self.world.kv_events).record(self.id, from, revision, events);
                }
            }
            // Hashing the store is linear in its size: compare replicas on every 4th revision
            // (all members sample the same revisions, so every sampled one is still compared).
            if revision != self.last_revision && revision % 4 == 0 {
                let kv = &node.state().kv;
                if let Ok((hash, compact)) = kv.hash_kv(revision) {
                    observer.kv_hash(self.id, revision, compact, hash);
                }
            }
        }
        self.last_applied = applied;
        self.last_revision = revision;
        let mut status = lock(&self.world.status);
        let entry = status.entry(self.id).or_default();
        entry.running = true;
        entry.is_leader = node.role() == raft::StateRole::Leader;
        entry.term = node.term();
        entry.applied_index = applied;
        entry.revision = revision;
    }
}
