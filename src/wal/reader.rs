//! Opening the WAL: list the segments, replay every record while checking the crc chain, segment
//! sequence and metadata, cut a torn tail off the last segment, and position the writer after it.
//! Files of segments released earlier and not yet removed are handed over to be removed.
//!
//! The end of the last segment is the end of its file or the first all-zero frame header (the
//! rest of a prepared segment). What follows the last whole record there is a torn write when it
//! is a frame cut short, a frame that fails its checks with an all-zero sector in it (a sector of
//! the write never reached the disk: etcd's torn-entry rule), or bytes other than zeros after the
//! end; the file is cut there. Any other bad frame is corruption.

use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};

use super::prepare::NextSegment;
use super::record::{self, Framed, Record, RecordKind};
use super::segment::{self, Segment};
use super::{Corruption, Metadata, Recovered, TornTail, Wal, WalError, WalOptions};
use crate::disk::{all_zero, Disk, SECTOR_BYTES};

impl<D: Disk> Wal<D> {
    /// Opens the WAL in `dir`: returns everything it recorded, having repaired a torn tail of the
    /// last segment (reported in [`Recovered::torn_tail`]); later appends go after it.
    pub fn open(disk: D, dir: &Path, opts: WalOptions) -> Result<(Self, Recovered), WalError> {
        Self::open_from(disk, dir, opts, None)
    }

    /// [`open`](Self::open) for a caller that will load the own snapshot `(index, term)`: at its
    /// marker, the entries read so far below its index are dropped instead of kept (as etcd reads
    /// its WAL from the snapshot it loads), so a segment of many entries is not held whole. What
    /// was dropped is told in [`Recovered::entries_dropped_below`].
    pub fn open_from(
        mut disk: D,
        dir: &Path,
        opts: WalOptions,
        snapshot: Option<(u64, u64)>,
    ) -> Result<(Self, Recovered), WalError> {
        let ReadBack {
            segments,
            reports,
            replay,
            metadata,
            torn_tail,
        } = read_back(&disk, dir, snapshot)?;
        let last_len = reports.last().map_or(0, |r| r.record_bytes);
        if let Some(torn) = &torn_tail {
            disk.truncate(&torn.file, torn.offset)?;
        }
        // What was read back counts as durable from now on (raft treats the whole log as
        // persisted), so make it so: after a process crash, bytes may still sit unsynced.
        if let Some(last) = segments.last() {
            disk.sync(&last.path)?;
        }
        // Zeros after the records (a prepared file) mean appends do not grow the file.
        let current_preallocated = match segments.last() {
            Some(last) => disk.len(&last.path)? > last_len,
            None => false,
        };
        // With no entry after it, a snapshot received from the leader ends the log, above or
        // below the last segment's name (written before the writer knew of it).
        let installed = replay.installed_snapshots.last().map(|&(index, _)| index);
        let last_index = match (replay.entries.last(), installed, segments.last()) {
            (Some(e), _, _) => e.index,
            (None, Some(index), _) => index,
            (None, None, Some(seg)) => seg.first_index.saturating_sub(1),
            (None, None, None) => 0,
        };
        // Segments released before a crash or stop whose files were not removed yet.
        let released = disk
            .list(dir)?
            .into_iter()
            .filter(|name| name.ends_with(segment::RELEASED_SUFFIX))
            .map(|name| dir.join(name))
            .collect();
        let mut wal = Wal {
            disk,
            dir: dir.to_path_buf(),
            opts,
            metadata,
            hard_state: replay.hard_state.clone(),
            segments,
            segment_bytes: last_len,
            current_preallocated,
            next_segment: NextSegment::Wanted,
            released,
            crc: replay.crc.unwrap_or(0),
            last_index,
            unsynced: false,
            failed: false,
            buf: Vec::new(),
        };
        if last_len == 0 {
            // The last segment was created but its header never made it to disk.
            wal.write_header()?;
            wal.sync_current_and_dir()?;
        }
        let recovered = Recovered {
            metadata,
            hard_state: replay.hard_state,
            entries: replay.entries,
            snapshot_markers: replay.snapshot_markers,
            own_snapshots: replay.own_snapshots,
            installed_snapshots: replay.installed_snapshots,
            torn_tail,
            entries_dropped_below: replay.dropped_below,
            entries_dropped_bytes: replay.dropped_bytes,
        };
        Ok((wal, recovered))
    }
}

/// Reads the WAL in `dir` without changing it: what [`Wal::open`] would recover, and what each
/// segment holds (for `stetutl wal verify` and `dump-logs`). The checks are open's own; a torn
/// tail is reported, not repaired.
pub fn inspect<D: Disk>(disk: &D, dir: &Path) -> Result<Inspection, WalError> {
    let ReadBack {
        reports,
        replay,
        metadata,
        torn_tail,
        ..
    } = read_back(disk, dir, None)?;
    Ok(Inspection {
        segments: reports,
        recovered: Recovered {
            metadata,
            hard_state: replay.hard_state,
            entries: replay.entries,
            snapshot_markers: replay.snapshot_markers,
            own_snapshots: replay.own_snapshots,
            installed_snapshots: replay.installed_snapshots,
            torn_tail,
            entries_dropped_below: replay.dropped_below,
            entries_dropped_bytes: replay.dropped_bytes,
        },
    })
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// Every segment, oldest first.
    pub segments: Vec<SegmentReport>,
    /// What opening the WAL would recover (entries after raft's truncations and snapshots).
    pub recovered: Recovered,
}

/// What one segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    pub path: PathBuf,
    pub seq: u64,
    /// The index its first new entry was expected at (from its name).
    pub first_index: u64,
    /// The file's length (a prepared segment's includes its zeros).
    pub file_bytes: u64,
    /// Bytes of whole records from the start.
    pub record_bytes: u64,
    pub records: u64,
    pub entries: u64,
}

/// Everything read back from the segments, before any repair.
struct ReadBack {
    segments: Vec<Segment>,
    reports: Vec<SegmentReport>,
    replay: Replay,
    metadata: Metadata,
    torn_tail: Option<TornTail>,
}

fn read_back<D: Disk>(
    disk: &D,
    dir: &Path,
    keep_from: Option<(u64, u64)>,
) -> Result<ReadBack, WalError> {
    let segments = list_segments(disk, dir)?;
    let mut replay = Replay {
        keep_from,
        ..Replay::default()
    };
    let mut torn_tail = None;
    let mut reports = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        // Entries slice their data out of this buffer instead of copying it; the buffer lives
        // as long as any of its entries (at most the WAL's size, which snapshots bound).
        let bytes = bytes::Bytes::from(disk.read(&seg.path)?);
        let is_last = i + 1 == segments.len();
        let end = replay.segment(&seg.path, &bytes, is_last)?;
        if end.torn {
            torn_tail = Some(TornTail {
                file: seg.path.clone(),
                offset: end.valid as u64,
                bytes_dropped: (bytes.len() - end.valid) as u64,
            });
        }
        reports.push(SegmentReport {
            path: seg.path.clone(),
            seq: seg.seq,
            first_index: seg.first_index,
            file_bytes: bytes.len() as u64,
            record_bytes: end.valid as u64,
            records: end.records,
            entries: end.entries,
        });
    }
    let Some(metadata) = replay.metadata else {
        return Err(WalError::MissingMetadata {
            dir: dir.to_path_buf(),
        });
    };
    Ok(ReadBack {
        segments,
        reports,
        replay,
        metadata,
        torn_tail,
    })
}

/// The segments in `dir`, by sequence number, checked to have no gap.
fn list_segments<D: Disk>(disk: &D, dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut segments = Vec::new();
    for name in disk.list(dir)? {
        if !name.ends_with(segment::SUFFIX) {
            continue;
        }
        let path = dir.join(&name);
        let (seq, first_index) =
            segment::parse_name(&name).ok_or(WalError::BadSegmentName { file: path.clone() })?;
        segments.push(Segment {
            seq,
            first_index,
            path,
        });
    }
    if segments.is_empty() {
        return Err(WalError::NotFound {
            dir: dir.to_path_buf(),
        });
    }
    segments.sort_by_key(|s| s.seq);
    for pair in segments.windows(2) {
        let expected = pair[0].seq.wrapping_add(1);
        if pair[1].seq != expected {
            return Err(WalError::Corrupt {
                file: pair[1].path.clone(),
                offset: 0,
                detail: Corruption::SequenceGap {
                    expected,
                    found: pair[1].seq,
                },
            });
        }
    }
    Ok(segments)
}

/// How a segment ends.
struct SegmentEnd {
    /// Bytes of whole records from the start.
    valid: usize,
    /// Whether a torn write follows them (to be cut off).
    torn: bool,
    /// Whole records, and how many of them are entries.
    records: u64,
    entries: u64,
}

/// Whether the frame header at the front of `rest` is all zeros: never written (a valid header
/// is never all zeros, see `prepare`).
fn is_unwritten_header(rest: &[u8]) -> bool {
    rest.iter().take(record::HEADER_LEN).all(|&b| b == 0)
}

/// Whether the frame at `pos` of `segment` lies partly in a 512-byte sector of the file that
/// never reached the disk: one that is all zeros from where the frame enters it to the sector's
/// end. (Sectors are written whole: bytes of a later record in the same sector mean the frame's
/// part of it was written too, so zeros there are data, and a bad crc there is corruption, not a
/// torn write.) Its extent is what its length says when the length passes its check, else its
/// header.
fn has_unwritten_sector(segment: &[u8], pos: usize) -> bool {
    let rest = &segment[pos..];
    let extent = record::claimed_frame_len(rest)
        .unwrap_or(record::HEADER_LEN)
        .min(rest.len());
    let mut start = pos;
    let end = pos + extent;
    while start < end {
        let sector_end = ((start / SECTOR_BYTES) + 1) * SECTOR_BYTES;
        if segment[start..sector_end.min(segment.len())]
            .iter()
            .all(|&b| b == 0)
        {
            return true;
        }
        start = sector_end.min(end);
    }
    false
}

/// The state rebuilt while replaying records in order.
#[derive(Default)]
struct Replay {
    /// The crc of the last record read; `None` before the first record.
    crc: Option<u32>,
    metadata: Option<Metadata>,
    hard_state: HardState,
    entries: Vec<Entry>,
    snapshot_markers: Vec<(u64, u64)>,
    own_snapshots: Vec<(u64, u64)>,
    installed_snapshots: Vec<(u64, u64)>,
    /// The index of a snapshot marker seen since the last entry (the next entry may jump past it).
    after_marker: Option<u64>,
    /// The own snapshot at whose marker the entries below it are dropped.
    keep_from: Option<(u64, u64)>,
    /// The index below which entries were dropped there.
    dropped_below: Option<u64>,
    /// The bytes of entry data dropped there.
    dropped_bytes: usize,
    /// The index of the last entry dropped while none is kept: the next one must follow it.
    last_dropped: Option<u64>,
}

impl Replay {
    /// Replays one segment: how many bytes of it are whole records, and whether a torn write
    /// follows them. Only the last segment may end in anything but its last record.
    fn segment(
        &mut self,
        path: &Path,
        bytes: &bytes::Bytes,
        is_last: bool,
    ) -> Result<SegmentEnd, WalError> {
        let share = |slice: &[u8]| {
            if slice.is_empty() {
                bytes::Bytes::new()
            } else {
                bytes.slice_ref(slice)
            }
        };
        let (mut records, mut entries) = (0, 0);
        let end = |valid, torn, records, entries| {
            Ok(SegmentEnd {
                valid,
                torn,
                records,
                entries,
            })
        };
        let mut pos = 0;
        while pos < bytes.len() {
            let corrupt = |detail| WalError::Corrupt {
                file: path.to_path_buf(),
                offset: pos as u64,
                detail,
            };
            let rest = &bytes[pos..];
            if is_last && is_unwritten_header(rest) {
                // The zero-filled rest of a prepared segment, or a write whose first sector
                // never made it (then bytes other than zeros follow).
                let torn = !all_zero(rest);
                return end(pos, torn, records, entries);
            }
            let frame = match record::read_frame(rest) {
                Ok(Framed::Frame(frame)) => frame,
                Ok(Framed::Incomplete) if is_last => return end(pos, true, records, entries),
                Ok(Framed::Incomplete) => {
                    return Err(corrupt(Corruption::Incomplete {
                        available: rest.len(),
                        needed: needed_len(rest),
                    }))
                }
                Err(_) if is_last && has_unwritten_sector(bytes, pos) => {
                    return end(pos, true, records, entries)
                }
                Err(detail) => return Err(corrupt(detail)),
            };
            let prev = match self.crc {
                Some(crc) => crc,
                None => seed_crc(frame.body).map_err(corrupt)?,
            };
            let computed = frame.computed_crc(prev);
            if computed != frame.stored_crc {
                if is_last && has_unwritten_sector(bytes, pos) {
                    return end(pos, true, records, entries);
                }
                return Err(corrupt(Corruption::CrcMismatch {
                    expected: computed,
                    found: frame.stored_crc,
                }));
            }
            let record = record::decode_body_with(frame.body, &share).map_err(corrupt)?;
            if pos == 0 && !matches!(record, Record::Crc(_)) {
                return Err(corrupt(Corruption::MissingCrcRecord {
                    found: record.kind(),
                }));
            }
            // A segment's header is its crc link, metadata and hard state.
            let in_header = records < 3;
            records += 1;
            entries += u64::from(matches!(record, Record::Entry(_)));
            self.apply(record, prev, in_header).map_err(corrupt)?;
            self.crc = Some(computed);
            pos += frame.total_len;
        }
        if pos == 0 && !is_last {
            return Err(WalError::Corrupt {
                file: path.to_path_buf(),
                offset: 0,
                detail: Corruption::EmptySegment,
            });
        }
        end(pos, false, records, entries)
    }

    fn apply(&mut self, record: Record, prev_crc: u32, in_header: bool) -> Result<(), Corruption> {
        match record {
            Record::Crc(found) if found != prev_crc => {
                return Err(Corruption::ChainBreak {
                    expected: prev_crc,
                    found,
                })
            }
            Record::Crc(_) => {}
            Record::Metadata(found) => self.apply_metadata(found, in_header)?,
            Record::Entry(entry) => {
                self.apply_entry(entry)?;
                self.after_marker = None;
            }
            Record::HardState(hs) => self.hard_state = hs,
            Record::SnapshotMarker { index, term } => {
                self.snapshot_markers.push((index, term));
                self.own_snapshots.push((index, term));
                self.after_marker = Some(index);
                if self.keep_from == Some((index, term)) {
                    self.drop_entries_below(index);
                }
            }
            Record::SnapshotInstalled { index, term } => {
                self.snapshot_markers.push((index, term));
                self.installed_snapshots.push((index, term));
                self.after_marker = Some(index);
                self.entries.clear();
                self.last_dropped = None;
            }
        }
        Ok(())
    }

    /// A segment header's metadata must be the one in force (a segment of another WAL breaks the
    /// crc chain too; this names the cause); a metadata record after the header changes the
    /// cluster ID in force, never the member ID.
    fn apply_metadata(&mut self, found: Metadata, in_header: bool) -> Result<(), Corruption> {
        match self.metadata {
            Some(expected) if in_header && expected != found => {
                Err(Corruption::MetadataMismatch { expected, found })
            }
            Some(expected) if expected.member_id != found.member_id => {
                Err(Corruption::MetadataMismatch { expected, found })
            }
            _ => {
                self.metadata = Some(found);
                Ok(())
            }
        }
    }

    /// Drops the entries below `index` (the one at it stays, to check the next one against).
    fn drop_entries_below(&mut self, index: u64) {
        let below = self.entries.partition_point(|e| e.index < index);
        if below == 0 {
            return;
        }
        self.last_dropped = Some(self.entries[below - 1].index);
        let dropped = self.entries.drain(..below);
        self.dropped_bytes += dropped.map(|e| e.data.len()).sum::<usize>();
        self.dropped_below = Some(index);
    }

    /// Adds an entry with raft's rules: rewriting an index drops it and everything after it.
    fn apply_entry(&mut self, entry: Entry) -> Result<(), Corruption> {
        let bounds = match (self.entries.first(), self.entries.last()) {
            (Some(first), Some(last)) => Some((first.index, last.index)),
            // Every entry read so far was dropped: the log goes on after the last of them.
            _ => self.last_dropped.map(|last| (last + 1, last)),
        };
        let Some((first, last)) = bounds else {
            self.entries.push(entry);
            return Ok(());
        };
        if entry.index < first {
            self.entries.clear();
        } else if entry.index <= last {
            self.entries.truncate((entry.index - first) as usize);
        } else if entry.index != last + 1 {
            if self.after_marker.map(|i| i.wrapping_add(1)) != Some(entry.index) {
                return Err(Corruption::IndexGap {
                    expected: last + 1,
                    found: entry.index,
                });
            }
            // A snapshot replaced the log; the entries before it are superseded.
            self.entries.clear();
        }
        self.entries.push(entry);
        Ok(())
    }
}

/// The crc the chain starts from: the payload of the log's first record, which must be a crc record.
fn seed_crc(body: &[u8]) -> Result<u32, Corruption> {
    let (&kind_byte, payload) = body.split_first().ok_or(Corruption::BadLength { len: 0 })?;
    let kind = RecordKind::from_byte(kind_byte).ok_or(Corruption::BadKind { kind: kind_byte })?;
    if kind != RecordKind::Crc {
        return Err(Corruption::MissingCrcRecord { found: kind });
    }
    match payload {
        [a, b, c, d] => Ok(u32::from_le_bytes([*a, *b, *c, *d])),
        _ => Err(Corruption::BadPayload {
            kind,
            detail: "crc record payload is not 4 bytes",
        }),
    }
}

/// How long the frame at the front of `rest` says it is (for error messages).
fn needed_len(rest: &[u8]) -> usize {
    match rest.first_chunk::<4>() {
        Some(len) => record::HEADER_LEN + u32::from_le_bytes(*len) as usize,
        None => record::HEADER_LEN,
    }
}
