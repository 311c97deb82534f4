//! `stetutl`: offline tools for a member's data directory, following etcd's `etcdutl` (3.5) and
//! `etcd-dump-logs`. Nothing here talks to a running member or changes the files it reads
//! (`snapshot restore` writes only a data directory it creates).
//!
//! - `wal verify DATA_DIR`: reads every WAL segment with the checks a member runs at start and
//!   reports segments, records, a torn tail, or the file and offset of a corruption.
//! - `dump-logs DATA_DIR`: the WAL's metadata, hard state and snapshot, then one line per entry.
//! - `backup --data-dir D --backup-dir B`: an offline copy of a stopped member's data
//!   directory that starts only with `--force-new-cluster` (it cannot rejoin its cluster).
//! - `doctor [the member's flags]`: the FAQ's failures found in the data directory, the
//!   settings and the live members, each with its fix; exit 1 when there is a problem.
//! - `snapshot status FILE`: checks a backup and prints its hash, revision, keys and size.
//! - `snapshot restore FILE`: a new member's data directory from a backup, for a new cluster.
//!   Both snapshot commands take stet's backups and etcd 3.x's (migration from etcd).
//!
//! Exit status: 0 when what was read checks out (a WAL's torn tail included: the member cuts it
//! off at its next start), 1 on corruption or an unreadable file, 2 on wrong arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod backup;
mod backup_file;
mod describe;
mod doctor;
mod dump_logs;
mod snapshot_restore;
mod snapshot_status;
mod wal_verify;

#[derive(Debug, Parser)]
#[command(
    name = "stetutl",
    about = "Offline tools for stet data directories (etcdutl's commands)",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Explains what would stop a member starting with the given flags, and the fix.
    Doctor(doctor::Args),
    /// Copies a stopped member's data directory, to be started only with --force-new-cluster.
    Backup(backup::Args),
    /// Checks a data directory's write-ahead log.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Prints the WAL's entries, one per line, with their decoded requests.
    DumpLogs(dump_logs::Args),
    /// Works on backups (`etcdctl snapshot save` files).
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Checks a backup and prints its hash, revision, total keys and size.
    Status(snapshot_status::Args),
    /// Creates a new member's data directory from a backup, for a new cluster.
    Restore(snapshot_restore::Args),
}

#[derive(Debug, Subcommand)]
enum WalCommand {
    /// Reads every segment with the checks a member runs at start, changing nothing.
    Verify(wal_verify::Args),
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines for a person.
    Simple,
    /// One JSON object.
    Json,
}

/// Where a data directory keeps its WAL.
#[derive(Debug, clap::Args)]
pub struct WalLocation {
    /// The member's data directory (`--data-dir` of stet).
    pub data_dir: PathBuf,
    /// The WAL's directory when the member ran with `--wal-dir`.
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
}

impl WalLocation {
    pub fn wal_dir(&self) -> PathBuf {
        stet::storage::StorageLayout::new(&self.data_dir, self.wal_dir.as_deref()).wal_dir
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Wal {
            command: WalCommand::Verify(args),
        } => wal_verify::run(&args),
        Command::DumpLogs(args) => dump_logs::run(&args),
        Command::Backup(args) => backup::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Snapshot {
            command: SnapshotCommand::Status(args),
        } => snapshot_status::run(&args),
        Command::Snapshot {
            command: SnapshotCommand::Restore(args),
        } => snapshot_restore::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::FAILURE
        }
    }
}
