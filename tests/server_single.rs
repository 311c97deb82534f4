//! The real `stet` binary as a single-member cluster on 127.0.0.1: driven through gRPC clients of
//! etcd's services (generated from the same .proto files), plain HTTP/1.1, and the real `etcdctl`
//! (a third-party Go client) when it is installed.
//! Every wait is bounded; every child process is killed when its test ends.

mod procs;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use procs::*;

use stet::proto::etcdserverpb as pb;
use stet::proto::mvccpb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// One `stet` process; killed on drop.
struct Member {
    child: Child,
    port: u16,
}

fn stet_command(dir: &Path, port: u16, extra: &[&str]) -> Command {
    let url = format!("http://127.0.0.1:{port}");
    // A free port for the peer listener, so tests can run side by side; the advertised peer URL
    // stays etcd's default, which keeps the default member and cluster IDs.
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let mut command = member_command();
    command
        .current_dir(dir)
        .args(["--data-dir", "data", "--listen-peer-urls", &peer_url])
        .args(["--log-level", "warn"]);
    for flag in ["--listen-client-urls", "--advertise-client-urls"] {
        if !extra.contains(&flag) {
            command.args([flag, &url]);
        }
    }
    command.args(extra);
    command
}

impl Member {
    fn start(dir: &Path, extra: &[&str]) -> Member {
        Member::start_on(dir, free_port(), extra)
    }

    /// Starts a member whose health is checked on `port` (which `extra` may listen on itself).
    fn start_on(dir: &Path, port: u16, extra: &[&str]) -> Member {
        let child = stet_command(dir, port, extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn stet");
        let mut member = Member { child, port };
        member.wait_healthy();
        member
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_healthy(&mut self) {
        // Up and serving, even with an alarm raised (which makes plain `/health` false).
        wait_healthy(&mut self.child, self.port, "/health?exclude=NOSPACE", None);
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "stet did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Maintenance.Hash` of the member `c` talks to.
async fn member_hash(c: &mut Clients) -> u32 {
    bounded("hash", c.maintenance.hash(pb::HashRequest {}))
        .await
        .expect("hash")
        .into_inner()
        .hash
}

fn compare_value(key: &str, value: &str) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Value as i32,
        key: key.into(),
        target_union: Some(pb::compare::TargetUnion::Value(value.into())),
        ..Default::default()
    }
}

/// One connection to `member`, for clients that share it.
async fn channel_to(member: &Member) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(member.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

/// A watch stream on `c`'s connection: the sender of its requests and its responses.
async fn open_watch_stream(
    c: &mut Clients,
) -> (
    mpsc::Sender<pb::WatchRequest>,
    tonic::Streaming<pb::WatchResponse>,
) {
    let (requests, receiver) = mpsc::channel(4);
    let responses = bounded("watch", c.watch.watch(ReceiverStream::new(receiver)))
        .await
        .expect("watch")
        .into_inner();
    (requests, responses)
}

/// Sends a create request on a watch stream.
async fn send_create(requests: &mpsc::Sender<pb::WatchRequest>, create: pb::WatchCreateRequest) {
    let request = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
    };
    requests.send(request).await.expect("send create");
}

fn put_op(key: &str, value: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
    }
}

/// What etcd 3.5 added to the v3 API, answered as etcd 3.5 answers it: the server version
/// (3.5.13, which kube-apiserver gates RequestWatchProgress on), `MemberList.linearizable`,
/// `Downgrade` (refused with etcd's errors: stet has no earlier storage format) and `AuthStatus`.
#[test]
fn the_api_etcd_3_5_added_answers_as_etcd_does() {
    let dir = TempDir::new("api-3-5");
    let member = Member::start(&dir.0, &[]);
    runtime().block_on(async {
        let channel = channel_to(&member).await;
        let mut c = Clients::from_channel(channel.clone());
        let status = bounded("status", c.maintenance.status(pb::StatusRequest {}))
            .await
            .expect("status")
            .into_inner();
        assert_eq!(status.version, "3.5.13");

        let list = pb::MemberListRequest { linearizable: true };
        let members = bounded("member list", c.cluster.member_list(list))
            .await
            .expect("a linearizable member list")
            .into_inner();
        assert_eq!(members.members.len(), 1);
        assert_eq!(members.members[0].id, 0x8e9e05c52164694d);
        assert!(members.header.is_some());

        use pb::downgrade_request::DowngradeAction;
        for (action, version, code, message) in [
            (
                DowngradeAction::Validate,
                "3.4.0",
                tonic::Code::InvalidArgument,
                "etcdserver: invalid downgrade target version",
            ),
            (
                DowngradeAction::Enable,
                "3.4",
                tonic::Code::InvalidArgument,
                "etcdserver: wrong downgrade target version format",
            ),
            (
                DowngradeAction::Cancel,
                "",
                tonic::Code::FailedPrecondition,
                "etcdserver: no inflight downgrade job",
            ),
        ] {
            let request = pb::DowngradeRequest {
                action: action as i32,
                version: version.to_string(),
            };
            let refused = bounded("downgrade", c.maintenance.downgrade(request))
                .await
                .expect_err("no downgrade");
            assert_eq!((refused.code(), refused.message()), (code, message));
        }

        let mut auth = pb::auth_client::AuthClient::new(channel);
        let auth_status = bounded("auth status", auth.auth_status(pb::AuthStatusRequest {}))
            .await
            .expect("auth status")
            .into_inner();
        assert!(!auth_status.enabled);
        assert_eq!(auth_status.auth_revision, 1);
        assert_eq!(
            auth_status.header.expect("header").member_id,
            0x8e9e05c52164694d
        );
    });
}

/// A watch whose client stops reading while thousands of writes go on — far more responses than
/// the member buffers per stream — is not closed: once the client reads again, every event
/// arrives once, in revision order, and a progress request made meanwhile is answered after
/// them with the revision of the last one (etcd's slow "victim" watchers, etcd-io/etcd#15220).
#[test]
fn a_watch_that_stops_reading_gets_every_event_once_it_reads_again() {
    const PUTS: usize = 3000;
    const WRITERS: usize = 16;
    let dir = TempDir::new("slow-watch");
    let member = Member::start(&dir.0, &[]);
    runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;
        let (watch_requests, mut watch) = open_watch_stream(&mut c).await;
        let create = pb::WatchCreateRequest {
            key: b"s/".to_vec(),
            range_end: b"s0".to_vec(),
            ..Default::default()
        };
        send_create(&watch_requests, create).await;
        let created = bounded("created", watch.message()).await.expect("message");
        assert!(created.expect("created").created);

        // Writers on their own connections, while nobody reads the watch.
        let value = "v".repeat(1024);
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let endpoint = member.endpoint();
            let value = value.clone();
            tasks.push(tokio::spawn(async move {
                let mut w = connect(endpoint).await;
                for i in (writer..PUTS).step_by(WRITERS) {
                    w.put(&format!("s/{i:05}"), &value, 0).await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer");
        }
        let last = c
            .get("s/", b"s0")
            .await
            .expect("get")
            .header
            .expect("header")
            .revision;
        let progress = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                pb::WatchProgressRequest {},
            )),
        };
        watch_requests.send(progress).await.expect("send progress");

        let mut revisions = Vec::new();
        let answered = loop {
            let response = bounded("watch response", watch.message())
                .await
                .unwrap_or_else(|status| panic!("the watch ended: {status:?}"))
                .expect("the watch stays open");
            assert!(!response.canceled, "{response:?}");
            if response.events.is_empty() {
                break response;
            }
            revisions.extend(
                response
                    .events
                    .iter()
                    .map(|e| e.kv.as_ref().expect("kv").mod_revision),
            );
        };
        assert_eq!(revisions.len(), PUTS, "every event, once");
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "in revision order"
        );
        assert_eq!(revisions.last().copied(), Some(last));
        let header = answered.header.expect("header");
        assert_eq!(
            header.revision, last,
            "progress answered after the events it covers"
        );
    });
}

/// etcd's `fragment`: a watcher that asked for it gets a response larger than
/// `--max-request-bytes` in parts, all but the last marked `fragment`, which join back into the
/// events in order; a watcher that did not gets the same events whole.
#[test]
fn a_fragment_watcher_gets_large_responses_in_parts() {
    let dir = TempDir::new("fragment");
    let member = Member::start(&dir.0, &["--max-request-bytes=4096"]);
    runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;
        let value = "v".repeat(300);
        for i in 0..30 {
            c.put(&format!("f/{i:02}"), &value, 0).await;
        }
        let (watch_requests, mut watch) = open_watch_stream(&mut c).await;
        for (watch_id, fragment) in [(1, true), (2, false)] {
            let create = pb::WatchCreateRequest {
                key: b"f/".to_vec(),
                range_end: b"f0".to_vec(),
                start_revision: 1,
                watch_id,
                fragment,
                ..Default::default()
            };
            send_create(&watch_requests, create).await;
        }
        let mut parts: BTreeMap<i64, Vec<pb::WatchResponse>> = BTreeMap::new();
        while parts.values().map(Vec::len).sum::<usize>() == 0
            || parts.get(&2).is_none_or(Vec::is_empty)
            || parts
                .get(&1)
                .and_then(|p| p.last())
                .is_none_or(|last| last.fragment)
        {
            let response = bounded("watch response", watch.message())
                .await
                .expect("message")
                .expect("response");
            if !response.created {
                parts.entry(response.watch_id).or_default().push(response);
            }
        }
        let fragmented = &parts[&1];
        assert!(fragmented.len() > 1, "{} parts", fragmented.len());
        let flags: Vec<bool> = fragmented.iter().map(|r| r.fragment).collect();
        assert!(flags[..flags.len() - 1].iter().all(|f| *f), "{flags:?}");
        let keys = |responses: &[pb::WatchResponse]| -> Vec<Vec<u8>> {
            let events = responses.iter().flat_map(|r| r.events.iter());
            events
                .map(|e| e.kv.as_ref().expect("kv").key.clone())
                .collect()
        };
        let expected: Vec<Vec<u8>> = (0..30).map(|i| format!("f/{i:02}").into_bytes()).collect();
        assert_eq!(keys(fragmented), expected);
        assert_eq!(parts[&2].len(), 1, "whole without fragment");
        assert!(!parts[&2][0].fragment);
        assert_eq!(keys(&parts[&2]), expected);
    });
}

/// `--experimental-watch-progress-notify-interval` sets how often a quiet `progress_notify`
/// watcher is told the current revision (etcd's default, 10 minutes, is too long for a test).
#[test]
fn progress_notifications_come_at_the_configured_interval() {
    let dir = TempDir::new("progress-interval");
    let flag = "--experimental-watch-progress-notify-interval=300ms";
    let member = Member::start(&dir.0, &[flag]);
    runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;
        let put = c.put("p", "1", 0).await;
        let revision = put.header.expect("header").revision;
        let (watch_requests, mut watch) = open_watch_stream(&mut c).await;
        let create = pb::WatchCreateRequest {
            key: b"quiet".to_vec(),
            progress_notify: true,
            ..Default::default()
        };
        send_create(&watch_requests, create).await;
        let created = bounded("created", watch.message()).await.expect("message");
        let watch_id = created.expect("created").watch_id;
        for _ in 0..2 {
            let progress = bounded("progress notification", watch.message())
                .await
                .expect("message")
                .expect("response");
            assert_eq!(progress.watch_id, watch_id);
            assert!(progress.events.is_empty() && !progress.canceled);
            assert_eq!(progress.header.expect("header").revision, revision);
        }
    });
}

/// One client connection may hold many more streams than hyper's default of 200 — etcd sets no
/// limit, and kube-apiserver multiplexes all its watches over few connections — while
/// `--max-concurrent-streams` still bounds them when given.
#[test]
fn one_connection_holds_hundreds_of_watch_streams() {
    const STREAMS: usize = 300;
    let dir = TempDir::new("streams");
    let member = Member::start(&dir.0, &[]);
    runtime().block_on(async {
        let channel = channel_to(&member).await;
        let mut open = Vec::new();
        for i in 0..STREAMS {
            let mut watch = pb::watch_client::WatchClient::new(channel.clone());
            let (requests, receiver) = mpsc::channel(1);
            let mut responses = bounded(
                "open a watch stream",
                watch.watch(ReceiverStream::new(receiver)),
            )
            .await
            .unwrap_or_else(|status| panic!("stream {i}: {status:?}"))
            .into_inner();
            let create = pb::WatchCreateRequest {
                key: format!("w{i}").into_bytes(),
                ..Default::default()
            };
            let request = pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
            };
            requests.send(request).await.expect("send create");
            let created = bounded("created", responses.message())
                .await
                .expect("message")
                .expect("response");
            assert!(created.created, "stream {i}");
            open.push((requests, responses));
        }
        assert_eq!(open.len(), STREAMS);
    });
    drop(member);

    // With a limit, the stream past it waits for a free one.
    let dir = TempDir::new("streams-limited");
    let member = Member::start(&dir.0, &["--max-concurrent-streams=4"]);
    runtime().block_on(async {
        let channel = channel_to(&member).await;
        let mut open = Vec::new();
        for _ in 0..4 {
            let mut watch = pb::watch_client::WatchClient::new(channel.clone());
            let (requests, receiver) = mpsc::channel::<pb::WatchRequest>(1);
            let stream = bounded("open", watch.watch(ReceiverStream::new(receiver)))
                .await
                .expect("a stream within the limit");
            open.push((requests, stream));
        }
        let mut kv = pb::kv_client::KvClient::new(channel);
        let range = pb::RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        };
        let waited = tokio::time::timeout(Duration::from_secs(2), kv.range(range)).await;
        assert!(
            waited.is_err(),
            "a fifth stream on the connection went through"
        );
    });
}

/// etcd 3.7's `KV.RangeStream` on a real member: 3,000 keys arrive in several chunks at one
/// revision (writes made meanwhile do not show), and the chunks merged are the unary `Range`'s
/// answer — also with a limit and count only; a sorted request is `Unimplemented`.
#[test]
fn a_streamed_range_merges_into_the_unary_answer() {
    use prost::Message as _;
    const KEYS: usize = 3000;
    let dir = TempDir::new("range-stream");
    let member = Member::start(&dir.0, &["--max-request-bytes=65536"]);
    runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;
        let value = "v".repeat(200);
        let txns = (0..KEYS).step_by(100).map(|first| pb::TxnRequest {
            success: (first..first + 100)
                .map(|i| put_op(&format!("r/{i:05}"), &value))
                .collect(),
            ..Default::default()
        });
        for txn in txns {
            bounded("txn", c.kv.txn(txn)).await.expect("txn");
        }
        let prefix = |limit, count_only| pb::RangeRequest {
            key: b"r/".to_vec(),
            range_end: b"r0".to_vec(),
            limit,
            count_only,
            ..Default::default()
        };
        for (round, request) in [prefix(0, false), prefix(1000, false), prefix(0, true)]
            .into_iter()
            .enumerate()
        {
            let mut chunks = bounded("range stream", c.kv.range_stream(request.clone()))
                .await
                .expect("range stream")
                .into_inner();
            let first = bounded("first chunk", chunks.message())
                .await
                .expect("chunk");
            // A write after the stream started is not in it: the revision is pinned.
            let changed = format!("changed in round {round}");
            c.put("r/00000", &changed, 0).await;
            let mut merged = pb::RangeResponse::default();
            let mut count = 0;
            let mut next = first;
            while let Some(chunk) = next {
                let part = chunk.range_response.expect("range response");
                merged
                    .merge(part.encode_to_vec().as_slice())
                    .expect("merge");
                count += 1;
                next = bounded("chunk", chunks.message()).await.expect("chunk");
            }
            let unary = pb::RangeRequest {
                revision: merged.header.as_ref().expect("header").revision,
                ..request.clone()
            };
            let mut expected = bounded("range", c.kv.range(unary))
                .await
                .expect("range")
                .into_inner();
            // Headers differ in raft term only if an election happened; not on one member.
            expected.header = merged.header;
            assert_eq!(
                merged, expected,
                "limit {} count_only {}",
                request.limit, request.count_only
            );
            if !request.count_only {
                assert!(count > 1, "{count} chunk(s)");
                assert_ne!(
                    merged.kvs[0].value,
                    changed.as_bytes(),
                    "pinned before the write"
                );
            }
        }
        let mut sorted = prefix(0, false);
        sorted.sort_order = pb::range_request::SortOrder::Descend as i32;
        let refused = bounded("sorted", c.kv.range_stream(sorted))
            .await
            .expect_err("sorted");
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
    });
}

#[test]
fn grpc_clients_can_use_every_service() {
    let dir = TempDir::new("client");
    let member = Member::start(&dir.0, &[]);
    runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;

        // KV: put, get, delete.
        c.put("a", "1", 0).await;
        let got = c.get("a", b"").await.expect("get");
        assert_eq!(got.kvs.len(), 1);
        assert_eq!(got.kvs[0].value, b"1");
        let header = got.header.expect("header");
        assert_eq!(header.member_id, 0x8e9e05c52164694d);
        assert_eq!(header.cluster_id, 0xcdf818194e3a8c32);
        let delete = pb::DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        };
        let deleted = bounded("delete", c.kv.delete_range(delete))
            .await
            .expect("delete")
            .into_inner();
        assert_eq!(deleted.deleted, 1);
        assert_eq!(c.value("a").await, None);

        // Txn: compare on a value, both branches.
        c.put("t", "x", 0).await;
        let txn = pb::TxnRequest {
            compare: vec![compare_value("t", "x")],
            success: vec![put_op("t", "y")],
            failure: vec![put_op("t", "z")],
        };
        let first = bounded("txn", c.kv.txn(txn.clone())).await.expect("txn");
        assert!(first.into_inner().succeeded);
        let second = bounded("txn", c.kv.txn(txn)).await.expect("txn");
        assert!(!second.into_inner().succeeded);
        assert_eq!(c.value("t").await.as_deref(), Some(&b"z"[..]));

        // Watch: a put after the watch is created arrives as an event.
        let (watch_requests, mut watch) = open_watch_stream(&mut c).await;
        let create = pb::WatchCreateRequest {
            key: b"w".to_vec(),
            ..Default::default()
        };
        send_create(&watch_requests, create).await;
        let created = bounded("watch created", watch.message())
            .await
            .expect("watch message")
            .expect("created response");
        assert!(created.created);
        c.put("w", "hello", 0).await;
        let event = loop {
            let response = bounded("watch event", watch.message())
                .await
                .expect("watch message")
                .expect("watch response");
            if let Some(event) = response.events.first() {
                break event.clone();
            }
        };
        assert_eq!(event.r#type, mvccpb::event::EventType::Put as i32);
        assert_eq!(event.kv.expect("kv").value, b"hello");

        // Lease: grant, attach a key, keep alive, time to live, revoke (deletes the key).
        let grant = pb::LeaseGrantRequest { ttl: 30, id: 0 };
        let lease = bounded("grant", c.lease.lease_grant(grant))
            .await
            .expect("grant")
            .into_inner();
        assert_eq!(lease.ttl, 30);
        c.put("leased", "v", lease.id).await;
        let (keep_alive, requests) = mpsc::channel(4);
        let mut renewals = bounded(
            "keep alive",
            c.lease.lease_keep_alive(ReceiverStream::new(requests)),
        )
        .await
        .expect("keep alive")
        .into_inner();
        let renew = pb::LeaseKeepAliveRequest { id: lease.id };
        keep_alive.send(renew).await.expect("send keep alive");
        let renewed = bounded("keep alive response", renewals.message())
            .await
            .expect("keep alive message")
            .expect("keep alive response");
        assert_eq!(renewed.id, lease.id);
        assert!(renewed.ttl > 0);
        let ttl_request = pb::LeaseTimeToLiveRequest {
            id: lease.id,
            keys: true,
        };
        let ttl = bounded("ttl", c.lease.lease_time_to_live(ttl_request))
            .await
            .expect("ttl")
            .into_inner();
        assert!(ttl.ttl > 0 && ttl.ttl <= 30);
        assert_eq!(ttl.keys, vec![b"leased".to_vec()]);
        let revoke = pb::LeaseRevokeRequest { id: lease.id };
        bounded("revoke", c.lease.lease_revoke(revoke))
            .await
            .expect("revoke");
        assert_eq!(
            c.value("leased").await,
            None,
            "revoking the lease deletes its key"
        );
        // A keep-alive for a lease that no longer exists answers TTL 0, as etcd does.
        let renew = pb::LeaseKeepAliveRequest { id: lease.id };
        keep_alive.send(renew).await.expect("send keep alive");
        let gone = bounded("keep alive response", renewals.message())
            .await
            .expect("keep alive message")
            .expect("keep alive response");
        assert_eq!(gone.ttl, 0);

        // Cluster and maintenance.
        let members = bounded(
            "member list",
            c.cluster.member_list(pb::MemberListRequest::default()),
        )
        .await
        .expect("member list")
        .into_inner()
        .members;
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].name, "default");
        assert_eq!(members[0].id, 0x8e9e05c52164694d);
        assert_eq!(members[0].client_ur_ls, [member.endpoint()]);
        let status = bounded("status", c.maintenance.status(pb::StatusRequest {}))
            .await
            .expect("status")
            .into_inner();
        assert_eq!(status.leader, 0x8e9e05c52164694d);
        assert!(status.raft_index >= status.raft_applied_index);
        assert!(status.raft_applied_index > 0);
        assert!(status.db_size > 0, "the engine file's length");
        assert!(status.errors.is_empty(), "{:?}", status.errors);

        // Hash: the same while nothing is applied, another after a write.
        let first = member_hash(&mut c).await;
        assert_eq!(member_hash(&mut c).await, first);
        c.put("hashed", "changes the hash", 0).await;
        assert_ne!(member_hash(&mut c).await, first);

        // Errors carry etcd's codes and messages.
        let revision = c
            .get("t", b"")
            .await
            .expect("get")
            .header
            .expect("header")
            .revision;
        // `physical`: answered once the dropped revisions left the engine's file.
        let compact = pb::CompactionRequest {
            revision,
            physical: true,
        };
        bounded("compact", c.kv.compact(compact))
            .await
            .expect("compact");
        let old = pb::RangeRequest {
            key: b"t".to_vec(),
            revision: 1,
            ..Default::default()
        };
        let error = bounded("get compacted", c.kv.range(old))
            .await
            .expect_err("a compacted revision is refused");
        assert_eq!(error.code(), tonic::Code::OutOfRange);
        assert_eq!(
            error.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    });
}

#[test]
fn health_version_and_metrics_over_plain_http() {
    let dir = TempDir::new("http");
    let member = Member::start(&dir.0, &[]);
    let (code, body) = http_get(member.port, "/health").expect("GET /health");
    assert_eq!((code, body.as_str()), (200, r#"{"health":"true"}"#));
    let (code, body) = http_get(member.port, "/version").expect("GET /version");
    assert_eq!(code, 200);
    let version = format!(
        r#"{{"etcdserver":"3.5.13","etcdcluster":"3.5.0","stet":"{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(body, version);
    let (code, body) = http_get(member.port, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    assert!(body.contains("etcd_server_has_leader 1"), "{body}");
    assert!(body.contains("etcd_debugging_mvcc_keys_total 0"), "{body}");
    grpc_calls_are_counted_as_go_grpc_prometheus_counts_them(&member);
    // Paths nothing serves answer etcd 3.4's plain 404.
    let (code, body) = http_get(member.port, "/no/such/path").expect("GET an unknown path");
    assert_eq!((code, body.as_str()), (404, "404 page not found\n"));
}

/// Runs `stet-bench` with `args`; returns its exit code, stdout and stderr.
fn stet_bench(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_stet-bench"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run stet-bench");
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (
        output.status.code(),
        text(output.stdout),
        text(output.stderr),
    )
}

/// The load generator's own client (HTTP/2 straight over hyper, writes batched) against the
/// real binary: every put lands as one revision, every range finds its one key.
/// Runs `stet-bench` with `args` on a blocking thread of the current runtime (a load beside the
/// test's own requests).
fn stet_bench_beside(args: &[&str]) -> tokio::task::JoinHandle<(Option<i32>, String, String)> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        stet_bench(&args)
    })
}

#[test]
fn stet_bench_puts_and_ranges_through_its_own_client() {
    let dir = TempDir::new("bench");
    let member = Member::start(&dir.0, &[]);
    let endpoint = member.endpoint();
    let common = [
        "--endpoints",
        &endpoint,
        "--conns",
        "2",
        "--clients",
        "8",
        "--key-space",
        "50",
        "--json",
    ];
    let (code, stdout, stderr) = stet_bench(&[&common[..], &["--total", "400", "put"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with(r#"{"op":"put","requests":400,"errors":0,"#),
        "{stdout}"
    );
    // The range phase first puts each of the 50 keys once, then checks each answer holds one.
    let range = ["--total", "200", "range", "--consistency", "l"];
    let (code, stdout, stderr) = stet_bench(&[&common[..], &range].concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with(r#"{"op":"range-l","requests":200,"errors":0,"#),
        "{stdout}"
    );
    let (_, metrics) = http_get(member.port, "/metrics").expect("GET /metrics");
    assert!(
        metrics.contains("etcd_debugging_mvcc_keys_total 50\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("etcd_debugging_mvcc_current_revision 451\n"),
        "{metrics}"
    );
    // What it cannot speak is refused by name, before any request.
    let https = format!("https://127.0.0.1:{}", member.port);
    let (code, _, stderr) = stet_bench(&["--endpoints", &https, "--total", "1", "put"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("only http://"), "{stderr}");
}

/// A member that goes away mid-run ends the bench's run: its clients stop on a closed
/// connection (counting what failed) instead of failing requests as fast as they can until the
/// `--duration` deadline.
#[test]
fn stet_bench_clients_stop_when_their_connection_ends() {
    let dir = TempDir::new("bench-ends");
    let member = Member::start(&dir.0, &[]);
    let endpoint = member.endpoint();
    let bench = Command::new(env!("CARGO_BIN_EXE_stet-bench"))
        .args(["--endpoints", &endpoint, "--conns", "2", "--clients", "8"])
        .args(["--duration", "300", "--json", "put"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stet-bench");
    // Some puts land before the member goes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = http_get(member.port, "/metrics").expect("GET /metrics");
        if !metrics.contains("etcd_debugging_mvcc_current_revision 1\n") {
            break;
        }
        assert!(Instant::now() < deadline, "no put landed");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(member);
    let output = bench.wait_with_output().expect("stet-bench output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let field = |name: &str| -> f64 {
        let start = stdout.find(&format!("\"{name}\":")).expect(name) + name.len() + 3;
        let end = start + stdout[start..].find([',', '}']).expect("field end");
        stdout[start..end].parse().expect("a number")
    };
    assert!(field("errors") >= 1.0, "{stdout}");
    assert!(field("requests") > field("errors"), "{stdout}");
    // Ended by the clients stopping, not by the deadline.
    assert!(field("elapsed_s") < 300.0, "{stdout}");
}

/// `HashKV` of a history larger than one step of the member's hash (10,000 index entries), taken
/// while puts go on: the hash of the revision asked for, the same as once the puts stopped, and
/// for revision 0 the hash of the revision current when it began.
#[test]
fn a_hash_kv_of_a_large_history_taken_under_writes_is_the_hash_of_its_revision() {
    let dir = TempDir::new("hashkv-steps");
    let member = Member::start(&dir.0, &[]);
    let endpoint = member.endpoint();
    let common = ["--endpoints", &endpoint, "--conns", "2", "--clients", "16"];
    // 12,000 keys of one version each: 24,000 index entries, three steps.
    let fill = ["--key-space", "12000", "--total", "1", "range"];
    let (code, _, stderr) = stet_bench(&[&common[..], &fill].concat());
    assert_eq!(code, Some(0), "{stderr}");
    let hash_kv = |revision: i64| {
        let endpoint = endpoint.clone();
        async move {
            let mut c = connect(endpoint).await;
            bounded(
                "hash_kv",
                c.maintenance.hash_kv(pb::HashKvRequest { revision }),
            )
            .await
            .expect("hash_kv")
            .into_inner()
        }
    };
    let (during, during_current) = runtime().block_on(async {
        let revision = connect(endpoint.clone()).await.get("k", b"").await;
        let revision = revision.expect("get").header.expect("header").revision;
        let load = ["--key-space", "12000", "--total", "4000", "put"];
        let writes = stet_bench_beside(&[&common[..], &load].concat());
        let mut hashes = Vec::new();
        while !writes.is_finished() {
            hashes.push((revision, hash_kv(revision).await));
            let current = hash_kv(0).await;
            hashes.push((current.header.expect("header").revision, current));
        }
        let (code, _, stderr) = writes.await.expect("the put load");
        assert_eq!(code, Some(0), "{stderr}");
        (hashes, revision)
    });
    assert!(during.len() >= 2, "no hash was taken during the puts");
    runtime().block_on(async {
        for (revision, answer) in during {
            let after = hash_kv(revision).await;
            assert_eq!(
                (answer.hash, answer.compact_revision),
                (after.hash, after.compact_revision),
                "revision {revision} (the first at {during_current})"
            );
        }
    });
}

/// A unary `Range` over many keys is read in parts at one revision while writes go on (so that
/// it never stalls the member): each answer taken during a put load is exactly the range at the
/// revision its header names, as read afterwards in one go (sorted descending, which is never
/// read in parts) — key-values, count and `more`, with and without a limit.
#[test]
fn a_large_unary_range_read_in_parts_under_writes_is_the_range_at_its_revision() {
    const KEYS: i64 = 12_000;
    let dir = TempDir::new("range-parts");
    let member = Member::start(&dir.0, &[]);
    let endpoint = member.endpoint();
    let common = ["--endpoints", &endpoint, "--conns", "2", "--clients", "16"];
    // 12,000 keys of 256-byte values: ~3.2 MB, read in four parts (1,024 keys, then doubling
    // towards 4 MiB).
    let fill = ["--key-space", "12000", "--total", "1", "range"];
    let (code, _, stderr) = stet_bench(&[&common[..], &fill].concat());
    assert_eq!(code, Some(0), "{stderr}");
    let everything = |limit: i64, keys_only: bool| pb::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        limit,
        keys_only,
        ..Default::default()
    };
    let range = |request: pb::RangeRequest| {
        let endpoint = endpoint.clone();
        async move {
            let mut c = connect(endpoint).await;
            bounded("range", c.kv.range(request))
                .await
                .expect("range")
                .into_inner()
        }
    };
    let during = runtime().block_on(async {
        let load = ["--key-space", "12000", "--total", "6000", "put"];
        let writes = stet_bench_beside(&[&common[..], &load].concat());
        let mut answers = Vec::new();
        let requests = [
            everything(0, false),
            everything(7_000, false),
            everything(0, true),
        ];
        while !writes.is_finished() || answers.len() < requests.len() {
            let request = requests[answers.len() % requests.len()].clone();
            answers.push((request.clone(), range(request).await));
        }
        let (code, _, stderr) = writes.await.expect("the put load");
        assert_eq!(code, Some(0), "{stderr}");
        answers
    });
    runtime().block_on(async {
        for (request, answer) in during {
            let revision = answer.header.as_ref().expect("header").revision;
            let mut whole = range(pb::RangeRequest {
                revision,
                sort_order: pb::range_request::SortOrder::Descend as i32,
                sort_target: pb::range_request::SortTarget::Key as i32,
                limit: 0,
                ..request.clone()
            })
            .await;
            whole.kvs.reverse();
            if request.limit > 0 {
                whole.kvs.truncate(request.limit as usize);
            }
            let what = format!("limit {} at revision {revision}", request.limit);
            assert_eq!(answer.count, KEYS, "{what}");
            assert_eq!(answer.more, request.limit > 0, "{what}");
            assert_eq!(answer.kvs.len(), whole.kvs.len(), "{what}");
            assert!(answer.kvs == whole.kvs, "{what}: the key-values differ");
        }
    });
}

/// kube-apiserver's paginated list (pages of 500, each later page at the first page's revision
/// from the key after the last) while keys are deleted and created all along: every page's
/// `count` — the keys left, which the member counts by whole stretches of its index without
/// walking them (4,096 keys a stretch here, production's size) — is what a range of the same
/// keys at the same revision read in one go, sorted (never read in parts; it walks), counts.
/// The churn changes which keys are live after the pinned revision, so the counts must take
/// the stretches' remembered changes, or walk a stretch that forgot, to come out right.
#[test]
fn every_page_of_a_list_under_churn_counts_the_keys_left_at_its_revision() {
    let dir = TempDir::new("pages-churn");
    let member = Member::start(&dir.0, &[]);
    let endpoint = member.endpoint();
    runtime().block_on(async {
        let mut c = connect(endpoint.clone()).await;
        fill_even_pods(&mut c).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = tokio::spawn(churn_pods(endpoint.clone(), stop.clone()));
        let mut pages = 0;
        for _list in 0..2 {
            pages += check_page_counts(&mut c).await;
        }
        check_span_counts(&mut c, 150).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let churned = churn.await.expect("the churn");
        assert!(churned > 100, "only {churned} keys churned while listing");
        assert!(pages > 30, "{pages} pages");
    });
}

/// The pods' key space: keys `pod_key(0..PODS)`, every even one filled.
const PODS: usize = 20_000;

fn pod_key(n: usize) -> Vec<u8> {
    format!("/registry/pods/p{n:06}").into_bytes()
}

/// The keys of the pods' prefix from `from` on at `revision`, keys only.
fn pods_from(from: Vec<u8>, revision: i64, limit: i64) -> pb::RangeRequest {
    pb::RangeRequest {
        key: from,
        range_end: b"/registry/pods0".to_vec(),
        revision,
        limit,
        keys_only: true,
        ..Default::default()
    }
}

/// `request`'s count as a walk of its keys gives it: sorted, so read in one go, not by
/// stretches.
async fn walked_count(c: &mut Clients, request: pb::RangeRequest) -> i64 {
    let walked = pb::RangeRequest {
        sort_order: pb::range_request::SortOrder::Descend as i32,
        sort_target: pb::range_request::SortTarget::Key as i32,
        limit: 0,
        count_only: false,
        ..request
    };
    bounded("walk", c.kv.range(walked))
        .await
        .expect("walk")
        .into_inner()
        .count
}

/// Every even pod, a hundred to a txn.
async fn fill_even_pods(c: &mut Clients) {
    let evens: Vec<usize> = (0..PODS).step_by(2).collect();
    for batch in evens.chunks(100) {
        let puts = batch.iter().map(|&n| pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: pod_key(n),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        });
        let txn = pb::TxnRequest {
            success: puts.collect(),
            ..Default::default()
        };
        bounded("fill", c.kv.txn(txn)).await.expect("fill");
    }
}

/// Until `stop`: deletes an even pod and creates an odd one, all over the prefix. How many
/// rounds it made.
async fn churn_pods(
    endpoint: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    let mut c = connect(endpoint).await;
    let mut n = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let at = n.wrapping_mul(7_919) % PODS;
        let del = pb::DeleteRangeRequest {
            key: pod_key(at & !1),
            ..Default::default()
        };
        bounded("churn delete", c.kv.delete_range(del))
            .await
            .expect("delete");
        let put = pb::PutRequest {
            key: pod_key(at | 1),
            value: b"new".to_vec(),
            ..Default::default()
        };
        bounded("churn put", c.kv.put(put)).await.expect("put");
        n += 1;
    }
    n
}

/// One paginated list of the pods, each page's count checked against a walk at the list's
/// revision. The pages it took.
async fn check_page_counts(c: &mut Clients) -> usize {
    let first = pods_from(b"/registry/pods/".to_vec(), 0, 500);
    let mut page = bounded("page", c.kv.range(first.clone()))
        .await
        .expect("page")
        .into_inner();
    let revision = page.header.as_ref().expect("header").revision;
    let mut from = first.key;
    for pages in 1.. {
        let walked = walked_count(c, pods_from(from.clone(), revision, 0)).await;
        let at = format!("from {} at {revision}", String::from_utf8_lossy(&from));
        assert_eq!(page.count, walked, "page {pages} {at}");
        assert_eq!(
            page.more,
            page.count > page.kvs.len() as i64,
            "page {pages} {at}"
        );
        let Some(last) = page.kvs.last().filter(|_| page.more) else {
            return pages;
        };
        from = [last.key.as_slice(), b"\0"].concat();
        let next = pods_from(from.clone(), revision, 500);
        page = bounded("page", c.kv.range(next))
            .await
            .expect("page")
            .into_inner();
    }
    unreachable!("a list ends")
}

/// `checks` count-only ranges at recent revisions, over spans all over the prefix (to a key
/// inside a stretch, or to the prefix's end), each against a walk.
async fn check_span_counts(c: &mut Clients, checks: usize) {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    for _ in 0..checks {
        let now = bounded("now", c.kv.range(pods_from(pod_key(0), 0, 1))).await;
        let now = now
            .expect("now")
            .into_inner()
            .header
            .expect("header")
            .revision;
        let revision = now - next(20) as i64;
        let from = pod_key(next(PODS as u64) as usize);
        let mut counted = pb::RangeRequest {
            count_only: true,
            ..pods_from(from.clone(), revision, 0)
        };
        if next(2) == 0 {
            counted.range_end = pod_key(next(PODS as u64) as usize).max(from);
        }
        let walked = walked_count(c, counted.clone()).await;
        let what = format!(
            "{} to {} at {revision}",
            String::from_utf8_lossy(&counted.key),
            String::from_utf8_lossy(&counted.range_end)
        );
        let counted = bounded("count", c.kv.range(counted)).await.expect("count");
        assert_eq!(counted.into_inner().count, walked, "{what}");
    }
}

/// One accepted put, one refused (empty key) and one watch stream opened and closed: each is
/// counted under its method, gRPC type and status code, with its messages and bytes.
fn grpc_calls_are_counted_as_go_grpc_prometheus_counts_them(member: &Member) {
    runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;
        c.put("counted", "v", 0).await;
        let empty = pb::PutRequest::default();
        let refused = bounded("put an empty key", c.kv.put(empty)).await;
        assert_eq!(
            refused.expect_err("empty key").code(),
            tonic::Code::InvalidArgument
        );
        let (requests, mut responses) = open_watch_stream(&mut c).await;
        let create = pb::WatchCreateRequest {
            key: b"counted".to_vec(),
            ..Default::default()
        };
        send_create(&requests, create).await;
        let created = bounded("created", responses.message()).await;
        assert!(created.expect("created").expect("a response").created);
        drop(requests);
        drop(responses);
    });
    let put = r#"grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put""#;
    let watch = r#"grpc_type="bidi_stream",grpc_service="etcdserverpb.Watch",grpc_method="Watch""#;
    let wanted = [
        format!("grpc_server_started_total{{{put}}} 2"),
        format!(r#"grpc_server_handled_total{{{put},grpc_code="OK"}} 1"#),
        format!(r#"grpc_server_handled_total{{{put},grpc_code="InvalidArgument"}} 1"#),
        format!("grpc_server_handling_seconds_count{{{put}}} 2"),
        format!("grpc_server_msg_received_total{{{put}}} 2"),
        format!("grpc_server_msg_sent_total{{{put}}} 1"),
        format!("grpc_server_started_total{{{watch}}} 1"),
        format!("grpc_server_msg_received_total{{{watch}}} 1"),
        format!("grpc_server_msg_sent_total{{{watch}}} 1"),
    ];
    // The watch stream's end reaches the server a moment after the client dropped it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(member.port, "/metrics").expect("GET /metrics");
        let ended = body.lines().any(|l| {
            l.starts_with(&format!("grpc_server_handled_total{{{watch},grpc_code="))
                && l.ends_with(" 1")
        });
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !body.lines().any(|l| l == w.as_str()))
            .collect();
        if missing.is_empty() && ended {
            let sent = body
                .lines()
                .find_map(|l| l.strip_prefix("etcd_network_client_grpc_sent_bytes_total "));
            assert!(
                sent.and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|n| n > 0),
                "{body}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "missing {missing:?} (watch ended: {ended}) in\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The whole response to a plain HTTP/1.1 request with a form body: status line, headers, body.
fn http_form(port: u16, method: &str, path: &str, form: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response.to_lowercase()
}

fn etcdctl_v2(endpoint: &str, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "2")
        .arg(format!("--endpoints={endpoint}"))
        .args(args);
    run_to_end(command)
}

#[test]
fn v2_keys_answer_as_etcd_v2_does() {
    etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    let dir = TempDir::new("v2-keys");
    let member = Member::start(&dir.0, &[]);
    let port = member.port;
    // A missing key: etcd v2's 404, with the member's revision in X-Etcd-Index.
    let missing = http_form(port, "GET", "/v2/keys/some_key_not_exists", "");
    assert!(missing.starts_with("http/1.1 404"), "{missing}");
    assert!(missing.contains("x-etcd-index: 1\r\n"), "{missing}");
    assert!(
        missing.ends_with(
            "{\"errorcode\":100,\"message\":\"key not found\",\"cause\":\"/some_key_not_exists\",\"index\":1}\n"
        ),
        "{missing}"
    );
    let created = http_form(port, "PUT", "/v2/keys/a", "value=1");
    assert!(created.starts_with("http/1.1 201"), "{created}");
    assert!(created.contains("x-etcd-index: 2\r\n"), "{created}");
    assert!(created.contains("x-raft-term: "), "{created}");
    assert!(
        created.contains("{\"action\":\"set\",\"node\":{\"key\":\"/a\",\"value\":\"1\",\"modifiedindex\":2,\"createdindex\":2}}"),
        "{created}"
    );
    let failed = http_form(port, "PUT", "/v2/keys/a?prevValue=9", "value=2");
    assert!(failed.starts_with("http/1.1 412"), "{failed}");
    assert!(failed.contains("\"cause\":\"[9 != 1]\""), "{failed}");

    // etcdctl's v2 commands.
    let endpoint = member.endpoint();
    let text = |output: &std::process::Output| {
        let mut all = String::from_utf8_lossy(&output.stdout).into_owned();
        all.push_str(&String::from_utf8_lossy(&output.stderr));
        all
    };
    let set = etcdctl_v2(&endpoint, &["set", "/k", "v"]);
    assert!(set.status.success(), "{}", text(&set));
    assert_eq!(text(&etcdctl_v2(&endpoint, &["get", "/k"])), "v\n");
    let again = etcdctl_v2(&endpoint, &["mk", "/k", "w"]);
    assert_eq!(again.status.code(), Some(4));
    assert!(
        text(&again).contains("105: Key already exists (/k)"),
        "{}",
        text(&again)
    );
    let ls = text(&etcdctl_v2(&endpoint, &["ls", "/"]));
    assert_eq!(ls, "/a\n/k\n");
    let rm = etcdctl_v2(&endpoint, &["rm", "/k"]);
    assert_eq!(text(&rm), "PrevNode.Value: v\n");
    let gone = etcdctl_v2(&endpoint, &["get", "/k"]);
    assert_eq!(gone.status.code(), Some(4));
    assert!(
        text(&gone).contains("100: Key not found (/k)"),
        "{}",
        text(&gone)
    );

    // v2 and v3 see the same keys: a v3 write is a v2 key whose indexes are its revisions.
    let revision = runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;
        c.put("/v3/key", "from-v3", 0)
            .await
            .header
            .expect("header")
            .revision
    });
    let read = http_form(port, "GET", "/v2/keys/v3/key", "");
    assert!(
        read.contains(&format!("x-etcd-index: {revision}\r\n")),
        "{read}"
    );
    assert!(
        read.contains(&format!(
            "\"value\":\"from-v3\",\"modifiedindex\":{revision}"
        )),
        "{read}"
    );
    drop(member);

    // --enable-v2=false serves no v2 keys, as etcd 3.4 by default.
    let dir = TempDir::new("v2-keys-off");
    let member = Member::start(&dir.0, &["--enable-v2=false"]);
    let (code, body) = http_get(member.port, "/v2/keys/a").expect("GET /v2/keys/a");
    assert_eq!((code, body.as_str()), (404, "404 page not found\n"));
}

#[test]
fn data_survives_restart_and_another_identity_is_refused() {
    let dir = TempDir::new("restart");
    let member = Member::start(&dir.0, &[]);
    runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;
        for i in 0..20 {
            c.put(&format!("k{i}"), &format!("v{i}"), 0).await;
        }
    });
    let status = member.terminate();
    assert!(status.success(), "SIGTERM stops stet cleanly: {status}");

    let member = Member::start(&dir.0, &[]);
    runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;
        let all = c.get("k", b"l").await.expect("get");
        assert_eq!(all.kvs.len(), 20);
        assert_eq!(c.value("k7").await.as_deref(), Some(&b"v7"[..]));
    });
    drop(member);

    let output = run_to_end(stet_command(
        &dir.0,
        free_port(),
        &["--initial-cluster-token", "another-cluster"],
    ));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("member 8e9e05c52164694d of cluster cdf818194e3a8c32 owns the data"),
        "{stderr}"
    );
}

/// The recovery runbook: copy a surviving member's data directory and start the copy alone,
/// under another name and peer URL, with `--force-new-cluster` (etcd ignores `--initial-cluster`
/// once a data directory exists). Without data, the same flags are refused with the reason.
#[test]
fn a_copied_data_dir_recovers_under_another_name_with_force_new_cluster() {
    let dir = TempDir::new("force-copy");
    let member = Member::start(&dir.0, &[]);
    let old_cluster = runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;
        for i in 0..10 {
            c.put(&format!("k{i}"), &format!("v{i}"), 0).await;
        }
        member_list(&mut c)
            .await
            .header
            .expect("a header")
            .cluster_id
    });
    assert!(member.terminate().success());

    let copy = TempDir::new("force-copy-target");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(dir.0.join("data"))
        .arg(copy.0.join("data"))
        .status()
        .expect("cp");
    assert!(copied.success());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let cluster = format!("survivor={peer}");
    let flags = [
        "--name",
        "survivor",
        "--initial-cluster",
        &cluster,
        "--initial-advertise-peer-urls",
        &peer,
        "--force-new-cluster",
    ];
    let member = Member::start(&copy.0, &flags);
    let new_cluster = runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;
        assert_eq!(c.value("k7").await.as_deref(), Some(&b"v7"[..]));
        let members = member_list(&mut c).await;
        assert_eq!(members.members.len(), 1, "{members:?}");
        c.put("after", "recovery", 0).await;
        members.header.expect("a header").cluster_id
    });
    // A new cluster: no member of the old one takes it for its own.
    assert_ne!(new_cluster, old_cluster);
    assert!(member.terminate().success());

    // Restarted with the same flags but without --force-new-cluster, it is the same member of
    // the same new cluster, with everything.
    let member = Member::start(&copy.0, &flags[..flags.len() - 1]);
    runtime().block_on(async {
        let mut c = connect(member.endpoint()).await;
        assert_eq!(c.value("after").await.as_deref(), Some(&b"recovery"[..]));
        assert_eq!(c.value("k3").await.as_deref(), Some(&b"v3"[..]));
        let members = member_list(&mut c).await;
        assert_eq!(members.members.len(), 1, "{members:?}");
        assert_eq!(members.header.expect("a header").cluster_id, new_cluster);
    });
    drop(member);

    let empty = TempDir::new("force-nothing");
    let output = run_to_end(stet_command(
        &empty.0,
        free_port(),
        &["--name", "nobody", "--force-new-cluster"],
    ));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("needs a data directory to restart from"),
        "{stderr}"
    );
}

async fn member_list(c: &mut Clients) -> pb::MemberListResponse {
    c.cluster
        .member_list(pb::MemberListRequest::default())
        .await
        .expect("member list")
        .into_inner()
}

#[test]
fn etcdctl_works_against_stet() {
    // A missing tool fails the test: tests/run-all.sh installs it (Debian's etcd-client).
    let etcdctl = etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    let dir = TempDir::new("etcdctl");
    let member = Member::start(&dir.0, &[]);
    // The endpoint as operators write it, `http://host:port`. etcdctl 3.4 sends that whole URL as
    // the HTTP/2 `:authority` of its per-endpoint commands (`endpoint status`, `endpoint hashkv`);
    // hyper's HTTP/2 server alone resets such streams (RST_STREAM PROTOCOL_ERROR), so
    // `server::h2_authority` rewrites it to `host:port` first. A bare `host:port` works as well.
    let endpoint = member.endpoint();
    let bare = format!("127.0.0.1:{}", member.port);
    assert_eq!(etcdctl_run(&etcdctl, &endpoint, &["put", "a", "1"]), "OK\n");
    assert_eq!(etcdctl_run(&etcdctl, &endpoint, &["get", "a"]), "a\n1\n");

    // A watch sees a put made while it runs.
    assert_eq!(
        etcdctl_watch_sees_put(&etcdctl, &endpoint, &endpoint),
        "PUT\nw\nseen\n"
    );

    assert_eq!(etcdctl_run(&etcdctl, &endpoint, &["del", "a"]), "1\n");
    assert_eq!(etcdctl_run(&etcdctl, &endpoint, &["get", "a"]), "");
    let members = etcdctl_run(&etcdctl, &endpoint, &["member", "list"]);
    assert_eq!(
        members,
        format!(
            "8e9e05c52164694d, started, default, http://localhost:2380, {}, false\n",
            member.endpoint()
        )
    );
    let health = run_to_end_etcdctl(&etcdctl, &endpoint, &["endpoint", "health"]);
    assert!(health.status.success());
    let text = String::from_utf8_lossy(&health.stdout).into_owned()
        + &String::from_utf8_lossy(&health.stderr);
    assert!(text.contains("is healthy"), "{text}");
    for endpoint in [&endpoint, &bare] {
        let status = etcdctl_run(&etcdctl, endpoint, &["endpoint", "status"]);
        assert!(
            status.starts_with(&format!("{endpoint}, 8e9e05c52164694d, 3.5.13")),
            "{status}"
        );
        assert!(
            status.contains(", true, false,"),
            "leader, not learner: {status}"
        );
    }
    let hash = |endpoint: &str| {
        let line = etcdctl_run(&etcdctl, endpoint, &["endpoint", "hashkv"]);
        let hash = line
            .trim_end()
            .strip_prefix(&format!("{endpoint}, "))
            .unwrap_or_else(|| panic!("hashkv names its endpoint: {line}"));
        hash.parse::<u32>()
            .unwrap_or_else(|_| panic!("a hash: {line}"))
    };
    assert_eq!(hash(&endpoint), hash(&bare), "one store, one hash");

    // `snapshot save` checks the backup's length and SHA-256 trailer as it writes the file; the
    // file restores the state.
    etcdctl_run(&etcdctl, &endpoint, &["put", "saved", "in the backup"]);
    let file = dir.0.join("backup.db");
    let file_arg = file.to_string_lossy().into_owned();
    let saved = run_to_end_etcdctl(&etcdctl, &endpoint, &["snapshot", "save", &file_arg]);
    let said = String::from_utf8_lossy(&saved.stdout).into_owned()
        + &String::from_utf8_lossy(&saved.stderr);
    assert!(saved.status.success(), "{said}");
    assert!(said.contains("Snapshot saved at"), "{said}");
    let bytes = std::fs::read(&file).expect("the saved backup");
    let (_, value) = value_in_backup(&bytes, b"saved");
    assert_eq!(value.as_deref(), Some(&b"in the backup"[..]));
}

/// The space quota as etcd operators know it, with the real etcdctl: past
/// `--quota-backend-bytes` a put fails with NOSPACE and raises the alarm; while it is raised,
/// puts and lease grants fail and deletes go through; it survives a kill -9; compaction,
/// defragmentation (which shrinks the file) and `alarm disarm` let writes in again.
#[test]
fn past_the_quota_etcdctl_sees_nospace_until_compact_defrag_and_disarm() {
    let etcdctl = etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    let dir = TempDir::new("quota");
    let quota = format!("--quota-backend-bytes={}", 2 << 20);
    let member = Member::start(&dir.0, &[&quota]);
    let endpoint = member.endpoint();
    let value = "x".repeat(64 << 10);
    let mut refused = None;
    for _ in 0..200 {
        let output = run_to_end_etcdctl(&etcdctl, &endpoint, &["put", "k", &value]);
        if !output.status.success() {
            refused = Some(String::from_utf8_lossy(&output.stderr).into_owned());
            break;
        }
    }
    let refused = refused.expect("200 puts of 64 KiB never passed a 2 MiB quota");
    assert!(
        refused.contains("Error: etcdserver: mvcc: database space exceeded"),
        "{refused}"
    );
    let alarm = "memberID:10276657743932975437 alarm:NOSPACE \n";
    assert_eq!(etcdctl_run(&etcdctl, &endpoint, &["alarm", "list"]), alarm);
    let status = etcdctl_run(&etcdctl, &endpoint, &["endpoint", "status", "-w", "json"]);
    assert!(
        status.contains(r#""errors":["memberID:10276657743932975437 alarm:NOSPACE "]"#),
        "{status}"
    );
    let grant = run_to_end_etcdctl(&etcdctl, &endpoint, &["lease", "grant", "10"]);
    assert!(!grant.status.success(), "a lease grant is refused");
    // As etcd 3.4: a raised alarm makes the member unhealthy, unless the probe excludes it.
    let (code, body) = http_get(member.port, "/health").expect("GET /health");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(r#""health":"false","reason":"ALARM NOSPACE""#),
        "{body}"
    );
    let (code, body) = http_get(member.port, "/health?exclude=NOSPACE").expect("GET /health");
    assert_eq!(
        (code, body.contains(r#""health":"true""#)),
        (200, true),
        "{body}"
    );
    assert_eq!(etcdctl_run(&etcdctl, &endpoint, &["del", "absent"]), "0\n");

    drop(member); // kill -9
    let member = Member::start(&dir.0, &[&quota]);
    let endpoint = member.endpoint();
    assert_eq!(
        etcdctl_run(&etcdctl, &endpoint, &["alarm", "list"]),
        alarm,
        "the alarm survives a restart"
    );
    let revision = status_field(
        &etcdctl_run(&etcdctl, &endpoint, &["endpoint", "status", "-w", "json"]),
        "revision",
    );
    etcdctl_run(&etcdctl, &endpoint, &["compact", &revision.to_string()]);
    let full = status_field(
        &etcdctl_run(&etcdctl, &endpoint, &["endpoint", "status", "-w", "json"]),
        "dbSize",
    );
    // The bytes in use (not in etcdctl 3.4's JSON) are measured on the side, a second or so
    // after the compaction's commit.
    runtime().block_on(async {
        let mut c = connect(endpoint.clone()).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = bounded("status", c.maintenance.status(pb::StatusRequest {}))
                .await
                .expect("status")
                .into_inner();
            assert!(status.db_size_in_use <= status.db_size, "{status:?}");
            if status.db_size_in_use * 4 < status.db_size {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the compacted revisions' pages still count as in use: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let defrag = etcdctl_run(&etcdctl, &endpoint, &["defrag"]);
    assert!(
        defrag.starts_with("Finished defragmenting etcd member"),
        "{defrag}"
    );
    let defragmented = status_field(
        &etcdctl_run(&etcdctl, &endpoint, &["endpoint", "status", "-w", "json"]),
        "dbSize",
    );
    assert!(
        defragmented * 2 < full,
        "{full} bytes before defrag, {defragmented} after"
    );
    let still = run_to_end_etcdctl(&etcdctl, &endpoint, &["put", "k", "v"]);
    assert!(
        !still.status.success(),
        "refused until the alarm is disarmed"
    );
    assert_eq!(
        etcdctl_run(&etcdctl, &endpoint, &["alarm", "disarm"]),
        alarm
    );
    assert_eq!(etcdctl_run(&etcdctl, &endpoint, &["alarm", "list"]), "");
    assert_eq!(etcdctl_run(&etcdctl, &endpoint, &["put", "k", "v"]), "OK\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while http_get(member.port, "/health").expect("GET /health").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "still unhealthy after the disarm"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A number field of `etcdctl endpoint status -w json`.
fn status_field(json: &str, field: &str) -> u64 {
    let start = json
        .find(&format!("\"{field}\":"))
        .unwrap_or_else(|| panic!("no {field} in {json}"))
        + field.len()
        + 3;
    let digits: String = json[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{field} is not a number in {json}"))
}

/// The `etcd-client` crate (a third-party Rust client of etcd's v3 API) against stet.
#[test]
fn etcd_client_crate_works_against_stet() {
    use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp};
    let dir = TempDir::new("etcd-client");
    let member = Member::start(&dir.0, &[]);
    runtime().block_on(async {
        let mut client = bounded("connect", Client::connect([member.endpoint()], None))
            .await
            .expect("connect");

        // put / get / prefix / delete
        bounded("put", client.put("fruit/apple", "red", None))
            .await
            .expect("put");
        bounded("put", client.put("fruit/banana", "yellow", None))
            .await
            .expect("put");
        let got = bounded("get", client.get("fruit/apple", None))
            .await
            .expect("get");
        assert_eq!(got.kvs()[0].value(), b"red");
        let all = bounded(
            "get prefix",
            client.get("fruit/", Some(GetOptions::new().with_prefix())),
        )
        .await
        .expect("get prefix");
        assert_eq!(all.count(), 2);
        let deleted = bounded("delete", client.delete("fruit/banana", None))
            .await
            .expect("delete");
        assert_eq!(deleted.deleted(), 1);

        // txn: compare-and-set succeeds once, then fails
        let cas = |expect: &'static str, new: &'static str| {
            Txn::new()
                .when([Compare::value("fruit/apple", CompareOp::Equal, expect)])
                .and_then([TxnOp::put("fruit/apple", new, None)])
                .or_else([TxnOp::get("fruit/apple", None)])
        };
        let first = bounded("txn", client.txn(cas("red", "green")))
            .await
            .expect("txn");
        assert!(first.succeeded());
        let second = bounded("txn", client.txn(cas("red", "blue")))
            .await
            .expect("txn");
        assert!(!second.succeeded());

        // watch sees a put and a delete
        let mut stream = bounded("watch", client.watch("w", None))
            .await
            .expect("watch");
        bounded("put", client.put("w", "1", None))
            .await
            .expect("put");
        bounded("delete", client.delete("w", None))
            .await
            .expect("delete");
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let response = bounded("watch event", stream.message())
                .await
                .expect("watch stream")
                .expect("a watch response");
            seen.extend(response.events().iter().map(|e| e.event_type()));
        }
        assert_eq!(seen, vec![EventType::Put, EventType::Delete]);

        // lease: grant, attach, keep alive, time to live, revoke deletes the key
        let lease = bounded("grant", client.lease_grant(30, None))
            .await
            .expect("grant");
        bounded(
            "put with lease",
            client.put(
                "leased",
                "v",
                Some(PutOptions::new().with_lease(lease.id())),
            ),
        )
        .await
        .expect("put");
        let (mut keeper, mut kept) = bounded("keep alive", client.lease_keep_alive(lease.id()))
            .await
            .expect("keep alive");
        bounded("keep alive", keeper.keep_alive())
            .await
            .expect("keep alive");
        let renewed = bounded("keep alive answer", kept.message())
            .await
            .expect("stream")
            .expect("answer");
        assert!(renewed.ttl() > 0);
        let ttl = bounded("time to live", client.lease_time_to_live(lease.id(), None))
            .await
            .expect("time to live");
        assert!(ttl.ttl() > 0 && ttl.ttl() <= 30);
        bounded("revoke", client.lease_revoke(lease.id()))
            .await
            .expect("revoke");
        let gone = bounded("get", client.get("leased", None))
            .await
            .expect("get");
        assert_eq!(gone.count(), 0);
    });
}

/// Several listen URLs per flag (etcd's 2379 and 4001 habit), and advertised client URLs published
/// again after a restart that changes them.
#[test]
fn several_client_urls_and_new_advertised_urls_after_restart() {
    let dir = TempDir::new("urls");
    let (first, second) = (free_port(), free_port());
    let listen = format!("http://127.0.0.1:{first},http://127.0.0.1:{second}");
    let advertised = format!("http://127.0.0.1:{first}");
    let member = Member::start_on(
        &dir.0,
        first,
        &[
            "--listen-client-urls",
            &listen,
            "--advertise-client-urls",
            &advertised,
        ],
    );
    for port in [first, second] {
        let (code, body) = http_get(port, "/health").expect("health");
        assert_eq!(code, 200, "port {port}: {body}");
    }
    let client_urls = |port: u16| {
        runtime().block_on(async {
            let mut c = connect(format!("http://127.0.0.1:{port}")).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let list = bounded(
                    "member list",
                    c.cluster.member_list(pb::MemberListRequest::default()),
                )
                .await
                .expect("member list")
                .into_inner();
                let urls = list.members[0].client_ur_ls.clone();
                if !urls.is_empty() || Instant::now() > deadline {
                    return urls;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    assert_eq!(client_urls(second), vec![advertised]);
    assert!(member.terminate().success());

    let readvertised = format!("http://127.0.0.1:{second}");
    let _member = Member::start_on(
        &dir.0,
        first,
        &[
            "--listen-client-urls",
            &listen,
            "--advertise-client-urls",
            &readvertised,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while client_urls(first) != vec![readvertised.clone()] {
        assert!(
            Instant::now() < deadline,
            "the new advertised client URL was not published"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
