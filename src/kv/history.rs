//! The store's history: compaction (dropping versions nobody can read any more), the event log
//! that watches catch up from.

use super::{delete_event, in_range, put_event, release_spare_versions, KvError, KvStore, Version};
use crate::proto::mvccpb::Event;

impl KvStore {
    /// Forgets history before `revision`: for each key, keeps the newest version with
    /// main <= revision (unless it is a tombstone older than `revision`) and everything newer.
    pub fn compact(&mut self, revision: i64) -> Result<(), KvError> {
        if revision <= self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        if revision > self.current_revision {
            return Err(KvError::FutureRevision);
        }
        let values = &mut self.values;
        self.keys.retain(|_, versions| {
            for dropped in compact_versions(versions, revision) {
                values.forget(dropped.main, dropped.sub());
            }
            release_spare_versions(versions);
            !versions.is_empty()
        });
        self.compact_revision = revision;
        Ok(())
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
        let prev = i
            .checked_sub(1)
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
    let at_or_below = versions.partition_point(|v| v.main <= revision);
    let Some(newest) = at_or_below.checked_sub(1).and_then(|i| versions.get(i)) else {
        return versions.drain(..0);
    };
    // Keep the newest version unless it is a tombstone nobody can see any more; a tombstone at
    // exactly `revision` stays so that a watch from `revision` still sees the delete.
    let keep_newest = newest.is_live() || newest.main == revision;
    let drop = if keep_newest {
        at_or_below - 1
    } else {
        at_or_below
    };
    versions.drain(..drop)
}
