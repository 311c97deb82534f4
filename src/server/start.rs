//! Start-up: from the flags and the data directory to a running node. One decision tree, run by
//! the binary and the simulator alike: restart from the data directory (with the identity check
//! for members bootstrapped with `new`, identity from the WAL for joined ones, or
//! `--force-new-cluster`), join a running cluster (`--initial-cluster-state existing` with no data
//! yet: ask the peers for the membership and find this member by its peer URLs), or bootstrap a
//! new cluster.

use std::sync::Arc;

use super::config::{ClusterState, ServerConfig};
use super::env::{BoxDisk, Environment, Mistake, StartKind};
use super::forced_identity;
use super::join::discover_identity;
use super::run::ServerError;
use super::tls::peer::PeerTls;
use crate::backup::offline;
use crate::engine::Engine;
use crate::member;
use crate::node::{DurableState, Node, NodeConfig, StartError};
use crate::proto::etcdserverpb as pb;
use crate::storage::{MemberStorage, StorageError, StorageLayout};
use crate::types::{ClusterId, MemberId};
use crate::wal::Metadata;

/// The storage engine's page cache: what memory holds of the key-values beyond the index (half
/// of it at most for pages a write transaction changed; more are written to the file before the
/// commit). Small, because the file's pages stay in the system's page cache, so a miss costs a
/// read from memory, not the disk: on one member with 200,000 keys, a 2 MiB cache made puts and
/// single-key reads no slower than 8 MiB and the RSS 8 MB smaller (`BENCHMARKS.md`, session 20).
const ENGINE_CACHE_BYTES: usize = 2 << 20;

/// A started node and what its driver needs besides.
pub struct Started {
    pub node: Node,
    pub storage: MemberStorage<BoxDisk>,
    /// For a joining member, the membership its peers told it.
    pub seed_members: Vec<pb::Member>,
}

/// The node settings the flags ask for, with the environment's last word.
fn node_config(
    config: &ServerConfig,
    env: &dyn Environment,
    member_id: MemberId,
    cluster_id: ClusterId,
) -> NodeConfig {
    let mut node = NodeConfig::new(member_id, cluster_id);
    node.cluster_token = config.cluster_token.clone();
    node.heartbeat_interval = config.heartbeat_interval;
    node.election_timeout = config.election_timeout;
    node.set_snapshot_count(config.snapshot_count);
    node.catch_up_entries = config.snapshot_catchup_entries;
    node.max_request_bytes = config.max_request_bytes;
    node.max_txn_ops = config.max_txn_ops;
    node.quota_backend_bytes = config.quota_backend_bytes;
    node.auto_promote_learners = config.auto_promote_learners;
    node.watch_progress_interval = config.watch_progress_notify_interval;
    // A fresh seed per start, so a restarted member never repeats its previous life's lease IDs.
    node.seed = env.seed();
    env.adjust_node_config(&mut node);
    node
}

/// Opens the member's storage and starts its node: restarts from the data directory, joins a
/// running cluster (`--initial-cluster-state existing` with no data yet), or bootstraps a new one.
pub async fn start_node(
    config: &ServerConfig,
    env: &Arc<dyn Environment>,
    peer_tls: Option<Arc<PeerTls>>,
    log: &slog::Logger,
) -> Result<Started, ServerError> {
    let layout = StorageLayout::new(&config.data_dir, config.wal_dir.as_deref());
    let disk = env.disk();
    let (started, kind) = if MemberStorage::exists(&disk, &layout) {
        // The engine's file is opened (and checked whole) on another thread while this one reads
        // the WAL back: a restart takes the longer of the two, not their sum.
        let marker = offline::read_marker(&disk, &layout).map_err(ServerError::Fatal)?;
        let opening = open_engine_in_background(config, env);
        let opened = open(config, env, disk, layout.clone(), log)?;
        let engine = opening.await?;
        if let Some(marker) = marker {
            settle_backup_marker(config, env, &layout, marker, &opened, log)?;
        }
        let found = opened.metadata;
        if opened.durable.is_empty() && !config.force_new_cluster {
            check_identity(config, env, &layout, found, log)?;
            // The member crashed before its first write was synced: it never voted, acknowledged
            // or applied anything, so it starts as it did the first time, on the same WAL.
            slog::warn!(
                log,
                "the data directory holds nothing durable yet; starting afresh"
            );
            let (storage, metadata) = (opened.storage, opened.metadata);
            fresh(config, env, storage, metadata, engine, peer_tls, log).await?
        } else {
            check_identity(config, env, &layout, found, log)?;
            restart(config, env, opened, engine, log)?
        }
    } else if let Some(problem) = &config.initial_cluster_problem {
        return Err(ServerError::NoDataToForce(problem.clone()));
    } else if config.cluster_state == ClusterState::Existing {
        let joined = join(config, env, disk, layout, peer_tls, log).await?;
        (joined, StartKind::Join)
    } else {
        let metadata = Metadata {
            member_id: config.member_id.0,
            cluster_id: config.cluster_id.0,
        };
        let storage = MemberStorage::create(disk, layout, metadata, env.wal_options())
            .map_err(storage_error(config))?;
        let started = bootstrap(config, env, storage, open_engine(config, env)?, log)?;
        (started, StartKind::Bootstrap)
    };
    env.started(&started.node, kind);
    Ok(started)
}

/// A member bootstrapped with `new` must be the one the flags describe; one that joined took the
/// ID the cluster gave it, which only its WAL knows. --force-new-cluster restarts whoever the data
/// directory was made for (a copy of another member's, under any name) and records the flags'
/// identity (`forced_identity`), which later restarts with the same flags are then accepted as.
fn check_identity(
    config: &ServerConfig,
    env: &Arc<dyn Environment>,
    layout: &StorageLayout,
    found: Metadata,
    log: &slog::Logger,
) -> Result<(), ServerError> {
    let flags = Metadata {
        member_id: config.member_id.0,
        cluster_id: config.cluster_id.0,
    };
    if found == flags || config.cluster_state != ClusterState::New || config.force_new_cluster {
        return Ok(());
    }
    let forced = forced_identity::read(&env.disk(), layout);
    if forced == Some(flags) && !env.planted(Mistake::IgnoreForcedIdentity) {
        slog::info!(log, "restarting as the member this data directory was forced from";
            "member_id" => %format!("{:x}", found.member_id),
            "cluster_id" => %format!("{:x}", found.cluster_id));
        return Ok(());
    }
    Err(storage_error(config)(StorageError::IdentityMismatch {
        dir: layout.wal_dir.clone(),
        expected: flags.member_id,
        expected_cluster: flags.cluster_id,
        found: found.member_id,
        found_cluster: found.cluster_id,
    }))
}

/// A data directory `stetutl backup` made starts only as a new cluster: with
/// --force-new-cluster, or once such a start has committed past the backup's commit index (its
/// forced entries are durable), when the marker is removed and the member restarts as usual.
fn settle_backup_marker(
    config: &ServerConfig,
    env: &Arc<dyn Environment>,
    layout: &StorageLayout,
    marker: offline::Marker,
    opened: &Opened,
    log: &slog::Logger,
) -> Result<(), ServerError> {
    if config.force_new_cluster {
        slog::warn!(log, "starting a backup as a new cluster"; "backup" => %marker);
        return Ok(());
    }
    if opened.durable.hard_state.commit <= marker.commit_index {
        return Err(ServerError::IsBackup {
            dir: config.data_dir.display().to_string(),
            marker: marker.to_string(),
        });
    }
    let mut disk = env.disk();
    offline::remove_marker(&mut disk, layout)
        .map_err(|e| ServerError::Fatal(format!("cannot remove the backup marker: {e}")))?;
    slog::info!(log, "this backup runs as a cluster of its own now: its marker is removed";
        "backup" => %marker);
    Ok(())
}

/// Opens (or creates) the storage engine's file, `member/engine.redb`. A restart reads the applied
/// state from it when it is at least as new as the last snapshot; a new member, or one starting
/// afresh, writes its state into it anew.
fn open_engine(config: &ServerConfig, env: &Arc<dyn Environment>) -> Result<Engine, ServerError> {
    let layout = StorageLayout::new(&config.data_dir, config.wal_dir.as_deref());
    let env = env.clone();
    Engine::open(move || env.disk(), &layout.engine_file, ENGINE_CACHE_BYTES)
        .map_err(|error| storage_error(config)(StorageError::Engine(error)))
}

/// [`open_engine`] on a blocking thread, started now.
fn open_engine_in_background(
    config: &ServerConfig,
    env: &Arc<dyn Environment>,
) -> impl std::future::Future<Output = Result<Engine, ServerError>> {
    let (config, env) = (config.clone(), env.clone());
    let task = tokio::spawn(crate::server::blocking::run(move || {
        open_engine(&config, &env)
    }));
    async move {
        match task.await {
            Ok(Ok(opened)) => opened,
            Ok(Err(why)) => Err(ServerError::Fatal(why)),
            Err(error) => Err(ServerError::Fatal(error.to_string())),
        }
    }
}

fn storage_error(config: &ServerConfig) -> impl Fn(crate::storage::StorageError) -> ServerError {
    let dir = config.data_dir.display().to_string();
    move |source| ServerError::Storage {
        dir: dir.clone(),
        source,
    }
}

/// An opened data directory.
struct Opened {
    storage: MemberStorage<BoxDisk>,
    durable: DurableState,
    metadata: Metadata,
}

/// Opens the data directory and reads its durable state back.
fn open(
    config: &ServerConfig,
    env: &Arc<dyn Environment>,
    disk: BoxDisk,
    layout: StorageLayout,
    log: &slog::Logger,
) -> Result<Opened, ServerError> {
    // Whose data this is gets checked once the engine is open too (`check_identity`).
    let reading = env.now();
    let (storage, durable, report) = MemberStorage::open(disk, layout, env.wal_options(), None)
        .map_err(storage_error(config))?;
    slog::info!(log, "read the WAL and snapshots";
        "ms" => env.now().saturating_duration_since(reading).as_millis(),
        "entries" => durable.entries.len());
    if let Some(torn) = &report.torn_tail {
        slog::warn!(log, "repaired a torn WAL tail"; "file" => %torn.file.display(), "offset" => torn.offset, "bytes" => torn.bytes_dropped);
    }
    for skipped in &report.skipped_snapshots {
        slog::warn!(log, "skipped a damaged snapshot"; "snapshot" => %skipped);
    }
    let metadata = report.metadata.unwrap_or(Metadata {
        member_id: config.member_id.0,
        cluster_id: config.cluster_id.0,
    });
    Ok(Opened {
        storage,
        durable,
        metadata,
    })
}

/// Restarts from the data directory, or forces a new cluster from it.
fn restart(
    config: &ServerConfig,
    env: &Arc<dyn Environment>,
    opened: Opened,
    engine: Engine,
    log: &slog::Logger,
) -> Result<(Started, StartKind), ServerError> {
    let Opened {
        mut storage,
        durable,
        metadata,
    } = opened;
    let member_id = MemberId(metadata.member_id);
    let raft_log = log.new(slog::o!("from" => "raft"));
    // The load rebuilds the key index in two halves, on two threads.
    crate::kv::set_side_by_side(crate::server::blocking::side_by_side);
    let (node, kind) = if config.force_new_cluster {
        let previous = ClusterId(metadata.cluster_id);
        let cluster_id = if env.planted(Mistake::ForcedStartKeepsClusterId) {
            previous
        } else {
            member::forced_cluster_id(previous, member_id, durable.hard_state.commit)
        };
        let node_config = node_config(config, env.as_ref(), member_id, cluster_id);
        let mut node = Node::restart_forced(node_config, durable, engine, env.now(), &raft_log)?;
        persist_forced_start(config, env, &mut storage, &mut node)?;
        slog::warn!(
            log,
            "--force-new-cluster: this member now forms a new cluster alone, with all its data; \
             add members back with `member add`";
            "previous_cluster_id" => %format!("{:x}", previous.0),
            "cluster_id" => %format!("{:x}", cluster_id.0)
        );
        (node, StartKind::ForceNewCluster)
    } else {
        let node_config = node_config(
            config,
            env.as_ref(),
            member_id,
            ClusterId(metadata.cluster_id),
        );
        let engine_applied = engine.applied().index;
        let loading = env.now();
        let node = Node::restart(node_config, durable, engine, env.now(), &raft_log)?;
        slog::info!(log, "loaded the applied state";
            "load_and_replay_ms" => env.now().saturating_duration_since(loading).as_millis(),
            "engine_applied_index" => engine_applied);
        (node, StartKind::Restart)
    };
    slog::info!(log, "restarted from {}", config.data_dir.display(); "applied_index" => node.applied_index());
    // The load's scratch (every row of the engine, sorted) would stay in the RSS.
    super::heap::release_freed_memory();
    let started = Started {
        node,
        storage,
        seed_members: Vec::new(),
    };
    Ok((started, kind))
}

/// Makes a forced start durable before the member runs, in an order a crash at any point leaves
/// startable: the removal of every other member (a crash after it leaves this member alone in the
/// old cluster), then the new cluster ID, then the identity of the flags it was forced under
/// (`forced_identity`, which no longer matches the WAL's: a crash before it makes a plain restart
/// refuse, and forcing again works).
fn persist_forced_start(
    config: &ServerConfig,
    env: &Arc<dyn Environment>,
    storage: &mut MemberStorage<BoxDisk>,
    node: &mut Node,
) -> Result<(), ServerError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        ServerError::Fatal(format!("--force-new-cluster: cannot write {what}: {e}"))
    };
    for persist in node.take_start_persists() {
        storage
            .persist(&persist)
            .map_err(|e| failed("the removal of the other members", &e))?;
    }
    let cluster_id = node.config().cluster_id;
    storage
        .change_cluster_id(cluster_id.0)
        .map_err(|e| failed("the new cluster ID", &e))?;
    let flags = Metadata {
        member_id: config.member_id.0,
        cluster_id: config.cluster_id.0,
    };
    let layout = StorageLayout::new(&config.data_dir, config.wal_dir.as_deref());
    forced_identity::write(&mut env.disk(), &layout, flags)
        .map_err(|e| failed("the identity forced under", &e))
}

/// Starts a member whose WAL holds nothing durable as it started the first time: bootstraps the
/// cluster again, or joins it again (asking the peers for the membership, which must still name
/// the member the WAL was made for).
async fn fresh(
    config: &ServerConfig,
    env: &Arc<dyn Environment>,
    storage: MemberStorage<BoxDisk>,
    metadata: Metadata,
    engine: Engine,
    peer_tls: Option<Arc<PeerTls>>,
    log: &slog::Logger,
) -> Result<(Started, StartKind), ServerError> {
    if config.cluster_state == ClusterState::New {
        return Ok((
            bootstrap(config, env, storage, engine, log)?,
            StartKind::Bootstrap,
        ));
    }
    let (cluster_id, member_id, members) =
        discover_identity(config, env.as_ref(), peer_tls).await?;
    if (member_id.0, cluster_id.0) != (metadata.member_id, metadata.cluster_id) {
        return Err(ServerError::Join(format!(
            "the data directory was made for member {:x} of cluster {:x}, but the cluster now \
             names this member {:x} of cluster {:x}",
            metadata.member_id, metadata.cluster_id, member_id.0, cluster_id.0
        )));
    }
    let started = join_with(
        config,
        env,
        storage,
        engine,
        (member_id, cluster_id),
        members,
        log,
    )?;
    Ok((started, StartKind::Join))
}

/// Joins a running cluster that already added this member.
async fn join(
    config: &ServerConfig,
    env: &Arc<dyn Environment>,
    disk: BoxDisk,
    layout: StorageLayout,
    peer_tls: Option<Arc<PeerTls>>,
    log: &slog::Logger,
) -> Result<Started, ServerError> {
    let (cluster_id, member_id, members) =
        discover_identity(config, env.as_ref(), peer_tls).await?;
    let metadata = Metadata {
        member_id: member_id.0,
        cluster_id: cluster_id.0,
    };
    let storage = MemberStorage::create(disk, layout, metadata, env.wal_options())
        .map_err(storage_error(config))?;
    let engine = open_engine(config, env)?;
    join_with(
        config,
        env,
        storage,
        engine,
        (member_id, cluster_id),
        members,
        log,
    )
}

/// Starts a joining member's node on its (empty) storage.
fn join_with(
    config: &ServerConfig,
    env: &Arc<dyn Environment>,
    storage: MemberStorage<BoxDisk>,
    engine: Engine,
    (member_id, cluster_id): (MemberId, ClusterId),
    members: Vec<pb::Member>,
    log: &slog::Logger,
) -> Result<Started, ServerError> {
    let raft_log = log.new(slog::o!("from" => "raft"));
    let node_config = node_config(config, env.as_ref(), member_id, cluster_id);
    let node = Node::join(node_config, engine, env.now(), &raft_log)?;
    slog::info!(log, "joining the existing cluster"; "member_id" => %format!("{:x}", member_id.0), "cluster_id" => %format!("{:x}", cluster_id.0));
    Ok(Started {
        node,
        storage,
        seed_members: members,
    })
}

/// Bootstraps a new cluster from `--initial-cluster`, on new (or empty) storage.
fn bootstrap(
    config: &ServerConfig,
    env: &Arc<dyn Environment>,
    storage: MemberStorage<BoxDisk>,
    engine: Engine,
    log: &slog::Logger,
) -> Result<Started, ServerError> {
    let raft_log = log.new(slog::o!("from" => "raft"));
    let node_config = node_config(config, env.as_ref(), config.member_id, config.cluster_id);
    let members = &config.initial_members;
    let restored = holds_restored_state(&engine).map_err(StartError::from)?;
    let node = if restored {
        slog::info!(log, "starting the new cluster from a restored backup";
            "revision" => engine.view().and_then(|v| v.current_revision()).unwrap_or(0));
        Node::bootstrap_restored(node_config, members, engine, env.now(), &raft_log)?
    } else {
        Node::bootstrap(node_config, members, engine, env.now(), &raft_log)?
    };
    slog::info!(log, "bootstrapped a new cluster in {}", config.data_dir.display(); "members" => config.initial_members.len());
    Ok(Started {
        node,
        storage,
        seed_members: Vec::new(),
    })
}

/// Whether `engine` holds a backup restored for a new cluster (`stetutl snapshot restore`, see
/// `Engine::start_new_cluster`): a cluster ID but no applied entry. A new member's file has
/// neither; a running member's has both.
fn holds_restored_state(engine: &Engine) -> Result<bool, crate::engine::EngineError> {
    Ok(engine.applied().index == 0 && engine.view()?.cluster_id()? != 0)
}
