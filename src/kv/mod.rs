//! The in-memory MVCC key-value store with etcd v3 semantics: every write creates a new revision,
//! older versions stay readable until compacted, and every write reports its watch events.
//!
//! Code map: this file owns [`KvStore`], [`KvError`] and the per-key version index plus the
//! single-key write primitives; `range.rs` answers Range requests; `txn.rs` validates and applies
//! transactions; `history.rs` owns compaction, the event log and `hash_kv`; `snapshot.rs` converts
//! to and from [`KvSnapshot`](crate::proto::stetpb::KvSnapshot). The store never does IO, never
//! reads a clock, and learns whether a lease exists only through the caller's callback.

use std::collections::btree_map;
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
};
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};

mod history;
mod range;
mod snapshot;
mod txn;

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
}

/// One version of one key: a put (with its key-value fields) or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    main: i64,
    sub: i64,
    tombstone: bool,
    create_revision: i64,
    version: i64,
    lease: i64,
    value: Vec<u8>,
}

impl Version {
    /// The key-value this version shows to readers (tombstones show only key and revision).
    fn to_kv(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.main,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }

    fn is_live(&self) -> bool {
        !self.tombstone
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

/// The MVCC store: every key's versions in (main, sub) order, plus a revision index for events.
///
/// Invariants: versions of one key have strictly increasing main revisions (a key changes at
/// most once per revision); every version's main is <= `current_revision`; after a compaction
/// at C, each key holds at most one version with main <= C, and if that one is a tombstone its
/// main is exactly C (kept so that `events_since(C)` still reports the delete).
#[derive(Debug, Clone)]
pub struct KvStore {
    keys: BTreeMap<Vec<u8>, Vec<Version>>,
    /// (main, sub) -> key, for every version with main >= the compaction point.
    revs: BTreeMap<(i64, i64), Vec<u8>>,
    current_revision: i64,
    compact_revision: i64,
    live_keys: usize,
}

impl Default for KvStore {
    fn default() -> Self {
        Self::new()
    }
}

impl KvStore {
    /// An empty store at revision 1, like a fresh etcd.
    pub fn new() -> Self {
        Self {
            keys: BTreeMap::new(),
            revs: BTreeMap::new(),
            current_revision: 1,
            compact_revision: 0,
            live_keys: 0,
        }
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
        let (resp, event) = self.apply_put(req, main, 0);
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
        let (resp, events) = self.apply_delete_range(req, main, &mut sub);
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
    ) -> btree_map::Range<'a, Vec<u8>, Vec<Version>> {
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

    /// Applies a validated put at (main, sub).
    fn apply_put(&mut self, req: &PutRequest, main: i64, sub: i64) -> (PutResponse, Event) {
        let prev = self.latest_live(&req.key);
        let (create_revision, version) = match prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (main, 1),
        };
        let value = match (req.ignore_value, prev) {
            (true, Some(p)) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (req.ignore_lease, prev) {
            (true, Some(p)) => p.lease,
            _ => req.lease,
        };
        let prev_kv = prev.map(|p| p.to_kv(&req.key));
        let new = Version {
            main,
            sub,
            tombstone: false,
            create_revision,
            version,
            lease,
            value,
        };
        let kv = new.to_kv(&req.key);
        if prev_kv.is_none() {
            self.live_keys += 1;
        }
        self.push_version(&req.key, new);
        let resp = PutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev_kv.clone() } else { None },
        };
        (resp, put_event(kv, prev_kv))
    }

    /// Deletes every live key in the request's range at (main, sub..), advancing `sub`.
    fn apply_delete_range(
        &mut self,
        req: &DeleteRangeRequest,
        main: i64,
        sub: &mut i64,
    ) -> (DeleteRangeResponse, Vec<Event>) {
        let doomed: Vec<Vec<u8>> = self
            .key_range(&req.key, &req.range_end)
            .filter(|(_, versions)| versions.last().is_some_and(Version::is_live))
            .map(|(key, _)| key.clone())
            .collect();
        let mut resp = DeleteRangeResponse {
            header: None,
            deleted: doomed.len() as i64,
            prev_kvs: Vec::new(),
        };
        let mut events = Vec::with_capacity(doomed.len());
        for key in doomed {
            let prev_kv = self.latest_live(&key).map(|p| p.to_kv(&key));
            let tombstone = Version {
                main,
                sub: *sub,
                tombstone: true,
                create_revision: 0,
                version: 0,
                lease: 0,
                value: Vec::new(),
            };
            *sub += 1;
            self.live_keys = self.live_keys.saturating_sub(1);
            self.push_version(&key, tombstone);
            if req.prev_kv {
                resp.prev_kvs.extend(prev_kv.clone());
            }
            events.push(delete_event(&key, main, prev_kv));
        }
        (resp, events)
    }

    fn push_version(&mut self, key: &[u8], version: Version) {
        debug_assert!(
            version.main > self.current_revision,
            "revision went backwards"
        );
        self.revs.insert((version.main, version.sub), key.to_vec());
        match self.keys.get_mut(key) {
            Some(versions) => versions.push(version),
            None => {
                self.keys.insert(key.to_vec(), vec![version]);
            }
        }
    }
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
