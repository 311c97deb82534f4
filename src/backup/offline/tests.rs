//! Offline backups over a simulated disk: the copy holds what the member made durable, its
//! marker first, everything durable once the copy returns.

use std::path::Path;

use raft::eraftpb::{Entry, HardState};
use rand::SeedableRng;

use super::*;
use crate::disk::{CrashFault, MemDisk};
use crate::node::Persist;
use crate::storage::MemberStorage;
use crate::wal::{Metadata, WalOptions};

const META: Metadata = Metadata {
    member_id: 0xabc,
    cluster_id: 0xdef,
};

fn layout(dir: &str) -> StorageLayout {
    StorageLayout::new(Path::new(dir), None)
}

/// A stopped member's data directory at `/from`: several WAL segments, a commit index of 30,
/// a snapshot file and an engine file.
fn member_disk() -> MemDisk {
    let options = WalOptions {
        segment_size_bytes: 1024,
    };
    let from = layout("/from");
    let mut storage = MemberStorage::create(MemDisk::new(), from.clone(), META, options).unwrap();
    let entries: Vec<Entry> = (1..=40)
        .map(|index| Entry {
            index,
            term: 2,
            data: vec![index as u8; 100].into(),
            ..Default::default()
        })
        .collect();
    let persist = Persist {
        ready_number: 1,
        hard_state: Some(HardState {
            term: 2,
            vote: 0xabc,
            commit: 30,
            ..Default::default()
        }),
        entries,
        snapshot: None,
        must_sync: true,
    };
    storage.persist(&persist).unwrap();
    let mut disk = storage.into_disk();
    for (path, bytes) in [
        (
            from.snap_dir.join("0000000000000002-0000000000000010.snap"),
            vec![7u8; 3000],
        ),
        (
            from.engine_file.clone(),
            vec![9u8; 3 * COPY_CHUNK_BYTES + 17],
        ),
    ] {
        disk.create(&path).unwrap();
        disk.append(&path, &bytes).unwrap();
        disk.sync(&path).unwrap();
    }
    disk.sync_dir(&from.snap_dir).unwrap();
    disk.sync_dir(from.engine_file.parent().unwrap()).unwrap();
    disk
}

#[test]
fn a_backup_copies_every_file_durably_behind_its_marker() {
    let mut disk = member_disk();
    let (from, to) = (layout("/from"), layout("/to"));
    let mut reported = 0;
    let copied = copy_data_dir(&mut disk, &from, &to, |bytes| reported = bytes).unwrap();
    let marker = Marker {
        member_id: 0xabc,
        cluster_id: 0xdef,
        commit_index: 30,
    };
    assert_eq!(copied.marker, marker);
    assert_eq!(reported, copied.bytes);
    assert!(
        copied.files >= 4,
        "segments, a snapshot and the engine: {copied:?}"
    );
    // All of it survives a power cut right after the copy.
    disk.crash(
        CrashFault::LoseUnsynced,
        &mut rand::rngs::StdRng::seed_from_u64(1),
    );
    assert_eq!(read_marker(&disk, &to), Ok(Some(marker)));
    assert_eq!(
        disk.read(&to.engine_file).unwrap(),
        disk.read(&from.engine_file).unwrap()
    );
    let snap = "0000000000000002-0000000000000010.snap";
    assert_eq!(disk.read(&to.snap_dir.join(snap)).unwrap(), vec![7u8; 3000]);
    let options = WalOptions::default();
    let (_, original, _) = MemberStorage::open(disk.clone(), from, options, None).unwrap();
    let (_, copy, report) = MemberStorage::open(disk.clone(), to.clone(), options, None).unwrap();
    assert_eq!(copy.hard_state, original.hard_state);
    assert_eq!(copy.entries, original.entries);
    assert_eq!(report.metadata, Some(META));

    remove_marker(&mut disk, &to).unwrap();
    assert_eq!(read_marker(&disk, &to), Ok(None));
}

#[test]
fn a_copy_cut_short_is_fenced_by_its_marker() {
    let mut disk = member_disk();
    let (from, to) = (layout("/from"), layout("/to"));
    // A snapshot file cannot be written: the marker and the WAL are there already.
    disk.create_dir_all(&to.snap_dir).unwrap();
    let snap = to.snap_dir.join("0000000000000002-0000000000000010.snap");
    disk.create(&snap).unwrap();
    assert!(copy_data_dir(&mut disk, &from, &to, |_| {}).is_err());
    assert!(matches!(read_marker(&disk, &to), Ok(Some(_))));
}

#[test]
fn a_backup_needs_a_member_and_a_new_directory() {
    let mut disk = member_disk();
    let error = copy_data_dir(&mut disk, &layout("/nothing"), &layout("/to"), |_| {});
    assert!(matches!(error, Err(OfflineError::NoData(_))));
    copy_data_dir(&mut disk, &layout("/from"), &layout("/to"), |_| {}).unwrap();
    let again = copy_data_dir(&mut disk, &layout("/from"), &layout("/to"), |_| {});
    assert!(matches!(again, Err(OfflineError::TargetInUse(_))));
    let onto_itself = copy_data_dir(&mut disk, &layout("/from"), &layout("/from"), |_| {});
    assert!(matches!(onto_itself, Err(OfflineError::TargetInUse(_))));
}

#[test]
fn markers_read_back_and_refuse_other_files() {
    let marker = Marker {
        member_id: u64::MAX,
        cluster_id: 1,
        commit_index: 12345,
    };
    assert_eq!(Marker::decode(&marker.encode()), Ok(marker));
    assert!(Marker::decode(b"something else\n").is_err());
    assert!(Marker::decode(b"stet offline backup\nmember_id=zz\n").is_err());
    assert!(Marker::decode(&[0xff, 0xfe]).is_err());
}
