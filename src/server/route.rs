//! Where a client request is answered: by this member's own node, or — for a request only the
//! leader can answer (`ClientRequest::leader_only`) when this member is not the leader — by the
//! leader, over the peer transport's forwarding connection (`peer::forward`), as etcd does.

use super::handle::DriverHandle;
use super::peer::forward::Forwarder;
use crate::auth::AuthInfo;
use crate::node::{ClientError, ClientRequest, ClientResponse};
use crate::types::MemberId;

/// Sends requests to the local driver, forwarding leader-only ones to the leader when needed.
#[derive(Clone)]
pub struct Router {
    driver: DriverHandle,
    forwarder: Forwarder,
}

impl Router {
    pub fn new(driver: DriverHandle, forwarder: Forwarder) -> Self {
        Router { driver, forwarder }
    }

    /// The local driver.
    pub fn driver(&self) -> &DriverHandle {
        &self.driver
    }

    /// Sends a request and waits for its answer. A leader-only request the local node refuses
    /// because another member leads is forwarded to that member. Without a known leader (an
    /// election under way) it waits for one, at most `ELECTION_WAIT`, then goes to it; if none
    /// comes the answer is etcd's "no leader".
    pub async fn call(
        &self,
        request: ClientRequest,
        caller: Option<AuthInfo>,
    ) -> Result<ClientResponse, ClientError> {
        if !request.leader_only() {
            return self.call_once(request, caller).await;
        }
        match self.call_once(request.clone(), caller.clone()).await {
            Err(ClientError::NoLeader) if self.driver.leader_known_within(ELECTION_WAIT).await => {
                self.call_once(request, caller).await
            }
            result => result,
        }
    }

    /// One attempt: the local node, or the leader it names. `NoLeader` when no other member is
    /// known to lead.
    async fn call_once(
        &self,
        request: ClientRequest,
        caller: Option<AuthInfo>,
    ) -> Result<ClientResponse, ClientError> {
        let forwardable = request.leader_only().then(|| request.clone());
        match self.driver.call_local(request, caller.clone()).await {
            Err(ClientError::NotLeader {
                leader: Some(MemberId(leader)),
            }) if leader != self.driver.status().member_id => match forwardable {
                Some(request) => self.forwarder.forward(leader, request, caller).await,
                None => Err(ClientError::NoLeader),
            },
            Err(ClientError::NotLeader { .. }) => Err(ClientError::NoLeader),
            result => result,
        }
    }
}

/// How long a leader-only request waits for an election to end before "no leader": etcd's
/// requests wait for a leader up to their timeout likewise.
const ELECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
