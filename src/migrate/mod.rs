//! Moving to stet from etcd: a reader of etcd's storage files (`bbolt`) and the migration of an
//! etcd v3 backup's state into a stet engine (`etcd`). Read-only towards the etcd file; used by
//! `stetutl snapshot restore` and `stetutl snapshot status`.

pub mod bbolt;
pub mod etcd;

pub use etcd::{database, import, looks_like_etcd_backup, Imported, MigrateError};

#[cfg(test)]
mod tests;
