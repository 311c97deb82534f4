//! Sending the whole applied state to a follower too far behind for the log, and receiving it,
//! without ever holding it in memory (etcd sends its bbolt file beside the snapshot message).
//!
//! When raft needs a snapshot for a follower, the node commits the engine and takes a snapshot at
//! the applied index whose data is only [`ENGINE_STATE`]: the state is the engine's, as a
//! read-only view taken at that index and kept while that snapshot is the latest. Its
//! `MsgSnapshot` leaves as [`Output::SendState`](super::Output::SendState) with an [`Export`] of
//! the view: the transport sends the rows in chunks, then the message, on one connection.
//!
//! The follower stages each chunk ([`Input::StateChunk`](super::Input::StateChunk)) beside its
//! live tables, in order from the first, and lets the `MsgSnapshot` reach raft only when every
//! chunk before it was staged for that very snapshot. When raft hands the snapshot over to be
//! applied, the engine swaps the staged tables in with one durable transaction and the state is
//! loaded from it; a crash before that leaves the old state, a crash after finds the new one.

use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{Message, MessageType, Snapshot, SnapshotMetadata};

use super::{Node, Output};
use crate::engine::{Applied, Export, View};
use crate::time::Instant;
use crate::types::MemberId;

/// The data of a snapshot whose state is the sender's engine at the snapshot's index.
pub const ENGINE_STATE: &[u8] = b"stet: engine state v1";

/// Rows of the state a snapshot stands for, sent ahead of its `MsgSnapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChunk {
    /// The member sending it (the leader).
    pub from: MemberId,
    /// The snapshot's index and term.
    pub index: u64,
    pub term: u64,
    /// The chunk's place in the transfer, from 0.
    pub seq: u64,
    /// Rows, as `Export::next_chunk` cut them.
    pub rows: Vec<u8>,
}

/// The transfer this member is receiving.
#[derive(Debug)]
pub(super) struct Incoming {
    from: MemberId,
    index: u64,
    term: u64,
    next_seq: u64,
    /// When its last chunk was staged.
    last_chunk_at: Instant,
}

/// The view behind the latest snapshot with [`ENGINE_STATE`] data.
pub(super) struct StateView {
    index: u64,
    view: Arc<View>,
}

impl std::fmt::Debug for StateView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateView")
            .field("index", &self.index)
            .finish()
    }
}

/// Whether a snapshot's state is the sender's engine.
pub fn is_engine_state(snapshot: &Snapshot) -> bool {
    snapshot.data.as_ref() == ENGINE_STATE
}

impl Node {
    /// Keeps a view of the engine, just committed up to the applied index, for the snapshot at
    /// that index being taken to send.
    pub(super) fn keep_state_view(&mut self, index: u64) -> bool {
        match self.state.kv.engine().view() {
            Ok(view) => {
                let at = view.applied().map(|a| a.index);
                assert_eq!(at.ok(), Some(index), "the view is of the snapshot's index");
                self.state_view = Some(StateView {
                    index,
                    view: Arc::new(view),
                });
                true
            }
            Err(error) => {
                self.fail(format!("reading the state to send failed: {error}"));
                false
            }
        }
    }

    /// The applied state as a backup streams it (`Maintenance.Snapshot`): the metadata of a
    /// snapshot at the applied index and an export of the engine just committed up to it. The
    /// export reads a view kept apart from the node, while writes go on. `None` if the engine
    /// failed (the node stops on it).
    pub fn export_applied_state(&mut self) -> Option<(SnapshotMetadata, Export)> {
        self.commit_state(false);
        if self.failed {
            return None;
        }
        let mut snapshot = self.snapshot_at_applied_index(Vec::new())?;
        match self.state.kv.engine().view() {
            Ok(view) => {
                let at = view.applied().map(|a| a.index);
                assert_eq!(
                    at.ok(),
                    Some(self.applied_index),
                    "the export is of the applied index"
                );
                Some((snapshot.take_metadata(), Export::new(Arc::new(view))))
            }
            Err(error) => {
                self.fail(format!("reading the state to back up failed: {error}"));
                None
            }
        }
    }

    /// Forgets the view once the latest snapshot no longer stands for it.
    pub(super) fn drop_stale_state_view(&mut self) {
        let latest = self.raw.store().latest_snapshot();
        let current = is_engine_state(latest).then(|| latest.get_metadata().index);
        if self.state_view.as_ref().map(|v| v.index) != current {
            self.state_view = None;
        }
    }

    /// Queues the outputs that send `messages`: a `MsgSnapshot` whose state is this engine's
    /// leaves with an export of the view it stands for.
    pub(super) fn send_all(&mut self, messages: Vec<Message>) {
        for message in messages {
            if message.get_msg_type() != MessageType::MsgSnapshot
                || !is_engine_state(message.get_snapshot())
            {
                self.outputs.push_back(Output::Send(message));
                continue;
            }
            let index = message.get_snapshot().get_metadata().index;
            match &self.state_view {
                Some(kept) if kept.index == index => {
                    let state = Export::new(kept.view.clone());
                    self.outputs.push_back(Output::SendState { message, state });
                }
                // raft sends only the latest snapshot, whose view is kept. Sent without its rows
                // it would be refused; the failure makes raft ask for a snapshot again, and the
                // node takes a new one to send.
                _ => {
                    self.raw.mut_store().stop_serving_state();
                    self.raw
                        .report_snapshot(message.to, raft::SnapshotStatus::Failure);
                }
            }
        }
    }

    /// Stages a chunk of the state a leader is sending; a chunk out of order, of another
    /// transfer or refused by the engine ends the transfer (the leader starts over).
    pub(super) fn on_state_chunk(&mut self, chunk: StateChunk) {
        // Staging writes to the engine, which has one writer.
        self.finish_state_commit();
        if self.failed {
            return;
        }
        if chunk.seq == 0 {
            if let Err(error) = self.state.kv.engine_mut().clear_staged() {
                self.fail(format!("preparing to receive a state failed: {error}"));
                return;
            }
            self.incoming_state = Some(Incoming {
                from: chunk.from,
                index: chunk.index,
                term: chunk.term,
                next_seq: 0,
                last_chunk_at: self.now,
            });
        }
        let expected = self.incoming_state.as_ref().is_some_and(|incoming| {
            (
                incoming.from,
                incoming.index,
                incoming.term,
                incoming.next_seq,
            ) == (chunk.from, chunk.index, chunk.term, chunk.seq)
        });
        if !expected {
            self.incoming_state = None;
            return;
        }
        match self.state.kv.engine_mut().stage_chunk(&chunk.rows) {
            Ok(()) => {
                if let Some(incoming) = &mut self.incoming_state {
                    incoming.next_seq += 1;
                    incoming.last_chunk_at = self.now;
                }
            }
            Err(error) => {
                self.dropped_state_chunks += 1;
                self.last_refused_state = Some(error.to_string());
                self.incoming_state = None;
            }
        }
    }

    /// Whether a `MsgSnapshot` may reach raft: one carrying its state inline, or one whose rows
    /// were all staged, in order, for this very snapshot.
    pub(super) fn state_received_for(&self, message: &Message) -> bool {
        let snapshot = message.get_snapshot();
        if !is_engine_state(snapshot) {
            return true;
        }
        let meta = snapshot.get_metadata();
        self.incoming_state.as_ref().is_some_and(|incoming| {
            (incoming.from.0, incoming.index, incoming.term)
                == (message.from, meta.index, meta.term)
                && incoming.next_seq > 0
        })
    }

    /// Whether a transfer is being received: chunks came in lately. One the leader gave up on
    /// (it failed or lost its leadership) is left behind, and after a while it no longer counts.
    pub(super) fn receiving_state(&self) -> bool {
        self.incoming_state.as_ref().is_some_and(|incoming| {
            self.now.saturating_duration_since(incoming.last_chunk_at) < self.stale_transfer_after()
        })
    }

    /// Drops a transfer that is no longer being received and whatever it staged.
    pub(super) fn drop_stale_transfer(&mut self) -> Result<(), crate::engine::EngineError> {
        debug_assert!(!self.receiving_state());
        self.incoming_state = None;
        self.finish_state_commit();
        if let Some(why) = self.state.kv.storage_failure() {
            return Err(crate::engine::EngineError::Damaged {
                path: self.state.kv.engine().path().to_path_buf(),
                what: why.to_string(),
            });
        }
        let engine = self.state.kv.engine_mut();
        if engine.has_staged()? {
            engine.clear_staged()?;
        }
        Ok(())
    }

    /// How long without a chunk before a transfer counts as given up: two of the longest
    /// election timeouts, by which a stuck leader has been replaced.
    fn stale_transfer_after(&self) -> Duration {
        let ticks = u32::try_from(4 * self.config.election_ticks()).unwrap_or(u32::MAX);
        self.config.heartbeat_interval.saturating_mul(ticks)
    }

    /// Replaces the applied state with the staged one the snapshot stands for.
    pub(super) fn install_staged_state(&mut self, snapshot: &Snapshot) -> Result<(), String> {
        let meta = snapshot.get_metadata();
        let applied = Applied {
            index: meta.index,
            term: meta.term,
        };
        self.incoming_state = None;
        self.state
            .install_staged(applied)
            .map_err(|error| error.to_string())
    }
}
