//! The storage engine for the applied state (issue 9): a redb database — a crash-safe,
//! copy-on-write B-tree — in one file, read and written through the [`Disk`] trait (`backend`),
//! created atomically and opened with errors that name the file (`file`).
//!
//! [`Disk`]: crate::disk::Disk

mod backend;
mod file;

pub use backend::DiskBackend;
pub use file::{open, EngineError, ENGINE_FILE};

#[cfg(test)]
mod tests;
