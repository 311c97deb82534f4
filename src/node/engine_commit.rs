//! Handing the applied state to the storage engine in batches, as etcd's backend does: the
//! changes of applied entries collect in the store and are committed when a batch fills (ops or
//! bytes) or a short interval passes, with the applied index and term and raft's configuration as
//! of it. Most commits are not fsynced — the WAL holds the entries — so they cost a write to the
//! file's cache, not a disk flush. One is fsynced when `durable_commit_entries` entries were
//! applied since the last durable one (a restart after a crash replays at most about that many from the WAL),
//! and the commit before a snapshot lets the WAL drop entries, so it is fsynced too. While a
//! compaction is not finished — its pass over the index has keys to go, or revisions it dropped
//! wait to leave the file — a commit moving it on (the pass by a step, the deletes by a batch) is
//! due every `COMPACTION_PAUSE`, and the deletes count toward the next durable commit; a
//! `physical` compaction is answered once it is finished. A storage error stops the member.

use std::time::Duration;

use protobuf::Message as _;

use super::request::{ClientError, ClientResponse};
use super::{Node, Output};
use crate::engine::Applied;
use crate::time::Instant;

/// Changes applied before a commit is due (etcd's `batchLimit`).
pub const BATCH_OPS: usize = 10_000;
/// Bytes of keys and values applied before a commit is due: bounds what waits in memory.
pub const BATCH_BYTES: usize = 16 << 20;
/// Longest a change waits for its commit (etcd's `batchInterval`).
pub const BATCH_INTERVAL: Duration = Duration::from_millis(100);
/// While revisions compaction dropped wait to be deleted from the file, a commit (deleting the
/// next `COMPACTION_DELETES_PER_COMMIT` of them) is due this soon: etcd's compaction pauses as
/// long between its batches of deletes, so writes get the node between two.
pub const COMPACTION_PAUSE: Duration = Duration::from_millis(10);

/// Changes that may wait while a commit is being written before applying waits for it: what
/// waits in memory stays bounded however slow the disk.
pub const MAX_WAITING_OPS: usize = 2 * BATCH_OPS;
pub const MAX_WAITING_BYTES: usize = 2 * BATCH_BYTES;

/// A commit of the applied state being written off the node's thread (`Output::CommitState`).
#[derive(Debug)]
pub(super) struct InFlight {
    /// What `Input::StateCommitted` names it by.
    number: u64,
    marks: Marks,
}

/// What a commit stands for once it is taken in.
#[derive(Debug)]
struct Marks {
    durable: bool,
    /// The applied index it makes durable, if it is durable.
    durable_index: Option<u64>,
    /// How many revisions compaction dropped it deletes.
    deletes: usize,
}

impl Node {
    /// Starts committing the applied state's changes if a batch is full or has waited long
    /// enough. While a commit is being written the next one waits for it, unless the changes
    /// waiting outgrow `MAX_WAITING_*`: then the node waits for it here.
    pub(super) fn commit_state_if_due(&mut self) {
        let (ops, bytes) = self.state.kv.uncommitted();
        if ops == 0 {
            // Nothing waits (a state installed from a leader replaced the pending changes): no
            // commit is due, or the node would wake at once for ever.
            self.uncommitted_since = None;
            return;
        }
        let since = *self.uncommitted_since.get_or_insert(self.now);
        if ops < BATCH_OPS && bytes < BATCH_BYTES && self.now < since + self.commit_interval() {
            return;
        }
        if self.state_commit.is_some() {
            if ops < MAX_WAITING_OPS && bytes < MAX_WAITING_BYTES {
                // Started when the one being written is taken in (`Input::StateCommitted`).
                return;
            }
            self.finish_state_commit();
            if self.failed {
                return;
            }
        }
        let every = self.config.durable_commit_entries.max(1);
        let durable = self.applied_index >= self.state_durable_index + every
            || self.deletes_since_durable >= every;
        if self.state.kv.replaces_all() {
            // Reads would find the old state in the engine while it was written elsewhere.
            self.commit_state(durable);
        } else {
            self.start_state_commit(durable);
        }
    }

    /// When the changes waiting for a commit are due, if any wait and no commit is being
    /// written (its end wakes the node).
    pub(super) fn state_commit_due(&self) -> Option<Instant> {
        if self.state_commit.is_some() {
            return None;
        }
        self.uncommitted_since
            .map(|since| since + self.commit_interval())
    }

    /// How long changes wait for their commit: shorter while compaction's deletes wait.
    fn commit_interval(&self) -> Duration {
        if !self.state.kv.compaction_finished() {
            COMPACTION_PAUSE
        } else {
            BATCH_INTERVAL
        }
    }

    /// The applied index and term, and raft's configuration as of it: what a commit ends at.
    fn applied_as_of_now(&self) -> Option<(Applied, Vec<u8>)> {
        let index = self.applied_index;
        let conf_state = self.raw.store().conf_state().write_to_bytes();
        match (raft::Storage::term(self.raw.store(), index), conf_state) {
            (Ok(term), Ok(conf_state)) => Some((Applied { index, term }, conf_state)),
            _ => None,
        }
    }

    /// Starts a commit of the applied state up to the applied index (fsynced if `durable`),
    /// written by the driver where blocking is allowed (`Output::CommitState`).
    pub(super) fn start_state_commit(&mut self, durable: bool) {
        assert!(self.state_commit.is_none(), "one commit in flight");
        if self.failed {
            return;
        }
        let begun = self.stage_state_commit(durable, |state, applied| {
            state.begin_commit(applied, durable)
        });
        if let Some((job, marks)) = begun {
            self.state_commits_started += 1;
            let number = self.state_commits_started;
            self.state_commit = Some(InFlight { number, marks });
            self.outputs.push_back(Output::CommitState { number, job });
        }
    }

    /// Commits (or begins committing) the applied state up to the applied index with `commit`,
    /// which is given what the commit ends at; what the commit stands for, or `None` if it
    /// failed (the node stops).
    fn stage_state_commit<T>(
        &mut self,
        durable: bool,
        commit: impl FnOnce(
            &mut crate::state::StateMachine,
            Option<(Applied, Vec<u8>)>,
        ) -> Result<T, crate::kv::KvError>,
    ) -> Option<(T, Marks)> {
        let applied = self.applied_as_of_now();
        let durable_index = applied
            .as_ref()
            .filter(|_| durable)
            .map(|(applied, _)| applied.index);
        self.uncommitted_since = None;
        let deletes_before = self.state.kv.deletes_staged();
        match commit(&mut self.state, applied) {
            Ok(done) => {
                let deletes = (self.state.kv.deletes_staged() - deletes_before) as usize;
                let marks = Marks {
                    durable,
                    durable_index,
                    deletes,
                };
                Some((done, marks))
            }
            Err(error) => {
                self.fail(format!("committing the applied state failed: {error}"));
                None
            }
        }
    }

    /// The driver wrote commit `number` (or could not: its result says).
    pub(super) fn on_state_committed(&mut self, number: u64) {
        // An older one was taken in already, by a step that needed the engine to itself.
        if self
            .state_commit
            .as_ref()
            .is_some_and(|c| c.number == number)
        {
            self.finish_state_commit();
        }
    }

    /// Takes in the commit being written, if any: runs it here if the driver did not start it,
    /// waits for it if it is running. Every step that needs the engine to itself calls this
    /// first.
    pub(super) fn finish_state_commit(&mut self) {
        let Some(in_flight) = self.state_commit.take() else {
            return;
        };
        if let Err(error) = self.state.finish_commit() {
            self.fail(format!("committing the applied state failed: {error}"));
            return;
        }
        self.after_state_commit(in_flight.marks);
        // A periodic snapshot waits only for the commit started with it, the one in flight.
        if let Some((number, snapshot)) = self.snapshot_commit.take() {
            assert_eq!(
                number, in_flight.number,
                "a snapshot waits for its own commit"
            );
            self.save_own_snapshot(snapshot);
        }
    }

    /// The number of the commit in flight, if one is.
    pub(super) fn state_commit_number(&self) -> Option<u64> {
        self.state_commit.as_ref().map(|c| c.number)
    }

    /// Commits the applied state up to the applied index (fsynced if `durable`) in place, after
    /// the commit being written, if any.
    pub(super) fn commit_state(&mut self, durable: bool) {
        self.finish_state_commit();
        if self.failed {
            return;
        }
        let committed =
            self.stage_state_commit(durable, |state, applied| state.commit(applied, durable));
        if let Some(((), marks)) = committed {
            self.after_state_commit(marks);
        }
    }

    /// Takes note of a commit taken in: the applied state it made durable (if it did), the
    /// revisions compaction dropped it deleted.
    fn after_state_commit(&mut self, marks: Marks) {
        if let Some(index) = marks.durable_index {
            self.state_durable_index = self.state_durable_index.max(index);
        }
        if marks.durable {
            self.deletes_since_durable = 0;
        } else {
            self.deletes_since_durable += marks.deletes as u64;
        }
        if self.state.kv.compaction_finished() {
            self.answer_physical_compactions();
        } else {
            // The next batch of deletes is due one pause from now, however idle the node.
            self.uncommitted_since.get_or_insert(self.now);
        }
    }

    /// A `physical` compaction is answered once the revisions it dropped are deleted from the
    /// file, as etcd answers it once its compaction finished in the backend (so a defragmentation
    /// started after it copies none of them). Later compactions' deletes may keep it waiting
    /// longer; the caller's own deadline is the bound, as in etcd.
    pub(super) fn hold_physical_compaction(
        &mut self,
        id: crate::node::RequestId,
        reply: Result<ClientResponse, ClientError>,
    ) {
        if reply.is_err()
            || self.state.kv.compaction_finished()
            || self.physical_compactions.len() >= self.config.max_pending_requests
        {
            self.complete(id, reply);
            return;
        }
        if self.finish(id).is_some() {
            self.physical_compactions.push((id, reply));
        }
    }

    fn answer_physical_compactions(&mut self) {
        for (id, reply) in std::mem::take(&mut self.physical_compactions) {
            self.reply(id, reply);
        }
    }

    /// Commits every change durably, lets go of the view kept to send the state, and rewrites
    /// the engine's file compactly. Blocks the node for as long as that takes (etcd's defrag
    /// stops the world the same way). A state being sent to a follower holds the file: the
    /// request is refused until the transfer ends.
    pub(super) fn defragment(&mut self) -> Result<ClientResponse, ClientError> {
        self.commit_state(true);
        if self.failed {
            return Err(ClientError::Stopped);
        }
        self.state_view = None;
        self.raw.mut_store().stop_serving_state();
        match self.state.kv.defragment() {
            Ok(()) => Ok(ClientResponse::Defragment(Default::default())),
            Err(error) => {
                if self.stopped_on_storage_failure() {
                    return Err(ClientError::Stopped);
                }
                Err(ClientError::Defragment(error.to_string()))
            }
        }
    }

    /// Stops the node if the store met a storage error (its state can no longer be trusted);
    /// true if it did.
    pub(super) fn stopped_on_storage_failure(&mut self) -> bool {
        if self.failed {
            return true;
        }
        let Some(why) = self.state.kv.storage_failure() else {
            return false;
        };
        let reason = format!("the storage engine failed: {why}");
        self.fail(reason);
        true
    }
}
