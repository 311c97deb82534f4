//! The MVCC key-value store with etcd v3 semantics: every write creates a new revision, older
//! versions stay readable until compacted, and every write reports its watch events.
//!
//! Memory holds an index bounded by the number of versions, not by the data (etcd's `treeIndex`):
//! each key's versions with their revisions, create revision, version, lease and a checksum of the
//! value. The key-values themselves live in the storage engine (`values.rs`).
//!
//! Code map: this file owns [`KvStore`], [`KvError`] and the per-key version index plus the
//! single-key write primitives; `range.rs` answers Range requests; `txn.rs` validates and applies
//! transactions; `history.rs` owns compaction and the event log; `hash.rs` the history's hash
//! (`hash_kv`, whole or in bounded steps); `snapshot.rs` converts to and from
//! [`KvSnapshot`](crate::proto::stetpb::KvSnapshot); `load.rs` rebuilds the index from the engine
//! at a restart; `row.rs` is the borrowed row both loaders check; `stretches.rs` counts a range
//! without walking all of it; `values.rs` keeps the key-values.
//! The store never reads a clock, does IO only through its engine's `Disk`, and learns whether a
//! lease exists only through the caller's callback.

use std::collections::btree_map;
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
};
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};

mod hash;
pub use hash::{HashProgress, HashStep};
mod history;
mod load;
pub use load::{set_side_by_side, SideBySide};
mod range;
mod row;
mod snapshot;
mod stretches;
mod txn;
mod value_reads;
pub use value_reads::ValueReads;
mod values;

use stretches::Stretches;
use values::Values;
pub(crate) use values::Versions;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

/// Why a request to the store was refused. A refused request changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The requested revision is older than the compaction point.
    #[error("mvcc: required revision has been compacted")]
    Compacted {
        /// The store's compaction point at the time of the request.
        compact_revision: i64,
    },
    /// The requested revision has not been written yet.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A put, range or delete named the empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` or `ignore_lease` was set on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` was set together with a non-empty value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` was set together with a non-zero lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A put named a lease that does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A txn branch writes one key twice, or puts a key that it also deletes.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A snapshot failed validation; the message names the offending key or revision.
    #[error("corrupt kv snapshot: {0}")]
    CorruptSnapshot(String),
    /// The storage engine failed or its file is damaged; the store can no longer be trusted.
    #[error("etcdserver: storage engine failed: {0}")]
    Storage(String),
}

/// One version of one key as the index holds it: a put (its key-value's fields but the value,
/// which is in the engine, and the value's crc32) or a tombstone (version 0: a put's version
/// counts from 1). 40 bytes, one per retained version, so kept tight: the sub-revision numbers
/// the changes of one revision, which never reach 2³² (each change is a key in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    main: i64,
    create_revision: i64,
    version: i64,
    lease: i64,
    sub: u32,
    value_crc: u32,
}

const _: () = assert!(std::mem::size_of::<Version>() == 40);

/// A sub-revision as the index keeps it.
fn sub_revision(sub: i64) -> u32 {
    u32::try_from(sub).unwrap_or_else(|_| panic!("sub-revision {sub} out of range"))
}

impl Version {
    /// A put at (main, sub).
    fn put(main: i64, sub: i64, create_revision: i64, version: i64, lease: i64, crc: u32) -> Self {
        assert!(version >= 1, "a put's version counts from 1, not {version}");
        Version {
            main,
            create_revision,
            version,
            lease,
            sub: sub_revision(sub),
            value_crc: crc,
        }
    }

    /// A tombstone at (main, sub).
    fn tombstone(main: i64, sub: i64) -> Self {
        Version {
            main,
            create_revision: 0,
            version: 0,
            lease: 0,
            sub: sub_revision(sub),
            value_crc: 0,
        }
    }

    /// The sub-revision, as revisions are written elsewhere.
    fn sub(&self) -> i64 {
        i64::from(self.sub)
    }

    fn is_tombstone(&self) -> bool {
        self.version == 0
    }

    /// The key-value this version shows to readers, given its value (tombstones show only key
    /// and revision).
    fn to_kv(&self, key: &[u8], value: Vec<u8>) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.main,
            version: self.version,
            value,
            lease: self.lease,
        }
    }

    fn is_live(&self) -> bool {
        !self.is_tombstone()
    }
}

/// The newest version of `versions` with main revision <= `revision`, if it is not a tombstone.
fn visible_at(versions: &[Version], revision: i64) -> Option<&Version> {
    let newest = match versions.last() {
        Some(last) if last.main <= revision => last,
        _ => {
            let below = versions.partition_point(|v| v.main <= revision);
            versions.get(below.checked_sub(1)?)?
        }
    };
    newest.is_live().then_some(newest)
}

/// Whether `key` falls in the range [start, end) under etcd's rules (empty end = exactly start;
/// end == b"\0" = every key >= start).
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

/// The map bounds selecting [start, end) under the rules of [`in_range`]; an inverted range
/// (end <= start) selects nothing.
fn range_bounds<'a>(start: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    if end.is_empty() {
        (Bound::Included(start), Bound::Included(start))
    } else if end == [0] {
        (Bound::Included(start), Bound::Unbounded)
    } else if end <= start {
        (Bound::Included(start), Bound::Excluded(start))
    } else {
        (Bound::Included(start), Bound::Excluded(end))
    }
}

fn put_event(kv: KeyValue, prev_kv: Option<KeyValue>) -> Event {
    Event {
        r#type: EventType::Put as i32,
        kv: Some(kv),
        prev_kv,
    }
}

fn delete_event(key: &[u8], main: i64, prev_kv: Option<KeyValue>) -> Event {
    let kv = KeyValue {
        key: key.to_vec(),
        mod_revision: main,
        ..KeyValue::default()
    };
    Event {
        r#type: EventType::Delete as i32,
        kv: Some(kv),
        prev_kv,
    }
}

/// Every key's versions, oldest first. Memory here grows with the number of keys, so it is kept
/// tight: a key is a boxed slice (no capacity word), and a key's versions grow by half their
/// number rather than doubling from four (`push_version_tightly`); compaction gives back what it
/// frees.
type KeyIndex = BTreeMap<Box<[u8]>, Vec<Version>>;

/// Appends `version`, growing the vector by half its length when full (still amortized O(1)):
/// most keys have one or two versions, and `Vec`'s own growth would give them room for four.
fn push_version_tightly(versions: &mut Vec<Version>, version: Version) {
    if versions.len() == versions.capacity() {
        versions.reserve_exact((versions.len() / 2).max(1));
    }
    versions.push(version);
}

/// Gives back the room a vector of versions no longer needs, once it is mostly empty.
fn release_spare_versions(versions: &mut Vec<Version>) {
    if versions.capacity() > 2 * versions.len() {
        versions.shrink_to_fit();
    }
}

/// The MVCC store: every key's versions in (main, sub) order (etcd's `treeIndex`); the key-values
/// themselves are in `values`.
///
/// Invariants: versions of one key have strictly increasing main revisions (a key changes at
/// most once per revision); every version's main is <= `current_revision`; once a compaction at
/// C has passed over a key (`compaction_pass`), the key holds at most one version with
/// main <= C, and if that one is a tombstone its main is exactly C (kept so that
/// `events_since(C)` still reports the delete); `values` holds a key-value for exactly the
/// versions the index holds.
#[derive(Debug)]
pub struct KvStore {
    keys: KeyIndex,
    current_revision: i64,
    compact_revision: i64,
    live_keys: usize,
    /// The index cut into stretches that count a range without walking all of it.
    stretches: Stretches,
    values: Values,
    /// Whether write events carry the value of the version they replaced (`prev_kv.value`; see
    /// [`KvStore::set_prev_values_in_events`]).
    prev_values_in_events: bool,
    /// The last compaction's pass over the index, while it has keys to go (`history`).
    compaction_pass: Option<history::CompactionPass>,
}

impl Default for KvStore {
    fn default() -> Self {
        Self::new()
    }
}

impl KvStore {
    /// An empty store at revision 1, like a fresh etcd, keeping its values in memory.
    pub fn new() -> Self {
        Self::with_values(Values::in_memory())
    }

    /// An empty store keeping its values in `engine`, whose revisions it replaces at the first
    /// commit.
    pub fn with_engine(engine: crate::engine::Engine) -> Result<Self, crate::engine::EngineError> {
        let mut values = Values::new(engine)?;
        values.clear();
        Ok(Self::with_values(values))
    }

    fn with_values(values: Values) -> Self {
        Self {
            keys: BTreeMap::new(),
            current_revision: 1,
            compact_revision: 0,
            live_keys: 0,
            stretches: Stretches::new(),
            values,
            prev_values_in_events: true,
            compaction_pass: None,
        }
    }

    /// Whether the events of the next writes carry the value of the version each replaced. Only
    /// a watcher that asked for `prev_kv` needs it: without, an event's `prev_kv` holds that
    /// version's key, revisions, version and lease (what lease tracking reads) with an empty
    /// value, and the value is not read from the engine. A write that asks for `prev_kv` itself,
    /// or keeps the old value (`ignore_value`), reads it anyway. On by default.
    pub fn set_prev_values_in_events(&mut self, on: bool) {
        self.prev_values_in_events = on;
    }

    /// The first storage error the store met: once there is one, it must not serve any more.
    pub fn storage_failure(&self) -> Option<&str> {
        self.values.failure()
    }

    /// How many changes the engine has not been given yet, and how many bytes they hold. A
    /// compaction's pass with keys to go counts as one: the next commit moves it on.
    pub fn uncommitted(&self) -> (usize, usize) {
        let (changes, bytes) = self.values.uncommitted();
        (changes + usize::from(self.compacting()), bytes)
    }

    /// How many revisions compaction dropped the engine's file still holds: the commits to come
    /// delete them, `COMPACTION_DELETES_PER_COMMIT` at a time.
    pub fn deletes_waiting(&self) -> usize {
        self.values.deletes_waiting()
    }

    /// How many revisions compaction dropped the commits so far deleted from the engine's file.
    pub fn deletes_staged(&self) -> u64 {
        self.values.deletes_staged()
    }

    /// Whether the last compaction is done: its pass went over every key and the engine's file
    /// no longer holds any revision it dropped.
    pub fn compaction_finished(&self) -> bool {
        !self.compacting() && self.deletes_waiting() == 0
    }

    /// Writes every change since the last commit to the engine, with the entry the state ends at;
    /// fsynced if `durable`.
    pub fn commit(
        &mut self,
        applied: Option<crate::engine::Applied>,
        durable: bool,
    ) -> Result<(), KvError> {
        let mut batch = crate::engine::Batch::new();
        self.stage(&mut batch);
        if let Some(applied) = applied {
            batch.set_applied(applied);
        }
        self.commit_batch(batch, durable)
    }

    /// Moves every change since the last commit into `batch`.
    pub fn stage(&mut self, batch: &mut crate::engine::Batch) {
        self.stage_keeping(batch);
    }

    /// [`KvStore::stage`], giving back the versions staged, for [`KvStore::begin_commit`]. A
    /// compaction's pass goes on by a step first, unless a commit's worth of its deletes
    /// already waits (so what waits stays bounded).
    pub(crate) fn stage_keeping(&mut self, batch: &mut crate::engine::Batch) -> Versions {
        if self.values.deletes_waiting() < values::COMPACTION_DELETES_PER_COMMIT {
            self.compact_step(history::COMPACTION_KEYS_PER_STEP);
        }
        self.values
            .stage(batch, self.current_revision, self.compact_revision)
    }

    /// Whether the next commit replaces the whole state (it is then made in place).
    pub fn replaces_all(&self) -> bool {
        self.values.replaces_all()
    }

    /// Starts a commit of `batch`, which holds the staged `versions`, to be written by the
    /// returned job on any thread; reads see those versions meanwhile. Then
    /// [`KvStore::finish_commit`].
    pub(crate) fn begin_commit(
        &mut self,
        batch: crate::engine::Batch,
        durable: bool,
        versions: Versions,
    ) -> Result<crate::engine::CommitJob, KvError> {
        self.values.begin_commit(batch, durable, versions)
    }

    /// Takes in the commit in flight, running or waiting for it as needed; true if there was
    /// one.
    pub fn finish_commit(&mut self) -> Result<bool, KvError> {
        self.values.finish_commit()
    }

    /// The commit being written off the owner's thread, if one is.
    pub fn commit_in_flight(&self) -> Option<&crate::engine::CommitJob> {
        self.values.commit_in_flight()
    }

    /// Replaced engine files no view reads any more, to be closed where blocking is allowed.
    pub(crate) fn take_closable_files(&mut self) -> Vec<crate::engine::RetiredFile> {
        self.values.take_closable_files()
    }

    /// The engine, to stage and install a state another member sends.
    pub(crate) fn engine_mut(&mut self) -> &mut crate::engine::Engine {
        self.values.engine_mut()
    }

    /// Commits a batch holding this store's staged changes (and whatever its owner adds).
    pub fn commit_batch(
        &mut self,
        batch: crate::engine::Batch,
        durable: bool,
    ) -> Result<(), KvError> {
        self.values.commit(batch, durable)
    }

    /// Every live key with a lease, and its lease.
    pub fn leased_keys(&self) -> Vec<(Vec<u8>, i64)> {
        self.keys
            .iter()
            .filter_map(|(key, versions)| {
                let newest = versions.last().filter(|v| v.is_live() && v.lease != 0)?;
                Some((key.to_vec(), newest.lease))
            })
            .collect()
    }

    /// The engine the values live in.
    pub fn engine(&self) -> &crate::engine::Engine {
        self.values.engine()
    }

    /// Rewrites the engine's file compactly in place; every change must be committed first.
    pub fn defragment(&mut self) -> Result<(), crate::engine::EngineError> {
        self.values.defragment()
    }

    /// Starts rewriting the engine's file compactly while writes go on; every change must be
    /// committed first. False if that is already under way.
    pub fn start_defragment(&mut self) -> Result<bool, crate::engine::DefragError> {
        self.values.start_defragment()
    }

    /// Moves an online defragmentation on by about `max_bytes`.
    pub fn defragment_step(
        &mut self,
        max_bytes: usize,
    ) -> Result<crate::engine::DefragStep, crate::engine::DefragError> {
        self.values.defragment_step(max_bytes)
    }

    /// The engine, given back (changes not committed are dropped).
    pub fn into_engine(self) -> crate::engine::Engine {
        self.values.into_engine()
    }

    /// The key-value of a version of `key`, value read from the engine.
    fn kv_of(&self, key: &[u8], v: &Version) -> Result<KeyValue, KvError> {
        kv_from(&self.values, key, v)
    }

    /// The revision of the last write (1 for an empty store).
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision of the last compaction, 0 when never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// The number of live keys at the current revision.
    pub fn key_count(&self) -> usize {
        self.live_keys
    }

    /// Writes one key at a new revision. Returns the response and the PUT event.
    pub fn put(
        &mut self,
        req: &PutRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(PutResponse, Vec<Event>), KvError> {
        check_put_static(req)?;
        self.check_put_state(req, lease_exists)?;
        let main = self.current_revision + 1;
        let (resp, event) = self.apply_put(req, main, 0)?;
        self.current_revision = main;
        Ok((resp, vec![event]))
    }

    /// Deletes every live key in the range at a new revision (no revision if nothing is deleted).
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<(DeleteRangeResponse, Vec<Event>), KvError> {
        if req.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        let main = self.current_revision + 1;
        let mut sub = 0;
        let (resp, events) = self.apply_delete_range(req, main, &mut sub)?;
        if !events.is_empty() {
            self.current_revision = main;
        }
        Ok((resp, events))
    }

    /// Iterates the keys (live or not) in [start, end) under the rules of [`in_range`].
    fn key_range<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> btree_map::Range<'a, Box<[u8]>, Vec<Version>> {
        self.keys.range::<[u8], _>(range_bounds(start, end))
    }

    /// The newest version of `key` if it is live (this includes writes of a txn in progress).
    fn latest_live(&self, key: &[u8]) -> Option<&Version> {
        self.keys.get(key)?.last().filter(|v| v.is_live())
    }

    /// Checks the parts of a put that depend on the store and the leases.
    fn check_put_state(
        &self,
        req: &PutRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(), KvError> {
        if req.lease != 0 && !lease_exists(req.lease) {
            return Err(KvError::LeaseNotFound);
        }
        if (req.ignore_value || req.ignore_lease) && self.latest_live(&req.key).is_none() {
            return Err(KvError::KeyNotFound);
        }
        Ok(())
    }

    /// Applies a validated put at (main, sub). Fails only if the engine does (see `values`).
    /// The key is looked up once: the index entry found serves both the version it replaces and
    /// the new version's push (a put's hottest path is this lookup).
    fn apply_put(
        &mut self,
        req: &PutRequest,
        main: i64,
        sub: i64,
    ) -> Result<(PutResponse, Event), KvError> {
        debug_assert!(main > self.current_revision, "revision went backwards");
        let prev_value_needed = req.prev_kv || req.ignore_value || self.prev_values_in_events;
        let Self {
            keys,
            values,
            live_keys,
            stretches,
            compact_revision,
            ..
        } = self;
        let versions = keys.get_mut(req.key.as_slice());
        let prev = versions
            .as_deref()
            .and_then(|v| v.last())
            .filter(|v| v.is_live())
            .cloned();
        let prev_kv = match &prev {
            Some(p) if prev_value_needed => Some(kv_from(values, &req.key, p)?),
            Some(p) => Some(p.to_kv(&req.key, Vec::new())),
            None => None,
        };
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (main, 1),
        };
        let value = match (req.ignore_value, &prev_kv) {
            (true, Some(p)) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (req.ignore_lease, &prev) {
            (true, Some(p)) => p.lease,
            _ => req.lease,
        };
        let new = Version::put(
            main,
            sub,
            create_revision,
            version,
            lease,
            crc32fast::hash(&value),
        );
        let kv = new.to_kv(&req.key, value);
        if prev_kv.is_none() {
            *live_keys += 1;
        }
        values.record(sub, kv.clone());
        let added = versions.is_none();
        match versions {
            Some(versions) => push_version_tightly(versions, new),
            None => {
                keys.insert(req.key.as_slice().into(), vec![new]);
            }
        }
        if added {
            stretches.key_created(keys, &req.key, main, *compact_revision);
        } else if prev_kv.is_none() {
            stretches.liveness_changed(&req.key, main, true, *compact_revision);
        }
        let resp = PutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev_kv.clone() } else { None },
        };
        Ok((resp, put_event(kv, prev_kv)))
    }

    /// Deletes every live key in the request's range at (main, sub..), advancing `sub`.
    fn apply_delete_range(
        &mut self,
        req: &DeleteRangeRequest,
        main: i64,
        sub: &mut i64,
    ) -> Result<(DeleteRangeResponse, Vec<Event>), KvError> {
        let doomed: Vec<Vec<u8>> = self
            .key_range(&req.key, &req.range_end)
            .filter(|(_, versions)| versions.last().is_some_and(Version::is_live))
            .map(|(key, _)| key.to_vec())
            .collect();
        let mut resp = DeleteRangeResponse {
            header: None,
            deleted: doomed.len() as i64,
            prev_kvs: Vec::new(),
        };
        let mut events = Vec::with_capacity(doomed.len());
        let prev_value_needed = req.prev_kv || self.prev_values_in_events;
        for key in doomed {
            let prev_kv = match self.latest_live(&key).cloned() {
                Some(p) if prev_value_needed => Some(self.kv_of(&key, &p)?),
                Some(p) => Some(p.to_kv(&key, Vec::new())),
                None => None,
            };
            let tombstone = Version::tombstone(main, *sub);
            *sub += 1;
            self.live_keys = self.live_keys.saturating_sub(1);
            let bare = tombstone.to_kv(&key, Vec::new());
            self.push_version(&key, tombstone, bare);
            let compacted = self.compact_revision;
            self.stretches
                .liveness_changed(&key, main, false, compacted);
            if req.prev_kv {
                resp.prev_kvs.extend(prev_kv.clone());
            }
            events.push(delete_event(&key, main, prev_kv));
        }
        Ok((resp, events))
    }

    /// Adds a version to the index and its key-value to the values.
    fn push_version(&mut self, key: &[u8], version: Version, kv: KeyValue) {
        debug_assert!(
            version.main > self.current_revision,
            "revision went backwards"
        );
        debug_assert_eq!((kv.mod_revision, kv.key.as_slice()), (version.main, key));
        self.values.record(version.sub(), kv);
        match self.keys.get_mut(key) {
            Some(versions) => push_version_tightly(versions, version),
            None => {
                self.keys.insert(key.into(), vec![version]);
            }
        }
    }
}

/// The key-value of a version of `key`, value read from `values` (the engine).
fn kv_from(values: &Values, key: &[u8], v: &Version) -> Result<KeyValue, KvError> {
    let value = if v.is_tombstone() {
        Vec::new()
    } else {
        values.value(key, v.main, v.sub())?
    };
    Ok(v.to_kv(key, value))
}

/// Checks the parts of a put that need no state: key present, ignore flags used consistently.
fn check_put_static(req: &PutRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}
