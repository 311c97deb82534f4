//! What clients and members leave in the world for the oracles to read: the events of every
//! revision as members applied them (`KvEvents`, the authority of the watch and revision
//! oracles), what watchers received (`WatchLog`), what lease clients did (`LeaseOp`), what rich
//! clients did (`RichOp`), and what a force-new-cluster recovery did (`Recovery`). A leaf: the
//! world holds these, the workloads fill them, the oracles check them, and none of that is here.

use std::collections::BTreeMap;

use stet::proto::etcdserverpb::{
    self as pb, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest,
};
use stet::proto::mvccpb::{event::EventType, Event, KeyValue};

/// One event as the oracle compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub revision: i64,
    pub key: Vec<u8>,
    pub delete: bool,
    pub value: Vec<u8>,
    /// The lease a put attached the key to (0: none).
    pub lease: i64,
    /// The key-value the event replaced, as a watcher that asked for `prev_kv` received it. Never
    /// set in what members applied (`KvEvents`): the oracle derives it from their history.
    pub prev: Option<KeyValue>,
}

impl EventRecord {
    pub fn from_event(event: &Event, fallback_revision: i64) -> Self {
        Self::from_owned_event(event.clone(), fallback_revision)
    }

    /// The event without what a watcher received besides the event itself.
    pub fn without_prev(self) -> Self {
        EventRecord { prev: None, ..self }
    }

    /// As `from_event`, taking the event's key and value instead of copying them.
    pub fn from_owned_event(event: Event, fallback_revision: i64) -> Self {
        let delete = event.r#type == EventType::Delete as i32;
        let revision = event
            .kv
            .as_ref()
            .map_or(fallback_revision, |kv| kv.mod_revision);
        let kv = event.kv.unwrap_or_default();
        EventRecord {
            prev: event.prev_kv,
            revision,
            key: kv.key,
            delete,
            value: kv.value,
            lease: if delete { 0 } else { kv.lease },
        }
    }
}

impl std::fmt::Display for EventRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.delete { "DELETE" } else { "PUT" };
        write!(
            f,
            "{kind} {}@{}",
            String::from_utf8_lossy(&self.key),
            self.revision
        )?;
        if !self.delete {
            write!(f, "={}", String::from_utf8_lossy(&self.value))?;
        }
        Ok(())
    }
}

/// The events of every revision, as members applied them; the first member to report a revision
/// sets it, every later report must agree.
#[derive(Debug, Default)]
pub struct KvEvents {
    pub(crate) revisions: BTreeMap<i64, (Vec<EventRecord>, u64)>,
    violation: Option<String>,
}

impl KvEvents {
    /// A `--force-new-cluster` restart at `revision`: what the lost members applied after it never
    /// happened in the new cluster, which reuses those revisions.
    pub fn forget_after(&mut self, revision: i64) {
        self.revisions.retain(|r, _| *r <= revision);
    }

    /// Member `member` applied revisions `from..=to` with `events` (oldest first).
    pub fn record(&mut self, member: u64, from: i64, to: i64, events: Vec<Event>) {
        let mut by_revision: BTreeMap<i64, Vec<EventRecord>> =
            (from..=to).map(|r| (r, Vec::new())).collect();
        for event in events {
            // What an event replaced, the oracle derives from the history itself.
            let record = EventRecord::from_owned_event(event, to).without_prev();
            if let Some(list) = by_revision.get_mut(&record.revision) {
                list.push(record);
            }
        }
        for (revision, events) in by_revision {
            match self.revisions.get(&revision) {
                Some((known, first)) if *known != events && self.violation.is_none() => {
                    self.violation = Some(format!(
                        "members disagree on the events of revision {revision}: member {first} \
                         applied [{}], member {member} applied [{}]",
                        list_events(known),
                        list_events(&events)
                    ));
                }
                Some(_) => {}
                None => {
                    self.revisions.insert(revision, (events, member));
                }
            }
        }
    }

    /// The events of `revision`, if some member reported it.
    pub fn at(&self, revision: i64) -> Option<&[EventRecord]> {
        self.revisions.get(&revision).map(|(e, _)| e.as_slice())
    }

    pub fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }

    /// How many revisions are known.
    pub fn len(&self) -> usize {
        self.revisions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revisions.is_empty()
    }
}

/// Events as a failure report prints them.
pub fn list_events(events: &[EventRecord]) -> String {
    events
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a watch stream delivered, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A response with events.
    Events(Vec<EventRecord>),
    /// A response with no events (a progress notification) and its header revision.
    Progress(i64),
}

/// How a segment (one watch on one member's stream) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// The create went unanswered.
    Unreachable,
    /// The member refused the create.
    Refused(String),
    /// Canceled because the revisions it needed were compacted.
    Compacted(i64),
    /// Canceled for another reason.
    Canceled,
    /// No new revision for `STALL_TIMEOUT`.
    Stalled,
    /// The stream ended or failed (the member went away, or ended a stream that fell behind).
    Broken,
    /// The client moved on (failover on purpose, or the watch's time was up).
    Moved,
    /// The stream broke etcd's fragment protocol (a fragment to a watcher that did not ask for
    /// fragments, or something else between the fragments of one response): a violation.
    Malformed(String),
}

/// One watch on one member's stream.
#[derive(Debug, Clone)]
pub struct Segment {
    pub member: u64,
    pub stream: u64,
    pub requested_start: i64,
    /// Header revision of the `created` response.
    pub created_revision: Option<i64>,
    /// Whether the create asked for fragments.
    pub fragment: bool,
    /// Whole responses in `items`, joined from fragments: how many, and from how many fragments.
    pub joined: usize,
    pub fragments: usize,
    pub items: Vec<Item>,
    pub end: SegmentEnd,
}

impl Segment {
    /// The first revision this segment promises to deliver from, once created.
    pub fn effective_start(&self) -> Option<i64> {
        if self.requested_start > 0 {
            Some(self.requested_start)
        } else {
            self.created_revision.map(|r| r + 1)
        }
    }

    /// The revision to resume from after this segment, given the one it was started with.
    pub(crate) fn resume_from(&self, previous: i64) -> i64 {
        let mut next = previous.max(self.effective_start().unwrap_or(0));
        for item in &self.items {
            match item {
                Item::Events(events) => {
                    for e in events {
                        next = next.max(e.revision + 1);
                    }
                }
                Item::Progress(r) => next = next.max(r + 1),
            }
        }
        if let SegmentEnd::Compacted(c) = self.end {
            next = next.max(c);
        }
        next
    }

    /// Takes one response in stream order. Returns (learned a new revision, the segment ended).
    pub(crate) fn take(&mut self, response: pb::WatchResponse, best: &mut i64) -> (bool, bool) {
        let revision = response.header.as_ref().map_or(0, |h| h.revision);
        if response.created {
            if response.canceled {
                self.end = SegmentEnd::Refused(response.cancel_reason);
                return (false, true);
            }
            self.created_revision = Some(revision);
            return (true, false);
        }
        if response.canceled {
            self.end = if response.compact_revision > 0 {
                SegmentEnd::Compacted(response.compact_revision)
            } else {
                SegmentEnd::Canceled
            };
            return (false, true);
        }
        if response.events.is_empty() {
            if self.created_revision.is_none() {
                // A progress answer for the whole stream sent before this watch was created (its
                // predecessor under the same ID was just canceled): it speaks for the watches
                // the stream had then, not for this one, which may start further back.
                return (false, false);
            }
            self.items.push(Item::Progress(revision));
            let learned = revision > *best;
            *best = (*best).max(revision);
            return (learned, false);
        }
        let events: Vec<EventRecord> = response
            .events
            .iter()
            .map(|e| EventRecord::from_event(e, revision))
            .collect();
        let newest = events.iter().map(|e| e.revision).max().unwrap_or(0);
        *best = (*best).max(newest);
        self.items.push(Item::Events(events));
        (true, false)
    }
}

/// One logical watch of one client: a range and the segments it was served by.
#[derive(Debug, Clone)]
pub struct WatchLog {
    pub client: u64,
    pub watch: u64,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// Whether the watch asked for the key-value each event replaced.
    pub prev_kv: bool,
    pub segments: Vec<Segment>,
}

/// What a lease client did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    Grant {
        ttl_seconds: i64,
    },
    Put {
        lease: i64,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Get {
        key: Vec<u8>,
    },
    KeepAlive {
        lease: i64,
    },
    Revoke {
        lease: i64,
    },
}

/// What it got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseResult {
    /// Acknowledged; for a grant, the lease ID.
    Ok(i64),
    /// A linearizable read's value.
    Value(Option<Vec<u8>>),
    Failed(String),
    Unknown,
}

/// One lease operation with its invoke and completion times (global microseconds).
#[derive(Debug, Clone)]
pub struct LeaseOp {
    pub client: u64,
    pub action: LeaseAction,
    pub invoke_us: u64,
    pub complete_us: u64,
    pub result: LeaseResult,
    /// The TTL a grant or keep-alive answered with.
    pub ttl_seconds: Option<i64>,
}

/// When the cluster expired leases: the global time (µs) at which a member first applied the revoke
/// of each lease.
pub type Revocations = BTreeMap<i64, u64>;

/// A request of the rich workload.
#[derive(Debug, Clone, PartialEq)]
pub enum RichRequest {
    Range(RangeRequest),
    /// The same range through etcd 3.7's `KV.RangeStream`, answered in chunks.
    RangeStream(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

/// Its answer.
#[derive(Debug, Clone, PartialEq)]
pub enum RichResponse {
    Range(pb::RangeResponse),
    /// Every chunk of a stream that ended cleanly, merged as protobuf merges messages (`kvs`
    /// appended, the other fields from the last chunk that set them): what the unary range
    /// would have answered. A stream that broke is an error, never a partial answer.
    RangeStream {
        merged: pb::RangeResponse,
        chunks: usize,
    },
    Put(pb::PutResponse),
    DeleteRange(pb::DeleteRangeResponse),
    Txn(pb::TxnResponse),
}

/// One request with its invoke and completion times (global µs) and what came back: `None` when
/// the outcome is unknown, an error's message when it failed.
#[derive(Debug, Clone)]
pub struct RichOp {
    pub client: u64,
    pub request: RichRequest,
    pub invoke_us: u64,
    pub complete_us: u64,
    pub outcome: Option<Result<RichResponse, String>>,
}

/// What the force-new-cluster recovery of a run did.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// When the majority was lost (global µs).
    pub loss_us: u64,
    /// When the survivor restarted with `--force-new-cluster`.
    pub recovered_us: Option<u64>,
    /// The survivor's keys and values right after its forced restart.
    pub initial: Vec<(Vec<u8>, Vec<u8>)>,
}
