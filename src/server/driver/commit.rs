//! Group commit, as a small state machine the driver consults: persists are written as the node
//! asks, and one fsync makes every write since the previous fsync began durable, while the driver
//! goes on taking inputs. At most one fsync is in flight. A persist is reported to the node only
//! once it and every persist before it are durable, so the ready numbers reported only grow.

/// What the driver should do next for the writes it has made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing to do: no write waits, or the fsync in flight must finish first.
    Wait,
    /// Start an fsync; when it finishes, call [`GroupCommit::synced`].
    Sync,
    /// Tell the node every persist up to this ready number is durable.
    Report(u64),
}

/// The state of group commit.
#[derive(Debug, Default)]
pub struct GroupCommit {
    /// Newest ready number written (0: none yet).
    written: u64,
    /// Whether a write made since the last fsync began must be fsynced before it is reported.
    needs_sync: bool,
    /// The newest ready number the fsync in flight covers.
    syncing: Option<u64>,
    /// Newest ready number known durable.
    durable: u64,
    /// Newest ready number reported to the node.
    reported: u64,
}

impl GroupCommit {
    /// The persist numbered `ready_number` was written; `must_sync` if it may be reported only
    /// once fsynced. Number 0 is the node's start-up write, before any ready (never reported).
    pub fn written(&mut self, ready_number: u64, must_sync: bool) {
        assert!(
            ready_number > self.written || ready_number == 0 && self.written == 0,
            "persists are written in ready order: {ready_number} after {}",
            self.written
        );
        self.written = ready_number;
        self.needs_sync |= must_sync;
    }

    /// Everything written so far was made durable by the caller itself (an inline fsync).
    pub fn all_durable(&mut self) {
        self.durable = self.written;
        self.needs_sync = false;
    }

    /// The fsync in flight finished.
    pub fn synced(&mut self) {
        let covered = self.syncing.take().expect("an fsync was in flight");
        self.durable = self.durable.max(covered);
    }

    /// Whether an fsync is in flight.
    pub fn is_syncing(&self) -> bool {
        self.syncing.is_some()
    }

    /// What to do next. `Sync` marks the fsync as started (covering every write so far).
    pub fn next(&mut self) -> Next {
        if self.durable > self.reported || self.syncing.is_some() {
            return self.report_durable();
        }
        if self.needs_sync {
            self.needs_sync = false;
            self.syncing = Some(self.written);
            return Next::Sync;
        }
        // Every write that needed an fsync got one; the rest are as durable as they need to be.
        self.durable = self.written;
        self.report_durable()
    }

    fn report_durable(&mut self) -> Next {
        if self.durable > self.reported {
            self.reported = self.durable;
            Next::Report(self.durable)
        } else {
            Next::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_that_needs_an_fsync_is_reported_only_after_it() {
        let mut commit = GroupCommit::default();
        commit.written(1, true);
        assert_eq!(commit.next(), Next::Sync);
        assert_eq!(commit.next(), Next::Wait);
        commit.synced();
        assert_eq!(commit.next(), Next::Report(1));
        assert_eq!(commit.next(), Next::Wait);
    }

    #[test]
    fn writes_during_an_fsync_wait_for_the_next_one() {
        let mut commit = GroupCommit::default();
        commit.written(1, true);
        assert_eq!(commit.next(), Next::Sync);
        commit.written(2, true);
        commit.written(3, false);
        assert_eq!(commit.next(), Next::Wait);
        commit.synced();
        assert_eq!(commit.next(), Next::Report(1));
        assert_eq!(commit.next(), Next::Sync);
        commit.synced();
        assert_eq!(commit.next(), Next::Report(3));
    }

    #[test]
    fn a_write_without_fsync_is_not_reported_before_an_earlier_one_is_durable() {
        let mut commit = GroupCommit::default();
        commit.written(1, true);
        assert_eq!(commit.next(), Next::Sync);
        commit.written(2, false);
        assert_eq!(commit.next(), Next::Wait);
        commit.synced();
        assert_eq!(commit.next(), Next::Report(1));
        assert_eq!(commit.next(), Next::Report(2));
    }

    #[test]
    fn writes_without_fsync_are_reported_at_once_when_nothing_is_in_flight() {
        let mut commit = GroupCommit::default();
        commit.written(1, false);
        commit.written(2, false);
        assert_eq!(commit.next(), Next::Report(2));
    }

    #[test]
    fn an_inline_fsync_covers_everything_and_a_late_completion_never_goes_back() {
        let mut commit = GroupCommit::default();
        commit.written(1, true);
        assert_eq!(commit.next(), Next::Sync);
        commit.written(2, true);
        commit.all_durable();
        assert_eq!(commit.next(), Next::Report(2));
        commit.synced();
        assert_eq!(commit.next(), Next::Wait);
    }

    #[test]
    fn the_start_up_write_is_fsynced_but_never_reported() {
        let mut commit = GroupCommit::default();
        commit.written(0, true);
        assert_eq!(commit.next(), Next::Sync);
        commit.synced();
        assert_eq!(commit.next(), Next::Wait);
        commit.written(1, true);
        assert_eq!(commit.next(), Next::Sync);
    }

    #[test]
    #[should_panic(expected = "ready order")]
    fn writes_out_of_order_are_refused() {
        let mut commit = GroupCommit::default();
        commit.written(2, true);
        commit.written(1, true);
    }
}
