//! etcd v2's keys API on the client port (`/v2/keys/...`): GET (a key, or a directory's
//! listing), PUT (set, with `ttl`, `prevExist`, `prevValue`, `prevIndex`) and DELETE (with
//! `dir`, `recursive` and the same conditions), answered with etcd v2's bodies, status codes and
//! `X-Etcd-Index` / `X-Raft-Index` / `X-Raft-Term` / `X-Etcd-Cluster-Id` headers, so
//! `ETCDCTL_API=2 etcdctl get/set/mk/update/rm/ls` and operators' `curl` checks work. Keys live
//! in the v3 store (see `ops`); each request becomes v3 requests sent through the same router
//! as gRPC's (leader-only ones forwarded). Not served: watches (`wait=true`), in-order POST,
//! empty directories, `refresh`.

mod form;
mod ops;
mod reply;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use super::route::Router;
use crate::node::{ClientError, ClientRequest, ClientResponse};
use crate::proto::etcdserverpb::{self as pb, request_op, response_op};
use crate::proto::mvccpb::KeyValue;
use form::Params;
use ops::{Conditions, Op};
use reply::{Action, Node, V2Error};

/// The path prefix the keys API serves.
const PREFIX: &str = "/v2/keys";

pub fn router(requests: Router) -> axum::Router {
    axum::Router::new()
        .route(PREFIX, any(serve))
        .route("/v2/keys/", any(serve))
        .route("/v2/keys/{*path}", any(serve))
        .with_state(requests)
}

async fn serve(
    State(requests): State<Router>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let key = form::clean_key(&form::decode_path(path));
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    // etcd reads form bodies only; a JSON body sets nothing.
    let body = if is_json {
        String::new()
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let params = Params::new(&body, query.as_deref().unwrap_or_default());
    let answer = match ops::parse(method.as_str(), key, &params) {
        Ok(op) => execute(&requests, op).await,
        Err(error) => Err(error),
    };
    respond(&requests, answer)
}

fn respond(requests: &Router, answer: Result<Action, V2Error>) -> Response {
    let status = requests.driver().status();
    let mut response = match &answer {
        Ok(action) => {
            let code = if action.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (code, action.body()).into_response()
        }
        Err(error) => {
            let code =
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, error.body()).into_response()
        }
    };
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("content-type", "application/json".to_string());
    set("x-etcd-cluster-id", format!("{:x}", status.cluster_id));
    match &answer {
        Ok(action) => {
            set("x-etcd-index", action.index.to_string());
            set("x-raft-index", status.applied_index.to_string());
            set("x-raft-term", status.term.to_string());
        }
        Err(error) => set("x-etcd-index", error.index.to_string()),
    }
    response
}

async fn execute(requests: &Router, op: Op) -> Result<Action, V2Error> {
    match op {
        Op::Get {
            key,
            recursive,
            quorum,
        } => get(requests, key, recursive, quorum).await,
        Op::Put {
            key,
            value,
            ttl_seconds,
            conditions,
        } => put(requests, key, value, ttl_seconds, conditions).await,
        Op::Delete {
            key,
            dir,
            recursive,
            conditions,
        } => delete(requests, key, dir, recursive, conditions).await,
    }
}

/// Sends one v3 request; a failure is etcd v2's internal error at this member's revision.
async fn call(requests: &Router, request: ClientRequest) -> Result<ClientResponse, V2Error> {
    requests.call(request, None).await.map_err(|error| {
        let revision = requests.driver().status().revision;
        let cause = match error {
            ClientError::NoLeader => "etcdserver: no leader".to_string(),
            other => other.to_string(),
        };
        V2Error::new(300, cause, revision)
    })
}

fn unexpected(requests: &Router) -> V2Error {
    V2Error::new(
        300,
        "unexpected response",
        requests.driver().status().revision,
    )
}

async fn range(requests: &Router, request: pb::RangeRequest) -> Result<pb::RangeResponse, V2Error> {
    match call(requests, ClientRequest::Range(request)).await? {
        ClientResponse::Range(response) => Ok(response),
        _ => Err(unexpected(requests)),
    }
}

async fn txn(requests: &Router, request: pb::TxnRequest) -> Result<pb::TxnResponse, V2Error> {
    match call(requests, ClientRequest::Txn(request)).await? {
        ClientResponse::Txn(response) => Ok(response),
        _ => Err(unexpected(requests)),
    }
}

fn revision(header: Option<&pb::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision)
}

async fn get(
    requests: &Router,
    key: String,
    recursive: bool,
    quorum: bool,
) -> Result<Action, V2Error> {
    let serializable = !quorum;
    if key != "/" {
        let request = pb::RangeRequest {
            key: key.clone().into_bytes(),
            serializable,
            ..Default::default()
        };
        let found = range(requests, request).await?;
        if let Some(kv) = found.kvs.first() {
            let mut node = ops::file_node(kv);
            add_ttl(requests, kv.lease, &mut node).await;
            return Ok(Action {
                action: "get",
                node,
                prev_node: None,
                created: false,
                index: revision(found.header.as_ref()),
            });
        }
    }
    let (start, end) = ops::children_range(&key);
    let request = pb::RangeRequest {
        key: start,
        range_end: end,
        serializable,
        limit: ops::MAX_LISTED_KEYS + 1,
        ..Default::default()
    };
    let listed = range(requests, request).await?;
    let index = revision(listed.header.as_ref());
    if listed.kvs.len() as i64 > ops::MAX_LISTED_KEYS {
        let cause = format!(
            "{key} holds over {} keys: list it with the v3 API",
            ops::MAX_LISTED_KEYS
        );
        return Err(V2Error::new(209, cause, index));
    }
    if listed.kvs.is_empty() && key != "/" {
        return Err(V2Error::new(100, key, index));
    }
    let kvs: Vec<&KeyValue> = listed.kvs.iter().collect();
    Ok(Action {
        action: "get",
        node: ops::dir_node(&key, &kvs, recursive),
        prev_node: None,
        created: false,
        index,
    })
}

/// Adds the remaining TTL and the expiry time of `lease` (when the key has one) to `node`.
async fn add_ttl(requests: &Router, lease: i64, node: &mut Node) {
    if lease == 0 {
        return;
    }
    let request = ClientRequest::LeaseTimeToLive(pb::LeaseTimeToLiveRequest {
        id: lease,
        keys: false,
    });
    if let Ok(ClientResponse::LeaseTimeToLive(ttl)) = requests.call(request, None).await {
        if ttl.ttl > 0 {
            set_ttl(node, ttl.ttl);
        }
    }
}

fn set_ttl(node: &mut Node, ttl_seconds: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let expires = now + std::time::Duration::from_secs(ttl_seconds.unsigned_abs());
    node.ttl = Some(ttl_seconds);
    node.expiration = Some(reply::rfc3339_nanos(expires));
}

async fn put(
    requests: &Router,
    key: String,
    value: String,
    ttl_seconds: Option<i64>,
    conditions: Conditions,
) -> Result<Action, V2Error> {
    let (lease, granted_ttl) = match ttl_seconds {
        Some(ttl) => grant(requests, ttl).await?,
        None => (0, 0),
    };
    let put = pb::PutRequest {
        key: key.clone().into_bytes(),
        value: value.clone().into_bytes(),
        lease,
        prev_kv: true,
        ..Default::default()
    };
    let txn = pb::TxnRequest {
        compare: ops::compares(&key, &conditions),
        success: vec![pb::RequestOp {
            request: Some(request_op::Request::RequestPut(put)),
        }],
        failure: vec![ops::read_op(&key)],
    };
    let done = txn_or_failure(requests, &key, &conditions, txn).await;
    let done = match done {
        Ok(done) => done,
        Err(error) => {
            if lease != 0 {
                let revoke = pb::LeaseRevokeRequest { id: lease };
                let _ = requests
                    .call(ClientRequest::LeaseRevoke(revoke), None)
                    .await;
            }
            return Err(error);
        }
    };
    let prev = match done.responses.first().and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponsePut(put)) => put.prev_kv.clone(),
        _ => None,
    };
    let index = revision(done.header.as_ref());
    let mut action = ops::put_action(&key, &value, &conditions, index, prev.as_ref());
    if granted_ttl > 0 {
        set_ttl(&mut action.node, granted_ttl);
    }
    Ok(action)
}

/// A lease for a key with a TTL: its ID and the TTL granted.
async fn grant(requests: &Router, ttl_seconds: i64) -> Result<(i64, i64), V2Error> {
    let request = ClientRequest::LeaseGrant(pb::LeaseGrantRequest {
        ttl: ttl_seconds,
        id: 0,
    });
    match call(requests, request).await? {
        ClientResponse::LeaseGrant(granted) => Ok((granted.id, granted.ttl)),
        _ => Err(unexpected(requests)),
    }
}

/// Runs a txn whose failure branch reads the key; a failed compare becomes etcd v2's error.
async fn txn_or_failure(
    requests: &Router,
    key: &str,
    conditions: &Conditions,
    request: pb::TxnRequest,
) -> Result<pb::TxnResponse, V2Error> {
    let done = txn(requests, request).await?;
    if done.succeeded {
        return Ok(done);
    }
    let current = match done.responses.first().and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponseRange(found)) => found.kvs.first().cloned(),
        _ => None,
    };
    let index = revision(done.header.as_ref());
    Err(ops::compare_failure(
        key,
        conditions,
        current.as_ref(),
        index,
    ))
}

async fn delete(
    requests: &Router,
    key: String,
    dir: bool,
    recursive: bool,
    conditions: Conditions,
) -> Result<Action, V2Error> {
    let txn = ops::delete_txn(&key, recursive, &conditions);
    let done = txn_or_failure(requests, &key, &conditions, txn).await?;
    let index = revision(done.header.as_ref());
    if let Some(action) = ops::delete_action(&key, &conditions, &done, index) {
        return Ok(action);
    }
    // Nothing was deleted: a directory needs `recursive`, else the key does not exist.
    let (start, end) = ops::children_range(&key);
    let request = pb::RangeRequest {
        key: start,
        range_end: end,
        count_only: true,
        ..Default::default()
    };
    let below = range(requests, request).await?;
    match below.count {
        0 => Err(V2Error::new(100, key, index)),
        _ if dir => Err(V2Error::new(108, key, index)),
        _ => Err(V2Error::new(102, key, index)),
    }
}

#[cfg(test)]
mod tests;
