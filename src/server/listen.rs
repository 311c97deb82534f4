//! The client and peer listeners: binding every address a listen URL names, and serving clients.
//! In production each client port serves etcd's gRPC API and the HTTP endpoints (`/health`,
//! `/version`, `/metrics`, `/v2/members`) through one axum router, behind the `:authority`
//! rewriting listener (`h2_authority`). Under the simulator (`cfg(madsim)`) a client port serves
//! the same gRPC services over madsim's simulated transport; the HTTP endpoints and the rewriting
//! listener are the edge the simulator does not run (ARCHITECTURE.md names them).

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::{ListenAddr, ServerConfig};
use super::grpc::Services;
use super::handle::DriverHandle;
use super::run::ServerError;

/// Binds every address a listen URL's host resolves to (`localhost` gives both 127.0.0.1 and ::1
/// where the machine has them); fails only if none can be bound.
pub async fn bind(addr: &ListenAddr) -> Result<Vec<TcpListener>, ServerError> {
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

/// The client ports, bound before the data directory is touched (a taken port fails first).
pub struct ClientListeners {
    #[cfg(not(madsim))]
    listeners: Vec<TcpListener>,
    #[cfg(madsim)]
    addresses: Vec<SocketAddr>,
}

impl ClientListeners {
    /// Binds every `--listen-client-urls` address.
    #[cfg(not(madsim))]
    pub async fn bind(config: &ServerConfig) -> Result<Self, ServerError> {
        let mut listeners = Vec::new();
        for addr in &config.listen_client {
            listeners.extend(bind(addr).await?);
        }
        Ok(ClientListeners { listeners })
    }

    /// Resolves every `--listen-client-urls` address (madsim's gRPC server binds it itself).
    #[cfg(madsim)]
    pub async fn bind(config: &ServerConfig) -> Result<Self, ServerError> {
        let mut addresses = Vec::new();
        for addr in &config.listen_client {
            let resolved = tokio::net::lookup_host((addr.host.as_str(), addr.port))
                .await
                .map_err(|source| ServerError::Listen {
                    url: addr.url.clone(),
                    source,
                })?;
            addresses.extend(resolved);
        }
        Ok(ClientListeners { addresses })
    }

    /// Serves gRPC and HTTP on every client port until `stopped` changes.
    #[cfg(not(madsim))]
    pub fn serve(
        self,
        services: Services,
        driver: DriverHandle,
        config: &ServerConfig,
        stopped: watch::Receiver<bool>,
        log: &slog::Logger,
    ) {
        use super::h2_authority::RewritingListener;
        use super::{http, v2_keys, v2_members};
        let mut app = services
            .routes(config.max_request_bytes)
            .prepare()
            .into_axum_router()
            .layer(axum::middleware::from_fn_with_state(
                driver.metrics().clone(),
                super::grpc_metrics::count_calls,
            ))
            .merge(http::router(driver.clone()))
            .merge(v2_members::router(driver));
        if config.enable_v2 {
            app = app.merge(v2_keys::router(services.request_router()));
        }
        let app = app.fallback(http::not_found);
        for listener in self.listeners {
            let local = listener.local_addr().ok();
            slog::info!(log, "serving client requests (gRPC and HTTP)"; "address" => ?local);
            // etcdctl's per-endpoint commands send a URL as `:authority`, which hyper refuses.
            let listener = RewritingListener::new(listener, log.clone());
            let streams = config.max_concurrent_streams;
            tokio::spawn(serve_connections(
                listener,
                app.clone(),
                streams,
                stopped.clone(),
                log.clone(),
            ));
        }
    }

    /// Serves the gRPC services on every client address until `stopped` changes.
    #[cfg(madsim)]
    pub fn serve(
        self,
        services: Services,
        _driver: DriverHandle,
        _config: &ServerConfig,
        stopped: watch::Receiver<bool>,
        log: &slog::Logger,
    ) {
        for address in self.addresses {
            let services = services.clone();
            let log = log.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = stopped.changed().await;
                };
                if let Err(error) = services.serve_simulated(address, stop).await {
                    slog::error!(log, "client listener failed"; "error" => %error);
                }
            });
        }
    }
}

/// Accepts client connections until `stopped` changes and serves each (HTTP/1.1 or HTTP/2, at
/// most `max_streams` concurrent streams per connection), then lets the open ones finish.
#[cfg(not(madsim))]
async fn serve_connections(
    mut listener: super::h2_authority::RewritingListener,
    app: axum::Router,
    max_streams: u32,
    mut stopped: watch::Receiver<bool>,
    log: slog::Logger,
) {
    use axum::serve::Listener as _;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(max_streams);
    let graceful = GracefulShutdown::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let log = log.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                slog::debug!(log, "client connection ended"; "peer" => %peer, "error" => %error);
            }
        });
    }
    // The port is released at once; open connections (watch streams may never end) finish on
    // their own.
    drop(listener);
    graceful.shutdown().await;
}
