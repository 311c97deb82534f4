//! Loading the store from its engine at a restart: one pass over the `key` table in revision
//! order rebuilds the index (etcd rebuilds its `treeIndex` the same way); the values stay in the
//! file. Anything the file holds that a store could not have written is an error naming the file
//! and the row, never a guess.

use std::sync::OnceLock;

use super::history::compact_versions;
use super::row::{decode_key_value, Row};
use super::snapshot::{check_row, check_sequence};
use super::{KeyIndex, KvError, KvStore, Stretches, Values, Version};
use crate::engine::{Engine, EngineError, Revision, View};

impl KvStore {
    /// The store the engine's last commit holds: its index rebuilt, values left in the file.
    pub fn from_engine(engine: Engine) -> Result<Self, EngineError> {
        let view = engine.view()?;
        let damaged = |what: String| EngineError::Damaged {
            path: engine.path().to_path_buf(),
            what,
        };
        let current = view.current_revision()?;
        let compacted = view.compact_revision()?;
        if current > i64::MAX as u64 / 4 || compacted > current {
            let what = format!("revisions out of range: current {current}, compacted {compacted}");
            return Err(damaged(what));
        }
        // Every row checked alone in revision order, then sorted by key and revision and checked
        // against the key's previous version, and the index built from the sorted run in one go.
        // Far cheaper than inserting rows in revision order, which is random key order, into the
        // index one by one. The revisions are read and sorted in two halves, side by side on the
        // machine's cores (`side_by_side`), and the two sorted runs merged.
        let count = view.revision_count()?;
        let middle = compacted + (current - compacted) / 2;
        let (first, second) = side_by_side(
            || scan(&view, 0, Some(middle), current as i64, count / 2),
            || scan(&view, middle, None, current as i64, count / 2),
        );
        let (mut first, mut second) = (first?, second?);
        if let Some(why) = first.failure.take().or(second.failure.take()) {
            return Err(damaged(why));
        }
        let newest = first.newest.max(second.newest);
        drop(view);
        let shared = first.shared_with(&second);
        side_by_side(|| first.sort(shared), || second.sort(shared));
        // Grouped side by side too: the keys before a middle one, and the others.
        let (low, high) = split_at_middle_key(first.rows, second.rows);
        let compacted = compacted as i64;
        let (low, high) = side_by_side(
            || group_by_key(merge(low.0, low.1), compacted),
            || group_by_key(merge(high.0, high.1), compacted),
        );
        let ((low, dropped_low), (high, dropped_high)) = (
            low.map_err(|e| damaged(e.to_string()))?,
            high.map_err(|e| damaged(e.to_string()))?,
        );
        let (mut stretches, later) = side_by_side(
            || Stretches::build_from(low.iter().map(|(k, v)| (k, v)), compacted),
            || Stretches::build_from(high.iter().map(|(k, v)| (k, v)), compacted),
        );
        stretches.append(later, high.first().map(|(key, _)| key.as_ref()));
        // Sorted and unique: the map is built without comparing keys again.
        let keys: KeyIndex = low.into_iter().chain(high).collect();
        let live_keys = keys
            .values()
            .filter(|versions| versions.last().is_some_and(Version::is_live))
            .count();
        let mut values = Values::new(engine)?;
        // Revisions a compaction dropped that were not deleted from the file yet: deleted by
        // the next commits.
        for (main, sub) in dropped_low.into_iter().chain(dropped_high) {
            values.forget(main, sub);
        }
        Ok(KvStore {
            keys,
            current_revision: current.max(newest).max(1) as i64,
            compact_revision: compacted,
            live_keys,
            stretches,
            values,
            prev_values_in_events: true,
            compaction_pass: None,
        })
    }
}

/// A key's first eight bytes as a big-endian number (zero-padded): comparing these first orders
/// most keys without a byte-wise comparison; equal prefixes fall back to the whole keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct KeyPrefix(u64);

impl KeyPrefix {
    fn of(key: &[u8]) -> Self {
        let mut bytes = [0; 8];
        let len = key.len().min(8);
        bytes[..len].copy_from_slice(&key[..len]);
        KeyPrefix(u64::from_be_bytes(bytes))
    }
}

/// A row as the load sorts it: the key's prefix after the bytes all keys share, the key, and
/// the version the row holds.
type LoadRow = (KeyPrefix, Vec<u8>, Version);

/// The rows of one range of revisions, each checked alone.
struct Half {
    rows: Vec<LoadRow>,
    /// The newest main revision read.
    newest: u64,
    /// Why a row was refused (the scan stops there).
    failure: Option<String>,
}

/// Reads the revisions from main revision `from` up to `to` (excluded; to the end if `None`),
/// checking each row alone. `expected` rows are reserved at once: growing by doubling would
/// copy the rows and fault in fresh pages again and again (a damaged count only fails to
/// reserve).
fn scan(
    view: &View,
    from: u64,
    to: Option<u64>,
    current: i64,
    expected: u64,
) -> Result<Half, EngineError> {
    let mut half = Half {
        rows: Vec::new(),
        newest: 0,
        failure: None,
    };
    let expected = usize::try_from(expected).unwrap_or(usize::MAX);
    let _ = half
        .rows
        .try_reserve_exact(expected.saturating_add(expected / 8));
    view.revision_bytes_from(
        Revision { main: from, sub: 0 },
        |revision, tombstone, bytes| {
            if to.is_some_and(|to| revision.main >= to) {
                return false;
            }
            half.newest = revision.main;
            let checked = stored_row(revision, tombstone, bytes).and_then(|row| {
                Ok((
                    row.key,
                    check_row(&row, current).map_err(|e| e.to_string())?,
                ))
            });
            match checked {
                Ok((key, version)) => {
                    half.rows.push((KeyPrefix(0), key.to_vec(), version));
                    true
                }
                Err(why) => {
                    let at = format!("revision {}.{}", revision.main, revision.sub);
                    half.failure = Some(format!("{at}: {why}"));
                    false
                }
            }
        },
    )?;
    Ok(half)
}

impl Half {
    /// How many leading bytes every key of both halves shares. Keys often share a long prefix
    /// (Kubernetes': `/registry/`), which would make the first eight bytes equal for every key
    /// and every comparison a whole-key one: the prefix compared first is taken after them.
    fn shared_with(&self, other: &Half) -> usize {
        let firsts = [self.rows.first(), other.rows.first()];
        let Some((_, first, _)) = firsts.into_iter().flatten().next() else {
            return 0;
        };
        self.rows
            .iter()
            .chain(&other.rows)
            .fold(first.len(), |shared, (_, key, _)| {
                let common = first
                    .iter()
                    .zip(key)
                    .take(shared)
                    .take_while(|(a, b)| a == b)
                    .count();
                shared.min(common)
            })
    }

    /// Sorts the rows by key, each key's by revision, comparing the bytes after the first
    /// `shared` first.
    fn sort(&mut self, shared: usize) {
        for (prefix, key, _) in self.rows.iter_mut() {
            *prefix = KeyPrefix::of(key.get(shared..).unwrap_or_default());
        }
        self.rows.sort_unstable_by(load_order);
    }
}

/// By key, then revision (the prefix, derived from the key, decides most comparisons).
fn load_order(a: &LoadRow, b: &LoadRow) -> std::cmp::Ordering {
    a.0.cmp(&b.0)
        .then_with(|| a.1.cmp(&b.1))
        .then_with(|| (a.2.main, a.2.sub).cmp(&(b.2.main, b.2.sub)))
}

/// The rows of two sorted runs, in order.
fn merge(first: Vec<LoadRow>, second: Vec<LoadRow>) -> impl Iterator<Item = LoadRow> {
    let (mut first, mut second) = (first.into_iter().peekable(), second.into_iter().peekable());
    std::iter::from_fn(move || match (first.peek(), second.peek()) {
        (Some(a), Some(b)) if load_order(a, b).is_gt() => second.next(),
        (Some(_), _) => first.next(),
        (None, _) => second.next(),
    })
}

/// How the runtime runs two pieces of work at the same time: the core spawns nothing itself.
pub type SideBySide = fn(&mut (dyn FnMut() + Send), &mut (dyn FnMut() + Send));

/// The runtime's way of running work side by side, if it registered one.
static SIDE_BY_SIDE: OnceLock<SideBySide> = OnceLock::new();

/// Lets loads run their two halves at the same time with `run` (the server registers its
/// threads; without it, the halves run one after the other). The first registration stands.
pub fn set_side_by_side(run: SideBySide) {
    let _ = SIDE_BY_SIDE.set(run);
}

/// Runs `a` and `b`, at the same time if the runtime registered a way to, and returns both
/// results.
fn side_by_side<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    let (mut a, mut b) = (Some(a), Some(b));
    let (mut a_result, mut b_result) = (None, None);
    {
        let mut run_a = || a_result = a.take().map(|work| work());
        let mut run_b = || b_result = b.take().map(|work| work());
        match SIDE_BY_SIDE.get() {
            Some(run) => run(&mut run_a, &mut run_b),
            None => {
                run_a();
                run_b();
            }
        }
    }
    match (a_result, b_result) {
        (Some(a), Some(b)) => (a, b),
        _ => panic!("the side-by-side runner did not run both pieces of work"),
    }
}

/// Two sorted runs, each cut at the first key of the runs' middle: (the rows of both runs
/// before it, the rest of both). No key has rows on both sides.
#[allow(clippy::type_complexity)]
fn split_at_middle_key(
    mut first: Vec<LoadRow>,
    mut second: Vec<LoadRow>,
) -> ((Vec<LoadRow>, Vec<LoadRow>), (Vec<LoadRow>, Vec<LoadRow>)) {
    let middle = match (first.get(first.len() / 2), second.get(second.len() / 2)) {
        (Some(row), _) | (None, Some(row)) => (row.0, row.1.clone()),
        (None, None) => return ((first, second), (Vec::new(), Vec::new())),
    };
    let before = |row: &LoadRow| (row.0, row.1.as_slice()) < (middle.0, middle.1.as_slice());
    let first_high = first.split_off(first.partition_point(before));
    let second_high = second.split_off(second.partition_point(before));
    ((first, second), (first_high, second_high))
}

/// The index's entries from rows sorted by key (each key's rows in revision order), in key
/// order: each key's versions compacted at `compacted` (the file may still hold revisions a
/// compaction dropped, whose deletes were spread over later commits; they are returned beside
/// the entries), then each kept version checked against the key's previous one.
#[allow(clippy::type_complexity)]
fn group_by_key(
    rows: impl Iterator<Item = LoadRow>,
    compacted: i64,
) -> Result<(Vec<(Box<[u8]>, Vec<Version>)>, Vec<(i64, i64)>), KvError> {
    let mut grouped: Vec<(Vec<u8>, Vec<Version>)> = Vec::new();
    for (_, key, version) in rows {
        match grouped.last_mut() {
            Some((last_key, versions)) if *last_key == key => versions.push(version),
            _ => grouped.push((key, vec![version])),
        }
    }
    let mut dropped = Vec::new();
    for (key, versions) in &mut grouped {
        dropped.extend(compact_versions(versions, compacted).map(|v| (v.main, v.sub())));
        let mut previous = None;
        for version in versions.iter() {
            check_sequence(key, version, previous, compacted)?;
            previous = Some(version);
        }
    }
    grouped.retain(|(_, versions)| !versions.is_empty());
    let entries = grouped
        .into_iter()
        .map(|(key, mut versions)| {
            versions.shrink_to_fit();
            (key.into_boxed_slice(), versions)
        })
        .collect();
    Ok((entries, dropped))
}

/// One stored revision as a snapshot would list it, borrowed from the engine's row.
fn stored_row(revision: Revision, tombstone: bool, bytes: &[u8]) -> Result<Row<'_>, String> {
    let kv = decode_key_value(bytes).map_err(|e| format!("the key-value does not decode: {e}"))?;
    let (Ok(main), Ok(sub)) = (i64::try_from(revision.main), i64::try_from(revision.sub)) else {
        return Err("revision out of range".to_string());
    };
    if kv.mod_revision != main {
        return Err(format!("the key-value says revision {}", kv.mod_revision));
    }
    Ok(Row {
        key: kv.key,
        main,
        sub,
        tombstone,
        kv: Some(kv),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, main: i64) -> LoadRow {
        (
            KeyPrefix::of(key.as_bytes()),
            key.as_bytes().to_vec(),
            Version::put(main, 0, main, 1, 0, 0),
        )
    }

    fn keys_and_revisions(rows: impl Iterator<Item = LoadRow>) -> Vec<(String, i64)> {
        rows.map(|(_, key, version)| (String::from_utf8(key).unwrap(), version.main))
            .collect()
    }

    #[test]
    fn the_two_halves_split_between_keys_and_merge_in_key_and_revision_order() {
        let first = vec![row("a", 1), row("b", 3), row("c", 5)];
        let second = vec![row("a", 8), row("b", 9), row("d", 10)];
        let (low, high) = split_at_middle_key(first, second);
        assert_eq!(
            keys_and_revisions(merge(low.0, low.1)),
            [("a".to_string(), 1), ("a".to_string(), 8)],
            "the middle key's rows of both runs go above the cut"
        );
        assert_eq!(
            keys_and_revisions(merge(high.0, high.1)),
            [("b", 3), ("b", 9), ("c", 5), ("d", 10)].map(|(k, m)| (k.to_string(), m)),
        );
    }

    #[test]
    fn an_empty_half_splits_and_merges_too() {
        let (low, high) = split_at_middle_key(Vec::new(), vec![row("a", 1), row("b", 2)]);
        assert_eq!(
            keys_and_revisions(merge(low.0, low.1)),
            [("a".to_string(), 1)]
        );
        assert_eq!(
            keys_and_revisions(merge(high.0, high.1)),
            [("b".to_string(), 2)]
        );
        let (low, high) = split_at_middle_key(Vec::new(), Vec::new());
        assert_eq!(
            merge(low.0, low.1).count() + merge(high.0, high.1).count(),
            0
        );
    }

    #[test]
    fn side_by_side_returns_both_results() {
        assert_eq!(side_by_side(|| 1, || "two"), (1, "two"));
    }
}
