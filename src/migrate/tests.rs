//! Tests of the migration from etcd over a backup a real etcd 3.4 wrote
//! (`tests/fixtures/make-etcd-snapshot.sh` made it; the script lists what it holds).

use proptest::prelude::*;

use super::bbolt::{Bolt, BoltError};
use super::*;
use crate::engine::Engine;
use crate::proto::etcdserverpb::RangeRequest;
use crate::state::StateMachine;

const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/etcd-3.4-snapshot.db");
const LEASE: i64 = 0x32ad_a23e_ac08_b00a;
const PAGE_BYTES: usize = 4096;

fn fixture_database() -> &'static [u8] {
    database(FIXTURE, false).expect("the fixture's hash checks out")
}

fn imported_state() -> (Imported, StateMachine) {
    let mut engine = Engine::in_memory(1 << 20).unwrap();
    let imported = import(fixture_database(), &mut engine, |_| {}).unwrap();
    engine.start_new_cluster(7).unwrap();
    let (state, _, _) = StateMachine::from_engine(engine, 1).unwrap();
    (imported, state)
}

/// A version as read: create revision, mod revision, version, value length, lease.
type Read = (i64, i64, i64, usize, i64);

fn get(state: &StateMachine, key: &str, revision: i64) -> Result<Vec<Read>, String> {
    let request = RangeRequest {
        key: key.as_bytes().to_vec(),
        revision,
        ..RangeRequest::default()
    };
    let response = state.kv.range(&request).map_err(|e| e.to_string())?;
    Ok(response
        .kvs
        .iter()
        .map(|kv| {
            (
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                kv.value.len(),
                kv.lease,
            )
        })
        .collect())
}

#[test]
fn an_etcd_backup_carries_over_keys_history_compaction_and_leases() {
    let (imported, state) = imported_state();
    assert_eq!(
        imported,
        Imported {
            current_revision: 13,
            compact_revision: 11,
            // /a@3 and @13, /leased, 300 txn rows, /big, /gone and its deletion.
            revisions: 306,
            leases: 1,
            left_behind: Vec::new(),
            carried: Vec::new(),
        }
    );
    assert_eq!(state.kv.current_revision(), 13);
    assert_eq!(state.kv.compact_revision(), 11);
    assert_eq!(get(&state, "/a", 0).unwrap(), [(2, 13, 3, 1, 0)]);
    assert_eq!(get(&state, "/a", 12).unwrap(), [(2, 3, 2, 1, 0)]);
    assert_eq!(get(&state, "/leased", 0).unwrap(), [(6, 6, 1, 1, LEASE)]);
    assert_eq!(get(&state, "/big", 0).unwrap(), [(10, 10, 1, 10_000, 0)]);
    assert_eq!(get(&state, "/rows/2-57", 0).unwrap(), [(8, 8, 1, 100, 0)]);
    assert_eq!(get(&state, "/gone", 0).unwrap(), []);
    assert_eq!(get(&state, "/gone", 11).unwrap(), [(11, 11, 1, 1, 0)]);
    assert_eq!(get(&state, "/b", 0).unwrap(), []);
    assert!(get(&state, "/a", 10).unwrap_err().contains("compacted"));
    assert_eq!(state.kv.key_count(), 303);
    assert!(state.lessor.exists(LEASE));
}

#[test]
#[cfg(feature = "server")]
fn etcds_users_roles_and_auth_come_over_with_their_bcrypt_hashes() {
    const AUTH: &[u8] = include_bytes!("../../tests/fixtures/etcd-3.4-auth-snapshot.db");
    let mut engine = Engine::in_memory(1 << 20).unwrap();
    let imported = import(database(AUTH, false).unwrap(), &mut engine, |_| {}).unwrap();
    assert_eq!(imported.left_behind, Vec::<String>::new());
    assert_eq!(
        imported.carried,
        ["1 users and 1 roles with their permissions, authentication enabled"]
    );
    assert_eq!(imported.revisions, 1);
    engine.start_new_cluster(7).unwrap();
    let (state, _, _) = StateMachine::from_engine(engine, 1).unwrap();
    let auth = state.auth();
    assert!(auth.is_enabled());
    assert!(auth.is_admin("root"));
    let roles = auth.role_list(&Default::default()).roles;
    assert_eq!(roles, ["r"]);
    // etcd's hash, made by Go's bcrypt for "pw" (tests/fixtures/make-etcd-snapshot.sh).
    let (hash, _) = auth.password_hash("root").unwrap();
    assert!(hash.starts_with("$2a$"), "{hash}");
    assert!(bcrypt::verify("pw", hash).unwrap());
    assert!(!bcrypt::verify("wrong", hash).unwrap());
}

#[test]
fn the_trailer_is_checked_as_etcd_checks_it() {
    assert!(database(FIXTURE, false).is_ok());
    let mut damaged = FIXTURE.to_vec();
    damaged[5 * PAGE_BYTES + 100] ^= 1;
    assert!(matches!(
        database(&damaged, false),
        Err(MigrateError::HashMismatch)
    ));
    assert_eq!(database(&damaged, true).unwrap().len(), FIXTURE.len() - 32);
    // A member's `db` file copied by hand has no trailer: only --skip-hash-check takes it.
    let bare = &FIXTURE[..FIXTURE.len() - 32];
    assert!(matches!(database(bare, false), Err(MigrateError::NoHash)));
    assert_eq!(database(bare, true).unwrap(), bare);
    assert!(looks_like_etcd_backup(FIXTURE));
    assert!(!looks_like_etcd_backup(crate::backup::MAGIC));
}

#[test]
fn the_reader_walks_branch_and_overflow_pages_in_key_order() {
    let bolt = Bolt::open(fixture_database()).unwrap();
    assert_eq!(bolt.page_size(), PAGE_BYTES);
    let key = bolt.bucket(b"key").unwrap().unwrap();
    let mut rows = Vec::new();
    key.for_each(|k, v| {
        rows.push((k.to_vec(), v.len()));
        true
    })
    .unwrap();
    assert_eq!(rows.len(), 306);
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "keys in order");
    assert!(
        rows.iter().any(|(_, len)| *len > PAGE_BYTES),
        "a value on overflow pages"
    );
    assert!(bolt.bucket(b"no such bucket").unwrap().is_none());
    let branches = pages_with_flags(fixture_database(), 0x01);
    assert!(!branches.is_empty(), "the fixture has branch pages");
}

/// The page numbers whose header has `flags`.
fn pages_with_flags(database: &[u8], flags: u16) -> Vec<usize> {
    (2..database.len() / PAGE_BYTES)
        .filter(|&page| {
            let at = page * PAGE_BYTES;
            u64::from_le_bytes(database[at..at + 8].try_into().unwrap()) == page as u64
                && u16::from_le_bytes([database[at + 8], database[at + 9]]) == flags
        })
        .collect()
}

#[test]
fn a_tree_that_loops_is_damage_not_a_hang() {
    let mut database = fixture_database().to_vec();
    let branch = pages_with_flags(&database, 0x01)[0];
    // The branch's first child becomes the branch itself.
    let child = branch * PAGE_BYTES + 16 + 8;
    database[child..child + 8].copy_from_slice(&(branch as u64).to_le_bytes());
    let mut engine = Engine::in_memory(1 << 20).unwrap();
    let error = import(&database, &mut engine, |_| {}).unwrap_err();
    assert!(
        matches!(&error, MigrateError::Bolt(BoltError::Damaged { what, .. }) if what.contains("twice")),
        "{error}"
    );
}

#[test]
fn a_damaged_meta_page_falls_back_to_the_other() {
    let mut database = fixture_database().to_vec();
    database[16 + 20] ^= 0xff; // the first meta page's root, under its checksum
    let bolt = Bolt::open(&database).unwrap();
    assert!(bolt.bucket(b"key").unwrap().is_some());
    database[PAGE_BYTES + 16 + 20] ^= 0xff;
    assert!(matches!(Bolt::open(&database), Err(BoltError::NotBolt(_))));
}

#[test]
fn files_that_are_not_etcd_backups_are_refused() {
    let mut engine = Engine::in_memory(1 << 20).unwrap();
    for bytes in [&b""[..], &[0u8; 8192][..], &FIXTURE[..PAGE_BYTES]] {
        assert!(import(bytes, &mut engine, |_| {}).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Damage anywhere in the file is an error or a state that loads, never a panic or a hang.
    #[test]
    fn damage_never_panics(
        changes in prop::collection::vec((0..FIXTURE.len() - 32, any::<u8>()), 1..8),
        cut in prop::option::of(0..FIXTURE.len() - 32),
    ) {
        let mut database = fixture_database().to_vec();
        for (at, byte) in changes {
            database[at] = byte;
        }
        if let Some(cut) = cut {
            database.truncate(cut);
        }
        let mut engine = Engine::in_memory(1 << 20).unwrap();
        if import(&database, &mut engine, |_| {}).is_ok() {
            engine.start_new_cluster(7).unwrap();
            let _ = StateMachine::from_engine(engine, 1);
        }
    }
}
