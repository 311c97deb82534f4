//! Simulated clients: each runs on its own madsim node and talks to the members through etcd's
//! gRPC API, with the same generated tonic clients a Rust program would use (madsim's simulated
//! transport underneath), so every request passes through the production services, router and
//! driver. A client sends random operations to random members and records every operation with
//! its invoke and completion times and its outcome; a request that gets no answer before the
//! client's timeout, or whose fate an error leaves open, is recorded as an unknown outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tonic::transport::Channel;

use stet::node::{ClientError, ClientRequest, ClientResponse};
use stet::proto::etcdserverpb as pb;
use stet::server::route::ELECTION_WAIT;

use crate::checker::{Op, Operation, Outcome};
use crate::rpc;
use crate::wait;
use crate::world::{lock, World};

/// Keys the clients use: few, so operations collide.
pub const KEYS: u64 = 8;

/// How long a client waits for an answer before recording an unknown outcome.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(4);

/// A client: one channel per member it has talked to.
pub struct Client {
    pub id: u64,
    world: Arc<World>,
    channels: BTreeMap<u64, Channel>,
    /// The error of the last operation that failed (for traces), if any.
    pub last_error: Option<String>,
}

impl Client {
    /// A client on the current madsim node (whose IP is the client's address).
    pub async fn connect(
        world: Arc<World>,
        id: u64,
        _ip: std::net::IpAddr,
    ) -> std::io::Result<Self> {
        Ok(Client {
            id,
            world,
            channels: BTreeMap::new(),
            last_error: None,
        })
    }

    /// The channel to `member`'s client URL.
    pub fn channel(&mut self, member: u64) -> Option<Channel> {
        if let Some(channel) = self.channels.get(&member) {
            return Some(channel.clone());
        }
        let address = self.world.client_addr(member)?;
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}")).ok()?;
        let channel = endpoint.connect_lazy();
        self.channels.insert(member, channel.clone());
        Some(channel)
    }

    /// Sends one request to `member` and waits for its answer; `None` if none came in time.
    pub async fn call(
        &mut self,
        member: u64,
        request: ClientRequest,
    ) -> Option<Result<ClientResponse, ClientError>> {
        let channel = self.channel(member)?;
        // Kept for the oracle's message; leader-only requests are a few integers.
        let leader_only = request.leader_only().then(|| request.clone());
        let sent = self.world.elapsed();
        // Boxed: the call's future holds the largest of every service's client futures, and
        // moving it by value into the timeout copied kilobytes per request.
        let reply = wait::timeout(CLIENT_TIMEOUT, Box::pin(rpc::call(channel, request))).await;
        if let (Some(request), Some(Err(ClientError::NoLeader))) = (leader_only, &reply) {
            self.check_election_wait(member, request, self.world.elapsed() - sent);
        }
        reply
    }

    /// The election-wait oracle: a leader-only request is refused with "no leader" only after
    /// its member tried to reach a leader for `ELECTION_WAIT` (`stet::server::route`).
    fn check_election_wait(&self, member: u64, request: ClientRequest, waited: Duration) {
        if waited < ELECTION_WAIT {
            lock(&self.world.early_no_leader).push(format!(
                "member {member:x} answered \"no leader\" after {} ms, before its {} ms election wait, to {}",
                waited.as_millis(),
                ELECTION_WAIT.as_millis(),
                format!("{request:?}").chars().take(160).collect::<String>()
            ));
        }
    }

    /// Streams a range from `member` through `KV.RangeStream` (`rpc::range_stream`); `None` if
    /// the stream did not end in time.
    pub async fn range_stream(
        &mut self,
        member: u64,
        request: pb::RangeRequest,
    ) -> Option<Result<Vec<pb::RangeStreamResponse>, (ClientError, usize)>> {
        let channel = self.channel(member)?;
        wait::timeout(
            CLIENT_TIMEOUT,
            Box::pin(rpc::range_stream(channel, request)),
        )
        .await
    }

    /// Performs one operation against `member` and records it in the world's history.
    pub async fn perform(&mut self, member: u64, op: Op) -> Outcome {
        let invoke_us = self.world.elapsed().as_micros() as u64;
        let reply = self.call(member, request_for(&op)).await;
        let complete_us = self.world.elapsed().as_micros() as u64;
        if let Some(Err(error)) = &reply {
            self.last_error = Some(format!("{error:?}"));
        }
        let outcome = match reply {
            None => Outcome::Unknown,
            Some(result) => outcome_of(&op, result),
        };
        let mut history = lock(&self.world.history);
        let id = history.len() as u64;
        history.push(Operation {
            id,
            client: self.id,
            op,
            invoke_us,
            complete_us,
            outcome: outcome.clone(),
        });
        outcome
    }
}

/// The request that performs `op`.
pub fn request_for(op: &Op) -> ClientRequest {
    match op {
        Op::Put { key, value } => ClientRequest::Put(pb::PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        }),
        Op::Get { key } | Op::SerializableGet { key } => ClientRequest::Range(pb::RangeRequest {
            key: key.clone(),
            serializable: matches!(op, Op::SerializableGet { .. }),
            ..Default::default()
        }),
        Op::Delete { key } => ClientRequest::DeleteRange(pb::DeleteRangeRequest {
            key: key.clone(),
            ..Default::default()
        }),
        Op::Cas { key, expected, new } => {
            let compare = match expected {
                None => pb::Compare {
                    result: pb::compare::CompareResult::Equal as i32,
                    target: pb::compare::CompareTarget::Version as i32,
                    key: key.clone(),
                    target_union: Some(pb::compare::TargetUnion::Version(0)),
                    ..Default::default()
                },
                Some(value) => pb::Compare {
                    result: pb::compare::CompareResult::Equal as i32,
                    target: pb::compare::CompareTarget::Value as i32,
                    key: key.clone(),
                    target_union: Some(pb::compare::TargetUnion::Value(value.clone())),
                    ..Default::default()
                },
            };
            let put = pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: key.clone(),
                    value: new.clone(),
                    ..Default::default()
                })),
            };
            ClientRequest::Txn(pb::TxnRequest {
                compare: vec![compare],
                success: vec![put],
                failure: Vec::new(),
            })
        }
    }
}

/// What an answer means for the checker.
pub fn outcome_of(op: &Op, result: Result<ClientResponse, ClientError>) -> Outcome {
    let response = match result {
        Ok(response) => response,
        // A read that failed had no effect.
        Err(_) if !is_write(op) => return Outcome::Failed,
        // Refused before it was proposed: it had no effect.
        Err(error) if rpc::refused_before_proposal(&error) => return Outcome::Failed,
        // Timed out, stopped, or lost with the connection: it may still commit.
        Err(_) => return Outcome::Unknown,
    };
    match (op, response) {
        (Op::Put { .. }, ClientResponse::Put(_)) => Outcome::Put,
        (Op::Get { .. } | Op::SerializableGet { .. }, ClientResponse::Range(r)) => {
            Outcome::Get(r.kvs.first().map(|kv| kv.value.clone()))
        }
        (Op::Delete { .. }, ClientResponse::DeleteRange(r)) => Outcome::Delete {
            deleted: r.deleted > 0,
        },
        (Op::Cas { .. }, ClientResponse::Txn(r)) => Outcome::Cas {
            succeeded: r.succeeded,
        },
        // An answer of the wrong kind is a member bug; it cannot be interpreted, so it counts as
        // unknown (its effect, if any, still shows in later reads).
        _ => Outcome::Unknown,
    }
}

/// A random operation on a random key; `seq` makes written values unique; a compare-and-set expects
/// the value the client last read for that key.
pub fn random_op(
    rng: &mut impl Rng,
    client: u64,
    seq: u64,
    last_seen: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> Op {
    let key = format!("k{}", rng.gen_range(0..KEYS)).into_bytes();
    let value = format!("c{client}-{seq}").into_bytes();
    match rng.gen_range(0..100) {
        0..=34 => Op::Put { key, value },
        35..=64 => Op::Get { key },
        65..=74 => Op::SerializableGet { key },
        75..=81 => Op::Delete { key },
        _ => Op::Cas {
            expected: last_seen.get(&key).cloned().flatten(),
            key,
            new: value,
        },
    }
}

fn is_write(op: &Op) -> bool {
    !matches!(op, Op::Get { .. } | Op::SerializableGet { .. })
}

/// A client's workload: random operations against random members until `until` (global time).
pub async fn workload(world: Arc<World>, id: u64, members: Vec<u64>, until: Duration) {
    let Ok(mut client) = Client::connect(world.clone(), id, crate::net::client_ip(id)).await else {
        return;
    };
    let mut seq = 0;
    let mut last_seen = BTreeMap::new();
    while world.elapsed() < until {
        seq += 1;
        let (member, op) = {
            let mut rng = madsim::rand::thread_rng();
            let targets = world.live_members(&members);
            let member = targets[rng.gen_range(0..targets.len())];
            (member, random_op(&mut rng, id, seq, &last_seen))
        };
        let key = key_of(&op).to_vec();
        let outcome = client.perform(member, op).await;
        if let Outcome::Get(value) = &outcome {
            last_seen.insert(key, value.clone());
        }
        // A request that failed at once (a refused connection) is retried after a while, as
        // client libraries back off.
        let pause = match outcome {
            Outcome::Failed | Outcome::Unknown => madsim::rand::thread_rng().gen_range(50..300),
            _ => madsim::rand::thread_rng().gen_range(0..10),
        };
        wait::Deadline::after(Duration::from_millis(pause)).await;
    }
}

/// The key an operation touches.
pub fn key_of(op: &Op) -> &[u8] {
    match op {
        Op::Put { key, .. }
        | Op::Get { key }
        | Op::SerializableGet { key }
        | Op::Delete { key }
        | Op::Cas { key, .. } => key,
    }
}
