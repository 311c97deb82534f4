//! TLS between members: one certificate (`--peer-cert-file` or `--peer-auto-tls`) serves the
//! peer port and introduces this member when it dials another; the peer CA verifies both
//! directions. A dialing member must present a certificate the CA signed when
//! `--peer-client-cert-auth` is on, with the common name `--peer-cert-allowed-cn` and the host
//! `--peer-cert-allowed-hostname` names if set; with `--peer-auto-tls` certificates are not
//! verified (as in etcd: self-signed certificates have nothing to verify against).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::reload::ReloadingCert;
use super::{server, CertSource, PeerSecurity, TlsError};

/// The peer side's TLS, shared by the peer listener and every dial.
#[derive(Clone)]
pub struct PeerTls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
    allowed_cn: Option<String>,
    allowed_hostname: Option<String>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("allowed_cn", &self.allowed_cn)
            .field("allowed_hostname", &self.allowed_hostname)
            .finish_non_exhaustive()
    }
}

impl PeerTls {
    pub fn new(security: &PeerSecurity, log: &slog::Logger) -> Result<PeerTls, TlsError> {
        let transport = &security.transport;
        let acceptor = server::acceptor(transport, log)?;
        let provider = Arc::new(transport.policy.provider()?);
        let versions = transport.policy.versions()?;
        let (cert, key) = transport.cert.files()?;
        let own = Arc::new(ReloadingCert::new(cert, key, provider.clone(), log)?);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match (&transport.cert, &transport.trusted_ca_file) {
            (CertSource::Auto { .. }, _) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider))),
            (CertSource::Files { .. }, Some(ca)) => {
                builder.with_root_certificates(server::load_roots("--peer-trusted-ca-file", ca)?)
            }
            (CertSource::Files { .. }, None) => {
                return Err(TlsError::Read {
                    flag: "--peer-trusted-ca-file",
                    path: String::new(),
                    why: "https peer URLs need the CA that signs members' certificates".into(),
                })
            }
        };
        let config = builder.with_client_cert_resolver(Arc::new(OwnCert(own)));
        Ok(PeerTls {
            acceptor,
            connector: TlsConnector::from(Arc::new(config)),
            allowed_cn: security.allowed_cn.clone(),
            allowed_hostname: security.allowed_hostname.clone(),
        })
    }

    /// Whether a dialing member's certificate (first of `chain`) passes the allowed common name
    /// and host name; why not, if not.
    pub fn admit(&self, chain: Option<&[CertificateDer<'_>]>) -> Result<(), String> {
        if self.allowed_cn.is_none() && self.allowed_hostname.is_none() {
            return Ok(());
        }
        let Some(cert) = chain.and_then(|chain| chain.first()) else {
            return Err("the peer presented no certificate".into());
        };
        let names = certificate_names(cert)?;
        if let Some(cn) = &self.allowed_cn {
            if !names.common_names.iter().any(|name| name == cn) {
                return Err(format!(
                    "the peer's certificate has common name {:?}, not the allowed {cn:?}",
                    names.common_names
                ));
            }
        }
        if let Some(host) = &self.allowed_hostname {
            if !names
                .hosts
                .iter()
                .any(|name| name.eq_ignore_ascii_case(host))
            {
                return Err(format!(
                    "the peer's certificate names {:?}, not the allowed host {host:?}",
                    names.hosts
                ));
            }
        }
        Ok(())
    }
}

/// What a certificate names: its subject's common names and its DNS and IP alternative names.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CertificateNames {
    pub common_names: Vec<String>,
    pub hosts: Vec<String>,
}

/// Reads a certificate's names; an error if it does not parse.
pub fn certificate_names(cert: &CertificateDer<'_>) -> Result<CertificateNames, String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("the peer's certificate does not parse: {e}"))?;
    let mut names = CertificateNames::default();
    for cn in parsed.subject().iter_common_name() {
        if let Ok(text) = cn.as_str() {
            names.common_names.push(text.to_string());
        }
    }
    if let Ok(Some(alternative)) = parsed.subject_alternative_name() {
        for name in &alternative.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.hosts.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_text(bytes) {
                        names.hosts.push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(names)
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

/// The host of a peer URL as the name its certificate must carry.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))
}

/// This member's certificate, shown when it dials (re-read when its files change).
#[derive(Debug)]
struct OwnCert(Arc<ReloadingCert>);

impl ResolvesClientCert for OwnCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `--peer-auto-tls`: any certificate is taken (signatures are still checked).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_from_subject_and_alternative_names() {
        let mut params =
            rcgen::CertificateParams::new(vec!["m1.example".to_string(), "10.0.0.1".to_string()])
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "etcd-peer");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let names = certificate_names(cert.der()).expect("parses");
        assert_eq!(names.common_names, vec!["etcd-peer"]);
        assert_eq!(names.hosts, vec!["m1.example", "10.0.0.1"]);
        assert!(certificate_names(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }
}
