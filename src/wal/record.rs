//! The WAL record codec: pure functions between [`Record`]s and framed, crc-chained bytes.
//!
//! Frame: `[len: u32 LE][len_check: u32 LE][crc: u32 LE][kind: u8][payload]`, where `len` covers
//! kind and payload, `len_check` is crc32 over the four bytes of `len`, and `crc` is crc32 over
//! kind and payload, seeded with the previous record's crc. The length has a check of its own
//! because a damaged length is otherwise indistinguishable from a torn write: a length that points
//! past the end of the log would be taken for a record cut short and the synced records after it
//! dropped as a torn tail. Never interprets entry data, never panics on any input bytes.

use raft::eraftpb::{Entry, EntryType, HardState};

use super::{Corruption, Metadata};

/// Bytes before the kind: length, its check, and crc.
pub const HEADER_LEN: usize = 12;
/// Bytes of the length and its check, which must be whole before a frame's length is trusted.
const LENGTH_LEN: usize = 8;
/// The largest `len` a frame may declare (kind + payload).
pub const MAX_RECORD_LEN: u32 = 64 * 1024 * 1024;

/// The kind byte of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// Payload: the crc of the record before it (starts each segment, so the chain crosses files).
    Crc = 1,
    /// Payload: member ID and cluster ID.
    Metadata = 2,
    /// Payload: one raft entry.
    Entry = 3,
    /// Payload: raft hard state (term, vote, commit).
    HardState = 4,
    /// Payload: index and term of a snapshot that was saved.
    SnapshotMarker = 5,
    /// Payload: index and term of a snapshot received from the leader, which replaced the whole
    /// log: entries recorded before it are superseded, even those after its index.
    SnapshotInstalled = 6,
}

impl RecordKind {
    /// The kind with this byte, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Crc,
            2 => Self::Metadata,
            3 => Self::Entry,
            4 => Self::HardState,
            5 => Self::SnapshotMarker,
            6 => Self::SnapshotInstalled,
            _ => return None,
        })
    }
}

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Crc(u32),
    Metadata(Metadata),
    Entry(Entry),
    HardState(HardState),
    SnapshotMarker { index: u64, term: u64 },
    SnapshotInstalled { index: u64, term: u64 },
}

impl Record {
    /// The kind byte this record is written with.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Crc(_) => RecordKind::Crc,
            Record::Metadata(_) => RecordKind::Metadata,
            Record::Entry(_) => RecordKind::Entry,
            Record::HardState(_) => RecordKind::HardState,
            Record::SnapshotMarker { .. } => RecordKind::SnapshotMarker,
            Record::SnapshotInstalled { .. } => RecordKind::SnapshotInstalled,
        }
    }
}

/// Appends the framed record to `out` and returns its crc (the seed for the next record).
///
/// Fails only if the record would exceed [`MAX_RECORD_LEN`].
pub fn encode(record: &Record, prev_crc: u32, out: &mut Vec<u8>) -> Result<u32, usize> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.push(record.kind() as u8);
    encode_payload(record, out);
    let body_len = out.len() - start - HEADER_LEN;
    let len = match u32::try_from(body_len) {
        Ok(len) if len <= MAX_RECORD_LEN => len,
        _ => {
            out.truncate(start);
            return Err(body_len);
        }
    };
    let crc = chained_crc(prev_crc, &out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&length_check(len).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    Ok(crc)
}

/// The check written after a frame's length.
fn length_check(len: u32) -> u32 {
    crc32fast::hash(&len.to_le_bytes())
}

fn encode_payload(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Crc(crc) => out.extend_from_slice(&crc.to_le_bytes()),
        Record::Metadata(m) => {
            out.extend_from_slice(&m.member_id.to_le_bytes());
            out.extend_from_slice(&m.cluster_id.to_le_bytes());
        }
        Record::Entry(e) => {
            out.extend_from_slice(&e.term.to_le_bytes());
            out.extend_from_slice(&e.index.to_le_bytes());
            out.push(entry_type_byte(e.entry_type));
            put_bytes(out, &e.data);
            put_bytes(out, &e.context);
        }
        Record::HardState(hs) => {
            out.extend_from_slice(&hs.term.to_le_bytes());
            out.extend_from_slice(&hs.vote.to_le_bytes());
            out.extend_from_slice(&hs.commit.to_le_bytes());
        }
        Record::SnapshotMarker { index, term } | Record::SnapshotInstalled { index, term } => {
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&term.to_le_bytes());
        }
    }
}

/// The `len` an entry's frame declares (kind and payload), without encoding it.
pub fn entry_record_len(entry: &Entry) -> usize {
    1 + 8 + 8 + 1 + 4 + entry.data.len() + 4 + entry.context.len()
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // A record longer than u32::MAX is rejected by `encode` afterwards, so the cast cannot matter.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn entry_type_byte(t: EntryType) -> u8 {
    match t {
        EntryType::EntryNormal => 0,
        EntryType::EntryConfChange => 1,
        EntryType::EntryConfChangeV2 => 2,
    }
}

/// crc32 over `bytes`, seeded with the previous record's crc.
pub fn chained_crc(prev_crc: u32, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(prev_crc);
    hasher.update(bytes);
    hasher.finalize()
}

/// A frame found at some offset of a buffer, not yet checked against the crc chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The crc stored in the header.
    pub stored_crc: u32,
    /// Kind byte and payload (what the crc covers).
    pub body: &'a [u8],
    /// Header plus body.
    pub total_len: usize,
}

impl Frame<'_> {
    /// The crc the body has when chained after `prev_crc`.
    pub fn computed_crc(&self, prev_crc: u32) -> u32 {
        chained_crc(prev_crc, self.body)
    }
}

/// What sits at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed<'a> {
    /// A complete frame.
    Frame(Frame<'a>),
    /// The buffer ends inside a frame (header or body cut short): a torn write if at the end of a log.
    Incomplete,
}

/// The whole length (header and body) the frame at the front of `buf` declares, when its length
/// is there and passes its check.
pub fn claimed_frame_len(buf: &[u8]) -> Option<usize> {
    let length = buf.first_chunk::<LENGTH_LEN>()?;
    let len = u32::from_le_bytes([length[0], length[1], length[2], length[3]]);
    let check = u32::from_le_bytes([length[4], length[5], length[6], length[7]]);
    (check == length_check(len) && len != 0 && len <= MAX_RECORD_LEN)
        .then_some(HEADER_LEN + len as usize)
}

/// Reads the frame at the front of `buf` (which must not be empty).
pub fn read_frame(buf: &[u8]) -> Result<Framed<'_>, Corruption> {
    let Some(length) = buf.first_chunk::<LENGTH_LEN>() else {
        return Ok(Framed::Incomplete);
    };
    let len = u32::from_le_bytes([length[0], length[1], length[2], length[3]]);
    let check = u32::from_le_bytes([length[4], length[5], length[6], length[7]]);
    if check != length_check(len) {
        return Err(Corruption::BadLengthCheck { len, check });
    }
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(Corruption::BadLength { len });
    }
    let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Ok(Framed::Incomplete);
    };
    let stored_crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let len = len as usize;
    match rest.get(..len) {
        None => Ok(Framed::Incomplete),
        Some(body) => Ok(Framed::Frame(Frame {
            stored_crc,
            body,
            total_len: HEADER_LEN + len,
        })),
    }
}

/// Decodes a frame body (kind byte and payload) into a record.
pub fn decode_body(body: &[u8]) -> Result<Record, Corruption> {
    decode_body_with(body, &bytes::Bytes::copy_from_slice)
}

/// Like [`decode_body`], but entry data and context are made by `share` from sub-slices of `body`
/// (the WAL reader passes `Bytes::slice_ref` over the segment buffer, so replay copies no entry data).
pub fn decode_body_with(
    body: &[u8],
    share: &dyn Fn(&[u8]) -> bytes::Bytes,
) -> Result<Record, Corruption> {
    let (&kind_byte, payload) = body.split_first().ok_or(Corruption::BadLength { len: 0 })?;
    let kind = RecordKind::from_byte(kind_byte).ok_or(Corruption::BadKind { kind: kind_byte })?;
    let mut r = Reader { buf: payload, kind };
    let record = match kind {
        RecordKind::Crc => Record::Crc(r.u32()?),
        RecordKind::Metadata => Record::Metadata(Metadata {
            member_id: r.u64()?,
            cluster_id: r.u64()?,
        }),
        RecordKind::Entry => {
            let term = r.u64()?;
            let index = r.u64()?;
            let entry_type = match r.u8()? {
                0 => EntryType::EntryNormal,
                1 => EntryType::EntryConfChange,
                2 => EntryType::EntryConfChangeV2,
                found => return Err(Corruption::BadEntryType { found }),
            };
            Record::Entry(Entry {
                term,
                index,
                entry_type,
                data: share(r.bytes()?),
                context: share(r.bytes()?),
                ..Entry::default()
            })
        }
        RecordKind::HardState => Record::HardState(HardState {
            term: r.u64()?,
            vote: r.u64()?,
            commit: r.u64()?,
            ..HardState::default()
        }),
        RecordKind::SnapshotMarker => Record::SnapshotMarker {
            index: r.u64()?,
            term: r.u64()?,
        },
        RecordKind::SnapshotInstalled => Record::SnapshotInstalled {
            index: r.u64()?,
            term: r.u64()?,
        },
    };
    if !r.buf.is_empty() {
        return Err(Corruption::BadPayload {
            kind,
            detail: "trailing bytes",
        });
    }
    Ok(record)
}

/// A cursor over a payload that reports short reads as corruption.
struct Reader<'a> {
    buf: &'a [u8],
    kind: RecordKind,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corruption> {
        if self.buf.len() < n {
            return Err(Corruption::BadPayload {
                kind: self.kind,
                detail: "payload too short",
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Corruption> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Corruption> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, Corruption> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Corruption> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(term: u64, index: u64, t: EntryType, data: Vec<u8>, context: Vec<u8>) -> Entry {
        Entry {
            term,
            index,
            entry_type: t,
            data: data.into(),
            context: context.into(),
            ..Entry::default()
        }
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        let entry_type = prop_oneof![
            Just(EntryType::EntryNormal),
            Just(EntryType::EntryConfChange),
            Just(EntryType::EntryConfChangeV2)
        ];
        prop_oneof![
            any::<u32>().prop_map(Record::Crc),
            (any::<u64>(), any::<u64>()).prop_map(|(member_id, cluster_id)| Record::Metadata(
                Metadata {
                    member_id,
                    cluster_id
                }
            )),
            (
                any::<u64>(),
                any::<u64>(),
                entry_type,
                proptest::collection::vec(any::<u8>(), 0..64),
                proptest::collection::vec(any::<u8>(), 0..16)
            )
                .prop_map(|(term, index, t, d, c)| Record::Entry(entry(term, index, t, d, c))),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(term, vote, commit)| {
                Record::HardState(HardState {
                    term,
                    vote,
                    commit,
                    ..HardState::default()
                })
            }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(index, term)| Record::SnapshotMarker { index, term }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(index, term)| Record::SnapshotInstalled { index, term }),
        ]
    }

    fn decode_one(buf: &[u8], prev_crc: u32) -> Result<(Record, u32, usize), Corruption> {
        match read_frame(buf)? {
            Framed::Incomplete => Err(Corruption::BadLength { len: u32::MAX }),
            Framed::Frame(frame) => {
                let crc = frame.computed_crc(prev_crc);
                if crc != frame.stored_crc {
                    return Err(Corruption::CrcMismatch {
                        expected: crc,
                        found: frame.stored_crc,
                    });
                }
                Ok((decode_body(frame.body)?, crc, frame.total_len))
            }
        }
    }

    proptest! {
        #[test]
        fn records_round_trip_through_the_chained_codec(
            records in proptest::collection::vec(arb_record(), 1..8),
            seed in any::<u32>(),
        ) {
            let mut buf = Vec::new();
            let mut crc = seed;
            for record in &records {
                crc = encode(record, crc, &mut buf).unwrap();
            }
            let mut pos = 0;
            let mut crc = seed;
            for record in &records {
                let (decoded, next, len) = decode_one(&buf[pos..], crc).unwrap();
                prop_assert_eq!(&decoded, record);
                crc = next;
                pos += len;
            }
            prop_assert_eq!(pos, buf.len());
        }

        #[test]
        fn decoding_arbitrary_bytes_returns_errors_not_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let _ = read_frame(&bytes);
            let _ = decode_body(&bytes);
        }

        #[test]
        fn a_frame_whose_length_fits_decodes_or_fails_without_panicking(
            kind in 0u8..8,
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut body = vec![kind];
            body.extend_from_slice(&payload);
            let _ = decode_body(&body);
        }
    }

    /// A length field with a valid check, followed by zeros.
    fn header_with_length(len: u32) -> Vec<u8> {
        let mut buf = len.to_le_bytes().to_vec();
        buf.extend_from_slice(&length_check(len).to_le_bytes());
        buf.extend_from_slice(&[0; 8]);
        buf
    }

    #[test]
    fn a_zero_length_frame_is_rejected() {
        let buf = header_with_length(0);
        assert_eq!(read_frame(&buf), Err(Corruption::BadLength { len: 0 }));
    }

    #[test]
    fn an_absurd_length_is_rejected_before_reading_the_body() {
        let buf = header_with_length(0x7fff_ffff);
        assert!(matches!(
            read_frame(&buf),
            Err(Corruption::BadLength { len: 0x7fff_ffff })
        ));
    }

    /// A flipped bit in a length that then points past the end of the log is a damaged header,
    /// not a torn write: it must not be taken for an incomplete record (which would drop every
    /// synced record after it as a torn tail).
    #[test]
    fn a_flipped_bit_in_any_length_is_corruption_not_a_torn_tail() {
        let mut buf = Vec::new();
        encode(&Record::Crc(7), 0, &mut buf).unwrap();
        encode(&Record::SnapshotMarker { index: 1, term: 2 }, 3, &mut buf).unwrap();
        for bit in 0..32 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(read_frame(&damaged), Err(Corruption::BadLengthCheck { .. })),
                "bit {bit}: {:?}",
                read_frame(&damaged)
            );
        }
    }

    #[test]
    fn a_short_header_or_body_is_incomplete() {
        let mut buf = Vec::new();
        encode(&Record::Crc(7), 0, &mut buf).unwrap();
        for cut in 1..buf.len() {
            assert_eq!(read_frame(&buf[..cut]), Ok(Framed::Incomplete), "cut {cut}");
        }
    }

    #[test]
    fn an_unknown_kind_is_rejected() {
        assert_eq!(
            decode_body(&[9, 0, 0]),
            Err(Corruption::BadKind { kind: 9 })
        );
    }

    #[test]
    fn entry_record_len_matches_the_encoding() {
        let e = entry(1, 2, EntryType::EntryNormal, vec![1; 33], vec![2; 5]);
        let mut buf = Vec::new();
        encode(&Record::Entry(e.clone()), 0, &mut buf).unwrap();
        assert_eq!(buf.len(), HEADER_LEN + entry_record_len(&e));
    }

    #[test]
    fn the_crc_chains_over_the_previous_record() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let rec = Record::SnapshotMarker { index: 1, term: 2 };
        let crc_a = encode(&rec, 0, &mut a).unwrap();
        let crc_b = encode(&rec, 1, &mut b).unwrap();
        assert_ne!(crc_a, crc_b);
        assert_eq!(a[HEADER_LEN..], b[HEADER_LEN..]);
    }
}
