//! `MemberStorage`: a member's durable state on a `Disk` — the WAL plus the snapshot directory —
//! and the order in which a node's persist requests reach them. Both drivers (server and simulator)
//! use it, so the rules live in one place:
//! - a received snapshot's file is durable before its WAL marker, and the marker before entries
//!   after it are acknowledged;
//! - `Persist` with `must_sync` is fsynced before the driver reports it persisted;
//! - after the node's own snapshot is saved and marked, WAL segments before it are released.

use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState, Snapshot};

use crate::disk::Disk;
use crate::node::{DurableState, Persist};
use crate::snap;
use crate::wal::{Metadata, TornTail, Wal, WalError, WalOptions};

/// Snapshot files kept on disk (older ones are purged).
const SNAPSHOTS_KEPT: usize = 5;

/// Errors from a member's storage, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Snap(#[from] snap::SnapError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error("member {found:x} of cluster {found_cluster:x} owns the data in {dir} but this is member {expected:x} of cluster {expected_cluster:x}")]
    IdentityMismatch {
        dir: PathBuf,
        expected: u64,
        expected_cluster: u64,
        found: u64,
        found_cluster: u64,
    },
}

/// Where a member keeps its data.
#[derive(Debug, Clone)]
pub struct StorageLayout {
    pub wal_dir: PathBuf,
    pub snap_dir: PathBuf,
    /// The storage engine's file, beside the snapshots' directory.
    pub engine_file: PathBuf,
}

impl StorageLayout {
    /// etcd's layout: `<data-dir>/member/wal` and `<data-dir>/member/snap`, or the WAL elsewhere.
    pub fn new(data_dir: &Path, wal_dir: Option<&Path>) -> Self {
        let member = data_dir.join("member");
        StorageLayout {
            wal_dir: wal_dir.map_or_else(|| member.join("wal"), Path::to_path_buf),
            snap_dir: member.join("snap"),
            engine_file: member.join(crate::engine::ENGINE_FILE),
        }
    }
}

/// The entries after `snapshot_index`. Entries read back share the buffer of their whole WAL
/// segment (64 MiB), which lives as long as any of them: when most of what was read is dropped
/// (here, or already while reading, `dropped_bytes_while_reading` at the snapshot's marker), the
/// kept entries get buffers of their own, so the dropped ones free theirs.
fn entries_after(
    entries: Vec<Entry>,
    snapshot_index: u64,
    dropped_bytes_while_reading: usize,
) -> Vec<Entry> {
    let (dropped, kept): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| e.index <= snapshot_index);
    let bytes = |entries: &[Entry]| -> usize { entries.iter().map(|e| e.data.len()).sum() };
    if dropped_bytes_while_reading + bytes(&dropped) <= bytes(&kept) {
        return kept;
    }
    drop(dropped);
    kept.into_iter()
        .map(|mut entry| {
            entry.data = bytes::Bytes::copy_from_slice(&entry.data);
            entry.context = bytes::Bytes::copy_from_slice(&entry.context);
            entry
        })
        .collect()
}

/// What `open` found beyond the durable state itself.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub metadata: Option<Metadata>,
    pub torn_tail: Option<TornTail>,
    /// Damaged snapshot files that were passed over for an older good one.
    pub skipped_snapshots: Vec<String>,
}

/// Fails unless the WAL's metadata names the `expected` member of the `expected` cluster.
fn check_identity(
    layout: &StorageLayout,
    found: &Metadata,
    expected: Metadata,
) -> Result<(), StorageError> {
    if found.member_id == expected.member_id && found.cluster_id == expected.cluster_id {
        return Ok(());
    }
    Err(StorageError::IdentityMismatch {
        dir: layout.wal_dir.clone(),
        expected: expected.member_id,
        expected_cluster: expected.cluster_id,
        found: found.member_id,
        found_cluster: found.cluster_id,
    })
}

/// A member's WAL and snapshots.
pub struct MemberStorage<D: Disk> {
    wal: Wal<D>,
    layout: StorageLayout,
}

impl<D: Disk> MemberStorage<D> {
    /// Whether a WAL already exists (the member has data).
    pub fn exists(disk: &D, layout: &StorageLayout) -> bool {
        Wal::exists(disk, &layout.wal_dir)
    }

    /// Creates fresh storage for a new member.
    pub fn create(
        mut disk: D,
        layout: StorageLayout,
        metadata: Metadata,
        options: WalOptions,
    ) -> Result<Self, StorageError> {
        disk.create_dir_all(&layout.snap_dir)
            .map_err(|e| StorageError::Wal(WalError::from(e)))?;
        let wal = Wal::create(disk, &layout.wal_dir, metadata, options)?;
        Ok(MemberStorage { wal, layout })
    }

    /// Opens existing storage and reads back the durable state: the newest snapshot the WAL has a
    /// marker for, the hard state and the entries after the snapshot. Checks the identity when given.
    pub fn open(
        disk: D,
        layout: StorageLayout,
        options: WalOptions,
        expected: Option<Metadata>,
    ) -> Result<(Self, DurableState, OpenReport), StorageError> {
        // The newest snapshot file that loads: the WAL keeps only the entries from it on if it
        // marked it (else an older one that it marked loads below, and every entry is kept).
        let newest = snap::load_newest(&disk, &layout.snap_dir, &|_, _| true)?;
        let newest_at = newest.snapshot.as_ref().map(|s| {
            let meta = s.get_metadata();
            (meta.index, meta.term)
        });
        let (mut wal, recovered) = Wal::open_from(disk, &layout.wal_dir, options, newest_at)?;
        if let Some(expected) = expected {
            check_identity(&layout, &recovered.metadata, expected)?;
        }
        let markers = &recovered.snapshot_markers;
        let acceptable = |index: u64, term: u64| markers.contains(&(index, term));
        let loaded = match newest_at {
            // Already read: only the damaged files the WAL marked are worth a report.
            Some((index, term)) if acceptable(index, term) => snap::Loaded {
                snapshot: newest.snapshot,
                skipped: newest
                    .skipped
                    .into_iter()
                    .filter(|skip| acceptable(skip.index, skip.term))
                    .collect(),
            },
            _ => snap::load_newest(wal.disk(), &layout.snap_dir, &acceptable)?,
        };
        let snapshot = loaded.snapshot;
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
        // Replay drops entries only at the marker of `newest`, which is the one loaded then.
        assert!(recovered
            .entries_dropped_below
            .is_none_or(|below| below == snapshot_index));
        let entries = entries_after(
            recovered.entries,
            snapshot_index,
            recovered.entries_dropped_bytes,
        );
        // Finishes a release a crash cut short (after an own snapshot's marker, before or during
        // the renames): the segments wholly below it hold nothing replay needs. Not below a
        // snapshot only received from the leader: its record may be in such a segment (and the
        // running member releases nothing for it either).
        let own = snapshot.as_ref().is_some_and(|s| {
            let meta = s.get_metadata();
            recovered.own_snapshots.contains(&(meta.index, meta.term))
        });
        if own {
            wal.release_to(snapshot_index)?;
        }
        let durable = DurableState {
            hard_state: recovered.hard_state,
            snapshot,
            entries,
        };
        let report = OpenReport {
            metadata: Some(recovered.metadata),
            torn_tail: recovered.torn_tail,
            skipped_snapshots: loaded.skipped.iter().map(ToString::to_string).collect(),
        };
        Ok((MemberStorage { wal, layout }, durable, report))
    }

    /// Writes what a node asked to persist; fsyncs when asked. A received snapshot's file is made
    /// durable before its WAL marker is written.
    pub fn persist(&mut self, persist: &Persist) -> Result<(), StorageError> {
        if let Some(snapshot) = &persist.snapshot {
            self.write_snapshot_file(snapshot)?;
        }
        self.persist_after_snapshot_file(persist)
    }

    /// The second half of [`persist`](Self::persist), for drivers that make the snapshot file
    /// durable first (with [`write_snapshot_file`](Self::write_snapshot_file)) and may crash in
    /// between: records the installed snapshot, appends entries and hard state, syncs when asked.
    pub fn persist_after_snapshot_file(&mut self, persist: &Persist) -> Result<(), StorageError> {
        if self.write_after_snapshot_file(persist)? {
            self.wal.sync()?;
        }
        Ok(())
    }

    /// Like [`persist_after_snapshot_file`](Self::persist_after_snapshot_file) without the fsync,
    /// for drivers that fsync several writes at once (group commit, [`begin_sync`](Self::begin_sync)):
    /// true if the write must be durable before the persist is reported.
    ///
    /// Entries wait in the WAL's buffer for the fsync. A write with a hard state reaches the file
    /// at once: raft applies (and clients are answered for) the entries a commit index covers
    /// before the next fsync, so that index must survive the process being killed, or a
    /// `--force-new-cluster` start would take entries this member applied for uncommitted and
    /// drop them. (A machine crash may still lose it, as etcd's unsynced commit index.)
    pub fn write_after_snapshot_file(&mut self, persist: &Persist) -> Result<bool, StorageError> {
        if let Some(snapshot) = &persist.snapshot {
            let meta = snapshot.get_metadata();
            self.wal.save_installed_snapshot(meta.index, meta.term)?;
        }
        self.wal
            .append(&persist.entries, persist.hard_state.as_ref())?;
        if persist.hard_state.is_some() {
            self.wal.write_buffered()?;
        }
        Ok(persist.must_sync || persist.snapshot.is_some())
    }

    /// Starts making everything written so far durable on another disk handle: the file to fsync
    /// (see `Wal::begin_sync`), or `None` when nothing is unsynced.
    pub fn begin_sync(&mut self) -> Result<Option<PathBuf>, StorageError> {
        Ok(self.wal.begin_sync()?)
    }

    /// The WAL's next segment file to prepare off the driver, if it wants one (see
    /// `Wal::segment_to_prepare`).
    pub fn segment_to_prepare(&mut self) -> Option<(PathBuf, u64)> {
        self.wal.segment_to_prepare()
    }

    /// Reports how preparing the file from [`segment_to_prepare`](Self::segment_to_prepare)
    /// ended.
    pub fn segment_prepared(&mut self, ok: bool) {
        self.wal.segment_prepared(ok);
    }

    /// Saves the node's own snapshot, marks it in the WAL, and releases WAL segments before it,
    /// removing their files here and now.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.write_snapshot_file(snapshot)?;
        self.finish_own_snapshot(snapshot)?;
        let released = self.wal.take_released();
        crate::wal::remove_released_files(self.wal.disk_mut(), &released)
            .map_err(WalError::from)?;
        Ok(())
    }

    /// The files of WAL segments released from the log (by
    /// [`finish_own_snapshot`](Self::finish_own_snapshot), or left by an earlier run), for the
    /// caller to remove off its path.
    pub fn take_released_wal_files(&mut self) -> Vec<PathBuf> {
        self.wal.take_released()
    }

    /// Where snapshot files live (a driver may write one elsewhere, then call
    /// [`finish_own_snapshot`](Self::finish_own_snapshot)).
    pub fn snap_dir(&self) -> &std::path::Path {
        &self.layout.snap_dir
    }

    /// Makes a snapshot's file durable (temp file, fsync, rename, directory fsync). Until its WAL
    /// record is written, a restart ignores the file.
    pub fn write_snapshot_file(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        snap::save(self.wal.disk_mut(), &self.layout.snap_dir, snapshot)?;
        Ok(())
    }

    /// The second half of [`save_snapshot`](Self::save_snapshot): marks the (durable) file in the
    /// WAL, syncs, then releases the WAL segments (their files: [`take_released_wal_files`]) and
    /// removes the snapshot files the new snapshot makes unnecessary.
    ///
    /// [`take_released_wal_files`]: Self::take_released_wal_files
    pub fn finish_own_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.mark_own_snapshot(snapshot)?;
        self.release_before(snapshot)
    }

    /// The first step of [`finish_own_snapshot`](Self::finish_own_snapshot): marks the snapshot
    /// in the WAL and syncs. From here on a restart loads it (and finishes the release).
    pub fn mark_own_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let meta = snapshot.get_metadata();
        self.wal.save_snapshot_marker(meta.index, meta.term)?;
        self.wal.sync()?;
        Ok(())
    }

    /// The second step of [`finish_own_snapshot`](Self::finish_own_snapshot), once the marker
    /// is durable: releases the WAL segments wholly below the snapshot and removes the snapshot
    /// files it makes unnecessary.
    pub fn release_before(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.wal.release_to(snapshot.get_metadata().index)?;
        snap::purge(self.wal.disk_mut(), &self.layout.snap_dir, SNAPSHOTS_KEPT)?;
        Ok(())
    }

    /// Records a hard state on its own (e.g. when forcing a new cluster).
    pub fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.wal.append(&[], Some(hard_state))?;
        self.wal.sync()?;
        Ok(())
    }

    /// Makes `cluster_id` this member's cluster from here on (a `--force-new-cluster` start),
    /// durably: restarts and later segments read it from the WAL.
    pub fn change_cluster_id(&mut self, cluster_id: u64) -> Result<(), StorageError> {
        self.wal.change_cluster_id(cluster_id)?;
        self.wal.sync()?;
        Ok(())
    }

    /// The member and cluster this storage belongs to now.
    pub fn metadata(&self) -> crate::wal::Metadata {
        self.wal.metadata()
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        Ok(self.wal.sync()?)
    }

    /// The disk underneath.
    pub fn disk(&self) -> &D {
        self.wal.disk()
    }

    /// The disk underneath, mutably (the simulator crashes it).
    pub fn disk_mut(&mut self) -> &mut D {
        self.wal.disk_mut()
    }

    /// Gives the disk back (after a simulated crash the member reopens from it).
    pub fn into_disk(self) -> D {
        self.wal.into_disk()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries 1..=10 whose data slice one shared buffer, as the WAL reader makes them.
    fn entries_sharing(buffer: &bytes::Bytes) -> Vec<Entry> {
        (1..=10u64)
            .map(|index| {
                let start = (index as usize - 1) * 100;
                Entry {
                    index,
                    data: buffer.slice(start..start + 100),
                    ..Default::default()
                }
            })
            .collect()
    }

    fn inside(buffer: &bytes::Bytes, entry: &Entry) -> bool {
        let range = buffer.as_ptr_range();
        range.contains(&entry.data.as_ptr())
    }

    fn storage() -> MemberStorage<crate::disk::MemDisk> {
        let layout = StorageLayout::new(Path::new("/data"), None);
        let metadata = Metadata {
            member_id: 1,
            cluster_id: 2,
        };
        let disk = crate::disk::MemDisk::new();
        MemberStorage::create(disk, layout, metadata, WalOptions::default()).unwrap()
    }

    fn persist(ready_number: u64, entries: Vec<Entry>, commit: u64, must_sync: bool) -> Persist {
        Persist {
            ready_number,
            hard_state: Some(HardState {
                term: 1,
                vote: 1,
                commit,
                ..Default::default()
            }),
            entries,
            snapshot: None,
            must_sync,
        }
    }

    /// What a restart after the process was killed (the file kept, nothing lost) reads back.
    fn after_a_kill(storage: MemberStorage<crate::disk::MemDisk>) -> DurableState {
        let layout = storage.layout.clone();
        let disk = storage.into_disk();
        MemberStorage::open(disk, layout, WalOptions::default(), None)
            .unwrap()
            .1
    }

    fn entry(index: u64) -> Entry {
        Entry {
            index,
            term: 1,
            ..Default::default()
        }
    }

    #[test]
    fn entries_wait_in_the_buffer_for_the_fsync() {
        let mut storage = storage();
        let mut entries_only = persist(1, vec![entry(1), entry(2)], 0, true);
        entries_only.hard_state = None;
        assert!(storage.write_after_snapshot_file(&entries_only).unwrap());
        // Killed now: the entries were never reported, so losing them is allowed.
        assert!(after_a_kill(storage).entries.is_empty());
    }

    #[test]
    fn a_commit_index_reaches_the_file_at_once_with_or_without_entries() {
        for (with_entries, must_sync) in [(false, false), (true, true)] {
            let mut storage = storage();
            storage
                .write_after_snapshot_file(&persist(1, vec![entry(1), entry(2)], 0, true))
                .unwrap();
            assert!(storage.begin_sync().unwrap().is_some());
            // Entries up to the new commit index are applied and answered before the next
            // fsync: a kill must not lose the index.
            let more = if with_entries {
                vec![entry(3)]
            } else {
                Vec::new()
            };
            let reported_at_once = !storage
                .write_after_snapshot_file(&persist(2, more, 2, must_sync))
                .unwrap();
            assert_eq!(reported_at_once, !must_sync);
            let durable = after_a_kill(storage);
            assert_eq!(durable.hard_state.commit, 2, "with entries: {with_entries}");
            assert_eq!(durable.entries.len(), if with_entries { 3 } else { 2 });
        }
    }

    /// WAL segments of a few entries each.
    const SMALL: WalOptions = WalOptions {
        segment_size_bytes: 512,
    };

    /// Storage whose WAL segments hold a few entries each, with entries 1..=`last` of 64 bytes
    /// written and committed.
    fn storage_with_small_segments(
        last: u64,
    ) -> (MemberStorage<crate::disk::MemDisk>, StorageLayout) {
        let layout = StorageLayout::new(Path::new("/data"), None);
        let metadata = Metadata {
            member_id: 1,
            cluster_id: 2,
        };
        let disk = crate::disk::MemDisk::new();
        let mut storage = MemberStorage::create(disk, layout.clone(), metadata, SMALL).unwrap();
        for index in 1..=last {
            let mut e = entry(index);
            e.data = vec![9u8; 64].into();
            storage
                .persist(&persist(index, vec![e], index, true))
                .unwrap();
        }
        (storage, layout)
    }

    /// A crash after an own snapshot's marker was durable but before its segments were released
    /// (or before the renames were): the next open finishes the release.
    #[test]
    fn an_open_releases_the_segments_a_crash_kept_below_the_snapshot() {
        let (mut storage, layout) = storage_with_small_segments(60);
        let segments_before = storage.wal.segment_paths().len();
        assert!(segments_before >= 5, "{segments_before} segments");
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 40;
        snapshot.mut_metadata().term = 1;
        storage.write_snapshot_file(&snapshot).unwrap();
        storage.wal.save_snapshot_marker(40, 1).unwrap();
        storage.wal.sync().unwrap();
        // Crashed here: nothing released.
        let disk = storage.into_disk();
        let (mut reopened, durable, _) = MemberStorage::open(disk, layout, SMALL, None).unwrap();
        let kept = reopened.wal.segment_paths();
        assert!(kept.len() < segments_before, "{} kept", kept.len());
        assert_eq!(
            reopened.take_released_wal_files().len(),
            segments_before - kept.len()
        );
        assert_eq!(durable.snapshot.map(|s| s.get_metadata().index), Some(40));
        let indexes: Vec<u64> = durable.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (41..=60).collect::<Vec<_>>());
        // And the log still opens to the same state.
        let disk = reopened.into_disk();
        let layout = StorageLayout::new(Path::new("/data"), None);
        let (_, again, _) = MemberStorage::open(disk, layout, SMALL, None).unwrap();
        assert_eq!(again.entries.len(), 20);
        assert_eq!(again.hard_state.commit, 60);
    }

    /// Writes the file of a snapshot at `index` (term 1); damages its last byte when asked.
    fn snapshot_file_at(
        storage: &mut MemberStorage<crate::disk::MemDisk>,
        index: u64,
        damaged: bool,
    ) -> (Snapshot, String) {
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = 1;
        let dir = storage.layout.snap_dir.clone();
        let path = snap::save(storage.wal.disk_mut(), &dir, &snapshot).unwrap();
        if damaged {
            let len = storage.wal.disk().read(&path).unwrap().len();
            storage
                .wal
                .disk_mut()
                .corrupt_byte(&path, len - 1, 0x5a)
                .unwrap();
        }
        (snapshot, path.display().to_string())
    }

    /// Open loads the newest snapshot the WAL marked that is whole, and reports only the
    /// damaged files the WAL marked: an unmarked file is one a crash cut short of its marker.
    #[test]
    fn an_open_loads_the_newest_whole_marked_snapshot_and_reports_damaged_marked_ones() {
        let (mut storage, layout) = storage_with_small_segments(60);
        let (at_20, _) = snapshot_file_at(&mut storage, 20, false);
        storage.mark_own_snapshot(&at_20).unwrap();
        let (at_40, damaged_40) = snapshot_file_at(&mut storage, 40, true);
        storage.mark_own_snapshot(&at_40).unwrap();
        snapshot_file_at(&mut storage, 50, false);
        snapshot_file_at(&mut storage, 55, true);
        let disk = storage.into_disk();
        let (storage, durable, report) =
            MemberStorage::open(disk, layout.clone(), SMALL, None).unwrap();
        assert_eq!(durable.snapshot, Some(at_20.clone()));
        let indexes: Vec<u64> = durable.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (21..=60).collect::<Vec<_>>());
        assert_eq!(report.skipped_snapshots.len(), 1, "{report:?}");
        assert!(report.skipped_snapshots[0].contains(&damaged_40));

        // With the newest file both whole and marked, it loads; the damaged unmarked one newer
        // than it goes unreported.
        let mut storage = storage;
        let (at_50, _) = snapshot_file_at(&mut storage, 50, false);
        storage.mark_own_snapshot(&at_50).unwrap();
        let disk = storage.into_disk();
        let (_, durable, report) = MemberStorage::open(disk, layout, SMALL, None).unwrap();
        assert_eq!(durable.snapshot, Some(at_50));
        let indexes: Vec<u64> = durable.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (51..=60).collect::<Vec<_>>());
        assert!(report.skipped_snapshots.is_empty(), "{report:?}");
    }

    /// Persists a snapshot received from the leader at index 500 (term 1) with entries 501..=505
    /// after it, as ready 31; returns the snapshot.
    fn receive_snapshot_at_500(storage: &mut MemberStorage<crate::disk::MemDisk>) -> Snapshot {
        let mut received = persist(31, (501..=505).map(entry).collect(), 505, true);
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 500;
        snapshot.mut_metadata().term = 1;
        received.snapshot = Some(snapshot.clone());
        storage.persist(&received).unwrap();
        snapshot
    }

    /// A snapshot received from the leader releases nothing, at open either: its record may sit
    /// in a segment wholly below it, and the next start needs it to accept the snapshot.
    #[test]
    fn an_open_keeps_the_segments_below_a_received_snapshot() {
        let (mut storage, layout) = storage_with_small_segments(30);
        receive_snapshot_at_500(&mut storage);
        let segments = storage.wal.segment_paths();
        assert!(segments.len() >= 3, "{} segments", segments.len());
        let mut disk = storage.into_disk();
        for _ in 0..2 {
            let (mut reopened, durable, _) =
                MemberStorage::open(disk, layout.clone(), SMALL, None).unwrap();
            assert_eq!(reopened.wal.segment_paths(), segments);
            assert!(reopened.take_released_wal_files().is_empty());
            assert_eq!(durable.snapshot.map(|s| s.get_metadata().index), Some(500));
            let indexes: Vec<u64> = durable.entries.iter().map(|e| e.index).collect();
            assert_eq!(indexes, (501..=505).collect::<Vec<_>>());
            disk = reopened.into_disk();
        }
    }

    /// An own snapshot taken right after one received from the leader shares its index and
    /// term; once its marker is durable, a crash before the release is finished at open as after
    /// any own snapshot (the segment holding the received snapshot's record is not wholly below
    /// it, so it stays).
    #[test]
    fn an_open_finishes_the_release_of_an_own_snapshot_at_a_received_ones_place() {
        let (mut storage, layout) = storage_with_small_segments(30);
        let snapshot = receive_snapshot_at_500(&mut storage);
        storage.write_snapshot_file(&snapshot).unwrap();
        storage.mark_own_snapshot(&snapshot).unwrap();
        let segments_before = storage.wal.segment_paths().len();
        assert!(segments_before >= 3, "{segments_before} segments");
        // Crashed here: nothing released.
        let mut disk = storage.into_disk();
        let (mut reopened, durable, _) =
            MemberStorage::open(disk, layout.clone(), SMALL, None).unwrap();
        let kept = reopened.wal.segment_paths().len();
        assert!(kept < segments_before, "{kept} of {segments_before} kept");
        assert_eq!(
            reopened.take_released_wal_files().len() + kept,
            segments_before
        );
        for _ in 0..2 {
            assert_eq!(
                durable.snapshot.as_ref().map(|s| s.get_metadata().index),
                Some(500)
            );
            let indexes: Vec<u64> = durable.entries.iter().map(|e| e.index).collect();
            assert_eq!(indexes, (501..=505).collect::<Vec<_>>());
            disk = reopened.into_disk();
            (reopened, _, _) = MemberStorage::open(disk, layout.clone(), SMALL, None).unwrap();
        }
    }

    #[test]
    fn entries_kept_after_a_snapshot_let_go_of_a_buffer_mostly_dropped() {
        let buffer = bytes::Bytes::from(vec![7u8; 1000]);
        let kept = entries_after(entries_sharing(&buffer), 8, 0);
        assert_eq!(
            kept.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![9, 10]
        );
        assert!(kept
            .iter()
            .all(|e| !inside(&buffer, e) && e.data[..] == [7u8; 100][..]));

        let kept = entries_after(entries_sharing(&buffer), 3, 0);
        assert_eq!(kept.len(), 7);
        assert!(
            kept.iter().all(|e| inside(&buffer, e)),
            "most of the buffer is kept: not copied"
        );

        // What the WAL dropped while reading it is not in the list, but was in the buffer.
        let kept = entries_after(entries_sharing(&buffer), 3, 500);
        assert_eq!(kept.len(), 7);
        assert!(kept.iter().all(|e| !inside(&buffer, e)));

        // A few entries dropped while reading do not make the many kept ones copies.
        let kept = entries_after(entries_sharing(&buffer), 3, 100);
        assert_eq!(kept.len(), 7);
        assert!(kept.iter().all(|e| inside(&buffer, e)));
    }
}
