//! The rich workload: requests of every shape real clients send, on keys of their own (`r/…`, which
//! the register checker never sees): ranges with limits, counts, keys only, and at past revisions
//! (some just compacted), serializable or not; puts; range deletes; and txns over several keys,
//! with compares on every target and result, both branches, and nested txns. Every request is
//! recorded (`revisions::RichOp`) for the revision oracle.

use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;

use stet::node::{ClientError, ClientRequest, ClientResponse};
use stet::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use stet::proto::etcdserverpb::request_op::Request;
use stet::proto::etcdserverpb::{self as pb, Compare, RequestOp};

use crate::client::Client;
use crate::revisions::{RichOp, RichRequest, RichResponse};
use crate::world::{lock, World};

/// Keys of the rich workload: r/0 .. r/9.
const KEYS: usize = 10;

fn key(i: usize) -> Vec<u8> {
    format!("r/{i}").into_bytes()
}

/// A rich client's workload: random requests against random members until `until`.
pub async fn rich_workload(world: Arc<World>, id: u64, members: Vec<u64>, until: Duration) {
    let Ok(mut client) = Client::connect(world.clone(), id, crate::net::client_ip(id)).await else {
        return;
    };
    let mut seq = 0;
    while world.elapsed() < until {
        let (member, request) = {
            let mut rng = madsim::rand::thread_rng();
            let targets = world.live_members(&members);
            let member = targets[rng.gen_range(0..targets.len())];
            let mut values = Values { client: id, seq };
            let request = random_request(&mut rng, &mut values, world.max_revision());
            seq = values.seq;
            (member, request)
        };
        let settled = perform(&mut client, &world, member, request).await;
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
}

impl Values {
    fn next(&mut self) -> Vec<u8> {
        self.seq += 1;
        format!("x{}-{}", self.client, self.seq).into_bytes()
    }
}

fn random_request(rng: &mut impl Rng, values: &mut Values, max_revision: i64) -> RichRequest {
    match rng.gen_range(0..100) {
        0..=29 => RichRequest::Range(random_range(rng, max_revision)),
        30..=49 => RichRequest::Put(pb::PutRequest {
            key: key(rng.gen_range(0..KEYS)),
            value: values.next(),
            ..Default::default()
        }),
        50..=57 => {
            let (key, range_end) = random_span(rng);
            RichRequest::DeleteRange(pb::DeleteRangeRequest {
                key,
                range_end,
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

/// One key, a span of keys, or every rich key.
fn random_span(rng: &mut impl Rng) -> (Vec<u8>, Vec<u8>) {
    match rng.gen_range(0..3) {
        0 => (key(rng.gen_range(0..KEYS)), Vec::new()),
        1 => {
            let a = rng.gen_range(0..KEYS);
            let b = rng.gen_range(a..=KEYS);
            (key(a), key(b))
        }
        _ => (b"r/".to_vec(), b"r0".to_vec()),
    }
}

fn random_range(rng: &mut impl Rng, max_revision: i64) -> pb::RangeRequest {
    let (key, range_end) = random_span(rng);
    pb::RangeRequest {
        key,
        range_end,
        limit: if rng.gen_bool(0.4) {
            rng.gen_range(1..4)
        } else {
            0
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
            let mut range = random_range(rng, max_revision);
            range.serializable = false;
            Request::RequestRange(range)
        }
        3..=5 => Request::RequestPut(pb::PutRequest {
            key: key(free.pop()?),
            value: values.next(),
            ..Default::default()
        }),
        6..=7 => Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: key(free.pop()?),
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
        (b"r/".to_vec(), b"r0".to_vec())
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
async fn perform(client: &mut Client, world: &World, member: u64, request: RichRequest) -> bool {
    let call = match &request {
        RichRequest::Range(r) => ClientRequest::Range(r.clone()),
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
