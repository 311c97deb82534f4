//! The rich workload: requests of every shape real clients send, on keys of their own (`r/…`, which
//! the register checker never sees): ranges with limits, counts, keys only, and at past revisions
//! (some just compacted), serializable or not, unary or streamed through `KV.RangeStream` (the
//! chunks merged into one answer; some sorted, which it refuses); puts and range deletes (some
//! asking for the key-values they replaced, `prev_kv`), some puts with values large
//! next to `--max-request-bytes` where a scenario makes that small; and txns over
//! several keys, with compares on every target and result, both branches, and nested txns.
//! Besides the ten keys every shape works on, a bulk of keys more than one chunk of a streamed
//! range holds is written in batches (one txn each), rewritten, and deleted in wide spans (then
//! written again), which the ranges read across. Every request is recorded (`revisions::RichOp`) for the revision oracle.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use rand::seq::SliceRandom;
use rand::Rng;

use stet::node::{ClientError, ClientRequest, ClientResponse};
use stet::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use stet::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use stet::proto::etcdserverpb::request_op::Request;
use stet::proto::etcdserverpb::{self as pb, Compare, RequestOp};

use crate::client::Client;
use crate::revisions::{RichOp, RichRequest, RichResponse};
use crate::world::{lock, SelfTest, World};

/// Keys every request shape works on: r/0 .. r/9.
const KEYS: usize = 10;

fn key(i: usize) -> Vec<u8> {
    format!("r/{i}").into_bytes()
}

/// The bulk: r/.b/000 .. r/.b/199, before the other rich keys in byte order, so a range over
/// both streams the bulk first and the keys that change most in its last chunks.
const BULK_KEYS: usize = 200;
/// Bulk keys one txn writes.
const BULK_BATCH: usize = 20;
// A range over the whole bulk takes more than one chunk of a `KV.RangeStream`.
const _: () = assert!(BULK_KEYS > stet::server::range_stream::FIRST_CHUNK_KEYS as usize);

fn bulk_key(i: usize) -> Vec<u8> {
    format!("r/.b/{i:03}").into_bytes()
}

/// A rich client's workload: random requests against random members until `until`.
pub async fn rich_workload(world: Arc<World>, id: u64, members: Vec<u64>, until: Duration) {
    let Ok(mut client) = Client::connect(world.clone(), id, crate::net::client_ip(id)).await else {
        return;
    };
    let (max_request_bytes, self_test) = {
        let settings = lock(&world.settings);
        (settings.max_request_bytes, settings.self_test)
    };
    // Values from half to 85% of the limit: any two in one watch response are over it.
    let large = max_request_bytes.map(|max| (max / 2, max * 85 / 100));
    let drop_chunk = self_test == Some(SelfTest::DropStreamedChunk);
    let mut seq = 0;
    // Bulk batches to write before anything else: the whole bulk first, and what a delete of a
    // span of the bulk took (so the bulk stays wider than a stream's first chunk).
    let mut refill: VecDeque<usize> = (0..BULK_KEYS / BULK_BATCH).collect();
    while world.elapsed() < until {
        let (member, request) = {
            let mut rng = madsim::rand::thread_rng();
            let targets = world.live_members(&members);
            let member = targets[rng.gen_range(0..targets.len())];
            let mut values = Values {
                client: id,
                seq,
                large,
            };
            let request = match refill.pop_front() {
                Some(batch) => RichRequest::Txn(bulk_batch(batch, &mut values)),
                None => random_request(&mut rng, &mut values, world.max_revision()),
            };
            if let RichRequest::DeleteRange(delete) = &request {
                refill.extend(bulk_batches_in(delete));
            }
            seq = values.seq;
            (member, request)
        };
        let settled = perform(&mut client, &world, member, request, drop_chunk).await;
        let pause = if settled {
            madsim::rand::thread_rng().gen_range(0..20)
        } else {
            madsim::rand::thread_rng().gen_range(50..300)
        };
        crate::wait::Deadline::after(Duration::from_millis(pause)).await;
    }
}

/// Unique values for the writes of one client.
struct Values {
    client: u64,
    seq: u64,
    /// The range of sizes of large values, if the scenario asks for some.
    large: Option<(usize, usize)>,
}

impl Values {
    fn next(&mut self) -> Vec<u8> {
        self.seq += 1;
        format!("x{}-{}", self.client, self.seq).into_bytes()
    }

    /// A value that is large, half the time, if the scenario asks for large values (still
    /// unique: padding follows the sequence number).
    fn next_maybe_large(&mut self, rng: &mut impl Rng) -> Vec<u8> {
        let mut value = self.next();
        if let Some((min, max)) = self.large.filter(|_| rng.gen_bool(0.5)) {
            value.resize(rng.gen_range(min..=max).max(value.len()), b'.');
        }
        value
    }
}

fn random_request(rng: &mut impl Rng, values: &mut Values, max_revision: i64) -> RichRequest {
    match rng.gen_range(0..100) {
        0..=29 => {
            let range = random_range(rng, max_revision, true);
            if rng.gen_bool(0.25) {
                RichRequest::RangeStream(random_stream_order(rng, range))
            } else {
                RichRequest::Range(range)
            }
        }
        30..=47 => RichRequest::Put(pb::PutRequest {
            key: key(rng.gen_range(0..KEYS)),
            value: values.next_maybe_large(rng),
            prev_kv: rng.gen_bool(0.3),
            ..Default::default()
        }),
        48..=55 => {
            let (key, range_end) = random_span(rng);
            RichRequest::DeleteRange(pb::DeleteRangeRequest {
                key,
                range_end,
                prev_kv: rng.gen_bool(0.3),
            })
        }
        56..=59 => RichRequest::Txn(bulk_batch(rng.gen_range(0..BULK_KEYS / BULK_BATCH), values)),
        // A wide span of the bulk: one revision with more delete events than fit in
        // `--max-request-bytes` where a scenario makes that small.
        60..=61 => {
            let from = rng.gen_range(0..BULK_KEYS / 2);
            let to = (from + rng.gen_range(80..=150)).min(BULK_KEYS);
            RichRequest::DeleteRange(pb::DeleteRangeRequest {
                key: bulk_key(from),
                range_end: bulk_key(to),
                ..Default::default()
            })
        }
        _ => {
            let mut free: Vec<usize> = (0..KEYS).collect();
            free.shuffle(rng);
            RichRequest::Txn(random_txn(rng, values, &mut free, max_revision, 0))
        }
    }
}

/// A txn writing the `batch`th batch of bulk keys.
fn bulk_batch(batch: usize, values: &mut Values) -> pb::TxnRequest {
    let success = (batch * BULK_BATCH..(batch + 1) * BULK_BATCH)
        .map(|i| RequestOp {
            request: Some(Request::RequestPut(pb::PutRequest {
                key: bulk_key(i),
                value: values.next(),
                ..Default::default()
            })),
        })
        .collect();
    pb::TxnRequest {
        compare: Vec::new(),
        success,
        failure: Vec::new(),
    }
}

/// The bulk batches with keys `delete` deletes.
fn bulk_batches_in(delete: &pb::DeleteRangeRequest) -> Vec<usize> {
    let deletes = |i: usize| {
        let key = bulk_key(i);
        key >= delete.key && key < delete.range_end
    };
    (0..BULK_KEYS / BULK_BATCH)
        .filter(|batch| (batch * BULK_BATCH..(batch + 1) * BULK_BATCH).any(deletes))
        .collect()
}

/// One key, a span of keys, or every one of the ten keys (never the bulk: deletes, txns and
/// compares stay on the keys they contend for).
fn random_span(rng: &mut impl Rng) -> (Vec<u8>, Vec<u8>) {
    match rng.gen_range(0..3) {
        0 => (key(rng.gen_range(0..KEYS)), Vec::new()),
        1 => {
            let a = rng.gen_range(0..KEYS);
            let b = rng.gen_range(a..=KEYS);
            (key(a), key(b))
        }
        _ => (b"r/0".to_vec(), b"r0".to_vec()),
    }
}

/// What a range reads: a span of `random_span`, or, with `bulk`, also every rich key or a wide
/// span of the bulk (most of it, sometimes on into the ten keys).
fn random_read_span(rng: &mut impl Rng, bulk: bool) -> (Vec<u8>, Vec<u8>) {
    if !bulk || rng.gen_bool(0.5) {
        return random_span(rng);
    }
    if rng.gen_bool(0.5) {
        return (b"r/".to_vec(), b"r0".to_vec());
    }
    let from = rng.gen_range(0..BULK_KEYS / 4);
    let to = if rng.gen_bool(0.5) {
        bulk_key(rng.gen_range(from + BULK_KEYS / 2..=BULK_KEYS))
    } else {
        key(rng.gen_range(0..KEYS))
    };
    (bulk_key(from), to)
}

fn random_range(rng: &mut impl Rng, max_revision: i64, bulk: bool) -> pb::RangeRequest {
    let (key, range_end) = random_read_span(rng, bulk);
    pb::RangeRequest {
        key,
        range_end,
        // Small limits; limits past a stream's first chunk; none.
        limit: match rng.gen_range(0..10) {
            0..=2 => rng.gen_range(1..4),
            3 => rng.gen_range(100..300),
            _ => 0,
        },
        revision: if rng.gen_bool(0.2) {
            (max_revision - rng.gen_range(0..30)).max(1)
        } else {
            0
        },
        serializable: rng.gen_bool(0.2),
        keys_only: rng.gen_bool(0.1),
        count_only: rng.gen_bool(0.1),
        ..Default::default()
    }
}

/// A streamed range: mostly as it is; sometimes explicitly in ascending key order (which streams);
/// sometimes in another order, which `KV.RangeStream` refuses.
fn random_stream_order(rng: &mut impl Rng, mut range: pb::RangeRequest) -> pb::RangeRequest {
    let (order, target) = match rng.gen_range(0..10) {
        0 => (SortOrder::Ascend, SortTarget::Key),
        1 => match rng.gen_range(0..3) {
            0 => (SortOrder::Descend, SortTarget::Key),
            1 => (SortOrder::None, SortTarget::Mod),
            _ => (SortOrder::Ascend, SortTarget::Version),
        },
        _ => return range,
    };
    range.sort_order = order as i32;
    range.sort_target = target as i32;
    range
}

/// A txn whose writes go to distinct keys taken from `free` (a key written twice in one txn is
/// refused), with compares, both branches and, at the top level, nested txns.
fn random_txn(
    rng: &mut impl Rng,
    values: &mut Values,
    free: &mut Vec<usize>,
    max_revision: i64,
    depth: usize,
) -> pb::TxnRequest {
    let compare = (0..rng.gen_range(0..3))
        .map(|_| random_compare(rng, max_revision))
        .collect();
    let ops = rng.gen_range(0..4);
    let success = (0..ops)
        .filter_map(|_| random_op(rng, values, free, max_revision, depth))
        .collect();
    let ops = rng.gen_range(0..4);
    let failure = (0..ops)
        .filter_map(|_| random_op(rng, values, free, max_revision, depth))
        .collect();
    pb::TxnRequest {
        compare,
        success,
        failure,
    }
}

fn random_op(
    rng: &mut impl Rng,
    values: &mut Values,
    free: &mut Vec<usize>,
    max_revision: i64,
    depth: usize,
) -> Option<RequestOp> {
    let request = match rng.gen_range(0..10) {
        0..=2 => {
            let mut range = random_range(rng, max_revision, false);
            range.serializable = false;
            Request::RequestRange(range)
        }
        3..=5 => Request::RequestPut(pb::PutRequest {
            key: key(free.pop()?),
            value: values.next(),
            prev_kv: rng.gen_bool(0.3),
            ..Default::default()
        }),
        6..=7 => Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: key(free.pop()?),
            prev_kv: rng.gen_bool(0.3),
            ..Default::default()
        }),
        _ if depth == 0 => {
            Request::RequestTxn(random_txn(rng, values, free, max_revision, depth + 1))
        }
        _ => return None,
    };
    Some(RequestOp {
        request: Some(request),
    })
}

fn random_compare(rng: &mut impl Rng, max_revision: i64) -> Compare {
    let results = [
        CompareResult::Equal,
        CompareResult::Greater,
        CompareResult::Less,
        CompareResult::NotEqual,
    ];
    let result = *results.choose(rng).unwrap_or(&CompareResult::Equal);
    let revision = (max_revision - rng.gen_range(0..10)).max(0);
    let (target, union) = match rng.gen_range(0..5) {
        0 => (
            CompareTarget::Value,
            TargetUnion::Value(
                format!("x{}-{}", rng.gen_range(0..4), rng.gen_range(0..30)).into_bytes(),
            ),
        ),
        1 => (
            CompareTarget::Version,
            TargetUnion::Version(rng.gen_range(0..4)),
        ),
        2 => (CompareTarget::Create, TargetUnion::CreateRevision(revision)),
        3 => (CompareTarget::Mod, TargetUnion::ModRevision(revision)),
        _ => (CompareTarget::Lease, TargetUnion::Lease(0)),
    };
    let (key, range_end) = if rng.gen_bool(0.2) {
        (b"r/0".to_vec(), b"r0".to_vec())
    } else {
        (key(rng.gen_range(0..KEYS)), Vec::new())
    };
    Compare {
        result: result as i32,
        target: target as i32,
        key,
        range_end,
        target_union: Some(union),
    }
}

/// Sends one request and records it; true if it came back with an answer or a definite error.
/// `drop_chunk`: the self-test's wrong merge (`SelfTest::DropStreamedChunk`).
async fn perform(
    client: &mut Client,
    world: &World,
    member: u64,
    request: RichRequest,
    drop_chunk: bool,
) -> bool {
    let call = match &request {
        RichRequest::Range(r) => ClientRequest::Range(r.clone()),
        RichRequest::RangeStream(r) => {
            return perform_stream(client, world, member, r.clone(), drop_chunk).await;
        }
        RichRequest::Put(r) => ClientRequest::Put(r.clone()),
        RichRequest::DeleteRange(r) => ClientRequest::DeleteRange(r.clone()),
        RichRequest::Txn(r) => ClientRequest::Txn(r.clone()),
    };
    let writes = !matches!(request, RichRequest::Range(_));
    let invoke_us = world.elapsed().as_micros() as u64;
    let reply = client.call(member, call).await;
    let complete_us = world.elapsed().as_micros() as u64;
    let outcome = match reply {
        None => None,
        Some(Ok(response)) => Some(rich_response(response)),
        Some(Err(error)) if writes && !crate::rpc::refused_before_proposal(&error) => None,
        Some(Err(error)) => Some(Err(error_text(&error))),
    };
    let settled = outcome.is_some();
    lock(&world.rich_history).push(RichOp {
        client: client.id,
        request,
        invoke_us,
        complete_us,
        outcome,
    });
    settled
}

/// Streams a range through `KV.RangeStream` and records its chunks merged into one answer, which
/// the revision oracle checks as it checks a unary range's; a stream that failed, at once or
/// part-way, is a failed read, never a partial answer.
async fn perform_stream(
    client: &mut Client,
    world: &World,
    member: u64,
    request: pb::RangeRequest,
    drop_chunk: bool,
) -> bool {
    let invoke_us = world.elapsed().as_micros() as u64;
    let reply = client.range_stream(member, request.clone()).await;
    let complete_us = world.elapsed().as_micros() as u64;
    let outcome = match reply {
        None => None,
        Some(Ok(mut chunks)) => {
            if drop_chunk && chunks.len() > 1 {
                chunks.remove(0);
            }
            Some(
                merge_chunks(&chunks).map(|merged| RichResponse::RangeStream {
                    merged,
                    chunks: chunks.len(),
                }),
            )
        }
        Some(Err((error, 0))) => Some(Err(error_text(&error))),
        Some(Err((error, received))) => Some(Err(format!(
            "the stream failed after {received} chunks: {}",
            error_text(&error)
        ))),
    };
    let settled = outcome.is_some();
    lock(&world.rich_history).push(RichOp {
        client: client.id,
        request: RichRequest::RangeStream(request),
        invoke_us,
        complete_us,
        outcome,
    });
    settled
}

/// The chunks merged as protobuf merges messages, which is how clients join them: `kvs`
/// appended, every other field from the last chunk that sets it.
fn merge_chunks(chunks: &[pb::RangeStreamResponse]) -> Result<pb::RangeResponse, String> {
    let mut all = pb::RangeStreamResponse::default();
    for chunk in chunks {
        all.merge(chunk.encode_to_vec().as_slice())
            .map_err(|error| format!("a chunk does not merge: {error}"))?;
    }
    Ok(all.range_response.unwrap_or_default())
}

fn rich_response(response: ClientResponse) -> Result<RichResponse, String> {
    match response {
        ClientResponse::Range(r) => Ok(RichResponse::Range(r)),
        ClientResponse::Put(r) => Ok(RichResponse::Put(r)),
        ClientResponse::DeleteRange(r) => Ok(RichResponse::DeleteRange(r)),
        ClientResponse::Txn(r) => Ok(RichResponse::Txn(r)),
        other => Err(format!("an answer of the wrong kind: {other:?}")),
    }
}

fn error_text(error: &ClientError) -> String {
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stet::proto::mvccpb::KeyValue;

    fn kv(key: &str) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn merged_chunks_append_kvs_and_take_the_rest_from_the_last() {
        let chunk = |range_response| pb::RangeStreamResponse {
            range_response: Some(range_response),
        };
        let last = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                revision: 9,
                ..Default::default()
            }),
            kvs: vec![kv("c")],
            more: true,
            count: 5,
        };
        let chunks = [
            chunk(pb::RangeResponse {
                kvs: vec![kv("a"), kv("b")],
                ..Default::default()
            }),
            chunk(last.clone()),
        ];
        let merged = merge_chunks(&chunks).unwrap();
        assert_eq!(
            merged,
            pb::RangeResponse {
                kvs: vec![kv("a"), kv("b"), kv("c")],
                ..last
            }
        );
        assert_eq!(merge_chunks(&[]).unwrap(), pb::RangeResponse::default());
    }

    #[test]
    fn a_delete_of_a_bulk_span_refills_the_batches_it_touched() {
        let delete = |key: Vec<u8>, range_end: Vec<u8>| pb::DeleteRangeRequest {
            key,
            range_end,
            ..Default::default()
        };
        assert_eq!(
            bulk_batches_in(&delete(bulk_key(30), bulk_key(110))),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(
            bulk_batches_in(&delete(b"r/0".to_vec(), b"r0".to_vec())),
            Vec::<usize>::new()
        );
        assert_eq!(
            bulk_batches_in(&delete(key(3), Vec::new())),
            Vec::<usize>::new()
        );
    }
}
