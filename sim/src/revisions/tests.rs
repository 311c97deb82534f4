use stet::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use stet::proto::etcdserverpb::{self as pb, Compare, RequestOp, ResponseHeader};
use stet::proto::mvccpb::{event::EventType, Event, KeyValue};

use super::*;

fn event(key: &str, value: Option<&str>) -> Event {
    Event {
        r#type: if value.is_some() {
            EventType::Put
        } else {
            EventType::Delete
        } as i32,
        kv: Some(KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.unwrap_or("").as_bytes().to_vec(),
            ..Default::default()
        }),
        prev_kv: None,
    }
}

/// Revisions 2.. with the given events each (revision 1 is the empty store).
fn events(revisions: &[Vec<Event>]) -> KvEvents {
    let mut kv = KvEvents::default();
    for (i, events) in revisions.iter().enumerate() {
        let revision = i as i64 + 2;
        let events = events
            .iter()
            .cloned()
            .map(|mut e| {
                if let Some(kv) = &mut e.kv {
                    kv.mod_revision = revision;
                }
                e
            })
            .collect();
        kv.record(1, revision, revision, events);
    }
    kv
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn op(request: RichRequest, at_us: u64, response: RichResponse) -> RichOp {
    RichOp {
        client: 1,
        request,
        invoke_us: at_us,
        complete_us: at_us + 10,
        outcome: Some(Ok(response)),
    }
}

fn put(key: &str, value: &str, revision: i64, at_us: u64) -> RichOp {
    let request = RichRequest::Put(pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    });
    let response = RichResponse::Put(pb::PutResponse {
        header: header(revision),
        ..Default::default()
    });
    op(request, at_us, response)
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        create_revision: create,
        mod_revision: modified,
        version,
        lease: 0,
    }
}

fn range_all(limit: i64, revision: i64, kvs: Vec<KeyValue>, count: i64, at_us: u64) -> RichOp {
    let request = RichRequest::Range(pb::RangeRequest {
        key: b"r/".to_vec(),
        range_end: b"r0".to_vec(),
        limit,
        ..Default::default()
    });
    let more = limit > 0 && count > limit;
    let response = RichResponse::Range(pb::RangeResponse {
        header: header(revision),
        kvs,
        more,
        count,
    });
    op(request, at_us, response)
}

/// r/a=1 (rev 2), r/b=2 (rev 3), r/a=3 (rev 4), delete r/b (rev 5).
fn store() -> KvEvents {
    events(&[
        vec![event("r/a", Some("1"))],
        vec![event("r/b", Some("2"))],
        vec![event("r/a", Some("3"))],
        vec![event("r/b", None)],
    ])
}

fn history() -> Vec<RichOp> {
    vec![
        put("r/a", "1", 2, 100),
        put("r/b", "2", 3, 200),
        range_all(1, 3, vec![kv("r/a", "1", 2, 2, 1)], 2, 300),
        put("r/a", "3", 4, 400),
        range_all(
            0,
            4,
            vec![kv("r/a", "3", 2, 4, 2), kv("r/b", "2", 3, 3, 1)],
            2,
            500,
        ),
    ]
}

#[test]
fn ranges_with_limits_and_counts_agree_with_the_model() {
    let stats = check(&store(), &history()).unwrap();
    assert_eq!(stats.checked, 5);
    assert_eq!(stats.unknown, 0);
}

#[test]
fn a_stale_or_wrong_range_is_caught() {
    let mut wrong = history();
    // Version 1 where the model has 2.
    wrong.push(range_all(
        0,
        4,
        vec![kv("r/a", "3", 2, 4, 1), kv("r/b", "2", 3, 3, 1)],
        2,
        600,
    ));
    let err = check(&store(), &wrong).unwrap_err();
    assert!(err.contains("model answers"), "{err}");
}

#[test]
fn a_range_at_the_current_revision_refused_as_compacted_is_caught() {
    let refused = |revision: i64| {
        let mut op = range_all(0, 4, vec![], 0, 600);
        if let RichRequest::Range(request) = &mut op.request {
            request.revision = revision;
        }
        op.outcome = Some(Err(
            "etcdserver: mvcc: required revision has been compacted".to_string(),
        ));
        op
    };
    let mut at_a_revision = history();
    at_a_revision.push(refused(3));
    check(&store(), &at_a_revision).expect("a compacted revision it named");
    let mut current = history();
    current.push(refused(0));
    let err = check(&store(), &current).unwrap_err();
    assert!(err.contains("at the current revision"), "{err}");
}

#[test]
fn an_acknowledged_put_missing_from_its_revision_is_caught() {
    let mut lost = history();
    lost.push(put("r/c", "9", 5, 700));
    let err = check(&store(), &lost).unwrap_err();
    assert!(err.contains("no such put"), "{err}");
}

#[test]
fn a_read_that_goes_back_in_time_is_caught() {
    let mut stale = history();
    // Invoked after the put of revision 4 finished, yet reads revision 3.
    stale.push(range_all(1, 3, vec![kv("r/a", "1", 2, 2, 1)], 2, 450));
    let err = check(&store(), &stale).unwrap_err();
    assert!(err.contains("already seen"), "{err}");
}

fn compare_value(key: &str, value: &str) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Value as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(TargetUnion::Value(value.as_bytes().to_vec())),
        ..Default::default()
    }
}

fn delete_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

fn range_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

/// A txn at revision 5: if r/a == "3" then delete r/b and read r/a.
fn txn(succeeded: bool, deleted: i64, revision: i64) -> RichOp {
    let request = RichRequest::Txn(pb::TxnRequest {
        compare: vec![compare_value("r/a", "3")],
        success: vec![delete_op("r/b"), range_op("r/a")],
        failure: vec![range_op("r/b")],
    });
    let responses = if succeeded {
        vec![
            pb::ResponseOp {
                response: Some(Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                    deleted,
                    ..Default::default()
                })),
            },
            pb::ResponseOp {
                response: Some(Response::ResponseRange(pb::RangeResponse {
                    kvs: vec![kv("r/a", "3", 2, 4, 2)],
                    count: 1,
                    ..Default::default()
                })),
            },
        ]
    } else {
        Vec::new()
    };
    let response = RichResponse::Txn(pb::TxnResponse {
        header: header(revision),
        succeeded,
        responses,
    });
    op(request, 800, response)
}

#[test]
fn a_txn_that_wrote_its_revision_agrees_and_a_wrong_branch_is_caught() {
    let mut good = history();
    good.push(txn(true, 1, 5));
    assert_eq!(check(&store(), &good).unwrap().txns, 1);
    let mut wrong = history();
    wrong.push(txn(false, 0, 5));
    let err = check(&store(), &wrong).unwrap_err();
    assert!(err.contains("the model answers"), "{err}");
}

#[test]
fn a_value_read_before_its_write_was_invoked_is_caught() {
    let mut future = history();
    // A serializable read (exempt from the real-time order) that saw r/b's value before the put
    // that wrote it was even invoked.
    let mut read = range_all(
        0,
        3,
        vec![kv("r/a", "1", 2, 2, 1), kv("r/b", "2", 3, 3, 1)],
        2,
        40,
    );
    if let RichRequest::Range(request) = &mut read.request {
        request.serializable = true;
    }
    future.push(read);
    let err = check(&store(), &future).unwrap_err();
    assert!(err.contains("before its write was invoked"), "{err}");
}

/// `range_all`'s request and answer as a `KV.RangeStream` whose chunks merged into that answer.
fn streamed(mut op: RichOp, chunks: usize) -> RichOp {
    let RichRequest::Range(request) = op.request else {
        panic!("a range")
    };
    op.request = RichRequest::RangeStream(request);
    if let Some(Ok(RichResponse::Range(merged))) = op.outcome {
        op.outcome = Some(Ok(RichResponse::RangeStream { merged, chunks }));
    }
    op
}

#[test]
fn a_streamed_range_is_checked_as_the_unary_one() {
    let mut with_stream = history();
    with_stream.push(streamed(
        range_all(
            0,
            4,
            vec![kv("r/a", "3", 2, 4, 2), kv("r/b", "2", 3, 3, 1)],
            2,
            600,
        ),
        2,
    ));
    let stats = check(&store(), &with_stream).unwrap();
    assert_eq!(
        (stats.checked, stats.streams, stats.multi_chunk_streams),
        (6, 1, 1)
    );

    // A chunk left out: r/a missing from the merged answer.
    let mut wrong = history();
    wrong.push(streamed(
        range_all(0, 4, vec![kv("r/b", "2", 3, 3, 1)], 2, 600),
        1,
    ));
    let err = check(&store(), &wrong).unwrap_err();
    assert!(err.contains("the model answers"), "{err}");
}

#[test]
fn a_stream_without_its_last_chunk_or_answering_a_sort_is_caught() {
    let mut headless = history();
    let mut stream = streamed(range_all(0, 4, vec![kv("r/a", "3", 2, 4, 2)], 0, 600), 1);
    if let Some(Ok(RichResponse::RangeStream { merged, .. })) = &mut stream.outcome {
        merged.header = None;
    }
    headless.push(stream);
    let err = check(&store(), &headless).unwrap_err();
    assert!(err.contains("no header"), "{err}");

    let mut sorted = history();
    let mut stream = streamed(
        range_all(
            0,
            4,
            vec![kv("r/a", "3", 2, 4, 2), kv("r/b", "2", 3, 3, 1)],
            2,
            600,
        ),
        1,
    );
    if let RichRequest::RangeStream(request) = &mut stream.request {
        request.sort_order = pb::range_request::SortOrder::Descend as i32;
    }
    sorted.push(stream);
    let err = check(&store(), &sorted).unwrap_err();
    assert!(err.contains("refuses"), "{err}");
}
