//! Starting and stopping one member: data directory → node → driver task → listeners serving gRPC
//! and HTTP on one port each; a signal stops it cleanly (the driver fsyncs before it returns).

use std::future::Future;
use std::net::SocketAddr;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::{ClusterState, ListenAddr, LogFormat, LogLevel, ServerConfig};
use super::driver::{Driver, Exit};
use super::fs_disk::FsDisk;
use super::{grpc, http};
use crate::node::{Node, NodeConfig, StartError};
use crate::storage::{MemberStorage, StorageError, StorageLayout};
use crate::time::Instant;
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
    #[error("joining an existing cluster (--initial-cluster-state existing) is not supported yet: peer transport comes with multi-member clusters")]
    JoinUnsupported,
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

/// Sets up logging to stderr at `level`, as text or JSON lines.
pub fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
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

fn node_config(config: &ServerConfig) -> NodeConfig {
    let mut node = NodeConfig::new(config.member_id, config.cluster_id);
    node.cluster_token = config.cluster_token.clone();
    node.heartbeat_interval = config.heartbeat_interval;
    node.election_timeout = config.election_timeout;
    node.snapshot_count = config.snapshot_count;
    node.max_request_bytes = config.max_request_bytes;
    node.max_txn_ops = config.max_txn_ops;
    // A fresh seed per start, so a restarted member never repeats its previous life's lease IDs.
    node.seed = rand::random();
    node
}

/// Opens the member's storage and starts its node: bootstraps a new single-member cluster, or
/// restarts from the data directory (which must belong to this member of this cluster).
fn start_node(
    config: &ServerConfig,
) -> Result<(Node, MemberStorage<FsDisk>, std::time::Instant), ServerError> {
    let layout = StorageLayout::new(&config.data_dir, config.wal_dir.as_deref());
    let metadata = Metadata {
        member_id: config.member_id.0,
        cluster_id: config.cluster_id.0,
    };
    let storage_error = |source| ServerError::Storage {
        dir: config.data_dir.display().to_string(),
        source,
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let origin = std::time::Instant::now();
    let disk = FsDisk::new();
    let node_config = node_config(config);
    if MemberStorage::exists(&disk, &layout) {
        let (storage, durable, report) =
            MemberStorage::open(disk, layout, WalOptions::default(), Some(metadata))
                .map_err(storage_error)?;
        if let Some(torn) = &report.torn_tail {
            tracing::warn!(
                file = %torn.file.display(),
                offset = torn.offset,
                bytes = torn.bytes_dropped,
                "repaired a torn WAL tail"
            );
        }
        for skipped in &report.skipped_snapshots {
            tracing::warn!(snapshot = %skipped, "skipped a damaged snapshot");
        }
        let node = Node::restart(node_config, durable, Instant::ZERO, &logger)?;
        tracing::info!(
            applied_index = node.applied_index(),
            "restarted from {}",
            config.data_dir.display()
        );
        Ok((node, storage, origin))
    } else {
        if config.cluster_state == ClusterState::Existing {
            return Err(ServerError::JoinUnsupported);
        }
        let storage = MemberStorage::create(disk, layout, metadata, WalOptions::default())
            .map_err(storage_error)?;
        let node = Node::bootstrap(node_config, &config.initial_members, Instant::ZERO, &logger)?;
        tracing::info!(
            "bootstrapped a new cluster in {}",
            config.data_dir.display()
        );
        Ok((node, storage, origin))
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
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    tracing::info!(
        name = %config.name,
        member_id = %format!("{:x}", config.member_id.0),
        cluster_id = %format!("{:x}", config.cluster_id.0),
        "starting stet {}",
        env!("CARGO_PKG_VERSION")
    );
    // Listen first, so a taken port fails before a new data directory is created.
    let mut listeners = Vec::new();
    for addr in &config.listen_client {
        listeners.extend(bind(addr).await?);
    }
    let (node, storage, origin) = start_node(&config)?;
    let (stop, stopped) = watch::channel(false);
    let (driver, handle) = Driver::new(node, storage, origin, stopped.clone());
    let driver_task = tokio::spawn(driver.run());

    let services = grpc::Services::new(handle.clone());
    let app = services
        .routes(config.max_request_bytes)
        .prepare()
        .into_axum_router()
        .merge(http::router(handle));
    for listener in listeners {
        let local = listener.local_addr().ok();
        tracing::info!(address = ?local, "serving client requests (gRPC and HTTP)");
        let app = app.clone();
        let mut stopped = stopped.clone();
        // Without TCP_NODELAY a response written in more than one segment waits for the client's
        // delayed ACK (40 ms on Linux): every read of a 256-byte value took 44 ms. etcd's Go
        // server sets it on every connection.
        let listener = listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::warn!(%error, "cannot set TCP_NODELAY on a client connection");
            }
        });
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.changed().await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "client listener failed");
            }
        });
    }

    tokio::pin!(driver_task);
    let exit = tokio::select! {
        exit = &mut driver_task => exit,
        _ = shutdown => {
            tracing::info!("received a shutdown signal; stopping");
            let _ = stop.send(true);
            driver_task.await
        }
    };
    let _ = stop.send(true);
    match exit {
        Ok(Exit::Shutdown) => {
            tracing::info!("stopped");
            Ok(())
        }
        Ok(Exit::Removed) => Err(ServerError::Removed),
        Ok(Exit::Fatal(reason)) => Err(ServerError::Fatal(reason)),
        Err(error) => Err(ServerError::Fatal(format!(
            "the driver task failed: {error}"
        ))),
    }
}
