//! The WAL's next segment file, prepared off the driver's task (zero-filled to the segment size
//! and made durable: see `wal::prepare`) whenever the WAL asks for one, so that rotating to it
//! costs a rename. A failure (a full disk) is logged and leaves the WAL on plain segments until
//! its next rotation asks again: nothing written is at stake.

use std::future::pending;

use super::super::env::{BoxDisk, BoxFuture, Environment};
use crate::disk::DiskError;
use crate::storage::MemberStorage;

/// At most one preparation in flight.
#[derive(Default)]
pub(super) struct NextSegment {
    job: Option<BoxFuture<Result<(), DiskError>>>,
}

impl NextSegment {
    /// Starts preparing the file the WAL asks for, unless one is being prepared.
    pub(super) fn start_if_wanted(
        &mut self,
        storage: &mut MemberStorage<BoxDisk>,
        env: &dyn Environment,
    ) {
        if self.job.is_some() {
            return;
        }
        if let Some((path, len_bytes)) = storage.segment_to_prepare() {
            self.job = Some(env.prepare_segment(path, len_bytes));
        }
    }

    /// Waits for the preparation in flight (for ever if there is none).
    pub(super) async fn finished(&mut self) -> Result<(), DiskError> {
        match &mut self.job {
            Some(job) => job.await,
            None => pending().await,
        }
    }

    /// Hands the outcome of the finished preparation to the WAL.
    pub(super) fn on_finished(
        &mut self,
        result: Result<(), DiskError>,
        storage: &mut MemberStorage<BoxDisk>,
        log: &slog::Logger,
    ) {
        assert!(self.job.take().is_some(), "no preparation was in flight");
        if let Err(error) = &result {
            slog::warn!(log, "could not prepare the next WAL segment; the WAL goes on with plain segments";
                "error" => %error);
        }
        storage.segment_prepared(result.is_ok());
    }
}
