//! Publishing this member's attributes (name, client URLs) into the replicated membership, as
//! etcd does: proposed once a leader is known, again whenever the replicated ones differ (after a
//! restart with new flags), and retried after a failure. A `--force-new-cluster` start also
//! publishes its peer URLs from its flags (a data directory copied to a new machine), which a
//! plain restart never changes (`etcdctl member update` does).

use std::time::Duration;

use crate::node::{ClientError, ClientRequest, ClientResponse, Node, RequestId};
use crate::proto::etcdserverpb as pb;
use crate::time::Instant;

/// How long to wait before publishing attributes again after a failed attempt.
const PUBLISH_RETRY: Duration = Duration::from_millis(500);

/// This member's name and client URLs, to be replicated into the membership.
pub struct Publish {
    name: String,
    client_urls: Vec<String>,
    /// Peer URLs to replicate too (a forced new cluster only).
    peer_urls: Option<Vec<String>>,
    in_flight: Option<RequestId>,
    next_attempt: Instant,
}

impl Publish {
    pub fn new(name: String, client_urls: Vec<String>) -> Self {
        Publish {
            name,
            client_urls,
            peer_urls: None,
            in_flight: None,
            next_attempt: Instant::ZERO,
        }
    }

    /// Also publishes `peer_urls` (for a `--force-new-cluster` start).
    pub fn with_peer_urls(mut self, peer_urls: Vec<String>) -> Self {
        self.peer_urls = Some(peer_urls);
        self
    }

    /// Whether the attributes need publishing and nothing is in flight (a leader is known, the
    /// replicated attributes differ from ours).
    pub fn wanted(&self, node: &Node) -> bool {
        if self.in_flight.is_some() || node.leader().is_none() {
            return false;
        }
        self.next(node).is_some()
    }

    /// The request that brings the replicated attributes in line with ours, if they differ.
    fn next(&self, node: &Node) -> Option<ClientRequest> {
        let me = node.state().members().get(node.config().id)?;
        if me.name != self.name || me.client_ur_ls != self.client_urls {
            return Some(ClientRequest::MemberPublish {
                name: self.name.clone(),
                client_urls: self.client_urls.clone(),
            });
        }
        let peer_urls = self.peer_urls.as_ref()?;
        let (mut ours, mut stored) = (peer_urls.clone(), me.peer_ur_ls.clone());
        ours.sort();
        stored.sort();
        (ours != stored).then(|| {
            ClientRequest::MemberUpdate(pb::MemberUpdateRequest {
                id: me.id,
                peer_ur_ls: peer_urls.clone(),
            })
        })
    }

    /// The request to propose now, if the attributes need publishing, nothing is in flight and
    /// the retry pause after a failure has passed; `id` is the request id it will carry.
    pub fn request(&mut self, node: &Node, now: Instant, id: RequestId) -> Option<ClientRequest> {
        if !self.wanted(node) || now < self.next_attempt {
            return None;
        }
        let request = self.next(node)?;
        self.in_flight = Some(id);
        Some(request)
    }

    /// Notes the answer to request `id`; true if it was the publish request.
    pub fn on_reply(
        &mut self,
        id: RequestId,
        result: &Result<ClientResponse, ClientError>,
        now: Instant,
        log: &slog::Logger,
    ) -> bool {
        if self.in_flight != Some(id) {
            return false;
        }
        self.in_flight = None;
        match result {
            Ok(_) => {
                slog::info!(log, "published this member's attributes to the cluster"; "name" => %self.name, "client_urls" => %self.client_urls.join(","))
            }
            Err(error) => {
                slog::debug!(log, "publishing attributes failed; will retry"; "error" => %error);
                self.next_attempt = now + PUBLISH_RETRY;
            }
        }
        true
    }
}
