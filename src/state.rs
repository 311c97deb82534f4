//! `StateMachine`: the replicated state every member derives from the committed raft log — the MVCC
//! key-value store, the leases attached to its keys, the cluster membership, its alarms and the
//! auth store, which checks every entry's requester before it applies (etcd's auth applier). Applying the same
//! entries in the same order gives the same state on every member; only lease expiry timing (leader
//! only) depends on the `now` passed in.

use prost::Message as _;

use std::collections::BTreeSet;

use crate::alarm::{Alarms, CorruptAlarms};
use crate::auth::{is_auth_request, AuthError, AuthInfo, AuthStore, CorruptAuthState, TokenChange};
use crate::engine::{Applied as AppliedIndex, Batch, Engine, EngineError};
use crate::kv::{KvError, KvStore};
use crate::lease::Lessor;
use crate::member::Membership;
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb::{event::EventType, Event};
use crate::proto::stetpb::{self, internal_request::Request};
use crate::request::{ClientError, ClientResponse};
use crate::time::Instant;
use crate::types::ClusterId;

/// The outcome of applying one normal entry.
#[derive(Debug, Default)]
pub struct Applied {
    /// The answer for the client that proposed the entry (if any is waiting).
    pub reply: Option<Result<ClientResponse, ClientError>>,
    /// The key-value events the entry produced, in revision order.
    pub events: Vec<Event>,
    /// What every member does with its login tokens after this entry.
    pub tokens: Option<TokenChange>,
}

/// An error restoring state from a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("snapshot data does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("snapshot holds a corrupt key-value store: {0}")]
    Kv(#[from] KvError),
    #[error("snapshot holds corrupt leases: {0}")]
    Lease(#[from] crate::lease::LeaseError),
    #[error("snapshot holds a corrupt membership: {0}")]
    Member(#[from] crate::member::MemberError),
    #[error("snapshot holds corrupt alarms: {0}")]
    Alarms(#[from] CorruptAlarms),
    #[error("snapshot holds a corrupt auth store: {0}")]
    Auth(#[from] CorruptAuthState),
}

/// KV store, leases and membership at one applied raft index.
#[derive(Debug)]
pub struct StateMachine {
    pub kv: KvStore,
    pub lessor: Lessor,
    members: Membership,
    alarms: Alarms,
    auth: AuthStore,
    min_lease_ttl_seconds: i64,
    /// Leases granted or revoked since the last commit to the engine.
    changed_leases: BTreeSet<i64>,
    /// Whether the membership changed since the last commit to the engine.
    members_changed: bool,
    /// Whether the alarms changed since the last commit to the engine.
    alarms_changed: bool,
    /// Whether the auth store changed since the last commit to the engine.
    auth_changed: bool,
}

impl StateMachine {
    /// An empty state machine for a cluster, its key-values kept in memory.
    pub fn new(cluster_id: ClusterId, min_lease_ttl_seconds: i64) -> Self {
        Self::with_kv(KvStore::new(), cluster_id, min_lease_ttl_seconds)
    }

    /// An empty state machine for a cluster, its key-values kept in `engine` (whose revisions
    /// the first commit replaces).
    pub fn with_engine(
        engine: Engine,
        cluster_id: ClusterId,
        min_lease_ttl_seconds: i64,
    ) -> Result<Self, EngineError> {
        let kv = KvStore::with_engine(engine)?;
        Ok(Self::with_kv(kv, cluster_id, min_lease_ttl_seconds))
    }

    fn with_kv(kv: KvStore, cluster_id: ClusterId, min_lease_ttl_seconds: i64) -> Self {
        StateMachine {
            kv,
            lessor: Lessor::new(min_lease_ttl_seconds),
            members: Membership::new(cluster_id),
            alarms: Alarms::default(),
            auth: AuthStore::new(),
            min_lease_ttl_seconds,
            changed_leases: BTreeSet::new(),
            members_changed: true,
            alarms_changed: true,
            auth_changed: true,
        }
    }

    /// The replicated membership.
    pub fn members(&self) -> &Membership {
        &self.members
    }

    /// The raised alarms.
    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// The auth store.
    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }

    /// Replaces the membership (a conf change was applied to a copy of it).
    pub fn set_members(&mut self, members: Membership) {
        self.members = members;
        self.members_changed = true;
    }

    /// Makes `cluster_id` the cluster this state belongs to, if it is not already (the member's
    /// WAL names its cluster; a `--force-new-cluster` start changes it). Whether it changed.
    pub fn adopt_cluster_id(&mut self, cluster_id: ClusterId) -> bool {
        if self.members.cluster_id() == cluster_id {
            return false;
        }
        self.members.set_cluster_id(cluster_id);
        self.members_changed = true;
        true
    }

    /// Applies one client request from a committed entry, made by `requester` (the user and
    /// auth revision its proposer's runtime resolved), whose permission it checks first.
    pub fn apply(
        &mut self,
        request: Request,
        requester: Option<&AuthInfo>,
        now: Instant,
        is_leader: bool,
    ) -> Applied {
        self.apply_as(request, requester, true, now, is_leader)
    }

    /// Applies a member's own command from a committed entry (an expired lease's revoke, a
    /// raised alarm): no client made it, so no permission is checked.
    pub fn apply_internal(&mut self, request: Request, now: Instant, is_leader: bool) -> Applied {
        self.apply_as(request, None, false, now, is_leader)
    }

    /// FOR THE SIMULATOR'S SELF-TEST ONLY (`NodeConfig::self_test_ignore_permissions`): applies a
    /// client request without checking its key-value permissions, which is wrong.
    pub fn apply_ignoring_permissions(
        &mut self,
        request: Request,
        requester: Option<&AuthInfo>,
        now: Instant,
        is_leader: bool,
    ) -> Applied {
        self.apply_as(request, requester, false, now, is_leader)
    }

    fn apply_as(
        &mut self,
        request: Request,
        requester: Option<&AuthInfo>,
        check_permissions: bool,
        now: Instant,
        is_leader: bool,
    ) -> Applied {
        let refused = if self.alarms.corrupt() {
            refused_while_corrupt(&request)
        } else if self.alarms.no_space() {
            refused_without_space(&request)
        } else {
            check_permissions
                .then(|| self.check_permission(&request, requester).err())
                .flatten()
                .map(ClientError::Auth)
        };
        if refused.is_none() {
            let before = (self.auth.is_enabled(), self.auth.revision());
            if let Some(applied) = self.auth.apply(&request, requester) {
                self.auth_changed |= before != (self.auth.is_enabled(), self.auth.revision());
                return auth_applied(applied);
            }
        }
        let result = match (refused, request) {
            (Some(error), _) => Err(error),
            (None, request) => self.apply_allowed(request, now, is_leader),
        };
        match result {
            Ok((response, events)) => Applied {
                reply: Some(Ok(response)),
                events,
                tokens: None,
            },
            Err(error) => Applied {
                reply: Some(Err(error)),
                events: Vec::new(),
                tokens: None,
            },
        }
    }

    /// etcd's auth applier's checks of key-value and lease requests (auth requests check their
    /// caller themselves). Internal commands (member attributes, lease renewals, alarms) and
    /// compaction and lease grants pass, as in etcd.
    fn check_permission(
        &self,
        request: &Request,
        requester: Option<&AuthInfo>,
    ) -> Result<(), AuthError> {
        if !self.auth.is_enabled() {
            return Ok(());
        }
        let lease_keys = |id: i64| self.lessor.keys(id);
        match request {
            Request::Put(put) => self.auth.check_put(requester, put, &lease_keys(put.lease)),
            Request::DeleteRange(delete) => self.auth.check_delete(requester, delete),
            Request::Txn(txn) => self.auth.check_txn(requester, txn, &lease_keys),
            Request::Range(range) => self.auth.check_range_request(requester, range),
            Request::LeaseRevoke(revoke) => self
                .auth
                .check_lease_keys(requester, &lease_keys(revoke.id)),
            _ => Ok(()),
        }
    }

    fn apply_allowed(
        &mut self,
        request: Request,
        now: Instant,
        is_leader: bool,
    ) -> Result<(ClientResponse, Vec<Event>), ClientError> {
        match request {
            Request::Put(put) => self.put(&put),
            Request::DeleteRange(delete) => self.delete_range(&delete),
            Request::Txn(txn) => self.txn(&txn),
            Request::Compaction(compact) => self
                .kv
                .begin_compaction(compact.revision)
                .map(|()| (ClientResponse::Compact(Default::default()), Vec::new()))
                .map_err(ClientError::from),
            Request::LeaseGrant(grant) => self
                .grant_lease(grant.id, grant.ttl, now, is_leader)
                .map(|ttl| {
                    let response = pb::LeaseGrantResponse {
                        id: grant.id,
                        ttl,
                        ..Default::default()
                    };
                    (ClientResponse::LeaseGrant(response), Vec::new())
                })
                .map_err(ClientError::from),
            Request::LeaseRevoke(revoke) => self.revoke_lease(revoke.id),
            Request::MemberAttributes(attrs) => self.member_attributes(&attrs),
            Request::Range(range) => self
                .kv
                .range(&range)
                .map(|r| (ClientResponse::Range(r), Vec::new()))
                .map_err(ClientError::from),
            Request::LeaseRenew(renew) => {
                if is_leader {
                    for id in renew.ids {
                        let _ = self.lessor.renew(id, now);
                    }
                }
                Ok((ClientResponse::Accepted, Vec::new()))
            }
            Request::Alarm(alarm) => {
                let response = self.alarms.apply(&alarm);
                self.alarms_changed |= !response.alarms.is_empty()
                    && alarm.action != pb::alarm_request::AlarmAction::Get as i32;
                Ok((ClientResponse::Alarm(response), Vec::new()))
            }
            request => {
                // Auth requests are the store's (`apply_as` gave them to it).
                assert!(
                    is_auth_request(&request),
                    "every other request is applied above"
                );
                Err(ClientError::Auth(AuthError::InvalidAuthMgmt))
            }
        }
    }

    fn put(&mut self, put: &pb::PutRequest) -> Result<(ClientResponse, Vec<Event>), ClientError> {
        let lessor = &self.lessor;
        let (response, events) = self.kv.put(put, &|id| lessor.exists(id))?;
        self.track_leases(&events);
        Ok((ClientResponse::Put(response), events))
    }

    fn delete_range(
        &mut self,
        delete: &pb::DeleteRangeRequest,
    ) -> Result<(ClientResponse, Vec<Event>), ClientError> {
        let (response, events) = self.kv.delete_range(delete)?;
        self.track_leases(&events);
        Ok((ClientResponse::DeleteRange(response), events))
    }

    fn txn(&mut self, txn: &pb::TxnRequest) -> Result<(ClientResponse, Vec<Event>), ClientError> {
        let lessor = &self.lessor;
        let (response, events) = self.kv.txn(txn, &|id| lessor.exists(id))?;
        self.track_leases(&events);
        Ok((ClientResponse::Txn(response), events))
    }

    fn grant_lease(
        &mut self,
        id: i64,
        ttl: i64,
        now: Instant,
        is_leader: bool,
    ) -> Result<i64, crate::lease::LeaseError> {
        let granted = self.lessor.grant(id, ttl, now, is_leader)?;
        self.changed_leases.insert(id);
        Ok(granted)
    }

    /// Revokes a lease and deletes its keys, all in one revision.
    fn revoke_lease(&mut self, id: i64) -> Result<(ClientResponse, Vec<Event>), ClientError> {
        let keys = self.lessor.revoke(id)?;
        self.changed_leases.insert(id);
        let success = keys
            .into_iter()
            .map(|key| pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(
                    pb::DeleteRangeRequest {
                        key,
                        ..Default::default()
                    },
                )),
            })
            .collect::<Vec<_>>();
        let mut events = Vec::new();
        if !success.is_empty() {
            let txn = pb::TxnRequest {
                success,
                ..Default::default()
            };
            let (_, deleted) = self.kv.txn(&txn, &|_| false)?;
            events = deleted;
        }
        Ok((ClientResponse::LeaseRevoke(Default::default()), events))
    }

    fn member_attributes(
        &mut self,
        attrs: &stetpb::MemberAttributes,
    ) -> Result<(ClientResponse, Vec<Event>), ClientError> {
        let id = crate::types::MemberId(attrs.member_id);
        self.members_changed = true;
        if attrs.update_peer_urls {
            self.members.update_peer_urls(id, attrs.peer_urls.clone())?;
            let members = self.members.list();
            let response = pb::MemberUpdateResponse {
                members,
                ..Default::default()
            };
            return Ok((ClientResponse::MemberUpdate(response), Vec::new()));
        }
        self.members
            .set_attributes(id, attrs.name.clone(), attrs.client_urls.clone())?;
        Ok((ClientResponse::Accepted, Vec::new()))
    }

    /// Keeps the lessor's key sets in step with the writes that attached or detached keys.
    fn track_leases(&mut self, events: &[Event]) {
        for event in events {
            let old = event.prev_kv.as_ref().filter(|kv| kv.lease != 0);
            let new = event
                .kv
                .as_ref()
                .filter(|_| event.r#type == EventType::Put as i32)
                .filter(|kv| kv.lease != 0);
            if let Some(old) = old {
                if new.map(|n| n.lease) != Some(old.lease) {
                    self.lessor.detach(old.lease, &old.key);
                }
            }
            if let Some(new) = new {
                self.lessor.attach(new.lease, &new.key);
            }
        }
    }

    /// Serializes the whole state (values read from the engine).
    pub fn to_snapshot_bytes(&self) -> Result<Vec<u8>, KvError> {
        let mut snapshot = stetpb::StateSnapshot {
            kv: Some(self.kv.to_snapshot()?),
            leases: self.lessor.to_snapshot(),
            alarms: self.alarms.list(pb::AlarmType::None),
            auth: Some(self.auth.to_proto()),
            ..Default::default()
        };
        self.members.write_to_snapshot(&mut snapshot);
        Ok(snapshot.encode_to_vec())
    }

    /// Rebuilds the state from snapshot bytes, key-values in memory; never panics on bad input.
    pub fn from_snapshot_bytes(
        bytes: &[u8],
        min_lease_ttl_seconds: i64,
    ) -> Result<Self, RestoreError> {
        let mut state = StateMachine::new(ClusterId(0), min_lease_ttl_seconds);
        state.restore(bytes)?;
        Ok(state)
    }

    /// Replaces the whole state with the one in snapshot bytes, key-values in the same engine;
    /// bytes that fail validation change nothing. Never panics on bad input.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        let snapshot = stetpb::StateSnapshot::decode(bytes)?;
        let lessor = Lessor::restore(&snapshot.leases, self.min_lease_ttl_seconds)?;
        let members = Membership::restore(&snapshot)?;
        let alarms = Alarms::from_list(&snapshot.alarms)?;
        // A snapshot from before auth existed holds none: a new store.
        let auth = snapshot
            .auth
            .as_ref()
            .map(AuthStore::from_proto)
            .transpose()?;
        let auth = auth.unwrap_or_default();
        self.kv.restore(&snapshot.kv.unwrap_or_default())?;
        self.changed_leases = lessor.leases().into_iter().collect();
        self.lessor = lessor;
        self.members = members;
        self.members_changed = true;
        self.alarms = alarms;
        self.alarms_changed = true;
        self.auth = auth;
        self.auth_changed = true;
        Ok(())
    }

    /// Commits every change since the last commit to the engine, ending at `applied` with raft's
    /// configuration as of it (`ConfState` bytes); fsynced if `durable`. A commit in flight must
    /// have been finished ([`StateMachine::finish_commit`]).
    pub fn commit(
        &mut self,
        applied: Option<(AppliedIndex, Vec<u8>)>,
        durable: bool,
    ) -> Result<(), KvError> {
        let (batch, _) = self.stage(applied);
        self.kv.commit_batch(batch, durable)
    }

    /// [`StateMachine::commit`], written by the returned job on any thread while the state goes
    /// on (reads see the versions it writes); then [`StateMachine::finish_commit`]. One at a
    /// time, and not while the whole state is being replaced ([`KvStore::replaces_all`]).
    pub fn begin_commit(
        &mut self,
        applied: Option<(AppliedIndex, Vec<u8>)>,
        durable: bool,
    ) -> Result<crate::engine::CommitJob, KvError> {
        let (batch, versions) = self.stage(applied);
        self.kv.begin_commit(batch, durable, versions)
    }

    /// Takes in the commit in flight, if any (running it here if nobody started it, waiting for
    /// it if it is running); true if there was one.
    pub fn finish_commit(&mut self) -> Result<bool, KvError> {
        self.kv.finish_commit()
    }

    /// Every change since the last commit, in one batch ending at `applied`, and the versions
    /// it writes.
    fn stage(&mut self, applied: Option<(AppliedIndex, Vec<u8>)>) -> (Batch, crate::kv::Versions) {
        let mut batch = Batch::new();
        let versions = self.kv.stage_keeping(&mut batch);
        for id in std::mem::take(&mut self.changed_leases) {
            match self.lessor.granted_ttl_seconds(id) {
                Some(ttl_seconds) => {
                    let record = stetpb::LeaseRecord {
                        id,
                        ttl_seconds,
                        keys: Vec::new(),
                    };
                    batch.put_lease(id, record.encode_to_vec());
                }
                None => batch.delete_lease(id),
            }
        }
        if std::mem::take(&mut self.members_changed) {
            batch.clear_members();
            batch.set_cluster_id(self.members.cluster_id().0);
            for member in self.members.list() {
                batch.put_member(member.id, member.encode_to_vec());
            }
            for id in self.members.removed_ids() {
                batch.remove_member(id);
            }
        }
        if std::mem::take(&mut self.alarms_changed) {
            let list = stetpb::AlarmList {
                alarms: self.alarms.list(pb::AlarmType::None),
            };
            batch.set_alarms(list.encode_to_vec());
        }
        if std::mem::take(&mut self.auth_changed) {
            batch.set_auth(self.auth.to_proto().encode_to_vec());
        }
        if let Some((applied, conf_state)) = applied {
            batch.set_applied(applied);
            batch.set_conf_state(conf_state);
        }
        (batch, versions)
    }

    /// The state the engine's last commit holds, with the entry it ends at and raft's
    /// configuration as of it (`ConfState` bytes; `None` for an engine never committed to).
    pub fn from_engine(
        engine: Engine,
        min_lease_ttl_seconds: i64,
    ) -> Result<(Self, AppliedIndex, Option<Vec<u8>>), RestoreError> {
        let view = engine.view()?;
        let applied = view.applied()?;
        let conf_state = view.conf_state()?;
        let mut snapshot = stetpb::StateSnapshot {
            cluster_id: view.cluster_id()?,
            removed: view.removed_members()?,
            ..Default::default()
        };
        for (id, bytes) in view.members()? {
            let member = pb::Member::decode(bytes.as_slice())?;
            if member.id != id {
                let why = format!("member row {id:x} holds member {:x}", member.id);
                return Err(RestoreError::Member(crate::member::MemberError::Corrupt(
                    why,
                )));
            }
            snapshot.members.push(member);
        }
        for (id, bytes) in view.leases()? {
            let record = stetpb::LeaseRecord::decode(bytes.as_slice())?;
            if record.id != id || !record.keys.is_empty() {
                let why = format!("lease row {id:x} holds lease {:x} or keys", record.id);
                return Err(RestoreError::Lease(crate::lease::LeaseError::Corrupt(why)));
            }
            snapshot.leases.push(record);
        }
        if let Some(bytes) = view.alarms()? {
            snapshot.alarms = stetpb::AlarmList::decode(bytes.as_slice())?.alarms;
        }
        let auth = match view.auth()? {
            Some(bytes) => AuthStore::from_proto(&stetpb::AuthState::decode(bytes.as_slice())?)?,
            None => AuthStore::new(),
        };
        drop(view);
        let members = Membership::restore(&snapshot)?;
        let alarms = Alarms::from_list(&snapshot.alarms)?;
        let mut lessor = Lessor::restore(&snapshot.leases, min_lease_ttl_seconds)?;
        let kv = KvStore::from_engine(engine)?;
        for (key, lease) in kv.leased_keys() {
            if !lessor.exists(lease) {
                let why = format!(
                    "key {} names lease {lease:x}, which does not exist",
                    key.escape_ascii()
                );
                return Err(RestoreError::Lease(crate::lease::LeaseError::Corrupt(why)));
            }
            lessor.attach(lease, &key);
        }
        let state = StateMachine {
            kv,
            lessor,
            members,
            alarms,
            auth,
            min_lease_ttl_seconds,
            changed_leases: BTreeSet::new(),
            members_changed: false,
            alarms_changed: false,
            auth_changed: false,
        };
        Ok((state, applied, conf_state))
    }

    /// Replaces the whole state with the one staged in the engine (rows another member sent, see
    /// `Engine::install_staged`), which must be the state at `applied`: swapped in durably, then
    /// loaded. What changed since the last commit is dropped; the installed state supersedes it.
    pub fn install_staged(&mut self, applied: AppliedIndex) -> Result<(), RestoreError> {
        self.kv.engine_mut().install_staged(applied)?;
        let cluster_id = self.members.cluster_id();
        let placeholder = StateMachine::new(cluster_id, self.min_lease_ttl_seconds);
        let engine = std::mem::replace(self, placeholder).kv.into_engine();
        let (state, loaded, _) = StateMachine::from_engine(engine, self.min_lease_ttl_seconds)?;
        assert_eq!(loaded, applied, "the engine holds the installed state");
        *self = state;
        Ok(())
    }

    /// The minimum lease TTL this state machine grants.
    pub fn min_lease_ttl_seconds(&self) -> i64 {
        self.min_lease_ttl_seconds
    }
}

/// The outcome of an auth request the store applied.
fn auth_applied(applied: crate::auth::AuthApplied) -> Applied {
    match applied {
        Ok((response, tokens)) => Applied {
            reply: Some(Ok(ClientResponse::Auth(response))),
            events: Vec::new(),
            tokens,
        },
        Err(error) => Applied {
            reply: Some(Err(ClientError::Auth(error))),
            events: Vec::new(),
            tokens: None,
        },
    }
}

/// Why a request is refused while the database is out of space (etcd's capped applier): it would
/// grow the database. Deletes, compaction, revokes and reads still go through.
fn refused_without_space(request: &Request) -> Option<ClientError> {
    let grows = match request {
        Request::Put(_) | Request::LeaseGrant(_) => true,
        Request::Txn(txn) => txn_puts(txn),
        _ => false,
    };
    grows.then_some(ClientError::NoSpace)
}

/// Why a request is refused while the data is corrupt (etcd's corrupt applier): every key-value
/// and lease request. Alarms, membership and lease renewals still go through.
fn refused_while_corrupt(request: &Request) -> Option<ClientError> {
    let refused = matches!(
        request,
        Request::Put(_)
            | Request::DeleteRange(_)
            | Request::Txn(_)
            | Request::Compaction(_)
            | Request::Range(_)
            | Request::LeaseGrant(_)
            | Request::LeaseRevoke(_)
    );
    refused.then_some(ClientError::Corrupt)
}

/// Whether a transaction puts anything, in either branch, at any depth.
pub fn txn_puts(txn: &pb::TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .any(|op| match &op.request {
            Some(pb::request_op::Request::RequestPut(_)) => true,
            Some(pb::request_op::Request::RequestTxn(inner)) => txn_puts(inner),
            _ => false,
        })
}

impl crate::watch::EventSource for KvStore {
    fn current_revision(&self) -> i64 {
        KvStore::current_revision(self)
    }

    fn compact_revision(&self) -> i64 {
        KvStore::compact_revision(self)
    }

    fn events_since(
        &self,
        start_revision: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> Result<Vec<Event>, i64> {
        let events = KvStore::events_since_limited(self, start_revision, key, range_end, limit);
        events.map_err(|error| match error {
            KvError::Compacted { compact_revision } => compact_revision,
            _ => KvStore::compact_revision(self),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sm() -> StateMachine {
        let mut sm = StateMachine::new(ClusterId(1), 2);
        let member = pb::Member {
            id: 7,
            name: "a".into(),
            peer_ur_ls: vec!["http://127.0.0.1:2380".into()],
            ..Default::default()
        };
        sm.members.add(member).unwrap();
        sm
    }

    fn apply(sm: &mut StateMachine, request: Request) -> Applied {
        sm.apply(request, None, Instant::from_micros(0), true)
    }

    fn put(key: &str, lease: i64) -> Request {
        Request::Put(pb::PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })
    }

    #[test]
    fn revoking_a_lease_deletes_all_its_keys_in_one_revision() {
        let mut sm = sm();
        let grant = Request::LeaseGrant(pb::LeaseGrantRequest { ttl: 10, id: 5 });
        assert!(apply(&mut sm, grant).reply.unwrap().is_ok());
        for key in ["a", "b", "c"] {
            assert!(apply(&mut sm, put(key, 5)).reply.unwrap().is_ok());
        }
        assert!(apply(&mut sm, put("keep", 0)).reply.unwrap().is_ok());
        let before = sm.kv.current_revision();
        let revoked = apply(
            &mut sm,
            Request::LeaseRevoke(pb::LeaseRevokeRequest { id: 5 }),
        );
        assert!(revoked.reply.unwrap().is_ok());
        assert_eq!(revoked.events.len(), 3);
        assert_eq!(sm.kv.current_revision(), before + 1);
        assert_eq!(sm.kv.key_count(), 1);
    }

    #[test]
    fn overwriting_a_key_without_its_lease_detaches_it() {
        let mut sm = sm();
        let grant = Request::LeaseGrant(pb::LeaseGrantRequest { ttl: 10, id: 5 });
        assert!(apply(&mut sm, grant).reply.unwrap().is_ok());
        assert!(apply(&mut sm, put("a", 5)).reply.unwrap().is_ok());
        assert!(apply(&mut sm, put("a", 0)).reply.unwrap().is_ok());
        let revoked = apply(
            &mut sm,
            Request::LeaseRevoke(pb::LeaseRevokeRequest { id: 5 }),
        );
        assert!(
            revoked.events.is_empty(),
            "the key no longer belongs to the lease"
        );
        assert_eq!(sm.kv.key_count(), 1);
    }

    #[test]
    fn a_put_with_an_unknown_lease_is_refused() {
        let mut sm = sm();
        let reply = apply(&mut sm, put("a", 99)).reply.unwrap();
        assert_eq!(reply, Err(ClientError::Kv(KvError::LeaseNotFound)));
    }

    #[test]
    fn snapshot_bytes_round_trip_the_whole_state() {
        let mut sm = sm();
        let grant = Request::LeaseGrant(pb::LeaseGrantRequest { ttl: 10, id: 5 });
        apply(&mut sm, grant);
        apply(&mut sm, put("a", 5));
        apply(&mut sm, put("b", 0));
        let restored =
            StateMachine::from_snapshot_bytes(&sm.to_snapshot_bytes().unwrap(), 2).unwrap();
        assert_eq!(restored.kv.hash_kv(0), sm.kv.hash_kv(0));
        assert_eq!(restored.lessor.to_snapshot(), sm.lessor.to_snapshot());
        assert_eq!(restored.members.list(), sm.members.list());
    }

    #[test]
    fn watchers_catch_up_from_history_after_the_state_jumps_to_a_snapshot() {
        use crate::watch::WatchHub;
        let before = sm();
        let mut hub = WatchHub::new();
        let request = pb::WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            ..Default::default()
        };
        hub.create(1, &request, &before.kv);
        let mut after = sm();
        apply(&mut after, put("b", 0));
        apply(&mut after, put("c", 0));
        hub.resync(&after.kv);
        assert_eq!(hub.lagging_streams(), vec![1]);
        let responses = hub.catch_up(1, 16, &after.kv);
        let keys: Vec<_> = responses
            .iter()
            .flat_map(|r| r.events.iter())
            .map(|e| e.kv.clone().unwrap_or_default().key)
            .collect();
        assert_eq!(keys, vec![b"b".to_vec(), b"c".to_vec()]);
        assert!(hub.lagging_streams().is_empty());
        hub.resync(&after.kv);
        assert!(
            hub.catch_up(1, 16, &after.kv).is_empty(),
            "nothing is sent twice"
        );
    }

    /// Commits `sm` to its engine at a made-up applied entry and loads a new state from it.
    fn reload(sm: &mut StateMachine) -> StateMachine {
        let applied = AppliedIndex { index: 9, term: 2 };
        sm.commit(Some((applied, vec![8, 1])), false).unwrap();
        let engine = std::mem::take(&mut sm.kv).into_engine();
        let (loaded, at, conf_state) = StateMachine::from_engine(engine, 2).unwrap();
        assert_eq!((at, conf_state), (applied, Some(vec![8, 1])));
        loaded
    }

    #[test]
    fn the_engine_holds_the_whole_state_and_a_restart_loads_it_back() {
        let mut sm = sm();
        let grant = Request::LeaseGrant(pb::LeaseGrantRequest { ttl: 10, id: 5 });
        apply(&mut sm, grant);
        apply(&mut sm, put("a", 5));
        apply(&mut sm, put("b", 0));
        apply(&mut sm, put("b", 0));
        let compact = Request::Compaction(pb::CompactionRequest {
            revision: 3,
            ..Default::default()
        });
        apply(&mut sm, compact);
        let mut members = sm.members().clone();
        members.remove(crate::types::MemberId(7)).unwrap();
        sm.set_members(members);
        let hash = sm.kv.hash_kv(0).unwrap();
        let leases = sm.lessor.to_snapshot();
        let loaded = reload(&mut sm);
        assert_eq!(loaded.kv.hash_kv(0).unwrap(), hash);
        assert_eq!(loaded.kv.current_revision(), 4);
        assert_eq!(loaded.lessor.to_snapshot(), leases, "keys re-attached");
        assert!(loaded.members().list().is_empty());
        assert!(loaded.members().is_removed(crate::types::MemberId(7)));
        assert_eq!(loaded.members().cluster_id(), ClusterId(1));
    }

    #[test]
    fn a_key_naming_a_lease_the_engine_lacks_is_refused() {
        let mut sm = sm();
        let grant = Request::LeaseGrant(pb::LeaseGrantRequest { ttl: 10, id: 5 });
        apply(&mut sm, grant);
        apply(&mut sm, put("a", 5));
        sm.commit(None, false).unwrap();
        let mut batch = Batch::new();
        batch.delete_lease(5);
        let mut engine = std::mem::take(&mut sm.kv).into_engine();
        engine.commit(batch, false).unwrap();
        let error = StateMachine::from_engine(engine, 2).unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    fn alarm(action: pb::alarm_request::AlarmAction, alarm: pb::AlarmType) -> Request {
        Request::Alarm(pb::AlarmRequest {
            action: action as i32,
            member_id: 7,
            alarm: alarm as i32,
        })
    }

    fn refused(applied: &Applied) -> Option<ClientError> {
        applied
            .reply
            .as_ref()
            .and_then(|r| r.as_ref().err().cloned())
    }

    fn txn(op: pb::request_op::Request) -> Request {
        Request::Txn(pb::TxnRequest {
            failure: vec![pb::RequestOp { request: Some(op) }],
            ..Default::default()
        })
    }

    #[test]
    fn without_space_only_what_grows_the_database_is_refused() {
        use pb::alarm_request::AlarmAction;
        let mut sm = sm();
        apply(&mut sm, put("a", 0));
        apply(
            &mut sm,
            alarm(AlarmAction::Activate, pb::AlarmType::Nospace),
        );
        let nested_put = txn(pb::request_op::Request::RequestTxn(pb::TxnRequest {
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(Default::default())),
            }],
            ..Default::default()
        }));
        let grant = Request::LeaseGrant(pb::LeaseGrantRequest { ttl: 10, id: 5 });
        for request in [put("b", 0), nested_put, grant] {
            assert_eq!(
                refused(&apply(&mut sm, request)),
                Some(ClientError::NoSpace)
            );
        }
        let delete = Request::DeleteRange(pb::DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        });
        let read_txn = txn(pb::request_op::Request::RequestRange(pb::RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        }));
        let compact = Request::Compaction(pb::CompactionRequest {
            revision: 1,
            ..Default::default()
        });
        for request in [delete, read_txn, compact] {
            assert_eq!(refused(&apply(&mut sm, request)), None);
        }
        assert_eq!(sm.kv.current_revision(), 3, "the delete went through");
        apply(
            &mut sm,
            alarm(AlarmAction::Deactivate, pb::AlarmType::Nospace),
        );
        assert_eq!(refused(&apply(&mut sm, put("b", 0))), None);
    }

    #[test]
    fn a_corrupt_cluster_refuses_every_key_value_and_lease_request() {
        use pb::alarm_request::AlarmAction;
        let mut sm = sm();
        apply(
            &mut sm,
            alarm(AlarmAction::Activate, pb::AlarmType::Corrupt),
        );
        let delete = Request::DeleteRange(pb::DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        });
        let revoke = Request::LeaseRevoke(pb::LeaseRevokeRequest { id: 5 });
        for request in [put("a", 0), delete, revoke] {
            assert_eq!(
                refused(&apply(&mut sm, request)),
                Some(ClientError::Corrupt)
            );
        }
        let listed = apply(&mut sm, alarm(AlarmAction::Get, pb::AlarmType::None));
        assert!(matches!(
            listed.reply,
            Some(Ok(ClientResponse::Alarm(ref response))) if response.alarms.len() == 1
        ));
    }

    #[test]
    fn alarms_survive_a_restart_and_a_snapshot() {
        use pb::alarm_request::AlarmAction;
        let mut sm = sm();
        apply(
            &mut sm,
            alarm(AlarmAction::Activate, pb::AlarmType::Nospace),
        );
        let raised = sm.alarms().clone();
        let bytes = sm.to_snapshot_bytes().unwrap();
        let loaded = reload(&mut sm);
        assert_eq!(loaded.alarms(), &raised);
        let restored = StateMachine::from_snapshot_bytes(&bytes, 2).unwrap();
        assert_eq!(restored.alarms(), &raised);
        assert!(restored.alarms().no_space());
    }

    /// Applies auth requests as root would before enabling: root (root role), alice with role
    /// `a` (readwrite on prefix "a"), then enables authentication.
    fn with_auth(sm: &mut StateMachine) {
        let add = |name: &str| {
            Request::AuthUserAdd(pb::AuthUserAddRequest {
                name: name.into(),
                hashed_password: "$2a$04$hash".into(),
                ..Default::default()
            })
        };
        let grant = |user: &str, role: &str| {
            Request::AuthUserGrantRole(pb::AuthUserGrantRoleRequest {
                user: user.into(),
                role: role.into(),
            })
        };
        let permission = Request::AuthRoleGrantPermission(pb::AuthRoleGrantPermissionRequest {
            name: "a".into(),
            perm: Some(crate::proto::authpb::Permission {
                perm_type: crate::proto::authpb::permission::Type::Readwrite as i32,
                key: b"a".to_vec(),
                range_end: b"b".to_vec(),
            }),
        });
        let role = Request::AuthRoleAdd(pb::AuthRoleAddRequest { name: "a".into() });
        for request in [
            add("root"),
            grant("root", "root"),
            add("alice"),
            role,
            permission,
            grant("alice", "a"),
            Request::AuthEnable(Default::default()),
        ] {
            let applied = apply(sm, request);
            assert!(matches!(applied.reply, Some(Ok(_))), "{:?}", applied.reply);
        }
    }

    fn alice(sm: &StateMachine) -> AuthInfo {
        AuthInfo {
            user: "alice".into(),
            revision: sm.auth().revision(),
        }
    }

    fn apply_as(sm: &mut StateMachine, request: Request, who: Option<&AuthInfo>) -> Applied {
        sm.apply(request, who, Instant::from_micros(0), true)
    }

    #[test]
    fn with_auth_enabled_each_write_needs_its_permission_at_apply() {
        let mut sm = sm();
        with_auth(&mut sm);
        let alice = alice(&sm);
        assert!(refused(&apply_as(&mut sm, put("a1", 0), Some(&alice))).is_none());
        assert_eq!(
            refused(&apply_as(&mut sm, put("b1", 0), Some(&alice))),
            Some(ClientError::Auth(AuthError::PermissionDenied))
        );
        assert_eq!(
            refused(&apply_as(&mut sm, put("a2", 0), None)),
            Some(ClientError::Auth(AuthError::UserEmpty))
        );
        let outside = txn(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: b"b2".to_vec(),
            ..Default::default()
        }));
        assert_eq!(
            refused(&apply_as(&mut sm, outside, Some(&alice))),
            Some(ClientError::Auth(AuthError::PermissionDenied)),
            "a branch that does not run is checked too"
        );
        assert_eq!(
            sm.kv.current_revision(),
            2,
            "only the permitted put applied"
        );
    }

    #[test]
    fn a_token_older_than_an_auth_change_is_refused() {
        let mut sm = sm();
        with_auth(&mut sm);
        let before = alice(&sm);
        let role = Request::AuthRoleAdd(pb::AuthRoleAddRequest { name: "b".into() });
        let root = AuthInfo {
            user: "root".into(),
            revision: sm.auth().revision(),
        };
        assert!(refused(&apply_as(&mut sm, role, Some(&root))).is_none());
        assert_eq!(
            refused(&apply_as(&mut sm, put("a1", 0), Some(&before))),
            Some(ClientError::Auth(AuthError::AuthOldRevision))
        );
        let role = Request::AuthRoleAdd(pb::AuthRoleAddRequest { name: "c".into() });
        let now = alice(&sm);
        assert_eq!(
            refused(&apply_as(&mut sm, role, Some(&now))),
            Some(ClientError::Auth(AuthError::PermissionDenied)),
            "only root administers"
        );
    }

    #[test]
    fn an_expired_lease_is_revoked_whoever_may_write_its_keys() {
        let mut sm = sm();
        let grant = Request::LeaseGrant(pb::LeaseGrantRequest { ttl: 10, id: 5 });
        apply(&mut sm, grant);
        apply(&mut sm, put("z", 5));
        with_auth(&mut sm);
        let revoke = || Request::LeaseRevoke(pb::LeaseRevokeRequest { id: 5 });
        let alice = alice(&sm);
        assert_eq!(
            refused(&apply_as(&mut sm, revoke(), Some(&alice))),
            Some(ClientError::Auth(AuthError::PermissionDenied))
        );
        let internal = sm.apply_internal(revoke(), Instant::from_micros(0), true);
        assert!(refused(&internal).is_none());
        assert_eq!(internal.events.len(), 1, "its key was deleted");
    }

    #[test]
    fn logins_and_ended_sessions_reach_every_member_as_token_changes() {
        let mut sm = sm();
        with_auth(&mut sm);
        let login = |checked_revision| {
            Request::Authenticate(stetpb::Authenticate {
                name: "alice".into(),
                simple_token: "abc.1".into(),
                checked_revision,
            })
        };
        let now = sm.auth().revision().0;
        let applied = apply(&mut sm, login(now));
        assert!(
            matches!(applied.tokens, Some(TokenChange::Issued { ref token, .. }) if token == "abc.1")
        );
        let stale = apply(&mut sm, login(now - 1));
        assert_eq!(
            refused(&stale),
            Some(ClientError::Auth(AuthError::AuthOldRevision))
        );
        assert_eq!(stale.tokens, None);
        let root = AuthInfo {
            user: "root".into(),
            revision: sm.auth().revision(),
        };
        let delete = Request::AuthUserDelete(pb::AuthUserDeleteRequest {
            name: "alice".into(),
        });
        let deleted = apply_as(&mut sm, delete, Some(&root));
        assert_eq!(
            deleted.tokens,
            Some(TokenChange::ForgetUser("alice".into()))
        );
    }

    #[test]
    fn the_auth_store_survives_a_restart_and_a_snapshot() {
        let mut sm = sm();
        with_auth(&mut sm);
        let auth = sm.auth().clone();
        let bytes = sm.to_snapshot_bytes().unwrap();
        let loaded = reload(&mut sm);
        assert_eq!(loaded.auth(), &auth);
        let restored = StateMachine::from_snapshot_bytes(&bytes, 2).unwrap();
        assert_eq!(restored.auth(), &auth);
        assert!(restored.auth().is_enabled());
    }

    proptest! {
        #[test]
        fn arbitrary_snapshot_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = StateMachine::from_snapshot_bytes(&bytes, 2);
        }

        #[test]
        fn arbitrary_committed_entries_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut sm = sm();
            if let Ok(request) = stetpb::InternalRequest::decode(&bytes[..]) {
                if let Some(body) = request.request {
                    let _ = sm.apply(body, None, Instant::from_micros(0), true);
                }
            }
        }
    }
}
