//! The process heap: how many glibc arenas it may use, and handing freed memory back to the
//! system. glibc keeps what is freed mapped, in the arena of the thread that allocated it, and
//! gives each new thread its own arena (up to 8 per core): after a restart's load, or after a
//! blocking thread read the whole engine (whose pages other threads free later), the RSS would
//! stay at its peak.

/// The arenas the server's threads share, unless `MALLOC_ARENA_MAX` says otherwise. One member
/// under 64 clients' puts (200k, `BENCHMARKS.md`, session 17): RSS after the load 65–69 MB with
/// glibc's default, 61–63 MB with 2, 58–59 MB with 1, which costs ~4 % of the throughput in lock
/// contention.
pub const ARENAS: i32 = 2;

/// How many arenas to ask glibc for, given the `MALLOC_ARENA_MAX` the process started with:
/// none when the operator chose (glibc applied it already).
pub fn arena_limit(from_environment: Option<&std::ffi::OsStr>) -> Option<i32> {
    match from_environment {
        Some(_) => None,
        None => Some(ARENAS),
    }
}

/// Limits glibc's arenas (see [`ARENAS`]); call it first thing in `main`, before threads start.
pub fn limit_arenas() {
    let Some(_arenas) = arena_limit(std::env::var_os("MALLOC_ARENA_MAX").as_deref()) else {
        return;
    };
    #[cfg(all(target_os = "linux", target_env = "gnu", not(madsim)))]
    // SAFETY: mallopt only changes glibc's allocator settings; it takes no pointer.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, _arenas);
    }
}

/// Returns the free memory of every glibc arena to the system (a no-op elsewhere). Takes the
/// arenas' locks while it runs: call it after a burst of allocation, not on a hot path.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(madsim)))]
    // SAFETY: malloc_trim only returns free memory of glibc's heap to the system; it takes no
    // pointer and may be called at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_arena_setting_wins() {
        assert_eq!(arena_limit(None), Some(ARENAS));
        assert_eq!(arena_limit(Some(std::ffi::OsStr::new("8"))), None);
        assert_eq!(arena_limit(Some(std::ffi::OsStr::new(""))), None);
    }
}
