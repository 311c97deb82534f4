//! What clients ask a node and what it answers: requests, responses and errors with etcd's
//! messages. The adapter maps `ClientError::grpc_code` onto gRPC status codes.

use crate::auth::{AuthError, AuthResponse};
use crate::kv::{HashProgress, KvError, ValueReads};
use crate::lease::LeaseError;
use crate::member::MemberError;
use crate::proto::etcdserverpb as pb;
use crate::types::MemberId;
use crate::watch::StreamId;

/// A driver-chosen identifier for one client request; replies carry it back.
pub type RequestId = u64;

/// A request from a client to this member.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequest {
    Range(pb::RangeRequest),
    /// A part of a range the runtime reads in parts (`server::range_stream`): the first one,
    /// read as asked (linearizable unless `serializable`), or a later one at the revision the
    /// first pinned, serializable. Its count counts only the keys walked
    /// (`KvStore::range_part`); a count-only one with a limit is a count part, which spends at
    /// most that much (a key of the index walked, or a stretch of it counted whole, costs one;
    /// `KvStore::count_part`). Answered as a `Range`.
    RangePart(pb::RangeRequest),
    Put(pb::PutRequest),
    DeleteRange(pb::DeleteRangeRequest),
    Txn(pb::TxnRequest),
    Compact(pb::CompactionRequest),
    LeaseGrant(pb::LeaseGrantRequest),
    LeaseRevoke(pb::LeaseRevokeRequest),
    LeaseKeepAlive(pb::LeaseKeepAliveRequest),
    LeaseTimeToLive(pb::LeaseTimeToLiveRequest),
    LeaseLeases(pb::LeaseLeasesRequest),
    MemberAdd(pb::MemberAddRequest),
    MemberRemove(pb::MemberRemoveRequest),
    MemberUpdate(pb::MemberUpdateRequest),
    MemberList(pb::MemberListRequest),
    MemberPromote(pb::MemberPromoteRequest),
    /// The hash of the key-value history. The runtime never sends it to the node: the driver's
    /// handle hashes in steps (`HashKvStep`), so a large history does not stall the node.
    HashKv(pb::HashKvRequest),
    /// One step of a `HashKv`: from `progress` (`None` to begin), at most the node's
    /// `hash_kv_step_entries` index entries.
    HashKvStep {
        revision: i64,
        progress: Option<HashProgress>,
    },
    /// List, raise or clear alarms (through raft, as etcd does for every action).
    Alarm(pb::AlarmRequest),
    /// Rewrite this member's storage engine file compactly (not replicated: each member's own).
    Defragment(pb::DefragmentRequest),
    /// One of the auth store's requests (`auth::is_auth_request`), through raft as in etcd;
    /// passwords already hashed, a login's password already checked.
    Auth(crate::proto::stetpb::internal_request::Request),
    /// This member's own name and client URLs, replicated into the membership once it runs (etcd
    /// publishes its attributes the same way).
    MemberPublish {
        name: String,
        client_urls: Vec<String>,
    },
    /// Open a watch on a watch stream; responses arrive as `Output::Watch`.
    WatchCreate {
        stream: StreamId,
        request: pb::WatchCreateRequest,
    },
    WatchCancel {
        stream: StreamId,
        watch_id: i64,
    },
    WatchProgress {
        stream: StreamId,
    },
    /// The client went away: drop every watch of the stream.
    WatchClose {
        stream: StreamId,
    },
    /// Event and progress responses the stream's channel had no room for, in order: its
    /// watchers fall back to history (from the runtime's delivery, never from a client).
    WatchUndelivered {
        stream: StreamId,
        responses: Vec<pb::WatchResponse>,
    },
    /// The stream has room for `budget` responses: send a lagging stream's next events from
    /// history (from the runtime's delivery).
    WatchCatchUp {
        stream: StreamId,
        budget: usize,
    },
}

impl ClientRequest {
    /// Whether only the leader can answer the request (it reads the leader's lease clock or
    /// progress). A follower answers `NotLeader`, and the runtime forwards it to the leader.
    pub fn leader_only(&self) -> bool {
        matches!(
            self,
            ClientRequest::LeaseKeepAlive(_)
                | ClientRequest::LeaseTimeToLive(_)
                | ClientRequest::LeaseLeases(_)
                | ClientRequest::MemberPromote(_)
        )
    }
}

/// A successful answer, with its response header filled in.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientResponse {
    Range(pb::RangeResponse),
    /// A part of a range read in parts (`ClientRequest::RangePart`), whose values of committed
    /// versions are still to read: `ValueReads::read_into` its key-values, off the driver.
    RangePart(pb::RangeResponse, ValueReads),
    Put(pb::PutResponse),
    DeleteRange(pb::DeleteRangeResponse),
    Txn(pb::TxnResponse),
    Compact(pb::CompactionResponse),
    LeaseGrant(pb::LeaseGrantResponse),
    LeaseRevoke(pb::LeaseRevokeResponse),
    LeaseKeepAlive(pb::LeaseKeepAliveResponse),
    LeaseTimeToLive(pb::LeaseTimeToLiveResponse),
    LeaseLeases(pb::LeaseLeasesResponse),
    MemberAdd(pb::MemberAddResponse),
    MemberRemove(pb::MemberRemoveResponse),
    MemberUpdate(pb::MemberUpdateResponse),
    MemberList(pb::MemberListResponse),
    MemberPromote(pb::MemberPromoteResponse),
    HashKv(pb::HashKvResponse),
    /// The answer to one `HashKvStep`: the hash when it is done (its header names the revision
    /// current when the hash began, as etcd's does), else where the next step starts.
    HashKvStep(HashKvStepped),
    Alarm(pb::AlarmResponse),
    Defragment(pb::DefragmentResponse),
    Auth(AuthResponse),
    /// Done, with nothing to say: watch control requests (their answers arrive as
    /// `Output::Watch`) and internal commands such as member attribute updates.
    Accepted,
}

/// What one step of a hash answers.
#[derive(Debug, Clone, PartialEq)]
pub enum HashKvStepped {
    Done(pb::HashKvResponse),
    More(HashProgress),
}

/// Why a request failed. Display strings are etcd's, so clients recognise them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Member(#[from] MemberError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("etcdserver: no leader")]
    NoLeader,
    /// Only the leader can answer this (lease keep-alive, time-to-live, promote); the driver
    /// forwards it to `leader` when known.
    #[error("etcdserver: not leader")]
    NotLeader { leader: Option<MemberId> },
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: too many operations in txn request")]
    TooManyTxnOps,
    #[error("etcdserver: server stopped")]
    Stopped,
    /// An error the leader answered a forwarded request with: its gRPC code and etcd's message.
    #[error("{message}")]
    Forwarded { code: GrpcCode, message: String },
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// The database is past its space quota (a NOSPACE alarm is raised).
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A CORRUPT alarm is raised: the cluster's data cannot be trusted.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// Defragmenting the engine's file failed; it still holds the whole state.
    #[error("etcdserver: defragment failed: {0}")]
    Defragment(String),
}

/// The subset of gRPC status codes etcd uses for its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcCode {
    /// etcd's answer to an error it has no gRPC error for (a no-password user's login).
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    OutOfRange = 11,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The code's name as gRPC's Go library spells it in `rpc error: code = … desc = …`.
    pub fn name(self) -> &'static str {
        use GrpcCode::*;
        match self {
            Unknown => "Unknown",
            InvalidArgument => "InvalidArgument",
            DeadlineExceeded => "DeadlineExceeded",
            NotFound => "NotFound",
            AlreadyExists => "AlreadyExists",
            PermissionDenied => "PermissionDenied",
            ResourceExhausted => "ResourceExhausted",
            FailedPrecondition => "FailedPrecondition",
            OutOfRange => "OutOfRange",
            Unavailable => "Unavailable",
            DataLoss => "DataLoss",
            Unauthenticated => "Unauthenticated",
        }
    }

    /// The code with this number, if etcd uses it.
    pub fn from_u32(code: u32) -> Option<GrpcCode> {
        use GrpcCode::*;
        [
            Unknown,
            InvalidArgument,
            DeadlineExceeded,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            ResourceExhausted,
            FailedPrecondition,
            OutOfRange,
            Unavailable,
            DataLoss,
            Unauthenticated,
        ]
        .into_iter()
        .find(|c| *c as u32 == code)
    }
}

impl ClientError {
    /// The gRPC status code etcd answers this error with.
    pub fn grpc_code(&self) -> GrpcCode {
        use GrpcCode::*;
        match self {
            ClientError::Kv(KvError::Compacted { .. } | KvError::FutureRevision) => OutOfRange,
            ClientError::Kv(KvError::LeaseNotFound) => NotFound,
            ClientError::Kv(KvError::CorruptSnapshot(_)) => DataLoss,
            ClientError::Kv(_) => InvalidArgument,
            ClientError::Lease(LeaseError::NotFound) => NotFound,
            ClientError::Lease(LeaseError::AlreadyExists) => FailedPrecondition,
            ClientError::Lease(_) => OutOfRange,
            ClientError::Member(MemberError::IdNotFound) => NotFound,
            ClientError::Member(
                MemberError::IdExists | MemberError::PeerUrlExists | MemberError::IdRemoved,
            ) => FailedPrecondition,
            ClientError::Member(MemberError::Corrupt(_)) => DataLoss,
            ClientError::Member(_) => FailedPrecondition,
            ClientError::Auth(error) => error.grpc_code(),
            ClientError::NoLeader
            | ClientError::NotLeader { .. }
            | ClientError::Timeout
            | ClientError::Stopped => Unavailable,
            ClientError::TooManyRequests => ResourceExhausted,
            ClientError::RequestTooLarge | ClientError::TooManyTxnOps => InvalidArgument,
            ClientError::Forwarded { code, .. } => *code,
            ClientError::LearnerNotReady | ClientError::NotEnoughStartedMembers => {
                FailedPrecondition
            }
            ClientError::NoSpace => ResourceExhausted,
            ClientError::Defragment(_) => Unavailable,
            ClientError::Corrupt => DataLoss,
        }
    }
}

impl ClientResponse {
    /// The response header, for drivers that need to read or adjust it.
    pub fn header_mut(&mut self) -> Option<&mut pb::ResponseHeader> {
        let header = match self {
            ClientResponse::Range(r) | ClientResponse::RangePart(r, _) => &mut r.header,
            ClientResponse::Put(r) => &mut r.header,
            ClientResponse::DeleteRange(r) => &mut r.header,
            ClientResponse::Txn(r) => &mut r.header,
            ClientResponse::Compact(r) => &mut r.header,
            ClientResponse::LeaseGrant(r) => &mut r.header,
            ClientResponse::LeaseRevoke(r) => &mut r.header,
            ClientResponse::LeaseKeepAlive(r) => &mut r.header,
            ClientResponse::LeaseTimeToLive(r) => &mut r.header,
            ClientResponse::LeaseLeases(r) => &mut r.header,
            ClientResponse::MemberAdd(r) => &mut r.header,
            ClientResponse::MemberRemove(r) => &mut r.header,
            ClientResponse::MemberUpdate(r) => &mut r.header,
            ClientResponse::MemberList(r) => &mut r.header,
            ClientResponse::MemberPromote(r) => &mut r.header,
            ClientResponse::HashKv(r) => &mut r.header,
            // A finished hash carries the revision it was taken at, not the current one.
            ClientResponse::HashKvStep(_) => return None,
            ClientResponse::Alarm(r) => &mut r.header,
            ClientResponse::Defragment(r) => &mut r.header,
            ClientResponse::Auth(r) => r.header_mut()?,
            ClientResponse::Accepted => return None,
        };
        Some(header.get_or_insert_with(Default::default))
    }
}
