//! Lets HTTP/2 clients that send a whole URL as `:authority` reach hyper. etcdctl 3.4 dials its
//! per-endpoint commands (`endpoint status`, `snapshot save`, ...) as `passthrough:///http://h:p`, so
//! grpc-go sends `:authority: http://h:p`; Go's server takes it, but the `h2` crate resets the stream
//! as malformed and has no setting to allow it.
//!
//! Owns the client→server bytes of each client connection, between the socket and hyper. A
//! connection that does not open with the HTTP/2 preface (HTTP/1.1) passes through untouched. On an
//! HTTP/2 connection every header block is HPACK-decoded with the client's dynamic table, an
//! `:authority` of the form `scheme://host:port[/...]` becomes `host:port`, and the block is
//! re-encoded as literals without indexing, so hyper's HPACK table is never used. Every other frame,
//! and everything the server sends, passes through untouched; bad input closes the connection.
//! What is lost: a client's never-indexed marking (hyper is the last hop, nothing re-encodes it)
//! and header padding.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use loona_hpack::decoder::DecoderError;
use loona_hpack::Decoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEAD_BYTES: usize = 9;
/// The largest frame payload every HTTP/2 endpoint accepts (SETTINGS_MAX_FRAME_SIZE's initial
/// value): re-encoded header blocks are cut into frames of at most this, whatever hyper advertises.
const FRAME_PAYLOAD_MAX_BYTES: usize = 16_384;
/// A header block (its HEADERS and CONTINUATION payloads together) larger than this closes the
/// connection.
pub const HEADER_BLOCK_MAX_BYTES: usize = 1 << 20;
/// A decoded header list larger than this (name + value + 32 per field, as HTTP/2 counts it)
/// closes the connection, so a small block of references to a large table entry cannot make us
/// allocate without bound. hyper refuses lists over its own, smaller limit (16 KiB) per stream.
pub const HEADER_LIST_MAX_BYTES: usize = 1 << 20;
/// The HPACK table size the client may use: hyper's server sends no SETTINGS_HEADER_TABLE_SIZE, so
/// the protocol's default. If hyper is ever given `header_table_size`, this must follow.
const HEADER_TABLE_MAX_BYTES: usize = 4096;
/// How much an HTTP/2 connection reads from its socket at once (frame heads and header blocks; the
/// payloads of other frames are read straight into hyper's buffer).
const READ_CHUNK_BYTES: usize = 16 * 1024;

// Frame types and flags (RFC 9113 §6).
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const PRIORITY_BYTES: usize = 5;

/// Why an HTTP/2 connection was closed: what hyper would also refuse, or what we cannot rewrite
/// within our bounds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RewriteError {
    #[error(
        "the header block of stream {stream_id} is larger than {HEADER_BLOCK_MAX_BYTES} bytes"
    )]
    HeaderBlockTooLarge { stream_id: u32 },
    #[error(
        "the decoded header list of stream {stream_id} is larger than {HEADER_LIST_MAX_BYTES} bytes"
    )]
    HeaderListTooLarge { stream_id: u32 },
    #[error(
        "a frame of type {kind:#x} on stream {found} inside the header block of stream {expected}"
    )]
    ExpectedContinuation { expected: u32, found: u32, kind: u8 },
    #[error("a CONTINUATION frame on stream {stream_id} outside a header block")]
    UnexpectedContinuation { stream_id: u32 },
    #[error("a malformed HEADERS frame on stream {stream_id}: {reason}")]
    MalformedHeaders {
        stream_id: u32,
        reason: &'static str,
    },
    #[error("a PUSH_PROMISE frame from a client (stream {stream_id})")]
    PushPromise { stream_id: u32 },
    #[error("the header block of stream {stream_id} does not decode: {error}")]
    Hpack { stream_id: u32, error: DecoderError },
    #[error("the connection already failed")]
    Failed,
}

/// The 9 bytes before every frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    length: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHead {
    fn parse(bytes: &[u8; FRAME_HEAD_BYTES]) -> FrameHead {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *bytes;
        FrameHead {
            length: usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2),
            kind,
            flags,
            // The reserved high bit is ignored on receipt (RFC 9113 §4.1).
            stream_id: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        debug_assert!(self.length <= FRAME_PAYLOAD_MAX_BYTES);
        let length = u32::try_from(self.length).unwrap_or(u32::MAX).to_be_bytes();
        out.extend_from_slice(&length[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&self.stream_id.to_be_bytes());
    }
}

/// What the opening HEADERS frame of a header block says besides its fragment.
#[derive(Debug, Clone, Copy)]
struct BlockStart {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_BYTES]>,
}

/// A header block waiting for its CONTINUATION frames.
struct OpenBlock {
    start: BlockStart,
    fragment: Vec<u8>,
}

enum State {
    /// Reading a frame head (its first bytes may be in `partial`).
    Head,
    /// Forwarding the rest of a frame that is not rewritten.
    Forward { remaining: usize },
    /// Collecting the payload of a HEADERS or CONTINUATION frame in `partial`.
    Collect { head: FrameHead },
    /// The connection's first header block needed no rewriting: every later byte passes through
    /// untouched (hyper decodes the client's HPACK itself), at no cost.
    PassThrough,
    /// Failed: nothing more is accepted.
    Failed,
}

/// The sans-IO rewriter of one HTTP/2 connection's client→server frames (after the preface): bytes
/// in, bytes for hyper out.
pub struct HeaderRewriter {
    state: State,
    /// An incomplete frame head, or HEADERS/CONTINUATION payload (at most `HEADER_BLOCK_MAX_BYTES`).
    partial: Vec<u8>,
    block: Option<OpenBlock>,
    /// Mirrors the client's HPACK encoder: it decodes every header block the client sends, in order.
    decoder: Decoder<'static>,
    /// Until the first header block is decided: the raw bytes of its frames, so it can be passed on
    /// exactly as the client sent it when it needs no rewriting. `None` once decided.
    first_block_raw: Option<Vec<u8>>,
}

impl Default for HeaderRewriter {
    fn default() -> Self {
        HeaderRewriter::new()
    }
}

impl HeaderRewriter {
    pub fn new() -> HeaderRewriter {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_MAX_BYTES);
        HeaderRewriter {
            state: State::Head,
            partial: Vec::new(),
            block: None,
            decoder,
            first_block_raw: Some(Vec::new()),
        }
    }

    /// Consumes `input` (the client's next bytes) and appends what hyper should read to `out`. After
    /// an error the connection must be closed; every later call fails.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let result = self.feed_inner(input, out);
        if result.is_err() {
            self.state = State::Failed;
            self.partial = Vec::new();
            self.block = None;
        }
        result
    }

    /// How many bytes of the current frame pass through untouched: the caller may move them itself
    /// and report them with `forwarded`.
    pub fn forward_remaining(&self) -> usize {
        match self.state {
            State::Forward { remaining } => remaining,
            State::PassThrough => usize::MAX,
            _ => 0,
        }
    }

    /// The caller moved `bytes` (at most `forward_remaining`) of a frame that passes through.
    pub fn forwarded(&mut self, bytes: usize) {
        if let State::Forward { remaining } = self.state {
            let remaining = remaining.saturating_sub(bytes);
            self.state = if remaining == 0 {
                State::Head
            } else {
                State::Forward { remaining }
            };
        }
    }

    fn feed_inner(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        while !input.is_empty() {
            match self.state {
                State::Failed => return Err(RewriteError::Failed),
                State::PassThrough => {
                    out.extend_from_slice(input);
                    return Ok(());
                }
                State::Forward { remaining } => {
                    let n = remaining.min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.forwarded(n);
                }
                State::Head => {
                    input = fill(&mut self.partial, FRAME_HEAD_BYTES, input);
                    if let Ok(bytes) = <[u8; FRAME_HEAD_BYTES]>::try_from(self.partial.as_slice()) {
                        self.partial.clear();
                        self.on_head(FrameHead::parse(&bytes), &bytes, out)?;
                    }
                }
                State::Collect { head } => {
                    input = fill(&mut self.partial, head.length, input);
                    if self.partial.len() == head.length {
                        let payload = std::mem::take(&mut self.partial);
                        if let Some(raw) = &mut self.first_block_raw {
                            raw.extend_from_slice(&payload);
                        }
                        self.state = State::Head;
                        self.on_payload(head, &payload, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn on_head(
        &mut self,
        head: FrameHead,
        raw: &[u8; FRAME_HEAD_BYTES],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        if let Some(block) = &self.block {
            // Inside a header block only its CONTINUATION frames may come (RFC 9113 §6.10).
            let expected = block.start.stream_id;
            if head.kind != CONTINUATION || head.stream_id != expected {
                return Err(RewriteError::ExpectedContinuation {
                    expected,
                    found: head.stream_id,
                    kind: head.kind,
                });
            }
            if block.fragment.len().saturating_add(head.length) > HEADER_BLOCK_MAX_BYTES {
                return Err(RewriteError::HeaderBlockTooLarge {
                    stream_id: head.stream_id,
                });
            }
        } else {
            match head.kind {
                HEADERS if head.length > HEADER_BLOCK_MAX_BYTES => {
                    return Err(RewriteError::HeaderBlockTooLarge {
                        stream_id: head.stream_id,
                    });
                }
                HEADERS => {}
                CONTINUATION => {
                    return Err(RewriteError::UnexpectedContinuation {
                        stream_id: head.stream_id,
                    })
                }
                // A client never pushes (RFC 9113 §8.4); its header block would change the table.
                PUSH_PROMISE => {
                    return Err(RewriteError::PushPromise {
                        stream_id: head.stream_id,
                    })
                }
                _ => {
                    out.extend_from_slice(raw);
                    self.state = if head.length == 0 {
                        State::Head
                    } else {
                        State::Forward {
                            remaining: head.length,
                        }
                    };
                    return Ok(());
                }
            }
        }
        if let Some(first) = &mut self.first_block_raw {
            first.extend_from_slice(raw);
        }
        if head.length == 0 {
            self.on_payload(head, &[], out)
        } else {
            self.state = State::Collect { head };
            Ok(())
        }
    }

    /// A whole HEADERS or CONTINUATION payload.
    fn on_payload(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let end_headers = head.flags & END_HEADERS != 0;
        if head.kind == HEADERS {
            let (priority, fragment) = split_headers_payload(&head, payload)?;
            let start = BlockStart {
                stream_id: head.stream_id,
                end_stream: head.flags & END_STREAM != 0,
                priority,
            };
            if end_headers {
                return self.finish(start, fragment, out);
            }
            self.block = Some(OpenBlock {
                start,
                fragment: fragment.to_vec(),
            });
            return Ok(());
        }
        let Some(mut block) = self.block.take() else {
            return Err(RewriteError::UnexpectedContinuation {
                stream_id: head.stream_id,
            });
        };
        block.fragment.extend_from_slice(payload);
        if end_headers {
            self.finish(block.start, &block.fragment, out)
        } else {
            self.block = Some(block);
            Ok(())
        }
    }

    /// Decodes a complete header block, rewrites it and appends its frames to `out`.
    fn finish(
        &mut self,
        start: BlockStart,
        fragment: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let stream_id = start.stream_id;
        let mut block = Vec::with_capacity(fragment.len() + 64);
        let mut list_bytes = 0usize;
        let mut too_large = false;
        let mut rewrote = false;
        self.decoder
            .decode_with_cb(fragment, |name, value| {
                list_bytes = list_bytes.saturating_add(name.len() + value.len() + 32);
                too_large |= list_bytes > HEADER_LIST_MAX_BYTES;
                if too_large {
                    return;
                }
                let value = match &*name {
                    b":authority" => match authority_of_url(&value) {
                        Some(authority) => {
                            rewrote = true;
                            authority
                        }
                        None => &value,
                    },
                    _ => &value,
                };
                encode_literal(&name, value, &mut block);
            })
            .map_err(|error| RewriteError::Hpack { stream_id, error })?;
        if too_large {
            return Err(RewriteError::HeaderListTooLarge { stream_id });
        }
        if let Some(raw) = self.first_block_raw.take() {
            if !rewrote {
                // A client whose first request names a plain authority (every client but
                // etcdctl's per-endpoint commands) is passed through untouched from here on.
                out.extend_from_slice(&raw);
                self.state = State::PassThrough;
                return Ok(());
            }
        }
        write_block(start, &block, out);
        Ok(())
    }
}

/// Moves bytes from `input` into `partial` until it holds `want`; returns the rest of `input`.
fn fill<'a>(partial: &mut Vec<u8>, want: usize, input: &'a [u8]) -> &'a [u8] {
    let n = want.saturating_sub(partial.len()).min(input.len());
    partial.extend_from_slice(&input[..n]);
    &input[n..]
}

/// A HEADERS payload's priority fields and header block fragment, without its padding.
fn split_headers_payload<'a>(
    head: &FrameHead,
    payload: &'a [u8],
) -> Result<(Option<[u8; PRIORITY_BYTES]>, &'a [u8]), RewriteError> {
    let malformed = |reason| RewriteError::MalformedHeaders {
        stream_id: head.stream_id,
        reason,
    };
    let (pad_bytes, rest) = if head.flags & PADDED != 0 {
        let (&pad, rest) = payload
            .split_first()
            .ok_or_else(|| malformed("PADDED without a pad length"))?;
        (usize::from(pad), rest)
    } else {
        (0, payload)
    };
    let (priority, rest) = if head.flags & PRIORITY != 0 {
        let (priority, rest) = rest
            .split_first_chunk::<PRIORITY_BYTES>()
            .ok_or_else(|| malformed("PRIORITY without its 5 bytes"))?;
        (Some(*priority), rest)
    } else {
        (None, rest)
    };
    let fragment_bytes = rest
        .len()
        .checked_sub(pad_bytes)
        .ok_or_else(|| malformed("more padding than payload"))?;
    Ok((priority, &rest[..fragment_bytes]))
}

/// The `host:port` of an `:authority` written as a URL (`http://127.0.0.1:2379`,
/// `https://h:1/path`), or `None` for anything else, which is left as it is.
fn authority_of_url(value: &[u8]) -> Option<&[u8]> {
    let separator = value.windows(3).position(|w| w == b"://")?;
    let (scheme, rest) = (&value[..separator], &value[separator + 3..]);
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    (!authority.is_empty()).then_some(authority)
}

/// One field as a literal without indexing, with a literal name and no Huffman coding
/// (RFC 7541 §6.2.2): the receiver's dynamic table is neither read nor changed.
fn encode_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    for string in [name, value] {
        out.extend_from_slice(&loona_hpack::encoder::encode_integer(string.len(), 7));
        out.extend_from_slice(string);
    }
}

/// A header block as one HEADERS frame and as many CONTINUATION frames as the frame size needs.
fn write_block(start: BlockStart, block: &[u8], out: &mut Vec<u8>) {
    let priority_bytes = if start.priority.is_some() {
        PRIORITY_BYTES
    } else {
        0
    };
    let (first, mut rest) =
        block.split_at(block.len().min(FRAME_PAYLOAD_MAX_BYTES - priority_bytes));
    let mut flags = 0;
    if start.end_stream {
        flags |= END_STREAM;
    }
    if start.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    let head = FrameHead {
        length: priority_bytes + first.len(),
        kind: HEADERS,
        flags,
        stream_id: start.stream_id,
    };
    head.write(out);
    if let Some(priority) = start.priority {
        out.extend_from_slice(&priority);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(FRAME_PAYLOAD_MAX_BYTES));
        rest = tail;
        let head = FrameHead {
            length: chunk.len(),
            kind: CONTINUATION,
            flags: if rest.is_empty() { END_HEADERS } else { 0 },
            stream_id: start.stream_id,
        };
        head.write(out);
        out.extend_from_slice(chunk);
    }
}

/// What a connection's first bytes say.
#[derive(Debug, PartialEq, Eq)]
enum Detected {
    /// All bytes so far (`matched` in total) are the start of the preface.
    Partial { matched: usize },
    /// Not HTTP/2 with prior knowledge.
    NotHttp2,
    /// The preface ends `preface_end` bytes into the new bytes.
    Http2 { preface_end: usize },
}

fn detect(matched: usize, new: &[u8]) -> Detected {
    let want = PREFACE.get(matched..).unwrap_or_default();
    let n = want.len().min(new.len());
    if new[..n] != want[..n] {
        Detected::NotHttp2
    } else if n == want.len() {
        Detected::Http2 { preface_end: n }
    } else {
        Detected::Partial {
            matched: matched + n,
        }
    }
}

enum Mode {
    /// The first bytes, `matched` of which equal the start of the preface so far.
    Detect {
        matched: usize,
    },
    /// Not HTTP/2 with prior knowledge (HTTP/1.1): reads go straight to the socket.
    Passthrough,
    Http2(Box<Http2Reader>),
}

/// The read side of an HTTP/2 connection after the preface.
struct Http2Reader {
    rewriter: HeaderRewriter,
    chunk: Vec<u8>,
    /// Rewritten bytes hyper has not read yet, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    error: Option<RewriteError>,
    log: slog::Logger,
}

impl Http2Reader {
    fn new(log: slog::Logger) -> Http2Reader {
        Http2Reader {
            rewriter: HeaderRewriter::new(),
            chunk: vec![0; READ_CHUNK_BYTES],
            out: Vec::new(),
            out_pos: 0,
            error: None,
            log,
        }
    }

    fn feed(&mut self, input: &[u8]) {
        let result = self.rewriter.feed(input, &mut self.out);
        self.note(result);
    }

    fn note(&mut self, result: Result<(), RewriteError>) {
        if let Err(error) = result {
            slog::debug!(self.log, "closing an HTTP/2 client connection"; "error" => %error);
            self.error = Some(error);
        }
    }

    fn poll_read<S: AsyncRead + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.out_pos < self.out.len() {
                let n = buf.remaining().min(self.out.len() - self.out_pos);
                buf.put_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                if self.out_pos == self.out.len() {
                    self.out.clear();
                    self.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = &self.error {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    error.clone(),
                )));
            }
            let forward = self.rewriter.forward_remaining().min(buf.remaining());
            if forward > 0 {
                // A payload that passes through goes straight into hyper's buffer, which is
                // spare capacity nobody has initialized: zeroing it first (`initialize_unfilled`)
                // wrote the whole spare buffer on every read, ~8 % of a put's instructions.
                // SAFETY: `unfilled_mut` hands out the unfilled part of `buf`; nothing here
                // de-initializes it (a `ReadBuf` only ever writes initialized bytes), and of it
                // exactly the `n` bytes `direct` filled are declared initialized and filled.
                let unfilled = unsafe { buf.unfilled_mut() };
                let mut direct = ReadBuf::uninit(&mut unfilled[..forward]);
                ready!(Pin::new(&mut *inner).poll_read(cx, &mut direct))?;
                let n = direct.filled().len();
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                self.rewriter.forwarded(n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = ReadBuf::new(&mut self.chunk);
            ready!(Pin::new(&mut *inner).poll_read(cx, &mut chunk))?;
            let n = chunk.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            let result = self.rewriter.feed(&self.chunk[..n], &mut self.out);
            self.note(result);
        }
    }
}

/// A client connection as hyper reads it: HTTP/1.1 untouched, HTTP/2 with header blocks rewritten
/// by `HeaderRewriter`. Writes go straight to the socket.
pub struct RewritingStream<S> {
    inner: S,
    mode: Mode,
    log: slog::Logger,
}

impl<S> RewritingStream<S> {
    pub fn new(inner: S, log: slog::Logger) -> RewritingStream<S> {
        RewritingStream {
            inner,
            mode: Mode::Detect { matched: 0 },
            log,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RewritingStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.mode {
            Mode::Passthrough => Pin::new(&mut this.inner).poll_read(cx, buf),
            Mode::Http2(reader) => reader.poll_read(&mut this.inner, cx, buf),
            Mode::Detect { matched } => {
                // The preface reaches hyper as it is either way, so bytes that match it so far
                // are handed on at once; only what follows it is taken back and rewritten.
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                match detect(*matched, &buf.filled()[before..]) {
                    Detected::Partial { matched: now } => *matched = now,
                    Detected::NotHttp2 => this.mode = Mode::Passthrough,
                    Detected::Http2 { preface_end } => {
                        let mut reader = Http2Reader::new(this.log.clone());
                        let frames_start = before + preface_end;
                        let frames = buf.filled()[frames_start..].to_vec();
                        buf.set_filled(frames_start);
                        reader.feed(&frames);
                        this.mode = Mode::Http2(Box::new(reader));
                    }
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RewritingStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use loona_hpack::encoder::encode_integer;
    use loona_hpack::Encoder;
    use proptest::prelude::*;

    use super::*;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    const DATA: u8 = 0x0;
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const WINDOW_UPDATE: u8 = 0x8;

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let length = u32::try_from(payload.len())
            .expect("test frame")
            .to_be_bytes();
        let mut out = length[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream_id.to_be_bytes());
        out.extend(payload);
        out
    }

    fn parse_frames(mut bytes: &[u8]) -> Vec<(FrameHead, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let head = FrameHead::parse(bytes[..FRAME_HEAD_BYTES].try_into().expect("head"));
            let end = FRAME_HEAD_BYTES + head.length;
            frames.push((head, bytes[FRAME_HEAD_BYTES..end].to_vec()));
            bytes = &bytes[end..];
        }
        frames
    }

    /// Feeds `input` to one rewriter in pieces of `chunk` bytes.
    fn rewrite(input: &[u8], chunk: usize) -> Result<Vec<u8>, RewriteError> {
        let mut rewriter = HeaderRewriter::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            rewriter.feed(piece, &mut out)?;
        }
        Ok(out)
    }

    /// A header block as hyper sees it in the rewritten bytes.
    #[derive(Debug, PartialEq)]
    struct Seen {
        stream_id: u32,
        end_stream: bool,
        priority: Option<[u8; 5]>,
        fields: Fields,
    }

    /// Decodes the rewritten bytes' header blocks with one decoder, as hyper does, and checks that
    /// every header frame fits the default frame size and every field is a literal without indexing.
    /// Returns the header blocks and the other frames.
    fn hyper_view(output: &[u8]) -> (Vec<Seen>, Vec<(FrameHead, Vec<u8>)>) {
        let mut decoder = Decoder::new();
        let mut blocks = Vec::new();
        let mut others = Vec::new();
        let mut open: Option<(Seen, Vec<u8>)> = None;
        for (head, payload) in parse_frames(output) {
            if matches!(head.kind, HEADERS | CONTINUATION) {
                assert!(head.length <= FRAME_PAYLOAD_MAX_BYTES, "{head:?}");
                assert_eq!(head.flags & PADDED, 0, "{head:?}");
            }
            let fragment = match head.kind {
                HEADERS => {
                    assert!(open.is_none(), "HEADERS inside a block");
                    let (priority, fragment) = if head.flags & PRIORITY != 0 {
                        let (p, rest) = payload.split_at(5);
                        (Some(p.try_into().expect("5 bytes")), rest.to_vec())
                    } else {
                        (None, payload)
                    };
                    let seen = Seen {
                        stream_id: head.stream_id,
                        end_stream: head.flags & END_STREAM != 0,
                        priority,
                        fields: Vec::new(),
                    };
                    open = Some((seen, Vec::new()));
                    fragment
                }
                CONTINUATION => {
                    let (seen, _) = open.as_ref().expect("CONTINUATION outside a block");
                    assert_eq!(seen.stream_id, head.stream_id);
                    payload
                }
                _ => {
                    assert!(open.is_none(), "{head:?} inside a block");
                    others.push((head, payload));
                    continue;
                }
            };
            let (_, block) = open.as_mut().expect("open block");
            block.extend(fragment);
            if head.flags & END_HEADERS != 0 {
                let (mut seen, block) = open.take().expect("open block");
                seen.fields = decoder.decode(&block).expect("hyper decodes the block");
                let mut literal = Vec::new();
                for (name, value) in &seen.fields {
                    encode_literal(name, value, &mut literal);
                }
                assert_eq!(block, literal, "only literals without indexing");
                blocks.push(seen);
            }
        }
        assert!(open.is_none(), "an unfinished header block");
        (blocks, others)
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// An HPACK string without Huffman coding.
    fn string(s: &[u8]) -> Vec<u8> {
        let mut out = encode_integer(s.len(), 7);
        out.extend(s);
        out
    }

    /// A literal with incremental indexing whose name is table entry `name_index` (0: a new name).
    fn indexed_literal(name_index: usize, name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = encode_integer(name_index, 6);
        out[0] |= 0x40;
        if name_index == 0 {
            out.extend(string(name));
        }
        out.extend(string(value));
        out
    }

    const STATUS_PATH: &str = "/etcdserverpb.Maintenance/Status";

    /// What etcdctl's `endpoint status` sends twice on one connection, the second time by
    /// reference to the entries the first one added to the client's table.
    fn two_status_requests() -> (Vec<u8>, Vec<u8>) {
        let mut first = vec![0x83, 0x86]; // :method POST, :scheme http
        first.extend(indexed_literal(4, b"", STATUS_PATH.as_bytes()));
        first.extend(indexed_literal(1, b"", b"http://127.0.0.1:2379"));
        first.extend(indexed_literal(31, b"", b"application/grpc"));
        first.extend(indexed_literal(0, b"te", b"trailers"));
        // The table is now te (62), content-type (63), :authority (64), :path (65).
        let second = vec![0x83, 0x86, 0x80 | 65, 0x80 | 64, 0x80 | 63, 0x80 | 62];
        (first, second)
    }

    fn status_fields() -> Fields {
        fields(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", STATUS_PATH),
            (":authority", "127.0.0.1:2379"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ])
    }

    #[test]
    fn authority_of_url_takes_host_and_port_of_a_url_only() {
        let cases: &[(&str, Option<&str>)] = &[
            ("http://127.0.0.1:2379", Some("127.0.0.1:2379")),
            ("https://etcd.example:2379/", Some("etcd.example:2379")),
            ("http://[::1]:2379/a/b?c#d", Some("[::1]:2379")),
            ("unix+h2://host", Some("host")),
            ("http://h:1?x", Some("h:1")),
            ("127.0.0.1:2379", None),
            ("localhost", None),
            ("http://", None),
            ("http:///path", None),
            ("://host:1", None),
            ("1http://host:1", None),
            ("ht tp://host:1", None),
        ];
        for (value, expected) in cases {
            let got = authority_of_url(value.as_bytes()).map(|a| String::from_utf8_lossy(a));
            assert_eq!(got.as_deref(), *expected, "{value}");
        }
    }

    #[test]
    fn url_authority_becomes_host_and_port_and_other_fields_stay() {
        let (first, _) = two_status_requests();
        let input = frame(HEADERS, END_HEADERS, 1, &first);
        let (blocks, others) = hyper_view(&rewrite(&input, usize::MAX).expect("rewrite"));
        assert!(others.is_empty());
        assert_eq!(
            blocks,
            [Seen {
                stream_id: 1,
                end_stream: false,
                priority: None,
                fields: status_fields(),
            }]
        );
    }

    #[test]
    fn dynamic_table_entries_reused_by_later_requests_decode_to_the_same_fields() {
        let (first, second) = two_status_requests();
        let mut input = frame(HEADERS, END_HEADERS, 1, &first);
        input.extend(frame(DATA, END_STREAM, 1, b"\0\0\0\0\0"));
        input.extend(frame(HEADERS, END_HEADERS, 3, &second));
        input.extend(frame(DATA, END_STREAM, 3, b"\0\0\0\0\0"));
        for chunk in [1, 2, 7, 64, usize::MAX] {
            let (blocks, others) = hyper_view(&rewrite(&input, chunk).expect("rewrite"));
            let got: Vec<(u32, &Fields)> =
                blocks.iter().map(|b| (b.stream_id, &b.fields)).collect();
            assert_eq!(got, [(1, &status_fields()), (3, &status_fields())]);
            assert_eq!(others.len(), 2, "both DATA frames pass");
        }
    }

    #[test]
    fn huffman_coded_requests_decode_through_the_client_table() {
        // RFC 7541 C.4: three requests on one connection, Huffman-coded, the later ones by
        // reference to the table.
        let blocks: [&[u8]; 3] = [
            &[
                0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
                0x90, 0xf4, 0xff,
            ],
            &[
                0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
            ],
            &[
                0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f,
                0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
            ],
        ];
        let mut input = Vec::new();
        for (i, block) in (0u32..).zip(blocks) {
            input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 3, block));
        }
        // Alone, the connection needs no rewriting, so it passes through byte for byte.
        assert_eq!(rewrite(&input, 3).expect("rewrite"), input);
        // After a first request with a URL authority (sent without touching the client's table),
        // every block is decoded through the client's table and re-encoded.
        let mut first = Vec::new();
        encode_literal(b":method", b"GET", &mut first);
        encode_literal(b":authority", b"http://www.example.com", &mut first);
        let mut connection = frame(HEADERS, END_HEADERS | END_STREAM, 1, &first);
        connection.extend(&input);
        let (mut seen, _) = hyper_view(&rewrite(&connection, 3).expect("rewrite"));
        let opening = seen.remove(0);
        assert_eq!(
            opening.fields,
            fields(&[(":method", "GET"), (":authority", "www.example.com")])
        );
        let base = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        let mut second = base.to_vec();
        second.push(("cache-control", "no-cache"));
        let third = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        let got: Vec<&Fields> = seen.iter().map(|b| &b.fields).collect();
        assert_eq!(got, [&fields(&base), &fields(&second), &fields(&third)]);
        assert!(seen.iter().all(|b| b.end_stream));
    }

    #[test]
    fn a_block_split_across_continuation_frames_is_one_rewritten_block() {
        let (first, second) = two_status_requests();
        let (a, rest) = first.split_at(5);
        let (b, c) = rest.split_at(20);
        let mut input = frame(HEADERS, END_STREAM, 1, a);
        input.extend(frame(CONTINUATION, 0, 1, b));
        input.extend(frame(CONTINUATION, 0, 1, &[]));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, c));
        input.extend(frame(HEADERS, 0, 3, &[]));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, &second));
        for chunk in [1, 9, 10, usize::MAX] {
            let (blocks, others) = hyper_view(&rewrite(&input, chunk).expect("rewrite"));
            assert!(others.is_empty());
            assert_eq!(blocks.len(), 2);
            assert_eq!((blocks[0].stream_id, blocks[0].end_stream), (1, true));
            assert_eq!((blocks[1].stream_id, blocks[1].end_stream), (3, false));
            assert!(blocks.iter().all(|b| b.fields == status_fields()));
        }
    }

    #[test]
    fn padded_headers_with_priority_keep_priority_and_end_stream_and_lose_padding() {
        let (first, _) = two_status_requests();
        let priority = [0x80, 0, 0, 0, 0x0f];
        let mut payload = vec![7];
        payload.extend(priority);
        payload.extend(&first);
        payload.extend([0; 7]);
        let flags = PADDED | PRIORITY | END_STREAM | END_HEADERS;
        let input = frame(HEADERS, flags, 5, &payload);
        let output = rewrite(&input, 4).expect("rewrite");
        let (head, _) = &parse_frames(&output)[0];
        assert_eq!(head.flags, PRIORITY | END_STREAM | END_HEADERS);
        let (blocks, _) = hyper_view(&output);
        assert_eq!(
            blocks,
            [Seen {
                stream_id: 5,
                end_stream: true,
                priority: Some(priority),
                fields: status_fields(),
            }]
        );

        // Padding alone, with an empty fragment, is an empty block (after a block that needed
        // rewriting; as a connection's first block it would pass through untouched).
        let mut input = frame(HEADERS, END_HEADERS, 1, &first);
        input.extend(frame(HEADERS, PADDED | END_HEADERS, 7, &[3, 0, 0, 0]));
        let (blocks, _) = hyper_view(&rewrite(&input, 1).expect("rewrite"));
        assert_eq!(blocks.len(), 2);
        assert!(blocks[1].fields.is_empty());
        let alone = frame(HEADERS, PADDED | END_HEADERS, 7, &[3, 0, 0, 0]);
        assert_eq!(rewrite(&alone, 1).expect("rewrite"), alone);
    }

    #[test]
    fn a_rewritten_block_larger_than_a_frame_is_cut_into_continuations() {
        let big = "x".repeat(40_000);
        let mut block = indexed_literal(1, b"", b"http://127.0.0.1:2379");
        block.extend(indexed_literal(0, b"x-big", big.as_bytes()));
        for flags in [END_HEADERS, END_HEADERS | PRIORITY] {
            let mut payload = Vec::new();
            if flags & PRIORITY != 0 {
                payload.extend([0, 0, 0, 1, 0]);
            }
            payload.extend(&block);
            let output = rewrite(&frame(HEADERS, flags, 1, &payload), 1000).expect("rewrite");
            let frames = parse_frames(&output);
            let kinds: Vec<(u8, u8)> = frames.iter().map(|(h, _)| (h.kind, h.flags)).collect();
            let first_flags = flags & PRIORITY;
            assert_eq!(
                kinds,
                [
                    (HEADERS, first_flags),
                    (CONTINUATION, 0),
                    (CONTINUATION, END_HEADERS)
                ]
            );
            assert_eq!(frames[0].0.length, FRAME_PAYLOAD_MAX_BYTES);
            let (blocks, _) = hyper_view(&output);
            assert_eq!(
                blocks[0].fields,
                fields(&[(":authority", "127.0.0.1:2379"), ("x-big", &big)])
            );
        }
    }

    #[test]
    fn other_frames_pass_through_byte_for_byte() {
        let mut input = frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]);
        input.extend(frame(SETTINGS, 1, 0, &[]));
        input.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0x10, 0]));
        input.extend(frame(PING, 0, 0, b"12345678"));
        input.extend(frame(DATA, PADDED | END_STREAM, 1, &[2, b'h', b'i', 0, 0]));
        input.extend(frame(DATA, END_STREAM, 3, &[]));
        input.extend(frame(0xfa, 0xff, 0x7fff_ffff, &[0xab; 300]));
        input.extend(frame(DATA, 0, 5, &vec![0x5a; 70_000]));
        for chunk in [1, 5, 9, 10, 4096, usize::MAX] {
            assert_eq!(rewrite(&input, chunk).expect("rewrite"), input, "{chunk}");
        }
    }

    #[test]
    fn protocol_violations_close_the_connection() {
        let (first, _) = two_status_requests();
        let cases: Vec<(&str, Vec<u8>, RewriteError)> = vec![
            (
                "CONTINUATION without HEADERS",
                frame(CONTINUATION, END_HEADERS, 1, &first),
                RewriteError::UnexpectedContinuation { stream_id: 1 },
            ),
            (
                "DATA inside a header block",
                [frame(HEADERS, 0, 1, &first), frame(DATA, 0, 1, b"x")].concat(),
                RewriteError::ExpectedContinuation {
                    expected: 1,
                    found: 1,
                    kind: DATA,
                },
            ),
            (
                "CONTINUATION of another stream",
                [
                    frame(HEADERS, 0, 1, &first),
                    frame(CONTINUATION, END_HEADERS, 3, &[]),
                ]
                .concat(),
                RewriteError::ExpectedContinuation {
                    expected: 1,
                    found: 3,
                    kind: CONTINUATION,
                },
            ),
            (
                "padding longer than the payload",
                frame(HEADERS, PADDED | END_HEADERS, 1, &[5, 0x82, 0, 0, 0]),
                RewriteError::MalformedHeaders {
                    stream_id: 1,
                    reason: "more padding than payload",
                },
            ),
            (
                "PADDED with an empty payload",
                frame(HEADERS, PADDED | END_HEADERS, 1, &[]),
                RewriteError::MalformedHeaders {
                    stream_id: 1,
                    reason: "PADDED without a pad length",
                },
            ),
            (
                "PRIORITY cut short",
                frame(HEADERS, PRIORITY | END_HEADERS, 1, &[0, 0, 0]),
                RewriteError::MalformedHeaders {
                    stream_id: 1,
                    reason: "PRIORITY without its 5 bytes",
                },
            ),
            (
                "PUSH_PROMISE",
                frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2, 0x82]),
                RewriteError::PushPromise { stream_id: 1 },
            ),
            (
                "a reference to an empty table slot",
                frame(HEADERS, END_HEADERS, 1, &[0x82, 0xbe]),
                RewriteError::Hpack {
                    stream_id: 1,
                    error: DecoderError::HeaderIndexOutOfBounds,
                },
            ),
            (
                "a table larger than hyper allows",
                frame(HEADERS, END_HEADERS, 1, &[0x3f, 0xe2, 0x1f, 0x82]),
                RewriteError::Hpack {
                    stream_id: 1,
                    error: DecoderError::InvalidMaxDynamicSize,
                },
            ),
        ];
        for (what, input, expected) in cases {
            for chunk in [1, usize::MAX] {
                assert_eq!(rewrite(&input, chunk), Err(expected.clone()), "{what}");
            }
        }
    }

    #[test]
    fn a_failed_rewriter_refuses_everything_after() {
        let mut rewriter = HeaderRewriter::new();
        let mut out = Vec::new();
        let bad = frame(CONTINUATION, END_HEADERS, 1, &[]);
        assert!(rewriter.feed(&bad, &mut out).is_err());
        let ping = frame(PING, 0, 0, b"12345678");
        assert_eq!(rewriter.feed(&ping, &mut out), Err(RewriteError::Failed));
        assert!(out.is_empty());
    }

    #[test]
    fn header_blocks_over_the_bound_close_before_they_are_buffered() {
        // One HEADERS frame too large: refused at its head, before its payload arrives.
        let length = HEADER_BLOCK_MAX_BYTES + 1;
        let mut head = u32::try_from(length).expect("len").to_be_bytes()[1..].to_vec();
        head.extend([HEADERS, END_HEADERS, 0, 0, 0, 1]);
        let too_large = Err(RewriteError::HeaderBlockTooLarge { stream_id: 1 });
        assert_eq!(rewrite(&head, usize::MAX), too_large);

        // CONTINUATION frames adding up past the bound.
        let half = vec![0u8; HEADER_BLOCK_MAX_BYTES / 2 + 1];
        let mut input = frame(HEADERS, 0, 1, &half);
        input.extend(&frame(CONTINUATION, END_HEADERS, 1, &half)[..FRAME_HEAD_BYTES]);
        assert_eq!(rewrite(&input, 65_536), too_large);
    }

    #[test]
    fn a_small_block_expanding_past_the_list_bound_closes() {
        // One 4000-byte entry in the table, then 300 one-byte references to it: 1.2 MB decoded.
        let mut block = indexed_literal(0, b"x-big", &[b'v'; 4000]);
        block.extend([0xbe; 300]);
        let input = frame(HEADERS, END_HEADERS, 1, &block);
        assert_eq!(
            rewrite(&input, usize::MAX),
            Err(RewriteError::HeaderListTooLarge { stream_id: 1 })
        );
    }

    /// Hands out at most `step` bytes per read, and is always ready.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self
                .step
                .min(self.data.len() - self.pos)
                .min(buf.remaining());
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    /// Reads `data` through a `RewritingStream` as hyper would: the first read into a 24-byte buffer
    /// (hyper-util's version detection), then `read_bytes` at a time.
    fn read_through(data: &[u8], step: usize, read_bytes: usize) -> io::Result<Vec<u8>> {
        let inner = Trickle {
            data: data.to_vec(),
            pos: 0,
            step,
        };
        let mut stream = RewritingStream::new(inner, crate::server::log::discard());
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let mut buf = vec![0; read_bytes.max(24)];
        let mut size = 24;
        loop {
            let mut read = ReadBuf::new(&mut buf[..size]);
            match Pin::new(&mut stream).poll_read(&mut cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Ok(out),
                Poll::Ready(Ok(())) => out.extend(read.filled()),
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => unreachable!("Trickle is always ready"),
            }
            size = read_bytes;
        }
    }

    #[test]
    fn an_http1_request_passes_through_untouched() {
        let request = b"GET /health HTTP/1.1\r\nHost: http://127.0.0.1:2379\r\n\r\n".to_vec();
        let near_preface = b"PRI * HTTP/1.1\r\n\r\n".to_vec();
        for data in [request, near_preface, b"P".to_vec(), Vec::new()] {
            for (step, read) in [(1, 1), (3, 100), (4096, 4096)] {
                assert_eq!(read_through(&data, step, read).expect("read"), data);
            }
        }
    }

    #[test]
    fn an_http2_connection_is_rewritten_through_the_stream() {
        let (first, second) = two_status_requests();
        let mut frames = frame(SETTINGS, 0, 0, &[]);
        frames.extend(frame(HEADERS, END_HEADERS, 1, &first));
        frames.extend(frame(DATA, END_STREAM, 1, &vec![7; 40_000]));
        frames.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &second));
        let data = [PREFACE, &frames].concat();
        let expected = [PREFACE, &rewrite(&frames, usize::MAX).expect("rewrite")].concat();
        for (step, read) in [(1, 1), (1, 8192), (5, 7), (100, 24), (65_536, 16_384)] {
            let got = read_through(&data, step, read).expect("read");
            assert!(got == expected, "step {step}, read {read}");
        }
        let (blocks, _) = hyper_view(&expected[PREFACE.len()..]);
        assert!(blocks.iter().all(|b| b.fields == status_fields()));
    }

    #[test]
    fn a_malformed_http2_connection_fails_the_read_after_the_good_frames() {
        let ping = frame(PING, 0, 0, b"12345678");
        let data = [PREFACE, &ping, &frame(CONTINUATION, END_HEADERS, 1, &[])].concat();
        for (step, read) in [(1, 1), (4096, 4096)] {
            let inner = Trickle {
                data: data.clone(),
                pos: 0,
                step,
            };
            let mut stream = RewritingStream::new(inner, crate::server::log::discard());
            let mut cx = Context::from_waker(Waker::noop());
            let mut got: Vec<u8> = Vec::new();
            let error = loop {
                let mut buf = vec![0; read];
                let mut rb = ReadBuf::new(&mut buf);
                match Pin::new(&mut stream).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        assert!(!rb.filled().is_empty(), "no EOF before the error");
                        got.extend(rb.filled());
                    }
                    Poll::Ready(Err(error)) => break error,
                    Poll::Pending => unreachable!(),
                }
            };
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert_eq!(got, [PREFACE, &ping].concat());
        }
    }

    #[test]
    fn detect_tells_the_preface_from_anything_else() {
        assert_eq!(detect(0, b""), Detected::Partial { matched: 0 });
        assert_eq!(detect(0, b"PRI *"), Detected::Partial { matched: 5 });
        assert_eq!(detect(5, b" HTTP/2"), Detected::Partial { matched: 12 });
        assert_eq!(detect(5, b" HTTP/1"), Detected::NotHttp2);
        assert_eq!(detect(0, b"GET /"), Detected::NotHttp2);
        assert_eq!(
            detect(20, b"\r\n\r\n\0\0"),
            Detected::Http2 { preface_end: 4 }
        );
        assert_eq!(detect(0, PREFACE), Detected::Http2 { preface_end: 24 });
    }

    fn any_frame() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just(HEADERS), Just(CONTINUATION), Just(DATA), 0u8..12],
            any::<u8>(),
            0u32..4,
            prop::collection::vec(any::<u8>(), 0..48),
        )
            .prop_map(|(kind, flags, stream, payload)| frame(kind, flags, stream, &payload))
    }

    fn header_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b":authority".to_vec()),
            Just(b"content-type".to_vec()),
            "[a-z-]{1,12}".prop_map(String::into_bytes),
        ]
    }

    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"http://127.0.0.1:2379".to_vec()),
            Just(b"application/grpc".to_vec()),
            "[ -~]{0,40}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            data in prop::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..64,
        ) {
            let _ = rewrite(&data, chunk);
        }

        #[test]
        fn arbitrary_frames_never_panic(
            frames in prop::collection::vec(any_frame(), 0..12),
            chunk in 1usize..64,
        ) {
            let _ = rewrite(&frames.concat(), chunk);
        }

        #[test]
        fn any_requests_survive_any_framing_and_chunking(
            requests in prop::collection::vec(
                prop::collection::vec((header_name(), header_value()), 0..8), 1..6),
            cut in 1usize..30,
            chunk in 1usize..200,
        ) {
            // The client's encoder indexes new names, so later requests refer to its table.
            let mut encoder = Encoder::new();
            let mut input = Vec::new();
            for (i, request) in (0u32..).zip(&requests) {
                let block = encoder.encode(request.iter().map(|(n, v)| (&n[..], &v[..])));
                let stream_id = 2 * i + 1;
                let mut pieces = block.chunks(cut);
                let first = pieces.next().unwrap_or_default();
                let last = block.len() <= cut;
                input.extend(frame(HEADERS, if last { END_HEADERS } else { 0 }, stream_id, first));
                let rest: Vec<&[u8]> = pieces.collect();
                for (j, piece) in rest.iter().enumerate() {
                    let flags = if j + 1 == rest.len() { END_HEADERS } else { 0 };
                    input.extend(frame(CONTINUATION, flags, stream_id, piece));
                }
            }
            let output = rewrite(&input, chunk).expect("rewrite");
            let first_needs_rewrite = requests[0]
                .iter()
                .any(|(n, v)| &n[..] == b":authority" && authority_of_url(v).is_some());
            if !first_needs_rewrite {
                // Passed through untouched from the first block on.
                prop_assert_eq!(output, input);
                return Ok(());
            }
            let (blocks, _) = hyper_view(&output);
            let expected: Vec<Fields> = requests
                .iter()
                .map(|request| {
                    request
                        .iter()
                        .map(|(n, v)| {
                            let v = match &n[..] {
                                b":authority" => authority_of_url(v).unwrap_or(v),
                                _ => v,
                            };
                            (n.clone(), v.to_vec())
                        })
                        .collect()
                })
                .collect();
            let got: Vec<Fields> = blocks.into_iter().map(|b| b.fields).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
