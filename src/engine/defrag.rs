//! Online defragmentation: the engine's file is rewritten compactly while writes go on (etcd's
//! defragmentation stops the world, etcd-io/etcd#9222). A copy, `engine.redb.defrag`, is built
//! beside the live file in bounded steps: first a consistent view's rows in chunks (the state
//! transfer's [`Export`] and staging), then every batch committed to the live file since that
//! view, replayed in order. Once it has caught up, it is made durable and swapped in with two
//! renames — the live file aside to `engine.redb.retired-N`, the copy into place — and the
//! directory is synced. Views of the old file go on reading it under its new name; it is closed
//! and removed when the last of them ends.
//!
//! A crash at any point leaves a whole state: before the swap the live file is untouched; between
//! the renames `engine.redb` is missing while the copy and the retired file are both whole, and
//! [`settle_leftovers`] renames the copy into place at the next open; after it the copy is the
//! file. Every other leftover is removed at the next open.
//!
//! The batches waiting for the copy are bounded ([`MAX_QUEUED_BYTES`]): a defragmentation that
//! falls that far behind the writes gives up, and the live file is as it was.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::backend::{EngineFile, FileBytes};
use super::file::{open_file, with_suffix};
use super::store::{Applied, Batch, Engine, Files};
use super::transfer::Export;
use super::EngineError;
use crate::disk::{Disk, DiskError};

/// The copy's name: the live file's with this added.
const COPY_SUFFIX: &str = ".defrag";
/// A replaced file's name: the live file's with this and a number added.
const RETIRED_SUFFIX: &str = ".retired-";
/// The most bytes of batches that may wait for the copy to catch up.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;
/// Bytes copied between fsyncs of the copy: the page cache's writeback would otherwise hold all of
/// it for the swap's fsync, one stall as long as the file is big (measured: 1.1 s for 1 GB).
const SYNC_EVERY_BYTES: usize = 16 << 20;

/// What a step of a defragmentation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefragStep {
    /// None is under way.
    Idle,
    /// It moved on and has more to do.
    Working,
    /// The copy replaced the live file.
    Done,
}

/// Why a defragmentation did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DefragError {
    /// It gave up; the live file is as it was and still serves.
    #[error("etcdserver: defragmentation gave up: {0}")]
    Abandoned(String),
    /// The live file failed: the engine can no longer be trusted.
    #[error(transparent)]
    Storage(EngineError),
}

/// A defragmentation under way.
pub(super) struct Defrag {
    copy: Engine,
    /// Reads the state being copied; `None` once every row was copied and installed.
    export: Option<Export>,
    /// The entry the copied state ends at.
    copied: Applied,
    /// Batches committed to the live file since the copied state, oldest first.
    queue: VecDeque<Batch>,
    queued_bytes: usize,
    /// Bytes copied since the copy was last made durable.
    unsynced_bytes: usize,
    /// The most bytes that may wait in `queue` ([`MAX_QUEUED_BYTES`]).
    limit_bytes: usize,
    /// Why it must give up, found while committing (reported at the next step).
    abandoned: Option<String>,
}

/// A replaced file no view reads: closing it removes it.
pub struct RetiredFile(Retired);

impl RetiredFile {
    /// Closes the database and removes the file (a file left behind is removed at the next
    /// open). Blocks for as long as freeing the file's blocks takes.
    pub fn close(self) {
        let retired = self.0;
        let path = retired.file.path();
        drop(retired.db);
        let mut disk = (retired.disk)();
        let _ = disk.remove(&path);
        // The backend's own handles on the file go last: the file's blocks are freed here.
        drop(retired.file);
    }
}

impl std::fmt::Debug for RetiredFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RetiredFile")
            .field(&self.0.file.path())
            .finish()
    }
}

/// A file a defragmentation replaced, open until no view reads it.
pub(super) struct Retired {
    db: super::file::Db,
    readers: Arc<()>,
    file: Arc<dyn EngineFile>,
    disk: super::store::DiskMaker,
}

impl Engine {
    /// Whether this engine defragments online (a file on a disk) or in place (in memory).
    pub fn defragments_online(&self) -> bool {
        self.files.is_some()
    }

    /// Whether a defragmentation is under way.
    pub fn defragmenting(&self) -> bool {
        self.defrag.is_some()
    }

    /// Starts an online defragmentation of the state as last committed (the caller commits
    /// first); false if one is already under way. Refused while rows of a transfer are staged:
    /// the copy holds the live tables only. Errors leave nothing behind.
    pub fn start_defragment(&mut self) -> Result<bool, DefragError> {
        if self.defrag.is_some() {
            return Ok(false);
        }
        if self.has_staged().map_err(DefragError::Storage)? {
            return Err(DefragError::Abandoned(
                "a state sent by the leader is being received; try again once it is installed"
                    .to_string(),
            ));
        }
        let Some(files) = self.files.clone() else {
            return Err(DefragError::Abandoned(
                "an engine in memory is defragmented in place".to_string(),
            ));
        };
        let view = self.view().map_err(DefragError::Storage)?;
        let copied = view.applied().map_err(DefragError::Storage)?;
        let path = with_suffix(self.path(), COPY_SUFFIX);
        let abandon = |e: EngineError| DefragError::Abandoned(format!("{e}"));
        let mut disk = (files.disk)();
        match disk.remove(&path) {
            Ok(()) | Err(DiskError::NotFound { .. }) => {}
            Err(error) => return Err(abandon(error.into())),
        }
        let file_bytes = FileBytes::default();
        let opened = open_file(&|| (files.disk)(), &path, files.cache_bytes, &file_bytes)
            .map_err(abandon)?;
        let copy = Engine::of_file(opened, files.disk, &path, files.cache_bytes, file_bytes);
        self.defrag = Some(Box::new(Defrag {
            copy,
            export: Some(Export::new(Arc::new(view))),
            copied,
            queue: VecDeque::new(),
            queued_bytes: 0,
            unsynced_bytes: 0,
            limit_bytes: MAX_QUEUED_BYTES,
            abandoned: None,
        }));
        Ok(true)
    }

    /// Moves a defragmentation on by about `max_bytes` of rows or batches, or swaps the copy in
    /// once it has caught up.
    pub fn defragment_step(&mut self, max_bytes: usize) -> Result<DefragStep, DefragError> {
        let Some(defrag) = self.defrag.as_mut() else {
            return Ok(DefragStep::Idle);
        };
        if let Some(why) = defrag.abandoned.take() {
            self.abandon_defragment();
            return Err(DefragError::Abandoned(why));
        }
        let copied = match defrag.copy_more(max_bytes) {
            Ok(copied) => copied,
            Err(error) => {
                self.abandon_defragment();
                return Err(error);
            }
        };
        if !copied {
            return Ok(DefragStep::Working);
        }
        let Some(defrag) = self.defrag.take() else {
            unreachable!("a defragmentation was under way");
        };
        let copy_path = defrag.copy.path().to_path_buf();
        let disk = defrag.copy.files.as_ref().map(|files| files.disk.clone());
        match self.swap_in(*defrag) {
            Ok(()) => Ok(DefragStep::Done),
            Err(DefragError::Abandoned(why)) => {
                if let Some(disk) = disk {
                    let _ = disk().remove(&copy_path);
                }
                Err(DefragError::Abandoned(why))
            }
            Err(error) => Err(error),
        }
    }

    /// Gives a defragmentation up and removes its copy (a leftover is removed at the next open).
    pub fn abandon_defragment(&mut self) {
        if let Some(defrag) = self.defrag.take() {
            let path = defrag.copy.path().to_path_buf();
            let disk = defrag.copy.files.as_ref().map(|files| files.disk.clone());
            drop(defrag);
            if let Some(disk) = disk {
                let _ = disk().remove(&path);
            }
        }
    }

    /// Lowers the bound on what may wait for the copy under way.
    #[cfg(test)]
    pub(super) fn limit_defrag_queue(&mut self, bytes: usize) {
        if let Some(defrag) = self.defrag.as_mut() {
            defrag.limit_bytes = bytes;
        }
    }

    /// Hands a copy of `batch` to the defragmentation under way, if any.
    pub(super) fn queue_for_defrag(&mut self, batch: &Batch) {
        let Some(defrag) = self.defrag.as_mut() else {
            return;
        };
        if defrag.abandoned.is_some() {
            return;
        }
        let bytes = batch.bytes();
        if defrag.queued_bytes + bytes > defrag.limit_bytes {
            defrag.abandoned = Some(format!(
                "more than {} KiB were written while it copied the file; try again when the \
                 load is lower",
                defrag.limit_bytes >> 10
            ));
            defrag.queue.clear();
            defrag.queued_bytes = 0;
            return;
        }
        defrag.queued_bytes += bytes;
        defrag.queue.push_back(batch.clone());
    }

    /// Replaces the live file with the caught-up copy: the copy made durable, the live file
    /// renamed aside, the copy renamed into place, the directory synced.
    fn swap_in(&mut self, mut defrag: Defrag) -> Result<(), DefragError> {
        assert_eq!(
            defrag.copy.applied(),
            self.applied(),
            "the copy caught up with every batch"
        );
        let abandon = |e: String| DefragError::Abandoned(e);
        if let Err(error) = defrag.copy.commit(Batch::new(), true) {
            drop(defrag);
            return Err(abandon(error.to_string()));
        }
        let (Some(live), Some(copy)) = (self.files.clone(), defrag.copy.files.clone()) else {
            unreachable!("only an engine on a disk defragments online");
        };
        self.retired_count += 1;
        let retired_path = with_suffix(
            self.path(),
            &format!("{RETIRED_SUFFIX}{}", self.retired_count),
        );
        if let Err(error) = live.file.rename_to(&retired_path) {
            return Err(abandon(error.to_string()));
        }
        if let Err(error) = copy.file.rename_to(self.path()) {
            // Put the live file back; if that fails too, the next open finds the copy.
            return Err(match live.file.rename_to(self.path()) {
                Ok(()) => abandon(error.to_string()),
                Err(back) => DefragError::Storage(back.into()),
            });
        }
        if let Some(dir) = self.path().parent() {
            (live.disk)()
                .sync_dir(dir)
                .map_err(|e| DefragError::Storage(e.into()))?;
        }
        let copy_engine = defrag.copy;
        let old_db = std::mem::replace(&mut self.db, copy_engine.db);
        let old_readers = std::mem::replace(&mut self.readers, copy_engine.readers);
        self.file_bytes = copy_engine.file_bytes;
        self.files = Some(Files {
            file: copy.file,
            ..live.clone()
        });
        self.measure_size();
        self.retired.push(Retired {
            db: old_db,
            readers: old_readers,
            file: live.file,
            disk: live.disk,
        });
        self.close_retired();
        Ok(())
    }

    /// Moves every replaced file no view reads any more to those ready to close
    /// ([`Engine::take_closable`]).
    pub fn close_retired(&mut self) {
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|retired| Arc::strong_count(&retired.readers) == 1);
        self.retired = waiting;
        self.closable.extend(done.into_iter().map(RetiredFile));
    }

    /// Replaced files no view reads any more, to be closed where blocking is allowed: closing
    /// the last handle on a removed file frees its blocks, which takes as long as the file is
    /// big (measured: 450 ms for 1 GB on ext4).
    pub fn take_closable(&mut self) -> Vec<RetiredFile> {
        std::mem::take(&mut self.closable)
    }
}

impl Defrag {
    /// Copies up to about `max_bytes` of rows or queued batches; true once the copy holds the
    /// live file's state.
    fn copy_more(&mut self, max_bytes: usize) -> Result<bool, DefragError> {
        let abandon = |e: EngineError| DefragError::Abandoned(e.to_string());
        if self.unsynced_bytes >= SYNC_EVERY_BYTES {
            self.unsynced_bytes = 0;
            self.copy.commit(Batch::new(), true).map_err(abandon)?;
            return Ok(false);
        }
        if let Some(export) = self.export.as_mut() {
            match export.next_chunk(max_bytes).map_err(DefragError::Storage)? {
                Some(chunk) => {
                    self.unsynced_bytes += chunk.len();
                    self.copy.stage_chunk(&chunk).map_err(abandon)?;
                }
                None => {
                    self.copy.install_staged(self.copied).map_err(abandon)?;
                    self.export = None;
                }
            }
            return Ok(false);
        }
        let mut replayed = 0;
        while replayed < max_bytes {
            let Some(batch) = self.queue.pop_front() else {
                break;
            };
            let bytes = batch.bytes();
            replayed += bytes;
            self.queued_bytes -= bytes;
            self.unsynced_bytes += bytes;
            self.copy.commit(batch, false).map_err(abandon)?;
        }
        Ok(self.queue.is_empty())
    }
}

/// Settles what a defragmentation left beside the engine file at `path`: if the file is missing
/// while both the copy and a retired file are there, the power went out between the swap's two
/// renames and the (durable, caught-up) copy is renamed into place; then every other leftover
/// (`engine.redb.*`) is removed.
pub(super) fn settle_leftovers(disk: &mut dyn Disk, path: &Path) -> Result<(), EngineError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let names = disk.list(dir)?;
    let copy_name = format!("{name}{COPY_SUFFIX}");
    let retired_prefix = format!("{name}{RETIRED_SUFFIX}");
    let missing = !names.iter().any(|n| n == name);
    let copy_whole =
        names.contains(&copy_name) && names.iter().any(|n| n.starts_with(&retired_prefix));
    if missing && copy_whole {
        disk.rename(&dir.join(&copy_name), path)?;
        disk.sync_dir(dir)?;
    }
    let leftover_prefix = format!("{name}.");
    for leftover in disk.list(dir)? {
        if leftover.starts_with(&leftover_prefix) {
            match disk.remove(&dir.join(&leftover)) {
                Ok(()) | Err(DiskError::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(())
}

/// The path of the copy a defragmentation of the file at `path` builds.
pub fn copy_path(path: &Path) -> PathBuf {
    with_suffix(path, COPY_SUFFIX)
}

#[cfg(test)]
mod tests;
