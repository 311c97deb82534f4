//! A [`MemDisk`] shared between handles: the simulator keeps a member's disk while madsim kills
//! and restarts the member, so that a crash can lose the member's unsynced bytes (or tear or flip
//! them) and the restarted member reads the rest; tests share one between a storage engine and
//! the code that crashes it.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Disk, DiskError, MemDisk};

/// One disk behind a lock; clones are handles to the same disk.
#[derive(Debug, Clone, Default)]
pub struct SharedDisk(Arc<Mutex<MemDisk>>);

impl SharedDisk {
    /// A fresh, empty disk.
    pub fn new() -> Self {
        SharedDisk::default()
    }

    /// The disk itself, to crash or inspect.
    pub fn lock(&self) -> MutexGuard<'_, MemDisk> {
        match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Disk for SharedDisk {
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), DiskError> {
        self.lock().create_dir_all(dir)
    }
    fn create(&mut self, path: &Path) -> Result<(), DiskError> {
        self.lock().create(path)
    }
    fn append(&mut self, path: &Path, data: &[u8]) -> Result<(), DiskError> {
        self.lock().append(path, data)
    }
    fn sync(&mut self, path: &Path) -> Result<(), DiskError> {
        self.lock().sync(path)
    }
    fn sync_dir(&mut self, dir: &Path) -> Result<(), DiskError> {
        self.lock().sync_dir(dir)
    }
    fn start_writeback(&mut self, path: &Path) -> Result<(), DiskError> {
        self.lock().start_writeback(path)
    }
    fn read(&self, path: &Path) -> Result<Vec<u8>, DiskError> {
        self.lock().read(path)
    }
    fn truncate(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
        self.lock().truncate(path, len)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> Result<(), DiskError> {
        self.lock().rename(from, to)
    }
    fn remove(&mut self, path: &Path) -> Result<(), DiskError> {
        self.lock().remove(path)
    }
    fn list(&self, dir: &Path) -> Result<Vec<String>, DiskError> {
        self.lock().list(dir)
    }
    fn len(&mut self, path: &Path) -> Result<u64, DiskError> {
        self.lock().len(path)
    }
    fn allocated_bytes(&mut self, path: &Path) -> Result<u64, DiskError> {
        self.lock().allocated_bytes(path)
    }
    fn read_at(&mut self, path: &Path, offset: u64, out: &mut [u8]) -> Result<(), DiskError> {
        self.lock().read_at(path, offset, out)
    }
    fn write_at(&mut self, path: &Path, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.lock().write_at(path, offset, data)
    }
    fn set_len(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
        self.lock().set_len(path, len)
    }
}
