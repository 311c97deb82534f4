//! The versions stet reports, and etcd 3.5's `Downgrade` answered for a server with nothing to
//! downgrade to. stet implements etcd's v3 API as of `ETCD_API_VERSION` and reports that as its
//! server version (`Status.version`, `/version`), because clients gate features on it
//! (kube-apiserver asks for RequestWatchProgress only from 3.5.13 on); stet's own version goes
//! beside it where etcd leaves room (`/version`, `--version`, the start-up log).

use tonic::Status;

use crate::proto::etcdserverpb::downgrade_request::DowngradeAction;

/// The etcd release whose v3 API stet implements, reported as the server version.
pub const ETCD_API_VERSION: &str = "3.5.13";
/// The cluster version, as etcd reports it (major.minor.0).
pub const CLUSTER_VERSION: &str = "3.5.0";
/// stet's own version.
pub const STET_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `Maintenance.Downgrade` answers. etcd validates the target's format first, then allows
/// only the previous minor version's storage format; stet has no earlier format to go back to,
/// so every well-formed target is refused as invalid, and there is never a job to cancel.
pub fn downgrade_refusal(action: Option<DowngradeAction>, target: &str) -> Status {
    match action {
        Some(DowngradeAction::Validate | DowngradeAction::Enable) if !is_semver(target) => {
            Status::invalid_argument("etcdserver: wrong downgrade target version format")
        }
        Some(DowngradeAction::Validate | DowngradeAction::Enable) => {
            Status::invalid_argument("etcdserver: invalid downgrade target version")
        }
        Some(DowngradeAction::Cancel) => {
            Status::failed_precondition("etcdserver: no inflight downgrade job")
        }
        None => Status::unknown("etcdserver: unknown method"),
    }
}

/// Whether `version` is `MAJOR.MINOR.PATCH`, optionally with a pre-release or build suffix.
fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_downgrade_is_refused_with_etcds_errors() {
        let validate = Some(DowngradeAction::Validate);
        let refused = downgrade_refusal(validate, "3.4.0");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(
            refused.message(),
            "etcdserver: invalid downgrade target version"
        );
        let enable = downgrade_refusal(Some(DowngradeAction::Enable), "3.5.0-rc.1");
        assert_eq!(
            enable.message(),
            "etcdserver: invalid downgrade target version"
        );
        for malformed in ["3.4", "not-semver", "", "3..0"] {
            let refused = downgrade_refusal(validate, malformed);
            assert_eq!(
                refused.message(),
                "etcdserver: wrong downgrade target version format",
                "{malformed}"
            );
        }
        let cancel = downgrade_refusal(Some(DowngradeAction::Cancel), "");
        assert_eq!(cancel.code(), Code::FailedPrecondition);
        assert_eq!(cancel.message(), "etcdserver: no inflight downgrade job");
        assert_eq!(downgrade_refusal(None, "3.4.0").code(), Code::Unknown);
    }
}
