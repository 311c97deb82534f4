//! The identity a member was forced under: `--force-new-cluster` restarts whoever a data
//! directory was made for — also a copy of another member's, started under another `--name` and
//! peer URL, whose flags describe another member ID and cluster ID than its WAL. The forced start
//! records the flags' identity in `<data-dir>/member/forced-identity`, so later restarts with the
//! same flags (without `--force-new-cluster`) are known to be this member, while flags of any
//! other identity (the wrong data directory, another cluster's token) are still refused.

use std::path::{Path, PathBuf};

use crate::disk::{Disk, DiskError};
use crate::storage::StorageLayout;
use crate::wal::Metadata;

const FILE_NAME: &str = "forced-identity";
const HEADER: &str = "stet forced identity";

fn path(layout: &StorageLayout) -> PathBuf {
    let member = layout.engine_file.parent().unwrap_or(Path::new("."));
    member.join(FILE_NAME)
}

fn encode(identity: Metadata) -> Vec<u8> {
    format!(
        "{HEADER}\nmember_id={:x}\ncluster_id={:x}\n",
        identity.member_id, identity.cluster_id
    )
    .into_bytes()
}

fn decode(bytes: &[u8]) -> Option<Metadata> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    (lines.next()? == HEADER).then_some(())?;
    let mut hex = |name: &str| -> Option<u64> {
        let value = lines.next()?.strip_prefix(name)?.strip_prefix('=')?;
        u64::from_str_radix(value, 16).ok()
    };
    Some(Metadata {
        member_id: hex("member_id")?,
        cluster_id: hex("cluster_id")?,
    })
}

/// The identity recorded by a forced start, if any (an unreadable record counts as none).
pub fn read<D: Disk>(disk: &D, layout: &StorageLayout) -> Option<Metadata> {
    decode(&disk.read(&path(layout)).ok()?)
}

/// Records `identity` durably (replacing an earlier record through a rename).
pub fn write<D: Disk>(
    disk: &mut D,
    layout: &StorageLayout,
    identity: Metadata,
) -> Result<(), DiskError> {
    let target = path(layout);
    let staged = target.with_extension("tmp");
    let _ = disk.remove(&staged);
    disk.create(&staged)?;
    disk.append(&staged, &encode(identity))?;
    disk.sync(&staged)?;
    disk.rename(&staged, &target)?;
    match target.parent() {
        Some(dir) => disk.sync_dir(dir),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemDisk;

    #[test]
    fn a_recorded_identity_reads_back_and_a_later_one_replaces_it() {
        let layout = StorageLayout::new(Path::new("/data"), None);
        let mut disk = MemDisk::new();
        disk.create_dir_all(Path::new("/data/member")).unwrap();
        assert_eq!(read(&disk, &layout), None);
        let first = Metadata {
            member_id: 0xabc,
            cluster_id: 0xdef,
        };
        write(&mut disk, &layout, first).unwrap();
        assert_eq!(read(&disk, &layout), Some(first));
        let second = Metadata {
            member_id: u64::MAX,
            cluster_id: 1,
        };
        write(&mut disk, &layout, second).unwrap();
        assert_eq!(read(&disk, &layout), Some(second));
        assert_eq!(decode(b"stet forced identity\nmember_id=zz\n"), None);
    }
}
