//! Work that blocks (encoding and writing a large file, fsync) runs off the async runtime's
//! threads in production; under the simulator (`cfg(madsim)`) there are no threads to block, and
//! the work runs in place, deterministically.

/// Runs `work` where blocking is allowed and waits for its result; an error if the thread
/// running it panicked.
pub async fn run<T, F>(work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    #[cfg(not(madsim))]
    {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| format!("a blocking task failed: {error}"))
    }
    #[cfg(madsim)]
    {
        Ok(work())
    }
}
