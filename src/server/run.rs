//! Starting and stopping one member: data directory → node → driver task → listeners serving gRPC
//! and HTTP on one port each; a signal stops it cleanly (the driver fsyncs before it returns).

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::{ClusterState, ListenAddr, ServerConfig};
use super::driver::{Driver, Exit};
use super::fs_disk::FsDisk;
use super::h2_authority::RewritingListener;
use super::peer::{self, conn::Identity, forward::Forwarder, Transport};
use super::{grpc, http, v2_members};
use crate::node::{Node, NodeConfig, StartError};
use crate::proto::etcdserverpb as pb;
use crate::proto::stetpeerpb as peerpb;
use crate::storage::{MemberStorage, StorageError, StorageLayout};
use crate::time::Instant;
use crate::types::{ClusterId, MemberId};
use crate::wal::{Metadata, WalOptions};

/// Why the server could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the data directory {dir}: {source}")]
    Storage {
        dir: String,
        #[source]
        source: StorageError,
    },
    #[error("cannot start the member: {0}")]
    Start(#[from] StartError),
    #[error("cannot join the existing cluster: {0}")]
    Join(String),
    #[error("cannot listen on {url}: {source}")]
    Listen {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("this member has been permanently removed from the cluster. Exiting.")]
    Removed,
    #[error("fatal: {0}")]
    Fatal(String),
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn node_config(config: &ServerConfig, member_id: MemberId, cluster_id: ClusterId) -> NodeConfig {
    let mut node = NodeConfig::new(member_id, cluster_id);
    node.cluster_token = config.cluster_token.clone();
    node.heartbeat_interval = config.heartbeat_interval;
    node.election_timeout = config.election_timeout;
    node.snapshot_count = config.snapshot_count;
    node.catch_up_entries = config.snapshot_catchup_entries;
    node.max_request_bytes = config.max_request_bytes;
    node.max_txn_ops = config.max_txn_ops;
    // A fresh seed per start, so a restarted member never repeats its previous life's lease IDs.
    node.seed = rand::random();
    node
}

/// A started node and what its driver needs besides.
struct Started {
    node: Node,
    storage: MemberStorage<FsDisk>,
    origin: std::time::Instant,
    /// For a joining member, the membership its peers told it.
    seed_members: Vec<pb::Member>,
    /// State bytes of the snapshot the node started from (0 if none).
    snapshot_bytes: u64,
}

/// Opens the member's storage and starts its node: restarts from the data directory, joins a
/// running cluster (`--initial-cluster-state existing` with no data yet), or bootstraps a new one.
async fn start_node(config: &ServerConfig, log: &slog::Logger) -> Result<Started, ServerError> {
    let layout = StorageLayout::new(&config.data_dir, config.wal_dir.as_deref());
    let storage_error = |source| ServerError::Storage {
        dir: config.data_dir.display().to_string(),
        source,
    };
    let logger = log.new(slog::o!("from" => "raft"));
    let disk = FsDisk::new();
    if MemberStorage::exists(&disk, &layout) {
        // A member bootstrapped with `new` must be the one the flags describe; one that joined
        // took the ID the cluster gave it, which only its WAL knows.
        let expected = (config.cluster_state == ClusterState::New).then_some(Metadata {
            member_id: config.member_id.0,
            cluster_id: config.cluster_id.0,
        });
        let (storage, durable, report) =
            MemberStorage::open(disk, layout, WalOptions::default(), expected)
                .map_err(storage_error)?;
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
        let node_config = node_config(
            config,
            MemberId(metadata.member_id),
            ClusterId(metadata.cluster_id),
        );
        let origin = std::time::Instant::now();
        let snapshot_bytes = durable.snapshot.as_ref().map_or(0, |s| s.data.len() as u64);
        let node = if config.force_new_cluster {
            let node = Node::restart_forced(node_config, durable, Instant::ZERO, &logger)?;
            slog::warn!(
                log,
                "--force-new-cluster: this member now forms a cluster alone, with all its data; \
                 add members back with `member add`"
            );
            node
        } else {
            Node::restart(node_config, durable, Instant::ZERO, &logger)?
        };
        slog::info!(log, "restarted from {}", config.data_dir.display(); "applied_index" => node.applied_index());
        Ok(Started {
            node,
            storage,
            origin,
            seed_members: Vec::new(),
            snapshot_bytes,
        })
    } else if config.cluster_state == ClusterState::Existing {
        let (cluster_id, member_id, members) = discover_identity(config).await?;
        let metadata = Metadata {
            member_id: member_id.0,
            cluster_id: cluster_id.0,
        };
        let storage = MemberStorage::create(disk, layout, metadata, WalOptions::default())
            .map_err(storage_error)?;
        let origin = std::time::Instant::now();
        let node = Node::join(
            node_config(config, member_id, cluster_id),
            Instant::ZERO,
            &logger,
        )?;
        slog::info!(log, "joining the existing cluster"; "member_id" => %format!("{:x}", member_id.0), "cluster_id" => %format!("{:x}", cluster_id.0));
        Ok(Started {
            node,
            storage,
            origin,
            seed_members: members,
            snapshot_bytes: 0,
        })
    } else {
        let metadata = Metadata {
            member_id: config.member_id.0,
            cluster_id: config.cluster_id.0,
        };
        let storage = MemberStorage::create(disk, layout, metadata, WalOptions::default())
            .map_err(storage_error)?;
        let origin = std::time::Instant::now();
        let node = Node::bootstrap(
            node_config(config, config.member_id, config.cluster_id),
            &config.initial_members,
            Instant::ZERO,
            &logger,
        )?;
        slog::info!(log, "bootstrapped a new cluster in {}", config.data_dir.display(); "members" => config.initial_members.len());
        Ok(Started {
            node,
            storage,
            origin,
            seed_members: Vec::new(),
            snapshot_bytes: 0,
        })
    }
}

/// How long a joining member keeps asking the others for the membership.
const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Asks the other members of `--initial-cluster` for the cluster's ID and membership, and finds
/// this member in it by its peer URLs (`member add` gave it its ID), as etcd does.
async fn discover_identity(
    config: &ServerConfig,
) -> Result<(ClusterId, MemberId, Vec<pb::Member>), ServerError> {
    let mut own_urls = config.peer_urls.clone();
    own_urls.sort();
    let others: Vec<String> = config
        .initial_members
        .iter()
        .filter(|m| m.id != config.member_id.0)
        .flat_map(|m| m.peer_ur_ls.clone())
        .collect();
    if others.is_empty() {
        return Err(ServerError::Join(
            "--initial-cluster names no other member to ask".to_string(),
        ));
    }
    let unknown = Identity {
        cluster_id: 0,
        member_id: 0,
    };
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut last_error = String::new();
    loop {
        for url in &others {
            match peer::conn::dial(url, unknown, peerpb::Purpose::Members, 0).await {
                Ok((_, welcome)) => {
                    let found = welcome.members.iter().find(|m| {
                        let mut urls = m.peer_ur_ls.clone();
                        urls.sort();
                        urls == own_urls
                    });
                    return match found {
                        Some(member) => Ok((
                            ClusterId(welcome.cluster_id),
                            MemberId(member.id),
                            welcome.members.clone(),
                        )),
                        None => Err(ServerError::Join(format!(
                            "cluster {:x} has no member with peer URLs {}; add it first \
                             (etcdctl member add {} --peer-urls={})",
                            welcome.cluster_id,
                            config.peer_urls.join(","),
                            config.name,
                            config.peer_urls.join(",")
                        ))),
                    };
                }
                Err(error) => last_error = format!("{url}: {error}"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServerError::Join(format!(
                "no member of --initial-cluster answered ({last_error})"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Binds every address a listen URL's host resolves to (`localhost` gives both 127.0.0.1 and ::1
/// where the machine has them); fails only if none can be bound.
async fn bind(addr: &ListenAddr) -> Result<Vec<TcpListener>, ServerError> {
    let listen_error = |source| ServerError::Listen {
        url: addr.url.clone(),
        source,
    };
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((addr.host.as_str(), addr.port))
        .await
        .map_err(listen_error)?
        .collect();
    let mut listeners = Vec::new();
    let mut last_error = None;
    for socket in resolved {
        match TcpListener::bind(socket).await {
            Ok(listener) => listeners.push(listener),
            Err(error) => last_error = Some(error),
        }
    }
    if listeners.is_empty() {
        let error = last_error.unwrap_or_else(|| std::io::Error::other("no address to bind"));
        return Err(listen_error(error));
    }
    Ok(listeners)
}

/// Runs one member until `shutdown` resolves (clean exit), or it is removed or fails.
pub async fn run(
    config: ServerConfig,
    log: slog::Logger,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    slog::info!(log, "starting stet {}", env!("CARGO_PKG_VERSION"); "name" => %config.name, "member_id" => %format!("{:x}", config.member_id.0), "cluster_id" => %format!("{:x}", config.cluster_id.0));
    if !config.ignored_config_keys.is_empty() {
        slog::warn!(log, "--config-file: ignoring settings stet does not support";
            "keys" => config.ignored_config_keys.join(","));
    }
    // Listen first, so a taken port fails before a new data directory is created.
    let mut listeners = Vec::new();
    for addr in &config.listen_client {
        listeners.extend(bind(addr).await?);
    }
    let mut peer_listeners = Vec::new();
    for addr in &config.listen_peer {
        peer_listeners.extend(bind(addr).await?);
    }
    let Started {
        node,
        storage,
        origin,
        seed_members,
        snapshot_bytes,
    } = start_node(&config, &log).await?;
    let identity = Identity {
        cluster_id: node.config().cluster_id.0,
        member_id: node.config().id.0,
    };
    let (stop, stopped) = watch::channel(false);
    let addresses = peer::AddressBook::default();
    let forwarder = Forwarder::new(identity, addresses.clone());
    let metrics = std::sync::Arc::new(super::metrics::Metrics::default());
    let (mut driver, handle) = Driver::new(
        node,
        storage,
        origin,
        stopped.clone(),
        Some(forwarder),
        metrics,
        log.clone(),
    );
    driver.attach_transport(Transport::new(
        identity,
        handle.clone(),
        addresses,
        log.clone(),
    ));
    driver.seed_members(seed_members);
    driver.set_snapshot_bytes(snapshot_bytes);
    driver.publish_attributes(config.name.clone(), config.advertise_client_urls.clone());
    for listener in peer_listeners {
        let local = listener.local_addr().ok();
        slog::info!(log, "serving peers"; "address" => ?local);
        tokio::spawn(peer::accept::serve(
            log.clone(),
            listener,
            handle.clone(),
            stopped.clone(),
        ));
    }
    let driver_task = tokio::spawn(driver.run());

    let services = grpc::Services::new(handle.clone());
    let app = services
        .routes(config.max_request_bytes)
        .prepare()
        .into_axum_router()
        .merge(http::router(handle.clone()))
        .merge(v2_members::router(handle));
    for listener in listeners {
        let local = listener.local_addr().ok();
        slog::info!(log, "serving client requests (gRPC and HTTP)"; "address" => ?local);
        let app = app.clone();
        let log = log.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            // etcdctl's per-endpoint commands send a URL as `:authority`, which hyper refuses.
            let listener = RewritingListener::new(listener, log.clone());
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.changed().await;
            });
            if let Err(error) = serve.await {
                slog::error!(log, "client listener failed"; "error" => %error);
            }
        });
    }

    tokio::pin!(driver_task);
    let exit = tokio::select! {
        exit = &mut driver_task => exit,
        _ = shutdown => {
            slog::info!(log, "received a shutdown signal; stopping");
            let _ = stop.send(true);
            driver_task.await
        }
    };
    let _ = stop.send(true);
    match exit {
        Ok(Exit::Shutdown) => {
            slog::info!(log, "stopped");
            Ok(())
        }
        Ok(Exit::Removed) => Err(ServerError::Removed),
        Ok(Exit::Fatal(reason)) => Err(ServerError::Fatal(reason)),
        Err(error) => Err(ServerError::Fatal(format!(
            "the driver task failed: {error}"
        ))),
    }
}
