//! `stetutl dump-logs` (etcd's `etcd-dump-logs`): the WAL's identity, hard state and newest
//! snapshot marker, then one line per entry it would recover — term, index, raft type and the
//! decoded request — and a count of the entries shown.

use stet::server::fs_disk::FsDisk;
use stet::wal;

use crate::describe::{describe, ENTRY_TYPES};
use crate::WalLocation;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    location: WalLocation,
    /// Only entries at this index and after.
    #[arg(long, default_value_t = 0)]
    start_index: u64,
    /// Only entries of these types, comma-separated: Normal, ConfigChange, IRRRange, IRRPut,
    /// IRRDeleteRange, IRRTxn, IRRCompaction, IRRLeaseGrant, IRRLeaseRevoke, IRRLeaseRenew,
    /// IRRAlarm, IRRMemberAttributes.
    #[arg(long, value_delimiter = ',')]
    entry_type: Vec<String>,
}

pub fn run(args: &Args) -> Result<(), String> {
    if let Some(unknown) = args
        .entry_type
        .iter()
        .find(|t| !ENTRY_TYPES.contains(&t.as_str()))
    {
        return Err(format!(
            "unknown entry type {unknown:?}; known: {}",
            ENTRY_TYPES.join(", ")
        ));
    }
    let dir = args.location.wal_dir();
    let inspection = wal::inspect(&FsDisk::new(), &dir).map_err(|e| e.to_string())?;
    let recovered = inspection.recovered;
    println!("Snapshot:");
    match recovered.snapshot_markers.last() {
        Some((index, term)) => println!("term={term} index={index}"),
        None => println!("empty"),
    }
    let hs = &recovered.hard_state;
    println!("WAL metadata:");
    println!(
        "nodeID={:x} clusterID={:x} term={} commitIndex={} vote={:x}",
        recovered.metadata.member_id, recovered.metadata.cluster_id, hs.term, hs.commit, hs.vote
    );
    println!("WAL entries:");
    println!(
        "lastIndex={}",
        recovered.entries.last().map_or(0, |e| e.index)
    );
    println!("term\t     index\ttype\tdata");
    let mut shown = 0;
    for entry in recovered
        .entries
        .iter()
        .filter(|e| e.index >= args.start_index)
    {
        let described = describe(entry);
        if !described.matches(&args.entry_type) {
            continue;
        }
        shown += 1;
        println!(
            "{:4}\t{:10}\t{}\t{}",
            entry.term, entry.index, described.short_type, described.text
        );
    }
    let types = if args.entry_type.is_empty() {
        "Normal,ConfigChange".to_string()
    } else {
        args.entry_type.join(",")
    };
    println!("\nEntry types ({types}) count is : {shown}");
    Ok(())
}
