//! The revision oracle: every request shape checked against one model of the store. The members'
//! agreed events of every revision (`watcher::KvEvents`, which the watch oracle also uses) replay
//! into a model of the key space (values, create and mod revisions, versions, leases); each
//! acknowledged request is then checked against the model at the revision its response names:
//! ranges (with limits, counts, keys only, at past revisions; unary, or streamed through
//! `KV.RangeStream` with the chunks merged, which must be exactly the unary answer), puts and range
//! deletes (with the key-values they replaced, when asked for: `prev_kv`), and txns with compares
//! on every target and nested txns — a txn that wrote must have written exactly what the model
//! says it should at its revision, one that did not must have read the model's state. Every
//! answer carries a header naming its revision. Across requests, real time must agree with
//! revisions (a request that started after another finished never sees an older revision, and a
//! write after it gets a newer one), and no read returns a value whose write started after the
//! read finished.
//!
//! It never talks to a cluster: it takes the finished history and the events.

use std::collections::BTreeMap;
use std::rc::Rc;

use stet::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use stet::proto::etcdserverpb::request_op::Request;
use stet::proto::etcdserverpb::response_op::Response;
use stet::proto::etcdserverpb::{
    self as pb, Compare, DeleteRangeRequest, RangeRequest, RequestOp, TxnRequest,
};
use stet::proto::mvccpb::KeyValue;

use crate::records::{EventRecord, KvEvents};
pub use crate::records::{RichOp, RichRequest, RichResponse};

/// What the oracle checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevisionStats {
    pub checked: usize,
    /// Acknowledged requests whose revision the members' events do not cover.
    pub unknown: usize,
    pub writes: usize,
    pub txns: usize,
    /// Ranges answered through `KV.RangeStream`, and those of them that came in several chunks.
    pub streams: usize,
    pub multi_chunk_streams: usize,
}

/// One key in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelKv {
    /// Shared: the replay keeps a state per revision, and cloning one must not copy values.
    value: Rc<[u8]>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

impl ModelKv {
    /// The key-value a member answers for `key` holding this.
    fn to_key_value(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: self.value.to_vec(),
            lease: self.lease,
        }
    }
}

/// Keys and values shared between the states of successive revisions (cloned per revision).
type State = BTreeMap<Rc<[u8]>, ModelKv>;

/// A change a write makes, as it shows among a revision's events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Change {
    key: Vec<u8>,
    /// `None` for a delete.
    put: Option<(Vec<u8>, i64)>,
}

impl Change {
    fn of_event(e: &EventRecord) -> Change {
        Change {
            key: e.key.clone(),
            put: (!e.delete).then(|| (e.value.clone(), e.lease)),
        }
    }
}

/// Replays revisions in order, keeping the state at each (the key space is small), so that any
/// revision's state can be looked up — txns read at past revisions too.
struct Replay<'a> {
    events: &'a KvEvents,
    /// The state at each revision (index = revision; revision 0 is never used); `None` when a
    /// revision on the way had no known events.
    states: Vec<Option<State>>,
}

impl<'a> Replay<'a> {
    fn new(events: &'a KvEvents) -> Self {
        Replay {
            events,
            states: vec![None, Some(State::new())],
        }
    }

    /// Replays up to `revision`.
    fn advance_to(&mut self, revision: i64) {
        while (self.states.len() as i64) <= revision {
            let next = self.states.len() as i64;
            let state = match (self.states.last().cloned().flatten(), self.events.at(next)) {
                (Some(mut state), Some(events)) => {
                    apply(&mut state, next, events);
                    Some(state)
                }
                _ => None,
            };
            self.states.push(state);
        }
    }

    /// The state at `revision`, if replayed and known.
    fn get(&self, revision: i64) -> Option<&State> {
        let index = usize::try_from(revision).ok()?;
        self.states.get(index)?.as_ref()
    }

    /// The state at `revision`, replaying up to it first.
    fn state_at(&mut self, revision: i64) -> Option<&State> {
        self.advance_to(revision);
        self.get(revision)
    }
}

fn apply(state: &mut State, revision: i64, events: &[EventRecord]) {
    for e in events {
        if e.delete {
            state.remove(&e.key[..]);
            continue;
        }
        let previous = state.get(&e.key[..]);
        let kv = ModelKv {
            value: Rc::from(&e.value[..]),
            create_revision: previous.map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: previous.map_or(1, |p| p.version + 1),
            lease: e.lease,
        };
        state.insert(Rc::from(&e.key[..]), kv);
    }
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        end => key >= start && key < end,
    }
}

/// What a range over `state` answers.
fn model_range(state: &State, request: &RangeRequest) -> pb::RangeResponse {
    let matches: Vec<(&Rc<[u8]>, &ModelKv)> = state
        .iter()
        .filter(|(k, _)| in_range(k, &request.key, &request.range_end))
        .collect();
    let count = matches.len() as i64;
    let limit = if request.limit > 0 {
        request.limit as usize
    } else {
        usize::MAX
    };
    let kvs = if request.count_only {
        Vec::new()
    } else {
        matches
            .iter()
            .take(limit)
            .map(|(key, kv)| {
                let mut kv = kv.to_key_value(key);
                if request.keys_only {
                    kv.value.clear();
                }
                kv
            })
            .collect()
    };
    // As etcd: `more` says the limit cut keys off; a count-only range returns none to cut.
    pb::RangeResponse {
        header: None,
        kvs,
        more: !request.count_only && request.limit > 0 && matches.len() > limit,
        count,
    }
}

/// Whether a compare holds on `state` (for every live key of its range; a missing key never
/// matches on value, and compares as zeros otherwise).
fn compare_holds(state: &State, c: &Compare) -> bool {
    let (Ok(target), Ok(result)) = (
        CompareTarget::try_from(c.target),
        CompareResult::try_from(c.result),
    ) else {
        return false;
    };
    let live: Vec<&ModelKv> = state
        .iter()
        .filter(|(k, _)| in_range(k, &c.key, &c.range_end))
        .map(|(_, kv)| kv)
        .collect();
    if live.is_empty() {
        let zero = ModelKv {
            value: Rc::from(&[][..]),
            create_revision: 0,
            mod_revision: 0,
            version: 0,
            lease: 0,
        };
        return target != CompareTarget::Value && compare_one(target, result, c, &zero);
    }
    live.iter().all(|kv| compare_one(target, result, c, kv))
}

fn compare_one(target: CompareTarget, result: CompareResult, c: &Compare, kv: &ModelKv) -> bool {
    let int = |x: Option<i64>| x.unwrap_or(0);
    let ordering = match (target, c.target_union.as_ref()) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => kv.value[..].cmp(&v[..]),
        (CompareTarget::Value, _) => kv.value[..].cmp(&[][..]),
        (CompareTarget::Version, u) => kv.version.cmp(&int(match u {
            Some(TargetUnion::Version(x)) => Some(*x),
            _ => None,
        })),
        (CompareTarget::Create, u) => kv.create_revision.cmp(&int(match u {
            Some(TargetUnion::CreateRevision(x)) => Some(*x),
            _ => None,
        })),
        (CompareTarget::Mod, u) => kv.mod_revision.cmp(&int(match u {
            Some(TargetUnion::ModRevision(x)) => Some(*x),
            _ => None,
        })),
        (CompareTarget::Lease, u) => kv.lease.cmp(&int(match u {
            Some(TargetUnion::Lease(x)) => Some(*x),
            _ => None,
        })),
    };
    match result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
        CompareResult::NotEqual => ordering.is_ne(),
    }
}

/// A txn run on the model: its answer and its changes, at `revision` (the one it would write);
/// `None` if it reads a past revision whose state is unknown.
fn model_txn(
    replay: &Replay,
    state: &State,
    request: &TxnRequest,
    revision: i64,
) -> Option<(pb::TxnResponse, Vec<Change>)> {
    let mut working = state.clone();
    let mut changes = Vec::new();
    let mut run = TxnRun {
        replay,
        before: state,
        working: &mut working,
        revision,
        changes: &mut changes,
        unknown: false,
    };
    let response = run.txn(request);
    (!run.unknown).then_some((response, changes))
}

/// One txn being run on the model.
struct TxnRun<'r, 's> {
    replay: &'r Replay<'r>,
    /// The state before the whole txn: every compare (nested ones too) is evaluated against it.
    before: &'s State,
    /// The state with the txn's own earlier writes, which its ops see.
    working: &'s mut State,
    /// The revision the txn writes at.
    revision: i64,
    changes: &'s mut Vec<Change>,
    /// Set when an op read a past revision whose state is unknown.
    unknown: bool,
}

impl TxnRun<'_, '_> {
    fn txn(&mut self, request: &TxnRequest) -> pb::TxnResponse {
        let succeeded = request
            .compare
            .iter()
            .all(|c| compare_holds(self.before, c));
        let branch = if succeeded {
            &request.success
        } else {
            &request.failure
        };
        let responses = branch
            .iter()
            .map(|op| pb::ResponseOp {
                response: self.op(op),
            })
            .collect();
        pb::TxnResponse {
            header: None,
            succeeded,
            responses,
        }
    }

    fn op(&mut self, op: &RequestOp) -> Option<Response> {
        Some(match op.request.as_ref()? {
            Request::RequestRange(range) if range.revision > 0 => {
                match self.replay.get(range.revision) {
                    Some(past) => Response::ResponseRange(model_range(past, range)),
                    None => {
                        self.unknown = true;
                        Response::ResponseRange(pb::RangeResponse::default())
                    }
                }
            }
            Request::RequestRange(range) => {
                Response::ResponseRange(model_range(self.working, range))
            }
            Request::RequestPut(put) => {
                let previous = self.working.get(&put.key[..]).cloned();
                let kv = ModelKv {
                    value: Rc::from(&put.value[..]),
                    create_revision: previous
                        .as_ref()
                        .map_or(self.revision, |p| p.create_revision),
                    mod_revision: self.revision,
                    version: previous.as_ref().map_or(1, |p| p.version + 1),
                    lease: put.lease,
                };
                self.working.insert(Rc::from(&put.key[..]), kv);
                self.changes.push(Change {
                    key: put.key.clone(),
                    put: Some((put.value.clone(), put.lease)),
                });
                let prev_kv = previous
                    .filter(|_| put.prev_kv)
                    .map(|p| p.to_key_value(&put.key));
                Response::ResponsePut(pb::PutResponse {
                    header: None,
                    prev_kv,
                })
            }
            Request::RequestDeleteRange(delete) => {
                let doomed: Vec<KeyValue> = self
                    .working
                    .iter()
                    .filter(|(k, _)| in_range(k, &delete.key, &delete.range_end))
                    .map(|(k, kv)| kv.to_key_value(k))
                    .collect();
                for kv in &doomed {
                    self.working.remove(&kv.key[..]);
                    self.changes.push(Change {
                        key: kv.key.clone(),
                        put: None,
                    });
                }
                Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                    header: None,
                    deleted: doomed.len() as i64,
                    // In key order, as members answer.
                    prev_kvs: if delete.prev_kv { doomed } else { Vec::new() },
                })
            }
            Request::RequestTxn(nested) => Response::ResponseTxn(self.txn(nested)),
        })
    }
}

/// The response with every header cleared (the model has none; headers are checked apart).
fn without_headers_txn(mut response: pb::TxnResponse) -> pb::TxnResponse {
    response.header = None;
    for op in &mut response.responses {
        match &mut op.response {
            Some(Response::ResponseRange(r)) => r.header = None,
            Some(Response::ResponsePut(r)) => r.header = None,
            Some(Response::ResponseDeleteRange(r)) => r.header = None,
            Some(Response::ResponseTxn(t)) => *t = without_headers_txn(std::mem::take(t)),
            None => {}
        }
    }
    response
}

/// The header of a response.
fn header(response: &RichResponse) -> Option<&pb::ResponseHeader> {
    match response {
        RichResponse::Range(r) | RichResponse::RangeStream { merged: r, .. } => r.header.as_ref(),
        RichResponse::Put(r) => r.header.as_ref(),
        RichResponse::DeleteRange(r) => r.header.as_ref(),
        RichResponse::Txn(r) => r.header.as_ref(),
    }
}

/// The revision a response's header names.
fn header_revision(response: &RichResponse) -> i64 {
    header(response).map_or(0, |h| h.revision)
}

/// How one acknowledged request relates to the revisions, for the real-time check.
#[derive(Debug, Clone, Copy)]
struct Placed {
    invoke_us: u64,
    complete_us: u64,
    revision: i64,
    wrote: bool,
}

/// Checks every acknowledged request against the model, then real time against revisions.
pub fn check(events: &KvEvents, history: &[RichOp]) -> Result<RevisionStats, String> {
    let mut stats = RevisionStats::default();
    // Check in the order of the revision each request is checked against, replaying once.
    let mut acknowledged: Vec<(&RichOp, &RichResponse)> = history
        .iter()
        .filter_map(|op| match &op.outcome {
            Some(Ok(response)) => Some((op, response)),
            _ => None,
        })
        .collect();
    acknowledged.sort_by_key(|(op, response)| (base_revision(op, response), op.invoke_us));
    let mut replay = Replay::new(events);
    let mut placed = Vec::new();
    for (op, response) in acknowledged {
        match check_one(&mut replay, events, op, response) {
            Ok(Some(place)) => {
                stats.checked += 1;
                stats.writes += usize::from(place.wrote);
                stats.txns += usize::from(matches!(op.request, RichRequest::Txn(_)));
                if let RichResponse::RangeStream { chunks, .. } = response {
                    stats.streams += 1;
                    stats.multi_chunk_streams += usize::from(*chunks > 1);
                }
                if !is_serializable(&op.request) {
                    placed.push(place);
                }
            }
            Ok(None) => stats.unknown += 1,
            Err(detail) => {
                return Err(format!(
                    "client {} {:?} invoked at {}us answered {:?}: {detail}",
                    op.client, op.request, op.invoke_us, response
                ))
            }
        }
    }
    check_real_time(&placed)?;
    check_no_future_values(history)?;
    check_no_compacted_current_range(history)?;
    Ok(stats)
}

fn is_serializable(request: &RichRequest) -> bool {
    matches!(request, RichRequest::Range(r) | RichRequest::RangeStream(r) if r.serializable)
}

/// The lowest revision whose state checking this request needs.
fn base_revision(op: &RichOp, response: &RichResponse) -> i64 {
    let revision = header_revision(response);
    match &op.request {
        RichRequest::Range(r) | RichRequest::RangeStream(r) if r.revision > 0 => r.revision,
        RichRequest::Range(_) | RichRequest::RangeStream(_) => revision,
        _ => revision - 1,
    }
    .max(1)
}

/// Checks one acknowledged request; `None` when the model does not know the state it needs.
fn check_one(
    replay: &mut Replay,
    events: &KvEvents,
    op: &RichOp,
    response: &RichResponse,
) -> Result<Option<Placed>, String> {
    // etcd puts a header on every answer (a stream, on its last chunk): without one, the
    // revision it was read or written at is unknown, and so is whether it was right.
    if header(response).is_none() {
        return Err("the answer carries no header".to_string());
    }
    let revision = header_revision(response);
    let place = |wrote| Placed {
        invoke_us: op.invoke_us,
        complete_us: op.complete_us,
        revision,
        wrote,
    };
    match (&op.request, response) {
        (RichRequest::RangeStream(request), RichResponse::RangeStream { .. })
            if !streams_in_key_order(request) =>
        {
            Err("RangeStream answered a sorted range, which it refuses (Unimplemented)".into())
        }
        (RichRequest::Range(request), RichResponse::Range(got))
        | (RichRequest::RangeStream(request), RichResponse::RangeStream { merged: got, .. }) => {
            let at = if request.revision > 0 {
                request.revision
            } else {
                revision
            };
            let Some(state) = replay.state_at(at) else {
                return Ok(None);
            };
            let expected = model_range(state, request);
            let mut got = got.clone();
            got.header = None;
            if got != expected {
                return Err(format!("at revision {at} the model answers {expected:?}"));
            }
            Ok(Some(place(false)))
        }
        (RichRequest::Put(put), RichResponse::Put(got)) => {
            let Some(at) = events.at(revision) else {
                return Ok(None);
            };
            check_put_prev_kv(replay, put, got, revision)?;
            let change = Change {
                key: put.key.clone(),
                put: Some((put.value.clone(), put.lease)),
            };
            if !at.iter().map(Change::of_event).any(|c| c == change) {
                return Err(format!(
                    "revision {revision} holds no such put: {}",
                    crate::records::list_events(at)
                ));
            }
            Ok(Some(place(true)))
        }
        (RichRequest::DeleteRange(delete), RichResponse::DeleteRange(got)) => {
            let as_txn = delete_as_txn(delete);
            let got = pb::TxnResponse {
                header: None,
                succeeded: true,
                responses: vec![pb::ResponseOp {
                    response: Some(Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                        header: None,
                        ..got.clone()
                    })),
                }],
            };
            check_txn(replay, events, &as_txn, got, revision).map(|wrote| wrote.map(place))
        }
        (RichRequest::Txn(request), RichResponse::Txn(got)) => {
            let got = without_headers_txn(got.clone());
            check_txn(replay, events, request, got, revision).map(|wrote| wrote.map(place))
        }
        _ => Err("an answer of the wrong kind".to_string()),
    }
}

/// A put answered at `revision` returns the key-value it replaced (the key at the revision before)
/// if and only if it asked for it.
fn check_put_prev_kv(
    replay: &mut Replay,
    put: &pb::PutRequest,
    got: &pb::PutResponse,
    revision: i64,
) -> Result<(), String> {
    if !put.prev_kv {
        return match &got.prev_kv {
            None => Ok(()),
            Some(kv) => Err(format!("a put that did not ask for prev_kv got {kv:?}")),
        };
    }
    let Some(before) = replay.state_at(revision - 1) else {
        return Ok(());
    };
    let expected = before.get(&put.key[..]).map(|kv| kv.to_key_value(&put.key));
    if got.prev_kv != expected {
        return Err(format!(
            "the put's prev_kv is {:?}; at revision {} the model holds {expected:?}",
            got.prev_kv,
            revision - 1
        ));
    }
    Ok(())
}

/// Whether `KV.RangeStream` serves `request`: its chunks come in key order, so it refuses any
/// other sort (a sort order of NONE with another target sorts by that target).
fn streams_in_key_order(request: &RangeRequest) -> bool {
    use pb::range_request::{SortOrder, SortTarget};
    request.sort_target == SortTarget::Key as i32
        && (request.sort_order == SortOrder::None as i32
            || request.sort_order == SortOrder::Ascend as i32)
}

fn delete_as_txn(delete: &DeleteRangeRequest) -> TxnRequest {
    TxnRequest {
        compare: Vec::new(),
        success: vec![RequestOp {
            request: Some(Request::RequestDeleteRange(delete.clone())),
        }],
        failure: Vec::new(),
    }
}

/// A txn answered at header revision `revision` either wrote that revision (run on the state
/// before it, its changes are exactly that revision's events) or wrote nothing (run on the state
/// at it, it changes nothing); either way its answer must be the model's. `Some(wrote)`.
fn check_txn(
    replay: &mut Replay,
    events: &KvEvents,
    request: &TxnRequest,
    got: pb::TxnResponse,
    revision: i64,
) -> Result<Option<bool>, String> {
    replay.advance_to(revision);
    let replay = &*replay;
    let Some(before) = replay.get(revision - 1) else {
        return Ok(None);
    };
    let Some((wrote, changes)) = model_txn(replay, before, request, revision) else {
        return Ok(None);
    };
    // It wrote the revision: run on the state before, its changes are the revision's events.
    // (Matching events alone do not say it wrote them: an earlier request may have made the same
    // changes, and this one found nothing left to change.)
    if !changes.is_empty() && wrote == got {
        let Some(at) = events.at(revision) else {
            return Ok(None);
        };
        let mut happened: Vec<Change> = at.iter().map(Change::of_event).collect();
        let mut expected = changes.clone();
        happened.sort();
        expected.sort();
        if happened == expected {
            return Ok(Some(true));
        }
    }
    let Some(after) = replay.get(revision) else {
        return Ok(None);
    };
    let Some((read, changes)) = model_txn(replay, after, request, revision + 1) else {
        return Ok(None);
    };
    if changes.is_empty() && read == got {
        return Ok(Some(false));
    }
    Err(format!(
        "neither a write of revision {revision} (the model answers {wrote:?}) nor a read at it \
         (the model answers {read:?}, changing {} keys)",
        changes.len()
    ))
}

/// A request that started after another finished never sees an older revision; a write after it
/// gets a newer one.
fn check_real_time(placed: &[Placed]) -> Result<(), String> {
    let mut by_completion: Vec<&Placed> = placed.iter().collect();
    by_completion.sort_by_key(|p| p.complete_us);
    let mut by_invoke: Vec<&Placed> = placed.iter().collect();
    by_invoke.sort_by_key(|p| p.invoke_us);
    let mut finished = by_completion.iter().peekable();
    // The newest revision seen or written by a request finished so far, and when it finished.
    let mut newest: Option<(i64, u64)> = None;
    for later in by_invoke {
        while let Some(done) = finished.next_if(|p| p.complete_us < later.invoke_us) {
            if newest.is_none_or(|(r, _)| done.revision > r) {
                newest = Some((done.revision, done.complete_us));
            }
        }
        let Some((seen, at)) = newest else {
            continue;
        };
        let too_old = if later.wrote {
            later.revision <= seen
        } else {
            later.revision < seen
        };
        if too_old {
            return Err(format!(
                "a request invoked at {}us {} revision {}, but revision {seen} was already seen \
                 by a request that finished at {at}us",
                later.invoke_us,
                if later.wrote { "wrote" } else { "read" },
                later.revision
            ));
        }
    }
    Ok(())
}

/// No read returns a value whose write was invoked after the read finished (values are unique).
fn check_no_future_values(history: &[RichOp]) -> Result<(), String> {
    let mut written_at: BTreeMap<&[u8], u64> = BTreeMap::new();
    for op in history {
        for value in written_values(&op.request) {
            written_at.insert(value, op.invoke_us);
        }
    }
    for op in history {
        let Some(Ok(response)) = &op.outcome else {
            continue;
        };
        let own = written_values(&op.request);
        for value in read_values(response) {
            if own.contains(&value) {
                continue;
            }
            if let Some(&invoked) = written_at.get(value) {
                if invoked > op.complete_us {
                    return Err(format!(
                        "client {} read {:?} at {}us before its write was invoked at {invoked}us",
                        op.client,
                        String::from_utf8_lossy(value),
                        op.complete_us
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A unary range at the current revision (revision 0) is never refused as compacted: the
/// current revision is never compacted away, and a member that read it in parts starts over
/// when a compaction passes the revision its first part pinned (etcd reads it in one go).
fn check_no_compacted_current_range(history: &[RichOp]) -> Result<(), String> {
    let compacted = stet::kv::KvError::Compacted {
        compact_revision: 0,
    }
    .to_string();
    for op in history {
        let (RichRequest::Range(request), Some(Err(error))) = (&op.request, &op.outcome) else {
            continue;
        };
        if request.revision == 0 && error.contains(&compacted) {
            return Err(format!(
                "client {} {:?} invoked at {}us, at the current revision, was refused: {error}",
                op.client, request, op.invoke_us
            ));
        }
    }
    Ok(())
}

fn written_values(request: &RichRequest) -> Vec<&[u8]> {
    fn in_ops<'a>(ops: &'a [RequestOp], out: &mut Vec<&'a [u8]>) {
        for op in ops {
            match &op.request {
                Some(Request::RequestPut(put)) => out.push(&put.value),
                Some(Request::RequestTxn(t)) => {
                    in_ops(&t.success, out);
                    in_ops(&t.failure, out);
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    match request {
        RichRequest::Put(put) => out.push(put.value.as_slice()),
        RichRequest::Txn(t) => {
            in_ops(&t.success, &mut out);
            in_ops(&t.failure, &mut out);
        }
        _ => {}
    }
    out
}

fn read_values(response: &RichResponse) -> Vec<&[u8]> {
    fn in_txn<'a>(txn: &'a pb::TxnResponse, out: &mut Vec<&'a [u8]>) {
        for op in &txn.responses {
            match &op.response {
                Some(Response::ResponseRange(r)) => {
                    out.extend(r.kvs.iter().map(|kv| kv.value.as_slice()))
                }
                Some(Response::ResponseTxn(t)) => in_txn(t, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    match response {
        RichResponse::Range(r) | RichResponse::RangeStream { merged: r, .. } => {
            out.extend(r.kvs.iter().map(|kv| kv.value.as_slice()))
        }
        RichResponse::Txn(t) => in_txn(t, &mut out),
        _ => {}
    }
    out.retain(|v| !v.is_empty());
    out
}

#[cfg(test)]
mod tests;
