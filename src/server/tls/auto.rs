//! `--auto-tls`: a self-signed certificate and key for the hosts a member listens on, made once
//! and kept in the data directory (`fixtures/client/cert.pem` and `key.pem`, as etcd keeps
//! them), so a restart serves the same certificate. Meant for tests and trusted networks:
//! clients cannot verify it (`etcdctl --insecure-skip-tls-verify`).

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use super::TlsError;

/// The certificate and key in `dir`, made now if missing.
pub fn ensure(
    dir: &Path,
    hosts: &[String],
    validity_years: u32,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let failed = |why: String| TlsError::Auto {
        dir: dir.display().to_string(),
        why,
    };
    let (cert_pem, key_pem) =
        self_signed(hosts, validity_years).map_err(|e| failed(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    write_private(&key, key_pem.as_bytes()).map_err(|e| failed(e.to_string()))?;
    std::fs::write(&cert, cert_pem).map_err(|e| failed(e.to_string()))?;
    Ok((cert, key))
}

/// A certificate (PEM) valid for `hosts` from today for `validity_years`, and its key (PEM).
pub fn self_signed(
    hosts: &[String],
    validity_years: u32,
) -> Result<(String, String), rcgen::Error> {
    let mut names: Vec<String> = hosts.to_vec();
    if names.is_empty() {
        names.push("localhost".into());
    }
    let mut params = CertificateParams::new(names)?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationName, "stet");
    subject.push(DnType::CommonName, "stet self-signed");
    params.distinguished_name = subject;
    let (year, month, day) = civil_date_today();
    params.not_before = rcgen::date_time_ymd(year, month, day);
    let years = i32::try_from(validity_years.max(1)).unwrap_or(1);
    // The 29th of February does not come back every year: end on the 28th then.
    params.not_after = rcgen::date_time_ymd(year + years, month, day.min(28));
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// Today's date (UTC) as year, month, day.
fn civil_date_today() -> (i32, u8, u8) {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil_date(i64::try_from(seconds / 86_400).unwrap_or(0))
}

/// The date `days` after 1970-01-01 in rcgen's types.
fn civil_date(days: i64) -> (i32, u8, u8) {
    let (year, month, day) = crate::time::civil_from_days(days);
    let narrow = |n: u32| u8::try_from(n).unwrap_or(1);
    (
        i32::try_from(year).unwrap_or(1970),
        narrow(month),
        narrow(day),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right_across_leap_years() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(59), (1970, 3, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_791), (2026, 12, 4));
    }

    #[test]
    fn a_pair_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("stet-auto-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let (cert, key) = ensure(&dir, &hosts, 1).expect("made");
        let first = std::fs::read(&cert).expect("cert");
        let provider = rustls::crypto::ring::default_provider();
        super::super::reload::load(&cert, &key, &provider).expect("the pair loads and matches");
        ensure(&dir, &hosts, 1).expect("kept");
        assert_eq!(std::fs::read(&cert).expect("cert"), first, "not made again");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).expect("key").permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is private");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
