//! Writing the WAL: creating it, appending records to the current segment, syncing, rotating to a
//! new segment when the current one is full, and releasing segments that are no longer needed.

use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};

use super::prepare::{self, NextSegment};
use super::record::{self, Record};
use super::segment::{released_path, Segment};
use super::{Metadata, Wal, WalError, WalOptions};
use crate::disk::{Disk, DiskError};

impl<D: Disk> Wal<D> {
    /// Creates a new WAL in `dir` (creating the directory), with its first segment durable.
    ///
    /// Fails with [`WalError::AlreadyExists`] if `dir` already holds a segment.
    pub fn create(
        mut disk: D,
        dir: &Path,
        metadata: Metadata,
        opts: WalOptions,
    ) -> Result<Self, WalError> {
        if Self::exists(&disk, dir) {
            return Err(WalError::AlreadyExists {
                dir: dir.to_path_buf(),
            });
        }
        disk.create_dir_all(dir)?;
        let first = Segment::new(dir, 0, 0);
        disk.create(&first.path)?;
        let mut wal = Wal {
            disk,
            dir: dir.to_path_buf(),
            opts,
            metadata,
            hard_state: HardState::default(),
            segments: vec![first],
            segment_bytes: 0,
            current_preallocated: false,
            next_segment: NextSegment::Wanted,
            released: Vec::new(),
            crc: 0,
            last_index: 0,
            unsynced: false,
            failed: false,
            buf: Vec::new(),
        };
        wal.write_header()?;
        wal.sync_current_and_dir()?;
        Ok(wal)
    }

    /// Appends entries, then the hard state if given. The bytes are buffered, then written to the
    /// file by the next fsync's start ([`Wal::sync`], [`Wal::begin_sync`]) or once
    /// `WRITE_BUFFER_BYTES` wait; they are durable only after an fsync.
    pub fn append(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), WalError> {
        // Refuse an oversized entry before writing anything, so the WAL stays usable.
        if let Some(len) = entries
            .iter()
            .map(record::entry_record_len)
            .find(|&len| len > record::MAX_RECORD_LEN as usize)
        {
            return Err(WalError::RecordTooLarge { len });
        }
        self.guard(|wal| {
            for entry in entries {
                wal.push(&Record::Entry(entry.clone()))?;
                wal.last_index = entry.index;
                wal.rotate_if_full()?;
            }
            if let Some(hs) = hard_state {
                wal.push(&Record::HardState(hs.clone()))?;
                wal.hard_state = hs.clone();
                wal.rotate_if_full()?;
            }
            wal.flush_if_full()
        })
    }

    /// Changes the cluster ID in force (a `--force-new-cluster` start makes a new cluster): a
    /// metadata record after the entries so far, and the header of every later segment (not
    /// durable until [`Wal::sync`]).
    pub fn change_cluster_id(&mut self, cluster_id: u64) -> Result<(), WalError> {
        self.guard(|wal| {
            let metadata = Metadata {
                member_id: wal.metadata.member_id,
                cluster_id,
            };
            wal.push(&Record::Metadata(metadata))?;
            wal.metadata = metadata;
            wal.rotate_if_full()?;
            wal.flush_if_full()
        })
    }

    /// Records that a snapshot at `(index, term)` was saved (not durable until [`Wal::sync`]).
    pub fn save_snapshot_marker(&mut self, index: u64, term: u64) -> Result<(), WalError> {
        self.guard(|wal| {
            wal.push(&Record::SnapshotMarker { index, term })?;
            wal.rotate_if_full()?;
            wal.flush_if_full()
        })
    }

    /// Records that a snapshot received from the leader at `(index, term)` replaced the whole log:
    /// on replay, every entry recorded before it is dropped (not durable until [`Wal::sync`]).
    pub fn save_installed_snapshot(&mut self, index: u64, term: u64) -> Result<(), WalError> {
        self.guard(|wal| {
            wal.push(&Record::SnapshotInstalled { index, term })?;
            // The log now ends at the snapshot: a segment started next is named after it.
            wal.last_index = index;
            wal.rotate_if_full()?;
            wal.flush_if_full()
        })
    }

    /// Writes every buffered record to the file now (not durable until an fsync): what a killed
    /// process must not lose, though a machine crash may.
    pub fn write_buffered(&mut self) -> Result<(), WalError> {
        self.guard(|wal| wal.flush())
    }

    /// Makes everything appended so far durable; a no-op if nothing is unsynced.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.guard(|wal| {
            wal.flush()?;
            if wal.unsynced {
                let path = wal.current().path.clone();
                wal.disk.sync(&path)?;
                wal.unsynced = false;
            }
            Ok(())
        })
    }

    /// Starts making everything appended so far durable elsewhere (another handle, another
    /// thread): returns the file to fsync, or `None` when nothing is unsynced. What was appended
    /// before this call is durable once that fsync finishes; later appends wait for the next.
    pub fn begin_sync(&mut self) -> Result<Option<PathBuf>, WalError> {
        self.write_buffered()?;
        if !self.unsynced {
            return Ok(None);
        }
        self.unsynced = false;
        Ok(Some(self.current().path.clone()))
    }

    /// The file to prepare for the next segment and its length, when the writer wants one and
    /// none is being prepared: the caller runs [`prepare::prepare_segment_file`] on it (off the
    /// writer's path) and reports with [`segment_prepared`](Self::segment_prepared). Without it,
    /// rotations create plain segments.
    ///
    /// Only once the current segment is half full, or holds [`prepare::LEAVE_PLAIN_AFTER_BYTES`]
    /// if it is a plain file (which the writer leaves as soon as the prepared one is ready): a
    /// member that writes little never fills 64 MiB of zeros, and many members starting on one
    /// machine do not all write them at once.
    pub fn segment_to_prepare(&mut self) -> Option<(PathBuf, u64)> {
        let half = self.opts.segment_size_bytes / 2;
        let wanted_at = if self.current_preallocated {
            half
        } else {
            half.min(prepare::LEAVE_PLAIN_AFTER_BYTES)
        };
        if self.failed
            || self.end_of_records() < wanted_at
            || self.next_segment != NextSegment::Wanted
        {
            return None;
        }
        self.next_segment = NextSegment::Preparing;
        Some((
            prepare::prepared_path(&self.dir),
            self.opts.segment_size_bytes,
        ))
    }

    /// Reports how preparing the file from [`segment_to_prepare`](Self::segment_to_prepare)
    /// ended. After a failure no other is asked for until the next rotation.
    pub fn segment_prepared(&mut self, ok: bool) {
        assert_eq!(
            self.next_segment,
            NextSegment::Preparing,
            "a prepared segment reported without being asked for"
        );
        self.next_segment = if ok {
            NextSegment::Ready
        } else {
            NextSegment::Unavailable
        };
    }

    /// Takes the segments whose entries are all below `index` out of the log, oldest first,
    /// keeping the segment that contains `index` and every later one (and always the current
    /// segment): each is renamed to its [`released_path`] and, once the directory is synced, no
    /// longer part of the log. The caller removes the files ([`Wal::take_released`]) where that
    /// may take time: removing a 64 MiB file takes ext4 ~15 ms (`BENCHMARKS.md`, session 26).
    pub fn release_to(&mut self, index: u64) -> Result<(), WalError> {
        self.guard(|wal| {
            let keep_from = wal
                .segments
                .iter()
                .rposition(|s| s.first_index <= index)
                .unwrap_or(0);
            if keep_from == 0 {
                return Ok(());
            }
            // Oldest first, so a crash part-way leaves a gap-free run of segments.
            for _ in 0..keep_from {
                let path = wal.segments[0].path.clone();
                let released = released_path(&path);
                wal.disk.rename(&path, &released)?;
                wal.released.push(released);
                wal.segments.remove(0);
            }
            let dir = wal.dir.clone();
            wal.disk.sync_dir(&dir)?;
            Ok(())
        })
    }

    /// The files of segments released since the last call, no longer part of the log, for the
    /// caller to remove (a start removes any left: [`Wal::open`]).
    pub fn take_released(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.released)
    }

    /// Runs a write and marks the WAL failed if it errs: a half-written batch must not be extended.
    fn guard(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<(), WalError>,
    ) -> Result<(), WalError> {
        if self.failed {
            return Err(WalError::Failed {
                dir: self.dir.clone(),
            });
        }
        let result = op(self);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    pub(super) fn current(&self) -> &Segment {
        // `segments` is never empty: create and open both start with one, release keeps the last.
        &self.segments[self.segments.len() - 1]
    }

    /// Encodes a record into the buffer, chaining its crc.
    pub(super) fn push(&mut self, record: &Record) -> Result<(), WalError> {
        self.crc = record::encode(record, self.crc, &mut self.buf)
            .map_err(|len| WalError::RecordTooLarge { len })?;
        Ok(())
    }

    /// Writes the buffered records if `WRITE_BUFFER_BYTES` or more wait.
    fn flush_if_full(&mut self) -> Result<(), WalError> {
        if self.buf.len() >= super::WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered records after the last one in the current segment.
    pub(super) fn flush(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self.current().path.clone();
        self.disk.write_at(&path, self.segment_bytes, &self.buf)?;
        self.segment_bytes += self.buf.len() as u64;
        self.unsynced = true;
        self.buf.clear();
        Ok(())
    }

    /// Writes the records every segment starts with: the crc chain link, metadata, hard state.
    pub(super) fn write_header(&mut self) -> Result<(), WalError> {
        self.push(&Record::Crc(self.crc))?;
        self.push(&Record::Metadata(self.metadata))?;
        self.push(&Record::HardState(self.hard_state.clone()))?;
        self.flush()
    }

    pub(super) fn sync_current_and_dir(&mut self) -> Result<(), WalError> {
        let path = self.current().path.clone();
        self.disk.sync(&path)?;
        let dir = self.dir.clone();
        self.disk.sync_dir(&dir)?;
        self.unsynced = false;
        Ok(())
    }

    /// Where the current segment's records end, counting those still buffered.
    pub(super) fn end_of_records(&self) -> u64 {
        self.segment_bytes + self.buf.len() as u64
    }

    /// Starts the next segment when the current one is full, or when it is a plain file and a
    /// prepared one is ready: every fsync of a plain file also commits its new length to the file
    /// system's journal, which costs each fsync more and makes it wait behind other files'
    /// metadata (`BENCHMARKS.md`, session 26).
    fn rotate_if_full(&mut self) -> Result<(), WalError> {
        let leave_plain = !self.current_preallocated && self.next_segment == NextSegment::Ready;
        if self.end_of_records() > self.opts.segment_size_bytes || leave_plain {
            self.rotate()?;
        }
        Ok(())
    }

    /// Finishes the current segment durably (cut to its records: only the last segment may have
    /// zeros after them) and starts the next one, durably: the prepared file if it is ready, else
    /// a new empty file.
    fn rotate(&mut self) -> Result<(), WalError> {
        self.flush()?;
        let old = self.current().clone();
        if self.disk.len(&old.path)? > self.segment_bytes {
            self.disk.truncate(&old.path, self.segment_bytes)?;
        }
        self.disk.sync(&old.path)?;
        let next = Segment::new(&self.dir, old.seq + 1, self.last_index.saturating_add(1));
        self.current_preallocated = self.next_segment == NextSegment::Ready;
        if self.current_preallocated {
            self.disk
                .rename(&prepare::prepared_path(&self.dir), &next.path)?;
        } else {
            self.disk.create(&next.path)?;
        }
        if self.next_segment != NextSegment::Preparing {
            self.next_segment = NextSegment::Wanted;
        }
        self.segments.push(next);
        self.segment_bytes = 0;
        self.write_header()?;
        self.sync_current_and_dir()
    }
}

/// Removes the files of released segments ([`Wal::take_released`]) on any handle of the WAL's
/// disk, off the writer's thread in production; a file already gone is not an error (a start
/// hands over the files an earlier run did not get to).
pub fn remove_released_files<D: Disk + ?Sized>(
    disk: &mut D,
    paths: &[PathBuf],
) -> Result<(), DiskError> {
    for path in paths {
        match disk.remove(path) {
            Ok(()) | Err(DiskError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
