//! Snapshot files (in progress).
