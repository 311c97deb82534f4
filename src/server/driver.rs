//! The driver: one tokio task owns the `Node` and its `MemberStorage<FsDisk>` and runs the same loop
//! as the simulator's member — feed an input with the time since the process's origin, carry out
//! every output in order, sleep until `poll_timeout`. Client requests arrive on a bounded channel,
//! each with a oneshot for its reply; watch streams register a bounded channel for their responses.
//! Consecutive persists are written first and fsynced once (group commit).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;

use raft::eraftpb::Message;

use crate::node::{ClientError, ClientRequest, ClientResponse, Input, Node, Output, RequestId};
use crate::proto::etcdserverpb as pb;
use crate::server::fs_disk::FsDisk;
use crate::server::metrics::Metrics;
use crate::server::peer::forward::{forwardable, Forwarder};
use crate::server::peer::Transport;
use crate::storage::MemberStorage;
use crate::time::Instant;
use crate::types::MemberId;
use crate::watch::StreamId;

/// Commands waiting for the driver; senders wait when it is full.
pub const COMMAND_QUEUE: usize = 4096;
/// Watch responses buffered per stream; a stream that falls this far behind is closed with an error
/// (the client re-creates its watches from the last revision it saw).
pub const WATCH_STREAM_BUFFER: usize = 1024;
/// Commands taken in one turn of the loop before the writes they caused are fsynced together.
const COMMANDS_PER_TURN: usize = 256;

/// What the rest of the server asks of the driver.
pub enum Command {
    Request {
        request: ClientRequest,
        reply: oneshot::Sender<Result<ClientResponse, ClientError>>,
    },
    /// A new watch stream: responses for `stream` go to `sender`.
    OpenWatchStream {
        stream: StreamId,
        sender: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    },
    /// A raft message from a peer.
    Peer(Message),
    /// The transport could not deliver to a peer (and, if `snapshot_failed`, a snapshot was lost).
    Unreachable { to: u64, snapshot_failed: bool },
    /// A snapshot was written to a peer's connection (`ok`) or failed.
    SnapshotReport { to: u64, ok: bool },
    /// The applied state as a raft snapshot (for `Maintenance.Snapshot` and `Hash`).
    Snapshot {
        reply: oneshot::Sender<Option<raft::eraftpb::Snapshot>>,
    },
    /// Hand leadership to `target` (etcd's MoveLeader).
    TransferLeader { target: u64 },
    /// A snapshot file written off the driver's task is durable (or failed).
    SnapshotFileWritten(Result<raft::eraftpb::Snapshot, String>),
}

/// The member's state as last seen by the driver, for health checks, metrics and `Status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberStatus {
    pub member_id: u64,
    pub cluster_id: u64,
    pub leader: Option<u64>,
    pub is_leader: bool,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: i64,
    pub key_count: usize,
    pub is_learner: bool,
    pub leader_changes: u64,
    /// Bytes of the newest snapshot's state plus the entries written to the WAL since.
    pub db_size: u64,
    pub stopped: bool,
}

/// A cheap handle for sending the driver requests.
#[derive(Clone)]
pub struct DriverHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<MemberStatus>,
    forwarder: Option<Forwarder>,
    metrics: Arc<Metrics>,
}

impl DriverHandle {
    /// Sends a request and waits for its answer; `Stopped` if the driver is gone. A request only
    /// the leader can answer is forwarded to the leader when this member is not it.
    pub async fn call(&self, request: ClientRequest) -> Result<ClientResponse, ClientError> {
        let forward = self
            .forwarder
            .as_ref()
            .and_then(|f| Some((f, forwardable(&request)?)));
        match self.call_local(request).await {
            Err(ClientError::NotLeader {
                leader: Some(MemberId(leader)),
            }) if forward.is_some() && leader != self.status().member_id => {
                let Some((forwarder, request)) = forward else {
                    return Err(ClientError::NoLeader);
                };
                forwarder.forward(leader, request).await
            }
            Err(ClientError::NotLeader { .. }) => Err(ClientError::NoLeader),
            result => result,
        }
    }

    /// Sends a request to this member's own node only, and waits for its answer.
    pub async fn call_local(&self, request: ClientRequest) -> Result<ClientResponse, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request { request, reply })
            .await
            .map_err(|_| ClientError::Stopped)?;
        answer.await.unwrap_or(Err(ClientError::Stopped))
    }

    /// Sends a request without waiting for the answer (closing a watch stream).
    pub fn send_detached(&self, request: ClientRequest) {
        let (reply, _answer) = oneshot::channel();
        let _ = self.commands.try_send(Command::Request { request, reply });
    }

    /// Registers a watch stream's response channel.
    pub async fn open_watch_stream(
        &self,
        stream: StreamId,
        sender: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    ) -> Result<(), ClientError> {
        self.commands
            .send(Command::OpenWatchStream { stream, sender })
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// Hands a peer's raft message to the node, waiting while the driver is busy; false once the
    /// driver is gone.
    pub async fn deliver_peer_message(&self, message: Message) -> bool {
        self.commands.send(Command::Peer(message)).await.is_ok()
    }

    /// Tells raft a peer could not be reached (dropped when the driver is too busy to listen: raft
    /// finds out again).
    pub fn report_unreachable(&self, to: u64, snapshot_failed: bool) {
        let _ = self.commands.try_send(Command::Unreachable {
            to,
            snapshot_failed,
        });
    }

    /// Tells raft whether a snapshot reached a peer.
    pub fn report_snapshot(&self, to: u64, ok: bool) {
        let _ = self.commands.try_send(Command::SnapshotReport { to, ok });
    }

    /// The applied state as a raft snapshot; `None` if the driver is gone.
    pub async fn snapshot(&self) -> Option<raft::eraftpb::Snapshot> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Snapshot { reply }).await.ok()?;
        answer.await.ok().flatten()
    }

    /// Asks raft to hand leadership to `target`; the caller watches `status` for the outcome.
    pub async fn transfer_leader(&self, target: u64) -> Result<(), ClientError> {
        self.commands
            .send(Command::TransferLeader { target })
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// The counters and histograms `/metrics` reports.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The member's latest status.
    pub fn status(&self) -> MemberStatus {
        self.status.borrow().clone()
    }
}

/// Why the driver stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Asked to shut down.
    Shutdown,
    /// "this member has been permanently removed from the cluster. Exiting."
    Removed,
    /// Storage failed or the node hit state it cannot serve from.
    Fatal(String),
}

/// The task that owns the node.
pub struct Driver {
    log: slog::Logger,
    /// The driver's own command sender, for work it hands to blocking tasks.
    own_commands: mpsc::Sender<Command>,
    /// An own snapshot whose file is being written off this task, and the newest one waiting.
    snapshot_writing: bool,
    snapshot_waiting: Option<raft::eraftpb::Snapshot>,
    /// Set by a command that failed in a way the member cannot go on from.
    failure: Option<String>,
    node: Node,
    storage: MemberStorage<FsDisk>,
    origin: std::time::Instant,
    commands: mpsc::Receiver<Command>,
    shutdown: watch::Receiver<bool>,
    status: watch::Sender<MemberStatus>,
    next_request: RequestId,
    /// Callers waiting for an answer, and whether their request is a proposal.
    waiting: HashMap<RequestId, (oneshot::Sender<Result<ClientResponse, ClientError>>, bool)>,
    streams: HashMap<StreamId, mpsc::Sender<Result<pb::WatchResponse, Status>>>,
    leader_changes: u64,
    metrics: Arc<Metrics>,
    /// `MemberStatus::db_size`: the newest snapshot's state bytes, and entry bytes since.
    snapshot_bytes: u64,
    wal_bytes_since_snapshot: u64,
    transport: Option<Transport>,
    /// The membership the transport was last given, and the applied index it was read at.
    members: Vec<pb::Member>,
    members_read_at: Option<u64>,
    seed_members: Vec<pb::Member>,
    publish: Option<Publish>,
}

/// This member's name and client URLs, to be replicated into the membership.
struct Publish {
    name: String,
    client_urls: Vec<String>,
    in_flight: Option<RequestId>,
    next_attempt: Instant,
}

/// How long to wait before publishing attributes again after a failed attempt.
const PUBLISH_RETRY: Duration = Duration::from_millis(500);

impl Driver {
    /// A driver for `node`, whose time is measured from `origin`, with the handle that talks to it.
    pub fn new(
        node: Node,
        storage: MemberStorage<FsDisk>,
        origin: std::time::Instant,
        shutdown: watch::Receiver<bool>,
        forwarder: Option<Forwarder>,
        metrics: Arc<Metrics>,
        log: slog::Logger,
    ) -> (Driver, DriverHandle) {
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (status, status_rx) = watch::channel(MemberStatus::default());
        let driver = Driver {
            log,
            own_commands: commands_tx.clone(),
            snapshot_writing: false,
            snapshot_waiting: None,
            failure: None,
            node,
            storage,
            origin,
            commands,
            shutdown,
            status,
            next_request: 1,
            waiting: HashMap::new(),
            streams: HashMap::new(),
            leader_changes: 0,
            metrics: metrics.clone(),
            snapshot_bytes: 0,
            wal_bytes_since_snapshot: 0,
            transport: None,
            members: Vec::new(),
            members_read_at: None,
            seed_members: Vec::new(),
            publish: None,
        };
        driver.publish_status(false);
        let handle = DriverHandle {
            commands: commands_tx,
            status: status_rx,
            forwarder,
            metrics,
        };
        (driver, handle)
    }

    /// Sends raft messages to peers through `transport` (without one, they are dropped: a
    /// single-member cluster has no peers).
    pub fn attach_transport(&mut self, transport: Transport) {
        self.transport = Some(transport);
        self.members_read_at = None;
    }

    /// The size of the state in the snapshot the node started from, the base of `db_size` (read
    /// from the loaded snapshot rather than by encoding the state again).
    pub fn set_snapshot_bytes(&mut self, bytes: u64) {
        self.snapshot_bytes = bytes;
    }

    /// The membership a joining member learned from its peers: where to send raft messages until
    /// its own log has the membership.
    pub fn seed_members(&mut self, members: Vec<pb::Member>) {
        self.seed_members = members;
        self.members_read_at = None;
    }

    /// Publishes this member's name and client URLs into the membership once a leader is known,
    /// and again whenever the replicated ones differ (after a restart with new flags).
    pub fn publish_attributes(&mut self, name: String, client_urls: Vec<String>) {
        self.publish = Some(Publish {
            name,
            client_urls,
            in_flight: None,
            next_attempt: Instant::ZERO,
        });
    }

    /// Gives the transport the current membership when it may have changed.
    fn sync_members(&mut self) {
        let applied = self.node.applied_index();
        if self.members_read_at == Some(applied) {
            return;
        }
        self.members_read_at = Some(applied);
        let Some(transport) = &mut self.transport else {
            return;
        };
        let mut members = self.node.state().members.list();
        if members.is_empty() {
            members = self.seed_members.clone();
        }
        if members != self.members {
            transport.update_members(&members);
            self.members = members;
        }
    }

    /// Proposes this member's attributes if they are not yet replicated as given.
    fn maybe_publish(&mut self) {
        let now = self.now();
        let Some(publish) = &mut self.publish else {
            return;
        };
        if publish.in_flight.is_some() || now < publish.next_attempt || self.node.leader().is_none()
        {
            return;
        }
        let id = self.node.config().id;
        let current = self.node.state().members.get(id);
        let done = current
            .is_some_and(|m| m.name == publish.name && m.client_ur_ls == publish.client_urls);
        if done || current.is_none() {
            return;
        }
        let request_id = self.next_request;
        self.next_request += 1;
        publish.in_flight = Some(request_id);
        let request = ClientRequest::MemberPublish {
            name: publish.name.clone(),
            client_urls: publish.client_urls.clone(),
        };
        self.node.handle(
            now,
            Input::Client {
                id: request_id,
                request,
            },
        );
    }

    /// Notes the answer to a publish request; true if `id` was one.
    fn on_publish_reply(
        &mut self,
        id: RequestId,
        result: &Result<ClientResponse, ClientError>,
    ) -> bool {
        let now = self.now();
        let Some(publish) = &mut self.publish else {
            return false;
        };
        if publish.in_flight != Some(id) {
            return false;
        }
        publish.in_flight = None;
        match result {
            Ok(_) => {
                slog::info!(self.log, "published this member's attributes to the cluster"; "name" => %publish.name, "client_urls" => %publish.client_urls.join(","))
            }
            Err(error) => {
                slog::debug!(self.log, "publishing attributes failed; will retry"; "error" => %error);
                publish.next_attempt = now + PUBLISH_RETRY;
            }
        }
        true
    }

    fn now(&self) -> Instant {
        let micros = self.origin.elapsed().as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    fn deadline(&self, at: Instant) -> tokio::time::Instant {
        let std_at = self.origin + Duration::from_micros(at.as_micros());
        tokio::time::Instant::from_std(std_at)
    }

    /// Runs until shut down, removed or failed.
    pub async fn run(mut self) -> Exit {
        let exit = loop {
            if let Err(exit) = self.carry_out_outputs() {
                break exit;
            }
            if let Some(reason) = self.failure.take() {
                break Exit::Fatal(reason);
            }
            self.sync_members();
            self.maybe_publish();
            if let Err(exit) = self.carry_out_outputs() {
                break exit;
            }
            self.publish_status(false);
            let Some(timeout) = self.node.poll_timeout() else {
                break Exit::Fatal("the node stopped".to_string());
            };
            let deadline = self.deadline(timeout);
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break Exit::Shutdown,
                command = self.commands.recv() => match command {
                    Some(command) => {
                        self.on_command(command);
                        for _ in 1..COMMANDS_PER_TURN {
                            match self.commands.try_recv() {
                                Ok(command) => self.on_command(command),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break Exit::Shutdown,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.node.handle(now, Input::Tick);
                }
            }
        };
        if let Err(error) = self.storage.sync() {
            slog::error!(self.log, "final fsync failed"; "error" => %error);
        }
        self.publish_status(true);
        for (_, (reply, _)) in self.waiting.drain() {
            let _ = reply.send(Err(ClientError::Stopped));
        }
        exit
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Request { request, reply } => {
                if let ClientRequest::WatchClose { stream } = &request {
                    self.streams.remove(stream);
                }
                let id = self.next_request;
                self.next_request += 1;
                self.waiting.insert(id, (reply, is_proposal(&request)));
                let now = self.now();
                self.node.handle(now, Input::Client { id, request });
            }
            Command::OpenWatchStream { stream, sender } => {
                self.streams.insert(stream, sender);
            }
            Command::Peer(message) => {
                let now = self.now();
                self.node.handle(now, Input::Peer(message));
            }
            Command::Unreachable {
                to,
                snapshot_failed,
            } => {
                let now = self.now();
                self.node.handle(now, Input::Unreachable(MemberId(to)));
                if snapshot_failed {
                    self.node.handle(
                        now,
                        Input::SnapshotReport {
                            to: MemberId(to),
                            ok: false,
                        },
                    );
                }
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.node.snapshot_of_applied_state());
            }
            Command::SnapshotFileWritten(written) => self.on_snapshot_file_written(written),
            Command::TransferLeader { target } => {
                let now = self.now();
                self.node
                    .handle(now, Input::TransferLeader(MemberId(target)));
            }
            Command::SnapshotReport { to, ok } => {
                let now = self.now();
                self.node.handle(
                    now,
                    Input::SnapshotReport {
                        to: MemberId(to),
                        ok,
                    },
                );
            }
        }
    }

    /// Carries out every pending output in order. Writes of consecutive persists are fsynced once,
    /// then reported persisted; that may produce more outputs, which are carried out in turn.
    fn carry_out_outputs(&mut self) -> Result<(), Exit> {
        loop {
            let mut persisted: Option<u64> = None;
            let mut needs_sync = false;
            while let Some(output) = self.node.poll_output() {
                match output {
                    Output::Persist(mut persist) => {
                        needs_sync |= persist.must_sync || persist.snapshot.is_some();
                        persist.must_sync = false;
                        if let Some(snapshot) = &persist.snapshot {
                            slog::info!(self.log, "installing the leader's snapshot"; "index" => snapshot.get_metadata().index);
                        }
                        self.storage
                            .persist(&persist)
                            .map_err(|e| Exit::Fatal(format!("persist failed: {e}")))?;
                        match &persist.snapshot {
                            Some(snapshot) => {
                                self.snapshot_bytes = snapshot.data.len() as u64;
                                self.wal_bytes_since_snapshot = 0;
                            }
                            None => {
                                let written: usize =
                                    persist.entries.iter().map(|e| e.data.len()).sum();
                                self.wal_bytes_since_snapshot += written as u64;
                            }
                        }
                        persisted = Some(persist.ready_number);
                    }
                    Output::SaveSnapshot(snapshot) => {
                        self.snapshot_bytes = snapshot.data.len() as u64;
                        self.wal_bytes_since_snapshot = 0;
                        if self.snapshot_writing {
                            // Only the newest matters: its marker supersedes older ones.
                            self.snapshot_waiting = Some(snapshot);
                        } else {
                            self.write_snapshot_file(snapshot);
                        }
                    }
                    Output::Send(message) => match &mut self.transport {
                        Some(transport) => transport.send(message),
                        None => {
                            slog::debug!(self.log, "no transport; dropped a message"; "to" => message.to)
                        }
                    },
                    Output::Reply { id, result } => {
                        if self.on_publish_reply(id, &result) {
                            continue;
                        }
                        if let Some((reply, proposal)) = self.waiting.remove(&id) {
                            if proposal && result.is_err() {
                                self.metrics
                                    .proposals_failed
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            let _ = reply.send(result);
                        }
                    }
                    Output::Watch { stream, response } => self.deliver_watch(stream, response),
                    Output::LeaderChanged { term, leader } => {
                        self.leader_changes += 1;
                        match leader {
                            Some(leader) => {
                                slog::info!(self.log, "leader elected"; "term" => term, "leader" => format!("{:x}", leader.0))
                            }
                            None => slog::warn!(self.log, "lost the leader"; "term" => term),
                        }
                    }
                    Output::Removed => {
                        slog::error!(
                            self.log,
                            "this member has been permanently removed from the cluster. Exiting."
                        );
                        return Err(Exit::Removed);
                    }
                    Output::Fatal { reason } => return Err(Exit::Fatal(reason)),
                }
            }
            let Some(ready_number) = persisted else {
                return Ok(());
            };
            if needs_sync {
                let started = std::time::Instant::now();
                self.storage
                    .sync()
                    .map_err(|e| Exit::Fatal(format!("fsync failed: {e}")))?;
                self.metrics.wal_fsync.observe(started.elapsed());
            }
            let now = self.now();
            let started = std::time::Instant::now();
            // Durable entries are committed and applied inside this call.
            self.node.handle(now, Input::Persisted { ready_number });
            self.metrics.backend_commit.observe(started.elapsed());
        }
    }

    /// Writes an own snapshot's file (encode, write, fsync, rename) on a blocking thread, so
    /// clients are not stalled behind it; `SnapshotFileWritten` finishes the job. Until its WAL
    /// marker is written a restart ignores the file, and no WAL segment is released before.
    fn write_snapshot_file(&mut self, snapshot: raft::eraftpb::Snapshot) {
        self.snapshot_writing = true;
        let dir = self.storage.snap_dir().to_path_buf();
        let done = self.own_commands.clone();
        tokio::spawn(async move {
            let written = tokio::task::spawn_blocking(move || {
                let mut disk = FsDisk::new();
                crate::snap::save(&mut disk, &dir, &snapshot)
                    .map(|_| snapshot)
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("the snapshot writer failed: {e}")));
            let _ = done.send(Command::SnapshotFileWritten(written)).await;
        });
    }

    fn on_snapshot_file_written(&mut self, written: Result<raft::eraftpb::Snapshot, String>) {
        self.snapshot_writing = false;
        let snapshot = match written {
            Ok(snapshot) => snapshot,
            Err(reason) => {
                self.failure = Some(format!("saving a snapshot failed: {reason}"));
                return;
            }
        };
        if let Err(error) = self.storage.finish_own_snapshot(&snapshot) {
            self.failure = Some(format!("saving a snapshot failed: {error}"));
            return;
        }
        slog::info!(self.log, "saved a snapshot"; "index" => snapshot.get_metadata().index);
        if let Some(next) = self.snapshot_waiting.take() {
            self.write_snapshot_file(next);
        }
    }

    fn deliver_watch(&mut self, stream: StreamId, response: pb::WatchResponse) {
        let Some(sender) = self.streams.get(&stream) else {
            return;
        };
        match sender.try_send(Ok(response)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => self.close_stream(stream),
            Err(mpsc::error::TrySendError::Full(_)) => {
                slog::warn!(self.log, "watch stream too slow; closing it"; "stream" => stream);
                if let Some(sender) = self.streams.remove(&stream) {
                    // Ends the stream with an error once the client has read what is buffered.
                    tokio::spawn(async move {
                        let status = Status::unavailable(
                            "etcdserver: watch stream is too slow to keep up; resume from the last revision seen",
                        );
                        let _ = sender.send(Err(status)).await;
                    });
                }
                self.close_stream(stream);
            }
        }
    }

    fn close_stream(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
        let id = self.next_request;
        self.next_request += 1;
        let now = self.now();
        self.node.handle(
            now,
            Input::Client {
                id,
                request: ClientRequest::WatchClose { stream },
            },
        );
    }

    fn publish_status(&self, stopped: bool) {
        let node = &self.node;
        let config = node.config();
        let member_id = config.id.0;
        let status = MemberStatus {
            member_id,
            cluster_id: config.cluster_id.0,
            leader: node.leader().map(|l| l.0),
            is_leader: node.role() == raft::StateRole::Leader,
            term: node.term(),
            commit_index: node.commit_index(),
            applied_index: node.applied_index(),
            revision: node.state().kv.current_revision(),
            key_count: node.state().kv.key_count(),
            is_learner: node
                .state()
                .members
                .get(config.id)
                .is_some_and(|m| m.is_learner),
            leader_changes: self.leader_changes,
            db_size: self.snapshot_bytes + self.wal_bytes_since_snapshot,
            stopped,
        };
        self.metrics
            .proposals_pending
            .store(node.pending_requests() as u64, Ordering::Relaxed);
        self.status.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }
}

/// Whether `request` goes through raft as a proposal (counted in the proposal metrics).
fn is_proposal(request: &ClientRequest) -> bool {
    matches!(
        request,
        ClientRequest::Put(_)
            | ClientRequest::DeleteRange(_)
            | ClientRequest::Txn(_)
            | ClientRequest::Compact(_)
            | ClientRequest::LeaseGrant(_)
            | ClientRequest::LeaseRevoke(_)
            | ClientRequest::MemberAdd(_)
            | ClientRequest::MemberRemove(_)
            | ClientRequest::MemberUpdate(_)
            | ClientRequest::MemberPromote(_)
            | ClientRequest::MemberPublish { .. }
    )
}
