//! Opening a WAL whose segment files hold the input (layout: `stet_fuzz::WalOpenInput`). When
//! open succeeds, the WAL must take an append and reopen to exactly what it had plus the append.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raft::eraftpb::HardState;
use stet::wal::Wal;
use stet_fuzz::{entry, wal_dir, WalOpenInput};

fuzz_target!(|data: &[u8]| {
    let Some(input) = WalOpenInput::parse(data) else {
        return;
    };
    let dir = wal_dir();
    let disk = input.disk(&dir);
    let Ok((mut wal, recovered)) = Wal::open(disk, &dir, input.opts) else {
        return;
    };
    // Entries come back in index order without gaps.
    for pair in recovered.entries.windows(2) {
        assert_eq!(pair[0].index.checked_add(1), Some(pair[1].index));
    }
    let Some(index) = recovered
        .entries
        .last()
        .map_or(Some(1), |e| e.index.checked_add(1))
    else {
        return;
    };
    let term = recovered.entries.last().map_or(1, |e| e.term);
    let new = entry(term, index, b"appended after open");
    let hard_state = HardState {
        term,
        vote: 1,
        commit: index,
        ..HardState::default()
    };
    wal.append(std::slice::from_ref(&new), Some(&hard_state))
        .expect("append after a successful open");
    wal.sync().expect("sync after a successful open");
    let disk = wal.into_disk();
    let (_, reopened) = Wal::open(disk, &dir, input.opts).expect("reopen after an append");
    let mut expected = recovered.entries.clone();
    expected.push(new);
    assert_eq!(reopened.entries, expected);
    assert_eq!(reopened.hard_state, hard_state);
    assert_eq!(reopened.metadata, recovered.metadata);
    assert_eq!(reopened.snapshot_markers, recovered.snapshot_markers);
    assert_eq!(reopened.torn_tail, None);
});
