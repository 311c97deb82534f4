//! How the rest of the member runtime talks to the driver: the `Command`s it takes (bounded queue)
//! and `DriverHandle`, the cheap cloneable sender the gRPC services, the peer transport and the
//! HTTP endpoints hold. The driver itself lives in `driver/`; nothing here knows about it.

use std::sync::Arc;

use raft::eraftpb::Message;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tonic::Status;

use super::metrics::Metrics;
use super::status::MemberStatus;
use crate::auth::AuthInfo;
use crate::node::{ClientError, ClientRequest, ClientResponse, HashKvStepped};
use crate::proto::etcdserverpb as pb;
use crate::watch::StreamId;

/// Commands waiting for the driver; senders wait when it is full.
pub const COMMAND_QUEUE: usize = 4096;

/// A watch stream's response channel.
pub type WatchSender = mpsc::Sender<Result<pb::WatchResponse, Status>>;

/// What the rest of the server asks of the driver.
/// The applied state's snapshot metadata and an export of the engine at it.
pub type AppliedExport = (raft::eraftpb::SnapshotMetadata, crate::engine::Export);

pub enum Command {
    Request {
        request: ClientRequest,
        /// Who asked (resolved from the client's token or certificate).
        caller: Option<AuthInfo>,
        reply: oneshot::Sender<Result<ClientResponse, ClientError>>,
    },
    /// A new watch stream: responses for `stream` go to `sender`.
    OpenWatchStream {
        stream: StreamId,
        sender: WatchSender,
    },
    /// A raft message from a peer.
    Peer(Message),
    /// Rows of a state a leader sends ahead of its snapshot message.
    StateChunk(crate::node::StateChunk),
    /// The transport could not deliver to a peer (and, if `snapshot_failed`, a snapshot was lost).
    Unreachable { to: u64, snapshot_failed: bool },
    /// A snapshot was written to a peer's connection (`ok`) or failed.
    SnapshotReport { to: u64, ok: bool },
    /// A peer refused this member because the cluster removed it.
    RemovedByPeer { peer: u64 },
    /// The applied state, to be read from the engine (for `Maintenance.Snapshot` and `Hash`).
    Snapshot {
        reply: oneshot::Sender<Option<AppliedExport>>,
    },
    /// Hand leadership to `target` (etcd's MoveLeader).
    TransferLeader { target: u64 },
    /// A snapshot file written off the driver's task is durable (or failed).
    SnapshotFileWritten(Result<raft::eraftpb::Snapshot, String>),
    /// A measurement of the engine's bytes in use finished after `took`.
    InUseMeasured {
        measured: Result<u64, String>,
        took: std::time::Duration,
    },
    /// The engine commit the node numbered `number` was written off the driver's task after
    /// `took` (its result is in the node's job).
    StateCommitted {
        number: u64,
        took: std::time::Duration,
    },
}

/// A cheap handle for sending the driver requests.
#[derive(Clone)]
pub struct DriverHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<MemberStatus>,
    /// Rung by the driver whenever it publishes a changed status, and when it stops. Waits for a
    /// status go through it, not the watch's `changed()`: a watch has each waiter wait on one of
    /// eight notifiers picked with tokio's thread-local generator, seeded from a process-wide
    /// counter, so the order in which waiters woke depended on what the process ran before (in
    /// the simulator, on earlier seeds). A `Notify` wakes them in the order they began to wait.
    status_changed: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Waited between two steps of a `HashKV` (the environment's `hash_kv_step_pause`).
    hash_step_pause: std::time::Duration,
    /// FOR THE SIMULATOR'S SELF-TEST ONLY (`Mistake::HashKvTimesOutAfterFirstStep`): a hash
    /// that needs a second step fails with a timeout instead.
    hash_times_out_after_first_step: bool,
}

impl DriverHandle {
    /// A handle over the driver's command queue and published status.
    pub fn new(
        commands: mpsc::Sender<Command>,
        (status, status_changed): (watch::Receiver<MemberStatus>, Arc<Notify>),
        metrics: Arc<Metrics>,
    ) -> Self {
        DriverHandle {
            commands,
            status,
            status_changed,
            metrics,
            hash_step_pause: std::time::Duration::ZERO,
            hash_times_out_after_first_step: false,
        }
    }

    /// The same handle, waiting `pause` between two steps of a `HashKV`.
    pub fn pausing_between_hash_steps(mut self, pause: std::time::Duration) -> Self {
        self.hash_step_pause = pause;
        self
    }

    /// The same handle with a planted mistake (`Mistake::HashKvTimesOutAfterFirstStep`), for
    /// the simulator's self-test of its backup oracle.
    pub fn timing_out_after_first_hash_step(mut self, planted: bool) -> Self {
        self.hash_times_out_after_first_step = planted;
        self
    }

    /// Sends a request to this member's own node and waits for its answer; `Stopped` if the
    /// driver is gone. A `HashKv` goes as a series of steps (`hash_kv`).
    pub async fn call_local(
        &self,
        request: ClientRequest,
        caller: Option<AuthInfo>,
    ) -> Result<ClientResponse, ClientError> {
        match request {
            ClientRequest::HashKv(hash) => self.hash_kv(hash.revision, caller).await,
            request => self.call_node(request, caller).await,
        }
    }

    /// etcd's `HashKV`, taken by the node a bounded number of index entries per step: between
    /// two steps the driver applies, commits and answers whatever else waits, so hashing a large
    /// history stalls nothing (etcd's hash holds its backend's read lock, and with it the next
    /// batch commit, for the whole pass). The node keeps no state between steps; each step goes
    /// on from where the last one stopped, and starts over if a compaction came in between.
    async fn hash_kv(
        &self,
        revision: i64,
        caller: Option<AuthInfo>,
    ) -> Result<ClientResponse, ClientError> {
        let mut progress = None;
        loop {
            let step = ClientRequest::HashKvStep { revision, progress };
            match self.call_node(step, caller.clone()).await? {
                ClientResponse::HashKvStep(HashKvStepped::Done(hash)) => {
                    return Ok(ClientResponse::HashKv(hash))
                }
                ClientResponse::HashKvStep(HashKvStepped::More(_))
                    if self.hash_times_out_after_first_step =>
                {
                    return Err(ClientError::Timeout)
                }
                ClientResponse::HashKvStep(HashKvStepped::More(next)) => progress = Some(next),
                other => return Ok(other),
            }
            if !self.hash_step_pause.is_zero() {
                tokio::time::sleep(self.hash_step_pause).await;
            }
        }
    }

    /// One request to the node, as it is.
    async fn call_node(
        &self,
        request: ClientRequest,
        caller: Option<AuthInfo>,
    ) -> Result<ClientResponse, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request {
                request,
                caller,
                reply,
            })
            .await
            .map_err(|_| ClientError::Stopped)?;
        answer.await.unwrap_or(Err(ClientError::Stopped))
    }

    /// Sends a request without waiting for the answer (closing a watch stream).
    pub fn send_detached(&self, request: ClientRequest) {
        let (reply, _answer) = oneshot::channel();
        let _ = self.commands.try_send(Command::Request {
            request,
            caller: None,
            reply,
        });
    }

    /// Registers a watch stream's response channel.
    pub async fn open_watch_stream(
        &self,
        stream: StreamId,
        sender: WatchSender,
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

    /// Hands the driver a chunk of a state the leader sends; false once the driver stopped.
    pub async fn deliver_state_chunk(&self, chunk: crate::node::StateChunk) -> bool {
        self.commands.send(Command::StateChunk(chunk)).await.is_ok()
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

    /// Tells the driver a peer refused this member as removed from the cluster.
    pub async fn report_removed(&self, peer: u64) {
        let _ = self.commands.send(Command::RemovedByPeer { peer }).await;
    }

    /// The applied state, to be read from the engine while writes go on; `None` if the driver
    /// is gone or the engine failed.
    pub async fn snapshot(&self) -> Option<AppliedExport> {
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
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The member's latest status.
    pub fn status(&self) -> MemberStatus {
        self.status.borrow().clone()
    }

    /// Whether the driver has stopped (its command queue is closed): nothing sent now is answered.
    pub fn stopped(&self) -> bool {
        self.commands.is_closed()
    }

    /// Waits until this member knows a leader (itself or another), at most `within`; whether
    /// it does.
    pub async fn leader_known_within(&self, within: std::time::Duration) -> bool {
        self.status_within(within, |status| status.leader.is_some())
            .await
    }

    /// Waits until this member has applied `revision`, at most `within`; whether it has.
    pub async fn applied_revision(&self, revision: i64, within: std::time::Duration) -> bool {
        self.status_within(within, |status| status.revision >= revision)
            .await
    }

    /// Waits until the published status satisfies `holds`, at most `within`; whether it does.
    /// False at once if the driver stopped.
    async fn status_within(
        &self,
        within: std::time::Duration,
        mut holds: impl FnMut(&MemberStatus) -> bool,
    ) -> bool {
        let reached = super::notified::until(&self.status_changed, || {
            if holds(&self.status.borrow()) {
                Some(true)
            } else {
                self.stopped().then_some(false)
            }
        });
        tokio::time::timeout(within, reached).await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> (
        DriverHandle,
        mpsc::Receiver<Command>,
        watch::Sender<MemberStatus>,
        Arc<Notify>,
    ) {
        let (commands, queue) = mpsc::channel(1);
        let (status, status_rx) = watch::channel(MemberStatus::default());
        let changed = Arc::new(Notify::new());
        let metrics = Arc::new(Metrics::new(0));
        let handle = DriverHandle::new(commands, (status_rx, changed.clone()), metrics);
        (handle, queue, status, changed)
    }

    #[tokio::test]
    async fn a_status_wait_ends_when_the_published_status_holds() {
        let (handle, _queue, status, changed) = handle();
        let waiting = tokio::spawn({
            let handle = handle.clone();
            async move {
                handle
                    .leader_known_within(std::time::Duration::from_secs(60))
                    .await
            }
        });
        tokio::task::yield_now().await;
        status.send_modify(|status| status.leader = Some(7));
        changed.notify_waiters();
        assert!(waiting.await.expect("the waiting task"));
        assert!(
            handle
                .leader_known_within(std::time::Duration::from_secs(60))
                .await
        );
    }

    #[tokio::test]
    async fn a_status_wait_gives_up_once_the_driver_stopped() {
        let (handle, mut queue, _status, changed) = handle();
        let waiting = tokio::spawn({
            let handle = handle.clone();
            async move {
                handle
                    .applied_revision(5, std::time::Duration::from_secs(3600))
                    .await
            }
        });
        tokio::task::yield_now().await;
        queue.close();
        changed.notify_waiters();
        // Not a timing check: only a guard against hanging for the wait's hour.
        let gave_up = tokio::time::timeout(std::time::Duration::from_secs(60), waiting).await;
        assert!(!gave_up.expect("the wait ended").expect("the waiting task"));
    }
}
