//! [`Values`]: where the store keeps what its in-memory index leaves out — every version's
//! key-value, value included — in the storage engine's `key` table (revision → encoded
//! `KeyValue`, etcd's layout), plus the versions written since the last commit, which the engine
//! does not hold yet. Reads look at those first, then at the versions of a commit being written
//! off the owner's thread ([`Values::begin_commit`], taken in by [`Values::finish_commit`]), then
//! at a view of the last commit.
//!
//! A read that finds the file damaged answers a storage error and latches it ([`Values::failure`]):
//! the store can no longer be trusted, and its owner stops the member.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use prost::Message as _;

use super::row::decode_key_value;
use super::value_reads::ValueReads;
use super::KvError;
use crate::engine::{
    Applied, Batch, CommitJob, DefragError, DefragStep, Engine, EngineError, Revision, Stored, View,
};
use crate::proto::mvccpb::KeyValue;

/// The engine's page cache when the store makes its own in-memory engine.
const IN_MEMORY_CACHE_BYTES: usize = 4 << 20;
/// The most revisions compaction dropped that one commit deletes from the file (etcd deletes
/// them in batches of 1,000, pausing 10 ms between batches; the node commits every
/// `COMPACTION_PAUSE` while deletes wait): compacting a million revisions is then spread over
/// many short commits instead of stalling the node. With 10,000 per commit, each commit with
/// 1 KiB values took 100–560 ms under a put load, back to back (`BENCHMARKS.md`, session 21).
/// Until deleted, a dropped revision is
/// still in the file but no longer in the index: reads never reach it (they go through the
/// index, and history reads start at the compaction), and a load drops it again (`load`).
/// The simulator's runs write a few thousand revisions: it deletes a few per commit, so its
/// crashes, snapshots, state transfers and defragmentations meet leftovers (same code path).
#[cfg(not(madsim))]
pub(crate) const COMPACTION_DELETES_PER_COMMIT: usize = 1_000;
#[cfg(madsim)]
pub(crate) const COMPACTION_DELETES_PER_COMMIT: usize = 16;

/// Versions by (main, sub) revision.
pub(crate) type Versions = BTreeMap<(i64, i64), KeyValue>;

/// A commit being written off the owner's thread.
struct Committing {
    job: CommitJob,
    /// The versions it writes: reads find them here until it is taken in.
    versions: Versions,
    applied: Option<Applied>,
}

impl Drop for Committing {
    /// A commit dropped in flight (its store went away) is written first, or waited for: the
    /// engine must not close under a write. Its result no longer matters to anyone.
    fn drop(&mut self) {
        self.job.run();
    }
}

/// The key-values of every retained version: committed ones in the engine, newer ones pending.
pub(crate) struct Values {
    /// The commit being written, if one is (at most one at a time). First, so that it is dropped
    /// — written, or waited for — before the engine it writes to.
    committing: Option<Committing>,
    engine: Engine,
    /// The state as of the last commit; replaced after every commit, so the engine can reuse the
    /// pages older commits freed (a read off the owner's thread may hold it a little longer:
    /// [`ValueReads`]). `None` only while the engine is being defragmented in place (or if a
    /// view could not be opened after it, which stops the member).
    view: Option<Arc<View>>,
    /// Versions written since the last commit began, by (main, sub).
    pending: Versions,
    pending_bytes: usize,
    /// Committed versions compaction dropped since the last commit.
    doomed: Vec<(i64, i64)>,
    /// How many of `doomed` the commits so far deleted.
    deletes_staged: u64,
    /// The next commit replaces everything the engine holds (the state was replaced).
    replace_all: bool,
    /// Shared with the reads handed off the owner's thread ([`ValueReads`]), which latch it too.
    failure: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Values")
            .field("engine", &self.engine.path())
            .field("pending", &self.pending.len())
            .field("doomed", &self.doomed.len())
            .finish_non_exhaustive()
    }
}

impl Values {
    /// Values kept in `engine`, which must hold exactly the revisions the caller's index holds
    /// (or be cleared before the first commit).
    pub(crate) fn new(engine: Engine) -> Result<Self, EngineError> {
        let view = engine.view()?;
        Ok(Values {
            committing: None,
            engine,
            view: Some(Arc::new(view)),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            doomed: Vec::new(),
            deletes_staged: 0,
            replace_all: false,
            failure: Arc::new(OnceLock::new()),
        })
    }

    /// Values in an engine of their own, in memory.
    pub(crate) fn in_memory() -> Self {
        let made = Engine::in_memory(IN_MEMORY_CACHE_BYTES).and_then(Values::new);
        match made {
            Ok(values) => values,
            // Only allocation can fail for an engine in memory.
            Err(error) => panic!("an in-memory storage engine failed: {error}"),
        }
    }

    /// The first storage error this store met, if any.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    fn fail(&self, what: String) -> KvError {
        let _ = self.failure.set(what.clone());
        KvError::Storage(what)
    }

    /// Records the key-value of a new version (a tombstone's carries only key and revision).
    pub(crate) fn record(&mut self, sub: i64, kv: KeyValue) {
        self.pending_bytes += kv.key.len() + kv.value.len();
        self.pending.insert((kv.mod_revision, sub), kv);
    }

    /// Forgets a version compaction dropped.
    ///
    /// Dropped revisions leave the file oldest first, over several commits, and a load in
    /// between takes a key's newest revision left at or below the compaction for its state
    /// then. So a dropped version not committed yet is still written, and deleted in its turn:
    /// left out, the key's older committed versions would be the newest a load finds, and a key
    /// deleted just before a compaction would come back with an old value.
    pub(crate) fn forget(&mut self, main: i64, sub: i64) {
        if self.replace_all {
            self.pending.remove(&(main, sub));
        } else {
            self.doomed.push((main, sub));
        }
    }

    /// Drops everything: the next commit writes the whole state anew.
    pub(crate) fn clear(&mut self) {
        self.assert_no_commit_in_flight();
        self.pending.clear();
        self.pending_bytes = 0;
        self.doomed.clear();
        self.replace_all = true;
    }

    /// How many changes the next commit makes (replacing everything counts as one; of the
    /// revisions compaction dropped, only those it deletes), and the bytes of the pending
    /// versions (a bound on what they hold).
    pub(crate) fn uncommitted(&self) -> (usize, usize) {
        let deletes = self.doomed.len().min(COMPACTION_DELETES_PER_COMMIT);
        let changes = self.pending.len() + deletes + usize::from(self.replace_all);
        (changes, self.pending_bytes)
    }

    /// How many revisions compaction dropped are still in the file, to be deleted.
    pub(crate) fn deletes_waiting(&self) -> usize {
        self.doomed.len()
    }

    /// How many revisions compaction dropped the commits so far deleted.
    pub(crate) fn deletes_staged(&self) -> u64 {
        self.deletes_staged
    }

    /// The value of version (main, sub) of `key`.
    pub(crate) fn value(&self, key: &[u8], main: i64, sub: i64) -> Result<Vec<u8>, KvError> {
        if let Some(kv) = self.uncommitted_version(main, sub) {
            return Ok(kv.value.clone());
        }
        read_value(self.view()?, key, main, sub).map_err(|what| self.fail(what))
    }

    /// The value of version (main, sub) of `key` if it is not committed yet (only the owner
    /// holds it); else `None`, and `reads` will read it, into `kvs[slot]`, from the view of the
    /// last commit — off the owner's thread if its holder likes.
    pub(crate) fn value_or_defer(
        &self,
        main: i64,
        sub: i64,
        slot: usize,
        reads: &mut ValueReads,
    ) -> Result<Option<Vec<u8>>, KvError> {
        if let Some(kv) = self.uncommitted_version(main, sub) {
            return Ok(Some(kv.value.clone()));
        }
        reads.add(self.view_shared()?, &self.failure, slot, main, sub);
        Ok(None)
    }

    /// Version (main, sub) if it was written since the last commit (or is being committed).
    fn uncommitted_version(&self, main: i64, sub: i64) -> Option<&KeyValue> {
        let committing = self.committing.as_ref().map(|c| &c.versions);
        [Some(&self.pending), committing]
            .into_iter()
            .flatten()
            .find_map(|versions| versions.get(&(main, sub)))
    }

    /// The key of every version from revision `main` on, handed to `each` in (main, sub) order —
    /// committed ones from the engine, then those written since (always newer) — until it
    /// returns false: a bounded read of history stops reading there.
    pub(crate) fn keys_since_each(
        &self,
        main: i64,
        mut each: impl FnMut((i64, i64), &[u8]) -> bool,
    ) -> Result<(), KvError> {
        let mut last = None;
        let mut each = |revision: (i64, i64), key: &[u8]| {
            assert!(
                last.is_none_or(|last| last < revision),
                "versions written since the last commit are newer than the committed ones"
            );
            last = Some(revision);
            each(revision, key)
        };
        let mut going = true;
        // After a replacement every retained version is pending; the view is the old state.
        if !self.replace_all {
            let from = Revision {
                main: main.max(0) as u64,
                sub: 0,
            };
            let mut damaged = None;
            self.view()?
                .revision_bytes_from(from, |revision, _, bytes| {
                    let revision_i64 = (revision.main as i64, revision.sub as i64);
                    // Only the key is needed: decoded in place, the value is not copied.
                    match decode_key_value(bytes) {
                        Ok(kv) if kv.mod_revision == revision_i64.0 => {
                            going = each(revision_i64, kv.key);
                            going
                        }
                        _ => {
                            damaged = Some(revision);
                            false
                        }
                    }
                })
                .map_err(|error| self.fail(error.to_string()))?;
            if let Some(revision) = damaged {
                return Err(self.fail(format!(
                    "{}: revision {}.{} does not hold a key-value of that revision",
                    self.engine.path().display(),
                    revision.main,
                    revision.sub
                )));
            }
        }
        // A commit in flight holds versions newer than the view's, older than the pending ones.
        let committing = self.committing.as_ref().map(|c| &c.versions);
        for versions in [committing, Some(&self.pending)].into_iter().flatten() {
            if !going {
                break;
            }
            for (&revision, kv) in versions.range((main, i64::MIN)..) {
                going = each(revision, &kv.key);
                if !going {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Moves what changed since the last commit into `batch`, with the store's revisions; gives
    /// back the versions it staged.
    pub(crate) fn stage(
        &mut self,
        batch: &mut Batch,
        current_revision: i64,
        compact_revision: i64,
    ) -> Versions {
        if std::mem::take(&mut self.replace_all) {
            batch.replace_all();
        }
        let staged = std::mem::take(&mut self.pending);
        for (&(main, sub), kv) in &staged {
            let revision = Revision {
                main: main as u64,
                sub: sub as u64,
            };
            // A put's create revision is its own or an earlier one, never 0; a tombstone's is 0.
            let stored = Stored {
                tombstone: kv.create_revision == 0,
                key_value: kv.encode_to_vec(),
            };
            batch.put_revision(revision, stored);
        }
        self.pending_bytes = 0;
        // In revision order: neighbouring rows share the file's pages, so a commit rewrites
        // few of them (compaction finds the revisions key by key, scattered over the file).
        if !self.doomed.is_sorted() {
            self.doomed.sort_unstable();
        }
        let deleted = self.doomed.len().min(COMPACTION_DELETES_PER_COMMIT);
        self.deletes_staged += deleted as u64;
        for (main, sub) in self.doomed.drain(..deleted) {
            batch.delete_revision(Revision {
                main: main as u64,
                sub: sub as u64,
            });
        }
        batch.set_current_revision(current_revision as u64);
        batch.set_compact_revision(compact_revision as u64);
        staged
    }

    /// Whether the next commit replaces everything the engine holds.
    pub(crate) fn replaces_all(&self) -> bool {
        self.replace_all
    }

    /// Starts committing `batch` (fsynced if `durable`), which holds the staged `versions`:
    /// the returned job writes it, on any thread, while reads find those versions here; then
    /// [`Values::finish_commit`]. One commit at a time, and not one replacing the whole state
    /// (reads would find the old state's rows in the view meanwhile).
    pub(crate) fn begin_commit(
        &mut self,
        batch: Batch,
        durable: bool,
        versions: Versions,
    ) -> Result<CommitJob, KvError> {
        self.assert_no_commit_in_flight();
        assert!(
            !batch.replaces_all(),
            "a commit replacing the whole state is made in place"
        );
        match self.engine.prepare_commit(batch, durable) {
            Ok((prepared, applied)) => {
                let job = CommitJob::new(prepared);
                self.committing = Some(Committing {
                    job: job.clone(),
                    versions,
                    applied,
                });
                Ok(job)
            }
            Err(error) => Err(self.fail(error.to_string())),
        }
    }

    /// Takes in the commit in flight, if any — running it here if nobody started it, waiting
    /// for it if it is running — and reads the new state from then on; true if there was one.
    pub(crate) fn finish_commit(&mut self) -> Result<bool, KvError> {
        let Some(committing) = self.committing.take() else {
            return Ok(false);
        };
        let finished = committing.job.take_result().and_then(|()| {
            self.engine.finish_commit(committing.applied);
            self.engine.view()
        });
        match finished {
            Ok(view) => {
                self.view = Some(Arc::new(view));
                Ok(true)
            }
            Err(error) => Err(self.fail(error.to_string())),
        }
    }

    /// The commit being written, if one is.
    pub(crate) fn commit_in_flight(&self) -> Option<&CommitJob> {
        self.committing.as_ref().map(|c| &c.job)
    }

    /// The engine is its owner's alone (no commit being written) where that is required.
    fn assert_no_commit_in_flight(&self) {
        assert!(
            self.committing.is_none(),
            "the engine's commit in flight must be finished first"
        );
    }

    /// Commits `batch` (fsynced if `durable`) and reads the new state from then on.
    pub(crate) fn commit(&mut self, batch: Batch, durable: bool) -> Result<(), KvError> {
        self.assert_no_commit_in_flight();
        let committed = self
            .engine
            .commit(batch, durable)
            .and_then(|()| self.engine.view());
        match committed {
            Ok(view) => {
                self.view = Some(Arc::new(view));
                Ok(())
            }
            Err(error) => Err(self.fail(error.to_string())),
        }
    }

    /// The engine's file.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, given back.
    pub(crate) fn into_engine(self) -> Engine {
        self.assert_no_commit_in_flight();
        self.engine
    }

    /// The engine, to stage and install a state another member sends (and to plant faults in
    /// tests). No commit may be in flight: the engine has one writer.
    pub(crate) fn engine_mut(&mut self) -> &mut Engine {
        self.assert_no_commit_in_flight();
        &mut self.engine
    }

    /// Replaced files no view reads any more, to be closed where blocking is allowed (a commit
    /// may be in flight: this writes nothing).
    pub(crate) fn take_closable_files(&mut self) -> Vec<crate::engine::RetiredFile> {
        self.engine.close_retired();
        self.engine.take_closable()
    }

    /// Reads the engine's newest state from now on.
    #[cfg(test)]
    pub(crate) fn refresh_view(&mut self) -> Result<(), EngineError> {
        self.view = Some(Arc::new(self.engine.view()?));
        Ok(())
    }

    fn view(&self) -> Result<&View, KvError> {
        self.view_shared().map(|view| view.as_ref())
    }

    fn view_shared(&self) -> Result<&Arc<View>, KvError> {
        match &self.view {
            Some(view) => Ok(view),
            None => Err(self.fail(format!(
                "{}: no view of the file after defragmenting it",
                self.engine.path().display()
            ))),
        }
    }

    /// Starts rewriting the engine's file compactly while writes go on (every change must be
    /// committed first); false if that is already under way.
    pub(crate) fn start_defragment(&mut self) -> Result<bool, DefragError> {
        self.assert_no_commit_in_flight();
        // Compacted revisions still to delete are fine: the copy gets their deletes in the
        // batches committed after it started.
        assert!(
            self.pending.is_empty() && !self.replace_all,
            "defragmenting with uncommitted changes"
        );
        let started = self.engine.start_defragment();
        if let Err(DefragError::Storage(error)) = &started {
            self.fail(error.to_string());
        }
        started
    }

    /// Moves an online defragmentation on by about `max_bytes`; once the copy replaced the file,
    /// reads go to it.
    pub(crate) fn defragment_step(&mut self, max_bytes: usize) -> Result<DefragStep, DefragError> {
        self.assert_no_commit_in_flight();
        let step = self.engine.defragment_step(max_bytes);
        match &step {
            Ok(DefragStep::Done) => match self.engine.view() {
                Ok(view) => {
                    // The old file's last reader here is let go.
                    self.view = Some(Arc::new(view));
                    self.engine.close_retired();
                }
                Err(error) => {
                    self.fail(error.to_string());
                    return Err(DefragError::Storage(error));
                }
            },
            Err(DefragError::Storage(error)) => {
                self.fail(error.to_string());
            }
            _ => {}
        }
        step
    }

    /// Rewrites the engine's file compactly in place (every change must be committed first). Its
    /// view is let go meanwhile: the engine can only move pages no reader holds.
    pub(crate) fn defragment(&mut self) -> Result<(), EngineError> {
        self.assert_no_commit_in_flight();
        assert!(
            self.pending.is_empty() && !self.replace_all,
            "defragmenting with uncommitted changes"
        );
        self.view = None;
        let defragmented = self.engine.defragment();
        match self.engine.view() {
            Ok(view) => self.view = Some(Arc::new(view)),
            Err(error) => {
                self.fail(error.to_string());
                return Err(error);
            }
        }
        defragmented
    }
}

/// The value of version (main, sub) of `key`, read from `view`; what is wrong with the file if
/// it does not hold that.
pub(super) fn read_value(view: &View, key: &[u8], main: i64, sub: i64) -> Result<Vec<u8>, String> {
    let revision = Revision {
        main: main as u64,
        sub: sub as u64,
    };
    let stored = match view.revision(revision) {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            return Err(format!(
                "{}: revision {main}.{sub} of key {} is missing",
                view.path().display(),
                key.escape_ascii()
            ))
        }
        Err(error) => return Err(error.to_string()),
    };
    match KeyValue::decode(stored.key_value.as_slice()) {
        Ok(kv) if kv.key == key && kv.mod_revision == main && !stored.tombstone => Ok(kv.value),
        _ => Err(format!(
            "{}: revision {main}.{sub} does not hold a value of key {}",
            view.path().display(),
            key.escape_ascii()
        )),
    }
}
