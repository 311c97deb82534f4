//! `stetutl snapshot restore FILE` (etcdutl's): a new data directory holding a backup's keys,
//! revisions and leases as the first state of a new cluster. Run on each member of the new
//! cluster with its own `--name` and the same `--initial-cluster` and `--initial-cluster-token`;
//! each member then starts with those flags and `--initial-cluster-state new`, and the cluster's
//! first entries (its members) apply on top of the restored state — the backup's membership and
//! cluster ID are dropped, so a restored member can never rejoin the cluster it came from.
//!
//! Only the storage engine's file is written (`member/engine.redb`); the WAL is created when the
//! member first starts. A restore that fails leaves no data directory behind.

use std::path::{Path, PathBuf};

use crate::backup_file::{self, Loaded, Origin};
use crate::Output;

use stet::engine::Engine;
use stet::member;
use stet::server::fs_disk::FsDisk;
use stet::state::StateMachine;
use stet::storage::StorageLayout;
use stet::types::MemberId;

/// The engine's page cache while restoring.
const CACHE_BYTES: usize = 8 << 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A file written by `etcdctl snapshot save` against stet or etcd 3.x.
    file: PathBuf,
    /// This member's name in --initial-cluster.
    #[arg(long, default_value = "default")]
    name: String,
    /// The data directory to create (default: NAME.stet); it must not exist.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The WAL's directory, when the member will run with --wal-dir.
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// The new cluster's members, NAME=PEER_URL,...
    #[arg(long, default_value = "default=http://localhost:2380")]
    initial_cluster: String,
    /// The new cluster's token (part of every member's ID).
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// This member's peer URLs, as in --initial-cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// Do not compare the backup's SHA-256 (its records and rows are still checked).
    #[arg(long)]
    skip_hash_check: bool,
    /// Output: a line for a person, or JSON.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Output::Simple)]
    write_out: Output,
}

/// The new cluster's identity, as the member will derive it from the same flags.
struct Identity {
    member_id: MemberId,
    cluster_id: u64,
}

pub fn run(args: &Args) -> Result<(), String> {
    let identity = identity(args)?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.stet", args.name)));
    if data_dir.exists() {
        return Err(format!(
            "data dir {} exists: restore into a new directory",
            data_dir.display()
        ));
    }
    let (revision, loaded) = match restore(args, &data_dir, identity.cluster_id) {
        Ok(restored) => restored,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&data_dir);
            return Err(error);
        }
    };
    if loaded.origin == Origin::Etcd {
        for note in &loaded.carried {
            eprintln!("carried over from the etcd backup: {note}");
        }
        for note in &loaded.left_behind {
            eprintln!("warning: not carried over from the etcd backup: {note}");
        }
    }
    let origin = match loaded.origin {
        Origin::Stet => "stet",
        Origin::Etcd => "etcd",
    };
    match args.write_out {
        Output::Simple => println!(
            "restored the {origin} backup at revision {revision} into {} as member {:x} of a new \
             cluster {:x}; start it with --initial-cluster-state new and the same --name, \
             --initial-cluster, --initial-cluster-token and --initial-advertise-peer-urls",
            data_dir.display(),
            identity.member_id.0,
            identity.cluster_id
        ),
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "origin": origin,
                "revision": revision,
                "data_dir": data_dir.display().to_string(),
                "member_id": format!("{:x}", identity.member_id.0),
                "cluster_id": format!("{:x}", identity.cluster_id),
                "left_behind": loaded.left_behind,
                "carried": loaded.carried,
            })
        ),
    }
    Ok(())
}

/// The member's and the cluster's IDs from the flags, checked as the member checks them.
fn identity(args: &Args) -> Result<Identity, String> {
    let cluster = member::parse_initial_cluster(&args.initial_cluster)
        .map_err(|e| format!("--initial-cluster: {e}"))?;
    let Some((_, own_urls)) = cluster.iter().find(|(name, _)| *name == args.name) else {
        return Err(format!(
            "--name {:?} is not in --initial-cluster {:?}",
            args.name, args.initial_cluster
        ));
    };
    let mut advertised: Vec<String> = args
        .initial_advertise_peer_urls
        .split(',')
        .map(|url| url.trim().to_string())
        .filter(|url| !url.is_empty())
        .collect();
    let mut own = own_urls.clone();
    advertised.sort();
    own.sort();
    if own != advertised {
        return Err(format!(
            "--initial-cluster gives {} the peer URLs {}, but --initial-advertise-peer-urls is {}",
            args.name,
            own.join(","),
            advertised.join(",")
        ));
    }
    let token = &args.initial_cluster_token;
    let ids: Vec<MemberId> = cluster
        .iter()
        .map(|(_, urls)| member::member_id(urls, token, None))
        .collect();
    Ok(Identity {
        member_id: member::member_id(own_urls, token, None),
        cluster_id: member::cluster_id(&ids).0,
    })
}

/// Writes the engine file, then loads it as the member will at its first start; the backup's
/// revision and what loading it found.
fn restore(args: &Args, data_dir: &Path, cluster_id: u64) -> Result<(i64, Loaded), String> {
    let file = &args.file;
    let bytes = backup_file::read(file)?;
    let layout = StorageLayout::new(data_dir, args.wal_dir.as_deref());
    let member_dir = layout
        .engine_file
        .parent()
        .ok_or("the engine file has no directory")?;
    std::fs::create_dir_all(member_dir).map_err(|e| format!("{}: {e}", member_dir.display()))?;
    let mut engine =
        Engine::open(FsDisk::new, &layout.engine_file, CACHE_BYTES).map_err(|e| e.to_string())?;
    let loaded = backup_file::load_into(file, &bytes, &mut engine, args.skip_hash_check)?;
    engine
        .start_new_cluster(cluster_id)
        .map_err(|e| e.to_string())?;
    // Any lease TTL passes here: the member applies its own minimum to new leases only.
    let (state, _, _) = StateMachine::from_engine(engine, 1)
        .map_err(|e| format!("{}: the restored state does not load: {e}", file.display()))?;
    Ok((state.kv.current_revision(), loaded))
}
