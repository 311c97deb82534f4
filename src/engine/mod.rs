//! The storage engine for the applied state (issue 9): a redb database — a crash-safe,
//! copy-on-write B-tree — in one file, read and written through the [`Disk`] trait (`backend`),
//! created atomically and opened with errors that name the file (`file`), holding etcd's tables
//! with the applied index beside the data (`store`), every value sealed with a checksum over its
//! key and bytes (`record`), moved whole to another member's engine in bounded chunks
//! (`transfer`), and rewritten compactly while writes go on (`defrag`). A commit can be written
//! off its owner's thread while the owner goes on (`job`).
//!
//! [`Disk`]: crate::disk::Disk

mod backend;
mod defrag;
mod file;
mod job;
pub mod record;
mod store;
mod transfer;

pub use backend::DiskBackend;
pub use defrag::{copy_path, DefragError, DefragStep, RetiredFile, MAX_QUEUED_BYTES};
pub use file::{open, Db, EngineError, ENGINE_FILE};
pub use job::CommitJob;
pub use store::{Applied, Batch, Engine, PreparedCommit, Revision, Stored, View};
pub use transfer::Export;

#[cfg(test)]
mod tests;
