//! [`PowerCut`]: a disk that loses power after a set number of changes. The change that would
//! exceed the budget and every change after it fail, so the disk underneath holds exactly what it
//! held at the cut; crash it then to lose what was not synced. This is how a crash lands inside an
//! operation with no await in it, such as a storage engine's commit between its writes and fsyncs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{Disk, DiskError};

/// How many more changes the disk takes before the power goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Budget {
    Unlimited,
    Left(u64),
    /// Only changes to files of this name count (the power goes inside a change to one).
    LeftFor(u64, String),
    Cut,
}

/// A switch shared by every handle of one [`PowerCut`] disk; it can also make the disk full.
#[derive(Debug, Clone)]
pub struct Breaker(Arc<Mutex<Budget>>, Arc<AtomicBool>);

impl Default for Breaker {
    fn default() -> Self {
        Self::new()
    }
}

impl Breaker {
    /// A breaker with the power on.
    pub fn new() -> Self {
        Breaker(
            Arc::new(Mutex::new(Budget::Unlimited)),
            Arc::new(AtomicBool::new(false)),
        )
    }

    /// Fills the disk: from now on every change that needs space (an append, a write or a
    /// length past a file's end) fails with "no space left on device"; the rest goes on.
    pub fn fill(&self) {
        self.1.store(true, Ordering::SeqCst);
    }

    /// Frees space again.
    pub fn free(&self) {
        self.1.store(false, Ordering::SeqCst);
    }

    fn is_full(&self) -> bool {
        self.1.load(Ordering::SeqCst)
    }

    /// Cuts the power now.
    pub fn cut(&self) {
        *self.lock() = Budget::Cut;
    }

    /// Lets `changes` more changes through, then cuts the power.
    pub fn cut_after(&self, changes: u64) {
        *self.lock() = Budget::Left(changes);
    }

    /// Lets `changes` more changes to files named `file_name` through (changes to other files go
    /// on meanwhile), then cuts the power: a cut that lands inside one kind of operation, such
    /// as a storage engine commit.
    pub fn cut_after_changes_to(&self, changes: u64, file_name: &str) {
        *self.lock() = Budget::LeftFor(changes, file_name.to_string());
    }

    /// Whether the power is off.
    pub fn is_cut(&self) -> bool {
        *self.lock() == Budget::Cut
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Budget> {
        match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Takes one change to `path` from the budget; false if the power is (now) off.
    fn take(&self, path: &Path) -> bool {
        let mut budget = self.lock();
        match &mut *budget {
            Budget::Unlimited => true,
            Budget::LeftFor(_, file) if path.file_name() != Some(file.as_ref()) => true,
            Budget::Left(0) | Budget::LeftFor(0, _) | Budget::Cut => {
                *budget = Budget::Cut;
                false
            }
            Budget::Left(n) | Budget::LeftFor(n, _) => {
                *n -= 1;
                true
            }
        }
    }
}

/// A [`Disk`] that fails every change once its [`Breaker`] has cut the power, and every change
/// needing space while the breaker says the disk is full. Reads go on.
#[derive(Debug, Clone)]
pub struct PowerCut<D> {
    disk: D,
    breaker: Breaker,
}

impl<D: Disk> PowerCut<D> {
    /// `disk` with the power on, and the breaker that cuts it.
    pub fn new(disk: D) -> (Self, Breaker) {
        let breaker = Breaker::new();
        let disk = Self::with_breaker(disk, breaker.clone());
        (disk, breaker)
    }

    /// `disk` behind an existing breaker: every handle made this way loses power together.
    pub fn with_breaker(disk: D, breaker: Breaker) -> Self {
        PowerCut { disk, breaker }
    }

    fn change<T>(
        &mut self,
        path: &Path,
        op: impl FnOnce(&mut D) -> Result<T, DiskError>,
    ) -> Result<T, DiskError> {
        if !self.breaker.take(path) {
            return Err(DiskError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other("the disk lost power"),
            });
        }
        op(&mut self.disk)
    }

    /// A change that takes `needed` more bytes of `path` (fails with ENOSPC on a full disk).
    fn grow<T>(
        &mut self,
        path: &Path,
        needed: bool,
        op: impl FnOnce(&mut D) -> Result<T, DiskError>,
    ) -> Result<T, DiskError> {
        if needed && self.breaker.is_full() {
            return Err(DiskError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::from_raw_os_error(28),
            });
        }
        self.change(path, op)
    }

    /// Whether a file written up to `end` grows.
    fn grows(&mut self, path: &Path, end: u64) -> bool {
        self.disk.len(path).map_or(true, |len| end > len)
    }
}

impl<D: Disk> Disk for PowerCut<D> {
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), DiskError> {
        self.change(dir, |d| d.create_dir_all(dir))
    }
    fn create(&mut self, path: &Path) -> Result<(), DiskError> {
        self.change(path, |d| d.create(path))
    }
    fn append(&mut self, path: &Path, data: &[u8]) -> Result<(), DiskError> {
        self.grow(path, !data.is_empty(), |d| d.append(path, data))
    }
    fn sync(&mut self, path: &Path) -> Result<(), DiskError> {
        self.change(path, |d| d.sync(path))
    }
    fn sync_dir(&mut self, dir: &Path) -> Result<(), DiskError> {
        self.change(dir, |d| d.sync_dir(dir))
    }
    fn start_writeback(&mut self, path: &Path) -> Result<(), DiskError> {
        // Changes nothing a crash can see: not a point for a power cut.
        self.disk.start_writeback(path)
    }
    fn read(&self, path: &Path) -> Result<Vec<u8>, DiskError> {
        self.disk.read(path)
    }
    fn truncate(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
        self.change(path, |d| d.truncate(path, len))
    }
    fn rename(&mut self, from: &Path, to: &Path) -> Result<(), DiskError> {
        self.change(from, |d| d.rename(from, to))
    }
    fn remove(&mut self, path: &Path) -> Result<(), DiskError> {
        self.change(path, |d| d.remove(path))
    }
    fn list(&self, dir: &Path) -> Result<Vec<String>, DiskError> {
        self.disk.list(dir)
    }
    fn len(&mut self, path: &Path) -> Result<u64, DiskError> {
        self.disk.len(path)
    }
    fn allocated_bytes(&mut self, path: &Path) -> Result<u64, DiskError> {
        self.disk.allocated_bytes(path)
    }
    fn read_at(&mut self, path: &Path, offset: u64, out: &mut [u8]) -> Result<(), DiskError> {
        self.disk.read_at(path, offset, out)
    }
    fn write_at(&mut self, path: &Path, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let needed = self.grows(path, offset.saturating_add(data.len() as u64));
        self.grow(path, needed, |d| d.write_at(path, offset, data))
    }
    fn set_len(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
        let needed = self.grows(path, len);
        self.grow(path, needed, |d| d.set_len(path, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::SharedDisk;

    #[test]
    fn a_full_disk_refuses_growth_only_until_space_is_freed() {
        let shared = SharedDisk::new();
        let (mut disk, breaker) = PowerCut::new(shared.clone());
        let path = Path::new("/d/f");
        disk.create_dir_all(Path::new("/d")).unwrap();
        disk.create(path).unwrap();
        disk.append(path, b"abcd").unwrap();
        breaker.fill();
        let full = disk.append(path, b"e").unwrap_err();
        assert!(
            full.to_string().contains("No space left on device"),
            "{full}"
        );
        assert!(disk.write_at(path, 3, b"xy").is_err(), "past the end");
        assert!(disk.set_len(path, 10).is_err());
        disk.write_at(path, 0, b"AB").unwrap();
        disk.sync(path).unwrap();
        disk.truncate(path, 3).unwrap();
        assert_eq!(disk.read(path).unwrap(), b"ABc");
        breaker.free();
        disk.append(path, b"d").unwrap();
        assert_eq!(disk.read(path).unwrap(), b"ABcd");
    }

    #[test]
    fn changes_past_the_budget_fail_and_leave_the_disk_as_it_was() {
        let shared = SharedDisk::new();
        let (mut disk, breaker) = PowerCut::new(shared.clone());
        let path = Path::new("/d/f");
        disk.create_dir_all(Path::new("/d")).unwrap();
        disk.create(path).unwrap();
        breaker.cut_after(2);
        disk.append(path, b"a").unwrap();
        disk.write_at(path, 1, b"b").unwrap();
        assert!(!breaker.is_cut());
        assert!(disk.sync(path).is_err());
        assert!(breaker.is_cut());
        assert!(disk.append(path, b"c").is_err());
        assert_eq!(disk.read(path).unwrap(), b"ab");
        assert_eq!(shared.lock().sync_count, 0, "the sync never happened");
    }

    #[test]
    fn a_budget_for_one_file_counts_only_its_changes_then_cuts_everything() {
        let shared = SharedDisk::new();
        let (mut disk, breaker) = PowerCut::new(shared.clone());
        disk.create_dir_all(Path::new("/d")).unwrap();
        let (wal, engine) = (Path::new("/d/wal"), Path::new("/d/engine.redb"));
        disk.create(wal).unwrap();
        disk.create(engine).unwrap();
        breaker.cut_after_changes_to(1, "engine.redb");
        disk.append(wal, b"w").unwrap();
        disk.sync(wal).unwrap();
        disk.write_at(engine, 0, b"e").unwrap();
        assert!(!breaker.is_cut());
        assert!(disk.sync(engine).is_err());
        assert!(breaker.is_cut());
        assert!(disk.append(wal, b"x").is_err(), "every file loses power");
    }
}
