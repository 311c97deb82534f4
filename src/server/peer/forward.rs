//! Requests only the leader can answer (lease keep-alive and time-to-live, lease list, learner
//! promotion), forwarded by a follower to the leader over a `Forward` peer connection, as etcd
//! forwards them. The follower keeps one connection per leader, multiplexing requests by id; the
//! leader answers each from its own driver and never forwards again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::conn::{dial, spawn_frame_writer, Identity};
use super::AddressBook;
use crate::auth::AuthInfo;
use crate::lease::LeaseError;
use crate::node::request::GrpcCode;
use crate::node::{ClientError, ClientRequest, ClientResponse};
use crate::peer_wire::{self, FrameKind};
use crate::proto::stetpeerpb::{self as peerpb, forward_reply, forward_request};
use crate::server::handle::DriverHandle;
use crate::server::status::to_status;

/// Forwarded requests waiting for the leader's answer on one connection; past it, requests are
/// refused with "too many requests" (answers or timeouts free places).
const MAX_WAITING: usize = 4096;

/// How long a forwarded request may take before the follower answers "request timed out".
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<peerpb::ForwardReply>>>>;

/// One open connection to a leader.
struct LeaderLink {
    requests: mpsc::Sender<peerpb::ForwardRequest>,
    waiting: Waiting,
}

/// The follower's side: sends leader-only requests to the leader.
#[derive(Clone)]
pub struct Forwarder {
    identity: Identity,
    addresses: AddressBook,
    links: Arc<Mutex<HashMap<u64, LeaderLink>>>,
    next_id: Arc<AtomicU64>,
}

/// A leader-only request as it travels to the leader (`None` for any other request).
fn to_wire(request: ClientRequest) -> Option<forward_request::Request> {
    use forward_request::Request as R;
    Some(match request {
        ClientRequest::LeaseKeepAlive(r) => R::LeaseKeepAlive(r),
        ClientRequest::LeaseTimeToLive(r) => R::LeaseTimeToLive(r),
        ClientRequest::LeaseLeases(r) => R::LeaseLeases(r),
        ClientRequest::MemberPromote(r) => R::MemberPromote(r),
        _ => return None,
    })
}

/// The request a forwarded one asks the leader's node.
fn from_wire(request: forward_request::Request) -> ClientRequest {
    use forward_request::Request as R;
    match request {
        R::LeaseKeepAlive(r) => ClientRequest::LeaseKeepAlive(r),
        R::LeaseTimeToLive(r) => ClientRequest::LeaseTimeToLive(r),
        R::LeaseLeases(r) => ClientRequest::LeaseLeases(r),
        R::MemberPromote(r) => ClientRequest::MemberPromote(r),
    }
}

impl Forwarder {
    pub fn new(identity: Identity, addresses: AddressBook) -> Self {
        Forwarder {
            identity,
            addresses,
            links: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Asks `leader` to answer `request`, a leader-only request (`ClientRequest::leader_only`).
    pub async fn forward(
        &self,
        leader: u64,
        request: ClientRequest,
        caller: Option<AuthInfo>,
    ) -> Result<ClientResponse, ClientError> {
        assert!(
            request.leader_only(),
            "only leader-only requests are forwarded"
        );
        let Some(request) = to_wire(request) else {
            return Err(ClientError::NoLeader);
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let sender = self.link(leader, id, reply).await?;
        let message = peerpb::ForwardRequest {
            id,
            request: Some(request),
            requester: caller.map(crate::proto::stetpb::Requester::from),
        };
        if sender.send(message).await.is_err() {
            return Err(ClientError::NoLeader);
        }
        match tokio::time::timeout(FORWARD_TIMEOUT, answer).await {
            Ok(Ok(reply)) => from_reply(reply),
            Ok(Err(_)) => Err(ClientError::NoLeader),
            Err(_) => {
                self.forget(leader, id);
                Err(ClientError::Timeout)
            }
        }
    }

    fn forget(&self, leader: u64, id: u64) {
        if let Ok(links) = self.links.lock() {
            if let Some(link) = links.get(&leader) {
                if let Ok(mut waiting) = link.waiting.lock() {
                    waiting.remove(&id);
                }
            }
        }
    }

    /// The open link to `leader` (dialing it if needed), with `reply` registered for `id`.
    async fn link(
        &self,
        leader: u64,
        id: u64,
        reply: oneshot::Sender<peerpb::ForwardReply>,
    ) -> Result<mpsc::Sender<peerpb::ForwardRequest>, ClientError> {
        let reply = match self.existing_link(leader, id, reply)? {
            Ok(requests) => return Ok(requests),
            Err(reply) => reply,
        };
        let stream = self.dial_leader(leader).await?;
        Ok(self.open_link(leader, stream, id, reply))
    }

    /// Registers `reply` on the open link to `leader`, if there is one (else hands it back).
    #[allow(clippy::type_complexity)]
    fn existing_link(
        &self,
        leader: u64,
        id: u64,
        reply: oneshot::Sender<peerpb::ForwardReply>,
    ) -> Result<
        Result<mpsc::Sender<peerpb::ForwardRequest>, oneshot::Sender<peerpb::ForwardReply>>,
        ClientError,
    > {
        let mut links = self.links.lock().map_err(|_| ClientError::Stopped)?;
        let Some(link) = links.get(&leader) else {
            return Ok(Err(reply));
        };
        if link.requests.is_closed() {
            links.remove(&leader);
            return Ok(Err(reply));
        }
        let mut waiting = link.waiting.lock().map_err(|_| ClientError::Stopped)?;
        // A bound on the table: a leader that stopped answering gets no more.
        if waiting.len() >= MAX_WAITING {
            return Err(ClientError::TooManyRequests);
        }
        waiting.insert(id, reply);
        Ok(Ok(link.requests.clone()))
    }

    /// Dials one of the leader's peer URLs for forwarding.
    async fn dial_leader(&self, leader: u64) -> Result<super::conn::FramedStream, ClientError> {
        for url in &self.addresses.urls(leader) {
            let dialed = dial(url, &self.identity, peerpb::Purpose::Forward, leader).await;
            if let Ok((stream, _)) = dialed {
                return Ok(stream);
            }
        }
        Err(ClientError::NoLeader)
    }

    /// Makes `stream` the link to `leader`, with `reply` registered for `id`: a writer task sends
    /// requests, a reader task hands each reply to whoever waits for it.
    fn open_link(
        &self,
        leader: u64,
        stream: super::conn::FramedStream,
        id: u64,
        reply: oneshot::Sender<peerpb::ForwardReply>,
    ) -> mpsc::Sender<peerpb::ForwardRequest> {
        let (mut reader, write) = stream.into_split();
        let (requests, _writer) =
            spawn_frame_writer::<peerpb::ForwardRequest>(write, FrameKind::ForwardRequest);
        let waiting: Waiting = Arc::new(Mutex::new(HashMap::from([(id, reply)])));
        let readers_waiting = waiting.clone();
        let links = self.links.clone();
        let ours = requests.clone();
        tokio::spawn(async move {
            while let Ok(frame) = reader.read_frame().await {
                let Ok(reply) = peer_wire::decode_message::<peerpb::ForwardReply>(
                    &frame,
                    FrameKind::ForwardReply,
                ) else {
                    break;
                };
                let sender = readers_waiting
                    .lock()
                    .ok()
                    .and_then(|mut waiting| waiting.remove(&reply.id));
                if let Some(sender) = sender {
                    let _ = sender.send(reply);
                }
            }
            // The connection is gone: whoever still waits hears "no leader" and may retry.
            if let Ok(mut waiting) = readers_waiting.lock() {
                waiting.clear();
            }
            if let Ok(mut links) = links.lock() {
                // Only this link: another may have replaced it meanwhile.
                if links
                    .get(&leader)
                    .is_some_and(|link| link.requests.same_channel(&ours))
                {
                    links.remove(&leader);
                }
            }
        });
        if let Ok(mut links) = self.links.lock() {
            let link = LeaderLink {
                requests: requests.clone(),
                waiting,
            };
            links.insert(leader, link);
        }
        requests
    }
}

fn from_reply(reply: peerpb::ForwardReply) -> Result<ClientResponse, ClientError> {
    use forward_reply::Reply as R;
    match reply.reply {
        Some(R::LeaseKeepAlive(r)) => Ok(ClientResponse::LeaseKeepAlive(r)),
        Some(R::LeaseTimeToLive(r)) => Ok(ClientResponse::LeaseTimeToLive(r)),
        Some(R::LeaseLeases(r)) => Ok(ClientResponse::LeaseLeases(r)),
        Some(R::MemberPromote(r)) => Ok(ClientResponse::MemberPromote(r)),
        Some(R::Error(error)) if error.lease_not_found => Err(LeaseError::NotFound.into()),
        Some(R::Error(error)) => Err(ClientError::Forwarded {
            code: GrpcCode::from_u32(error.code).unwrap_or(GrpcCode::Unavailable),
            message: error.message,
        }),
        None => Err(ClientError::NoLeader),
    }
}

/// The leader's side: answers one forwarded request from the local driver.
pub async fn serve(driver: &DriverHandle, request: peerpb::ForwardRequest) -> peerpb::ForwardReply {
    use forward_reply::Reply as R;
    let id = request.id;
    let client_request = match request.request {
        Some(request) => from_wire(request),
        None => {
            return error_reply(
                id,
                &ClientError::Forwarded {
                    code: GrpcCode::InvalidArgument,
                    message: "stet: empty forwarded request".to_string(),
                },
            )
        }
    };
    let caller = request.requester.map(AuthInfo::from);
    let reply = match driver.call_local(client_request, caller).await {
        Ok(ClientResponse::LeaseKeepAlive(r)) => R::LeaseKeepAlive(r),
        Ok(ClientResponse::LeaseTimeToLive(r)) => R::LeaseTimeToLive(r),
        Ok(ClientResponse::LeaseLeases(r)) => R::LeaseLeases(r),
        Ok(ClientResponse::MemberPromote(r)) => R::MemberPromote(r),
        Ok(other) => {
            return error_reply(
                id,
                &ClientError::Forwarded {
                    code: GrpcCode::Unavailable,
                    message: format!("stet: unexpected response {other:?}"),
                },
            )
        }
        Err(error) => return error_reply(id, &error),
    };
    peerpb::ForwardReply {
        id,
        reply: Some(reply),
    }
}

fn error_reply(id: u64, error: &ClientError) -> peerpb::ForwardReply {
    let status = to_status(error);
    peerpb::ForwardReply {
        id,
        reply: Some(forward_reply::Reply::Error(peerpb::ForwardError {
            code: error.grpc_code() as u32,
            message: status.message().to_string(),
            lease_not_found: matches!(error, ClientError::Lease(LeaseError::NotFound)),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb as pb;

    #[test]
    fn every_leader_only_request_travels_and_nothing_else() {
        let requests = [
            ClientRequest::LeaseKeepAlive(pb::LeaseKeepAliveRequest { id: 1 }),
            ClientRequest::LeaseTimeToLive(pb::LeaseTimeToLiveRequest { id: 1, keys: true }),
            ClientRequest::LeaseLeases(pb::LeaseLeasesRequest {}),
            ClientRequest::MemberPromote(pb::MemberPromoteRequest { id: 7 }),
            ClientRequest::Put(pb::PutRequest::default()),
            ClientRequest::Range(pb::RangeRequest::default()),
            ClientRequest::LeaseGrant(pb::LeaseGrantRequest::default()),
        ];
        for request in requests {
            let wire = to_wire(request.clone());
            assert_eq!(wire.is_some(), request.leader_only(), "{request:?}");
            if let Some(wire) = wire {
                assert_eq!(from_wire(wire), request);
            }
        }
    }

    #[test]
    fn errors_keep_their_code_and_message_across_the_hop() {
        let reply = error_reply(3, &ClientError::Lease(LeaseError::NotFound));
        assert_eq!(
            from_reply(reply),
            Err(ClientError::Lease(LeaseError::NotFound))
        );
        let reply = error_reply(4, &ClientError::Timeout);
        let Err(ClientError::Forwarded { code, message }) = from_reply(reply) else {
            panic!("expected a forwarded error");
        };
        assert_eq!(code, GrpcCode::Unavailable);
        assert_eq!(message, "etcdserver: request timed out");
    }
}
