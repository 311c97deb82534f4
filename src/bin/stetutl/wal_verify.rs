//! `stetutl wal verify`: every segment read with the checks a member runs when it starts (crc
//! chain, sequence, metadata, torn writes), reported per segment; nothing is repaired.

use stet::server::fs_disk::FsDisk;
use stet::wal::{self, Inspection};

use crate::{Output, WalLocation};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    location: WalLocation,
    /// Output format.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Output::Simple)]
    write_out: Output,
}

pub fn run(args: &Args) -> Result<(), String> {
    let dir = args.location.wal_dir();
    let inspection = wal::inspect(&FsDisk::new(), &dir).map_err(|e| e.to_string())?;
    match args.write_out {
        Output::Simple => print!("{}", simple(&inspection)),
        Output::Json => println!("{}", json(&inspection)),
    }
    Ok(())
}

fn simple(inspection: &Inspection) -> String {
    let mut out = String::new();
    for s in &inspection.segments {
        out.push_str(&format!(
            "segment {}: {} records ({} entries), {} bytes of records in a file of {} bytes\n",
            s.path.display(),
            s.records,
            s.entries,
            s.record_bytes,
            s.file_bytes
        ));
    }
    let recovered = &inspection.recovered;
    if let Some(torn) = &recovered.torn_tail {
        out.push_str(&format!(
            "torn tail: {} bytes at offset {} of {} (an unfinished write; the member cuts it off when it starts)\n",
            torn.bytes_dropped,
            torn.offset,
            torn.file.display()
        ));
    }
    let (first, last) = index_range(inspection);
    let hs = &recovered.hard_state;
    out.push_str(&format!(
        "OK: {} segments, entries {first}..{last}, {}, hard state term={} vote={:x} commit={}\n",
        inspection.segments.len(),
        recovered.metadata,
        hs.term,
        hs.vote,
        hs.commit
    ));
    out
}

fn json(inspection: &Inspection) -> serde_json::Value {
    let recovered = &inspection.recovered;
    let (first, last) = index_range(inspection);
    let segments: Vec<serde_json::Value> = inspection
        .segments
        .iter()
        .map(|s| {
            serde_json::json!({
                "file": s.path.display().to_string(),
                "seq": s.seq,
                "first_index": s.first_index,
                "file_bytes": s.file_bytes,
                "record_bytes": s.record_bytes,
                "records": s.records,
                "entries": s.entries,
            })
        })
        .collect();
    let torn = recovered.torn_tail.as_ref().map(|t| {
        serde_json::json!({
            "file": t.file.display().to_string(),
            "offset": t.offset,
            "bytes": t.bytes_dropped,
        })
    });
    serde_json::json!({
        "ok": true,
        "member_id": format!("{:x}", recovered.metadata.member_id),
        "cluster_id": format!("{:x}", recovered.metadata.cluster_id),
        "segments": segments,
        "torn_tail": torn,
        "first_index": first,
        "last_index": last,
        "hard_state": {
            "term": recovered.hard_state.term,
            "vote": format!("{:x}", recovered.hard_state.vote),
            "commit": recovered.hard_state.commit,
        },
    })
}

/// The indexes of the first and last entry the WAL recovers (0 and 0 when it holds none).
fn index_range(inspection: &Inspection) -> (u64, u64) {
    let entries = &inspection.recovered.entries;
    (
        entries.first().map_or(0, |e| e.index),
        entries.last().map_or(0, |e| e.index),
    )
}
