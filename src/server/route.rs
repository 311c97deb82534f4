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
    /// FOR THE SIMULATOR'S SELF-TEST ONLY (`Mistake::SkipElectionWait`): a leader-only request
    /// that finds no leader is refused at once instead of waiting for the election.
    skip_election_wait: bool,
}

impl Router {
    pub fn new(driver: DriverHandle, forwarder: Forwarder) -> Self {
        Router {
            driver,
            forwarder,
            skip_election_wait: false,
        }
    }

    /// The same router with a planted mistake (`Mistake::SkipElectionWait`), for the
    /// simulator's self-test.
    pub fn skipping_election_wait(self, planted: bool) -> Self {
        Router {
            skip_election_wait: planted,
            ..self
        }
    }

    /// The local driver.
    pub fn driver(&self) -> &DriverHandle {
        &self.driver
    }

    /// Sends a request and waits for its answer. A leader-only request the local node refuses
    /// because another member leads is forwarded to that member. While no leader answers (an
    /// election under way, or the leader this member knows is gone) it tries again, waiting for
    /// a leader to be known and then `RETRY_PAUSE` between attempts, for at most
    /// `ELECTION_WAIT`; then the answer is etcd's "no leader". etcd's followers retry forwarding
    /// lease renewals and promotions the same way until their request timeout.
    pub async fn call(
        &self,
        request: ClientRequest,
        caller: Option<AuthInfo>,
    ) -> Result<ClientResponse, ClientError> {
        if !request.leader_only() {
            return self.call_once(request, caller).await;
        }
        let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
        loop {
            match self.call_once(request.clone(), caller.clone()).await {
                Err(ClientError::NoLeader) => {}
                result => return result,
            }
            if self.driver.stopped() {
                return Err(ClientError::Stopped);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.skip_election_wait || left.is_zero() {
                return Err(ClientError::NoLeader);
            }
            if !self.driver.leader_known_within(left).await {
                return Err(if self.driver.stopped() {
                    ClientError::Stopped
                } else {
                    ClientError::NoLeader
                });
            }
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + RETRY_PAUSE)).await;
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

/// How long a leader-only request keeps trying to reach a leader before "no leader": etcd's
/// requests wait for a leader up to their timeout likewise. The simulator's oracle holds the
/// router to it.
pub const ELECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The pause between two attempts to reach the leader (etcd's lease renewal pauses 50 ms): at
/// most `ELECTION_WAIT / RETRY_PAUSE` = 100 attempts per request.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{mpsc, watch, Notify};

    use super::*;
    use crate::proto::etcdserverpb as pb;
    use crate::server::handle::Command;
    use crate::server::metrics::Metrics;
    use crate::server::peer::conn::Identity;
    use crate::server::peer::AddressBook;
    use crate::server::status::MemberStatus;

    const ME: u64 = 1;

    /// A router over a stand-in driver: the test answers each request it receives.
    struct Bench {
        router: Router,
        status: watch::Sender<MemberStatus>,
        changed: Arc<Notify>,
        queue: mpsc::Receiver<Command>,
    }

    fn bench() -> Bench {
        let (commands, queue) = mpsc::channel(16);
        let status = MemberStatus {
            member_id: ME,
            ..MemberStatus::default()
        };
        let (status, status_rx) = watch::channel(status);
        let changed = Arc::new(Notify::new());
        let driver = DriverHandle::new(
            commands,
            (status_rx, changed.clone()),
            Arc::new(Metrics::new(ME)),
        );
        let identity = Identity {
            cluster_id: 7,
            member_id: ME,
            tls: None,
        };
        let router = Router::new(driver, Forwarder::new(identity, AddressBook::default()));
        Bench {
            router,
            status,
            changed,
            queue,
        }
    }

    fn keep_alive() -> ClientRequest {
        ClientRequest::LeaseKeepAlive(pb::LeaseKeepAliveRequest { id: 5 })
    }

    /// Answers the next request the stand-in driver receives with `answer`.
    async fn answer_next(
        queue: &mut mpsc::Receiver<Command>,
        answer: Result<ClientResponse, ClientError>,
    ) {
        match queue.recv().await {
            Some(Command::Request { reply, .. }) => {
                let _ = reply.send(answer);
            }
            _ => panic!("expected a request"),
        }
    }

    /// Starts a keep-alive through `router`, and answers its first attempt "no leader known".
    async fn keep_alive_refused_once(
        router: Router,
        queue: &mut mpsc::Receiver<Command>,
    ) -> tokio::task::JoinHandle<Result<ClientResponse, ClientError>> {
        let call = tokio::spawn(async move { router.call(keep_alive(), None).await });
        answer_next(queue, no_leader_known()).await;
        call
    }

    fn no_leader_known() -> Result<ClientResponse, ClientError> {
        Err(ClientError::NotLeader { leader: None })
    }

    fn renewed() -> Result<ClientResponse, ClientError> {
        Ok(ClientResponse::LeaseKeepAlive(pb::LeaseKeepAliveResponse {
            id: 5,
            ttl: 10,
            ..Default::default()
        }))
    }

    #[tokio::test]
    async fn a_leader_only_request_waits_out_an_election_and_is_answered_by_its_winner() {
        let mut bench = bench();
        let call = keep_alive_refused_once(bench.router.clone(), &mut bench.queue).await;
        // No leader known: the router waits for one instead of asking again.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            bench.queue.try_recv().is_err(),
            "asked again with no leader known"
        );
        assert!(!call.is_finished(), "gave up before the election wait");
        bench.status.send_modify(|s| s.leader = Some(ME));
        bench.changed.notify_waiters();
        // The new leader is still settling: refused once more, then answered.
        answer_next(&mut bench.queue, no_leader_known()).await;
        answer_next(&mut bench.queue, renewed()).await;
        let answer = call.await.expect("the call ran");
        assert!(
            matches!(answer, Ok(ClientResponse::LeaseKeepAlive(_))),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn a_stopped_driver_is_answered_as_stopped_not_as_no_leader() {
        let mut bench = bench();
        let call = keep_alive_refused_once(bench.router.clone(), &mut bench.queue).await;
        bench.queue.close();
        bench.changed.notify_waiters();
        let answer = call.await.expect("the call ran");
        assert!(matches!(answer, Err(ClientError::Stopped)), "{answer:?}");
    }

    #[tokio::test]
    async fn the_planted_mistake_refuses_at_once() {
        let mut bench = bench();
        let router = bench.router.clone().skipping_election_wait(true);
        let call = keep_alive_refused_once(router, &mut bench.queue).await;
        let answer = call.await.expect("the call ran");
        assert!(matches!(answer, Err(ClientError::NoLeader)), "{answer:?}");
        assert!(bench.queue.try_recv().is_err(), "no second attempt");
    }

    #[tokio::test]
    async fn requests_any_member_answers_are_not_retried() {
        let mut bench = bench();
        let router = bench.router.clone();
        let range = ClientRequest::Range(pb::RangeRequest::default());
        let call = tokio::spawn(async move { router.call(range, None).await });
        answer_next(&mut bench.queue, Err(ClientError::NoLeader)).await;
        let answer = call.await.expect("the call ran");
        assert!(matches!(answer, Err(ClientError::NoLeader)), "{answer:?}");
    }
}
