//! [`ValueReads`]: the values of a range's key-values still to read from the storage engine,
//! handed by the store's owner (the driver, which walks the key index) to whoever answers the
//! range, so that reading them — one engine lookup per key, ~30 ms for a part of 4 MiB — does
//! not hold the driver (etcd reads a range beside its writes, in a read transaction of its own).
//!
//! The reads go to the view of the engine's last commit as it was when the range was walked;
//! versions not committed then were copied by the owner. A view is a read transaction: the
//! revisions it names stay readable however the engine moves on (later commits, compaction's
//! deletes, an online defragmentation) until the reads are dropped.

use std::sync::{Arc, OnceLock};

use super::values::read_value;
use super::KvError;
use crate::engine::View;
use crate::proto::mvccpb::KeyValue;

/// Values to read from one view of the engine, each into a key-value of an answer.
#[derive(Clone, Default)]
pub struct ValueReads {
    source: Option<Source>,
    /// In the order they were added (key order, for a range).
    reads: Vec<ValueRead>,
}

/// The view the reads go to, and the store's failure latch, which a damaged file sets.
#[derive(Clone)]
struct Source {
    view: Arc<View>,
    failure: Arc<OnceLock<String>>,
}

/// A value to read: version (main, sub) of the key of the answer's key-value `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ValueRead {
    slot: usize,
    main: i64,
    sub: i64,
}

impl std::fmt::Debug for ValueReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueReads")
            .field("reads", &self.reads.len())
            .finish_non_exhaustive()
    }
}

/// Equal when they read the same versions into the same places from the same view.
impl PartialEq for ValueReads {
    fn eq(&self, other: &Self) -> bool {
        let same_view = match (&self.source, &other.source) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a.view, &b.view),
            (None, None) => true,
            _ => false,
        };
        same_view && self.reads == other.reads
    }
}

impl ValueReads {
    /// How many values are still to read.
    pub fn len(&self) -> usize {
        self.reads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    /// Adds a read of version (main, sub) from `view` into key-value `slot`. Every read of one
    /// answer goes to the same view.
    pub(super) fn add(
        &mut self,
        view: &Arc<View>,
        failure: &Arc<OnceLock<String>>,
        slot: usize,
        main: i64,
        sub: i64,
    ) {
        let source = self.source.get_or_insert_with(|| Source {
            view: view.clone(),
            failure: failure.clone(),
        });
        assert!(
            Arc::ptr_eq(&source.view, view),
            "the values of one answer are read from one view"
        );
        assert!(
            self.reads.last().is_none_or(|last| last.slot < slot),
            "each key-value gets its value once, in order"
        );
        self.reads.push(ValueRead { slot, main, sub });
    }

    /// Reads every value into `kvs`, the key-values of the answer the reads were made for
    /// (their keys must be there already). A damaged file answers a storage error and latches
    /// the store's failure, which stops its member.
    pub fn read_into(self, kvs: &mut [KeyValue]) -> Result<(), KvError> {
        let Some(source) = self.source else {
            assert!(self.reads.is_empty(), "reads without a view");
            return Ok(());
        };
        let mut reads = self.reads;
        // In revision order: neighbouring revisions share the engine's pages, so a part's
        // lookups go through each page once instead of once per key.
        reads.sort_unstable_by_key(|read| (read.main, read.sub));
        for read in reads {
            let Some(kv) = kvs.get_mut(read.slot) else {
                panic!("a value read for key-value {} of {}", read.slot, kvs.len());
            };
            assert_eq!(
                kv.mod_revision, read.main,
                "the value read is the key-value's"
            );
            match read_value(&source.view, &kv.key, read.main, read.sub) {
                Ok(value) => kv.value = value,
                Err(what) => {
                    let _ = source.failure.set(what.clone());
                    return Err(KvError::Storage(what));
                }
            }
        }
        Ok(())
    }
}
