//! One request over etcd's gRPC API, as the simulated clients send them: a `ClientRequest` goes out
//! through the generated tonic client of its service, and the answer (or the gRPC status) comes
//! back as a `ClientResponse` (or a `ClientError` read off etcd's message), so the clients and
//! checkers keep speaking the core's types while every byte passes through the real services.
//! `range_stream` is the one server-streaming call made for its own sake: `KV.RangeStream`'s
//! chunks, as they came.

use futures::stream;
use tonic::transport::Channel;
use tonic::{Code, Status};

use stet::lease::LeaseError;
use stet::node::request::GrpcCode;
use stet::node::{ClientError, ClientRequest, ClientResponse};
use stet::proto::etcdserverpb::{
    cluster_client::ClusterClient, kv_client::KvClient, lease_client::LeaseClient,
    maintenance_client::MaintenanceClient, RangeRequest, RangeStreamResponse,
};

/// Sends a unary request (a lease keep-alive as a stream of one) and waits for the answer.
pub async fn call(channel: Channel, request: ClientRequest) -> Result<ClientResponse, ClientError> {
    use ClientRequest as Q;
    use ClientResponse as R;
    match request {
        Q::Range(r) => Ok(R::Range(answer(KvClient::new(channel).range(r).await)?)),
        Q::Put(r) => Ok(R::Put(answer(KvClient::new(channel).put(r).await)?)),
        Q::DeleteRange(r) => Ok(R::DeleteRange(answer(
            KvClient::new(channel).delete_range(r).await,
        )?)),
        Q::Txn(r) => Ok(R::Txn(answer(KvClient::new(channel).txn(r).await)?)),
        Q::Compact(r) => Ok(R::Compact(answer(KvClient::new(channel).compact(r).await)?)),
        Q::LeaseGrant(r) => Ok(R::LeaseGrant(answer(
            LeaseClient::new(channel).lease_grant(r).await,
        )?)),
        Q::LeaseRevoke(r) => Ok(R::LeaseRevoke(answer(
            LeaseClient::new(channel).lease_revoke(r).await,
        )?)),
        Q::LeaseTimeToLive(r) => Ok(R::LeaseTimeToLive(answer(
            LeaseClient::new(channel).lease_time_to_live(r).await,
        )?)),
        Q::LeaseLeases(r) => Ok(R::LeaseLeases(answer(
            LeaseClient::new(channel).lease_leases(r).await,
        )?)),
        Q::LeaseKeepAlive(r) => keep_alive(channel, r).await,
        Q::MemberAdd(r) => Ok(R::MemberAdd(answer(
            ClusterClient::new(channel).member_add(r).await,
        )?)),
        Q::MemberRemove(r) => Ok(R::MemberRemove(answer(
            ClusterClient::new(channel).member_remove(r).await,
        )?)),
        Q::MemberUpdate(r) => Ok(R::MemberUpdate(answer(
            ClusterClient::new(channel).member_update(r).await,
        )?)),
        Q::MemberList(r) => Ok(R::MemberList(answer(
            ClusterClient::new(channel).member_list(r).await,
        )?)),
        Q::MemberPromote(r) => Ok(R::MemberPromote(answer(
            ClusterClient::new(channel).member_promote(r).await,
        )?)),
        Q::HashKv(r) => Ok(R::HashKv(answer(
            MaintenanceClient::new(channel).hash_kv(r).await,
        )?)),
        Q::Defragment(r) => Ok(R::Defragment(answer(
            MaintenanceClient::new(channel).defragment(r).await,
        )?)),
        Q::Alarm(r) => Ok(R::Alarm(answer(
            MaintenanceClient::new(channel).alarm(r).await,
        )?)),
        other => Err(ClientError::Forwarded {
            code: GrpcCode::InvalidArgument,
            message: format!("the simulator sends no {other:?} as a unary request"),
        }),
    }
}

/// A lease keep-alive: a stream with one request, and its first answer.
async fn keep_alive(
    channel: Channel,
    request: stet::proto::etcdserverpb::LeaseKeepAliveRequest,
) -> Result<ClientResponse, ClientError> {
    let mut client = LeaseClient::new(channel);
    let mut responses = answer(client.lease_keep_alive(stream::iter([request])).await)?;
    match responses.message().await {
        Ok(Some(response)) => Ok(ClientResponse::LeaseKeepAlive(response)),
        Ok(None) => Err(error_of(&Status::unavailable(
            "the keep-alive stream ended without an answer",
        ))),
        Err(status) => Err(error_of(&status)),
    }
}

/// `KV.RangeStream`: every chunk, once the stream ended cleanly (its trailers said OK). A stream
/// refused, or failed after some chunks (an error status, a lost connection), is that error and
/// how many chunks had come: the chunks are dropped, never taken for the whole answer.
pub async fn range_stream(
    channel: Channel,
    request: RangeRequest,
) -> Result<Vec<RangeStreamResponse>, (ClientError, usize)> {
    let mut responses = KvClient::new(channel)
        .range_stream(request)
        .await
        .map_err(|status| (error_of(&status), 0))?
        .into_inner();
    let mut chunks = Vec::new();
    loop {
        match responses.message().await {
            Ok(Some(chunk)) => chunks.push(chunk),
            Ok(None) => return Ok(chunks),
            Err(status) => return Err((error_of(&status), chunks.len())),
        }
    }
}

fn answer<T>(result: Result<tonic::Response<T>, Status>) -> Result<T, ClientError> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| error_of(&status))
}

/// The error an etcd client reads off a gRPC status: etcd's message names it.
pub fn error_of(status: &Status) -> ClientError {
    let message = status.message();
    let known = [
        ClientError::Timeout,
        ClientError::Stopped,
        ClientError::NoLeader,
        ClientError::LearnerNotReady,
        ClientError::NotEnoughStartedMembers,
        ClientError::TooManyRequests,
        ClientError::RequestTooLarge,
        ClientError::TooManyTxnOps,
        ClientError::Lease(LeaseError::NotFound),
    ];
    if let Some(error) = known.into_iter().find(|e| e.to_string() == message) {
        return error;
    }
    let code = match status.code() {
        Code::InvalidArgument => GrpcCode::InvalidArgument,
        Code::DeadlineExceeded => GrpcCode::DeadlineExceeded,
        Code::NotFound => GrpcCode::NotFound,
        Code::AlreadyExists => GrpcCode::AlreadyExists,
        Code::ResourceExhausted => GrpcCode::ResourceExhausted,
        Code::FailedPrecondition => GrpcCode::FailedPrecondition,
        Code::OutOfRange => GrpcCode::OutOfRange,
        Code::DataLoss => GrpcCode::DataLoss,
        // Unavailable, and whatever the transport says when a connection is refused or lost.
        _ => GrpcCode::Unavailable,
    };
    ClientError::Forwarded {
        code,
        message: message.to_string(),
    }
}

/// Whether a write that failed with `error` certainly had no effect: the member refused it before
/// proposing it (it was malformed, too large, too many, or its lease or compared revision is
/// gone). A timeout, a stopped member or a lost connection leave the write's fate open.
pub fn refused_before_proposal(error: &ClientError) -> bool {
    match error {
        ClientError::Timeout | ClientError::Stopped => false,
        ClientError::Forwarded { code, .. } => *code != GrpcCode::Unavailable,
        _ => true,
    }
}
