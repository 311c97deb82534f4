//! [`CommitJob`]: one prepared commit, shared between the engine's owner and whoever runs it.
//! The owner hands a clone to its runtime, which runs it where blocking is allowed while the
//! owner goes on; when the owner needs the result — the runtime said it ran, or the owner needs
//! the engine to itself — it takes it, running the commit in place if nobody has started it yet
//! and waiting for it if it is running. So a commit runs exactly once, whoever gets to it first,
//! and the owner never depends on the runtime for progress.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::file::EngineError;
use super::store::PreparedCommit;

/// Where a commit is.
enum Stage {
    Prepared(Box<PreparedCommit>),
    /// Taken out to run; seen only if the run panicked (the lock is held while it runs).
    Running,
    Done(Result<(), EngineError>),
    /// Its result was taken.
    Taken,
}

/// A prepared commit, run once by whoever gets to it first. Clones share it.
#[derive(Clone)]
pub struct CommitJob {
    stage: Arc<Mutex<Stage>>,
    /// The engine's file, as errors name it.
    path: PathBuf,
}

impl std::fmt::Debug for CommitJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitJob")
    }
}

impl CommitJob {
    pub fn new(prepared: PreparedCommit) -> Self {
        CommitJob {
            path: prepared.path().to_path_buf(),
            stage: Arc::new(Mutex::new(Stage::Prepared(Box::new(prepared)))),
        }
    }

    /// Runs the commit unless it ran or is running (then waits for it to end). Blocks for as long
    /// as the commit takes: call it where blocking is allowed.
    pub fn run(&self) {
        let mut stage = self.lock();
        if let Stage::Prepared(_) = &*stage {
            let Stage::Prepared(prepared) = std::mem::replace(&mut *stage, Stage::Running) else {
                unreachable!("matched just above");
            };
            *stage = Stage::Done(prepared.run());
        }
    }

    /// Whether the commit ran (its result may have been taken since).
    pub fn ran(&self) -> bool {
        matches!(&*self.lock(), Stage::Done(_) | Stage::Taken)
    }

    /// The commit's result, running it first if nobody did (waiting for it if it is running).
    /// Taken once.
    pub fn take_result(&self) -> Result<(), EngineError> {
        self.run();
        match std::mem::replace(&mut *self.lock(), Stage::Taken) {
            Stage::Done(result) => result,
            Stage::Running => Err(EngineError::CommitPanicked {
                path: self.path.clone(),
            }),
            Stage::Prepared(_) | Stage::Taken => {
                panic!("a commit's result is taken once, after it ran")
            }
        }
    }

    /// The stage, even if a thread panicked holding the lock (the stage then says so).
    fn lock(&self) -> MutexGuard<'_, Stage> {
        self.stage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Applied, Batch, Engine, Revision, Stored};

    fn revision(main: u64) -> Revision {
        Revision { main, sub: 0 }
    }

    fn batch_at(index: u64) -> Batch {
        let mut batch = Batch::new();
        let stored = Stored {
            tombstone: false,
            key_value: vec![index as u8],
        };
        batch.put_revision(revision(index), stored);
        batch.set_applied(Applied { index, term: 1 });
        batch
    }

    #[test]
    fn a_prepared_commit_is_unseen_until_run_runs_once_and_holds_the_only_writer() {
        let mut engine = Engine::in_memory(1 << 20).unwrap();
        let (prepared, applied) = engine.prepare_commit(batch_at(1), false).unwrap();
        assert_eq!(applied, Some(Applied { index: 1, term: 1 }));
        let job = CommitJob::new(prepared);
        assert!(
            engine.prepare_commit(batch_at(2), false).is_err(),
            "a second writer is refused while one is prepared"
        );
        assert_eq!(engine.view().unwrap().revision(revision(1)).unwrap(), None);
        assert!(!job.ran());
        // The runtime's clone runs it; the owner's run and take find it done.
        job.clone().run();
        assert!(job.ran());
        job.run();
        job.take_result().unwrap();
        assert_eq!(engine.applied().index, 0, "taken in only by finish_commit");
        engine.finish_commit(applied);
        assert_eq!(engine.applied().index, 1);
        let stored = engine.view().unwrap().revision(revision(1)).unwrap();
        assert_eq!(stored.map(|s| s.key_value), Some(vec![1]));
        engine.commit(batch_at(2), false).unwrap();
        assert_eq!(engine.applied().index, 2, "the writer is free again");
    }

    #[test]
    fn taking_the_result_runs_a_commit_nobody_started_and_dropping_one_writes_nothing() {
        let mut engine = Engine::in_memory(1 << 20).unwrap();
        let (prepared, applied) = engine.prepare_commit(batch_at(1), true).unwrap();
        let job = CommitJob::new(prepared);
        job.take_result().unwrap();
        engine.finish_commit(applied);
        assert!(engine
            .view()
            .unwrap()
            .revision(revision(1))
            .unwrap()
            .is_some());
        let (prepared, _) = engine.prepare_commit(batch_at(2), false).unwrap();
        drop(CommitJob::new(prepared));
        assert_eq!(engine.view().unwrap().revision(revision(2)).unwrap(), None);
        assert_eq!(engine.view().unwrap().applied().unwrap().index, 1);
        engine.commit(batch_at(3), false).unwrap();
    }

    #[test]
    #[should_panic(expected = "taken once")]
    fn a_result_is_taken_once() {
        let mut engine = Engine::in_memory(1 << 20).unwrap();
        let (prepared, _) = engine.prepare_commit(batch_at(1), false).unwrap();
        let job = CommitJob::new(prepared);
        job.take_result().unwrap();
        let _ = job.take_result();
    }
}
