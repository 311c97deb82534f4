//! Batches what a client connection writes: many small responses become one socket write.
//!
//! hyper runs every request of an HTTP/2 connection as its own task and the connection's task
//! flushes whatever frames are queued each time one of them wakes it, so under load nearly every
//! response costs its own `writev` (and, on loopback, the receiver's processing inside it). Like
//! grpc-go's writer, which yields once before flushing a small buffer, [`BatchingWriter`] takes
//! writes into a buffer and, on a flush of less than `YIELD_BELOW_BYTES`, first lets the other
//! tasks ready to run go once (the connection task wakes itself and returns `Pending`), so the
//! responses they finish meanwhile go out in the same write. A flush of a full buffer, or the
//! flush after that one yield, writes everything. Reads pass through untouched.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes buffered before writes wait for the socket: a write beyond this drains the buffer first.
pub const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// A flush with fewer bytes than this yields once before writing (more is worth a write now).
pub const YIELD_BELOW_BYTES: usize = 16 * 1024;

/// A stream whose writes are buffered and flushed in batches (see the module doc).
pub struct BatchingWriter<S> {
    inner: S,
    /// Written by the caller, not yet by the socket: `buf[written..]`.
    buf: Vec<u8>,
    written: usize,
    /// Whether the flush in progress already yielded once.
    yielded: bool,
}

impl<S> BatchingWriter<S> {
    pub fn new(inner: S) -> BatchingWriter<S> {
        BatchingWriter {
            inner,
            buf: Vec::new(),
            written: 0,
            yielded: false,
        }
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn pending_bytes(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Takes as much of `bufs` as the buffer has room for (at least one byte when it has any).
    fn take(&mut self, bufs: &[io::IoSlice<'_>]) -> usize {
        if self.written > 0 {
            // What the socket took is dropped before more comes in: the buffer never holds more
            // than `WRITE_BUFFER_BYTES`, however long the socket takes a little at a time.
            self.buf.drain(..self.written);
            self.written = 0;
        }
        let room = WRITE_BUFFER_BYTES.saturating_sub(self.pending_bytes());
        let mut taken = 0;
        for slice in bufs {
            let n = slice.len().min(room - taken);
            self.buf.extend_from_slice(&slice[..n]);
            taken += n;
            if taken == room {
                break;
            }
        }
        taken
    }
}

impl<S: AsyncWrite + Unpin> BatchingWriter<S> {
    /// Writes the buffer to the socket until it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        if self.pending_bytes() >= WRITE_BUFFER_BYTES {
            ready!(self.poll_drain(cx))?;
        }
        let taken = self.take(bufs);
        assert!(taken > 0, "a buffer with room takes at least one byte");
        assert!(self.buf.len() <= WRITE_BUFFER_BYTES);
        Poll::Ready(Ok(taken))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BatchingWriter<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BatchingWriter<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_take(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_take(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // Slices are copied into the buffer, so many small ones cost no more than one.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending_bytes() > 0 {
            if !this.yielded && this.pending_bytes() < YIELD_BELOW_BYTES {
                this.yielded = true;
                // Polled again after the tasks already waiting to run (tokio puts a task that
                // woke itself at the back of the queue).
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use proptest::prelude::*;

    use super::*;

    /// A socket that takes at most `step` bytes per write and refuses every other call with
    /// `Pending` when `stall` is set, counting its writes.
    #[derive(Default)]
    struct Socket {
        data: Vec<u8>,
        writes: usize,
        step: usize,
        stall: bool,
        stalled: bool,
        flushes: usize,
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.stall {
                self.stalled = !self.stalled;
                if self.stalled {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            let n = buf.len().min(self.step.max(1));
            self.data.extend_from_slice(&buf[..n]);
            self.writes += 1;
            Poll::Ready(Ok(n))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn socket(step: usize) -> BatchingWriter<Socket> {
        BatchingWriter::new(Socket {
            step,
            ..Socket::default()
        })
    }

    /// Polls until ready, counting the `Pending`s.
    fn until_ready<T>(mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> (T, usize) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut pendings = 0;
        loop {
            match poll(&mut cx) {
                Poll::Ready(value) => return (value, pendings),
                Poll::Pending => pendings += 1,
            }
        }
    }

    fn write(writer: &mut BatchingWriter<Socket>, bytes: &[u8]) -> usize {
        let (n, _) = until_ready(|cx| Pin::new(&mut *writer).poll_write(cx, bytes));
        n.expect("write")
    }

    fn flush(writer: &mut BatchingWriter<Socket>) -> usize {
        let (result, pendings) = until_ready(|cx| Pin::new(&mut *writer).poll_flush(cx));
        result.expect("flush");
        pendings
    }

    #[test]
    fn small_writes_wait_for_one_yield_then_go_out_in_one_write() {
        let mut writer = socket(usize::MAX);
        for response in [&b"first"[..], b"second", b"third"] {
            assert_eq!(write(&mut writer, response), response.len());
        }
        assert_eq!(writer.get_ref().writes, 0, "buffered");
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut writer).poll_flush(&mut cx).is_pending());
        // Another response arrives while the connection task yields.
        write(&mut writer, b"fourth");
        assert_eq!(flush(&mut writer), 0, "one yield per flush");
        assert_eq!(writer.get_ref().data, b"firstsecondthirdfourth");
        assert_eq!(writer.get_ref().writes, 1);
        assert_eq!(writer.get_ref().flushes, 1);
        // The next flush yields again.
        write(&mut writer, b"fifth");
        assert_eq!(flush(&mut writer), 1);
        assert_eq!(writer.get_ref().writes, 2);
    }

    #[test]
    fn a_flush_of_nothing_or_of_a_large_buffer_does_not_yield() {
        let mut writer = socket(usize::MAX);
        assert_eq!(flush(&mut writer), 0);
        let large = vec![7; YIELD_BELOW_BYTES];
        assert_eq!(write(&mut writer, &large), large.len());
        assert_eq!(flush(&mut writer), 0);
        assert_eq!(writer.get_ref().data, large);
    }

    #[test]
    fn a_full_buffer_drains_before_taking_more() {
        let mut writer = socket(usize::MAX);
        let chunk = vec![1; WRITE_BUFFER_BYTES / 2 + 1];
        assert_eq!(write(&mut writer, &chunk), chunk.len());
        // Only what fits is taken; the caller writes the rest next.
        assert_eq!(write(&mut writer, &chunk), WRITE_BUFFER_BYTES - chunk.len());
        assert_eq!(writer.get_ref().writes, 0);
        assert_eq!(write(&mut writer, &chunk), chunk.len());
        assert_eq!(writer.get_ref().writes, 1);
        assert!(writer.pending_bytes() <= WRITE_BUFFER_BYTES);
    }

    #[test]
    fn a_socket_taking_a_little_at_a_time_never_grows_the_buffer() {
        let mut writer = BatchingWriter::new(Socket {
            step: 1000,
            stall: true,
            ..Socket::default()
        });
        let chunk = vec![5; 40_000];
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..50 {
            // One partial drain per write once the buffer is full, never a complete one.
            let _ = Pin::new(&mut writer).poll_write(&mut cx, &chunk);
            assert!(
                writer.buf.len() <= WRITE_BUFFER_BYTES,
                "{}",
                writer.buf.len()
            );
        }
        assert!(writer.get_ref().writes > 0);
    }

    #[test]
    fn shutdown_writes_what_is_buffered_first() {
        let mut writer = socket(3);
        write(&mut writer, b"last words");
        let (result, _) = until_ready(|cx| Pin::new(&mut writer).poll_shutdown(cx));
        result.expect("shutdown");
        assert_eq!(writer.get_ref().data, b"last words");
    }

    proptest! {
        #[test]
        fn every_byte_arrives_in_order_whatever_the_socket_takes(
            writes in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 0..40_000), any::<bool>()), 1..12),
            step in 1usize..70_000,
            stall in any::<bool>(),
        ) {
            let mut writer = BatchingWriter::new(Socket { step, stall, ..Socket::default() });
            let mut expected = Vec::new();
            for (bytes, then_flush) in &writes {
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let slices = [io::IoSlice::new(&rest[..rest.len() / 2]),
                                  io::IoSlice::new(&rest[rest.len() / 2..])];
                    let (n, _) = until_ready(|cx| {
                        Pin::new(&mut writer).poll_write_vectored(cx, &slices)
                    });
                    let n = n.expect("write");
                    prop_assert!(n > 0);
                    expected.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                }
                if *then_flush {
                    flush(&mut writer);
                    prop_assert_eq!(&writer.get_ref().data, &expected);
                }
            }
            flush(&mut writer);
            prop_assert_eq!(&writer.get_ref().data, &expected);
        }
    }
}
