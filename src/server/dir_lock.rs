//! One process per data directory: a member holds an exclusive `flock` on
//! `<data-dir>/member/lock` while it runs (etcd locks its WAL files the same way), so a second
//! member started on the same directory, or `stetutl backup` of a running member, is refused
//! with a clear error instead of two writers corrupting the files. The kernel drops the lock when
//! the process exits, however it exits.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// The lock's file name under `<data-dir>/member/`.
const LOCK_NAME: &str = "lock";

/// A held lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Why a data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("data dir {0} is in use by another process (a running member?): stop it first")]
    InUse(PathBuf),
    #[error("cannot lock data dir {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DataDirLock {
    /// Locks `data_dir`, creating `<data-dir>/member/` if needed.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let io = |source| LockError::Io {
            dir: data_dir.to_path_buf(),
            source,
        };
        let member = data_dir.join("member");
        std::fs::create_dir_all(&member).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(member.join(LOCK_NAME))
            .map_err(io)?;
        lock_exclusive(&file).map_err(|error| match error.kind() {
            std::io::ErrorKind::WouldBlock => LockError::InUse(data_dir.to_path_buf()),
            _ => io(error),
        })?;
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(unix)]
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock takes a file descriptor this function borrows for the call; it does not
    // keep or free it.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn lock_exclusive(_file: &File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_data_dir_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("stet-lock-{}", std::process::id()));
        let first = DataDirLock::acquire(&dir).unwrap();
        let second = DataDirLock::acquire(&dir);
        assert!(matches!(second, Err(LockError::InUse(_))), "{second:?}");
        drop(first);
        let third = DataDirLock::acquire(&dir);
        assert!(third.is_ok(), "{third:?}");
        drop(third);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
