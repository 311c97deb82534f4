//! etcd's v3 gRPC services (`etcdserverpb.KV`, `Watch`, `Lease`, `Cluster`, `Maintenance`) over the
//! driver: each call becomes a `ClientRequest` and waits for its reply; errors carry etcd's gRPC
//! codes and messages, which clients match on.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{AuthGate, ClientCertUser, TOKEN_METADATA_KEYS};
use super::env::Limits;
use super::handle::DriverHandle;
use super::route::Router;
use super::status::{to_status, MemberStatus};
use super::watch_fragment::{FragmentWatchers, FragmentingStream};
use crate::auth::{watch_refused, AuthError, AuthInfo};
use crate::kv::ValueReads;
use crate::lease::LeaseError;
use crate::node::{ClientError, ClientRequest, ClientResponse};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::{
    auth_server, cluster_server, kv_server, lease_server, maintenance_server, watch_server,
};

/// Bytes per `SnapshotResponse` message.
const SNAPSHOT_CHUNK: usize = 64 * 1024;
/// How long MoveLeader waits for the target to lead.
const MOVE_LEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Chunks of a `RangeStream` buffered before its reads wait for the client.
const RANGE_STREAM_CHUNKS: usize = 2;

/// Keep-alive responses buffered per stream before the stream waits for the client to read.
const KEEP_ALIVE_BUFFER: usize = 16;

/// The size parts of a unary range read in parts grow towards (at least half
/// `--max-request-bytes`, as `RangeStream`'s chunks). Its parts are merged, not sent one by one,
/// so they can be larger than a message: fewer parts queue behind other requests (with 0.75 MB
/// parts, a range over a million keys of 256 bytes took over etcdctl's 5 s deadline under a put
/// load), each still a short turn of the driver.
const RANGE_PART_BYTES: usize = 4 << 20;

/// A future the range readers give.
type RangeRead =
    Pin<Box<dyn std::future::Future<Output = Result<pb::RangeResponse, Status>> + Send>>;

/// Reads one part of a range read in parts (`range_stream`) through `router` as `caller`,
/// waiting `pause` before each later part (`Limits::range_part_pause`).
fn part_reader(
    router: Router,
    caller: Option<AuthInfo>,
    pause: std::time::Duration,
) -> impl FnMut(pb::RangeRequest, super::range_stream::Part) -> RangeRead {
    move |request, part| {
        let (router, caller) = (router.clone(), caller.clone());
        let (request, pause) = match part {
            super::range_stream::Part::First => (ClientRequest::Range(request), None),
            super::range_stream::Part::FirstUncounted => (ClientRequest::RangePart(request), None),
            super::range_stream::Part::Later | super::range_stream::Part::Count => {
                (ClientRequest::RangePart(request), Some(pause))
            }
        };
        Box::pin(async move {
            if let Some(pause) = pause.filter(|p| !p.is_zero()) {
                tokio::time::sleep(pause).await;
            }
            match router.call(request, caller).await {
                Ok(ClientResponse::Range(response)) => Ok(response),
                Ok(ClientResponse::RangePart(response, reads)) => {
                    read_values(response, reads).await
                }
                Ok(other) => Err(unexpected(&other)),
                Err(error) => Err(to_status(&error)),
            }
        })
    }
}

/// Values a part reads in the task that asked for it; more go to a thread where blocking is
/// allowed (reading them can take tens of milliseconds: `RANGE_PART_BYTES`).
const VALUES_READ_IN_TASK: usize = 64;

/// Reads the values a range part left to read (`ValueReads`), off the driver.
async fn read_values(
    mut response: pb::RangeResponse,
    reads: ValueReads,
) -> Result<pb::RangeResponse, Status> {
    let in_task = reads.len() <= VALUES_READ_IN_TASK;
    // One body wherever it runs: the simulator, whose parts are small, runs the same code.
    let read = move || reads.read_into(&mut response.kvs).map(|()| response);
    let read = if in_task {
        read()
    } else {
        super::blocking::run(read)
            .await
            .map_err(|why| Status::internal(format!("stet: reading a range: {why}")))?
    };
    read.map_err(|error| to_status(&ClientError::Kv(error)))
}

fn unexpected(response: &ClientResponse) -> Status {
    Status::internal(format!("stet: unexpected response {response:?}"))
}

fn header(status: &MemberStatus) -> pb::ResponseHeader {
    status.header()
}

/// Every service shares the router to the driver.
#[derive(Clone)]
pub struct Services {
    router: Router,
    driver: DriverHandle,
    limits: Limits,
    gate: Arc<AuthGate>,
    next_stream: Arc<AtomicU64>,
    /// FOR THE SIMULATOR'S SELF-TEST ONLY (`Mistake::NeverRestartCompactedRange`).
    never_restart_ranges: bool,
}

impl Services {
    pub fn new(router: Router, limits: Limits, gate: Arc<AuthGate>) -> Self {
        Services {
            driver: router.driver().clone(),
            router,
            limits,
            gate,
            next_stream: Arc::new(AtomicU64::new(1)),
            never_restart_ranges: false,
        }
    }

    /// The same services with a planted mistake (`Mistake::NeverRestartCompactedRange`), for
    /// the simulator's self-test of its revision oracle.
    pub fn never_restarting_ranges(self, planted: bool) -> Self {
        Services {
            never_restart_ranges: planted,
            ..self
        }
    }

    /// The router to the driver (and the leader).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The local driver.
    pub fn driver(&self) -> &DriverHandle {
        &self.driver
    }

    /// The runtime's auth: tokens, the published store, password hashing.
    pub fn gate(&self) -> &Arc<AuthGate> {
        &self.gate
    }

    /// Who `request` comes from: its token (metadata `token`, or the gateway's `authorization`),
    /// else a verified client certificate's common name; etcd's "invalid auth token" for a token
    /// no member issued, or one that expired.
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Option<AuthInfo>, Status> {
        self.resolve_caller(request)
            .map_err(|error| to_status(&ClientError::Auth(error)))
    }

    fn resolve_caller<T>(&self, request: &Request<T>) -> Result<Option<AuthInfo>, AuthError> {
        let token = TOKEN_METADATA_KEYS
            .iter()
            .find_map(|key| request.metadata().get(*key))
            .map(|value| value.to_str().map_err(|_| AuthError::InvalidAuthToken))
            .transpose()?;
        let cert_user = request.extensions().get::<ClientCertUser>();
        self.gate.caller(token, cert_user)
    }

    /// An administrator's request's check, for those served here without the node.
    fn check_admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let caller = self.caller(request)?;
        self.gate
            .store()
            .check_admin(caller.as_ref())
            .map_err(|error| to_status(&ClientError::Auth(error)))
    }

    /// Where requests go (the local driver, or the leader for leader-only ones), for the HTTP
    /// APIs that make v3 requests.
    #[cfg(not(madsim))]
    pub fn request_router(&self) -> Router {
        self.router.clone()
    }

    /// The gRPC routes of every service, ready to merge into the HTTP router.
    #[cfg(not(madsim))]
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
        .add_service(auth_server::AuthServer::new(self.clone()))
    }

    /// Serves every service on `address` with madsim's simulated gRPC transport until `stopped`.
    #[cfg(madsim)]
    pub async fn serve_simulated(
        &self,
        address: std::net::SocketAddr,
        stopped: impl std::future::Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            .add_service(kv_server::KvServer::new(self.clone()))
            .add_service(watch_server::WatchServer::new(self.clone()))
            .add_service(lease_server::LeaseServer::new(self.clone()))
            .add_service(cluster_server::ClusterServer::new(self.clone()))
            .add_service(maintenance_server::MaintenanceServer::new(self.clone()))
            .add_service(auth_server::AuthServer::new(self.clone()))
            .serve_with_shutdown(address, stopped)
            .await
    }
}

/// Sends a unary request and unwraps the expected response variant.
macro_rules! unary {
    ($self:ident, $request:ident, $variant:ident) => {{
        let caller = $self.caller(&$request)?;
        match $self
            .router
            .call(ClientRequest::$variant($request.into_inner()), caller)
            .await
        {
            Ok(ClientResponse::$variant(response)) => Ok(Response::new(response)),
            Ok(other) => Err(unexpected(&other)),
            Err(error) => Err(to_status(&error)),
        }
    }};
}

#[tonic::async_trait]
impl kv_server::Kv for Services {
    /// A range over many keys is read in parts and merged (`range_stream::gather_restarting`),
    /// so that it never stalls the driver for a time that grows with the range.
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        if !super::range_stream::read_in_parts(request.get_ref()) {
            return unary!(self, request, Range);
        }
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let sizes = super::range_stream::Sizes {
            target_bytes: RANGE_PART_BYTES.max(self.limits.max_request_bytes / 2),
            first_keys: self.limits.range_first_part_keys.max(1),
            count_keys: self.limits.range_count_part_keys.max(1),
        };
        let pause = self.limits.range_part_pause;
        let reader = part_reader(self.router.clone(), caller, pause);
        let answer = if self.never_restart_ranges {
            super::range_stream::gather(request, sizes, reader).await
        } else {
            super::range_stream::gather_restarting(request, sizes, reader).await
        };
        answer.map(Response::new)
    }

    type RangeStreamStream = ResponseStream<pb::RangeStreamResponse>;

    /// etcd 3.7's streamed range (see `range_stream`): chunks go through a small channel, so
    /// the reading waits for the client and memory holds a few chunks at most.
    async fn range_stream(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        super::range_stream::check(&request)?;
        let (sender, receiver) = mpsc::channel(RANGE_STREAM_CHUNKS);
        let router = self.router.clone();
        let sizes = super::range_stream::Sizes {
            target_bytes: (self.limits.max_request_bytes / 2).max(1),
            first_keys: super::range_stream::FIRST_CHUNK_KEYS,
            count_keys: self.limits.range_count_part_keys.max(1),
        };
        let pause = self.limits.range_part_pause;
        tokio::spawn(async move {
            let chunks = sender.clone();
            let range = part_reader(router, caller, pause);
            let send = |chunk: pb::RangeStreamResponse| {
                let chunks = chunks.clone();
                async move { chunks.send(Ok(chunk)).await.is_ok() }
            };
            if let Err(status) = super::range_stream::stream(request, sizes, range, send).await {
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
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
        // etcd reads the stream's credentials once, when it opens.
        let caller = self.resolve_caller(&request);
        let mut inbound = request.into_inner();
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(self.limits.watch_stream_buffer.max(1));
        self.driver
            .open_watch_stream(stream, sender.clone())
            .await
            .map_err(|e| to_status(&e))?;
        let driver = self.driver.clone();
        let fragmenting = Arc::new(std::sync::Mutex::new(FragmentWatchers::default()));
        let creates = fragmenting.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    biased;
                    _ = sender.closed() => break,
                    message = inbound.message() => message,
                };
                let Ok(Some(message)) = message else { break };
                let request = match message.request_union {
                    Some(pb::watch_request::RequestUnion::CreateRequest(request)) => {
                        creates
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .creating(request.fragment);
                        if let Err(error) = &caller {
                            let status = driver.status();
                            let mut refused = watch_refused(*error, status.revision);
                            refused.header = Some(status.header());
                            let _ = sender.send(Ok(refused)).await;
                            continue;
                        }
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
                let caller = caller.clone().unwrap_or_default();
                if let Err(error) = driver.call_local(request, caller).await {
                    let _ = sender.send(Err(to_status(&error))).await;
                    break;
                }
            }
            drop(sender);
            let _ = driver
                .call_local(ClientRequest::WatchClose { stream }, None)
                .await;
        });
        let responses = FragmentingStream::new(
            ReceiverStream::new(receiver),
            fragmenting,
            self.limits.max_request_bytes,
        );
        Ok(Response::new(Box::pin(responses)))
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
        let caller = self.caller(&request)?;
        let mut inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(KEEP_ALIVE_BUFFER);
        let router = self.router.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                let id = request.id;
                let keep_alive = ClientRequest::LeaseKeepAlive(request);
                let answer = match router.call(keep_alive, caller.clone()).await {
                    Ok(ClientResponse::LeaseKeepAlive(response)) => Ok(response),
                    Ok(other) => Err(unexpected(&other)),
                    Err(ClientError::Lease(LeaseError::NotFound)) => {
                        Ok(pb::LeaseKeepAliveResponse {
                            header: Some(header(&router.driver().status())),
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
    /// Lists, raises or clears alarms: through raft, applied by every member (etcd's `Alarm`).
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        unary!(self, request, Alarm)
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
            version: super::version::ETCD_API_VERSION.to_string(),
            db_size: status.db_size as i64,
            leader: status.leader.unwrap_or(0),
            raft_index: status.commit_index,
            raft_term: status.term,
            raft_applied_index: status.applied_index,
            errors: status.errors(),
            db_size_in_use: status.db_size_in_use as i64,
            is_learner: status.is_learner,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        unary!(self, request, HashKv)
    }

    /// Rewrites this member's storage engine file compactly (etcd's defrag: not replicated,
    /// and the member serves nothing else meanwhile).
    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        unary!(self, request, Defragment)
    }

    /// A CRC-32 of the member's whole applied state as the engine holds it (every row of every
    /// table: keys with history, leases, membership, alarms, the applied index); members at the
    /// same applied index agree. Read off a view of the engine while writes go on.
    async fn hash(
        &self,
        request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        self.check_admin(&request)?;
        let (_, mut export) = self
            .driver
            .snapshot()
            .await
            .ok_or_else(|| to_status(&ClientError::Stopped))?;
        let hashed = crate::server::blocking::run(move || {
            let mut hasher = crc32fast::Hasher::new();
            while let Some(rows) = export.next_chunk(SNAPSHOT_CHUNK)? {
                hasher.update(&rows);
            }
            Ok::<u32, crate::engine::EngineError>(hasher.finalize())
        })
        .await;
        let hash = match hashed {
            Ok(Ok(hash)) => hash,
            Ok(Err(error)) => return Err(Status::data_loss(format!("stet: {error}"))),
            Err(error) => return Err(Status::internal(format!("stet: {error}"))),
        };
        Ok(Response::new(pb::HashResponse {
            header: Some(header(&self.driver.status())),
            hash,
        }))
    }

    type SnapshotStream = ResponseStream<pb::SnapshotResponse>;

    /// Streams the member's applied state as a backup (`crate::backup`'s streamed format: the
    /// engine's rows in chunks read off a view while writes go on, padded, with etcd's SHA-256
    /// trailer). No step holds the whole state in memory.
    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.check_admin(&request)?;
        let (meta, export) = self
            .driver
            .snapshot()
            .await
            .ok_or_else(|| to_status(&ClientError::Stopped))?;
        let (writer, first) = crate::backup::BackupWriter::start(&meta)
            .map_err(|e| Status::internal(format!("stet: {e}")))?;
        let header = header(&self.driver.status());
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(stream_backup(writer, first, export, header, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    /// Hands leadership to another voter, as etcd does: only the leader accepts it, and it
    /// answers once the target leads (or fails after a few election timeouts).
    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        let status = self.driver.status();
        if !status.is_leader {
            return Err(Status::failed_precondition("etcdserver: not leader"));
        }
        let list = ClientRequest::MemberList(pb::MemberListRequest::default());
        let members = match self.driver.call_local(list, None).await {
            Ok(ClientResponse::MemberList(list)) => list.members,
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => return Err(to_status(&error)),
        };
        if !members.iter().any(|m| m.id == target && !m.is_learner) {
            return Err(Status::failed_precondition(
                "etcdserver: bad leader transferee",
            ));
        }
        if target == status.member_id {
            return Ok(Response::new(pb::MoveLeaderResponse {
                header: Some(header(&status)),
            }));
        }
        self.driver
            .transfer_leader(target)
            .await
            .map_err(|e| to_status(&e))?;
        let deadline = tokio::time::Instant::now() + MOVE_LEADER_TIMEOUT;
        loop {
            let now = self.driver.status();
            if now.leader == Some(target) {
                return Ok(Response::new(pb::MoveLeaderResponse {
                    header: Some(header(&now)),
                }));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::unavailable(
                    "etcdserver: request timed out, leader transfer took too long",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// etcd 3.5's cluster downgrade, refused: stet has no earlier storage format.
    async fn downgrade(
        &self,
        request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        let request = request.into_inner();
        let action = pb::downgrade_request::DowngradeAction::try_from(request.action).ok();
        Err(super::version::downgrade_refusal(action, &request.version))
    }
}

/// Sends a backup: `first`, then the export's rows chunk by chunk (each read where blocking is
/// allowed), then the trailer. `remaining_bytes` is not known ahead: it stays 1 until the last
/// message, which says 0 (etcdctl reads to the end of the stream). A failure ends the stream
/// with an error, so the client never takes a partial backup for a whole one.
async fn stream_backup(
    mut writer: crate::backup::BackupWriter,
    first: Vec<u8>,
    export: crate::engine::Export,
    header: pb::ResponseHeader,
    sender: mpsc::Sender<Result<pb::SnapshotResponse, Status>>,
) {
    let message = |blob: Vec<u8>, remaining_bytes: u64| {
        Ok(pb::SnapshotResponse {
            header: Some(header),
            remaining_bytes,
            blob,
        })
    };
    if sender.send(message(first, 1)).await.is_err() {
        return;
    }
    let mut export = Some(export);
    loop {
        let rows = match crate::server::blocking::next_chunk(&mut export, SNAPSHOT_CHUNK).await {
            Ok(Some(rows)) => rows,
            Ok(None) => break,
            Err(error) => {
                let _ = sender
                    .send(Err(Status::data_loss(format!("stet: {error}"))))
                    .await;
                return;
            }
        };
        if sender.send(message(writer.rows(&rows), 1)).await.is_err() {
            return;
        }
    }
    let _ = sender.send(message(writer.finish(), 0)).await;
}
