//! The member's own snapshots, written off the driver's task: the file is encoded and written on a
//! blocking thread through a disk handle of the environment's, fsynced through the environment and
//! then given its name; the driver learns of it by a `SnapshotFileWritten` command and only then
//! writes the WAL marker and releases WAL segments. One file is written at a time; while it is,
//! only the newest snapshot asked for waits (its marker supersedes older ones).

use std::path::PathBuf;
use std::sync::Arc;

use raft::eraftpb::Snapshot;
use tokio::sync::mpsc;

use crate::server::blocking;
use crate::server::env::Environment;
use crate::server::handle::Command;
use crate::server::metrics::Metrics;
use crate::snap;

/// Own snapshots on their way to disk.
#[derive(Default)]
pub struct OwnSnapshots {
    /// A file is being written on the side.
    writing: bool,
    /// The newest snapshot asked for while a file was being written.
    waiting: Option<Snapshot>,
    /// A snapshot whose file is durable and whose WAL marker is still to be written.
    durable: Option<Snapshot>,
}

impl OwnSnapshots {
    /// Starts writing `snapshot`'s file, or keeps it for later if a file is being written or the
    /// last one written still waits for its marker: writing the marker purges old snapshot files
    /// and every temporary one, which would pull a file being written from under it.
    pub fn save(
        &mut self,
        snapshot: Snapshot,
        env: &Arc<dyn Environment>,
        dir: PathBuf,
        done: &mpsc::Sender<Command>,
        metrics: &Arc<Metrics>,
    ) {
        if !self.may_start() {
            self.waiting = Some(snapshot);
            return;
        }
        self.writing = true;
        let (env, done, metrics) = (env.clone(), done.clone(), metrics.clone());
        tokio::spawn(async move {
            let started = env.now();
            let written = write_file(env.clone(), dir, snapshot).await;
            if written.is_ok() {
                metrics.observe_snapshot_save(env.now().saturating_duration_since(started));
            }
            let _ = done.send(Command::SnapshotFileWritten(written)).await;
        });
    }

    /// The file being written on the side is durable; its marker waits for [`take_durable`].
    pub fn file_written(&mut self, snapshot: Snapshot) {
        assert!(self.writing, "a snapshot file was being written");
        self.writing = false;
        self.durable = Some(snapshot);
    }

    /// Writing the file failed: nothing is being written any more.
    pub fn file_failed(&mut self) {
        self.writing = false;
    }

    /// A snapshot whose file is durable, for the driver to mark in the WAL.
    pub fn take_durable(&mut self) -> Option<Snapshot> {
        self.durable.take()
    }

    /// The snapshot that waited while another file was written, to write next.
    pub fn take_waiting(&mut self) -> Option<Snapshot> {
        if !self.may_start() {
            return None;
        }
        self.waiting.take()
    }

    /// Whether a new file may be written now.
    fn may_start(&self) -> bool {
        !self.writing && self.durable.is_none()
    }
}

/// Encodes and writes the file under a temporary name, fsyncs it, then names it.
async fn write_file(
    env: Arc<dyn Environment>,
    dir: PathBuf,
    snapshot: Snapshot,
) -> Result<Snapshot, String> {
    let disk = env.disk();
    let (file, snapshot, mut disk) = blocking::run(move || {
        let mut disk = disk;
        snap::write_unsynced(&mut disk, &dir, &snapshot).map(|file| (file, snapshot, disk))
    })
    .await?
    .map_err(|error| error.to_string())?;
    env.sync_file(file.temp.clone())
        .await
        .map_err(|error| error.to_string())?;
    snap::publish(&mut disk, &file).map_err(|error| error.to_string())?;
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: u64) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot
    }

    #[test]
    fn no_file_is_started_while_the_last_one_waits_for_its_marker() {
        let mut own = OwnSnapshots {
            writing: true,
            ..OwnSnapshots::default()
        };
        own.file_written(at(10));
        // A new snapshot arrives before the driver wrote the marker (and purged temp files).
        assert!(!own.may_start());
        own.waiting = Some(at(10));
        assert!(own.take_waiting().is_none(), "it waits for the marker");
        assert_eq!(own.take_durable().map(|s| s.get_metadata().index), Some(10));
        assert_eq!(own.take_waiting().map(|s| s.get_metadata().index), Some(10));
    }
}
