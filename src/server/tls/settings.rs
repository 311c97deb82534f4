//! The TLS settings of one side (client or peer) as checked from etcd's flags.

use std::path::PathBuf;

use rustls::crypto::CryptoProvider;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

use super::TlsError;

/// Where a side's certificate and key come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `--cert-file` and `--key-file` (re-read when they change).
    Files { cert: PathBuf, key: PathBuf },
    /// `--auto-tls`: a self-signed pair kept in `dir`, valid for `hosts`.
    Auto {
        dir: PathBuf,
        hosts: Vec<String>,
        validity_years: u32,
    },
}

impl CertSource {
    /// The certificate and key files: the given ones, or the self-signed pair (made now if
    /// missing).
    pub fn files(&self) -> Result<(PathBuf, PathBuf), TlsError> {
        match self {
            CertSource::Files { cert, key } => Ok((cert.clone(), key.clone())),
            CertSource::Auto {
                dir,
                hosts,
                validity_years,
            } => super::auto::ensure(dir, hosts, *validity_years),
        }
    }
}

/// Versions and cipher suites, as `--tls-min-version`, `--tls-max-version` and
/// `--cipher-suites` name them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsPolicy {
    /// etcd's names: `TLS1.2` or `TLS1.3` (empty: TLS1.2).
    pub min_version: String,
    /// Empty: the newest.
    pub max_version: String,
    /// Go's names of TLS 1.2 suites; empty: rustls' defaults. TLS 1.3 suites are always on, as in
    /// Go.
    pub cipher_suites: Vec<String>,
}

/// One side's TLS: certificate, client certificates, policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSecurity {
    pub cert: CertSource,
    /// CA whose certificates clients may present (`--trusted-ca-file`).
    pub trusted_ca_file: Option<PathBuf>,
    /// Clients must present a certificate the CA signed (`--client-cert-auth`).
    pub client_cert_auth: bool,
    pub policy: TlsPolicy,
}

/// TLS between members: the same certificate serves the peer port and introduces this member
/// when it dials (etcd's peer TLS), verified against the peer CA both ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSecurity {
    /// `--peer-cert-file`/`--peer-key-file` or `--peer-auto-tls`, `--peer-trusted-ca-file`,
    /// `--peer-client-cert-auth`, and the shared version and suite policy.
    pub transport: TransportSecurity,
    /// A dialing peer's certificate must have this common name (`--peer-cert-allowed-cn`).
    pub allowed_cn: Option<String>,
    /// A dialing peer's certificate must name this host (`--peer-cert-allowed-hostname`).
    pub allowed_hostname: Option<String>,
}

/// A TLS version by etcd's name.
fn version(flag: &'static str, name: &str) -> Result<Option<u8>, TlsError> {
    match name {
        "" => Ok(None),
        "TLS1.2" => Ok(Some(2)),
        "TLS1.3" => Ok(Some(3)),
        "TLS1.0" | "TLS1.1" => Err(TlsError::Version {
            flag,
            why: format!("{name} is not supported (TLS1.2 or TLS1.3)"),
        }),
        other => Err(TlsError::Version {
            flag,
            why: format!("unknown version {other} (TLS1.2 or TLS1.3)"),
        }),
    }
}

impl TlsPolicy {
    /// The protocol versions the policy allows.
    pub fn versions(&self) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
        let min = version("--tls-min-version", &self.min_version)?.unwrap_or(2);
        let max = version("--tls-max-version", &self.max_version)?.unwrap_or(3);
        if min > max {
            return Err(TlsError::Version {
                flag: "--tls-min-version",
                why: format!("TLS1.{min} is above --tls-max-version TLS1.{max}"),
            });
        }
        if !self.cipher_suites.is_empty() && min == 3 {
            return Err(TlsError::CipherSuite(
                "cipher suites cannot be chosen with TLS1.3 only (its suites are fixed)".into(),
            ));
        }
        let mut versions = Vec::new();
        if min <= 2 {
            versions.push(&rustls::version::TLS12);
        }
        if max >= 3 {
            versions.push(&rustls::version::TLS13);
        }
        Ok(versions)
    }

    /// ring's provider with the chosen TLS 1.2 suites (and every TLS 1.3 one).
    pub fn provider(&self) -> Result<CryptoProvider, TlsError> {
        let mut provider = rustls::crypto::ring::default_provider();
        if self.cipher_suites.is_empty() {
            return Ok(provider);
        }
        let all = provider.cipher_suites.clone();
        let mut chosen: Vec<SupportedCipherSuite> = all
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .copied()
            .collect();
        for name in &self.cipher_suites {
            let found = all
                .iter()
                .find(|s| go_name_matches(s, name))
                .ok_or_else(|| {
                    let known: Vec<String> = all
                        .iter()
                        .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
                        .map(|s| format!("{:?}", s.suite()))
                        .collect();
                    TlsError::CipherSuite(format!(
                        "{name} is not supported (supported: {})",
                        known.join(", ")
                    ))
                })?;
            chosen.push(*found);
        }
        provider.cipher_suites = chosen;
        Ok(provider)
    }
}

/// Whether `suite` is the TLS 1.2 suite Go calls `name` (Go's ChaCha20 names may omit `_SHA256`).
fn go_name_matches(suite: &SupportedCipherSuite, name: &str) -> bool {
    if !matches!(suite, SupportedCipherSuite::Tls12(_)) {
        return false;
    }
    let rustls_name = format!("{:?}", suite.suite());
    rustls_name == name || rustls_name == format!("{name}_SHA256")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min: &str, max: &str, suites: &[&str]) -> TlsPolicy {
        TlsPolicy {
            min_version: min.into(),
            max_version: max.into(),
            cipher_suites: suites.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn versions_follow_etcds_names() {
        assert_eq!(policy("", "", &[]).versions().unwrap().len(), 2);
        let only13 = policy("TLS1.3", "", &[]).versions().unwrap();
        assert_eq!(only13, vec![&rustls::version::TLS13]);
        let only12 = policy("TLS1.2", "TLS1.2", &[]).versions().unwrap();
        assert_eq!(only12, vec![&rustls::version::TLS12]);
        for bad in [
            policy("TLS1.0", "", &[]),
            policy("TLS9", "", &[]),
            policy("TLS1.3", "TLS1.2", &[]),
        ] {
            assert!(bad.versions().is_err(), "{bad:?}");
        }
        let error = policy("TLS1.1", "", &[])
            .versions()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--tls-min-version") && error.contains("not supported"),
            "{error}"
        );
    }

    #[test]
    fn cipher_suites_take_gos_names_and_keep_tls13() {
        let chosen = policy(
            "",
            "",
            &[
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            ],
        )
        .provider()
        .unwrap();
        let tls12 = chosen
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .count();
        assert_eq!(tls12, 2);
        assert!(chosen
            .cipher_suites
            .iter()
            .any(|s| matches!(s, SupportedCipherSuite::Tls13(_))));
        let error = policy("", "", &["TLS_RSA_WITH_RC4_128_SHA"])
            .provider()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("TLS_RSA_WITH_RC4_128_SHA is not supported"),
            "{error}"
        );
        let error = policy("TLS1.3", "", &["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])
            .versions()
            .unwrap_err();
        assert!(error.to_string().contains("TLS1.3"), "{error}");
    }
}
