//! kube-apiserver's storage patterns against the real `stet` binary as a single member, all at
//! once under concurrent writers, as k8s.io/apiserver/pkg/storage/etcd3 drives etcd: store.go's
//! Create (a txn on `mod_revision == 0`), GuaranteedUpdate (a txn on the mod revision read,
//! retried from the object a conflict returns), Delete with a precondition and paginated
//! GetList; watcher.go's watch feeding the watch cache (from a list's revision + 1, with
//! `prev_kv`, progress notifications and progress requests); compact.go's compaction guarded by
//! the version of `compact_rev_key`. Every wait is bounded; the member is killed when the test
//! ends.

mod procs;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procs::*;

use stet::proto::etcdserverpb as pb;
use stet::proto::mvccpb::{self, KeyValue};
use tokio::sync::{mpsc, RwLock};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

type KvClient = pb::kv_client::KvClient<Channel>;

/// Everything kube stores lives under this prefix (`compact_rev_key` does not).
const PREFIX: &[u8] = b"/registry/";
/// The end of `PREFIX`'s range.
const PREFIX_END: &[u8] = b"/registry0";
/// compact.go's key, outside the prefix.
const COMPACT_REV_KEY: &[u8] = b"compact_rev_key";
const WRITERS: usize = 4;
/// Counters every writer updates, so the writers conflict.
const COUNTERS: usize = 3;
/// How long the writers write.
const LOAD: Duration = Duration::from_millis(3500);
/// kube-apiserver's two compactors (two apiservers) run this often, half an interval apart.
const COMPACT_INTERVAL: Duration = Duration::from_millis(700);
/// How far behind the revision a compactor saw a round earlier it compacts.
const COMPACT_LAG: i64 = 50;
/// How often the watch cache asks for a progress response.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Page size of the paginated lists.
const LIST_LIMIT: i64 = 37;
/// etcd's answer to a read at a compacted revision.
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// One `stet` process with quick progress notifications; killed on drop.
struct Member {
    child: Child,
    port: u16,
}

impl Member {
    /// Starts a member with its data in `dir` and waits (bounded) until it is healthy.
    fn start(dir: &Path) -> Member {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let child = member_command()
            .current_dir(dir)
            .args(["--data-dir", "data", "--log-level", "warn"])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .arg("--experimental-watch-progress-notify-interval=300ms")
            .spawn()
            .expect("spawn stet");
        let mut member = Member { child, port };
        member.wait_healthy();
        member
    }

    /// The member's client URL.
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits (bounded) until `/health` answers 200, failing if the process exits first.
    fn wait_healthy(&mut self) {
        wait_healthy(&mut self.child, self.port, "/health", None);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the tasks share.
#[derive(Default)]
struct Shared {
    /// The revision the watch cache has applied up to (0 before it watches); compaction never
    /// passes it, so the watch is never cancelled.
    watched: AtomicI64,
    /// The highest revision compacted so far (the test's bookkeeping).
    compacted: AtomicI64,
    /// Held shared by a paginated list for all its pages and exclusively by a compaction round,
    /// so no list has its revision compacted between pages (kube would answer 410 Gone and the
    /// client would list again).
    list_pin: RwLock<()>,
    /// Once set, the compactors stop.
    stop: AtomicBool,
    /// The store's revision once the writers stopped (0 before); the watch cache ends at a
    /// progress response that reaches it.
    final_revision: AtomicI64,
    /// Set when the watch cache ended; the progress requests stop.
    cache_done: AtomicBool,
}

/// `Compare` of `key`'s mod revision with `revision` (0: the key does not exist).
fn mod_revision_is(key: &[u8], revision: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Mod as i32,
        key: key.to_vec(),
        target_union: Some(pb::compare::TargetUnion::ModRevision(revision)),
        ..Default::default()
    }
}

/// `Compare` of `key`'s version with `version` (0: the key does not exist).
fn version_is(key: &[u8], version: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Version as i32,
        key: key.to_vec(),
        target_union: Some(pb::compare::TargetUnion::Version(version)),
        ..Default::default()
    }
}

/// A put of `value` at `key` inside a txn.
fn put_op(key: &[u8], value: &[u8]) -> pb::RequestOp {
    let put = pb::PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    };
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(put)),
    }
}

/// A get of `key` inside a txn.
fn get_op(key: &[u8]) -> pb::RequestOp {
    let range = pb::RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(range)),
    }
}

/// A delete of `key`, returning what it deleted, inside a txn.
fn delete_op(key: &[u8]) -> pb::RequestOp {
    let delete = pb::DeleteRangeRequest {
        key: key.to_vec(),
        prev_kv: true,
        ..Default::default()
    };
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(delete)),
    }
}

/// The revision in a response's header.
fn revision_of(header: Option<&pb::ResponseHeader>) -> i64 {
    header.expect("a response has a header").revision
}

/// `if compare then success else failure` (bounded), failing the test on an error.
async fn txn(
    kv: &mut KvClient,
    compare: pb::Compare,
    success: pb::RequestOp,
    failure: pb::RequestOp,
) -> pb::TxnResponse {
    let request = pb::TxnRequest {
        compare: vec![compare],
        success: vec![success],
        failure: vec![failure],
    };
    bounded("txn", kv.txn(request))
        .await
        .expect("txn")
        .into_inner()
}

/// The object a failed txn's get found (kube's "current object" on a conflict), if any.
fn found_by_failure(response: &pb::TxnResponse) -> Option<KeyValue> {
    match &response.responses[..] {
        [pb::ResponseOp {
            response: Some(pb::response_op::Response::ResponseRange(range)),
        }] => range.kvs.first().cloned(),
        other => panic!("a failed txn answers its one get: {other:?}"),
    }
}

/// A range (bounded), the error if it fails.
async fn try_range(
    kv: &mut KvClient,
    request: pb::RangeRequest,
) -> Result<pb::RangeResponse, tonic::Status> {
    bounded("range", kv.range(request))
        .await
        .map(tonic::Response::into_inner)
}

/// A range (bounded), failing the test on an error.
async fn range(kv: &mut KvClient, request: pb::RangeRequest) -> pb::RangeResponse {
    try_range(kv, request).await.expect("range")
}

/// The object at `key` now, if any.
async fn read(kv: &mut KvClient, key: &[u8]) -> Option<KeyValue> {
    let request = pb::RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    range(kv, request).await.kvs.into_iter().next()
}

/// store.go's Create: puts `key` only if it does not exist; its revision, or on failure the
/// current object.
async fn create(kv: &mut KvClient, key: &[u8], value: &[u8]) -> Result<i64, KeyValue> {
    let response = txn(kv, mod_revision_is(key, 0), put_op(key, value), get_op(key)).await;
    if response.succeeded {
        return Ok(revision_of(response.header.as_ref()));
    }
    Err(found_by_failure(&response).expect("a failed create returns the current object"))
}

/// store.go's GuaranteedUpdate: from `cached` (or, without it, a read), puts `update(value)` if
/// the key's mod revision is still the one it started from; on a conflict it retries from the
/// object the failed txn returned, never reading again. The object written and the conflicts.
async fn guaranteed_update(
    kv: &mut KvClient,
    key: &[u8],
    cached: Option<KeyValue>,
    update: impl Fn(&[u8]) -> Vec<u8>,
) -> (KeyValue, u32) {
    let mut current = match cached {
        Some(object) => object,
        None => read(kv, key).await.expect("the object to update exists"),
    };
    for conflicts in 0..1000 {
        let value = update(&current.value);
        let compare = mod_revision_is(key, current.mod_revision);
        let response = txn(kv, compare, put_op(key, &value), get_op(key)).await;
        if response.succeeded {
            let revision = revision_of(response.header.as_ref());
            let written = KeyValue {
                value,
                mod_revision: revision,
                version: current.version + 1,
                ..current
            };
            return (written, conflicts);
        }
        current = found_by_failure(&response).expect("the object updated still exists");
    }
    panic!("GuaranteedUpdate of {key:?} conflicted 1000 times");
}

/// store.go's Delete with a precondition: deletes `key` only at `mod_revision`; the deleted
/// object, or on failure the current one (None: there is no such key).
async fn delete_at(
    kv: &mut KvClient,
    key: &[u8],
    mod_revision: i64,
) -> Result<KeyValue, Option<KeyValue>> {
    let compare = mod_revision_is(key, mod_revision);
    let response = txn(kv, compare, delete_op(key), get_op(key)).await;
    if !response.succeeded {
        return Err(found_by_failure(&response));
    }
    match &response.responses[..] {
        [pb::ResponseOp {
            response: Some(pb::response_op::Response::ResponseDeleteRange(deleted)),
        }] => {
            assert_eq!(deleted.deleted, 1, "a delete at the mod revision deletes");
            Ok(deleted
                .prev_kvs
                .first()
                .cloned()
                .expect("prev_kv of the delete"))
        }
        other => panic!("a successful delete answers its delete: {other:?}"),
    }
}

/// The key of counter `n`.
fn counter_key(n: usize) -> Vec<u8> {
    format!("/registry/counters/c{n}").into_bytes()
}

/// The key every writer tries to create in `round`.
fn race_key(round: u64) -> Vec<u8> {
    format!("/registry/races/r{round:05}").into_bytes()
}

/// A counter's value plus one.
fn increment(value: &[u8]) -> Vec<u8> {
    let n: u64 = std::str::from_utf8(value)
        .expect("a counter is text")
        .parse()
        .expect("a counter is a number");
    (n + 1).to_string().into_bytes()
}

/// A create race's outcome for one writer: its revision if it created the key, else the object
/// its create returned.
type RaceOutcome = Result<i64, KeyValue>;

/// What one writer did.
#[derive(Default)]
struct WriterLog {
    /// Successful updates of each counter.
    updates: [u64; COUNTERS],
    /// Conflicts its counter updates met.
    conflicts: u64,
    /// Each round's race.
    races: Vec<(u64, RaceOutcome)>,
    /// Rounds it ran.
    rounds: u64,
}

/// One kube writer until `until`. Each round it updates a shared counter, races the other writers
/// to create the round's key, creates an object of its own (checking a second create fails), and
/// every other round updates then deletes the previous round's object.
async fn writer(endpoint: String, id: usize, until: Instant) -> WriterLog {
    let mut kv = connect(endpoint).await.kv;
    let mut log = WriterLog::default();
    let mut previous: Option<KeyValue> = None;
    while Instant::now() < until {
        let round = log.rounds;
        let counter = (id + round as usize) % COUNTERS;
        let (_, conflicts) =
            guaranteed_update(&mut kv, &counter_key(counter), None, increment).await;
        log.updates[counter] += 1;
        log.conflicts += u64::from(conflicts);
        let race = create(&mut kv, &race_key(round), format!("w{id}").as_bytes()).await;
        log.races.push((round, race));
        let object = create_own_object(&mut kv, id, round).await;
        match previous.take() {
            Some(old) => update_then_delete(&mut kv, old).await,
            None => previous = Some(object),
        }
        log.rounds += 1;
    }
    log
}

/// Creates writer `id`'s object of `round` and checks that creating it again fails with the
/// object just created; that object.
async fn create_own_object(kv: &mut KvClient, id: usize, round: u64) -> KeyValue {
    let key = format!("/registry/pods/w{id}-{round:05}").into_bytes();
    let value = format!("pod {id} {round}").into_bytes();
    let revision = create(kv, &key, &value)
        .await
        .expect("a new object is created");
    let created = KeyValue {
        key,
        create_revision: revision,
        mod_revision: revision,
        version: 1,
        value,
        lease: 0,
    };
    let again = create(kv, &created.key, b"again").await;
    assert_eq!(
        again,
        Err(created.clone()),
        "creating an existing object fails with it"
    );
    created
}

/// A GuaranteedUpdate of `object` from its cached state (no read), then deletes with
/// preconditions: at its old mod revision (fails with the updated object), at its new one
/// (deletes it, returning it), and again (fails: it is gone).
async fn update_then_delete(kv: &mut KvClient, object: KeyValue) {
    let key = object.key.clone();
    let old = object.mod_revision;
    let (updated, conflicts) =
        guaranteed_update(kv, &key, Some(object), |_| b"updated".to_vec()).await;
    assert_eq!(conflicts, 0, "nobody else writes this object");
    let stale = delete_at(kv, &key, old).await;
    assert_eq!(
        stale,
        Err(Some(updated.clone())),
        "a stale delete fails with the object"
    );
    let deleted = delete_at(kv, &key, updated.mod_revision).await;
    assert_eq!(
        deleted,
        Ok(updated.clone()),
        "a delete returns what it deleted"
    );
    let gone = delete_at(kv, &key, updated.mod_revision).await;
    assert_eq!(
        gone,
        Err(None),
        "a delete of a deleted object finds nothing"
    );
}

/// A range of the prefix from `key` at `revision` (0: now), at most `limit` keys (0: all).
fn prefix_range(key: &[u8], revision: i64, limit: i64) -> pb::RangeRequest {
    pb::RangeRequest {
        key: key.to_vec(),
        range_end: PREFIX_END.to_vec(),
        revision,
        limit,
        ..Default::default()
    }
}

/// store.go's GetList paging: pages of `limit` keys at the first page's revision, each from the
/// last key + "\0", until `more` is false. The revision, the objects and the number of pages.
async fn paginated_list(kv: &mut KvClient, limit: i64) -> (i64, Vec<KeyValue>, u32) {
    let first = range(kv, prefix_range(PREFIX, 0, limit)).await;
    let revision = revision_of(first.header.as_ref());
    let mut objects = Vec::new();
    let mut page = first;
    let mut pages = 1;
    loop {
        assert!(
            page.kvs.len() as i64 <= limit,
            "a page holds at most `limit` keys"
        );
        assert_eq!(
            page.more,
            page.count > page.kvs.len() as i64,
            "`more` iff keys are left"
        );
        objects.extend(page.kvs);
        if !page.more {
            return (revision, objects, pages);
        }
        let mut next = objects
            .last()
            .expect("a page with more is not empty")
            .key
            .clone();
        next.push(0);
        page = range(kv, prefix_range(&next, revision, limit)).await;
        pages += 1;
    }
}

/// A paginated list of the prefix, checked against an unpaginated and a count-only range at its
/// revision. The revision, the objects and the number of pages.
async fn check_list(kv: &mut KvClient) -> (i64, Vec<KeyValue>, u32) {
    let (revision, objects, pages) = paginated_list(kv, LIST_LIMIT).await;
    let whole = range(kv, prefix_range(PREFIX, revision, 0)).await;
    assert!(!whole.more);
    assert_eq!(whole.count, whole.kvs.len() as i64);
    assert!(
        objects == whole.kvs,
        "pages joined differ from one range at {revision}"
    );
    let count = pb::RangeRequest {
        count_only: true,
        ..prefix_range(PREFIX, revision, 0)
    };
    let counted = range(kv, count).await;
    assert!(counted.kvs.is_empty(), "a count-only range returns no keys");
    assert_eq!(
        counted.count,
        objects.len() as i64,
        "count-only counts every key"
    );
    (revision, objects, pages)
}

/// Lists the prefix again and again until `until` (each list pinned against compaction);
/// how many lists it checked.
async fn lister(endpoint: String, shared: Arc<Shared>, until: Instant) -> u32 {
    let mut kv = connect(endpoint).await.kv;
    let mut lists = 0;
    while Instant::now() < until {
        {
            let _pinned = shared.list_pin.read().await;
            check_list(&mut kv).await;
        }
        lists += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lists
}

/// The watch cache: the state of a list, then events applied with every check kube relies on.
struct WatchCache {
    objects: BTreeMap<Vec<u8>, KeyValue>,
    /// Each key's last event's revision (kept after a delete).
    last_per_key: BTreeMap<Vec<u8>, i64>,
    /// The revision of the last event.
    last_event: i64,
    /// The highest revision a progress response (or the list) vouched for.
    progress: i64,
    events: u64,
    deletes: u64,
    progress_responses: u64,
    /// Progress responses to a progress request (watch id -1), not periodic notifications.
    requested_progress: u64,
}

impl WatchCache {
    /// A cache holding `objects`, listed at `revision`.
    fn from_list(revision: i64, objects: Vec<KeyValue>) -> WatchCache {
        WatchCache {
            objects: objects.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
            last_per_key: BTreeMap::new(),
            last_event: revision,
            progress: revision,
            events: 0,
            deletes: 0,
            progress_responses: 0,
            requested_progress: 0,
        }
    }

    /// The revision the cache is known complete up to.
    fn revision(&self) -> i64 {
        self.last_event.max(self.progress)
    }

    /// Applies one response of watch `watch_id`: events, or a progress response.
    fn apply(&mut self, response: &pb::WatchResponse, watch_id: i64) {
        assert!(
            !response.canceled,
            "the watch was cancelled (compact revision {}): {:?}",
            response.compact_revision, response.cancel_reason
        );
        assert!(!response.created, "one create, one created response");
        let header = revision_of(response.header.as_ref());
        if response.events.is_empty() {
            return self.apply_progress(response.watch_id, header, watch_id);
        }
        assert_eq!(response.watch_id, watch_id, "events of our one watch");
        for event in &response.events {
            self.apply_event(event);
        }
        assert!(
            header >= self.last_event,
            "a header at {header} before its events"
        );
    }

    /// A progress response at `header`: the cache has every event up to it.
    fn apply_progress(&mut self, id: i64, header: i64, watch_id: i64) {
        assert!(id == -1 || id == watch_id, "progress for watch {id}");
        assert!(
            header >= self.last_event,
            "progress at {header} after an event at {}",
            self.last_event
        );
        assert!(
            header >= self.progress,
            "progress went back from {} to {header}",
            self.progress
        );
        self.progress = header;
        self.progress_responses += 1;
        self.requested_progress += u64::from(id == -1);
    }

    /// One event, in order: after every revision vouched for, and once per key and revision.
    fn apply_event(&mut self, event: &mvccpb::Event) {
        let kv = event.kv.as_ref().expect("an event has a kv");
        let revision = kv.mod_revision;
        assert!(
            revision > self.progress,
            "an event at {revision} after progress at {}",
            self.progress
        );
        assert!(
            revision >= self.last_event,
            "an event at {revision} after one at {}",
            self.last_event
        );
        if let Some(last) = self.last_per_key.insert(kv.key.clone(), revision) {
            assert!(
                revision > last,
                "{:?}: an event at {revision} after one at {last}",
                kv.key
            );
        }
        self.last_event = revision;
        self.events += 1;
        let prev = event.prev_kv.as_ref();
        match mvccpb::event::EventType::try_from(event.r#type).expect("an event type") {
            mvccpb::event::EventType::Put => self.apply_put(kv, prev),
            mvccpb::event::EventType::Delete => self.apply_delete(kv, prev),
        }
    }

    /// A put: its `prev_kv` is the object held, and it follows it (or creates the key).
    fn apply_put(&mut self, kv: &KeyValue, prev: Option<&KeyValue>) {
        let held = self.objects.get(&kv.key);
        assert_eq!(prev, held, "a put's prev_kv is the object the cache holds");
        let (create_revision, version) = match held {
            Some(held) => (held.create_revision, held.version + 1),
            None => (kv.mod_revision, 1),
        };
        assert_eq!(
            (kv.create_revision, kv.version),
            (create_revision, version),
            "{kv:?}"
        );
        self.objects.insert(kv.key.clone(), kv.clone());
    }

    /// A delete: its `prev_kv` is the object held; its kv only the key and revision (as etcd's).
    fn apply_delete(&mut self, kv: &KeyValue, prev: Option<&KeyValue>) {
        let held = self.objects.remove(&kv.key);
        assert!(
            held.is_some(),
            "a delete of {:?}, which the cache does not hold",
            kv.key
        );
        assert_eq!(
            prev,
            held.as_ref(),
            "a delete's prev_kv is the object the cache held"
        );
        let bare = KeyValue {
            key: kv.key.clone(),
            mod_revision: kv.mod_revision,
            ..Default::default()
        };
        assert_eq!(kv, &bare, "a delete event's kv");
        self.deletes += 1;
    }
}

/// A watch request creating watcher.go's watch of the prefix from `start_revision`.
fn watch_create(start_revision: i64) -> pb::WatchRequest {
    let create = pb::WatchCreateRequest {
        key: PREFIX.to_vec(),
        range_end: PREFIX_END.to_vec(),
        start_revision,
        prev_kv: true,
        progress_notify: true,
        ..Default::default()
    };
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
    }
}

/// Sends a WatchProgressRequest every `PROGRESS_EVERY` until the watch cache is done
/// (watcher.go's RequestProgress, which kube sends for consistent reads from the cache).
async fn request_progress(requests: mpsc::Sender<pb::WatchRequest>, shared: Arc<Shared>) {
    while !shared.cache_done.load(Ordering::SeqCst) {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let progress = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                pb::WatchProgressRequest {},
            )),
        };
        if requests.send(progress).await.is_err() {
            return;
        }
    }
}

/// kube's watch cache: lists the prefix, watches it from the list's revision + 1, and applies
/// what arrives (publishing its revision for the compactors) until a progress response reaches
/// `shared.final_revision`.
async fn watch_cache(endpoint: String, shared: Arc<Shared>) -> WatchCache {
    let mut c = connect(endpoint).await;
    let (revision, objects, _) = {
        let _pinned = shared.list_pin.read().await;
        paginated_list(&mut c.kv, LIST_LIMIT).await
    };
    let mut cache = WatchCache::from_list(revision, objects);
    let (requests, stream) = mpsc::channel(16);
    let mut watch = bounded("watch", c.watch.watch(ReceiverStream::new(stream)))
        .await
        .expect("watch")
        .into_inner();
    requests
        .send(watch_create(revision + 1))
        .await
        .expect("send create");
    let created = bounded("created", watch.message())
        .await
        .expect("watch message")
        .expect("created response");
    assert!(created.created && !created.canceled, "{created:?}");
    shared.watched.store(revision, Ordering::SeqCst);
    let progress = tokio::spawn(request_progress(requests, shared.clone()));
    loop {
        let response = bounded("watch response", watch.message())
            .await
            .unwrap_or_else(|status| panic!("the watch ended: {status:?}"))
            .expect("the watch stays open");
        cache.apply(&response, created.watch_id);
        shared.watched.store(cache.revision(), Ordering::SeqCst);
        let target = shared.final_revision.load(Ordering::SeqCst);
        if target > 0 && cache.progress >= target {
            break;
        }
    }
    shared.cache_done.store(true, Ordering::SeqCst);
    bounded("progress requests stop", progress)
        .await
        .expect("progress requester");
    cache
}

/// What one compactor did.
#[derive(Default, Debug)]
struct CompactorLog {
    /// (version of `compact_rev_key` it wrote, revision it put there) of each round it won.
    won: Vec<(i64, i64)>,
    lost: u32,
    /// Revisions it compacted.
    compacted: Vec<i64>,
}

/// compact.go's loop, `id` half an interval apart from the others, until `shared.stop`.
async fn compactor(endpoint: String, shared: Arc<Shared>, id: u32) -> CompactorLog {
    let mut kv = connect(endpoint).await.kv;
    let mut log = CompactorLog::default();
    let (mut version, mut seen_revision) = (0, 0);
    tokio::time::sleep(COMPACT_INTERVAL * id / 2).await;
    while !shared.stop.load(Ordering::SeqCst) {
        tokio::time::sleep(COMPACT_INTERVAL).await;
        let _exclusive = shared.list_pin.write().await;
        // The revision seen a round ago, less a lag, never past the watch cache.
        let target = (seen_revision - COMPACT_LAG)
            .min(shared.watched.load(Ordering::SeqCst))
            .max(0);
        (version, seen_revision) = compact_round(&mut kv, &shared, version, target, &mut log).await;
    }
    log
}

/// One round of compact.go: if `compact_rev_key`'s version is `expected`, puts `target` there
/// and compacts to it (when past what was compacted); else learns the version another compactor
/// left. The version to expect next and the txn's header revision.
async fn compact_round(
    kv: &mut KvClient,
    shared: &Shared,
    expected: i64,
    target: i64,
    log: &mut CompactorLog,
) -> (i64, i64) {
    let value = target.to_string().into_bytes();
    let compare = version_is(COMPACT_REV_KEY, expected);
    let response = txn(
        kv,
        compare,
        put_op(COMPACT_REV_KEY, &value),
        get_op(COMPACT_REV_KEY),
    )
    .await;
    let header = revision_of(response.header.as_ref());
    if !response.succeeded {
        log.lost += 1;
        let current = found_by_failure(&response).expect("another compactor wrote the key");
        return (current.version, header);
    }
    log.won.push((expected + 1, target));
    if target > shared.compacted.load(Ordering::SeqCst) {
        let request = pb::CompactionRequest {
            revision: target,
            physical: false,
        };
        bounded("compact", kv.compact(request))
            .await
            .unwrap_or_else(|status| panic!("compact to {target}: {status:?}"));
        shared.compacted.store(target, Ordering::SeqCst);
        log.compacted.push(target);
    }
    (expected + 1, header)
}

/// Creates the counters at 0.
async fn create_counters(kv: &mut KvClient) {
    for n in 0..COUNTERS {
        create(kv, &counter_key(n), b"0")
            .await
            .expect("a new counter");
    }
}

/// No lost update: each counter's value and version are what its successful updates made them.
async fn check_counters(kv: &mut KvClient, logs: &[WriterLog]) {
    for n in 0..COUNTERS {
        let updates: u64 = logs.iter().map(|log| log.updates[n]).sum();
        let counter = read(kv, &counter_key(n)).await.expect("the counter exists");
        let value = String::from_utf8(counter.value).expect("text");
        assert_eq!(
            value,
            updates.to_string(),
            "counter {n} after {updates} updates"
        );
        assert_eq!(
            counter.version as u64,
            updates + 1,
            "counter {n}: created, then updates"
        );
    }
}

/// Exactly one writer created each round's race key, and every other create of it failed with
/// the winner's object.
fn check_races(logs: &[WriterLog]) {
    let mut rounds: BTreeMap<u64, Vec<(usize, &RaceOutcome)>> = BTreeMap::new();
    for (id, log) in logs.iter().enumerate() {
        for (round, outcome) in &log.races {
            rounds.entry(*round).or_default().push((id, outcome));
        }
    }
    for (round, outcomes) in rounds {
        let winners: Vec<(usize, i64)> = outcomes
            .iter()
            .filter_map(|(id, outcome)| outcome.as_ref().ok().map(|revision| (*id, *revision)))
            .collect();
        let [(winner, revision)] = winners[..] else {
            panic!("round {round}: one create succeeds, not {winners:?}");
        };
        for (_, outcome) in outcomes {
            if let Err(current) = outcome {
                assert_eq!(
                    current.value,
                    format!("w{winner}").into_bytes(),
                    "round {round}"
                );
                assert_eq!(
                    (current.mod_revision, current.version),
                    (revision, 1),
                    "round {round}"
                );
            }
        }
    }
}

/// `compact_rev_key` holds what the last winning round put, at a version counting every won
/// round; something was compacted, and a read below it is refused as etcd refuses it.
async fn check_compactions(kv: &mut KvClient, logs: &[CompactorLog]) -> i64 {
    let won: Vec<(i64, i64)> = logs
        .iter()
        .flat_map(|log| log.won.iter().copied())
        .collect();
    let last = won.iter().max().copied().expect("a compactor won a round");
    let key = read(kv, COMPACT_REV_KEY)
        .await
        .expect("compact_rev_key exists");
    assert_eq!(
        key.version,
        won.len() as i64,
        "one version per won round: {logs:?}"
    );
    assert_eq!(
        (key.version, key.value),
        (last.0, last.1.to_string().into_bytes())
    );
    let compacted = logs.iter().flat_map(|log| log.compacted.iter()).max();
    let compacted = *compacted.expect("the compactors compacted");
    let below = try_range(kv, prefix_range(PREFIX, compacted - 1, 0)).await;
    let refused = below.expect_err("a read below the compacted revision fails");
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::OutOfRange, COMPACTED)
    );
    range(kv, prefix_range(PREFIX, compacted, 0)).await;
    compacted
}

/// The watch cache holds exactly what a range of the prefix at its revision holds.
async fn check_cache(kv: &mut KvClient, cache: &WatchCache) {
    let fresh = range(kv, prefix_range(PREFIX, cache.progress, 0)).await;
    let cached: Vec<&KeyValue> = cache.objects.values().collect();
    let ranged: Vec<&KeyValue> = fresh.kvs.iter().collect();
    assert!(
        cached == ranged,
        "the watch cache ({} objects) differs from a range at {} ({} objects)",
        cached.len(),
        cache.progress,
        ranged.len()
    );
}

/// Create, GuaranteedUpdate, conditional Delete, paginated and count-only lists, the watch cache
/// and compaction, as kube-apiserver does them, all at once: no lost update, one winner per
/// create race, lists that agree, a watch cache equal to the store, a watch never cancelled.
#[test]
fn kube_apiserver_storage_patterns_hold_under_concurrent_writers() {
    let dir = TempDir::new("kube-patterns");
    let member = Member::start(&dir.0);
    runtime().block_on(async {
        let endpoint = member.endpoint();
        let mut kv = connect(endpoint.clone()).await.kv;
        create_counters(&mut kv).await;
        let shared = Arc::new(Shared::default());
        let until = Instant::now() + LOAD;
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| tokio::spawn(writer(endpoint.clone(), id, until)))
            .collect();
        let cache = tokio::spawn(watch_cache(endpoint.clone(), shared.clone()));
        let lister = tokio::spawn(lister(endpoint.clone(), shared.clone(), until));
        let compactors: Vec<_> = (0..2)
            .map(|id| tokio::spawn(compactor(endpoint.clone(), shared.clone(), id)))
            .collect();

        let mut logs = Vec::new();
        for task in writers {
            logs.push(bounded("a writer stops", task).await.expect("writer"));
        }
        let lists = bounded("the lister stops", lister).await.expect("lister");
        shared.stop.store(true, Ordering::SeqCst);
        let mut compactor_logs = Vec::new();
        for task in compactors {
            compactor_logs.push(bounded("a compactor stops", task).await.expect("compactor"));
        }
        let final_revision = revision_of(read_header(&mut kv).await.as_ref());
        shared
            .final_revision
            .store(final_revision, Ordering::SeqCst);
        let cache = bounded("the watch cache catches up", cache)
            .await
            .expect("watch cache");

        check_cache(&mut kv, &cache).await;
        check_counters(&mut kv, &logs).await;
        check_races(&logs);
        let compacted = check_compactions(&mut kv, &compactor_logs).await;
        let (_, objects, pages) = check_list(&mut kv).await;
        assert!(pages > 1, "the final list has several pages");
        let rounds: u64 = logs.iter().map(|log| log.rounds).sum();
        let conflicts: u64 = logs.iter().map(|log| log.conflicts).sum();
        eprintln!(
            "{rounds} writer rounds ({conflicts} update conflicts), {lists} lists, final \
             revision {final_revision}, {} objects in {pages} pages; watch cache: {} events \
             ({} deletes), {} progress responses ({} requested); compacted to {compacted}; compactors {:?}",
            objects.len(),
            cache.events,
            cache.deletes,
            cache.progress_responses,
            cache.requested_progress,
            compactor_logs
                .iter()
                .map(|log| (log.won.len(), log.lost, log.compacted.len()))
                .collect::<Vec<_>>(),
        );
    });
}

/// The header of a range of the prefix now.
async fn read_header(kv: &mut KvClient) -> Option<pb::ResponseHeader> {
    range(kv, prefix_range(PREFIX, 0, 1)).await.header
}
