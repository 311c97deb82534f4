//! The driver: one task owns the `Node` and its `MemberStorage` and runs the member's loop — feed
//! an input with the member's time, carry out every output in order, sleep until `poll_timeout`.
//! Client requests arrive as `Command`s on a bounded queue (`handle`), each with a oneshot for its
//! reply. Persists are written at once and made durable by group commit (`commit`): one fsync in
//! flight at a time, off the driver's task, while the driver goes on taking inputs. Own snapshot
//! files are written on the side (`own_snapshot`), so is the WAL's next segment
//! (`next_segment`), released WAL segments are removed there (`released`), and the engine's bytes in use are measured there (`in_use`); watch responses
//! go to bounded streams (`streams`), and the member's attributes are published through raft
//! (`publish`).
//!
//! The simulator runs this same driver, with a simulated `Environment` (clock, disk, fsync).

mod commit;
mod in_use;
mod next_segment;
mod own_snapshot;
mod publish;
mod released;
mod streams;

pub use streams::TOO_SLOW;

use std::collections::BTreeMap;
use std::future::pending;
use std::sync::Arc;

use raft::eraftpb::{Message, MessageType, Snapshot};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use self::commit::{GroupCommit, Next};
use self::in_use::InUse;
use self::next_segment::NextSegment;
use self::own_snapshot::OwnSnapshots;
use self::publish::Publish;
use self::released::ReleasedSegments;
use self::streams::{Delivery, Streams};
use super::auth::AuthGate;
use super::env::{BoxDisk, BoxFuture, Checkpoint, Environment, Mistake};
use super::handle::{Command, DriverHandle, COMMAND_QUEUE};
use super::metrics::Metrics;
use super::peer::Transport;
use super::status::MemberStatus;
use super::stop::Stopped;
use crate::disk::DiskError;
use crate::node::{ClientError, ClientRequest, ClientResponse, Input, Node, Output, RequestId};
use crate::proto::etcdserverpb as pb;
use crate::storage::MemberStorage;
use crate::time::Instant;
use crate::types::MemberId;
use crate::watch::StreamId;

/// Commands taken in one turn of the loop before the outputs they caused are carried out.
const COMMANDS_PER_TURN: usize = 256;

/// Watch responses a lagging stream is caught up by per turn of the driver (each holds up to
/// `watch::MAX_EVENTS_PER_RESPONSE` events, read from history on the driver's task).
const CATCH_UP_RESPONSES_PER_TURN: usize = 16;

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

/// A caller waiting for the answer to its request.
struct Waiter {
    reply: oneshot::Sender<Result<ClientResponse, ClientError>>,
}

/// The fsync group commit has in flight.
struct Sync {
    done: BoxFuture<Result<(), DiskError>>,
    started: std::time::Instant,
}

/// The task that owns the node.
pub struct Driver {
    log: slog::Logger,
    env: Arc<dyn Environment>,
    node: Node,
    storage: MemberStorage<BoxDisk>,
    commands: mpsc::Receiver<Command>,
    /// The driver's own command sender, for work it hands to other tasks.
    own_commands: mpsc::Sender<Command>,
    shutdown: Stopped,
    status: watch::Sender<MemberStatus>,
    /// Rung whenever `status` changes, and when the driver stops (see `DriverHandle`).
    status_changed: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Where applied auth changes go: the published store and the token table.
    auth: Arc<AuthGate>,
    next_request: RequestId,
    waiting: BTreeMap<RequestId, Waiter>,
    streams: Streams,
    commit: GroupCommit,
    sync: Option<Sync>,
    next_segment: NextSegment,
    /// Released WAL segments' files being removed.
    released: ReleasedSegments,
    snapshots: OwnSnapshots,
    /// The engine's bytes in use, measured on the side.
    in_use: InUse,
    alarm: Alarm,
    /// Set by a command or task that failed in a way the member cannot go on from.
    failure: Option<Exit>,
    leader_changes: u64,
    transport: Option<Transport>,
    /// The membership the transport was last given, and the applied index it was read at.
    members: Vec<pb::Member>,
    members_read_at: Option<u64>,
    seed_members: Vec<pb::Member>,
    publish: Option<Publish>,
}

/// A step of the node longer than this is logged.
const SLOW_STEP: std::time::Duration = std::time::Duration::from_millis(100);

impl Driver {
    /// A driver for `node` on `storage`, with the handle that talks to it.
    pub fn new(
        env: Arc<dyn Environment>,
        node: Node,
        storage: MemberStorage<BoxDisk>,
        shutdown: Stopped,
        (metrics, auth): (Arc<Metrics>, Arc<AuthGate>),
        log: slog::Logger,
    ) -> (Driver, DriverHandle) {
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (status, status_rx) = watch::channel(MemberStatus::default());
        let status_changed = Arc::new(Notify::new());
        let driver = Driver {
            log,
            env,
            node,
            storage,
            commands,
            own_commands: commands_tx.clone(),
            shutdown,
            status,
            status_changed: status_changed.clone(),
            metrics: metrics.clone(),
            auth,
            next_request: 1,
            waiting: BTreeMap::new(),
            streams: Streams::default(),
            commit: GroupCommit::default(),
            sync: None,
            next_segment: NextSegment::default(),
            released: ReleasedSegments::default(),
            snapshots: OwnSnapshots::default(),
            in_use: InUse::default(),
            alarm: Alarm::default(),
            failure: None,
            leader_changes: 0,
            transport: None,
            members: Vec::new(),
            members_read_at: None,
            seed_members: Vec::new(),
            publish: None,
        };
        driver.publish_status(false);
        let handle = DriverHandle::new(commands_tx, (status_rx, status_changed), metrics)
            .pausing_between_hash_steps(driver.env.limits().hash_kv_step_pause)
            .timing_out_after_first_hash_step(
                driver.env.planted(Mistake::HashKvTimesOutAfterFirstStep),
            );
        (driver, handle)
    }

    /// Sends raft messages to peers through `transport` (without one, they are dropped: a
    /// single-member cluster has no peers).
    pub fn attach_transport(&mut self, transport: Transport) {
        self.transport = Some(transport);
        self.members_read_at = None;
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
        self.publish = Some(Publish::new(name, client_urls));
    }

    /// Also publishes `peer_urls` (a `--force-new-cluster` start takes its peer URLs from its
    /// flags, as on a new machine).
    pub fn publish_peer_urls(&mut self, peer_urls: Vec<String>) {
        self.publish = self.publish.take().map(|p| p.with_peer_urls(peer_urls));
    }

    fn now(&self) -> Instant {
        self.env.now()
    }

    /// Runs until shut down, removed or failed.
    pub async fn run(mut self) -> Exit {
        // One wait for shutdown for the whole run, not a new one per turn of the loop.
        let stop_signal = self.shutdown.clone();
        let shutdown = stop_signal.wait();
        tokio::pin!(shutdown);
        let exit = loop {
            if let Err(exit) = self.turn().await {
                break exit;
            }
            let Some(timeout) = self.node.poll_timeout() else {
                break Exit::Fatal("the node stopped".to_string());
            };
            self.alarm.set(&*self.env, timeout);
            tokio::select! {
                biased;
                _ = &mut shutdown => break Exit::Shutdown,
                synced = wait_for_sync(&mut self.sync) => self.on_synced(synced),
                prepared = self.next_segment.finished() => {
                    self.next_segment.on_finished(prepared, &mut self.storage, &self.log);
                }
                removed = self.released.finished() => self.released.on_finished(removed, &self.log),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_commands(command),
                    None => break Exit::Shutdown,
                },
                _ = self.alarm.ring() => {
                    let now = self.now();
                    let started = std::time::Instant::now();
                    self.node.handle(now, Input::Tick);
                    self.warn_if_slow("tick", started.elapsed());
                }
            }
        };
        self.stop(exit)
    }

    /// Logs a step of the node that held the driver long enough to delay every request (etcd
    /// warns of an apply that took too long the same way).
    fn warn_if_slow(&self, input: &str, took: std::time::Duration) {
        if took >= SLOW_STEP {
            slog::warn!(self.log, "a step of the node took too long";
                "input" => input, "took_ms" => took.as_millis() as u64);
        }
    }

    /// Fsyncs what was written, answers every waiting caller, and says why the driver stopped.
    fn stop(mut self, exit: Exit) -> Exit {
        if let Err(error) = self.storage.sync() {
            slog::error!(self.log, "final fsync failed"; "error" => %error);
        }
        self.publish_status(true);
        for (_, waiter) in std::mem::take(&mut self.waiting) {
            let _ = waiter.reply.send(Err(ClientError::Stopped));
        }
        // Waiters on the status see the queue closed and give up.
        self.commands.close();
        self.status_changed.notify_waiters();
        exit
    }

    /// One turn: carry out every output, move group commit along until it has to wait, keep the
    /// transport and the published attributes in step, then publish the status.
    async fn turn(&mut self) -> Result<(), Exit> {
        self.catch_up_lagging_streams();
        loop {
            self.carry_out_outputs().await?;
            if let Some(exit) = self.failure.take() {
                return Err(exit);
            }
            match self.commit.next() {
                Next::Report(ready_number) => {
                    let now = self.now();
                    let started = std::time::Instant::now();
                    // Durable entries are committed and applied inside this call.
                    self.node.handle(now, Input::Persisted { ready_number });
                    self.warn_if_slow("persisted", started.elapsed());
                    self.env.durable_marks_changed(&self.node);
                    continue;
                }
                Next::Sync => {
                    self.start_sync()?;
                    continue;
                }
                Next::Wait => {}
            }
            self.finish_own_snapshot().await?;
            self.hand_back_undelivered();
            self.next_segment
                .start_if_wanted(&mut self.storage, &*self.env);
            self.released.start_if_any(&mut self.storage, &*self.env);
            self.sync_members();
            self.maybe_publish();
            if !self.node.has_outputs() {
                break;
            }
        }
        if !self.env.planted(Mistake::InUseNeverMeasured) {
            let engine = self.node.state().kv.engine();
            let now = self.now();
            self.in_use
                .maybe_start(engine, now, &self.own_commands, &self.log);
        }
        self.publish_status(false);
        if let Some(pause) = self.env.after_turn(&self.node) {
            pause.await;
        }
        Ok(())
    }

    /// Takes `first` and whatever else is queued, up to a turn's worth. The node takes the inputs
    /// among them together (`Node::handle_all`): a burst of writes becomes one WAL write and one
    /// append per follower, not one each.
    fn on_commands(&mut self, first: Command) {
        let mut inputs = Vec::new();
        self.on_command(first, &mut inputs);
        for _ in 1..COMMANDS_PER_TURN {
            match self.commands.try_recv() {
                Ok(command) => self.on_command(command, &mut inputs),
                Err(_) => break,
            }
        }
        self.handle_inputs(&mut inputs);
    }

    /// Feeds the node the inputs gathered so far, in order.
    fn handle_inputs(&mut self, inputs: &mut Vec<Input>) {
        if !inputs.is_empty() {
            let now = self.now();
            self.node.handle_all(now, inputs.drain(..));
            self.env.durable_marks_changed(&self.node);
        }
    }

    /// Turns a command into node inputs (added to `inputs`), or carries it out after the inputs
    /// before it.
    fn on_command(&mut self, command: Command, inputs: &mut Vec<Input>) {
        let node_input = matches!(
            command,
            Command::Request { .. }
                | Command::Peer(_)
                | Command::StateChunk(_)
                | Command::Unreachable { .. }
                | Command::SnapshotReport { .. }
                | Command::TransferLeader { .. }
                | Command::StateCommitted { .. }
        );
        if !node_input {
            self.handle_inputs(inputs);
        }
        match command {
            Command::Request {
                request,
                caller,
                reply,
            } => {
                if let ClientRequest::WatchClose { stream } = &request {
                    self.streams.close(*stream);
                }
                let id = self.next_request_id();
                self.waiting.insert(id, Waiter { reply });
                inputs.push(Input::Client {
                    id,
                    request,
                    caller,
                });
            }
            Command::Peer(message) => inputs.push(Input::Peer(message)),
            Command::StateChunk(chunk) => inputs.push(Input::StateChunk(chunk)),
            Command::Unreachable {
                to,
                snapshot_failed,
            } => {
                inputs.push(Input::Unreachable(MemberId(to)));
                if snapshot_failed {
                    inputs.push(Input::SnapshotReport {
                        to: MemberId(to),
                        ok: false,
                    });
                }
            }
            Command::SnapshotReport { to, ok } => inputs.push(Input::SnapshotReport {
                to: MemberId(to),
                ok,
            }),
            Command::TransferLeader { target } => {
                inputs.push(Input::TransferLeader(MemberId(target)));
            }
            Command::OpenWatchStream { stream, sender } => self.streams.open(stream, sender),
            Command::RemovedByPeer { peer } => {
                slog::error!(self.log, "a peer refused this member as removed from the cluster"; "peer" => format!("{peer:x}"));
                slog::error!(
                    self.log,
                    "this member has been permanently removed from the cluster. Exiting."
                );
                self.failure = Some(Exit::Removed);
            }
            Command::Snapshot { reply } => {
                let mut export = self.node.export_applied_state();
                if self.env.planted(Mistake::BackupDropsFirstRows) {
                    if let Some((_, rows)) = &mut export {
                        let _ = rows.next_chunk(1);
                    }
                }
                let _ = reply.send(export);
            }
            Command::SnapshotFileWritten(Ok(snapshot)) => self.snapshots.file_written(snapshot),
            Command::SnapshotFileWritten(Err(reason)) => {
                self.snapshots.file_failed();
                self.failure = Some(Exit::Fatal(format!("saving a snapshot failed: {reason}")));
            }
            Command::InUseMeasured { measured, took } => {
                let now = self.now();
                self.in_use.finished((measured, took), now, &self.log);
            }
            Command::StateCommitted { number, took } => {
                self.metrics.observe_backend_commit(took);
                inputs.push(Input::StateCommitted { number });
            }
        }
    }

    fn next_request_id(&mut self) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// Carries out every pending output in order.
    async fn carry_out_outputs(&mut self) -> Result<(), Exit> {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Persist(persist) => {
                    if let Some(snapshot) = &persist.snapshot {
                        self.write_received_snapshot_file(snapshot).await?;
                    }
                    let must_sync = self
                        .storage
                        .write_after_snapshot_file(&persist)
                        .map_err(|e| Exit::Fatal(format!("persist failed: {e}")))?;
                    self.commit.written(persist.ready_number, must_sync);
                }
                Output::SaveSnapshot(snapshot) => {
                    let dir = self.storage.snap_dir().to_path_buf();
                    self.snapshots.save(
                        snapshot,
                        &self.env,
                        dir,
                        &self.own_commands,
                        &self.metrics,
                    );
                }
                Output::Send(message) => self.send(message).await,
                Output::SendState { message, state } => match &mut self.transport {
                    Some(transport) => transport.send_state(message, state),
                    None => self.node_snapshot_failed(message.to),
                },
                Output::Reply { id, result } => self.reply(id, result),
                Output::Watch { stream, response } => self.deliver_watch(stream, response),
                Output::LeaderChanged { term, leader } => {
                    self.leader_changes += 1;
                    match leader {
                        Some(leader) => {
                            slog::info!(self.log, "leader elected"; "term" => term, "leader" => format!("{:x}", leader.0))
                        }
                        None => slog::warn!(self.log, "lost the leader"; "term" => term),
                    }
                    self.env
                        .leader_changed(&self.node, term, leader.map(|l| l.0));
                }
                Output::Removed => {
                    slog::error!(
                        self.log,
                        "this member has been permanently removed from the cluster. Exiting."
                    );
                    return Err(Exit::Removed);
                }
                Output::Fatal { reason } => return Err(Exit::Fatal(reason)),
                Output::CloseFile(file) if self.env.planted(Mistake::KeepReplacedEngineFiles) => {
                    std::mem::forget(file);
                }
                Output::Tokens(change) => self.auth.on_tokens(change),
                Output::CommitState { number, job } => self.write_state_commit(number, job),
                Output::CloseFile(file) => {
                    let log = self.log.clone();
                    tokio::spawn(async move {
                        if let Err(error) = crate::server::blocking::run(move || file.close()).await
                        {
                            slog::warn!(log, "closing a replaced engine file failed"; "error" => error);
                        }
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes an engine commit where blocking is allowed, then hands it back to the node. A
    /// failure is the job's result, which the node takes in; a panic in the thread leaves the
    /// job unfinished, which the node reports.
    fn write_state_commit(&self, number: u64, job: crate::engine::CommitJob) {
        let done = self.own_commands.clone();
        let disk_time = self.env.checkpoint(Checkpoint::EngineCommitWriting);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            if let Some(disk_time) = disk_time {
                disk_time.await;
            }
            let _ = crate::server::blocking::run(move || job.run()).await;
            let took = started.elapsed();
            let _ = done.send(Command::StateCommitted { number, took }).await;
        });
    }

    /// Makes a snapshot received from the leader durable before its WAL record is written.
    async fn write_received_snapshot_file(&mut self, snapshot: &Snapshot) -> Result<(), Exit> {
        slog::info!(self.log, "installing the leader's snapshot"; "index" => snapshot.get_metadata().index);
        self.storage
            .write_snapshot_file(snapshot)
            .map_err(|e| Exit::Fatal(format!("saving a snapshot file failed: {e}")))?;
        if let Some(pause) = self.env.checkpoint(Checkpoint::ReceivedSnapshotFile) {
            pause.await;
        }
        Ok(())
    }

    /// Tells raft a snapshot could not be sent (no transport to send it with).
    fn node_snapshot_failed(&mut self, to: u64) {
        let now = self.now();
        let report = Input::SnapshotReport {
            to: crate::types::MemberId(to),
            ok: false,
        };
        self.node.handle(now, report);
    }

    async fn send(&mut self, message: Message) {
        let vote = message.get_msg_type() == MessageType::MsgRequestVoteResponse && !message.reject;
        match &mut self.transport {
            Some(transport) => transport.send(message),
            None => slog::debug!(self.log, "no transport; dropped a message"; "to" => message.to),
        }
        if vote {
            if let Some(pause) = self.env.checkpoint(Checkpoint::VoteSent) {
                pause.await;
            }
        }
    }

    fn reply(&mut self, id: RequestId, mut result: Result<ClientResponse, ClientError>) {
        if let Ok(ClientResponse::Put(put)) = &mut result {
            if let Some(prev) = put.prev_kv.as_mut() {
                if self.env.planted(Mistake::PutPrevKvWithoutValue) {
                    prev.value.clear();
                }
            }
        }
        let now = self.now();
        if let Some(publish) = &mut self.publish {
            if publish.on_reply(id, &result, now, &self.log) {
                return;
            }
        }
        if let Some(waiter) = self.waiting.remove(&id) {
            let _ = waiter.reply.send(result);
        }
    }

    /// Starts the fsync that makes every write so far durable, off the driver's task.
    fn start_sync(&mut self) -> Result<(), Exit> {
        assert!(self.sync.is_none(), "one fsync in flight at a time");
        let path = self
            .storage
            .begin_sync()
            .map_err(|e| Exit::Fatal(format!("fsync failed: {e}")))?;
        match path {
            Some(_) if self.env.planted(Mistake::SkipGroupCommitFsync) => self.commit.synced(),
            Some(path) => {
                self.sync = Some(Sync {
                    done: self.env.sync_file(path),
                    started: std::time::Instant::now(),
                });
            }
            // Nothing was left unsynced (an inline fsync covered it).
            None => self.commit.synced(),
        }
        Ok(())
    }

    fn on_synced(&mut self, synced: (Result<(), DiskError>, std::time::Instant)) {
        let (result, started) = synced;
        self.sync = None;
        if let Err(error) = result {
            self.failure = Some(Exit::Fatal(format!("fsync failed: {error}")));
            return;
        }
        self.metrics.observe_wal_fsync(started.elapsed());
        self.commit.synced();
    }

    /// Marks an own snapshot whose file is durable in the WAL and releases the WAL segments and
    /// snapshot files it makes unnecessary — never while an fsync is in flight (it may be on a
    /// segment about to be released) — then starts the file that waited, if any.
    async fn finish_own_snapshot(&mut self) -> Result<(), Exit> {
        if self.commit.is_syncing() {
            return Ok(());
        }
        if let Some(snapshot) = self.snapshots.take_durable() {
            if let Some(pause) = self.env.checkpoint(Checkpoint::OwnSnapshotFile) {
                pause.await;
            }
            let failed = |e: crate::storage::StorageError| {
                Exit::Fatal(format!("saving a snapshot failed: {e}"))
            };
            self.storage.mark_own_snapshot(&snapshot).map_err(failed)?;
            if !self.env.planted(Mistake::NeverReleaseWal) {
                self.storage.release_before(&snapshot).map_err(failed)?;
            }
            // The marker's fsync covered every write before it.
            self.commit.all_durable();
            slog::info!(self.log, "saved a snapshot"; "index" => snapshot.get_metadata().index);
        }
        if let Some(next) = self.snapshots.take_waiting() {
            let dir = self.storage.snap_dir().to_path_buf();
            self.snapshots
                .save(next, &self.env, dir, &self.own_commands, &self.metrics);
        }
        Ok(())
    }

    fn deliver_watch(&mut self, stream: StreamId, mut response: pb::WatchResponse) {
        if self.env.planted(Mistake::WatchPrevKvWithoutValue) {
            for prev in response
                .events
                .iter_mut()
                .filter_map(|e| e.prev_kv.as_mut())
            {
                prev.value.clear();
            }
        }
        let drop_when_full = self.env.planted(Mistake::DropWatchResponseWhenFull);
        match self
            .streams
            .deliver(stream, response, drop_when_full, &self.log)
        {
            Delivery::Queued => {}
            Delivery::Closed => self.close_watches(stream),
        }
    }

    /// Gives the node back the responses full streams did not take this turn: their watchers
    /// fall back to history.
    fn hand_back_undelivered(&mut self) {
        let now = self.now();
        for (stream, responses) in self.streams.take_undelivered() {
            let id = self.next_request_id();
            let request = ClientRequest::WatchUndelivered { stream, responses };
            self.node.handle(now, Input::client(id, request));
        }
    }

    /// Once per turn: asks the node to catch up the lagging streams that have room, at most
    /// `CATCH_UP_RESPONSES_PER_TURN` responses each, so that a long catch-up is spread over
    /// turns and never holds the driver from ticks, peers and clients.
    fn catch_up_lagging_streams(&mut self) {
        let mut ready: Vec<(StreamId, usize)> = Vec::new();
        if self.streams.any_blocked() {
            ready = self.streams.resume();
        }
        for stream in self.node.lagging_watch_streams() {
            if !ready.iter().any(|(s, _)| *s == stream) {
                ready.push((stream, self.streams.room(stream)));
            }
        }
        let now = self.now();
        for (stream, room) in ready {
            let budget = room.min(CATCH_UP_RESPONSES_PER_TURN);
            if budget == 0 {
                continue;
            }
            let id = self.next_request_id();
            let request = ClientRequest::WatchCatchUp { stream, budget };
            self.node.handle(now, Input::client(id, request));
        }
    }

    /// Drops every watch of `stream` in the node.
    fn close_watches(&mut self, stream: StreamId) {
        let id = self.next_request_id();
        let now = self.now();
        let request = ClientRequest::WatchClose { stream };
        self.node.handle(now, Input::client(id, request));
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
        let replicated = &self.node.state().members();
        let from_log = replicated.iter().len() > 0;
        // Compared in place: this runs at every applied index and the membership rarely changes.
        let unchanged = if from_log {
            replicated.iter().eq(self.members.iter())
        } else {
            self.members == self.seed_members
        };
        if unchanged {
            return;
        }
        let members = if from_log {
            replicated.list()
        } else {
            self.seed_members.clone()
        };
        transport.update_members(&members, replicated.removed_ids());
        self.members = members;
    }

    /// Proposes this member's attributes if they are not yet replicated as given.
    fn maybe_publish(&mut self) {
        let id = self.next_request;
        let Some(publish) = &mut self.publish else {
            return;
        };
        if !publish.wanted(&self.node) {
            return;
        }
        let now = self.env.now();
        if let Some(request) = publish.request(&self.node, now, id) {
            self.next_request += 1;
            self.node.handle(now, Input::client(id, request));
        }
    }

    fn publish_status(&self, stopped: bool) {
        let node = &self.node;
        let config = node.config();
        let db_size = node.state().kv.engine().size_bytes();
        let status = MemberStatus {
            member_id: config.id.0,
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
                .members()
                .get(config.id)
                .is_some_and(|m| m.is_learner),
            leader_changes: self.leader_changes,
            db_size,
            db_size_in_use: self.in_use.bytes(db_size),
            proposals_pending: node.pending_proposals() as u64,
            proposals_failed: node.proposals_failed(),
            alarms: node.state().alarms().describe(),
            auth_revision: node.state().auth().revision().0,
            stopped,
        };
        log_alarm_changes(&self.log, &self.status.borrow().alarms, &status.alarms);
        self.auth.publish(node.state().auth());
        let changed = self.status.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
        if changed {
            self.status_changed.notify_waiters();
        }
    }
}

/// Resolves when the fsync in flight finishes (never, if none is), with when it started.
async fn wait_for_sync(sync: &mut Option<Sync>) -> (Result<(), DiskError>, std::time::Instant) {
    match sync {
        Some(sync) => ((&mut sync.done).await, sync.started),
        None => pending().await,
    }
}

/// Logs each alarm raised or cleared since the status was last published.
fn log_alarm_changes(log: &slog::Logger, before: &[String], after: &[String]) {
    for raised in after.iter().filter(|alarm| !before.contains(alarm)) {
        slog::warn!(log, "alarm raised"; "alarm" => raised.trim_end());
    }
    for cleared in before.iter().filter(|alarm| !after.contains(alarm)) {
        slog::warn!(log, "alarm disarmed"; "alarm" => cleared.trim_end());
    }
}

/// The driver's wake-up for `Input::Tick` at the node's deadline, kept while the deadline stays
/// the same (a new timer per turn of the loop would pile up in the simulator).
#[derive(Default)]
struct Alarm {
    at: Option<Instant>,
    sleep: Option<BoxFuture<()>>,
}

impl Alarm {
    fn set(&mut self, env: &dyn Environment, at: Instant) {
        if self.at != Some(at) || self.sleep.is_none() {
            self.sleep = Some(env.sleep_until(at));
            self.at = Some(at);
        }
    }

    /// Resolves when the alarm rings.
    async fn ring(&mut self) {
        match &mut self.sleep {
            Some(sleep) => {
                sleep.await;
                self.sleep = None;
            }
            None => pending().await,
        }
    }
}
