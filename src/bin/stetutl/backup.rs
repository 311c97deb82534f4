//! `stetutl backup --data-dir D --backup-dir B` (etcd's `etcdctl backup`): an offline copy of a
//! stopped member's data directory — WAL, snapshots and engine file — that can only be started
//! with `--force-new-cluster`, as a new one-member cluster holding the data; it can never rejoin
//! the cluster it came from by accident (see `stet::backup::offline`). The member must be
//! stopped: its data directory's lock is taken for the copy, so a running member is refused.
//! For a backup of a running cluster, `etcdctl snapshot save` is the tool.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use stet::backup::offline;
use stet::server::dir_lock::DataDirLock;
use stet::server::fs_disk::FsDisk;
use stet::storage::StorageLayout;

use crate::Output;

/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stopped member's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Where the backup goes (a new directory).
    #[arg(long)]
    backup_dir: PathBuf,
    /// The member's WAL directory, when it runs with --wal-dir.
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// Where the backup's WAL goes, to start it with --wal-dir.
    #[arg(long)]
    backup_wal_dir: Option<PathBuf>,
    /// Output: a line for a person, or JSON.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Output::Simple)]
    write_out: Output,
}

pub fn run(args: &Args) -> Result<(), String> {
    let _lock = DataDirLock::acquire(&args.data_dir).map_err(|e| e.to_string())?;
    let from = StorageLayout::new(&args.data_dir, args.wal_dir.as_deref());
    let to = StorageLayout::new(&args.backup_dir, args.backup_wal_dir.as_deref());
    let mut last_report = Instant::now();
    let copied = offline::copy_data_dir(&mut FsDisk::new(), &from, &to, |bytes| {
        if last_report.elapsed() >= PROGRESS_EVERY {
            eprintln!("copied {} MB", bytes / 1_000_000);
            last_report = Instant::now();
        }
    })
    .map_err(|e| e.to_string())?;
    let marker = copied.marker;
    match args.write_out {
        Output::Simple => println!(
            "backed up member {:x} of cluster {:x} (commit index {}): {} files, {} bytes into {}; \
             start it with --force-new-cluster (it cannot rejoin cluster {:x})",
            marker.member_id,
            marker.cluster_id,
            marker.commit_index,
            copied.files,
            copied.bytes,
            args.backup_dir.display(),
            marker.cluster_id
        ),
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "member_id": format!("{:x}", marker.member_id),
                "cluster_id": format!("{:x}", marker.cluster_id),
                "commit_index": marker.commit_index,
                "files": copied.files,
                "bytes": copied.bytes,
                "backup_dir": args.backup_dir.display().to_string(),
            })
        ),
    }
    Ok(())
}
