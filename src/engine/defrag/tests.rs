//! Online defragmentation on `MemDisk`: writes made while the copy is built all reach it, the
//! file shrinks, views of the old file read on until they end, a copy that falls behind gives up
//! and leaves the live file serving, and a power cut at any change of it leaves a whole state.

use std::path::Path;

use rand::{Rng, SeedableRng};

use super::*;
use crate::disk::{PowerCut, SharedDisk};
use crate::engine::store::Stored;
use crate::engine::tests::{
    all_revisions, fragmented_engine, member_dir, power_off_and_reopen, revision, CACHE_BYTES,
};
use crate::engine::{Revision, ENGINE_FILE};

/// A batch that writes revisions `mains` (1 KiB each), deletes `gone`, and ends at `index`.
fn writes(mains: std::ops::Range<u64>, gone: &[u64], index: u64) -> Batch {
    let mut batch = Batch::new();
    for main in mains {
        let stored = Stored {
            tombstone: false,
            key_value: vec![main as u8; 1024],
        };
        batch.put_revision(revision(main), stored);
    }
    for &main in gone {
        batch.delete_revision(revision(main));
    }
    batch.set_applied(Applied { index, term: 2 });
    batch
}

/// Steps until the defragmentation ends.
fn finish(engine: &mut Engine, max_bytes: usize) -> Result<u32, DefragError> {
    for steps in 1..10_000 {
        match engine.defragment_step(max_bytes)? {
            DefragStep::Working => {}
            DefragStep::Done => return Ok(steps),
            DefragStep::Idle => panic!("the defragmentation stopped by itself"),
        }
    }
    panic!("the defragmentation never finished");
}

fn names(disk: &SharedDisk) -> Vec<String> {
    disk.lock().list(Path::new("/member")).unwrap()
}

#[test]
fn writes_made_while_copying_reach_the_copy_and_the_file_shrinks() {
    let disk = SharedDisk::new();
    let path = member_dir(&disk).join(ENGINE_FILE);
    let mut engine = fragmented_engine(&disk, &path);
    let before_bytes = engine.file_bytes();
    let old_view = engine.view().unwrap();
    let old_rows = all_revisions(&engine);
    assert!(engine.start_defragment().unwrap());
    assert!(!engine.start_defragment().unwrap(), "one at a time");
    // Writes and deletes between the copy's steps, some of the copied rows among them.
    let mut index = 302;
    let mut done = false;
    for round in 0..20u64 {
        let from = 400 + round * 3;
        let gone = if round == 5 { vec![291, 292] } else { vec![] };
        engine
            .commit(writes(from..from + 3, &gone, index), round % 4 == 0)
            .unwrap();
        index += 1;
        let step = engine.defragment_step(2048).unwrap();
        assert_eq!(
            step,
            DefragStep::Working,
            "round {round}: writes keep it busy"
        );
    }
    while !done {
        done = engine.defragment_step(2048).unwrap() == DefragStep::Done;
    }
    let live = all_revisions(&engine);
    assert_eq!(
        live.len(),
        10 - 2 + 60,
        "{:?}",
        live.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(!live.iter().any(|(r, _)| r.main == 291 || r.main == 292));
    assert_eq!(
        engine.applied(),
        Applied {
            index: index - 1,
            term: 2
        }
    );
    assert!(
        engine.file_bytes() * 2 < before_bytes,
        "{before_bytes} bytes before, {} after",
        engine.file_bytes()
    );
    // The old view reads the old file, renamed aside, until it ends.
    let mut old_seen = Vec::new();
    old_view
        .revisions_from(revision(0), |revision, stored| {
            old_seen.push((revision, stored));
            true
        })
        .unwrap();
    assert_eq!(old_seen, old_rows);
    assert_eq!(names(&disk), vec![ENGINE_FILE, "engine.redb.retired-1"]);
    drop(old_view);
    engine.commit(writes(500..501, &[], index), false).unwrap();
    let closable = engine.take_closable();
    assert_eq!(
        closable.len(),
        1,
        "the old file is closed once its last view ended"
    );
    closable.into_iter().for_each(RetiredFile::close);
    assert_eq!(names(&disk), vec![ENGINE_FILE]);
    // The copy is the file: reopened, it holds the same state.
    let rows = all_revisions(&engine);
    drop(engine);
    let reopened = Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap();
    assert_eq!(all_revisions(&reopened), rows);
    assert_eq!(reopened.applied().index, index);
}

#[test]
fn a_copy_that_falls_too_far_behind_gives_up_and_the_file_serves_on() {
    let disk = SharedDisk::new();
    let path = member_dir(&disk).join(ENGINE_FILE);
    let mut engine = fragmented_engine(&disk, &path);
    assert!(engine.start_defragment().unwrap());
    engine.limit_defrag_queue(8 << 10);
    engine.commit(writes(400..410, &[], 302), false).unwrap();
    let gave_up = engine.defragment_step(2048).unwrap_err();
    assert!(
        matches!(&gave_up, DefragError::Abandoned(why) if why.contains("were written while it copied")),
        "{gave_up}"
    );
    assert!(!engine.defragmenting());
    assert_eq!(names(&disk), vec![ENGINE_FILE], "the copy is removed");
    assert_eq!(all_revisions(&engine).len(), 20);
    // A new one, with nothing written meanwhile, finishes.
    assert!(engine.start_defragment().unwrap());
    finish(&mut engine, 1 << 20).unwrap();
    assert_eq!(all_revisions(&engine).len(), 20);
}

/// A leader's engine whose state is at index 400, on a disk of its own.
fn leader_at_400() -> Engine {
    let disk = SharedDisk::new();
    let mut leader = fragmented_engine(&disk, &member_dir(&disk).join(ENGINE_FILE));
    leader.commit(writes(400..402, &[], 400), true).unwrap();
    leader
}

#[test]
fn a_state_installed_from_a_leader_drops_the_copy() {
    let disk = SharedDisk::new();
    let mut engine = fragmented_engine(&disk, &member_dir(&disk).join(ENGINE_FILE));
    let leader = leader_at_400();
    assert!(engine.start_defragment().unwrap());
    assert_eq!(engine.defragment_step(2048).unwrap(), DefragStep::Working);
    let mut export = Export::new(Arc::new(leader.view().unwrap()));
    engine.clear_staged().unwrap();
    while let Some(chunk) = export.next_chunk(4096).unwrap() {
        engine.stage_chunk(&chunk).unwrap();
    }
    engine
        .install_staged(Applied {
            index: 400,
            term: 2,
        })
        .unwrap();
    assert_eq!(engine.defragment_step(2048).unwrap(), DefragStep::Idle);
    assert_eq!(names(&disk), vec![ENGINE_FILE]);
    assert_eq!(all_revisions(&engine), all_revisions(&leader));
}

#[test]
fn a_transfer_under_way_keeps_its_staged_rows_from_a_defragmentation() {
    let disk = SharedDisk::new();
    let mut engine = fragmented_engine(&disk, &member_dir(&disk).join(ENGINE_FILE));
    let leader = leader_at_400();
    let mut export = Export::new(Arc::new(leader.view().unwrap()));
    engine.clear_staged().unwrap();
    let first = export.next_chunk(2048).unwrap().unwrap();
    engine.stage_chunk(&first).unwrap();
    // Refused while rows wait: the copy would hold the live tables only.
    let refused = engine.start_defragment().unwrap_err();
    assert!(
        matches!(&refused, DefragError::Abandoned(why) if why.contains("being received")),
        "{refused}"
    );
    assert!(!engine.defragmenting());
    // One started before the transfer began is given up by its next chunk.
    engine.clear_staged().unwrap();
    assert!(engine.start_defragment().unwrap());
    assert_eq!(engine.defragment_step(2048).unwrap(), DefragStep::Working);
    let mut export = Export::new(Arc::new(leader.view().unwrap()));
    let first = export.next_chunk(2048).unwrap().unwrap();
    engine.stage_chunk(&first).unwrap();
    assert!(!engine.defragmenting(), "staging gives the copy up");
    assert_eq!(engine.defragment_step(2048).unwrap(), DefragStep::Idle);
    assert_eq!(names(&disk), vec![ENGINE_FILE], "the copy is removed");
    while let Some(chunk) = export.next_chunk(2048).unwrap() {
        engine.stage_chunk(&chunk).unwrap();
    }
    engine
        .install_staged(Applied {
            index: 400,
            term: 2,
        })
        .unwrap();
    assert_eq!(all_revisions(&engine), all_revisions(&leader));
    // With the transfer installed, a defragmentation goes ahead.
    assert!(engine.start_defragment().unwrap());
    finish(&mut engine, 1 << 20).unwrap();
    assert_eq!(all_revisions(&engine), all_revisions(&leader));
}

#[test]
fn leftovers_are_settled_at_open() {
    let disk = SharedDisk::new();
    let dir = member_dir(&disk);
    let path = dir.join(ENGINE_FILE);
    let engine = fragmented_engine(&disk, &path);
    let rows = all_revisions(&engine);
    drop(engine);
    let mut handle = disk.clone();
    // The power went out between the swap's renames: the copy is the state.
    handle
        .rename(&path, &dir.join("engine.redb.retired-3"))
        .unwrap();
    handle.create(&dir.join("engine.redb.tmp")).unwrap();
    let copy = copy_path(&path);
    handle.create(&copy).unwrap();
    handle.remove(&copy).unwrap();
    // (a whole copy: the old file's bytes under the copy's name)
    let bytes = handle.read(&dir.join("engine.redb.retired-3")).unwrap();
    handle.create(&copy).unwrap();
    handle.append(&copy, &bytes).unwrap();
    let reopened = Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap();
    assert_eq!(all_revisions(&reopened), rows);
    assert_eq!(names(&disk), vec![ENGINE_FILE]);
    drop(reopened);
    // A copy cut short beside a whole file is dropped.
    handle.create(&copy).unwrap();
    handle.append(&copy, b"half a copy").unwrap();
    let reopened = Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap();
    assert_eq!(all_revisions(&reopened), rows);
    assert_eq!(names(&disk), vec![ENGINE_FILE]);
}

/// The state an engine must hold after a crash, given which commits returned.
fn check_recovered(
    seed: u64,
    reopened: &Engine,
    before: &[(Revision, Stored)],
    after: &[(Revision, Stored)],
    committed: bool,
) {
    let rows = all_revisions(reopened);
    if committed {
        assert_eq!(rows, after, "seed {seed}: the durable commit was lost");
    } else {
        assert!(
            rows == before || rows == after,
            "seed {seed}: a state neither before nor after"
        );
    }
}

/// A power cut at any change of an online defragmentation — the copy, the live commit made
/// meanwhile, the durable commit of the copy, either rename, the directory sync — leaves the
/// state of the last durable commit, whichever file holds it.
#[test]
fn a_crash_at_any_change_of_an_online_defragmentation_keeps_the_state() {
    let mut finished = 0;
    for seed in 0..150u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let disk = SharedDisk::new();
        let path = member_dir(&disk).join(ENGINE_FILE);
        let (cut_disk, breaker) = PowerCut::new(disk.clone());
        let mut engine = fragmented_engine(&cut_disk, &path);
        let before = all_revisions(&engine);
        let budget = seed * 2 + rng.gen_range(0..2);
        breaker.cut_after(budget);
        let mut committed = false;
        let outcome = (|| -> Result<(), String> {
            engine.start_defragment().map_err(|e| e.to_string())?;
            engine.defragment_step(4096).map_err(|e| e.to_string())?;
            engine
                .commit(writes(400..404, &[295], 302), true)
                .map_err(|e| e.to_string())?;
            committed = true;
            finish(&mut engine, 4096).map_err(|e| e.to_string())?;
            Ok(())
        })();
        let cut = breaker.is_cut();
        assert!(outcome.is_ok() || cut, "seed {seed}: {outcome:?}");
        finished += u32::from(!cut);
        let mut expected = before.clone();
        expected.retain(|(r, _)| r.main != 295);
        expected.extend((400..404).map(|main| {
            let stored = Stored {
                tombstone: false,
                key_value: vec![main as u8; 1024],
            };
            (revision(main), stored)
        }));
        drop(engine);
        let reopened = power_off_and_reopen(
            &disk,
            &path,
            &mut rng,
            &format!("seed {seed} (budget {budget})"),
        );
        check_recovered(seed, &reopened, &before, &expected, committed);
        assert_eq!(names(&disk), vec![ENGINE_FILE], "seed {seed}");
    }
    // The budgets reach past the end of a defragmentation: every change of one was cut at.
    assert!(
        (1..150).contains(&finished),
        "{finished} of 150 runs finished"
    );
}
