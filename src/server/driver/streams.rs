//! Watch delivery: each watch stream's responses go into its bounded channel (`Limits`). When
//! a client reads too slowly and its channel fills, the stream is blocked rather than closed
//! (etcd's "victim" watchers): its event and progress responses go back to the node, whose
//! watchers fall back to history, and its `created`/`canceled` responses wait here, bounded.
//! Once the client has read half its channel, the held responses go first, then the node sends
//! the missed events from history a channel's worth at a time. A response is never dropped from
//! a stream that goes on; only a client that holds more than `HELD_PER_STREAM` control responses
//! unread (it keeps creating watches without reading) has its stream ended with an error.

use std::collections::{BTreeMap, VecDeque};

use tokio::sync::mpsc::error::TrySendError;
use tonic::Status;

use crate::proto::etcdserverpb as pb;
use crate::server::handle::WatchSender;
use crate::watch::StreamId;

/// The message a stream that fell too far behind ends with.
pub const TOO_SLOW: &str =
    "etcdserver: watch stream is too slow to keep up; resume from the last revision seen";

/// `created`/`canceled` responses held for a blocked stream before it is ended instead.
pub const HELD_PER_STREAM: usize = 1024;

/// One open stream.
struct Open {
    sender: WatchSender,
    /// The channel was full: nothing more is sent until the client read half of it.
    blocked: bool,
    /// `created`/`canceled` responses waiting for room, in order.
    held: VecDeque<pb::WatchResponse>,
}

/// Open watch streams.
#[derive(Default)]
pub struct Streams {
    open: BTreeMap<StreamId, Open>,
}

/// What became of a response handed to [`Streams::deliver`].
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Queued for the client, held for later, or the stream is unknown (it closed before).
    Queued,
    /// No room: the node must send these events (or this progress answer) again from history.
    Undelivered(pb::WatchResponse),
    /// The stream is gone or was ended: close its watches in the node.
    Closed,
}

impl Streams {
    pub fn open(&mut self, stream: StreamId, sender: WatchSender) {
        let open = Open {
            sender,
            blocked: false,
            held: VecDeque::new(),
        };
        self.open.insert(stream, open);
    }

    pub fn close(&mut self, stream: StreamId) {
        self.open.remove(&stream);
    }

    /// Whether any stream is blocked (the driver then looks for ones to resume).
    pub fn any_blocked(&self) -> bool {
        self.open.values().any(|open| open.blocked)
    }

    /// Queues `response` on its stream. (`drop_when_full` is a planted mistake of the
    /// simulator's self-test: drop the response and go on.)
    pub fn deliver(
        &mut self,
        stream: StreamId,
        response: pb::WatchResponse,
        drop_when_full: bool,
        log: &slog::Logger,
    ) -> Delivery {
        let Some(open) = self.open.get_mut(&stream) else {
            return Delivery::Queued;
        };
        let control = response.created || response.canceled;
        let response = if open.blocked {
            response
        } else {
            match open.sender.try_send(Ok(response)) {
                Ok(()) => return Delivery::Queued,
                Err(TrySendError::Closed(_)) => {
                    self.open.remove(&stream);
                    return Delivery::Closed;
                }
                Err(TrySendError::Full(_)) if drop_when_full => return Delivery::Queued,
                Err(TrySendError::Full(message)) => {
                    slog::debug!(log, "watch stream full; its watchers fall back to history";
                        "stream" => stream);
                    open.blocked = true;
                    match message {
                        Ok(response) => response,
                        Err(_) => return Delivery::Queued,
                    }
                }
            }
        };
        if !control {
            return Delivery::Undelivered(response);
        }
        if open.held.len() < HELD_PER_STREAM {
            open.held.push_back(response);
            return Delivery::Queued;
        }
        slog::warn!(log, "watch stream too slow; closing it"; "stream" => stream);
        if let Some(open) = self.open.remove(&stream) {
            // Ends the stream with an error once the client has read what is buffered.
            tokio::spawn(async move {
                let _ = open.sender.send(Err(Status::unavailable(TOO_SLOW))).await;
            });
        }
        Delivery::Closed
    }

    /// Blocked streams whose client has read half its channel: their held responses are sent
    /// (as many as fit), and those with nothing left held are unblocked. Returns each unblocked
    /// stream with the room it has, for the node's catch-up from history.
    pub fn resume(&mut self) -> Vec<(StreamId, usize)> {
        let mut resumed = Vec::new();
        for (&stream, open) in &mut self.open {
            let room = open.sender.capacity();
            if !open.blocked || room * 2 < open.sender.max_capacity() {
                continue;
            }
            while let Some(response) = open.held.pop_front() {
                if let Err(error) = open.sender.try_send(Ok(response)) {
                    if let TrySendError::Full(Ok(response)) | TrySendError::Closed(Ok(response)) =
                        error
                    {
                        open.held.push_front(response);
                    }
                    break;
                }
            }
            if open.held.is_empty() {
                open.blocked = false;
                resumed.push((stream, open.sender.capacity()));
            }
        }
        resumed
    }

    /// Room in an open, unblocked stream's channel (0 if blocked or unknown).
    pub fn room(&self, stream: StreamId) -> usize {
        self.open
            .get(&stream)
            .filter(|open| !open.blocked)
            .map_or(0, |open| open.sender.capacity())
    }
}
