//! `stetutl snapshot status FILE` (etcdutl's): checks a backup written by `etcdctl snapshot save`
//! against stet (its length and SHA-256, then every row as a restore checks it) and reports its
//! hash, revision, total keys and size. The hash is `hash_kv` at the backup's revision — what
//! `etcdctl endpoint hashkv` answers for that revision — so a backup can be matched with the
//! cluster it came from. The rows are restored into a scratch engine file in the system's
//! temporary directory (removed afterwards), so memory does not grow with the backup.

use std::path::{Path, PathBuf};

use crate::backup_file;

use stet::engine::Engine;
use stet::kv::KvStore;
use stet::server::doctor::Scratch;
use stet::server::fs_disk::FsDisk;

/// The scratch engine's page cache.
const CACHE_BYTES: usize = 8 << 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A file written by `etcdctl snapshot save` against stet or etcd 3.x.
    file: PathBuf,
    /// Output format: simple, table or json.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Simple)]
    write_out: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Simple,
    Table,
    Json,
}

/// What `snapshot status` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub hash: u32,
    pub revision: i64,
    /// Revisions stored (every version of every key, as etcd counts its `key` bucket's keys).
    pub total_keys: u64,
    pub total_size_bytes: u64,
}

pub fn run(args: &Args) -> Result<(), String> {
    let status = status(&args.file)?;
    match args.write_out {
        Format::Simple => println!(
            "{:x}, {}, {}, {}",
            status.hash,
            status.revision,
            status.total_keys,
            human_bytes(status.total_size_bytes)
        ),
        Format::Table => print!("{}", table(&status)),
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "hash": status.hash,
                "revision": status.revision,
                "totalKey": status.total_keys,
                "totalSize": status.total_size_bytes,
            })
        ),
    }
    Ok(())
}

/// Checks `file` and reads its status.
pub fn status(file: &Path) -> Result<Status, String> {
    let bytes = backup_file::read(file)?;
    let scratch = Scratch::new()?;
    let mut engine = Engine::open(FsDisk::new, &scratch.0.join("engine"), CACHE_BYTES)
        .map_err(|e| e.to_string())?;
    backup_file::load_into(file, &bytes, &mut engine, false)?;
    let total_keys = engine
        .view()
        .and_then(|view| view.revision_count())
        .map_err(|e| e.to_string())?;
    let kv = KvStore::from_engine(engine).map_err(|e| format!("{}: {e}", file.display()))?;
    let revision = kv.current_revision();
    let (hash, _) = kv.hash_kv(revision).map_err(|e| e.to_string())?;
    Ok(Status {
        hash,
        revision,
        total_keys,
        total_size_bytes: bytes.len() as u64,
    })
}

fn table(status: &Status) -> String {
    let cells = [
        format!("{:x}", status.hash),
        status.revision.to_string(),
        status.total_keys.to_string(),
        human_bytes(status.total_size_bytes),
    ];
    let heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
    let widths: Vec<usize> = heads
        .iter()
        .zip(&cells)
        .map(|(h, c)| h.len().max(c.len()) + 2)
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(*w)))
        .collect::<String>()
        + "+\n";
    let row = |items: &[String]| -> String {
        items
            .iter()
            .zip(&widths)
            .map(|(item, w)| format!("|{item:^w$}"))
            .collect::<String>()
            + "|\n"
    };
    let heads: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    format!("{rule}{}{rule}{}{rule}", row(&heads), row(&cells))
}

/// Sizes as etcdctl prints them (`2.1 MB`, decimal units).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_etcdctl_prints_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2_117_632), "2.1 MB");
    }

    #[test]
    fn the_table_has_etcdctl_columns() {
        let status = Status {
            hash: 0xfe01cf57,
            revision: 10,
            total_keys: 7,
            total_size_bytes: 2_117_632,
        };
        let table = table(&status);
        assert!(
            table.contains("|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |"),
            "{table}"
        );
        assert!(
            table.contains("| fe01cf57 |    10    |     7      |   2.1 MB   |"),
            "{table}"
        );
    }
}
