//! The engine on `MemDisk`: a file created and reopened, a crash at every possible change of a
//! run of commits (the power cut lands inside redb's commit, between its writes and its fsyncs),
//! and a damaged file refused with its name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::*;
use crate::disk::{CrashFault, Disk, DiskError, PowerCut, SharedDisk};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("t");
pub(super) const CACHE_BYTES: usize = 64 * 1024;

type Model = BTreeMap<u64, Vec<u8>>;

pub(super) fn member_dir(disk: &SharedDisk) -> PathBuf {
    let dir = PathBuf::from("/member");
    let mut handle = disk.clone();
    handle.create_dir_all(&dir).unwrap();
    handle.sync_dir(Path::new("/")).unwrap();
    dir
}

/// Everything in the table; empty if the table was never created.
fn contents(db: &redb::Database) -> Model {
    let read = db.begin_read().unwrap();
    let table = match read.open_table(TABLE) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Model::new(),
        Err(error) => panic!("{error}"),
    };
    table
        .iter()
        .unwrap()
        .map(|row| {
            let (k, v) = row.unwrap();
            (k.value(), v.value().to_vec())
        })
        .collect()
}

#[test]
fn a_new_engine_file_keeps_what_was_committed_across_a_reopen() {
    let disk = SharedDisk::new();
    let path = member_dir(&disk).join(ENGINE_FILE);
    let db = open(&|| disk.clone(), &path, CACHE_BYTES).unwrap();
    let write = db.begin_write().unwrap();
    write
        .open_table(TABLE)
        .unwrap()
        .insert(7, &b"seven"[..])
        .unwrap();
    write.commit().unwrap();
    drop(db);
    assert!(disk.lock().list(Path::new("/member")).unwrap() == vec![ENGINE_FILE]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    disk.lock().crash(CrashFault::LoseUnsynced, &mut rng);
    let db = open(&|| disk.clone(), &path, CACHE_BYTES).unwrap();
    assert_eq!(contents(&db), Model::from([(7, b"seven".to_vec())]));
}

/// A disk whose fsync does nothing: the planted fault the crash oracle must catch.
#[derive(Clone)]
struct LyingSync(PowerCut<SharedDisk>);

impl Disk for LyingSync {
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), DiskError> {
        self.0.create_dir_all(dir)
    }
    fn create(&mut self, path: &Path) -> Result<(), DiskError> {
        self.0.create(path)
    }
    fn append(&mut self, path: &Path, data: &[u8]) -> Result<(), DiskError> {
        self.0.append(path, data)
    }
    fn sync(&mut self, _: &Path) -> Result<(), DiskError> {
        Ok(())
    }
    fn sync_dir(&mut self, dir: &Path) -> Result<(), DiskError> {
        self.0.sync_dir(dir)
    }
    fn read(&self, path: &Path) -> Result<Vec<u8>, DiskError> {
        self.0.read(path)
    }
    fn truncate(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
        self.0.truncate(path, len)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> Result<(), DiskError> {
        self.0.rename(from, to)
    }
    fn remove(&mut self, path: &Path) -> Result<(), DiskError> {
        self.0.remove(path)
    }
    fn list(&self, dir: &Path) -> Result<Vec<String>, DiskError> {
        self.0.list(dir)
    }
    fn len(&mut self, path: &Path) -> Result<u64, DiskError> {
        self.0.len(path)
    }
    fn allocated_bytes(&mut self, path: &Path) -> Result<u64, DiskError> {
        self.0.allocated_bytes(path)
    }
    fn read_at(&mut self, path: &Path, offset: u64, out: &mut [u8]) -> Result<(), DiskError> {
        self.0.read_at(path, offset, out)
    }
    fn write_at(&mut self, path: &Path, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.0.write_at(path, offset, data)
    }
    fn set_len(&mut self, path: &Path, len: u64) -> Result<(), DiskError> {
        self.0.set_len(path, len)
    }
}

/// One run: commits (durable or not) until the power goes after `budget` changes, a crash, and
/// a reopen that must find the last durable commit, or the durable commit the cut interrupted.
/// With `lying_sync`, the engine's fsyncs do nothing; `Err` says what the oracle found.
fn crash_run(seed: u64, lying_sync: bool) -> Result<(), String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let disk = SharedDisk::new();
    let path = member_dir(&disk).join(ENGINE_FILE);
    let (cut_disk, breaker) = PowerCut::new(disk.clone());
    let budget = rng.gen_range(0..600);
    let cut_during_creation = rng.gen_bool(0.1);
    if cut_during_creation {
        breaker.cut_after(budget / 20);
    }
    let mut durable = Model::new();
    let mut model = Model::new();
    let mut interrupted = None;
    let opened = if lying_sync {
        open(&|| LyingSync(cut_disk.clone()), &path, CACHE_BYTES)
    } else {
        open(&|| cut_disk.clone(), &path, CACHE_BYTES)
    };
    if let Ok(db) = opened {
        if !cut_during_creation {
            breaker.cut_after(budget);
        }
        for _ in 0..40 {
            let mut next = model.clone();
            let durability = rng.gen_bool(0.4);
            match commit(&db, &mut rng, &mut next, durability) {
                Ok(()) => {
                    model = next;
                    if durability {
                        durable = model.clone();
                    }
                }
                Err(()) => {
                    if durability {
                        interrupted = Some(next);
                    }
                    break;
                }
            }
        }
    }
    // A clean close (the power never went) makes every commit durable; a cut during the close
    // may or may not have.
    if !breaker.is_cut() {
        durable = model.clone();
    } else if interrupted.is_none() {
        interrupted = Some(model.clone());
    }
    let fault = if rng.gen_bool(0.5) {
        CrashFault::LoseUnsynced
    } else {
        CrashFault::TearUnsynced
    };
    disk.lock().crash(fault, &mut rng);
    let db = open(&|| disk.clone(), &path, CACHE_BYTES)
        .map_err(|e| format!("seed {seed}: reopening after the crash failed: {e}"))?;
    let found = contents(&db);
    if found == durable || Some(&found) == interrupted.as_ref() {
        return Ok(());
    }
    Err(format!(
        "seed {seed} ({fault:?}, budget {budget}): found {} keys, the last durable commit had {}",
        found.len(),
        durable.len()
    ))
}

/// One write transaction of random puts and deletes applied to `model` too; `Err` if any step
/// failed (the power went).
fn commit(
    db: &redb::Database,
    rng: &mut impl Rng,
    model: &mut Model,
    durable: bool,
) -> Result<(), ()> {
    let mut write = db.begin_write().map_err(drop)?;
    if durable {
        // The engine's own durable commits are in two phases; quick repair as well for variety.
        match rng.gen_range(0..3) {
            0 => {}
            1 => write.set_two_phase_commit(true),
            _ => write.set_quick_repair(true),
        }
    } else {
        write.set_durability(Durability::None).map_err(drop)?;
    }
    {
        let mut table = write.open_table(TABLE).map_err(drop)?;
        for _ in 0..rng.gen_range(1..20) {
            let key = rng.gen_range(0..200u64);
            if rng.gen_bool(0.2) {
                table.remove(key).map_err(drop)?;
                model.remove(&key);
            } else {
                let value = vec![rng.gen::<u8>(); rng.gen_range(0..3000)];
                table.insert(key, value.as_slice()).map_err(drop)?;
                model.insert(key, value);
            }
        }
    }
    write.commit().map_err(drop)
}

#[test]
fn a_crash_at_any_change_of_a_commit_recovers_the_last_durable_commit() {
    for seed in 0..300 {
        crash_run(seed, false).unwrap();
    }
}

/// The oracle above catches an engine whose fsyncs do nothing.
#[test]
fn the_crash_oracle_catches_fsyncs_that_do_nothing() {
    // redb may also panic on the inconsistent file such a disk leaves: caught as well (that a
    // damaged file can make redb panic is why the engine must check what it opens).
    let caught = (0..50)
        .filter(|&seed| {
            std::panic::catch_unwind(|| crash_run(seed, true)).map_or(true, |r| r.is_err())
        })
        .count();
    assert!(caught > 0, "no seed of 50 noticed the lost commits");
}

#[test]
fn a_damaged_engine_file_is_refused_with_its_name() {
    let disk = SharedDisk::new();
    let path = member_dir(&disk).join(ENGINE_FILE);
    let mut handle = disk.clone();
    handle.create(&path).unwrap();
    handle.write_at(&path, 0, &[0x5a; 8192]).unwrap();
    let error = open(&|| disk.clone(), &path, CACHE_BYTES).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("/member/engine.redb"), "{message}");
}

/// What one flipped bit in a cleanly closed engine file does to reading it back.
#[derive(Debug, Default)]
struct FlipOutcomes {
    unchanged: usize,
    refused: usize,
    wrong: Vec<u64>,
    panicked: Vec<u64>,
}

/// Writes a few durable commits, flips one random bit of the closed file, and reads everything
/// back (in a `catch_unwind`, to count panics instead of dying of one) through the engine's
/// `open`, or with `plain_open` through redb's open without the integrity check.
fn flip_one_bit(seed: u64, plain_open: bool, outcomes: &mut FlipOutcomes) {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let disk = SharedDisk::new();
    let path = member_dir(&disk).join(ENGINE_FILE);
    let mut model = Model::new();
    {
        let db = open(&|| disk.clone(), &path, CACHE_BYTES).unwrap();
        for _ in 0..5 {
            commit(&db, &mut rng, &mut model, true).unwrap();
        }
    }
    let bytes = disk.lock().read(&path).unwrap();
    let offset = rng.gen_range(0..bytes.len());
    let flipped = bytes[offset] ^ (1 << rng.gen_range(0..8));
    disk.lock().corrupt_byte(&path, offset, flipped).unwrap();
    let read_back = catch_unwind(AssertUnwindSafe(|| {
        let db = if plain_open {
            let db = redb::Database::builder()
                .create_with_backend(DiskBackend::new(disk.clone(), &path))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            crate::engine::file::Db::new(db)
        } else {
            open(&|| disk.clone(), &path, CACHE_BYTES).map_err(|e| e.to_string())?
        };
        let read = db.begin_read().map_err(|e| e.to_string())?;
        let table = read.open_table(TABLE).map_err(|e| e.to_string())?;
        let mut found = Model::new();
        for row in table.iter().map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            found.insert(k.value(), v.value().to_vec());
        }
        Ok::<Model, String>(found)
    }));
    match read_back {
        Ok(Ok(found)) if found == model => outcomes.unchanged += 1,
        Ok(Ok(_)) => outcomes.wrong.push(seed),
        Ok(Err(error)) => {
            assert!(error.contains("engine.redb"), "seed {seed}: {error}");
            outcomes.refused += 1;
        }
        Err(_) => outcomes.panicked.push(seed),
    }
}

/// The engine opens its file with redb's integrity check: a flipped bit is then harmless (in
/// unused bytes) or refused, never read as wrong data, never a panic.
#[test]
fn a_flipped_bit_in_the_engine_file_is_refused_never_read_as_wrong_data() {
    let mut outcomes = FlipOutcomes::default();
    for seed in 0..300 {
        flip_one_bit(seed, false, &mut outcomes);
    }
    assert!(outcomes.wrong.is_empty(), "wrong data: {outcomes:?}");
    assert!(outcomes.panicked.is_empty(), "panics: {outcomes:?}");
    assert!(
        outcomes.refused > 0 && outcomes.unchanged > 0,
        "{outcomes:?}"
    );
}

/// The check above can fail: redb verifies page checksums only when it repairs, so a plain open
/// trusts a damaged file and reads wrong data (93 of 300 files in a trial).
#[test]
fn without_the_integrity_check_a_flipped_bit_is_read_as_wrong_data() {
    let mut outcomes = FlipOutcomes::default();
    for seed in 0..100 {
        flip_one_bit(seed, true, &mut outcomes);
    }
    assert!(!outcomes.wrong.is_empty(), "{outcomes:?}");
}

pub(super) fn revision(main: u64) -> Revision {
    Revision { main, sub: 0 }
}

pub(super) fn all_revisions(engine: &Engine) -> Vec<(Revision, Stored)> {
    let mut rows = Vec::new();
    let view = engine.view().unwrap();
    view.revisions_from(revision(0), |revision, stored| {
        rows.push((revision, stored));
        true
    })
    .unwrap();
    rows
}

#[test]
fn defragmenting_shrinks_the_file_and_keeps_the_state_and_is_refused_while_a_view_is_open() {
    let disk = SharedDisk::new();
    let path = member_dir(&disk).join(ENGINE_FILE);
    let mut engine = Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap();
    let value = vec![7u8; 4096];
    for main in 1..=600u64 {
        let mut batch = Batch::new();
        let stored = Stored {
            tombstone: false,
            key_value: value.clone(),
        };
        batch.put_revision(revision(main), stored);
        batch.set_applied(Applied {
            index: main,
            term: 1,
        });
        engine.commit(batch, main % 100 == 0).unwrap();
    }
    let mut batch = Batch::new();
    for main in 1..=590u64 {
        batch.delete_revision(revision(main));
    }
    batch.set_applied(Applied {
        index: 601,
        term: 1,
    });
    engine.commit(batch, true).unwrap();
    let kept = all_revisions(&engine);
    assert_eq!(kept.len(), 10);
    let before = engine.file_bytes();
    assert_eq!(
        before,
        disk.lock().len(&path).unwrap(),
        "the length is tracked"
    );

    let view = engine.view().unwrap();
    let refused = engine.defragment().unwrap_err();
    assert!(refused.to_string().contains("engine.redb"), "{refused}");
    drop(view);

    engine.defragment().unwrap();
    let after = engine.file_bytes();
    assert_eq!(after, disk.lock().len(&path).unwrap());
    assert!(after * 4 < before, "{before} bytes before, {after} after");
    assert_eq!(all_revisions(&engine), kept);
    assert_eq!(
        engine.applied(),
        Applied {
            index: 601,
            term: 1
        }
    );
    drop(engine);
    let reopened = Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap();
    assert_eq!(all_revisions(&reopened), kept);
    assert_eq!(
        reopened.applied(),
        Applied {
            index: 601,
            term: 1
        }
    );
}

/// An engine on `disk` with 300 revisions committed, then all but the last 10 deleted, durably.
pub(super) fn fragmented_engine<D: Disk + Clone + Send + Sync + 'static>(
    disk: &D,
    path: &Path,
) -> Engine {
    let mut engine = Engine::open(crate::disk::handles(disk), path, CACHE_BYTES).unwrap();
    commit_revisions(&mut engine, 300, 2048);
    delete_revisions(&mut engine, 290);
    engine
}

/// Deletes revisions 1 to `count` in one durable commit (applied index 301).
fn delete_revisions(engine: &mut Engine, count: u64) {
    let mut batch = Batch::new();
    for main in 1..=count {
        batch.delete_revision(revision(main));
    }
    batch.set_applied(Applied {
        index: 301,
        term: 1,
    });
    engine.commit(batch, true).unwrap();
}

/// Commits revisions 1 to `count` of `value_bytes` each, one per commit (applied index = the
/// revision), every 50th durably.
fn commit_revisions(engine: &mut Engine, count: u64, value_bytes: usize) {
    for main in 1..=count {
        let mut batch = Batch::new();
        let stored = Stored {
            tombstone: false,
            key_value: vec![main as u8; value_bytes],
        };
        batch.put_revision(revision(main), stored);
        batch.set_applied(Applied {
            index: main,
            term: 1,
        });
        engine.commit(batch, main % 50 == 0).unwrap();
    }
}

/// redb doubles its file as it grows: the part not written yet takes no space, and the size the
/// quota counts is the space taken, not the length.
#[test]
fn the_size_counts_the_space_the_file_takes_not_its_length() {
    let disk = SharedDisk::new();
    let path = member_dir(&disk).join(ENGINE_FILE);
    let mut engine = Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap();
    let mut holes_seen = false;
    for main in 1..=400u64 {
        let mut batch = Batch::new();
        let stored = Stored {
            tombstone: false,
            key_value: vec![main as u8; 4096],
        };
        batch.put_revision(revision(main), stored);
        batch.set_applied(Applied {
            index: main,
            term: 1,
        });
        engine.commit(batch, main % 50 == 0).unwrap();
        let (size, length) = (engine.size_bytes(), engine.file_bytes());
        assert!(size <= length, "revision {main}: {size} > {length}");
        assert!(
            size >= main * 4096,
            "revision {main}: {size} bytes hold less than the data"
        );
        assert_eq!(size, disk.clone().allocated_bytes(&path).unwrap());
        holes_seen |= size + (length / 4) < length;
    }
    assert!(
        holes_seen,
        "the file never had a hole worth a quarter of it"
    );
}

/// The power goes out (unsynced writes lost or torn, at random) and the engine file is opened
/// again; panics naming `run` if it is refused.
pub(super) fn power_off_and_reopen(
    disk: &SharedDisk,
    path: &Path,
    rng: &mut rand_chacha::ChaCha8Rng,
    run: &str,
) -> Engine {
    let fault = if rng.gen_bool(0.5) {
        CrashFault::LoseUnsynced
    } else {
        CrashFault::TearUnsynced
    };
    disk.lock().crash(fault, rng);
    Engine::open(crate::disk::handles(disk), path, CACHE_BYTES)
        .unwrap_or_else(|e| panic!("{run}, {fault:?}: {e}"))
}

/// A power cut at any change of a defragmentation leaves the state whole: redb moves pages in
/// durable steps, so a restart finds the state before or after, never a mix.
#[test]
fn a_crash_at_any_change_of_a_defragmentation_keeps_the_state() {
    let mut finished = 0;
    for seed in 0..120u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let disk = SharedDisk::new();
        let path = member_dir(&disk).join(ENGINE_FILE);
        let (cut_disk, breaker) = PowerCut::new(disk.clone());
        let mut engine = fragmented_engine(&cut_disk, &path);
        let kept = all_revisions(&engine);
        let budget = seed * 3 + rng.gen_range(0..3);
        breaker.cut_after(budget);
        let defragmented = engine.defragment();
        let cut = breaker.is_cut();
        assert!(defragmented.is_ok() || cut, "seed {seed}: {defragmented:?}");
        finished += u32::from(!cut);
        drop(engine);
        let reopened = power_off_and_reopen(
            &disk,
            &path,
            &mut rng,
            &format!("seed {seed} (budget {budget})"),
        );
        assert_eq!(
            all_revisions(&reopened),
            kept,
            "seed {seed} (budget {budget})"
        );
        assert_eq!(
            reopened.applied(),
            Applied {
                index: 301,
                term: 1
            }
        );
    }
    // The budgets reach past the end of a defragmentation: every change of one was cut at.
    assert!(
        (1..120).contains(&finished),
        "{finished} of 120 runs finished"
    );
}

/// The bytes in use count the pages the tables hold, not the free pages a deletion left: they
/// fall when revisions are deleted while the file stays as long, and a defragmentation brings the
/// file down to about them.
#[test]
fn the_bytes_in_use_count_the_tables_pages_not_the_free_ones() {
    let disk = SharedDisk::new();
    let path = member_dir(&disk).join(ENGINE_FILE);
    let mut engine = Engine::open(crate::disk::handles(&disk), &path, CACHE_BYTES).unwrap();
    assert!(engine.view().unwrap().bytes_in_use().unwrap() < 64 * 1024);
    commit_revisions(&mut engine, 300, 2048);
    let full = engine.view().unwrap().bytes_in_use().unwrap();
    assert!(
        full >= 300 * 2048,
        "{full} bytes in use hold less than the data"
    );
    assert!(
        full <= engine.size_bytes(),
        "{full} > {}",
        engine.size_bytes()
    );

    delete_revisions(&mut engine, 290);
    let kept = engine.view().unwrap().bytes_in_use().unwrap();
    assert!(
        kept >= 10 * 2048,
        "{kept} bytes in use hold less than the data"
    );
    assert!(
        kept * 10 < full,
        "{full} bytes in use before deleting, {kept} after"
    );
    assert!(
        kept * 10 < engine.size_bytes(),
        "the free pages are not in use"
    );

    engine.defragment().unwrap();
    assert_eq!(engine.view().unwrap().bytes_in_use().unwrap(), kept);
    let size = engine.size_bytes();
    assert!(
        kept <= size && size < kept * 4 + 256 * 1024,
        "{kept} bytes in use, {size} in all"
    );
}
