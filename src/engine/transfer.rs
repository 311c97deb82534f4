//! Moving a whole engine state to another engine in bounded chunks, for a follower that needs the
//! leader's state: [`Export`] reads a [`View`] table by table and cuts its rows into chunks of
//! about a given size (a read transaction: writes go on meanwhile); the receiving engine
//! [`Engine::stage_chunk`]s each into staging tables beside its live ones, and
//! [`Engine::install_staged`] swaps them in with one durable transaction. Nothing holds the whole
//! state in memory, and a crash during a transfer leaves the live tables as they were.
//!
//! A chunk is a run of rows, each `table (1 byte) | key length (u32 LE) | key | value length
//! (u32 LE) | value`, where the value is the row exactly as stored: sealed (`record`) over the
//! row's key bytes, so a receiver checks every row's key, tag and bytes before it stages it.

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::record::{revision_key, unseal, Tag};
use super::store::{
    Applied, Engine, View, APPLIED_INDEX, APPLIED_TERM, KEY, LEASE, MEMBERS, MEMBERS_REMOVED, META,
    META_NAMES,
};
use super::EngineError;

/// The tables of a state, in the order they travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Table {
    Key = 0,
    Lease = 1,
    Members = 2,
    Removed = 3,
    Meta = 4,
}

impl Table {
    const ALL: [Table; 5] = [
        Table::Key,
        Table::Lease,
        Table::Members,
        Table::Removed,
        Table::Meta,
    ];

    fn from_byte(byte: u8) -> Option<Table> {
        Table::ALL.get(usize::from(byte)).copied()
    }

    /// The tags a value of this table may carry.
    fn tags(self) -> &'static [Tag] {
        match self {
            Table::Key => &[Tag::Put, Tag::Tombstone],
            Table::Lease => &[Tag::Lease],
            Table::Members => &[Tag::Member],
            Table::Removed => &[Tag::Removed],
            Table::Meta => &[Tag::Number, Tag::ConfState, Tag::Alarms, Tag::Auth],
        }
    }
}

/// Where staged rows wait until they are installed.
const STAGED_KEY: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("staged_key");
const STAGED_LEASE: TableDefinition<i64, &[u8]> = TableDefinition::new("staged_lease");
const STAGED_MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("staged_members");
const STAGED_REMOVED: TableDefinition<u64, &[u8]> = TableDefinition::new("staged_members_removed");
const STAGED_META: TableDefinition<&str, &[u8]> = TableDefinition::new("staged_meta");

/// Reads a view's rows out in chunks. Clones read the same view, each from where it was.
#[derive(Clone)]
pub struct Export {
    view: Arc<View>,
    /// The table being read, as an index into [`Table::ALL`]; past the end when done.
    table: usize,
    /// The last key read from it, as the row's key bytes.
    after: Option<Vec<u8>>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("table", &self.table)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl Export {
    /// Reads `view` from its first row.
    pub fn new(view: Arc<View>) -> Export {
        Export {
            view,
            table: 0,
            after: None,
        }
    }

    /// The state's applied index and term, as the view holds them.
    pub fn applied(&self) -> Result<Applied, EngineError> {
        self.view.applied()
    }

    /// The next chunk: whole rows, at least one, adding up to about `max_bytes` (one row may go
    /// past it); `None` once every row was read.
    pub fn next_chunk(&mut self, max_bytes: usize) -> Result<Option<Vec<u8>>, EngineError> {
        let mut chunk = Vec::new();
        while let Some(&table) = Table::ALL.get(self.table) {
            let done = self.read_rows(table, &mut chunk, max_bytes)?;
            if done {
                self.table += 1;
                self.after = None;
            }
            if chunk.len() >= max_bytes {
                break;
            }
        }
        Ok((!chunk.is_empty()).then_some(chunk))
    }

    /// Appends rows of `table` after the cursor to `chunk` until it holds `max_bytes`; true if
    /// the table has no more rows.
    fn read_rows(
        &mut self,
        table: Table,
        chunk: &mut Vec<u8>,
        max_bytes: usize,
    ) -> Result<bool, EngineError> {
        let view = &self.view;
        let after = self.after.as_deref();
        let last = match table {
            Table::Key => rows_after(view, KEY, after, table, chunk, max_bytes, revision_key_of)?,
            Table::Lease => rows_after(view, LEASE, after, table, chunk, max_bytes, |id| {
                id.to_le_bytes().to_vec()
            })?,
            Table::Members => rows_after(view, MEMBERS, after, table, chunk, max_bytes, |id| {
                id.to_le_bytes().to_vec()
            })?,
            Table::Removed => rows_after(
                view,
                MEMBERS_REMOVED,
                after,
                table,
                chunk,
                max_bytes,
                |id| id.to_le_bytes().to_vec(),
            )?,
            Table::Meta => meta_rows(view, chunk)?,
        };
        match last {
            Some(key) => {
                self.after = Some(key);
                Ok(false)
            }
            None => Ok(true),
        }
    }
}

fn revision_key_of(key: (u64, u64)) -> Vec<u8> {
    revision_key(key.0, key.1).to_vec()
}

/// A table's number key from its row key bytes.
trait RowKey: Sized {
    fn from_row_key(bytes: &[u8]) -> Option<Self>;
}

impl RowKey for (u64, u64) {
    fn from_row_key(bytes: &[u8]) -> Option<Self> {
        let main = bytes.get(..8)?.try_into().ok()?;
        let sub = bytes.get(8..)?.try_into().ok()?;
        Some((u64::from_be_bytes(main), u64::from_be_bytes(sub)))
    }
}

impl RowKey for u64 {
    fn from_row_key(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }
}

impl RowKey for i64 {
    fn from_row_key(bytes: &[u8]) -> Option<Self> {
        Some(i64::from_le_bytes(bytes.try_into().ok()?))
    }
}

/// Appends the rows of `definition` after the row whose key bytes are `after` until `chunk`
/// holds `max_bytes`; the key bytes of the last row appended if rows remain, `None` if the table
/// was read to its end.
fn rows_after<K>(
    view: &View,
    definition: TableDefinition<K, &'static [u8]>,
    after: Option<&[u8]>,
    table: Table,
    chunk: &mut Vec<u8>,
    max_bytes: usize,
    row_key: impl Fn(K) -> Vec<u8>,
) -> Result<Option<Vec<u8>>, EngineError>
where
    K: RowKey + redb::Key + Copy + 'static + for<'a> redb::Value<SelfType<'a> = K>,
{
    let Some(rows) = view.table(definition)? else {
        return Ok(None);
    };
    let start = match after {
        Some(bytes) => match K::from_row_key(bytes) {
            Some(key) => std::ops::Bound::Excluded(key),
            None => return Err(view.damaged("an export cursor of the wrong shape".to_string())),
        },
        None => std::ops::Bound::Unbounded,
    };
    let range = rows
        .range::<K>((start, std::ops::Bound::Unbounded))
        .map_err(|e| view.error(e))?;
    for row in range {
        let (key, value) = row.map_err(|e| view.error(e))?;
        let key_bytes = row_key(key.value());
        push_row(chunk, table, &key_bytes, value.value());
        if chunk.len() >= max_bytes {
            return Ok(Some(key_bytes));
        }
    }
    Ok(None)
}

/// Appends every meta row (a few, always in one go).
fn meta_rows(view: &View, chunk: &mut Vec<u8>) -> Result<Option<Vec<u8>>, EngineError> {
    let Some(rows) = view.table(META)? else {
        return Ok(None);
    };
    for row in rows.iter().map_err(|e| view.error(e))? {
        let (name, value) = row.map_err(|e| view.error(e))?;
        push_row(chunk, Table::Meta, name.value().as_bytes(), value.value());
    }
    Ok(None)
}

fn push_row(chunk: &mut Vec<u8>, table: Table, key: &[u8], value: &[u8]) {
    chunk.push(table as u8);
    chunk.extend_from_slice(&(key.len() as u32).to_le_bytes());
    chunk.extend_from_slice(key);
    chunk.extend_from_slice(&(value.len() as u32).to_le_bytes());
    chunk.extend_from_slice(value);
}

/// One row of a chunk, borrowed.
struct ChunkRow<'a> {
    table: Table,
    key: &'a [u8],
    value: &'a [u8],
}

/// Splits a chunk into rows, checking each row's seal against its key and its tag against its
/// table. `Err` says what is wrong and where.
fn chunk_rows(mut chunk: &[u8]) -> Result<Vec<ChunkRow<'_>>, String> {
    let mut rows = Vec::new();
    while let Some((&table, rest)) = chunk.split_first() {
        let at = rows.len();
        let table =
            Table::from_byte(table).ok_or_else(|| format!("row {at}: unknown table {table}"))?;
        let (key, rest) =
            length_prefixed(rest).ok_or_else(|| format!("row {at}: key cut short"))?;
        let (value, rest) =
            length_prefixed(rest).ok_or_else(|| format!("row {at}: value cut short"))?;
        let (tag, _) = unseal(key, value).map_err(|e| format!("row {at}: {e}"))?;
        if !table.tags().contains(&tag) {
            return Err(format!("row {at}: a {tag:?} value in table {table:?}"));
        }
        rows.push(ChunkRow { table, key, value });
        chunk = rest;
    }
    Ok(rows)
}

fn length_prefixed(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let rest = bytes.get(4..)?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

impl Engine {
    /// Drops whatever an earlier transfer left staged: a new transfer starts empty. A
    /// defragmentation under way is given up: its copy would not carry the staged rows.
    pub fn clear_staged(&mut self) -> Result<(), EngineError> {
        self.abandon_defragment();
        let write = self.db.try_begin_write().map_err(|e| self.error(e))?;
        let deleted = [
            write.delete_table(STAGED_KEY),
            write.delete_table(STAGED_LEASE),
            write.delete_table(STAGED_MEMBERS),
            write.delete_table(STAGED_REMOVED),
            write.delete_table(STAGED_META),
        ];
        for result in deleted {
            result.map_err(|e| self.error(e))?;
        }
        write.commit().map_err(|e| self.error(e))
    }

    /// Stages one chunk of another engine's state (not durably: a crash loses staged rows, and
    /// the transfer starts over). A malformed or damaged chunk stages nothing. A defragmentation
    /// under way is given up: the copy holds the live tables only, so swapping it in would drop
    /// the rows staged so far and a later install would miss them.
    pub fn stage_chunk(&mut self, chunk: &[u8]) -> Result<(), EngineError> {
        self.abandon_defragment();
        let rows = chunk_rows(chunk).map_err(|what| EngineError::Transfer {
            path: self.path().to_path_buf(),
            what,
        })?;
        let mut write = self.db.try_begin_write().map_err(|e| self.error(e))?;
        write
            .set_durability(redb::Durability::None)
            .map_err(|e| self.error(e))?;
        stage_rows(&write, &rows).map_err(|e| match e {
            Staging::Engine(e) => self.error(e),
            Staging::Malformed(what) => EngineError::Transfer {
                path: self.path().to_path_buf(),
                what,
            },
        })?;
        write.commit().map_err(|e| self.error(e))
    }

    /// Whether rows of a transfer wait in the staging tables.
    pub fn has_staged(&self) -> Result<bool, EngineError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let empty = [
            table_is_empty(&read, STAGED_KEY),
            table_is_empty(&read, STAGED_LEASE),
            table_is_empty(&read, STAGED_MEMBERS),
            table_is_empty(&read, STAGED_REMOVED),
            table_is_empty(&read, STAGED_META),
        ];
        for result in empty {
            if !result.map_err(|e| self.error(e))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Replaces the live state with the staged one, durably, in one transaction. The staged
    /// state must be the one at `expected` (the snapshot raft installs); else nothing changes.
    pub fn install_staged(&mut self, expected: Applied) -> Result<(), EngineError> {
        // The new state did not come in a batch: a copy of the old one is of no use.
        self.abandon_defragment();
        let mut write = self.db.try_begin_write().map_err(|e| self.error(e))?;
        let staged = staged_applied(&write).map_err(|e| self.error(e))?;
        if staged != Some(expected) {
            return Err(EngineError::Transfer {
                path: self.path().to_path_buf(),
                what: format!(
                    "the staged state is at {staged:?}, not at the snapshot's index {} term {}",
                    expected.index, expected.term
                ),
            });
        }
        swap_in_staged(&write).map_err(|e| self.error(e))?;
        write.set_two_phase_commit(true);
        write.commit().map_err(|e| self.error(e))?;
        self.set_applied(expected);
        Ok(())
    }
}

enum Staging {
    Engine(redb::Error),
    Malformed(String),
}

impl<E: Into<redb::Error>> From<E> for Staging {
    fn from(error: E) -> Self {
        Staging::Engine(error.into())
    }
}

fn stage_rows(write: &redb::WriteTransaction, rows: &[ChunkRow<'_>]) -> Result<(), Staging> {
    let mut key = write.open_table(STAGED_KEY)?;
    let mut lease = write.open_table(STAGED_LEASE)?;
    let mut members = write.open_table(STAGED_MEMBERS)?;
    let mut removed = write.open_table(STAGED_REMOVED)?;
    let mut meta = write.open_table(STAGED_META)?;
    for (at, row) in rows.iter().enumerate() {
        let bad_key = || Staging::Malformed(format!("row {at}: a key of the wrong shape"));
        match row.table {
            Table::Key => {
                let revision = <(u64, u64)>::from_row_key(row.key).ok_or_else(bad_key)?;
                key.insert(revision, row.value)?;
            }
            Table::Lease => {
                let id = i64::from_row_key(row.key).ok_or_else(bad_key)?;
                lease.insert(id, row.value)?;
            }
            Table::Members => {
                let id = u64::from_row_key(row.key).ok_or_else(bad_key)?;
                members.insert(id, row.value)?;
            }
            Table::Removed => {
                let id = u64::from_row_key(row.key).ok_or_else(bad_key)?;
                removed.insert(id, row.value)?;
            }
            Table::Meta => {
                let name = std::str::from_utf8(row.key)
                    .ok()
                    .filter(|name| META_NAMES.contains(name))
                    .ok_or_else(bad_key)?;
                meta.insert(name, row.value)?;
            }
        }
    }
    Ok(())
}

/// The applied index and term the staged meta rows hold, if both are there.
fn table_is_empty<K: redb::Key + 'static>(
    read: &redb::ReadTransaction,
    table: TableDefinition<K, &[u8]>,
) -> Result<bool, redb::Error> {
    match read.open_table(table) {
        Ok(table) => Ok(table.is_empty()?),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(true),
        Err(error) => Err(error.into()),
    }
}

fn staged_applied(write: &redb::WriteTransaction) -> Result<Option<Applied>, redb::Error> {
    let meta = write.open_table(STAGED_META)?;
    let number = |name: &str| -> Result<Option<u64>, redb::Error> {
        let Some(value) = meta.get(name)? else {
            return Ok(None);
        };
        Ok(match unseal(name.as_bytes(), value.value()) {
            Ok((Tag::Number, bytes)) => bytes.try_into().ok().map(u64::from_le_bytes),
            _ => None,
        })
    };
    Ok(match (number(APPLIED_INDEX)?, number(APPLIED_TERM)?) {
        (Some(index), Some(term)) => Some(Applied { index, term }),
        _ => None,
    })
}

/// Deletes the live tables and renames the staged ones in their place.
fn swap_in_staged(write: &redb::WriteTransaction) -> Result<(), redb::Error> {
    // Every staged table exists (opened empty if no row came), so every rename has a source.
    drop(write.open_table(STAGED_KEY)?);
    drop(write.open_table(STAGED_LEASE)?);
    drop(write.open_table(STAGED_MEMBERS)?);
    drop(write.open_table(STAGED_REMOVED)?);
    write.delete_table(KEY)?;
    write.delete_table(LEASE)?;
    write.delete_table(MEMBERS)?;
    write.delete_table(MEMBERS_REMOVED)?;
    write.delete_table(META)?;
    write.rename_table(STAGED_KEY, KEY)?;
    write.rename_table(STAGED_LEASE, LEASE)?;
    write.rename_table(STAGED_MEMBERS, MEMBERS)?;
    write.rename_table(STAGED_REMOVED, MEMBERS_REMOVED)?;
    write.rename_table(STAGED_META, META)?;
    Ok(())
}

#[cfg(test)]
mod tests;
