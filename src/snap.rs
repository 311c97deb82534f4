//! Snapshot files: one raft `Snapshot` per `{term:016x}-{index:016x}.snap` file in a directory,
//! framed as `b"STETSNAP"`, version u32, crc32 u32, length u64, then the protobuf bytes (all LE).
//!
//! Saving is atomic (temp file, sync, rename, directory sync); loading picks the newest file that
//! checks out and reports the damaged ones it skipped, never returning a wrong snapshot.

use std::path::{Path, PathBuf};

use protobuf::Message;
use raft::eraftpb::Snapshot;

use crate::disk::{Disk, DiskError};

const MAGIC: &[u8; 8] = b"STETSNAP";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8;
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".snap.tmp";

/// An error from saving or loading snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    #[error("snapshot disk error: {0}")]
    Disk(#[from] DiskError),
    #[error("snapshot {} is damaged: {detail}", file.display())]
    Damaged { file: PathBuf, detail: Damage },
    #[error("snapshot could not be encoded: {0}")]
    Encode(#[from] protobuf::ProtobufError),
}

/// What is wrong with a snapshot file.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    #[error("file is {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("bad magic: expected {expected:?}, found {found:?}")]
    BadMagic { expected: Vec<u8>, found: Vec<u8> },
    #[error("unsupported version {found} (expected {VERSION})")]
    BadVersion { found: u32 },
    #[error("length mismatch: header says {expected} bytes, found {found}")]
    BadLength { expected: u64, found: u64 },
    #[error("crc mismatch: expected {expected:08x}, found {found:08x}")]
    CrcMismatch { expected: u32, found: u32 },
    #[error("protobuf does not parse: {0}")]
    Parse(protobuf::ProtobufError),
    #[error(
        "name says index {name_index} term {name_term}, content says index {index} term {term}"
    )]
    NameMismatch {
        name_index: u64,
        name_term: u64,
        index: u64,
        term: u64,
    },
}

/// The result of [`load_newest`]: the snapshot chosen, if any, and the newer files that were
/// skipped because they were damaged.
#[derive(Debug, Default)]
pub struct Loaded {
    pub snapshot: Option<Snapshot>,
    pub skipped: Vec<Skipped>,
}

/// A snapshot file that did not load, by the index and term its name gives.
#[derive(Debug)]
pub struct Skipped {
    pub index: u64,
    pub term: u64,
    pub error: SnapError,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// The file name of the snapshot at `(term, index)`.
pub fn file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}{SUFFIX}")
}

/// Parses a snapshot file name into `(term, index)`.
pub fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (term, index) = stem.split_once('-')?;
    Some((parse_hex16(term)?, parse_hex16(index)?))
}

fn parse_hex16(s: &str) -> Option<u64> {
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if s.len() != 16 || !s.as_bytes().iter().all(lower_hex) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Encodes a snapshot into the file format.
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, SnapError> {
    let body = snapshot.write_to_bytes()?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes the file format; never panics on any bytes.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, Damage> {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(Damage::TooShort { len: bytes.len() });
    };
    let (magic, rest) = header.split_at(8);
    if magic != MAGIC {
        return Err(Damage::BadMagic {
            expected: MAGIC.to_vec(),
            found: magic.to_vec(),
        });
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
    let version = u32_at(0);
    if version != VERSION {
        return Err(Damage::BadVersion { found: version });
    }
    let stored_crc = u32_at(4);
    let mut len = [0; 8];
    len.copy_from_slice(&rest[8..16]);
    let len = u64::from_le_bytes(len);
    if len != body.len() as u64 {
        return Err(Damage::BadLength {
            expected: len,
            found: body.len() as u64,
        });
    }
    let crc = crc32fast::hash(body);
    if crc != stored_crc {
        return Err(Damage::CrcMismatch {
            expected: stored_crc,
            found: crc,
        });
    }
    Snapshot::parse_from_bytes(body).map_err(Damage::Parse)
}

/// Saves `snapshot` atomically as `dir/{term}-{index}.snap` and returns its path.
pub fn save<D: Disk + ?Sized>(
    disk: &mut D,
    dir: &Path,
    snapshot: &Snapshot,
) -> Result<PathBuf, SnapError> {
    let unsynced = write_unsynced(disk, dir, snapshot)?;
    disk.sync(&unsynced.temp)?;
    publish(disk, &unsynced)
}

/// A snapshot file written under a temporary name and not yet durable: fsync `temp`, then
/// [`publish`] it. A crash before that leaves a `.tmp` file that loading ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsyncedFile {
    pub temp: PathBuf,
    pub path: PathBuf,
    pub dir: PathBuf,
}

/// The first step of [`save`]: encodes `snapshot` and writes it under a temporary name.
pub fn write_unsynced<D: Disk + ?Sized>(
    disk: &mut D,
    dir: &Path,
    snapshot: &Snapshot,
) -> Result<UnsyncedFile, SnapError> {
    let meta = snapshot.get_metadata();
    let name = file_name(meta.term, meta.index);
    let path = dir.join(&name);
    let temp = dir.join(format!("{name}.tmp"));
    let bytes = encode(snapshot)?;
    disk.create_dir_all(dir)?;
    match disk.remove(&temp) {
        Ok(()) | Err(DiskError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    disk.create(&temp)?;
    disk.append(&temp, &bytes)?;
    Ok(UnsyncedFile {
        temp,
        path,
        dir: dir.to_path_buf(),
    })
}

/// The last step of [`save`], once `file.temp` is fsynced: gives it its name, durably.
pub fn publish<D: Disk + ?Sized>(disk: &mut D, file: &UnsyncedFile) -> Result<PathBuf, SnapError> {
    disk.rename(&file.temp, &file.path)?;
    disk.sync_dir(&file.dir)?;
    Ok(file.path.clone())
}

/// The snapshot files in `dir` as `(index, term, path)`, newest (highest index, then term) first.
fn snapshot_files<D: Disk + ?Sized>(
    disk: &D,
    dir: &Path,
) -> Result<Vec<(u64, u64, PathBuf)>, SnapError> {
    let mut files: Vec<(u64, u64, PathBuf)> = disk
        .list(dir)?
        .into_iter()
        .filter_map(|name| {
            let (term, index) = parse_file_name(&name)?;
            Some((index, term, dir.join(name)))
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse((f.0, f.1)));
    Ok(files)
}

/// Loads the newest snapshot whose `(index, term)` is `acceptable` and whose file checks out.
/// Damaged files are skipped and reported in [`Loaded::skipped`].
pub fn load_newest<D: Disk + ?Sized>(
    disk: &D,
    dir: &Path,
    acceptable: &dyn Fn(u64, u64) -> bool,
) -> Result<Loaded, SnapError> {
    let mut loaded = Loaded::default();
    for (index, term, path) in snapshot_files(disk, dir)? {
        if !acceptable(index, term) {
            continue;
        }
        match load_file(disk, &path, index, term) {
            Ok(snapshot) => {
                loaded.snapshot = Some(snapshot);
                break;
            }
            Err(error) => loaded.skipped.push(Skipped { index, term, error }),
        }
    }
    Ok(loaded)
}

fn load_file<D: Disk + ?Sized>(
    disk: &D,
    path: &Path,
    name_index: u64,
    name_term: u64,
) -> Result<Snapshot, SnapError> {
    let bytes = disk.read(path)?;
    let damaged = |detail| SnapError::Damaged {
        file: path.to_path_buf(),
        detail,
    };
    let snapshot = decode(&bytes).map_err(damaged)?;
    let meta = snapshot.get_metadata();
    if (meta.index, meta.term) != (name_index, name_term) {
        return Err(damaged(Damage::NameMismatch {
            name_index,
            name_term,
            index: meta.index,
            term: meta.term,
        }));
    }
    Ok(snapshot)
}

/// Removes all but the newest `keep` snapshot files, and any leftover temp files.
pub fn purge<D: Disk + ?Sized>(disk: &mut D, dir: &Path, keep: usize) -> Result<(), SnapError> {
    let old = snapshot_files(disk, dir)?.into_iter().skip(keep);
    let mut removed = false;
    for (_, _, path) in old {
        disk.remove(&path)?;
        removed = true;
    }
    for name in disk.list(dir)? {
        if name.ends_with(TMP_SUFFIX) {
            disk.remove(&dir.join(name))?;
            removed = true;
        }
    }
    if removed {
        disk.sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{CrashFault, MemDisk};
    use proptest::prelude::*;
    use raft::eraftpb::SnapshotMetadata;
    use rand::SeedableRng;

    fn dir() -> PathBuf {
        PathBuf::from("/data/member/snap")
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..SnapshotMetadata::default()
        };
        meta.mut_conf_state().voters = vec![1, 2, 3];
        let mut snap = Snapshot {
            data: format!("state at {index}").into_bytes().into(),
            ..Snapshot::default()
        };
        snap.set_metadata(meta);
        snap
    }

    fn any_index(_: u64, _: u64) -> bool {
        true
    }

    #[test]
    fn saved_snapshots_load_newest_first() {
        let mut disk = MemDisk::new();
        for (index, term) in [(10, 1), (30, 2), (20, 2)] {
            save(&mut disk, &dir(), &snapshot(index, term)).unwrap();
        }
        let loaded = load_newest(&disk, &dir(), &any_index).unwrap();
        assert_eq!(loaded.snapshot, Some(snapshot(30, 2)));
        assert!(loaded.skipped.is_empty());
        let older = load_newest(&disk, &dir(), &|index, _| index <= 25).unwrap();
        assert_eq!(older.snapshot, Some(snapshot(20, 2)));
    }

    #[test]
    fn a_damaged_newest_snapshot_is_skipped_and_reported() {
        let mut disk = MemDisk::new();
        save(&mut disk, &dir(), &snapshot(10, 1)).unwrap();
        let newest = save(&mut disk, &dir(), &snapshot(20, 1)).unwrap();
        disk.corrupt_byte(&newest, HEADER_LEN + 3, 0xff).unwrap();
        let loaded = load_newest(&disk, &dir(), &any_index).unwrap();
        assert_eq!(loaded.snapshot, Some(snapshot(10, 1)));
        assert_eq!(loaded.skipped.len(), 1);
        let text = loaded.skipped[0].to_string();
        assert!(text.contains(&newest.display().to_string()), "{text}");
        assert!(text.contains("crc mismatch"), "{text}");
    }

    #[test]
    fn a_snapshot_whose_name_disagrees_with_its_content_is_not_loaded() {
        let mut disk = MemDisk::new();
        let path = save(&mut disk, &dir(), &snapshot(10, 1)).unwrap();
        let lying = dir().join(file_name(1, 50));
        disk.rename(&path, &lying).unwrap();
        let loaded = load_newest(&disk, &dir(), &any_index).unwrap();
        assert_eq!(loaded.snapshot, None);
        assert_eq!((loaded.skipped[0].index, loaded.skipped[0].term), (50, 1));
        assert!(matches!(
            loaded.skipped[0].error,
            SnapError::Damaged {
                detail: Damage::NameMismatch { .. },
                ..
            }
        ));
    }

    #[test]
    fn an_empty_or_missing_directory_has_no_snapshot() {
        let loaded = load_newest(&MemDisk::new(), &dir(), &any_index).unwrap();
        assert!(loaded.snapshot.is_none() && loaded.skipped.is_empty());
    }

    #[test]
    fn purge_keeps_the_newest_and_removes_temp_files() {
        let mut disk = MemDisk::new();
        for index in 1..=5 {
            save(&mut disk, &dir(), &snapshot(index * 10, 1)).unwrap();
        }
        disk.create(&dir().join("0000000000000001-0000000000000064.snap.tmp"))
            .unwrap();
        purge(&mut disk, &dir(), 2).unwrap();
        assert_eq!(
            disk.list(&dir()).unwrap(),
            vec![file_name(1, 40), file_name(1, 50)]
        );
    }

    #[test]
    fn a_crash_during_save_leaves_the_previous_snapshot() {
        let mut disk = MemDisk::new();
        save(&mut disk, &dir(), &snapshot(10, 1)).unwrap();
        disk.sync_dir(&dir()).unwrap();
        // Half a save: temp file written but never renamed.
        let tmp = dir().join(format!("{}.tmp", file_name(1, 20)));
        disk.create(&tmp).unwrap();
        disk.append(&tmp, &encode(&snapshot(20, 1)).unwrap())
            .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        disk.crash(CrashFault::TearUnsynced, &mut rng);
        let loaded = load_newest(&disk, &dir(), &any_index).unwrap();
        assert_eq!(loaded.snapshot, Some(snapshot(10, 1)));
        // The next save of the same snapshot replaces any leftover temp file.
        save(&mut disk, &dir(), &snapshot(20, 1)).unwrap();
        let loaded = load_newest(&disk, &dir(), &any_index).unwrap();
        assert_eq!(loaded.snapshot, Some(snapshot(20, 1)));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_returns_errors_not_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let _ = decode(&bytes);
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&VERSION.to_le_bytes());
            framed.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
            framed.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            framed.extend_from_slice(&bytes);
            let _ = decode(&framed);
        }

        #[test]
        fn any_single_byte_change_is_detected(at in any::<usize>(), xor in 1u8..=255) {
            let mut bytes = encode(&snapshot(7, 3)).unwrap();
            let at = at % bytes.len();
            bytes[at] ^= xor;
            prop_assert!(decode(&bytes).is_err());
        }

        #[test]
        fn snapshots_round_trip(index in any::<u64>(), term in any::<u64>()) {
            let snap = snapshot(index, term);
            prop_assert_eq!(decode(&encode(&snap).unwrap()).unwrap(), snap);
            prop_assert_eq!(parse_file_name(&file_name(term, index)), Some((term, index)));
        }
    }
}
