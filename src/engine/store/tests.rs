//! The engine's tables: round trips, views held while writes go on, damaged values, and
//! crashes at any change of a run of batches.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};

use super::*;
use crate::disk::{CrashFault, PowerCut, SharedDisk};
use crate::engine::ENGINE_FILE;

const CACHE_BYTES: usize = 64 * 1024;

fn engine_path(disk: &SharedDisk) -> PathBuf {
    let mut handle = disk.clone();
    handle.create_dir_all(Path::new("/member")).unwrap();
    handle.sync_dir(Path::new("/")).unwrap();
    PathBuf::from("/member").join(ENGINE_FILE)
}

/// A new engine on a fresh simulated disk.
fn fresh_engine() -> Engine {
    let disk = SharedDisk::new();
    let path = engine_path(&disk);
    Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap()
}

fn put(main: u64, sub: u64, bytes: &[u8]) -> (Revision, Stored) {
    let stored = Stored {
        tombstone: false,
        key_value: bytes.to_vec(),
    };
    (Revision { main, sub }, stored)
}

#[test]
fn every_table_round_trips_and_the_applied_index_survives_a_reopen() {
    let disk = SharedDisk::new();
    let path = engine_path(&disk);
    let mut engine = Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap();
    assert_eq!(engine.applied(), Applied::default());
    let mut batch = Batch::new();
    let (r2, v2) = put(2, 0, b"a=1");
    let (r3, v3) = put(3, 1, b"b=2");
    batch.put_revision(r2, v2.clone());
    batch.put_revision(r3, v3.clone());
    let tombstone = Stored {
        tombstone: true,
        key_value: b"a".to_vec(),
    };
    batch.put_revision(Revision { main: 4, sub: 0 }, tombstone.clone());
    batch.put_lease(7, b"lease 7".to_vec());
    batch.put_lease(8, b"lease 8".to_vec());
    batch.delete_lease(8);
    batch.put_member(10, b"m10".to_vec());
    batch.put_member(11, b"m11".to_vec());
    batch.remove_member(11);
    batch.set_compact_revision(2);
    batch.set_applied(Applied { index: 5, term: 2 });
    engine.commit(batch, true).unwrap();
    let mut later = Batch::new();
    later.delete_revision(r2);
    later.set_applied(Applied { index: 6, term: 2 });
    engine.commit(later, false).unwrap();
    drop(engine);
    let engine = Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap();
    assert_eq!(engine.applied(), Applied { index: 6, term: 2 });
    let view = engine.view().unwrap();
    assert_eq!(view.revision(r2).unwrap(), None);
    assert_eq!(view.revision(r3).unwrap(), Some(v3.clone()));
    let mut seen = Vec::new();
    view.revisions_from(Revision { main: 3, sub: 0 }, |r, s| {
        seen.push((r, s));
        true
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![(r3, v3), (Revision { main: 4, sub: 0 }, tombstone)]
    );
    assert_eq!(view.leases().unwrap(), vec![(7, b"lease 7".to_vec())]);
    assert_eq!(view.members().unwrap(), vec![(10, b"m10".to_vec())]);
    assert_eq!(view.removed_members().unwrap(), vec![11]);
    assert_eq!(view.compact_revision().unwrap(), 2);
}

#[test]
fn a_batch_opens_only_the_tables_it_changes() {
    let mut engine = fresh_engine();
    let mut batch = Batch::new();
    let (revision, stored) = put(2, 0, b"a=1");
    batch.put_revision(revision, stored.clone());
    batch.set_applied(Applied { index: 3, term: 1 });
    engine.commit(batch, false).unwrap();
    let view = engine.view().unwrap();
    assert_eq!(view.revision(revision).unwrap(), Some(stored));
    for (name, exists) in [
        ("key", view.table(KEY).unwrap().is_some()),
        ("meta", view.table(META).unwrap().is_some()),
        ("lease", view.table(LEASE).unwrap().is_some()),
        ("members", view.table(MEMBERS).unwrap().is_some()),
        (
            "members_removed",
            view.table(MEMBERS_REMOVED).unwrap().is_some(),
        ),
    ] {
        let changed = matches!(name, "key" | "meta");
        assert_eq!(exists, changed, "table {name}");
    }
    assert_eq!(
        view.leases().unwrap(),
        Vec::new(),
        "a missing table reads as empty"
    );
    assert_eq!(view.members().unwrap(), Vec::new());
}

#[test]
fn a_view_keeps_its_state_while_writes_go_on() {
    let mut engine = fresh_engine();
    let mut batch = Batch::new();
    let (r, v) = put(2, 0, b"old");
    batch.put_revision(r, v.clone());
    engine.commit(batch, false).unwrap();
    let view = engine.view().unwrap();
    let mut batch = Batch::new();
    batch.put_revision(r, put(2, 0, b"new").1);
    engine.commit(batch, true).unwrap();
    assert_eq!(view.revision(r).unwrap(), Some(v));
    assert_eq!(
        engine
            .view()
            .unwrap()
            .revision(r)
            .unwrap()
            .unwrap()
            .key_value,
        b"new"
    );
}

#[test]
fn a_damaged_or_misplaced_value_is_reported_naming_the_file_and_the_row() {
    let disk = SharedDisk::new();
    let path = engine_path(&disk);
    let mut engine = Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap();
    let mut batch = Batch::new();
    let (r, v) = put(8, 0, b"a=1");
    batch.put_revision(r, v);
    batch.put_lease(5, b"lease".to_vec());
    engine.commit(batch, false).unwrap();
    let (good, lease) = {
        let read = engine.db.begin_read().unwrap();
        let key = read.open_table(KEY).unwrap();
        let lease = read.open_table(LEASE).unwrap();
        let good = key.get((8, 0)).unwrap().unwrap().value().to_vec();
        let lease = lease.get(5).unwrap().unwrap().value().to_vec();
        (good, lease)
    };
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x10;
    let write = engine.db.begin_write().unwrap();
    {
        let mut key = write.open_table(KEY).unwrap();
        key.insert((9, 0), &[7u8, 1, 2][..]).unwrap(); // too short to be a value
        key.insert((9, 1), flipped.as_slice()).unwrap(); // one bit flipped
        key.insert((9, 2), good.as_slice()).unwrap(); // another row's value
        key.insert((9, 3), lease.as_slice()).unwrap(); // a lease's value
    }
    write.commit().unwrap();
    let view = engine.view().unwrap();
    assert!(view.revision(r).unwrap().is_some());
    for sub in 0..4 {
        let error = view.revision(Revision { main: 9, sub }).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("/member/engine.redb"), "{message}");
        assert!(message.contains(&format!("revision 9.{sub}")), "{message}");
    }
}

/// The state after each batch, as the test builds it.
type States = Vec<BTreeMap<(u64, u64), Vec<u8>>>;

/// Batches 1, 2, ... (batch i applies entry i) until the power goes, a crash, a reopen: the
/// file must hold exactly the state after the batch its applied index names, at least the
/// last durable one, so replaying the WAL from there is exact. With `split_applied` (the
/// planted mistake the check must catch), each batch's applied index is committed apart from
/// its data. `Err` says what the check found.
fn crash_run(seed: u64, split_applied: bool) -> Result<(), String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let disk = SharedDisk::new();
    let path = engine_path(&disk);
    let (cut, breaker) = PowerCut::new(disk.clone());
    let mut engine = Engine::open(crate::disk::handles(&cut), &path, CACHE_BYTES).unwrap();
    breaker.cut_after(rng.gen_range(0..800));
    let mut states: States = vec![BTreeMap::new()];
    let mut last_durable = 0;
    let mut interrupted = None;
    for index in 1..60u64 {
        let mut state = states[states.len() - 1].clone();
        let mut batch = Batch::new();
        for sub in 0..rng.gen_range(1..8) {
            let bytes = vec![rng.gen::<u8>(); rng.gen_range(1..2000)];
            let (revision, stored) = put(index, sub, &bytes);
            state.insert((index, sub), bytes);
            batch.put_revision(revision, stored);
        }
        if rng.gen_bool(0.2) {
            if let Some(&old) = state.keys().next() {
                state.remove(&old);
                batch.delete_revision(Revision {
                    main: old.0,
                    sub: old.1,
                });
            }
        }
        let applied = Applied { index, term: 1 };
        let durable = rng.gen_bool(0.3);
        let committed = if split_applied {
            let mut marker = Batch::new();
            marker.set_applied(applied);
            engine
                .commit(batch, durable)
                .and_then(|()| engine.commit(marker, durable))
        } else {
            batch.set_applied(applied);
            engine.commit(batch, durable)
        };
        match committed {
            Ok(()) => {
                states.push(state);
                if durable {
                    last_durable = index;
                }
            }
            Err(_) => {
                interrupted = Some(index);
                states.push(state);
                break;
            }
        }
    }
    // A clean close makes everything durable; a cut during the close may or may not have.
    drop(engine);
    let last = states.len() as u64 - 1;
    if !breaker.is_cut() {
        last_durable = last;
    } else if interrupted.is_none() {
        interrupted = Some(last);
    }
    disk.lock().crash(CrashFault::TearUnsynced, &mut rng);
    let engine = Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap();
    let applied = engine.applied().index;
    if applied < last_durable || applied > interrupted.unwrap_or(last_durable) {
        return Err(format!(
            "seed {seed}: applied index {applied}, last durable {last_durable}"
        ));
    }
    let mut found = BTreeMap::new();
    let view = engine.view().map_err(|e| e.to_string())?;
    view.revisions_from(Revision { main: 0, sub: 0 }, |r, s| {
        found.insert((r.main, r.sub), s.key_value);
        true
    })
    .map_err(|e| e.to_string())?;
    if found != states[applied as usize] {
        return Err(format!(
            "seed {seed}: the data is not the state at index {applied}"
        ));
    }
    Ok(())
}

#[test]
fn after_a_crash_the_file_holds_exactly_the_state_its_applied_index_names() {
    for seed in 0..150 {
        crash_run(seed, false).unwrap();
    }
}

/// The check above catches an applied index committed apart from its data.
#[test]
fn the_check_catches_an_applied_index_committed_apart_from_its_data() {
    let caught = (0..60)
        .filter(|&seed| crash_run(seed, true).is_err())
        .count();
    assert!(caught > 0, "no seed of 60 noticed the split commits");
}

#[test]
fn a_batch_replacing_everything_may_start_over_at_a_lower_applied_index() {
    let mut engine = Engine::in_memory(CACHE_BYTES).unwrap();
    let mut batch = Batch::new();
    let (revision, stored) = put(9, 0, b"old");
    batch.put_revision(revision, stored);
    batch.set_applied(Applied { index: 40, term: 3 });
    engine.commit(batch, false).unwrap();
    let mut fresh = Batch::new();
    fresh.replace_all();
    fresh.set_applied(Applied { index: 3, term: 1 });
    engine.commit(fresh, false).unwrap();
    assert_eq!(engine.applied(), Applied { index: 3, term: 1 });
    let view = engine.view().unwrap();
    assert_eq!(
        view.revision(revision).unwrap(),
        None,
        "the old state is gone"
    );
}
