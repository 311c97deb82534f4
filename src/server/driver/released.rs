//! WAL segments released from the log, their files removed off the driver's task: the WAL takes a
//! released segment out of the log by a rename, and removing the file (64 MiB) took ext4 ~15 ms,
//! which on the driver's task held every request (`BENCHMARKS.md`, session 26). A failure is
//! logged; the files stay under their released names, and the next start hands them over again.

use std::future::pending;
use std::path::PathBuf;

use super::super::env::{BoxDisk, BoxFuture, Environment, Mistake};
use crate::disk::DiskError;
use crate::storage::MemberStorage;

/// Released files waiting beyond this many mean removals stopped keeping up: a bug.
const MAX_WAITING_FILES: usize = 4096;

/// At most one removal in flight; files released meanwhile wait for the next.
#[derive(Default)]
pub(super) struct ReleasedSegments {
    job: Option<BoxFuture<Result<(), DiskError>>>,
    waiting: Vec<PathBuf>,
}

impl ReleasedSegments {
    /// Takes the files the WAL released and starts removing them, unless a removal is running.
    pub(super) fn start_if_any(
        &mut self,
        storage: &mut MemberStorage<BoxDisk>,
        env: &dyn Environment,
    ) {
        let released = storage.take_released_wal_files();
        if env.planted(Mistake::KeepReleasedWalFiles) {
            return;
        }
        self.waiting.extend(released);
        assert!(
            self.waiting.len() <= MAX_WAITING_FILES,
            "released WAL files pile up"
        );
        if self.job.is_none() && !self.waiting.is_empty() {
            self.job = Some(env.remove_files(std::mem::take(&mut self.waiting)));
        }
    }

    /// Waits for the removal in flight (for ever if there is none).
    pub(super) async fn finished(&mut self) -> Result<(), DiskError> {
        match &mut self.job {
            Some(job) => job.await,
            None => pending().await,
        }
    }

    /// Takes note of the finished removal.
    pub(super) fn on_finished(&mut self, result: Result<(), DiskError>, log: &slog::Logger) {
        assert!(self.job.take().is_some(), "no removal was in flight");
        if let Err(error) = &result {
            slog::warn!(log, "could not remove a released WAL segment; the next start tries again";
                "error" => %error);
        }
    }
}
