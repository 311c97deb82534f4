//! Leases: the replicated lease table (IDs, granted TTLs, attached keys), applied identically on every
//! member from raft entries, plus the leader-only expiry clock that decides when to propose revokes.
//!
//! The lessor never revokes anything by itself: the leader asks [`Lessor::expired`] which leases ran
//! out, proposes one revoke per lease through raft, and every member applies it with
//! [`Lessor::revoke`]. Followers keep no expiries at all; a new leader restarts every lease's clock
//! from its full TTL ([`Lessor::promote`]), as etcd does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::proto::stetpb;
use crate::time::Instant;

/// The largest TTL a lease may be granted, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL_SECONDS: i64 = 9_000_000_000;

/// How long a lease reported by [`Lessor::expired`] is held back before it is reported again, if
/// its revoke has not been applied by then (etcd's `expiredLeaseRetryInterval`).
pub const EXPIRED_LEASE_RETRY: Duration = Duration::from_secs(3);

/// Why a lease operation was refused. Messages are etcd's, so clients see what they expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// No lease with that ID (also: ID 0, which means "no lease", or a lease already expired).
    #[error("etcdserver: requested lease not found")]
    NotFound,
    /// A grant named an ID that is already in use.
    #[error("etcdserver: lease already exists")]
    AlreadyExists,
    /// A grant asked for more than [`MAX_LEASE_TTL_SECONDS`].
    #[error("etcdserver: too large lease TTL")]
    TtlTooLarge,
    /// A keep-alive reached a member that does not run the expiry clock (it is not the leader).
    #[error("etcdserver: not a primary lessor")]
    NotPrimary,
    /// A snapshot's lease records cannot be trusted.
    #[error("corrupt lease snapshot: {0}")]
    Corrupt(String),
}

/// One lease: replicated TTL and keys, plus this member's view of when it runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lease {
    ttl_seconds: i64,
    keys: BTreeSet<Vec<u8>>,
    /// When the lease runs out; `Some` only while this member is the leader.
    expiry: Option<Instant>,
    /// Set once [`Lessor::expired`] has reported the lease: not reported again before this instant.
    retry_at: Option<Instant>,
}

impl Lease {
    fn ttl(&self) -> Duration {
        // ttl_seconds is validated to lie in 1..=MAX_LEASE_TTL_SECONDS, so the cast cannot wrap.
        Duration::from_secs(self.ttl_seconds.unsigned_abs())
    }

    /// The instant from which [`Lessor::expired`] may report this lease.
    fn due_at(&self) -> Option<Instant> {
        let expiry = self.expiry?;
        Some(match self.retry_at {
            Some(retry) => retry.max(expiry),
            None => expiry,
        })
    }
}

/// The lease table of one member. Cheap to clone (for snapshots and tests).
#[derive(Debug, Clone)]
pub struct Lessor {
    leases: BTreeMap<i64, Lease>,
    min_ttl_seconds: i64,
    /// Whether this member runs the expiry clock (it is the leader).
    primary: bool,
}

impl Lessor {
    /// An empty table. Grants below `min_ttl_seconds` get `min_ttl_seconds` (etcd uses
    /// `ceil(1.5 * election timeout)` so that a lease survives a leader election); never below 1.
    pub fn new(min_ttl_seconds: i64) -> Self {
        Lessor {
            leases: BTreeMap::new(),
            min_ttl_seconds: min_ttl_seconds.clamp(1, MAX_LEASE_TTL_SECONDS),
            primary: false,
        }
    }

    /// Grants lease `id` (chosen by the proposer, never 0) for `ttl_seconds`, raised to the minimum
    /// TTL. Returns the granted TTL. The expiry clock starts only if `is_leader`.
    pub fn grant(
        &mut self,
        id: i64,
        ttl_seconds: i64,
        now: Instant,
        is_leader: bool,
    ) -> Result<i64, LeaseError> {
        if id == 0 {
            return Err(LeaseError::NotFound);
        }
        if ttl_seconds > MAX_LEASE_TTL_SECONDS {
            return Err(LeaseError::TtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(LeaseError::AlreadyExists);
        }
        let ttl_seconds = ttl_seconds.max(self.min_ttl_seconds);
        let mut lease = Lease {
            ttl_seconds,
            keys: BTreeSet::new(),
            expiry: None,
            retry_at: None,
        };
        if is_leader {
            lease.expiry = Some(now + lease.ttl());
        }
        self.leases.insert(id, lease);
        Ok(ttl_seconds)
    }

    /// Removes lease `id` and returns the keys attached to it, sorted, for the caller to delete.
    pub fn revoke(&mut self, id: i64) -> Result<Vec<Vec<u8>>, LeaseError> {
        let lease = self.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        Ok(lease.keys.into_iter().collect())
    }

    /// The keys attached to lease `id`, sorted; none for a lease that does not exist.
    pub fn keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.leases
            .get(&id)
            .map(|lease| lease.keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether lease `id` exists (it may have expired and be waiting for its revoke).
    pub fn exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Attaches `key` to lease `id`. Does nothing if the lease does not exist: the KV store checks
    /// the lease before it writes.
    pub fn attach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.to_vec());
        }
    }

    /// Detaches `key` from lease `id`, if both exist.
    pub fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.remove(key);
        }
    }

    /// This member became leader: every lease's expiry restarts at `now + ttl + extend`.
    pub fn promote(&mut self, now: Instant, extend: Duration) {
        self.primary = true;
        for lease in self.leases.values_mut() {
            lease.expiry = Some(now + lease.ttl() + extend);
            lease.retry_at = None;
        }
    }

    /// This member lost leadership: it keeps no expiries.
    pub fn demote(&mut self) {
        self.primary = false;
        for lease in self.leases.values_mut() {
            lease.expiry = None;
            lease.retry_at = None;
        }
    }

    /// Whether this member runs the expiry clock.
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// A keep-alive on the leader: the lease's expiry restarts at `now + ttl`; returns the TTL.
    /// A lease that has already run out cannot be renewed: its revoke is on the way.
    pub fn renew(&mut self, id: i64, now: Instant) -> Result<i64, LeaseError> {
        if !self.primary {
            return Err(LeaseError::NotPrimary);
        }
        let lease = self.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        if lease.expiry.is_some_and(|expiry| expiry <= now) {
            return Err(LeaseError::NotFound);
        }
        lease.expiry = Some(now + lease.ttl());
        lease.retry_at = None;
        Ok(lease.ttl_seconds)
    }

    /// On the leader: up to `max` leases whose expiry is at or before `now`, the longest expired
    /// first. A lease returned here is not returned again for [`EXPIRED_LEASE_RETRY`], so the
    /// caller proposes one revoke; if the lease is still there after that, it is returned again.
    pub fn expired(&mut self, now: Instant, max: usize) -> Vec<i64> {
        let mut due: Vec<(Instant, i64)> = self
            .leases
            .iter()
            .filter_map(|(&id, lease)| lease.due_at().map(|at| (at, id)))
            .filter(|&(at, _)| at <= now)
            .collect();
        due.sort_unstable();
        due.truncate(max);
        let retry_at = now + EXPIRED_LEASE_RETRY;
        for &(_, id) in &due {
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.retry_at = Some(retry_at);
            }
        }
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// Remaining TTL in whole seconds (-1 once expired; the granted TTL on a non-leader, which
    /// keeps no clock), granted TTL, and the attached keys, sorted.
    pub fn time_to_live(
        &self,
        id: i64,
        now: Instant,
    ) -> Result<(i64, i64, Vec<Vec<u8>>), LeaseError> {
        let lease = self.leases.get(&id).ok_or(LeaseError::NotFound)?;
        let remaining = match lease.expiry {
            None => lease.ttl_seconds,
            Some(expiry) if expiry <= now => -1,
            Some(expiry) => {
                let secs = expiry.saturating_duration_since(now).as_secs();
                i64::try_from(secs).unwrap_or(i64::MAX)
            }
        };
        Ok((
            remaining,
            lease.ttl_seconds,
            lease.keys.iter().cloned().collect(),
        ))
    }

    /// Every lease ID, sorted.
    pub fn leases(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    /// The earliest instant at which [`Lessor::expired`] could return something, for the node's
    /// `poll_timeout`. `None` on a non-leader or with no leases.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.leases.values().filter_map(Lease::due_at).min()
    }

    /// The granted TTL of lease `id`, if it exists.
    pub fn granted_ttl_seconds(&self, id: i64) -> Option<i64> {
        self.leases.get(&id).map(|lease| lease.ttl_seconds)
    }

    /// The replicated part of the table (no expiries), ordered by lease ID, keys sorted.
    pub fn to_snapshot(&self) -> Vec<stetpb::LeaseRecord> {
        self.leases
            .iter()
            .map(|(&id, lease)| stetpb::LeaseRecord {
                id,
                ttl_seconds: lease.ttl_seconds,
                keys: lease.keys.iter().cloned().collect(),
            })
            .collect()
    }

    /// Rebuilds a table from snapshot records, as a non-leader (no expiries). Rejects ID 0,
    /// duplicate IDs, TTLs outside `1..=MAX_LEASE_TTL_SECONDS` and duplicate keys.
    pub fn restore(
        records: &[stetpb::LeaseRecord],
        min_ttl_seconds: i64,
    ) -> Result<Self, LeaseError> {
        let mut lessor = Lessor::new(min_ttl_seconds);
        for record in records {
            let lease = lease_from_record(record)?;
            if lessor.leases.insert(record.id, lease).is_some() {
                return Err(LeaseError::Corrupt(format!(
                    "lease {:x} appears more than once",
                    record.id
                )));
            }
        }
        Ok(lessor)
    }
}

fn lease_from_record(record: &stetpb::LeaseRecord) -> Result<Lease, LeaseError> {
    if record.id == 0 {
        return Err(LeaseError::Corrupt("lease with ID 0".to_string()));
    }
    if !(1..=MAX_LEASE_TTL_SECONDS).contains(&record.ttl_seconds) {
        return Err(LeaseError::Corrupt(format!(
            "lease {:x} has TTL {} s, outside 1..={MAX_LEASE_TTL_SECONDS}",
            record.id, record.ttl_seconds
        )));
    }
    let mut keys = BTreeSet::new();
    for key in &record.keys {
        if !keys.insert(key.clone()) {
            return Err(LeaseError::Corrupt(format!(
                "lease {:x} lists key {:?} twice",
                record.id,
                String::from_utf8_lossy(key)
            )));
        }
    }
    Ok(Lease {
        ttl_seconds: record.ttl_seconds,
        keys,
        expiry: None,
        retry_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> Instant {
        Instant::from_micros(secs * 1_000_000)
    }

    fn leader() -> Lessor {
        let mut l = Lessor::new(5);
        l.promote(at(0), Duration::ZERO);
        l
    }

    #[test]
    fn grant_raises_ttl_to_the_minimum() {
        let mut l = Lessor::new(5);
        assert_eq!(l.grant(1, 2, at(0), false), Ok(5));
        assert_eq!(l.grant(2, 0, at(0), false), Ok(5));
        assert_eq!(l.grant(3, -7, at(0), false), Ok(5));
        assert_eq!(l.grant(4, 60, at(0), false), Ok(60));
    }

    #[test]
    fn grant_rejects_id_zero_duplicates_and_huge_ttls() {
        let mut l = Lessor::new(5);
        assert_eq!(l.grant(0, 10, at(0), false), Err(LeaseError::NotFound));
        assert_eq!(l.grant(1, 10, at(0), false), Ok(10));
        assert_eq!(l.grant(1, 10, at(0), false), Err(LeaseError::AlreadyExists));
        assert_eq!(
            l.grant(2, MAX_LEASE_TTL_SECONDS + 1, at(0), false),
            Err(LeaseError::TtlTooLarge)
        );
        assert_eq!(
            l.grant(2, MAX_LEASE_TTL_SECONDS, at(0), false),
            Ok(MAX_LEASE_TTL_SECONDS)
        );
        assert_eq!(l.leases(), vec![1, 2]);
    }

    #[test]
    fn error_messages_match_etcd() {
        assert_eq!(
            LeaseError::NotFound.to_string(),
            "etcdserver: requested lease not found"
        );
        assert_eq!(
            LeaseError::AlreadyExists.to_string(),
            "etcdserver: lease already exists"
        );
        assert_eq!(
            LeaseError::TtlTooLarge.to_string(),
            "etcdserver: too large lease TTL"
        );
    }

    #[test]
    fn revoke_returns_attached_keys_sorted_and_forgets_the_lease() {
        let mut l = Lessor::new(1);
        l.grant(7, 10, at(0), false).unwrap();
        l.attach(7, b"b");
        l.attach(7, b"a");
        l.attach(7, b"c");
        l.detach(7, b"c");
        l.attach(8, b"ignored");
        assert_eq!(l.revoke(7), Ok(vec![b"a".to_vec(), b"b".to_vec()]));
        assert!(!l.exists(7));
        assert_eq!(l.revoke(7), Err(LeaseError::NotFound));
    }

    #[test]
    fn followers_keep_no_expiry_and_report_the_granted_ttl() {
        let mut l = Lessor::new(1);
        l.grant(1, 10, at(0), false).unwrap();
        assert_eq!(l.next_expiry(), None);
        assert!(l.expired(at(1_000), 10).is_empty());
        assert_eq!(l.time_to_live(1, at(1_000)).unwrap().0, 10);
        assert_eq!(l.renew(1, at(1)), Err(LeaseError::NotPrimary));
    }

    #[test]
    fn leader_reports_a_lease_once_it_runs_out() {
        let mut l = leader();
        l.grant(1, 10, at(0), true).unwrap();
        assert_eq!(l.next_expiry(), Some(at(10)));
        assert!(l.expired(at(9), 10).is_empty());
        assert_eq!(l.time_to_live(1, at(4)).unwrap().0, 6);
        assert_eq!(l.expired(at(10), 10), vec![1]);
        assert_eq!(l.time_to_live(1, at(10)).unwrap().0, -1);
    }

    #[test]
    fn expired_lease_is_not_reported_again_until_the_retry_period_passes() {
        let mut l = leader();
        l.grant(1, 10, at(0), true).unwrap();
        assert_eq!(l.expired(at(10), 10), vec![1]);
        assert!(l.expired(at(11), 10).is_empty());
        assert_eq!(l.next_expiry(), Some(at(13)));
        assert_eq!(l.expired(at(13), 10), vec![1]);
        l.revoke(1).unwrap();
        assert!(l.expired(at(100), 10).is_empty());
        assert_eq!(l.next_expiry(), None);
    }

    #[test]
    fn expired_returns_at_most_max_longest_expired_first() {
        let mut l = leader();
        l.grant(1, 30, at(0), true).unwrap();
        l.grant(2, 10, at(0), true).unwrap();
        l.grant(3, 20, at(0), true).unwrap();
        assert_eq!(l.expired(at(40), 2), vec![2, 3]);
        assert_eq!(l.expired(at(40), 2), vec![1]);
    }

    #[test]
    fn renew_restarts_the_clock_but_not_for_an_expired_lease() {
        let mut l = leader();
        l.grant(1, 10, at(0), true).unwrap();
        assert_eq!(l.renew(1, at(8)), Ok(10));
        assert!(l.expired(at(17), 10).is_empty());
        assert_eq!(l.next_expiry(), Some(at(18)));
        assert_eq!(l.renew(1, at(18)), Err(LeaseError::NotFound));
        assert_eq!(l.renew(2, at(1)), Err(LeaseError::NotFound));
    }

    #[test]
    fn promote_restarts_every_lease_from_its_full_ttl_plus_extension() {
        let mut l = Lessor::new(1);
        l.grant(1, 10, at(0), false).unwrap();
        l.grant(2, 20, at(0), false).unwrap();
        l.promote(at(100), Duration::from_secs(2));
        assert!(l.is_primary());
        assert_eq!(l.next_expiry(), Some(at(112)));
        assert_eq!(l.expired(at(112), 10), vec![1]);
        l.revoke(1).unwrap();
        assert_eq!(l.expired(at(122), 10), vec![2]);
    }

    #[test]
    fn demote_drops_every_expiry() {
        let mut l = leader();
        l.grant(1, 10, at(0), true).unwrap();
        l.demote();
        assert!(!l.is_primary());
        assert_eq!(l.next_expiry(), None);
        assert!(l.expired(at(1_000), 10).is_empty());
        assert_eq!(l.time_to_live(1, at(1_000)).unwrap(), (10, 10, vec![]));
    }

    #[test]
    fn snapshot_round_trips_ttls_and_keys() {
        let mut l = leader();
        l.grant(9, 30, at(0), true).unwrap();
        l.grant(3, 10, at(0), true).unwrap();
        l.attach(3, b"k2");
        l.attach(3, b"k1");
        let records = l.to_snapshot();
        assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), vec![3, 9]);
        let restored = Lessor::restore(&records, 5).unwrap();
        assert_eq!(restored.to_snapshot(), records);
        assert!(!restored.is_primary());
        assert_eq!(restored.next_expiry(), None);
        assert_eq!(
            restored.time_to_live(3, at(0)).unwrap(),
            (10, 10, vec![b"k1".to_vec(), b"k2".to_vec()])
        );
    }

    #[test]
    fn restore_rejects_bad_records() {
        let rec = |id, ttl_seconds, keys: Vec<&[u8]>| stetpb::LeaseRecord {
            id,
            ttl_seconds,
            keys: keys.into_iter().map(<[u8]>::to_vec).collect(),
        };
        let bad = [
            vec![rec(0, 10, vec![])],
            vec![rec(1, 0, vec![])],
            vec![rec(1, MAX_LEASE_TTL_SECONDS + 1, vec![])],
            vec![rec(1, 10, vec![]), rec(1, 20, vec![])],
            vec![rec(1, 10, vec![b"a", b"a"])],
        ];
        for records in bad {
            assert!(
                matches!(Lessor::restore(&records, 5), Err(LeaseError::Corrupt(_))),
                "{records:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn restore_never_panics_on_arbitrary_records(
            records in proptest::collection::vec(
                (any::<i64>(), any::<i64>(), proptest::collection::vec(
                    proptest::collection::vec(any::<u8>(), 0..3), 0..4)),
                0..6),
            min_ttl in any::<i64>(),
        ) {
            let records: Vec<_> = records
                .into_iter()
                .map(|(id, ttl_seconds, keys)| stetpb::LeaseRecord { id, ttl_seconds, keys })
                .collect();
            if let Ok(mut l) = Lessor::restore(&records, min_ttl) {
                prop_assert_eq!(l.to_snapshot().len(), records.len());
                l.promote(Instant::from_micros(u64::MAX - 1), Duration::from_secs(u64::MAX));
                let _ = l.expired(Instant::from_micros(u64::MAX), usize::MAX);
                for id in l.leases() {
                    let _ = l.time_to_live(id, Instant::ZERO);
                }
            }
        }
    }
}
