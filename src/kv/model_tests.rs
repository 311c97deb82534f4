//! Property tests: the store against a plain model that keeps a full `BTreeMap` of the live keys
//! for every revision, plus snapshot round trips and `from_snapshot` on arbitrary input.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::{
    request_op, response_op, Compare, RangeRequest, RangeResponse, RequestOp, TxnRequest,
    TxnResponse,
};
use crate::proto::stetpb::{KeyVersion, KvSnapshot};

/// Leases 1 and 2 exist; 3 does not.
fn lease_exists(id: i64) -> bool {
    (1..=2).contains(&id)
}

type State = BTreeMap<Vec<u8>, KeyValue>;

/// The reference: every revision's complete state, and every event ever emitted.
struct Model {
    /// `states[r]` is the state at revision r; index 0 is unused.
    states: Vec<State>,
    events: Vec<Event>,
    compacted: i64,
}

impl Model {
    fn new() -> Self {
        Self {
            states: vec![State::new(), State::new()],
            events: Vec::new(),
            compacted: 0,
        }
    }

    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn latest(&self) -> &State {
        &self.states[self.states.len() - 1]
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        let rev = if req.revision > 0 {
            req.revision
        } else {
            self.current()
        };
        if rev > self.current() {
            return Err(KvError::FutureRevision);
        }
        if rev < self.compacted {
            return Err(KvError::Compacted {
                compact_revision: self.compacted,
            });
        }
        Ok(model_range(&self.states[rev as usize], req))
    }

    fn commit(&mut self, state: State, events: Vec<Event>) {
        if !events.is_empty() {
            self.states.push(state);
            self.events.extend(events);
        }
    }

    fn events_since(&self, start: i64, key: &[u8], end: &[u8]) -> Result<Vec<Event>, KvError> {
        if start < self.compacted {
            return Err(KvError::Compacted {
                compact_revision: self.compacted,
            });
        }
        Ok(self
            .events
            .iter()
            .filter(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= start))
            .filter(|e| e.kv.as_ref().is_some_and(|kv| in_range(&kv.key, key, end)))
            .cloned()
            .map(|mut e| {
                // The version an event at the compaction point replaced has been compacted.
                if e.kv.as_ref().map(|kv| kv.mod_revision) == Some(self.compacted) {
                    e.prev_kv = None;
                }
                e
            })
            .collect())
    }
}

fn model_range(state: &State, req: &RangeRequest) -> RangeResponse {
    let mut kvs: Vec<KeyValue> = state
        .values()
        .filter(|kv| in_range(&kv.key, &req.key, &req.range_end))
        .cloned()
        .collect();
    let count = kvs.len() as i64;
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    if req.count_only {
        kvs.clear();
        more = false;
    }
    RangeResponse {
        header: None,
        kvs,
        more,
        count,
    }
}

/// Applies a put to `state` at (main, _) and returns its event.
fn model_put(state: &mut State, key: &[u8], value: &[u8], lease: i64, main: i64) -> Event {
    let prev = state.get(key).cloned();
    let kv = KeyValue {
        key: key.to_vec(),
        create_revision: prev.as_ref().map_or(main, |p| p.create_revision),
        mod_revision: main,
        version: prev.as_ref().map_or(1, |p| p.version + 1),
        value: value.to_vec(),
        lease,
    };
    state.insert(key.to_vec(), kv.clone());
    put_event(kv, prev)
}

fn model_delete(state: &mut State, key: &[u8], end: &[u8], main: i64) -> Vec<Event> {
    let doomed: Vec<Vec<u8>> = state
        .keys()
        .filter(|k| in_range(k, key, end))
        .cloned()
        .collect();
    doomed
        .into_iter()
        .map(|k| {
            let prev = state.remove(&k);
            delete_event(&k, main, prev)
        })
        .collect()
}

fn key_bytes(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

/// An end of range: "" (single key), "\0" (everything above), or a key.
fn end_bytes(end: Option<u8>) -> Vec<u8> {
    match end {
        None => Vec::new(),
        Some(0) => vec![0],
        Some(k) => key_bytes(k),
    }
}

#[derive(Debug, Clone)]
enum TxnOp {
    Put(u8, u8),
    Delete(u8, Option<u8>),
    Range(u8, Option<u8>),
    Nested(Box<TxnSpec>),
}

/// A txn whose single compare is `version(key) OP version`.
#[derive(Debug, Clone)]
struct TxnSpec {
    key: u8,
    version: i64,
    result: i32,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        value: u8,
        lease: i64,
        prev_kv: bool,
        ignore_value: bool,
        ignore_lease: bool,
    },
    Delete {
        key: u8,
        end: Option<u8>,
    },
    Range {
        key: u8,
        end: Option<u8>,
        back: i64,
        limit: i64,
        keys_only: bool,
        count_only: bool,
    },
    Txn(TxnSpec),
    /// Moves the compaction point; the pass over the index waits for `CompactStep`s and
    /// commits, so the other operations meet keys it has not reached.
    Compact {
        back: i64,
    },
    /// Moves the compaction's pass on by this many keys.
    CompactStep {
        keys: usize,
    },
    Events {
        back: i64,
        key: u8,
        end: Option<u8>,
    },
    /// Hands what changed to the engine: later reads find those versions in the file.
    Commit,
    /// Commits, then rebuilds the store from its engine alone, as a restart does.
    Reload,
}

fn key_strategy() -> impl Strategy<Value = u8> {
    0u8..5
}

fn end_strategy() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![Just(None), Just(Some(0)), (1u8..6).prop_map(Some)]
}

fn leaf_op_strategy() -> BoxedStrategy<TxnOp> {
    prop_oneof![
        3 => (key_strategy(), 0u8..4).prop_map(|(k, v)| TxnOp::Put(k, v)),
        1 => (key_strategy(), end_strategy()).prop_map(|(k, e)| TxnOp::Delete(k, e)),
        1 => (key_strategy(), end_strategy()).prop_map(|(k, e)| TxnOp::Range(k, e)),
    ]
    .boxed()
}

fn txn_spec_strategy(op: BoxedStrategy<TxnOp>) -> impl Strategy<Value = TxnSpec> {
    (
        key_strategy(),
        0i64..3,
        0i32..4,
        prop::collection::vec(op.clone(), 0..4),
        prop::collection::vec(op, 0..3),
    )
        .prop_map(|(key, version, result, success, failure)| TxnSpec {
            key,
            version,
            result,
            success,
            failure,
        })
}

/// Txn ops with at most one level of nested txns.
fn txn_op_strategy() -> BoxedStrategy<TxnOp> {
    prop_oneof![
        5 => leaf_op_strategy(),
        1 => txn_spec_strategy(leaf_op_strategy()).prop_map(|t| TxnOp::Nested(Box::new(t))),
    ]
    .boxed()
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key_strategy(), 0u8..4, 0i64..4, any::<bool>(), 0u8..8, 0u8..8).prop_map(
            |(key, value, lease, prev_kv, iv, il)| Op::Put {
                key,
                value,
                lease,
                prev_kv,
                ignore_value: iv == 0,
                ignore_lease: il == 0,
            }
        ),
        2 => (key_strategy(), end_strategy()).prop_map(|(key, end)| Op::Delete { key, end }),
        3 => (key_strategy(), end_strategy(), -1i64..6, 0i64..3, 0u8..4, 0u8..4).prop_map(
            |(key, end, back, limit, ko, co)| Op::Range {
                key,
                end,
                back,
                limit,
                keys_only: ko == 0,
                count_only: co == 0,
            }
        ),
        2 => txn_spec_strategy(txn_op_strategy()).prop_map(Op::Txn),
        1 => (-1i64..6).prop_map(|back| Op::Compact { back }),
        1 => (1usize..3).prop_map(|keys| Op::CompactStep { keys }),
        1 => (-1i64..6, key_strategy(), end_strategy())
            .prop_map(|(back, key, end)| Op::Events { back, key, end }),
        1 => Just(Op::Commit),
        1 => Just(Op::Reload),
    ]
}

fn to_request_op(op: &TxnOp) -> RequestOp {
    let request = match op {
        TxnOp::Put(k, v) => request_op::Request::RequestPut(PutRequest {
            key: key_bytes(*k),
            value: vec![*v],
            ..PutRequest::default()
        }),
        TxnOp::Delete(k, e) => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: key_bytes(*k),
            range_end: end_bytes(*e),
            prev_kv: true,
        }),
        TxnOp::Range(k, e) => request_op::Request::RequestRange(RangeRequest {
            key: key_bytes(*k),
            range_end: end_bytes(*e),
            ..RangeRequest::default()
        }),
        TxnOp::Nested(spec) => request_op::Request::RequestTxn(to_txn_request(spec)),
    };
    RequestOp {
        request: Some(request),
    }
}

fn to_txn_request(spec: &TxnSpec) -> TxnRequest {
    let compare = Compare {
        result: spec.result,
        target: CompareTarget::Version as i32,
        key: key_bytes(spec.key),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::Version(spec.version)),
    };
    TxnRequest {
        compare: vec![compare],
        success: spec.success.iter().map(to_request_op).collect(),
        failure: spec.failure.iter().map(to_request_op).collect(),
    }
}

/// A write on one execution path: a put of a key, or a delete of a range.
#[derive(Debug, Clone)]
enum Write {
    Put(Vec<u8>),
    Delete(Vec<u8>, Vec<u8>),
}

/// The writes of every way a branch can run (each nested txn taking either of its branches).
fn write_paths(ops: &[TxnOp]) -> Vec<Vec<Write>> {
    let mut paths = vec![Vec::new()];
    for op in ops {
        match op {
            TxnOp::Put(k, _) => paths
                .iter_mut()
                .for_each(|p| p.push(Write::Put(key_bytes(*k)))),
            TxnOp::Delete(k, e) => paths
                .iter_mut()
                .for_each(|p| p.push(Write::Delete(key_bytes(*k), end_bytes(*e)))),
            TxnOp::Range(..) => {}
            TxnOp::Nested(spec) => {
                let choices: Vec<Vec<Write>> = write_paths(&spec.success)
                    .into_iter()
                    .chain(write_paths(&spec.failure))
                    .collect();
                paths = paths
                    .iter()
                    .flat_map(|p| {
                        choices
                            .iter()
                            .map(move |c| p.iter().chain(c).cloned().collect())
                    })
                    .collect();
            }
        }
    }
    paths
}

/// Whether some way of running the branch puts a key twice or puts inside a deleted range.
fn branch_is_duplicate(ops: &[TxnOp]) -> bool {
    write_paths(ops).iter().any(|path| {
        let puts: Vec<&Vec<u8>> = path
            .iter()
            .filter_map(|w| match w {
                Write::Put(k) => Some(k),
                Write::Delete(..) => None,
            })
            .collect();
        let repeated = puts.iter().enumerate().any(|(i, k)| puts[..i].contains(k));
        let deleted = path.iter().any(|w| match w {
            Write::Delete(s, e) => puts.iter().any(|p| in_range(p, s, e)),
            Write::Put(_) => false,
        });
        repeated || deleted
    })
}

/// Runs one op on both the store and the model and checks they agree.
fn step(store: &mut KvStore, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::Put {
            key,
            value,
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        } => {
            let req = PutRequest {
                key: key_bytes(*key),
                value: if *value == 0 {
                    Vec::new()
                } else {
                    vec![*value]
                },
                lease: *lease,
                prev_kv: *prev_kv,
                ignore_value: *ignore_value,
                ignore_lease: *ignore_lease,
            };
            let prev = model.latest().get(&req.key).cloned();
            let expected = if req.ignore_value && !req.value.is_empty() {
                Err(KvError::ValueProvided)
            } else if req.ignore_lease && req.lease != 0 {
                Err(KvError::LeaseProvided)
            } else if req.lease != 0 && !lease_exists(req.lease) {
                Err(KvError::LeaseNotFound)
            } else if (req.ignore_value || req.ignore_lease) && prev.is_none() {
                Err(KvError::KeyNotFound)
            } else {
                Ok(())
            };
            let got = store.put(&req, &lease_exists);
            match (expected, got) {
                (Err(want), got) => prop_assert_eq!(got.map(|_| ()), Err(want)),
                (Ok(()), Err(e)) => prop_assert!(false, "put refused: {e}"),
                (Ok(()), Ok((resp, events))) => {
                    let old = prev.as_ref();
                    let value = match (req.ignore_value, old) {
                        (true, Some(p)) => p.value.clone(),
                        _ => req.value.clone(),
                    };
                    let lease = match (req.ignore_lease, old) {
                        (true, Some(p)) => p.lease,
                        _ => req.lease,
                    };
                    let mut state = model.latest().clone();
                    let main = model.current() + 1;
                    let event = model_put(&mut state, &req.key, &value, lease, main);
                    let want_prev = if req.prev_kv { prev.clone() } else { None };
                    prop_assert_eq!(resp.prev_kv, want_prev);
                    prop_assert_eq!(&events, &vec![event]);
                    model.commit(state, events);
                }
            }
        }
        Op::Delete { key, end } => {
            let req = DeleteRangeRequest {
                key: key_bytes(*key),
                range_end: end_bytes(*end),
                prev_kv: true,
            };
            let mut state = model.latest().clone();
            let want = model_delete(&mut state, &req.key, &req.range_end, model.current() + 1);
            let got = store.delete_range(&req);
            let Ok((resp, events)) = got else {
                return Err(TestCaseError::fail(format!("delete refused: {got:?}")));
            };
            prop_assert_eq!(resp.deleted, want.len() as i64);
            let want_prev: Vec<KeyValue> = want.iter().filter_map(|e| e.prev_kv.clone()).collect();
            prop_assert_eq!(resp.prev_kvs, want_prev);
            prop_assert_eq!(&events, &want);
            model.commit(state, events);
        }
        Op::Range {
            key,
            end,
            back,
            limit,
            keys_only,
            count_only,
        } => {
            let req = RangeRequest {
                key: key_bytes(*key),
                range_end: end_bytes(*end),
                revision: if *back == 0 {
                    0
                } else {
                    model.current() - back
                },
                limit: *limit,
                keys_only: *keys_only,
                count_only: *count_only,
                ..RangeRequest::default()
            };
            prop_assert_eq!(store.range(&req), model.range(&req));
        }
        Op::Txn(spec) => txn_step(store, model, spec)?,
        Op::Compact { back } => {
            let rev = model.current() - back;
            let want = if rev <= model.compacted {
                Err(KvError::Compacted {
                    compact_revision: model.compacted,
                })
            } else if rev > model.current() {
                Err(KvError::FutureRevision)
            } else {
                Ok(())
            };
            prop_assert_eq!(store.begin_compaction(rev), want.clone());
            if want.is_ok() {
                model.compacted = rev;
            }
        }
        Op::CompactStep { keys } => {
            store.compact_step(*keys);
        }
        Op::Events { back, key, end } => {
            let start = model.current() - back;
            let (k, e) = (key_bytes(*key), end_bytes(*end));
            prop_assert_eq!(
                store.events_since(start, &k, &e),
                model.events_since(start, &k, &e)
            );
        }
        Op::Commit => prop_assert_eq!(store.commit(None, false), Ok(())),
        Op::Reload => {
            prop_assert_eq!(store.commit(None, false), Ok(()));
            let engine = std::mem::take(store).into_engine();
            *store =
                KvStore::from_engine(engine).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }
    prop_assert_eq!(store.current_revision(), model.current());
    prop_assert_eq!(store.compact_revision(), model.compacted);
    prop_assert_eq!(store.key_count(), model.latest().len());
    Ok(())
}

fn txn_step(store: &mut KvStore, model: &mut Model, spec: &TxnSpec) -> Result<(), TestCaseError> {
    let got = store.txn(&to_txn_request(spec), &lease_exists);
    if branch_is_duplicate(&spec.success) || branch_is_duplicate(&spec.failure) {
        prop_assert_eq!(got.map(|_| ()), Err(KvError::DuplicateKey));
        return Ok(());
    }
    let Ok((resp, events)) = got else {
        return Err(TestCaseError::fail(format!("txn refused: {got:?}")));
    };
    let before = model.latest().clone();
    let mut run = ModelTxn {
        before: &before,
        state: before.clone(),
        main: model.current() + 1,
        events: Vec::new(),
    };
    run.check(spec, &resp)?;
    prop_assert_eq!(&events, &run.events);
    let state = run.state;
    model.commit(state, events);
    Ok(())
}

/// The model's run of one txn: compares read `before`, ops change `state`.
struct ModelTxn<'a> {
    before: &'a State,
    state: State,
    main: i64,
    events: Vec<Event>,
}

impl ModelTxn<'_> {
    fn compare_holds(&self, spec: &TxnSpec) -> bool {
        let have = self
            .before
            .get(&key_bytes(spec.key))
            .map_or(0, |kv| kv.version);
        match CompareResult::try_from(spec.result) {
            Ok(CompareResult::Equal) => have == spec.version,
            Ok(CompareResult::Greater) => have > spec.version,
            Ok(CompareResult::Less) => have < spec.version,
            Ok(CompareResult::NotEqual) => have != spec.version,
            Err(_) => false,
        }
    }

    /// Runs `spec` on the model and checks the store's response to it.
    fn check(&mut self, spec: &TxnSpec, resp: &TxnResponse) -> Result<(), TestCaseError> {
        let succeeded = self.compare_holds(spec);
        prop_assert_eq!(resp.succeeded, succeeded);
        let branch = if succeeded {
            &spec.success
        } else {
            &spec.failure
        };
        prop_assert_eq!(resp.responses.len(), branch.len());
        for (op, response) in branch.iter().zip(&resp.responses) {
            match (op, &response.response) {
                (TxnOp::Put(k, v), Some(response_op::Response::ResponsePut(_))) => {
                    let event = model_put(&mut self.state, &key_bytes(*k), &[*v], 0, self.main);
                    self.events.push(event);
                }
                (TxnOp::Delete(k, e), Some(response_op::Response::ResponseDeleteRange(r))) => {
                    let deleted =
                        model_delete(&mut self.state, &key_bytes(*k), &end_bytes(*e), self.main);
                    prop_assert_eq!(r.deleted, deleted.len() as i64);
                    self.events.extend(deleted);
                }
                (TxnOp::Range(k, e), Some(response_op::Response::ResponseRange(r))) => {
                    let req = RangeRequest {
                        key: key_bytes(*k),
                        range_end: end_bytes(*e),
                        ..RangeRequest::default()
                    };
                    prop_assert_eq!(r, &model_range(&self.state, &req));
                }
                (TxnOp::Nested(inner), Some(response_op::Response::ResponseTxn(r))) => {
                    self.check(inner, r)?;
                }
                (op, other) => prop_assert!(false, "{op:?} answered by {other:?}"),
            }
        }
        Ok(())
    }
}

/// Checks every readable revision, the hash and a snapshot round trip at the end of a run.
fn check_history(store: &KvStore, model: &Model) -> Result<(), TestCaseError> {
    for rev in model.compacted.max(1)..=model.current() {
        let req = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            ..RangeRequest::default()
        };
        prop_assert_eq!(store.range(&req), model.range(&req), "revision {}", rev);
    }
    for start in model.compacted..=model.current() + 1 {
        prop_assert_eq!(
            store.events_since(start, &[0], &[0]),
            model.events_since(start, &[0], &[0]),
            "events since {}",
            start
        );
    }
    let snapshot = store.to_snapshot().unwrap();
    let bytes = prost::Message::encode_to_vec(&snapshot);
    let decoded: KvSnapshot = match prost::Message::decode(bytes.as_slice()) {
        Ok(s) => s,
        Err(e) => return Err(TestCaseError::fail(format!("decode: {e}"))),
    };
    let copy = match KvStore::from_snapshot(&decoded) {
        Ok(copy) => copy,
        Err(e) => return Err(TestCaseError::fail(format!("round trip refused: {e}"))),
    };
    prop_assert_eq!(copy.to_snapshot().unwrap(), snapshot);
    prop_assert_eq!(copy.key_count(), store.key_count());
    for rev in model.compacted.max(1)..=model.current() {
        prop_assert_eq!(copy.hash_kv(rev), store.hash_kv(rev));
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            ..RangeRequest::default()
        };
        prop_assert_eq!(copy.range(&all), store.range(&all));
    }
    let since = model.compacted;
    prop_assert_eq!(
        copy.events_since(since, &[0], &[0]),
        store.events_since(since, &[0], &[0])
    );
    Ok(())
}

fn key_version_strategy() -> impl Strategy<Value = KeyVersion> {
    let kv = (0u8..3, -1i64..6, -1i64..6, -1i64..4, 0u8..3, -1i64..3).prop_map(
        |(k, create, modr, version, value, lease)| KeyValue {
            key: if k == 0 { Vec::new() } else { key_bytes(k - 1) },
            create_revision: create,
            mod_revision: modr,
            version,
            value: vec![value],
            lease,
        },
    );
    (
        0u8..3,
        -1i64..6,
        -1i64..3,
        any::<bool>(),
        prop::option::of(kv),
    )
        .prop_map(|(k, main, sub, tombstone, kv)| KeyVersion {
            key: if k == 0 { Vec::new() } else { key_bytes(k - 1) },
            main,
            sub,
            tombstone,
            kv,
        })
}

fn snapshot_strategy() -> impl Strategy<Value = KvSnapshot> {
    (
        prop_oneof![Just(i64::MAX), Just(i64::MIN), -1i64..8],
        -1i64..8,
        prop::collection::vec(key_version_strategy(), 0..6),
    )
        .prop_map(
            |(current_revision, compact_revision, versions)| KvSnapshot {
                current_revision,
                compact_revision,
                versions,
            },
        )
}

/// Exercises a store that `from_snapshot` accepted: nothing may panic and it must round-trip.
fn use_loaded_store(input: &KvSnapshot, mut store: KvStore) -> Result<(), TestCaseError> {
    let mut normalized = input.clone();
    for v in &mut normalized.versions {
        if v.tombstone {
            v.kv = None;
        }
    }
    prop_assert_eq!(store.to_snapshot().unwrap(), normalized);
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..RangeRequest::default()
    };
    prop_assert!(store.range(&all).is_ok());
    prop_assert!(store.hash_kv(0).is_ok());
    prop_assert!(store
        .events_since(store.compact_revision(), &[0], &[0])
        .is_ok());
    let req = PutRequest {
        key: b"a".to_vec(),
        value: b"v".to_vec(),
        ..PutRequest::default()
    };
    prop_assert!(store.put(&req, &lease_exists).is_ok());
    let del = DeleteRangeRequest {
        key: vec![0],
        range_end: vec![0],
        prev_kv: false,
    };
    prop_assert!(store.delete_range(&del).is_ok());
    prop_assert_eq!(store.key_count(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn store_agrees_with_the_model(ops in prop::collection::vec(op_strategy(), 1..40)) {
        let mut store = KvStore::new();
        let mut model = Model::new();
        for op in &ops {
            step(&mut store, &mut model, op)?;
        }
        check_history(&store, &model)?;
    }

    #[test]
    fn from_snapshot_never_panics_on_arbitrary_input(snapshot in snapshot_strategy()) {
        if let Ok(store) = KvStore::from_snapshot(&snapshot) {
            use_loaded_store(&snapshot, store)?;
        }
    }

    #[test]
    fn from_snapshot_never_panics_on_a_mutated_valid_snapshot(
        ops in prop::collection::vec(op_strategy(), 1..20),
        victim in any::<prop::sample::Index>(),
        field in 0u8..8,
        delta in -2i64..3,
    ) {
        let mut store = KvStore::new();
        let mut model = Model::new();
        for op in &ops {
            step(&mut store, &mut model, op)?;
        }
        let mut snapshot = store.to_snapshot().unwrap();
        match (field, snapshot.versions.is_empty()) {
            (0, _) => snapshot.current_revision += delta,
            (1, _) => snapshot.compact_revision += delta,
            (_, true) => {}
            (f, false) => {
                let i = victim.index(snapshot.versions.len());
                let v = &mut snapshot.versions[i];
                match f {
                    2 => v.main += delta,
                    3 => v.sub += delta,
                    4 => v.tombstone = !v.tombstone,
                    5 => { v.kv = None; }
                    6 => if let Some(kv) = v.kv.as_mut() { kv.version += delta },
                    _ => if let Some(kv) = v.kv.as_mut() { kv.create_revision += delta },
                }
            }
        }
        if let Ok(loaded) = KvStore::from_snapshot(&snapshot) {
            use_loaded_store(&snapshot, loaded)?;
        }
    }
}
