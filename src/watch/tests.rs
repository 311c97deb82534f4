//! Tests of the watch hub against a fake event source that records every write.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::proto::mvccpb::KeyValue;

/// A store that keeps its whole history in memory and refuses reads below its compact revision.
#[derive(Debug, Default)]
struct FakeStore {
    current: i64,
    compact: i64,
    history: Vec<Event>,
    live: BTreeMap<Vec<u8>, KeyValue>,
}

impl FakeStore {
    /// Applies one transaction of puts (`Some(value)`) and deletes (`None`) at the next revision
    /// and returns its events, each with `prev_kv` when the key existed.
    fn write(&mut self, ops: &[(&[u8], Option<&[u8]>)]) -> Vec<Event> {
        self.current += 1;
        let rev = self.current;
        let mut events = Vec::new();
        for (key, value) in ops {
            let prev = self.live.get(*key).cloned();
            let event = match value {
                Some(value) => {
                    let kv = KeyValue {
                        key: key.to_vec(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        value: value.to_vec(),
                        lease: 0,
                    };
                    self.live.insert(key.to_vec(), kv.clone());
                    Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv),
                        prev_kv: prev,
                    }
                }
                None => {
                    if self.live.remove(*key).is_none() {
                        continue;
                    }
                    Event {
                        r#type: EventType::Delete as i32,
                        kv: Some(KeyValue {
                            key: key.to_vec(),
                            mod_revision: rev,
                            ..Default::default()
                        }),
                        prev_kv: prev,
                    }
                }
            };
            events.push(event);
        }
        self.history.extend(events.iter().cloned());
        events
    }
}

impl EventSource for FakeStore {
    fn current_revision(&self) -> i64 {
        self.current
    }
    fn compact_revision(&self) -> i64 {
        self.compact
    }
    fn events_since(
        &self,
        start: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> Result<Vec<Event>, i64> {
        if start < self.compact {
            return Err(self.compact);
        }
        let mut out: Vec<Event> = Vec::new();
        let matching = self
            .history
            .iter()
            .filter(|ev| event_revision(ev, 0) >= start)
            .filter(|ev| {
                ev.kv
                    .as_ref()
                    .is_some_and(|kv| in_range(key, range_end, &kv.key))
            });
        for ev in matching {
            let new_revision = out
                .last()
                .is_some_and(|last| event_revision(last, 0) != event_revision(ev, 0));
            if out.len() >= limit && new_revision {
                break;
            }
            out.push(ev.clone());
        }
        Ok(out)
    }
}

fn watch(key: &[u8], range_end: &[u8], start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.to_vec(),
        range_end: range_end.to_vec(),
        start_revision,
        ..Default::default()
    }
}

fn revisions(resp: &WatchResponse) -> Vec<i64> {
    resp.events.iter().map(|e| event_revision(e, 0)).collect()
}

fn header_revision(resp: &WatchResponse) -> i64 {
    resp.header.as_ref().map_or(-100, |h| h.revision)
}

/// A store with puts of a, b, c at revisions 1..=3 and a delete of a at 4.
fn store_abc() -> FakeStore {
    let mut s = FakeStore::default();
    s.write(&[(b"a", Some(b"1"))]);
    s.write(&[(b"b", Some(b"1"))]);
    s.write(&[(b"c", Some(b"1"))]);
    s.write(&[(b"a", None)]);
    s
}

#[test]
fn created_response_comes_first_with_auto_ids_from_zero() {
    let store = store_abc();
    let mut hub = WatchHub::new();
    let r = hub.create(1, &watch(b"a", b"", 0), &store);
    assert_eq!(r.len(), 1);
    assert!(r[0].created && !r[0].canceled);
    assert_eq!((r[0].watch_id, header_revision(&r[0])), (0, 4));
    assert_eq!(hub.create(1, &watch(b"a", b"", 0), &store)[0].watch_id, 1);
    // Another stream numbers its own watchers.
    assert_eq!(hub.create(2, &watch(b"a", b"", 0), &store)[0].watch_id, 0);
    assert_eq!(hub.watcher_count(), 3);
}

#[test]
fn auto_ids_skip_client_chosen_ids() {
    let store = store_abc();
    let mut hub = WatchHub::new();
    let mut req = watch(b"a", b"", 0);
    req.watch_id = 1;
    assert_eq!(hub.create(1, &req, &store)[0].watch_id, 1);
    let auto = watch(b"a", b"", 0);
    assert_eq!(hub.create(1, &auto, &store)[0].watch_id, 0);
    assert_eq!(hub.create(1, &auto, &store)[0].watch_id, 2);
    assert_eq!(hub.watch_ids(1), vec![0, 1, 2]);
}

#[test]
fn duplicate_watch_id_is_refused_like_etcd() {
    let store = store_abc();
    let mut hub = WatchHub::new();
    let mut req = watch(b"a", b"", 0);
    req.watch_id = 7;
    hub.create(1, &req, &store);
    let r = hub.create(1, &req, &store);
    assert_eq!(r.len(), 1);
    assert!(r[0].created && r[0].canceled);
    assert_eq!(r[0].watch_id, INVALID_WATCH_ID);
    assert_eq!(r[0].cancel_reason, DUPLICATE_WATCH_ID);
    assert_eq!(hub.watcher_count(), 1);
}

#[test]
fn empty_range_is_refused_like_etcd() {
    let store = store_abc();
    let mut hub = WatchHub::new();
    let r = hub.create(1, &watch(b"b", b"a", 0), &store);
    assert!(r[0].created && r[0].canceled);
    assert_eq!(r[0].cancel_reason, EMPTY_WATCHER_RANGE);
    assert_eq!(hub.watcher_count(), 0);
    // "\0" means every key from `key` on, which is not empty.
    assert!(!hub.create(1, &watch(b"b", b"\0", 0), &store)[0].canceled);
}

#[test]
fn start_revision_zero_sees_only_future_events() {
    let mut store = store_abc();
    let mut hub = WatchHub::new();
    hub.create(1, &watch(b"a", b"\0", 0), &store);
    let evs = store.write(&[(b"b", Some(b"2"))]);
    let out = hub.notify(&evs, 5);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 1);
    assert_eq!(revisions(&out[0].1), vec![5]);
    assert_eq!(header_revision(&out[0].1), 5);
}

#[test]
fn catch_up_replays_history_from_start_revision() {
    let store = store_abc();
    let mut hub = WatchHub::new();
    let r = hub.create(1, &watch(b"a", b"c", 2), &store);
    assert_eq!(r.len(), 2);
    assert_eq!(revisions(&r[1]), vec![2, 4]);
    assert_eq!(r[1].watch_id, 0);
    assert_eq!(header_revision(&r[1]), 4);
}

#[test]
fn compacted_start_revision_is_canceled_after_created() {
    let mut store = store_abc();
    store.compact = 3;
    let mut hub = WatchHub::new();
    let r = hub.create(1, &watch(b"a", b"\0", 2), &store);
    assert_eq!(r.len(), 2);
    assert!(r[0].created);
    assert!(r[1].canceled);
    assert_eq!((r[1].watch_id, r[1].compact_revision), (0, 3));
    assert_eq!(hub.watcher_count(), 0);
    // Starting exactly at the compact revision is allowed.
    let r = hub.create(1, &watch(b"a", b"\0", 3), &store);
    assert_eq!(revisions(&r[1]), vec![3, 4]);
}

#[test]
fn future_start_revision_waits_until_it_is_reached() {
    let mut store = store_abc();
    let mut hub = WatchHub::new();
    let r = hub.create(1, &watch(b"a", b"\0", 6), &store);
    assert_eq!(r.len(), 1);
    let evs = store.write(&[(b"a", Some(b"x"))]);
    assert!(hub.notify(&evs, 5).is_empty());
    let evs = store.write(&[(b"a", Some(b"y"))]);
    let out = hub.notify(&evs, 6);
    assert_eq!(revisions(&out[0].1), vec![6]);
}

#[test]
fn prev_kv_is_stripped_unless_asked_for() {
    let mut store = store_abc();
    let mut hub = WatchHub::new();
    let mut with = watch(b"b", b"", 0);
    with.prev_kv = true;
    hub.create(1, &watch(b"b", b"", 0), &store);
    hub.create(2, &with, &store);
    let evs = store.write(&[(b"b", Some(b"2"))]);
    assert!(evs[0].prev_kv.is_some());
    let out: BTreeMap<StreamId, WatchResponse> = hub.notify(&evs, 5).into_iter().collect();
    assert!(out[&1].events[0].prev_kv.is_none());
    assert_eq!(out[&2].events[0].prev_kv.as_ref().unwrap().value, b"1");
}

#[test]
fn noput_and_nodelete_filters_drop_those_events() {
    let mut store = store_abc();
    let mut hub = WatchHub::new();
    let mut no_put = watch(b"a", b"\0", 1);
    no_put.filters = vec![FilterType::Noput as i32];
    let r = hub.create(1, &no_put, &store);
    assert_eq!(revisions(&r[1]), vec![4]);
    let mut no_delete = watch(b"a", b"\0", 0);
    no_delete.filters = vec![FilterType::Nodelete as i32];
    hub.create(2, &no_delete, &store);
    let evs = store.write(&[(b"b", None), (b"c", Some(b"2"))]);
    let out: BTreeMap<StreamId, WatchResponse> = hub.notify(&evs, 5).into_iter().collect();
    assert_eq!(out[&1].events.len(), 1);
    assert_eq!(out[&1].events[0].r#type, EventType::Delete as i32);
    assert_eq!(out[&2].events.len(), 1);
    assert_eq!(out[&2].events[0].r#type, EventType::Put as i32);
}

#[test]
fn cancel_answers_once_and_stops_events() {
    let mut store = store_abc();
    let mut hub = WatchHub::new();
    hub.create(1, &watch(b"a", b"", 0), &store);
    let r = hub.cancel(1, 0);
    assert_eq!(r.len(), 1);
    assert!(r[0].canceled);
    assert_eq!((r[0].watch_id, header_revision(&r[0])), (0, 4));
    assert!(hub.cancel(1, 0).is_empty());
    assert!(hub.cancel(9, 0).is_empty());
    let evs = store.write(&[(b"a", Some(b"z"))]);
    assert!(hub.notify(&evs, 5).is_empty());
}

#[test]
fn close_stream_drops_its_watchers_only() {
    let store = store_abc();
    let mut hub = WatchHub::new();
    hub.create(1, &watch(b"a", b"", 0), &store);
    hub.create(1, &watch(b"b", b"", 0), &store);
    hub.create(2, &watch(b"a", b"", 0), &store);
    hub.close_stream(1);
    assert_eq!(hub.watcher_count(), 1);
    assert!(hub.watch_ids(1).is_empty());
}

#[test]
fn progress_request_gets_one_response_under_invalid_watch_id() {
    let store = store_abc();
    let mut hub = WatchHub::new();
    hub.create(1, &watch(b"a", b"", 0), &store);
    hub.create(1, &watch(b"b", b"", 0), &store);
    let r = hub.progress(1, 4);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].watch_id, INVALID_WATCH_ID);
    assert!(r[0].events.is_empty() && !r[0].created && !r[0].canceled);
    assert_eq!(header_revision(&r[0]), 4);
}

#[test]
fn periodic_progress_goes_to_quiet_progress_notify_watchers() {
    let mut store = store_abc();
    let mut hub = WatchHub::new();
    let mut notify = watch(b"a", b"", 0);
    notify.progress_notify = true;
    hub.create(1, &notify, &store);
    hub.create(1, &watch(b"a", b"", 0), &store);
    let mut busy = watch(b"b", b"", 0);
    busy.progress_notify = true;
    hub.create(2, &busy, &store);
    let evs = store.write(&[(b"b", Some(b"2"))]);
    hub.notify(&evs, 5);
    let out = hub.periodic_progress(5);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].1.watch_id), (1, 0));
    assert!(out[0].1.events.is_empty());
    assert_eq!(header_revision(&out[0].1), 5);
    // The busy watcher was quiet since the last tick, so it is reported now.
    assert_eq!(hub.periodic_progress(5).len(), 2);
}

#[test]
fn large_catch_up_is_split_between_revisions_only() {
    let mut store = FakeStore::default();
    let big: Vec<(Vec<u8>, Option<&[u8]>)> = (0..MAX_EVENTS_PER_RESPONSE + 5)
        .map(|i| (format!("k{i:05}").into_bytes(), Some(&b"v"[..])))
        .collect();
    let ops: Vec<(&[u8], Option<&[u8]>)> = big.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
    store.write(&ops);
    for _ in 0..3 {
        store.write(&ops[..MAX_EVENTS_PER_RESPONSE / 2]);
    }
    let mut hub = WatchHub::new();
    // The create sends one response's worth of history; the stream then lags and catches up.
    let r = hub.create(1, &watch(b"k", b"\0", 1), &store);
    assert_eq!(hub.lagging_streams(), vec![1]);
    let mut batches: Vec<Vec<i64>> = r[1..].iter().map(revisions).collect();
    assert_eq!(batches.len(), 1);
    assert!(batches[0].iter().all(|&rev| rev == 1));
    assert_eq!(batches[0].len(), MAX_EVENTS_PER_RESPONSE + 5);
    while !hub.lagging_streams().is_empty() {
        let more = hub.catch_up(1, 1, &store);
        assert!(
            !more.is_empty(),
            "a lagging stream's catch-up makes progress"
        );
        batches.extend(more.iter().map(revisions));
    }
    assert_eq!(batches.len(), 3);
    let all: Vec<i64> = batches.concat();
    assert!(all.windows(2).all(|w| w[0] <= w[1]), "in revision order");
    for pair in batches.windows(2) {
        assert!(
            pair[0].last() < pair[1].first(),
            "split between revisions only"
        );
    }
    assert_eq!(all.len(), store.history.len());
}

/// A stream whose client did not take some responses: its watchers go back to the first
/// revision not sent, new writes wait, a progress request waits, and the catch-up from history
/// sends exactly the missed events, then the progress answer, then new writes flow again.
#[test]
fn undelivered_responses_are_sent_again_from_history_then_progress() {
    let mut store = FakeStore::default();
    let mut hub = WatchHub::new();
    hub.create(1, &watch(b"a", b"", 0), &store);
    hub.create(2, &watch(b"a", b"", 0), &store);
    let first = store.write(&[(b"a", Some(b"1"))]);
    let sent = hub.notify(&first, 1);
    assert_eq!(sent.len(), 2);
    let second = store.write(&[(b"a", Some(b"2"))]);
    let lost: Vec<WatchResponse> = hub
        .notify(&second, 2)
        .into_iter()
        .filter(|(stream, _)| *stream == 1)
        .map(|(_, r)| r)
        .collect();
    hub.undelivered(1, &lost);
    assert_eq!(hub.lagging_streams(), vec![1]);
    let third = store.write(&[(b"a", Some(b"3"))]);
    let after: Vec<StreamId> = hub.notify(&third, 3).iter().map(|(s, _)| *s).collect();
    assert_eq!(after, vec![2], "the lagging stream is sent nothing new");
    assert!(
        hub.progress(1, 3).is_empty(),
        "progress waits for the catch-up"
    );
    assert!(hub.periodic_progress(3).iter().all(|(s, _)| *s != 1));
    let caught_up = hub.catch_up(1, 8, &store);
    let events: Vec<i64> = caught_up.iter().flat_map(revisions).collect();
    assert_eq!(events, vec![2, 3], "exactly the missed events, once");
    let progress = caught_up.last().expect("the progress answer");
    assert_eq!(progress.watch_id, INVALID_WATCH_ID);
    assert_eq!(header_revision(progress), 3);
    assert!(hub.lagging_streams().is_empty());
    let fourth = store.write(&[(b"a", Some(b"4"))]);
    assert_eq!(hub.notify(&fourth, 4).len(), 2, "both streams follow again");
}

/// A lagging watcher whose next revision was compacted meanwhile is canceled with the compact
/// revision, as etcd cancels a slow watcher that fell behind a compaction.
#[test]
fn a_lagging_watcher_behind_a_compaction_is_canceled() {
    let mut store = FakeStore::default();
    let mut hub = WatchHub::new();
    hub.create(1, &watch(b"a", b"", 0), &store);
    let first = store.write(&[(b"a", Some(b"1"))]);
    let lost: Vec<WatchResponse> = hub.notify(&first, 1).into_iter().map(|(_, r)| r).collect();
    hub.undelivered(1, &lost);
    store.write(&[(b"a", Some(b"2"))]);
    store.compact = 2;
    let out = hub.catch_up(1, 8, &store);
    assert_eq!(out.len(), 1);
    assert!(out[0].canceled);
    assert_eq!(out[0].compact_revision, 2);
    assert!(hub.watch_ids(1).is_empty());
    assert!(hub.lagging_streams().is_empty());
}

/// One step of the random interleaving.
#[derive(Debug, Clone)]
enum Op {
    Write(Vec<(u8, bool)>),
    Create {
        stream: StreamId,
        key: u8,
        range: u8,
        start_back: i64,
        watch_id: i64,
        prev_kv: bool,
        filter: u8,
    },
    Cancel {
        stream: StreamId,
        watch_id: i64,
    },
    Compact(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec((0u8..5, any::<bool>()), 1..4).prop_map(Op::Write),
        2 => (0u64..3, 0u8..5, 0u8..3, -3i64..8, prop_oneof![3 => Just(0i64), 1 => 1i64..4],
              any::<bool>(), 0u8..3)
            .prop_map(|(stream, key, range, start_back, watch_id, prev_kv, filter)| Op::Create {
                stream, key, range, start_back, watch_id, prev_kv, filter,
            }),
        1 => (0u64..3, 0i64..4).prop_map(|(stream, watch_id)| Op::Cancel { stream, watch_id }),
        1 => (0i64..4).prop_map(Op::Compact),
    ]
}

/// What the test knows about one watcher instance.
#[derive(Debug)]
struct Expect {
    req: WatchCreateRequest,
    /// First revision it must see.
    start: i64,
    /// Last revision it must see (set when canceled).
    end: Option<i64>,
    received: Vec<Event>,
}

fn key_of(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut store = FakeStore::default();
    let mut hub = WatchHub::new();
    let mut watchers: Vec<Expect> = Vec::new();
    let mut open: BTreeMap<(StreamId, i64), usize> = BTreeMap::new();
    let deliver = |open: &BTreeMap<(StreamId, i64), usize>,
                   watchers: &mut Vec<Expect>,
                   stream: StreamId,
                   resp: &WatchResponse|
     -> Result<(), TestCaseError> {
        prop_assert!(resp.header.is_some());
        if resp.events.is_empty() {
            return Ok(());
        }
        let idx = open.get(&(stream, resp.watch_id));
        prop_assert!(idx.is_some(), "events for a watcher that is not open");
        if let Some(&idx) = idx {
            watchers[idx].received.extend(resp.events.iter().cloned());
        }
        Ok(())
    };
    for op in ops {
        match op {
            Op::Write(writes) => {
                let keys: Vec<Vec<u8>> = writes.iter().map(|(k, _)| key_of(*k)).collect();
                let txn: Vec<(&[u8], Option<&[u8]>)> = keys
                    .iter()
                    .zip(&writes)
                    .map(|(k, (_, put))| (k.as_slice(), put.then_some(&b"v"[..])))
                    .collect();
                let events = store.write(&txn);
                let rev = store.current;
                let mut seen = BTreeMap::new();
                for (stream, resp) in hub.notify(&events, rev) {
                    prop_assert!(
                        seen.insert((stream, resp.watch_id), ()).is_none(),
                        "two responses for one watcher in one notify"
                    );
                    prop_assert_eq!(header_revision(&resp), rev);
                    deliver(&open, &mut watchers, stream, &resp)?;
                }
            }
            Op::Create {
                stream,
                key,
                range,
                start_back,
                watch_id,
                prev_kv,
                filter,
            } => {
                let key = key_of(key);
                let range_end = match range {
                    0 => Vec::new(),
                    1 => b"\0".to_vec(),
                    _ => vec![key[0] + 2],
                };
                let start_revision = if start_back < 0 {
                    0
                } else {
                    (store.current - start_back + 2).max(1)
                };
                let mut req = watch(&key, &range_end, start_revision);
                req.watch_id = watch_id;
                req.prev_kv = prev_kv;
                req.filters = match filter {
                    0 => vec![],
                    1 => vec![FilterType::Noput as i32],
                    _ => vec![FilterType::Nodelete as i32],
                };
                let duplicate = watch_id != 0 && open.contains_key(&(stream, watch_id));
                let resps = hub.create(stream, &req, &store);
                prop_assert!(!resps.is_empty() && resps[0].created);
                if duplicate {
                    prop_assert_eq!(resps.len(), 1);
                    prop_assert!(resps[0].canceled);
                    prop_assert_eq!(resps[0].watch_id, INVALID_WATCH_ID);
                    continue;
                }
                prop_assert!(!resps[0].canceled);
                let id = resps[0].watch_id;
                if watch_id != 0 {
                    prop_assert_eq!(id, watch_id);
                }
                prop_assert!(!open.contains_key(&(stream, id)));
                let compacted = start_revision > 0
                    && start_revision <= store.current
                    && start_revision < store.compact;
                let got_compacted = resps.iter().any(|r| r.canceled && r.compact_revision > 0);
                prop_assert_eq!(compacted, got_compacted);
                if compacted {
                    prop_assert_eq!(resps.len(), 2);
                    continue;
                }
                let start = if start_revision == 0 {
                    store.current + 1
                } else {
                    start_revision
                };
                open.insert((stream, id), watchers.len());
                watchers.push(Expect {
                    req,
                    start,
                    end: None,
                    received: Vec::new(),
                });
                for resp in &resps[1..] {
                    deliver(&open, &mut watchers, stream, resp)?;
                }
            }
            Op::Cancel { stream, watch_id } => {
                let resps = hub.cancel(stream, watch_id);
                match open.remove(&(stream, watch_id)) {
                    Some(idx) => {
                        prop_assert_eq!(resps.len(), 1);
                        prop_assert!(resps[0].canceled);
                        watchers[idx].end = Some(store.current);
                    }
                    None => prop_assert!(resps.is_empty()),
                }
            }
            Op::Compact(back) => {
                store.compact = store.compact.max(store.current - back);
            }
        }
        prop_assert_eq!(hub.watcher_count(), open.len());
        let wanted = open.values().any(|&i| watchers[i].req.prev_kv);
        prop_assert_eq!(hub.wants_prev_values(), wanted);
    }
    for w in &watchers {
        let end = w.end.unwrap_or(store.current);
        let no_put = w.req.filters.contains(&(FilterType::Noput as i32));
        let no_delete = w.req.filters.contains(&(FilterType::Nodelete as i32));
        let expected: Vec<Event> = store
            .history
            .iter()
            .filter(|ev| {
                let rev = event_revision(ev, 0);
                rev >= w.start && rev <= end
            })
            .filter(|ev| in_range(&w.req.key, &w.req.range_end, &ev.kv.as_ref().unwrap().key))
            .filter(|ev| {
                let put = ev.r#type == EventType::Put as i32;
                !(put && no_put || !put && no_delete)
            })
            .map(|ev| {
                let mut ev = ev.clone();
                if !w.req.prev_kv {
                    ev.prev_kv = None;
                }
                ev
            })
            .collect();
        let revs: Vec<i64> = w.received.iter().map(|e| event_revision(e, 0)).collect();
        prop_assert!(
            revs.windows(2).all(|p| p[0] <= p[1]),
            "out of order: {:?}",
            revs
        );
        prop_assert_eq!(&w.received, &expected, "watcher {:?}", w.req);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_watcher_gets_exactly_its_events_in_order(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        run(ops)?;
    }
}

/// A lagging stream's catch-up takes its watchers in turn: with room for one response at a
/// time, the second watcher is served before the first is served again (etcd-io/etcd#17529).
#[test]
fn catch_up_serves_a_streams_watchers_in_turn() {
    let mut store = FakeStore::default();
    let mut hub = WatchHub::with_max_events(1);
    hub.create(1, &watch(b"a", b"", 0), &store);
    hub.create(1, &watch(b"b", b"", 0), &store);
    let mut lost = Vec::new();
    for _ in 0..3 {
        let events = store.write(&[(b"a", Some(b"1")), (b"b", Some(b"1"))]);
        let revision = store.current;
        lost.extend(hub.notify(&events, revision).into_iter().map(|(_, r)| r));
    }
    hub.undelivered(1, &lost);
    let served: Vec<i64> = (0..4)
        .map(|_| hub.catch_up(1, 1, &store))
        .map(|out| out.first().map_or(-1, |r| r.watch_id))
        .collect();
    assert_eq!(served, vec![1, 0, 1, 0]);
}

/// A stream holds at most `MAX_WATCHERS_PER_STREAM` watchers; one more is refused with a reason.
#[test]
fn a_stream_refuses_watchers_past_its_limit() {
    let store = FakeStore::default();
    let mut hub = WatchHub::new();
    for _ in 0..MAX_WATCHERS_PER_STREAM {
        let created = hub.create(1, &watch(b"a", b"", 0), &store);
        assert!(!created[0].canceled);
    }
    let refused = hub.create(1, &watch(b"a", b"", 0), &store);
    assert!(refused[0].created && refused[0].canceled);
    assert_eq!(refused[0].cancel_reason, TOO_MANY_WATCHERS);
    assert!(
        !hub.create(2, &watch(b"a", b"", 0), &store)[0].canceled,
        "per stream"
    );
}
