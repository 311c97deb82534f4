//! A member's stop signal: one side says stop (once, or by being dropped), and every task holding
//! a [`Stopped`] sees it, at once if it was said before the task looked.
//!
//! It replaces a `tokio::sync::watch<bool>`. A watch has each waiting receiver wait on one of
//! eight internal notifiers picked at random, from tokio's thread-local generator, which is seeded
//! from a process-wide counter: so the order in which a member's tasks woke at a stop depended on
//! what the process had done before. In the simulator that made a seed's run depend on the seeds
//! run before it in the same process, and a failing seed's replay could run something else. Here
//! waiters wake in the order they began to wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Shared {
    stopped: AtomicBool,
    notify: Notify,
}

/// The side that says stop. Dropping it says stop too, so a waiter never outlives its member.
#[derive(Debug)]
pub struct Stop(Arc<Shared>);

/// The side that waits for the stop; clone it for every task that must stop.
#[derive(Debug, Clone)]
pub struct Stopped(Arc<Shared>);

/// A new stop signal, not said yet.
pub fn channel() -> (Stop, Stopped) {
    let shared = Arc::new(Shared::default());
    (Stop(shared.clone()), Stopped(shared))
}

impl Stop {
    /// Says stop: every waiter wakes, and every later wait returns at once.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Stopped {
    /// Whether stop was said.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// Resolves once stop is said (at once if it was).
    pub async fn wait(&self) {
        super::notified::until(&self.0.notify, || self.is_stopped().then_some(())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn poll_once(future: &mut std::pin::Pin<&mut impl Future<Output = ()>>) -> Poll<()> {
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_wait_ends_when_stop_is_said_and_not_before() {
        let (stop, stopped) = channel();
        let waiter = stopped.clone();
        let mut wait = pin!(waiter.wait());
        assert_eq!(poll_once(&mut wait), Poll::Pending);
        assert_eq!(poll_once(&mut wait), Poll::Pending);
        stop.stop();
        assert_eq!(poll_once(&mut wait), Poll::Ready(()));
        assert!(stopped.is_stopped());
    }

    #[test]
    fn a_wait_begun_after_the_stop_ends_at_once() {
        let (stop, stopped) = channel();
        stop.stop();
        let late = stopped.clone();
        assert_eq!(poll_once(&mut pin!(late.wait())), Poll::Ready(()));
    }

    #[test]
    fn dropping_the_stop_side_stops_every_waiter() {
        let (stop, stopped) = channel();
        let (first, second) = (stopped.clone(), stopped.clone());
        let mut first_wait = pin!(first.wait());
        let mut second_wait = pin!(second.wait());
        assert_eq!(poll_once(&mut first_wait), Poll::Pending);
        assert_eq!(poll_once(&mut second_wait), Poll::Pending);
        drop(stop);
        assert_eq!(poll_once(&mut first_wait), Poll::Ready(()));
        assert_eq!(poll_once(&mut second_wait), Poll::Ready(()));
        assert!(!channel().1.is_stopped());
    }
}
