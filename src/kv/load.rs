//! Loading the store from its engine at a restart: one pass over the `key` table in revision
//! order rebuilds the index (etcd rebuilds its `treeIndex` the same way); the values stay in the
//! file. Anything the file holds that a store could not have written is an error naming the file
//! and the row, never a guess.

use super::history::compact_versions;
use super::row::{decode_key_value, Row};
use super::snapshot::{check_row, check_sequence};
use super::{KeyIndex, KvError, KvStore, Values, Version};
use crate::engine::{Engine, EngineError, Revision};

impl KvStore {
    /// The store the engine's last commit holds: its index rebuilt, values left in the file.
    pub fn from_engine(engine: Engine) -> Result<Self, EngineError> {
        let view = engine.view()?;
        let damaged = |what: String| EngineError::Damaged {
            path: engine.path().to_path_buf(),
            what,
        };
        let current = view.current_revision()?;
        let compacted = view.compact_revision()?;
        if current > i64::MAX as u64 / 4 || compacted > current {
            let what = format!("revisions out of range: current {current}, compacted {compacted}");
            return Err(damaged(what));
        }
        // Every row checked alone in revision order, then sorted by key and revision and checked
        // against the key's previous version, and the index built from the sorted run in one go.
        // Far cheaper than inserting rows in revision order, which is random key order, into the
        // index one by one.
        let mut rows: Vec<(KeyPrefix, Vec<u8>, Version)> = Vec::new();
        // Sized once (the count is in the table's root): growing by doubling would copy the rows
        // and fault in fresh pages again and again. A damaged count only fails to reserve.
        let count = usize::try_from(view.revision_count()?).unwrap_or(usize::MAX);
        let _ = rows.try_reserve_exact(count);
        let mut failure = None;
        let mut newest = 0;
        view.revision_bytes_from(
            Revision { main: 0, sub: 0 },
            |revision, tombstone, bytes| {
                newest = revision.main;
                let checked = stored_row(revision, tombstone, bytes).and_then(|row| {
                    Ok((
                        row.key,
                        check_row(&row, current as i64).map_err(|e| e.to_string())?,
                    ))
                });
                match checked {
                    Ok((key, version)) => {
                        rows.push((KeyPrefix(0), key.to_vec(), version));
                        true
                    }
                    Err(why) => {
                        failure = Some(format!(
                            "revision {}.{}: {why}",
                            revision.main, revision.sub
                        ));
                        false
                    }
                }
            },
        )?;
        if let Some(why) = failure {
            return Err(damaged(why));
        }
        drop(view);
        sort_by_key_and_revision(&mut rows);
        let mut dropped = Vec::new();
        let keys = group_by_key(rows, compacted as i64, &mut dropped)
            .map_err(|e| damaged(e.to_string()))?;
        let live_keys = keys
            .values()
            .filter(|versions| versions.last().is_some_and(Version::is_live))
            .count();
        let mut values = Values::new(engine)?;
        // Revisions a compaction dropped that were not deleted from the file yet: deleted by
        // the next commits.
        for (main, sub) in dropped {
            values.forget(main, sub);
        }
        Ok(KvStore {
            keys,
            current_revision: current.max(newest).max(1) as i64,
            compact_revision: compacted as i64,
            live_keys,
            values,
            prev_values_in_events: true,
        })
    }
}

/// A key's first eight bytes as a big-endian number (zero-padded): comparing these first orders
/// most keys without a byte-wise comparison; equal prefixes fall back to the whole keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct KeyPrefix(u64);

impl KeyPrefix {
    fn of(key: &[u8]) -> Self {
        let mut bytes = [0; 8];
        let len = key.len().min(8);
        bytes[..len].copy_from_slice(&key[..len]);
        KeyPrefix(u64::from_be_bytes(bytes))
    }
}

/// Sorts rows by key, each key's by revision. Keys often share a long prefix (Kubernetes':
/// `/registry/`), which would make the first eight bytes equal for every key and every
/// comparison a whole-key one: the prefix compared first is taken after the bytes all keys share.
fn sort_by_key_and_revision(rows: &mut [(KeyPrefix, Vec<u8>, Version)]) {
    let shared = match rows.first() {
        Some((_, first, _)) => rows.iter().fold(first.len(), |shared, (_, key, _)| {
            let common = first
                .iter()
                .zip(key)
                .take(shared)
                .take_while(|(a, b)| a == b)
                .count();
            shared.min(common)
        }),
        None => 0,
    };
    for (prefix, key, _) in rows.iter_mut() {
        *prefix = KeyPrefix::of(key.get(shared..).unwrap_or_default());
    }
    rows.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.cmp(&b.1))
            .then_with(|| (a.2.main, a.2.sub).cmp(&(b.2.main, b.2.sub)))
    });
}

/// The index from rows sorted by key (each key's rows in revision order): each key's versions
/// compacted at `compacted` (the file may still hold revisions a compaction dropped, whose
/// deletes were spread over later commits; they go to `dropped`), then each kept version checked
/// against the key's previous one.
fn group_by_key(
    rows: Vec<(KeyPrefix, Vec<u8>, Version)>,
    compacted: i64,
    dropped: &mut Vec<(i64, i64)>,
) -> Result<KeyIndex, KvError> {
    let mut grouped: Vec<(Vec<u8>, Vec<Version>)> = Vec::new();
    for (_, key, version) in rows {
        match grouped.last_mut() {
            Some((last_key, versions)) if *last_key == key => versions.push(version),
            _ => grouped.push((key, vec![version])),
        }
    }
    for (key, versions) in &mut grouped {
        dropped.extend(compact_versions(versions, compacted).map(|v| (v.main, v.sub())));
        let mut previous = None;
        for version in versions.iter() {
            check_sequence(key, version, previous, compacted)?;
            previous = Some(version);
        }
    }
    grouped.retain(|(_, versions)| !versions.is_empty());
    // Sorted and unique: the map is built without comparing keys again.
    Ok(grouped
        .into_iter()
        .map(|(key, mut versions)| {
            versions.shrink_to_fit();
            (key.into_boxed_slice(), versions)
        })
        .collect())
}

/// One stored revision as a snapshot would list it, borrowed from the engine's row.
fn stored_row(revision: Revision, tombstone: bool, bytes: &[u8]) -> Result<Row<'_>, String> {
    let kv = decode_key_value(bytes).map_err(|e| format!("the key-value does not decode: {e}"))?;
    let (Ok(main), Ok(sub)) = (i64::try_from(revision.main), i64::try_from(revision.sub)) else {
        return Err("revision out of range".to_string());
    };
    if kv.mod_revision != main {
        return Err(format!("the key-value says revision {}", kv.mod_revision));
    }
    Ok(Row {
        key: kv.key,
        main,
        sub,
        tombstone,
        kv: Some(kv),
    })
}
