//! The real [`Disk`]: `std::fs` with append handles and read-write handles (for writes in place)
//! cached per path, fsync for `sync`, and a directory fsync for `sync_dir`. Errors name the path
//! they concern.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::disk::{Disk, DiskError, SharedRead};

/// At most this many append handles stay open; past it the cache is emptied.
const MAX_OPEN_FILES: usize = 64;

/// A [`Disk`] over the local file system.
#[derive(Debug, Default)]
pub struct FsDisk {
    /// Append-mode handles of files written recently, so appends do not reopen the file.
    handles: HashMap<PathBuf, File>,
    /// Read-write handles for reads and writes at offsets (an append-mode handle would append
    /// every positional write).
    positional: HashMap<PathBuf, File>,
}

impl FsDisk {
    pub fn new() -> Self {
        Self::default()
    }

    fn handle(&mut self, path: &Path) -> Result<&mut File, DiskError> {
        if !self.handles.contains_key(path) {
            let file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| map_err(path, e))?;
            self.cache(path, file);
        }
        self.handles
            .get_mut(path)
            .ok_or_else(|| DiskError::NotFound {
                path: path.to_path_buf(),
            })
    }

    fn positional(&mut self, path: &Path) -> Result<&File, DiskError> {
        if !self.positional.contains_key(path) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| map_err(path, e))?;
            if self.positional.len() >= MAX_OPEN_FILES {
                self.positional.clear();
            }
            self.positional.insert(path.to_path_buf(), file);
        }
        self.positional
            .get(path)
            .ok_or_else(|| DiskError::NotFound {
                path: path.to_path_buf(),
            })
    }

    fn cache(&mut self, path: &Path, file: File) {
        if self.handles.len() >= MAX_OPEN_FILES {
            self.handles.clear();
        }
        self.handles.insert(path.to_path_buf(), file);
    }
}

fn map_err(path: &Path, source: io::Error) -> DiskError {
    let path = path.to_path_buf();
    match source.kind() {
        io::ErrorKind::NotFound => DiskError::NotFound { path },
        io::ErrorKind::AlreadyExists => DiskError::AlreadyExists { path },
        _ => DiskError::Io { path, source },
    }
}

impl Disk for FsDisk {
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), DiskError> {
        fs::create_dir_all(dir).map_err(|e| map_err(dir, e))?;
        // Make the new directory's entry in its parent durable too.
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => self.sync_dir(parent),
            _ => Ok(()),
        }
    }

    fn create(&mut self, path: &Path) -> Result<(), DiskError> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|e| map_err(path, e))?;
        self.cache(path, file);
        Ok(())
    }

    fn append(&mut self, path: &Path, data: &[u8]) -> Result<(), DiskError> {
        let result = self.handle(path)?.write_all(data);
        result.map_err(|e| map_err(path, e))
    }

    fn sync(&mut self, path: &Path) -> Result<(), DiskError> {
        let result = self.handle(path)?.sync_data();
        result.map_err(|e| map_err(path, e))
    }

    fn start_writeback(&mut self, path: &Path) -> Result<(), DiskError> {
        let fd = self.positional(path)?.as_raw_fd();
        // SAFETY: `fd` belongs to a `File` this disk keeps open for the whole call; the call
        // only starts writeback of the file's dirty pages (offset 0, length 0: to the end).
        let result = unsafe { libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if result != 0 {
            return Err(map_err(path, io::Error::last_os_error()));
        }
        Ok(())
    }

    fn sync_dir(&mut self, dir: &Path) -> Result<(), DiskError> {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| map_err(dir, e))
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>, DiskError> {
        fs::read(path).map_err(|e| map_err(path, e))
    }

    fn truncate(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
        let result = self.handle(path)?.set_len(len);
        result.map_err(|e| map_err(path, e))
    }

    fn rename(&mut self, from: &Path, to: &Path) -> Result<(), DiskError> {
        fs::rename(from, to).map_err(|e| map_err(from, e))?;
        for handles in [&mut self.handles, &mut self.positional] {
            handles.remove(to);
            if let Some(file) = handles.remove(from) {
                handles.insert(to.to_path_buf(), file);
            }
        }
        Ok(())
    }

    fn remove(&mut self, path: &Path) -> Result<(), DiskError> {
        self.handles.remove(path);
        self.positional.remove(path);
        fs::remove_file(path).map_err(|e| map_err(path, e))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>, DiskError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(map_err(dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| map_err(dir, e))?;
            let is_file = entry
                .file_type()
                .map_err(|e| map_err(&entry.path(), e))?
                .is_file();
            if is_file {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn len(&mut self, path: &Path) -> Result<u64, DiskError> {
        let metadata = self.positional(path)?.metadata();
        metadata.map(|m| m.len()).map_err(|e| map_err(path, e))
    }

    fn allocated_bytes(&mut self, path: &Path) -> Result<u64, DiskError> {
        use std::os::unix::fs::MetadataExt;
        let metadata = self.positional(path)?.metadata();
        // `st_blocks` counts 512-byte units whatever the file system's block size.
        metadata
            .map(|m| m.blocks().saturating_mul(512))
            .map_err(|e| map_err(path, e))
    }

    fn read_at(&mut self, path: &Path, offset: u64, out: &mut [u8]) -> Result<(), DiskError> {
        let result = self.positional(path)?.read_exact_at(out, offset);
        result.map_err(|e| map_err(path, e))
    }

    fn write_at(&mut self, path: &Path, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let result = self.positional(path)?.write_all_at(data, offset);
        result.map_err(|e| map_err(path, e))
    }

    fn set_len(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
        let result = self.positional(path)?.set_len(len);
        result.map_err(|e| map_err(path, e))
    }

    fn shared_reader(&mut self, path: &Path) -> Result<Option<Arc<dyn SharedRead>>, DiskError> {
        let file = File::open(path).map_err(|e| map_err(path, e))?;
        Ok(Some(Arc::new(ReadOnlyFile(file))))
    }
}

/// A file's own read-only descriptor: `pread` needs no lock, and the descriptor follows the file
/// through renames.
struct ReadOnlyFile(File);

impl SharedRead for ReadOnlyFile {
    fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(out, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{Metadata, Wal, WalOptions};
    use raft::eraftpb::{Entry, HardState};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let unique = format!(
                "stet-fsdisk-{name}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::UNIX_EPOCH
                    .elapsed()
                    .unwrap_or_default()
            );
            let path = std::env::temp_dir().join(unique);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn entries(from: u64, to: u64) -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                index,
                term: 1,
                data: vec![index as u8; 100].into(),
                ..Entry::default()
            })
            .collect()
    }

    const META: Metadata = Metadata {
        member_id: 1,
        cluster_id: 2,
    };

    #[test]
    fn files_append_sync_rename_and_list_sorted() {
        let tmp = TempDir::new("basic");
        let mut disk = FsDisk::new();
        let (a, b) = (tmp.0.join("b"), tmp.0.join("a"));
        disk.create(&a).unwrap();
        assert!(matches!(
            disk.create(&a),
            Err(DiskError::AlreadyExists { .. })
        ));
        disk.append(&a, b"hello ").unwrap();
        disk.append(&a, b"world").unwrap();
        disk.sync(&a).unwrap();
        disk.sync_dir(&tmp.0).unwrap();
        disk.rename(&a, &b).unwrap();
        disk.append(&b, b"!").unwrap();
        assert_eq!(disk.read(&b).unwrap(), b"hello world!");
        disk.create(&tmp.0.join("c")).unwrap();
        fs::create_dir(tmp.0.join("sub")).unwrap();
        assert_eq!(disk.list(&tmp.0).unwrap(), vec!["a", "c"]);
        disk.truncate(&b, 5).unwrap();
        disk.append(&b, b"!").unwrap();
        assert_eq!(disk.read(&b).unwrap(), b"hello!");
        disk.remove(&b).unwrap();
        assert!(matches!(disk.read(&b), Err(DiskError::NotFound { .. })));
        assert!(disk.list(&tmp.0.join("missing")).unwrap().is_empty());
    }

    #[test]
    fn a_writeback_hint_on_a_real_file_succeeds_and_names_a_missing_one() {
        let tmp = TempDir::new("writeback");
        let mut disk = FsDisk::new();
        let path = tmp.0.join("engine.redb");
        disk.create(&path).unwrap();
        disk.write_at(&path, 0, &[3u8; 65536]).unwrap();
        disk.start_writeback(&path).unwrap();
        disk.sync(&path).unwrap();
        assert_eq!(disk.read(&path).unwrap(), vec![3u8; 65536]);
        let error = disk.start_writeback(&tmp.0.join("gone.redb")).unwrap_err();
        assert!(matches!(error, DiskError::NotFound { .. }), "{error}");
    }

    #[test]
    fn files_are_read_and_written_in_place() {
        let tmp = TempDir::new("in-place");
        let mut disk = FsDisk::new();
        let path = tmp.0.join("engine");
        disk.create(&path).unwrap();
        disk.set_len(&path, 8192).unwrap();
        disk.write_at(&path, 4090, b"across a page").unwrap();
        disk.append(&path, b"!").unwrap();
        disk.sync(&path).unwrap();
        assert_eq!(disk.len(&path).unwrap(), 8193);
        let mut out = [0u8; 15];
        disk.read_at(&path, 4088, &mut out).unwrap();
        assert_eq!(&out, b"\0\0across a page");
        let mut tail = [0u8; 2];
        assert!(disk.read_at(&path, 8192, &mut tail).is_err());
        disk.set_len(&path, 4096).unwrap();
        assert_eq!(fs::read(&path).unwrap()[4090..], *b"across");
        disk.rename(&path, &tmp.0.join("moved")).unwrap();
        disk.write_at(&tmp.0.join("moved"), 0, b"x").unwrap();
        assert_eq!(fs::read(tmp.0.join("moved")).unwrap()[0], b'x');
    }

    #[test]
    fn a_shared_reader_reads_from_threads_and_follows_the_file_through_a_rename() {
        let tmp = TempDir::new("shared-reader");
        let mut disk = FsDisk::new();
        let path = tmp.0.join("engine");
        assert!(matches!(
            disk.shared_reader(&path),
            Err(DiskError::NotFound { .. })
        ));
        disk.create(&path).unwrap();
        disk.write_at(&path, 0, &[1u8; 8192]).unwrap();
        let reader = disk
            .shared_reader(&path)
            .unwrap()
            .expect("a real file has one");
        // Writes made after the reader opened are read back.
        disk.write_at(&path, 4096, &[2u8; 4096]).unwrap();
        std::thread::scope(|scope| {
            for (offset, byte) in [(0u64, 1u8), (4096, 2)] {
                let reader = &reader;
                scope.spawn(move || {
                    let mut page = [0u8; 4096];
                    reader.read_at(offset, &mut page).unwrap();
                    assert!(page.iter().all(|b| *b == byte));
                });
            }
        });
        let moved = tmp.0.join("moved");
        disk.rename(&path, &moved).unwrap();
        disk.write_at(&moved, 0, b"after").unwrap();
        let mut out = [0u8; 5];
        reader.read_at(0, &mut out).unwrap();
        assert_eq!(&out, b"after");
        let mut past_the_end = [0u8; 2];
        let error = reader.read_at(8191, &mut past_the_end).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_wal_round_trips_on_the_real_disk_across_segments() {
        let tmp = TempDir::new("wal");
        let dir = tmp.0.join("member").join("wal");
        let opts = WalOptions {
            segment_size_bytes: 4096,
        };
        let mut wal = Wal::create(FsDisk::new(), &dir, META, opts).unwrap();
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: 90,
            ..HardState::default()
        };
        wal.append(&entries(1, 100), Some(&hs)).unwrap();
        wal.sync().unwrap();
        assert!(wal.segment_paths().len() > 2);
        drop(wal);
        let (mut wal, rec) = Wal::open(FsDisk::new(), &dir, opts).unwrap();
        assert_eq!(rec.entries, entries(1, 100));
        assert_eq!(rec.hard_state, hs);
        assert_eq!(rec.metadata, META);
        wal.append(&entries(101, 110), None).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, rec) = Wal::open(FsDisk::new(), &dir, opts).unwrap();
        assert_eq!(rec.entries, entries(1, 110));
    }

    #[test]
    fn a_torn_tail_on_the_real_disk_is_cut_and_the_log_goes_on() {
        let tmp = TempDir::new("torn");
        let dir = tmp.0.join("wal");
        let opts = WalOptions::default();
        let mut wal = Wal::create(FsDisk::new(), &dir, META, opts).unwrap();
        wal.append(&entries(1, 10), None).unwrap();
        wal.sync().unwrap();
        let last = wal.segment_paths().pop().unwrap();
        drop(wal);
        let len = fs::metadata(&last).unwrap().len();
        let file = OpenOptions::new().write(true).open(&last).unwrap();
        file.set_len(len - 7).unwrap();
        let (mut wal, rec) = Wal::open(FsDisk::new(), &dir, opts).unwrap();
        assert_eq!(rec.entries, entries(1, 9));
        let torn = rec.torn_tail.unwrap();
        assert_eq!(torn.file, last);
        assert_eq!(torn.offset + torn.bytes_dropped, len - 7);
        wal.append(&entries(10, 12), None).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, rec) = Wal::open(FsDisk::new(), &dir, opts).unwrap();
        assert_eq!(rec.torn_tail, None);
        assert_eq!(rec.entries, entries(1, 12));
    }
}
