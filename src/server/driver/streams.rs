//! Watch delivery: each watch stream's responses go into its bounded channel (`Limits`). A stream
//! whose client falls that far behind is ended with an error once the client has read what is
//! buffered (it re-creates its watches from the last revision it saw), and its watches are closed
//! in the node: a response is never dropped from a stream that goes on.

use std::collections::BTreeMap;

use tokio::sync::mpsc::error::TrySendError;
use tonic::Status;

use crate::proto::etcdserverpb as pb;
use crate::server::handle::WatchSender;
use crate::watch::StreamId;

/// The message a stream that fell too far behind ends with.
pub const TOO_SLOW: &str =
    "etcdserver: watch stream is too slow to keep up; resume from the last revision seen";

/// Open watch streams.
#[derive(Default)]
pub struct Streams {
    senders: BTreeMap<StreamId, WatchSender>,
}

/// What became of a response handed to [`Streams::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the client (or the stream is unknown: it closed before).
    Queued,
    /// The stream is gone or was ended for falling behind: close its watches in the node.
    Closed,
}

impl Streams {
    pub fn open(&mut self, stream: StreamId, sender: WatchSender) {
        self.senders.insert(stream, sender);
    }

    pub fn close(&mut self, stream: StreamId) {
        self.senders.remove(&stream);
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
        let Some(sender) = self.senders.get(&stream) else {
            return Delivery::Queued;
        };
        match sender.try_send(Ok(response)) {
            Ok(()) => Delivery::Queued,
            Err(TrySendError::Closed(_)) => {
                self.senders.remove(&stream);
                Delivery::Closed
            }
            Err(TrySendError::Full(_)) if drop_when_full => Delivery::Queued,
            Err(TrySendError::Full(_)) => {
                slog::warn!(log, "watch stream too slow; closing it"; "stream" => stream);
                if let Some(sender) = self.senders.remove(&stream) {
                    // Ends the stream with an error once the client has read what is buffered.
                    tokio::spawn(async move {
                        let _ = sender.send(Err(Status::unavailable(TOO_SLOW))).await;
                    });
                }
                Delivery::Closed
            }
        }
    }
}
