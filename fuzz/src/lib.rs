//! Shared pieces of stet's fuzz targets: how a target's input is split into parts, the states the
//! targets start from (a populated state machine, a bootstrapped node), and the seed inputs the
//! `seed` binary writes. Every input layout here is documented next to the function that reads it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message as _;
use raft::eraftpb::{Entry, HardState, Message, MessageType};
use stet::disk::{Disk, MemDisk};
use stet::node::{Input, Node, NodeConfig, Output};
use stet::proto::etcdserverpb as pb;
use stet::proto::stetpb::{self, internal_request::Request};
use stet::state::StateMachine;
use stet::time::Instant;
use stet::types::{ClusterId, MemberId};
use stet::wal::{Metadata, Wal, WalOptions};

/// The cluster every target's state belongs to.
pub const CLUSTER_ID: u64 = 9;
/// The minimum lease TTL the state machines are built with.
pub const MIN_TTL_SECONDS: i64 = 2;

/// Splits `data` into a part whose length is the first two bytes (u16 LE, clamped to what is left)
/// and the rest. Short inputs give empty parts.
pub fn split_prefixed(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (&[], &[]);
    };
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    rest.split_at(len)
}

/// Prefixes `part` with its length as [`split_prefixed`] reads it.
pub fn prefixed(part: &[u8]) -> Vec<u8> {
    let len = u16::try_from(part.len()).expect("seed parts are small");
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(part);
    out
}

pub fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// A member of the test cluster.
pub fn member(id: u64) -> pb::Member {
    pb::Member {
        id,
        name: format!("m{id}"),
        peer_ur_ls: vec![format!("http://127.0.0.1:{}", 2380 + id)],
        client_ur_ls: vec![format!("http://127.0.0.1:{}", 2379 + 10 * id)],
        ..Default::default()
    }
}

fn put(key: &[u8], value: &[u8], lease: i64) -> Request {
    Request::Put(pb::PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    })
}

/// A state machine with some history: keys with several versions, a deletion, a lease with a key
/// attached, a compaction and three members. Lease 7 exists; keys are `a`, `b`, `c`, `lease/x`.
pub fn populated_state() -> StateMachine {
    let mut state = StateMachine::new(ClusterId(CLUSTER_ID), MIN_TTL_SECONDS);
    let mut members = state.members().clone();
    for id in 1..=3 {
        members.add(member(id)).expect("fresh member");
    }
    state.set_members(members);
    let now = Instant::from_micros(1_000_000);
    let grant = Request::LeaseGrant(pb::LeaseGrantRequest { id: 7, ttl: 10 });
    let requests = [
        put(b"a", b"1", 0),
        put(b"b", b"1", 0),
        put(b"a", b"2", 0),
        grant,
        put(b"lease/x", b"x", 7),
        Request::DeleteRange(pb::DeleteRangeRequest {
            key: b"b".to_vec(),
            ..Default::default()
        }),
        Request::Compaction(pb::CompactionRequest {
            revision: 3,
            ..Default::default()
        }),
        put(b"c", b"3", 0),
    ];
    for request in requests {
        let applied = state.apply(request, None, now, true);
        assert!(
            matches!(applied.reply, Some(Ok(_))),
            "setup request failed: {:?}",
            applied.reply
        );
    }
    state
}

/// A state machine's full contents, for comparing two of them.
pub fn fingerprint(state: &StateMachine) -> (u32, i64, i64, Vec<i64>, Vec<pb::Member>) {
    let (hash, _) = state.kv.hash_kv(0).expect("revision 0 is always readable");
    (
        hash,
        state.kv.current_revision(),
        state.kv.compact_revision(),
        state.lessor.leases(),
        state.members().list(),
    )
}

/// Checks that a state machine's snapshot restores to the same state: whatever a member can reach,
/// a follower must be able to install.
pub fn assert_snapshot_round_trips(state: &StateMachine) {
    let bytes = state
        .to_snapshot_bytes()
        .expect("values in memory read back");
    let restored = StateMachine::from_snapshot_bytes(&bytes, state.min_lease_ttl_seconds())
        .unwrap_or_else(|e| panic!("a reachable state does not restore from its snapshot: {e}"));
    assert_eq!(fingerprint(&restored), fingerprint(state));
    assert_eq!(
        restored
            .to_snapshot_bytes()
            .expect("values in memory read back"),
        bytes,
        "snapshot is not canonical"
    );
}

/// The directory every WAL target uses.
pub fn wal_dir() -> PathBuf {
    PathBuf::from("/data/member/wal")
}

/// The WAL's metadata in seeds.
pub const WAL_METADATA: Metadata = Metadata {
    member_id: 1,
    cluster_id: CLUSTER_ID,
};

/// The `wal_open` input layout: `[flags: u8][split: u16 LE][segment bytes]`. Flag bit 0: the
/// bytes are two segments, cut at `split` (clamped), named seq 0 and 1 (the second's first index
/// is `split`); otherwise one segment. Flag bit 1: a small segment size, so appends rotate.
pub struct WalOpenInput<'a> {
    pub segments: Vec<&'a [u8]>,
    pub opts: WalOptions,
}

impl<'a> WalOpenInput<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&flags, rest) = data.split_first()?;
        let (split, bytes) = rest.split_first_chunk::<2>()?;
        let segments = if flags & 1 == 1 {
            let at = usize::from(u16::from_le_bytes(*split)).min(bytes.len());
            let (a, b) = bytes.split_at(at);
            vec![a, b]
        } else {
            vec![bytes]
        };
        let segment_size_bytes = if flags & 2 == 2 { 256 } else { 64 << 20 };
        Some(WalOpenInput {
            segments,
            opts: WalOptions { segment_size_bytes },
        })
    }

    /// Writes the segments into `dir` on a fresh disk, durably.
    pub fn disk(&self, dir: &Path) -> MemDisk {
        let mut disk = MemDisk::new();
        disk.create_dir_all(dir).expect("mem disk");
        let mut first_index = 0;
        for (seq, bytes) in self.segments.iter().enumerate() {
            let name = stet::wal::segment::name(seq as u64, first_index);
            let path = dir.join(name);
            disk.create(&path).expect("mem disk");
            disk.append(&path, bytes).expect("mem disk");
            disk.sync(&path).expect("mem disk");
            first_index = bytes.len() as u64;
        }
        disk.sync_dir(dir).expect("mem disk");
        disk
    }
}

/// Raft's log entry at `(term, index)` carrying `data`.
pub fn entry(term: u64, index: u64, data: &[u8]) -> Entry {
    Entry {
        term,
        index,
        data: data.to_vec().into(),
        ..Entry::default()
    }
}

/// The bytes of every segment of a WAL that saw a few entries, an overwrite and a snapshot marker,
/// with segments rotated at `segment_size_bytes`.
pub fn sample_wal_segments(segment_size_bytes: u64) -> Vec<Vec<u8>> {
    let dir = wal_dir();
    let opts = WalOptions { segment_size_bytes };
    let mut wal = Wal::create(MemDisk::new(), &dir, WAL_METADATA, opts).expect("create");
    let hs = |term, commit| HardState {
        term,
        vote: 1,
        commit,
        ..HardState::default()
    };
    let batches: [(Vec<Entry>, HardState); 3] = [
        (vec![entry(1, 1, b"one"), entry(1, 2, b"two")], hs(1, 1)),
        (vec![entry(2, 2, b"two again"), entry(2, 3, b"")], hs(2, 3)),
        (vec![entry(2, 4, &[0xab; 40])], hs(2, 4)),
    ];
    for (entries, hard_state) in &batches {
        wal.append(entries, Some(hard_state)).expect("append");
    }
    wal.save_snapshot_marker(3, 2).expect("marker");
    wal.sync().expect("sync");
    let paths = wal.segment_paths();
    let disk = wal.into_disk();
    paths
        .iter()
        .map(|p| disk.read(p).expect("segment"))
        .collect()
}

/// An encoded internal request, as a raft entry carries it.
pub fn internal_request(id: u64, request: Request) -> Vec<u8> {
    stetpb::InternalRequest {
        id,
        origin: 1,
        incarnation: 0,
        request: Some(request),
        requester: Some(stetpb::Requester {
            user: "root".to_string(),
            auth_revision: 1,
        }),
    }
    .encode_to_vec()
}

/// The requests the `raft_entry_apply` seeds carry.
pub fn sample_requests() -> Vec<Request> {
    let txn = pb::TxnRequest {
        compare: vec![pb::Compare {
            key: b"a".to_vec(),
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Version as i32,
            target_union: Some(pb::compare::TargetUnion::Version(2)),
            ..Default::default()
        }],
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: b"t".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                key: b"a".to_vec(),
                range_end: vec![0],
                ..Default::default()
            })),
        }],
    };
    vec![
        put(b"k", b"v", 0),
        put(b"a", b"new", 7),
        Request::DeleteRange(pb::DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            prev_kv: true,
        }),
        Request::Txn(txn),
        Request::Compaction(pb::CompactionRequest {
            revision: 5,
            ..Default::default()
        }),
        Request::LeaseGrant(pb::LeaseGrantRequest { id: 8, ttl: 5 }),
        Request::LeaseRevoke(pb::LeaseRevokeRequest { id: 7 }),
        Request::MemberAttributes(stetpb::MemberAttributes {
            member_id: 2,
            name: "two".to_string(),
            client_urls: vec!["http://127.0.0.1:2400".to_string()],
            ..Default::default()
        }),
        Request::Range(pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"d".to_vec(),
            ..Default::default()
        }),
        Request::LeaseRenew(stetpb::LeaseRenew { ids: vec![7] }),
        Request::AuthUserAdd(pb::AuthUserAddRequest {
            name: "root".to_string(),
            hashed_password: "$2a$04$hash".to_string(),
            ..Default::default()
        }),
        Request::AuthUserGrantRole(pb::AuthUserGrantRoleRequest {
            user: "root".to_string(),
            role: "root".to_string(),
        }),
        Request::AuthRoleGrantPermission(pb::AuthRoleGrantPermissionRequest {
            name: "r".to_string(),
            perm: Some(stet::proto::authpb::Permission {
                perm_type: 2,
                key: b"a".to_vec(),
                range_end: b"b".to_vec(),
            }),
        }),
        Request::AuthEnable(pb::AuthEnableRequest {}),
        Request::Authenticate(stetpb::Authenticate {
            name: "root".to_string(),
            simple_token: "abcdefghijklmnop.1".to_string(),
            checked_revision: 3,
        }),
    ]
}

/// The `raft_message` input layout: `[flags: u8]` then messages, each `[len: u16 LE][protobuf]`.
/// Flag bit 0: the node is member 1 of three (it stays a follower or campaigns) instead of the
/// only member. Flag bit 1: time passes before the messages (the single member becomes leader,
/// one of three starts a pre-vote campaign).
pub struct NodeHarness {
    pub node: Node,
    pub now: Instant,
    /// Messages the node asked to send.
    pub sent: Vec<Message>,
    /// Whether the node reported a fatal error (allowed: e.g. a corrupt snapshot from a leader).
    pub fatal: bool,
}

impl NodeHarness {
    pub fn new(flags: u8) -> Self {
        let members: Vec<pb::Member> = if flags & 1 == 1 {
            (1..=3).map(member).collect()
        } else {
            vec![member(1)]
        };
        let config = NodeConfig::new(MemberId(1), ClusterId(CLUSTER_ID));
        let now = Instant::from_micros(0);
        let node = Node::bootstrap(config, &members, engine(), now, &logger()).expect("bootstrap");
        let mut harness = NodeHarness {
            node,
            now,
            sent: Vec::new(),
            fatal: false,
        };
        harness.drain();
        if flags & 2 == 2 {
            harness.advance(Duration::from_secs(3));
        }
        harness
    }

    /// Acts on every output: acknowledges persistence at once, keeps what is sent.
    pub fn drain(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Persist(p) => {
                    let input = Input::Persisted {
                        ready_number: p.ready_number,
                    };
                    self.node.handle(self.now, input);
                }
                Output::Send(m) | Output::SendState { message: m, .. } => {
                    if self.sent.len() < 1024 {
                        self.sent.push(m);
                    }
                }
                Output::Fatal { .. } => self.fatal = true,
                Output::CloseFile(file) => file.close(),
                Output::CommitState { number, job } => {
                    job.run();
                    self.node.handle(self.now, Input::StateCommitted { number });
                }
                Output::SaveSnapshot(_)
                | Output::Reply { .. }
                | Output::Watch { .. }
                | Output::LeaderChanged { .. }
                | Output::Tokens(_)
                | Output::Removed => {}
            }
        }
    }

    /// Lets time pass, ticking the node whenever it asks.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.node.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.node.handle(self.now, Input::Tick);
            self.drain();
        }
        self.now = until;
    }

    pub fn step(&mut self, message: Message) {
        self.node.handle(self.now, Input::Peer(message));
        self.drain();
    }
}

/// Messages a peer could send member 1 (as 2 or 3), for the `raft_message` seeds.
pub fn sample_messages() -> Vec<Message> {
    let msg = |t: MessageType, from: u64, term: u64| Message {
        msg_type: t,
        to: 1,
        from,
        term,
        ..Message::default()
    };
    let mut append = msg(MessageType::MsgAppend, 2, 2);
    append.log_term = 1;
    append.index = 3;
    append.commit = 4;
    append.entries = vec![entry(2, 4, &internal_request(1, put(b"k", b"v", 0)))].into();
    let mut vote = msg(MessageType::MsgRequestVote, 2, 2);
    vote.log_term = 1;
    vote.index = 3;
    let mut prevote = msg(MessageType::MsgRequestPreVote, 3, 2);
    prevote.log_term = 1;
    prevote.index = 3;
    let mut snapshot = msg(MessageType::MsgSnapshot, 2, 3);
    let mut snap = raft::eraftpb::Snapshot {
        data: populated_state()
            .to_snapshot_bytes()
            .expect("values in memory read back")
            .into(),
        ..Default::default()
    };
    snap.mut_metadata().index = 20;
    snap.mut_metadata().term = 3;
    snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    snapshot.set_snapshot(snap);
    let mut vote_resp = msg(MessageType::MsgRequestPreVoteResponse, 2, 2);
    vote_resp.reject = false;
    vec![
        msg(MessageType::MsgHeartbeat, 2, 2),
        append,
        vote,
        prevote,
        snapshot,
        vote_resp,
        msg(MessageType::MsgAppendResponse, 2, 1),
        msg(MessageType::MsgTimeoutNow, 2, 1),
        msg(MessageType::MsgReadIndex, 2, 1),
    ]
}

/// A storage engine in memory for a node under test.
pub fn engine() -> stet::engine::Engine {
    stet::engine::Engine::in_memory(1 << 20).expect("an engine in memory")
}

/// Rows of an engine file, as the `engine_state` target reads them from fuzz input: each row is a
/// kind byte, two 8-byte little-endian numbers, a length byte and that many payload bytes.
/// Kinds (mod 10): revision put (main, sub, `KeyValue` bytes), revision tombstone, lease (id,
/// record), member (id, record), removed member (id), current revision, compact revision, the
/// applied index and term with raft's `ConfState` bytes, the alarms (`AlarmList` bytes) and the
/// auth store (`AuthState` bytes).
pub fn engine_from_rows(mut data: &[u8]) -> stet::engine::Engine {
    use stet::engine::{Applied, Batch, Revision, Stored};
    let mut batch = Batch::new();
    let mut applied = None;
    while let Some((&kind, rest)) = data.split_first() {
        let Some((numbers, rest)) = rest.split_first_chunk::<17>() else {
            break;
        };
        let a = u64::from_le_bytes(numbers[..8].try_into().unwrap_or_default());
        let b = u64::from_le_bytes(numbers[8..16].try_into().unwrap_or_default());
        let len = usize::from(numbers[16]).min(rest.len());
        let (payload, rest) = rest.split_at(len);
        data = rest;
        let revision = Revision { main: a, sub: b };
        match kind % 10 {
            0 | 1 => batch.put_revision(
                revision,
                Stored {
                    tombstone: kind % 10 == 1,
                    key_value: payload.to_vec(),
                },
            ),
            2 => batch.put_lease(a as i64, payload.to_vec()),
            3 => batch.put_member(a, payload.to_vec()),
            4 => batch.remove_member(a),
            5 => batch.set_current_revision(a),
            6 => batch.set_compact_revision(a),
            8 => batch.set_alarms(payload.to_vec()),
            9 => batch.set_auth(payload.to_vec()),
            // A batch ends at one applied entry: the last one named wins.
            _ => applied = Some((Applied { index: a, term: b }, payload.to_vec())),
        }
    }
    if let Some((applied, conf_state)) = applied {
        batch.set_applied(applied);
        batch.set_conf_state(conf_state);
    }
    let mut engine = engine();
    engine
        .commit(batch, false)
        .expect("an engine in memory commits");
    engine
}

/// The rows of `engine` in the form `engine_from_rows` reads (payloads longer than 255 bytes are
/// cut short).
pub fn rows_of(engine: &stet::engine::Engine) -> Vec<u8> {
    fn row(out: &mut Vec<u8>, kind: u8, a: u64, b: u64, payload: &[u8]) {
        let payload = &payload[..payload.len().min(255)];
        out.push(kind);
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
        out.push(payload.len() as u8);
        out.extend_from_slice(payload);
    }
    let view = engine.view().expect("a view");
    let mut out = Vec::new();
    let from = stet::engine::Revision { main: 0, sub: 0 };
    view.revisions_from(from, |revision, stored| {
        let kind = u8::from(stored.tombstone);
        row(
            &mut out,
            kind,
            revision.main,
            revision.sub,
            &stored.key_value,
        );
        true
    })
    .expect("revisions");
    for (id, record) in view.leases().expect("leases") {
        row(&mut out, 2, id as u64, 0, &record);
    }
    for (id, record) in view.members().expect("members") {
        row(&mut out, 3, id, 0, &record);
    }
    for id in view.removed_members().expect("removed members") {
        row(&mut out, 4, id, 0, &[]);
    }
    row(
        &mut out,
        5,
        view.current_revision().expect("current"),
        0,
        &[],
    );
    row(
        &mut out,
        6,
        view.compact_revision().expect("compact"),
        0,
        &[],
    );
    if let Some(alarms) = view.alarms().expect("alarms") {
        row(&mut out, 8, 0, 0, &alarms);
    }
    if let Some(auth) = view.auth().expect("auth") {
        row(&mut out, 9, 0, 0, &auth);
    }
    let applied = view.applied().expect("applied");
    let conf_state = view.conf_state().expect("conf state").unwrap_or_default();
    row(&mut out, 7, applied.index, applied.term, &conf_state);
    out
}
