//! etcd's watch `fragment` option: a watcher created with `fragment: true` has each response
//! larger than `--max-request-bytes` sent as several, all but the last marked `fragment`, which
//! the client joins back (etcd's `sendFragments`). Done where responses leave for the client —
//! after the driver's bounded channel — so a response is split whole or not at all.
//! [`FragmentingStream`] learns which watchers asked for it from the stream's own create
//! requests: their `created` answers come back in the order the creates were made.

use std::collections::{BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use prost::Message as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::Status;

use crate::proto::etcdserverpb as pb;

/// Splits `response` into responses of under `max_bytes` each (at least one event each), all but
/// the last marked `fragment`; a response already small enough, or with fewer than two events,
/// goes whole.
pub fn fragments(response: pb::WatchResponse, max_bytes: usize) -> Vec<pb::WatchResponse> {
    if response.encoded_len() < max_bytes || response.events.len() < 2 {
        return vec![response];
    }
    let mut events = response.events.clone().into_iter().peekable();
    let shell = pb::WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..response
    };
    let mut out = Vec::new();
    while events.peek().is_some() {
        let mut part = shell.clone();
        while let Some(event) = events.peek() {
            part.events.push(event.clone());
            if part.events.len() > 1 && part.encoded_len() >= max_bytes {
                part.events.pop();
                break;
            }
            events.next();
        }
        out.push(part);
    }
    if let Some(last) = out.last_mut() {
        last.fragment = false;
    }
    out
}

/// Which watchers of one stream asked for fragments.
#[derive(Debug, Default)]
pub struct FragmentWatchers {
    /// The `fragment` flag of each create sent to the node, not yet answered, in order.
    pending_creates: VecDeque<bool>,
    watch_ids: BTreeSet<i64>,
}

impl FragmentWatchers {
    /// A create request is about to go to the node.
    pub fn creating(&mut self, fragment: bool) {
        self.pending_creates.push_back(fragment);
    }

    /// Notes what `response` says about watchers; whether it is to be sent in fragments.
    fn wants_fragments(&mut self, response: &pb::WatchResponse) -> bool {
        if response.created {
            let fragment = self.pending_creates.pop_front().unwrap_or(false);
            if fragment && !response.canceled {
                self.watch_ids.insert(response.watch_id);
            }
            return false;
        }
        if response.canceled {
            self.watch_ids.remove(&response.watch_id);
            return false;
        }
        self.watch_ids.contains(&response.watch_id)
    }
}

/// A watch stream's responses as they go to the client, fragmented where asked.
pub struct FragmentingStream {
    inner: ReceiverStream<Result<pb::WatchResponse, Status>>,
    watchers: Arc<Mutex<FragmentWatchers>>,
    max_bytes: usize,
    ready: VecDeque<pb::WatchResponse>,
}

impl FragmentingStream {
    pub fn new(
        inner: ReceiverStream<Result<pb::WatchResponse, Status>>,
        watchers: Arc<Mutex<FragmentWatchers>>,
        max_bytes: usize,
    ) -> Self {
        FragmentingStream {
            inner,
            watchers,
            max_bytes,
            ready: VecDeque::new(),
        }
    }
}

impl Stream for FragmentingStream {
    type Item = Result<pb::WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(part) = self.ready.pop_front() {
            return Poll::Ready(Some(Ok(part)));
        }
        let response = match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(response))) => response,
            other => return other,
        };
        let split = self
            .watchers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .wants_fragments(&response);
        if !split {
            return Poll::Ready(Some(Ok(response)));
        }
        let max_bytes = self.max_bytes;
        self.ready.extend(fragments(response, max_bytes));
        let first = self.ready.pop_front();
        Poll::Ready(first.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::{Event, KeyValue};

    fn events(n: usize, value_bytes: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event {
                kv: Some(KeyValue {
                    key: format!("k{i}").into_bytes(),
                    mod_revision: 10 + i as i64,
                    value: vec![b'v'; value_bytes],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn a_large_response_is_split_in_order_and_the_last_part_is_not_a_fragment() {
        let response = pb::WatchResponse {
            watch_id: 3,
            events: events(10, 100),
            ..Default::default()
        };
        let parts = fragments(response.clone(), 350);
        assert!(parts.len() > 1);
        assert!(parts
            .iter()
            .all(|p| p.watch_id == 3 && !p.events.is_empty()));
        assert!(parts
            .iter()
            .all(|p| p.encoded_len() < 350 || p.events.len() == 1));
        let flags: Vec<bool> = parts.iter().map(|p| p.fragment).collect();
        assert!(flags[..flags.len() - 1].iter().all(|f| *f));
        assert!(!flags[flags.len() - 1]);
        let joined: Vec<Event> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, response.events);
    }

    #[test]
    fn a_small_response_or_a_single_event_goes_whole() {
        let small = pb::WatchResponse {
            events: events(2, 10),
            ..Default::default()
        };
        assert_eq!(fragments(small.clone(), 1 << 20), vec![small]);
        let one = pb::WatchResponse {
            events: events(1, 1000),
            ..Default::default()
        };
        assert_eq!(fragments(one.clone(), 100), vec![one]);
    }

    #[test]
    fn only_watchers_created_with_fragment_are_split() {
        let mut watchers = FragmentWatchers::default();
        watchers.creating(true);
        watchers.creating(false);
        let created = |watch_id| pb::WatchResponse {
            watch_id,
            created: true,
            ..Default::default()
        };
        assert!(!watchers.wants_fragments(&created(0)));
        assert!(!watchers.wants_fragments(&created(1)));
        let events_for = |watch_id| pb::WatchResponse {
            watch_id,
            events: events(3, 10),
            ..Default::default()
        };
        assert!(watchers.wants_fragments(&events_for(0)));
        assert!(!watchers.wants_fragments(&events_for(1)));
        let canceled = pb::WatchResponse {
            watch_id: 0,
            canceled: true,
            ..Default::default()
        };
        assert!(!watchers.wants_fragments(&canceled));
        assert!(!watchers.wants_fragments(&events_for(0)));
    }
}
