//! The backup format `Maintenance.Snapshot` streams since the state moved to the storage engine:
//! written chunk by chunk from a read-only view of the engine, so no step holds the state in
//! memory, and restored by staging the chunks into an engine and swapping them in.
//!
//! Layout: [`MAGIC`], then records `kind: u8 | length: u32 LE | payload` — one `META` (raft's
//! `SnapshotMetadata`: index, term, configuration), any number of `ROWS` (an `engine::Export`
//! chunk each), one `END` (the number of `ROWS` records, u64 LE) — then zeros up to a multiple of
//! 512 bytes and the SHA-256 of everything before it, as etcd's backups end (etcdctl checks that
//! length and hash).

use protobuf::Message as _;
use raft::eraftpb::SnapshotMetadata;
use sha2::{Digest, Sha256};

use super::{BackupError, BLOCK};
use crate::engine::{Applied, Engine};

/// The first bytes of a streamed backup.
pub const MAGIC: &[u8; 16] = b"stet-backup\0v2\0\0";

const META: u8 = 1;
const ROWS: u8 = 2;
const END: u8 = 3;
const RECORD_HEADER_BYTES: usize = 5;
/// The largest record a reader accepts (a chunk is cut at about 256 KiB; one row may exceed it).
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// Writes a backup piece by piece: each call returns the bytes to send next.
pub struct BackupWriter {
    hash: Sha256,
    written_bytes: u64,
    rows_records: u64,
}

impl BackupWriter {
    /// Starts a backup of the state at `meta`; returns the magic and the `META` record.
    pub fn start(meta: &SnapshotMetadata) -> Result<(BackupWriter, Vec<u8>), BackupError> {
        let mut writer = BackupWriter {
            hash: Sha256::new(),
            written_bytes: 0,
            rows_records: 0,
        };
        let encoded = meta
            .write_to_bytes()
            .map_err(|e| BackupError::Malformed(format!("metadata does not encode: {e}")))?;
        let mut out = MAGIC.to_vec();
        push_record(&mut out, META, &encoded);
        writer.account(&out);
        Ok((writer, out))
    }

    /// One chunk of rows, as `engine::Export::next_chunk` cut it.
    pub fn rows(&mut self, rows: &[u8]) -> Vec<u8> {
        assert!(
            rows.len() <= MAX_RECORD_BYTES,
            "a chunk larger than readers accept"
        );
        let mut out = Vec::with_capacity(rows.len() + RECORD_HEADER_BYTES);
        push_record(&mut out, ROWS, rows);
        self.rows_records += 1;
        self.account(&out);
        out
    }

    /// The `END` record, the padding and the SHA-256 trailer.
    pub fn finish(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        push_record(&mut out, END, &self.rows_records.to_le_bytes());
        let total = self.written_bytes + out.len() as u64;
        let padding = (BLOCK as u64 - total % BLOCK as u64) % BLOCK as u64;
        out.resize(out.len() + padding as usize, 0);
        self.hash.update(&out);
        out.extend_from_slice(&self.hash.finalize());
        out
    }

    fn account(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
        self.written_bytes += bytes.len() as u64;
    }
}

fn push_record(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    let len = u32::try_from(payload.len()).expect("records are bounded by MAX_RECORD_BYTES");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

/// A checked streamed backup: its metadata and its chunks of rows, borrowed from the bytes.
#[derive(Debug)]
pub struct StreamedBackup<'a> {
    pub meta: SnapshotMetadata,
    pub chunks: Vec<&'a [u8]>,
}

/// Checks a streamed backup's length, hash and records; never panics on any bytes.
pub fn parse(bytes: &[u8]) -> Result<StreamedBackup<'_>, BackupError> {
    parse_content(super::checked_content(bytes)?)
}

/// [`parse`] without comparing the SHA-256 at the end (etcdutl's `--skip-hash-check`): the
/// records are still checked, and every row again when it is restored.
pub fn parse_skipping_hash(bytes: &[u8]) -> Result<StreamedBackup<'_>, BackupError> {
    parse_content(super::unchecked_content(bytes)?)
}

fn parse_content(content: &[u8]) -> Result<StreamedBackup<'_>, BackupError> {
    let mut rest = content
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| BackupError::Malformed("not a streamed stet backup".into()))?;
    let mut meta = None;
    let mut chunks = Vec::new();
    loop {
        let (kind, payload, after) = next_record(rest)?;
        rest = after;
        match (kind, &meta) {
            (META, None) => {
                meta = Some(SnapshotMetadata::parse_from_bytes(payload).map_err(|e| {
                    BackupError::Malformed(format!("metadata does not decode: {e}"))
                })?)
            }
            (ROWS, Some(_)) => chunks.push(payload),
            (END, Some(_)) => {
                let count = <[u8; 8]>::try_from(payload)
                    .map(u64::from_le_bytes)
                    .map_err(|_| BackupError::Malformed("END record is not 8 bytes".into()))?;
                if count != chunks.len() as u64 {
                    return Err(BackupError::Malformed(format!(
                        "END counts {count} chunks, the backup holds {}",
                        chunks.len()
                    )));
                }
                if !crate::disk::all_zero(rest) {
                    return Err(BackupError::Malformed("bytes after END".into()));
                }
                let meta = meta.unwrap_or_default();
                return Ok(StreamedBackup { meta, chunks });
            }
            _ => {
                return Err(BackupError::Malformed(format!(
                    "record of kind {kind} out of place"
                )))
            }
        }
    }
}

fn next_record(bytes: &[u8]) -> Result<(u8, &[u8], &[u8]), BackupError> {
    let truncated = || BackupError::Malformed("a record runs past the end".into());
    let header = bytes.get(..RECORD_HEADER_BYTES).ok_or_else(truncated)?;
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_RECORD_BYTES {
        return Err(BackupError::Malformed(format!("a record of {len} bytes")));
    }
    let end = RECORD_HEADER_BYTES + len;
    let payload = bytes.get(RECORD_HEADER_BYTES..end).ok_or_else(truncated)?;
    Ok((header[0], payload, &bytes[end..]))
}

impl StreamedBackup<'_> {
    /// Writes the backup's state into `engine` (whatever it held is replaced), checking every
    /// row as a state sent by a peer is checked; the applied index and term it ends at.
    pub fn restore_into(&self, engine: &mut Engine) -> Result<Applied, BackupError> {
        let applied = Applied {
            index: self.meta.index,
            term: self.meta.term,
        };
        engine.clear_staged()?;
        for chunk in &self.chunks {
            engine.stage_chunk(chunk)?;
        }
        engine.install_staged(applied)?;
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::Export;
    use crate::proto::etcdserverpb as pb;
    use crate::proto::stetpb::internal_request::Request;
    use crate::state::StateMachine;
    use crate::time::Instant;
    use crate::types::ClusterId;

    const CACHE_BYTES: usize = 1 << 20;

    /// A state with keys, history, a lease and alarms, committed at index 40 term 3.
    fn state() -> StateMachine {
        let engine = Engine::in_memory(CACHE_BYTES).unwrap();
        let mut sm = StateMachine::with_engine(engine, ClusterId(5), 2).unwrap();
        let now = Instant::from_micros(0);
        let grant = Request::LeaseGrant(pb::LeaseGrantRequest { ttl: 60, id: 9 });
        sm.apply_internal(grant, now, true);
        for i in 0..200 {
            let put = pb::PutRequest {
                key: format!("key-{}", i % 50).into_bytes(),
                value: vec![i as u8; 300],
                lease: if i % 7 == 0 { 9 } else { 0 },
                ..Default::default()
            };
            sm.apply_internal(Request::Put(put), now, true);
        }
        let alarm = pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Activate as i32,
            member_id: 3,
            alarm: pb::AlarmType::Nospace as i32,
        };
        sm.apply_internal(Request::Alarm(alarm), now, true);
        let add = pb::AuthUserAddRequest {
            name: "root".into(),
            hashed_password: "$2a$04$hash".into(),
            ..Default::default()
        };
        let grant = pb::AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        };
        for request in [
            Request::AuthUserAdd(add),
            Request::AuthUserGrantRole(grant),
            Request::AuthEnable(Default::default()),
        ] {
            let applied = sm.apply(request, None, now, true);
            assert!(matches!(applied.reply, Some(Ok(_))), "{:?}", applied.reply);
        }
        let applied = Applied { index: 40, term: 3 };
        sm.commit(Some((applied, vec![8, 1])), true).unwrap();
        sm
    }

    fn backup_of(sm: &StateMachine, chunk_bytes: usize) -> Vec<u8> {
        let view = sm.kv.engine().view().unwrap();
        let mut export = Export::new(Arc::new(view));
        let meta = SnapshotMetadata {
            index: 40,
            term: 3,
            ..Default::default()
        };
        let (mut writer, mut bytes) = BackupWriter::start(&meta).unwrap();
        while let Some(rows) = export.next_chunk(chunk_bytes).unwrap() {
            bytes.extend(writer.rows(&rows));
        }
        bytes.extend(writer.finish());
        bytes
    }

    fn restored(bytes: &[u8]) -> Result<StateMachine, BackupError> {
        let backup = parse(bytes)?;
        let mut engine = Engine::in_memory(CACHE_BYTES).unwrap();
        let applied = backup.restore_into(&mut engine)?;
        assert_eq!(applied, Applied { index: 40, term: 3 });
        let (state, at, conf_state) = StateMachine::from_engine(engine, 2)
            .map_err(|e| BackupError::Malformed(e.to_string()))?;
        assert_eq!((at, conf_state), (applied, Some(vec![8, 1])));
        Ok(state)
    }

    #[test]
    fn a_streamed_backup_restores_the_whole_state_and_has_etcds_length() {
        let sm = state();
        for chunk_bytes in [1, 4096, 1 << 20] {
            let bytes = backup_of(&sm, chunk_bytes);
            assert_eq!((bytes.len() - super::super::HASH_LEN) % BLOCK, 0);
            assert!(super::super::is_streamed(&bytes));
            let back = restored(&bytes).unwrap();
            assert_eq!(back.kv.hash_kv(0).unwrap(), sm.kv.hash_kv(0).unwrap());
            assert_eq!(back.lessor.to_snapshot(), sm.lessor.to_snapshot());
            assert_eq!(back.alarms(), sm.alarms());
            assert_eq!(
                back.auth(),
                sm.auth(),
                "users, roles and the enabled flag came back"
            );
            assert!(back.auth().is_enabled());
            assert_eq!(back.members().cluster_id(), ClusterId(5));
        }
    }

    #[test]
    fn a_restored_backup_becomes_the_first_state_of_a_new_cluster() {
        let sm = state();
        let bytes = backup_of(&sm, 4096);
        let backup = parse(&bytes).unwrap();
        let mut engine = Engine::in_memory(CACHE_BYTES).unwrap();
        backup.restore_into(&mut engine).unwrap();
        engine.start_new_cluster(77).unwrap();
        let (back, applied, _) = StateMachine::from_engine(engine, 2).unwrap();
        assert_eq!(applied, Applied::default());
        assert_eq!(back.members().cluster_id(), ClusterId(77));
        assert!(back.members().list().is_empty());
        assert_eq!(back.kv.hash_kv(0).unwrap(), sm.kv.hash_kv(0).unwrap());
        assert_eq!(back.kv.current_revision(), sm.kv.current_revision());
        assert_eq!(back.lessor.to_snapshot(), sm.lessor.to_snapshot());
        assert_eq!(back.auth(), sm.auth(), "a restored cluster keeps its users");
        // A damaged hash: refused, unless the hash is skipped (the records still check out).
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(matches!(parse(&damaged), Err(BackupError::HashMismatch)));
        let skipped = parse_skipping_hash(&damaged).unwrap();
        assert_eq!(skipped.chunks, backup.chunks);
    }

    #[test]
    fn damage_anywhere_is_refused() {
        let bytes = backup_of(&state(), 8192);
        for at in [
            0,
            17,
            100,
            bytes.len() / 2,
            bytes.len() - 40,
            bytes.len() - 1,
        ] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(restored(&damaged).is_err(), "a flip at {at} went unnoticed");
        }
        assert!(matches!(
            parse(&bytes[..bytes.len() - BLOCK]),
            Err(BackupError::HashMismatch)
        ));
    }

    /// Records that are well hashed but out of order or miscounted are refused too (what a
    /// buggy writer, not a damaged file, would produce).
    #[test]
    fn a_backup_whose_records_disagree_is_refused() {
        let seal = |content: Vec<u8>| {
            let mut bytes = content;
            let padded = bytes.len().div_ceil(BLOCK) * BLOCK;
            bytes.resize(padded, 0);
            let hash = Sha256::digest(&bytes);
            bytes.extend_from_slice(&hash);
            bytes
        };
        let mut no_meta = MAGIC.to_vec();
        push_record(&mut no_meta, ROWS, b"rows");
        push_record(&mut no_meta, END, &1u64.to_le_bytes());
        assert!(parse(&seal(no_meta)).is_err());
        let (mut writer, mut miscounted) =
            BackupWriter::start(&SnapshotMetadata::default()).unwrap();
        miscounted.extend(writer.rows(b"x"));
        push_record(&mut miscounted, END, &2u64.to_le_bytes());
        assert!(parse(&seal(miscounted)).is_err());
        let (_, unfinished) = BackupWriter::start(&SnapshotMetadata::default()).unwrap();
        assert!(parse(&seal(unfinished)).is_err());
    }
}
