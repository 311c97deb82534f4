//! Converting the store to and from [`KvSnapshot`]: every retained version, in (key, main, sub)
//! order. Loading validates everything it is given and never panics on bad input.

use super::{KvError, KvStore, Version};
use crate::proto::mvccpb::KeyValue;
use crate::proto::stetpb::{KeyVersion, KvSnapshot};

/// Revisions beyond this are refused: the store must be able to keep counting up from them.
const MAX_REVISION: i64 = i64::MAX / 4;

impl KvStore {
    /// Every retained version, in (key, main, sub) order. Tombstones carry no key-value.
    pub fn to_snapshot(&self) -> KvSnapshot {
        let versions = self
            .keys
            .iter()
            .flat_map(|(key, versions)| {
                versions.iter().map(move |v| KeyVersion {
                    key: key.clone(),
                    main: v.main,
                    sub: v.sub,
                    tombstone: v.tombstone,
                    kv: v.is_live().then(|| v.to_kv(key)),
                })
            })
            .collect();
        KvSnapshot {
            current_revision: self.current_revision,
            compact_revision: self.compact_revision,
            versions,
        }
    }

    /// Rebuilds a store from a snapshot, refusing anything a store could not have produced.
    pub fn from_snapshot(s: &KvSnapshot) -> Result<Self, KvError> {
        let (current, compacted) = (s.current_revision, s.compact_revision);
        if !(1..=MAX_REVISION).contains(&current) {
            return Err(corrupt(format!("current revision {current} out of range")));
        }
        if !(0..=current).contains(&compacted) {
            return Err(corrupt(format!(
                "compact revision {compacted} outside 0..={current}"
            )));
        }
        let mut store = KvStore {
            current_revision: current,
            compact_revision: compacted,
            ..KvStore::new()
        };
        let mut group: Vec<Version> = Vec::new();
        let mut group_key: &[u8] = &[];
        for kv in &s.versions {
            if kv.key.as_slice() != group_key {
                if kv.key.as_slice() < group_key {
                    return Err(corrupt(format!(
                        "key {} out of order",
                        kv.key.escape_ascii()
                    )));
                }
                store.add_key(group_key, std::mem::take(&mut group));
                group_key = &kv.key;
            }
            let version = check_version(kv, group.last(), current, compacted)?;
            if store
                .revs
                .insert((kv.main, kv.sub), kv.key.clone())
                .is_some()
            {
                return Err(corrupt(format!(
                    "revision ({}, {}) used twice",
                    kv.main, kv.sub
                )));
            }
            group.push(version);
        }
        store.add_key(group_key, group);
        store.revs = store.revs.split_off(&(compacted, 0));
        Ok(store)
    }

    fn add_key(&mut self, key: &[u8], versions: Vec<Version>) {
        if versions.is_empty() {
            return;
        }
        if versions.last().is_some_and(Version::is_live) {
            self.live_keys += 1;
        }
        self.keys.insert(key.to_vec(), versions);
    }
}

fn corrupt(message: String) -> KvError {
    KvError::CorruptSnapshot(message)
}

/// Validates one version against the previous retained version of the same key.
fn check_version(
    kv: &KeyVersion,
    prev: Option<&Version>,
    current: i64,
    compacted: i64,
) -> Result<Version, KvError> {
    let at = || format!("key {} at ({}, {})", kv.key.escape_ascii(), kv.main, kv.sub);
    if kv.key.is_empty() {
        return Err(corrupt(format!("empty key at ({}, {})", kv.main, kv.sub)));
    }
    if !(1..=current).contains(&kv.main) || !(0..=MAX_REVISION).contains(&kv.sub) {
        return Err(corrupt(format!("{}: revision outside 1..={current}", at())));
    }
    if let Some(p) = prev {
        if p.main >= kv.main {
            return Err(corrupt(format!("{}: revisions not increasing", at())));
        }
        if kv.main <= compacted {
            return Err(corrupt(format!(
                "{}: two versions at or before compaction {compacted}",
                at()
            )));
        }
    }
    if kv.tombstone {
        check_tombstone(kv, prev, compacted).map_err(|why| corrupt(format!("{}: {why}", at())))
    } else {
        check_put(kv, prev, compacted).map_err(|why| corrupt(format!("{}: {why}", at())))
    }
}

fn check_tombstone(
    kv: &KeyVersion,
    prev: Option<&Version>,
    compacted: i64,
) -> Result<Version, &'static str> {
    let bare = KeyValue {
        key: kv.key.clone(),
        mod_revision: kv.main,
        ..KeyValue::default()
    };
    if kv.kv.as_ref().is_some_and(|k| *k != bare) {
        return Err("tombstone carries a value");
    }
    match prev {
        Some(p) if !p.is_live() => return Err("tombstone follows a tombstone"),
        None if kv.main != compacted => return Err("tombstone of a key that never existed"),
        _ => {}
    }
    Ok(Version {
        main: kv.main,
        sub: kv.sub,
        tombstone: true,
        create_revision: 0,
        version: 0,
        lease: 0,
        value: Vec::new(),
    })
}

fn check_put(
    kv: &KeyVersion,
    prev: Option<&Version>,
    compacted: i64,
) -> Result<Version, &'static str> {
    let Some(value) = kv.kv.as_ref() else {
        return Err("put without a key-value");
    };
    if value.key != kv.key || value.mod_revision != kv.main {
        return Err("key-value disagrees with its key or revision");
    }
    let (create, version) = (value.create_revision, value.version);
    if !(1..=kv.main).contains(&create) || !(1..=kv.main - create + 1).contains(&version) {
        return Err("create revision or version out of range");
    }
    let consistent = match prev {
        Some(p) if p.is_live() => create == p.create_revision && version == p.version + 1,
        Some(_) => create == kv.main && version == 1,
        // The first retained version: its predecessors may have been compacted away.
        None if kv.main <= compacted => (version == 1) == (create == kv.main),
        None => create == kv.main && version == 1,
    };
    if !consistent {
        return Err("create revision or version inconsistent with the previous version");
    }
    Ok(Version {
        main: kv.main,
        sub: kv.sub,
        tombstone: false,
        create_revision: create,
        version,
        lease: value.lease,
        value: value.value.clone(),
    })
}
