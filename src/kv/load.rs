//! Loading the store from its engine at a restart: one pass over the `key` table in revision
//! order rebuilds the index (etcd rebuilds its `treeIndex` the same way); the values stay in the
//! file. Anything the file holds that a store could not have written is an error naming the file
//! and the row, never a guess.

use std::collections::BTreeMap;

use prost::Message as _;

use super::snapshot::check_version;
use super::{KvStore, Values, Version};
use crate::engine::{Engine, EngineError, Revision, Stored};
use crate::proto::mvccpb::KeyValue;
use crate::proto::stetpb::KeyVersion;

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
        let mut keys: BTreeMap<Vec<u8>, Vec<Version>> = BTreeMap::new();
        let mut revs = BTreeMap::new();
        let mut failure = None;
        let mut newest = 0;
        view.revisions_from(Revision { main: 0, sub: 0 }, |revision, stored| {
            newest = revision.main;
            let checked = key_version(revision, stored).and_then(|row| {
                let versions = keys.get(&row.key).map(Vec::as_slice).unwrap_or_default();
                // The rules a snapshot is checked by: what a store could have written.
                let version =
                    check_version(&row, versions.last(), current as i64, compacted as i64)
                        .map_err(|e| e.to_string())?;
                Ok((row.key, version))
            });
            match checked {
                Ok((key, version)) => {
                    if version.main >= compacted as i64 {
                        revs.insert((version.main, version.sub), key.clone());
                    }
                    keys.entry(key).or_default().push(version);
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
        })?;
        if let Some(why) = failure {
            return Err(damaged(why));
        }
        drop(view);
        let live_keys = keys
            .values()
            .filter(|versions| versions.last().is_some_and(Version::is_live))
            .count();
        Ok(KvStore {
            keys,
            revs,
            current_revision: current.max(newest).max(1) as i64,
            compact_revision: compacted as i64,
            live_keys,
            values: Values::new(engine)?,
        })
    }
}

/// One stored revision as a snapshot would list it.
fn key_version(revision: Revision, stored: Stored) -> Result<KeyVersion, String> {
    let kv = KeyValue::decode(stored.key_value.as_slice())
        .map_err(|e| format!("the key-value does not decode: {e}"))?;
    let (Ok(main), Ok(sub)) = (i64::try_from(revision.main), i64::try_from(revision.sub)) else {
        return Err("revision out of range".to_string());
    };
    if kv.mod_revision != main {
        return Err(format!("the key-value says revision {}", kv.mod_revision));
    }
    Ok(KeyVersion {
        key: kv.key.clone(),
        main,
        sub,
        tombstone: stored.tombstone,
        kv: Some(kv),
    })
}
