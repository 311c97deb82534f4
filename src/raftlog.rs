//! `LogStore`: the raft log as raft-rs reads it (`raft::Storage`), held in memory by the node. It
//! mirrors what the driver has been asked to persist: the latest snapshot, the entries, the hard
//! state and the configuration. It never touches the disk; the WAL is the durable copy.
//!
//! Applied entries are kept only for followers that fall behind: the node trims them
//! ([`LogStore::trim`]) once they hold more memory than it allows, so the log's memory does not
//! grow with the snapshot count times the size of the values written.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// The in-memory raft log: entries after a compaction point, plus the latest snapshot.
#[derive(Debug, Clone, Default)]
pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot, served to followers that are behind the compaction point.
    snapshot: Snapshot,
    /// Index and term of the last entry dropped from the log (0, 0 for a fresh log).
    compacted: (u64, u64),
    /// Entries after the compaction point, contiguous: `entries[i].index == compacted.0 + 1 + i`.
    entries: Vec<Entry>,
    /// What `entries` hold in memory, by [`entry_bytes`].
    held_bytes: usize,
    /// Raft asked for a snapshot for a peer the latest snapshot's configuration leaves out (a
    /// member added after it was taken, which would refuse it): the node should take a new one.
    snapshot_wanted: std::cell::Cell<bool>,
    /// Whether the node can send the state the latest snapshot stands for (it took that snapshot
    /// to send and keeps a view of the state): snapshots installed from elsewhere, read back at
    /// a restart or taken only to mark the log never serve a follower.
    serves_state: bool,
}

impl LogStore {
    /// An empty log with the given initial configuration.
    pub fn new(conf_state: ConfState) -> Self {
        let mut store = LogStore {
            conf_state: conf_state.clone(),
            ..Default::default()
        };
        store.snapshot.mut_metadata().set_conf_state(conf_state);
        store
    }

    fn first(&self) -> u64 {
        self.compacted.0 + 1
    }

    fn last(&self) -> u64 {
        self.entries.last().map_or(self.compacted.0, |e| e.index)
    }

    /// Whether raft asked for a snapshot the latest one cannot serve (see `snapshot`); resets it.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// The hard state last set.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Records a new hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Records the configuration in force after applying a conf change.
    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    /// The configuration in force.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The latest snapshot (empty data before the first one).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The entries held after the compaction point.
    pub fn held_entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The memory the held entries take, by [`entry_bytes`].
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Drops the entries up to and including `index`, as far as the latest snapshot allows: while
    /// it can send the state it stands for, the entries after it stay, so a follower that
    /// installs it catches up from the log (were they dropped, it would need another snapshot,
    /// and under a steady load never catch up). The caller keeps `index` at or below the applied
    /// index. Returns the index the log now starts after.
    pub fn trim(&mut self, index: u64) -> Result<u64, StorageError> {
        let index = if self.serves_state {
            index.min(self.snapshot.get_metadata().index)
        } else {
            index
        };
        self.compact(index.min(self.last()))?;
        Ok(self.compacted.0)
    }

    /// Appends entries, replacing any existing entries from the first new index on (raft's
    /// conflict truncation). Entries at or below the compaction point are ignored.
    pub fn append(&mut self, new: &[Entry]) -> Result<(), StorageError> {
        let Some(first_new) = new.first().map(|e| e.index) else {
            return Ok(());
        };
        if first_new > self.last() + 1 {
            return Err(StorageError::Other(
                format!(
                    "log gap: appending index {first_new} after last index {}",
                    self.last()
                )
                .into(),
            ));
        }
        let skip = self.first().saturating_sub(first_new) as usize;
        let new = new.get(skip..).unwrap_or(&[]);
        let Some(start) = new.first().map(|e| e.index) else {
            return Ok(());
        };
        let keep = (start - self.first()) as usize;
        let dropped: usize = self
            .entries
            .get(keep..)
            .unwrap_or(&[])
            .iter()
            .map(entry_bytes)
            .sum();
        self.entries.truncate(keep);
        self.entries.extend_from_slice(new);
        self.held_bytes = self.held_bytes - dropped + new.iter().map(entry_bytes).sum::<usize>();
        Ok(())
    }

    /// Replaces the whole log with a snapshot (received from the leader, or read at restart).
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.conf_state = meta.get_conf_state().clone();
        self.compacted = (meta.index, meta.term);
        self.entries.clear();
        self.held_bytes = 0;
        self.snapshot = snapshot;
        self.serves_state = false;
    }

    /// Whether the node can send the state the latest snapshot stands for.
    pub fn serves_state(&self) -> bool {
        self.serves_state
    }

    /// The node can no longer send the latest snapshot's state: the next follower that needs
    /// one makes it take a new one.
    pub fn stop_serving_state(&mut self) {
        self.serves_state = false;
    }

    /// Records a snapshot the node made of its own applied state, then drops the entries up to
    /// `compact_to` (at most the snapshot's index, so slow followers can still catch up from the log).
    pub fn install_own_snapshot(
        &mut self,
        snapshot: Snapshot,
        compact_to: u64,
    ) -> Result<(), StorageError> {
        let index = snapshot.get_metadata().index;
        if index < self.snapshot.get_metadata().index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        if index > self.last() {
            return Err(StorageError::Unavailable);
        }
        self.serves_state = !snapshot.data.is_empty();
        self.snapshot = snapshot;
        self.compact(compact_to.min(index))
    }

    /// Drops every entry up to and including `index`.
    fn compact(&mut self, index: u64) -> Result<(), StorageError> {
        if index < self.first() {
            return Ok(());
        }
        let term = self.term_of(index)?;
        let drop = (index + 1 - self.first()) as usize;
        let dropped: usize = self.entries.drain(..drop).map(|e| entry_bytes(&e)).sum();
        self.held_bytes -= dropped;
        self.compacted = (index, term);
        Ok(())
    }

    fn term_of(&self, index: u64) -> Result<u64, StorageError> {
        if index == self.compacted.0 {
            return Ok(self.compacted.1);
        }
        if index < self.compacted.0 {
            return Err(StorageError::Compacted);
        }
        self.entries
            .get((index - self.first()) as usize)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.first()) as usize;
        let hi = (high - self.first()) as usize;
        let mut out = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.term_of(idx).map_err(raft::Error::Store)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ));
        if self.snapshot.get_metadata().index < request_index {
            return unavailable;
        }
        if self.snapshot.get_metadata().index < self.compacted.0 {
            // The log was trimmed past it: a follower that installed it could not catch up
            // from the log. The node makes one at its applied index, which the log reaches.
            self.snapshot_wanted.set(true);
            return unavailable;
        }
        if self.snapshot.data.is_empty() || !self.serves_state {
            // The member's own snapshots mark where the log starts and carry no state (the
            // engine holds it), and one installed from elsewhere or read back at a restart has
            // no view of the state behind it: the node makes one to send when a follower needs
            // it.
            self.snapshot_wanted.set(true);
            return unavailable;
        }
        let conf = self.snapshot.get_metadata().get_conf_state();
        let includes = conf
            .voters
            .iter()
            .chain(&conf.learners)
            .chain(&conf.voters_outgoing)
            .chain(&conf.learners_next)
            .any(|id| *id == to);
        if !includes {
            // raft-rs followers refuse a snapshot whose configuration leaves them out.
            self.snapshot_wanted.set(true);
            return unavailable;
        }
        Ok(self.snapshot.clone())
    }
}

/// The memory an entry takes in the log: its payload and the entry itself.
pub fn entry_bytes(entry: &Entry) -> usize {
    std::mem::size_of::<Entry>() + entry.data.len() + entry.context.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn store_with(entries: &[(u64, u64)]) -> LogStore {
        let mut store = LogStore::new(ConfState::default());
        let entries: Vec<Entry> = entries.iter().map(|&(i, t)| entry(i, t)).collect();
        store.append(&entries).unwrap();
        store
    }

    #[test]
    fn appending_over_existing_entries_truncates_the_conflicting_suffix() {
        let mut store = store_with(&[(1, 1), (2, 1), (3, 1)]);
        store.append(&[entry(2, 2)]).unwrap();
        assert_eq!(store.last_index().unwrap(), 2);
        assert_eq!(store.term(2).unwrap(), 2);
        assert_eq!(store.term(1).unwrap(), 1);
    }

    #[test]
    fn appending_past_a_gap_is_refused() {
        let mut store = store_with(&[(1, 1)]);
        assert!(store.append(&[entry(3, 1)]).is_err());
    }

    #[test]
    fn own_snapshot_compacts_only_up_to_the_catch_up_point() {
        let mut store = store_with(&[(1, 1), (2, 1), (3, 2), (4, 2)]);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 4;
        snap.mut_metadata().term = 2;
        snap.mut_metadata().mut_conf_state().voters = vec![1, 2];
        snap.data = b"state".to_vec().into();
        store.install_own_snapshot(snap, 2).unwrap();
        assert_eq!(store.first_index().unwrap(), 3);
        assert_eq!(store.term(2).unwrap(), 1);
        assert!(matches!(
            store.term(1),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let e = store
            .entries(3, 5, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(store.snapshot(0, 2).unwrap().get_metadata().index, 4);
        assert!(!store.take_snapshot_wanted());
        // A member added after the snapshot would refuse it: the node is asked for a new one.
        assert!(matches!(
            store.snapshot(0, 3),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(store.take_snapshot_wanted());
        assert!(!store.take_snapshot_wanted());
    }

    #[test]
    fn a_received_snapshot_replaces_the_log() {
        let mut store = store_with(&[(1, 1), (2, 1)]);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 10;
        snap.mut_metadata().term = 3;
        store.apply_snapshot(snap);
        assert_eq!(store.first_index().unwrap(), 11);
        assert_eq!(store.last_index().unwrap(), 10);
        assert_eq!(store.term(10).unwrap(), 3);
        assert_eq!(store.hard_state().commit, 10);
        store.append(&[entry(11, 3)]).unwrap();
        assert_eq!(store.last_index().unwrap(), 11);
    }

    #[test]
    fn reading_out_of_range_returns_errors_not_panics() {
        let store = store_with(&[(1, 1)]);
        let ctx = || GetEntriesContext::empty(false);
        assert!(store.entries(1, 5, None, ctx()).is_err());
        assert!(store.entries(2, 1, None, ctx()).is_err());
        assert!(store.term(9).is_err());
        assert!(store.snapshot(0, 2).is_err());
    }

    /// The held bytes, checked against the entries themselves.
    fn held_bytes(store: &LogStore) -> usize {
        let counted: usize = store.held_entries().iter().map(entry_bytes).sum();
        assert_eq!(store.held_bytes(), counted);
        counted
    }

    fn sized_entry(index: u64, data_bytes: usize) -> Entry {
        Entry {
            index,
            term: 1,
            data: vec![7; data_bytes].into(),
            ..Default::default()
        }
    }

    #[test]
    fn held_bytes_follow_appends_truncations_trims_and_snapshots() {
        let mut store = LogStore::new(ConfState::default());
        let one = entry_bytes(&sized_entry(1, 100));
        store
            .append(&(1..=4).map(|i| sized_entry(i, 100)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(held_bytes(&store), 4 * one);
        // A conflicting suffix is replaced by a bigger entry.
        store.append(&[sized_entry(3, 1000)]).unwrap();
        assert_eq!(
            held_bytes(&store),
            2 * one + entry_bytes(&sized_entry(3, 1000))
        );
        assert_eq!(store.trim(2).unwrap(), 2);
        assert_eq!(held_bytes(&store), entry_bytes(&sized_entry(3, 1000)));
        assert_eq!(store.first_index().unwrap(), 3);
        assert_eq!(store.term(2).unwrap(), 1);
        // Past the last entry, a trim stops at it.
        assert_eq!(store.trim(9).unwrap(), 3);
        assert_eq!(held_bytes(&store), 0);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 10;
        store.append(&[sized_entry(4, 5)]).unwrap();
        store.apply_snapshot(snap);
        assert_eq!(held_bytes(&store), 0);
    }

    /// A snapshot the node keeps to send, its state available.
    fn serving_snapshot(index: u64) -> Snapshot {
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = 1;
        snap.mut_metadata().mut_conf_state().voters = vec![1, 2];
        snap.data = b"state".to_vec().into();
        snap
    }

    #[test]
    fn a_trim_keeps_the_entries_after_a_snapshot_that_can_be_sent() {
        let mut store = store_with(&(1..=8).map(|i| (i, 1)).collect::<Vec<_>>());
        store.install_own_snapshot(serving_snapshot(4), 2).unwrap();
        // A follower that installs the snapshot at 4 goes on from entry 5.
        assert_eq!(store.trim(7).unwrap(), 4);
        assert_eq!(store.first_index().unwrap(), 5);
        assert_eq!(store.snapshot(0, 2).unwrap().get_metadata().index, 4);
        assert!(!store.take_snapshot_wanted());
        // Once it can no longer be sent, the trim goes on, and raft's next request for a
        // snapshot asks the node for a fresh one.
        store.stop_serving_state();
        assert_eq!(store.trim(7).unwrap(), 7);
        assert!(store.snapshot(0, 2).is_err());
        assert!(store.take_snapshot_wanted());
    }

    #[test]
    fn a_snapshot_older_than_the_trimmed_log_is_never_sent() {
        let mut store = store_with(&(1..=8).map(|i| (i, 1)).collect::<Vec<_>>());
        store.install_own_snapshot(serving_snapshot(4), 2).unwrap();
        store.stop_serving_state();
        store.trim(6).unwrap();
        // The state behind it is servable again (a view kept), yet the follower could not go
        // on from entry 5: refused, and a fresh snapshot is asked for.
        store.install_own_snapshot(serving_snapshot(4), 0).unwrap();
        assert!(matches!(
            store.snapshot(0, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(store.take_snapshot_wanted());
    }
}
