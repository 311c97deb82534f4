//! Writes seed corpora for every fuzz target into `corpus/<target>/` (or the directory given as
//! the first argument): a few valid inputs built by stet's own encoders, so fuzzing starts from
//! deep inside each decoder instead of from random bytes.
//!
//! Run with `cargo run --features seed --bin seed` from `fuzz/`.

use std::fs;
use std::path::PathBuf;

use protobuf::Message as _;
use raft::eraftpb::{HardState, Snapshot};
use stet::wal::record::{self, Record};
use stet_fuzz::{
    entry, internal_request, populated_state, prefixed, sample_messages, sample_requests,
    sample_wal_segments, WAL_METADATA,
};

fn main() -> std::io::Result<()> {
    let root = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("corpus"), PathBuf::from);
    let targets: [(&str, Vec<Vec<u8>>); 12] = [
        ("wal_record", wal_record()),
        ("wal_open", wal_open()),
        ("snap_file", snap_file()),
        ("state_snapshot", state_snapshot()),
        ("raft_entry_apply", raft_entry_apply()),
        ("raft_message", raft_message()),
        ("peer_frames", peer_frames()),
        ("engine_value", engine_value()),
        ("engine_state", engine_state()),
        ("snapshot_chunk", snapshot_chunk()),
        ("backup", backup()),
        ("etcd_snapshot", etcd_snapshot()),
    ];
    for (target, seeds) in targets {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        for (i, seed) in seeds.iter().enumerate() {
            fs::write(dir.join(format!("seed-{i:02}")), seed)?;
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
    }
    Ok(())
}

fn wal_record() -> Vec<Vec<u8>> {
    let records = [
        Record::Crc(0x1234_5678),
        Record::Metadata(WAL_METADATA),
        Record::Entry(entry(3, 17, b"data")),
        Record::HardState(HardState {
            term: 3,
            vote: 2,
            commit: 17,
            ..HardState::default()
        }),
        Record::SnapshotMarker { index: 10, term: 2 },
        Record::SnapshotInstalled { index: 12, term: 3 },
    ];
    records
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            record::encode(r, 0, &mut out).expect("small record");
            out
        })
        .collect()
}

fn wal_open() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let one = sample_wal_segments(64 << 20);
    let mut single = vec![0, 0, 0];
    single.extend_from_slice(&one[0]);
    seeds.push(single);
    let two = sample_wal_segments(200);
    if let [a, b, ..] = two.as_slice() {
        let split = u16::try_from(a.len()).expect("small segment");
        let mut seed = vec![3];
        seed.extend_from_slice(&split.to_le_bytes());
        seed.extend_from_slice(a);
        seed.extend_from_slice(b);
        seeds.push(seed);
    }
    seeds
}

fn snap_file() -> Vec<Vec<u8>> {
    let mut snapshot = Snapshot {
        data: populated_state()
            .to_snapshot_bytes()
            .expect("values in memory read back")
            .into(),
        ..Snapshot::default()
    };
    let meta = snapshot.mut_metadata();
    meta.index = 20;
    meta.term = 3;
    meta.mut_conf_state().voters = vec![1, 2, 3];
    meta.mut_conf_state().learners = vec![4];
    let empty = Snapshot::default();
    [snapshot, empty]
        .iter()
        .map(|s| stet::snap::encode(s).expect("encode"))
        .collect()
}

fn state_snapshot() -> Vec<Vec<u8>> {
    let fresh = stet::state::StateMachine::new(stet::types::ClusterId(9), 2);
    vec![
        populated_state()
            .to_snapshot_bytes()
            .expect("values in memory read back"),
        fresh
            .to_snapshot_bytes()
            .expect("values in memory read back"),
    ]
}

fn raft_entry_apply() -> Vec<Vec<u8>> {
    let requests: Vec<Vec<u8>> = sample_requests()
        .into_iter()
        .zip(1..)
        .map(|(r, id)| internal_request(id, r))
        .collect();
    let mut seeds = Vec::new();
    for (i, first) in requests.iter().enumerate() {
        let second = &requests[(i + 3) % requests.len()];
        let mut seed = vec![(i % 2) as u8];
        seed.extend_from_slice(&prefixed(first));
        seed.extend_from_slice(second);
        seeds.push(seed);
    }
    seeds
}

fn raft_message() -> Vec<Vec<u8>> {
    let messages = sample_messages();
    let mut seeds = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let bytes = message.write_to_bytes().expect("encode");
        for flags in [0u8, 1, 2, 3] {
            if (i + usize::from(flags)) % 2 == 0 {
                let mut seed = vec![flags];
                seed.extend_from_slice(&prefixed(&bytes));
                seeds.push(seed);
            }
        }
    }
    seeds
}

/// Peer streams as a member writes them: a handshake, raft messages (one split into parts), and
/// forwarded requests and replies; each seed starts with the read-size byte.
fn peer_frames() -> Vec<Vec<u8>> {
    use stet::peer_wire::{self, FrameKind};
    use stet::proto::etcdserverpb as pb;
    use stet::proto::stetpeerpb as peerpb;
    let mut stream = Vec::new();
    let hello = peerpb::Hello {
        version: peer_wire::VERSION,
        purpose: peerpb::Purpose::Raft as i32,
        cluster_id: 0xc1,
        from: 1,
        to: 2,
    };
    peer_wire::encode_message(FrameKind::Hello, &hello, &mut stream);
    for message in sample_messages() {
        let bytes = message.write_to_bytes().expect("encode");
        peer_wire::encode_raft_message(&bytes, &mut stream);
    }
    let mut forwarded = Vec::new();
    let request = peerpb::ForwardRequest {
        id: 7,
        request: Some(peerpb::forward_request::Request::LeaseKeepAlive(
            pb::LeaseKeepAliveRequest { id: 42 },
        )),
        requester: Some(stet::proto::stetpb::Requester {
            user: "alice".to_string(),
            auth_revision: 3,
        }),
    };
    peer_wire::encode_message(FrameKind::ForwardRequest, &request, &mut forwarded);
    let reply = peerpb::ForwardReply {
        id: 7,
        reply: Some(peerpb::forward_reply::Reply::Error(peerpb::ForwardError {
            code: 5,
            message: "etcdserver: requested lease not found".into(),
            lease_not_found: true,
        })),
    };
    peer_wire::encode_message(FrameKind::ForwardReply, &reply, &mut forwarded);
    let mut state = Vec::new();
    for seq in 0..2 {
        let chunk = peerpb::StateChunk {
            index: 40,
            term: 3,
            seq,
            rows: vec![seq as u8; 300],
        };
        let encoded = prost::Message::encode_to_vec(&chunk);
        peer_wire::encode_state_chunk_in_parts(&encoded, 128, &mut state);
    }
    let mut seeds = Vec::new();
    for (step, bytes) in [
        (255u8, &stream),
        (33, &state),
        (7, &stream),
        (64, &forwarded),
        (1, &forwarded),
    ] {
        let mut seed = vec![step];
        seed.extend_from_slice(bytes);
        seeds.push(seed);
    }
    seeds
}

fn engine_state() -> Vec<Vec<u8>> {
    use protobuf::Message as _;
    let mut state = populated_state();
    let conf_state = raft::eraftpb::ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    };
    let applied = stet::engine::Applied { index: 20, term: 3 };
    let conf_state = conf_state.write_to_bytes().expect("encode");
    state
        .commit(Some((applied, conf_state)), false)
        .expect("commit");
    let fresh = stet::state::StateMachine::new(stet::types::ClusterId(9), 2);
    vec![
        stet_fuzz::rows_of(state.kv.engine()),
        stet_fuzz::rows_of(fresh.kv.engine()),
    ]
}

/// The `engine_state` seeds behind control bytes: whole rows in one chunk, small chunks, a
/// damaged chunk, and a real chunk staged raw.
fn snapshot_chunk() -> Vec<Vec<u8>> {
    let rows = engine_state();
    let mut seeds = Vec::new();
    for control in [0x3f, 0x01, 0x41] {
        for state in &rows {
            let mut seed = vec![control];
            seed.extend_from_slice(state);
            seeds.push(seed);
        }
    }
    let source = stet_fuzz::engine_from_rows(&rows[0]);
    let mut export = stet::engine::Export::new(std::sync::Arc::new(source.view().expect("a view")));
    if let Some(chunk) = export.next_chunk(4096).expect("an export") {
        let mut seed = vec![0x80];
        seed.extend_from_slice(&chunk);
        seeds.push(seed);
    }
    seeds
}

/// Backups of states from the `engine_state` seeds, in chunks of two sizes: as content for the
/// target to seal (control 0), and one whole file (control 1).
fn backup() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (i, rows) in engine_state().iter().enumerate() {
        let source = stet_fuzz::engine_from_rows(rows);
        let view = source.view().expect("a view");
        let mut export = stet::engine::Export::new(std::sync::Arc::new(view));
        let mut meta = raft::eraftpb::SnapshotMetadata::default();
        let applied = source.applied();
        meta.index = applied.index;
        meta.term = applied.term;
        let (mut writer, mut bytes) = stet::backup::BackupWriter::start(&meta).expect("a backup");
        let chunk_bytes = if i % 2 == 0 { 64 } else { 4096 };
        while let Some(rows) = export.next_chunk(chunk_bytes).expect("an export") {
            bytes.extend(writer.rows(&rows));
        }
        bytes.extend(writer.finish());
        let content = &bytes[..bytes.len() - stet::backup::HASH_LEN];
        seeds.push([&[0u8][..], content].concat());
        if i == 0 {
            seeds.push([&[1u8][..], &bytes].concat());
        }
    }
    seeds
}

fn engine_value() -> Vec<Vec<u8>> {
    use stet::engine::record::{revision_key, seal, Tag};
    let rows: [(Vec<u8>, Tag, &[u8]); 4] = [
        (revision_key(7, 1).to_vec(), Tag::Put, b"a key-value"),
        (revision_key(8, 0).to_vec(), Tag::Tombstone, b"a"),
        (5i64.to_le_bytes().to_vec(), Tag::Lease, b"a lease"),
        (
            b"consistent_index".to_vec(),
            Tag::Number,
            &[9, 0, 0, 0, 0, 0, 0, 0],
        ),
    ];
    rows.iter()
        .map(|(key, tag, payload)| {
            let mut stored = Vec::new();
            seal(key, *tag, payload, &mut stored);
            let mut seed = vec![key.len() as u8];
            seed.extend_from_slice(key);
            seed.extend_from_slice(&stored);
            seed
        })
        .collect()
}

/// etcd 3.4's backup from the tests' fixture, without its SHA-256 trailer (the target reads the
/// bbolt file itself), whole and cut to its first pages.
fn etcd_snapshot() -> Vec<Vec<u8>> {
    let file = include_bytes!("../../../tests/fixtures/etcd-3.4-snapshot.db");
    let database = &file[..file.len() - 32];
    vec![database.to_vec(), database[..4 * 4096].to_vec()]
}
