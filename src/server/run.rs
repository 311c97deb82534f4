//! Running one member: bind the listeners, start the node (`start`), then wire the driver, the
//! peer transport, forwarding and the client services together, and wait until a shutdown,
//! removal or failure (the driver fsyncs before it returns). `run` is the binary's entry on the
//! real machine; `run_in` takes any `Environment`, and is what the simulator calls.

use std::future::Future;
use std::sync::Arc;

use super::auth::AuthGate;
use super::config::ServerConfig;
use super::disk_space;
use super::driver::{Driver, Exit};
use super::env::{Environment, Limits};
use super::grpc::Services;
use super::listen::{self, ClientListeners};
use super::metrics::Metrics;
use super::peer::{self, conn::Identity, forward::Forwarder, Transport};
use super::route::Router;
use super::start::{start_node, Started};
use super::tls::peer::PeerTls;
use crate::node::StartError;
use crate::storage::StorageError;

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
    #[error(
        "this member has been permanently removed from the cluster. Exiting. (Its data \
             directory can never rejoin: to bring this machine back, move the data directory \
             aside, run `etcdctl member add` and start with the settings it prints.)"
    )]
    Removed,
    #[error("fatal: {0}")]
    Fatal(String),
    #[error(
        "data dir {dir} is {marker} (made by `stetutl backup`): it cannot rejoin that \
             cluster. Start it with --force-new-cluster to make it a new one-member cluster \
             holding its data"
    )]
    IsBackup { dir: String, marker: String },
    #[cfg(not(madsim))]
    #[error("{0}")]
    Locked(#[from] super::dir_lock::LockError),
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    #[error("{0} (--force-new-cluster needs a data directory to restart from; without one, --name and --initial-cluster must describe this member)")]
    NoDataToForce(String),
}

impl ServerError {
    /// Whether the member refused to start over its data directory or settings (what
    /// `stetutl doctor` explains), rather than failing while it ran.
    pub fn is_refusal_to_start(&self) -> bool {
        matches!(
            self,
            ServerError::Storage { .. }
                | ServerError::Start(_)
                | ServerError::Join(_)
                | ServerError::Removed
                | ServerError::IsBackup { .. }
                | ServerError::NoDataToForce(_)
                | ServerError::Tls(_)
        )
    }
}

/// Resolves when the process gets SIGINT or SIGTERM.
#[cfg(not(madsim))]
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    biased;
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

/// Runs one member on the real machine until `shutdown` resolves (clean exit), or it is removed
/// or fails.
#[cfg(not(madsim))]
pub async fn run(
    config: ServerConfig,
    log: slog::Logger,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    // Held until the member exits: no second process may use the data directory meanwhile.
    let _lock = super::dir_lock::DataDirLock::acquire(&config.data_dir)?;
    run_in(config, log, shutdown, super::env::OsEnvironment::new()).await
}

/// Runs one member on the machine `env` until `shutdown` resolves (clean exit), or it is removed
/// or fails. A member stopped by a full disk starts again once there is space
/// (`disk_space`), without exiting.
pub async fn run_in(
    config: ServerConfig,
    log: slog::Logger,
    shutdown: impl Future<Output = ()>,
    env: Arc<dyn Environment>,
) -> Result<(), ServerError> {
    log_start(&config, &log);
    tokio::pin!(shutdown);
    loop {
        match run_member(&config, &log, shutdown.as_mut(), env.clone()).await {
            Err(ServerError::Fatal(reason)) if disk_space::is_out_of_space(&reason) => {
                slog::error!(log, "the data directory's disk is full: the member stopped serving \
                    and starts again once there is space (free space, or stop it)";
                    "reason" => %reason, "data_dir" => %config.data_dir.display());
                env.waiting_for_space(&reason);
                if env.planted(super::env::Mistake::StayDownAfterFullDisk) {
                    shutdown.as_mut().await;
                    return Ok(());
                }
                let waited = disk_space::wait_for_space(
                    env.as_ref(),
                    &config.data_dir,
                    shutdown.as_mut(),
                    &log,
                )
                .await;
                if !waited {
                    slog::info!(
                        log,
                        "received a shutdown signal while waiting for space; stopped"
                    );
                    return Ok(());
                }
            }
            result => return result,
        }
    }
}

fn log_start(config: &ServerConfig, log: &slog::Logger) {
    slog::info!(log, "starting stet {}", super::version::STET_VERSION; "etcd_api_version" => super::version::ETCD_API_VERSION, "name" => %config.name, "member_id" => %format!("{:x}", config.member_id.0), "cluster_id" => %format!("{:x}", config.cluster_id.0));
    if !config.ignored_config_keys.is_empty() {
        slog::warn!(log, "--config-file: ignoring settings stet does not support";
            "keys" => config.ignored_config_keys.join(","));
    }
    log_quota(log, config.quota_backend_bytes);
}

/// Runs the member once, until `shutdown` resolves, it is removed or it fails.
async fn run_member(
    config: &ServerConfig,
    log: &slog::Logger,
    shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    env: Arc<dyn Environment>,
) -> Result<(), ServerError> {
    // Listen first, so a taken port fails before a new data directory is created.
    let clients = ClientListeners::bind(config, log).await?;
    let peers = PeerListeners::bind(config, log).await?;
    let started = start_node(config, &env, peers.tls.clone(), log).await?;
    let (stop, stopped) = super::stop::channel();
    let (inconsistent_tx, inconsistent) = tokio::sync::oneshot::channel();
    let driver_task = spawn_member(
        config,
        started,
        env,
        peers,
        clients,
        (stopped, inconsistent_tx),
        log,
    );
    tokio::pin!(driver_task);
    tokio::pin!(inconsistent);
    let exit = tokio::select! {
        biased;
        exit = &mut driver_task => exit,
        Ok(why) = &mut inconsistent => {
            stop.stop();
            let _ = driver_task.await;
            return Err(ServerError::Fatal(why));
        }
        _ = shutdown => {
            slog::info!(log, "received a shutdown signal; stopping");
            stop.stop();
            driver_task.await
        }
    };
    stop.stop();
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

/// The peer ports, with the peer TLS that https ones serve and every dial to an https peer uses.
struct PeerListeners {
    listeners: Vec<(tokio::net::TcpListener, bool)>,
    tls: Option<Arc<PeerTls>>,
}

impl PeerListeners {
    /// Binds every `--listen-peer-urls` address (a bad peer certificate fails here too).
    async fn bind(config: &ServerConfig, log: &slog::Logger) -> Result<Self, ServerError> {
        let tls = match &config.peer_tls {
            Some(security) => Some(Arc::new(PeerTls::new(security, log)?)),
            None => None,
        };
        let mut listeners = Vec::new();
        for addr in &config.listen_peer {
            for listener in listen::bind(addr).await? {
                listeners.push((listener, addr.tls));
            }
        }
        Ok(PeerListeners { listeners, tls })
    }
}

/// Wires a started node into a running member: the driver, the peer transport and listeners,
/// forwarding, and the client services — these only once the initial corruption check passed,
/// if asked for (else why it failed goes to `inconsistent`). Returns the driver's task.
fn spawn_member(
    config: &ServerConfig,
    started: Started,
    env: Arc<dyn Environment>,
    peers: PeerListeners,
    clients: ClientListeners,
    (stopped, inconsistent): (super::stop::Stopped, tokio::sync::oneshot::Sender<String>),
    log: &slog::Logger,
) -> tokio::task::JoinHandle<Exit> {
    let Started {
        node,
        storage,
        seed_members,
    } = started;
    let identity = Identity {
        cluster_id: node.config().cluster_id.0,
        member_id: node.config().id.0,
        tls: peers.tls.clone(),
    };
    let addresses = peer::AddressBook::default();
    let metrics = Arc::new(Metrics::new(node.config().quota_backend_bytes.unwrap_or(0)));
    let limits = env.limits();
    let plant = env.planted(super::env::Mistake::TokensNameLastLogin);
    let gate = AuthGate::new(config.auth.clone(), env.secret_seed(), plant);
    let (mut driver, handle) = Driver::new(
        env.clone(),
        node,
        storage,
        stopped.clone(),
        (metrics.clone(), gate.clone()),
        log.clone(),
    );
    driver.attach_transport(Transport::new(
        identity.clone(),
        handle.clone(),
        addresses.clone(),
        env.clone(),
        log.clone(),
    ));
    tokio::spawn(peer::clock::watch_clocks(
        env.clone(),
        identity.clone(),
        addresses.clone(),
        metrics,
        stopped.clone(),
        log.clone(),
    ));
    if let Some(interval) = config.corrupt_check_interval {
        tokio::spawn(peer::corrupt::check_periodically(
            env.clone(),
            identity.clone(),
            handle.clone(),
            interval,
            stopped.clone(),
            log.clone(),
        ));
    }
    driver.seed_members(seed_members);
    driver.publish_attributes(config.name.clone(), config.advertise_client_urls.clone());
    if config.force_new_cluster {
        driver.publish_peer_urls(config.peer_urls.clone());
    }
    for (listener, https) in peers.listeners {
        let local = listener.local_addr().ok();
        slog::info!(log, "serving peers"; "address" => ?local, "tls" => https);
        let tls = if https { peers.tls.clone() } else { None };
        tokio::spawn(peer::accept::serve(
            log.clone(),
            (listener, tls),
            handle.clone(),
            addresses.clone(),
            env.clone(),
            stopped.clone(),
        ));
    }
    let driver_task = tokio::spawn(driver.run());
    let router = Router::new(handle.clone(), Forwarder::new(identity.clone(), addresses))
        .skipping_election_wait(env.planted(super::env::Mistake::SkipElectionWait));
    let limits = Limits {
        max_request_bytes: config.max_request_bytes,
        ..limits
    };
    let services = Services::new(router, limits, gate)
        .never_restarting_ranges(env.planted(super::env::Mistake::NeverRestartCompactedRange));
    if !config.initial_corrupt_check {
        clients.serve(services, handle, config, stopped, log);
        return driver_task;
    }
    let (config, log) = (config.clone(), log.clone());
    tokio::spawn(async move {
        let checked = peer::corrupt::initial_check(env.as_ref(), &identity, &handle, &log).await;
        match checked {
            Ok(()) => clients.serve(services, handle, &config, stopped, &log),
            Err(why) => {
                let _ = inconsistent.send(why);
            }
        }
    });
    driver_task
}

/// etcd's recommended largest space quota: beyond it, say so (the quota still applies).
const MAX_RECOMMENDED_QUOTA_BYTES: u64 = 8 << 30;

fn log_quota(log: &slog::Logger, quota_bytes: Option<u64>) {
    match quota_bytes {
        None => slog::warn!(log, "disabling backend quota"),
        Some(bytes) if bytes > MAX_RECOMMENDED_QUOTA_BYTES => slog::warn!(log,
            "backend quota exceeds the maximum recommended quota";
            "quota_bytes" => bytes, "max_recommended_bytes" => MAX_RECOMMENDED_QUOTA_BYTES),
        Some(bytes) => slog::info!(log, "enabled backend quota"; "quota_bytes" => bytes),
    }
}
