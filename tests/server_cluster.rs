//! Three real `stet` processes on 127.0.0.1 talking over the peer transport: writes through one
//! member are read through the others, watches and lease expiry cross members, a leader killed
//! with SIGKILL under write load loses no acknowledged write and catches up after restart, a member
//! joins and is removed, a member of another cluster is refused, and the real `etcdctl` 3.4 works
//! against the cluster. Every wait is bounded; every child is killed when its test ends.

mod procs;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use procs::*;
use stet::proto::etcdserverpb as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Short raft timings keep failover quick: 50 ms heartbeats, 500 ms election timeout.
const TIMING: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];

struct Proc {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of `stet` processes sharing one temporary directory.
struct Cluster {
    dir: TempDir,
    members: Vec<Proc>,
    token: String,
    /// Flags every member gets.
    extra: Vec<String>,
}

impl Cluster {
    /// `n` members named m0, m1, ... bootstrapped together with `--initial-cluster-state new`.
    fn start(tag: &str, n: usize) -> Cluster {
        Cluster::start_with(tag, n, &[])
    }

    /// `start` with extra flags for every member.
    fn start_with(tag: &str, n: usize, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster {
            dir: TempDir::new(tag),
            members: Vec::new(),
            token: format!("token-{tag}"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            cluster.members.push(Proc {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
                log: cluster.dir.0.join(format!("m{i}.log")),
            });
        }
        for i in 0..n {
            cluster.launch(i, "new", &[]);
        }
        for i in 0..n {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn command(&self, i: usize, state: &str, extra: &[&str]) -> Command {
        let m = &self.members[i];
        let mut command = member_command();
        command
            .args(["--name", &m.name])
            .args([
                "--data-dir",
                &self.dir.0.join(&m.name).display().to_string(),
            ])
            .args(url_flags(&m.endpoint(), &m.peer_url()))
            .args(["--initial-cluster", &self.initial_cluster()])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(TIMING)
            .args(&self.extra)
            .args(extra);
        command
    }

    /// Starts member `i`, appending its log to `m<i>.log`.
    fn launch(&mut self, i: usize, state: &str, extra: &[&str]) {
        let log = append_log(&self.members[i].log);
        let child = self
            .command(i, state, extra)
            .stderr(log)
            .spawn()
            .expect("spawn stet");
        self.members[i].child = Some(child);
    }

    /// Waits until member `i` answers `/health` with `true` (it has a leader).
    fn wait_healthy(&mut self, i: usize) {
        let member = &mut self.members[i];
        let child = member.child.as_mut().expect("a running member");
        wait_healthy(child, member.client_port, "/health", Some(&member.log));
    }

    fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Proc::endpoint).collect()
    }
}

/// The index of the member that says it leads, asking every live member.
async fn find_leader(cluster: &Cluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for (i, member) in cluster.members.iter().enumerate() {
            if member.child.is_none() {
                continue;
            }
            let Ok(channel) = tonic::transport::Channel::from_shared(member.endpoint())
                .expect("endpoint")
                .connect()
                .await
            else {
                continue;
            };
            let mut maintenance = pb::maintenance_client::MaintenanceClient::new(channel);
            let Ok(Ok(status)) = tokio::time::timeout(
                Duration::from_secs(2),
                maintenance.status(pb::StatusRequest::default()),
            )
            .await
            else {
                continue;
            };
            let status = status.into_inner();
            let me = status.header.map_or(0, |h| h.member_id);
            if status.leader != 0 && status.leader == me {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn serializable_value(clients: &mut Clients, key: &str) -> Option<Vec<u8>> {
    let request = pb::RangeRequest {
        key: key.into(),
        serializable: true,
        ..Default::default()
    };
    let response = bounded("serializable get", clients.kv.range(request))
        .await
        .expect("get")
        .into_inner();
    response.kvs.first().map(|kv| kv.value.clone())
}

/// Polls until `check` holds, for at most `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn three_members_share_writes_watches_and_lease_expiry() {
    let cluster = Cluster::start("three", 3);
    runtime().block_on(async {
        let endpoints = cluster.endpoints();
        let mut c0 = connect(endpoints[0].clone()).await;
        let mut c1 = connect(endpoints[1].clone()).await;
        let mut c2 = connect(endpoints[2].clone()).await;

        // Written through one member, read (linearizably) through the others.
        let put = c0.put("greeting", "hello", 0).await;
        assert!(put.header.expect("header").revision > 1);
        assert_eq!(c1.value("greeting").await.as_deref(), Some(&b"hello"[..]));
        assert_eq!(c2.value("greeting").await.as_deref(), Some(&b"hello"[..]));

        // Every member reports the same cluster and a distinct member ID.
        let list = bounded(
            "member list",
            c2.cluster.member_list(pb::MemberListRequest::default()),
        )
        .await
        .expect("member list")
        .into_inner();
        assert_eq!(list.members.len(), 3);
        let ids: BTreeSet<u64> = list.members.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), 3);
        // Names and client URLs are published by each member once it runs.
        eventually(
            "every member published its name",
            Duration::from_secs(10),
            || {
                let mut c = c2.cluster.clone();
                async move {
                    let list = c
                        .member_list(pb::MemberListRequest::default())
                        .await
                        .map(|r| r.into_inner().members)
                        .unwrap_or_default();
                    list.iter()
                        .all(|m| !m.name.is_empty() && !m.client_ur_ls.is_empty())
                }
            },
        )
        .await;

        // A watch on one member sees a write made through another.
        let (requests, inbound) = mpsc::channel(4);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: b"w".to_vec(),
                    ..Default::default()
                },
            )),
        };
        requests.send(create).await.expect("send create");
        let mut events = bounded("watch", c2.watch.watch(ReceiverStream::new(inbound)))
            .await
            .expect("watch")
            .into_inner();
        let created = bounded("created", events.message())
            .await
            .expect("stream")
            .expect("created");
        assert!(created.created);
        c1.put("w", "across", 0).await;
        let event = bounded("event", events.message())
            .await
            .expect("stream")
            .expect("event");
        assert_eq!(event.events.len(), 1);
        assert_eq!(
            event.events[0].kv.as_ref().map(|kv| kv.value.clone()),
            Some(b"across".to_vec())
        );
        drop(requests);

        // A lease granted through one member, kept alive through a follower (forwarded to the
        // leader), then left to expire: its key disappears on every member.
        let grant = bounded(
            "grant",
            c1.lease
                .lease_grant(pb::LeaseGrantRequest { ttl: 3, id: 0 }),
        )
        .await
        .expect("grant")
        .into_inner();
        c1.put("leased", "soon gone", grant.id).await;
        let leader = find_leader(&cluster).await;
        let follower = (leader + 1) % 3;
        let mut cf = connect(endpoints[follower].clone()).await;
        let ttl = bounded(
            "time to live through a follower",
            cf.lease.lease_time_to_live(pb::LeaseTimeToLiveRequest {
                id: grant.id,
                keys: true,
            }),
        )
        .await
        .expect("time to live")
        .into_inner();
        assert!(ttl.ttl > 0 && ttl.ttl <= 3, "{ttl:?}");
        assert_eq!(ttl.keys, vec![b"leased".to_vec()]);
        let (keep, keep_inbound) = mpsc::channel(1);
        keep.send(pb::LeaseKeepAliveRequest { id: grant.id })
            .await
            .expect("send keep-alive");
        let mut kept = bounded(
            "keep-alive through a follower",
            cf.lease.lease_keep_alive(ReceiverStream::new(keep_inbound)),
        )
        .await
        .expect("keep-alive")
        .into_inner();
        let renewed = bounded("keep-alive answer", kept.message())
            .await
            .expect("stream")
            .expect("answer");
        assert_eq!(renewed.id, grant.id);
        assert!(renewed.ttl > 0, "{renewed:?}");
        drop(keep);
        for (i, clients) in [&mut c0, &mut c1, &mut c2].into_iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while serializable_value(clients, "leased").await.is_some() {
                assert!(Instant::now() < deadline, "leased key still on member {i}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
}

#[test]
fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start("kill", 3);
    let runtime = runtime();
    let leader = runtime.block_on(find_leader(&cluster));
    let endpoints = cluster.endpoints();

    // Writers through every member, each recording the keys whose puts were acknowledged.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let endpoints = endpoints.clone();
            let stopped = stopped.clone();
            runtime.spawn(async move {
                let mut acknowledged = Vec::new();
                let mut n = 0u64;
                let mut target = w;
                let mut client: Option<Clients> = None;
                while !*stopped.borrow() {
                    if client.is_none() {
                        let channel =
                            tonic::transport::Channel::from_shared(endpoints[target % 3].clone())
                                .expect("endpoint")
                                .connect_timeout(Duration::from_millis(500))
                                .connect()
                                .await;
                        match channel {
                            Ok(channel) => {
                                client = Some(Clients::from_channel(channel));
                            }
                            Err(_) => {
                                target += 1;
                                continue;
                            }
                        }
                    }
                    let Some(c) = client.as_mut() else { continue };
                    let key = format!("w{w}-{n}");
                    n += 1;
                    let request = pb::PutRequest {
                        key: key.clone().into_bytes(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    };
                    match tokio::time::timeout(Duration::from_secs(3), c.kv.put(request)).await {
                        Ok(Ok(_)) => acknowledged.push((key, Instant::now())),
                        _ => {
                            // Unknown outcome: try another member.
                            client = None;
                            target += 1;
                        }
                    }
                }
                acknowledged
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = Instant::now();
    cluster.members[leader].kill();
    std::thread::sleep(Duration::from_millis(5000));
    let _ = stop.send(true);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(runtime.block_on(writer).expect("writer"));
    }
    let before = acknowledged
        .iter()
        .filter(|(_, at)| *at < killed_at)
        .count();
    let after = acknowledged
        .iter()
        .filter(|(_, at)| *at > killed_at)
        .count();
    assert!(before > 0, "no write was acknowledged before the kill");
    // A new leader served writes within the five seconds after the kill (ten election timeouts;
    // generous, as CI runs these processes side by side on two cores).
    assert!(
        after > 0,
        "no write was acknowledged after the leader was killed"
    );

    runtime.block_on(async {
        let survivor = (leader + 1) % 3;
        let mut c = connect(endpoints[survivor].clone()).await;
        for (key, _) in &acknowledged {
            assert!(
                c.value(key).await.is_some(),
                "acknowledged write {key} is missing after the leader was killed"
            );
        }
    });

    // The killed member restarts from its data directory and catches up.
    cluster.launch(leader, "new", &[]);
    cluster.wait_healthy(leader);
    let last = acknowledged
        .last()
        .map(|(k, _)| k.clone())
        .expect("a write");
    runtime.block_on(async {
        let mut c = connect(endpoints[leader].clone()).await;
        eventually(
            "the restarted member caught up",
            Duration::from_secs(15),
            || {
                let mut kv = c.kv.clone();
                let key = last.clone();
                async move {
                    let request = pb::RangeRequest {
                        key: key.into_bytes(),
                        serializable: true,
                        ..Default::default()
                    };
                    kv.range(request)
                        .await
                        .is_ok_and(|r| !r.into_inner().kvs.is_empty())
                }
            },
        )
        .await;
        let all = c.get("w", b"x").await.expect("range");
        assert!(all.kvs.len() >= acknowledged.len());
    });
}

#[test]
fn a_member_joins_an_existing_cluster_and_exits_when_removed() {
    let mut cluster = Cluster::start("join", 3);
    let runtime = runtime();
    let endpoints = cluster.endpoints();
    runtime.block_on(async {
        let mut c = connect(endpoints[0].clone()).await;
        c.put("before-join", "1", 0).await;
    });
    cluster.members.push(Proc {
        name: "m3".to_string(),
        client_port: free_port(),
        peer_port: free_port(),
        child: None,
        log: cluster.dir.0.join("m3.log"),
    });
    let added = runtime.block_on(async {
        let mut c = connect(endpoints[1].clone()).await;
        bounded(
            "member add",
            c.cluster.member_add(pb::MemberAddRequest {
                peer_ur_ls: vec![cluster.members[3].peer_url()],
                is_learner: false,
            }),
        )
        .await
        .expect("member add")
        .into_inner()
    });
    let new_id = added.member.expect("the added member").id;
    cluster.launch(3, "existing", &[]);
    cluster.wait_healthy(3);
    runtime.block_on(async {
        let mut c = connect(cluster.members[3].endpoint()).await;
        assert_eq!(c.value("before-join").await.as_deref(), Some(&b"1"[..]));
        let status = bounded("status", c.maintenance.status(pb::StatusRequest::default()))
            .await
            .expect("status")
            .into_inner();
        assert_eq!(status.header.map(|h| h.member_id), Some(new_id));
        // Removing it makes it exit with etcd's message.
        let mut c0 = connect(endpoints[0].clone()).await;
        bounded(
            "member remove",
            c0.cluster
                .member_remove(pb::MemberRemoveRequest { id: new_id }),
        )
        .await
        .expect("member remove");
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let child = cluster.members[3].child.as_mut().expect("running");
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the removed member did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    assert!(cluster.members[3]
        .log_text()
        .contains("this member has been permanently removed from the cluster. Exiting."));
}

#[test]
fn a_member_of_another_cluster_is_refused_and_both_sides_say_why() {
    let cluster = Cluster::start("mismatch", 1);
    // A two-member cluster with another token whose second member is the first cluster's member.
    let dir = TempDir::new("stranger");
    let port = free_port();
    let peer = format!("http://127.0.0.1:{}", free_port());
    let log_path = dir.0.join("stranger.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let initial = format!(
        "stranger={peer},{}={}",
        cluster.members[0].name,
        cluster.members[0].peer_url()
    );
    let mut stranger = Command::new(env!("CARGO_BIN_EXE_stet"))
        .args(["--name", "stranger", "--data-dir"])
        .arg(dir.0.join("data"))
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{port}")])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &initial])
        .args(["--initial-cluster-token", "another-cluster"])
        .args(["--log-format", "json"])
        .args(TIMING)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn stranger");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let theirs = std::fs::read_to_string(&log_path).unwrap_or_default();
        let ours = cluster.members[0].log_text();
        if theirs.contains("cluster ID mismatch") && ours.contains("cluster ID mismatch") {
            assert!(ours.contains("remote_cluster_id"), "{ours}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both sides should log a cluster ID mismatch\nstranger:\n{theirs}\nmember:\n{ours}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = stranger.kill();
    let _ = stranger.wait();
    // `--log-format json`: one JSON object per line.
    let theirs = std::fs::read_to_string(&log_path).unwrap_or_default();
    for line in theirs.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            parsed.get("msg").is_some() && parsed.get("level").is_some(),
            "{line}"
        );
    }
    // The real cluster is unharmed.
    runtime().block_on(async {
        let mut c = connect(cluster.members[0].endpoint()).await;
        c.put("still", "fine", 0).await;
        assert_eq!(c.value("still").await.as_deref(), Some(&b"fine"[..]));
    });
}

#[test]
fn etcdctl_works_against_three_members() {
    // A missing tool fails the test: tests/run-all.sh installs it (Debian's etcd-client).
    let etcdctl = etcdctl().expect("etcdctl is not installed: apt-get install -y etcd-client");
    let cluster = Cluster::start("etcdctl3", 3);
    let all = cluster
        .members
        .iter()
        .map(|m| format!("http://127.0.0.1:{}", m.client_port))
        .collect::<Vec<_>>()
        .join(",");
    let one = |i: usize| format!("http://127.0.0.1:{}", cluster.members[i].client_port);
    assert_eq!(etcdctl_run(&etcdctl, &one(0), &["put", "p/a", "1"]), "OK\n");
    assert_eq!(etcdctl_run(&etcdctl, &one(1), &["put", "p/b", "2"]), "OK\n");
    assert_eq!(
        etcdctl_run(&etcdctl, &one(2), &["get", "--prefix", "p/"]),
        "p/a\n1\np/b\n2\n"
    );
    assert_eq!(etcdctl_run(&etcdctl, &one(2), &["del", "p/a"]), "1\n");
    assert_eq!(
        etcdctl_run(&etcdctl, &one(0), &["get", "--prefix", "p/", "--keys-only"]),
        "p/b\n\n"
    );

    // A watch through one member sees a put through another.
    assert_eq!(
        etcdctl_watch_sees_put(&etcdctl, &one(2), &one(0)),
        "PUT\nw\nseen\n"
    );

    let members = etcdctl_run(&etcdctl, &all, &["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    for m in &cluster.members {
        assert!(
            members.contains(&format!(", started, {}, {}", m.name, m.peer_url())),
            "{members}"
        );
    }
    let output = run_to_end_etcdctl(&etcdctl, &all, &["endpoint", "health"]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        format!("{stdout}{stderr}").matches("is healthy").count(),
        3,
        "{stdout}{stderr}"
    );
    let status = etcdctl_run(&etcdctl, &all, &["endpoint", "status"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    assert_eq!(
        status.matches(", true, false, ").count(),
        1,
        "one leader: {status}"
    );
}

#[test]
fn operations_on_three_members() {
    let cluster = Cluster::start("ops", 3);
    let runtime = runtime();
    let endpoints = cluster.endpoints();
    let port = cluster.members[0].client_port;

    // etcd v2's members API: list, add, refuse a duplicate, remove, refuse a second removal.
    let (code, body) = http_get(port, "/v2/members").expect("GET /v2/members");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body.matches("\"peerURLs\"").count(), 3, "{body}");
    let spare = format!("http://127.0.0.1:{}", free_port());
    let add = format!("{{\"peerURLs\":[\"{spare}\"]}}");
    let (code, body) = http_request(port, "POST", "/v2/members", Some(&add)).expect("POST");
    assert_eq!(code, 201, "{body}");
    let id = body
        .split("\"id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the new member's id")
        .to_string();
    let (code, _) = http_request(port, "POST", "/v2/members", Some(&add)).expect("POST again");
    assert_eq!(code, 409);
    let path = format!("/v2/members/{id}");
    assert_eq!(
        http_request(port, "DELETE", &path, None).expect("DELETE").0,
        204
    );
    assert_eq!(
        http_request(port, "DELETE", &path, None)
            .expect("DELETE again")
            .0,
        410
    );

    runtime.block_on(async {
        let mut c = connect(endpoints[1].clone()).await;
        c.put("backed-up", "yes", 0).await;

        // Maintenance.Snapshot streams a backup that decodes and holds the data.
        let mut stream = bounded("snapshot", c.maintenance.snapshot(pb::SnapshotRequest {}))
            .await
            .expect("snapshot")
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = bounded("chunk", stream.message()).await.expect("chunk") {
            bytes.extend_from_slice(&chunk.blob);
            if chunk.remaining_bytes == 0 {
                break;
            }
        }
        let (index, value) = value_in_backup(&bytes, b"backed-up");
        assert!(index > 0);
        assert!(value.is_some());

        // MoveLeader: refused by a follower, done by the leader.
        let leader = find_leader(&cluster).await;
        let target = (leader + 1) % 3;
        let mut to_target = connect(endpoints[target].clone()).await;
        let target_id = bounded("status", to_target.maintenance.status(pb::StatusRequest {}))
            .await
            .expect("status")
            .into_inner()
            .header
            .expect("header")
            .member_id;
        let refused = bounded(
            "move leader on a follower",
            to_target
                .maintenance
                .move_leader(pb::MoveLeaderRequest { target_id }),
        )
        .await
        .expect_err("a follower refuses MoveLeader");
        assert_eq!(refused.message(), "etcdserver: not leader");
        let mut to_leader = connect(endpoints[leader].clone()).await;
        bounded(
            "move leader",
            to_leader
                .maintenance
                .move_leader(pb::MoveLeaderRequest { target_id }),
        )
        .await
        .expect("move leader");
        assert_eq!(find_leader(&cluster).await, target);

        // Defragment is accepted (a no-op for stet).
        bounded(
            "defragment",
            c.maintenance.defragment(pb::DefragmentRequest {}),
        )
        .await
        .expect("defragment");
    });

    // Members compare clocks with each peer (first about 5 s after start): on one machine the
    // offsets are far below a second.
    let deadline = Instant::now() + Duration::from_secs(20);
    let offsets = loop {
        let (_, metrics) = http_get(port, "/metrics").expect("metrics");
        let offsets: Vec<f64> = metrics
            .lines()
            .filter(|l| l.starts_with("stet_network_peer_clock_offset_seconds{To="))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if offsets.len() == 2 || Instant::now() > deadline {
            break offsets;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(offsets.len(), 2, "{offsets:?}");
    assert!(offsets.iter().all(|o| o.abs() < 1.0), "{offsets:?}");

    // /metrics reports fsync latency, proposals and per-method request counts.
    let (code, metrics) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    let fsyncs: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("etcd_disk_wal_fsync_duration_seconds_count "))
        .and_then(|v| v.parse().ok())
        .expect("fsync count");
    assert!(fsyncs > 0, "{metrics}");
    // The refused membership changes above were applied and answered with an error: as in
    // etcd, only proposals that time out or are dropped count as failed.
    assert!(
        metrics.contains("etcd_server_proposals_failed_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("etcd_server_proposals_pending 0"),
        "{metrics}"
    );
}

#[test]
fn a_member_far_behind_catches_up_from_a_streamed_snapshot() {
    // Snapshots every 20 entries, keeping only 5 behind: a member that misses 60 writes of 40 KiB
    // each can only catch up from a snapshot of more than 2 MiB, sent in several frames.
    let flags = [
        "--snapshot-count",
        "20",
        "--experimental-snapshot-catchup-entries",
        "5",
    ];
    let mut cluster = Cluster::start_with("snapcatch", 3, &flags);
    let runtime = runtime();
    let leader = runtime.block_on(find_leader(&cluster));
    let behind = (leader + 1) % 3;
    cluster.members[behind].kill();
    let value = "x".repeat(40 * 1024);
    let endpoints = cluster.endpoints();
    runtime.block_on(async {
        let mut c = connect(endpoints[leader].clone()).await;
        for i in 0..60 {
            c.put(&format!("big{i:02}"), &value, 0).await;
        }
    });
    cluster.launch(behind, "new", &[]);
    cluster.wait_healthy(behind);
    runtime.block_on(async {
        let mut c = connect(endpoints[behind].clone()).await;
        eventually("the member caught up", Duration::from_secs(20), || {
            let mut kv = c.kv.clone();
            async move {
                let request = pb::RangeRequest {
                    key: b"big".to_vec(),
                    range_end: b"bih".to_vec(),
                    serializable: true,
                    count_only: true,
                    ..Default::default()
                };
                kv.range(request)
                    .await
                    .is_ok_and(|r| r.into_inner().count == 60)
            }
        })
        .await;
        assert_eq!(c.value("big59").await.map(|v| v.len()), Some(value.len()));
    });
    assert!(
        cluster.members[behind]
            .log_text()
            .contains("installing the leader's snapshot"),
        "the member should have caught up from a snapshot\n{}",
        cluster.members[behind].log_text()
    );
}

#[test]
fn without_a_quorum_requests_fail_with_an_error_instead_of_hanging() {
    let mut cluster = Cluster::start("noquorum", 3);
    cluster.members[1].kill();
    cluster.members[2].kill();
    let endpoint = cluster.members[0].endpoint();
    runtime().block_on(async {
        let mut c = connect(endpoint).await;
        let started = Instant::now();
        let put = pb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        let error = tokio::time::timeout(Duration::from_secs(30), c.kv.put(put))
            .await
            .expect("a write without a quorum must end with an error, not hang")
            .expect_err("a write without a quorum cannot succeed");
        assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
        assert!(
            error.message() == "etcdserver: request timed out"
                || error.message() == "etcdserver: no leader",
            "{error:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        let read = tokio::time::timeout(
            Duration::from_secs(30),
            c.kv.range(pb::RangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            }),
        )
        .await
        .expect("a linearizable read without a quorum must end, not hang");
        assert!(read.is_err(), "{read:?}");
        every_kind_of_request_ends_without_a_quorum(&c).await;
    });
    // /health says why it is unhealthy.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = http_get(cluster.members[0].client_port, "/health").expect("health");
        if code == 503 {
            assert!(body.contains("\"health\":\"false\""), "{body}");
            assert!(body.contains("reason"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still healthy without a quorum: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every kind of request a member without a quorum can get ends — with an answer or an error —
/// well before a client's deadline: none waits for a leader that does not come.
async fn every_kind_of_request_ends_without_a_quorum(c: &Clients) {
    use pb::alarm_request::AlarmAction;
    let mut requests = tokio::task::JoinSet::new();
    macro_rules! ask {
        ($name:literal, $client:ident, $method:ident, $request:expr) => {{
            let mut client = c.$client.clone();
            let request = $request;
            requests.spawn(async move {
                let answer = tokio::time::timeout(Duration::from_secs(30), client.$method(request));
                ($name, answer.await.map(|result| result.map(|_| ())))
            });
        }};
    }
    let compare = pb::Compare {
        key: b"k".to_vec(),
        target: pb::compare::CompareTarget::Version as i32,
        ..Default::default()
    };
    let txn = pb::TxnRequest {
        compare: vec![compare],
        ..Default::default()
    };
    let delete = pb::DeleteRangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    };
    ask!("txn", kv, txn, txn);
    ask!("delete", kv, delete_range, delete);
    ask!(
        "compact",
        kv,
        compact,
        pb::CompactionRequest {
            revision: 1,
            physical: false
        }
    );
    ask!(
        "lease grant",
        lease,
        lease_grant,
        pb::LeaseGrantRequest { ttl: 10, id: 0 }
    );
    ask!(
        "lease revoke",
        lease,
        lease_revoke,
        pb::LeaseRevokeRequest { id: 7 }
    );
    let ttl = pb::LeaseTimeToLiveRequest { id: 7, keys: false };
    ask!("lease time to live", lease, lease_time_to_live, ttl);
    ask!(
        "lease leases",
        lease,
        lease_leases,
        pb::LeaseLeasesRequest {}
    );
    let add = pb::MemberAddRequest {
        peer_ur_ls: vec!["http://127.0.0.1:1".to_string()],
        is_learner: false,
    };
    ask!("member add", cluster, member_add, add);
    ask!(
        "member remove",
        cluster,
        member_remove,
        pb::MemberRemoveRequest { id: 1 }
    );
    ask!(
        "member promote",
        cluster,
        member_promote,
        pb::MemberPromoteRequest { id: 1 }
    );
    let list = pb::MemberListRequest { linearizable: true };
    ask!("member list (linearizable)", cluster, member_list, list);
    let alarm = pb::AlarmRequest {
        action: AlarmAction::Activate as i32,
        member_id: 1,
        alarm: pb::AlarmType::Nospace as i32,
    };
    ask!("alarm activate", maintenance, alarm, alarm);
    ask!("status", maintenance, status, pb::StatusRequest {});
    ask!(
        "hash kv",
        maintenance,
        hash_kv,
        pb::HashKvRequest { revision: 0 }
    );
    ask!("hash", maintenance, hash, pb::HashRequest {});
    ask!(
        "defragment",
        maintenance,
        defragment,
        pb::DefragmentRequest {}
    );
    ask!(
        "move leader",
        maintenance,
        move_leader,
        pb::MoveLeaderRequest { target_id: 1 }
    );
    let mut ended = Vec::new();
    while let Some(joined) = requests.join_next().await {
        let (name, answer) = joined.expect("request task");
        assert!(
            answer.is_ok(),
            "{name} still waits after 30 s without a quorum"
        );
        ended.push(name);
    }
    assert_eq!(ended.len(), 17);
}
