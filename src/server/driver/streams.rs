//! Watch delivery: each watch stream's responses go into its bounded channel (`Limits`). When
//! a client reads too slowly and its channel fills, the stream is blocked rather than closed
//! (etcd's "victim" watchers): its event and progress responses go back to the node, whose
//! watchers fall back to history, and its `created`/`canceled` responses wait here, bounded.
//! Once the client has read half its channel, the held responses go first, then the node sends
//! the missed events from history a channel's worth at a time. A response is never dropped from
//! a stream that goes on; only a client that holds more than `HELD_PER_STREAM` control responses
//! unread (it keeps creating watches without reading) has its stream ended with an error.
//!
//! Undelivered responses are kept here until the end of the driver's turn. A watcher canceled
//! in the same turn takes its undelivered responses with it: the client may re-create the
//! same watch id at once, and the new watcher must not be rewound to the old one's events.

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
    /// Event and progress responses full streams did not take this turn, in order, for the
    /// node ([`take_undelivered`](Self::take_undelivered)).
    undelivered: BTreeMap<StreamId, Vec<pb::WatchResponse>>,
}

/// What became of a response handed to [`Streams::deliver`].
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Queued for the client, held for later, kept as undelivered (the node sends its events
    /// again from history), or the stream is unknown (it closed before).
    Queued,
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
        self.undelivered.remove(&stream);
    }

    /// The responses full streams did not take since the last call, per stream in order.
    pub fn take_undelivered(&mut self) -> BTreeMap<StreamId, Vec<pb::WatchResponse>> {
        std::mem::take(&mut self.undelivered)
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
        if response.canceled {
            // The canceled watcher's undelivered events die with it (a new watcher may reuse
            // its id before the node hears of them).
            if let Some(lost) = self.undelivered.get_mut(&stream) {
                lost.retain(|r| r.watch_id != response.watch_id);
            }
        }
        let response = if open.blocked {
            response
        } else {
            match open.sender.try_send(Ok(response)) {
                Ok(()) => return Delivery::Queued,
                Err(TrySendError::Closed(_)) => {
                    self.close(stream);
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
            self.undelivered.entry(stream).or_default().push(response);
            return Delivery::Queued;
        }
        if open.held.len() < HELD_PER_STREAM {
            open.held.push_back(response);
            return Delivery::Queued;
        }
        slog::warn!(log, "watch stream too slow; closing it"; "stream" => stream);
        self.undelivered.remove(&stream);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb;

    fn events(watch_id: i64, revision: i64) -> pb::WatchResponse {
        let kv = mvccpb::KeyValue {
            key: b"k".to_vec(),
            mod_revision: revision,
            ..Default::default()
        };
        pb::WatchResponse {
            watch_id,
            events: vec![mvccpb::Event {
                kv: Some(kv),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn control(watch_id: i64, created: bool) -> pb::WatchResponse {
        pb::WatchResponse {
            watch_id,
            created,
            canceled: !created,
            ..Default::default()
        }
    }

    fn full_stream(
        streams: &mut Streams,
    ) -> tokio::sync::mpsc::Receiver<Result<pb::WatchResponse, Status>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        streams.open(7, sender);
        let log = slog::Logger::root(slog::Discard, slog::o!());
        assert_eq!(
            streams.deliver(7, events(1, 2), false, &log),
            Delivery::Queued
        );
        receiver
    }

    #[test]
    fn a_full_stream_keeps_events_for_the_node_and_holds_control_responses() {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let mut streams = Streams::default();
        let _receiver = full_stream(&mut streams);
        assert_eq!(
            streams.deliver(7, events(1, 3), false, &log),
            Delivery::Queued
        );
        assert_eq!(
            streams.deliver(7, control(2, true), false, &log),
            Delivery::Queued
        );
        assert_eq!(
            streams.deliver(7, events(2, 4), false, &log),
            Delivery::Queued
        );
        let lost = streams.take_undelivered();
        let lost: Vec<i64> = lost[&7].iter().map(|r| r.watch_id).collect();
        assert_eq!(lost, vec![1, 2]);
        assert!(streams.take_undelivered().is_empty(), "taken once");
        assert_eq!(streams.room(7), 0, "blocked");
    }

    #[test]
    fn a_canceled_watcher_takes_its_undelivered_events_with_it() {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let mut streams = Streams::default();
        let _receiver = full_stream(&mut streams);
        // Watcher 1 misses revision 3, is canceled and re-created under the same id, and
        // the new watcher misses revision 9: only revision 9 may go back to the node.
        streams.deliver(7, events(1, 3), false, &log);
        streams.deliver(7, events(5, 3), false, &log);
        streams.deliver(7, control(1, false), false, &log);
        streams.deliver(7, control(1, true), false, &log);
        streams.deliver(7, events(1, 9), false, &log);
        let lost = streams.take_undelivered();
        let lost: Vec<(i64, i64)> = lost[&7]
            .iter()
            .map(|r| {
                (
                    r.watch_id,
                    r.events[0].kv.as_ref().map_or(0, |kv| kv.mod_revision),
                )
            })
            .collect();
        assert_eq!(lost, vec![(5, 3), (1, 9)]);
    }

    #[test]
    fn a_closed_stream_forgets_its_undelivered_events() {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let mut streams = Streams::default();
        let _receiver = full_stream(&mut streams);
        streams.deliver(7, events(1, 3), false, &log);
        streams.close(7);
        assert!(streams.take_undelivered().is_empty());
    }
}
