//! etcd v2's members API on the client port, with its JSON shapes and status codes:
//! `GET /v2/members`, `GET /v2/members/leader`, `POST /v2/members` (add, by peer URLs),
//! `PUT /v2/members/<id>` (update peer URLs) and `DELETE /v2/members/<id>` (remove). Each goes
//! through the same requests as the v3 Cluster service.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::handle::DriverHandle;
use crate::member::MemberError;
use crate::node::{ClientError, ClientRequest, ClientResponse};
use crate::proto::etcdserverpb as pb;

pub fn router(driver: DriverHandle) -> Router {
    Router::new()
        .route("/v2/members", get(list).post(add))
        .route("/v2/members/leader", get(leader))
        .route(
            "/v2/members/{id}",
            axum::routing::put(update).delete(remove),
        )
        .with_state(driver)
}

/// A member as v2 shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct MemberJson {
    id: String,
    name: String,
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    client_urls: Vec<String>,
}

impl From<&pb::Member> for MemberJson {
    fn from(m: &pb::Member) -> Self {
        MemberJson {
            id: format!("{:x}", m.id),
            name: m.name.clone(),
            peer_urls: m.peer_ur_ls.clone(),
            client_urls: m.client_ur_ls.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct MembersJson {
    members: Vec<MemberJson>,
}

/// The body of POST and PUT.
#[derive(Debug, Deserialize)]
struct PeerUrlsJson {
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn message(status: StatusCode, text: &str) -> Response {
    json(status, serde_json::json!({ "message": text }).to_string())
}

/// A failed v2 request: its status code and message.
#[derive(Debug)]
struct V2Error(StatusCode, String);

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        message(self.0, &self.1)
    }
}

/// etcd's status code for each membership error.
fn error_response(error: &ClientError, id: Option<u64>) -> V2Error {
    let id = id.map(|id| format!("{id:x}")).unwrap_or_default();
    match error {
        ClientError::Member(MemberError::IdNotFound) => {
            V2Error(StatusCode::NOT_FOUND, format!("No such member: {id}"))
        }
        ClientError::Member(MemberError::IdRemoved) => V2Error(
            StatusCode::GONE,
            format!("Member permanently removed: {id}"),
        ),
        ClientError::Member(MemberError::IdExists | MemberError::PeerUrlExists) => {
            V2Error(StatusCode::CONFLICT, error.to_string())
        }
        ClientError::Member(MemberError::InvalidMember) => {
            V2Error(StatusCode::BAD_REQUEST, error.to_string())
        }
        ClientError::NoLeader | ClientError::Timeout | ClientError::Stopped => {
            V2Error(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        }
        _ => V2Error(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

async fn members(driver: &DriverHandle) -> Result<Vec<pb::Member>, V2Error> {
    match driver
        .call_local(
            ClientRequest::MemberList(pb::MemberListRequest::default()),
            None,
        )
        .await
    {
        Ok(ClientResponse::MemberList(list)) => Ok(list.members),
        Ok(_) => Err(V2Error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected response".to_string(),
        )),
        Err(error) => Err(error_response(&error, None)),
    }
}

async fn list(State(driver): State<DriverHandle>) -> Response {
    match members(&driver).await {
        Ok(members) => {
            let body = MembersJson {
                members: members.iter().map(MemberJson::from).collect(),
            };
            json(
                StatusCode::OK,
                serde_json::to_string(&body).unwrap_or_default(),
            )
        }
        Err(error) => error.into_response(),
    }
}

async fn leader(State(driver): State<DriverHandle>) -> Response {
    let Some(leader) = driver.status().leader else {
        return message(StatusCode::SERVICE_UNAVAILABLE, "During election");
    };
    match members(&driver).await {
        Ok(members) => match members.iter().find(|m| m.id == leader) {
            Some(member) => json(
                StatusCode::OK,
                serde_json::to_string(&MemberJson::from(member)).unwrap_or_default(),
            ),
            None => message(StatusCode::SERVICE_UNAVAILABLE, "During election"),
        },
        Err(error) => error.into_response(),
    }
}

/// Parses a POST/PUT body, as etcd does: JSON only, with at least one valid peer URL.
fn peer_urls(headers: &HeaderMap, body: &[u8]) -> Result<Vec<String>, V2Error> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(V2Error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Bad Content-Type".to_string(),
        ));
    }
    let parsed: PeerUrlsJson = serde_json::from_slice(body)
        .map_err(|e| V2Error(StatusCode::BAD_REQUEST, e.to_string()))?;
    if parsed.peer_urls.is_empty()
        || parsed
            .peer_urls
            .iter()
            .any(|u| super::peer::conn::url_address(u).is_err())
    {
        return Err(V2Error(
            StatusCode::BAD_REQUEST,
            "peerURLs must be a non-empty list of http://host:port URLs".to_string(),
        ));
    }
    Ok(parsed.peer_urls)
}

async fn add(State(driver): State<DriverHandle>, headers: HeaderMap, body: Bytes) -> Response {
    let urls = match peer_urls(&headers, &body) {
        Ok(urls) => urls,
        Err(error) => return error.into_response(),
    };
    let request = ClientRequest::MemberAdd(pb::MemberAddRequest {
        peer_ur_ls: urls,
        is_learner: false,
    });
    match driver.call_local(request, None).await {
        Ok(ClientResponse::MemberAdd(added)) => match added.member {
            Some(member) => json(
                StatusCode::CREATED,
                serde_json::to_string(&MemberJson::from(&member)).unwrap_or_default(),
            ),
            None => message(StatusCode::INTERNAL_SERVER_ERROR, "no member in the answer"),
        },
        Ok(_) => message(StatusCode::INTERNAL_SERVER_ERROR, "unexpected response"),
        Err(error) => error_response(&error, None).into_response(),
    }
}

fn parse_id(id: &str) -> Result<u64, V2Error> {
    u64::from_str_radix(id, 16)
        .map_err(|_| V2Error(StatusCode::NOT_FOUND, format!("No such member: {id}")))
}

async fn update(
    State(driver): State<DriverHandle>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(error) => return error.into_response(),
    };
    let urls = match peer_urls(&headers, &body) {
        Ok(urls) => urls,
        Err(error) => return error.into_response(),
    };
    let request = ClientRequest::MemberUpdate(pb::MemberUpdateRequest {
        id,
        peer_ur_ls: urls,
    });
    match driver.call_local(request, None).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error_response(&error, Some(id)).into_response(),
    }
}

async fn remove(State(driver): State<DriverHandle>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(error) => return error.into_response(),
    };
    match driver
        .call_local(
            ClientRequest::MemberRemove(pb::MemberRemoveRequest { id }),
            None,
        )
        .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error_response(&error, Some(id)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_serialize_with_etcds_v2_field_names() {
        let member = pb::Member {
            id: 0x8e9e05c52164694d,
            name: "default".into(),
            peer_ur_ls: vec!["http://localhost:2380".into()],
            client_ur_ls: vec!["http://localhost:2379".into()],
            is_learner: false,
        };
        let body = MembersJson {
            members: vec![MemberJson::from(&member)],
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"members":[{"id":"8e9e05c52164694d","name":"default","peerURLs":["http://localhost:2380"],"clientURLs":["http://localhost:2379"]}]}"#
        );
    }

    #[test]
    fn bodies_must_be_json_with_peer_urls() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            peer_urls(&headers, b"{}").unwrap_err().0,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(
            peer_urls(&headers, b"not json").unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            peer_urls(&headers, br#"{"peerURLs":[]}"#).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            peer_urls(&headers, br#"{"peerURLs":["http://10.0.0.1:2380"]}"#).unwrap(),
            vec!["http://10.0.0.1:2380".to_string()]
        );
    }

    #[test]
    fn membership_errors_get_etcds_status_codes() {
        let code = |e: MemberError| error_response(&ClientError::Member(e), Some(1)).0;
        assert_eq!(code(MemberError::IdNotFound), StatusCode::NOT_FOUND);
        assert_eq!(code(MemberError::IdRemoved), StatusCode::GONE);
        assert_eq!(code(MemberError::PeerUrlExists), StatusCode::CONFLICT);
    }
}
