//! The store's history: compaction (dropping versions nobody can read any more), the event log
//! that watches catch up from.
//!
//! A compaction takes effect at once (`begin_compaction` moves the compaction point, which every
//! reader goes by) and its pass over the index, dropping the versions it made unreadable, runs
//! in bounded steps (`compact_step`) between which the store serves as usual: a pass over a
//! million keys in one go stalled the member for 100–150 ms. Until the pass reaches a key, the
//! key may still hold versions the compaction dropped; readers skip them (`retained`).

use std::ops::Bound;

use super::{delete_event, in_range, put_event, release_spare_versions, KvError, KvStore, Version};
use crate::proto::mvccpb::Event;

/// The most keys one step of a compaction's pass goes over. A step is taken as the applied
/// state's commit is staged, every `COMPACTION_PAUSE` while compaction's work waits (see
/// `KvStore::stage_keeping`). The simulator's stores are small: it steps a few keys at a time,
/// so its runs read, hash, snapshot and crash in the middle of passes.
#[cfg(not(madsim))]
pub(super) const COMPACTION_KEYS_PER_STEP: usize = 10_000;
#[cfg(madsim)]
pub(super) const COMPACTION_KEYS_PER_STEP: usize = 8;

/// A compaction's pass over the index, under way: every key up to `after` holds only what the
/// compaction at the store's compact revision keeps; the keys after it may hold more.
#[derive(Debug, Clone, Default)]
pub(super) struct CompactionPass {
    /// The last key the pass went over, `None` before the first.
    after: Option<Box<[u8]>>,
}

impl KvStore {
    /// Forgets history before `revision` in one go: for each key, keeps the newest version with
    /// main <= revision (unless it is a tombstone older than `revision`) and everything newer.
    pub fn compact(&mut self, revision: i64) -> Result<(), KvError> {
        self.begin_compaction(revision)?;
        while self.compact_step(usize::MAX) {}
        Ok(())
    }

    /// Moves the compaction point to `revision` (reads before it are refused from now on) and
    /// starts the pass that drops the versions it makes unreadable, key by key
    /// ([`KvStore::compact_step`]; a pass under way starts over at the new point).
    pub fn begin_compaction(&mut self, revision: i64) -> Result<(), KvError> {
        if revision <= self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        if revision > self.current_revision {
            return Err(KvError::FutureRevision);
        }
        self.compact_revision = revision;
        self.compaction_pass = Some(CompactionPass::default());
        Ok(())
    }

    /// Whether a compaction's pass over the index has keys to go.
    pub fn compacting(&self) -> bool {
        self.compaction_pass.is_some()
    }

    /// Moves the compaction's pass on by at most `max_keys` keys, handing what it drops to the
    /// values (deleted from the engine over the next commits); true while keys remain.
    pub fn compact_step(&mut self, max_keys: usize) -> bool {
        assert!(max_keys > 0, "a compaction step must make progress");
        let Some(pass) = self.compaction_pass.take() else {
            return false;
        };
        let start = match &pass.after {
            Some(after) => Bound::Excluded(after.as_ref()),
            None => Bound::Unbounded,
        };
        let revision = self.compact_revision;
        let values = &mut self.values;
        let mut emptied = Vec::new();
        let mut last = None;
        let mut keys = self.keys.range_mut::<[u8], _>((start, Bound::Unbounded));
        for (key, versions) in keys.by_ref().take(max_keys) {
            for dropped in compact_versions(versions, revision) {
                values.forget(dropped.main, dropped.sub());
            }
            release_spare_versions(versions);
            if versions.is_empty() {
                emptied.push(key.clone());
            }
            last = Some(key);
        }
        let more = keys.next().is_some();
        let after = last.cloned();
        for key in emptied {
            self.keys.remove(&key);
            self.stretches.key_removed(&self.keys, &key, revision);
        }
        if more {
            self.compaction_pass = Some(CompactionPass { after });
        }
        more
    }

    /// The versions of one key a reader may see: without those the compaction dropped, when its
    /// pass has not reached the key yet.
    pub(super) fn retained<'a>(&self, versions: &'a [Version]) -> &'a [Version] {
        if self.compaction_pass.is_none() {
            return versions;
        }
        &versions[dropped_by_compaction(versions, self.compact_revision)..]
    }

    /// Every event with mod_revision >= start_revision on keys in [key, range_end) (same range
    /// rules as Range), in revision order (main, sub).
    ///
    /// An event at exactly the compaction revision has no `prev_kv`: the version it replaced is
    /// gone. Any later event carries `prev_kv` whenever the key was live before it.
    pub fn events_since(
        &self,
        start_revision: i64,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<Vec<Event>, KvError> {
        self.events_since_limited(start_revision, key, range_end, usize::MAX)
    }

    /// [`events_since`](Self::events_since), stopping at the first revision that starts once
    /// `limit` events were found: whole revisions only, so fewer than `limit` events means the
    /// history up to the current revision is complete.
    pub fn events_since_limited(
        &self,
        start_revision: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> Result<Vec<Event>, KvError> {
        if start_revision < self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        // Whether the event at `main` starts a revision past the limit.
        let full = |events: &[Event], main: i64| {
            events.len() >= limit
                && events
                    .last()
                    .and_then(|e| e.kv.as_ref())
                    .is_some_and(|kv| kv.mod_revision != main)
        };
        if range_end.is_empty() {
            let versions = self.keys.get(key).map(Vec::as_slice).unwrap_or_default();
            let first = versions.partition_point(|v| v.main < start_revision);
            let mut events = Vec::with_capacity((versions.len() - first).min(limit));
            for i in first..versions.len() {
                if full(&events, versions[i].main) {
                    break;
                }
                events.extend(self.event_at(key, versions, i)?);
            }
            return Ok(events);
        }
        // Across keys: the revisions since the start, from the engine and the versions not
        // committed yet (etcd reads its `key` bucket from the start revision likewise), read
        // only as far as the limit needs; the values are read once the versions are picked.
        let mut picked: Vec<(i64, Vec<u8>, usize)> = Vec::new();
        self.values
            .keys_since_each(start_revision, |(main, sub), k| {
                if !in_range(k, key, range_end) {
                    return true;
                }
                let Some(versions) = self.keys.get(k) else {
                    return true;
                };
                let Ok(i) = versions.binary_search_by(|v| (v.main, v.sub()).cmp(&(main, sub)))
                else {
                    return true;
                };
                let new_revision = picked.last().is_some_and(|(last, _, _)| *last != main);
                if picked.len() >= limit && new_revision {
                    return false;
                }
                picked.push((main, k.to_vec(), i));
                true
            })?;
        let mut events = Vec::with_capacity(picked.len());
        for (_, k, i) in picked {
            if let Some(versions) = self.keys.get(k.as_slice()) {
                events.extend(self.event_at(&k, versions, i)?);
            }
        }
        Ok(events)
    }

    /// The event that created `versions[i]` of `key`.
    fn event_at(
        &self,
        key: &[u8],
        versions: &[Version],
        i: usize,
    ) -> Result<Option<Event>, KvError> {
        let Some(v) = versions.get(i) else {
            return Ok(None);
        };
        // An event at the compaction point replaced a version the compaction dropped (gone from
        // the index, or about to be when its pass reaches the key).
        let prev = i
            .checked_sub(1)
            .filter(|_| v.main > self.compact_revision)
            .and_then(|p| versions.get(p))
            .filter(|p| p.is_live());
        let prev_kv = match prev {
            Some(p) => Some(self.kv_of(key, p)?),
            None => None,
        };
        Ok(Some(if v.is_live() {
            put_event(self.kv_of(key, v)?, prev_kv)
        } else {
            delete_event(key, v.main, prev_kv)
        }))
    }
}

/// Drops the versions of one key that compaction at `revision` makes unreadable; returns them.
pub(super) fn compact_versions(
    versions: &mut Vec<Version>,
    revision: i64,
) -> std::vec::Drain<'_, Version> {
    let drop = dropped_by_compaction(versions, revision);
    versions.drain(..drop)
}

/// How many of one key's versions (oldest first) compaction at `revision` makes unreadable.
fn dropped_by_compaction(versions: &[Version], revision: i64) -> usize {
    let at_or_below = versions.partition_point(|v| v.main <= revision);
    let Some(newest) = at_or_below.checked_sub(1).and_then(|i| versions.get(i)) else {
        return 0;
    };
    // Keep the newest version unless it is a tombstone nobody can see any more; a tombstone at
    // exactly `revision` stays so that a watch from `revision` still sees the delete.
    let keep_newest = newest.is_live() || newest.main == revision;
    if keep_newest {
        at_or_below - 1
    } else {
        at_or_below
    }
}
