//! Key intervals as etcd's permission checks see them (`server/auth/range_perm_cache.go` and
//! `pkg/adt`'s bytes-affine intervals): what a permission grants, what a request asks for, and
//! whether the union of a user's grants covers a request.

/// Where an interval ends: before a key, or after every key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum End {
    Before(Vec<u8>),
    Unbounded,
}

impl End {
    /// Whether this end is at or after `key`: an interval ending here, and one starting at `key`,
    /// leave no key between them.
    fn reaches(&self, key: &[u8]) -> bool {
        match self {
            End::Before(end) => end.as_slice() >= key,
            End::Unbounded => true,
        }
    }
}

/// The keys from `start` up to, not including, `end`; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Interval {
    start: Vec<u8>,
    end: End,
}

impl Interval {
    /// The single key `key`: `[key, key + "\0")`.
    fn point(key: &[u8]) -> Interval {
        let mut end = key.to_vec();
        end.push(0);
        Interval {
            start: key.to_vec(),
            end: End::Before(end),
        }
    }

    /// The keys a permission on (`key`, `range_end`) grants, or `None` when it grants none: an
    /// empty key, or a range that ends at or before its key (etcd 3.5 refuses to grant either).
    /// An empty `range_end` grants the one key, `"\0"` every key from `key` on.
    pub(super) fn granted(key: &[u8], range_end: &[u8]) -> Option<Interval> {
        if key.is_empty() {
            return None;
        }
        match range_end {
            [] => Some(Interval::point(key)),
            [0] => Some(Interval {
                start: key.to_vec(),
                end: End::Unbounded,
            }),
            end if end > key => Some(Interval {
                start: key.to_vec(),
                end: End::Before(end.to_vec()),
            }),
            _ => None,
        }
    }

    /// The keys a request on (`key`, `range_end`) needs permission for, or `None` when no
    /// permission can cover it: the empty key, which etcd's bytes-affine order puts after every
    /// key (etcd's API refuses empty keys before checking permissions anyway). A range ending at
    /// or before its key selects nothing, and needs what etcd's interval tree asks of it: the
    /// key itself.
    pub(super) fn requested(key: &[u8], range_end: &[u8]) -> Option<Interval> {
        if key.is_empty() {
            return None;
        }
        Interval::granted(key, range_end).or_else(|| Some(Interval::point(key)))
    }
}

/// A union of intervals, kept as sorted, disjoint and non-adjacent intervals, so one interval
/// answers whether a range is covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeySet {
    intervals: Vec<Interval>,
}

impl KeySet {
    /// The union of `intervals`: overlapping and adjacent ones merge.
    pub(super) fn union(mut intervals: Vec<Interval>) -> KeySet {
        intervals.sort_by(|a, b| a.start.cmp(&b.start));
        let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
        for next in intervals {
            match merged.last_mut() {
                Some(last) if last.end.reaches(&next.start) => {
                    if next.end > last.end {
                        last.end = next.end;
                    }
                }
                _ => merged.push(next),
            }
        }
        KeySet { intervals: merged }
    }

    /// Whether every key of `wanted` is in the set.
    pub(super) fn covers(&self, wanted: &Interval) -> bool {
        let after = self
            .intervals
            .partition_point(|interval| interval.start <= wanted.start);
        // The last interval starting at or before `wanted`: merged intervals leave gaps between
        // them, so if it does not reach past `wanted`'s end, none does.
        after
            .checked_sub(1)
            .and_then(|i| self.intervals.get(i))
            .is_some_and(|candidate| candidate.end >= wanted.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(grants: &[(&[u8], &[u8])]) -> KeySet {
        KeySet::union(
            grants
                .iter()
                .filter_map(|(key, end)| Interval::granted(key, end))
                .collect(),
        )
    }

    fn covers(set: &KeySet, key: &[u8], range_end: &[u8]) -> bool {
        Interval::requested(key, range_end).is_some_and(|wanted| set.covers(&wanted))
    }

    #[test]
    fn adjacent_ranges_merge_into_one() {
        let s = set(&[(b"a", b"b"), (b"b", b"c"), (b"c", b"")]);
        assert_eq!(s.intervals.len(), 1);
        assert!(covers(&s, b"a", b"c\0"));
        assert!(!covers(&s, b"a", b"d"));
    }

    #[test]
    fn open_ended_grant_covers_every_later_key() {
        let s = set(&[(b"m", b"\0")]);
        assert!(covers(&s, b"m", b"\0"));
        assert!(covers(&s, b"zzz", b""));
        assert!(!covers(&s, b"l", b"\0"));
    }

    #[test]
    fn a_point_does_not_cover_keys_it_prefixes() {
        let s = set(&[(b"a", b"")]);
        assert!(covers(&s, b"a", b""));
        assert!(covers(&s, b"a", b"a\0"));
        assert!(!covers(&s, b"ab", b""));
        assert!(!covers(&s, b"a", b"b"));
    }

    #[test]
    fn the_empty_key_and_junk_grants_cover_nothing() {
        assert!(Interval::granted(b"", b"").is_none());
        assert!(Interval::granted(b"b", b"a").is_none());
        assert!(Interval::granted(b"b", b"b").is_none());
        let s = set(&[(b"\0", b"\0")]);
        assert!(covers(&s, b"\0", b"\0"));
        assert!(!covers(&s, b"", b"\0"));
    }

    #[test]
    fn an_inverted_request_needs_its_key() {
        let s = set(&[(b"b", b"c")]);
        assert!(covers(&s, b"b", b"a"));
        assert!(!covers(&s, b"a", b"a"));
    }
}
