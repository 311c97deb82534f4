//! A full disk under a running member. A write that finds no space (ENOSPC, in the WAL, a
//! snapshot file or the storage engine) stops the member as any failed write does: nothing
//! acknowledged is lost (only durable entries were acknowledged) and the failed write's partial
//! record, if any, is the WAL's torn tail, cut at the next start. What differs is what follows:
//! rather than exiting, the process waits for space — probing the data directory's disk by
//! writing `PROBE_BYTES` every `PROBE_INTERVAL` — and then starts the member again from its data
//! directory, exactly as a restart would. Meanwhile its ports are closed, so clients move to
//! other members; the log says why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::blocking;
use super::env::Environment;

/// How often a member stopped on a full disk looks for space.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// The space a member needs to start again: room for a WAL segment's worth of writes and a
/// snapshot's temporary file would be more, but a member that runs out again simply waits again.
pub const PROBE_BYTES: usize = 16 << 20;
/// The probe file, in the data directory.
const PROBE_FILE: &str = ".space-probe";

/// Whether a failure's text is the OS's ENOSPC (every disk error is reported with it).
pub fn is_out_of_space(reason: &str) -> bool {
    reason.contains("No space left on device")
        || reason.contains("(os error 28)")
        || reason.contains("no storage space")
}

/// Whether `PROBE_BYTES` can be written in `data_dir` now (the probe file is removed again).
pub async fn has_space(env: &dyn Environment, data_dir: &Path) -> bool {
    let mut disk = env.disk();
    let path: PathBuf = data_dir.join(PROBE_FILE);
    let probed = blocking::run(move || {
        let _ = disk.remove(&path);
        let written = disk
            .create(&path)
            .and_then(|()| disk.append(&path, &vec![0u8; PROBE_BYTES]));
        let _ = disk.remove(&path);
        written.is_ok()
    })
    .await;
    probed.unwrap_or(false)
}

/// Waits until the data directory's disk has space again; false if `shutdown` came first.
pub async fn wait_for_space(
    env: &dyn Environment,
    data_dir: &Path,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    log: &slog::Logger,
) -> bool {
    let mut probes = 0u64;
    loop {
        let at = env.now() + PROBE_INTERVAL;
        tokio::select! {
            biased;
            () = shutdown.as_mut() => return false,
            () = env.sleep_until(at) => {}
        }
        if has_space(env, data_dir).await {
            slog::info!(
                log,
                "the data directory's disk has space again; starting the member"
            );
            return true;
        }
        probes += 1;
        if probes.is_multiple_of(12) {
            slog::warn!(log, "still waiting for space on the data directory's disk";
                "waited_seconds" => probes * PROBE_INTERVAL.as_secs(), "needed_bytes" => PROBE_BYTES);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_recognised_in_the_failures_text() {
        let io = std::io::Error::from_raw_os_error(28);
        assert!(is_out_of_space(&format!(
            "persist failed: wal disk error: member/wal/0.wal: {io}"
        )));
        let kind = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(is_out_of_space(&format!("fsync failed: {kind}")));
        let other = std::io::Error::from_raw_os_error(5);
        assert!(!is_out_of_space(&format!("persist failed: {other}")));
        assert!(!is_out_of_space("the node stopped"));
    }
}
