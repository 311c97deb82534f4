//! What a watch event replaced, as the members' agreed history says: the key-value a watcher that
//! asked for `prev_kv` must receive with each event. [`KeyHistory`] replays the events of every
//! revision (`KvEvents`) once, per key, and answers for an event at revision R the key as it was
//! at R − 1 — known only while no revision up to R − 1 is missing from the history.

use std::collections::{BTreeMap, BTreeSet};

use stet::proto::mvccpb::KeyValue;

use crate::records::{EventRecord, KvEvents};

/// Every key's states, in revision order, replayed from the members' events.
pub struct KeyHistory {
    /// For each key, (revision, the key after that revision's event: `None` once deleted).
    by_key: BTreeMap<Vec<u8>, Vec<(i64, Option<KeyValue>)>>,
    /// The first revision (from 2, the first that can hold events) no member reported: states at
    /// or after it are unknown.
    first_missing: i64,
}

impl KeyHistory {
    pub fn new(events: &KvEvents) -> Self {
        let mut by_key: BTreeMap<Vec<u8>, Vec<(i64, Option<KeyValue>)>> = BTreeMap::new();
        let mut first_missing = 2;
        for (&revision, (records, _)) in events.revisions.range(2..) {
            if revision != first_missing {
                break;
            }
            first_missing += 1;
            for record in records {
                let states = by_key.entry(record.key.clone()).or_default();
                let before = states.last().and_then(|(_, kv)| kv.as_ref());
                let after = (!record.delete).then(|| KeyValue {
                    key: record.key.clone(),
                    create_revision: before.map_or(revision, |b| b.create_revision),
                    mod_revision: revision,
                    version: before.map_or(1, |b| b.version + 1),
                    value: record.value.clone(),
                    lease: record.lease,
                });
                states.push((revision, after));
            }
        }
        KeyHistory {
            by_key,
            first_missing,
        }
    }

    /// The key of `event` as it was just before the event's revision (`Some(None)`: absent), or
    /// `None` when a revision before it is missing from the history.
    pub fn before(&self, event: &EventRecord) -> Option<Option<&KeyValue>> {
        if event.revision > self.first_missing {
            return None;
        }
        let states = self.by_key.get(&event.key).map_or(&[][..], Vec::as_slice);
        let earlier = states.partition_point(|(revision, _)| *revision < event.revision);
        Some(earlier.checked_sub(1).and_then(|i| states[i].1.as_ref()))
    }

    /// Checks the `prev_kv` an event was delivered with. A watch that did not ask for it gets
    /// none; one that did gets exactly the key as it was before the event, except that an event
    /// at a compaction's revision, read back from history, has none (the version it replaced is
    /// compacted away, as in etcd). `compactions`: the revisions clients compacted to.
    pub fn check(
        &self,
        event: &EventRecord,
        asked: bool,
        compactions: &BTreeSet<i64>,
    ) -> Result<(), String> {
        let got = event.prev.as_ref();
        if !asked {
            return match got {
                None => Ok(()),
                Some(kv) => Err(format!(
                    "event {event} came with a prev_kv the watch did not ask for: {kv:?}"
                )),
            };
        }
        let Some(expected) = self.before(event) else {
            return Ok(());
        };
        let compacted_away = got.is_none() && compactions.contains(&event.revision);
        if got == expected || compacted_away {
            return Ok(());
        }
        Err(format!(
            "event {event} came with prev_kv {got:?}; before revision {} the key was {expected:?}",
            event.revision
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: i64, key: &str, value: Option<&str>) -> EventRecord {
        EventRecord {
            revision,
            key: key.as_bytes().to_vec(),
            delete: value.is_none(),
            value: value.unwrap_or_default().as_bytes().to_vec(),
            lease: 0,
            prev: None,
        }
    }

    fn history(events: &[EventRecord]) -> KvEvents {
        let mut kv = KvEvents::default();
        for e in events {
            kv.revisions.insert(e.revision, (vec![e.clone()], 1));
        }
        kv
    }

    fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: modified,
            version,
            value: value.as_bytes().to_vec(),
            lease: 0,
        }
    }

    fn with_prev(mut e: EventRecord, prev: Option<KeyValue>) -> EventRecord {
        e.prev = prev;
        e
    }

    #[test]
    fn the_previous_version_is_the_keys_state_before_the_event() {
        let store = history(&[
            event(2, "a", Some("1")),
            event(3, "a", Some("2")),
            event(4, "a", None),
            event(5, "a", Some("3")),
        ]);
        let keys = KeyHistory::new(&store);
        let none = BTreeSet::new();
        let right = with_prev(event(3, "a", Some("2")), Some(kv("a", "1", 2, 2, 1)));
        keys.check(&right, true, &none).unwrap();
        let deleted = with_prev(event(4, "a", None), Some(kv("a", "2", 2, 3, 2)));
        keys.check(&deleted, true, &none).unwrap();
        // After a delete the key starts again: no prev_kv.
        keys.check(&event(5, "a", Some("3")), true, &none).unwrap();
        // The first put of a key has none.
        keys.check(&event(2, "a", Some("1")), true, &none).unwrap();
    }

    #[test]
    fn a_wrong_missing_or_unasked_prev_kv_is_caught() {
        let store = history(&[event(2, "a", Some("1")), event(3, "a", Some("2"))]);
        let keys = KeyHistory::new(&store);
        let none = BTreeSet::new();
        let stale = with_prev(event(3, "a", Some("2")), Some(kv("a", "2", 2, 3, 2)));
        assert!(keys.check(&stale, true, &none).is_err());
        let empty_value = with_prev(event(3, "a", Some("2")), Some(kv("a", "", 2, 2, 1)));
        assert!(keys.check(&empty_value, true, &none).is_err());
        assert!(keys.check(&event(3, "a", Some("2")), true, &none).is_err());
        let unasked = with_prev(event(3, "a", Some("2")), Some(kv("a", "1", 2, 2, 1)));
        assert!(keys.check(&unasked, false, &none).is_err());
        let spurious = with_prev(event(2, "a", Some("1")), Some(kv("a", "0", 1, 1, 1)));
        assert!(keys.check(&spurious, true, &none).is_err());
    }

    #[test]
    fn only_an_event_at_a_compaction_may_lose_its_prev_kv() {
        let store = history(&[event(2, "a", Some("1")), event(3, "a", Some("2"))]);
        let keys = KeyHistory::new(&store);
        let compactions = BTreeSet::from([3]);
        keys.check(&event(3, "a", Some("2")), true, &compactions)
            .unwrap();
    }

    #[test]
    fn nothing_is_known_past_a_missing_revision() {
        let store = history(&[event(2, "a", Some("1")), event(4, "a", Some("2"))]);
        let keys = KeyHistory::new(&store);
        let none = BTreeSet::new();
        // Revision 3 is unknown: the key before revision 4 cannot be told.
        keys.check(&event(4, "a", Some("2")), true, &none).unwrap();
        assert!(keys.before(&event(4, "a", Some("2"))).is_none());
        assert_eq!(
            keys.before(&event(3, "a", Some("x"))),
            Some(Some(&kv("a", "1", 2, 2, 1)))
        );
    }
}
