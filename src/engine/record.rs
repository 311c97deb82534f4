//! How a value is stored in the engine's tables: a tag saying what it is, a crc32 over the row's
//! key, the tag and the payload, then the payload. Reading checks both, so a flipped bit in a
//! stored key or value is reported as damage, never read as other data (redb checks its own page
//! checksums only when it opens or repairs a file, not on every read).

/// What a stored value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    /// A revision that put a key: the `KeyValue` bytes.
    Put = 0,
    /// A revision that deleted a key: the `KeyValue` bytes of the tombstone.
    Tombstone = 1,
    /// A lease's record.
    Lease = 2,
    /// A member's record.
    Member = 3,
    /// A removed member (no payload).
    Removed = 4,
    /// A number (8 bytes, little-endian).
    Number = 5,
    /// Raft's configuration (voters, learners) as of the applied index: raft's `ConfState` bytes.
    ConfState = 6,
    /// The cluster's raised alarms: an encoded `stetpb::AlarmList`.
    Alarms = 7,
    /// The auth store: an encoded `stetpb::AuthState`.
    Auth = 8,
}

impl Tag {
    fn from_byte(byte: u8) -> Option<Tag> {
        Some(match byte {
            0 => Tag::Put,
            1 => Tag::Tombstone,
            2 => Tag::Lease,
            3 => Tag::Member,
            4 => Tag::Removed,
            5 => Tag::Number,
            6 => Tag::ConfState,
            7 => Tag::Alarms,
            8 => Tag::Auth,
            _ => return None,
        })
    }
}

/// Tag byte and crc32.
const HEADER_BYTES: usize = 5;

fn checksum(key: &[u8], tag: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(key);
    hasher.update(&[tag]);
    hasher.update(payload);
    hasher.finalize()
}

/// Writes the stored form of `payload` under `key` into `out` (cleared first).
pub fn seal(key: &[u8], tag: Tag, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(tag as u8);
    out.extend_from_slice(&checksum(key, tag as u8, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The tag and payload of a value stored under `key`; `Err` says what is wrong with it.
pub fn unseal<'a>(key: &[u8], stored: &'a [u8]) -> Result<(Tag, &'a [u8]), String> {
    let (Some(&tag), Some(crc), Some(payload)) = (
        stored.first(),
        stored.get(1..HEADER_BYTES),
        stored.get(HEADER_BYTES..),
    ) else {
        return Err(format!("a value of {} bytes is too short", stored.len()));
    };
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc != checksum(key, tag, payload) {
        return Err("a value's checksum does not match its key and bytes".to_string());
    }
    let tag = Tag::from_byte(tag).ok_or_else(|| format!("a value has an unknown tag {tag}"))?;
    Ok((tag, payload))
}

/// The key bytes a revision's checksum covers.
pub fn revision_key(main: u64, sub: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&main.to_be_bytes());
    key[8..].copy_from_slice(&sub.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_under_its_key() {
        let mut out = Vec::new();
        seal(b"k", Tag::Lease, b"payload", &mut out);
        assert_eq!(unseal(b"k", &out), Ok((Tag::Lease, &b"payload"[..])));
        seal(b"k", Tag::Removed, b"", &mut out);
        assert_eq!(unseal(b"k", &out), Ok((Tag::Removed, &b""[..])));
    }

    #[test]
    fn every_flipped_bit_and_a_moved_value_are_caught() {
        let mut sealed = Vec::new();
        seal(&revision_key(7, 1), Tag::Put, b"a=1", &mut sealed);
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut flipped = sealed.clone();
                flipped[byte] ^= 1 << bit;
                assert!(
                    unseal(&revision_key(7, 1), &flipped).is_err(),
                    "{byte}.{bit}"
                );
            }
        }
        assert!(
            unseal(&revision_key(7, 0), &sealed).is_err(),
            "under another key"
        );
        assert!(
            unseal(&revision_key(7, 1), &sealed[..4]).is_err(),
            "cut short"
        );
    }
}
