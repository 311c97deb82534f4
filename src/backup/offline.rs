//! Offline backups of a data directory (`stetutl backup`, etcd's `etcdctl backup`): a copy of a
//! stopped member's WAL segments, snapshot files and engine file, fenced by a marker file so the
//! copy can never rejoin the cluster it came from by accident. A member started on a directory
//! holding the marker refuses unless `--force-new-cluster` makes it a new one-member cluster;
//! once the forced start has committed past the commit index the marker recorded (its removals,
//! or its first entry as leader, are durable), a plain restart removes the marker and goes on.
//!
//! The marker is written first and made durable before any data file is copied, so a copy cut
//! short by a crash is fenced too. Every file copied is fsynced, then its directory.

use std::path::{Path, PathBuf};

use crate::disk::{Disk, DiskError};
use crate::storage::StorageLayout;
use crate::wal;

/// The marker's file name, beside the engine file (`<data-dir>/member/`).
pub const MARKER_NAME: &str = "stet-backup";
/// The first line of a marker.
const MARKER_HEADER: &str = "stet offline backup";
/// Files are copied in pieces of this size.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// What a marker records about the member a backup was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The commit index of the WAL copied: a start past it has forced a new cluster.
    pub commit_index: u64,
}

impl Marker {
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{MARKER_HEADER}\nmember_id={:x}\ncluster_id={:x}\ncommit_index={}\n",
            self.member_id, self.cluster_id, self.commit_index
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Marker, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
        let mut lines = text.lines();
        if lines.next() != Some(MARKER_HEADER) {
            return Err("not a stet backup marker".to_string());
        }
        let mut field = |name: &str, radix: u32| -> Result<u64, String> {
            let line = lines.next().unwrap_or_default();
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .and_then(|value| u64::from_str_radix(value, radix).ok())
                .ok_or_else(|| format!("no {name} in the marker"))
        };
        Ok(Marker {
            member_id: field("member_id", 16)?,
            cluster_id: field("cluster_id", 16)?,
            commit_index: field("commit_index", 10)?,
        })
    }
}

impl std::fmt::Display for Marker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a backup of member {:x} of cluster {:x} at commit index {}",
            self.member_id, self.cluster_id, self.commit_index
        )
    }
}

/// Where a data directory's marker would be.
pub fn marker_path(layout: &StorageLayout) -> PathBuf {
    let member = layout.engine_file.parent().unwrap_or(Path::new("."));
    member.join(MARKER_NAME)
}

/// The marker of the data directory `layout` describes, if it has one.
pub fn read_marker<D: Disk>(disk: &D, layout: &StorageLayout) -> Result<Option<Marker>, String> {
    let path = marker_path(layout);
    match disk.read(&path) {
        Ok(bytes) => Marker::decode(&bytes)
            .map(Some)
            .map_err(|why| format!("{}: {why}", path.display())),
        Err(DiskError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error.to_string()),
    }
}

/// Removes the marker, durably.
pub fn remove_marker<D: Disk>(disk: &mut D, layout: &StorageLayout) -> Result<(), DiskError> {
    let path = marker_path(layout);
    disk.remove(&path)?;
    match path.parent() {
        Some(dir) => disk.sync_dir(dir),
        None => Ok(()),
    }
}

/// Why a backup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{0} holds no WAL: not a member's data directory")]
    NoData(String),
    #[error("the WAL cannot be read ({0}): check it with `stetutl wal verify`")]
    Wal(#[from] wal::WalError),
    #[error("{0} already holds a member's data: back up into a new directory")]
    TargetInUse(String),
    #[error("{0}")]
    Disk(#[from] DiskError),
}

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub marker: Marker,
    pub files: u64,
    pub bytes: u64,
}

/// Copies the stopped member's data directory `from` into `to` (which must hold no member's
/// data), marker first. `progress` is called with the bytes copied so far after each piece.
pub fn copy_data_dir<D: Disk>(
    disk: &mut D,
    from: &StorageLayout,
    to: &StorageLayout,
    mut progress: impl FnMut(u64),
) -> Result<Copied, OfflineError> {
    if !wal::Wal::exists(disk, &from.wal_dir) {
        return Err(OfflineError::NoData(from.wal_dir.display().to_string()));
    }
    if wal::Wal::exists(disk, &to.wal_dir) || disk.len(&to.engine_file).is_ok() {
        return Err(OfflineError::TargetInUse(to.wal_dir.display().to_string()));
    }
    let inspection = wal::inspect(disk, &from.wal_dir)?;
    let recovered = &inspection.recovered;
    let marker = Marker {
        member_id: recovered.metadata.member_id,
        cluster_id: recovered.metadata.cluster_id,
        commit_index: recovered.hard_state.commit,
    };
    let member_dir = to
        .engine_file
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    disk.create_dir_all(&member_dir)?;
    write_durably(disk, &marker_path(to), &marker.encode())?;
    let mut copied = Copied {
        marker,
        files: 0,
        bytes: 0,
    };
    disk.create_dir_all(&to.wal_dir)?;
    for segment in &inspection.segments {
        let name = segment.path.file_name().unwrap_or_default();
        copy_file(
            disk,
            &segment.path,
            &to.wal_dir.join(name),
            &mut copied,
            &mut progress,
        )?;
    }
    disk.sync_dir(&to.wal_dir)?;
    disk.create_dir_all(&to.snap_dir)?;
    let mut snapshots = disk.list(&from.snap_dir).unwrap_or_default();
    snapshots.retain(|name| name.ends_with(".snap"));
    for name in snapshots {
        let (source, target) = (from.snap_dir.join(&name), to.snap_dir.join(&name));
        copy_file(disk, &source, &target, &mut copied, &mut progress)?;
    }
    disk.sync_dir(&to.snap_dir)?;
    if disk.len(&from.engine_file).is_ok() {
        copy_file(
            disk,
            &from.engine_file,
            &to.engine_file,
            &mut copied,
            &mut progress,
        )?;
    }
    disk.sync_dir(&member_dir)?;
    Ok(copied)
}

fn write_durably<D: Disk>(disk: &mut D, path: &Path, bytes: &[u8]) -> Result<(), DiskError> {
    disk.create(path)?;
    disk.append(path, bytes)?;
    disk.sync(path)?;
    match path.parent() {
        Some(dir) => disk.sync_dir(dir),
        None => Ok(()),
    }
}

fn copy_file<D: Disk>(
    disk: &mut D,
    from: &Path,
    to: &Path,
    copied: &mut Copied,
    progress: &mut impl FnMut(u64),
) -> Result<(), DiskError> {
    let len = disk.len(from)?;
    disk.create(to)?;
    let mut buffer = vec![0; COPY_CHUNK_BYTES];
    let mut offset = 0;
    while offset < len {
        let piece = usize::try_from(len - offset)
            .map_or(COPY_CHUNK_BYTES, |left| left.min(COPY_CHUNK_BYTES));
        disk.read_at(from, offset, &mut buffer[..piece])?;
        disk.append(to, &buffer[..piece])?;
        offset += piece as u64;
        copied.bytes += piece as u64;
        progress(copied.bytes);
    }
    disk.sync(to)?;
    copied.files += 1;
    Ok(())
}

#[cfg(test)]
mod tests;
