//! The client port's TLS acceptor: rustls with the policy's versions and suites, the
//! reloading certificate, client certificates verified against `--trusted-ca-file` (required
//! with `--client-cert-auth`, optional otherwise), and ALPN for gRPC (h2) and HTTP/1.1.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_rustls::TlsAcceptor;

use super::reload::ReloadingCert;
use super::{TlsError, TransportSecurity};

/// The certificates of a CA file.
pub fn load_roots(flag: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let read = |why: String| TlsError::Read {
        flag,
        path: path.display().to_string(),
        why,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| read(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::Empty {
            flag,
            path: path.display().to_string(),
            what: "usable CA certificate",
        });
    }
    Ok(roots)
}

/// Builds the acceptor for one side's settings.
pub fn acceptor(security: &TransportSecurity, log: &slog::Logger) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(security.policy.provider()?);
    let versions = security.policy.versions()?;
    let (cert, key) = security.cert.files()?;
    let resolver = ReloadingCert::new(cert, key, provider.clone(), log)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &security.trusted_ca_file {
        None if security.client_cert_auth => {
            return Err(TlsError::Read {
                flag: "--trusted-ca-file",
                path: String::new(),
                why: "--client-cert-auth needs the CA that signs client certificates".into(),
            })
        }
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = Arc::new(load_roots("--trusted-ca-file", ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = if security.client_cert_auth {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
