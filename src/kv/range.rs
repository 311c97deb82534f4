//! Range requests: reading a key or a key range at a revision, with etcd's filters, sorting,
//! limit, keys-only and count-only options.

use std::cmp::Ordering;
use std::ops::Bound;

use super::value_reads::ValueReads;
use super::{range_bounds, visible_at, KvError, KvStore, Version};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};
use crate::proto::mvccpb::KeyValue;

impl KvStore {
    /// Reads the keys in the request's range at its revision (0 = current). The header is None.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        self.check_range(req, self.current_revision)?;
        self.range_at(req, self.current_revision, true)
    }

    /// A part of a range read in parts (the runtime's chunked ranges): as [`KvStore::range`],
    /// but the walk stops once the limit is passed, so `count` counts only the keys walked
    /// (the first part's count is the whole range's). Walking on to count every key of a large
    /// range at each part would cost the square of its size. A request that sorts, filters or
    /// has no limit is answered whole.
    ///
    /// The values of versions already committed are left to read: the answer's key-values
    /// carry them once `ValueReads::read_into` ran, off the store's owner if it likes.
    ///
    /// A count-only part with a limit is a *count part*: see [`KvStore::count_part`].
    pub fn range_part(&self, req: &RangeRequest) -> Result<(RangeResponse, ValueReads), KvError> {
        self.check_range(req, self.current_revision)?;
        if req.count_only && req.limit > 0 {
            return Ok((self.count_part(req), ValueReads::default()));
        }
        self.range_deferring_values(req, self.current_revision, false)
    }

    /// Counts a range, or the first stretch of it, at the request's revision (0 = current)
    /// without returning it: spends at most about `req.limit` (a key of the index walked, or a
    /// stretch of the index counted whole, costs one; see `stretches`) from `req.key` on and
    /// answers `count` = the keys covered that are visible at the revision; when keys of the
    /// range remain, `more` and one key-value, holding only the last key covered, from which
    /// the next count part goes on. The runtime counts what follows a limited range's last page
    /// this way, a bounded cost per turn of the driver.
    fn count_part(&self, req: &RangeRequest) -> RangeResponse {
        debug_assert!(req.count_only && req.limit > 0, "a count part has a budget");
        let revision = if req.revision > 0 {
            req.revision
        } else {
            self.current_revision
        };
        let budget = usize::try_from(req.limit).unwrap_or(usize::MAX);
        let bounds = range_bounds(&req.key, &req.range_end);
        let counted = self.stretches.count(&self.keys, bounds, revision, budget);
        let kvs = match counted.stopped_after {
            Some(key) => vec![KeyValue {
                key: key.to_vec(),
                ..Default::default()
            }],
            None => Vec::new(),
        };
        RangeResponse {
            header: None,
            kvs,
            more: counted.stopped_after.is_some(),
            count: counted.count,
        }
    }

    /// Checks a range's key and revision against a store whose newest readable revision is
    /// `current`.
    pub(super) fn check_range(&self, req: &RangeRequest, current: i64) -> Result<(), KvError> {
        if req.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        check_revision(req.revision, current, self.compact_revision)
    }

    /// Answers a checked range; a request revision <= 0 reads at `default_revision`. Values are
    /// read from the engine only for the key-values returned (all of them to sort by value).
    /// Unless `count_all`, the walk stops once it found one key past the limit.
    pub(super) fn range_at(
        &self,
        req: &RangeRequest,
        default_revision: i64,
        count_all: bool,
    ) -> Result<RangeResponse, KvError> {
        let (mut response, reads) =
            self.range_deferring_values(req, default_revision, count_all)?;
        reads.read_into(&mut response.kvs)?;
        Ok(response)
    }

    /// As [`KvStore::range_at`], but the values of committed versions are left to `ValueReads`
    /// (except to sort by value, which needs them now).
    fn range_deferring_values(
        &self,
        req: &RangeRequest,
        default_revision: i64,
        count_all: bool,
    ) -> Result<(RangeResponse, ValueReads), KvError> {
        let revision = if req.revision > 0 {
            req.revision
        } else {
            default_revision
        };
        let filter = Filter::from_request(req);
        let order = effective_order(req);
        let needs_all = filter.is_active() || order.is_some();
        // Without sorting or filtering, one kv past the limit is enough to know there is more.
        let keep_at_most = match usize::try_from(req.limit) {
            Ok(limit) if limit > 0 && !needs_all => limit.saturating_add(1),
            _ => usize::MAX,
        };

        let mut count: i64 = 0;
        let mut found: Vec<(&[u8], &Version)> = Vec::new();
        if req.count_only {
            // Every key is counted and none returned: the stretches count without a walk.
            let bounds = range_bounds(&req.key, &req.range_end);
            count = self
                .stretches
                .count(&self.keys, bounds, revision, usize::MAX)
                .count;
        }
        let mut walked: Option<&[u8]> = None;
        let walk = (!req.count_only).then(|| self.key_range(&req.key, &req.range_end));
        for (key, versions) in walk.into_iter().flatten() {
            if found.len() >= keep_at_most {
                if count_all {
                    // The rest is only counted: the stretches count it without a walk.
                    let (_, end) = range_bounds(&req.key, &req.range_end);
                    let rest = (Bound::Excluded(walked.unwrap_or_default()), end);
                    count += self
                        .stretches
                        .count(&self.keys, rest, revision, usize::MAX)
                        .count;
                }
                break;
            }
            walked = Some(key);
            let Some(version) = visible_at(versions, revision) else {
                continue;
            };
            count += 1;
            if !filter.admits(version) {
                continue;
            }
            found.push((key, version));
        }

        // Each key-value with its version's sub revision, to read its value once it is kept.
        let by_value = matches!(order, Some((SortTarget::Value, _)));
        let mut kvs: Vec<(KeyValue, i64)> = Vec::with_capacity(found.len());
        for (key, version) in found {
            let kv = if by_value && !req.keys_only {
                self.kv_of(key, version)?
            } else {
                value_less_kv(key, version)
            };
            kvs.push((kv, version.sub()));
        }
        if let Some((target, descending)) = order {
            kvs.sort_by(|a, b| compare_by(target, &a.0, &b.0));
            if descending {
                kvs.reverse();
            }
        }
        let mut more = false;
        if let Ok(limit) = usize::try_from(req.limit) {
            if limit > 0 && kvs.len() > limit {
                kvs.truncate(limit);
                more = true;
            }
        }
        let mut reads = ValueReads::default();
        if !by_value && !req.keys_only {
            for (slot, (kv, sub)) in kvs.iter_mut().enumerate() {
                let uncommitted =
                    self.values
                        .value_or_defer(kv.mod_revision, *sub, slot, &mut reads)?;
                if let Some(value) = uncommitted {
                    kv.value = value;
                }
            }
        }
        let response = RangeResponse {
            header: None,
            kvs: kvs.into_iter().map(|(kv, _)| kv).collect(),
            more,
            count,
        };
        Ok((response, reads))
    }
}

/// Checks a read revision: <= 0 means current; future and compacted revisions are refused.
pub(super) fn check_revision(revision: i64, current: i64, compacted: i64) -> Result<(), KvError> {
    if revision > current {
        return Err(KvError::FutureRevision);
    }
    if revision > 0 && revision < compacted {
        return Err(KvError::Compacted {
            compact_revision: compacted,
        });
    }
    Ok(())
}

fn value_less_kv(key: &[u8], version: &Version) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        create_revision: version.create_revision,
        mod_revision: version.main,
        version: version.version,
        value: Vec::new(),
        lease: version.lease,
    }
}

/// The request's sort as (target, descending), or None when key-ascending order (the natural
/// order of the index) is wanted. A non-key target without an order means ascending.
fn effective_order(req: &RangeRequest) -> Option<(SortTarget, bool)> {
    let target = req.sort_target();
    let order = match (req.sort_order(), target) {
        (SortOrder::None, SortTarget::Key) => return None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    match (target, order) {
        (SortTarget::Key, SortOrder::Ascend) => None,
        (target, order) => Some((target, order == SortOrder::Descend)),
    }
}

fn compare_by(target: SortTarget, a: &KeyValue, b: &KeyValue) -> Ordering {
    match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    }
}

/// The inclusive mod/create revision bounds of a range; 0 means unbounded.
struct Filter {
    min_mod: i64,
    max_mod: i64,
    min_create: i64,
    max_create: i64,
}

impl Filter {
    fn from_request(req: &RangeRequest) -> Self {
        Self {
            min_mod: req.min_mod_revision,
            max_mod: req.max_mod_revision,
            min_create: req.min_create_revision,
            max_create: req.max_create_revision,
        }
    }

    fn is_active(&self) -> bool {
        self.min_mod != 0 || self.max_mod != 0 || self.min_create != 0 || self.max_create != 0
    }

    fn admits(&self, v: &Version) -> bool {
        (self.min_mod == 0 || v.main >= self.min_mod)
            && (self.max_mod == 0 || v.main <= self.max_mod)
            && (self.min_create == 0 || v.create_revision >= self.min_create)
            && (self.max_create == 0 || v.create_revision <= self.max_create)
    }
}
