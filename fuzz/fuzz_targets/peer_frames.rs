//! The peer port's byte stream: input is everything a peer might send after the preface, fed to
//! the frame decoder in pieces whose sizes come from the first byte. Every frame is then handled as
//! the server would: reassembled into a raft message and decoded, or decoded as a handshake or a
//! forwarded request or reply, or reassembled into
//! a chunk of a sent state. Nothing may panic; a frame the decoder accepts must re-encode to the
//! same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use stet::peer_wire::{self, FrameDecoder, FrameKind, RaftReassembler};
use stet::proto::stetpeerpb as peerpb;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut decoder = FrameDecoder::new();
    let mut reassembler = RaftReassembler::new(1 << 20);
    let mut states = RaftReassembler::for_state_chunks(1 << 20);
    let mut accepted = Vec::new();
    'feed: for piece in stream.chunks(step) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    peer_wire::encode_frame(frame.kind, &frame.payload, &mut accepted);
                    match frame.kind {
                        FrameKind::Raft | FrameKind::RaftPart => {
                            match reassembler.accept(frame) {
                                Ok(Some(bytes)) => {
                                    let _ = <raft::eraftpb::Message as protobuf::Message>::parse_from_bytes(&bytes);
                                }
                                Ok(None) => {}
                                Err(_) => break 'feed,
                            }
                        }
                        FrameKind::State | FrameKind::StatePart => match states.accept(frame) {
                            Ok(Some(bytes)) => {
                                let _ = peerpb::StateChunk::decode(bytes.as_slice());
                            }
                            Ok(None) => {}
                            Err(_) => break 'feed,
                        },
                        FrameKind::Hello => {
                            let _ = peerpb::Hello::decode(frame.payload.as_slice());
                        }
                        FrameKind::Welcome => {
                            let _ = peerpb::Welcome::decode(frame.payload.as_slice());
                        }
                        FrameKind::ForwardRequest => {
                            let _ = peerpb::ForwardRequest::decode(frame.payload.as_slice());
                        }
                        FrameKind::ForwardReply => {
                            let _ = peerpb::ForwardReply::decode(frame.payload.as_slice());
                        }
                        FrameKind::HashKvAsk => {
                            let _ = peerpb::HashKvAsk::decode(frame.payload.as_slice());
                        }
                        FrameKind::HashKvReply => {
                            let _ = peerpb::HashKvReply::decode(frame.payload.as_slice());
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    assert!(
        stream.starts_with(&accepted),
        "accepted frames must be exactly the bytes they came from"
    );
});
