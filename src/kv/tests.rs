//! Unit tests of the store, one per etcd rule.

use super::*;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{
    request_op, response_op, Compare, RangeRequest, RangeResponse, RequestOp, TxnRequest,
    TxnResponse,
};
use crate::proto::stetpb::KvSnapshot;

fn no_leases(_: i64) -> bool {
    false
}

fn lease_7_exists(id: i64) -> bool {
    id == 7
}

fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    }
}

fn put(store: &mut KvStore, key: &str, value: &str) -> Vec<Event> {
    match store.put(&put_req(key, value), &no_leases) {
        Ok((_, events)) => events,
        Err(e) => panic!("put {key} failed: {e}"),
    }
}

fn del_req(key: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.into(),
        range_end: end.into(),
        prev_kv: true,
    }
}

fn range_req(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: end.into(),
        ..RangeRequest::default()
    }
}

fn get(store: &KvStore, req: &RangeRequest) -> RangeResponse {
    match store.range(req) {
        Ok(resp) => resp,
        Err(e) => panic!("range failed: {e}"),
    }
}

/// A range part with its values read (as the runtime reads them, off the store's owner).
fn part(store: &KvStore, req: &RangeRequest) -> RangeResponse {
    let (mut answer, reads) = store.range_part(req).unwrap();
    reads.read_into(&mut answer.kvs).unwrap();
    answer
}

fn keys_of(resp: &RangeResponse) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn value_at(store: &KvStore, key: &str, revision: i64) -> Option<Vec<u8>> {
    let req = RangeRequest {
        revision,
        ..range_req(key, "")
    };
    get(store, &req).kvs.first().map(|kv| kv.value.clone())
}

fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put_req(key, value))),
    }
}

fn op_del(key: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(del_req(key, end))),
    }
}

fn op_range(key: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(range_req(key, end))),
    }
}

fn op_txn(txn: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestTxn(txn)),
    }
}

fn cmp_value(key: &str, result: CompareResult, value: &str) -> Compare {
    Compare {
        result: result as i32,
        target: CompareTarget::Value as i32,
        key: key.into(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::Value(value.into())),
    }
}

fn cmp_version(key: &str, result: CompareResult, version: i64) -> Compare {
    Compare {
        result: result as i32,
        target: CompareTarget::Version as i32,
        key: key.into(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::Version(version)),
    }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn run_txn(store: &mut KvStore, req: &TxnRequest) -> (TxnResponse, Vec<Event>) {
    match store.txn(req, &no_leases) {
        Ok(out) => out,
        Err(e) => panic!("txn failed: {e}"),
    }
}

// --- revisions and versions ---

#[test]
fn empty_store_starts_at_revision_one() {
    let store = KvStore::new();
    assert_eq!(store.current_revision(), 1);
    assert_eq!(store.compact_revision(), 0);
    assert_eq!(store.key_count(), 0);
}

#[test]
fn each_put_bumps_the_revision_and_the_version() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    assert_eq!(store.current_revision(), 3);
    let kv = &get(&store, &range_req("a", "")).kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
}

#[test]
fn recreated_key_starts_a_new_generation() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    assert!(store.delete_range(&del_req("a", "")).is_ok());
    put(&mut store, "a", "3");
    let kv = &get(&store, &range_req("a", "")).kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
}

#[test]
fn delete_of_nothing_creates_no_revision() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let (resp, events) = store.delete_range(&del_req("b", "")).unwrap_or_default();
    assert_eq!(resp.deleted, 0);
    assert!(events.is_empty());
    assert_eq!(store.current_revision(), 2);
}

#[test]
fn put_event_carries_previous_value() {
    let mut store = KvStore::new();
    let first = put(&mut store, "a", "1");
    assert_eq!(first[0].prev_kv, None);
    assert_eq!(first[0].r#type, EventType::Put as i32);
    let second = put(&mut store, "a", "2");
    assert_eq!(
        second[0].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b"1".to_vec())
    );
}

#[test]
fn events_leave_out_replaced_values_no_watcher_wants() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "1");
    store.set_prev_values_in_events(false);
    let replaced = KeyValue {
        key: b"a".to_vec(),
        create_revision: 2,
        mod_revision: 2,
        version: 1,
        value: Vec::new(),
        lease: 0,
    };
    // The event keeps what lease tracking reads; the value is not read.
    let events = put(&mut store, "a", "2");
    assert_eq!(events[0].prev_kv, Some(replaced));
    // A put that asks for prev_kv, or keeps the old value, still reads it.
    let asked = PutRequest {
        prev_kv: true,
        ..put_req("a", "3")
    };
    let (resp, events) = store.put(&asked, &no_leases).unwrap_or_default();
    assert_eq!(resp.prev_kv.map(|kv| kv.value), Some(b"2".to_vec()));
    assert_eq!(
        events[0].prev_kv.as_ref().map(|kv| &kv.value[..]),
        Some(&b"2"[..])
    );
    let keep = PutRequest {
        ignore_value: true,
        ..put_req("a", "")
    };
    store.put(&keep, &no_leases).unwrap_or_default();
    assert_eq!(get(&store, &range_req("a", "")).kvs[0].value, b"3");
    let quiet = DeleteRangeRequest {
        prev_kv: false,
        ..del_req("b", "")
    };
    let (resp, events) = store.delete_range(&quiet).unwrap_or_default();
    assert!(resp.prev_kvs.is_empty());
    assert_eq!(
        events[0]
            .prev_kv
            .as_ref()
            .map(|kv| (kv.mod_revision, kv.value.len())),
        Some((3, 0))
    );
    store.set_prev_values_in_events(true);
    let events = put(&mut store, "a", "4");
    let replaced = events[0].prev_kv.as_ref().map(|kv| &kv.value[..]);
    assert_eq!(replaced, Some(&b"3"[..]));
}

#[test]
fn delete_event_has_bare_kv_and_previous_value() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let (resp, events) = store.delete_range(&del_req("a", "")).unwrap_or_default();
    assert_eq!(resp.deleted, 1);
    assert_eq!(resp.prev_kvs.len(), 1);
    assert_eq!(events[0].r#type, EventType::Delete as i32);
    let expected = KeyValue {
        key: b"a".to_vec(),
        mod_revision: 3,
        ..KeyValue::default()
    };
    assert_eq!(events[0].kv, Some(expected));
    assert_eq!(
        events[0].prev_kv.as_ref().map(|kv| kv.mod_revision),
        Some(2)
    );
}

#[test]
fn delete_range_tombstones_every_key_at_one_revision() {
    let mut store = KvStore::new();
    for k in ["a", "b", "c", "d"] {
        put(&mut store, k, "v");
    }
    let (resp, events) = store.delete_range(&del_req("b", "d")).unwrap_or_default();
    assert_eq!(resp.deleted, 2);
    let revs: Vec<_> = events
        .iter()
        .map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
        .collect();
    assert_eq!(revs, vec![Some(6), Some(6)]);
    assert_eq!(store.key_count(), 2);
}

#[test]
fn delete_without_prev_kv_flag_returns_no_prev_kvs_but_events_keep_them() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let req = DeleteRangeRequest {
        prev_kv: false,
        ..del_req("a", "")
    };
    let (resp, events) = store.delete_range(&req).unwrap_or_default();
    assert!(resp.prev_kvs.is_empty());
    assert!(events[0].prev_kv.is_some());
}

// --- put validation ---

#[test]
fn put_with_empty_key_is_refused() {
    let mut store = KvStore::new();
    assert_eq!(
        store.put(&put_req("", "v"), &no_leases).err(),
        Some(KvError::EmptyKey)
    );
    assert_eq!(store.current_revision(), 1);
}

#[test]
fn put_with_unknown_lease_is_refused() {
    let mut store = KvStore::new();
    let req = PutRequest {
        lease: 8,
        ..put_req("a", "v")
    };
    assert_eq!(
        store.put(&req, &lease_7_exists).err(),
        Some(KvError::LeaseNotFound)
    );
    let req = PutRequest {
        lease: 7,
        ..put_req("a", "v")
    };
    assert!(store.put(&req, &lease_7_exists).is_ok());
    assert_eq!(get(&store, &range_req("a", "")).kvs[0].lease, 7);
}

#[test]
fn ignore_value_keeps_the_old_value() {
    let mut store = KvStore::new();
    put(&mut store, "a", "old");
    let req = PutRequest {
        ignore_value: true,
        lease: 7,
        ..put_req("a", "")
    };
    assert!(store.put(&req, &lease_7_exists).is_ok());
    let kv = &get(&store, &range_req("a", "")).kvs[0];
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"old"[..], 7, 2)
    );
}

#[test]
fn ignore_value_with_a_value_is_refused() {
    let mut store = KvStore::new();
    put(&mut store, "a", "old");
    let req = PutRequest {
        ignore_value: true,
        ..put_req("a", "new")
    };
    assert_eq!(
        store.put(&req, &no_leases).err(),
        Some(KvError::ValueProvided)
    );
}

#[test]
fn ignore_value_on_missing_key_is_refused() {
    let mut store = KvStore::new();
    let req = PutRequest {
        ignore_value: true,
        ..put_req("a", "")
    };
    assert_eq!(
        store.put(&req, &no_leases).err(),
        Some(KvError::KeyNotFound)
    );
}

#[test]
fn ignore_lease_keeps_the_old_lease() {
    let mut store = KvStore::new();
    let req = PutRequest {
        lease: 7,
        ..put_req("a", "1")
    };
    assert!(store.put(&req, &lease_7_exists).is_ok());
    let req = PutRequest {
        ignore_lease: true,
        ..put_req("a", "2")
    };
    assert!(store.put(&req, &lease_7_exists).is_ok());
    let kv = &get(&store, &range_req("a", "")).kvs[0];
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"2"[..], 7));
}

#[test]
fn ignore_lease_with_a_lease_is_refused() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let req = PutRequest {
        ignore_lease: true,
        lease: 7,
        ..put_req("a", "2")
    };
    assert_eq!(
        store.put(&req, &lease_7_exists).err(),
        Some(KvError::LeaseProvided)
    );
}

#[test]
fn ignore_lease_on_deleted_key_is_refused() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    assert!(store.delete_range(&del_req("a", "")).is_ok());
    let req = PutRequest {
        ignore_lease: true,
        ..put_req("a", "2")
    };
    assert_eq!(
        store.put(&req, &no_leases).err(),
        Some(KvError::KeyNotFound)
    );
}

#[test]
fn put_returns_prev_kv_only_when_asked() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let (resp, _) = store
        .put(&put_req("a", "2"), &no_leases)
        .unwrap_or_default();
    assert_eq!(resp.prev_kv, None);
    let req = PutRequest {
        prev_kv: true,
        ..put_req("a", "3")
    };
    let (resp, _) = store.put(&req, &no_leases).unwrap_or_default();
    assert_eq!(resp.prev_kv.map(|kv| kv.value), Some(b"2".to_vec()));
}

// --- range ---

#[test]
fn in_range_follows_etcd_end_rules() {
    assert!(in_range(b"a", b"a", b""));
    assert!(!in_range(b"ab", b"a", b""));
    assert!(in_range(b"zzz", b"a", b"\0"));
    assert!(!in_range(b"0", b"a", b"\0"));
    assert!(in_range(b"\x01", b"\0", b"\0"));
    assert!(in_range(b"b", b"a", b"c"));
    assert!(!in_range(b"c", b"a", b"c"));
    assert!(!in_range(b"b", b"c", b"a"));
}

#[test]
fn range_with_empty_key_is_refused() {
    let store = KvStore::new();
    assert_eq!(
        store.range(&range_req("", "")).err(),
        Some(KvError::EmptyKey)
    );
}

#[test]
fn range_end_rules_select_single_key_prefix_and_everything() {
    let mut store = KvStore::new();
    for k in ["a", "ab", "b", "c"] {
        put(&mut store, k, "v");
    }
    assert_eq!(keys_of(&get(&store, &range_req("a", ""))), ["a"]);
    assert_eq!(keys_of(&get(&store, &range_req("a", "b"))), ["a", "ab"]);
    assert_eq!(keys_of(&get(&store, &range_req("b", "\0"))), ["b", "c"]);
    assert_eq!(get(&store, &range_req("\0", "\0")).kvs.len(), 4);
    assert!(get(&store, &range_req("c", "a")).kvs.is_empty());
}

#[test]
fn range_reads_old_revisions() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    assert!(store.delete_range(&del_req("a", "")).is_ok());
    assert_eq!(value_at(&store, "a", 1), None);
    assert_eq!(value_at(&store, "a", 2), Some(b"1".to_vec()));
    assert_eq!(value_at(&store, "a", 3), Some(b"2".to_vec()));
    assert_eq!(value_at(&store, "a", 4), None);
    assert_eq!(value_at(&store, "a", 0), None);
}

#[test]
fn range_at_future_revision_is_an_error() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let req = RangeRequest {
        revision: 3,
        ..range_req("a", "")
    };
    assert_eq!(store.range(&req).err(), Some(KvError::FutureRevision));
}

#[test]
fn range_at_compacted_revision_is_an_error() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    put(&mut store, "a", "3");
    assert!(store.compact(3).is_ok());
    let req = RangeRequest {
        revision: 2,
        ..range_req("a", "")
    };
    assert_eq!(
        store.range(&req).err(),
        Some(KvError::Compacted {
            compact_revision: 3
        })
    );
    assert_eq!(value_at(&store, "a", 3), Some(b"2".to_vec()));
}

#[test]
fn range_limit_truncates_and_sets_more_but_count_is_total() {
    let mut store = KvStore::new();
    for k in ["a", "b", "c"] {
        put(&mut store, k, "v");
    }
    let req = RangeRequest {
        limit: 2,
        ..range_req("a", "\0")
    };
    let resp = get(&store, &req);
    assert_eq!(keys_of(&resp), ["a", "b"]);
    assert!(resp.more);
    assert_eq!(resp.count, 3);
    let req = RangeRequest {
        limit: 3,
        ..range_req("a", "\0")
    };
    assert!(!get(&store, &req).more);
}

#[test]
fn range_keys_only_and_count_only() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "2");
    let req = RangeRequest {
        keys_only: true,
        ..range_req("a", "\0")
    };
    let resp = get(&store, &req);
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(resp.kvs[1].mod_revision, 3);
    let req = RangeRequest {
        count_only: true,
        ..range_req("a", "\0")
    };
    let resp = get(&store, &req);
    assert!(resp.kvs.is_empty());
    assert_eq!(resp.count, 2);
}

#[test]
fn range_filters_drop_kvs_but_not_count() {
    let mut store = KvStore::new();
    for k in ["a", "b", "c", "d"] {
        put(&mut store, k, "v");
    }
    put(&mut store, "a", "w"); // a: create 2, mod 6
    let req = RangeRequest {
        min_mod_revision: 3,
        max_mod_revision: 4,
        ..range_req("a", "\0")
    };
    let resp = get(&store, &req);
    assert_eq!(keys_of(&resp), ["b", "c"]);
    assert_eq!(resp.count, 4);
    let req = RangeRequest {
        max_create_revision: 2,
        ..range_req("a", "\0")
    };
    assert_eq!(keys_of(&get(&store, &req)), ["a"]);
    let req = RangeRequest {
        min_create_revision: 5,
        ..range_req("a", "\0")
    };
    assert_eq!(keys_of(&get(&store, &req)), ["d"]);
}

#[test]
fn range_sorts_by_target_and_order() {
    let mut store = KvStore::new();
    put(&mut store, "a", "3");
    put(&mut store, "b", "1");
    put(&mut store, "c", "2");
    put(&mut store, "b", "1");
    let sorted = |target: SortTarget, order: SortOrder| {
        let req = RangeRequest {
            sort_target: target as i32,
            sort_order: order as i32,
            ..range_req("a", "\0")
        };
        keys_of(&get(&store, &req))
    };
    assert_eq!(sorted(SortTarget::Key, SortOrder::None), ["a", "b", "c"]);
    assert_eq!(sorted(SortTarget::Key, SortOrder::Descend), ["c", "b", "a"]);
    // A non-key target without an order sorts ascending.
    assert_eq!(sorted(SortTarget::Value, SortOrder::None), ["b", "c", "a"]);
    assert_eq!(
        sorted(SortTarget::Value, SortOrder::Descend),
        ["a", "c", "b"]
    );
    assert_eq!(sorted(SortTarget::Mod, SortOrder::Ascend), ["a", "c", "b"]);
    assert_eq!(
        sorted(SortTarget::Create, SortOrder::Descend),
        ["c", "b", "a"]
    );
    // Ties keep key order when ascending; descending reverses the whole list.
    assert_eq!(
        sorted(SortTarget::Version, SortOrder::Ascend),
        ["a", "c", "b"]
    );
    assert_eq!(
        sorted(SortTarget::Version, SortOrder::Descend),
        ["b", "c", "a"]
    );
}

#[test]
fn sorted_range_applies_limit_after_sorting() {
    let mut store = KvStore::new();
    put(&mut store, "a", "3");
    put(&mut store, "b", "1");
    put(&mut store, "c", "2");
    let req = RangeRequest {
        sort_target: SortTarget::Value as i32,
        limit: 1,
        ..range_req("a", "\0")
    };
    let resp = get(&store, &req);
    assert_eq!(keys_of(&resp), ["b"]);
    assert!(resp.more);
    assert_eq!(resp.count, 3);
}

// --- txn ---

#[test]
fn txn_success_branch_runs_when_compares_hold() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let req = txn(
        vec![cmp_value("a", CompareResult::Equal, "1")],
        vec![op_put("b", "yes")],
        vec![op_put("b", "no")],
    );
    let (resp, events) = run_txn(&mut store, &req);
    assert!(resp.succeeded);
    assert_eq!(events.len(), 1);
    assert_eq!(value_at(&store, "b", 0), Some(b"yes".to_vec()));
}

#[test]
fn txn_failure_branch_runs_when_a_compare_fails() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let req = txn(
        vec![
            cmp_value("a", CompareResult::Equal, "1"),
            cmp_version("a", CompareResult::Greater, 1),
        ],
        vec![op_put("b", "yes")],
        vec![op_put("b", "no")],
    );
    let (resp, _) = run_txn(&mut store, &req);
    assert!(!resp.succeeded);
    assert_eq!(value_at(&store, "b", 0), Some(b"no".to_vec()));
}

#[test]
fn txn_writes_share_one_revision_with_increasing_subs() {
    let mut store = KvStore::new();
    put(&mut store, "x", "1");
    let req = txn(
        vec![],
        vec![op_put("a", "1"), op_put("b", "2"), op_del("x", "")],
        vec![],
    );
    let (_, events) = run_txn(&mut store, &req);
    assert_eq!(store.current_revision(), 3);
    assert_eq!(events.len(), 3);
    assert!(events
        .iter()
        .all(|e| e.kv.as_ref().map(|kv| kv.mod_revision) == Some(3)));
    let all = store.events_since(3, b"\0", b"\0").unwrap_or_default();
    assert_eq!(all, events);
}

#[test]
fn read_only_txn_creates_no_revision() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let req = txn(vec![], vec![op_range("a", "")], vec![]);
    let (resp, events) = run_txn(&mut store, &req);
    assert!(events.is_empty());
    assert_eq!(store.current_revision(), 2);
    match &resp.responses[0].response {
        Some(response_op::Response::ResponseRange(r)) => assert_eq!(r.count, 1),
        other => panic!("unexpected response {other:?}"),
    }
}

#[test]
fn range_inside_txn_sees_earlier_writes_of_the_txn() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let req = txn(
        vec![],
        vec![
            op_put("b", "2"),
            op_range("b", ""),
            op_del("a", ""),
            op_range("a", ""),
        ],
        vec![],
    );
    let (resp, _) = run_txn(&mut store, &req);
    let ranges: Vec<Vec<Vec<u8>>> = resp
        .responses
        .iter()
        .filter_map(|r| match &r.response {
            Some(response_op::Response::ResponseRange(r)) => {
                Some(r.kvs.iter().map(|kv| kv.value.clone()).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(ranges, vec![vec![b"2".to_vec()], vec![]]);
}

#[test]
fn compare_on_missing_key_fails_for_value_and_sees_zeros_otherwise() {
    let mut store = KvStore::new();
    let missing_value = txn(
        vec![cmp_value("a", CompareResult::Equal, "")],
        vec![],
        vec![],
    );
    assert!(!run_txn(&mut store, &missing_value).0.succeeded);
    let missing_version = txn(
        vec![cmp_version("a", CompareResult::Equal, 0)],
        vec![],
        vec![],
    );
    assert!(run_txn(&mut store, &missing_version).0.succeeded);
}

#[test]
fn compare_on_a_range_requires_every_key_to_pass() {
    let mut store = KvStore::new();
    put(&mut store, "a1", "x");
    put(&mut store, "a2", "x");
    put(&mut store, "b", "y");
    let mut all_x = cmp_value("a", CompareResult::Equal, "x");
    all_x.range_end = b"b".to_vec();
    assert!(
        run_txn(&mut store, &txn(vec![all_x.clone()], vec![], vec![]))
            .0
            .succeeded
    );
    all_x.range_end = b"\0".to_vec();
    assert!(
        !run_txn(&mut store, &txn(vec![all_x], vec![], vec![]))
            .0
            .succeeded
    );
}

#[test]
fn compare_mod_create_and_lease_targets() {
    let mut store = KvStore::new();
    let req = PutRequest {
        lease: 7,
        ..put_req("a", "1")
    };
    assert!(store.put(&req, &lease_7_exists).is_ok());
    put(&mut store, "a", "2");
    let holds = |store: &mut KvStore, target: CompareTarget, union: TargetUnion| {
        let c = Compare {
            result: CompareResult::Equal as i32,
            target: target as i32,
            key: b"a".to_vec(),
            range_end: Vec::new(),
            target_union: Some(union),
        };
        run_txn(store, &txn(vec![c], vec![], vec![])).0.succeeded
    };
    assert!(holds(
        &mut store,
        CompareTarget::Create,
        TargetUnion::CreateRevision(2)
    ));
    assert!(holds(
        &mut store,
        CompareTarget::Mod,
        TargetUnion::ModRevision(3)
    ));
    assert!(holds(
        &mut store,
        CompareTarget::Lease,
        TargetUnion::Lease(0)
    ));
    assert!(!holds(
        &mut store,
        CompareTarget::Lease,
        TargetUnion::Lease(7)
    ));
}

#[test]
fn compare_less_and_not_equal_read_field_op_operand() {
    let mut store = KvStore::new();
    put(&mut store, "a", "m");
    let check =
        |store: &mut KvStore, c: Compare| run_txn(store, &txn(vec![c], vec![], vec![])).0.succeeded;
    assert!(check(&mut store, cmp_value("a", CompareResult::Less, "z")));
    assert!(!check(&mut store, cmp_value("a", CompareResult::Less, "a")));
    assert!(check(
        &mut store,
        cmp_value("a", CompareResult::Greater, "a")
    ));
    assert!(check(
        &mut store,
        cmp_value("a", CompareResult::NotEqual, "a")
    ));
    assert!(check(&mut store, cmp_version("a", CompareResult::Less, 2)));
}

#[test]
fn nested_compares_see_the_state_before_the_txn() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let inner = txn(
        vec![cmp_value("a", CompareResult::Equal, "1")],
        vec![op_put("inner", "saw-old")],
        vec![op_put("inner", "saw-new")],
    );
    let req = txn(vec![], vec![op_put("a", "2"), op_txn(inner)], vec![]);
    let (resp, events) = run_txn(&mut store, &req);
    assert_eq!(value_at(&store, "inner", 0), Some(b"saw-old".to_vec()));
    assert_eq!(events.len(), 2);
    match &resp.responses[1].response {
        Some(response_op::Response::ResponseTxn(t)) => assert!(t.succeeded),
        other => panic!("unexpected response {other:?}"),
    }
}

#[test]
fn txn_putting_a_key_twice_is_refused() {
    let mut store = KvStore::new();
    let req = txn(vec![], vec![op_put("a", "1"), op_put("a", "2")], vec![]);
    assert_eq!(
        store.txn(&req, &no_leases).err(),
        Some(KvError::DuplicateKey)
    );
    let req = txn(vec![], vec![], vec![op_put("a", "1"), op_put("a", "2")]);
    assert_eq!(
        store.txn(&req, &no_leases).err(),
        Some(KvError::DuplicateKey)
    );
}

#[test]
fn txn_putting_inside_a_deleted_range_is_refused_in_either_order() {
    let mut store = KvStore::new();
    let req = txn(vec![], vec![op_del("a", "c"), op_put("b", "1")], vec![]);
    assert_eq!(
        store.txn(&req, &no_leases).err(),
        Some(KvError::DuplicateKey)
    );
    let req = txn(vec![], vec![op_put("b", "1"), op_del("a", "c")], vec![]);
    assert_eq!(
        store.txn(&req, &no_leases).err(),
        Some(KvError::DuplicateKey)
    );
    let ok = txn(vec![], vec![op_put("c", "1"), op_del("a", "c")], vec![]);
    assert!(store.txn(&ok, &no_leases).is_ok());
}

#[test]
fn nested_txn_writes_count_toward_the_parent_branch() {
    let mut store = KvStore::new();
    let inner = txn(vec![], vec![], vec![op_put("a", "2")]);
    let req = txn(vec![], vec![op_put("a", "1"), op_txn(inner)], vec![]);
    assert_eq!(
        store.txn(&req, &no_leases).err(),
        Some(KvError::DuplicateKey)
    );
    // The two branches of one nested txn exclude each other, so they may write the same key.
    let inner = txn(vec![], vec![op_put("a", "1")], vec![op_put("a", "2")]);
    let req = txn(vec![], vec![op_txn(inner)], vec![]);
    assert!(store.txn(&req, &no_leases).is_ok());
}

#[test]
fn same_key_in_success_and_failure_is_allowed() {
    let mut store = KvStore::new();
    let req = txn(vec![], vec![op_put("a", "1")], vec![op_put("a", "2")]);
    assert!(store.txn(&req, &no_leases).is_ok());
}

#[test]
fn refused_txn_applies_nothing() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let hash = store.hash_kv(0);
    let bad_put = PutRequest {
        ignore_value: true,
        ..put_req("missing", "")
    };
    let req = txn(
        vec![],
        vec![
            op_put("b", "1"),
            RequestOp {
                request: Some(request_op::Request::RequestPut(bad_put)),
            },
        ],
        vec![],
    );
    assert_eq!(
        store.txn(&req, &no_leases).err(),
        Some(KvError::KeyNotFound)
    );
    assert_eq!(store.current_revision(), 2);
    assert_eq!(store.hash_kv(0), hash);
}

#[test]
fn txn_put_with_unknown_lease_is_refused() {
    let mut store = KvStore::new();
    let put = PutRequest {
        lease: 9,
        ..put_req("a", "1")
    };
    let req = txn(
        vec![],
        vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put)),
        }],
        vec![],
    );
    assert_eq!(
        store.txn(&req, &lease_7_exists).err(),
        Some(KvError::LeaseNotFound)
    );
}

#[test]
fn txn_with_empty_key_anywhere_is_refused() {
    let mut store = KvStore::new();
    let req = txn(vec![], vec![], vec![op_range("", "")]);
    assert_eq!(store.txn(&req, &no_leases).err(), Some(KvError::EmptyKey));
}

#[test]
fn txn_range_at_future_revision_is_refused() {
    let mut store = KvStore::new();
    let mut range = range_req("a", "");
    range.revision = 5;
    let req = txn(
        vec![],
        vec![
            op_put("a", "1"),
            RequestOp {
                request: Some(request_op::Request::RequestRange(range)),
            },
        ],
        vec![],
    );
    assert_eq!(
        store.txn(&req, &no_leases).err(),
        Some(KvError::FutureRevision)
    );
    assert_eq!(store.current_revision(), 1);
}

// --- compaction and events ---

#[test]
fn compact_refuses_old_and_future_revisions() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    assert_eq!(
        store.compact(0),
        Err(KvError::Compacted {
            compact_revision: 0
        })
    );
    assert_eq!(store.compact(3), Err(KvError::FutureRevision));
    assert!(store.compact(2).is_ok());
    assert_eq!(
        store.compact(2),
        Err(KvError::Compacted {
            compact_revision: 2
        })
    );
}

#[test]
fn compact_keeps_the_newest_live_version_and_drops_dead_keys() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1"); // 2
    put(&mut store, "a", "2"); // 3
    put(&mut store, "b", "1"); // 4
    assert!(store.delete_range(&del_req("b", "")).is_ok()); // 5
    put(&mut store, "c", "1"); // 6
    assert!(store.compact(6).is_ok());
    let snapshot = store.to_snapshot().unwrap();
    let kept: Vec<(Vec<u8>, i64)> = snapshot
        .versions
        .iter()
        .map(|v| (v.key.clone(), v.main))
        .collect();
    assert_eq!(kept, vec![(b"a".to_vec(), 3), (b"c".to_vec(), 6)]);
    assert_eq!(value_at(&store, "a", 6), Some(b"2".to_vec()));
}

#[test]
fn watch_from_the_compact_revision_still_sees_its_delete() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1"); // 2
    assert!(store.delete_range(&del_req("a", "")).is_ok()); // 3
    put(&mut store, "b", "1"); // 4
    assert!(store.compact(3).is_ok());
    let events = store.events_since(3, b"a", b"\0").unwrap_or_default();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].r#type, EventType::Delete as i32);
    let single = store.events_since(3, b"a", b"").unwrap_or_default();
    assert_eq!(single.len(), 1);
    assert_eq!(
        store.events_since(2, b"a", b"\0"),
        Err(KvError::Compacted {
            compact_revision: 3
        })
    );
}

#[test]
fn events_since_lists_matching_events_in_revision_order() {
    let mut store = KvStore::new();
    put(&mut store, "b", "1"); // 2
    put(&mut store, "a", "1"); // 3
    put(&mut store, "z", "1"); // 4
    put(&mut store, "b", "2"); // 5
    let events = store.events_since(3, b"a", b"c").unwrap_or_default();
    let seen: Vec<(Vec<u8>, i64)> = events
        .iter()
        .filter_map(|e| e.kv.as_ref())
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    assert_eq!(seen, vec![(b"a".to_vec(), 3), (b"b".to_vec(), 5)]);
    assert_eq!(
        events[1].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b"1".to_vec())
    );
    assert!(store
        .events_since(6, b"a", b"\0")
        .unwrap_or_default()
        .is_empty());
}

/// A limited read of history stops only between revisions: a transaction's events come whole,
/// on one key and across keys, and fewer events than the limit means the history is complete.
#[test]
fn a_limited_history_read_holds_whole_revisions() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1"); // 2
    let both = txn(vec![], vec![op_put("a", "2"), op_put("b", "2")], vec![]);
    run_txn(&mut store, &both); // 3
    put(&mut store, "a", "3"); // 4
    let revisions = |events: Vec<Event>| -> Vec<i64> {
        events
            .iter()
            .filter_map(|e| e.kv.as_ref())
            .map(|kv| kv.mod_revision)
            .collect()
    };
    let across = |limit| {
        store
            .events_since_limited(2, b"a", b"\0", limit)
            .unwrap_or_default()
    };
    assert_eq!(revisions(across(1)), vec![2]);
    assert_eq!(
        revisions(across(2)),
        vec![2, 3, 3],
        "revision 3 is not split"
    );
    assert_eq!(revisions(across(4)), vec![2, 3, 3, 4]);
    assert_eq!(revisions(across(5)), vec![2, 3, 3, 4]);
    let one_key = |limit| {
        store
            .events_since_limited(2, b"a", b"", limit)
            .unwrap_or_default()
    };
    assert_eq!(revisions(one_key(2)), vec![2, 3]);
    assert_eq!(revisions(one_key(9)), vec![2, 3, 4]);
}

#[test]
fn hash_changes_with_writes_and_survives_compaction_of_unseen_history() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let (h2, _) = store.hash_kv(0).unwrap_or_default();
    put(&mut store, "a", "2");
    let (h3, _) = store.hash_kv(0).unwrap_or_default();
    assert_ne!(h2, h3);
    assert_eq!(store.hash_kv(2), Ok((h2, 0)));
    assert!(store.compact(3).is_ok());
    assert_eq!(
        store.hash_kv(2),
        Err(KvError::Compacted {
            compact_revision: 3
        })
    );
    assert_eq!(store.hash_kv(4), Err(KvError::FutureRevision));
    assert!(store.hash_kv(3).is_ok());
}

#[test]
fn hash_covers_each_version_field_by_field() {
    // What hash_kv hashes, one field at a time: buffering must not change the value.
    fn reference(store: &KvStore) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        for (key, versions) in &store.keys {
            for v in versions {
                if v.is_tombstone() && v.main <= store.compact_revision {
                    continue;
                }
                hasher.update(&(key.len() as u64).to_le_bytes());
                hasher.update(key);
                hasher.update(&v.main.to_le_bytes());
                hasher.update(&v.sub().to_le_bytes());
                hasher.update(&[u8::from(v.is_tombstone())]);
                hasher.update(&v.create_revision.to_le_bytes());
                hasher.update(&v.main.to_le_bytes());
                hasher.update(&v.version.to_le_bytes());
                hasher.update(&v.value_crc.to_le_bytes());
                hasher.update(&v.lease.to_le_bytes());
            }
        }
        hasher.finalize()
    }
    let mut store = KvStore::new();
    let big = "v".repeat(40_000);
    for n in 0..300 {
        let value = if n % 100 == 7 { big.as_str() } else { "x" };
        put(&mut store, &format!("k{}", n % 40), value);
    }
    assert!(store.delete_range(&del_req("k1", "k2")).is_ok());
    assert!(store.compact(200).is_ok());
    put(&mut store, "k3", "y");
    assert_eq!(store.hash_kv(0), Ok((reference(&store), 200)));
}

/// A hash taken in steps of `budget` index entries, with `between` run on the store before each
/// step after the first; also the number of steps.
fn stepped_hash(
    store: &mut KvStore,
    revision: i64,
    budget: usize,
    mut between: impl FnMut(&mut KvStore, usize),
) -> (Result<(u32, i64), KvError>, usize) {
    let mut progress = None;
    for step in 1.. {
        if step > 1 {
            between(store, step);
        }
        match store.hash_kv_step(revision, progress.take(), budget) {
            Ok(HashStep::Done {
                hash,
                compact_revision,
                ..
            }) => return (Ok((hash, compact_revision)), step),
            Ok(HashStep::More(next)) => progress = Some(next),
            Err(error) => return (Err(error), step),
        }
        assert!(step < 100_000, "a stepped hash never finished");
    }
    unreachable!()
}

/// Keys with several versions, tombstones and a compaction, then more writes.
fn store_with_history() -> KvStore {
    let mut store = KvStore::new();
    for n in 0..120 {
        put(&mut store, &format!("k{:02}", n % 37), &format!("v{n}"));
    }
    assert!(store.delete_range(&del_req("k1", "k2")).is_ok());
    assert!(store.compact(90).is_ok());
    for n in 0..20 {
        put(&mut store, &format!("k{:02}", n % 5 + 10), "again");
    }
    store
}

#[test]
fn a_hash_in_steps_equals_the_hash_in_one_go_at_every_budget() {
    let mut store = store_with_history();
    let current = store.current_revision();
    for revision in [0, 90, 100, 121, current] {
        let whole = store.hash_kv(revision);
        assert!(whole.is_ok(), "{revision}: {whole:?}");
        for budget in [1, 2, 3, 7, 16, 64, 1_000] {
            let (stepped, steps) = stepped_hash(&mut store, revision, budget, |_, _| {});
            assert_eq!(stepped, whole, "revision {revision}, budget {budget}");
            if budget == 1 {
                // Each step ends after the first key that used up the budget.
                assert_eq!(steps, store.keys.len(), "revision {revision}");
            }
        }
    }
}

#[test]
fn writes_between_steps_leave_the_hash_of_the_revision_the_first_step_fixed() {
    let mut store = store_with_history();
    let before = store.current_revision();
    let whole = store.hash_kv(before);
    // Revision 0 means the current one when the hash begins; new keys sort before, among and
    // after the ones hashed, and old keys get new versions.
    let (stepped, steps) = stepped_hash(&mut store, 0, 4, |store, step| {
        put(store, &format!("k{:02}", step % 50), "during");
        put(store, &format!("a{step}"), "during");
        put(store, &format!("z{step}"), "during");
        assert!(store.delete_range(&del_req("k05", "")).is_ok());
    });
    assert!(steps > 10, "only {steps} steps");
    assert_eq!(stepped, whole);
    assert_ne!(
        store.hash_kv(0),
        whole,
        "the writes changed the current hash"
    );
}

#[test]
fn a_compaction_between_steps_starts_the_hash_over_or_refuses_it() {
    let mut store = store_with_history();
    let current = store.current_revision();
    // Compacted below the hashed revision: the hash begins again and is the one after.
    let (stepped, _) = stepped_hash(&mut store, current, 8, |store, step| {
        if step == 3 {
            assert!(store.compact(100).is_ok());
        }
    });
    assert_eq!(stepped, store.hash_kv(current));
    assert_eq!(stepped.map(|(_, compact)| compact), Ok(100));
    // Compacted past it: refused as etcd refuses a compacted revision.
    let mut store = store_with_history();
    let (stepped, _) = stepped_hash(&mut store, 100, 8, |store, step| {
        if step == 3 {
            assert!(store.compact(110).is_ok());
        }
    });
    assert_eq!(
        stepped,
        Err(KvError::Compacted {
            compact_revision: 110
        })
    );
}

#[test]
fn a_stepped_hash_refuses_future_and_compacted_revisions_at_the_start() {
    let store = store_with_history();
    let current = store.current_revision();
    assert_eq!(
        store.hash_kv_step(current + 1, None, 8),
        Err(KvError::FutureRevision)
    );
    assert_eq!(
        store.hash_kv_step(50, None, 8),
        Err(KvError::Compacted {
            compact_revision: 90
        })
    );
    // An empty store hashes in one step.
    let empty = KvStore::new();
    assert_eq!(
        empty.hash_kv_step(0, None, 1),
        Ok(HashStep::Done {
            hash: crc32fast::hash(&[]),
            compact_revision: 0,
            began_at: 1
        })
    );
}

// --- snapshots ---

#[test]
fn snapshot_round_trip_keeps_everything() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "1");
    assert!(store.delete_range(&del_req("a", "")).is_ok());
    put(&mut store, "a", "2");
    assert!(store.compact(4).is_ok());
    put(&mut store, "c", "3");
    let copy = KvStore::from_snapshot(&store.to_snapshot().unwrap());
    let Ok(copy) = copy else {
        panic!("round trip failed: {copy:?}")
    };
    assert_eq!(copy.hash_kv(0), store.hash_kv(0));
    assert_eq!(copy.current_revision(), store.current_revision());
    assert_eq!(copy.compact_revision(), 4);
    assert_eq!(copy.key_count(), 3);
    assert_eq!(
        copy.events_since(4, b"\0", b"\0"),
        store.events_since(4, b"\0", b"\0")
    );
    assert_eq!(copy.to_snapshot().unwrap(), store.to_snapshot().unwrap());
}

#[test]
fn snapshot_with_versions_out_of_order_is_corrupt() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    let mut snap = store.to_snapshot().unwrap();
    snap.versions.swap(0, 1);
    assert!(matches!(
        KvStore::from_snapshot(&snap),
        Err(KvError::CorruptSnapshot(_))
    ));
}

#[test]
fn snapshot_with_version_beyond_current_revision_is_corrupt() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let mut snap = store.to_snapshot().unwrap();
    snap.current_revision = 1;
    assert!(matches!(
        KvStore::from_snapshot(&snap),
        Err(KvError::CorruptSnapshot(_))
    ));
    let bad = KvSnapshot {
        current_revision: 0,
        ..KvSnapshot::default()
    };
    assert!(KvStore::from_snapshot(&bad).is_err());
}

#[test]
fn snapshot_with_a_sub_revision_beyond_32_bits_is_corrupt() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let mut snap = store.to_snapshot().unwrap();
    snap.versions[0].sub = i64::from(u32::MAX);
    let copy = KvStore::from_snapshot(&snap).expect("the largest sub-revision the index keeps");
    assert_eq!(
        copy.to_snapshot().unwrap().versions[0].sub,
        i64::from(u32::MAX)
    );
    snap.versions[0].sub = i64::from(u32::MAX) + 1;
    assert!(matches!(
        KvStore::from_snapshot(&snap),
        Err(KvError::CorruptSnapshot(_))
    ));
}

#[test]
fn snapshot_with_inconsistent_versions_is_corrupt() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    let mut snap = store.to_snapshot().unwrap();
    if let Some(kv) = snap.versions[1].kv.as_mut() {
        kv.version = 5;
    }
    assert!(KvStore::from_snapshot(&snap).is_err());
}

#[test]
fn values_live_in_the_engine_after_a_commit_and_compaction_removes_them_there() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    put(&mut store, "b", "3");
    store.commit(None, false).unwrap();
    assert_eq!(store.uncommitted(), (0, 0));
    let view = store.engine().view().unwrap();
    let stored = |main: u64| {
        view.revision(crate::engine::Revision { main, sub: 0 })
            .unwrap()
    };
    assert!(stored(2).is_some() && stored(3).is_some() && stored(4).is_some());
    assert_eq!(
        value_at(&store, "a", 2),
        Some(b"1".to_vec()),
        "read from the engine"
    );
    assert_eq!(value_at(&store, "a", 0), Some(b"2".to_vec()));
    store.compact(3).unwrap();
    store.commit(None, false).unwrap();
    let view = store.engine().view().unwrap();
    let stored = |main: u64| {
        view.revision(crate::engine::Revision { main, sub: 0 })
            .unwrap()
    };
    assert!(stored(2).is_none(), "compacted away in the engine too");
    assert!(stored(3).is_some() && stored(4).is_some());
    assert_eq!(view.compact_revision().unwrap(), 3);
    assert_eq!(view.current_revision().unwrap(), 4);
}

/// A store holding "a" at revision 2, whose row then disappears from the file (a planted fault).
fn store_that_lost_revision_2() -> KvStore {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    store.commit(None, false).unwrap();
    let mut batch = crate::engine::Batch::new();
    batch.delete_revision(crate::engine::Revision { main: 2, sub: 0 });
    store.values.engine_mut().commit(batch, false).unwrap();
    store.values.refresh_view().unwrap();
    store
}

#[test]
fn a_value_the_engine_lost_is_a_storage_error_that_stops_the_store() {
    let store = store_that_lost_revision_2();
    assert!(store.storage_failure().is_none());
    let error = store.range(&range_req("a", "")).unwrap_err();
    assert!(matches!(error, KvError::Storage(_)), "{error:?}");
    assert!(store
        .storage_failure()
        .is_some_and(|why| why.contains("missing")));
    // Keys-only reads need no value and still work; the owner stops on the latched failure.
    let keys_only = RangeRequest {
        keys_only: true,
        ..range_req("a", "")
    };
    assert_eq!(keys_of(&get(&store, &keys_only)), vec!["a"]);
}

/// A range part's values are read after the store moved on — as the runtime reads them, off
/// the store's owner: committed versions from the view the part was walked in (kept readable
/// through later commits and the deletes of a compaction), the versions of a commit in flight
/// and those not committed yet copied at the walk.
#[test]
fn a_range_parts_values_are_read_from_the_state_it_walked_however_the_store_moves_on() {
    let mut store = KvStore::new();
    // d first: the reads go in revision order, not key order.
    for key in ["d", "a", "b", "c"] {
        put(&mut store, key, key);
    }
    store.commit(None, false).unwrap();
    put(&mut store, "b", "2");
    let mut batch = crate::engine::Batch::new();
    let versions = store.stage_keeping(&mut batch);
    let job = store.begin_commit(batch, false, versions).unwrap();
    put(&mut store, "c", "2");
    let request = RangeRequest {
        limit: 10,
        ..range_req("a", "z")
    };
    let (mut answer, reads) = store.range_part(&request).unwrap();
    assert_eq!(reads.len(), 2, "a and d are committed; b and c are copied");
    let values = |answer: &RangeResponse| -> Vec<String> {
        answer
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .collect()
    };
    assert_eq!(values(&answer), vec!["", "2", "2", ""]);
    // The store moves on: the commit lands, a and d change, everything older is compacted
    // and deleted from the file.
    job.run();
    assert!(store.finish_commit().unwrap());
    put(&mut store, "a", "3");
    store.delete_range(&del_req("d", "")).expect("d is deleted");
    store.commit(None, false).unwrap();
    store.compact(store.current_revision).unwrap();
    while !store.compaction_finished() {
        store.commit(None, false).unwrap();
    }
    store.commit(None, false).unwrap();
    let in_file = engine_revisions(&store);
    assert!(
        !in_file.contains(&2) && !in_file.contains(&3),
        "d's and a's first versions left the file"
    );
    reads.read_into(&mut answer.kvs).unwrap();
    assert_eq!(values(&answer), vec!["a", "2", "2", "d"]);
    assert_eq!(values(&part(&store, &request)), vec!["3", "2", "2"]);
    assert!(store.storage_failure().is_none());
}

/// A value the file lost, found by a read off the store's owner, is a storage error there and
/// latches the store's failure, which stops its owner.
#[test]
fn a_value_lost_from_the_file_read_off_the_owner_latches_the_stores_failure() {
    let store = store_that_lost_revision_2();
    let (mut answer, reads) = store.range_part(&range_req("a", "b")).unwrap();
    assert!(store.storage_failure().is_none(), "nothing read yet");
    let error = reads.read_into(&mut answer.kvs).unwrap_err();
    assert!(matches!(error, KvError::Storage(_)), "{error:?}");
    assert!(store
        .storage_failure()
        .is_some_and(|why| why.contains("missing")));
}

#[test]
fn a_value_stored_under_another_key_is_a_storage_error() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    store.commit(None, false).unwrap();
    let mut batch = crate::engine::Batch::new();
    let wrong = KeyValue {
        key: b"zzz".to_vec(),
        mod_revision: 2,
        create_revision: 2,
        version: 1,
        value: b"1".to_vec(),
        lease: 0,
    };
    let stored = crate::engine::Stored {
        tombstone: false,
        key_value: prost::Message::encode_to_vec(&wrong),
    };
    batch.put_revision(crate::engine::Revision { main: 2, sub: 0 }, stored);
    store.values.engine_mut().commit(batch, false).unwrap();
    store.values.refresh_view().unwrap();
    assert!(matches!(
        store.range(&range_req("a", "")),
        Err(KvError::Storage(_))
    ));
}

/// Every revision the engine's `key` table holds, by main revision.
fn engine_revisions(store: &KvStore) -> Vec<u64> {
    let mut mains = Vec::new();
    let view = store.engine().view().unwrap();
    view.revisions_from(crate::engine::Revision { main: 0, sub: 0 }, |r, _| {
        mains.push(r.main);
        true
    })
    .unwrap();
    mains
}

/// A compaction that drops more revisions than one commit deletes is spread over several
/// commits; a store loaded from the file part way drops the leftovers again (same index, same
/// hash) and deletes them from the file at its next commits.
#[test]
fn a_large_compaction_is_deleted_over_several_commits_and_a_load_part_way_drops_the_rest() {
    use super::values::COMPACTION_DELETES_PER_COMMIT;
    let mut store = KvStore::new();
    let overwrites = COMPACTION_DELETES_PER_COMMIT * 2 + 500;
    for i in 0..overwrites {
        put(&mut store, &format!("k{}", i % 100), "v");
    }
    put(&mut store, "gone", "x");
    store
        .delete_range(&DeleteRangeRequest {
            key: b"gone".to_vec(),
            ..Default::default()
        })
        .unwrap();
    store.commit(None, false).unwrap();
    let head = store.current_revision();
    store.compact(head).unwrap();
    let compacted_hash = store.hash_kv(0).unwrap();
    store.commit(None, false).unwrap();
    let left = store.deletes_waiting();
    assert_eq!(
        store.uncommitted().0,
        left.min(COMPACTION_DELETES_PER_COMMIT)
    );
    assert!(
        left > 0,
        "one commit deleted at most {COMPACTION_DELETES_PER_COMMIT}"
    );
    assert_eq!(engine_revisions(&store).len(), 100 + 1 + left);
    // Loaded now, the leftovers are dropped again and deleted at the next commits.
    let mut loaded = KvStore::from_engine(store.into_engine()).unwrap();
    assert_eq!(loaded.hash_kv(0).unwrap(), compacted_hash);
    assert_eq!(loaded.deletes_waiting(), left);
    while loaded.uncommitted().0 > 0 {
        loaded.commit(None, false).unwrap();
    }
    assert_eq!(
        engine_revisions(&loaded).len(),
        101,
        "100 keys and the delete at the head"
    );
    let reloaded = KvStore::from_engine(loaded.into_engine()).unwrap();
    assert_eq!(reloaded.hash_kv(0).unwrap(), compacted_hash);
    assert_eq!(reloaded.uncommitted(), (0, 0));
}

/// Found by the simulator (single, seed 107): a key deleted just before a compaction, the delete
/// not committed yet, while the compaction's deletes of its older versions were spread over
/// several commits. A load part way found the older versions without the delete and brought
/// the key back (here caught because it was written again later).
#[test]
fn a_key_deleted_just_before_a_compaction_stays_deleted_when_loaded_part_way() {
    use super::values::COMPACTION_DELETES_PER_COMMIT;
    let mut store = KvStore::new();
    for _ in 0..COMPACTION_DELETES_PER_COMMIT + 100 {
        put(&mut store, "a", "v");
    }
    put(&mut store, "k", "old");
    put(&mut store, "k", "older");
    store.commit(None, false).unwrap();
    // The delete waits for the next commit when the compaction drops it.
    store.delete_range(&del_req("k", "")).unwrap();
    // (a tombstone at exactly the compaction is kept: compact past it)
    put(&mut store, "b", "v");
    let head = store.current_revision();
    store.compact(head).unwrap();
    let compacted_hash = store.hash_kv(0).unwrap();
    store.commit(None, false).unwrap();
    assert!(store.uncommitted().0 > 0, "the deletes are spread");
    let loaded = KvStore::from_engine(store.into_engine()).unwrap();
    assert_eq!(get(&loaded, &range_req("k", "")).kvs, vec![]);
    assert_eq!(loaded.hash_kv(0).unwrap(), compacted_hash);
}

/// A load sorts rows by key and revision: keys sharing a long prefix (as Kubernetes' do), one a
/// prefix of another, several versions each written in interleaved order, deletes and puts again
/// — the loaded store has the same index, hash and history.
#[test]
fn a_load_rebuilds_the_index_of_keys_sharing_a_long_prefix() {
    let mut store = KvStore::new();
    let keys = [
        "/registry/pods/default/a",
        "/registry/pods/default/a0",
        "/registry/pods/default/b",
        "/registry/pods/default/",
        "/registry/services/x",
    ];
    for round in 0..4 {
        for (i, key) in keys.iter().enumerate().rev() {
            put(&mut store, key, &format!("v{round}{i}"));
        }
        if round == 1 {
            store.delete_range(&del_req(keys[0], "")).unwrap();
        }
    }
    store.commit(None, false).unwrap();
    let hash = store.hash_kv(0).unwrap();
    let all = get(&store, &range_req("/", "0"));
    let history = store.events_since(1, b"/", b"0").unwrap();
    let loaded = KvStore::from_engine(store.into_engine()).unwrap();
    assert_eq!(loaded.hash_kv(0).unwrap(), hash);
    assert_eq!(get(&loaded, &range_req("/", "0")).kvs, all.kvs);
    assert_eq!(loaded.events_since(1, b"/", b"0").unwrap(), history);
}

/// A load builds the stretches of the index's two halves side by side and joins them: the
/// counts are the index's, at every readable revision, however many keys (none, one, a few
/// stretches) and whatever was deleted and compacted.
#[test]
fn a_load_builds_the_stretches_that_count_the_index() {
    for keys in [0, 1, 2, 7, 40, 130] {
        let mut store = KvStore::new();
        for round in 0..3 {
            for k in 0..keys {
                put(&mut store, &format!("k{k:04}"), &format!("v{round}"));
            }
            if round == 1 && keys > 1 {
                store
                    .delete_range(&del_req("k0000", &format!("k{:04}", keys / 2)))
                    .unwrap();
            }
        }
        if keys > 0 {
            store
                .compact(store.current_revision - i64::from(keys / 3))
                .unwrap();
        }
        store.commit(None, false).unwrap();
        let loaded = KvStore::from_engine(store.into_engine()).unwrap();
        let (compacted, current) = (loaded.compact_revision, loaded.current_revision);
        loaded.stretches.check(&loaded.keys, compacted, current);
        let count = RangeRequest {
            count_only: true,
            ..range_req("k", "l")
        };
        assert_eq!(get(&loaded, &count).count, keys as i64, "{keys} keys");
    }
}

#[test]
fn a_keys_versions_grow_by_half_and_compaction_gives_their_room_back() {
    let mut store = KvStore::new();
    let capacity = |store: &KvStore| store.keys[&b"k"[..]].capacity();
    put(&mut store, "k", "1");
    assert_eq!(capacity(&store), 1);
    put(&mut store, "k", "2");
    assert_eq!(
        capacity(&store),
        2,
        "Vec's own growth would make room for four"
    );
    for value in 3..=5 {
        put(&mut store, "k", &value.to_string());
    }
    assert_eq!(capacity(&store), 6);
    let revision = store.current_revision();
    store.compact(revision).unwrap();
    assert_eq!(store.keys[&b"k"[..]].len(), 1);
    assert_eq!(capacity(&store), 1);
}

/// A commit written off the owner's thread: until it is taken in, reads find its versions in the
/// store (the engine's view is still the older state), history runs from the view through the
/// commit to what was written meanwhile, and the writes made meanwhile go to the next commit.
#[test]
fn reads_see_a_commit_in_flight_and_writes_go_on_meanwhile() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    store.commit(None, false).unwrap();
    put(&mut store, "a", "2");
    put(&mut store, "b", "1");
    let mut batch = crate::engine::Batch::new();
    let versions = store.stage_keeping(&mut batch);
    let job = store.begin_commit(batch, false, versions).unwrap();
    assert!(store.commit_in_flight().is_some());
    put(&mut store, "c", "1");
    assert_eq!(
        engine_revisions(&store),
        vec![2],
        "the view is the older state"
    );
    let values = |store: &KvStore| -> Vec<String> {
        get(store, &range_req("a", "z"))
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .collect()
    };
    assert_eq!(values(&store), vec!["2", "1", "1"]);
    let history = |store: &KvStore| -> Vec<i64> {
        let events = store.events_since(1, b"a", b"z").unwrap();
        events
            .iter()
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect()
    };
    assert_eq!(history(&store), vec![2, 3, 4, 5]);
    let hash_in_flight = store.hash_kv(0).unwrap();
    job.run();
    assert_eq!(engine_revisions(&store), vec![2, 3, 4], "in the file");
    assert!(store.finish_commit().unwrap());
    assert!(!store.finish_commit().unwrap(), "taken in once");
    assert_eq!(engine_revisions(&store), vec![2, 3, 4]);
    assert_eq!(values(&store), vec!["2", "1", "1"]);
    assert_eq!(history(&store), vec![2, 3, 4, 5]);
    assert_eq!(store.hash_kv(0).unwrap(), hash_in_flight);
    store.commit(None, false).unwrap();
    assert_eq!(engine_revisions(&store), vec![2, 3, 4, 5]);
    let loaded = KvStore::from_engine(store.into_engine()).unwrap();
    assert_eq!(loaded.hash_kv(0).unwrap(), hash_in_flight);
}

/// A store dropped with a commit in flight writes it first: the engine never closes under a
/// write.
#[test]
fn a_store_dropped_with_a_commit_in_flight_writes_it_first() {
    let (store, job) = store_with_a_commit_in_flight();
    assert!(!job.ran());
    drop(store);
    assert!(job.ran());
}

/// The engine is the store's alone while a commit is in flight: it has one writer.
#[test]
#[should_panic(expected = "commit in flight must be finished first")]
fn the_engine_is_not_handed_out_while_a_commit_is_in_flight() {
    let (store, _job) = store_with_a_commit_in_flight();
    let _ = store.into_engine();
}

/// A store holding one put, whose commit was begun and not run.
fn store_with_a_commit_in_flight() -> (KvStore, crate::engine::CommitJob) {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let mut batch = crate::engine::Batch::new();
    let versions = store.stage_keeping(&mut batch);
    let job = store.begin_commit(batch, false, versions).unwrap();
    (store, job)
}

/// Writes a history with every shape compaction meets: keys overwritten, keys deleted before the
/// compaction point, a key deleted exactly at it, keys created after it.
fn history_for_compaction(store: &mut KvStore) -> i64 {
    for round in 0..4 {
        for k in 0..30 {
            put(store, &format!("k{k:02}"), &format!("v{round}"));
        }
    }
    store.delete_range(&del_req("k05", "k09")).unwrap();
    put(store, "gone", "x");
    store.delete_range(&del_req("gone", "")).unwrap();
    let compact_at = store.current_revision();
    for k in 10..15 {
        put(store, &format!("k{k:02}"), "after");
    }
    put(store, "new", "n");
    compact_at
}

/// Everything a reader can learn of the store's history from `from` on.
fn readable(store: &KvStore, from: i64) -> Vec<String> {
    let mut seen = Vec::new();
    for revision in [0, from, from + 1] {
        let mut all = range_req("\0", "\0");
        all.revision = revision;
        seen.push(format!("{revision}: {:?}", store.range(&all)));
        seen.push(format!("hash {revision}: {:?}", store.hash_kv(revision)));
    }
    seen.push(format!("{:?}", store.events_since(from, b"\0", b"\0")));
    for key in ["k00", "k05", "k12", "gone", "new"] {
        let events = store.events_since(from, key.as_bytes(), b"");
        seen.push(format!("{key}: {events:?}"));
    }
    seen.push(format!("{:?}", store.to_snapshot()));
    seen
}

/// A compaction in steps reads, from its first step to its last and with writes between steps,
/// exactly as the same compaction made in one go: reads at and after the compaction point,
/// hashes, events (none replacing a dropped version carries it), the snapshot; and it ends with
/// the same index and the same revisions to delete from the engine.
#[test]
fn a_compaction_in_steps_reads_as_one_made_in_one_go() {
    let (mut stepped, mut whole) = (KvStore::new(), KvStore::new());
    let compact_at = history_for_compaction(&mut stepped);
    assert_eq!(history_for_compaction(&mut whole), compact_at);
    for store in [&mut stepped, &mut whole] {
        store.commit(None, false).unwrap();
    }
    whole.compact(compact_at).unwrap();
    stepped.begin_compaction(compact_at).unwrap();
    assert!(stepped.compacting() && !whole.compacting());
    assert_eq!(stepped.deletes_waiting(), 0, "the pass has not begun");
    assert_eq!(
        stepped.range(&RangeRequest {
            revision: compact_at - 1,
            ..range_req("k00", "")
        }),
        Err(KvError::Compacted {
            compact_revision: compact_at
        }),
        "older revisions are refused at once"
    );
    let mut steps = 0;
    loop {
        assert_eq!(readable(&stepped, compact_at), readable(&whole, compact_at));
        for store in [&mut stepped, &mut whole] {
            put(store, &format!("k{:02}", steps % 30), "between");
        }
        steps += 1;
        if !stepped.compact_step(4) {
            break;
        }
    }
    assert_eq!(steps, 8, "32 keys, 4 a step");
    assert!(!stepped.compacting());
    assert_eq!(readable(&stepped, compact_at), readable(&whole, compact_at));
    assert_eq!(stepped.keys, whole.keys);
    assert_eq!(stepped.deletes_waiting(), whole.deletes_waiting());
    // Three of four puts of 26 keys; four puts and a delete of k05..k08; gone's put.
    assert_eq!(stepped.deletes_waiting(), 26 * 3 + 4 * 5 + 1);
}

/// A compaction to a later point while a pass is under way starts the pass over there; commits
/// move a pass on by themselves until it is done, and the engine then holds what a compaction in
/// one go leaves.
#[test]
fn a_pass_under_way_gives_way_to_a_later_compaction_and_commits_finish_it() {
    let mut store = KvStore::new();
    let first = history_for_compaction(&mut store);
    store.commit(None, false).unwrap();
    store.begin_compaction(first - 20).unwrap();
    assert!(store.compact_step(5));
    assert!(store.deletes_waiting() > 0);
    store.begin_compaction(first).unwrap();
    assert!(store.compacting() && !store.compaction_finished());
    while store.uncommitted().0 > 0 {
        store.commit(None, false).unwrap();
    }
    assert!(store.compaction_finished());
    let mut whole = KvStore::new();
    history_for_compaction(&mut whole);
    whole.compact(first).unwrap();
    assert_eq!(store.keys, whole.keys);
    let loaded = KvStore::from_engine(store.into_engine()).unwrap();
    assert_eq!(
        loaded.deletes_waiting(),
        0,
        "every dropped revision left the file"
    );
    assert_eq!(readable(&loaded, first), readable(&whole, first));
}

/// A part of a range read in parts answers the same key-values and `more` as the range, but
/// walks no further than one key past its limit: its count is the keys walked. Without a limit,
/// or sorted, it is the range.
#[test]
fn a_range_part_stops_walking_past_its_limit() {
    let mut store = KvStore::new();
    for k in 0..50 {
        put(&mut store, &format!("p{k:02}"), "v");
    }
    store.delete_range(&del_req("p10", "p20")).unwrap();
    for limit in [1, 3, 15, 39, 40, 100] {
        let request = RangeRequest {
            limit,
            ..range_req("p", "q")
        };
        let (whole, part) = (get(&store, &request), part(&store, &request));
        assert_eq!((&part.kvs, part.more), (&whole.kvs, whole.more), "{limit}");
        assert_eq!(whole.count, 40);
        assert_eq!(part.count, (limit + 1).min(40), "limit {limit}");
    }
    let unlimited = range_req("p", "q");
    assert_eq!(part(&store, &unlimited), get(&store, &unlimited));
    let sorted = RangeRequest {
        limit: 5,
        sort_order: SortOrder::Descend as i32,
        ..range_req("p", "q")
    };
    assert_eq!(part(&store, &sorted), get(&store, &sorted));
}

/// Count parts (count-only range parts with a limit) spend at most their limit — a key of the
/// index walked, deleted ones included, or a stretch of the index counted whole — and name the
/// last key covered when keys remain: going on from the key after it until none remain counts
/// the range exactly, at the current revision and at a past one where the deleted keys were
/// still live, in fewer parts than walking every key would take.
#[test]
fn count_parts_cover_a_range_a_bounded_walk_at_a_time() {
    let mut store = KvStore::new();
    for k in 0..50 {
        put(&mut store, &format!("p{k:02}"), "v");
    }
    let before_delete = store.current_revision;
    store.delete_range(&del_req("p10", "p20")).unwrap();
    put(&mut store, "q", "outside");
    for (revision, expected) in [(0, 40), (before_delete, 50)] {
        for budget in [1, 3, 7, 49, 50, 100] {
            let mut part = RangeRequest {
                limit: budget,
                count_only: true,
                revision,
                ..range_req("p", "q")
            };
            let (mut counted, mut parts) = (0, 0);
            loop {
                let (answer, reads) = store.range_part(&part).unwrap();
                assert!(reads.is_empty(), "a count part reads no value");
                counted += answer.count;
                parts += 1;
                if !answer.more {
                    assert!(answer.kvs.is_empty());
                    break;
                }
                let [last] = answer.kvs.as_slice() else {
                    panic!("a part that stopped early names its last key");
                };
                assert!(last.value.is_empty() && last.key >= part.key);
                part.key = [last.key.as_slice(), b"\0"].concat();
            }
            assert_eq!(counted, expected, "revision {revision}, budget {budget}");
            // Walking every one of the 50 index keys, live or not, would take this many.
            let walking = (50 + budget - 1) / budget;
            assert!(parts <= walking, "budget {budget}: {parts} parts");
            if (3..=7).contains(&budget) {
                assert!(
                    parts < walking,
                    "budget {budget}: {parts} parts, no stretch whole"
                );
            }
        }
    }
}
