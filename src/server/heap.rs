//! The process heap: mimalloc is the `stet` binary's allocator (`src/main.rs`), and this module
//! sets how soon it hands freed memory back to the system, keeps transparent huge pages out of
//! the process, and asks for freed memory to be handed back after a burst of allocation on one
//! thread (a restart's load, a blocking thread reading the whole engine).
//!
//! One member under 64 clients' puts with default flags (`BENCHMARKS.md`, session 19): against
//! glibc's allocator (with two arenas), mimalloc costs a little less CPU per put; with its
//! default purge delay (1 s) it keeps the RSS a quarter above glibc's, with [`PURGE_DELAY_MS`]
//! and no huge pages about 30 % below.

/// How long mimalloc keeps freed pages before returning them to the system, unless the operator
/// set `MIMALLOC_PURGE_DELAY`: long enough that a page freed and reused within one burst of
/// requests is not returned and faulted in again, short enough that the RSS follows the load.
/// At 5 ms one member under 64 clients' puts made ~640 `madvise` calls a second (each a page
/// table flush on every core, and faults to map the pages back); at 50 ms, 8 alternating pairs:
/// member CPU per put 41.9 → 39.3 us and puts/s 22.7k → 23.9k (means), the RSS after the load
/// 1–2 MB higher (`BENCHMARKS.md`, session 27).
pub const PURGE_DELAY_MS: i64 = 50;

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h` of mimalloc 3, which `libmimalloc-sys`
/// builds by default; its Rust bindings leave this option out).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Transparent huge pages are kept out of the process unless the operator set
/// `MIMALLOC_ALLOW_THP`. mimalloc asks for them (`MADV_HUGEPAGE`) on the memory it maps; where
/// the kernel honours that with direct compaction (`defrag` = `madvise`, a common default), a
/// page fault may wait for memory to be compacted: measured on one member, reading the WAL
/// back at a restart took 70 ms or 400–500 ms from run to run with them, 157–162 ms without
/// (`BENCHMARKS.md`, session 19), and databases are advised to run without them (a write's
/// latency must not wait on compaction). glibc's allocator never asked for them.
fn keep_huge_pages_out(from_environment: Option<&std::ffi::OsStr>) -> bool {
    from_environment.is_none()
}

/// The purge delay to set, given the `MIMALLOC_PURGE_DELAY` the process started with: none when
/// the operator chose (mimalloc read it already).
pub fn purge_delay(from_environment: Option<&std::ffi::OsStr>) -> Option<i64> {
    match from_environment {
        Some(_) => None,
        None => Some(PURGE_DELAY_MS),
    }
}

/// Sets mimalloc's purge delay (see [`PURGE_DELAY_MS`]) and keeps transparent huge pages out of
/// the process (see [`keep_huge_pages_out`]); call it first thing in `main`.
pub fn configure() {
    if let Some(delay_ms) = purge_delay(std::env::var_os("MIMALLOC_PURGE_DELAY").as_deref()) {
        set_purge_delay(delay_ms);
    }
    if keep_huge_pages_out(std::env::var_os("MIMALLOC_ALLOW_THP").as_deref()) {
        disable_huge_pages();
    }
}

/// Sets how long mimalloc keeps freed pages before handing them back to the system (-1: never).
/// Process-wide: the simulator sets it once for all its members (`stet_sim::configure_heap`).
pub fn set_purge_delay(delay_ms: i64) {
    // SAFETY: mi_option_set only changes one of mimalloc's settings; it takes no pointer.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, delay_ms as _);
    }
}

/// Turns transparent huge pages off for the whole process, memory already mapped included (a
/// no-op where the kernel cannot).
pub fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of the calling process; it takes no pointer.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Returns the memory mimalloc holds free for the calling thread, and for threads that ended, to
/// the system. Call it after a burst of allocation, not on a hot path.
pub fn release_freed_memory() {
    #[cfg(not(madsim))]
    // SAFETY: mi_collect only returns free memory of mimalloc's heaps; it takes no pointer and
    // may be called from any thread at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_purge_delay_wins() {
        assert_eq!(purge_delay(None), Some(PURGE_DELAY_MS));
        assert_eq!(purge_delay(Some(std::ffi::OsStr::new("0"))), None);
        assert_eq!(purge_delay(Some(std::ffi::OsStr::new(""))), None);
    }

    #[test]
    fn the_operators_huge_page_setting_wins() {
        assert!(keep_huge_pages_out(None));
        assert!(!keep_huge_pages_out(Some(std::ffi::OsStr::new("1"))));
    }

    #[cfg(all(target_os = "linux", not(madsim)))]
    #[test]
    fn huge_pages_are_turned_off_for_the_process() {
        disable_huge_pages();
        // SAFETY: PR_GET_THP_DISABLE only reads a flag of the calling process.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1);
    }

    /// The option number is mimalloc's purge delay: its default is 1,000 ms (`options.c` of the
    /// mimalloc 3 that `libmimalloc-sys` builds; the header's comment still says 10), and a value
    /// set is read back.
    #[cfg(not(madsim))]
    #[test]
    fn the_purge_delay_option_is_mimallocs() {
        // SAFETY: reading and setting an option of mimalloc; no pointer.
        unsafe {
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            }
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _);
            let now_ms = libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY);
            assert_eq!(now_ms, PURGE_DELAY_MS as std::ffi::c_long);
        }
    }
}
