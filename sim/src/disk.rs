//! Simulated disks that outlive their member's process: the world keeps each member's
//! `SharedDisk` (a `MemDisk` behind a lock, from the core) while madsim kills and restarts the
//! member.

pub use stet::disk::SharedDisk;
