//! `hash_kv`, the checksum of the key-value history members compare to detect divergence, and
//! its stepped form: a hash of a large history taken a bounded number of index entries at a
//! time, so the driver applies, commits and answers other requests between two steps instead of
//! stalling for a time that grows with the database.
//!
//! A hash up to revision R reads only versions with main <= R. Between two steps the store may
//! apply more entries: they only add versions above R, so the versions a step reads are the ones
//! the first step saw, unless a compaction dropped some. A step that finds the compaction moved
//! starts the hash over (or refuses, if R itself is now compacted).

use std::ops::Bound;

use super::{KvError, KvStore, Version};

/// Where a stepped hash stands between two steps. Opaque to callers: they hand back what the
/// last step returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashProgress {
    /// The revision hashed up to (a request for revision 0 fixes it at the first step).
    upto: i64,
    /// The store's revision when the hash began: what etcd's answer names as its revision.
    began_at: i64,
    /// The compaction the hash so far was taken under.
    compact_revision: i64,
    /// The last key hashed, if any: the next step starts after it.
    after: Option<Box<[u8]>>,
    /// The crc32 of everything hashed so far.
    crc: u32,
}

/// What one step of a hash gives: the hash, the compaction it was taken under and the store's
/// revision when it began (etcd answers a hash with the revision current as it hashed), or
/// where to go on from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashStep {
    Done {
        hash: u32,
        compact_revision: i64,
        began_at: i64,
    },
    More(HashProgress),
}

impl KvStore {
    /// crc32 over every retained version with main <= revision (0 = current), in (key, main,
    /// sub) order, each with its value's crc32 (the index holds it, so hashing reads no values).
    /// Tombstones at or before the compaction point are not part of the hash.
    /// Returns (hash, compact_revision). In one go: the runtime hashes in steps
    /// ([`KvStore::hash_kv_step`]).
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64), KvError> {
        match self.hash_kv_step(revision, None, usize::MAX)? {
            HashStep::Done {
                hash,
                compact_revision,
                ..
            } => Ok((hash, compact_revision)),
            HashStep::More(progress) => unreachable!("an unbounded step stopped at {progress:?}"),
        }
    }

    /// One step of [`KvStore::hash_kv`]: from `progress` (`None` to begin), whole keys until at
    /// least `budget` index entries (keys and their versions) were read. The steps of one hash
    /// give the hash `hash_kv` gives at the first step, whatever the store applied in between.
    pub fn hash_kv_step(
        &self,
        revision: i64,
        progress: Option<HashProgress>,
        budget: usize,
    ) -> Result<HashStep, KvError> {
        assert!(budget > 0, "a hash step must make progress");
        let progress = match progress {
            Some(progress)
                if progress.compact_revision == self.compact_revision
                    && progress.upto <= self.current_revision =>
            {
                progress
            }
            // Compacted since the hash began: what it read may be gone; begin again at the
            // revision it fixed (refused if that is compacted now).
            Some(progress) => self.begin_hash(progress.upto)?,
            None => self.begin_hash(revision)?,
        };
        let start = match &progress.after {
            Some(after) => Bound::Excluded(after.as_ref()),
            None => Bound::Unbounded,
        };
        let mut keys = self
            .keys
            .range::<[u8], _>((start, Bound::Unbounded))
            .peekable();
        let mut hasher = crc32fast::Hasher::new_with_initial(progress.crc);
        let mut run = Vec::with_capacity(HASH_RUN_BYTES);
        let mut read = 0usize;
        let mut stopped_after = None;
        while let Some((key, versions)) = keys.next() {
            read += 1;
            let retained = self.retained(versions);
            for v in retained.iter().take_while(|v| v.main <= progress.upto) {
                read += 1;
                if v.is_tombstone() && v.main <= self.compact_revision {
                    continue;
                }
                hash_version(&mut run, key, v);
                if run.len() >= HASH_RUN_BYTES {
                    hasher.update(&run);
                    run.clear();
                }
            }
            if read >= budget && keys.peek().is_some() {
                stopped_after = Some(key.clone());
                break;
            }
        }
        hasher.update(&run);
        let crc = hasher.finalize();
        Ok(match stopped_after {
            Some(after) => HashStep::More(HashProgress {
                upto: progress.upto,
                began_at: progress.began_at,
                compact_revision: self.compact_revision,
                after: Some(after),
                crc,
            }),
            None => HashStep::Done {
                hash: crc,
                compact_revision: self.compact_revision,
                began_at: progress.began_at,
            },
        })
    }

    /// The start of a hash up to `revision` (0 = current), or why there is none.
    fn begin_hash(&self, revision: i64) -> Result<HashProgress, KvError> {
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
        Ok(HashProgress {
            upto,
            began_at: self.current_revision,
            compact_revision: self.compact_revision,
            after: None,
            crc: 0,
        })
    }
}

/// How many bytes of versions `hash_kv` gathers before handing them to the hasher: the fields
/// reach it in long runs, where its fast path works (the crc of the concatenation is the same as
/// field by field).
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
