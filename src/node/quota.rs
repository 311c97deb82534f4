//! The space quota (etcd's `--quota-backend-bytes`): a write that would take the storage engine's
//! file past the quota is refused with NOSPACE, and the member raises a NOSPACE alarm through raft,
//! which makes every member refuse writes that grow the database until an operator compacts,
//! defragments and disarms it — as etcd does.
//!
//! The check on the request path uses the serving member's own file and etcd's costs (a put: its
//! key and value plus 256 bytes; a transaction: the larger branch's puts; a lease grant: 64
//! bytes). Beyond etcd, every member also checks its own file on each tick and raises the alarm
//! when it is past the quota, so a member no client talks to cannot fill its disk unnoticed; and a
//! put nested in a transaction counts.

use prost::Message as _;
use raft::StateRole;

use super::request::{ClientError, ClientRequest};
use super::Node;
use crate::proto::etcdserverpb as pb;
use crate::proto::stetpb::{self, internal_request::Request};

/// What a put costs beyond its key and value (etcd's `kvOverhead`).
const PUT_OVERHEAD_BYTES: u64 = 256;
/// What a lease grant costs (etcd's `leaseOverhead`).
const LEASE_GRANT_BYTES: u64 = 64;

/// The bytes a request may add to the database; zero for one that cannot grow it.
pub fn cost_bytes(request: &ClientRequest) -> u64 {
    match request {
        ClientRequest::Put(put) => put_cost_bytes(put),
        ClientRequest::Txn(txn) => txn_cost_bytes(txn),
        ClientRequest::LeaseGrant(_) => LEASE_GRANT_BYTES,
        _ => 0,
    }
}

fn put_cost_bytes(put: &pb::PutRequest) -> u64 {
    PUT_OVERHEAD_BYTES + put.key.len() as u64 + put.value.len() as u64
}

/// The larger branch's puts, nested transactions included.
fn txn_cost_bytes(txn: &pb::TxnRequest) -> u64 {
    let branch = |ops: &[pb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(pb::request_op::Request::RequestPut(put)) => put_cost_bytes(put),
                Some(pb::request_op::Request::RequestTxn(inner)) => txn_cost_bytes(inner),
                _ => 0,
            })
            .sum()
    };
    branch(&txn.success).max(branch(&txn.failure))
}

impl Node {
    /// NOSPACE if `request` would take this member's file past the quota; the alarm is raised.
    pub(super) fn check_quota(&mut self, request: &ClientRequest) -> Result<(), ClientError> {
        let Some(quota_bytes) = self.config.quota_backend_bytes else {
            return Ok(());
        };
        let cost = cost_bytes(request);
        if cost == 0 || self.db_size_bytes().saturating_add(cost) < quota_bytes {
            return Ok(());
        }
        self.raise_no_space();
        Err(ClientError::NoSpace)
    }

    /// On every tick: raises the alarm if this member's file is already past the quota.
    pub(super) fn check_own_file_against_quota(&mut self) {
        let Some(quota_bytes) = self.config.quota_backend_bytes else {
            return;
        };
        if self.db_size_bytes() >= quota_bytes {
            self.raise_no_space();
        }
    }

    fn db_size_bytes(&self) -> u64 {
        self.state.kv.engine().size_bytes()
    }

    /// Proposes this member's NOSPACE alarm unless it is raised, or was proposed less than an
    /// election timeout ago (a proposal dropped without a leader is made again after that).
    fn raise_no_space(&mut self) {
        let own = pb::AlarmMember {
            member_id: self.config.id.0,
            alarm: pb::AlarmType::Nospace as i32,
        };
        if self
            .state
            .alarms()
            .list(pb::AlarmType::Nospace)
            .contains(&own)
        {
            return;
        }
        let recently = self
            .no_space_proposed_at
            .is_some_and(|at| self.now < at + self.config.election_timeout);
        if recently || self.role == StateRole::PreCandidate || self.role == StateRole::Candidate {
            return;
        }
        self.no_space_proposed_at = Some(self.now);
        let entry = stetpb::InternalRequest {
            id: 0,
            origin: 0,
            incarnation: 0,
            requester: None,
            request: Some(Request::Alarm(pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Activate as i32,
                member_id: self.config.id.0,
                alarm: pb::AlarmType::Nospace as i32,
            })),
        };
        // Dropped without a leader: raised again by the next refused write or tick.
        let _ = self.raw.propose(Vec::new(), entry.encode_to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &[u8], value: &[u8]) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn costs_are_etcds() {
        let request = ClientRequest::Put(pb::PutRequest {
            key: b"k".to_vec(),
            value: vec![0; 10],
            ..Default::default()
        });
        assert_eq!(cost_bytes(&request), 256 + 1 + 10);
        let grant = ClientRequest::LeaseGrant(pb::LeaseGrantRequest { ttl: 5, id: 0 });
        assert_eq!(cost_bytes(&grant), 64);
        let delete = ClientRequest::DeleteRange(Default::default());
        assert_eq!(cost_bytes(&delete), 0);
    }

    #[test]
    fn a_txn_costs_its_larger_branch_nested_puts_included() {
        let nested = pb::RequestOp {
            request: Some(pb::request_op::Request::RequestTxn(pb::TxnRequest {
                success: vec![put(b"c", b"cc")],
                ..Default::default()
            })),
        };
        let txn = pb::TxnRequest {
            success: vec![put(b"a", b"1")],
            failure: vec![put(b"b", b"2"), nested],
            ..Default::default()
        };
        assert_eq!(cost_bytes(&ClientRequest::Txn(txn)), (256 + 2) + (256 + 3));
        let reads = pb::TxnRequest {
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestRange(Default::default())),
            }],
            ..Default::default()
        };
        assert_eq!(cost_bytes(&ClientRequest::Txn(reads)), 0);
    }
}
