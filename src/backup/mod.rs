//! Backups: what `Maintenance.Snapshot` streams and `etcdctl snapshot save` writes. Both formats
//! end as etcd's do — zeros up to a multiple of 512 bytes, then the SHA-256 of all that — since
//! etcdctl 3.4 refuses a stream whose length is not `512 * n + 32` ("sha256 checksum not
//! found"), and the hash lets a restore detect any damage before trusting the contents.
//!
//! `stream` is the format written now: the engine's rows in chunks, written from a read-only view
//! while writes go on. The first format (written before the state moved to the engine, still
//! read here) is a stet snapshot file (see `snap`) holding the whole state as one protobuf.

pub mod offline;
mod stream;

pub use stream::{
    parse, parse_skipping_hash, BackupWriter, StreamedBackup, MAGIC, MAX_RECORD_BYTES,
};

use raft::eraftpb::Snapshot;
use sha2::{Digest, Sha256};

use crate::snap::{self, SnapError};

/// Block size the snapshot is padded to before the hash.
pub const BLOCK: usize = 512;
/// Length of the SHA-256 trailer.
pub const HASH_LEN: usize = 32;
/// Length of the snapshot file header (magic, version, crc, body length).
const SNAP_HEADER_LEN: usize = 24;

/// Why a backup cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("a backup is 512*n + 32 bytes; this one has {0}")]
    BadLength(usize),
    #[error("the backup's SHA-256 does not match its contents: it is damaged")]
    HashMismatch,
    #[error("the snapshot inside the backup is damaged: {0}")]
    Snapshot(#[from] snap::Damage),
    #[error("cannot encode the snapshot: {0}")]
    Encode(#[from] SnapError),
    #[error("the backup is malformed: {0}")]
    Malformed(String),
    #[error("the backup's state was refused: {0}")]
    Engine(#[from] crate::engine::EngineError),
}

/// Whether `bytes` start as a streamed backup (else they may be one of the first format).
pub fn is_streamed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The bytes before the padding's hash, once the length checks out (the hash is not compared).
fn unchecked_content(bytes: &[u8]) -> Result<&[u8], BackupError> {
    if bytes.len() < HASH_LEN + BLOCK || !(bytes.len() - HASH_LEN).is_multiple_of(BLOCK) {
        return Err(BackupError::BadLength(bytes.len()));
    }
    Ok(&bytes[..bytes.len() - HASH_LEN])
}

/// The bytes before the padding's hash, once the length and the hash check out.
fn checked_content(bytes: &[u8]) -> Result<&[u8], BackupError> {
    if bytes.len() < HASH_LEN + BLOCK || !(bytes.len() - HASH_LEN).is_multiple_of(BLOCK) {
        return Err(BackupError::BadLength(bytes.len()));
    }
    let (content, hash) = bytes.split_at(bytes.len() - HASH_LEN);
    if Sha256::digest(content).as_slice() != hash {
        return Err(BackupError::HashMismatch);
    }
    Ok(content)
}

/// Encodes `snapshot` as a backup of the first format.
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, BackupError> {
    let mut bytes = snap::encode(snapshot)?;
    let padded = bytes.len().div_ceil(BLOCK) * BLOCK;
    bytes.resize(padded, 0);
    let hash = Sha256::digest(&bytes);
    bytes.extend_from_slice(&hash);
    Ok(bytes)
}

/// Checks and decodes a backup of the first format; never panics on any bytes.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, BackupError> {
    let content = checked_content(bytes)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&content[16..SNAP_HEADER_LEN]);
    let body = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
    let end = SNAP_HEADER_LEN.saturating_add(body).min(content.len());
    Ok(snap::decode(&content[..end])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut snapshot = Snapshot {
            data: vec![7; 1000].into(),
            ..Default::default()
        };
        snapshot.mut_metadata().index = 42;
        snapshot.mut_metadata().term = 3;
        snapshot
    }

    #[test]
    fn a_backup_round_trips_and_has_the_length_etcdctl_checks() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!((bytes.len() - HASH_LEN) % BLOCK, 0);
        let back = decode(&bytes).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let bytes = encode(&sample()).unwrap();
        for at in [0, 30, 600, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert!(decode(&damaged).is_err(), "flip at {at} went unnoticed");
        }
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(BackupError::BadLength(_))
        ));
    }
}
