//! Certificates made in the tests with rcgen: a CA that signs servers' and clients' certificates,
//! and PEM files written where a member's flags or etcdctl read them.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA that signs certificates for a test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's own certificate (PEM), for `--trusted-ca-file` and clients.
    pub pem: String,
}

/// A certificate and its key, written as files.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate named `common_name` for `hosts` (none for a client): (cert PEM, key PEM).
    pub fn sign(&self, common_name: &str, hosts: &[&str]) -> (String, String) {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(hosts).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    /// Signs a certificate and writes it and its key as `dir/<file>.pem` and `dir/<file>-key.pem`.
    pub fn sign_to(&self, dir: &Path, file: &str, common_name: &str, hosts: &[&str]) -> CertFiles {
        let (cert, key) = self.sign(common_name, hosts);
        CertFiles {
            cert: write(dir, &format!("{file}.pem"), &cert),
            key: write(dir, &format!("{file}-key.pem"), &key),
        }
    }
}

/// Writes `text` (a PEM file) as `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a PEM file");
    path
}

/// A path as the UTF-8 text a flag takes.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}
