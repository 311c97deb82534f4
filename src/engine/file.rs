//! Opening the engine's file: created under a temporary name and renamed into place once redb has
//! initialized it and it is durable (redb writes a new file's header and its magic number in two
//! steps, and a crash between them would leave a file it refuses to open), then opened with a
//! bounded cache. Every failure names the file. Before that, what an online defragmentation left
//! is settled (`defrag`): its copy is renamed into place if the power went out between the swap's
//! two renames, and its other files are removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::disk::{Disk, DiskError};

use super::backend::{EngineFile, FileBytes, Measured};
use super::defrag::settle_leftovers;
use super::DiskBackend;

/// The engine's file name in the member's directory.
pub const ENGINE_FILE: &str = "engine.redb";

/// Why the engine's file could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Disk(#[from] DiskError),
    #[error("storage engine file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("storage engine file {path}: {source}")]
    Engine {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("storage engine file {path} is damaged: {what}")]
    Damaged { path: PathBuf, what: String },
    #[error("storage engine file {path}: a state sent by another member was refused: {what}")]
    Transfer { path: PathBuf, what: String },
    #[error("storage engine file {path}: the thread writing a commit panicked")]
    CommitPanicked { path: PathBuf },
}

/// An open database and the engine's handle on its file.
pub(super) struct Opened {
    pub db: Db,
    pub file: Arc<dyn EngineFile>,
}

/// A redb database whose closing never lets a panic out. Closing commits (it reads and writes
/// pages), and redb can panic on a damaged page (a length read from a flipped bit) instead of
/// returning an error; a panic while a member's tasks are being dropped would abort the whole
/// process. The damage is reported by the next open, whose integrity check reads every page.
pub struct Db(Option<redb::Database>);

impl Db {
    pub fn new(db: redb::Database) -> Self {
        Db(Some(db))
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db")
    }
}

impl std::ops::Deref for Db {
    type Target = redb::Database;

    fn deref(&self) -> &redb::Database {
        self.0
            .as_ref()
            .expect("a database stays open until dropped")
    }
}

impl std::ops::DerefMut for Db {
    fn deref_mut(&mut self) -> &mut redb::Database {
        self.0
            .as_mut()
            .expect("a database stays open until dropped")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(db) = self.0.take() {
            // The panic hook has printed what redb found; the file is left for the next open.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(db)));
        }
    }
}

/// Opens the engine file at `path`, creating it (durably, with its directory entry) if it does
/// not exist. `disk` makes a handle on the disk; the database keeps one, creation uses others.
/// `cache_bytes` bounds redb's page cache.
pub fn open<D: Disk + Send + 'static>(
    disk: &dyn Fn() -> D,
    path: &Path,
    cache_bytes: usize,
) -> Result<Db, EngineError> {
    Ok(open_measured(disk, path, cache_bytes, &FileBytes::default())?.db)
}

/// [`open`], with `bytes` following the file's length from then on.
pub(super) fn open_measured<D: Disk + Send + 'static>(
    disk: &dyn Fn() -> D,
    path: &Path,
    cache_bytes: usize,
    bytes: &FileBytes,
) -> Result<Opened, EngineError> {
    settle_leftovers(&mut disk(), path)?;
    open_file(disk, path, cache_bytes, bytes)
}

/// [`open_measured`] without looking for a defragmentation's leftovers: for its own copy.
pub(super) fn open_file<D: Disk + Send + 'static>(
    disk: &dyn Fn() -> D,
    path: &Path,
    cache_bytes: usize,
    bytes: &FileBytes,
) -> Result<Opened, EngineError> {
    let exists = match disk().len(path) {
        Ok(_) => true,
        Err(DiskError::NotFound { .. }) => false,
        Err(error) => return Err(error.into()),
    };
    if !exists {
        create(disk, path)?;
    }
    open_existing(disk(), path, cache_bytes, bytes)
}

fn open_existing<D: Disk + Send + 'static>(
    disk: D,
    path: &Path,
    cache_bytes: usize,
    bytes: &FileBytes,
) -> Result<Opened, EngineError> {
    let backend = DiskBackend::new(disk, path);
    let file = backend.file();
    let db = redb::Database::builder()
        .set_cache_size(cache_bytes)
        // redb verifies page checksums only when it repairs; a plain open trusts the file, and a
        // flipped bit could then be read as wrong data (or make it panic). Checking reads the
        // whole file: correctness first, restart time to be won back (issue 9).
        .set_check_integrity_on_open(true)
        .create_with_backend(Measured::new(backend, bytes.clone()))
        .map_err(|source| EngineError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Opened {
        db: Db::new(db),
        file,
    })
}

/// Initializes an empty database beside `path` and renames it into place, durably.
fn create<D: Disk + Send + 'static>(disk: &dyn Fn() -> D, path: &Path) -> Result<(), EngineError> {
    let mut handle = disk();
    let temporary = with_suffix(path, ".tmp");
    match handle.remove(&temporary) {
        Ok(()) | Err(DiskError::NotFound { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    handle.create(&temporary)?;
    // A clean close leaves the file consistent and synced.
    drop(open_existing(disk(), &temporary, 0, &FileBytes::default())?.db);
    handle.sync(&temporary)?;
    handle.rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        handle.sync_dir(dir)?;
    }
    Ok(())
}

/// `path` with `suffix` added to its file name.
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
