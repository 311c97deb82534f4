//! The write-ahead log: raft entries, hard states and snapshot markers in crc-chained records,
//! spread over segment files in one directory, written and replayed through the [`Disk`] trait.
//!
//! The WAL never interprets entry data. On open it repairs only a torn tail of the last segment;
//! any other damage is a [`WalError::Corrupt`] naming the file, offset and what was expected.
//!
//! Code map: `record` (frame codec, pure), `segment` (file names), `writer` (create, append, sync,
//! rotation, release), `reader` (open: replay, verify, repair), `prepare` (the next segment's
//! file, zero-filled ahead of time).
//!
//! Records are written at the end of the data with positional writes, so a segment may be longer
//! than its records: the rest is zeros (a prepared segment). A crash can leave any of the sectors
//! of an unsynced write unwritten, so in the last segment a frame that fails its checks and holds
//! an all-zero sector is a torn write, as are bytes other than zeros after the end.

use std::fmt;
use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};

use crate::disk::{Disk, DiskError};

pub mod prepare;
mod reader;
pub mod record;
pub mod segment;
mod writer;

#[cfg(test)]
mod tests;

pub use reader::{inspect, Inspection, SegmentReport};
pub use writer::remove_released_files;

use prepare::NextSegment;
use record::RecordKind;
use segment::Segment;

/// Who wrote this WAL: stored in every segment's header and checked to agree with the metadata in
/// force on open. A metadata record after a segment's header changes the cluster ID in force (a
/// `--force-new-cluster` start, [`Wal::change_cluster_id`]); the member ID never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metadata {
    pub member_id: u64,
    pub cluster_id: u64,
}

impl fmt::Display for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "member {:x} in cluster {:x}",
            self.member_id, self.cluster_id
        )
    }
}

/// Tuning for the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment is finished and a new one started once it grows past this size.
    pub segment_size_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What [`Wal::open`] read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// The metadata in force at the end of the log.
    pub metadata: Metadata,
    /// The last hard state recorded (default if none).
    pub hard_state: HardState,
    /// The log's entries in index order: a later write of an index replaces the earlier one and
    /// drops every entry after it (raft's truncation). An entry that jumps past the end of the log
    /// is accepted only right after a snapshot marker for the index before it, and then starts a
    /// fresh log (the snapshot replaced the old one).
    pub entries: Vec<Entry>,
    /// `(index, term)` of every snapshot marker, in log order.
    pub snapshot_markers: Vec<(u64, u64)>,
    /// The markers among them of the member's own snapshots (their segments below are released
    /// once the marker is written), in log order.
    pub own_snapshots: Vec<(u64, u64)>,
    /// The markers among them of snapshots received from the leader, in log order. An own
    /// snapshot taken right after one is received has the same index and term, and is in both.
    pub installed_snapshots: Vec<(u64, u64)>,
    /// The incomplete record open cut off the end of the last segment, if any.
    pub torn_tail: Option<TornTail>,
    /// Entries below this index were dropped while reading, at the marker of the snapshot the
    /// caller said it will load ([`Wal::open_from`]); `None` if none were.
    pub entries_dropped_below: Option<u64>,
    /// The bytes of entry data dropped there (0 if none were).
    pub entries_dropped_bytes: usize,
}

/// An incomplete record at the end of the last segment, removed by [`Wal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    /// Where the file was cut: the end of the last complete record.
    pub offset: u64,
    pub bytes_dropped: u64,
}

/// What is wrong with the bytes at some offset of a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("bad record length {len} (must be 1..={max})", max = record::MAX_RECORD_LEN)]
    BadLength { len: u32 },
    #[error(
        "record length {len} fails its check ({check:08x}): a damaged record header (or a WAL \
         written before stet's WAL format had length checks)"
    )]
    BadLengthCheck { len: u32, check: u32 },
    #[error("crc mismatch: expected {expected:08x}, found {found:08x}")]
    CrcMismatch { expected: u32, found: u32 },
    #[error("unknown record kind {kind}")]
    BadKind { kind: u8 },
    #[error("bad {kind:?} record: {detail}")]
    BadPayload {
        kind: RecordKind,
        detail: &'static str,
    },
    #[error("unknown entry type {found} (expected 0, 1 or 2)")]
    BadEntryType { found: u8 },
    #[error("crc chain break: expected previous crc {expected:08x}, found {found:08x}")]
    ChainBreak { expected: u32, found: u32 },
    #[error("segment must start with a crc record, found a {found:?} record")]
    MissingCrcRecord { found: RecordKind },
    #[error("missing segment: expected sequence number {expected:016x}, found {found:016x}")]
    SequenceGap { expected: u64, found: u64 },
    #[error("segment is empty but is not the last one")]
    EmptySegment,
    #[error("record cut short ({available} of {needed} bytes) in a segment that is not the last")]
    Incomplete { available: usize, needed: usize },
    #[error("metadata mismatch: expected {expected}, found {found}")]
    MetadataMismatch { expected: Metadata, found: Metadata },
    #[error("entry index gap: expected index at most {expected}, found {found}")]
    IndexGap { expected: u64, found: u64 },
}

/// An error from the WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal disk error: {0}")]
    Disk(#[from] DiskError),
    #[error("wal corrupt: {} at offset {offset}: {detail}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        detail: Corruption,
    },
    #[error("a wal already exists in {}", dir.display())]
    AlreadyExists { dir: PathBuf },
    #[error("no wal segments in {}", dir.display())]
    NotFound { dir: PathBuf },
    #[error("wal in {} has no metadata record", dir.display())]
    MissingMetadata { dir: PathBuf },
    #[error("wal file name {} is not a segment name (seq-firstindex.wal)", file.display())]
    BadSegmentName { file: PathBuf },
    #[error("wal record of {len} bytes is larger than the limit of {max} bytes", max = record::MAX_RECORD_LEN)]
    RecordTooLarge { len: usize },
    #[error("wal in {} is unusable after an earlier write error; reopen it", dir.display())]
    Failed { dir: PathBuf },
}

/// An open write-ahead log, appending to its last segment.
#[derive(Debug)]
pub struct Wal<D: Disk> {
    disk: D,
    dir: PathBuf,
    opts: WalOptions,
    metadata: Metadata,
    /// The latest hard state, repeated at the start of every new segment.
    hard_state: HardState,
    /// Oldest first; the last one is being appended to.
    segments: Vec<Segment>,
    /// Bytes of records in the current segment, including those not yet synced: where the next
    /// record goes (the file may be longer, zero-filled ahead of time).
    segment_bytes: u64,
    /// Whether the current segment's file was zero-filled to the segment size ahead of time
    /// (see `prepare`), so appends do not change its length. A plain one (the first segment, or
    /// one started when no prepared file was ready) is left as soon as a prepared file is.
    current_preallocated: bool,
    /// Whether the next segment's file is prepared (see `prepare`).
    next_segment: NextSegment,
    /// Files of segments released from the log, not yet handed to the caller to remove.
    released: Vec<PathBuf>,
    /// The crc of the last record written (seed of the next one).
    crc: u32,
    /// Index of the last entry written (names the next segment).
    last_index: u64,
    /// Whether the current segment has bytes that were not synced.
    unsynced: bool,
    /// Set after a failed write: the file may hold a partial batch, so refuse to go on.
    failed: bool,
    /// Records appended but not yet written to the file (at most about `WRITE_BUFFER_BYTES`):
    /// written in one go before an fsync, when full, or when the segment is finished.
    buf: Vec<u8>,
}

/// Appended records are written to the file once this many bytes wait, if no fsync asked first:
/// a burst of appends between two fsyncs becomes one write, not one per append.
pub const WRITE_BUFFER_BYTES: usize = 256 * 1024;

impl<D: Disk> Wal<D> {
    /// Whether `dir` holds any WAL segment.
    pub fn exists(disk: &D, dir: &Path) -> bool {
        disk.list(dir)
            .map(|names| names.iter().any(|n| segment::parse_name(n).is_some()))
            .unwrap_or(false)
    }

    /// The metadata in force: what new segments' headers carry.
    pub fn metadata(&self) -> Metadata {
        self.metadata
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Paths of the segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    pub fn disk(&self) -> &D {
        &self.disk
    }

    pub fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    pub fn into_disk(self) -> D {
        self.disk
    }
}
