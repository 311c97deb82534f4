//! `Maintenance.Defragment` on a member. An engine on a disk is defragmented online: the request
//! starts a copy of the committed state (or joins the one under way), every turn of the driver
//! moves it on by a bounded step (`Tick` and `Persisted` inputs, and the node asks to be woken at
//! once while one is under way), and the callers are answered when the copy replaced the file or
//! the engine gave it up. Writes, reads and raft go on meanwhile. An engine in memory is
//! defragmented in place, at once.

use super::request::{ClientError, ClientResponse, RequestId};
use super::Node;
use crate::engine::{DefragError, DefragStep};

/// About how many bytes of rows or batches one step of an online defragmentation copies: bounds
/// how long a step holds the driver.
pub const DEFRAG_STEP_BYTES: usize = 512 << 10;
/// Defragment requests that may wait for the one under way.
const MAX_DEFRAG_WAITERS: usize = 256;

impl Node {
    /// Starts (or joins) a defragmentation for request `id`.
    pub(super) fn on_defragment(&mut self, id: RequestId) {
        if !self.state.kv.engine().defragments_online() {
            let result = self.defragment();
            return self.reply(id, result);
        }
        if self.defrag_waiters.len() >= MAX_DEFRAG_WAITERS {
            let why = format!("{MAX_DEFRAG_WAITERS} requests already wait for one");
            return self.reply(id, Err(ClientError::Defragment(why)));
        }
        if !self.state.kv.engine().defragmenting() {
            // The copy holds the live tables only: a transfer's staged rows would be lost.
            if self.receiving_state() {
                let why = "a state sent by the leader is being received; try again once it is \
                           installed";
                return self.reply(id, Err(ClientError::Defragment(why.to_string())));
            }
            if self.drop_stale_transfer().is_err() {
                self.stopped_on_storage_failure();
                return self.reply(id, Err(ClientError::Stopped));
            }
            // The copy starts from the committed state: everything applied is in it.
            self.commit_state(false);
            if self.failed {
                return self.reply(id, Err(ClientError::Stopped));
            }
            match self.state.kv.start_defragment() {
                Ok(_) => {}
                Err(DefragError::Abandoned(why)) => {
                    return self.reply(id, Err(ClientError::Defragment(why)));
                }
                Err(DefragError::Storage(_)) => {
                    self.stopped_on_storage_failure();
                    return self.reply(id, Err(ClientError::Stopped));
                }
            }
        }
        self.defrag_waiters.push(id);
    }

    /// Whether a defragmentation has work to do now.
    pub(super) fn defragment_due(&self) -> bool {
        !self.defrag_waiters.is_empty() || self.state.kv.engine().defragmenting()
    }

    /// Moves the defragmentation under way on by one step, answering its callers when it ends.
    pub(super) fn step_defragment(&mut self) {
        if self.failed || !self.defragment_due() {
            return;
        }
        // A step may swap the file in: the engine is the node's alone for it.
        self.finish_state_commit();
        if self.failed {
            return;
        }
        let result = match self.state.kv.defragment_step(DEFRAG_STEP_BYTES) {
            Ok(DefragStep::Working) => return,
            Ok(DefragStep::Done) => {
                self.release_replaced_file();
                Ok(ClientResponse::Defragment(Default::default()))
            }
            // The engine dropped it: a state sent by the leader came in meanwhile.
            Ok(DefragStep::Idle) => Err(ClientError::Defragment(
                "a state sent by the leader came in meanwhile; try again once it is installed"
                    .to_string(),
            )),
            Err(DefragError::Abandoned(why)) => Err(ClientError::Defragment(why)),
            Err(DefragError::Storage(_)) => {
                self.stopped_on_storage_failure();
                Err(ClientError::Stopped)
            }
        };
        for id in std::mem::take(&mut self.defrag_waiters) {
            self.reply(id, result.clone());
        }
    }

    /// Lets go of the view kept for sending the latest snapshot: it reads the replaced file,
    /// which would otherwise stay on disk until the next snapshot. A follower that needs a
    /// snapshot from now on makes the node take a new one of the new file.
    fn release_replaced_file(&mut self) {
        if self.state_view.take().is_some() {
            self.raw.mut_store().stop_serving_state();
        }
    }
}
