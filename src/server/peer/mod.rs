//! The peer transport: raft messages to and from the other members over TCP (see
//! `crate::peer_wire` for the bytes). The driver hands `Transport::send` every outgoing message;
//! one writer task per peer dials it lazily, sends in batches and reconnects with backoff, and
//! reports unreachable peers and the fate of snapshots back to the driver. `accept` serves the
//! peer listeners: raft messages in, membership queries, and leader-only requests forwarded by
//! followers (`forward`).

pub mod accept;
pub mod conn;
pub mod forward;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use raft::eraftpb::{Message, MessageType};
use tokio::sync::{mpsc, watch};

use self::conn::{dial, Identity, PeerError};
use super::handle::DriverHandle;
use crate::peer_wire;
use crate::proto::etcdserverpb as pb;
use crate::proto::stetpeerpb as peerpb;

/// Messages queued per peer; beyond that they are dropped and the peer reported unreachable
/// (raft sends again).
const PEER_QUEUE: usize = 4096;
/// Bytes gathered into one write.
const BATCH_BYTES: usize = 1024 * 1024;
/// Reconnect backoff bounds.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

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

    /// Whether member `id` was removed from the cluster for good.
    pub fn is_removed(&self, id: u64) -> bool {
        self.0
            .read()
            .is_ok_and(|book| book.removed.binary_search(&id).is_ok())
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
    links: HashMap<u64, Link>,
    addresses: AddressBook,
}

impl Transport {
    pub fn new(
        identity: Identity,
        driver: DriverHandle,
        addresses: AddressBook,
        log: slog::Logger,
    ) -> Self {
        Transport {
            log,
            identity,
            driver,
            links: HashMap::new(),
            addresses,
        }
    }

    /// Learns a new cluster ID (a joining member learns it before it starts; kept for clarity).
    pub fn identity(&self) -> Identity {
        self.identity
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
                    let (urls, urls_rx) = watch::channel(member.peer_ur_ls.clone());
                    let (queue, queue_rx) = mpsc::channel(PEER_QUEUE);
                    let writer = PeerWriter {
                        log: self.log.new(slog::o!("peer" => format!("{:x}", member.id))),
                        identity: self.identity,
                        to: member.id,
                        urls: urls_rx,
                        queue: queue_rx,
                        driver: self.driver.clone(),
                    };
                    tokio::spawn(writer.run());
                    self.links.insert(member.id, Link { urls, queue });
                }
            }
        }
        self.links.retain(|id, _| book.contains_key(id));
        self.addresses.replace(book, removed);
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
}

impl PeerWriter {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut active = true;
        // A message taken from the queue but not yet sent.
        let mut carried: Option<Message> = None;
        loop {
            let first = match carried.take() {
                Some(message) => message,
                None => match self.queue.recv().await {
                    Some(message) => message,
                    None => return,
                },
            };
            let connected = self.connect().await;
            let mut stream = match connected {
                Ok(stream) => stream,
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
                    continue;
                }
            };
            if !active {
                slog::info!(self.log, "peer became active");
            }
            backoff = MIN_BACKOFF;
            let mut next = Some(first);
            let mut bytes = Vec::new();
            let mut snapshots = Vec::new();
            loop {
                let message = match next.take() {
                    Some(message) => message,
                    None => match self.queue.recv().await {
                        Some(message) => message,
                        None => return,
                    },
                };
                bytes.clear();
                snapshots.clear();
                let mut batch = Some(message);
                while let Some(message) = batch.take() {
                    if message.get_msg_type() == MessageType::MsgSnapshot {
                        snapshots.push(message.to);
                    }
                    match protobuf::Message::write_to_bytes(&message) {
                        Ok(encoded) => peer_wire::encode_raft_message(&encoded, &mut bytes),
                        Err(error) => {
                            slog::error!(self.log, "cannot encode a raft message; dropped"; "error" => %error)
                        }
                    }
                    if bytes.len() < BATCH_BYTES {
                        batch = self.queue.try_recv().ok();
                    }
                }
                match stream.write_all(&bytes).await {
                    Ok(()) => {
                        for _ in &snapshots {
                            self.driver.report_snapshot(self.to, true);
                        }
                    }
                    Err(error) => {
                        slog::warn!(self.log, "lost the connection to a peer"; "error" => %error);
                        // Logged just now; the next dial failure need not be.
                        active = false;
                        self.driver.report_unreachable(self.to, false);
                        for _ in &snapshots {
                            self.driver.report_snapshot(self.to, false);
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Dials each of the peer's URLs in turn.
    async fn connect(&mut self) -> Result<conn::FramedStream, PeerError> {
        let urls = self.urls.borrow_and_update().clone();
        let mut last = PeerError::BadUrl(String::new());
        for url in &urls {
            match dial(url, self.identity, peerpb::Purpose::Raft, self.to).await {
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

fn log_dial_failure(log: &slog::Logger, error: &PeerError) {
    match error {
        PeerError::ClusterMismatch { local, remote } => {
            slog::error!(log, "cluster ID mismatch: refusing to talk to a member of another cluster"; "local_cluster_id" => %format!("{local:x}"), "remote_cluster_id" => %format!("{remote:x}"))
        }
        error => slog::warn!(log, "peer is unreachable"; "error" => %error),
    }
}
