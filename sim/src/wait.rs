//! Waiting on madsim's clock without piling up timers. madsim's `Sleep` registers a new timer each
//! time it is polled while pending, and a timer is never cancelled: a task that waits on a sleep
//! beside something else (an inbox, a reply) added a timer at every wake-up, and each of those
//! timers later woke the task again for nothing, which added another. [`Deadline`] registers one
//! timer per waiting task; [`timeout`] is `madsim::time::timeout` on a `Deadline`.
//!
//! When things happen is unchanged: a deadline passes exactly when the sleep it wraps would.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use madsim::time::Sleep;

/// A point on madsim's clock that a task can wait for.
#[derive(Debug)]
pub struct Deadline {
    sleep: Sleep,
    /// The task whose waker the timer holds, once registered.
    registered: Option<Waker>,
}

impl Deadline {
    /// `duration` from now (at least 1 ms, as madsim's `sleep`).
    pub fn after(duration: Duration) -> Self {
        Deadline {
            sleep: madsim::time::sleep(duration),
            registered: None,
        }
    }

    /// Whether the deadline has passed.
    pub fn has_passed(&self) -> bool {
        self.sleep.is_elapsed()
    }

    /// Ready once the deadline has passed; otherwise makes sure a timer will wake this task then.
    pub fn poll_passed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.sleep.is_elapsed() {
            return Poll::Ready(());
        }
        if self
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        self.registered = Some(cx.waker().clone());
        Pin::new(&mut self.sleep).poll(cx)
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_passed(cx)
    }
}

/// The output of `future`, or `None` if `duration` (counted from this call) passes first. Like
/// `madsim::time::timeout`, `future` is polled first.
pub fn timeout<F: Future>(
    duration: Duration,
    future: F,
) -> impl Future<Output = Option<F::Output>> {
    let mut deadline = Deadline::after(duration);
    async move {
        let mut future = pin!(future);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            deadline.poll_passed(cx).map(|()| None)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn elapsed_since(start: std::time::Instant) -> Duration {
        std::time::Instant::now().duration_since(start)
    }

    #[test]
    fn a_deadline_passes_when_its_sleep_would() {
        madsim::runtime::Runtime::new().block_on(async {
            let start = std::time::Instant::now();
            let deadline = Deadline::after(Duration::from_millis(30));
            assert!(!deadline.has_passed());
            deadline.await;
            let waited = elapsed_since(start);
            assert!(waited >= Duration::from_millis(30), "{waited:?}");
            assert!(waited < Duration::from_millis(31), "{waited:?}");
        });
    }

    #[test]
    fn timeout_gives_the_output_or_none_once_the_time_is_up() {
        madsim::runtime::Runtime::new().block_on(async {
            let quick = timeout(
                Duration::from_millis(50),
                madsim::time::sleep(Duration::from_millis(10)),
            );
            assert_eq!(quick.await, Some(()));
            let start = std::time::Instant::now();
            let slow = timeout(Duration::from_millis(50), std::future::pending::<()>());
            assert_eq!(slow.await, None);
            let waited = elapsed_since(start);
            assert!(waited >= Duration::from_millis(50), "{waited:?}");
            assert!(waited < Duration::from_millis(51), "{waited:?}");
        });
    }

    #[test]
    fn a_deadline_woken_early_still_passes_on_time() {
        // The task is woken repeatedly (by a busy neighbour) before the deadline; the single timer
        // registered at the first poll still ends the wait on time.
        madsim::runtime::Runtime::new().block_on(async {
            let start = std::time::Instant::now();
            let mut deadline = Deadline::after(Duration::from_millis(20));
            let mut ticks = 0;
            loop {
                let tick = madsim::time::sleep(Duration::from_millis(3));
                futures::select_biased! {
                    () = (&mut deadline).fuse() => break,
                    () = tick.fuse() => ticks += 1,
                }
            }
            let waited = elapsed_since(start);
            assert!(ticks >= 5, "{ticks}");
            assert!(waited >= Duration::from_millis(20), "{waited:?}");
            assert!(waited < Duration::from_millis(21), "{waited:?}");
        });
    }
}
