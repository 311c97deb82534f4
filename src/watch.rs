//! Watches: etcd watch streams served from a member's applied state. [`WatchHub`] owns every open
//! watcher, keyed by client stream and watch ID, and turns creates, cancels and applied write
//! batches into `WatchResponse`s. It reads history only through [`EventSource`], so it never
//! depends on the KV store's internals, and it never buffers: every call returns its responses.
//!
//! Response shapes follow etcd 3.4's `v3rpc/watch.go` and `mvcc/watcher.go`: a create is answered
//! with `created: true` (plus `canceled` and a reason, under watch ID -1, if refused); a watcher whose
//! start revision was compacted gets `canceled` with `compact_revision` and is dropped; a progress
//! request is answered by one response under watch ID -1. Every response carries a header with the
//! revision it reflects; the node fills in cluster, member and term.

use std::collections::BTreeMap;

use crate::proto::etcdserverpb::{
    watch_create_request::FilterType, ResponseHeader, WatchCreateRequest, WatchResponse,
};
use crate::proto::mvccpb::{event::EventType, Event};

/// The KV store's history, as the watch hub needs it.
///
/// Range rule (as for KV ranges): an empty `range_end` means exactly `key`; `range_end == b"\0"`
/// means every key `>= key`; otherwise `[key, range_end)`.
pub trait EventSource {
    /// The store's current (latest applied) revision.
    fn current_revision(&self) -> i64;
    /// Revisions below this are compacted away.
    fn compact_revision(&self) -> i64;
    /// Every event in the range with revision `>= start_revision`, oldest first, each with
    /// `prev_kv` when a previous version existed, stopping at the first revision that starts once
    /// `limit` events were found (whole revisions only: fewer than `limit` events means complete);
    /// `Err(compact_revision)` if `start_revision` is compacted.
    fn events_since(
        &self,
        start_revision: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> Result<Vec<Event>, i64>;
}

/// Identifies one client watch stream (one gRPC `Watch` call) on this member.
pub type StreamId = u64;

/// etcd's `InvalidWatchID`: the watch ID of responses about no particular watcher.
pub const INVALID_WATCH_ID: i64 = -1;

/// A catch-up response holds at most this many events, except that the events of one revision
/// (one transaction) are never split across responses.
pub const MAX_EVENTS_PER_RESPONSE: usize = 1000;

/// Cancel reason for a create that names a watch ID already open on the stream (etcd's text).
pub const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// Cancel reason for a create whose range holds no key, `key >= range_end` (etcd's text).
pub const EMPTY_WATCHER_RANGE: &str = "mvcc: watcher range is empty";

/// Watchers one client stream may hold open: each costs memory for as long as it lives, and a
/// client that needs more opens more streams. (etcd sets no limit; its own benchmarks aim at
/// about a hundred per stream.)
pub const MAX_WATCHERS_PER_STREAM: usize = 10_000;

/// Cancel reason for a create past [`MAX_WATCHERS_PER_STREAM`].
pub const TOO_MANY_WATCHERS: &str =
    "stet: too many watchers on one watch stream (at most 10000); open another stream";

/// One open watcher.
#[derive(Debug, Clone)]
struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The next revision this watcher must see: every event below it has been sent (or was
    /// before the watcher's start).
    next_revision: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    /// Events were sent since the last periodic progress notification.
    sent_since_progress: bool,
}

impl Watcher {
    fn from_request(req: &WatchCreateRequest, next_revision: i64) -> Self {
        let has = |f: FilterType| req.filters.contains(&(f as i32));
        Watcher {
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            next_revision,
            prev_kv: req.prev_kv,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            progress_notify: req.progress_notify,
            sent_since_progress: false,
        }
    }

    /// The events of `events` this watcher wants: in range, not yet seen, not filtered out, with
    /// `prev_kv` stripped unless asked for. `fallback_revision` is used for an event without kv.
    fn select(&self, events: &[Event], fallback_revision: i64) -> Vec<Event> {
        events
            .iter()
            .filter(|ev| event_revision(ev, fallback_revision) >= self.next_revision)
            .filter(|ev| ev.kv.as_ref().is_some_and(|kv| self.covers(&kv.key)))
            .filter(|ev| !self.filtered_out(ev))
            .map(|ev| {
                let mut ev = ev.clone();
                if !self.prev_kv {
                    ev.prev_kv = None;
                }
                ev
            })
            .collect()
    }

    fn covers(&self, key: &[u8]) -> bool {
        in_range(&self.key, &self.range_end, key)
    }

    fn filtered_out(&self, ev: &Event) -> bool {
        match EventType::try_from(ev.r#type) {
            Ok(EventType::Put) => self.no_put,
            Ok(EventType::Delete) => self.no_delete,
            Err(_) => false,
        }
    }
}

impl Watcher {
    /// Takes `events` read from history from `next_revision` on (with the read's `limit`) as
    /// sent: the responses carrying what this watcher wants, and whether it reached `current`.
    /// A read that hit its limit ends at its last event's revision, which it holds whole.
    fn advance(
        &mut self,
        watch_id: i64,
        events: Vec<Event>,
        current: i64,
        limit: usize,
    ) -> (Vec<WatchResponse>, bool) {
        debug_assert!(
            events
                .windows(2)
                .all(|w| event_revision(&w[0], 0) <= event_revision(&w[1], 0)),
            "event source returned history out of order"
        );
        let complete = events.len() < limit;
        let through = if complete {
            current
        } else {
            events
                .last()
                .map_or(current, |ev| event_revision(ev, current))
        };
        let mut selected = self.select(&events, current);
        selected.retain(|ev| event_revision(ev, current) <= through);
        self.next_revision = through + 1;
        if !selected.is_empty() {
            self.sent_since_progress = true;
        }
        let responses = batch_events(watch_id, selected, current, limit);
        (responses, through >= current)
    }
}

fn in_range(key: &[u8], range_end: &[u8], candidate: &[u8]) -> bool {
    match range_end {
        [] => candidate == key,
        [0] => candidate >= key,
        end => candidate >= key && candidate < end,
    }
}

fn event_revision(ev: &Event, fallback: i64) -> i64 {
    ev.kv.as_ref().map_or(fallback, |kv| kv.mod_revision)
}

/// The watchers of one client stream.
#[derive(Debug, Clone, Default)]
struct Stream {
    /// Where the search for the next automatic watch ID starts (etcd never reuses them early).
    next_auto_id: i64,
    watchers: BTreeMap<i64, Watcher>,
    /// Behind (etcd's "unsynced"): the client did not read fast enough, or a watcher started
    /// far back. New events are not sent; [`WatchHub::catch_up`] reads them from history, a
    /// bounded batch at a time, until every watcher reaches the current revision.
    lagging: bool,
    /// A progress request came while lagging: answered once caught up, so that its revision
    /// never runs ahead of the events sent (etcd-io/etcd#15220).
    progress_pending: bool,
    /// The catch-up goes on from the watcher after this one, so that none starves while others
    /// keep getting events (etcd-io/etcd#17529).
    catch_up_after: i64,
}

impl Stream {
    fn next_free_id(&mut self) -> i64 {
        while self.watchers.contains_key(&self.next_auto_id) {
            self.next_auto_id += 1;
        }
        let id = self.next_auto_id;
        self.next_auto_id += 1;
        id
    }
}

/// Every open watcher of one member.
#[derive(Debug, Clone)]
pub struct WatchHub {
    streams: BTreeMap<StreamId, Stream>,
    /// The latest revision the hub has seen, for the headers of cancel responses.
    revision: i64,
    /// Events per catch-up response (a revision's events are never split).
    max_events_per_response: usize,
    /// Open watchers that asked for `prev_kv` (see [`WatchHub::wants_prev_values`]).
    prev_kv_watchers: usize,
}

fn response(watch_id: i64, revision: i64) -> WatchResponse {
    WatchResponse {
        header: Some(ResponseHeader {
            revision,
            ..Default::default()
        }),
        watch_id,
        ..Default::default()
    }
}

/// Takes a removed watcher out of the count of those asking for `prev_kv`.
fn forget(prev_kv_watchers: &mut usize, watcher: &Watcher) {
    if watcher.prev_kv {
        *prev_kv_watchers = prev_kv_watchers
            .checked_sub(1)
            .expect("every watcher asking for prev_kv was counted");
    }
}

fn refused(reason: &str, revision: i64) -> WatchResponse {
    WatchResponse {
        created: true,
        canceled: true,
        cancel_reason: reason.to_string(),
        ..response(INVALID_WATCH_ID, revision)
    }
}

fn compacted(watch_id: i64, compact_revision: i64, revision: i64) -> WatchResponse {
    WatchResponse {
        canceled: true,
        compact_revision,
        ..response(watch_id, revision)
    }
}

/// Splits `events` (oldest first) into responses of at most `max_events` events, cutting only
/// between revisions.
fn batch_events(
    watch_id: i64,
    events: Vec<Event>,
    revision: i64,
    max_events: usize,
) -> Vec<WatchResponse> {
    let mut out = Vec::new();
    let mut batch: Vec<Event> = Vec::new();
    let mut last_rev = None;
    for ev in events {
        let rev = event_revision(&ev, revision);
        if batch.len() >= max_events && last_rev != Some(rev) {
            out.push(WatchResponse {
                events: std::mem::take(&mut batch),
                ..response(watch_id, revision)
            });
        }
        last_rev = Some(rev);
        batch.push(ev);
    }
    if !batch.is_empty() {
        out.push(WatchResponse {
            events: batch,
            ..response(watch_id, revision)
        });
    }
    out
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub::new()
    }
}

impl WatchHub {
    /// A hub with no watchers.
    pub fn new() -> Self {
        WatchHub::with_max_events(MAX_EVENTS_PER_RESPONSE)
    }

    /// A hub whose catch-up responses carry at most `max_events_per_response` events (at least 1;
    /// a revision's events are never split).
    pub fn with_max_events(max_events_per_response: usize) -> Self {
        WatchHub {
            streams: BTreeMap::new(),
            revision: 0,
            max_events_per_response: max_events_per_response.max(1),
            prev_kv_watchers: 0,
        }
    }

    /// Opens a watcher on `stream`. Returns the `created` response first, then either a
    /// compaction cancel or the catch-up events from `start_revision` (empty when it is 0 or in the
    /// future). A refused create is one `created` + `canceled` response under watch ID -1.
    pub fn create(
        &mut self,
        stream: StreamId,
        req: &WatchCreateRequest,
        source: &impl EventSource,
    ) -> Vec<WatchResponse> {
        let current = source.current_revision();
        self.revision = self.revision.max(current);
        let empty_range = !matches!(req.range_end.as_slice(), [] | [0]) && req.key >= req.range_end;
        if empty_range {
            return vec![refused(EMPTY_WATCHER_RANGE, current)];
        }
        let entry = self.streams.entry(stream).or_default();
        if entry.watchers.len() >= MAX_WATCHERS_PER_STREAM {
            return vec![refused(TOO_MANY_WATCHERS, current)];
        }
        let id = if req.watch_id == 0 {
            entry.next_free_id()
        } else if entry.watchers.contains_key(&req.watch_id) {
            return vec![refused(DUPLICATE_WATCH_ID, current)];
        } else {
            req.watch_id
        };
        let created = WatchResponse {
            created: true,
            ..response(id, current)
        };
        let start = req.start_revision;
        if start <= 0 || start > current {
            let next_revision = if start <= 0 { current + 1 } else { start };
            entry
                .watchers
                .insert(id, Watcher::from_request(req, next_revision));
            self.prev_kv_watchers += usize::from(req.prev_kv);
            return vec![created];
        }
        let compact = source.compact_revision();
        let limit = self.max_events_per_response;
        let history = if start < compact {
            Err(compact)
        } else {
            source.events_since(start, &req.key, &req.range_end, limit)
        };
        match history {
            Err(compact) => vec![created, compacted(id, compact, current)],
            Ok(events) => {
                let mut watcher = Watcher::from_request(req, start);
                let (out, caught_up) = watcher.advance(id, events, current, limit);
                entry.lagging |= !caught_up;
                entry.watchers.insert(id, watcher);
                self.prev_kv_watchers += usize::from(req.prev_kv);
                std::iter::once(created).chain(out).collect()
            }
        }
    }

    /// Cancels one watcher. Returns its `canceled` response, or nothing if no such watcher is open
    /// (etcd answers nothing either).
    pub fn cancel(&mut self, stream: StreamId, watch_id: i64) -> Vec<WatchResponse> {
        let removed = self
            .streams
            .get_mut(&stream)
            .and_then(|s| s.watchers.remove(&watch_id));
        match removed {
            Some(watcher) => {
                forget(&mut self.prev_kv_watchers, &watcher);
                vec![WatchResponse {
                    canceled: true,
                    ..response(watch_id, self.revision)
                }]
            }
            None => Vec::new(),
        }
    }

    /// Drops every watcher of a closed client stream.
    pub fn close_stream(&mut self, stream: StreamId) {
        if let Some(closed) = self.streams.remove(&stream) {
            for watcher in closed.watchers.values() {
                forget(&mut self.prev_kv_watchers, watcher);
            }
        }
    }

    /// Whether some open watcher asked for `prev_kv`: only then must the events of writes carry
    /// the values of the versions they replaced (`KvStore::set_prev_values_in_events`).
    pub fn wants_prev_values(&self) -> bool {
        debug_assert_eq!(
            self.prev_kv_watchers,
            self.streams
                .values()
                .flat_map(|s| s.watchers.values())
                .filter(|w| w.prev_kv)
                .count()
        );
        self.prev_kv_watchers > 0
    }

    /// Called after each applied write batch at `revision` with its events: one response per
    /// watcher that wants some of them. Watchers whose start revision is still ahead wait.
    pub fn notify(&mut self, events: &[Event], revision: i64) -> Vec<(StreamId, WatchResponse)> {
        self.revision = self.revision.max(revision);
        let mut out = Vec::new();
        for (&stream_id, stream) in &mut self.streams {
            if stream.lagging {
                continue;
            }
            for (&watch_id, watcher) in &mut stream.watchers {
                if revision < watcher.next_revision {
                    continue;
                }
                let selected = watcher.select(events, revision);
                watcher.next_revision = revision + 1;
                if selected.is_empty() {
                    continue;
                }
                watcher.sent_since_progress = true;
                out.push((
                    stream_id,
                    WatchResponse {
                        events: selected,
                        ..response(watch_id, revision)
                    },
                ));
            }
        }
        out
    }

    /// After the state jumped ahead without per-write notifications (a snapshot from the leader
    /// was installed): every stream with a watcher behind the source's current revision catches
    /// up from history through [`catch_up`](Self::catch_up).
    pub fn resync(&mut self, source: &impl EventSource) {
        let current = source.current_revision();
        self.revision = self.revision.max(current);
        for stream in self.streams.values_mut() {
            stream.lagging |= stream.watchers.values().any(|w| w.next_revision <= current);
        }
    }

    /// Responses the client stream did not take (its channel was full), in the order they were
    /// produced: each watcher goes back to the first revision it was not sent, the stream lags
    /// until it caught up from history, and an unanswered progress request is answered then.
    /// Only event and progress responses come back here; `created` and `canceled` ones are
    /// kept by the runtime and delivered before the catch-up.
    pub fn undelivered(&mut self, stream_id: StreamId, responses: &[WatchResponse]) {
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return;
        };
        for response in responses {
            assert!(
                !response.created && !response.canceled,
                "created and canceled responses are never given back"
            );
            if response.watch_id == INVALID_WATCH_ID {
                stream.progress_pending = true;
                continue;
            }
            let first = response.events.first().and_then(|ev| ev.kv.as_ref());
            let (Some(watcher), Some(kv)) = (stream.watchers.get_mut(&response.watch_id), first)
            else {
                // A periodic progress notification, or a watcher canceled since: nothing to redo.
                continue;
            };
            watcher.next_revision = watcher.next_revision.min(kv.mod_revision);
        }
        stream.lagging = true;
    }

    /// The streams whose watchers are behind, waiting for [`catch_up`](Self::catch_up).
    pub fn lagging_streams(&self) -> Vec<StreamId> {
        let lagging = self.streams.iter().filter(|(_, s)| s.lagging);
        lagging.map(|(&id, _)| id).collect()
    }

    /// Sends a lagging stream at most `budget` responses' worth of events from history, oldest
    /// first per watcher. A watcher whose next revision was compacted away is canceled with the
    /// compact revision (as etcd does). Once every watcher reached the current revision the
    /// stream follows new writes again, and a pending progress request is answered.
    pub fn catch_up(
        &mut self,
        stream_id: StreamId,
        budget: usize,
        source: &impl EventSource,
    ) -> Vec<WatchResponse> {
        let current = source.current_revision();
        self.revision = self.revision.max(current);
        let max = self.max_events_per_response;
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return Vec::new();
        };
        if !stream.lagging {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut canceled = Vec::new();
        let after = stream.catch_up_after;
        let (later, earlier): (Vec<_>, Vec<_>) = stream
            .watchers
            .iter_mut()
            .partition(|(&watch_id, _)| watch_id > after);
        for (&watch_id, watcher) in later.into_iter().chain(earlier) {
            if out.len() >= budget {
                break;
            }
            if watcher.next_revision > current {
                continue;
            }
            stream.catch_up_after = watch_id;
            let history = if watcher.next_revision < source.compact_revision() {
                Err(source.compact_revision())
            } else {
                let (key, end) = (&watcher.key, &watcher.range_end);
                source.events_since(watcher.next_revision, key, end, max)
            };
            match history {
                Err(compact) => {
                    out.push(compacted(watch_id, compact, current));
                    canceled.push(watch_id);
                }
                Ok(events) => out.extend(watcher.advance(watch_id, events, current, max).0),
            }
        }
        for watch_id in canceled {
            if let Some(watcher) = stream.watchers.remove(&watch_id) {
                forget(&mut self.prev_kv_watchers, &watcher);
            }
        }
        if stream.watchers.values().all(|w| w.next_revision > current) {
            stream.lagging = false;
            if std::mem::take(&mut stream.progress_pending) {
                out.push(response(INVALID_WATCH_ID, current));
            }
        }
        out
    }

    /// Answers a `WatchProgressRequest` as etcd 3.4 does: one response under watch ID -1, with no
    /// events, whose header carries `revision`.
    /// A lagging stream gets its answer once caught up, so the revision it reports never runs
    /// ahead of the events sent on the stream.
    pub fn progress(&mut self, stream: StreamId, revision: i64) -> Vec<WatchResponse> {
        self.revision = self.revision.max(revision);
        if let Some(stream) = self.streams.get_mut(&stream).filter(|s| s.lagging) {
            stream.progress_pending = true;
            return Vec::new();
        }
        vec![response(INVALID_WATCH_ID, revision)]
    }

    /// The periodic progress tick: an empty response for each watcher created with
    /// `progress_notify` that was sent no events since the previous tick (as etcd skips watchers
    /// that just received events).
    pub fn periodic_progress(&mut self, revision: i64) -> Vec<(StreamId, WatchResponse)> {
        self.revision = self.revision.max(revision);
        let mut out = Vec::new();
        for (&stream_id, stream) in &mut self.streams {
            if stream.lagging {
                continue;
            }
            for (&watch_id, watcher) in &mut stream.watchers {
                if !watcher.progress_notify {
                    continue;
                }
                if !std::mem::take(&mut watcher.sent_since_progress) {
                    out.push((stream_id, response(watch_id, revision)));
                }
            }
        }
        out
    }

    /// The open watch IDs of `stream`, sorted.
    pub fn watch_ids(&self, stream: StreamId) -> Vec<i64> {
        self.streams
            .get(&stream)
            .map(|s| s.watchers.keys().copied().collect())
            .unwrap_or_default()
    }

    /// How many watchers are open on all streams.
    pub fn watcher_count(&self) -> usize {
        self.streams.values().map(|s| s.watchers.len()).sum()
    }
}

#[cfg(test)]
mod tests;
