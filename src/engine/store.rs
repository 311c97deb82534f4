//! [`Engine`]: the applied state's tables in one redb file, in etcd's layout — every revision of
//! every key (`key`: (main, sub) revision → a tag and the `KeyValue` bytes), leases, members, and
//! `meta`, which holds the applied (consistent) index and term written in the same transaction as
//! the data they cover, so replaying the WAL after a crash starts exactly where the file ends.
//!
//! Writes come in a [`Batch`] of operations, committed at once; a batch commits durably (fsync) or
//! not (the data is in the file, and a later durable commit or a clean close makes it durable;
//! a crash before that loses it, which is fine while the WAL still holds its entries). Reads go
//! through a [`View`]: one consistent state, held while writes go on.

use std::path::{Path, PathBuf};

use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::disk::Disk;

use super::file::{open, EngineError};

/// Revisions: (main, sub) → tag byte (`PUT` or `TOMBSTONE`) and the encoded `KeyValue`.
const KEY: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("key");
/// Leases by ID → their encoded record.
const LEASE: TableDefinition<i64, &[u8]> = TableDefinition::new("lease");
/// Members by ID → their encoded record; removed member IDs → nothing.
const MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("members");
const MEMBERS_REMOVED: TableDefinition<u64, ()> = TableDefinition::new("members_removed");
/// Named numbers: the applied index and term, compaction points.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const APPLIED_INDEX: &str = "consistent_index";
const APPLIED_TERM: &str = "term";
const COMPACT_REVISION: &str = "compact_revision";

/// The tag before a revision's bytes.
const PUT: u8 = 0;
const TOMBSTONE: u8 = 1;

/// A key's revision: the main revision of the request that wrote it and its place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Revision {
    pub main: u64,
    pub sub: u64,
}

/// The raft entry whose effects the file holds last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
}

/// One revision as stored: a put's or a delete's `KeyValue` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub tombstone: bool,
    pub key_value: Vec<u8>,
}

/// A change to the applied state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    PutRevision(Revision, Stored),
    DeleteRevision(Revision),
    PutLease(i64, Vec<u8>),
    DeleteLease(i64),
    PutMember(u64, Vec<u8>),
    RemoveMember(u64),
    CompactRevision(u64),
}

/// Changes to write together, ending at the entry `applied` names.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
    applied: Option<Applied>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many changes the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.applied.is_none()
    }

    pub fn put_revision(&mut self, revision: Revision, stored: Stored) {
        self.ops.push(Op::PutRevision(revision, stored));
    }

    /// Drops a revision compaction made unreadable.
    pub fn delete_revision(&mut self, revision: Revision) {
        self.ops.push(Op::DeleteRevision(revision));
    }

    pub fn put_lease(&mut self, id: i64, record: Vec<u8>) {
        self.ops.push(Op::PutLease(id, record));
    }

    pub fn delete_lease(&mut self, id: i64) {
        self.ops.push(Op::DeleteLease(id));
    }

    pub fn put_member(&mut self, id: u64, record: Vec<u8>) {
        self.ops.push(Op::PutMember(id, record));
    }

    /// Removes a member for good: its ID may never come back.
    pub fn remove_member(&mut self, id: u64) {
        self.ops.push(Op::RemoveMember(id));
    }

    pub fn set_compact_revision(&mut self, revision: u64) {
        self.ops.push(Op::CompactRevision(revision));
    }

    /// The entry the batch's changes end at. It only grows from batch to batch.
    pub fn set_applied(&mut self, applied: Applied) {
        if let Some(before) = self.applied {
            assert!(applied.index >= before.index, "applied index went back");
        }
        self.applied = Some(applied);
    }
}

/// The applied state's file.
pub struct Engine {
    db: redb::Database,
    path: PathBuf,
    applied: Applied,
}

impl Engine {
    /// Opens (or creates) the engine file at `path`; see [`open`].
    pub fn open<D: Disk + Send + 'static>(
        disk: &dyn Fn() -> D,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<Engine, EngineError> {
        let db = open(disk, path, cache_bytes)?;
        let mut engine = Engine {
            db,
            path: path.to_path_buf(),
            applied: Applied::default(),
        };
        engine.applied = engine.view()?.applied()?;
        Ok(engine)
    }

    /// The entry whose effects the file holds last (zero for a new file).
    pub fn applied(&self) -> Applied {
        self.applied
    }

    fn error(&self, source: impl Into<redb::Error>) -> EngineError {
        EngineError::Engine {
            path: self.path.clone(),
            source: Box::new(source.into()),
        }
    }

    /// Writes `batch` in one transaction, fsynced if `durable`.
    pub fn commit(&mut self, batch: Batch, durable: bool) -> Result<(), EngineError> {
        if let Some(applied) = batch.applied {
            assert!(
                applied.index >= self.applied.index,
                "a batch must not go back before the applied index"
            );
        }
        // One writer: the engine's owner. A second live write transaction would block.
        let mut write = self.db.try_begin_write().map_err(|e| self.error(e))?;
        if durable {
            // Restarting after a crash then reads the allocator state instead of the whole file.
            write.set_quick_repair(true);
        } else {
            write
                .set_durability(Durability::None)
                .map_err(|e| self.error(e))?;
        }
        write_ops(&write, &batch).map_err(|e| self.error(e))?;
        write.commit().map_err(|e| self.error(e))?;
        if let Some(applied) = batch.applied {
            self.applied = applied;
        }
        Ok(())
    }

    /// A consistent view of the state as of the last commit.
    pub fn view(&self) -> Result<View, EngineError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        Ok(View {
            read,
            path: self.path.clone(),
        })
    }
}

/// Applies every change of `batch` inside `write`.
fn write_ops(write: &redb::WriteTransaction, batch: &Batch) -> Result<(), redb::Error> {
    let mut key = write.open_table(KEY)?;
    let mut lease = write.open_table(LEASE)?;
    let mut members = write.open_table(MEMBERS)?;
    let mut removed = write.open_table(MEMBERS_REMOVED)?;
    let mut meta = write.open_table(META)?;
    let mut value = Vec::new();
    for op in &batch.ops {
        match op {
            Op::PutRevision(revision, stored) => {
                value.clear();
                value.push(if stored.tombstone { TOMBSTONE } else { PUT });
                value.extend_from_slice(&stored.key_value);
                key.insert((revision.main, revision.sub), value.as_slice())?;
            }
            Op::DeleteRevision(revision) => {
                key.remove((revision.main, revision.sub))?;
            }
            Op::PutLease(id, record) => {
                lease.insert(id, record.as_slice())?;
            }
            Op::DeleteLease(id) => {
                lease.remove(id)?;
            }
            Op::PutMember(id, record) => {
                members.insert(id, record.as_slice())?;
            }
            Op::RemoveMember(id) => {
                members.remove(id)?;
                removed.insert(id, ())?;
            }
            Op::CompactRevision(revision) => {
                meta.insert(COMPACT_REVISION, revision)?;
            }
        }
    }
    if let Some(applied) = batch.applied {
        meta.insert(APPLIED_INDEX, applied.index)?;
        meta.insert(APPLIED_TERM, applied.term)?;
    }
    Ok(())
}

/// One consistent state of the file, readable while writes go on.
pub struct View {
    read: redb::ReadTransaction,
    path: PathBuf,
}

impl View {
    fn error(&self, source: impl Into<redb::Error>) -> EngineError {
        EngineError::Engine {
            path: self.path.clone(),
            source: Box::new(source.into()),
        }
    }

    /// A table, or `None` if nothing was ever written to it.
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        definition: TableDefinition<K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, EngineError> {
        match self.read.open_table(definition) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(self.error(error)),
        }
    }

    fn meta(&self, name: &str) -> Result<u64, EngineError> {
        let Some(meta) = self.table(META)? else {
            return Ok(0);
        };
        let value = meta.get(name).map_err(|e| self.error(e))?;
        Ok(value.map_or(0, |v| v.value()))
    }

    /// The entry whose effects this state holds last.
    pub fn applied(&self) -> Result<Applied, EngineError> {
        Ok(Applied {
            index: self.meta(APPLIED_INDEX)?,
            term: self.meta(APPLIED_TERM)?,
        })
    }

    pub fn compact_revision(&self) -> Result<u64, EngineError> {
        self.meta(COMPACT_REVISION)
    }

    /// One revision, if stored.
    pub fn revision(&self, revision: Revision) -> Result<Option<Stored>, EngineError> {
        let Some(table) = self.table(KEY)? else {
            return Ok(None);
        };
        let value = table
            .get((revision.main, revision.sub))
            .map_err(|e| self.error(e))?;
        match value {
            None => Ok(None),
            Some(bytes) => self.stored(revision, bytes.value()).map(Some),
        }
    }

    /// Every stored revision from `from` on, in order, handed to `each` until it returns false.
    pub fn revisions_from(
        &self,
        from: Revision,
        mut each: impl FnMut(Revision, Stored) -> bool,
    ) -> Result<(), EngineError> {
        let Some(table) = self.table(KEY)? else {
            return Ok(());
        };
        let rows = table
            .range((from.main, from.sub)..)
            .map_err(|e| self.error(e))?;
        for row in rows {
            let (key, value) = row.map_err(|e| self.error(e))?;
            let (main, sub) = key.value();
            let revision = Revision { main, sub };
            if !each(revision, self.stored(revision, value.value())?) {
                break;
            }
        }
        Ok(())
    }

    /// A stored revision's bytes, checked for a known tag.
    fn stored(&self, revision: Revision, bytes: &[u8]) -> Result<Stored, EngineError> {
        let tombstone = match bytes.first() {
            Some(&PUT) => false,
            Some(&TOMBSTONE) => true,
            _ => {
                return Err(EngineError::Damaged {
                    path: self.path.clone(),
                    what: format!(
                        "revision {}.{} has no valid tag ({} bytes)",
                        revision.main,
                        revision.sub,
                        bytes.len()
                    ),
                })
            }
        };
        Ok(Stored {
            tombstone,
            key_value: bytes[1..].to_vec(),
        })
    }

    /// Every lease record, by ID.
    pub fn leases(&self) -> Result<Vec<(i64, Vec<u8>)>, EngineError> {
        self.records(LEASE)
    }

    /// Every member record, by ID.
    pub fn members(&self) -> Result<Vec<(u64, Vec<u8>)>, EngineError> {
        self.records(MEMBERS)
    }

    /// Every row of a table of records keyed by a number, in key order.
    fn records<K>(
        &self,
        definition: TableDefinition<K, &'static [u8]>,
    ) -> Result<Vec<(K, Vec<u8>)>, EngineError>
    where
        K: redb::Key + 'static + for<'a> redb::Value<SelfType<'a> = K>,
    {
        let Some(table) = self.table(definition)? else {
            return Ok(Vec::new());
        };
        let rows = table.iter().map_err(|e| self.error(e))?;
        rows.map(|row| {
            row.map(|(id, record)| (id.value(), record.value().to_vec()))
                .map_err(|e| self.error(e))
        })
        .collect()
    }

    /// The IDs of members removed for good.
    pub fn removed_members(&self) -> Result<Vec<u64>, EngineError> {
        let Some(table) = self.table(MEMBERS_REMOVED)? else {
            return Ok(Vec::new());
        };
        let rows = table.iter().map_err(|e| self.error(e))?;
        rows.map(|row| row.map(|(id, _)| id.value()).map_err(|e| self.error(e)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::disk::{CrashFault, PowerCut, SharedDisk};
    use crate::engine::ENGINE_FILE;

    const CACHE_BYTES: usize = 64 * 1024;

    fn engine_path(disk: &SharedDisk) -> PathBuf {
        let mut handle = disk.clone();
        handle.create_dir_all(Path::new("/member")).unwrap();
        handle.sync_dir(Path::new("/")).unwrap();
        PathBuf::from("/member").join(ENGINE_FILE)
    }

    fn put(main: u64, sub: u64, bytes: &[u8]) -> (Revision, Stored) {
        let stored = Stored {
            tombstone: false,
            key_value: bytes.to_vec(),
        };
        (Revision { main, sub }, stored)
    }

    #[test]
    fn every_table_round_trips_and_the_applied_index_survives_a_reopen() {
        let disk = SharedDisk::new();
        let path = engine_path(&disk);
        let mut engine = Engine::open(&|| disk.clone(), &path, CACHE_BYTES).unwrap();
        assert_eq!(engine.applied(), Applied::default());
        let mut batch = Batch::new();
        let (r2, v2) = put(2, 0, b"a=1");
        let (r3, v3) = put(3, 1, b"b=2");
        batch.put_revision(r2, v2.clone());
        batch.put_revision(r3, v3.clone());
        let tombstone = Stored {
            tombstone: true,
            key_value: b"a".to_vec(),
        };
        batch.put_revision(Revision { main: 4, sub: 0 }, tombstone.clone());
        batch.put_lease(7, b"lease 7".to_vec());
        batch.put_lease(8, b"lease 8".to_vec());
        batch.delete_lease(8);
        batch.put_member(10, b"m10".to_vec());
        batch.put_member(11, b"m11".to_vec());
        batch.remove_member(11);
        batch.set_compact_revision(2);
        batch.set_applied(Applied { index: 5, term: 2 });
        engine.commit(batch, true).unwrap();
        let mut later = Batch::new();
        later.delete_revision(r2);
        later.set_applied(Applied { index: 6, term: 2 });
        engine.commit(later, false).unwrap();
        drop(engine);
        let engine = Engine::open(&|| disk.clone(), &path, CACHE_BYTES).unwrap();
        assert_eq!(engine.applied(), Applied { index: 6, term: 2 });
        let view = engine.view().unwrap();
        assert_eq!(view.revision(r2).unwrap(), None);
        assert_eq!(view.revision(r3).unwrap(), Some(v3.clone()));
        let mut seen = Vec::new();
        view.revisions_from(Revision { main: 3, sub: 0 }, |r, s| {
            seen.push((r, s));
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![(r3, v3), (Revision { main: 4, sub: 0 }, tombstone)]
        );
        assert_eq!(view.leases().unwrap(), vec![(7, b"lease 7".to_vec())]);
        assert_eq!(view.members().unwrap(), vec![(10, b"m10".to_vec())]);
        assert_eq!(view.removed_members().unwrap(), vec![11]);
        assert_eq!(view.compact_revision().unwrap(), 2);
    }

    #[test]
    fn a_view_keeps_its_state_while_writes_go_on() {
        let disk = SharedDisk::new();
        let path = engine_path(&disk);
        let mut engine = Engine::open(&|| disk.clone(), &path, CACHE_BYTES).unwrap();
        let mut batch = Batch::new();
        let (r, v) = put(2, 0, b"old");
        batch.put_revision(r, v.clone());
        engine.commit(batch, false).unwrap();
        let view = engine.view().unwrap();
        let mut batch = Batch::new();
        batch.put_revision(r, put(2, 0, b"new").1);
        engine.commit(batch, true).unwrap();
        assert_eq!(view.revision(r).unwrap(), Some(v));
        assert_eq!(
            engine
                .view()
                .unwrap()
                .revision(r)
                .unwrap()
                .unwrap()
                .key_value,
            b"new"
        );
    }

    #[test]
    fn a_revision_with_an_unknown_tag_is_reported_as_damage_naming_the_file() {
        let disk = SharedDisk::new();
        let path = engine_path(&disk);
        let engine = Engine::open(&|| disk.clone(), &path, CACHE_BYTES).unwrap();
        let write = engine.db.begin_write().unwrap();
        write
            .open_table(KEY)
            .unwrap()
            .insert((9, 0), &[7u8, 1, 2][..])
            .unwrap();
        write.commit().unwrap();
        let error = engine
            .view()
            .unwrap()
            .revision(Revision { main: 9, sub: 0 })
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("/member/engine.redb"), "{message}");
        assert!(message.contains("revision 9.0"), "{message}");
    }

    /// The state after each batch, as the test builds it.
    type States = Vec<BTreeMap<(u64, u64), Vec<u8>>>;

    /// Batches 1, 2, ... (batch i applies entry i) until the power goes, a crash, a reopen: the
    /// file must hold exactly the state after the batch its applied index names, at least the
    /// last durable one, so replaying the WAL from there is exact. With `split_applied` (the
    /// planted mistake the check must catch), each batch's applied index is committed apart from
    /// its data. `Err` says what the check found.
    fn crash_run(seed: u64, split_applied: bool) -> Result<(), String> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let disk = SharedDisk::new();
        let path = engine_path(&disk);
        let (cut, breaker) = PowerCut::new(disk.clone());
        let mut engine = Engine::open(&|| cut.clone(), &path, CACHE_BYTES).unwrap();
        breaker.cut_after(rng.gen_range(0..800));
        let mut states: States = vec![BTreeMap::new()];
        let mut last_durable = 0;
        let mut interrupted = None;
        for index in 1..60u64 {
            let mut state = states[states.len() - 1].clone();
            let mut batch = Batch::new();
            for sub in 0..rng.gen_range(1..8) {
                let bytes = vec![rng.gen::<u8>(); rng.gen_range(1..2000)];
                let (revision, stored) = put(index, sub, &bytes);
                state.insert((index, sub), bytes);
                batch.put_revision(revision, stored);
            }
            if rng.gen_bool(0.2) {
                if let Some(&old) = state.keys().next() {
                    state.remove(&old);
                    batch.delete_revision(Revision {
                        main: old.0,
                        sub: old.1,
                    });
                }
            }
            let applied = Applied { index, term: 1 };
            let durable = rng.gen_bool(0.3);
            let committed = if split_applied {
                let mut marker = Batch::new();
                marker.set_applied(applied);
                engine
                    .commit(batch, durable)
                    .and_then(|()| engine.commit(marker, durable))
            } else {
                batch.set_applied(applied);
                engine.commit(batch, durable)
            };
            match committed {
                Ok(()) => {
                    states.push(state);
                    if durable {
                        last_durable = index;
                    }
                }
                Err(_) => {
                    interrupted = Some(index);
                    states.push(state);
                    break;
                }
            }
        }
        // A clean close makes everything durable; a cut during the close may or may not have.
        drop(engine);
        let last = states.len() as u64 - 1;
        if !breaker.is_cut() {
            last_durable = last;
        } else if interrupted.is_none() {
            interrupted = Some(last);
        }
        disk.lock().crash(CrashFault::TearUnsynced, &mut rng);
        let engine = Engine::open(&|| disk.clone(), &path, CACHE_BYTES).unwrap();
        let applied = engine.applied().index;
        if applied < last_durable || applied > interrupted.unwrap_or(last_durable) {
            return Err(format!(
                "seed {seed}: applied index {applied}, last durable {last_durable}"
            ));
        }
        let mut found = BTreeMap::new();
        let view = engine.view().map_err(|e| e.to_string())?;
        view.revisions_from(Revision { main: 0, sub: 0 }, |r, s| {
            found.insert((r.main, r.sub), s.key_value);
            true
        })
        .map_err(|e| e.to_string())?;
        if found != states[applied as usize] {
            return Err(format!(
                "seed {seed}: the data is not the state at index {applied}"
            ));
        }
        Ok(())
    }

    #[test]
    fn after_a_crash_the_file_holds_exactly_the_state_its_applied_index_names() {
        for seed in 0..150 {
            crash_run(seed, false).unwrap();
        }
    }

    /// The check above catches an applied index committed apart from its data.
    #[test]
    fn the_check_catches_an_applied_index_committed_apart_from_its_data() {
        let caught = (0..60)
            .filter(|&seed| crash_run(seed, true).is_err())
            .count();
        assert!(caught > 0, "no seed of 60 noticed the split commits");
    }
}
