//! Waiting for a condition that changes only when someone rings a `tokio::sync::Notify`: the one
//! loop the stop signal (`stop.rs`) and the driver's status waits (`handle.rs`) share.
//!
//! A `Notify` (not a `watch`) because its waiters wake in the order they began to wait; a
//! watch's `changed()` picks one of several notifiers from tokio's thread-local generator, which
//! made simulator runs depend on what the process ran before (`tests/sans_io.rs` keeps it out).

use tokio::sync::Notify;

/// Resolves with `check`'s first answer: it is asked now, and again each time `notify` rings
/// (`notify_waiters`) after that. A ring between two asks is never lost, since the wait is
/// registered before each ask.
pub async fn until<T>(notify: &Notify, mut check: impl FnMut() -> Option<T>) -> T {
    loop {
        let rung = notify.notified();
        tokio::pin!(rung);
        rung.as_mut().enable();
        if let Some(answer) = check() {
            return answer;
        }
        rung.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn poll_once<T>(future: &mut std::pin::Pin<&mut impl Future<Output = T>>) -> Poll<T> {
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn answers_at_once_when_the_condition_already_holds() {
        let notify = Notify::new();
        assert_eq!(
            poll_once(&mut pin!(until(&notify, || Some(7)))),
            Poll::Ready(7)
        );
    }

    #[test]
    fn asks_again_only_after_a_ring_and_ends_when_the_answer_comes() {
        let notify = Notify::new();
        let asked = Cell::new(0);
        let holds = Cell::new(false);
        let mut wait = pin!(until(&notify, || {
            asked.set(asked.get() + 1);
            holds.get().then_some("held")
        }));
        assert_eq!(poll_once(&mut wait), Poll::Pending);
        assert_eq!(poll_once(&mut wait), Poll::Pending);
        assert_eq!(asked.get(), 1, "no ring, no second ask");
        notify.notify_waiters();
        assert_eq!(poll_once(&mut wait), Poll::Pending);
        assert_eq!(asked.get(), 2);
        holds.set(true);
        assert_eq!(
            poll_once(&mut wait),
            Poll::Pending,
            "changed without a ring"
        );
        notify.notify_waiters();
        assert_eq!(poll_once(&mut wait), Poll::Ready("held"));
    }

    #[test]
    fn a_ring_between_the_ask_and_the_await_is_not_lost() {
        let notify = Notify::new();
        let holds = Cell::new(false);
        let mut wait = pin!(until(&notify, || {
            let answer = holds.get().then_some(());
            // The condition changes and rings right after this ask, before the wait awaits.
            holds.set(true);
            notify.notify_waiters();
            answer
        }));
        assert_eq!(poll_once(&mut wait), Poll::Ready(()));
    }
}
