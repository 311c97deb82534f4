//! The `Disk` trait: the small set of file operations the WAL, the snapshot code and the storage
//! engine need, so the same code runs on a real disk (`server::fs_disk`) and on [`MemDisk`]
//! (`mem`), which keeps synced and unsynced bytes apart and can lose, tear or flip them on a
//! simulated crash.

mod mem;
mod power_cut;
mod shared;
mod zeros;

pub use mem::{CrashFault, MemDisk, SECTOR_BYTES};
pub use power_cut::{Breaker, PowerCut};
pub use shared::SharedDisk;
pub use zeros::all_zero;

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An error from a disk operation, naming the path involved.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: file already exists")]
    AlreadyExists { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// File operations in the shapes stet needs: append-only files (the WAL), files written in place
/// at offsets (the storage engine), both durable on `sync`, and directory entries (create, rename,
/// remove) that become durable on `sync_dir`.
pub trait Disk {
    /// Creates a directory and its parents (durable at once; done only at start-up).
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), DiskError>;
    /// Creates a new empty file; fails if it exists.
    fn create(&mut self, path: &Path) -> Result<(), DiskError>;
    /// Appends bytes to the end of a file.
    fn append(&mut self, path: &Path, data: &[u8]) -> Result<(), DiskError>;
    /// Makes a file's contents durable (fsync).
    fn sync(&mut self, path: &Path) -> Result<(), DiskError>;
    /// Makes a directory's entries durable (fsync of the directory).
    fn sync_dir(&mut self, dir: &Path) -> Result<(), DiskError>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> Result<Vec<u8>, DiskError>;
    /// Cuts a file to `len` bytes (used to drop a torn tail).
    fn truncate(&mut self, path: &Path, len: u64) -> Result<(), DiskError>;
    /// Renames a file, replacing any file at `to`.
    fn rename(&mut self, from: &Path, to: &Path) -> Result<(), DiskError>;
    /// Removes a file.
    fn remove(&mut self, path: &Path) -> Result<(), DiskError>;
    /// The names of the files in a directory, sorted; empty if the directory does not exist.
    fn list(&self, dir: &Path) -> Result<Vec<String>, DiskError>;
    /// A file's length in bytes.
    fn len(&mut self, path: &Path) -> Result<u64, DiskError>;
    /// The space a file takes on the device: its length less the holes never written (a file
    /// grown by `set_len` takes no space for the growth until it is written).
    fn allocated_bytes(&mut self, path: &Path) -> Result<u64, DiskError>;
    /// Fills `out` from a file at `offset`; fails if that runs past the end of the file.
    fn read_at(&mut self, path: &Path, offset: u64, out: &mut [u8]) -> Result<(), DiskError>;
    /// Writes `data` into a file at `offset`, growing it (with zeros before `offset`) if needed.
    fn write_at(&mut self, path: &Path, offset: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Sets a file's length: cuts it, or grows it with zeros. Durable on `sync`.
    fn set_len(&mut self, path: &Path, len: u64) -> Result<(), DiskError>;
    /// Asks the device to start writing a file's changed bytes, without waiting for them and
    /// without making them durable (Linux `sync_file_range`): a later `sync` then has less left
    /// to write, and holds the device's queue, with every other file's fsync behind it, for less
    /// time. A hint that changes nothing a crash can see; the default does nothing.
    fn start_writeback(&mut self, _path: &Path) -> Result<(), DiskError> {
        Ok(())
    }
    /// A handle that reads the file at `path` at offsets from any thread at once, without going
    /// through this disk, and goes on reading the same file if it is renamed (a real file's
    /// descriptor). `None`, the default: every read goes through the disk.
    fn shared_reader(&mut self, _path: &Path) -> Result<Option<Arc<dyn SharedRead>>, DiskError> {
        Ok(None)
    }
}

/// Reads of one file at offsets, from any thread ([`Disk::shared_reader`]).
pub trait SharedRead: Send + Sync {
    /// Fills `out` from the file at `offset`; fails if that runs past the end of the file. The
    /// error does not name the file: its owner knows what the file is called by now.
    fn read_at(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()>;
}

/// Makes handles on a disk whose clones are handles on the same disk (`SharedDisk`, the power
/// cut's disk): what an engine opens its files with.
pub fn handles<D>(disk: &D) -> impl Fn() -> D + Send + Sync + 'static
where
    D: Disk + Clone + Send + Sync + 'static,
{
    let disk = disk.clone();
    move || disk.clone()
}

/// `Disk` for a pointer to a disk: every operation goes to the disk pointed at.
macro_rules! forward_disk {
    ($pointer:ty) => {
        impl<D: Disk + ?Sized> Disk for $pointer {
            fn create_dir_all(&mut self, dir: &Path) -> Result<(), DiskError> {
                (**self).create_dir_all(dir)
            }
            fn create(&mut self, path: &Path) -> Result<(), DiskError> {
                (**self).create(path)
            }
            fn append(&mut self, path: &Path, data: &[u8]) -> Result<(), DiskError> {
                (**self).append(path, data)
            }
            fn sync(&mut self, path: &Path) -> Result<(), DiskError> {
                (**self).sync(path)
            }
            fn sync_dir(&mut self, dir: &Path) -> Result<(), DiskError> {
                (**self).sync_dir(dir)
            }
            fn read(&self, path: &Path) -> Result<Vec<u8>, DiskError> {
                (**self).read(path)
            }
            fn truncate(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
                (**self).truncate(path, len)
            }
            fn rename(&mut self, from: &Path, to: &Path) -> Result<(), DiskError> {
                (**self).rename(from, to)
            }
            fn remove(&mut self, path: &Path) -> Result<(), DiskError> {
                (**self).remove(path)
            }
            fn list(&self, dir: &Path) -> Result<Vec<String>, DiskError> {
                (**self).list(dir)
            }
            fn len(&mut self, path: &Path) -> Result<u64, DiskError> {
                (**self).len(path)
            }
            fn allocated_bytes(&mut self, path: &Path) -> Result<u64, DiskError> {
                (**self).allocated_bytes(path)
            }
            fn read_at(
                &mut self,
                path: &Path,
                offset: u64,
                out: &mut [u8],
            ) -> Result<(), DiskError> {
                (**self).read_at(path, offset, out)
            }
            fn write_at(&mut self, path: &Path, offset: u64, data: &[u8]) -> Result<(), DiskError> {
                (**self).write_at(path, offset, data)
            }
            fn set_len(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
                (**self).set_len(path, len)
            }
            fn start_writeback(&mut self, path: &Path) -> Result<(), DiskError> {
                (**self).start_writeback(path)
            }
            fn shared_reader(
                &mut self,
                path: &Path,
            ) -> Result<Option<Arc<dyn SharedRead>>, DiskError> {
                (**self).shared_reader(path)
            }
        }
    };
}

forward_disk!(&mut D);
forward_disk!(Box<D>);
