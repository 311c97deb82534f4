//! The server certificate, read from `--cert-file`/`--key-file` and read again when either file
//! changes (its modification time or length), so a rotated certificate is served from the next
//! handshake without a restart — etcd reads the files on every handshake. The files are looked
//! at no more than once a second; a pair that does not load (say, half written) is retried, and
//! the previous certificate is served meanwhile.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// How often the files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies a version of the files.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let of = |path: &Path| match std::fs::metadata(path) {
        Ok(meta) => (meta.modified().ok(), meta.len()),
        Err(_) => (None, 0),
    };
    [of(cert), of(key)]
}

/// Reads a certificate chain and its key, and checks that they go together.
pub fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |flag, path: &Path, why: String| TlsError::Read {
        flag,
        path: path.display().to_string(),
        why,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read("--cert-file", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read("--cert-file", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Empty {
            flag: "--cert-file",
            path: cert.display().to_string(),
            what: "PEM certificate",
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            flag: "--key-file",
            path: key.display().to_string(),
            what: "PEM private key",
        },
        e => read("--key-file", key, e.to_string()),
    })?;
    let mismatch = |why: String| TlsError::Mismatch {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        why,
    };
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| mismatch(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| mismatch(e.to_string()))?;
    Ok(certified)
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    stamp: Stamp,
    checked_at: Instant,
}

/// The certificate resolver that follows the files.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<Current>,
    log: slog::Logger,
}

impl ReloadingCert {
    /// Loads the pair now: a bad pair fails here, at start, with the flag to fix.
    pub fn new(
        cert: PathBuf,
        key: PathBuf,
        provider: Arc<CryptoProvider>,
        log: &slog::Logger,
    ) -> Result<Self, TlsError> {
        let stamp = stamp(&cert, &key);
        let loaded = load(&cert, &key, &provider)?;
        let current = Current {
            key: Arc::new(loaded),
            stamp,
            checked_at: Instant::now(),
        };
        Ok(ReloadingCert {
            cert,
            key,
            provider,
            current: Mutex::new(current),
            log: log.clone(),
        })
    }

    /// The certificate to serve now, read anew if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.checked_at.elapsed() < CHECK_EVERY {
            return current.key.clone();
        }
        current.checked_at = Instant::now();
        let now = stamp(&self.cert, &self.key);
        if now == current.stamp {
            return current.key.clone();
        }
        match load(&self.cert, &self.key, &self.provider) {
            Ok(loaded) => {
                slog::info!(self.log, "serving a new TLS certificate"; "cert_file" => %self.cert.display());
                current.key = Arc::new(loaded);
                current.stamp = now;
            }
            Err(error) => {
                slog::warn!(self.log, "the TLS certificate files changed but do not load; serving the previous one"; "error" => %error);
            }
        }
        current.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
