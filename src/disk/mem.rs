//! [`MemDisk`]: an in-memory disk with the durability rules of a real one. File bytes survive a
//! crash only once synced and directory entries only once their directory is synced; a crash
//! loses, tears or flips what was not. Appended tails tear at any byte; bytes written in place
//! (the storage engine's pages) survive per 512-byte sector, each keeping its old or its new
//! contents, and a file's length is its synced length or its current one.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use rand::Rng;

use super::{Disk, DiskError};

/// What a simulated crash does to the bytes that were not yet synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashFault {
    /// Every unsynced byte and every unsynced directory entry is lost.
    LoseUnsynced,
    /// Like `LoseUnsynced`, but a random prefix of each file's unsynced appended tail survives (a
    /// torn write), and of a file written in place each written sector its old or new bytes.
    TearUnsynced,
    /// Like `TearUnsynced`, and one random bit of one file's surviving bytes is flipped.
    FlipBit,
}

/// The unit in which bytes written in place survive a crash: each sector written since the last
/// sync keeps either its synced or its new contents, never a mix (and never bytes outside what was
/// written, as redb requires of a disk).
pub const SECTOR_BYTES: usize = 512;

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    /// The file's length at the last sync: what a crash keeps (or the current length, after
    /// writes in place).
    synced_len: usize,
    /// The synced bytes of each sector below `synced_len` that was written over in place or cut
    /// by a truncate since the last sync, by sector number: what a crash can bring back. Every
    /// other sector below `synced_len` still holds its synced bytes in `data`. Keeping only the
    /// changed sectors makes a write over synced bytes cost the sectors it writes, not a copy of
    /// the whole file.
    overwritten: BTreeMap<usize, Box<[u8]>>,
    /// Written in place (`write_at`, `set_len`) since the last sync: a crash then keeps the synced
    /// or the current length, and sector by sector the synced or the new bytes.
    in_place: bool,
    /// Sectors written since the last sync, while `in_place`.
    dirty: BTreeSet<usize>,
    /// Blocks of [`BLOCK_BYTES`] that hold written bytes: a file grown by `set_len` takes no
    /// space for the growth until it is written, as on a file system with sparse files.
    allocated: BTreeSet<usize>,
}

/// The unit in which `MemDisk` allocates space to files (a file system block).
pub const BLOCK_BYTES: usize = 4096;

impl Inode {
    /// The bytes that survive a crash: the first `synced_len` bytes as they were at the last sync.
    fn synced(&self) -> Vec<u8> {
        let mut synced = self.data[..self.synced_len.min(self.data.len())].to_vec();
        synced.resize(self.synced_len, 0);
        for (&sector, bytes) in &self.overwritten {
            let start = sector * SECTOR_BYTES;
            synced[start..start + bytes.len()].copy_from_slice(bytes);
        }
        synced
    }

    /// Whether the synced bytes are still the start of `data` (nothing synced was changed).
    fn synced_is_prefix(&self) -> bool {
        self.overwritten.is_empty() && self.data.len() >= self.synced_len
    }

    /// Keeps apart the synced bytes of the sectors in `sectors` that are about to change.
    fn save_synced_sectors(&mut self, sectors: std::ops::Range<usize>) {
        let synced_sectors = self.synced_len.div_ceil(SECTOR_BYTES);
        for sector in sectors.start..sectors.end.min(synced_sectors) {
            if self.overwritten.contains_key(&sector) {
                continue;
            }
            let start = sector * SECTOR_BYTES;
            let end = (start + SECTOR_BYTES).min(self.synced_len);
            // A sector not saved yet still holds its synced bytes in `data` (see `overwritten`).
            assert!(
                end <= self.data.len(),
                "sector {sector} of the synced bytes is missing"
            );
            self.overwritten
                .insert(sector, self.data[start..end].into());
        }
    }

    /// Writes `bytes` at `offset`, zero-filling any gap past the end.
    fn write_at(&mut self, offset: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let end = offset + bytes.len();
        self.save_synced_sectors(offset / SECTOR_BYTES..(end - 1) / SECTOR_BYTES + 1);
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset..end].copy_from_slice(bytes);
        self.allocated
            .extend(offset / BLOCK_BYTES..=(end - 1) / BLOCK_BYTES);
        self.in_place = true;
        self.dirty
            .extend(offset / SECTOR_BYTES..=(end - 1) / SECTOR_BYTES);
    }

    /// Cuts the file or grows it with zeros.
    fn set_len(&mut self, len: usize) {
        if len < self.data.len() {
            self.truncate(len);
        } else {
            self.data.resize(len, 0);
        }
        self.in_place = true;
    }

    /// Marks everything written so far as durable.
    fn sync(&mut self) {
        self.synced_len = self.data.len();
        self.overwritten.clear();
        self.in_place = false;
        self.dirty.clear();
    }

    /// The bytes a crash leaves: the synced ones, plus what `fault` lets survive of the rest.
    fn survivor(&self, fault: CrashFault, rng: &mut impl Rng) -> Vec<u8> {
        if fault == CrashFault::LoseUnsynced {
            return self.synced();
        }
        if self.in_place {
            return self.torn_in_place(rng);
        }
        let mut survived = self.synced();
        // Only an appended tail tears; bytes cut by a truncate come back whole.
        if self.synced_is_prefix() {
            let tail = &self.data[self.synced_len..];
            if !tail.is_empty() {
                let keep = rng.gen_range(0..=tail.len());
                survived.extend_from_slice(&tail[..keep]);
            }
        }
        survived
    }

    /// After writes in place: the synced or the current length, and each sector written since
    /// the sync with its synced or its new bytes.
    fn torn_in_place(&self, rng: &mut impl Rng) -> Vec<u8> {
        let len = if rng.gen_bool(0.5) {
            self.synced_len
        } else {
            self.data.len()
        };
        let mut survived = self.synced();
        survived.resize(len, 0);
        for &sector in &self.dirty {
            let start = sector * SECTOR_BYTES;
            let end = (start + SECTOR_BYTES).min(len).min(self.data.len());
            if start < end && rng.gen_bool(0.5) {
                survived[start..end].copy_from_slice(&self.data[start..end]);
            }
        }
        survived
    }

    /// Bytes of the blocks that hold written bytes (at most the file's length).
    fn allocated_bytes(&self) -> usize {
        (self.allocated.len() * BLOCK_BYTES).min(self.data.len())
    }

    /// Forgets the blocks past the end of the file.
    fn free_blocks_past_the_end(&mut self) {
        let blocks = self.data.len().div_ceil(BLOCK_BYTES);
        self.allocated.split_off(&blocks);
    }

    fn truncate(&mut self, len: usize) {
        if len < self.synced_len {
            // The synced bytes past `len` survive a crash: keep them apart from `data`.
            self.save_synced_sectors(len / SECTOR_BYTES..self.synced_len.div_ceil(SECTOR_BYTES));
        }
        self.data.truncate(len);
        self.free_blocks_past_the_end();
    }

    /// Sets one byte, durably: in `data` and in the synced bytes kept apart.
    fn corrupt_byte(&mut self, offset: usize, value: u8) {
        if let Some(byte) = self.data.get_mut(offset) {
            *byte = value;
        }
        let sector = offset / SECTOR_BYTES;
        if let Some(bytes) = self.overwritten.get_mut(&sector) {
            if let Some(byte) = bytes.get_mut(offset % SECTOR_BYTES) {
                *byte = value;
            }
        }
    }
}

/// How `MemDisk` names a file in its directory entries: the path's components joined by
/// separators, so that spellings of one path (`/d//f`, `/d/f/`) share a key, and a lookup compares
/// bytes rather than parsing both paths into components at every step of the tree.
fn key(path: &Path) -> Cow<'_, OsStr> {
    if is_plain(path.as_os_str().as_encoded_bytes()) {
        Cow::Borrowed(path.as_os_str())
    } else {
        Cow::Owned(path.components().collect::<PathBuf>().into_os_string())
    }
}

/// The entries of `map` directly in directory `dir`. Their keys all start with `dir`'s key and a
/// separator, so only that range of the map is walked.
fn entries_in<'a>(
    map: &'a BTreeMap<OsString, u64>,
    dir: &'a Path,
) -> impl Iterator<Item = (&'a OsString, u64)> + 'a {
    let mut prefix = key(dir).into_owned();
    let bytes = prefix.as_encoded_bytes();
    if !bytes.is_empty() && !bytes.ends_with(b"/") {
        prefix.push("/");
    }
    map.range::<OsStr, _>((Bound::Included(prefix.as_os_str()), Bound::Unbounded))
        .take_while(move |(path, _)| {
            path.as_encoded_bytes()
                .starts_with(prefix.as_encoded_bytes())
        })
        .filter(move |(path, _)| Path::new(path).parent() == Some(dir))
        .map(|(path, id)| (path, *id))
}

/// Whether a path's bytes already are its components joined by `/` (what [`key`] returns): no
/// empty or `.` component after the first, no trailing separator. Paths the WAL and snapshot code
/// build are; anything else (and every path off Unix) takes the slow, exact route.
fn is_plain(bytes: &[u8]) -> bool {
    if !cfg!(unix) {
        return false;
    }
    // The two bytes before the current one (0 before the start).
    let (mut before, mut last) = (0u8, 0u8);
    for &byte in bytes {
        if byte == b'/' && (last == b'/' || (last == b'.' && before == b'/')) {
            return false; // "//" or "/./"
        }
        (before, last) = (last, byte);
    }
    let trailing_separator = bytes.len() > 1 && last == b'/';
    let trailing_dot = bytes.len() > 1 && last == b'.' && before == b'/';
    !trailing_separator && !trailing_dot
}

/// An in-memory disk with the durability rules of a real one: file bytes survive a crash only once
/// synced, and directory entries only once their directory is synced.
#[derive(Debug, Clone, Default)]
pub struct MemDisk {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Directory entries by [`key`].
    entries: BTreeMap<OsString, u64>,
    durable_entries: BTreeMap<OsString, u64>,
    dirs: BTreeSet<PathBuf>,
    /// Number of `sync` and `sync_dir` calls, for tests and benchmarks.
    pub sync_count: u64,
    /// Number of `append` and `write_at` calls, for tests and benchmarks.
    pub write_count: u64,
    /// Number of `start_writeback` hints (which change nothing here), for tests.
    pub writeback_count: u64,
    /// The entry `inode_mut` found last, by key (the WAL appends to and syncs one file over and
    /// over). Forgotten whenever an entry is renamed, removed or lost in a crash; inode numbers
    /// are never reused, so while the entry stands it names the same inode.
    last_found: Option<(OsString, u64)>,
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn inode(&self, path: &Path) -> Result<&Inode, DiskError> {
        self.entries
            .get(&*key(path))
            .and_then(|id| self.inodes.get(id))
            .ok_or_else(|| DiskError::NotFound {
                path: path.to_path_buf(),
            })
    }

    fn inode_mut(&mut self, path: &Path) -> Result<&mut Inode, DiskError> {
        let id = match &self.last_found {
            // A path spelled as the remembered key is that key (a key is its own key).
            Some((last, id)) if last.as_os_str() == path.as_os_str() => *id,
            _ => self.find_and_remember(path)?,
        };
        self.inodes.get_mut(&id).ok_or_else(|| DiskError::NotFound {
            path: path.to_path_buf(),
        })
    }

    /// The inode of `path`'s entry, remembered for the next `inode_mut`.
    fn find_and_remember(&mut self, path: &Path) -> Result<u64, DiskError> {
        let name = key(path);
        let id = *self
            .entries
            .get(&*name)
            .ok_or_else(|| DiskError::NotFound {
                path: path.to_path_buf(),
            })?;
        self.last_found = Some((name.into_owned(), id));
        Ok(id)
    }

    /// Simulates a power failure: what was not synced is lost, torn or corrupted as `fault` says.
    pub fn crash(&mut self, fault: CrashFault, rng: &mut impl Rng) {
        self.entries = self.durable_entries.clone();
        self.last_found = None;
        let live: BTreeSet<u64> = self.entries.values().copied().collect();
        self.inodes.retain(|id, _| live.contains(id));
        for inode in self.inodes.values_mut() {
            inode.data = inode.survivor(fault, rng);
            inode.free_blocks_past_the_end();
            inode.sync();
        }
        if fault == CrashFault::FlipBit {
            let candidates: Vec<u64> = self
                .inodes
                .iter()
                .filter(|(_, inode)| !inode.data.is_empty())
                .map(|(id, _)| *id)
                .collect();
            if !candidates.is_empty() {
                let id = candidates[rng.gen_range(0..candidates.len())];
                if let Some(inode) = self.inodes.get_mut(&id) {
                    let byte = rng.gen_range(0..inode.data.len());
                    inode.data[byte] ^= 1 << rng.gen_range(0..8);
                    inode.sync();
                }
            }
        }
    }

    /// Total bytes held in files, synced or not.
    pub fn total_bytes(&self) -> usize {
        self.inodes.values().map(|inode| inode.data.len()).sum()
    }

    /// Overwrites one byte of a file, durably (to test corruption handling).
    pub fn corrupt_byte(&mut self, path: &Path, offset: usize, value: u8) -> Result<(), DiskError> {
        self.inode_mut(path)?.corrupt_byte(offset, value);
        Ok(())
    }
}

impl Disk for MemDisk {
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), DiskError> {
        for ancestor in dir.ancestors() {
            self.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn create(&mut self, path: &Path) -> Result<(), DiskError> {
        let name = key(path);
        if self.entries.contains_key(&*name) {
            return Err(DiskError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() && !self.dirs.contains(parent) {
                return Err(DiskError::NotFound {
                    path: parent.to_path_buf(),
                });
            }
        }
        self.next_inode += 1;
        self.inodes.insert(self.next_inode, Inode::default());
        self.entries.insert(name.into_owned(), self.next_inode);
        Ok(())
    }

    fn append(&mut self, path: &Path, data: &[u8]) -> Result<(), DiskError> {
        self.write_count += 1;
        let inode = self.inode_mut(path)?;
        if inode.in_place {
            let end = inode.data.len();
            inode.write_at(end, data);
        } else if !data.is_empty() {
            let start = inode.data.len();
            inode.data.extend_from_slice(data);
            let end = inode.data.len();
            inode
                .allocated
                .extend(start / BLOCK_BYTES..=(end - 1) / BLOCK_BYTES);
        }
        Ok(())
    }

    fn sync(&mut self, path: &Path) -> Result<(), DiskError> {
        self.sync_count += 1;
        self.inode_mut(path)?.sync();
        Ok(())
    }

    fn start_writeback(&mut self, path: &Path) -> Result<(), DiskError> {
        self.writeback_count += 1;
        self.inode_mut(path)?;
        Ok(())
    }

    fn sync_dir(&mut self, dir: &Path) -> Result<(), DiskError> {
        self.sync_count += 1;
        let gone: Vec<OsString> = entries_in(&self.durable_entries, dir)
            .map(|(path, _)| path.clone())
            .collect();
        for path in gone {
            self.durable_entries.remove(&path);
        }
        for (path, id) in entries_in(&self.entries, dir) {
            self.durable_entries.insert(path.clone(), id);
        }
        Ok(())
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>, DiskError> {
        Ok(self.inode(path)?.data.clone())
    }

    fn truncate(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
        let inode = self.inode_mut(path)?;
        inode.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> Result<(), DiskError> {
        self.last_found = None;
        let id = self
            .entries
            .remove(&*key(from))
            .ok_or_else(|| DiskError::NotFound {
                path: from.to_path_buf(),
            })?;
        self.entries.insert(key(to).into_owned(), id);
        Ok(())
    }

    fn remove(&mut self, path: &Path) -> Result<(), DiskError> {
        self.last_found = None;
        self.entries
            .remove(&*key(path))
            .map(|_| ())
            .ok_or_else(|| DiskError::NotFound {
                path: path.to_path_buf(),
            })
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>, DiskError> {
        Ok(entries_in(&self.entries, dir)
            .filter_map(|(path, _)| {
                let name = Path::new(path).file_name()?;
                Some(name.to_string_lossy().into_owned())
            })
            .collect())
    }

    fn len(&mut self, path: &Path) -> Result<u64, DiskError> {
        Ok(self.inode(path)?.data.len() as u64)
    }

    fn allocated_bytes(&mut self, path: &Path) -> Result<u64, DiskError> {
        Ok(self.inode(path)?.allocated_bytes() as u64)
    }

    fn read_at(&mut self, path: &Path, offset: u64, out: &mut [u8]) -> Result<(), DiskError> {
        let data = &self.inode_mut(path)?.data;
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|start| data.get(start..start.checked_add(out.len())?))
            .ok_or_else(|| past_the_end(path, offset, out.len(), data.len()))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn write_at(&mut self, path: &Path, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let offset = usize::try_from(offset).map_err(|_| too_large(path, offset))?;
        self.write_count += 1;
        self.inode_mut(path)?.write_at(offset, data);
        Ok(())
    }

    fn set_len(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
        let len = usize::try_from(len).map_err(|_| too_large(path, len))?;
        self.inode_mut(path)?.set_len(len);
        Ok(())
    }
}

fn past_the_end(path: &Path, offset: u64, wanted: usize, len: usize) -> DiskError {
    DiskError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("read of {wanted} bytes at offset {offset} past the end ({len} bytes)"),
        ),
    }
}

fn too_large(path: &Path, value: u64) -> DiskError {
    DiskError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("offset or length {value} is too large for this disk"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(7)
    }

    fn disk_with_file() -> (MemDisk, PathBuf) {
        let mut disk = MemDisk::new();
        let dir = PathBuf::from("/d");
        disk.create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        disk.create(&file).unwrap();
        (disk, file)
    }

    #[test]
    fn unsynced_bytes_are_lost_on_crash() {
        let (mut disk, file) = disk_with_file();
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.append(&file, b"durable").unwrap();
        disk.sync(&file).unwrap();
        disk.append(&file, b"volatile").unwrap();
        disk.crash(CrashFault::LoseUnsynced, &mut rng());
        assert_eq!(disk.read(&file).unwrap(), b"durable");
    }

    #[test]
    fn bytes_overwritten_in_place_come_back_after_a_crash_before_the_sync() {
        let (mut disk, file) = disk_with_file();
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.write_at(&file, 0, &[1; 2048]).unwrap();
        disk.sync(&file).unwrap();
        disk.write_at(&file, 600, &[2; 100]).unwrap();
        disk.set_len(&file, 4096).unwrap();
        let mut out = [0; 4];
        disk.read_at(&file, 698, &mut out).unwrap();
        assert_eq!(out, [2, 2, 1, 1]);
        disk.crash(CrashFault::LoseUnsynced, &mut rng());
        assert_eq!(disk.read(&file).unwrap(), vec![1; 2048]);
        disk.write_at(&file, 100, &[3]).unwrap();
        disk.sync(&file).unwrap();
        disk.crash(CrashFault::LoseUnsynced, &mut rng());
        assert_eq!(disk.read(&file).unwrap()[99..102], [1, 3, 1]);
    }

    #[test]
    fn a_torn_in_place_write_keeps_each_sector_whole_and_the_length_old_or_new() {
        let old = vec![1u8; 3 * SECTOR_BYTES];
        let mut seen_lengths = BTreeSet::new();
        let mut seen_sectors = BTreeSet::new();
        for seed in 0..64 {
            let (mut disk, file) = disk_with_file();
            disk.sync_dir(Path::new("/d")).unwrap();
            disk.write_at(&file, 0, &old).unwrap();
            disk.sync(&file).unwrap();
            // Sectors 0 and 1 change (across their border), 4 and 5 are new, 2 and 3 are zeros.
            disk.write_at(&file, 100, &vec![2; SECTOR_BYTES]).unwrap();
            disk.write_at(&file, 4 * SECTOR_BYTES as u64, &vec![3; 2 * SECTOR_BYTES])
                .unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            disk.crash(CrashFault::TearUnsynced, &mut rng);
            let after = disk.read(&file).unwrap();
            seen_lengths.insert(after.len());
            assert!(after.len() == old.len() || after.len() == 6 * SECTOR_BYTES);
            for (i, sector) in after.chunks(SECTOR_BYTES).enumerate() {
                let new: Vec<u8> = match i {
                    0 => [vec![1; 100], vec![2; SECTOR_BYTES - 100]].concat(),
                    1 => [vec![2; 100], vec![1; SECTOR_BYTES - 100]].concat(),
                    2 => vec![1; SECTOR_BYTES],
                    3 => vec![0; SECTOR_BYTES],
                    _ => vec![3; SECTOR_BYTES],
                };
                let before = if i < 3 {
                    vec![1; SECTOR_BYTES]
                } else {
                    vec![0; SECTOR_BYTES]
                };
                assert!(sector == new || sector == before, "sector {i} is torn");
                seen_sectors.insert((i, sector == new && new != before));
            }
        }
        assert_eq!(seen_lengths.len(), 2, "both lengths occur");
        assert!(seen_sectors.contains(&(0, true)) && seen_sectors.contains(&(0, false)));
    }

    #[test]
    fn a_read_past_the_end_fails_and_growth_reads_as_zeros() {
        let (mut disk, file) = disk_with_file();
        disk.set_len(&file, 10).unwrap();
        let mut out = [9u8; 10];
        disk.read_at(&file, 0, &mut out).unwrap();
        assert_eq!(out, [0; 10]);
        assert!(disk.read_at(&file, 5, &mut out).is_err());
        assert!(disk.read_at(&file, u64::MAX, &mut out).is_err());
    }

    #[test]
    fn a_created_file_vanishes_unless_its_directory_was_synced() {
        let (mut disk, file) = disk_with_file();
        disk.append(&file, b"x").unwrap();
        disk.sync(&file).unwrap();
        disk.crash(CrashFault::LoseUnsynced, &mut rng());
        assert!(matches!(disk.read(&file), Err(DiskError::NotFound { .. })));
    }

    #[test]
    fn a_rename_is_undone_by_a_crash_before_the_directory_sync() {
        let (mut disk, file) = disk_with_file();
        disk.sync_dir(Path::new("/d")).unwrap();
        let renamed = PathBuf::from("/d/g");
        disk.rename(&file, &renamed).unwrap();
        disk.crash(CrashFault::LoseUnsynced, &mut rng());
        assert!(disk.read(&file).is_ok());
        assert!(disk.read(&renamed).is_err());
    }

    #[test]
    fn a_torn_write_keeps_a_prefix_of_the_unsynced_tail() {
        for seed in 0..20 {
            let (mut disk, file) = disk_with_file();
            disk.sync_dir(Path::new("/d")).unwrap();
            disk.append(&file, b"abc").unwrap();
            disk.sync(&file).unwrap();
            disk.append(&file, b"defgh").unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            disk.crash(CrashFault::TearUnsynced, &mut rng);
            let data = disk.read(&file).unwrap();
            assert!(
                b"abcdefgh".starts_with(&data) && data.len() >= 3,
                "{data:?}"
            );
        }
    }

    #[test]
    fn a_truncate_into_synced_bytes_is_undone_by_a_crash_before_the_next_sync() {
        let (mut disk, file) = disk_with_file();
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.append(&file, b"abcdef").unwrap();
        disk.sync(&file).unwrap();
        disk.truncate(&file, 2).unwrap();
        disk.append(&file, b"XY").unwrap();
        disk.corrupt_byte(&file, 0, b'z').unwrap();
        assert_eq!(disk.read(&file).unwrap(), b"zbXY");
        let mut crashed = disk.clone();
        crashed.crash(CrashFault::TearUnsynced, &mut rng());
        assert_eq!(crashed.read(&file).unwrap(), b"zbcdef");
        disk.sync(&file).unwrap();
        disk.crash(CrashFault::LoseUnsynced, &mut rng());
        assert_eq!(disk.read(&file).unwrap(), b"zbXY");
    }

    /// The sectors kept apart for a crash match a whole copy of the file taken at each sync, over
    /// random mixes of writes in place, appends, truncates, growth and syncs.
    #[test]
    fn a_crash_brings_back_exactly_the_bytes_of_the_last_sync() {
        for seed in 0..200 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let (mut disk, file) = disk_with_file();
            disk.sync_dir(Path::new("/d")).unwrap();
            let mut synced_copy = Vec::new();
            for _ in 0..rng.gen_range(1..30) {
                let len = disk.len(&file).unwrap() as usize;
                let offset = rng.gen_range(0..=len + 700) as u64;
                let bytes = vec![rng.gen::<u8>(); rng.gen_range(1..1500)];
                match rng.gen_range(0..6) {
                    0 | 1 => disk.write_at(&file, offset, &bytes).unwrap(),
                    2 => disk.append(&file, &bytes).unwrap(),
                    3 => disk.truncate(&file, offset.min(len as u64)).unwrap(),
                    4 => disk.set_len(&file, offset).unwrap(),
                    _ => {
                        disk.sync(&file).unwrap();
                        synced_copy = disk.read(&file).unwrap();
                    }
                }
                if rng.gen_bool(0.2) {
                    let at = rng.gen_range(0..=len);
                    disk.corrupt_byte(&file, at, 0xA5).unwrap();
                    if let Some(byte) = synced_copy.get_mut(at) {
                        *byte = 0xA5;
                    }
                }
            }
            disk.crash(CrashFault::LoseUnsynced, &mut rng);
            assert_eq!(disk.read(&file).unwrap(), synced_copy, "seed {seed}");
        }
    }

    #[test]
    fn spellings_of_one_path_name_one_file() {
        let (mut disk, file) = disk_with_file();
        disk.append(Path::new("/d//f"), b"a").unwrap();
        disk.append(Path::new("/d/./f/"), b"b").unwrap();
        assert_eq!(disk.read(&file).unwrap(), b"ab");
        assert!(matches!(
            disk.create(Path::new("//d/f/.")),
            Err(DiskError::AlreadyExists { .. })
        ));
        disk.sync_dir(Path::new("/d/")).unwrap();
        disk.rename(Path::new("/d/./f"), Path::new("/d//g"))
            .unwrap();
        assert_eq!(disk.list(Path::new("//d")).unwrap(), vec!["g"]);
        disk.crash(CrashFault::LoseUnsynced, &mut rng());
        assert_eq!(disk.list(Path::new("/d")).unwrap(), vec!["f"]);
    }

    #[test]
    fn a_name_reused_after_rename_or_remove_names_the_new_file() {
        let (mut disk, file) = disk_with_file();
        disk.append(&file, b"old").unwrap();
        disk.rename(&file, Path::new("/d/g")).unwrap();
        assert!(disk.append(&file, b"x").is_err());
        disk.create(&file).unwrap();
        disk.append(&file, b"new").unwrap();
        assert_eq!(disk.read(Path::new("/d/g")).unwrap(), b"old");
        disk.remove(&file).unwrap();
        disk.create(&file).unwrap();
        disk.append(&file, b"newer").unwrap();
        assert_eq!(disk.read(&file).unwrap(), b"newer");
    }

    #[test]
    fn a_plain_path_is_its_own_key() {
        for path in [
            "/",
            "",
            ".",
            "..",
            "./a",
            "../a/b",
            "a/../b",
            "/data/wal/0-0.wal",
            "/a/.b",
            "/a/b.",
            "/a//b",
            "/a/./b",
            "/a/",
            "a/.",
            "/.",
            ".//a",
            "./",
            "/a/b/",
        ] {
            let rebuilt: PathBuf = Path::new(path).components().collect();
            assert_eq!(*key(Path::new(path)), *rebuilt.as_os_str(), "{path:?}");
            assert_eq!(
                is_plain(path.as_bytes()),
                rebuilt.as_os_str() == OsStr::new(path),
                "{path:?}"
            );
        }
    }

    #[test]
    fn space_is_allocated_to_written_blocks_only() {
        let mut disk = MemDisk::new();
        disk.create_dir_all(Path::new("/")).unwrap();
        let path = Path::new("/f");
        disk.create(path).unwrap();
        disk.set_len(path, 1 << 20).unwrap();
        assert_eq!(
            disk.allocated_bytes(path).unwrap(),
            0,
            "a hole takes no space"
        );
        disk.write_at(path, 3 * BLOCK_BYTES as u64 - 1, b"ab")
            .unwrap();
        assert_eq!(disk.allocated_bytes(path).unwrap(), 2 * BLOCK_BYTES as u64);
        disk.write_at(path, 3 * BLOCK_BYTES as u64, b"c").unwrap();
        assert_eq!(disk.allocated_bytes(path).unwrap(), 2 * BLOCK_BYTES as u64);
        disk.truncate(path, 3 * BLOCK_BYTES as u64).unwrap();
        assert_eq!(disk.allocated_bytes(path).unwrap(), BLOCK_BYTES as u64);
        disk.truncate(path, 100).unwrap();
        assert_eq!(disk.allocated_bytes(path).unwrap(), 0);

        let appended = Path::new("/g");
        disk.create(appended).unwrap();
        disk.append(appended, &[1; 10]).unwrap();
        assert_eq!(
            disk.allocated_bytes(appended).unwrap(),
            10,
            "at most the length"
        );
        disk.append(appended, &vec![1; BLOCK_BYTES]).unwrap();
        disk.sync(appended).unwrap();
        assert_eq!(
            disk.allocated_bytes(appended).unwrap(),
            BLOCK_BYTES as u64 + 10
        );
        // A crash that cuts the unsynced tail frees its blocks.
        disk.sync_dir(Path::new("/")).unwrap();
        disk.append(appended, &vec![1; 3 * BLOCK_BYTES]).unwrap();
        disk.crash(CrashFault::LoseUnsynced, &mut rng());
        assert_eq!(
            disk.allocated_bytes(appended).unwrap(),
            BLOCK_BYTES as u64 + 10
        );
    }

    #[test]
    fn list_returns_sorted_names_in_one_directory() {
        let (mut disk, _) = disk_with_file();
        disk.create(Path::new("/d/a")).unwrap();
        disk.create_dir_all(Path::new("/d/sub")).unwrap();
        disk.create(Path::new("/d/sub/z")).unwrap();
        assert_eq!(disk.list(Path::new("/d")).unwrap(), vec!["a", "f"]);
    }
}
