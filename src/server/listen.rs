//! The client and peer listeners: binding every address a listen URL names, and serving clients.
//! In production each client port serves etcd's gRPC API and the HTTP endpoints (`/health`,
//! `/version`, `/metrics`, `/v2/members`) through one axum router, behind the `:authority`
//! rewriting listener (`h2_authority`). Under the simulator (`cfg(madsim)`) a client port serves
//! the same gRPC services over madsim's simulated transport; the HTTP endpoints and the rewriting
//! listener are the edge the simulator does not run (ARCHITECTURE.md names them).

use std::net::SocketAddr;

use super::stop::Stopped;
use tokio::net::TcpListener;

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
    listeners: Vec<ClientListener>,
    #[cfg(madsim)]
    addresses: Vec<SocketAddr>,
}

impl ClientListeners {
    /// Binds every `--listen-client-urls` address; https ones get the TLS acceptor (a bad
    /// certificate or key fails here, before the data directory is touched).
    #[cfg(not(madsim))]
    pub async fn bind(config: &ServerConfig, log: &slog::Logger) -> Result<Self, ServerError> {
        let acceptor = match &config.client_tls {
            Some(security) => Some(super::tls::server::acceptor(security, log)?),
            None => None,
        };
        // etcd takes a certificate's common name as the user only with --client-cert-auth.
        let cert_users = config
            .client_tls
            .as_ref()
            .is_some_and(|security| security.client_cert_auth);
        let mut listeners = Vec::new();
        for addr in &config.listen_client {
            let tls = if addr.tls { acceptor.clone() } else { None };
            for tcp in bind(addr).await? {
                listeners.push(ClientListener {
                    tcp,
                    tls: tls.clone(),
                    cert_users,
                });
            }
        }
        Ok(ClientListeners { listeners })
    }

    /// Resolves every `--listen-client-urls` address (madsim's gRPC server binds it itself).
    #[cfg(madsim)]
    pub async fn bind(config: &ServerConfig, _log: &slog::Logger) -> Result<Self, ServerError> {
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

    /// Serves gRPC and HTTP on every client port until `stopped` says stop.
    #[cfg(not(madsim))]
    pub fn serve(
        self,
        services: Services,
        driver: DriverHandle,
        config: &ServerConfig,
        stopped: Stopped,
        log: &slog::Logger,
    ) {
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
            let local = listener.tcp.local_addr().ok();
            let tls = listener.tls.is_some();
            slog::info!(log, "serving client requests (gRPC and HTTP)"; "address" => ?local, "tls" => tls);
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

    /// Serves the gRPC services on every client address until `stopped` says stop.
    #[cfg(madsim)]
    pub fn serve(
        self,
        services: Services,
        _driver: DriverHandle,
        _config: &ServerConfig,
        stopped: Stopped,
        log: &slog::Logger,
    ) {
        for address in self.addresses {
            let services = services.clone();
            let log = log.clone();
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let stop = async move { stopped.wait().await };
                if let Err(error) = services.serve_simulated(address, stop).await {
                    slog::error!(log, "client listener failed"; "error" => %error);
                }
            });
        }
    }
}

/// A bound client port, with its TLS acceptor if its URL is https.
#[cfg(not(madsim))]
struct ClientListener {
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// A verified client certificate's common name is the request's user.
    cert_users: bool,
}

/// How long a client has to finish its TLS handshake.
#[cfg(not(madsim))]
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts client connections until `stopped` says stop and serves each (HTTP/1.1 or HTTP/2, at
/// most `max_streams` concurrent streams per connection; TLS first on an https port, each
/// handshake in the connection's own task), then lets the open ones finish.
#[cfg(not(madsim))]
async fn serve_connections(
    listener: ClientListener,
    app: axum::Router,
    max_streams: u32,
    stopped: Stopped,
    log: slog::Logger,
) {
    use hyper_util::server::graceful::GracefulShutdown;

    let graceful = GracefulShutdown::new();
    let ClientListener {
        tcp,
        tls,
        cert_users,
    } = listener;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped.wait() => break,
            accepted = tcp.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait a little rather than spin.
                slog::warn!(log, "accepting a client connection failed"; "error" => %error);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let log = log.new(slog::o!("client" => peer.to_string()));
        // Without TCP_NODELAY a response written in more than one segment waits for the client's
        // delayed ACK (40 ms on Linux): every read of a 256-byte value took 44 ms. etcd's Go
        // server sets it on every connection.
        if let Err(error) = stream.set_nodelay(true) {
            slog::warn!(log, "cannot set TCP_NODELAY on a client connection"; "error" => %error);
        }
        let connection = ClientConnection {
            max_streams,
            app: app.clone(),
            watcher: graceful.watcher(),
            cert_users,
            log,
        };
        match tls.clone() {
            None => tokio::spawn(connection.serve(stream)),
            Some(acceptor) => tokio::spawn(connection.serve_tls(acceptor, stream)),
        };
    }
    // The port is released at once; open connections (watch streams may never end) finish on
    // their own.
    drop(tcp);
    graceful.shutdown().await;
}

/// The common name of the certificate the client presented, if any: rustls asks for one only
/// when `--trusted-ca-file` is set, and the handshake succeeded only if it verified (the caller
/// takes it as the user only with `--client-cert-auth`, as etcd does).
#[cfg(not(madsim))]
fn client_cert_user(
    stream: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> Option<super::auth::ClientCertUser> {
    let cert = stream.get_ref().1.peer_certificates()?.first()?;
    let names = super::tls::peer::certificate_names(cert).ok()?;
    let name = names.common_names.into_iter().next()?;
    Some(super::auth::ClientCertUser(name))
}

/// What serving one client connection needs.
#[cfg(not(madsim))]
struct ClientConnection {
    /// HTTP/2's concurrent-stream limit.
    max_streams: u32,
    app: axum::Router,
    watcher: hyper_util::server::graceful::Watcher,
    cert_users: bool,
    log: slog::Logger,
}

#[cfg(not(madsim))]
impl ClientConnection {
    /// Completes the TLS handshake (within `TLS_HANDSHAKE_TIMEOUT`), then serves. A verified
    /// client certificate's common name goes with each request (the user, with auth enabled).
    async fn serve_tls(
        mut self,
        acceptor: tokio_rustls::TlsAcceptor,
        stream: tokio::net::TcpStream,
    ) {
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                if let Some(user) = client_cert_user(&stream).filter(|_| self.cert_users) {
                    self.app = self.app.layer(axum::Extension(user));
                }
                self.serve(stream).await
            }
            Ok(Err(error)) => {
                slog::info!(self.log, "a client's TLS handshake failed"; "error" => %error)
            }
            Err(_) => slog::info!(
                self.log,
                "a client did not finish its TLS handshake in time"
            ),
        }
    }

    /// Serves HTTP/1.1 or HTTP/2 on `stream` until it ends; HTTP/2's request streams run in
    /// this connection's task (`conn_streams`).
    async fn serve<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use hyper_util::rt::TokioIo;
        use hyper_util::service::TowerToHyperService;
        // etcdctl's per-endpoint commands send a URL as `:authority`, which hyper refuses.
        // Responses finished together leave in one socket write.
        let stream = super::write_batch::BatchingWriter::new(stream);
        let stream = super::h2_authority::RewritingStream::new(stream, self.log.clone());
        let service = TowerToHyperService::new(self.app);
        let streams = super::conn_streams::ConnectionStreams::default();
        let mut builder = hyper_util::server::conn::auto::Builder::new(streams.clone());
        builder.http2().max_concurrent_streams(self.max_streams);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        if let Err(error) = streams.run(self.watcher.watch(connection)).await {
            slog::debug!(self.log, "client connection ended"; "error" => %error);
        }
    }
}
