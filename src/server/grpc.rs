//! etcd's v3 gRPC services (`etcdserverpb.KV`, `Watch`, `Lease`, `Cluster`, `Maintenance`) over the
//! driver: each call becomes a `ClientRequest` and waits for its reply; errors carry etcd's gRPC
//! codes and messages, which clients match on.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::driver::{DriverHandle, MemberStatus, WATCH_STREAM_BUFFER};
use crate::kv::KvError;
use crate::lease::LeaseError;
use crate::node::{ClientError, ClientRequest, ClientResponse};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::{
    cluster_server, kv_server, lease_server, maintenance_server, watch_server,
};

/// The cluster protocol version `Status` reports (etcd's "version" field).
pub const CLUSTER_VERSION: &str = "3.4.0";

/// Keep-alive responses buffered per stream before the stream waits for the client to read.
const KEEP_ALIVE_BUFFER: usize = 16;

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

fn unexpected(response: &ClientResponse) -> Status {
    Status::internal(format!("stet: unexpected response {response:?}"))
}

fn header(status: &MemberStatus) -> pb::ResponseHeader {
    pb::ResponseHeader {
        cluster_id: status.cluster_id,
        member_id: status.member_id,
        revision: status.revision,
        raft_term: status.term,
    }
}

/// Every service shares the driver handle.
#[derive(Clone)]
pub struct Services {
    driver: DriverHandle,
    next_stream: Arc<AtomicU64>,
}

impl Services {
    pub fn new(driver: DriverHandle) -> Self {
        Services {
            driver,
            next_stream: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The gRPC routes of every service, ready to merge into the HTTP router.
    pub fn routes(&self, max_request_bytes: usize) -> tonic::service::Routes {
        // etcd accepts requests a little over --max-request-bytes at the gRPC layer and refuses
        // too-large ones itself, with its own message.
        let limit = max_request_bytes.saturating_add(512 * 1024);
        tonic::service::Routes::new(
            kv_server::KvServer::new(self.clone()).max_decoding_message_size(limit),
        )
        .add_service(watch_server::WatchServer::new(self.clone()).max_decoding_message_size(limit))
        .add_service(lease_server::LeaseServer::new(self.clone()))
        .add_service(cluster_server::ClusterServer::new(self.clone()))
        .add_service(maintenance_server::MaintenanceServer::new(self.clone()))
    }
}

/// Sends a unary request and unwraps the expected response variant.
macro_rules! unary {
    ($self:ident, $request:ident, $variant:ident) => {
        match $self
            .driver
            .call(ClientRequest::$variant($request.into_inner()))
            .await
        {
            Ok(ClientResponse::$variant(response)) => Ok(Response::new(response)),
            Ok(other) => Err(unexpected(&other)),
            Err(error) => Err(to_status(&error)),
        }
    };
}

#[tonic::async_trait]
impl kv_server::Kv for Services {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        unary!(self, request, Range)
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        unary!(self, request, Put)
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        unary!(self, request, DeleteRange)
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        unary!(self, request, Txn)
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        unary!(self, request, Compact)
    }
}

type ResponseStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl watch_server::Watch for Services {
    type WatchStream = ResponseStream<pb::WatchResponse>;

    /// One watch stream: the client's create/cancel/progress requests go to the node in order;
    /// responses come back through the driver. The stream ends when the client closes its side.
    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut inbound = request.into_inner();
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(WATCH_STREAM_BUFFER);
        self.driver
            .open_watch_stream(stream, sender.clone())
            .await
            .map_err(|e| to_status(&e))?;
        let driver = self.driver.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = inbound.message() => message,
                    _ = sender.closed() => break,
                };
                let Ok(Some(message)) = message else { break };
                let request = match message.request_union {
                    Some(pb::watch_request::RequestUnion::CreateRequest(request)) => {
                        ClientRequest::WatchCreate { stream, request }
                    }
                    Some(pb::watch_request::RequestUnion::CancelRequest(cancel)) => {
                        ClientRequest::WatchCancel {
                            stream,
                            watch_id: cancel.watch_id,
                        }
                    }
                    Some(pb::watch_request::RequestUnion::ProgressRequest(_)) => {
                        ClientRequest::WatchProgress { stream }
                    }
                    None => continue,
                };
                if let Err(error) = driver.call(request).await {
                    let _ = sender.send(Err(to_status(&error))).await;
                    break;
                }
            }
            drop(sender);
            let _ = driver.call(ClientRequest::WatchClose { stream }).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

#[tonic::async_trait]
impl lease_server::Lease for Services {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        unary!(self, request, LeaseGrant)
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        unary!(self, request, LeaseRevoke)
    }

    type LeaseKeepAliveStream = ResponseStream<pb::LeaseKeepAliveResponse>;

    /// Renews leases as the client asks. As in etcd, an unknown (or expired) lease is answered
    /// with TTL 0 rather than an error.
    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(KEEP_ALIVE_BUFFER);
        let driver = self.driver.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                let id = request.id;
                let answer = match driver.call(ClientRequest::LeaseKeepAlive(request)).await {
                    Ok(ClientResponse::LeaseKeepAlive(response)) => Ok(response),
                    Ok(other) => Err(unexpected(&other)),
                    Err(ClientError::Lease(LeaseError::NotFound)) => {
                        Ok(pb::LeaseKeepAliveResponse {
                            header: Some(header(&driver.status())),
                            id,
                            ttl: 0,
                        })
                    }
                    Err(error) => Err(to_status(&error)),
                };
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        unary!(self, request, LeaseTimeToLive)
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        unary!(self, request, LeaseLeases)
    }
}

#[tonic::async_trait]
impl cluster_server::Cluster for Services {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        unary!(self, request, MemberAdd)
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        unary!(self, request, MemberRemove)
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        unary!(self, request, MemberUpdate)
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        unary!(self, request, MemberList)
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        unary!(self, request, MemberPromote)
    }
}

#[tonic::async_trait]
impl maintenance_server::Maintenance for Services {
    /// stet raises no alarms yet (no space quota, no corruption check): every list is empty.
    async fn alarm(
        &self,
        _request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        Ok(Response::new(pb::AlarmResponse {
            header: Some(header(&self.driver.status())),
            alarms: Vec::new(),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.driver.status();
        if status.stopped {
            return Err(to_status(&ClientError::Stopped));
        }
        Ok(Response::new(pb::StatusResponse {
            header: Some(header(&status)),
            version: CLUSTER_VERSION.to_string(),
            db_size: 0,
            leader: status.leader.unwrap_or(0),
            raft_index: status.commit_index,
            raft_term: status.term,
            raft_applied_index: status.applied_index,
            errors: Vec::new(),
            db_size_in_use: 0,
            is_learner: status.is_learner,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        unary!(self, request, HashKv)
    }
}
