//! WAL benchmark on the real disk: append throughput with fsync batching and replay speed, each
//! next to a raw `std::fs` baseline doing the same IO (append+fsync of the same bytes, plain read).
//!
//! Run with `cargo bench --bench wal`; `STET_BENCH_REPLAY_MB` sets the replay log size (default 256).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raft::eraftpb::Entry;
use stet::server::fs_disk::FsDisk;
use stet::wal::record::{self, Record};
use stet::wal::{Metadata, Wal, WalOptions};

const VALUE_BYTES: usize = 256;
const META: Metadata = Metadata {
    member_id: 1,
    cluster_id: 2,
};
/// Each append configuration spends about this long in stet and as long again in the baseline.
const APPEND_BUDGET: Duration = Duration::from_secs(2);

fn entry(index: u64) -> Entry {
    Entry {
        index,
        term: 1,
        data: vec![(index % 251) as u8; VALUE_BYTES].into(),
        ..Entry::default()
    }
}

fn frame_len() -> usize {
    let mut buf = Vec::new();
    match record::encode(&Record::Entry(entry(1)), 0, &mut buf) {
        Ok(_) => buf.len(),
        Err(len) => panic!("a {len}-byte record cannot be too large"),
    }
}

fn fresh_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn dir_bytes(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Time spent and work done by one append configuration.
struct AppendRun {
    batches: usize,
    stet_time: Duration,
    stet_bytes: u64,
    raw_time: Duration,
}

/// Appends batches of `batch` entries with a sync after each, and the same bytes with plain
/// `std::fs` append+fsync, interleaved in short rounds so both see the same disk weather.
fn append_run(root: &Path, batch: usize, frame_len: usize) -> AppendRun {
    const ROUND_BATCHES: usize = 8;
    let dir = fresh_dir(root, &format!("stet-append-{batch}"));
    let mut wal = Wal::create(FsDisk::new(), &dir, META, WalOptions::default()).expect("create");
    let header = dir_bytes(&dir);
    let raw_dir = fresh_dir(root, &format!("raw-append-{batch}"));
    fs::create_dir_all(&raw_dir).expect("mkdir");
    let mut raw = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(raw_dir.join("raw.log"))
        .expect("open");
    let chunk = vec![0x5a; batch * frame_len];
    let mut run = AppendRun {
        batches: 0,
        stet_time: Duration::ZERO,
        stet_bytes: 0,
        raw_time: Duration::ZERO,
    };
    let mut next = 1u64;
    while run.stet_time + run.raw_time < 2 * APPEND_BUDGET {
        let start = Instant::now();
        for _ in 0..ROUND_BATCHES {
            let entries: Vec<Entry> = (next..next + batch as u64).map(entry).collect();
            next += batch as u64;
            wal.append(&entries, None).expect("append");
            wal.sync().expect("sync");
        }
        run.stet_time += start.elapsed();
        let start = Instant::now();
        for _ in 0..ROUND_BATCHES {
            raw.write_all(&chunk).expect("write");
            raw.sync_data().expect("fsync");
        }
        run.raw_time += start.elapsed();
        run.batches += ROUND_BATCHES;
    }
    drop(wal);
    run.stet_bytes = dir_bytes(&dir) - header;
    run
}

fn bench_append(root: &Path) {
    let frame_len = frame_len();
    println!(
        "append: {VALUE_BYTES}-byte values ({frame_len}-byte records), fsync after every batch"
    );
    println!(
        "{:>6} {:>12} {:>10} {:>12} {:>10} {:>8}",
        "batch", "stet ent/s", "stet MB/s", "raw ent/s", "raw MB/s", "ratio"
    );
    for batch in [1usize, 16, 128] {
        let run = append_run(root, batch, frame_len);
        let entries = (run.batches * batch) as f64;
        let stet_eps = entries / run.stet_time.as_secs_f64();
        let raw_eps = entries / run.raw_time.as_secs_f64();
        let raw_bytes = (run.batches * batch * frame_len) as u64;
        println!(
            "{:>6} {:>12.0} {:>10.2} {:>12.0} {:>10.2} {:>8.2}",
            batch,
            stet_eps,
            mb(run.stet_bytes) / run.stet_time.as_secs_f64(),
            raw_eps,
            mb(raw_bytes) / run.raw_time.as_secs_f64(),
            stet_eps / raw_eps
        );
    }
}

fn bench_replay(root: &Path) {
    let target_mb: u64 = std::env::var("STET_BENCH_REPLAY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let dir = fresh_dir(root, "stet-replay");
    let mut wal = Wal::create(FsDisk::new(), &dir, META, WalOptions::default()).expect("create");
    let frame_len = frame_len() as u64;
    let total_entries = target_mb * 1024 * 1024 / frame_len;
    let write_start = Instant::now();
    let mut next = 1u64;
    while next <= total_entries {
        let end = (next + 1024).min(total_entries + 1);
        let entries: Vec<Entry> = (next..end).map(entry).collect();
        wal.append(&entries, None).expect("append");
        next = end;
    }
    wal.sync().expect("sync");
    drop(wal);
    let bytes = dir_bytes(&dir);
    println!(
        "\nreplay: {:.0} MB log, {} entries in {} segments (written in {:.1} s)",
        mb(bytes),
        total_entries,
        segment_files(&dir).len(),
        write_start.elapsed().as_secs_f64()
    );
    // Warm the page cache, then take the best of three runs of each.
    let _ = raw_read(&dir);
    let mut stet_best = Duration::MAX;
    let mut raw_best = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let (_, recovered) = Wal::open(FsDisk::new(), &dir, WalOptions::default()).expect("open");
        let elapsed = start.elapsed();
        assert_eq!(recovered.entries.len() as u64, total_entries);
        drop(recovered);
        stet_best = stet_best.min(elapsed);
        let start = Instant::now();
        let read = raw_read(&dir);
        raw_best = raw_best.min(start.elapsed());
        assert_eq!(read, bytes);
    }
    let stet_mbs = mb(bytes) / stet_best.as_secs_f64();
    let raw_mbs = mb(bytes) / raw_best.as_secs_f64();
    println!(
        "open (replay + verify + build entries): {:.0} MB/s ({:.2} s), {:.2} M entries/s",
        stet_mbs,
        stet_best.as_secs_f64(),
        total_entries as f64 / stet_best.as_secs_f64() / 1e6
    );
    println!(
        "raw fs::read of the same files:         {:.0} MB/s ({:.2} s); ratio stet/raw {:.2}",
        raw_mbs,
        raw_best.as_secs_f64(),
        stet_mbs / raw_mbs
    );
}

fn raw_read(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| fs::read(p).expect("read").len() as u64)
        .sum()
}

fn main() {
    let root = std::env::temp_dir().join(format!("stet-wal-bench-{}", std::process::id()));
    fs::create_dir_all(&root).expect("create bench dir");
    println!("bench dir: {}", root.display());
    bench_append(&root);
    bench_replay(&root);
    let _ = fs::remove_dir_all(&root);
}
