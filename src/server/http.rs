//! The plain HTTP endpoints served on the client port next to gRPC: `/health` and `/version` as
//! etcd answers them, and `/metrics` in Prometheus' text format.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::handle::DriverHandle;
use crate::auth::AuthError;
use crate::node::{ClientError, ClientRequest};
use crate::proto::etcdserverpb as pb;

/// How long `/health` waits for a linearizable read through raft.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router(driver: DriverHandle) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(driver)
}

/// What answers a path no route serves: a gRPC request gets gRPC's `UNIMPLEMENTED`, as from any
/// gRPC server; anything else etcd's plain `404 page not found` (etcd 3.4 serves no `/v2/keys`
/// unless `--enable-v2`: operators' scripts read that 404, not an empty 200).
pub async fn not_found(headers: axum::http::HeaderMap) -> axum::response::Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented("").into_http();
    }
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

fn json(status: StatusCode, body: String) -> impl IntoResponse {
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

/// The alarm `/health` reports unhealthy for: the first raised one not named by an `exclude`
/// query parameter (etcd's `/health?exclude=NOSPACE`), as `ALARM <TYPE>`.
fn alarm_reason(alarms: &[String], query: Option<&str>) -> Option<String> {
    let excluded: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("exclude="))
        .collect();
    alarms
        .iter()
        .filter_map(|alarm| alarm.split("alarm:").nth(1).map(str::trim))
        .find(|kind| !excluded.contains(kind))
        .map(|kind| format!("ALARM {kind}"))
}

/// Healthy when no alarm is raised (but those the query excludes), the member knows a leader,
/// and a linearizable read goes through raft in time — etcd's checks, in its order.
async fn health(
    State(driver): State<DriverHandle>,
    RawQuery(query): RawQuery,
) -> impl IntoResponse {
    let status = driver.status();
    let reason = if let Some(alarm) = alarm_reason(&status.alarms, query.as_deref()) {
        Some(alarm)
    } else if status.leader.is_none() {
        Some("RAFT NO LEADER".to_string())
    } else {
        let read = ClientRequest::Range(pb::RangeRequest {
            key: b"health".to_vec(),
            limit: 1,
            ..Default::default()
        });
        match tokio::time::timeout(HEALTH_READ_TIMEOUT, driver.call_local(read, None)).await {
            Ok(Ok(_)) => None,
            // With authentication enabled the anonymous read is refused, but only after raft
            // served it (etcd counts these as healthy too).
            Ok(Err(ClientError::Auth(AuthError::UserEmpty | AuthError::PermissionDenied))) => None,
            Ok(Err(_)) | Err(_) => Some("RAFT QUORUM READ FAILED".to_string()),
        }
    };
    let (status, body) = match reason {
        None => (StatusCode::OK, r#"{"health":"true"}"#.to_string()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(r#"{{"health":"false","reason":"{reason}"}}"#),
        ),
    };
    // Beside etcd's answer: the cluster this member is in, and its wall clock when it answered,
    // for `stetutl doctor` (a data directory from another cluster, clock skew).
    let now_micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros());
    let cluster_id = format!("{:x}", driver.status().cluster_id);
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::HeaderName::from_static(CLUSTER_ID_HEADER),
                cluster_id,
            ),
            (
                header::HeaderName::from_static(CLOCK_HEADER),
                now_micros.to_string(),
            ),
        ],
        body,
    )
}

/// The header `/health` names the member's cluster in (etcd's name for it on v2 answers).
pub const CLUSTER_ID_HEADER: &str = "x-etcd-cluster-id";
/// The header `/health` gives the member's wall clock in, in microseconds since the Unix epoch.
pub const CLOCK_HEADER: &str = "x-stet-clock-micros";

/// etcd's `/version` (the etcd release whose API stet implements, the cluster version), with
/// stet's own version beside them.
async fn version() -> impl IntoResponse {
    use super::version::{CLUSTER_VERSION, ETCD_API_VERSION, STET_VERSION};
    json(
        StatusCode::OK,
        format!(
            r#"{{"etcdserver":"{ETCD_API_VERSION}","etcdcluster":"{CLUSTER_VERSION}","stet":"{STET_VERSION}"}}"#
        ),
    )
}

async fn metrics(State(driver): State<DriverHandle>) -> impl IntoResponse {
    let body = driver.metrics().render(&driver.status());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::alarm_reason;

    #[test]
    fn a_raised_alarm_is_unhealthy_unless_excluded() {
        let alarms = vec![
            "memberID:7 alarm:NOSPACE ".to_string(),
            "memberID:9 alarm:CORRUPT ".to_string(),
        ];
        assert_eq!(alarm_reason(&[], None), None);
        assert_eq!(
            alarm_reason(&alarms, None).as_deref(),
            Some("ALARM NOSPACE")
        );
        assert_eq!(
            alarm_reason(&alarms, Some("exclude=NOSPACE")).as_deref(),
            Some("ALARM CORRUPT")
        );
        assert_eq!(
            alarm_reason(&alarms, Some("exclude=NOSPACE&exclude=CORRUPT")),
            None
        );
        assert_eq!(
            alarm_reason(&alarms[..1], Some("serializable=true&exclude=NOSPACE")),
            None
        );
    }
}
