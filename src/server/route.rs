//! Where a client request is answered: by this member's own node, or — for a request only the
//! leader can answer (`ClientRequest::leader_only`) when this member is not the leader — by the
//! leader, over the peer transport's forwarding connection (`peer::forward`), as etcd does.

use super::handle::DriverHandle;
use super::peer::forward::Forwarder;
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
    /// because another member leads is forwarded to that member; without a known leader the
    /// answer is etcd's "no leader".
    pub async fn call(&self, request: ClientRequest) -> Result<ClientResponse, ClientError> {
        let forwardable = request.leader_only().then(|| request.clone());
        match self.driver.call_local(request).await {
            Err(ClientError::NotLeader {
                leader: Some(MemberId(leader)),
            }) if leader != self.driver.status().member_id => match forwardable {
                Some(request) => self.forwarder.forward(leader, request).await,
                None => Err(ClientError::NoLeader),
            },
            Err(ClientError::NotLeader { .. }) => Err(ClientError::NoLeader),
            result => result,
        }
    }
}
