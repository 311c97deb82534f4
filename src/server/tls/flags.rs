//! etcd's client TLS flags (each also an `ETCD_*` variable and a `--config-file` key, where
//! etcd's `client-transport-security` block names them too), and their check into the client
//! port's [`TransportSecurity`].

use std::path::{Path, PathBuf};

use super::{CertSource, PeerSecurity, TlsPolicy, TransportSecurity};

/// The TLS flags, flattened into the command line's.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsFlags {
    /// Path to the client server TLS certificate file (PEM; re-read when it changes).
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file (PEM).
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Path to the CA certificate(s) that sign client certificates.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by --trusted-ca-file.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub client_cert_auth: bool,
    /// Serve https client URLs with a self-signed certificate made for the listen hosts (kept in
    /// <data-dir>/fixtures/client) when no --cert-file is given.
    #[arg(long, env = "ETCD_AUTO_TLS", action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub auto_tls: bool,
    /// Validity of --auto-tls certificates, in years.
    #[arg(long, env = "ETCD_SELF_SIGNED_CERT_VALIDITY", default_value_t = 1)]
    pub self_signed_cert_validity: u32,
    /// TLS 1.2 cipher suites the server accepts, comma-separated, by Go's names
    /// (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, ...); empty: the defaults. TLS 1.3's are fixed.
    #[arg(long, env = "ETCD_CIPHER_SUITES", default_value = "")]
    pub cipher_suites: String,
    /// Oldest TLS version accepted: TLS1.2 or TLS1.3.
    #[arg(long, env = "ETCD_TLS_MIN_VERSION", default_value = "TLS1.2")]
    pub tls_min_version: String,
    /// Newest TLS version accepted: TLS1.2 or TLS1.3 (empty: the newest).
    #[arg(long, env = "ETCD_TLS_MAX_VERSION", default_value = "")]
    pub tls_max_version: String,
    /// Path to the peer TLS certificate (PEM): served on https peer URLs and shown when
    /// dialing peers.
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer TLS key file (PEM).
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Path to the CA certificate(s) that sign peer certificates.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Refuse peers without a certificate signed by --peer-trusted-ca-file.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub peer_client_cert_auth: bool,
    /// Serve https peer URLs with a self-signed certificate (kept in <data-dir>/fixtures/peer);
    /// peers' certificates are then not verified, as in etcd.
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub peer_auto_tls: bool,
    /// Only peers whose certificate has this common name may connect.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN")]
    pub peer_cert_allowed_cn: Option<String>,
    /// Only peers whose certificate names this host may connect.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME")]
    pub peer_cert_allowed_hostname: Option<String>,
}

/// The keys of etcd's `peer-transport-security` config-file block, as flag names.
pub const PEER_SECURITY_KEYS: [(&str, &str); 7] = [
    ("cert-file", "peer-cert-file"),
    ("key-file", "peer-key-file"),
    ("trusted-ca-file", "peer-trusted-ca-file"),
    ("client-cert-auth", "peer-client-cert-auth"),
    ("auto-tls", "peer-auto-tls"),
    ("allowed-cn", "peer-cert-allowed-cn"),
    ("allowed-hostname", "peer-cert-allowed-hostname"),
];

/// The keys of etcd's `client-transport-security` config-file block, as flag names.
pub const CLIENT_SECURITY_KEYS: [(&str, &str); 5] = [
    ("cert-file", "cert-file"),
    ("key-file", "key-file"),
    ("trusted-ca-file", "trusted-ca-file"),
    ("client-cert-auth", "client-cert-auth"),
    ("auto-tls", "auto-tls"),
];

/// One side's flags, named for its messages.
struct Side<'a> {
    prefix: &'static str,
    cert_file: &'a Option<PathBuf>,
    key_file: &'a Option<PathBuf>,
    trusted_ca_file: &'a Option<PathBuf>,
    client_cert_auth: bool,
    auto_tls: bool,
    fixtures: &'static str,
}

impl TlsFlags {
    fn policy(&self) -> Result<TlsPolicy, String> {
        let policy = TlsPolicy {
            min_version: self.tls_min_version.clone(),
            max_version: self.tls_max_version.clone(),
            cipher_suites: split(&self.cipher_suites),
        };
        policy.versions().map_err(|e| e.to_string())?;
        policy.provider().map_err(|e| e.to_string())?;
        Ok(policy)
    }

    /// The client port's TLS, if a client URL is https; `https_hosts` are those URLs' hosts.
    pub fn client_security(
        &self,
        https_hosts: &[String],
        data_dir: &Path,
    ) -> Result<Option<TransportSecurity>, String> {
        let policy = self.policy()?;
        if https_hosts.is_empty() {
            return Ok(None);
        }
        let side = Side {
            prefix: "--",
            cert_file: &self.cert_file,
            key_file: &self.key_file,
            trusted_ca_file: &self.trusted_ca_file,
            client_cert_auth: self.client_cert_auth,
            auto_tls: self.auto_tls,
            fixtures: "client",
        };
        self.security(&side, https_hosts, data_dir, policy)
            .map(Some)
    }

    /// TLS between members, if a peer URL is https or a peer certificate is given (to dial
    /// members whose URLs are https); `hosts` are this member's peer URL hosts.
    pub fn peer_security(
        &self,
        any_https: bool,
        hosts: &[String],
        data_dir: &Path,
    ) -> Result<Option<PeerSecurity>, String> {
        let policy = self.policy()?;
        let configured = self.peer_cert_file.is_some() || self.peer_key_file.is_some();
        if !any_https && !configured {
            return Ok(None);
        }
        let side = Side {
            prefix: "--peer-",
            cert_file: &self.peer_cert_file,
            key_file: &self.peer_key_file,
            trusted_ca_file: &self.peer_trusted_ca_file,
            client_cert_auth: self.peer_client_cert_auth,
            auto_tls: self.peer_auto_tls,
            fixtures: "peer",
        };
        let transport = self.security(&side, hosts, data_dir, policy)?;
        let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        Ok(Some(PeerSecurity {
            transport,
            allowed_cn: non_empty(&self.peer_cert_allowed_cn),
            allowed_hostname: non_empty(&self.peer_cert_allowed_hostname),
        }))
    }

    fn security(
        &self,
        side: &Side<'_>,
        hosts: &[String],
        data_dir: &Path,
        policy: TlsPolicy,
    ) -> Result<TransportSecurity, String> {
        let p = side.prefix;
        let cert = match (side.cert_file, side.key_file) {
            (Some(cert), Some(key)) => CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (Some(_), None) | (None, Some(_)) => {
                return Err(format!("{p}cert-file and {p}key-file go together"))
            }
            (None, None) if side.auto_tls => CertSource::Auto {
                dir: data_dir.join("fixtures").join(side.fixtures),
                hosts: hosts.to_vec(),
                validity_years: self.self_signed_cert_validity,
            },
            (None, None) => {
                return Err(format!(
                    "TLS key/cert ({p}cert-file, {p}key-file) must be provided for https {} \
                     URLs (or {p}auto-tls)",
                    side.fixtures
                ))
            }
        };
        if side.client_cert_auth && side.trusted_ca_file.is_none() {
            return Err(format!(
                "{p}client-cert-auth needs {p}trusted-ca-file, the CA that signs the \
                 certificates to accept"
            ));
        }
        Ok(TransportSecurity {
            cert,
            trusted_ca_file: side.trusted_ca_file.clone(),
            client_cert_auth: side.client_cert_auth,
            policy,
        })
    }
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> TlsFlags {
        TlsFlags {
            tls_min_version: "TLS1.2".into(),
            self_signed_cert_validity: 1,
            ..TlsFlags::default()
        }
    }

    #[test]
    fn plain_http_needs_no_certificate() {
        assert_eq!(flags().client_security(&[], Path::new("d")), Ok(None));
    }

    #[test]
    fn https_needs_a_certificate_or_auto_tls() {
        let hosts = vec!["127.0.0.1".to_string()];
        let error = flags().client_security(&hosts, Path::new("d")).unwrap_err();
        assert!(error.contains("--cert-file, --key-file"), "{error}");
        let auto = TlsFlags {
            auto_tls: true,
            ..flags()
        };
        let security = auto
            .client_security(&hosts, Path::new("d"))
            .unwrap()
            .unwrap();
        assert_eq!(
            security.cert,
            CertSource::Auto {
                dir: PathBuf::from("d/fixtures/client"),
                hosts,
                validity_years: 1
            }
        );
    }

    #[test]
    fn half_a_pair_and_client_auth_without_a_ca_are_refused() {
        let hosts = vec!["h".to_string()];
        let half = TlsFlags {
            cert_file: Some("c.pem".into()),
            ..flags()
        };
        assert!(half
            .client_security(&hosts, Path::new("d"))
            .unwrap_err()
            .contains("go together"));
        let no_ca = TlsFlags {
            cert_file: Some("c.pem".into()),
            key_file: Some("k.pem".into()),
            client_cert_auth: true,
            ..flags()
        };
        assert!(no_ca
            .client_security(&hosts, Path::new("d"))
            .unwrap_err()
            .contains("--trusted-ca-file"));
    }

    #[test]
    fn a_bad_policy_is_refused_even_without_https() {
        let bad = TlsFlags {
            cipher_suites: "TLS_NOPE".into(),
            ..flags()
        };
        assert!(bad
            .client_security(&[], Path::new("d"))
            .unwrap_err()
            .contains("TLS_NOPE"));
    }
}
