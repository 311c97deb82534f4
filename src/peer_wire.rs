//! The peer port's byte format, sans-IO: a connection starts with the 4-byte preface `STP1`, then
//! carries frames. A frame is `len: u32 LE | crc32: u32 LE | kind: u8 | payload`, where `len`
//! counts the payload and the checksum covers the kind byte and the payload. Payloads are
//! protobuf: `stetpeerpb` messages for the handshake and forwarded requests, raft-rs's encoding
//! for raft messages. A raft message larger than one frame (a snapshot) is cut into `RaftPart`
//! frames followed by one final `Raft` frame, and put back together by [`RaftReassembler`].
//!
//! Decoding never panics: bad bytes give a [`WireError`] and the connection is dropped.

/// Sent once by the dialing side before its first frame.
pub const PREFACE: [u8; 4] = *b"STP1";
/// The handshake version this build speaks.
pub const VERSION: u32 = 1;
/// The largest payload of one frame. Larger raft messages are split.
pub const MAX_FRAME_PAYLOAD: usize = 1024 * 1024;
/// The largest raft message (a snapshot) put back together from parts.
pub const MAX_RAFT_MESSAGE: usize = 4 * 1024 * 1024 * 1024 - 1;
/// Bytes before the payload: length, checksum, kind.
pub const HEADER_LEN: usize = 9;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `stetpeerpb::Hello`.
    Hello = 1,
    /// `stetpeerpb::Welcome`.
    Welcome = 2,
    /// A whole raft message, or the last part of one.
    Raft = 3,
    /// A part of a raft message; more follow.
    RaftPart = 4,
    /// `stetpeerpb::ForwardRequest`.
    ForwardRequest = 5,
    /// `stetpeerpb::ForwardReply`.
    ForwardReply = 6,
    /// A whole `stetpeerpb::StateChunk`, or the last part of one.
    State = 7,
    /// A part of a `stetpeerpb::StateChunk`; more follow.
    StatePart = 8,
    /// `stetpeerpb::HashKvAsk`.
    HashKvAsk = 9,
    /// `stetpeerpb::HashKvReply`.
    HashKvReply = 10,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Option<FrameKind> {
        Some(match byte {
            1 => FrameKind::Hello,
            2 => FrameKind::Welcome,
            3 => FrameKind::Raft,
            4 => FrameKind::RaftPart,
            5 => FrameKind::ForwardRequest,
            6 => FrameKind::ForwardReply,
            7 => FrameKind::State,
            8 => FrameKind::StatePart,
            9 => FrameKind::HashKvAsk,
            10 => FrameKind::HashKvReply,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub payload: Vec<u8>,
}

/// Why bytes from a peer were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a stet peer connection (preface {0:02x?})")]
    BadPreface([u8; 4]),
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame checksum mismatch: header says {expected:08x}, payload has {actual:08x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("raft message of more than {max} bytes")]
    MessageTooLarge { max: usize },
    #[error("expected a {expected:?} frame, got {got:?}")]
    Unexpected { expected: FrameKind, got: FrameKind },
    #[error("cannot decode a {kind:?} frame: {why}")]
    Decode { kind: FrameKind, why: String },
}

/// Checks a connection's first four bytes.
pub fn check_preface(bytes: [u8; 4]) -> Result<(), WireError> {
    if bytes == PREFACE {
        Ok(())
    } else {
        Err(WireError::BadPreface(bytes))
    }
}

fn checksum(kind: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one frame to `out`. `payload` must fit in one frame.
pub fn encode_frame(kind: FrameKind, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len() <= MAX_FRAME_PAYLOAD);
    let kind = kind as u8;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(kind, payload).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

/// Appends an encoded raft message as one `Raft` frame, or as `RaftPart` frames and a final `Raft`
/// frame when it is larger than a frame.
pub fn encode_raft_message(message: &[u8], out: &mut Vec<u8>) {
    encode_raft_message_in_parts(message, MAX_FRAME_PAYLOAD, out);
}

/// Like [`encode_raft_message`], cutting the message into parts of at most `part_bytes` (at least
/// 1, at most a frame's payload).
pub fn encode_raft_message_in_parts(message: &[u8], part_bytes: usize, out: &mut Vec<u8>) {
    encode_in_parts(
        FrameKind::RaftPart,
        FrameKind::Raft,
        message,
        part_bytes,
        out,
    );
}

/// Appends an encoded `StateChunk` as `StatePart` frames of at most `part_bytes` and a final
/// `State` frame.
pub fn encode_state_chunk_in_parts(chunk: &[u8], part_bytes: usize, out: &mut Vec<u8>) {
    encode_in_parts(
        FrameKind::StatePart,
        FrameKind::State,
        chunk,
        part_bytes,
        out,
    );
}

fn encode_in_parts(
    part: FrameKind,
    whole: FrameKind,
    message: &[u8],
    part_bytes: usize,
    out: &mut Vec<u8>,
) {
    let part_bytes = part_bytes.clamp(1, MAX_FRAME_PAYLOAD);
    let mut rest = message;
    while rest.len() > part_bytes {
        let (head, tail) = rest.split_at(part_bytes);
        encode_frame(part, head, out);
        rest = tail;
    }
    encode_frame(whole, rest, out);
}

/// Appends a protobuf message as one frame.
pub fn encode_message(kind: FrameKind, message: &impl prost::Message, out: &mut Vec<u8>) {
    encode_frame(kind, &message.encode_to_vec(), out);
}

/// Decodes a frame's protobuf payload, checking its kind.
pub fn decode_message<M: prost::Message + Default>(
    frame: &Frame,
    expected: FrameKind,
) -> Result<M, WireError> {
    if frame.kind != expected {
        return Err(WireError::Unexpected {
            expected,
            got: frame.kind,
        });
    }
    M::decode(frame.payload.as_slice()).map_err(|e| WireError::Decode {
        kind: frame.kind,
        why: e.to_string(),
    })
}

/// Cuts a byte stream into frames: push what the socket gave, then take frames until `None`.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buffer.len() {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` if more bytes are needed, or why the stream is bad (the
    /// connection must then be dropped: the decoder does not resynchronise).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        let available = &self.buffer[self.start..];
        let Some(header) = available.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&header[0..4]);
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > MAX_FRAME_PAYLOAD {
            return Err(WireError::FrameTooLarge {
                len,
                max: MAX_FRAME_PAYLOAD,
            });
        }
        let mut crc_bytes = [0u8; 4];
        crc_bytes.copy_from_slice(&header[4..8]);
        let expected = u32::from_le_bytes(crc_bytes);
        let kind_byte = header[8];
        let kind = FrameKind::from_byte(kind_byte).ok_or(WireError::UnknownKind(kind_byte))?;
        let Some(payload) = available.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let actual = checksum(kind_byte, payload);
        if actual != expected {
            return Err(WireError::Checksum { expected, actual });
        }
        let payload = payload.to_vec();
        self.start += HEADER_LEN + len;
        Ok(Some(Frame { kind, payload }))
    }
}

/// Puts raft messages back together from `RaftPart` frames and their final `Raft` frame (or
/// state chunks from `StatePart` and `State` frames).
#[derive(Debug)]
pub struct RaftReassembler {
    parts: Vec<u8>,
    limit: usize,
    part: FrameKind,
    whole: FrameKind,
}

impl Default for RaftReassembler {
    fn default() -> Self {
        RaftReassembler::new(MAX_RAFT_MESSAGE)
    }
}

impl RaftReassembler {
    /// A reassembler that refuses messages larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        RaftReassembler {
            parts: Vec::new(),
            limit,
            part: FrameKind::RaftPart,
            whole: FrameKind::Raft,
        }
    }

    /// A reassembler of state chunks (`StatePart`, `State`) up to `limit` bytes.
    pub fn for_state_chunks(limit: usize) -> Self {
        RaftReassembler {
            part: FrameKind::StatePart,
            whole: FrameKind::State,
            ..RaftReassembler::new(limit)
        }
    }

    /// Takes a `Raft` or `RaftPart` frame's payload; returns a whole encoded message once its
    /// last part arrived.
    pub fn accept(&mut self, frame: Frame) -> Result<Option<Vec<u8>>, WireError> {
        if self.parts.len() + frame.payload.len() > self.limit {
            self.parts = Vec::new();
            return Err(WireError::MessageTooLarge { max: self.limit });
        }
        match frame.kind {
            kind if kind == self.part => {
                self.parts.extend_from_slice(&frame.payload);
                Ok(None)
            }
            kind if kind == self.whole && self.parts.is_empty() => Ok(Some(frame.payload)),
            kind if kind == self.whole => {
                self.parts.extend_from_slice(&frame.payload);
                Ok(Some(std::mem::take(&mut self.parts)))
            }
            other => Err(WireError::Unexpected {
                expected: self.whole,
                got: other,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::stetpeerpb as peerpb;

    fn decode_all(bytes: &[u8], chunk: usize) -> Result<Vec<Frame>, WireError> {
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            decoder.push(piece);
            while let Some(frame) = decoder.next_frame()? {
                frames.push(frame);
            }
        }
        Ok(frames)
    }

    #[test]
    fn frames_round_trip_whatever_the_read_sizes() {
        let hello = peerpb::Hello {
            version: VERSION,
            purpose: peerpb::Purpose::Raft as i32,
            cluster_id: 7,
            from: 1,
            to: 2,
        };
        let mut bytes = Vec::new();
        encode_message(FrameKind::Hello, &hello, &mut bytes);
        encode_raft_message(b"a raft message", &mut bytes);
        encode_frame(FrameKind::ForwardReply, &[], &mut bytes);
        for chunk in [1, 3, 9, 10, 1000] {
            let frames = decode_all(&bytes, chunk).unwrap();
            assert_eq!(frames.len(), 3);
            let decoded: peerpb::Hello = decode_message(&frames[0], FrameKind::Hello).unwrap();
            assert_eq!(decoded, hello);
            assert_eq!(frames[1].payload, b"a raft message");
            assert_eq!(frames[2].kind, FrameKind::ForwardReply);
        }
    }

    #[test]
    fn a_large_raft_message_is_split_and_put_back_together() {
        let message: Vec<u8> = (0..MAX_FRAME_PAYLOAD * 2 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut bytes = Vec::new();
        encode_raft_message(&message, &mut bytes);
        let frames = decode_all(&bytes, 64 * 1024).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].kind, FrameKind::RaftPart);
        assert_eq!(frames[2].kind, FrameKind::Raft);
        let mut reassembler = RaftReassembler::default();
        assert_eq!(reassembler.accept(frames[0].clone()).unwrap(), None);
        assert_eq!(reassembler.accept(frames[1].clone()).unwrap(), None);
        assert_eq!(
            reassembler.accept(frames[2].clone()).unwrap(),
            Some(message)
        );
        // The reassembler is ready for the next message.
        let small = Frame {
            kind: FrameKind::Raft,
            payload: vec![1, 2],
        };
        assert_eq!(reassembler.accept(small).unwrap(), Some(vec![1, 2]));
    }

    #[test]
    fn a_message_cut_into_small_parts_comes_back_whole_and_a_cut_stream_yields_nothing() {
        let message: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut bytes = Vec::new();
        encode_raft_message_in_parts(&message, 64, &mut bytes);
        let frames = decode_all(&bytes, 7).unwrap();
        assert_eq!(frames.len(), 1000usize.div_ceil(64));
        let mut reassembler = RaftReassembler::default();
        let whole: Vec<Vec<u8>> = frames
            .iter()
            .filter_map(|f| reassembler.accept(f.clone()).unwrap())
            .collect();
        assert_eq!(whole, vec![message]);
        // A stream cut half-way leaves only whole frames, none of them the message's last.
        let cut = decode_all(&bytes[..bytes.len() / 2], 7).unwrap();
        let mut reassembler = RaftReassembler::default();
        assert!(cut
            .into_iter()
            .all(|f| reassembler.accept(f).unwrap().is_none()));
    }

    #[test]
    fn a_flipped_bit_is_a_checksum_error() {
        let mut bytes = Vec::new();
        encode_raft_message(b"payload", &mut bytes);
        bytes[HEADER_LEN + 2] ^= 0x10;
        assert!(matches!(
            decode_all(&bytes, 100),
            Err(WireError::Checksum { .. })
        ));
    }

    #[test]
    fn oversized_frames_unknown_kinds_and_strangers_are_refused() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((MAX_FRAME_PAYLOAD + 1) as u32).to_le_bytes());
        bytes.extend_from_slice(&[0; 5]);
        assert!(matches!(
            decode_all(&bytes, 100),
            Err(WireError::FrameTooLarge { .. })
        ));
        let mut bytes = Vec::new();
        encode_frame(FrameKind::Raft, b"x", &mut bytes);
        bytes[8] = 99;
        assert_eq!(decode_all(&bytes, 100), Err(WireError::UnknownKind(99)));
        assert_eq!(
            check_preface(*b"GET "),
            Err(WireError::BadPreface(*b"GET "))
        );
        assert_eq!(check_preface(PREFACE), Ok(()));
    }

    #[test]
    fn the_reassembler_refuses_messages_over_its_limit() {
        let mut reassembler = RaftReassembler::new(10);
        let part = Frame {
            kind: FrameKind::RaftPart,
            payload: vec![0; 8],
        };
        assert_eq!(reassembler.accept(part.clone()).unwrap(), None);
        assert_eq!(
            reassembler.accept(part),
            Err(WireError::MessageTooLarge { max: 10 })
        );
    }

    #[test]
    fn a_frame_of_the_wrong_kind_is_an_error_not_a_guess() {
        let frame = Frame {
            kind: FrameKind::Raft,
            payload: Vec::new(),
        };
        let result: Result<peerpb::Hello, _> = decode_message(&frame, FrameKind::Hello);
        assert!(matches!(result, Err(WireError::Unexpected { .. })));
    }
}
