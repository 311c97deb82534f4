//! Handing freed heap memory back to the system. glibc keeps what is freed mapped, in the arena
//! of the thread that allocated it: after a restart's load, or after a blocking thread read the
//! whole engine (whose pages other threads free later), the RSS would stay at its peak.

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
