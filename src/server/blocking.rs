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

/// Runs `a` and `b` at the same time, `b` on a thread of its own (a panic in either goes on in
/// the caller); under the simulator, one after the other. What a restart's load runs its two
/// halves with (`kv::set_side_by_side`).
pub fn side_by_side(a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
    #[cfg(not(madsim))]
    std::thread::scope(|scope| {
        let b = scope.spawn(b);
        a();
        if let Err(panic) = b.join() {
            std::panic::resume_unwind(panic);
        }
    });
    #[cfg(madsim)]
    {
        a();
        b();
    }
}

/// The next chunk of rows of `export` (read where blocking is allowed: the engine reads its
/// file), at most about `max_bytes`; `None` once every row was read, after which `export` is
/// `None` too.
pub async fn next_chunk(
    export: &mut Option<crate::engine::Export>,
    max_bytes: usize,
) -> Result<Option<Vec<u8>>, String> {
    let Some(mut reading) = export.take() else {
        return Ok(None);
    };
    let (reading, rows) = run(move || {
        let rows = reading.next_chunk(max_bytes);
        (reading, rows)
    })
    .await?;
    let rows = rows.map_err(|error| error.to_string())?;
    if rows.is_some() {
        *export = Some(reading);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #[test]
    fn side_by_side_runs_both_and_passes_a_panic_on() {
        let (mut first, mut second) = (0, 0);
        super::side_by_side(&mut || first = 1, &mut || second = 2);
        assert_eq!((first, second), (1, 2));
        let panicked = std::panic::catch_unwind(|| {
            super::side_by_side(&mut || {}, &mut || panic!("in the second"));
        });
        assert!(panicked.is_err());
    }
}
