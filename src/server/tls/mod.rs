//! TLS on the client port (issue 12), as etcd configures it: `--cert-file`/`--key-file` (or
//! `--auto-tls`'s self-signed pair), `--trusted-ca-file` and `--client-cert-auth` for client
//! certificates, `--cipher-suites` and `--tls-min-version`/`--tls-max-version`. `settings` holds
//! the checked settings, `server` builds the rustls acceptor (ALPN h2 and http/1.1: gRPC and
//! HTTP share the port, as without TLS), `reload` serves certificate files anew when they
//! change (rotation without a restart, as etcd reads them on every handshake), `auto` makes
//! and keeps the self-signed pair. Client-facing only: the simulator's client ports do not run
//! it.

pub mod auto;
pub mod flags;
pub mod peer;
pub mod reload;
pub mod server;
pub mod settings;

pub use settings::{CertSource, PeerSecurity, TlsPolicy, TransportSecurity};

/// Why TLS could not be set up; each names the flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {flag} {path}: {why}")]
    Read {
        flag: &'static str,
        path: String,
        why: String,
    },
    #[error("{flag} {path} holds no {what}")]
    Empty {
        flag: &'static str,
        path: String,
        what: &'static str,
    },
    #[error("the key in {key} does not go with the certificate in {cert}: {why}")]
    Mismatch {
        cert: String,
        key: String,
        why: String,
    },
    #[error("--cipher-suites: {0}")]
    CipherSuite(String),
    #[error("{flag}: {why}")]
    Version { flag: &'static str, why: String },
    #[error("--auto-tls: cannot make a self-signed certificate in {dir}: {why}")]
    Auto { dir: String, why: String },
    #[error("TLS: {0}")]
    Rustls(String),
}
