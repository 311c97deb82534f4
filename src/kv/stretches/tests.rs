//! The stretches against walking the index: after every write, compaction step, snapshot and
//! rebuild, every stretch's counts match its keys at every readable revision, and counting any
//! range at any readable revision, whole or in parts of any budget, gives what a walk gives.

use proptest::prelude::*;

use super::super::{range_bounds, visible_at, KvStore};
use super::SPLIT_KEYS;
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest};

#[derive(Debug, Clone)]
enum Op {
    Put(u8),
    Delete(u8),
    DeleteRange(u8, u8),
    /// Compact at a revision `n` back from the current one, stepping `keys` keys at once.
    Compact {
        back: u8,
        keys: u8,
    },
    CompactStep(u8),
    Restore,
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k:03}").into_bytes()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..90).prop_map(Op::Put),
        3 => (0u8..90).prop_map(Op::Delete),
        1 => (0u8..90, 0u8..30).prop_map(|(from, len)| Op::DeleteRange(from, from.saturating_add(len))),
        1 => (0u8..40, 1u8..20).prop_map(|(back, keys)| Op::Compact { back, keys }),
        1 => (1u8..20).prop_map(Op::CompactStep),
        1 => Just(Op::Restore),
    ]
}

fn apply(store: &mut KvStore, op: &Op) {
    let put = |k| PutRequest {
        key: key(k),
        value: vec![k; 3],
        ..Default::default()
    };
    match *op {
        Op::Put(k) => {
            store.put(&put(k), &|_| true).expect("a put");
        }
        Op::Delete(k) => {
            let req = DeleteRangeRequest {
                key: key(k),
                ..Default::default()
            };
            store.delete_range(&req).expect("a delete");
        }
        Op::DeleteRange(from, to) => {
            let req = DeleteRangeRequest {
                key: key(from),
                range_end: key(to),
                ..Default::default()
            };
            store.delete_range(&req).expect("a delete of a range");
        }
        Op::Compact { back, keys } => {
            let revision = store.current_revision() - i64::from(back);
            if revision > store.compact_revision() && store.begin_compaction(revision).is_ok() {
                store.compact_step(usize::from(keys));
            }
        }
        Op::CompactStep(keys) => {
            store.compact_step(usize::from(keys));
        }
        Op::Restore => {
            let snapshot = store.to_snapshot().expect("a snapshot");
            *store = KvStore::from_snapshot(&snapshot).expect("its restore");
        }
    }
}

fn check(store: &KvStore) {
    let (compacted, current) = (store.compact_revision, store.current_revision);
    store.stretches.check(&store.keys, compacted, current);
}

/// What walking the index gives.
fn walked(store: &KvStore, start: &[u8], end: &[u8], revision: i64) -> i64 {
    store
        .keys
        .range::<[u8], _>(range_bounds(start, end))
        .filter(|(_, versions)| visible_at(versions, revision).is_some())
        .count() as i64
}

/// Counting in parts of `budget`, each going on after the key the last stopped after.
fn counted_in_parts(
    store: &KvStore,
    start: &[u8],
    end: &[u8],
    revision: i64,
    budget: usize,
) -> i64 {
    let (mut lower, upper) = range_bounds(start, end);
    let mut total = 0;
    for _ in 0..10_000 {
        let counted = store
            .stretches
            .count(&store.keys, (lower, upper), revision, budget);
        total += counted.count;
        match counted.stopped_after {
            Some(key) => lower = std::ops::Bound::Excluded(key),
            None => return total,
        }
    }
    panic!("counting in parts of {budget} made no progress");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn stretches_count_what_a_walk_counts(
        ops in proptest::collection::vec(op(), 1..220),
        queries in proptest::collection::vec((0u8..100, 0u8..100, 0u8..60, 1usize..9), 12),
    ) {
        let mut store = KvStore::new();
        for op in &ops {
            apply(&mut store, op);
            check(&store);
        }
        for (from, len, back, budget) in queries {
            let (start, end) = (key(from), key(from.saturating_add(len)));
            let revision = (store.current_revision() - i64::from(back)).max(store.compact_revision()).max(1);
            let expected = walked(&store, &start, &end, revision);
            prop_assert_eq!(counted_in_parts(&store, &start, &end, revision, usize::MAX), expected);
            prop_assert_eq!(counted_in_parts(&store, &start, &end, revision, budget), expected);
            // The range from a key on (`\0` ends it nowhere), and a single key.
            prop_assert_eq!(counted_in_parts(&store, &start, b"\0", revision, budget), walked(&store, &start, b"\0", revision));
            prop_assert_eq!(counted_in_parts(&store, &start, b"", revision, budget), walked(&store, &start, b"", revision));
        }
    }
}

/// A store of `n` keys put one after another.
fn store_of(n: u8) -> KvStore {
    let mut store = KvStore::new();
    for k in 0..n {
        apply(&mut store, &Op::Put(k));
    }
    store
}

#[test]
fn a_count_takes_the_stretches_it_covers_whole_without_walking_them() {
    let store = store_of(200);
    check(&store);
    // 200 keys cost far less than 200: all but the ends are stretches taken whole.
    let counted = store.stretches.count(
        &store.keys,
        range_bounds(b"k", b"\0"),
        store.current_revision(),
        60,
    );
    assert_eq!((counted.count, counted.stopped_after), (200, None));
    // At the revision before the last puts, the stretches tell the keys not there yet.
    let earlier = store.current_revision() - 30;
    assert_eq!(counted_in_parts(&store, b"k", b"\0", earlier, 60), 170);
    // One key at a time, a walk: every part stops after one key.
    let one = store.stretches.count(
        &store.keys,
        range_bounds(b"k000", b"k010"),
        store.current_revision(),
        1,
    );
    assert_eq!((one.count, one.stopped_after), (1, Some(&b"k000"[..])));
}

#[test]
fn a_stretch_that_forgot_the_revision_asked_is_walked() {
    let mut store = store_of(30);
    // Churn one stretch's keys far past what it remembers.
    for _ in 0..10 {
        apply(&mut store, &Op::Delete(1));
        apply(&mut store, &Op::Put(1));
    }
    check(&store);
    let (start, end) = (key(0), key(30));
    for revision in 1..=store.current_revision() {
        assert_eq!(
            counted_in_parts(&store, &start, &end, revision, 4),
            walked(&store, &start, &end, revision),
            "at revision {revision}"
        );
    }
}

#[test]
fn compaction_removing_keys_merges_the_stretches_it_empties() {
    let mut store = store_of(80);
    apply(&mut store, &Op::DeleteRange(0, 75));
    // A tombstone at the compaction point stays; those before it go, and their keys with them.
    apply(&mut store, &Op::Put(79));
    let stretches_before = store.stretches.by_fence.len();
    store
        .compact(store.current_revision())
        .expect("a compaction");
    check(&store);
    assert!(
        store.stretches.by_fence.len() < stretches_before,
        "{} stretches, {stretches_before} before",
        store.stretches.by_fence.len()
    );
    assert_eq!(walked(&store, b"k", b"\0", store.current_revision()), 5);
}

#[test]
fn a_merge_that_comes_out_full_is_split_again() {
    // Rebuilt from a snapshot, 18 keys make stretches of 6: [k000, k006), [k006, k012), [k012..
    let mut store = store_of(18);
    apply(&mut store, &Op::Restore);
    assert_eq!(store.stretches.by_fence.len(), 3);
    // The first stretch filled to the brim, without splitting.
    for k in 0..6u8 {
        let put = PutRequest {
            key: format!("k{k:03}a").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        store.put(&put, &|_| true).expect("a put");
    }
    let first = &store.stretches.by_fence[&b""[..]];
    assert_eq!(first.keys, SPLIT_KEYS);
    // Three of the second stretch's keys compacted away: it merges into the first, which is
    // then too full and splits.
    apply(&mut store, &Op::DeleteRange(6, 9));
    apply(&mut store, &Op::Put(17));
    store
        .compact(store.current_revision())
        .expect("a compaction");
    check(&store);
    assert!(store
        .stretches
        .by_fence
        .values()
        .all(|s| s.keys <= SPLIT_KEYS));
    assert_eq!(walked(&store, b"k", b"\0", store.current_revision()), 21);
}
