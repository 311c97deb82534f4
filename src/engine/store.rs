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
use std::sync::Arc;

use redb::{Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::disk::Disk;

use super::backend::{EngineFile, FileBytes, Measured};
use super::defrag::{Defrag, Retired};
use super::file::{open_measured, EngineError, Opened};
use super::record::{revision_key, seal, unseal, Tag};

/// Every value is sealed (`record`): a tag, a checksum over the row's key and value, the bytes.
/// Revisions: (main, sub) → a put's or a tombstone's encoded `KeyValue`.
pub(super) const KEY: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("key");
/// Leases by ID → their encoded record.
pub(super) const LEASE: TableDefinition<i64, &[u8]> = TableDefinition::new("lease");
/// Members by ID → their encoded record; removed member IDs → nothing.
pub(super) const MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("members");
pub(super) const MEMBERS_REMOVED: TableDefinition<u64, &[u8]> =
    TableDefinition::new("members_removed");
/// Named numbers: the applied index and term, compaction points.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(super) const APPLIED_INDEX: &str = "consistent_index";
pub(super) const APPLIED_TERM: &str = "term";
pub(super) const COMPACT_REVISION: &str = "compact_revision";
pub(super) const CURRENT_REVISION: &str = "current_revision";
pub(super) const CLUSTER_ID: &str = "cluster_id";
pub(super) const CONF_STATE: &str = "conf_state";
/// The raised alarms (etcd keeps them in its `alarm` bucket).
pub(super) const ALARMS: &str = "alarms";
/// The auth store (etcd keeps it in its `auth`, `authUsers` and `authRoles` buckets).
pub(super) const AUTH: &str = "auth";
/// Every name the meta table may hold.
pub(super) const META_NAMES: [&str; 8] = [
    APPLIED_INDEX,
    APPLIED_TERM,
    COMPACT_REVISION,
    CURRENT_REVISION,
    CLUSTER_ID,
    CONF_STATE,
    ALARMS,
    AUTH,
];

/// The most passes of redb's compaction one defragmentation makes (each moves what it can; a
/// handful is the norm).
const MAX_COMPACTION_PASSES: usize = 64;

/// The number keys of the lease and member tables, as their checksums cover them.
trait NumberKey: std::fmt::Debug {
    fn le_bytes(&self) -> [u8; 8];
}

impl NumberKey for i64 {
    fn le_bytes(&self) -> [u8; 8] {
        self.to_le_bytes()
    }
}

impl NumberKey for u64 {
    fn le_bytes(&self) -> [u8; 8] {
        self.to_le_bytes()
    }
}

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
    ClearMembers,
    ClusterId(u64),
    ConfState(Vec<u8>),
    Alarms(Vec<u8>),
    Auth(Vec<u8>),
    CompactRevision(u64),
    CurrentRevision(u64),
}

/// Changes to write together, ending at the entry `applied` names.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Everything the file held goes first (the state was replaced, e.g. by a snapshot).
    replace_all: bool,
    /// The applied index may go back (see [`Engine::start_new_cluster`]).
    rewinds: bool,
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
        self.ops.is_empty() && self.applied.is_none() && !self.replace_all
    }

    /// About how many bytes the batch holds in memory.
    pub fn bytes(&self) -> usize {
        let payload = |op: &Op| match op {
            Op::PutRevision(_, stored) => stored.key_value.len(),
            Op::PutLease(_, bytes)
            | Op::PutMember(_, bytes)
            | Op::ConfState(bytes)
            | Op::Alarms(bytes)
            | Op::Auth(bytes) => bytes.len(),
            _ => 0,
        };
        let op_bytes = std::mem::size_of::<Op>();
        self.ops.iter().map(|op| op_bytes + payload(op)).sum()
    }

    /// Whether the batch empties every table first.
    pub fn replaces_all(&self) -> bool {
        self.replace_all
    }

    /// Empties every table before the batch's changes are written: the batch holds the whole
    /// state.
    pub fn replace_all(&mut self) {
        self.replace_all = true;
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

    /// Forgets every member and removed member (the membership is written anew after this).
    pub fn clear_members(&mut self) {
        self.ops.push(Op::ClearMembers);
    }

    pub fn set_cluster_id(&mut self, id: u64) {
        self.ops.push(Op::ClusterId(id));
    }

    /// Raft's configuration as of the applied index (raft's `ConfState` bytes).
    pub fn set_conf_state(&mut self, conf_state: Vec<u8>) {
        self.ops.push(Op::ConfState(conf_state));
    }

    /// Replaces the raised alarms (an encoded `stetpb::AlarmList`).
    pub fn set_alarms(&mut self, alarms: Vec<u8>) {
        self.ops.push(Op::Alarms(alarms));
    }

    /// Replaces the auth store (an encoded `stetpb::AuthState`).
    pub fn set_auth(&mut self, auth: Vec<u8>) {
        self.ops.push(Op::Auth(auth));
    }

    pub fn set_compact_revision(&mut self, revision: u64) {
        self.ops.push(Op::CompactRevision(revision));
    }

    /// The store's newest revision, which the rows alone do not tell once it was compacted.
    pub fn set_current_revision(&mut self, revision: u64) {
        self.ops.push(Op::CurrentRevision(revision));
    }

    /// The entry the batch's changes end at. It only grows from batch to batch.
    pub fn set_applied(&mut self, applied: Applied) {
        if let Some(before) = self.applied {
            assert!(applied.index >= before.index, "applied index went back");
        }
        self.applied = Some(applied);
    }
}

/// Makes handles on the disk an engine's files live on.
pub(super) type DiskMaker = Arc<dyn Fn() -> Box<dyn Disk + Send> + Send + Sync>;

/// Where an engine's file lives, for the work that makes new files beside it.
#[derive(Clone)]
pub(super) struct Files {
    pub disk: DiskMaker,
    /// The open file, renamed by a defragmentation's swap.
    pub file: Arc<dyn EngineFile>,
    pub cache_bytes: usize,
}

/// The applied state's file.
pub struct Engine {
    pub(super) db: super::file::Db,
    path: PathBuf,
    applied: Applied,
    pub(super) file_bytes: FileBytes,
    /// `None` for an engine in memory, which is defragmented in place.
    pub(super) files: Option<Files>,
    /// Every view of the current file holds a clone: a file a defragmentation replaced is
    /// closed and removed once no view of it remains.
    pub(super) readers: Arc<()>,
    /// An online defragmentation under way.
    pub(super) defrag: Option<Box<Defrag>>,
    /// Files a defragmentation replaced that views still read.
    pub(super) retired: Vec<Retired>,
    /// Replaced files no view reads, waiting for their owner to close them.
    pub(super) closable: Vec<super::defrag::RetiredFile>,
    /// How many files defragmentations replaced, to name the next one.
    pub(super) retired_count: u64,
    /// The space the file took on the device when last measured ([`Engine::size_bytes`]).
    size_bytes: u64,
}

impl Engine {
    /// Opens (or creates) the engine file at `path`; see [`open`]. `disk` makes handles on the
    /// disk: the database keeps one, and an online defragmentation makes its copy with others.
    pub fn open<D, F>(disk: F, path: &Path, cache_bytes: usize) -> Result<Engine, EngineError>
    where
        D: Disk + Send + 'static,
        F: Fn() -> D + Send + Sync + 'static,
    {
        let disk: DiskMaker = Arc::new(move || Box::new(disk()) as Box<dyn Disk + Send>);
        let file_bytes = FileBytes::default();
        let opened = open_measured(&|| disk(), path, cache_bytes, &file_bytes)?;
        let mut engine = Engine::of_file(opened, disk, path, cache_bytes, file_bytes);
        engine.applied = engine.view()?.applied()?;
        engine.measure_size();
        Ok(engine)
    }

    /// The engine of a file just opened.
    pub(super) fn of_file(
        opened: Opened,
        disk: DiskMaker,
        path: &Path,
        cache_bytes: usize,
        file_bytes: FileBytes,
    ) -> Engine {
        let files = Files {
            disk,
            file: opened.file,
            cache_bytes,
        };
        Engine {
            db: opened.db,
            path: path.to_path_buf(),
            applied: Applied::default(),
            file_bytes,
            files: Some(files),
            readers: Arc::new(()),
            defrag: None,
            retired: Vec::new(),
            closable: Vec::new(),
            retired_count: 0,
            size_bytes: 0,
        }
    }

    /// An engine whose file lives in memory: for tests and tools that need no durability.
    pub fn in_memory(cache_bytes: usize) -> Result<Engine, EngineError> {
        let path = PathBuf::from("<memory>");
        let file_bytes = FileBytes::default();
        let backend = Measured::new(redb::backends::InMemoryBackend::new(), file_bytes.clone());
        let db = redb::Database::builder()
            .set_cache_size(cache_bytes)
            .create_with_backend(backend)
            .map_err(|source| EngineError::Open {
                path: path.clone(),
                source,
            })?;
        Ok(Engine {
            db: super::file::Db::new(db),
            path,
            applied: Applied::default(),
            file_bytes,
            files: None,
            readers: Arc::new(()),
            defrag: None,
            retired: Vec::new(),
            closable: Vec::new(),
            retired_count: 0,
            size_bytes: 0,
        })
    }

    /// The length of the file (etcd's `Backend().Size()`): what `Status.db_size` reports and the
    /// space quota counts.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes.get()
    }

    /// The space the file takes on the device, as of the last commit: what `Status.db_size`
    /// reports and the space quota counts (etcd's `Backend().Size()`, bbolt's high-water mark of
    /// pages). redb grows its file by doubling it; the part not written yet is a hole that takes
    /// no space, so the file's length would count up to twice the data. An engine in memory
    /// counts its length.
    pub fn size_bytes(&self) -> u64 {
        match self.files {
            Some(_) => self.size_bytes,
            None => self.file_bytes(),
        }
    }

    /// Measures [`Engine::size_bytes`] again (a `stat` of the file). If that fails the file's
    /// length stands in: a member then errs towards refusing writes early, never late.
    pub(super) fn measure_size(&mut self) {
        let measured = self
            .files
            .as_ref()
            .map(|files| files.file.allocated_bytes());
        self.size_bytes = match measured {
            Some(Ok(bytes)) => bytes.min(self.file_bytes()),
            _ => self.file_bytes(),
        };
    }

    /// The file's path, as errors name it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry whose effects the file holds last (zero for a new file).
    pub fn applied(&self) -> Applied {
        self.applied
    }

    pub(super) fn error(&self, source: impl Into<redb::Error>) -> EngineError {
        EngineError::Engine {
            path: self.path.clone(),
            source: Box::new(source.into()),
        }
    }

    /// Records that the file now holds the state after `applied`.
    pub(super) fn set_applied(&mut self, applied: Applied) {
        self.applied = applied;
    }

    /// Writes `batch` in one transaction, fsynced if `durable`.
    pub fn commit(&mut self, batch: Batch, durable: bool) -> Result<(), EngineError> {
        let (write, applied) = self.prepare_commit(batch, durable)?;
        write.run()?;
        self.finish_commit(applied);
        Ok(())
    }

    /// Starts a commit of `batch` (fsynced if `durable`): the write transaction, opened here, and
    /// the changes, to be written where blocking is allowed ([`PreparedCommit::run`]); then
    /// [`Engine::finish_commit`] with the entry the batch ends at. Until then the engine's
    /// state, views and applied index are those of the last commit, and no other write may
    /// start: redb has one writer, and a second one is refused here.
    pub fn prepare_commit(
        &mut self,
        batch: Batch,
        durable: bool,
    ) -> Result<(PreparedCommit, Option<Applied>), EngineError> {
        if let Some(applied) = batch.applied {
            // Only a batch that replaces the whole state may start over at a lower index (a new
            // member's state written over an engine file left from an earlier one).
            assert!(
                applied.index >= self.applied.index || batch.replace_all || batch.rewinds,
                "a batch must not go back before the applied index"
            );
        }
        // One writer: the engine's owner. A second live write transaction would block.
        let mut write = self.db.try_begin_write().map_err(|e| self.error(e))?;
        if durable {
            // Two phases: the commit slot the file's header names is whole without its
            // checksums being read. Not quick repair: every open checks the whole file
            // (`set_check_integrity_on_open`), which skips a saved allocator state, so saving
            // one at each durable commit would be work no open uses.
            write.set_two_phase_commit(true);
        } else {
            write
                .set_durability(Durability::None)
                .map_err(|e| self.error(e))?;
        }
        // A defragmentation's copy gets every change made after the state it copies, in the
        // order they are committed.
        self.queue_for_defrag(&batch);
        let applied = batch.applied;
        let prepared = PreparedCommit {
            write,
            batch,
            path: self.path.clone(),
        };
        Ok((prepared, applied))
    }

    /// Takes in a commit [`PreparedCommit::run`] made: the file holds the state after
    /// `applied` (if the batch named it) from now on.
    pub fn finish_commit(&mut self, applied: Option<Applied>) {
        if let Some(applied) = applied {
            self.applied = applied;
        }
        self.measure_size();
        self.close_retired();
    }

    /// Makes the state the file holds the first state of a new cluster (a restored backup), durably:
    /// no members, `cluster_id`, no raft configuration, and applied index 0, so that the new
    /// cluster's first entries (its members) apply on top of it. Keys, revisions, leases and
    /// alarms stay.
    pub fn start_new_cluster(&mut self, cluster_id: u64) -> Result<(), EngineError> {
        let mut batch = Batch::new();
        batch.clear_members();
        batch.set_cluster_id(cluster_id);
        batch.set_conf_state(Vec::new());
        batch.applied = Some(Applied::default());
        batch.rewinds = true;
        self.commit(batch, true)
    }

    /// Rewrites the file in place so that it holds no free pages and is as short as its data
    /// allows (etcd's defragmentation, stopping the world; see `defrag` for the online one): pages move towards the start in durable steps, then the file is
    /// truncated. No view or export may be open (their pages could not move): that is refused as
    /// a transaction in progress. The state it holds does not change; a crash part way leaves it
    /// whole.
    pub fn defragment(&mut self) -> Result<(), EngineError> {
        for _ in 0..MAX_COMPACTION_PASSES {
            let moved = self
                .db
                .compact()
                .map_err(|e| self.error(redb::Error::from(e)))?;
            if !moved {
                break;
            }
        }
        self.measure_size();
        Ok(())
    }

    /// A consistent view of the state as of the last commit.
    pub fn view(&self) -> Result<View, EngineError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let mut view = View {
            read,
            keys: None,
            path: self.path.clone(),
            _reader: self.readers.clone(),
        };
        view.keys = view.table(KEY)?;
        Ok(view)
    }
}

/// A commit's changes and the write transaction they go into, opened by the engine's owner
/// ([`Engine::prepare_commit`]); [`PreparedCommit::run`] writes them, on any thread. Dropped
/// without running, nothing is written.
pub struct PreparedCommit {
    write: redb::WriteTransaction,
    batch: Batch,
    path: PathBuf,
}

impl std::fmt::Debug for PreparedCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCommit")
            .field("path", &self.path)
            .field("ops", &self.batch.len())
            .finish_non_exhaustive()
    }
}

impl PreparedCommit {
    /// The engine's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the changes and commits them (with the fsync a durable commit makes).
    pub fn run(self) -> Result<(), EngineError> {
        let PreparedCommit { write, batch, path } = self;
        let error = |source: redb::Error| EngineError::Engine {
            path: path.clone(),
            source: Box::new(source),
        };
        write_ops(&write, &batch).map_err(error)?;
        write.commit().map_err(|e| error(e.into()))
    }
}

/// Applies every change of `batch` inside `write`. A table is opened only when a change goes to
/// it: opening one for writing makes redb rewrite its root at the commit even when nothing
/// changed, and most batches touch only the revisions and the meta table.
fn write_ops(write: &redb::WriteTransaction, batch: &Batch) -> Result<(), redb::Error> {
    if batch.replace_all {
        write.delete_table(KEY)?;
        write.delete_table(LEASE)?;
        write.delete_table(MEMBERS)?;
        write.delete_table(MEMBERS_REMOVED)?;
        write.delete_table(META)?;
    }
    let mut key = None;
    let mut lease = None;
    let mut members = None;
    let mut removed = None;
    let mut meta = None;
    let mut value = Vec::new();
    for op in &batch.ops {
        match op {
            Op::PutRevision(revision, stored) => {
                let tag = if stored.tombstone {
                    Tag::Tombstone
                } else {
                    Tag::Put
                };
                let row = revision_key(revision.main, revision.sub);
                seal(&row, tag, &stored.key_value, &mut value);
                opened(&mut key, write, KEY)?
                    .insert((revision.main, revision.sub), value.as_slice())?;
            }
            Op::DeleteRevision(revision) => {
                opened(&mut key, write, KEY)?.remove((revision.main, revision.sub))?;
            }
            Op::PutLease(id, record) => {
                seal(&id.to_le_bytes(), Tag::Lease, record, &mut value);
                opened(&mut lease, write, LEASE)?.insert(id, value.as_slice())?;
            }
            Op::DeleteLease(id) => {
                opened(&mut lease, write, LEASE)?.remove(id)?;
            }
            Op::PutMember(id, record) => {
                seal(&id.to_le_bytes(), Tag::Member, record, &mut value);
                opened(&mut members, write, MEMBERS)?.insert(id, value.as_slice())?;
            }
            Op::RemoveMember(id) => {
                opened(&mut members, write, MEMBERS)?.remove(id)?;
                seal(&id.to_le_bytes(), Tag::Removed, &[], &mut value);
                opened(&mut removed, write, MEMBERS_REMOVED)?.insert(id, value.as_slice())?;
            }
            Op::ClearMembers => {
                opened(&mut members, write, MEMBERS)?.retain(|_, _| false)?;
                opened(&mut removed, write, MEMBERS_REMOVED)?.retain(|_, _| false)?;
            }
            Op::ClusterId(id) => {
                seal_number(CLUSTER_ID, *id, &mut value);
                opened(&mut meta, write, META)?.insert(CLUSTER_ID, value.as_slice())?;
            }
            Op::ConfState(bytes) => {
                seal(CONF_STATE.as_bytes(), Tag::ConfState, bytes, &mut value);
                opened(&mut meta, write, META)?.insert(CONF_STATE, value.as_slice())?;
            }
            Op::Alarms(bytes) => {
                seal(ALARMS.as_bytes(), Tag::Alarms, bytes, &mut value);
                opened(&mut meta, write, META)?.insert(ALARMS, value.as_slice())?;
            }
            Op::Auth(bytes) => {
                seal(AUTH.as_bytes(), Tag::Auth, bytes, &mut value);
                opened(&mut meta, write, META)?.insert(AUTH, value.as_slice())?;
            }
            Op::CompactRevision(revision) => {
                seal_number(COMPACT_REVISION, *revision, &mut value);
                opened(&mut meta, write, META)?.insert(COMPACT_REVISION, value.as_slice())?;
            }
            Op::CurrentRevision(revision) => {
                seal_number(CURRENT_REVISION, *revision, &mut value);
                opened(&mut meta, write, META)?.insert(CURRENT_REVISION, value.as_slice())?;
            }
        }
    }
    if let Some(applied) = batch.applied {
        let meta = opened(&mut meta, write, META)?;
        seal_number(APPLIED_INDEX, applied.index, &mut value);
        meta.insert(APPLIED_INDEX, value.as_slice())?;
        seal_number(APPLIED_TERM, applied.term, &mut value);
        meta.insert(APPLIED_TERM, value.as_slice())?;
    }
    Ok(())
}

/// The table in `slot`, opened for writing in `write` the first time it is asked for.
fn opened<'s, 'w, K: redb::Key + 'static, V: redb::Value + 'static>(
    slot: &'s mut Option<redb::Table<'w, K, V>>,
    write: &'w redb::WriteTransaction,
    definition: TableDefinition<K, V>,
) -> Result<&'s mut redb::Table<'w, K, V>, redb::TableError> {
    let table = match slot.take() {
        Some(table) => table,
        None => write.open_table(definition)?,
    };
    Ok(slot.insert(table))
}

fn seal_number(name: &str, number: u64, out: &mut Vec<u8>) {
    seal(name.as_bytes(), Tag::Number, &number.to_le_bytes(), out);
}

/// The bytes a table's pages take: what they store, their own bookkeeping and their unused
/// tails add up to the pages' sizes.
fn tree_bytes<K: redb::Key + 'static, V: redb::Value + 'static>(
    table: &Option<redb::ReadOnlyTable<K, V>>,
) -> Result<u64, redb::StorageError> {
    let Some(table) = table else {
        return Ok(0);
    };
    let stats = table.stats()?;
    Ok(stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes())
}

/// One consistent state of the file, readable while writes go on.
pub struct View {
    read: redb::ReadTransaction,
    /// The revisions table, opened once: most reads go to it.
    keys: Option<redb::ReadOnlyTable<(u64, u64), &'static [u8]>>,
    path: PathBuf,
    /// Keeps the file this view reads from being closed and removed.
    _reader: Arc<()>,
}

impl View {
    /// The file this view reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn error(&self, source: impl Into<redb::Error>) -> EngineError {
        EngineError::Engine {
            path: self.path.clone(),
            source: Box::new(source.into()),
        }
    }

    /// A table, or `None` if nothing was ever written to it.
    pub(super) fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        definition: TableDefinition<K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, EngineError> {
        match self.read.open_table(definition) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(self.error(error)),
        }
    }

    pub(super) fn damaged(&self, what: String) -> EngineError {
        EngineError::Damaged {
            path: self.path.clone(),
            what,
        }
    }

    /// The payload of a value stored under `key`, which must carry one of `tags`; `row` names
    /// the row in the error.
    fn open_value<'a>(
        &self,
        key: &[u8],
        stored: &'a [u8],
        tags: &[Tag],
        row: &dyn Fn() -> String,
    ) -> Result<(Tag, &'a [u8]), EngineError> {
        let (tag, payload) =
            unseal(key, stored).map_err(|e| self.damaged(format!("{}: {e}", row())))?;
        if !tags.contains(&tag) {
            let what = format!("{}: a {tag:?} value where {tags:?} belongs", row());
            return Err(self.damaged(what));
        }
        Ok((tag, payload))
    }

    fn meta(&self, name: &str) -> Result<u64, EngineError> {
        let Some(meta) = self.table(META)? else {
            return Ok(0);
        };
        let Some(value) = meta.get(name).map_err(|e| self.error(e))? else {
            return Ok(0);
        };
        let row = || format!("meta {name}");
        let (_, payload) = self.open_value(name.as_bytes(), value.value(), &[Tag::Number], &row)?;
        let bytes = <[u8; 8]>::try_from(payload)
            .map_err(|_| self.damaged(format!("{}: {} bytes, not 8", row(), payload.len())))?;
        Ok(u64::from_le_bytes(bytes))
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

    /// The cluster the membership belongs to (0 if never written).
    pub fn cluster_id(&self) -> Result<u64, EngineError> {
        self.meta(CLUSTER_ID)
    }

    /// Raft's configuration as of the applied index (`ConfState` bytes), if ever written.
    pub fn conf_state(&self) -> Result<Option<Vec<u8>>, EngineError> {
        self.meta_bytes(CONF_STATE, Tag::ConfState)
    }

    /// The raised alarms (an encoded `stetpb::AlarmList`), if ever written.
    pub fn alarms(&self) -> Result<Option<Vec<u8>>, EngineError> {
        self.meta_bytes(ALARMS, Tag::Alarms)
    }

    /// The auth store (an encoded `stetpb::AuthState`), if ever written.
    pub fn auth(&self) -> Result<Option<Vec<u8>>, EngineError> {
        self.meta_bytes(AUTH, Tag::Auth)
    }

    /// The payload of a meta row holding bytes of one kind, if written.
    fn meta_bytes(&self, name: &str, tag: Tag) -> Result<Option<Vec<u8>>, EngineError> {
        let Some(meta) = self.table(META)? else {
            return Ok(None);
        };
        let Some(value) = meta.get(name).map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        let row = || format!("meta {name}");
        let (_, payload) = self.open_value(name.as_bytes(), value.value(), &[tag], &row)?;
        Ok(Some(payload.to_vec()))
    }

    /// The bytes the pages of every table take in the file (what etcd reports as
    /// `db_size_in_use`: the file less its free pages, whose count redb does not expose): every
    /// page of every table's tree is read, so this costs as much as reading the whole state — a
    /// member measures it on the side, now and then, never on the driver's task. The file's
    /// header and redb's own small trees are not counted.
    pub fn bytes_in_use(&self) -> Result<u64, EngineError> {
        let tables = [
            tree_bytes(&self.keys),
            tree_bytes(&self.table(LEASE)?),
            tree_bytes(&self.table(MEMBERS)?),
            tree_bytes(&self.table(MEMBERS_REMOVED)?),
            tree_bytes(&self.table(META)?),
        ];
        tables
            .into_iter()
            .try_fold(0, |sum, bytes| Ok(sum + bytes.map_err(|e| self.error(e))?))
    }

    /// How many revisions the `key` table holds (kept in the table's root: no rows are read).
    pub fn revision_count(&self) -> Result<u64, EngineError> {
        match &self.keys {
            Some(table) => table.len().map_err(|e| self.error(e)),
            None => Ok(0),
        }
    }

    /// The store's newest revision as of this state (0 if never written).
    pub fn current_revision(&self) -> Result<u64, EngineError> {
        self.meta(CURRENT_REVISION)
    }

    /// One revision, if stored.
    pub fn revision(&self, revision: Revision) -> Result<Option<Stored>, EngineError> {
        let Some(table) = &self.keys else {
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
        self.revision_bytes_from(from, |revision, tombstone, key_value| {
            let key_value = key_value.to_vec();
            each(
                revision,
                Stored {
                    tombstone,
                    key_value,
                },
            )
        })
    }

    /// As [`View::revisions_from`], lending each revision's tombstone flag and `KeyValue` bytes
    /// instead of copying them.
    pub fn revision_bytes_from(
        &self,
        from: Revision,
        mut each: impl FnMut(Revision, bool, &[u8]) -> bool,
    ) -> Result<(), EngineError> {
        let Some(table) = &self.keys else {
            return Ok(());
        };
        let rows = table
            .range((from.main, from.sub)..)
            .map_err(|e| self.error(e))?;
        for row in rows {
            let (key, value) = row.map_err(|e| self.error(e))?;
            let (main, sub) = key.value();
            let revision = Revision { main, sub };
            let (tombstone, key_value) = self.stored_bytes(revision, value.value())?;
            if !each(revision, tombstone, key_value) {
                break;
            }
        }
        Ok(())
    }

    /// A stored revision's bytes, checked.
    fn stored(&self, revision: Revision, bytes: &[u8]) -> Result<Stored, EngineError> {
        let (tombstone, key_value) = self.stored_bytes(revision, bytes)?;
        Ok(Stored {
            tombstone,
            key_value: key_value.to_vec(),
        })
    }

    /// A stored revision's tombstone flag and `KeyValue` bytes, checked.
    fn stored_bytes<'a>(
        &self,
        revision: Revision,
        bytes: &'a [u8],
    ) -> Result<(bool, &'a [u8]), EngineError> {
        let key = revision_key(revision.main, revision.sub);
        let row = || format!("revision {}.{}", revision.main, revision.sub);
        let (tag, payload) = self.open_value(&key, bytes, &[Tag::Put, Tag::Tombstone], &row)?;
        Ok((tag == Tag::Tombstone, payload))
    }

    /// Every lease record, by ID.
    pub fn leases(&self) -> Result<Vec<(i64, Vec<u8>)>, EngineError> {
        self.records(LEASE, Tag::Lease, "lease")
    }

    /// Every member record, by ID.
    pub fn members(&self) -> Result<Vec<(u64, Vec<u8>)>, EngineError> {
        self.records(MEMBERS, Tag::Member, "member")
    }

    /// The IDs of members removed for good.
    pub fn removed_members(&self) -> Result<Vec<u64>, EngineError> {
        let rows = self.records(MEMBERS_REMOVED, Tag::Removed, "removed member")?;
        Ok(rows.into_iter().map(|(id, _)| id).collect())
    }

    /// Every row of a table of `tag` records keyed by a number, in key order.
    fn records<K>(
        &self,
        definition: TableDefinition<K, &'static [u8]>,
        tag: Tag,
        what: &str,
    ) -> Result<Vec<(K, Vec<u8>)>, EngineError>
    where
        K: NumberKey + redb::Key + 'static + for<'a> redb::Value<SelfType<'a> = K>,
    {
        let Some(table) = self.table(definition)? else {
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (id, value) = row.map_err(|e| self.error(e))?;
            let id = id.value();
            let name = || format!("{what} {id:?}");
            let (_, payload) = self.open_value(&id.le_bytes(), value.value(), &[tag], &name)?;
            records.push((id, payload.to_vec()));
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests;
