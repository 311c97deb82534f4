//! The store's history: compaction (dropping versions nobody can read any more), the event log
//! that watches catch up from, and `hash_kv`, the checksum members compare to detect divergence.

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

    /// crc32 over every retained version with main <= revision (0 = current), in (key, main,
    /// sub) order, each with its value's crc32 (the index holds it, so hashing reads no values).
    /// Tombstones at or before the compaction point are not part of the hash.
    /// Returns (hash, compact_revision).
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64), KvError> {
        if revision > self.current_revision {
            return Err(KvError::FutureRevision);
        }
        if revision > 0 && revision < self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        let upto = if revision > 0 {
            revision
        } else {
            self.current_revision
        };
        // The fields go through a buffer and reach the hasher in long runs, where its fast path
        // works; the crc of the concatenation is the same as field by field.
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = Vec::with_capacity(HASH_RUN_BYTES);
        for (key, versions) in &self.keys {
            for v in versions.iter().take_while(|v| v.main <= upto) {
                if v.is_tombstone() && v.main <= self.compact_revision {
                    continue;
                }
                hash_version(&mut buf, key, v);
                if buf.len() >= HASH_RUN_BYTES {
                    hasher.update(&buf);
                    buf.clear();
                }
            }
        }
        hasher.update(&buf);
        Ok((hasher.finalize(), self.compact_revision))
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

/// How many bytes of versions `hash_kv` gathers before handing them to the hasher.
const HASH_RUN_BYTES: usize = 4 * 1024;

/// Appends what `hash_kv` hashes of one version to `out`.
fn hash_version(out: &mut Vec<u8>, key: &[u8], v: &Version) {
    out.extend_from_slice(&(key.len() as u64).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&version_fields(v));
}

/// The bytes [`hash_version`] hashes after the key, in one array: one copy into the run instead
/// of one per field.
fn version_fields(v: &Version) -> [u8; VERSION_FIELDS_BYTES] {
    let mut fields = [0u8; VERSION_FIELDS_BYTES];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        fields[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&v.main.to_le_bytes());
    put(&v.sub().to_le_bytes());
    put(&[u8::from(v.is_tombstone())]);
    put(&v.create_revision.to_le_bytes());
    put(&v.main.to_le_bytes());
    put(&v.version.to_le_bytes());
    put(&v.value_crc.to_le_bytes());
    put(&v.lease.to_le_bytes());
    assert_eq!(at, VERSION_FIELDS_BYTES);
    fields
}

/// main, sub, the tombstone flag, create revision, mod revision, version, the value's crc, lease.
const VERSION_FIELDS_BYTES: usize = 8 + 8 + 1 + 8 + 8 + 8 + 4 + 8;
