//! What the member runtime tells the outside about itself and about failed requests: the member's
//! status as the driver last published it (health, metrics, `Status`, response headers), and
//! etcd's gRPC status for a `ClientError`. A leaf: it imports nothing else of the runtime.

use tonic::Status;

use crate::kv::KvError;
use crate::node::ClientError;
use crate::proto::etcdserverpb as pb;

/// The member's state as last seen by the driver, for health checks, metrics and `Status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberStatus {
    pub member_id: u64,
    pub cluster_id: u64,
    pub leader: Option<u64>,
    pub is_leader: bool,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: i64,
    pub key_count: usize,
    pub is_learner: bool,
    pub leader_changes: u64,
    /// The storage engine file's length (etcd's `Backend().Size()`).
    pub db_size: u64,
    /// The part of the engine file holding live data (etcd's `Backend().SizeInUse()`).
    pub db_size_in_use: u64,
    /// Writes proposed and not yet applied or failed.
    pub proposals_pending: u64,
    /// Writes that failed for want of a leader or time (etcd's failed proposals).
    pub proposals_failed: u64,
    /// The raised alarms as `Status.errors` lists them.
    pub alarms: Vec<String>,
    /// The auth store's revision (etcd's `etcd_debugging_auth_revision`).
    pub auth_revision: u64,
    pub stopped: bool,
}

impl MemberStatus {
    /// `Status.errors` as etcd fills it: "no leader" without one, then every raised alarm.
    pub fn errors(&self) -> Vec<String> {
        let no_leader = self
            .leader
            .is_none()
            .then(|| "etcdserver: no leader".to_string());
        no_leader
            .into_iter()
            .chain(self.alarms.iter().cloned())
            .collect()
    }

    /// The header of a response this member answers now.
    pub fn header(&self) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision: self.revision,
            raft_term: self.term,
        }
    }
}

/// The gRPC status etcd answers `error` with.
pub fn to_status(error: &ClientError) -> Status {
    let code = tonic::Code::from_i32(error.grpc_code() as i32);
    let message = match error {
        // etcd's rpctypes prefix the store's own messages.
        ClientError::Kv(KvError::Compacted { .. } | KvError::FutureRevision) => {
            format!("etcdserver: {error}")
        }
        _ => error.to_string(),
    };
    Status::new(code, message)
}
