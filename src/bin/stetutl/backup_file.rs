//! Reading a backup file into an engine, whichever wrote it: `etcdctl snapshot save` against
//! stet (stet's streamed backup) or against etcd 3.x (etcd's bbolt database, migrated by
//! `stet::migrate`). `snapshot status` and `snapshot restore` both go through here, so a file
//! that one accepts the other does too.

use std::path::Path;
use std::time::{Duration, Instant};

use stet::backup;
use stet::engine::Engine;
use stet::migrate;

/// How often progress is reported on long work.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Who wrote a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Stet,
    Etcd,
}

/// What loading a backup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub origin: Origin,
    /// What the backup held that was not carried over, in words (etcd backups only).
    pub left_behind: Vec<String>,
    /// What it held beside keys and leases that was carried over (etcd's users and roles).
    pub carried: Vec<String>,
}

/// The bytes of `file`.
pub fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))
}

/// Checks the backup `bytes` (read from `file`) and writes its state into `engine`.
pub fn load_into(
    file: &Path,
    bytes: &[u8],
    engine: &mut Engine,
    skip_hash_check: bool,
) -> Result<Loaded, String> {
    let named = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
    if backup::is_streamed(bytes) {
        let parsed = match skip_hash_check {
            true => backup::parse_skipping_hash(bytes),
            false => backup::parse(bytes),
        }
        .map_err(|e| named(&e))?;
        parsed.restore_into(engine).map_err(|e| named(&e))?;
        return Ok(Loaded {
            origin: Origin::Stet,
            left_behind: Vec::new(),
            carried: Vec::new(),
        });
    }
    if migrate::looks_like_etcd_backup(bytes) {
        let database = migrate::database(bytes, skip_hash_check).map_err(|e| named(&e))?;
        let mut last_report = Instant::now();
        let imported = migrate::import(database, engine, |revisions| {
            if last_report.elapsed() >= PROGRESS_EVERY {
                eprintln!("read {revisions} revisions of {}", file.display());
                last_report = Instant::now();
            }
        })
        .map_err(|e| named(&e))?;
        return Ok(Loaded {
            origin: Origin::Etcd,
            left_behind: imported.left_behind,
            carried: imported.carried,
        });
    }
    Err(format!(
        "{}: not a backup (`etcdctl snapshot save` writes one, against stet or etcd 3.x)",
        file.display()
    ))
}
