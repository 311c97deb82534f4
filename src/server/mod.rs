//! The adapter: everything that does real IO (in progress).

pub mod fs_disk;
