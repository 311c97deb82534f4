//! Client requests on a node: serve reads locally or through ReadIndex, propose writes and
//! membership changes, and keep every waiting request bounded in number and in time.

use prost::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType};
use raft::StateRole;
use rand::Rng;

use super::request::{ClientError, ClientRequest, ClientResponse, HashKvStepped, RequestId};
use super::{Node, Pending, PendingKind, Proposal, ReadRequest};
use crate::auth::{is_auth_request, watch_refused, AuthError, AuthInfo};
use crate::kv::HashStep;
use crate::member;
use crate::proto::etcdserverpb as pb;
use crate::proto::stetpb::{self, internal_request::Request};
use crate::types::MemberId;

/// A learner may be promoted once it has this share of the leader's log (etcd's readyPercent).
const LEARNER_READY_PERCENT: u64 = 90;

impl Node {
    pub(super) fn on_client_request(
        &mut self,
        id: RequestId,
        request: ClientRequest,
        caller: Option<AuthInfo>,
    ) {
        if self.pending.contains_key(&id) {
            return self.reply(id, Err(ClientError::TooManyRequests));
        }
        if request.leader_only() && self.role != StateRole::Leader {
            return self.reply(id, Err(self.not_leader()));
        }
        if let Err(error) = self.check_quota(&request) {
            return self.reply(id, Err(error));
        }
        if needs_admin(&request) {
            if let Err(error) = self.state.auth().check_admin(caller.as_ref()) {
                return self.reply(id, Err(error.into()));
            }
        }
        match request {
            ClientRequest::Range(range) => self.read(id, range, caller),
            ClientRequest::RangePart(range) => self.read_part(id, range, caller),
            // Linearizable like reads: a revoke committed before them must be seen.
            ClientRequest::Put(put) => self.propose(id, Request::Put(put), caller),
            ClientRequest::DeleteRange(delete) => {
                self.propose(id, Request::DeleteRange(delete), caller)
            }
            ClientRequest::Txn(txn) => self.propose(id, Request::Txn(txn), caller),
            ClientRequest::Compact(compact) => {
                self.propose(id, Request::Compaction(compact), caller)
            }
            ClientRequest::LeaseGrant(mut grant) => {
                if grant.id == 0 {
                    grant.id = self.new_lease_id();
                }
                self.propose(id, Request::LeaseGrant(grant), caller)
            }
            ClientRequest::LeaseRevoke(revoke) => {
                self.propose(id, Request::LeaseRevoke(revoke), caller)
            }
            ClientRequest::Auth(request) if is_auth_request(&request) => {
                self.propose(id, request, caller)
            }
            ClientRequest::Auth(_) => self.reply(id, Err(AuthError::InvalidAuthMgmt.into())),
            ClientRequest::LeaseKeepAlive(keep) => {
                self.linearizable(id, ReadRequest::KeepAlive(keep.id))
            }
            ClientRequest::LeaseTimeToLive(ttl) => {
                self.linearizable(id, ReadRequest::TimeToLive(ttl))
            }
            ClientRequest::LeaseLeases(_) => {
                let leases = self
                    .state
                    .lessor
                    .leases()
                    .into_iter()
                    .map(|id| pb::LeaseStatus { id })
                    .collect();
                let response = pb::LeaseLeasesResponse {
                    leases,
                    ..Default::default()
                };
                self.reply(id, Ok(ClientResponse::LeaseLeases(response)))
            }
            ClientRequest::MemberAdd(add) => self.member_add(id, add),
            ClientRequest::MemberRemove(remove) => self.member_remove(id, remove.id),
            ClientRequest::MemberUpdate(update) => self.member_update(id, update),
            ClientRequest::MemberList(list) if list.linearizable => {
                self.linearizable(id, ReadRequest::MemberList)
            }
            ClientRequest::MemberList(_) => self.member_list(id),
            ClientRequest::MemberPromote(promote) => self.member_promote(id, promote.id),
            ClientRequest::MemberPublish { name, client_urls } => {
                let attrs = stetpb::MemberAttributes {
                    member_id: self.config.id.0,
                    name,
                    client_urls,
                    ..Default::default()
                };
                self.propose(id, Request::MemberAttributes(attrs), None)
            }
            ClientRequest::Alarm(alarm) => self.propose(id, Request::Alarm(alarm), caller),
            ClientRequest::Defragment(_) => self.on_defragment(id),
            ClientRequest::HashKv(hash) => {
                let result = self
                    .hash_kv_step(hash.revision, None, usize::MAX)
                    .map(|step| match step {
                        HashKvStepped::Done(response) => ClientResponse::HashKv(response),
                        HashKvStepped::More(_) => unreachable!("an unbounded hash step finishes"),
                    });
                self.reply(id, result)
            }
            ClientRequest::HashKvStep { revision, progress } => {
                let budget = self.config.hash_kv_step_entries;
                let result = self.hash_kv_step(revision, progress, budget);
                self.reply(id, result.map(ClientResponse::HashKvStep))
            }
            ClientRequest::WatchCreate { stream, request } => {
                if let Err(error) = self.state.auth().check_watch(caller.as_ref(), &request) {
                    let revision = self.state.kv.current_revision();
                    self.emit_watch(stream, watch_refused(error, revision));
                    return self.reply(id, Ok(ClientResponse::Accepted));
                }
                let responses = self.watches.create(stream, &request, &self.state.kv);
                for response in responses {
                    self.emit_watch(stream, response);
                }
                self.reply(id, Ok(ClientResponse::Accepted))
            }
            ClientRequest::WatchCancel { stream, watch_id } => {
                for response in self.watches.cancel(stream, watch_id) {
                    self.emit_watch(stream, response);
                }
                self.reply(id, Ok(ClientResponse::Accepted))
            }
            ClientRequest::WatchProgress { stream } => {
                let revision = self.state.kv.current_revision();
                for response in self.watches.progress(stream, revision) {
                    self.emit_watch(stream, response);
                }
                self.reply(id, Ok(ClientResponse::Accepted))
            }
            ClientRequest::WatchClose { stream } => {
                self.watches.close_stream(stream);
                self.reply(id, Ok(ClientResponse::Accepted))
            }
            ClientRequest::WatchUndelivered { stream, responses } => {
                self.watches.undelivered(stream, &responses);
                self.reply(id, Ok(ClientResponse::Accepted))
            }
            ClientRequest::WatchCatchUp { stream, budget } => {
                for response in self.watches.catch_up(stream, budget, &self.state.kv) {
                    self.emit_watch(stream, response);
                }
                self.reply(id, Ok(ClientResponse::Accepted))
            }
        }
    }

    /// Registers a request that waits for raft, unless too many already wait.
    fn wait(&mut self, id: RequestId, kind: PendingKind) -> bool {
        if self.pending.len() >= self.config.max_pending_requests {
            self.reply(id, Err(ClientError::TooManyRequests));
            return false;
        }
        let deadline = self.now + self.config.request_timeout;
        if matches!(kind, PendingKind::Write { .. }) {
            self.pending_writes += 1;
        }
        self.pending.insert(id, Pending { deadline, kind });
        self.deadlines.insert((deadline, id));
        true
    }

    pub(super) fn finish(&mut self, id: RequestId) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        self.deadlines.remove(&(pending.deadline, id));
        if matches!(pending.kind, PendingKind::Write { .. }) {
            assert!(self.pending_writes > 0, "a pending write was counted");
            self.pending_writes -= 1;
        }
        if matches!(pending.kind, PendingKind::Read { .. }) {
            self.read_attempts.retain(|_, reads| {
                reads.retain(|read| *read != id);
                !reads.is_empty()
            });
            self.read_queue.retain(|read| *read != id);
        }
        Some(pending)
    }

    /// Answers the waiting request `id` (if this member is the one it waits on).
    pub(super) fn complete(&mut self, id: RequestId, result: Result<ClientResponse, ClientError>) {
        if self.finish(id).is_some() {
            self.reply(id, result);
        }
    }

    /// Fails every request whose deadline passed.
    pub(super) fn expire_requests(&mut self) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > self.now {
                break;
            }
            if let Some(Pending {
                kind: PendingKind::Write { .. },
                ..
            }) = self.finish(id)
            {
                self.proposals_failed += 1;
            }
            self.reply(id, Err(ClientError::Timeout));
        }
    }

    fn propose(&mut self, id: RequestId, request: Request, caller: Option<AuthInfo>) {
        if let Request::Txn(txn) = &request {
            if txn.success.len().max(txn.failure.len()) > self.config.max_txn_ops {
                return self.reply(id, Err(ClientError::TooManyTxnOps));
            }
        }
        let entry = stetpb::InternalRequest {
            id,
            origin: self.config.id.0,
            request: Some(request),
            incarnation: self.incarnation,
            requester: caller.map(stetpb::Requester::from),
        };
        let data = entry.encode_to_vec();
        if data.len() > self.config.max_request_bytes {
            return self.reply(id, Err(ClientError::RequestTooLarge));
        }
        self.submit(id, Proposal::Normal(data));
    }

    /// Hands a proposal to raft. Without a leader raft drops it; it then waits (until its deadline)
    /// for a leader to be known, and is proposed again.
    fn submit(&mut self, id: RequestId, proposal: Proposal) {
        if !self.wait(id, PendingKind::Write { waiting: None }) {
            return;
        }
        self.try_propose(id, proposal);
    }

    fn try_propose(&mut self, id: RequestId, proposal: Proposal) {
        let result = match &proposal {
            Proposal::Normal(data) => self.raw.propose(Vec::new(), data.clone()),
            Proposal::ConfChange(change) => {
                self.raw.propose_conf_change(Vec::new(), change.clone())
            }
        };
        if result.is_err() {
            self.proposal_dropped = true;
            if let Some(Pending {
                kind: PendingKind::Write { waiting },
                ..
            }) = self.pending.get_mut(&id)
            {
                *waiting = Some(proposal);
            }
        }
    }

    /// Proposes again every proposal raft dropped while no leader was known.
    pub(super) fn propose_waiting(&mut self) {
        let waiting: Vec<(RequestId, Proposal)> = self
            .pending
            .iter_mut()
            .filter_map(|(id, pending)| match &mut pending.kind {
                PendingKind::Write { waiting } => waiting.take().map(|p| (*id, p)),
                PendingKind::Read { .. } => None,
            })
            .collect();
        for (id, proposal) in waiting {
            self.try_propose(id, proposal);
        }
    }

    fn read(&mut self, id: RequestId, range: pb::RangeRequest, caller: Option<AuthInfo>) {
        if range.serializable || self.config.unsafe_local_linearizable_reads {
            let result = self.range(&range, caller.as_ref());
            return self.reply(id, result);
        }
        self.linearizable(id, ReadRequest::Range(range, caller));
    }

    /// A part of a range read in parts: a later part (or a count part) is serializable at the
    /// revision the first pinned; the first part is linearizable unless asked not.
    fn read_part(&mut self, id: RequestId, range: pb::RangeRequest, caller: Option<AuthInfo>) {
        if range.serializable || self.config.unsafe_local_linearizable_reads {
            let result = self.range_part(&range, caller.as_ref());
            return self.reply(id, result);
        }
        self.linearizable(id, ReadRequest::RangePart(range, caller));
    }

    /// Answers a range from the applied state, if `caller` may read it there.
    fn range(
        &self,
        range: &pb::RangeRequest,
        caller: Option<&AuthInfo>,
    ) -> Result<ClientResponse, ClientError> {
        self.state.auth().check_range_request(caller, range)?;
        let mut response = self.state.kv.range(range)?;
        if self.config.self_test_miscount_ranges {
            response.count += 1;
        }
        Ok(ClientResponse::Range(response))
    }

    /// Answers a part of a range read in parts from the applied state, if `caller` may read it.
    fn range_part(
        &self,
        range: &pb::RangeRequest,
        caller: Option<&AuthInfo>,
    ) -> Result<ClientResponse, ClientError> {
        self.state.auth().check_range_request(caller, range)?;
        let (response, reads) = self.state.kv.range_part(range)?;
        Ok(ClientResponse::RangePart(response, reads))
    }

    /// Serves `request` once raft confirmed leadership and everything committed before is applied.
    /// Reads share ReadIndex rounds, as etcd's do: one round serves every read that came before
    /// it started.
    fn linearizable(&mut self, id: RequestId, request: ReadRequest) {
        let kind = PendingKind::Read {
            request,
            index: None,
        };
        if self.wait(id, kind) {
            self.read_queue.push(id);
            if self.read_round.is_none() {
                self.start_read_round();
            }
        }
    }

    /// Asks raft again for a round it dropped (no leader yet, or a leader that has not committed
    /// in its term yet drops ReadIndex requests silently), with every read still waiting.
    pub(super) fn reissue_stale_reads(&mut self) {
        let stale_after = self.config.heartbeat_interval * 2;
        let Some((_, asked_at)) = self.read_round else {
            return;
        };
        if self.now.saturating_duration_since(asked_at) >= stale_after {
            self.reissue_reads();
        }
    }

    /// Asks again at once for a round this member's raft dropped because, as a new leader, it had
    /// not committed in its term yet, once it has (its first entry is committed and applied): a
    /// leader's first reads need not wait out the stale-round timeout.
    pub(super) fn reissue_reads_dropped_by_new_leader(&mut self) {
        if std::mem::take(&mut self.read_round_dropped) && self.raw.raft.commit_to_current_term() {
            self.reissue_reads();
        }
    }

    /// Starts a new round with every read of the one in flight that is still waiting.
    fn reissue_reads(&mut self) {
        let Some((attempt, _)) = self.read_round else {
            return;
        };
        // A late answer to the old round still serves its reads: its index was taken after they
        // came. They join the new round too, whichever answer comes first.
        let waiting: Vec<RequestId> = self
            .read_attempts
            .get(&attempt)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| {
                matches!(
                    self.pending.get(id),
                    Some(Pending {
                        kind: PendingKind::Read { index: None, .. },
                        ..
                    })
                )
            })
            .collect();
        self.read_queue.splice(0..0, waiting);
        self.start_read_round();
    }

    /// Asks raft for a read index for every queued read, under a context never used before —
    /// unique across members, lives and attempts — so that only acks of this very round can
    /// confirm it.
    fn start_read_round(&mut self) {
        if self.read_queue.is_empty() {
            self.read_round = None;
            return;
        }
        let attempt = self.next_read_attempt;
        self.next_read_attempt += 1;
        self.read_attempts
            .insert(attempt, std::mem::take(&mut self.read_queue));
        self.read_round = Some((attempt, self.now));
        self.read_round_dropped =
            self.role == StateRole::Leader && !self.raw.raft.commit_to_current_term();
        let mut ctx = Vec::with_capacity(24);
        ctx.extend_from_slice(&self.config.id.0.to_le_bytes());
        ctx.extend_from_slice(&self.incarnation.to_le_bytes());
        ctx.extend_from_slice(&attempt.to_le_bytes());
        self.raw.read_index(ctx);
    }

    pub(super) fn on_read_state(&mut self, index: u64, ctx: &[u8]) {
        let (Some(member), Some(incarnation), Some(attempt)) = (
            ctx.get(0..8).and_then(|b| <[u8; 8]>::try_from(b).ok()),
            ctx.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()),
            ctx.get(16..24).and_then(|b| <[u8; 8]>::try_from(b).ok()),
        ) else {
            return;
        };
        if u64::from_le_bytes(member) != self.config.id.0
            || u64::from_le_bytes(incarnation) != self.incarnation
        {
            return;
        }
        let attempt = u64::from_le_bytes(attempt);
        for id in self.read_attempts.remove(&attempt).unwrap_or_default() {
            if let Some(Pending {
                kind: PendingKind::Read { index: slot, .. },
                ..
            }) = self.pending.get_mut(&id)
            {
                slot.get_or_insert(index);
            }
        }
        if self.read_round.is_some_and(|(round, _)| round == attempt) {
            self.start_read_round();
        }
    }

    /// Serves every linearizable read whose read index has been applied.
    pub(super) fn serve_ready_reads(&mut self) {
        let applied = self.applied_index;
        let ready: Vec<RequestId> = self
            .pending
            .iter()
            .filter_map(|(id, p)| match &p.kind {
                PendingKind::Read {
                    index: Some(index), ..
                } if *index <= applied => Some(*id),
                _ => None,
            })
            .collect();
        for id in ready {
            if let Some(Pending {
                kind: PendingKind::Read { request, .. },
                ..
            }) = self.finish(id)
            {
                match request {
                    ReadRequest::Range(range, caller) => {
                        let result = self.range(&range, caller.as_ref());
                        self.reply(id, result);
                    }
                    ReadRequest::RangePart(range, caller) => {
                        let result = self.range_part(&range, caller.as_ref());
                        self.reply(id, result);
                    }
                    ReadRequest::KeepAlive(lease) => self.keep_alive(id, lease),
                    ReadRequest::TimeToLive(request) => self.time_to_live(id, &request),
                    ReadRequest::MemberList => self.member_list(id),
                }
            }
        }
    }

    /// Answers `MemberList` from the applied membership.
    /// A step of a `HashKV` over at most `budget` index entries (see `KvStore::hash_kv_step`);
    /// a finished hash's header names the revision current when it began, as etcd's does.
    fn hash_kv_step(
        &self,
        revision: i64,
        progress: Option<crate::kv::HashProgress>,
        budget: usize,
    ) -> Result<HashKvStepped, ClientError> {
        match self.state.kv.hash_kv_step(revision, progress, budget)? {
            HashStep::Done {
                hash,
                compact_revision,
                began_at,
            } => Ok(HashKvStepped::Done(pb::HashKvResponse {
                header: Some(pb::ResponseHeader {
                    revision: began_at,
                    ..self.response_header()
                }),
                hash,
                compact_revision,
            })),
            HashStep::More(progress) => Ok(HashKvStepped::More(progress)),
        }
    }

    fn member_list(&mut self, id: RequestId) {
        let response = pb::MemberListResponse {
            members: self.state.members().list(),
            ..Default::default()
        };
        self.reply(id, Ok(ClientResponse::MemberList(response)))
    }

    fn not_leader(&self) -> ClientError {
        ClientError::NotLeader {
            leader: self.leader(),
        }
    }

    /// Renews a lease (on the leader, once it applied everything committed before the request).
    fn keep_alive(&mut self, id: RequestId, lease: i64) {
        if self.role != StateRole::Leader {
            return self.reply(id, Err(self.not_leader()));
        }
        let now = self.now;
        let result = self
            .state
            .lessor
            .renew(lease, now)
            .map(|ttl| {
                ClientResponse::LeaseKeepAlive(pb::LeaseKeepAliveResponse {
                    id: lease,
                    ttl,
                    ..Default::default()
                })
            })
            .map_err(ClientError::from);
        self.reply(id, result)
    }

    fn time_to_live(&mut self, id: RequestId, request: &pb::LeaseTimeToLiveRequest) {
        if self.role != StateRole::Leader {
            return self.reply(id, Err(self.not_leader()));
        }
        let result = self
            .state
            .lessor
            .time_to_live(request.id, self.now)
            .map(|(ttl, granted_ttl, keys)| {
                ClientResponse::LeaseTimeToLive(pb::LeaseTimeToLiveResponse {
                    id: request.id,
                    ttl,
                    granted_ttl,
                    keys: if request.keys { keys } else { Vec::new() },
                    ..Default::default()
                })
            })
            .map_err(ClientError::from);
        self.reply(id, result)
    }

    fn propose_conf_change(&mut self, id: RequestId, change: ConfChange) {
        self.submit(id, Proposal::ConfChange(change));
    }

    fn conf_change(
        &self,
        id: RequestId,
        change_type: ConfChangeType,
        member: pb::Member,
        promote: bool,
    ) -> ConfChange {
        let context = stetpb::ConfChangeContext {
            id,
            origin: self.config.id.0,
            member: Some(member.clone()),
            promote,
            incarnation: self.incarnation,
        };
        let mut change = ConfChange::default();
        change.set_change_type(change_type);
        change.node_id = member.id;
        change.context = context.encode_to_vec().into();
        change
    }

    fn member_add(&mut self, id: RequestId, add: pb::MemberAddRequest) {
        // A random salt, so a member re-added with the same URLs gets a new ID.
        let salt: u64 = self.rng.gen();
        let member_id = member::member_id(&add.peer_ur_ls, &self.config.cluster_token, Some(salt));
        let member = pb::Member {
            id: member_id.0,
            name: String::new(),
            peer_ur_ls: add.peer_ur_ls,
            client_ur_ls: Vec::new(),
            is_learner: add.is_learner,
        };
        if let Err(error) = self.state.members().validate_add(&member) {
            return self.reply(id, Err(error.into()));
        }
        let change_type = if add.is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let change = self.conf_change(id, change_type, member, false);
        self.propose_conf_change(id, change)
    }

    fn member_remove(&mut self, id: RequestId, member_id: u64) {
        let Some(member) = self.state.members().get(MemberId(member_id)).cloned() else {
            let error = if self.state.members().is_removed(MemberId(member_id)) {
                member::MemberError::IdRemoved
            } else {
                member::MemberError::IdNotFound
            };
            return self.reply(id, Err(error.into()));
        };
        let voters = self.state.members().voters();
        if !member.is_learner && voters == [MemberId(member_id)] {
            return self.reply(id, Err(ClientError::NotEnoughStartedMembers));
        }
        let change = self.conf_change(id, ConfChangeType::RemoveNode, member, false);
        self.propose_conf_change(id, change)
    }

    fn member_promote(&mut self, id: RequestId, member_id: u64) {
        assert_eq!(
            self.role,
            StateRole::Leader,
            "checked for every leader-only request"
        );
        let Some(member) = self.state.members().get(MemberId(member_id)).cloned() else {
            return self.reply(id, Err(member::MemberError::IdNotFound.into()));
        };
        if !member.is_learner {
            return self.reply(id, Err(member::MemberError::NotLearner.into()));
        }
        if !self.learner_caught_up(member_id) {
            return self.reply(id, Err(ClientError::LearnerNotReady));
        }
        let change = self.conf_change(id, ConfChangeType::AddNode, member, true);
        self.propose_conf_change(id, change)
    }

    /// Whether a learner's log is close enough to the leader's to promote it (etcd's rule: it
    /// has matched at least 90 % of the leader's log).
    fn learner_caught_up(&self, member_id: u64) -> bool {
        let leader_match = self.raw.raft.raft_log.last_index();
        let learner_match = self
            .raw
            .raft
            .prs()
            .get(member_id)
            .map_or(0, |progress| progress.matched);
        learner_match > 0 && learner_match * 100 >= leader_match * LEARNER_READY_PERCENT
    }

    /// The leader's side of `--experimental-auto-promote-learners`: proposes the promotion of
    /// one caught-up learner that is in touch, unless a membership change is still pending (the
    /// next tick tries again; a dropped proposal too). Nobody waits on it.
    pub(super) fn promote_caught_up_learners(&mut self) {
        assert_eq!(self.role, StateRole::Leader, "only the leader promotes");
        if self.raw.raft.has_pending_conf() {
            return;
        }
        let ready = self.state.members().learners().into_iter().find(|id| {
            let active = self
                .raw
                .raft
                .prs()
                .get(id.0)
                .is_some_and(|progress| progress.recent_active);
            active && self.learner_caught_up(id.0)
        });
        let Some(learner) = ready else {
            return;
        };
        let context = stetpb::ConfChangeContext {
            id: 0,
            origin: 0,
            member: self.state.members().get(learner).cloned(),
            promote: true,
            incarnation: 0,
        };
        let mut change = ConfChange::default();
        change.set_change_type(ConfChangeType::AddNode);
        change.node_id = learner.0;
        change.context = context.encode_to_vec().into();
        // A dropped proposal is tried again at the next tick.
        let _ = self.raw.propose_conf_change(Vec::new(), change);
    }

    fn member_update(&mut self, id: RequestId, update: pb::MemberUpdateRequest) {
        if self.state.members().get(MemberId(update.id)).is_none() {
            return self.reply(id, Err(member::MemberError::IdNotFound.into()));
        }
        let attrs = stetpb::MemberAttributes {
            member_id: update.id,
            peer_urls: update.peer_ur_ls,
            update_peer_urls: true,
            ..Default::default()
        };
        self.propose(id, Request::MemberAttributes(attrs), None)
    }
}

/// Whether only an administrator may make `request` while authentication is enabled (etcd checks
/// membership changes and the maintenance requests that read or rewrite the whole database).
fn needs_admin(request: &ClientRequest) -> bool {
    matches!(
        request,
        ClientRequest::MemberAdd(_)
            | ClientRequest::MemberRemove(_)
            | ClientRequest::MemberUpdate(_)
            | ClientRequest::MemberPromote(_)
            | ClientRequest::HashKv(_)
            | ClientRequest::HashKvStep { .. }
            | ClientRequest::Defragment(_)
    )
}
