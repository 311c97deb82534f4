//! The plain HTTP endpoints served on the client port next to gRPC: `/health` and `/version` as
//! etcd answers them, and `/metrics` in Prometheus' text format.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::handle::DriverHandle;
use crate::node::ClientRequest;
use crate::proto::etcdserverpb as pb;

/// The server version `/version` reports: etcd's API level, marked as stet.
pub const SERVER_VERSION: &str = "3.4.0-stet";
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

/// Healthy when the member knows a leader and a linearizable read goes through raft in time.
async fn health(State(driver): State<DriverHandle>) -> impl IntoResponse {
    let reason = if driver.status().leader.is_none() {
        Some("RAFT NO LEADER")
    } else {
        let read = ClientRequest::Range(pb::RangeRequest {
            key: b"health".to_vec(),
            limit: 1,
            ..Default::default()
        });
        match tokio::time::timeout(HEALTH_READ_TIMEOUT, driver.call_local(read)).await {
            Ok(Ok(_)) => None,
            Ok(Err(_)) | Err(_) => Some("RAFT QUORUM READ FAILED"),
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

async fn version() -> impl IntoResponse {
    json(
        StatusCode::OK,
        format!(
            r#"{{"etcdserver":"{SERVER_VERSION}","etcdcluster":"{}"}}"#,
            super::grpc::CLUSTER_VERSION
        ),
    )
}

async fn metrics(State(driver): State<DriverHandle>) -> impl IntoResponse {
    let body = driver.metrics().render(&driver.status());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
}
