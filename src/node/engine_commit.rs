//! Handing the applied state to the storage engine in batches, as etcd's backend does: the
//! changes of applied entries collect in the store and are committed when a batch fills (ops or
//! bytes) or a short interval passes, with the applied index and term and raft's configuration as
//! of it. Most commits are not fsynced — the WAL holds the entries — so they cost a write to the
//! file's cache, not a disk flush. One is fsynced when `durable_commit_entries` entries were
//! applied since the last durable one (a restart after a crash replays at most about that many from the WAL),
//! and the commit before a snapshot lets the WAL drop entries, so it is fsynced too. While
//! revisions compaction dropped wait to leave the file, a commit deleting the next batch of them
//! is due every `COMPACTION_PAUSE`, and the deletes count toward the next durable commit; a
//! `physical` compaction is answered once none wait. A storage error stops the member.

use std::time::Duration;

use protobuf::Message as _;

use super::request::{ClientError, ClientResponse};
use super::Node;
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

impl Node {
    /// Commits the applied state's changes if a batch is full or has waited long enough.
    pub(super) fn commit_state_if_due(&mut self) {
        let (ops, bytes) = self.state.kv.uncommitted();
        if ops == 0 {
            // Nothing waits (a state installed from a leader replaced the pending changes): no
            // commit is due, or the node would wake at once for ever.
            self.uncommitted_since = None;
            return;
        }
        let since = *self.uncommitted_since.get_or_insert(self.now);
        if ops >= BATCH_OPS || bytes >= BATCH_BYTES || self.now >= since + self.commit_interval() {
            let every = self.config.durable_commit_entries.max(1);
            let durable = self.applied_index >= self.state_durable_index + every
                || self.deletes_since_durable >= every;
            self.commit_state(durable);
        }
    }

    /// When the changes waiting for a commit are due, if any wait.
    pub(super) fn state_commit_due(&self) -> Option<Instant> {
        self.uncommitted_since
            .map(|since| since + self.commit_interval())
    }

    /// How long changes wait for their commit: shorter while compaction's deletes wait.
    fn commit_interval(&self) -> Duration {
        if self.state.kv.deletes_waiting() > 0 {
            COMPACTION_PAUSE
        } else {
            BATCH_INTERVAL
        }
    }

    /// Commits the applied state up to the applied index (fsynced if `durable`).
    pub(super) fn commit_state(&mut self, durable: bool) {
        if self.failed {
            return;
        }
        let index = self.applied_index;
        let conf_state = self.raw.store().conf_state().write_to_bytes();
        let applied = match (raft::Storage::term(self.raw.store(), index), conf_state) {
            (Ok(term), Ok(conf_state)) => Some((Applied { index, term }, conf_state)),
            _ => None,
        };
        self.uncommitted_since = None;
        let marks_index = durable && applied.is_some();
        let deletes_before = self.state.kv.deletes_waiting();
        match self.state.commit(applied, durable) {
            Ok(()) if marks_index => self.state_durable_index = index,
            Ok(()) => {}
            Err(error) => self.fail(format!("committing the applied state failed: {error}")),
        }
        let deleted = deletes_before.saturating_sub(self.state.kv.deletes_waiting());
        if durable {
            self.deletes_since_durable = 0;
        } else {
            self.deletes_since_durable += deleted as u64;
        }
        if self.failed {
            return;
        }
        if self.state.kv.deletes_waiting() == 0 {
            self.answer_physical_compactions();
        } else {
            // The next batch of deletes is due one pause from now, however idle the node.
            self.uncommitted_since = Some(self.now);
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
            || self.state.kv.deletes_waiting() == 0
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
