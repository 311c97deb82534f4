//! Counting a range of the key index without walking all of it. The index is cut into
//! *stretches* of consecutive keys (a few thousand each, `SPLIT_KEYS`), and each stretch keeps
//! how many of its keys are live now and its liveness changes since the compaction point — a
//! key created, deleted, or put again after a delete — with their revisions. A range's count at
//! a revision is then the keys walked in the (at most two) stretches it covers in part, plus,
//! for each stretch it covers whole, that stretch's live keys now less its changes after the
//! revision: O(`SPLIT_KEYS` + stretches) rather than O(keys in the range). etcd walks the range
//! (`treeIndex.Revisions`), so each page of a paginated list costs as much as the rest of the
//! list.
//!
//! Overwriting a live key changes no count, so the puts of a steady load touch nothing here.
//! A stretch remembers at most `CHANGES_KEPT` changes: past that its oldest are forgotten, and
//! counting at a revision older than what it remembers walks the stretch instead.
//!
//! Invariants (checked by `Stretches::check` in the tests): the first fence is the empty key
//! (no key is empty), so every key falls in exactly one stretch, [its fence, the next fence);
//! a stretch's `keys` and `live` are the index keys in it and those whose newest version is
//! live; its remembered changes are exactly its liveness changes after `forgotten_up_to`.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound::{self, Excluded, Included, Unbounded};

use super::{visible_at, KeyIndex, Version};

/// A stretch holding more keys is split in two. The simulator's and the unit tests' stores are
/// small: their stretches split, merge and forget after a few keys.
#[cfg(not(any(madsim, test)))]
const SPLIT_KEYS: usize = 4096;
#[cfg(any(madsim, test))]
const SPLIT_KEYS: usize = 12;
/// A stretch holding fewer keys (compaction removed them) is merged with a neighbour.
#[cfg(not(any(madsim, test)))]
const MERGE_KEYS: usize = 512;
#[cfg(any(madsim, test))]
const MERGE_KEYS: usize = 4;
/// Liveness changes a stretch remembers at most.
#[cfg(not(any(madsim, test)))]
const CHANGES_KEPT: usize = 256;
#[cfg(any(madsim, test))]
const CHANGES_KEPT: usize = 5;

/// A liveness change: at revision `main`, with the running sum of the changes' deltas (+1 a key
/// became live, −1 it stopped being live) up to and including this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    main: i64,
    running: i64,
}

/// One stretch's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stretch {
    /// Keys of the index in the stretch, live or not.
    keys: usize,
    /// Those whose newest version is live.
    live: usize,
    /// The liveness changes remembered, oldest first (non-decreasing `main`).
    changes: VecDeque<Change>,
    /// Changes at revisions up to this one may be forgotten: counts at earlier revisions walk.
    forgotten_up_to: i64,
    /// The running sum at the last change forgotten (0 before any).
    forgotten_sum: i64,
}

impl Stretch {
    /// Remembers a change of `delta` at `main`, forgetting what no reader can ask about (at or
    /// below the compaction point) and, past `CHANGES_KEPT`, the oldest.
    fn record(&mut self, main: i64, delta: i64, compacted: i64) {
        debug_assert!(delta == 1 || delta == -1, "a change is one key");
        debug_assert!(
            self.changes.back().is_none_or(|c| c.main <= main),
            "changes come in revision order"
        );
        while let Some(&front) = self.changes.front() {
            if front.main > compacted && self.changes.len() < CHANGES_KEPT {
                break;
            }
            self.forgotten_sum = front.running;
            self.forgotten_up_to = self.forgotten_up_to.max(front.main);
            self.changes.pop_front();
        }
        let running = self.running_total() + delta;
        self.changes.push_back(Change { main, running });
    }

    fn running_total(&self) -> i64 {
        self.changes
            .back()
            .map_or(self.forgotten_sum, |c| c.running)
    }

    /// Whether the live keys at `revision` can be told without walking the stretch.
    fn remembers(&self, revision: i64) -> bool {
        revision >= self.forgotten_up_to
    }

    /// The keys of the stretch live at `revision`: the live ones now, less the changes since.
    fn live_at(&self, revision: i64) -> i64 {
        assert!(
            self.remembers(revision),
            "a count before what the stretch remembers"
        );
        let up_to = self.changes.partition_point(|c| c.main <= revision);
        let sum_at = match up_to.checked_sub(1) {
            Some(last) => self.changes[last].running,
            None => self.forgotten_sum,
        };
        let live = self.live as i64 - (self.running_total() - sum_at);
        debug_assert!(
            (0..=self.keys as i64).contains(&live),
            "{live} live of {} keys at {revision}",
            self.keys
        );
        live
    }

    /// The counts of the keys `keys` yields, changes remembered from after `compacted`.
    fn summarize<'a>(keys: impl Iterator<Item = &'a Vec<Version>>, compacted: i64) -> Self {
        let mut stretch = Stretch {
            forgotten_up_to: compacted,
            ..Stretch::default()
        };
        let mut deltas: Vec<(i64, i64)> = Vec::new();
        for versions in keys {
            stretch.keys += 1;
            stretch.live += usize::from(versions.last().is_some_and(Version::is_live));
            // Versions up to the compaction point only tell whether the key was live there.
            let after = versions.partition_point(|v| v.main <= compacted);
            let mut was_live = after
                .checked_sub(1)
                .is_some_and(|before| versions[before].is_live());
            for version in &versions[after..] {
                let live = version.is_live();
                if live != was_live {
                    deltas.push((version.main, if live { 1 } else { -1 }));
                }
                was_live = live;
            }
        }
        // Only the newest `CHANGES_KEPT` are kept: found without sorting the others (a stretch
        // rebuilt after a fill holds a change per key).
        let forget = deltas.len().saturating_sub(CHANGES_KEPT);
        if forget > 0 {
            deltas.select_nth_unstable_by_key(forget, |&(main, _)| main);
        }
        let (forgotten, kept) = deltas.split_at_mut(forget);
        stretch.forgotten_sum = forgotten.iter().map(|&(_, delta)| delta).sum();
        if let Some(newest) = forgotten.iter().map(|&(main, _)| main).max() {
            stretch.forgotten_up_to = stretch.forgotten_up_to.max(newest);
        }
        kept.sort_unstable_by_key(|&(main, _)| main);
        for &(main, delta) in kept.iter() {
            stretch.record(main, delta, compacted);
        }
        stretch
    }
}

/// What a count covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counted<'a> {
    /// The keys visible at the revision among those covered.
    pub count: i64,
    /// When the budget ran out with keys of the range left: the last key covered.
    pub stopped_after: Option<&'a [u8]>,
}

/// The index's stretches, by fence (the lowest key a stretch may hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stretches {
    by_fence: BTreeMap<Box<[u8]>, Stretch>,
}

impl Default for Stretches {
    fn default() -> Self {
        Self::new()
    }
}

impl Stretches {
    /// The stretches of an empty index: one, from the empty key on.
    pub fn new() -> Self {
        let mut by_fence = BTreeMap::new();
        by_fence.insert(Box::default(), Stretch::default());
        Self { by_fence }
    }

    /// The stretches of `keys`, half full, changes remembered from after `compacted`.
    pub fn build(keys: &KeyIndex, compacted: i64) -> Self {
        Self::build_from(keys.iter(), compacted)
    }

    /// As [`Stretches::build`], from the index's entries in key order.
    pub fn build_from<'a>(
        entries: impl Iterator<Item = (&'a Box<[u8]>, &'a Vec<Version>)>,
        compacted: i64,
    ) -> Self {
        let mut by_fence = BTreeMap::new();
        let mut fence: Box<[u8]> = Box::default();
        let mut walk = entries.peekable();
        loop {
            let taken = walk
                .by_ref()
                .take(SPLIT_KEYS / 2)
                .map(|(_, versions)| versions);
            let stretch = Stretch::summarize(taken, compacted);
            by_fence.insert(fence, stretch);
            match walk.peek() {
                Some((next, _)) => fence = (*next).clone(),
                None => return Self { by_fence },
            }
        }
    }

    /// Takes on the stretches built from the entries that follow this one's, the first of
    /// which is `first_key` (the loader builds the two halves of the index side by side).
    pub fn append(&mut self, mut later: Stretches, first_key: Option<&[u8]>) {
        let Some(first_key) = first_key else {
            assert!(
                later.by_fence.values().all(|s| s.keys == 0),
                "keys without a first"
            );
            return;
        };
        assert!(
            self.by_fence
                .keys()
                .next_back()
                .is_none_or(|last| **last < *first_key),
            "the later stretches follow"
        );
        let first = later
            .by_fence
            .remove(&[][..])
            .expect("the first stretch starts at the empty key");
        self.by_fence.insert(first_key.into(), first);
        self.by_fence.append(&mut later.by_fence);
    }

    /// The fence of the stretch holding `key`, and the stretch.
    fn stretch_mut(&mut self, key: &[u8]) -> (&[u8], &mut Stretch) {
        let (fence, stretch) = self
            .by_fence
            .range_mut::<[u8], _>((Unbounded, Included(key)))
            .next_back()
            .expect("the first stretch starts at the empty key");
        (fence, stretch)
    }

    /// `key`, already in the index before, became live (`live`) or stopped being live at `main`.
    pub fn liveness_changed(&mut self, key: &[u8], main: i64, live: bool, compacted: i64) {
        let (_, stretch) = self.stretch_mut(key);
        if live {
            stretch.live += 1;
        } else {
            stretch.live = stretch
                .live
                .checked_sub(1)
                .expect("a live key stopped being live");
        }
        debug_assert!(stretch.live <= stretch.keys, "more live keys than keys");
        stretch.record(main, if live { 1 } else { -1 }, compacted);
    }

    /// `key` was put into `keys` at `main`, new to the index; splits a full stretch.
    pub fn key_created(&mut self, keys: &KeyIndex, key: &[u8], main: i64, compacted: i64) {
        debug_assert!(keys.contains_key(key), "the index holds the key first");
        let (fence, stretch) = self.stretch_mut(key);
        stretch.keys += 1;
        stretch.live += 1;
        stretch.record(main, 1, compacted);
        if stretch.keys > SPLIT_KEYS {
            let fence = fence.to_vec();
            self.split(keys, &fence, compacted);
        }
    }

    /// `key`, never live since the compaction point, was removed from `keys`; merges a stretch
    /// left almost empty into a neighbour.
    pub fn key_removed(&mut self, keys: &KeyIndex, key: &[u8], compacted: i64) {
        debug_assert!(!keys.contains_key(key), "the index dropped the key first");
        let (fence, stretch) = self.stretch_mut(key);
        stretch.keys = stretch
            .keys
            .checked_sub(1)
            .expect("a stretch lost a key it held");
        debug_assert!(stretch.live <= stretch.keys, "a removed key was live");
        if stretch.keys < MERGE_KEYS {
            let fence = fence.to_vec();
            self.merge(keys, &fence, compacted);
        }
    }

    /// The fence after `fence`, if any.
    fn next_fence(&self, fence: &[u8]) -> Option<&[u8]> {
        let after = (Excluded(fence), Unbounded);
        let (next, _) = self.by_fence.range::<[u8], _>(after).next()?;
        Some(next)
    }

    /// The keys of `keys` from `fence` up to `next` (or the end).
    fn span<'a>(keys: &'a KeyIndex, fence: &[u8], next: Option<&[u8]>) -> SpanIter<'a> {
        let upper = next.map_or(Unbounded, Excluded);
        keys.range::<[u8], _>((Included(fence), upper))
    }

    /// Cuts the stretch at `fence` at its middle key, both halves summarized afresh.
    fn split(&mut self, keys: &KeyIndex, fence: &[u8], compacted: i64) {
        let next = self.next_fence(fence).map(<[u8]>::to_vec);
        let held = self.by_fence.get(fence).map_or(0, |s| s.keys);
        let middle = Self::span(keys, fence, next.as_deref())
            .nth(held / 2)
            .map(|(key, _)| key.clone())
            .expect("a full stretch holds its keys");
        assert!(*middle > *fence, "a stretch splits after its fence");
        let low = Stretch::summarize(
            Self::span(keys, fence, Some(&middle)).map(|e| e.1),
            compacted,
        );
        let high = Stretch::summarize(
            Self::span(keys, &middle, next.as_deref()).map(|e| e.1),
            compacted,
        );
        self.by_fence.insert(fence.into(), low);
        self.by_fence.insert(middle, high);
    }

    /// Joins the stretch at `fence` with the one before it (or, the first, with the one after),
    /// summarized afresh; splits the result if it came out full.
    fn merge(&mut self, keys: &KeyIndex, fence: &[u8], compacted: i64) {
        let before = (Unbounded, Excluded(fence));
        let (low, high) = match self.by_fence.range::<[u8], _>(before).next_back() {
            Some((previous, _)) => (previous.to_vec(), fence.to_vec()),
            None => match self.next_fence(fence) {
                Some(next) => (fence.to_vec(), next.to_vec()),
                None => return, // the only stretch
            },
        };
        self.by_fence.remove(high.as_slice());
        let next = self.next_fence(&low).map(<[u8]>::to_vec);
        let joined = Stretch::summarize(
            Self::span(keys, &low, next.as_deref()).map(|e| e.1),
            compacted,
        );
        let full = joined.keys > SPLIT_KEYS;
        self.by_fence.insert(low.as_slice().into(), joined);
        if full {
            self.split(keys, &low, compacted);
        }
    }

    /// Counts the keys of `keys` in (`lower`, `upper`) visible at `revision`, spending at most
    /// about `budget` (a key walked or a stretch taken whole costs one): once it is spent with
    /// keys of the range left, the count stops after a key and says which.
    pub fn count<'a>(
        &self,
        keys: &'a KeyIndex,
        (lower, upper): (Bound<&[u8]>, Bound<&[u8]>),
        revision: i64,
        budget: usize,
    ) -> Counted<'a> {
        assert!(budget > 0, "a count must make progress");
        let mut counted = Counted {
            count: 0,
            stopped_after: None,
        };
        if span_is_empty(lower, upper) {
            return counted;
        }
        let start: &[u8] = match lower {
            Included(key) | Excluded(key) => key,
            Unbounded => &[],
        };
        let first = self
            .by_fence
            .range::<[u8], _>((Unbounded, Included(start)))
            .next_back()
            .map(|(fence, _)| fence.as_ref())
            .expect("the first stretch starts at the empty key");
        let mut stretches = self
            .by_fence
            .range::<[u8], _>((Included(first), Unbounded))
            .peekable();
        // What is left to count starts at `from`; `last` is what was covered last.
        let mut from = lower;
        let mut last: Option<Covered> = None;
        let mut spent = 0;
        while let Some((fence, stretch)) = stretches.next() {
            if !below(fence, upper) {
                break;
            }
            let next = stretches.peek().map(|&(next, _)| next.as_ref());
            let to = match next {
                Some(next) if below(next, upper) || upper == Excluded(next) => Excluded(next),
                _ => upper,
            };
            let whole = starts_at_or_before(from, fence) && ends_at(to, next);
            if whole && stretch.remembers(revision) {
                if stretch.keys > 0 {
                    if let Some(covered) = last.filter(|_| spent >= budget) {
                        counted.stopped_after = Some(covered.last_key(keys));
                        return counted;
                    }
                    spent += 1;
                    last = Some(Covered::Stretch(fence, next));
                }
                counted.count += stretch.live_at(revision);
            } else if !span_is_empty(from, to) {
                for (key, versions) in keys.range::<[u8], _>((from, to)) {
                    if let Some(covered) = last.filter(|_| spent >= budget) {
                        counted.stopped_after = Some(covered.last_key(keys));
                        return counted;
                    }
                    counted.count += i64::from(visible_at(versions, revision).is_some());
                    spent += 1;
                    last = Some(Covered::Key(key));
                }
            }
            match next {
                Some(next) => from = Included(next),
                None => break,
            }
        }
        counted
    }

    /// Checks every invariant against `keys` (see the module's doc), and that each stretch's
    /// count at every revision from `compacted` to `current` is what walking it gives.
    #[cfg(test)]
    pub fn check(&self, keys: &KeyIndex, compacted: i64, current: i64) {
        let fences: Vec<&[u8]> = self.by_fence.keys().map(|f| f.as_ref()).collect();
        assert_eq!(
            fences.first(),
            Some(&&[][..]),
            "the first fence is the empty key"
        );
        for (i, (fence, stretch)) in self.by_fence.iter().enumerate() {
            let next = fences.get(i + 1).copied();
            let span: Vec<&Vec<Version>> = Self::span(keys, fence, next).map(|e| e.1).collect();
            assert_eq!(stretch.keys, span.len(), "keys of the stretch at {fence:?}");
            let live = span
                .iter()
                .filter(|v| v.last().is_some_and(Version::is_live))
                .count();
            assert_eq!(stretch.live, live, "live keys of the stretch at {fence:?}");
            assert!(
                stretch.changes.len() <= CHANGES_KEPT,
                "changes kept at {fence:?}"
            );
            assert!(
                stretch.keys <= SPLIT_KEYS,
                "an unsplit stretch at {fence:?}"
            );
            for revision in compacted.max(stretch.forgotten_up_to)..=current {
                let walked = span
                    .iter()
                    .filter(|v| visible_at(v, revision).is_some())
                    .count();
                assert_eq!(
                    stretch.live_at(revision),
                    walked as i64,
                    "the stretch at {fence:?} at revision {revision}: {stretch:?}"
                );
            }
        }
    }
}

/// What a count covered last: a key it walked, or a stretch (its fence and the next) it took
/// whole.
#[derive(Debug, Clone, Copy)]
enum Covered<'k, 's> {
    Key(&'k [u8]),
    Stretch(&'s [u8], Option<&'s [u8]>),
}

impl<'k> Covered<'k, '_> {
    /// The last key covered: a stretch taken whole holds at least one.
    fn last_key(self, keys: &'k KeyIndex) -> &'k [u8] {
        match self {
            Covered::Key(key) => key,
            Covered::Stretch(fence, next) => Stretches::span(keys, fence, next)
                .next_back()
                .map(|(key, _)| key.as_ref())
                .expect("a stretch taken whole holds a key"),
        }
    }
}

type SpanIter<'a> = std::collections::btree_map::Range<'a, Box<[u8]>, Vec<Version>>;

/// Whether `key` is below `upper`.
fn below(key: &[u8], upper: Bound<&[u8]>) -> bool {
    match upper {
        Unbounded => true,
        Excluded(end) => key < end,
        Included(end) => key <= end,
    }
}

/// Whether counting from `from` takes every key from `fence` on.
fn starts_at_or_before(from: Bound<&[u8]>, fence: &[u8]) -> bool {
    match from {
        Unbounded => true,
        Included(start) => start <= fence,
        Excluded(start) => start < fence,
    }
}

/// Whether counting up to `to` takes every key below `next` (the stretch's end).
fn ends_at(to: Bound<&[u8]>, next: Option<&[u8]>) -> bool {
    match (to, next) {
        (Unbounded, _) => true,
        (Excluded(end), Some(next)) => end == next,
        _ => false,
    }
}

/// Whether no key lies between `lower` and `upper` (and so `BTreeMap::range` would refuse or
/// return nothing).
fn span_is_empty(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    match (lower, upper) {
        (Included(start), Included(end)) => start > end,
        (Included(start), Excluded(end))
        | (Excluded(start), Included(end))
        | (Excluded(start), Excluded(end)) => start >= end,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
