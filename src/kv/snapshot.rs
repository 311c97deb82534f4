//! Converting the store to and from [`KvSnapshot`]: every retained version, in (key, main, sub)
//! order. Loading validates everything it is given and never panics on bad input.

use std::collections::{BTreeMap, BTreeSet};

use super::row::{KeyValueRef, Row};
use super::{KvError, KvStore, Stretches, Version};
use crate::proto::mvccpb::KeyValue;
use crate::proto::stetpb::{KeyVersion, KvSnapshot};

/// Revisions beyond this are refused: the store must be able to keep counting up from them.
const MAX_REVISION: i64 = i64::MAX / 4;
/// Sub-revisions beyond this are refused: the index keeps them in 32 bits.
const MAX_SUB_REVISION: i64 = u32::MAX as i64;

impl KvStore {
    /// Every retained version, in (key, main, sub) order, values read from the engine.
    /// Tombstones carry no key-value.
    pub fn to_snapshot(&self) -> Result<KvSnapshot, KvError> {
        let mut versions = Vec::new();
        for (key, kept) in &self.keys {
            for v in self.retained(kept) {
                versions.push(KeyVersion {
                    key: key.to_vec(),
                    main: v.main,
                    sub: v.sub(),
                    tombstone: v.is_tombstone(),
                    kv: match v.is_live() {
                        true => Some(self.kv_of(key, v)?),
                        false => None,
                    },
                });
            }
        }
        Ok(KvSnapshot {
            current_revision: self.current_revision,
            compact_revision: self.compact_revision,
            versions,
        })
    }

    /// Rebuilds a store from a snapshot, refusing anything a store could not have produced; its
    /// values are kept in memory.
    pub fn from_snapshot(s: &KvSnapshot) -> Result<Self, KvError> {
        let mut store = KvStore::new();
        store.restore(s)?;
        Ok(store)
    }

    /// Replaces the whole store with a snapshot's, in the same engine; a snapshot that fails
    /// validation changes nothing.
    pub fn restore(&mut self, s: &KvSnapshot) -> Result<(), KvError> {
        let loaded = load(s)?;
        self.values.clear();
        self.keys = BTreeMap::new();
        self.live_keys = 0;
        self.current_revision = s.current_revision;
        self.compact_revision = s.compact_revision;
        self.compaction_pass = None;
        for (key, versions) in loaded {
            if versions.last().is_some_and(|(v, _)| v.is_live()) {
                self.live_keys += 1;
            }
            let mut index = Vec::with_capacity(versions.len());
            for (version, kv) in versions {
                self.values.record(version.sub(), kv);
                index.push(version);
            }
            self.keys.insert(key.into_boxed_slice(), index);
        }
        self.stretches = Stretches::build(&self.keys, self.compact_revision);
        Ok(())
    }
}

/// One key's versions, each with its key-value.
type KeyVersions = (Vec<u8>, Vec<(Version, KeyValue)>);

/// Each key's versions with their key-values, from a snapshot checked to be one a store could
/// have produced.
fn load(s: &KvSnapshot) -> Result<Vec<KeyVersions>, KvError> {
    let (current, compacted) = (s.current_revision, s.compact_revision);
    if !(1..=MAX_REVISION).contains(&current) {
        return Err(corrupt(format!("current revision {current} out of range")));
    }
    if !(0..=current).contains(&compacted) {
        return Err(corrupt(format!(
            "compact revision {compacted} outside 0..={current}"
        )));
    }
    let mut keys: Vec<KeyVersions> = Vec::new();
    let mut group: Vec<(Version, KeyValue)> = Vec::new();
    let mut group_key: &[u8] = &[];
    let mut revisions = BTreeSet::new();
    for kv in &s.versions {
        if kv.key.as_slice() != group_key {
            if kv.key.as_slice() < group_key {
                return Err(corrupt(format!(
                    "key {} out of order",
                    kv.key.escape_ascii()
                )));
            }
            if !group.is_empty() {
                keys.push((group_key.to_vec(), std::mem::take(&mut group)));
            }
            group_key = &kv.key;
        }
        let row = Row::from(kv);
        let version = check_version(&row, group.last().map(|(v, _)| v), current, compacted)?;
        if !revisions.insert((kv.main, kv.sub)) {
            return Err(corrupt(format!(
                "revision ({}, {}) used twice",
                kv.main, kv.sub
            )));
        }
        let value = kv.kv.as_ref().map(|k| k.value.clone()).unwrap_or_default();
        let stored = version.to_kv(&kv.key, value);
        group.push((version, stored));
    }
    if !group.is_empty() {
        keys.push((group_key.to_vec(), group));
    }
    Ok(keys)
}

fn corrupt(message: String) -> KvError {
    KvError::CorruptSnapshot(message)
}

/// Validates one version against the previous retained version of the same key.
pub(super) fn check_version(
    kv: &Row<'_>,
    prev: Option<&Version>,
    current: i64,
    compacted: i64,
) -> Result<Version, KvError> {
    let version = check_row(kv, current)?;
    check_sequence(kv.key, &version, prev, compacted)?;
    Ok(version)
}

/// The checks one version needs alone: a key, a revision in range, a tombstone bare, a put's
/// create revision and version in range. Gives the version as the index holds it.
pub(super) fn check_row(kv: &Row<'_>, current: i64) -> Result<Version, KvError> {
    let at = || format!("key {} at ({}, {})", kv.key.escape_ascii(), kv.main, kv.sub);
    if kv.key.is_empty() {
        return Err(corrupt(format!("empty key at ({}, {})", kv.main, kv.sub)));
    }
    if !(1..=current).contains(&kv.main) || !(0..=MAX_SUB_REVISION).contains(&kv.sub) {
        return Err(corrupt(format!(
            "{}: revision outside 1..={current} or sub-revision outside 0..={MAX_SUB_REVISION}",
            at()
        )));
    }
    let checked = if kv.tombstone {
        check_tombstone(kv)
    } else {
        check_put(kv)
    };
    checked.map_err(|why| corrupt(format!("{}: {why}", at())))
}

/// The checks of a version against the previous retained version of its key: revisions
/// increase, at most one version at or before the compaction, a tombstone deletes a live key,
/// a put continues the key's life or starts a new one.
pub(super) fn check_sequence(
    key: &[u8],
    v: &Version,
    prev: Option<&Version>,
    compacted: i64,
) -> Result<(), KvError> {
    let why = match prev {
        Some(p) if p.main >= v.main => "revisions not increasing",
        Some(_) if v.main <= compacted => "two versions at or before the compaction",
        Some(p) if v.is_tombstone() && !p.is_live() => "tombstone follows a tombstone",
        None if v.is_tombstone() && v.main != compacted => "tombstone of a key that never existed",
        _ if v.is_tombstone() => return Ok(()),
        Some(p)
            if p.is_live()
                && (v.create_revision, v.version) == (p.create_revision, p.version + 1) =>
        {
            return Ok(())
        }
        Some(p) if !p.is_live() && v.create_revision == v.main && v.version == 1 => return Ok(()),
        // The first retained version: its predecessors may have been compacted away.
        None if v.main <= compacted && (v.version == 1) == (v.create_revision == v.main) => {
            return Ok(())
        }
        None if v.create_revision == v.main && v.version == 1 => return Ok(()),
        _ => "create revision or version inconsistent with the previous version",
    };
    Err(corrupt(format!(
        "key {} at ({}, {}): {why} (compaction at {compacted})",
        key.escape_ascii(),
        v.main,
        v.sub()
    )))
}

fn check_tombstone(kv: &Row<'_>) -> Result<Version, &'static str> {
    let bare = KeyValueRef {
        key: kv.key,
        mod_revision: kv.main,
        ..KeyValueRef::default()
    };
    if kv.kv.is_some_and(|k| k != bare) {
        return Err("tombstone carries a value");
    }
    Ok(Version::tombstone(kv.main, kv.sub))
}

fn check_put(kv: &Row<'_>) -> Result<Version, &'static str> {
    let Some(value) = kv.kv else {
        return Err("put without a key-value");
    };
    if value.key != kv.key || value.mod_revision != kv.main {
        return Err("key-value disagrees with its key or revision");
    }
    let (create, version) = (value.create_revision, value.version);
    if !(1..=kv.main).contains(&create) || !(1..=kv.main - create + 1).contains(&version) {
        return Err("create revision or version out of range");
    }
    Ok(Version::put(
        kv.main,
        kv.sub,
        create,
        version,
        value.lease,
        crc32fast::hash(value.value),
    ))
}
