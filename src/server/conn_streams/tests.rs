use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::rt::Executor as _;
use tokio::sync::oneshot;

use super::ConnectionStreams;

/// A stand-in for hyper's connection: hands `answers.len()` streams to the executor on its first
/// poll (each waits for its answer, then counts itself done) and ends once all are done.
async fn connection(
    executor: ConnectionStreams,
    answers: Vec<oneshot::Receiver<u32>>,
    done: Arc<AtomicUsize>,
) -> usize {
    let streams = answers.len();
    for answer in answers {
        let done = done.clone();
        executor.execute(async move {
            if answer.await.is_ok() {
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    while done.load(Ordering::SeqCst) < streams {
        tokio::task::yield_now().await;
    }
    streams
}

#[tokio::test]
async fn streams_handed_over_run_in_the_connections_task_until_they_finish() {
    let executor = ConnectionStreams::default();
    let done = Arc::new(AtomicUsize::new(0));
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..5).map(|_| oneshot::channel()).unzip();
    let running = tokio::spawn(
        executor
            .clone()
            .run(connection(executor, receivers, done.clone())),
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "no stream has its answer yet"
    );
    for (n, sender) in senders.into_iter().enumerate() {
        sender.send(n as u32).unwrap();
    }
    let finished = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the answers wake the connection's task")
        .unwrap();
    assert_eq!(finished, 5);
    assert_eq!(done.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_stream_handed_over_from_outside_wakes_a_waiting_connection() {
    let executor = ConnectionStreams::default();
    let (tx, rx) = oneshot::channel::<()>();
    let ran = Arc::new(AtomicUsize::new(0));
    // The connection itself never hands anything over; it ends when told.
    let running = tokio::spawn(executor.clone().run(async move {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let counted = ran.clone();
    executor.execute(async move {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    for _ in 0..100 {
        if ran.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "the stream ran without the connection waking"
    );
    tx.send(()).unwrap();
    running.await.unwrap();
}

#[tokio::test]
async fn streams_still_pending_when_the_connection_ends_are_dropped() {
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let executor = ConnectionStreams::default();
    let dropped = Arc::new(AtomicUsize::new(0));
    let handed = executor.clone();
    let guard = Dropped(dropped.clone());
    let output = executor
        .run(async move {
            handed.execute(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            });
            tokio::task::yield_now().await;
            7
        })
        .await;
    assert_eq!(output, 7);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the pending stream was dropped"
    );
}

#[tokio::test]
async fn a_stream_that_panics_ends_alone() {
    let executor = ConnectionStreams::default();
    let done = Arc::new(AtomicUsize::new(0));
    let (sender, receiver) = oneshot::channel();
    let handed = executor.clone();
    let counted = done.clone();
    let watched = done.clone();
    let running = tokio::spawn(executor.run(async move {
        handed.execute(async { panic!("a bug in one request's handler") });
        handed.execute(async move {
            if receiver.await.is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        while watched.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    }));
    tokio::time::sleep(Duration::from_millis(10)).await;
    sender.send(1u32).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the connection goes on after one stream panicked")
        .expect("the panic stayed inside its stream");
    assert_eq!(done.load(Ordering::SeqCst), 1);
}
