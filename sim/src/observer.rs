//! Raft safety oracles checked continuously while a simulation runs: at most one leader per term,
//! a committed (applied) entry never changes, and members agree on the KV hash at each revision.
//! Members report to the observer after every input they handle; the first violation is kept.
//!
//! The facts are scoped to a cluster epoch. `--force-new-cluster` rewrites the log after the
//! forced member's durable commit and restarts terms from its own, so what the lost members
//! applied or led there says nothing about the new cluster: `new_epoch` forgets it (the members
//! of the old epoch are gone for good), and the forced member's durability is checked separately.

use std::collections::BTreeMap;

/// What was violated, in words a failure report can print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyViolation(pub String);

/// Collected facts of one run.
#[derive(Debug, Default)]
pub struct Observer {
    leaders: BTreeMap<u64, u64>,
    /// index → (term, crc of data, first member that applied it)
    applied: BTreeMap<u64, (u64, u32, u64)>,
    /// (revision, compact revision) → (hash, first member that reported it)
    hashes: BTreeMap<(i64, i64), (u32, u64)>,
    violation: Option<SafetyViolation>,
    /// Each member's last reported (revision, compact revision, hash), across epochs.
    last_hash: BTreeMap<u64, (i64, i64, u32)>,
    pub epoch: u64,
    pub leader_changes: u64,
    pub entries_checked: u64,
}

impl Observer {
    fn violate(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(SafetyViolation(what));
        }
    }

    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<&SafetyViolation> {
        self.violation.as_ref()
    }

    /// Records a violation found outside the observer (e.g. lost data after a forced restart).
    pub fn report_violation(&mut self, what: String) {
        self.violate(what);
    }

    /// Starts a new cluster epoch (a `--force-new-cluster` restart): leaders, applied entries and
    /// hashes of the old one are forgotten.
    pub fn new_epoch(&mut self) {
        self.epoch += 1;
        self.leaders.clear();
        self.applied.clear();
        self.hashes.clear();
    }

    /// The last (revision, compact revision, hash) `member` reported.
    pub fn last_hash(&self, member: u64) -> Option<(i64, i64, u32)> {
        self.last_hash.get(&member).copied()
    }

    /// A member became (or saw) the leader of `term`.
    pub fn leader(&mut self, term: u64, leader: u64) {
        self.leader_changes += 1;
        match self.leaders.get(&term) {
            Some(&other) if other != leader => self.violate(format!(
                "two leaders in term {term}: members {other:x} and {leader:x}"
            )),
            _ => {
                self.leaders.insert(term, leader);
            }
        }
    }

    /// A member applied the entry at `index`.
    pub fn applied(&mut self, member: u64, index: u64, term: u64, data_crc: u32) {
        self.entries_checked += 1;
        match self.applied.get(&index) {
            Some(&(t, crc, first)) if (t, crc) != (term, data_crc) => self.violate(format!(
                "committed entry {index} differs: member {first:x} applied term {t} crc \
                 {crc:08x}, member {member:x} applied term {term} crc {data_crc:08x}"
            )),
            Some(_) => {}
            None => {
                self.applied.insert(index, (term, data_crc, member));
            }
        }
    }

    /// A member's KV hash at a revision. Members must agree on it, and each revision must change
    /// it (every revision adds a key version): a hash that stays put is a hash that checks
    /// nothing, and members all agreeing on it would prove nothing.
    pub fn kv_hash(&mut self, member: u64, revision: i64, compact: i64, hash: u32) {
        let previous = self.last_hash.insert(member, (revision, compact, hash));
        if let Some((before, before_compact, before_hash)) = previous {
            if before + 1 == revision && before_compact == compact && before_hash == hash {
                self.violate(format!(
                    "member {member:x}'s KV hash {hash:08x} did not change from revision {before} \
                     to {revision}"
                ));
            }
        }
        match self.hashes.get(&(revision, compact)) {
            Some(&(h, first)) if h != hash => self.violate(format!(
                "replicas disagree at revision {revision} (compacted at {compact}): member \
                 {first:x} has hash {h:08x}, member {member:x} has {hash:08x}"
            )),
            Some(_) => {}
            None => {
                self.hashes.insert((revision, compact), (hash, member));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_leaders_in_one_term_is_a_violation() {
        let mut observer = Observer::default();
        observer.leader(3, 1);
        observer.leader(3, 1);
        assert!(observer.violation().is_none());
        observer.leader(3, 2);
        assert!(observer
            .violation()
            .unwrap()
            .0
            .contains("two leaders in term 3"));
    }

    #[test]
    fn a_changed_committed_entry_is_a_violation() {
        let mut observer = Observer::default();
        observer.applied(1, 10, 2, 0xabc);
        observer.applied(2, 10, 2, 0xabc);
        assert!(observer.violation().is_none());
        observer.applied(3, 10, 3, 0xabc);
        assert!(observer.violation().is_some());
    }

    #[test]
    fn a_new_epoch_forgets_the_old_cluster() {
        let mut observer = Observer::default();
        observer.leader(3, 1);
        observer.applied(1, 10, 2, 0xabc);
        observer.kv_hash(1, 5, 0, 7);
        observer.new_epoch();
        observer.leader(3, 2);
        observer.applied(2, 10, 3, 0xdef);
        observer.kv_hash(2, 5, 0, 8);
        assert!(observer.violation().is_none());
        assert_eq!(observer.last_hash(1), Some((5, 0, 7)));
    }

    #[test]
    fn a_hash_that_does_not_change_with_the_revision_is_a_violation() {
        let mut observer = Observer::default();
        observer.kv_hash(1, 5, 0, 7);
        observer.kv_hash(1, 6, 0, 8);
        assert!(observer.violation().is_none());
        observer.kv_hash(2, 5, 0, 7);
        observer.kv_hash(2, 6, 0, 8);
        assert!(observer.violation().is_none());
        // A hash function that always says 0 passes agreement, but not this.
        let mut constant = Observer::default();
        for member in 1..=3 {
            constant.kv_hash(member, 5, 0, 0);
            constant.kv_hash(member, 6, 0, 0);
        }
        assert!(constant
            .violation()
            .unwrap()
            .0
            .contains("did not change from revision 5 to 6"));
    }

    #[test]
    fn diverging_replicas_are_a_violation() {
        let mut observer = Observer::default();
        observer.kv_hash(1, 5, 0, 7);
        observer.kv_hash(2, 5, 2, 8);
        assert!(
            observer.violation().is_none(),
            "different compaction, different hash"
        );
        observer.kv_hash(3, 5, 0, 9);
        assert!(observer.violation().is_some());
    }
}
