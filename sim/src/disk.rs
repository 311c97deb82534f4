//! Simulated disks that outlive their member's process: a `SharedDisk` is the member's `MemDisk`
//! behind a lock, kept by the world while madsim kills and restarts the member, so that a crash can
//! lose the member's unsynced bytes (or tear or flip them) and the restarted member reads the rest.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use stet::disk::{Disk, DiskError, MemDisk};

/// A member's disk, shared between the world (which crashes it) and the member (which uses it).
#[derive(Debug, Clone, Default)]
pub struct SharedDisk(Arc<Mutex<MemDisk>>);

impl SharedDisk {
    /// A fresh, empty disk.
    pub fn new() -> Self {
        SharedDisk::default()
    }

    /// The disk itself, for the world to crash or inspect.
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
}
