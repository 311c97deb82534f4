//! redb's `StorageBackend` over the project's [`Disk`]: the engine's file is read and written in
//! place through the same trait as the WAL, so the production server runs redb on real files and
//! the simulator runs the very same engine on `MemDisk`, with its crash faults.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::disk::{Disk, DiskError, SharedRead};

/// One engine file on a disk. redb calls it from whichever thread runs a transaction; the lock
/// serializes those calls on the disk handle. The file can be renamed under it
/// ([`EngineFile::rename_to`]): an online defragmentation moves a live file aside and its copy into
/// place while readers of either go on.
pub struct DiskBackend<D> {
    file: Arc<Located<D>>,
}

/// A disk handle and the name the file has on it now.
struct Located<D> {
    inner: Mutex<(D, PathBuf)>,
    /// The disk's reader of the file, if it has one (a real file's descriptor): reads then take
    /// no lock, so readers on several threads and the writer do not wait for one another.
    /// Looked for at the first read.
    reader: OnceLock<Option<Arc<dyn SharedRead>>>,
    /// Bytes written since the file's last sync or writeback hint.
    written_bytes: AtomicU64,
}

/// Bytes of writes after which the backend asks the disk to start writing them out
/// ([`Disk::start_writeback`]). redb writes a non-durable commit's pages without an fsync and
/// the next durable commit (every `--snapshot-count` entries) fsyncs them all: 10,000 puts of
/// 1 KiB left ~10 MiB for that fsync, and the WAL's fsyncs waited 8–12 ms behind it
/// (`BENCHMARKS.md`, session 26). Started a MiB at a time, most of it is on the device by then.
const WRITEBACK_EVERY_BYTES: u64 = 1024 * 1024;

impl<D> Located<D> {
    fn lock(&self) -> MutexGuard<'_, (D, PathBuf)> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The engine's handle on its open file, beside redb's: its name, and renaming it.
pub trait EngineFile: Send + Sync {
    /// The file's name now.
    fn path(&self) -> PathBuf;
    /// Renames the file (replacing any file at `to`); redb's reads and writes follow it.
    fn rename_to(&self, to: &Path) -> Result<(), DiskError>;
    /// The space the file takes on the device ([`Disk::allocated_bytes`]).
    fn allocated_bytes(&self) -> Result<u64, DiskError>;
}

impl<D: Disk + Send> EngineFile for Located<D> {
    fn path(&self) -> PathBuf {
        self.lock().1.clone()
    }

    fn rename_to(&self, to: &Path) -> Result<(), DiskError> {
        let mut guard = self.lock();
        let (disk, path) = &mut *guard;
        disk.rename(path, to)?;
        *path = to.to_path_buf();
        Ok(())
    }

    fn allocated_bytes(&self) -> Result<u64, DiskError> {
        let mut guard = self.lock();
        let (disk, path) = &mut *guard;
        disk.allocated_bytes(path)
    }
}

impl<D: Disk + Send + 'static> DiskBackend<D> {
    /// The file at `path` on `disk`, which must exist.
    pub fn new(disk: D, path: &Path) -> Self {
        DiskBackend {
            file: Arc::new(Located {
                inner: Mutex::new((disk, path.to_path_buf())),
                reader: OnceLock::new(),
                written_bytes: AtomicU64::new(0),
            }),
        }
    }

    /// A handle that names and renames the file while redb uses it.
    pub fn file(&self) -> Arc<dyn EngineFile> {
        self.file.clone()
    }

    /// The disk's lock-free reader of the file, if it offers one (a failure to make one only
    /// sends reads through the disk).
    fn shared_reader(&self) -> Option<&Arc<dyn SharedRead>> {
        let reader = self.file.reader.get_or_init(|| {
            let mut guard = self.file.lock();
            let (disk, path) = &mut *guard;
            disk.shared_reader(path).ok().flatten()
        });
        reader.as_ref()
    }

    fn with<T>(&self, op: impl FnOnce(&mut D, &Path) -> Result<T, DiskError>) -> io::Result<T> {
        let mut guard = self.file.lock();
        let (disk, path) = &mut *guard;
        op(disk, path).map_err(to_io)
    }
}

impl<D> fmt::Debug for DiskBackend<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskBackend")
            .field("path", &self.file.lock().1)
            .finish_non_exhaustive()
    }
}

/// A disk error as redb takes it, keeping its kind and the path in its message.
fn to_io(error: DiskError) -> io::Error {
    let kind = match &error {
        DiskError::NotFound { .. } => io::ErrorKind::NotFound,
        DiskError::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
        DiskError::Io { source, .. } => source.kind(),
    };
    io::Error::new(kind, error.to_string())
}

impl<D: Disk + Send + 'static> redb::StorageBackend for DiskBackend<D> {
    fn len(&self) -> Result<u64, io::Error> {
        self.with(|disk, path| disk.len(path))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        if let Some(reader) = self.shared_reader() {
            // Named by the file's path now: it may have been renamed since the reader was made.
            return reader.read_at(offset, out).map_err(|source| {
                let path = self.file.lock().1.clone();
                to_io(DiskError::Io { path, source })
            });
        }
        self.with(|disk, path| disk.read_at(path, offset, out))
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.with(|disk, path| disk.set_len(path, len))
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.file.written_bytes.store(0, Ordering::Relaxed);
        self.with(|disk, path| disk.sync(path))
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let written = &self.file.written_bytes;
        self.with(|disk, path| {
            disk.write_at(path, offset, data)?;
            let since = written.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
            if since >= WRITEBACK_EVERY_BYTES {
                written.store(0, Ordering::Relaxed);
                // Only a hint: a failed write-out is reported by the sync that makes it durable.
                let _ = disk.start_writeback(path);
            }
            Ok(())
        })
    }
}

/// The length of a database's file as its backend last saw it, shared with the engine: redb
/// does not say how big its file is, and `Status.db_size` and the space quota need it.
#[derive(Debug, Clone, Default)]
pub struct FileBytes(Arc<AtomicU64>);

impl FileBytes {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, bytes: u64) {
        self.0.store(bytes, Ordering::Relaxed);
    }
}

/// A backend that keeps [`FileBytes`] current as redb grows, shrinks or measures the file.
#[derive(Debug)]
pub struct Measured<B> {
    inner: B,
    bytes: FileBytes,
}

impl<B> Measured<B> {
    pub fn new(inner: B, bytes: FileBytes) -> Self {
        Measured { inner, bytes }
    }
}

impl<B: redb::StorageBackend> redb::StorageBackend for Measured<B> {
    fn len(&self) -> Result<u64, io::Error> {
        let len = self.inner.len()?;
        self.bytes.set(len);
        Ok(len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)?;
        self.bytes.set(len);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)?;
        // A write past the end lengthens the file (redb sets the length first, but a backend
        // must stay right either way).
        let end = offset.saturating_add(data.len() as u64);
        if end > self.bytes.get() {
            self.bytes.set(end);
        }
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use redb::StorageBackend as _;

    use super::*;
    use crate::server::fs_disk::FsDisk;

    /// Every MiB written since the last sync or hint asks the disk to start writing it out; a
    /// sync starts the count over.
    #[test]
    fn writes_ask_for_writeback_every_mib_and_a_sync_starts_over() {
        use crate::disk::SharedDisk;
        let mut disk = SharedDisk::new();
        let path = PathBuf::from("/data/engine.redb");
        disk.create_dir_all(Path::new("/data")).unwrap();
        disk.create(&path).unwrap();
        let backend = DiskBackend::new(disk.clone(), &path);
        let quarter = vec![1u8; 256 * 1024];
        let hints = || disk.lock().writeback_count;
        for i in 0..3 {
            backend.write(i * quarter.len() as u64, &quarter).unwrap();
        }
        assert_eq!(hints(), 0, "under a MiB");
        backend.write(3 * quarter.len() as u64, &quarter).unwrap();
        assert_eq!(hints(), 1);
        for i in 0..3 {
            backend.write(i * quarter.len() as u64, &quarter).unwrap();
        }
        backend.sync_data().unwrap();
        backend.write(0, &quarter).unwrap();
        assert_eq!(hints(), 1, "the sync wrote out what the hint had not");
        backend.write(0, &vec![2u8; 3 * 1024 * 1024]).unwrap();
        assert_eq!(hints(), 2, "one hint for one large write");
    }

    #[test]
    fn reads_on_a_real_disk_take_no_lock_and_follow_the_file_through_a_rename() {
        // Files straight in the temporary directory, removed at the end: no directory left.
        let dir = std::env::temp_dir();
        let name = format!("stet-backend-{}-engine.redb", std::process::id());
        let mut disk = FsDisk::new();
        let path = dir.join(format!("{name}.copy"));
        disk.create(&path).unwrap();
        let backend = DiskBackend::new(FsDisk::new(), &path);
        backend.write(0, &[7u8; 4096]).unwrap();
        let mut page = [0u8; 4096];
        backend.read(0, &mut page[..1]).unwrap();
        // Once the reader is made, the lock the writes take, held, does not stop a read.
        let guard = backend.file.lock();
        backend.read(0, &mut page).unwrap();
        drop(guard);
        assert!(page.iter().all(|b| *b == 7));
        let moved = dir.join(&name);
        backend.file().rename_to(&moved).unwrap();
        backend.write(0, b"renamed").unwrap();
        backend.read(0, &mut page[..7]).unwrap();
        assert_eq!(&page[..7], b"renamed");
        let error = backend.read(4095, &mut page[..2]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let message = error.to_string();
        assert!(
            message.contains("engine.redb") && !message.contains(".copy"),
            "named by the file's path now: {message}"
        );
        disk.remove(&moved).unwrap();
    }
}
