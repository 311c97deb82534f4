//! `Node`: one member's sans-IO core. It wraps raft-rs's `RawNode` (pre-vote and check-quorum on)
//! and the replicated `StateMachine`, and is driven in the style of quinn-proto:
//! `handle(now, input)`, then drain `poll_output()`, then sleep until `poll_timeout()`.
//!
//! One function, `process_ready`, owns the order of side effects for each raft `Ready`: record what
//! must be persisted and ask the driver to persist it, send what may be sent now, hold back messages
//! that depend on unpersisted state until the driver reports `Persisted`, and apply only committed
//! entries (raft-rs hands out committed entries only once they are persisted locally).

pub mod config;
/// The request types live below the node and the state machine; kept reachable here.
pub use crate::request;

mod apply;
mod bootstrap;
mod client;
mod defrag;
mod engine_commit;
mod peer;
mod quota;
mod state_transfer;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use raft::eraftpb::{Entry, HardState, Message, Snapshot};
use raft::{RawNode, StateRole};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::auth::{AuthInfo, TokenChange};
pub use crate::engine::Engine;
use crate::proto::etcdserverpb as pb;
use crate::raftlog::LogStore;
use crate::state::StateMachine;
use crate::time::Instant;
use crate::types::MemberId;
use crate::watch::{StreamId, WatchHub};

pub use bootstrap::{DurableState, StartError};
pub use config::{NodeConfig, DEFAULT_QUOTA_BACKEND_BYTES};
pub use peer::BadPeerMessage;
pub use request::{ClientError, ClientRequest, ClientResponse, HashKvStepped, RequestId};
pub use state_transfer::{is_engine_state, StateChunk, ENGINE_STATE};

/// Something that happened outside the node.
#[derive(Debug, Clone)]
pub enum Input {
    /// Only time passed (the node ticks raft and expires requests and leases from `now`).
    Tick,
    /// A raft message from a peer.
    Peer(Message),
    /// A request from a client of this member, made by `caller` (the user and auth revision
    /// the runtime resolved from its token or client certificate; `None` without credentials).
    Client {
        id: RequestId,
        request: ClientRequest,
        caller: Option<AuthInfo>,
    },
    /// Everything in `Output::Persist` up to and including this ready number is durable.
    Persisted { ready_number: u64 },
    /// The job of `Output::CommitState` with this number ran (its result is in the job).
    StateCommitted { number: u64 },
    /// The transport could not reach a peer.
    Unreachable(MemberId),
    /// A snapshot sent to a peer was delivered (`ok`) or failed.
    SnapshotReport { to: MemberId, ok: bool },
    /// Hand leadership to another member (etcd's MoveLeader).
    TransferLeader(MemberId),
    /// Rows of the state a leader sends ahead of its `MsgSnapshot`.
    StateChunk(StateChunk),
}

impl Input {
    /// A request without credentials (the runtime's own, and tests').
    pub fn client(id: RequestId, request: ClientRequest) -> Input {
        Input::Client {
            id,
            request,
            caller: None,
        }
    }
}

/// Outputs that may wait to be polled. Each input produces a bounded number (raft's messages and
/// entries are bounded by its inflight and size limits, replies by the pending requests), and the
/// driver polls them all between turns; more than this means a driver that stopped polling.
pub const MAX_QUEUED_OUTPUTS: usize = 1 << 20;

/// A persist the driver has not reported durable yet: the messages that wait for it, and the
/// hard state it writes.
#[derive(Debug)]
struct Unpersisted {
    number: u64,
    messages: Vec<Message>,
    hard_state: Option<HardState>,
}

/// What the node counts on being durable: everything the driver reported persisted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DurableMarks {
    /// The last log index known durable (raft's persisted index).
    pub persisted_index: u64,
    /// The newest hard state (term, vote, commit) known durable.
    pub hard_state: HardState,
}

/// What the driver must persist before reporting `Input::Persisted { ready_number }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Persist {
    pub ready_number: u64,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    /// A snapshot received from the leader: save its file and a WAL snapshot marker.
    pub snapshot: Option<Snapshot>,
    /// Whether the write must be fsynced before it is acknowledged.
    pub must_sync: bool,
}

/// Something the driver must do, in the order the node emits them.
#[derive(Debug)]
pub enum Output {
    Persist(Persist),
    /// A snapshot of this member's own state: save its file, then the WAL may drop entries before it.
    SaveSnapshot(Snapshot),
    Send(Message),
    /// Send a `MsgSnapshot` whose state is this member's engine: every chunk of `state`, in
    /// order, then the message, on one connection; then report the snapshot's fate.
    SendState {
        message: Message,
        state: crate::engine::Export,
    },
    Reply {
        id: RequestId,
        result: Result<ClientResponse, ClientError>,
    },
    Watch {
        stream: StreamId,
        response: pb::WatchResponse,
    },
    /// The leader changed (or was lost).
    LeaderChanged {
        term: u64,
        leader: Option<MemberId>,
    },
    /// "this member has been permanently removed from the cluster. Exiting." The node stops.
    Removed,
    /// The node hit state it cannot serve from (a corrupt snapshot from the leader); it stops.
    Fatal {
        reason: String,
    },
    /// An engine file a defragmentation replaced, no longer read: close it where blocking is
    /// allowed (that frees its blocks).
    CloseFile(crate::engine::RetiredFile),
    /// An applied entry issued or ended login tokens: every member keeps its own table.
    Tokens(TokenChange),
    /// Run `job` where blocking is allowed — it writes a commit of the applied state to the
    /// engine's file — then hand in `Input::StateCommitted { number }`. Until then the node
    /// goes on; if it needs the engine to itself first, it runs or waits for the job itself.
    CommitState {
        number: u64,
        job: crate::engine::CommitJob,
    },
}

/// A client request waiting for raft.
#[derive(Debug, Clone)]
struct Pending {
    deadline: Instant,
    kind: PendingKind,
}

#[derive(Debug, Clone)]
enum PendingKind {
    /// A proposal raft has taken (`waiting: None`), or one it dropped for want of a leader, kept to
    /// propose again as soon as a leader is known.
    Write { waiting: Option<Proposal> },
    Read {
        request: ReadRequest,
        /// The read index once raft confirmed leadership; `None` while waiting.
        index: Option<u64>,
    },
}

/// A request served once raft confirmed this member's leadership (ReadIndex) and the member has
/// applied everything committed before it arrived: linearizable reads, and the lease requests only
/// the leader answers, which must see every revoke committed before them.
#[derive(Debug, Clone)]
enum ReadRequest {
    /// A range, checked against the auth store for its caller when it is served.
    Range(pb::RangeRequest, Option<AuthInfo>),
    /// A linearizable first part of a range read in parts (`ClientRequest::RangePart`).
    RangePart(pb::RangeRequest, Option<AuthInfo>),
    KeepAlive(i64),
    TimeToLive(pb::LeaseTimeToLiveRequest),
    /// `MemberList` with etcd 3.5's `linearizable`: no older membership than any committed.
    MemberList,
}

/// A proposal, kept while no leader is known.
#[derive(Debug, Clone)]
enum Proposal {
    Normal(Vec<u8>),
    ConfChange(raft::eraftpb::ConfChange),
}

/// One member's core.
pub struct Node {
    config: NodeConfig,
    raw: RawNode<LogStore>,
    state: StateMachine,
    watches: WatchHub,
    rng: ChaCha8Rng,
    outputs: VecDeque<Output>,
    now: Instant,
    next_tick_at: Instant,
    next_progress_at: Instant,
    election_timeout_ticks: usize,
    /// Requests waiting for raft, by request id; `deadlines` orders them for expiry.
    pending: BTreeMap<RequestId, Pending>,
    deadlines: BTreeSet<(Instant, RequestId)>,
    /// Applied `physical` compactions, answered once compaction's deletes are all committed
    /// (`engine_commit`); at most `max_pending_requests`.
    physical_compactions: Vec<(RequestId, Result<ClientResponse, ClientError>)>,
    /// How many of `pending` are writes (proposals).
    pending_writes: usize,
    /// Writes that reached their deadline unapplied (etcd's failed proposals), since start.
    proposals_failed: u64,
    /// Persist outputs not yet acknowledged, with the messages that must wait for them.
    unpersisted: VecDeque<Unpersisted>,
    /// The newest hard state reported durable (`Input::Persisted`).
    durable_hard_state: HardState,
    /// The newest ready number reported durable; reports only grow.
    persisted_ready: u64,
    applied_index: u64,
    snapshot_index: u64,
    role: StateRole,
    leader: u64,
    removed: bool,
    failed: bool,
    /// Drawn at start: stamps this life's proposals and read contexts.
    incarnation: u64,
    /// A leader became known while handling a Ready: kept proposals go out once it is advanced.
    leader_appeared: bool,
    /// Raft dropped a proposal during the inputs being handled (no leader known at the time).
    proposal_dropped: bool,
    /// Peer messages dropped before raft saw them, and why the last one was.
    dropped_peer_messages: u64,
    last_bad_peer_message: Option<BadPeerMessage>,
    /// Read contexts this member's raft has been asked about, bounded, oldest first.
    seen_read_contexts: BTreeSet<Vec<u8>>,
    seen_read_order: VecDeque<Vec<u8>>,
    /// The next read attempt's number: every ReadIndex request gets a context never used before.
    next_read_attempt: u64,
    /// Read attempt (one ReadIndex round) → the reads it serves, until answered or all finished.
    read_attempts: BTreeMap<u64, Vec<RequestId>>,
    /// Reads that came in while a round was in flight: they wait for the next one, since a round
    /// started before a read arrived may not see writes that finished before it.
    read_queue: Vec<RequestId>,
    /// The newest round in flight, and when it was asked for.
    read_round: Option<(u64, Instant)>,
    /// The round in flight was asked of this member as a leader that had not committed in its
    /// term yet: raft dropped it.
    read_round_dropped: bool,
    /// Since when applied changes wait for their commit to the storage engine.
    uncommitted_since: Option<Instant>,
    /// The commit of the applied state being written off the node's thread, if one is.
    state_commit: Option<engine_commit::InFlight>,
    /// How many commits were handed to the driver to write (the last one's number).
    state_commits_started: u64,
    /// A periodic snapshot waiting for the durable commit (by number) that makes the state it
    /// stands for durable in the engine: saved once that commit is taken in.
    snapshot_commit: Option<(u64, Snapshot)>,
    /// The applied index as of the engine's last durable commit: a crash replays the WAL after it.
    state_durable_index: u64,
    /// Revisions compaction dropped that commits deleted from the engine since its last durable
    /// commit: they count toward the next durable one as applied entries do, so the flush of
    /// a large compaction's deletes is spread over many commits, not left to one.
    deletes_since_durable: u64,
    /// The view of the engine the latest snapshot stands for, if it was taken to send.
    state_view: Option<state_transfer::StateView>,
    /// The state a leader is sending this member, staged chunk by chunk.
    incoming_state: Option<state_transfer::Incoming>,
    /// Chunks of a sent state the engine refused, and why the last one was.
    dropped_state_chunks: u64,
    last_refused_state: Option<String>,
    /// When this member last proposed its NOSPACE alarm (see `quota`).
    no_space_proposed_at: Option<Instant>,
    /// Defragment requests waiting for the online defragmentation under way (see `defrag`).
    defrag_waiters: Vec<RequestId>,
}

/// How many forwarded read contexts a member remembers to refuse duplicates.
const SEEN_READ_CONTEXTS: usize = 16_384;

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.config.id)
            .field("role", &self.role)
            .field("term", &self.raw.raft.term)
            .field("applied_index", &self.applied_index)
            .finish_non_exhaustive()
    }
}

impl Node {
    fn from_parts(
        config: NodeConfig,
        store: LogStore,
        state: StateMachine,
        applied_index: u64,
        now: Instant,
        logger: &slog::Logger,
    ) -> Result<Self, raft::Error> {
        let election_ticks = config.election_ticks();
        let raft_config = raft::Config {
            id: config.id.0,
            election_tick: election_ticks,
            heartbeat_tick: 1,
            min_election_tick: election_ticks,
            max_election_tick: 2 * election_ticks,
            applied: applied_index,
            max_size_per_msg: config.max_size_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let raw = RawNode::new(&raft_config, store, logger)?;
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let role = raw.raft.state;
        let next_tick_at = now + config.heartbeat_interval;
        let next_progress_at = now + config.watch_progress_interval;
        let mut node = Node {
            raw,
            state,
            watches: WatchHub::with_max_events(config.watch_max_events_per_response),
            rng,
            outputs: VecDeque::new(),
            now,
            next_tick_at,
            next_progress_at,
            election_timeout_ticks: election_ticks,
            pending: BTreeMap::new(),
            pending_writes: 0,
            proposals_failed: 0,
            deadlines: BTreeSet::new(),
            physical_compactions: Vec::new(),
            unpersisted: VecDeque::new(),
            durable_hard_state: HardState::default(),
            persisted_ready: 0,
            applied_index,
            snapshot_index: applied_index,
            role,
            leader: 0,
            removed: false,
            failed: false,
            incarnation: 0,
            leader_appeared: false,
            proposal_dropped: false,
            dropped_peer_messages: 0,
            last_bad_peer_message: None,
            seen_read_contexts: BTreeSet::new(),
            seen_read_order: VecDeque::new(),
            next_read_attempt: 1,
            read_attempts: BTreeMap::new(),
            read_queue: Vec::new(),
            read_round: None,
            read_round_dropped: false,
            uncommitted_since: None,
            state_commit: None,
            state_commits_started: 0,
            snapshot_commit: None,
            state_durable_index: applied_index,
            deletes_since_durable: 0,
            state_view: None,
            incoming_state: None,
            dropped_state_chunks: 0,
            last_refused_state: None,
            no_space_proposed_at: None,
            defrag_waiters: Vec::new(),
            config,
        };
        node.incarnation = node.rng.gen();
        node.draw_election_timeout();
        Ok(node)
    }

    /// This member's ID.
    pub fn id(&self) -> MemberId {
        self.config.id
    }

    /// The node's settings.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The raft role this member holds now.
    pub fn role(&self) -> StateRole {
        self.role
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<MemberId> {
        (self.leader != 0).then_some(MemberId(self.leader))
    }

    /// The current raft term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The highest log index known committed.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The highest log index applied to the state machine.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The replicated state as applied so far.
    pub fn state(&self) -> &StateMachine {
        &self.state
    }

    /// The in-memory raft log.
    pub fn log(&self) -> &LogStore {
        self.raw.store()
    }

    /// Whether this member learned it was removed from the cluster.
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// Whether the node stopped on state it cannot serve from.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Requests still waiting for an answer.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Writes waiting to be applied (etcd's pending proposals).
    pub fn pending_proposals(&self) -> usize {
        self.pending_writes
    }

    /// Writes that failed by reaching their deadline unapplied, since this node started.
    pub fn proposals_failed(&self) -> u64 {
        self.proposals_failed
    }

    /// Feeds one input to the node at time `now`.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.handle_all(now, std::iter::once(input));
    }

    /// Feeds inputs that arrived together, in order, at time `now`, then handles what raft made
    /// of all of them at once: the proposals of a batch of client requests become one `Persist`
    /// (one WAL write, one fsync) and one append message per follower.
    pub fn handle_all(&mut self, now: Instant, inputs: impl IntoIterator<Item = Input>) {
        assert!(
            now >= self.now,
            "the driver's clock went backwards: {now:?} after {:?}",
            self.now
        );
        self.now = now;
        if !self.removed && !self.failed {
            self.trim_log();
            self.advance_time();
        }
        self.proposal_dropped = false;
        let mut turn = false;
        for input in inputs {
            if self.removed || self.failed {
                if let Input::Client { id, .. } = input {
                    self.reply(id, Err(ClientError::Stopped));
                }
                continue;
            }
            turn |= matches!(input, Input::Tick | Input::Persisted { .. });
            if matches!(input, Input::Client { .. }) && self.raw.raft.state != self.role {
                // The time that passed or an earlier input changed raft's role: a request must
                // see the role raft has now (a leader-only one would be refused as NotLeader
                // right after an election this member won), as it did with a ready per input.
                self.process_ready();
            }
            self.take_input(input);
        }
        if std::mem::take(&mut self.proposal_dropped) && self.raw.raft.leader_id != 0 {
            // The leader went and came back within these inputs: the ready below shows no
            // change of leader, so nothing else would propose what was dropped meanwhile.
            self.propose_waiting();
        }
        self.process_ready();
        if !self.removed && !self.failed {
            self.maybe_snapshot();
        }
        if !self.stopped_on_storage_failure() && !self.removed {
            self.commit_state_if_due();
            if turn {
                self.step_defragment();
            }
            // A view may have ended since the last commit (a snapshot sent, a watch caught up):
            // an idle member releases the file it read too.
            for file in self.state.kv.take_closable_files() {
                self.outputs.push_back(Output::CloseFile(file));
            }
        }
        assert!(
            self.outputs.len() <= MAX_QUEUED_OUTPUTS,
            "{} outputs queued: the driver must drain them between calls of `handle`",
            self.outputs.len()
        );
    }

    /// Steps one input into raft or the node's own state; its outputs wait for `process_ready`.
    fn take_input(&mut self, input: Input) {
        match input {
            Input::Tick => {}
            Input::Peer(message) => self.on_peer_message(message),
            Input::Client {
                id,
                request,
                caller,
            } => self.on_client_request(id, request, caller),
            Input::Persisted { ready_number } => self.on_persisted(ready_number),
            Input::StateCommitted { number } => self.on_state_committed(number),
            Input::Unreachable(peer) => self.raw.report_unreachable(peer.0),
            Input::SnapshotReport { to, ok } => {
                let status = if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to.0, status);
            }
            Input::TransferLeader(to) => self.raw.transfer_leader(to.0),
            Input::StateChunk(chunk) => self.on_state_chunk(chunk),
        }
    }

    /// Peer messages dropped because no correct peer sends them, and why the last one was.
    pub fn dropped_peer_messages(&self) -> (u64, Option<&BadPeerMessage>) {
        (
            self.dropped_peer_messages,
            self.last_bad_peer_message.as_ref(),
        )
    }

    /// Steps a peer message into raft, unless it is one raft-rs would panic on (see `peer`).
    fn on_peer_message(&mut self, mut message: Message) {
        let last_index = self.raw.raft.raft_log.last_index();
        if message.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat {
            // A leader claims more than this log holds only if this member acknowledged entries
            // it then lost; committing what it does hold (a matched prefix) keeps it in the cluster.
            message.commit = message.commit.min(last_index);
        }
        if message.get_msg_type() == raft::eraftpb::MessageType::MsgReadIndex
            && !self.first_sight_of_read_context(&message)
        {
            self.dropped_peer_messages += 1;
            return;
        }
        if message.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot
            && !self.state_received_for(&message)
        {
            // Its state did not arrive whole: raft must not take it. The leader tries again.
            self.dropped_peer_messages += 1;
            return;
        }
        let is_leader = self.raw.raft.state == StateRole::Leader;
        if let Err(bad) = peer::check(&message, self.config.id.0, last_index, is_leader) {
            self.dropped_peer_messages += 1;
            self.last_bad_peer_message = Some(bad);
            return;
        }
        // Errors here are messages raft refuses (e.g. from unknown peers); dropping them is what
        // raft expects.
        let _ = self.raw.step(message);
    }

    /// Whether a forwarded ReadIndex request's context is new. raft-rs counts heartbeat acks by
    /// context, so a context it saw before (a duplicated packet) could be confirmed by acks from the
    /// earlier round — acks that prove nothing about leadership now — and answer a stale read.
    /// Every read attempt gets a fresh context, so only duplicates are refused.
    fn first_sight_of_read_context(&mut self, message: &Message) -> bool {
        let Some(ctx) = message.entries.first().map(|e| e.data.to_vec()) else {
            return false;
        };
        if !self.seen_read_contexts.insert(ctx.clone()) {
            return false;
        }
        self.seen_read_order.push_back(ctx);
        if self.seen_read_order.len() > SEEN_READ_CONTEXTS {
            if let Some(oldest) = self.seen_read_order.pop_front() {
                self.seen_read_contexts.remove(&oldest);
            }
        }
        true
    }

    /// What the node counts on being durable (for a simulator's durability oracle).
    pub fn durable_marks(&self) -> DurableMarks {
        DurableMarks {
            persisted_index: self.raw.raft.raft_log.persisted,
            hard_state: self.durable_hard_state.clone(),
        }
    }

    /// Whether outputs wait to be polled.
    pub fn has_outputs(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// The next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The writes a restart queued ahead of everything else (ready number 0, never reported
    /// back), for a caller that makes them durable itself before the driver runs: a forced start
    /// writes them, then its new cluster ID.
    pub fn take_start_persists(&mut self) -> Vec<Persist> {
        let mut taken = Vec::new();
        while matches!(self.outputs.front(), Some(Output::Persist(p)) if p.ready_number == 0) {
            if let Some(Output::Persist(persist)) = self.outputs.pop_front() {
                taken.push(persist);
            }
        }
        taken
    }

    /// When the node next needs `handle(now, Input::Tick)` even if nothing else happens; `None`
    /// once it has stopped (removed from the cluster, or failed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.removed || self.failed {
            return None;
        }
        let mut at = self.next_tick_at.min(self.next_progress_at);
        if let Some((deadline, _)) = self.deadlines.first() {
            at = at.min(*deadline);
        }
        if self.role == StateRole::Leader {
            if let Some(expiry) = self.state.lessor.next_expiry() {
                at = at.min(expiry.max(self.now));
            }
        }
        if let Some(due) = self.state_commit_due() {
            at = at.min(due.max(self.now));
        }
        if self.defragment_due() {
            at = self.now;
        }
        Some(at)
    }

    /// Ticks raft for every heartbeat interval that passed, expires overdue requests and, on the
    /// leader, proposes revokes for expired leases.
    fn advance_time(&mut self) {
        let interval = self.config.heartbeat_interval;
        if self.now >= self.next_tick_at {
            // One tick however long the stall (a paused process, a clock jump), as etcd's ticker
            // delivers at most one pending tick: a burst would expire elections and leases at once.
            self.tick();
            self.next_tick_at = self.next_tick_at + interval;
            if self.next_tick_at <= self.now {
                self.next_tick_at = self.now + interval;
            }
            self.reissue_stale_reads();
            self.check_own_file_against_quota();
        }
        self.expire_requests();
        if self.now >= self.next_progress_at {
            self.next_progress_at = self.now + self.config.watch_progress_interval;
            let revision = self.state.kv.current_revision();
            for (stream, response) in self.watches.periodic_progress(revision) {
                self.emit_watch(stream, response);
            }
        }
        if self.role == StateRole::Leader {
            self.revoke_expired_leases();
            if self.config.auto_promote_learners {
                self.promote_caught_up_learners();
            }
        }
    }

    /// Draws this node's own randomized election timeout, in [election, 2 * election) ticks.
    fn draw_election_timeout(&mut self) {
        let ticks = self.config.election_ticks();
        self.election_timeout_ticks = self.rng.gen_range(ticks..2 * ticks);
    }

    /// One raft tick. raft-rs draws its randomized election timeout from a global RNG, which would
    /// make runs irreproducible; it only reads that value while ticking, so the node sets its own
    /// seeded draw right before every tick, drawing anew whenever raft restarted its election clock.
    fn tick(&mut self) {
        if self.raw.raft.election_elapsed == 0 {
            self.draw_election_timeout();
        }
        self.raw
            .raft
            .set_randomized_election_timeout(self.election_timeout_ticks);
        self.raw.tick();
    }

    fn on_persisted(&mut self, ready_number: u64) {
        if ready_number == 0 {
            return;
        }
        assert!(
            ready_number > self.persisted_ready,
            "persisted ready numbers only grow: {ready_number} after {}",
            self.persisted_ready
        );
        self.persisted_ready = ready_number;
        self.raw.on_persist_ready(ready_number);
        self.report_applied();
        while let Some(front) = self.unpersisted.front() {
            if front.number > ready_number {
                break;
            }
            if let Some(done) = self.unpersisted.pop_front() {
                if let Some(hard_state) = done.hard_state {
                    self.durable_hard_state = hard_state;
                }
                self.send_all(done.messages);
            }
        }
    }

    /// Handles every pending raft `Ready` in the order raft-rs requires.
    fn process_ready(&mut self) {
        while !self.removed && !self.failed && self.raw.has_ready() {
            let mut ready = self.raw.ready();

            if let Some(soft) = ready.ss() {
                let (role, leader) = (soft.raft_state, soft.leader_id);
                self.on_soft_state(role, leader);
            }
            for read in ready.take_read_states() {
                self.on_read_state(read.index, &read.request_ctx);
            }
            // Leaders may send before persisting (raft thesis 10.2.1).
            self.send_all(ready.take_messages());

            let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
            if let Some(snapshot) = &snapshot {
                if !self.install_leader_snapshot(snapshot) {
                    return;
                }
            }
            let entries = ready.entries().clone();
            if let Err(error) = self.raw.mut_store().append(&entries) {
                self.fail(format!("raft log append failed: {error}"));
                return;
            }
            let hard_state = ready.hs().cloned();
            if let Some(hs) = &hard_state {
                self.raw.mut_store().set_hard_state(hs.clone());
            }

            let number = ready.number();
            let had_snapshot = snapshot.is_some();
            let held = ready.take_persisted_messages();
            let must_persist = snapshot.is_some() || !entries.is_empty() || hard_state.is_some();
            if must_persist {
                self.unpersisted.push_back(Unpersisted {
                    number,
                    messages: held,
                    hard_state: hard_state.clone(),
                });
                self.outputs.push_back(Output::Persist(Persist {
                    ready_number: number,
                    hard_state,
                    entries,
                    snapshot,
                    must_sync: ready.must_sync(),
                }));
            } else if let Some(last) = self.unpersisted.back_mut() {
                last.messages.extend(held);
            } else {
                self.send_all(held);
            }

            let committed = ready.take_committed_entries();
            self.raw.advance_append_async(ready);
            if had_snapshot {
                self.after_leader_snapshot();
            }
            self.apply_entries(committed);
            if self.stopped_on_storage_failure() {
                return;
            }
            self.report_applied();
            self.reissue_reads_dropped_by_new_leader();
            self.serve_ready_reads();
            if !self.removed && !self.failed {
                self.maybe_snapshot();
            }
            if std::mem::take(&mut self.leader_appeared) {
                self.propose_waiting();
            }
        }
    }

    /// After the state jumped to a snapshot from the leader: watchers catch up from its history,
    /// and a member the snapshot says was removed stops.
    fn after_leader_snapshot(&mut self) {
        self.watches.resync(&self.state.kv);
        self.stop_if_removed();
    }

    /// Watch streams behind the current revision, waiting for the runtime to ask for their
    /// catch-up (`ClientRequest::WatchCatchUp`) when they have room.
    pub fn lagging_watch_streams(&self) -> Vec<StreamId> {
        self.watches.lagging_streams()
    }

    /// Emits `Removed` (once) if the replicated membership says this member was removed.
    fn stop_if_removed(&mut self) {
        if !self.removed && self.state.members().is_removed(self.config.id) {
            self.removed = true;
            self.outputs.push_back(Output::Removed);
        }
    }

    /// Tells raft how far the state machine got. A snapshot from the leader is applied to the state
    /// machine at once but counts for raft only once it is persisted, so raft hears of it later.
    fn report_applied(&mut self) {
        let log = &self.raw.raft.raft_log;
        let reportable = self.applied_index.min(log.persisted).min(log.committed);
        if reportable > log.applied {
            self.raw.advance_apply_to(reportable);
        }
    }

    /// Records a new role and leader. Proposals that waited for a leader are made only after the
    /// current ready is advanced: proposing on a new leader appends to raft's unstable log, which
    /// must not change between `ready()` and advancing that ready.
    fn on_soft_state(&mut self, role: StateRole, leader: u64) {
        let was_leader = self.role == StateRole::Leader;
        let changed_leader = leader != self.leader;
        self.role = role;
        self.leader = leader;
        if role == StateRole::Leader && !was_leader {
            self.state
                .lessor
                .promote(self.now, self.config.election_timeout);
        } else if role != StateRole::Leader && was_leader {
            self.state.lessor.demote();
        }
        if changed_leader && leader != 0 {
            self.leader_appeared = true;
        }
        if changed_leader {
            self.outputs.push_back(Output::LeaderChanged {
                term: self.raw.raft.term,
                leader: self.leader(),
            });
        }
    }

    /// Replaces the state machine with a snapshot the leader sent. Returns false if it was corrupt.
    fn install_leader_snapshot(&mut self, snapshot: &Snapshot) -> bool {
        self.finish_state_commit();
        if self.failed {
            return false;
        }
        let installed = if state_transfer::is_engine_state(snapshot) {
            self.install_staged_state(snapshot)
        } else {
            self.state
                .restore(&snapshot.data)
                .map_err(|e| e.to_string())
        };
        match installed {
            Ok(()) => {
                // The leader's state, in this member's cluster (which its WAL names).
                self.state.adopt_cluster_id(self.config.cluster_id);
                let index = snapshot.get_metadata().index;
                self.applied_index = index;
                self.snapshot_index = index;
                self.state_durable_index = self.state_durable_index.max(index);
                self.raw.mut_store().apply_snapshot(snapshot.clone());
                self.drop_stale_state_view();
                true
            }
            Err(error) => {
                self.fail(format!(
                    "installing the snapshot from the leader failed: {error}"
                ));
                false
            }
        }
    }

    /// Every `snapshot_count` entries, makes the applied state durable in the engine and takes a
    /// snapshot that marks it (index, term, configuration; no state: the engine holds it), so the
    /// log and the WAL can drop entries before it (`start_periodic_snapshot`). When raft needs a
    /// snapshot to send to a follower, takes one that carries the state.
    fn maybe_snapshot(&mut self) {
        let wanted = self.raw.store().take_snapshot_wanted()
            && (self.applied_index > self.snapshot_index || !self.raw.store().serves_state());
        if !wanted && self.applied_index < self.snapshot_index + self.config.snapshot_count.max(1) {
            return;
        }
        if !wanted {
            return self.start_periodic_snapshot();
        }
        // A snapshot to send stands for the engine's state at its index (see `state_transfer`).
        let data = state_transfer::ENGINE_STATE.to_vec();
        let Some(snapshot) = self.snapshot_at_applied_index(data) else {
            return;
        };
        // The WAL drops entries before a saved snapshot: restarts must find the applied state
        // up to it in the engine, so it is made durable first — here in place, since the view
        // to send must be of exactly the snapshot's index.
        self.commit_state(true);
        if self.failed {
            return;
        }
        let index = snapshot.get_metadata().index;
        if !self.keep_state_view(index) {
            return;
        }
        self.save_own_snapshot(snapshot);
    }

    /// A periodic snapshot: the durable commit of the state it stands for is written off the
    /// node like any other (`engine_commit`), and the snapshot is saved once it is taken in
    /// (`save_own_snapshot`). One at a time, started when no commit is in flight (the one in
    /// flight may not be durable); a commit replacing the whole state is made in place.
    fn start_periodic_snapshot(&mut self) {
        if self.snapshot_commit.is_some() || self.state_commit.is_some() {
            return;
        }
        let Some(snapshot) = self.snapshot_at_applied_index(Vec::new()) else {
            return;
        };
        if self.state.kv.replaces_all() {
            self.commit_state(true);
            if !self.failed {
                self.save_own_snapshot(snapshot);
            }
            return;
        }
        self.start_state_commit(true);
        if let Some(number) = self.state_commit_number() {
            self.snapshot_commit = Some((number, snapshot));
        }
    }

    /// Installs `snapshot` of this member's state — its state made durable in the engine up to
    /// the snapshot's index — in raft's log, which drops entries before it, and has it saved.
    /// One older than the latest (a leader's installed meanwhile) is dropped.
    pub(super) fn save_own_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        assert!(
            self.state_durable_index >= index,
            "a snapshot is saved only once the engine holds its state durably"
        );
        if index < self.raw.store().latest_snapshot().get_metadata().index {
            return;
        }
        let compact_to = index.saturating_sub(self.config.catch_up_entries);
        if let Err(error) = self
            .raw
            .mut_store()
            .install_own_snapshot(snapshot.clone(), compact_to)
        {
            self.fail(format!("snapshot at index {index} failed: {error}"));
            return;
        }
        self.snapshot_index = index;
        self.drop_stale_state_view();
        self.outputs.push_back(Output::SaveSnapshot(snapshot));
    }

    /// Drops applied entries older than the last `catch_up_entries` once the log holds more
    /// than `log_memory_bytes`. Done before a call's inputs, so what the previous call applied
    /// is still in the log for whoever reads it (the simulator's oracles).
    fn trim_log(&mut self) {
        if self.raw.store().held_bytes() <= self.config.log_memory_bytes {
            return;
        }
        let upto = self
            .applied_index
            .saturating_sub(self.config.catch_up_entries);
        if let Err(error) = self.raw.mut_store().trim(upto) {
            self.fail(format!(
                "trimming the raft log to index {upto} failed: {error}"
            ));
        }
    }

    /// A snapshot at the applied index carrying `data`.
    fn snapshot_at_applied_index(&self, data: Vec<u8>) -> Option<Snapshot> {
        let index = self.applied_index;
        let term = raft::Storage::term(self.raw.store(), index).ok()?;
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.raw.store().conf_state().clone());
        Some(snapshot)
    }

    fn fail(&mut self, reason: String) {
        self.failed = true;
        self.outputs.push_back(Output::Fatal { reason });
    }

    /// A fresh random lease ID, positive and not in use.
    fn new_lease_id(&mut self) -> i64 {
        loop {
            let id = self.rng.gen::<i64>() & i64::MAX;
            if id != 0 && !self.state.lessor.exists(id) {
                return id;
            }
        }
    }

    /// This life's incarnation, stamped on proposals and read contexts.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    fn response_header(&self) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.config.cluster_id.0,
            member_id: self.config.id.0,
            revision: self.state.kv.current_revision(),
            raft_term: self.raw.raft.term,
        }
    }

    fn reply(&mut self, id: RequestId, result: Result<ClientResponse, ClientError>) {
        let header = self.response_header();
        let result = result.map(|mut response| {
            if let Some(h) = response.header_mut() {
                *h = header;
            }
            response
        });
        self.outputs.push_back(Output::Reply { id, result });
    }

    fn emit_watch(&mut self, stream: StreamId, mut response: pb::WatchResponse) {
        let revision = response
            .header
            .as_ref()
            .map_or(self.state.kv.current_revision(), |h| h.revision);
        let mut header = self.response_header();
        header.revision = revision;
        response.header = Some(header);
        self.outputs.push_back(Output::Watch { stream, response });
    }
}

#[cfg(test)]
mod tests;
