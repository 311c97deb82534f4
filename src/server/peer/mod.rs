//! The peer transport: raft messages to and from the other members over TCP (see
//! `crate::peer_wire` for the bytes). The driver hands `Transport::send` every outgoing message;
//! one writer task per peer dials it lazily, sends in batches and reconnects with backoff, and
//! reports unreachable peers and the fate of snapshots back to the driver. `accept` serves the
//! peer listeners: raft messages in, membership queries, and leader-only requests forwarded by
//! followers (`forward`).

pub mod accept;
pub mod clock;
pub mod conn;
pub mod corrupt;
pub mod forward;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use raft::eraftpb::{Message, MessageType};
use tokio::sync::{mpsc, watch};

use self::conn::{dial, Identity, PeerError};
use super::env::{BoxFuture, Environment, WriteFault};
use super::handle::DriverHandle;
use super::metrics::Metrics;
use crate::engine::Export;
use crate::peer_wire;
use crate::proto::etcdserverpb as pb;
use crate::proto::stetpeerpb as peerpb;
use crate::time::Instant;

/// Messages queued per peer; beyond that they are dropped and the peer reported unreachable
/// (raft sends again).
const PEER_QUEUE: usize = 4096;
/// Bytes gathered into one write.
const BATCH_BYTES: usize = 1024 * 1024;
/// Bytes of rows per chunk of a state sent to a follower.
const STATE_CHUNK_BYTES: usize = 256 * 1024;
/// Reconnect backoff bounds.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a writer may have nothing to send before it dials its peer once to hear whether this
/// member is still in the cluster. A removed member that missed its removal (a learner, which
/// never campaigns, cut off or rebooted while it was removed) hears of it from nobody else;
/// etcd's members learn it the same way, from the peers their stream readers keep dialing.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// The membership as the driver last applied it: peer URLs by member ID, and the IDs removed for
/// good. Shared with the forwarder, which dials the leader, and the peer listeners, which refuse
/// removed members.
#[derive(Debug, Default, Clone)]
pub struct AddressBook(Arc<RwLock<Addresses>>);

#[derive(Debug, Default)]
struct Addresses {
    urls: HashMap<u64, Vec<String>>,
    removed: Vec<u64>,
}

impl AddressBook {
    /// The peer URLs of member `id`.
    pub fn urls(&self, id: u64) -> Vec<String> {
        self.0
            .read()
            .ok()
            .and_then(|book| book.urls.get(&id).cloned())
            .unwrap_or_default()
    }

    /// Every member's ID and peer URLs.
    pub fn members(&self) -> Vec<(u64, Vec<String>)> {
        let mut members: Vec<(u64, Vec<String>)> = self
            .0
            .read()
            .map(|book| {
                book.urls
                    .iter()
                    .map(|(id, urls)| (*id, urls.clone()))
                    .collect()
            })
            .unwrap_or_default();
        members.sort();
        members
    }

    /// Whether member `id` was removed from the cluster for good.
    pub fn is_removed(&self, id: u64) -> bool {
        self.0
            .read()
            .is_ok_and(|book| book.removed.binary_search(&id).is_ok())
    }

    /// The IDs of the members removed for good, in ascending order.
    pub fn removed(&self) -> Vec<u64> {
        self.0
            .read()
            .map(|book| book.removed.clone())
            .unwrap_or_default()
    }

    fn replace(&self, urls: HashMap<u64, Vec<String>>, removed: Vec<u64>) {
        if let Ok(mut book) = self.0.write() {
            *book = Addresses { urls, removed };
        }
    }
}

struct Link {
    urls: watch::Sender<Vec<String>>,
    queue: mpsc::Sender<Message>,
}

/// Outgoing raft messages, one writer task per peer.
pub struct Transport {
    log: slog::Logger,
    identity: Identity,
    driver: DriverHandle,
    env: Arc<dyn Environment>,
    links: HashMap<u64, Link>,
    addresses: AddressBook,
}

impl Transport {
    pub fn new(
        identity: Identity,
        driver: DriverHandle,
        addresses: AddressBook,
        env: Arc<dyn Environment>,
        log: slog::Logger,
    ) -> Self {
        Transport {
            log,
            identity,
            driver,
            env,
            links: HashMap::new(),
            addresses,
        }
    }

    /// Learns a new cluster ID (a joining member learns it before it starts; kept for clarity).
    pub fn identity(&self) -> Identity {
        self.identity.clone()
    }

    /// Brings the links in line with the membership: new members get a writer task, changed peer
    /// URLs are passed on, removed members' tasks end. `removed` (sorted) are the IDs removed for
    /// good.
    pub fn update_members(&mut self, members: &[pb::Member], removed: Vec<u64>) {
        let me = self.identity.member_id;
        let mut book = HashMap::new();
        for member in members {
            book.insert(member.id, member.peer_ur_ls.clone());
            if member.id == me {
                continue;
            }
            match self.links.get(&member.id) {
                Some(link) => {
                    link.urls.send_if_modified(|urls| {
                        if *urls == member.peer_ur_ls {
                            false
                        } else {
                            *urls = member.peer_ur_ls.clone();
                            true
                        }
                    });
                }
                None => {
                    let link = self.spawn_writer(member);
                    self.links.insert(member.id, link);
                }
            }
        }
        self.links.retain(|id, _| book.contains_key(id));
        self.addresses.replace(book, removed);
    }

    /// Starts the writer task of a new peer.
    fn spawn_writer(&self, member: &pb::Member) -> Link {
        let (urls, urls_rx) = watch::channel(member.peer_ur_ls.clone());
        let (queue, queue_rx) = mpsc::channel(PEER_QUEUE);
        let writer = PeerWriter {
            log: self.log.new(slog::o!("peer" => format!("{:x}", member.id))),
            identity: self.identity.clone(),
            to: member.id,
            urls: urls_rx,
            queue: queue_rx,
            driver: self.driver.clone(),
            env: self.env.clone(),
            part_bytes: self.env.limits().peer_message_part_bytes,
            last_active: self.env.now(),
            probe_alarm: std::sync::Mutex::new(None),
        };
        tokio::spawn(writer.run());
        Link { urls, queue }
    }

    /// Sends a `MsgSnapshot` and the state it stands for on a connection of their own (the
    /// peer's other messages, heartbeats among them, do not wait behind it): every chunk of
    /// `state`, then the message; then reports whether it all went out.
    pub fn send_state(&mut self, message: Message, state: Export) {
        let to = message.to;
        let Some(link) = self.links.get(&to) else {
            self.driver.report_unreachable(to, true);
            return;
        };
        let sender = StateSender {
            log: self.log.new(slog::o!("peer" => format!("{to:x}"))),
            identity: self.identity.clone(),
            to,
            urls: link.urls.borrow().clone(),
            driver: self.driver.clone(),
            env: self.env.clone(),
            part_bytes: self.env.limits().peer_message_part_bytes,
        };
        tokio::spawn(sender.run(message, state));
    }

    /// Queues `message` for its peer. A message for an unknown peer, or one whose queue is full,
    /// is dropped and the peer reported unreachable (a snapshot also as failed).
    pub fn send(&mut self, message: Message) {
        let to = message.to;
        let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        let sent = match self.links.get(&to) {
            Some(link) => link.queue.try_send(message).is_ok(),
            None => false,
        };
        if !sent {
            self.driver.metrics().peer_send_failed(to);
            self.driver.report_unreachable(to, is_snapshot);
        }
    }
}

/// The task that owns one peer's outgoing connection.
struct PeerWriter {
    log: slog::Logger,
    identity: Identity,
    to: u64,
    urls: watch::Receiver<Vec<String>>,
    queue: mpsc::Receiver<Message>,
    driver: DriverHandle,
    env: Arc<dyn Environment>,
    part_bytes: usize,
    /// When the writer last had something to send or probed its peer.
    last_active: Instant,
    /// Rings `PROBE_INTERVAL` after `last_active` (as it was when set): one timer per interval,
    /// not one per message. (In a mutex only to make the writer `Sync`; always reached through
    /// `&mut self`, never locked.)
    probe_alarm: std::sync::Mutex<Option<BoxFuture<()>>>,
}

/// Why a writer stopped sending on a connection.
enum Stopped {
    /// The queue closed: the peer left the membership or the member is stopping.
    QueueClosed,
    /// A write failed; the connection is gone.
    WriteFailed,
}

impl PeerWriter {
    /// Dials the peer when there is something to send, sends until the connection fails, and
    /// dials again with backoff; ends when the queue closes or the peer says this member was
    /// removed.
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut active = true;
        loop {
            let Some(first) = self.next_message().await else {
                return;
            };
            match self.connect().await {
                Ok(stream) => {
                    if !active {
                        slog::info!(self.log, "peer became active");
                    }
                    backoff = MIN_BACKOFF;
                    match self.send_until_failure(stream, first).await {
                        Stopped::QueueClosed => return,
                        // Logged already; the next dial failure need not be.
                        Stopped::WriteFailed => active = false,
                    }
                }
                Err(PeerError::Removed) => {
                    self.driver.report_removed(self.to).await;
                    return;
                }
                Err(error) => {
                    if active || matches!(error, PeerError::ClusterMismatch { .. }) {
                        log_dial_failure(&self.log, &error);
                    }
                    active = false;
                    self.fail(&first);
                    while let Ok(message) = self.queue.try_recv() {
                        self.fail(&message);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The next message to send. While none comes for `PROBE_INTERVAL`, dials the peer to hear
    /// whether this member was removed. `None` once the queue closed, or this member was removed
    /// (the driver has been told).
    async fn next_message(&mut self) -> Option<Message> {
        loop {
            let due = self.last_active + PROBE_INTERVAL;
            let env = &self.env;
            let slot = match self.probe_alarm.get_mut() {
                Ok(slot) => slot,
                Err(poisoned) => poisoned.into_inner(),
            };
            let alarm = slot.get_or_insert_with(|| env.sleep_until(due));
            tokio::select! {
                biased;
                message = self.queue.recv() => {
                    self.last_active = self.env.now();
                    return message;
                }
                () = alarm => {
                    *slot = None;
                    let now = self.env.now();
                    if now < self.last_active + PROBE_INTERVAL {
                        continue; // active since the alarm was set: wait out the rest
                    }
                    self.last_active = now;
                    if self.probe().await {
                        return None;
                    }
                }
            }
        }
    }

    /// Dials the peer once, only to hear whether this member is still in the cluster; true if
    /// it was removed (the driver is told, and stops the member).
    async fn probe(&mut self) -> bool {
        let urls = self.urls.borrow().clone();
        for url in &urls {
            match dial(url, &self.identity, peerpb::Purpose::Probe, self.to).await {
                Err(PeerError::Removed) => {
                    slog::warn!(
                        self.log,
                        "a peer says this member was removed from the cluster"
                    );
                    self.driver.report_removed(self.to).await;
                    return true;
                }
                Ok(_) => return false,
                Err(_) => {}
            }
        }
        false
    }

    /// Sends `first` and then every queued message on `stream`, in batches, until a write fails
    /// or the queue closes.
    async fn send_until_failure(
        &mut self,
        mut stream: conn::FramedStream,
        first: Message,
    ) -> Stopped {
        let mut next = Some(first);
        let mut bytes = Vec::new();
        let mut snapshots = 0;
        loop {
            let message = match next.take() {
                Some(message) => message,
                None => match self.next_message().await {
                    Some(message) => message,
                    None => return Stopped::QueueClosed,
                },
            };
            bytes.clear();
            snapshots = self.encode_batch(message, &mut bytes, snapshots);
            let written = self.write_batch(&mut stream, &bytes).await;
            for _ in 0..std::mem::take(&mut snapshots) {
                self.driver.report_snapshot(self.to, written.is_ok());
            }
            if let Err(error) = written {
                slog::warn!(self.log, "lost the connection to a peer"; "error" => %error);
                self.driver.report_unreachable(self.to, false);
                return Stopped::WriteFailed;
            }
        }
    }

    /// Encodes `first` and whatever else is queued, up to a batch's worth, into `bytes`; returns
    /// `snapshots` plus the snapshots among them.
    fn encode_batch(&mut self, first: Message, bytes: &mut Vec<u8>, mut snapshots: usize) -> usize {
        let mut batch = Some(first);
        while let Some(message) = batch.take() {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                snapshots += 1;
            }
            match protobuf::Message::write_to_bytes(&message) {
                Ok(encoded) => {
                    peer_wire::encode_raft_message_in_parts(&encoded, self.part_bytes, bytes)
                }
                Err(error) => {
                    slog::error!(self.log, "cannot encode a raft message; dropped"; "error" => %error)
                }
            }
            if bytes.len() < BATCH_BYTES {
                batch = self.queue.try_recv().ok();
            }
        }
        snapshots
    }

    /// Writes a batch, suffering whatever fault the environment says this write meets.
    async fn write_batch(
        &self,
        stream: &mut conn::FramedStream,
        bytes: &[u8],
    ) -> Result<(), PeerError> {
        write_with_faults(&*self.env, self.driver.metrics(), self.to, stream, bytes).await
    }

    /// Dials each of the peer's URLs in turn.
    async fn connect(&mut self) -> Result<conn::FramedStream, PeerError> {
        let urls = self.urls.borrow_and_update().clone();
        let mut last = PeerError::BadUrl(String::new());
        for url in &urls {
            match dial(url, &self.identity, peerpb::Purpose::Raft, self.to).await {
                Ok((stream, _)) => return Ok(stream),
                Err(error @ (PeerError::ClusterMismatch { .. } | PeerError::Removed)) => {
                    return Err(error)
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    fn fail(&self, message: &Message) {
        let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        self.driver.report_unreachable(self.to, is_snapshot);
    }
}

/// Writes `bytes` to peer `to`, suffering whatever fault the environment says this write meets;
/// counts the bytes sent or the failure.
async fn write_with_faults(
    env: &dyn Environment,
    metrics: &Metrics,
    to: u64,
    stream: &mut conn::FramedStream,
    bytes: &[u8],
) -> Result<(), PeerError> {
    let written = write_with_faults_uncounted(env, to, stream, bytes).await;
    match &written {
        Ok(()) => metrics.peer_sent(to, bytes.len()),
        Err(_) => metrics.peer_send_failed(to),
    }
    written
}

async fn write_with_faults_uncounted(
    env: &dyn Environment,
    to: u64,
    stream: &mut conn::FramedStream,
    bytes: &[u8],
) -> Result<(), PeerError> {
    match env.peer_write_fault(to, bytes.len()) {
        None => stream.write_all(bytes).await,
        Some(WriteFault::Reset { after }) => {
            let _ = stream.write_all(&bytes[..after.min(bytes.len())]).await;
            Err(PeerError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            )))
        }
        Some(WriteFault::Stall { after, pause }) => {
            let (head, tail) = bytes.split_at(after.min(bytes.len()));
            stream.write_all(head).await?;
            tokio::time::sleep(pause).await;
            stream.write_all(tail).await
        }
    }
}

/// The task that sends one state and its snapshot message to a peer.
struct StateSender {
    log: slog::Logger,
    identity: Identity,
    to: u64,
    urls: Vec<String>,
    driver: DriverHandle,
    env: Arc<dyn Environment>,
    part_bytes: usize,
}

impl StateSender {
    async fn run(self, message: Message, state: Export) {
        let index = message.get_snapshot().get_metadata().index;
        let sent = self.send(message, state).await;
        match &sent {
            Ok(chunks) => {
                slog::info!(self.log, "sent the state to a follower"; "index" => index, "chunks" => chunks)
            }
            Err(error) => {
                slog::warn!(self.log, "sending the state to a follower failed"; "index" => index, "error" => %error)
            }
        }
        self.driver.report_snapshot(self.to, sent.is_ok());
    }

    /// Dials the peer, sends every chunk and then the message; the number of chunks sent.
    async fn send(&self, message: Message, state: Export) -> Result<u64, PeerError> {
        let mut stream = self.connect().await?;
        let meta = message.get_snapshot().get_metadata();
        let (index, term) = (meta.index, meta.term);
        let mut bytes = Vec::new();
        let mut seq = 0;
        let mut state = Some(state);
        loop {
            let rows = super::blocking::next_chunk(&mut state, STATE_CHUNK_BYTES)
                .await
                .map_err(|what| PeerError::Io(std::io::Error::other(what)))?;
            let Some(rows) = rows else {
                break;
            };
            let chunk = peerpb::StateChunk {
                index,
                term,
                seq,
                rows,
            };
            bytes.clear();
            let encoded = prost::Message::encode_to_vec(&chunk);
            peer_wire::encode_state_chunk_in_parts(&encoded, self.part_bytes, &mut bytes);
            self.write(&mut stream, &bytes).await?;
            seq += 1;
        }
        bytes.clear();
        let encoded = protobuf::Message::write_to_bytes(&message)
            .map_err(|error| PeerError::Io(std::io::Error::other(error.to_string())))?;
        peer_wire::encode_raft_message_in_parts(&encoded, self.part_bytes, &mut bytes);
        self.write(&mut stream, &bytes).await?;
        Ok(seq)
    }

    /// Writes encoded frames to the peer, suffering the environment's faults, counted.
    async fn write(&self, stream: &mut conn::FramedStream, bytes: &[u8]) -> Result<(), PeerError> {
        write_with_faults(&*self.env, self.driver.metrics(), self.to, stream, bytes).await
    }

    async fn connect(&self) -> Result<conn::FramedStream, PeerError> {
        let mut last = PeerError::BadUrl(String::new());
        for url in &self.urls {
            match dial(url, &self.identity, peerpb::Purpose::Raft, self.to).await {
                Ok((stream, _)) => return Ok(stream),
                Err(error) => last = error,
            }
        }
        Err(last)
    }
}

fn log_dial_failure(log: &slog::Logger, error: &PeerError) {
    match error {
        PeerError::ClusterMismatch { local, remote } => {
            slog::error!(log, "cluster ID mismatch: refusing to talk to a member of another cluster"; "local_cluster_id" => %format!("{local:x}"), "remote_cluster_id" => %format!("{remote:x}"))
        }
        error => slog::warn!(log, "peer is unreachable"; "error" => %error),
    }
}
