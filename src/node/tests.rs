//! Single-node behaviour of `Node`, driven by hand: persistence is acknowledged at once and no
//! peers exist. Multi-member behaviour is tested with the cluster harness in `tests/cluster.rs`.

use std::time::Duration;

use super::*;
use crate::disk::Disk as _;
use crate::proto::etcdserverpb as pb;
use crate::types::ClusterId;

struct Solo {
    node: Node,
    now: Instant,
    replies: BTreeMap<RequestId, Result<ClientResponse, ClientError>>,
    watch: Vec<(StreamId, pb::WatchResponse)>,
    persisted_entries: usize,
    snapshots: Vec<Snapshot>,
    /// What the member persisted: its WAL (a single member's log never conflicts).
    wal: DurableState,
    /// Engine commits are kept here, not run, while set: a driver whose thread is slow.
    hold_commits: bool,
    held_commits: Vec<(u64, crate::engine::CommitJob)>,
}

/// The configuration of member 1 of cluster 9, the member these tests run.
fn member_config() -> NodeConfig {
    NodeConfig::new(MemberId(1), ClusterId(9))
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn member(id: u64) -> pb::Member {
    pb::Member {
        id,
        name: format!("m{id}"),
        peer_ur_ls: vec![format!("http://127.0.0.1:{}", 2380 + id)],
        ..Default::default()
    }
}

impl Solo {
    /// A bootstrapped single member with its first outputs carried out, not yet leader.
    fn bootstrapped(config: NodeConfig) -> Self {
        Solo::bootstrapped_on(config, engine())
    }

    /// As [`Solo::bootstrapped`], keeping its state in `engine`.
    fn bootstrapped_on(config: NodeConfig, engine: Engine) -> Self {
        let now = Instant::from_micros(0);
        let node = Node::bootstrap(config, &[member(1)], engine, now, &logger()).unwrap();
        let mut solo = Solo::around(node, now);
        solo.drain();
        solo
    }

    /// A harness around `node`, nothing carried out yet.
    fn around(node: Node, now: Instant) -> Self {
        Solo {
            node,
            now,
            replies: BTreeMap::new(),
            watch: Vec::new(),
            persisted_entries: 0,
            snapshots: Vec::new(),
            hold_commits: false,
            held_commits: Vec::new(),
            wal: DurableState {
                hard_state: HardState::default(),
                snapshot: None,
                entries: Vec::new(),
            },
        }
    }

    /// A single member that has elected itself.
    fn new(snapshot_count: u64) -> Self {
        let mut config = member_config();
        config.set_snapshot_count(snapshot_count);
        config.catch_up_entries = 2;
        Solo::leader(config)
    }

    /// A single member configured by `config` that has elected itself.
    fn leader(config: NodeConfig) -> Self {
        let mut solo = Solo::bootstrapped(config);
        solo.advance(Duration::from_secs(3));
        assert_eq!(solo.node.role(), StateRole::Leader);
        solo
    }

    fn drain(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Persist(p) => {
                    self.persisted_entries += p.entries.len();
                    self.wal.entries.extend(p.entries.iter().cloned());
                    if let Some(hard_state) = &p.hard_state {
                        self.wal.hard_state = hard_state.clone();
                    }
                    let now = self.now;
                    self.node.handle(
                        now,
                        Input::Persisted {
                            ready_number: p.ready_number,
                        },
                    );
                }
                Output::Reply { id, result } => {
                    self.replies.insert(id, result);
                }
                Output::Watch { stream, response } => self.watch.push((stream, response)),
                Output::SaveSnapshot(s) => self.snapshots.push(s),
                Output::Send(m) => panic!("a single member has no one to send {m:?} to"),
                Output::SendState { message, .. } => {
                    panic!("a single member has no one to send {message:?} to")
                }
                Output::Fatal { reason } => panic!("{reason}"),
                Output::CloseFile(file) => file.close(),
                Output::CommitState { number, job } if self.hold_commits => {
                    self.held_commits.push((number, job));
                }
                Output::CommitState { number, job } => {
                    job.run();
                    let now = self.now;
                    self.node.handle(now, Input::StateCommitted { number });
                }
                Output::LeaderChanged { .. } | Output::Removed | Output::Tokens(_) => {}
            }
        }
    }

    fn drain_ignoring_sends(&mut self) {
        while let Some(output) = self.node.poll_output() {
            let now = self.now;
            match output {
                Output::Persist(p) => self.node.handle(
                    now,
                    Input::Persisted {
                        ready_number: p.ready_number,
                    },
                ),
                Output::CommitState { number, job } => {
                    job.run();
                    self.node.handle(now, Input::StateCommitted { number });
                }
                _ => {}
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.node.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            let now = self.now;
            self.node.handle(now, Input::Tick);
            self.drain();
        }
        self.now = until;
    }

    fn call(
        &mut self,
        id: RequestId,
        request: ClientRequest,
    ) -> Result<ClientResponse, ClientError> {
        let now = self.now;
        self.node.handle(now, Input::client(id, request));
        self.drain();
        self.advance(Duration::from_millis(10));
        self.replies.remove(&id).expect("answered")
    }
}

fn get(key: &str) -> ClientRequest {
    ClientRequest::Range(pb::RangeRequest {
        key: key.into(),
        ..Default::default()
    })
}

fn put(key: &str, value: &str) -> ClientRequest {
    ClientRequest::Put(pb::PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

#[test]
fn a_single_member_elects_itself_and_serves_writes_and_reads() {
    let mut solo = Solo::new(1000);
    let Ok(ClientResponse::Put(put_response)) = solo.call(1, put("k", "v")) else {
        panic!("put failed")
    };
    let header = put_response.header.unwrap();
    assert_eq!(
        (header.cluster_id, header.member_id, header.revision),
        (9, 1, 2)
    );
    assert!(header.raft_term >= 2);
    let range = ClientRequest::Range(pb::RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    });
    let Ok(ClientResponse::Range(r)) = solo.call(2, range) else {
        panic!("range failed")
    };
    assert_eq!(r.kvs[0].value, b"v");
    assert_eq!(solo.node.state().members().list().len(), 1);
}

#[test]
fn a_request_batched_after_the_election_it_won_sees_the_new_role() {
    let mut config = member_config();
    config.set_snapshot_count(1000);
    let mut solo = Solo::bootstrapped(config);
    assert_ne!(solo.node.role(), StateRole::Leader);
    // Ticks until the next one fires the election timer...
    while solo.node.raw.raft.election_elapsed + 1 < solo.node.raw.raft.randomized_election_timeout()
    {
        let at = solo.node.poll_timeout().expect("a tick is due");
        solo.now = solo.now.max(at);
        let now = solo.now;
        solo.node.handle(now, Input::Tick);
        solo.drain();
    }
    assert_ne!(solo.node.role(), StateRole::Leader);
    // ...at the start of this batch: the lease listing (leader only) within it must find the
    // member leading, not be refused as NotLeader.
    solo.now = solo
        .now
        .max(solo.node.poll_timeout().expect("a tick is due"));
    let now = solo.now;
    let leases = ClientRequest::LeaseLeases(pb::LeaseLeasesRequest {});
    solo.node.handle_all(now, [Input::client(1, leases)]);
    solo.drain();
    solo.advance(Duration::from_millis(10));
    assert_eq!(solo.node.role(), StateRole::Leader);
    let reply = solo.replies.remove(&1).expect("answered");
    assert!(
        matches!(reply, Ok(ClientResponse::LeaseLeases(_))),
        "{reply:?}"
    );
}

#[test]
fn errors_from_the_state_machine_reach_the_client() {
    let mut solo = Solo::new(1000);
    let compact = ClientRequest::Compact(pb::CompactionRequest {
        revision: 50,
        physical: false,
    });
    let reply = solo.call(1, compact);
    assert_eq!(
        reply,
        Err(ClientError::Kv(crate::kv::KvError::FutureRevision))
    );
}

#[test]
fn a_lease_expires_on_the_leader_and_its_keys_are_deleted() {
    let mut solo = Solo::new(1000);
    let grant = ClientRequest::LeaseGrant(pb::LeaseGrantRequest { ttl: 5, id: 0 });
    let Ok(ClientResponse::LeaseGrant(granted)) = solo.call(1, grant) else {
        panic!("grant failed")
    };
    assert!(granted.id > 0);
    let attach = ClientRequest::Put(pb::PutRequest {
        key: b"ephemeral".to_vec(),
        value: b"x".to_vec(),
        lease: granted.id,
        ..Default::default()
    });
    assert!(solo.call(2, attach).is_ok());
    solo.advance(Duration::from_secs(3));
    assert_eq!(solo.node.state().kv.key_count(), 1, "not yet expired");
    let keep = ClientRequest::LeaseKeepAlive(pb::LeaseKeepAliveRequest { id: granted.id });
    assert!(solo.call(3, keep).is_ok());
    solo.advance(Duration::from_secs(4));
    assert_eq!(
        solo.node.state().kv.key_count(),
        1,
        "the keep-alive extended it"
    );
    solo.advance(Duration::from_secs(4));
    assert_eq!(solo.node.state().kv.key_count(), 0, "expired and revoked");
    assert!(!solo.node.state().lessor.exists(granted.id));
}

#[test]
fn watchers_get_events_of_applied_writes() {
    let mut solo = Solo::new(1000);
    let create = ClientRequest::WatchCreate {
        stream: 7,
        request: pb::WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            ..Default::default()
        },
    };
    assert!(solo.call(1, create).is_ok());
    assert!(solo.watch.iter().any(|(s, r)| *s == 7 && r.created));
    assert!(solo.call(2, put("a1", "x")).is_ok());
    assert!(solo.call(3, put("zzz", "x")).is_ok());
    let events: Vec<_> = solo
        .watch
        .iter()
        .flat_map(|(_, r)| r.events.iter())
        .map(|e| e.kv.as_ref().unwrap().key.clone())
        .collect();
    assert_eq!(events, vec![b"a1".to_vec()]);
    let header = solo.watch.last().unwrap().1.header.unwrap();
    assert_eq!((header.cluster_id, header.member_id), (9, 1));
}

/// Writes read the value they replace only while a watcher wants it, and a watcher that asks for
/// `prev_kv` gets it whole from its first event on.
#[test]
fn a_watcher_asking_for_prev_kv_gets_replaced_values() {
    let mut solo = Solo::new(1000);
    let watch = |stream, prev_kv| ClientRequest::WatchCreate {
        stream,
        request: pb::WatchCreateRequest {
            key: b"a".to_vec(),
            prev_kv,
            ..Default::default()
        },
    };
    assert!(solo.call(1, watch(7, false)).is_ok());
    assert!(solo.call(2, put("a", "1")).is_ok());
    assert!(solo.call(3, put("a", "2")).is_ok());
    assert!(solo.call(4, watch(8, true)).is_ok());
    assert!(solo.call(5, put("a", "3")).is_ok());
    let replaced: Vec<(u64, Option<Vec<u8>>)> = solo
        .watch
        .iter()
        .flat_map(|(stream, r)| r.events.iter().map(move |e| (*stream, e)))
        .map(|(stream, e)| (stream, e.prev_kv.as_ref().map(|kv| kv.value.clone())))
        .collect();
    assert_eq!(
        replaced,
        vec![(7, None), (7, None), (7, None), (8, Some(b"2".to_vec()))]
    );
}

#[test]
fn applied_entries_beyond_the_log_memory_budget_are_trimmed_between_snapshots() {
    let mut config = member_config();
    config.set_snapshot_count(1_000_000);
    config.catch_up_entries = 3;
    config.log_memory_bytes = 4096;
    let mut solo = Solo::leader(config);
    assert_eq!(solo.node.role(), StateRole::Leader);
    let value = "v".repeat(300);
    let mut most_held = 0;
    for i in 0..200 {
        assert!(solo.call(i, put(&format!("k{i}"), &value)).is_ok());
        let held = solo.node.log().held_bytes();
        let counted: usize = solo
            .node
            .log()
            .held_entries()
            .iter()
            .map(crate::raftlog::entry_bytes)
            .sum();
        assert_eq!(held, counted);
        most_held = most_held.max(held);
    }
    assert!(solo.snapshots.is_empty(), "no snapshot was due");
    let first = raft::Storage::first_index(solo.node.log()).unwrap();
    let applied = solo.node.applied_index();
    assert!(
        first > applied - 20,
        "the log starts at {first}, {applied} applied: it was trimmed"
    );
    assert!(first <= applied + 1 - 3, "the catch-up entries stay");
    // At most the budget plus what one call appended before the next trim.
    assert!(most_held < 4096 + 2_000, "held {most_held} bytes");
}

#[test]
fn snapshots_are_taken_every_snapshot_count_entries_and_compact_the_log() {
    let mut solo = Solo::new(10);
    for i in 0..25 {
        assert!(solo.call(i, put(&format!("k{i}"), "v")).is_ok());
    }
    assert!(
        solo.snapshots.len() >= 2,
        "took {} snapshots",
        solo.snapshots.len()
    );
    let latest = solo.snapshots.last().unwrap();
    assert!(
        latest.data.is_empty(),
        "the engine holds the state, not the snapshot"
    );
    assert!(latest.get_metadata().index >= 20);
    let engine_applied = solo.node.state().kv.engine().applied().index;
    assert!(
        engine_applied >= latest.get_metadata().index,
        "the engine was made durable up to the snapshot first"
    );
    let (meta, mut export) = solo.node.export_applied_state().unwrap();
    assert_eq!(meta.index, solo.node.applied_index());
    let mut engine = engine();
    engine.clear_staged().unwrap();
    while let Some(rows) = export.next_chunk(4096).unwrap() {
        engine.stage_chunk(&rows).unwrap();
    }
    let applied = crate::engine::Applied {
        index: meta.index,
        term: meta.term,
    };
    engine.install_staged(applied).unwrap();
    let (restored, _, _) = StateMachine::from_engine(engine, 2).unwrap();
    assert_eq!(restored.kv.key_count(), 25);
    let first = raft::Storage::first_index(solo.node.log()).unwrap();
    assert!(first > 1, "log was compacted (first index {first})");
}

#[test]
fn requests_beyond_the_pending_bound_are_refused() {
    let mut config = member_config();
    config.max_pending_requests = 2;
    let now = Instant::from_micros(0);
    // A member that never becomes leader (its single peer never answers) keeps requests waiting.
    let mut node =
        Node::bootstrap(config, &[member(1), member(2)], engine(), now, &logger()).unwrap();
    for id in 0..3 {
        let range = ClientRequest::Range(pb::RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        });
        node.handle(now, Input::client(id, range));
    }
    let refused: Vec<_> = std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| match o {
            Output::Reply { id, result } => Some((id, result)),
            _ => None,
        })
        .collect();
    assert_eq!(refused, vec![(2, Err(ClientError::TooManyRequests))]);
    // And they time out instead of hanging.
    node.handle(now + Duration::from_secs(6), Input::Tick);
    let timed_out = std::iter::from_fn(|| node.poll_output())
        .filter(|o| {
            matches!(
                o,
                Output::Reply {
                    result: Err(ClientError::Timeout),
                    ..
                }
            )
        })
        .count();
    assert_eq!(timed_out, 2);
}

#[test]
fn writes_without_a_leader_are_pending_then_failed_proposals() {
    let config = member_config();
    let now = Instant::from_micros(0);
    let mut node =
        Node::bootstrap(config, &[member(1), member(2)], engine(), now, &logger()).unwrap();
    let put = |key: &[u8]| {
        ClientRequest::Put(pb::PutRequest {
            key: key.to_vec(),
            ..Default::default()
        })
    };
    node.handle(now, Input::client(1, put(b"a")));
    node.handle(now, Input::client(2, put(b"b")));
    let read = ClientRequest::Range(pb::RangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    });
    node.handle(now, Input::client(3, read));
    assert_eq!(node.pending_requests(), 3);
    assert_eq!(node.pending_proposals(), 2, "reads are not proposals");
    assert_eq!(node.proposals_failed(), 0);
    node.handle(now + Duration::from_secs(6), Input::Tick);
    assert_eq!(node.pending_proposals(), 0);
    assert_eq!(
        node.proposals_failed(),
        2,
        "the timed-out read is not a failed proposal"
    );
}

fn run_solo_script(seed: u64) -> Vec<String> {
    let mut config = member_config();
    config.seed = seed;
    let now = Instant::from_micros(0);
    let mut node = Node::bootstrap(
        config,
        &[member(1), member(2), member(3)],
        engine(),
        now,
        &logger(),
    )
    .unwrap();
    let mut trace = Vec::new();
    for step in 1..200u64 {
        node.handle(Instant::from_micros(step * 50_000), Input::Tick);
        while let Some(output) = node.poll_output() {
            if let Output::Persist(p) = &output {
                let n = p.ready_number;
                node.handle(
                    Instant::from_micros(step * 50_000),
                    Input::Persisted { ready_number: n },
                );
            }
            trace.push(format!("{step}: {output:?}"));
        }
    }
    trace
}

#[test]
fn election_timing_comes_from_the_nodes_own_seeded_rng() {
    // Candidates that hear nothing keep campaigning: the moments they do are drawn from the seed.
    let a = run_solo_script(1);
    assert!(a.iter().any(|line| line.contains("MsgRequestPreVote")));
    assert_eq!(a, run_solo_script(1), "same seed, same outputs");
    assert_ne!(a, run_solo_script(2), "another seed moves the elections");
}

#[test]
fn watchers_that_asked_for_progress_get_it_periodically() {
    let mut solo = Solo::new(1000);
    let create = ClientRequest::WatchCreate {
        stream: 3,
        request: pb::WatchCreateRequest {
            key: b"p".to_vec(),
            progress_notify: true,
            ..Default::default()
        },
    };
    assert!(solo.call(1, create).is_ok());
    let before = solo.watch.len();
    solo.advance(Duration::from_secs(601));
    let progress: Vec<_> = solo.watch[before..]
        .iter()
        .filter(|(stream, r)| *stream == 3 && r.events.is_empty() && !r.created)
        .collect();
    assert!(
        !progress.is_empty(),
        "no progress notification after the interval"
    );
    assert_eq!(progress[0].1.header.unwrap().revision, 1);
}

#[test]
fn a_write_sent_before_the_first_election_is_answered_once_a_leader_exists() {
    let mut solo = Solo::bootstrapped(member_config());
    let now = solo.now;
    solo.node
        .handle(now, Input::client(1, put("early", "bird")));
    solo.drain();
    solo.advance(Duration::from_secs(3));
    assert!(
        matches!(solo.replies.get(&1), Some(Ok(ClientResponse::Put(_)))),
        "{:?}",
        solo.replies
    );
}

#[test]
fn removing_the_only_voter_is_refused_before_it_reaches_raft() {
    let mut solo = Solo::new(1000);
    let remove = ClientRequest::MemberRemove(pb::MemberRemoveRequest { id: 1 });
    assert_eq!(
        solo.call(1, remove),
        Err(ClientError::NotEnoughStartedMembers)
    );
    assert!(!solo.node.is_removed());
    assert!(solo.call(2, put("still", "serving")).is_ok());
}

#[test]
fn oversized_requests_and_txns_with_too_many_ops_are_refused() {
    let mut solo = Solo::new(1000);
    let big = "x".repeat(2 * 1024 * 1024);
    assert_eq!(
        solo.call(1, put("big", &big)),
        Err(ClientError::RequestTooLarge)
    );
    let op = pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })),
    };
    let txn = ClientRequest::Txn(pb::TxnRequest {
        success: vec![op; 129],
        ..Default::default()
    });
    assert_eq!(solo.call(2, txn), Err(ClientError::TooManyTxnOps));
    assert_eq!(
        solo.node.state().kv.current_revision(),
        1,
        "nothing was applied"
    );
}

#[test]
fn malformed_peer_messages_are_dropped_without_panicking() {
    use raft::eraftpb::MessageType;
    let mut solo = Solo::new(1000);
    let term = solo.node.term();
    let message = |msg_type: MessageType, from: u64, to: u64| {
        let mut m = Message::default();
        m.set_msg_type(msg_type);
        m.from = from;
        m.to = to;
        m.term = term;
        m
    };
    let empty_proposal = message(MessageType::MsgPropose, 2, 1);
    let empty_read = message(MessageType::MsgReadIndex, 2, 1);
    let mut far_commit = message(MessageType::MsgHeartbeat, 2, 1);
    far_commit.commit = 1_000_000;
    far_commit.term = term + 1;
    let misaddressed = message(MessageType::MsgAppend, 2, 7);
    for m in [empty_proposal, empty_read, far_commit, misaddressed] {
        let now = solo.now;
        solo.node.handle(now, Input::Peer(m));
        solo.drain_ignoring_sends();
    }
    assert!(solo.node.commit_index() <= raft::Storage::last_index(solo.node.log()).unwrap());
}

#[test]
fn a_restart_whose_disk_lost_committed_entries_is_refused() {
    let config = member_config();
    let durable = DurableState {
        hard_state: HardState {
            term: 3,
            vote: 1,
            commit: 50,
            ..Default::default()
        },
        snapshot: None,
        entries: Vec::new(),
    };
    let result = Node::restart(config, durable, engine(), Instant::ZERO, &logger());
    let error = result.expect_err("refused").to_string();
    assert!(error.contains("lost committed entries"), "{error}");
}

/// Member 1 of three, freshly bootstrapped (log at index 3, term 1), with its first persist done.
fn follower_of_three() -> Node {
    let config = member_config();
    let now = Instant::from_micros(0);
    let mut node = Node::bootstrap(
        config,
        &[member(1), member(2), member(3)],
        engine(),
        now,
        &logger(),
    )
    .unwrap();
    while let Some(output) = node.poll_output() {
        if let Output::Persist(p) = output {
            let ready_number = p.ready_number;
            node.handle(now, Input::Persisted { ready_number });
        }
    }
    node
}

fn append_from_2(entry_index: u64, commit: u64) -> Message {
    let entry = Entry {
        term: 2,
        index: entry_index,
        ..Entry::default()
    };
    Message {
        msg_type: raft::eraftpb::MessageType::MsgAppend,
        to: 1,
        from: 2,
        term: 2,
        log_term: 1,
        index: 3,
        commit,
        entries: vec![entry].into(),
        ..Message::default()
    }
}

#[test]
fn a_peer_append_raft_would_panic_on_is_dropped_and_a_good_one_still_applies() {
    // The raft_message fuzz target's reproducer: an append after index 3 carrying an entry at
    // index 0 made raft-rs panic ("to_commit 4 is out of range [last_index 3]").
    let mut node = follower_of_three();
    let now = Instant::from_micros(1);
    node.handle(now, Input::Peer(append_from_2(0, 4)));
    let (dropped, why) = node.dropped_peer_messages();
    assert_eq!(dropped, 1);
    assert!(
        matches!(why, Some(BadPeerMessage::EntryOutOfPlace { .. })),
        "{why:?}"
    );
    assert_eq!(node.log().hard_state().commit, 3);

    node.handle(now, Input::Peer(append_from_2(4, 4)));
    while let Some(output) = node.poll_output() {
        if let Output::Persist(p) = output {
            let ready_number = p.ready_number;
            node.handle(now, Input::Persisted { ready_number });
        }
    }
    assert_eq!(node.dropped_peer_messages().0, 1);
    assert_eq!((node.term(), node.commit_index()), (2, 4));
    assert_eq!(node.leader(), Some(MemberId(2)));
}

#[test]
fn a_write_dropped_while_the_leader_went_and_came_back_in_one_batch_is_proposed_again() {
    let mut node = follower_of_three();
    let now = Instant::from_micros(1);
    node.handle(now, Input::Peer(append_from_2(4, 4)));
    while let Some(output) = node.poll_output() {
        if let Output::Persist(p) = output {
            node.handle(
                now,
                Input::Persisted {
                    ready_number: p.ready_number,
                },
            );
        }
    }
    assert_eq!(node.leader(), Some(MemberId(2)));
    // Ticks without word from the leader until the next one fires this member's election timer,
    // at the batch's start (pre-vote: the leader is forgotten, the term stays); within the batch
    // a put finds no leader and raft drops it, then the leader's heartbeat brings it back.
    let tick_us = node.config.heartbeat_interval.as_micros() as u64;
    let mut later = now;
    while node.raw.raft.election_elapsed + 1 < node.raw.raft.randomized_election_timeout() {
        later = Instant::from_micros(later.as_micros() + tick_us);
        node.handle(later, Input::Tick);
        while node.poll_output().is_some() {}
    }
    assert_eq!(node.leader(), Some(MemberId(2)));
    let later = Instant::from_micros(later.as_micros() + tick_us);
    let heartbeat = Message {
        msg_type: raft::eraftpb::MessageType::MsgHeartbeat,
        to: 1,
        from: 2,
        term: 2,
        commit: 4,
        ..Message::default()
    };
    let put = Input::Client {
        id: 7,
        request: put("k", "v"),
        caller: None,
    };
    node.handle_all(later, [put, Input::Peer(heartbeat)]);
    assert_eq!(node.leader(), Some(MemberId(2)));
    let mut proposed = false;
    while let Some(output) = node.poll_output() {
        if let Output::Send(message) = output {
            proposed |=
                message.get_msg_type() == raft::eraftpb::MessageType::MsgPropose && message.to == 2;
        }
    }
    assert!(
        proposed,
        "the dropped put must be forwarded to the leader that came back"
    );
}

#[test]
fn a_leader_transfer_request_reaching_a_follower_is_dropped_not_forwarded() {
    // The raft_message fuzz target's reproducer (2026-11-24): a MsgTransferLeader from a peer,
    // which carries the sender's term, reached a follower that knew a leader; raft-rs forwarded it
    // and panicked ("term should not be set when sending MsgTransferLeader"). In a real cluster a
    // member forwards it to the member it believes leads, which may have lost leadership since.
    let mut node = follower_of_three();
    let now = Instant::from_micros(1);
    node.handle(now, Input::Peer(append_from_2(4, 4)));
    assert_eq!(node.leader(), Some(MemberId(2)));
    let transfer = Message {
        msg_type: raft::eraftpb::MessageType::MsgTransferLeader,
        to: 1,
        from: 3,
        term: 2,
        ..Message::default()
    };
    node.handle(now, Input::Peer(transfer));
    let (dropped, why) = node.dropped_peer_messages();
    assert_eq!(dropped, 1);
    assert!(
        matches!(
            why,
            Some(BadPeerMessage::TransferToNonLeader { transferee: 3 })
        ),
        "{why:?}"
    );
    assert_eq!(node.leader(), Some(MemberId(2)));
}

/// The durable state of member 1 of a three-member cluster: the bootstrap conf changes (1..=3),
/// puts `a`, `b` committed at 4 and 5 in term 2, and put `c` at 6 never committed.
fn durable_member_of_three() -> DurableState {
    use prost::Message as _;
    let config = member_config();
    let members = [member(1), member(2), member(3)];
    let mut node = Node::bootstrap(config, &members, engine(), Instant::ZERO, &logger()).unwrap();
    let mut entries = Vec::new();
    while let Some(output) = node.poll_output() {
        if let Output::Persist(p) = output {
            entries.extend(p.entries);
        }
    }
    assert_eq!(entries.len(), 3);
    for (index, key) in [(4, "a"), (5, "b"), (6, "c")] {
        let request = crate::proto::stetpb::InternalRequest {
            request: Some(crate::proto::stetpb::internal_request::Request::Put(
                pb::PutRequest {
                    key: key.into(),
                    value: b"v".to_vec(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        entries.push(Entry {
            term: 2,
            index,
            data: request.encode_to_vec().into(),
            ..Default::default()
        });
    }
    DurableState {
        hard_state: HardState {
            term: 2,
            vote: 2,
            commit: 5,
            ..Default::default()
        },
        snapshot: None,
        entries,
    }
}

#[test]
fn force_new_cluster_keeps_committed_data_drops_the_rest_and_leads_alone() {
    let config = member_config();
    let node = Node::restart_forced(
        config,
        durable_member_of_three(),
        engine(),
        Instant::ZERO,
        &logger(),
    )
    .unwrap();
    let mut solo = Solo::around(node, Instant::ZERO);
    // The first output persists the removals, which replace the uncommitted entry 6.
    let Some(Output::Persist(first)) = solo.node.poll_output() else {
        panic!("the first output must persist the rewritten log");
    };
    assert!(first.must_sync);
    let indexes: Vec<u64> = first.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![6, 7]);
    assert!(first
        .entries
        .iter()
        .all(|e| e.get_entry_type() == raft::eraftpb::EntryType::EntryConfChange && e.term == 2));
    assert_eq!(first.hard_state.as_ref().map(|hs| hs.commit), Some(7));
    solo.drain();
    assert_eq!(solo.node.role(), StateRole::Leader, "it campaigns at once");
    let ids: Vec<u64> = solo
        .node
        .state()
        .members()
        .list()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec![1]);
    assert!(solo.node.state().members().is_removed(MemberId(2)));
    assert_eq!(solo.node.raw.raft.prs().conf().voters().ids().len(), 1);
    let get = |solo: &Solo, key: &str| {
        let range = pb::RangeRequest {
            key: key.into(),
            serializable: true,
            ..Default::default()
        };
        solo.node.state().kv.range(&range).unwrap().kvs.len()
    };
    assert_eq!(
        (get(&solo, "a"), get(&solo, "b")),
        (1, 1),
        "committed data kept"
    );
    assert_eq!(get(&solo, "c"), 0, "the uncommitted entry is gone");
    assert!(matches!(
        solo.call(1, put("d", "v")),
        Ok(ClientResponse::Put(_))
    ));
    assert_eq!(
        get(&solo, "d"),
        1,
        "a new write commits on the member alone"
    );
}

#[test]
fn force_new_cluster_refuses_a_member_that_is_not_in_its_membership() {
    let config = NodeConfig::new(MemberId(4), ClusterId(9));
    let result = Node::restart_forced(
        config,
        durable_member_of_three(),
        engine(),
        Instant::ZERO,
        &logger(),
    );
    let error = result.expect_err("refused").to_string();
    assert!(error.contains("not in the membership"), "{error}");
}

/// A torn bootstrap write keeps a prefix of the initial conf changes but not the hard state after
/// them: nothing of it was acknowledged, and restarting from it would give a configuration in
/// which member 1 is alone (and would elect itself beside the real cluster's leader). Such
/// durable state counts as empty, so the member starts afresh (simulator: crash seed 144).
#[test]
fn a_torn_bootstrap_write_counts_as_nothing_durable() {
    let mut durable = durable_member_of_three();
    assert!(!durable.is_empty());
    durable.entries.truncate(1);
    durable.hard_state = HardState::default();
    assert!(
        durable.is_empty(),
        "only a prefix of the bootstrap, no hard state"
    );
    durable.entries.clear();
    assert!(durable.is_empty());
}

/// A storage engine in memory.
fn engine() -> Engine {
    Engine::in_memory(1 << 20).unwrap()
}

#[test]
fn applied_writes_reach_the_engine_in_batches_with_the_applied_index() {
    let mut solo = Solo::new(1000);
    assert!(solo.call(1, put("k", "v")).is_ok());
    let engine_applied = |solo: &Solo| solo.node.state().kv.engine().applied().index;
    let (waiting, _) = solo.node.state().kv.uncommitted();
    assert!(waiting > 0, "a put waits for its batch");
    assert!(engine_applied(&solo) < solo.node.applied_index());
    solo.advance(engine_commit::BATCH_INTERVAL);
    assert_eq!(solo.node.state().kv.uncommitted(), (0, 0));
    assert_eq!(engine_applied(&solo), solo.node.applied_index());
    let view = solo.node.state().kv.engine().view().unwrap();
    assert_eq!(view.current_revision().unwrap(), 2);
    let range = ClientRequest::Range(pb::RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    });
    let Ok(ClientResponse::Range(r)) = solo.call(2, range) else {
        panic!("range failed")
    };
    assert_eq!(r.kvs[0].value, b"v", "read back from the engine");
}

#[test]
fn a_full_batch_is_committed_without_waiting_for_the_interval() {
    let mut solo = Solo::new(1_000_000);
    let big = "x".repeat(1 << 20);
    for n in 0..(engine_commit::BATCH_BYTES >> 20) as u64 + 1 {
        assert!(solo.call(n, put(&format!("k{n}"), &big)).is_ok());
    }
    let (_, bytes) = solo.node.state().kv.uncommitted();
    assert!(
        bytes < engine_commit::BATCH_BYTES,
        "{bytes} bytes wait: a full batch must be committed at once"
    );
}

#[test]
fn a_restarted_only_voter_leads_at_once_and_serves_its_first_read_without_waiting() {
    let mut solo = Solo::new(1000);
    assert!(solo.call(1, put("k", "v")).is_ok());
    let config = solo.node.config.clone();
    let wal = std::mem::replace(
        &mut solo.wal,
        DurableState {
            hard_state: HardState::default(),
            snapshot: None,
            entries: Vec::new(),
        },
    );
    solo.node = Node::restart(config, wal, engine(), solo.now, &logger()).unwrap();
    assert_eq!(
        solo.node.role(),
        StateRole::Leader,
        "no election timeout to wait out"
    );
    // raft drops a ReadIndex asked before the new leader committed in its term; the read is
    // asked again as soon as it has, not after the stale-round timeout.
    let range = ClientRequest::Range(pb::RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    });
    let now = solo.now;
    solo.node.handle(now, Input::client(2, range));
    solo.drain();
    let Some(Ok(ClientResponse::Range(r))) = solo.replies.remove(&2) else {
        panic!("the read was not answered at once")
    };
    assert_eq!(r.kvs[0].value, b"v");
}

#[test]
fn a_commit_of_the_engine_is_fsynced_every_durable_commit_entries() {
    let mut config = member_config();
    config.set_snapshot_count(1_000_000);
    config.durable_commit_entries = 50;
    let mut solo = Solo::leader(config);
    let start = solo.node.state_durable_index;
    let mut id = 0;
    let mut put_until = |solo: &mut Solo, index: u64| {
        while solo.node.applied_index() < index {
            id += 1;
            assert!(solo.call(id, put(&format!("k{id}"), "v")).is_ok());
        }
        solo.advance(engine_commit::BATCH_INTERVAL);
    };
    put_until(&mut solo, start + 45);
    assert_eq!(solo.node.state().kv.uncommitted(), (0, 0), "committed");
    assert_eq!(solo.node.state_durable_index, start, "but not fsynced yet");
    put_until(&mut solo, start + 55);
    let durable = solo.node.state_durable_index;
    assert!(
        durable >= start + 50 && durable <= solo.node.applied_index(),
        "durable at {durable}, started at {start}"
    );
}

fn alarm_request(action: pb::alarm_request::AlarmAction) -> ClientRequest {
    ClientRequest::Alarm(pb::AlarmRequest {
        action: action as i32,
        member_id: 1,
        alarm: pb::AlarmType::Nospace as i32,
    })
}

fn listed_alarms(solo: &mut Solo, id: RequestId) -> Vec<pb::AlarmMember> {
    let get = ClientRequest::Alarm(pb::AlarmRequest::default());
    match solo.call(id, get) {
        Ok(ClientResponse::Alarm(response)) => response.alarms,
        other => panic!("alarm list failed: {other:?}"),
    }
}

#[test]
fn past_the_quota_writes_raise_nospace_until_compacted_defragmented_and_disarmed() {
    use pb::alarm_request::AlarmAction;
    let mut config = member_config();
    config.set_snapshot_count(1_000_000);
    let start_bytes = engine().file_bytes();
    config.quota_backend_bytes = Some(start_bytes + (512 << 10));
    let mut solo = Solo::leader(config);
    let value = "v".repeat(8 << 10);
    let mut id = 1;
    let refused = loop {
        assert!(id < 2_000, "the quota never refused a put");
        let result = solo.call(id, put("k", &value));
        id += 1;
        // Let the batch commit reach the file.
        solo.advance(Duration::from_millis(200));
        if let Err(error) = result {
            break error;
        }
    };
    assert_eq!(refused, ClientError::NoSpace);
    let own = pb::AlarmMember {
        member_id: 1,
        alarm: pb::AlarmType::Nospace as i32,
    };
    assert_eq!(listed_alarms(&mut solo, id), vec![own]);
    let revision = solo.node.state().kv.current_revision();
    assert_eq!(
        solo.call(id + 1, put("small", "")),
        Err(ClientError::NoSpace)
    );
    let delete = ClientRequest::DeleteRange(pb::DeleteRangeRequest {
        key: b"absent".to_vec(),
        ..Default::default()
    });
    assert!(solo.call(id + 2, delete).is_ok(), "deletes go through");
    let compact = ClientRequest::Compact(pb::CompactionRequest {
        revision,
        ..Default::default()
    });
    assert!(solo.call(id + 3, compact).is_ok());
    let full_bytes = solo.node.state().kv.engine().file_bytes();
    let defragment = ClientRequest::Defragment(Default::default());
    assert!(solo.call(id + 4, defragment).is_ok());
    let defragmented_bytes = solo.node.state().kv.engine().file_bytes();
    assert!(
        defragmented_bytes * 2 < full_bytes,
        "{full_bytes} bytes before defragmenting, {defragmented_bytes} after"
    );
    assert_eq!(
        solo.call(id + 5, put("k", "still refused")),
        Err(ClientError::NoSpace),
        "the alarm holds until disarmed"
    );
    assert!(solo
        .call(id + 6, alarm_request(AlarmAction::Deactivate))
        .is_ok());
    assert!(listed_alarms(&mut solo, id + 7).is_empty());
    assert!(solo.call(id + 8, put("k", "fits again")).is_ok());
}

#[test]
fn a_member_past_the_quota_raises_the_alarm_on_its_own() {
    let mut config = member_config();
    config.quota_backend_bytes = Some(1);
    let solo = Solo::leader(config);
    assert!(solo.node.state().alarms().no_space());
}

/// Compaction's deletes leave the file at most 1,000 per commit, a commit every pause, and a
/// `physical` compaction is answered only once they all did (etcd's meaning); a plain one at once.
#[test]
fn a_physical_compaction_is_answered_once_its_deletes_are_committed() {
    let mut config = member_config();
    config.set_snapshot_count(1_000_000);
    config.durable_commit_entries = 1_000;
    let mut solo = Solo::leader(config);
    for i in 0..2_500 {
        assert!(solo.call(i, put(&format!("k{}", i % 2), "v")).is_ok());
    }
    let head = solo.node.state().kv.current_revision();
    let compact =
        |revision, physical| ClientRequest::Compact(pb::CompactionRequest { revision, physical });
    assert!(solo.call(10_000, compact(head - 1_000, false)).is_ok());
    assert!(
        !solo.node.state().kv.compaction_finished(),
        "the plain one was answered before its pass and deletes"
    );
    let now = solo.now;
    solo.node
        .handle(now, Input::client(10_001, compact(head, true)));
    solo.drain();
    assert!(
        !solo.replies.contains_key(&10_001),
        "held while its deletes wait"
    );
    let (mut commits, mut durable_for_deletes) = (0, 0);
    let applied = solo.node.applied_index();
    while !solo.replies.contains_key(&10_001) {
        let before = solo.node.state().kv.deletes_staged();
        let unflushed = solo.node.deletes_since_durable;
        solo.advance(engine_commit::COMPACTION_PAUSE);
        let deleted = solo.node.state().kv.deletes_staged() - before;
        assert!(deleted <= 1_000, "{deleted} deleted in one pause");
        commits += usize::from(deleted > 0);
        assert!(commits < 100, "the deletes finish");
        // Deletes count toward the next durable commit, as applied entries do.
        assert!(solo.node.deletes_since_durable < 2_000);
        durable_for_deletes += usize::from(solo.node.deletes_since_durable < unflushed);
    }
    assert!(
        durable_for_deletes >= 1 && solo.node.applied_index() < applied + 1_000,
        "a durable commit came from the deletes alone"
    );
    assert!(solo.node.state().kv.compaction_finished());
    assert!(commits >= 2, "spread over {commits} commits");
    assert!(matches!(
        solo.replies.remove(&10_001),
        Some(Ok(ClientResponse::Compact(_)))
    ));
    // Nothing left to delete: answered at once.
    assert!(
        solo.call(10_002, compact(head, true)).is_err(),
        "compacted already"
    );
    assert!(solo.call(10_003, put("k0", "w")).is_ok());
    let head = solo.node.state().kv.current_revision();
    assert!(solo.call(10_004, compact(head, true)).is_ok());
}

/// An engine in a file of `/member` on a simulated disk, with the disk and the directory.
fn engine_on_disk() -> (crate::disk::SharedDisk, std::path::PathBuf, Engine) {
    let disk = crate::disk::SharedDisk::new();
    let dir = std::path::PathBuf::from("/member");
    disk.clone().create_dir_all(&dir).unwrap();
    let path = dir.join(crate::engine::ENGINE_FILE);
    let engine = Engine::open(crate::disk::handles(&disk), &path, 1 << 20).unwrap();
    (disk, dir, engine)
}

/// An engine on a disk is defragmented online: the request is answered only once the copy
/// replaced the file, puts made meanwhile are answered at once and are in the copy, and the file
/// shrinks.
#[test]
fn defragmenting_online_answers_puts_meanwhile_and_keeps_them() {
    let (disk, dir, engine) = engine_on_disk();
    let mut config = member_config();
    config.set_snapshot_count(1_000_000);
    let mut solo = Solo::bootstrapped_on(config, engine);
    solo.advance(Duration::from_secs(3));
    let value = "v".repeat(4 << 10);
    for i in 0..1200 {
        assert!(solo.call(i, put(&format!("k{}", i % 300), &value)).is_ok());
    }
    let revision = solo.node.state().kv.current_revision();
    let compact = ClientRequest::Compact(pb::CompactionRequest {
        revision,
        ..Default::default()
    });
    assert!(solo.call(1500, compact).is_ok());
    solo.advance(Duration::from_millis(200));
    let full_bytes = solo.node.state().kv.engine().file_bytes();
    let now = solo.now;
    let defragment = ClientRequest::Defragment(Default::default());
    solo.node.handle(now, Input::client(2000, defragment));
    solo.drain();
    assert!(
        !solo.replies.contains_key(&2000),
        "answered only once the copy is in place"
    );
    // Puts go on while the copy is built, and are answered before it is done.
    let mut during = 0;
    while !solo.replies.contains_key(&2000) {
        assert!(during < 1000, "the defragmentation never finished");
        let id = 3000 + during;
        let now = solo.now;
        let request = put(&format!("during{during}"), "x");
        solo.node.handle(now, Input::client(id, request));
        solo.drain();
        // Every turn of the driver (here each put's persisted report) moves the copy on a step.
        assert!(solo.replies.remove(&id).unwrap().is_ok());
        during += 1;
    }
    assert!(
        during > 2,
        "{during} puts went through during the defragmentation"
    );
    assert!(matches!(
        solo.replies[&2000],
        Ok(ClientResponse::Defragment(_))
    ));
    let defragmented_bytes = solo.node.state().kv.engine().file_bytes();
    assert!(
        defragmented_bytes * 2 < full_bytes,
        "{full_bytes} bytes before defragmenting, {defragmented_bytes} after"
    );
    for i in 0..during {
        let got = solo.call(10_000 + i, get(&format!("during{i}")));
        let Ok(ClientResponse::Range(range)) = got else {
            panic!("get failed: {got:?}");
        };
        assert_eq!(
            range.kvs.len(),
            1,
            "the put made during the defragmentation is kept"
        );
    }
    let names = disk.lock().list(&dir).unwrap();
    assert_eq!(names, vec![crate::engine::ENGINE_FILE.to_string()]);
}

#[test]
fn a_defragmentation_lets_go_of_the_view_kept_to_send_the_latest_snapshot() {
    let (disk, dir, engine) = engine_on_disk();
    let mut solo = Solo::bootstrapped_on(member_config(), engine);
    solo.advance(Duration::from_secs(3));
    for i in 0..100 {
        assert!(solo
            .call(i, put(&format!("k{i}"), &"v".repeat(1 << 10)))
            .is_ok());
    }
    // Raft asks for a state to send a follower: the node keeps a view of the file for it.
    let unavailable = raft::Storage::snapshot(solo.node.raw.store(), 0, 1);
    assert!(unavailable.is_err());
    solo.advance(Duration::from_millis(100));
    assert!(solo.node.state_view.is_some(), "a view is kept to send");
    assert!(solo.node.raw.store().serves_state());

    let defragment = ClientRequest::Defragment(Default::default());
    assert!(solo.call(1000, defragment).is_ok());
    // The kept view read the replaced file: it is let go, and the file closed and removed at
    // once instead of at the next snapshot.
    assert!(solo.node.state_view.is_none());
    assert!(!solo.node.raw.store().serves_state());
    let names = disk.lock().list(&dir).unwrap();
    assert_eq!(names, vec![crate::engine::ENGINE_FILE.to_string()]);

    // The next follower that needs a state gets a new view, of the new file.
    assert!(raft::Storage::snapshot(solo.node.raw.store(), 0, 1).is_err());
    solo.advance(Duration::from_millis(100));
    assert!(solo.node.state_view.is_some());
    assert!(raft::Storage::snapshot(solo.node.raw.store(), 0, 1).is_ok());
}

/// A defragmentation's copy holds the live tables only: while a leader's state is coming in it
/// is refused (swapping the copy in would drop the rows staged so far), and once the transfer
/// has been given up its staged rows are dropped and the defragmentation goes ahead.
#[test]
fn a_defragmentation_waits_for_a_state_being_received() {
    let (_, _, engine) = engine_on_disk();
    let mut solo = Solo::bootstrapped_on(member_config(), engine);
    solo.advance(Duration::from_secs(3));
    assert!(solo.call(1, put("k", "v")).is_ok());
    let mut sender = Solo::bootstrapped(member_config());
    sender.advance(Duration::from_secs(3));
    assert!(sender.call(1, put("other", "v")).is_ok());
    let (meta, mut export) = sender.node.export_applied_state().unwrap();
    let rows = export.next_chunk(64).unwrap().unwrap();
    let chunk = StateChunk {
        from: MemberId(2),
        index: meta.index,
        term: meta.term,
        seq: 0,
        rows,
    };
    let now = solo.now;
    solo.node.handle(now, Input::StateChunk(chunk));
    solo.drain();
    assert!(solo.node.state().kv.engine().has_staged().unwrap());

    let defragment = || ClientRequest::Defragment(Default::default());
    let refused = solo.call(2, defragment());
    assert!(
        matches!(&refused, Err(ClientError::Defragment(why)) if why.contains("being received")),
        "{refused:?}"
    );
    assert!(solo.node.state().kv.engine().has_staged().unwrap());
    // The sender went silent: after a while the transfer no longer counts.
    solo.advance(Duration::from_secs(10));
    assert!(solo.call(3, defragment()).is_ok());
    assert!(!solo.node.state().kv.engine().has_staged().unwrap());
    let got = solo.call(4, get("k"));
    assert!(matches!(got, Ok(ClientResponse::Range(range)) if range.kvs.len() == 1));
}

/// etcd 3.5's linearizable member list waits for a read index like a linearizable range: on a
/// member without a leader it is not answered from possibly stale membership, and times out;
/// the plain one answers at once.
#[test]
fn a_linearizable_member_list_waits_for_raft_and_a_plain_one_does_not() {
    let list = |linearizable| ClientRequest::MemberList(pb::MemberListRequest { linearizable });
    assert_only_the_local_one_answers_without_a_leader(list(true), list(false));
}

/// Sends `waiting` (id 1) and `local` (id 2) to a member of two that has no leader: only the
/// local one is answered at once; the waiting one times out once the request timeout passed.
fn assert_only_the_local_one_answers_without_a_leader(
    waiting: ClientRequest,
    local: ClientRequest,
) {
    let now = Instant::from_micros(0);
    let mut node = Node::bootstrap(
        member_config(),
        &[member(1), member(2)],
        engine(),
        now,
        &logger(),
    )
    .unwrap();
    node.handle(now, Input::client(1, waiting));
    node.handle(now, Input::client(2, local));
    let replies = |node: &mut Node| -> Vec<(u64, bool)> {
        std::iter::from_fn(|| node.poll_output())
            .filter_map(|o| match o {
                Output::Reply { id, result } => Some((id, result.is_ok())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(replies(&mut node), vec![(2, true)]);
    node.handle(now + Duration::from_secs(6), Input::Tick);
    assert_eq!(replies(&mut node), vec![(1, false)]);
}

/// A part of a range read in parts is linearizable unless it says `serializable` (the first part
/// of a range without a limit is read as asked): on a member without a leader it waits for a
/// read index, and times out; a serializable part (every later part) answers at once.
#[test]
fn a_linearizable_range_part_waits_for_raft_and_a_serializable_one_does_not() {
    let part = |serializable| {
        ClientRequest::RangePart(pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            limit: 2,
            serializable,
            ..Default::default()
        })
    };
    assert_only_the_local_one_answers_without_a_leader(part(false), part(true));
}

/// Engine commits are written off the node's thread: while one is being written the node goes
/// on applying and answering from memory; the next commit waits for it; the commit is taken in
/// when the driver hands it back; a step that needs the engine to itself (here a durable commit
/// before a snapshot) takes it in first, running it if the driver had not, and the driver's late
/// report is then ignored.
#[test]
fn engine_commits_are_written_off_the_node_and_taken_in_once() {
    let mut solo = Solo::new(1_000_000);
    let engine_applied = |solo: &Solo| solo.node.state().kv.engine().applied().index;
    solo.hold_commits = true;
    assert!(solo.call(1, put("a", "1")).is_ok());
    solo.advance(engine_commit::BATCH_INTERVAL);
    assert_eq!(solo.held_commits.len(), 1, "a commit was handed out");
    let (first, job) = solo.held_commits.pop().unwrap();
    let written_up_to = solo.node.applied_index();
    assert!(engine_applied(&solo) < written_up_to);
    assert_eq!(solo.node.poll_timeout().map(|t| t > solo.now), Some(true));
    // Meanwhile writes are applied and read back, and no second commit starts.
    assert!(solo.call(2, put("b", "1")).is_ok());
    solo.advance(engine_commit::BATCH_INTERVAL * 3);
    assert!(solo.held_commits.is_empty(), "one commit at a time");
    let Ok(ClientResponse::Range(r)) = solo.call(3, get("a")) else {
        panic!("range failed")
    };
    assert_eq!(r.kvs[0].value, b"1", "read from the commit in flight");
    // The driver ran it and says so: taken in, and the next one starts.
    job.run();
    let now = solo.now;
    solo.node
        .handle(now, Input::StateCommitted { number: first });
    solo.drain();
    assert_eq!(engine_applied(&solo), written_up_to);
    assert_eq!(solo.held_commits.len(), 1, "the waiting changes' commit");
    let (second, late_job) = solo.held_commits.pop().unwrap();
    assert!(second > first);
    // A durable commit (an export for a backup) takes the second one in itself.
    let Some((meta, _export)) = solo.node.export_applied_state() else {
        panic!("no export");
    };
    assert_eq!(meta.index, solo.node.applied_index());
    assert_eq!(engine_applied(&solo), solo.node.applied_index());
    assert!(
        late_job.ran(),
        "run by the node, not waiting for the driver"
    );
    late_job.run();
    let now = solo.now;
    solo.node
        .handle(now, Input::StateCommitted { number: second });
    solo.drain();
    assert!(
        solo.held_commits.is_empty(),
        "a late report changes nothing"
    );
    let Ok(ClientResponse::Range(r)) = solo.call(4, get("b")) else {
        panic!("range failed")
    };
    assert_eq!(r.kvs[0].value, b"1");
}

/// Applying outruns a slow engine: once the changes waiting reach the bound, the node waits for
/// the commit in flight itself instead of holding more in memory.
#[test]
fn changes_waiting_behind_a_slow_commit_stay_bounded() {
    let mut solo = Solo::new(1_000_000);
    solo.hold_commits = true;
    let big = "x".repeat(1 << 20);
    let puts = (engine_commit::BATCH_BYTES + engine_commit::MAX_WAITING_BYTES) >> 20;
    for n in 0..puts as u64 + 2 {
        assert!(solo.call(n, put(&format!("k{n}"), &big)).is_ok());
        let (_, bytes) = solo.node.state().kv.uncommitted();
        assert!(
            bytes <= engine_commit::MAX_WAITING_BYTES,
            "{bytes} bytes wait"
        );
    }
    assert!(
        solo.held_commits.len() >= 2,
        "the node took in a commit the driver never ran, and went on"
    );
    assert!(solo.held_commits[0].1.ran());
}

/// A periodic snapshot's durable commit is written off the node too: the snapshot is saved (and
/// the log trimmed before it) only once that commit is taken in, at the index the commit made
/// durable, while writes went on meanwhile.
#[test]
fn a_periodic_snapshot_is_saved_once_its_durable_commit_is_taken_in() {
    let mut solo = Solo::new(5);
    let saved_before = solo.snapshots.len();
    solo.hold_commits = true;
    let mut n = 0;
    while solo.held_commits.is_empty() {
        n += 1;
        assert!(n < 20, "no snapshot's commit was started");
        assert!(solo.call(n, put("k", "v")).is_ok());
    }
    let (number, job) = solo.held_commits.pop().unwrap();
    let snapshot_index = solo.node.applied_index();
    assert!(solo.call(100, put("k", "later")).is_ok());
    assert_eq!(solo.snapshots.len(), saved_before, "not before its commit");
    job.run();
    let now = solo.now;
    solo.node.handle(now, Input::StateCommitted { number });
    solo.drain();
    assert_eq!(solo.snapshots.len(), saved_before + 1);
    let saved = solo.snapshots.last().unwrap().get_metadata().index;
    assert_eq!(saved, snapshot_index);
    assert!(
        solo.node.applied_index() > saved,
        "writes went on meanwhile"
    );
    assert_eq!(solo.node.state().kv.engine().applied().index, saved);
}

#[test]
fn a_hash_kv_taken_in_steps_between_writes_is_the_hash_at_the_revision_it_began() {
    let mut config = member_config();
    config.hash_kv_step_entries = 3;
    let mut solo = Solo::leader(config);
    let mut id = 0;
    for n in 0..40 {
        id += 1;
        assert!(solo.call(id, put(&format!("k{n}"), "v")).is_ok());
    }
    id += 1;
    let Ok(ClientResponse::HashKv(whole)) =
        solo.call(id, ClientRequest::HashKv(pb::HashKvRequest { revision: 0 }))
    else {
        panic!("hash failed")
    };
    let mut progress = None;
    let mut steps = 0;
    let stepped = loop {
        steps += 1;
        id += 1;
        let step = ClientRequest::HashKvStep {
            revision: 0,
            progress: progress.take(),
        };
        match solo.call(id, step) {
            Ok(ClientResponse::HashKvStep(HashKvStepped::Done(hash))) => break hash,
            Ok(ClientResponse::HashKvStep(HashKvStepped::More(next))) => progress = Some(next),
            other => panic!("step {steps}: {other:?}"),
        }
        id += 1;
        assert!(solo.call(id, put(&format!("k{steps}"), "during")).is_ok());
    };
    // 40 keys of one version each, 3 entries a step: two keys per step.
    assert_eq!(steps, 20);
    assert_eq!(
        (stepped.hash, stepped.compact_revision),
        (whole.hash, whole.compact_revision)
    );
    // Its header names the revision it hashed, current when it began (as etcd's answer does),
    // though 19 puts were applied before it finished.
    assert_eq!(
        stepped.header.map(|h| (h.revision, h.member_id)),
        Some((41, 1))
    );
}
