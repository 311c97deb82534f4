//! Applying committed entries on a node: normal entries go to the state machine (and their events
//! to the watch hub), conf changes to the membership and to raft's configuration.

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};
use raft::StateRole;

use super::request::{ClientError, ClientResponse};
use super::{Node, Output};
use crate::auth::AuthInfo;
use crate::member::{MemberError, Membership};
use crate::proto::etcdserverpb as pb;
use crate::proto::stetpb;
use crate::types::MemberId;

impl Node {
    /// Applies committed entries in order. Entries at or below the applied index are skipped (they
    /// are already in the state, e.g. restored from a snapshot).
    pub(super) fn apply_entries(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            if self.removed || self.failed {
                return;
            }
            if entry.index <= self.applied_index {
                continue;
            }
            assert_eq!(
                entry.index,
                self.applied_index + 1,
                "committed entries must be applied in order without gaps"
            );
            assert!(
                entry.index <= self.raw.raft.raft_log.committed,
                "entry {} applied beyond the commit index {}",
                entry.index,
                self.raw.raft.raft_log.committed
            );
            match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&entry),
                EntryType::EntryConfChange => self.apply_conf_change(&entry),
                EntryType::EntryConfChangeV2 => {}
            }
            self.applied_index = entry.index;
        }
    }

    fn apply_normal(&mut self, entry: &Entry) {
        if entry.data.is_empty() {
            return; // a new leader's empty entry
        }
        // A committed entry that does not decode is identical on every member (they all hold the
        // same bytes), so skipping it keeps replicas in agreement.
        let Ok(request) = stetpb::InternalRequest::decode(&entry.data[..]) else {
            return;
        };
        let Some(mut body) = request.request else {
            return;
        };
        if self.config.self_test_corrupt_applied_puts {
            if let stetpb::internal_request::Request::Put(put) = &mut body {
                put.value.push(b'!');
            }
        }
        let physical_compaction = matches!(
            &body,
            stetpb::internal_request::Request::Compaction(compact) if compact.physical
        );
        let is_leader = self.role == StateRole::Leader;
        let revision_before = self.state.kv.current_revision();
        // The events go to the watchers right after: read replaced values only if one wants them.
        let prev_values = self.watches.wants_prev_values();
        self.state.kv.set_prev_values_in_events(prev_values);
        let requester = request.requester.map(AuthInfo::from);
        // Only members propose without an origin: an expired lease's revoke, an alarm.
        let (now, requester) = (self.now, requester.as_ref());
        let applied = if request.origin == 0 {
            self.state.apply_internal(body, now, is_leader)
        } else if self.config.self_test_ignore_permissions {
            self.state
                .apply_ignoring_permissions(body, requester, now, is_leader)
        } else {
            self.state.apply(body, requester, now, is_leader)
        };
        if self.stopped_on_storage_failure() {
            return;
        }
        if let Some(change) = applied.tokens {
            self.outputs.push_back(Output::Tokens(change));
        }
        if !applied.events.is_empty() {
            let revision = self.state.kv.current_revision();
            assert!(revision > revision_before, "events without a new revision");
            for (stream, response) in self.watches.notify(&applied.events, revision) {
                self.emit_watch(stream, response);
            }
        }
        if request.origin == self.config.id.0 && request.incarnation == self.incarnation {
            match applied.reply {
                Some(reply) if physical_compaction => {
                    self.hold_physical_compaction(request.id, reply)
                }
                Some(reply) => self.complete(request.id, reply),
                None => {}
            }
        }
    }

    fn apply_conf_change(&mut self, entry: &Entry) {
        let Ok(change) = ConfChange::parse_from_bytes(&entry.data) else {
            return;
        };
        let context = stetpb::ConfChangeContext::decode(&change.context[..]).unwrap_or_default();
        let member_id = MemberId(change.node_id);
        // Membership and raft must accept the change together: try it on a copy of the membership
        // first. A refusal is the same on every member (same entry, same state), so it is answered
        // as an error rather than stopping the member.
        let mut members = self.state.members().clone();
        let result = apply_membership(&mut members, &change, &context)
            .map_err(ClientError::from)
            .and_then(|()| {
                self.raw
                    .apply_conf_change(&change)
                    .map_err(|_| ClientError::NotEnoughStartedMembers)
            })
            .map(|conf_state| {
                self.raw.mut_store().set_conf_state(conf_state);
                self.state.set_members(members);
            });
        if context.origin == self.config.id.0 && context.incarnation == self.incarnation {
            let reply = result.map(|()| self.membership_reply(&change, &context));
            self.complete(context.id, reply);
        }
        if change.get_change_type() == ConfChangeType::RemoveNode && member_id == self.config.id {
            self.removed = true;
            self.outputs.push_back(Output::Removed);
        }
    }

    fn membership_reply(
        &self,
        change: &ConfChange,
        context: &stetpb::ConfChangeContext,
    ) -> ClientResponse {
        let members = self.state.members().list();
        match change.get_change_type() {
            ConfChangeType::RemoveNode => ClientResponse::MemberRemove(pb::MemberRemoveResponse {
                members,
                ..Default::default()
            }),
            ConfChangeType::AddNode if context.promote => {
                ClientResponse::MemberPromote(pb::MemberPromoteResponse {
                    members,
                    ..Default::default()
                })
            }
            _ => ClientResponse::MemberAdd(pb::MemberAddResponse {
                member: self
                    .state
                    .members()
                    .get(MemberId(change.node_id))
                    .cloned()
                    .or_else(|| context.member.clone()),
                members,
                ..Default::default()
            }),
        }
    }

    /// On the leader: proposes one revoke for each lease whose time ran out.
    pub(super) fn revoke_expired_leases(&mut self) {
        let expired = self.state.lessor.expired(self.now, 16);
        for id in expired {
            let entry = stetpb::InternalRequest {
                id: 0,
                origin: 0,
                incarnation: 0,
                requester: None,
                request: Some(stetpb::internal_request::Request::LeaseRevoke(
                    pb::LeaseRevokeRequest { id },
                )),
            };
            // A dropped proposal is retried once the lessor offers the lease again.
            let _ = self.raw.propose(Vec::new(), entry.encode_to_vec());
        }
    }
}

/// Applies a conf change to a membership table.
pub(super) fn apply_membership(
    members: &mut Membership,
    change: &ConfChange,
    context: &stetpb::ConfChangeContext,
) -> Result<(), MemberError> {
    let id = MemberId(change.node_id);
    match change.get_change_type() {
        ConfChangeType::AddNode if context.promote => members.promote(id),
        ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
            let member = context.member.clone().unwrap_or(pb::Member {
                id: change.node_id,
                ..Default::default()
            });
            members.add(member)
        }
        ConfChangeType::RemoveNode => members.remove(id).map(|_| ()),
    }
}
