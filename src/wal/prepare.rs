//! The next segment, made ahead of time: a file as long as a segment, filled with zeros and
//! durable, renamed into place when the current segment is full (etcd's file pipeline). Records
//! are then written over blocks the file system has already allocated, so the fsync after each
//! write has no file-size change to commit to its journal; and the zero-fill, which takes time
//! that grows with the segment size, happens off the writer's path.
//!
//! Zeros are also how the reader finds the end of a preallocated segment: a frame header can
//! never be all zeros (its length check is the crc32 of its length, never 0 for length 0).

use std::path::{Path, PathBuf};

use crate::disk::{Disk, DiskError};

/// The name of the prepared file in the WAL directory (not a segment name: open ignores it).
pub const PREPARED_NAME: &str = "next-segment.wal.tmp";

/// Zeros written per call while preparing; each chunk is made durable before the next one is
/// written. One fsync of the whole segment at the end would put all of it (64 MiB) in the
/// disk's queue at once, and every WAL fsync issued meanwhile waited behind it: the slowest
/// puts of a put load were those (70–80 ms on this project's machine; `BENCHMARKS.md`, session
/// 25). A chunk at a time, a WAL fsync waits behind at most one chunk.
const FILL_CHUNK_BYTES: u64 = 1024 * 1024;

/// Records a plain segment (one whose file grows with each append) holds before the writer asks
/// for a prepared file to move to: the first segment of a new WAL is plain, so a member under load
/// leaves it after about this much instead of after half a segment.
pub const LEAVE_PLAIN_AFTER_BYTES: u64 = 1024 * 1024;

/// Where the writer stands with the next segment's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NextSegment {
    /// None is ready or being made: the writer asks for one.
    Wanted,
    /// Handed out by [`super::Wal::segment_to_prepare`], not reported yet.
    Preparing,
    /// Complete and durable: the next rotation renames it into place.
    Ready,
    /// Preparing failed: rotations create plain segments until the next one asks again.
    Unavailable,
}

/// The prepared file's path in `dir`.
pub fn prepared_path(dir: &Path) -> PathBuf {
    dir.join(PREPARED_NAME)
}

/// Makes `path` a durable file of `len_bytes` zeros, replacing whatever was there (a file left by
/// a crash half way through an earlier preparation). Runs on any handle of the WAL's disk, off the
/// writer's thread in production.
pub fn prepare_segment_file<D: Disk + ?Sized>(
    disk: &mut D,
    path: &Path,
    len_bytes: u64,
) -> Result<(), DiskError> {
    match disk.remove(path) {
        Ok(()) | Err(DiskError::NotFound { .. }) => {}
        Err(error) => return Err(error),
    }
    disk.create(path)?;
    let zeros = vec![0; FILL_CHUNK_BYTES.min(len_bytes) as usize];
    let mut written = 0;
    while written < len_bytes {
        let chunk = (len_bytes - written).min(FILL_CHUNK_BYTES) as usize;
        disk.write_at(path, written, &zeros[..chunk])?;
        disk.sync(path)?;
        written += chunk as u64;
    }
    if len_bytes == 0 {
        disk.sync(path)?;
    }
    Ok(())
}
