//! Publishing this member's attributes (name, client URLs) into the replicated membership, as
//! etcd does: proposed once a leader is known, again whenever the replicated ones differ (after a
//! restart with new flags), and retried after a failure.

use std::time::Duration;

use crate::node::{ClientError, ClientRequest, ClientResponse, Node, RequestId};
use crate::time::Instant;

/// How long to wait before publishing attributes again after a failed attempt.
const PUBLISH_RETRY: Duration = Duration::from_millis(500);

/// This member's name and client URLs, to be replicated into the membership.
pub struct Publish {
    name: String,
    client_urls: Vec<String>,
    in_flight: Option<RequestId>,
    next_attempt: Instant,
}

impl Publish {
    pub fn new(name: String, client_urls: Vec<String>) -> Self {
        Publish {
            name,
            client_urls,
            in_flight: None,
            next_attempt: Instant::ZERO,
        }
    }

    /// Whether the attributes need publishing and nothing is in flight (a leader is known, the
    /// replicated attributes differ from ours).
    pub fn wanted(&self, node: &Node) -> bool {
        if self.in_flight.is_some() || node.leader().is_none() {
            return false;
        }
        node.state()
            .members()
            .get(node.config().id)
            .is_some_and(|m| m.name != self.name || m.client_ur_ls != self.client_urls)
    }

    /// The request to propose now, if the attributes need publishing, nothing is in flight and
    /// the retry pause after a failure has passed; `id` is the request id it will carry.
    pub fn request(&mut self, node: &Node, now: Instant, id: RequestId) -> Option<ClientRequest> {
        if !self.wanted(node) || now < self.next_attempt {
            return None;
        }
        self.in_flight = Some(id);
        Some(ClientRequest::MemberPublish {
            name: self.name.clone(),
            client_urls: self.client_urls.clone(),
        })
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
