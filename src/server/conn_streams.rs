//! Runs the HTTP/2 streams of one client connection inside the connection's own task. hyper
//! hands every request stream to an executor; the default one spawns a task per request, so a put
//! cost a task's allocation and scheduling, and its answer woke two tasks (the stream's, then the
//! connection's to write it). Here the connection's task polls its streams itself: the driver's
//! answers to many requests of one connection wake that one task once, and a finished response
//! is written by the task that produced it. Only woken streams are polled (`FuturesUnordered`).
//!
//! A stream that panics ends alone, as its own task would have. The queue of streams handed over but not yet polled is bounded by hyper's concurrent-stream
//! limit per connection. When the connection ends, streams still pending are dropped: nothing
//! they produce could reach the client any more.
//! (Client-facing HTTP only; the simulator serves gRPC through madsim-tonic.)

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_util::future::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt};

type StreamTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor given to hyper for one connection: it queues each stream for the connection's
/// task and wakes that task.
#[derive(Clone, Default)]
pub struct ConnectionStreams {
    shared: Arc<Mutex<Handed>>,
}

#[derive(Default)]
struct Handed {
    streams: Vec<StreamTask>,
    /// The connection task's waker, once it has been polled.
    waker: Option<Waker>,
}

impl<F> hyper::rt::Executor<F> for ConnectionStreams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let waker = {
            let mut handed = lock(&self.shared);
            // A stream that panics ends alone, as a task of its own would: the connection and
            // its other streams go on.
            let isolated = std::panic::AssertUnwindSafe(stream)
                .catch_unwind()
                .map(|_| ());
            handed.streams.push(Box::pin(isolated));
            handed.waker.clone()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl ConnectionStreams {
    /// A future that drives `connection` and every stream it hands to this executor, ending when
    /// the connection does.
    pub fn run<C: Future>(self, connection: C) -> WithStreams<C> {
        WithStreams {
            connection: Box::pin(connection),
            streams: FuturesUnordered::new(),
            shared: self.shared,
            taken: Vec::new(),
        }
    }
}

/// A connection together with its streams (see [`ConnectionStreams::run`]).
pub struct WithStreams<C> {
    connection: Pin<Box<C>>,
    streams: FuturesUnordered<StreamTask>,
    shared: Arc<Mutex<Handed>>,
    /// Streams just taken from the queue, swapped with it so that both vectors keep their
    /// capacity (no allocation per batch of new streams).
    taken: Vec<StreamTask>,
}

impl<C: Future> Future for WithStreams<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        loop {
            // The connection reads frames and hands new streams over.
            if let Poll::Ready(output) = this.connection.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            {
                let mut handed = lock(&this.shared);
                if !handed
                    .waker
                    .as_ref()
                    .is_some_and(|known| known.will_wake(cx.waker()))
                {
                    handed.waker = Some(cx.waker().clone());
                }
                debug_assert!(this.taken.is_empty());
                std::mem::swap(&mut handed.streams, &mut this.taken);
            }
            let any_new = !this.taken.is_empty();
            this.streams.extend(this.taken.drain(..));
            // Streams that finish or make progress wake this task through their own wakers.
            while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {}
            // A stream polled for the first time has usually queued its response: let the
            // connection write it in this same poll.
            if !any_new {
                return Poll::Pending;
            }
        }
    }
}

/// The queue's lock; a panic while it was held (in a push) left the queue itself whole.
fn lock(shared: &Mutex<Handed>) -> std::sync::MutexGuard<'_, Handed> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
