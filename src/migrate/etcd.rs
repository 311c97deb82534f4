//! Migration from etcd: the state in an etcd v3 backup (`etcdctl snapshot save` against etcd
//! 3.x: etcd's bbolt database file, then the SHA-256 of it) written into a stet engine, so an
//! operator moves to stet with the backups they already take.
//!
//! What carries over: every stored revision of the `key` bucket (keys, values, create and mod
//! revisions, versions, leases of each version; deletions as tombstones), the compaction
//! revision and the current revision from the `meta` bucket, and the leases of the `lease`
//! bucket with their granted TTLs (their remaining time starts over, as etcd's own restore
//! does). What does not: the membership and cluster ID (a restore starts a new cluster), raised
//! alarms, and users and roles — [`Imported::left_behind`] names what the file held of these.
//!
//! etcd's rows: a `key` bucket row's key is the revision, `main: u64 BE | '_' | sub: u64 BE`,
//! with a trailing `t` for a deletion; its value is the `mvccpb.KeyValue` (only the key for a
//! deletion). A `lease` row is `id: u64 BE` → `leasepb.Lease { ID = 1, TTL = 2 }`. The `meta`
//! bucket's `scheduledCompactRev` and `finishedCompactRev` are revisions in the same 17 bytes.

use prost::Message;
use sha2::{Digest, Sha256};

use super::bbolt::{Bolt, BoltError, Bucket};
use crate::auth::AuthStore;
use crate::engine::{Batch, Engine, EngineError, Revision, Stored};
use crate::proto::mvccpb::KeyValue;
use crate::proto::stetpb::AuthState;
use crate::proto::stetpb::LeaseRecord;

/// The length of etcd's SHA-256 trailer.
const HASH_BYTES: usize = 32;
/// The revision rows are written to the engine in batches of about this size.
const BATCH_BYTES: usize = 4 << 20;
/// A revision key: `main | '_' | sub`, and a tombstone's trailing mark.
const REVISION_KEY_BYTES: usize = 17;
const TOMBSTONE_MARK: u8 = b't';

/// Why an etcd backup cannot be migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Bolt(#[from] BoltError),
    #[error("the backup has no SHA-256 trailer (its length is not 512*n + 32); pass --skip-hash-check to restore it anyway")]
    NoHash,
    #[error("the backup's SHA-256 does not match its contents: it is damaged")]
    HashMismatch,
    #[error("the etcd backup holds no {0:?} bucket: not an etcd v3 database")]
    NoBucket(&'static str),
    #[error("etcd row {row}: {what}")]
    BadRow { row: String, what: String },
    #[error("{0}")]
    Engine(#[from] EngineError),
}

/// What a migration carried over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// The store's newest revision.
    pub current_revision: u64,
    /// The revision the store was compacted at (0: never).
    pub compact_revision: u64,
    /// Revisions carried over (every version of every key, deletions included).
    pub revisions: u64,
    pub leases: u64,
    /// What the backup held that stet does not carry over, in words.
    pub left_behind: Vec<String>,
    /// What it held beside keys and leases that was carried over (users and roles), in words.
    pub carried: Vec<String>,
}

/// Whether `bytes` look like a bbolt file (with or without etcd's trailer): its first meta page's
/// magic number. Says nothing about whether the rest is sound.
pub fn looks_like_etcd_backup(bytes: &[u8]) -> bool {
    bytes.get(16..20) == Some(&0xED0C_DAEDu32.to_le_bytes()[..])
}

/// The database file inside an etcd backup: etcd's rule is that a length of `512*n + 32` means a
/// SHA-256 trailer, checked unless `skip_hash_check`; without one, only `skip_hash_check` lets
/// the file through (it may be a member's `db` file copied by hand).
pub fn database(bytes: &[u8], skip_hash_check: bool) -> Result<&[u8], MigrateError> {
    let has_hash = bytes.len() % 512 == HASH_BYTES;
    if !has_hash {
        return match skip_hash_check {
            true => Ok(bytes),
            false => Err(MigrateError::NoHash),
        };
    }
    let (database, hash) = bytes.split_at(bytes.len() - HASH_BYTES);
    if !skip_hash_check && Sha256::digest(database).as_slice() != hash {
        return Err(MigrateError::HashMismatch);
    }
    Ok(database)
}

/// Writes the state of etcd's database file `database` into `engine` (which should be new:
/// whatever it held is replaced). `progress` is called with the number of revisions written so
/// far after each batch. The engine's applied index is left as it was: the caller makes the
/// state the start of a new cluster.
pub fn import(
    database: &[u8],
    engine: &mut Engine,
    mut progress: impl FnMut(u64),
) -> Result<Imported, MigrateError> {
    let bolt = Bolt::open(database)?;
    let key = bolt.bucket(b"key")?.ok_or(MigrateError::NoBucket("key"))?;
    let compact_revision = compact_revision(&bolt)?;
    let mut imported = Imported {
        compact_revision,
        ..Imported::default()
    };
    let mut batch = Batch::new();
    batch.replace_all();
    let mut newest = 0;
    // The batch's size, kept here: `Batch::bytes` walks every op, once per row would be quadratic.
    let mut batch_bytes = 0;
    let mut failure = None;
    key.for_each(|row_key, value| {
        let row = match revision_row(row_key, value) {
            Ok(row) => row,
            Err(what) => {
                failure = Some(bad_row(row_key, what));
                return false;
            }
        };
        newest = newest.max(row.0.main);
        batch_bytes += row.1.key_value.len();
        batch.put_revision(row.0, row.1);
        imported.revisions += 1;
        if batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            let full = std::mem::take(&mut batch);
            if let Err(error) = engine.commit(full, false) {
                failure = Some(error.into());
                return false;
            }
            progress(imported.revisions);
        }
        true
    })?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    imported.leases = leases(&bolt, &mut batch)?;
    let (auth, auth_note) = auth_state(&bolt)?;
    let auth_carried = auth.is_some();
    if let Some(auth) = auth {
        batch.set_auth(auth.encode_to_vec());
    }
    imported.current_revision = newest.max(compact_revision);
    batch.set_compact_revision(compact_revision);
    batch.set_current_revision(imported.current_revision);
    engine.commit(batch, true)?;
    progress(imported.revisions);
    imported.left_behind = left_behind(&bolt)?;
    match auth_note {
        Some(note) if auth_carried => imported.carried.push(note),
        Some(note) => imported.left_behind.insert(0, note),
        None => {}
    }
    Ok(imported)
}

fn bad_row(row_key: &[u8], what: String) -> MigrateError {
    MigrateError::BadRow {
        row: row_key.escape_ascii().to_string(),
        what,
    }
}

/// One `key` bucket row as a stet revision row.
fn revision_row(row_key: &[u8], value: &[u8]) -> Result<(Revision, Stored), String> {
    let (revision, tombstone) = parse_revision(row_key)?;
    let kv = KeyValue::decode(value).map_err(|e| format!("the key-value does not decode: {e}"))?;
    if kv.key.is_empty() {
        return Err("the key-value has no key".to_string());
    }
    let main = i64::try_from(revision.main).map_err(|_| "revision out of range".to_string())?;
    let kv = if tombstone {
        // etcd stores only the key of a deletion; stet stores its revision too.
        KeyValue {
            key: kv.key,
            mod_revision: main,
            ..KeyValue::default()
        }
    } else {
        if kv.mod_revision != main {
            return Err(format!("the key-value says revision {}", kv.mod_revision));
        }
        kv
    };
    Ok((
        revision,
        Stored {
            tombstone,
            key_value: kv.encode_to_vec(),
        },
    ))
}

/// A revision in etcd's row form, and whether it carries the deletion mark.
fn parse_revision(bytes: &[u8]) -> Result<(Revision, bool), String> {
    let tombstone = match bytes.len() {
        REVISION_KEY_BYTES => false,
        len if len == REVISION_KEY_BYTES + 1 && bytes[REVISION_KEY_BYTES] == TOMBSTONE_MARK => true,
        _ => return Err("not a revision".to_string()),
    };
    if bytes[8] != b'_' {
        return Err("not a revision".to_string());
    }
    let mut main = [0; 8];
    main.copy_from_slice(&bytes[..8]);
    let mut sub = [0; 8];
    sub.copy_from_slice(&bytes[9..17]);
    let revision = Revision {
        main: u64::from_be_bytes(main),
        sub: u64::from_be_bytes(sub),
    };
    if revision.main == 0 || revision.main > i64::MAX as u64 || revision.sub > i64::MAX as u64 {
        return Err("revision out of range".to_string());
    }
    Ok((revision, tombstone))
}

/// The revision etcd compacted at, or was compacting at when the backup was taken (etcd deletes
/// in steps after recording the scheduled revision; stet's load finishes the job).
fn compact_revision(bolt: &Bolt<'_>) -> Result<u64, MigrateError> {
    let Some(meta) = bolt.bucket(b"meta")? else {
        return Ok(0);
    };
    let mut revision = 0;
    let mut failure = None;
    meta.for_each(|name, value| {
        if name == b"scheduledCompactRev" || name == b"finishedCompactRev" {
            match parse_revision(value) {
                Ok((at, false)) => revision = revision.max(at.main),
                Ok((_, true)) | Err(_) => {
                    failure = Some(bad_row(name, "not a revision".to_string()));
                    return false;
                }
            }
        }
        true
    })?;
    failure.map_or(Ok(revision), Err)
}

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, Message)]
struct EtcdLease {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
}

/// Adds the leases of the `lease` bucket to `batch`; how many.
fn leases(bolt: &Bolt<'_>, batch: &mut Batch) -> Result<u64, MigrateError> {
    let Some(bucket) = bolt.bucket(b"lease")? else {
        return Ok(0);
    };
    let mut count = 0;
    let mut failure = None;
    bucket.for_each(|row_key, value| {
        let lease = lease_row(row_key, value);
        match lease {
            Ok(lease) => {
                batch.put_lease(lease.id, lease.encode_to_vec());
                count += 1;
                true
            }
            Err(what) => {
                failure = Some(bad_row(row_key, what));
                false
            }
        }
    })?;
    failure.map_or(Ok(count), Err)
}

fn lease_row(row_key: &[u8], value: &[u8]) -> Result<LeaseRecord, String> {
    let id: [u8; 8] = row_key
        .try_into()
        .map_err(|_| "a lease ID is 8 bytes".to_string())?;
    let id = i64::from_be_bytes(id);
    let lease = EtcdLease::decode(value).map_err(|e| format!("the lease does not decode: {e}"))?;
    if lease.id != id || id <= 0 {
        return Err(format!("the row holds lease {:x}", lease.id));
    }
    if lease.ttl <= 0 {
        return Err(format!("lease {id:x} has TTL {}", lease.ttl));
    }
    Ok(LeaseRecord {
        id,
        ttl_seconds: lease.ttl,
        keys: Vec::new(),
    })
}

/// etcd's auth store (the `auth`, `authUsers` and `authRoles` buckets: `authEnabled` one byte,
/// `authRevision` a big-endian u64, users and roles as `authpb` messages, the users' bcrypt
/// hashes as etcd made them), if it holds users or roles, with a sentence on what was carried
/// over; a store stet's rules refuse (e.g. a permission on no key, which etcd 3.4 stored) is left
/// behind with the reason.
fn auth_state(bolt: &Bolt<'_>) -> Result<(Option<AuthState>, Option<String>), MigrateError> {
    let mut state = AuthState {
        users: decode_rows(bolt, b"authUsers", "user")?,
        roles: decode_rows(bolt, b"authRoles", "role")?,
        ..AuthState::default()
    };
    if state.users.is_empty() && state.roles.is_empty() {
        return Ok((None, None));
    }
    if let Some(bucket) = bolt.bucket(b"auth")? {
        bucket.for_each(|name, value| {
            match name {
                b"authEnabled" => state.enabled = value == [1],
                b"authRevision" => {
                    if let Ok(bytes) = <[u8; 8]>::try_from(value) {
                        state.revision = u64::from_be_bytes(bytes);
                    }
                }
                _ => {}
            }
            true
        })?;
    }
    state.revision = state.revision.max(1);
    let (users, roles) = (state.users.len(), state.roles.len());
    Ok(match AuthStore::from_proto(&state) {
        Ok(_) => {
            let enabled = if state.enabled {
                ", authentication enabled"
            } else {
                ""
            };
            let note = format!("{users} users and {roles} roles with their permissions{enabled}");
            (Some(state), Some(note))
        }
        Err(why) => {
            let note =
                format!("{users} users and {roles} roles left behind ({why}): add them again");
            (None, Some(note))
        }
    })
}

/// Every row of the bucket `name` (none if it does not exist) decoded as `M`; a row that does not
/// decode is an error naming it (`what` it should hold).
fn decode_rows<M: Message + Default>(
    bolt: &Bolt<'_>,
    name: &[u8],
    what: &str,
) -> Result<Vec<M>, MigrateError> {
    let mut rows = Vec::new();
    let mut failure = None;
    if let Some(bucket) = bolt.bucket(name)? {
        bucket.for_each(|key, value| match M::decode(value) {
            Ok(row) => {
                rows.push(row);
                true
            }
            Err(error) => {
                failure = Some(bad_row(key, format!("the {what} does not decode: {error}")));
                false
            }
        })?;
    }
    failure.map_or(Ok(rows), Err)
}

/// The parts of etcd's state a restore does not carry over that this backup holds, in words.
fn left_behind(bolt: &Bolt<'_>) -> Result<Vec<String>, MigrateError> {
    let mut notes = Vec::new();
    let count = |bucket: Option<Bucket<'_>>| -> Result<u64, BoltError> {
        let mut rows = 0;
        if let Some(bucket) = bucket {
            bucket.for_each(|_, _| {
                rows += 1;
                true
            })?;
        }
        Ok(rows)
    };
    let alarms = count(bolt.bucket(b"alarm")?)?;
    if alarms > 0 {
        notes.push(format!("{alarms} raised alarms: cleared by the restore"));
    }
    Ok(notes)
}
