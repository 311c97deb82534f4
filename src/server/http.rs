//! The plain HTTP endpoints served on the client port next to gRPC: `/health` and `/version` as
//! etcd answers them, and `/metrics` in Prometheus' text format.

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::driver::DriverHandle;
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
        match tokio::time::timeout(HEALTH_READ_TIMEOUT, driver.call(read)).await {
            Ok(Ok(_)) => None,
            Ok(Err(_)) | Err(_) => Some("RAFT QUORUM READ FAILED"),
        }
    };
    match reason {
        None => json(StatusCode::OK, r#"{"health":"true"}"#.to_string()),
        Some(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(r#"{{"health":"false","reason":"{reason}"}}"#),
        ),
    }
}

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
    let status = driver.status();
    let mut body = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: String| {
        let _ = writeln!(body, "# HELP {name} {help}");
        let _ = writeln!(body, "# TYPE {name} {kind}");
        let _ = writeln!(body, "{name} {value}");
    };
    gauge(
        "etcd_server_has_leader",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        "gauge",
        u8::from(status.leader.is_some()).to_string(),
    );
    gauge(
        "etcd_server_is_leader",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        "gauge",
        u8::from(status.is_leader).to_string(),
    );
    gauge(
        "etcd_server_leader_changes_seen_total",
        "The number of leader changes seen.",
        "counter",
        status.leader_changes.to_string(),
    );
    gauge(
        "etcd_server_proposals_committed_total",
        "The total number of consensus proposals committed.",
        "gauge",
        status.commit_index.to_string(),
    );
    gauge(
        "etcd_server_proposals_applied_total",
        "The total number of consensus proposals applied.",
        "gauge",
        status.applied_index.to_string(),
    );
    gauge(
        "etcd_debugging_mvcc_keys_total",
        "Total number of keys.",
        "gauge",
        status.key_count.to_string(),
    );
    gauge(
        "etcd_debugging_mvcc_current_revision",
        "The current revision of store.",
        "gauge",
        status.revision.to_string(),
    );
    gauge(
        "stet_raft_term",
        "The raft term this member is in.",
        "gauge",
        status.term.to_string(),
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
}
