//! Membership faults, done the way an operator would: remove the leader through a conf change,
//! churn (add a learner, promote it, remove a voter, re-add it from an empty data dir under a new
//! ID), and lose a majority for good, then recover one survivor with `--force-new-cluster` and grow
//! the cluster back with member adds. Also the checks that change with force-new-cluster.
//!
//! # The durability model of force-new-cluster
//! Losing a majority for good loses every write that reached only the lost members, and
//! force-new-cluster keeps only what the survivor's durable hard state says is committed (etcd
//! discards the rest). The survivor is stopped cleanly before its forced restart (what it wrote
//! survives, as when an operator stops it). So:
//! - *before the loss* (time `loss_us`) the history is checked as usual, except that operations
//!   still running at the loss are cut there: writes become unknown (they may have taken effect,
//!   or not), reads are dropped;
//! - *after the recovery* (time `recovered_us`, the forced restart) the history is checked from
//!   the survivor's state: one synthetic write per key it held sets the initial state, followed by
//!   every operation invoked after the recovery, and writes invoked during the outage (they can
//!   only take effect after the recovery, or never), with their invocation moved to the recovery;
//!   reads invoked before the recovery are dropped;
//! - *durability across the restart*: the forced member's state at the revision it last reported
//!   before the loss must hash the same after the forced restart (nothing it had applied is lost).
//!
//! Raft safety facts (leaders per term, committed entries, hashes per revision) are kept per
//! cluster epoch; the forced restart starts a new one (`Observer::new_epoch`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;
use rand::seq::SliceRandom;

use stet::node::{
    ClientError, ClientRequest, ClientResponse, DurableState, Node, NodeConfig, StartError,
};
use stet::proto::etcdserverpb as pb;
use stet::time::Instant;

use crate::checker::{Op, Operation, Outcome};
use crate::client::Client;
use crate::world::{lock, World};

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

/// Restarts member `id` with `--force-new-cluster`: starts a new observer epoch, checks that the
/// member kept everything it had applied, and records its state for the history checks.
pub fn restart_forced(
    world: &World,
    id: u64,
    config: NodeConfig,
    durable: DurableState,
    now: Instant,
    logger: &slog::Logger,
) -> Result<Node, StartError> {
    let node = Node::restart_forced(config, durable, now, logger)?;
    let kv = &node.state().kv;
    let revision = kv.current_revision();
    {
        let mut observer = lock(&world.observer);
        if let Some((before, compact, hash)) = observer.last_hash(id) {
            match kv.hash_kv(before) {
                _ if revision < before => observer.report_violation(format!(
                    "member {id} applied up to revision {before} before the loss but holds only \
                     revision {revision} after --force-new-cluster"
                )),
                Ok((now_hash, now_compact)) if now_compact == compact && now_hash != hash => {
                    observer.report_violation(format!(
                        "member {id} hashed {hash:08x} at revision {before} before the loss and \
                         {now_hash:08x} after --force-new-cluster"
                    ))
                }
                _ => {}
            }
        }
        observer.new_epoch();
    }
    lock(&world.kv_events).forget_after(revision);
    let all = pb::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let initial = kv
        .range(&all)
        .map(|r| r.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect())
        .unwrap_or_default();
    let mut recovery = lock(&world.recovery);
    let recovery = recovery.get_or_insert_with(Recovery::default);
    recovery.recovered_us = Some(world.elapsed().as_micros() as u64);
    recovery.initial = initial;
    world.trace(format!(
        "member {id} restarted with --force-new-cluster at revision {revision} (epoch {})",
        lock(&world.observer).epoch
    ));
    Ok(node)
}

/// The histories to check for linearizability: the whole history, or, after a force-new-cluster
/// recovery, the part before the loss and the part after the recovery (see the module docs).
pub fn histories_to_check(world: &World, history: &[Operation]) -> Vec<Vec<Operation>> {
    let Some(recovery) = lock(&world.recovery).clone() else {
        return vec![history.to_vec()];
    };
    let Some(recovered_us) = recovery.recovered_us else {
        return vec![before_loss(history, recovery.loss_us)];
    };
    vec![
        before_loss(history, recovery.loss_us),
        after_recovery(history, &recovery, recovered_us),
    ]
}

fn is_write(op: &Op) -> bool {
    !matches!(op, Op::Get { .. } | Op::SerializableGet { .. })
}

fn before_loss(history: &[Operation], loss_us: u64) -> Vec<Operation> {
    let mut kept = Vec::new();
    for op in history.iter().filter(|op| op.invoke_us < loss_us) {
        let finished = op.outcome != Outcome::Unknown && op.complete_us < loss_us;
        if finished {
            kept.push(op.clone());
        } else if is_write(&op.op) {
            kept.push(Operation {
                outcome: Outcome::Unknown,
                ..op.clone()
            });
        }
    }
    kept
}

fn after_recovery(history: &[Operation], recovery: &Recovery, recovered_us: u64) -> Vec<Operation> {
    let mut kept: Vec<Operation> = recovery
        .initial
        .iter()
        .zip(0..)
        .map(|((key, value), n)| Operation {
            id: 0,
            client: u64::MAX - n,
            op: Op::Put {
                key: key.clone(),
                value: value.clone(),
            },
            invoke_us: recovered_us.saturating_sub(2),
            complete_us: recovered_us.saturating_sub(1),
            outcome: Outcome::Put,
        })
        .collect();
    for op in history {
        if op.invoke_us >= recovered_us {
            kept.push(op.clone());
        } else if op.invoke_us >= recovery.loss_us && is_write(&op.op) {
            let completed_before = op.outcome != Outcome::Unknown && op.complete_us < recovered_us;
            if !completed_before {
                kept.push(Operation {
                    invoke_us: recovered_us,
                    ..op.clone()
                });
            }
        }
    }
    for (id, op) in kept.iter_mut().enumerate() {
        op.id = id as u64;
    }
    kept
}

/// A step of the churn cycle is chosen from the membership as it is.
#[derive(Debug, Default)]
struct ChurnState {
    /// The peer URL of the last member removed, to re-add from an empty data dir.
    readd_url: Option<String>,
    fresh_urls: u64,
}

/// Carries out membership changes through the client API, from its own madsim node, and starts
/// and stops the member processes they call for.
pub struct Operator {
    world: Arc<World>,
    nodes: Arc<Mutex<BTreeMap<u64, NodeId>>>,
    node: NodeHandle,
    churn: Mutex<ChurnState>,
}

impl Operator {
    pub fn new(world: Arc<World>, nodes: Arc<Mutex<BTreeMap<u64, NodeId>>>) -> Self {
        let node = Handle::current()
            .create_node()
            .name("operator")
            .ip(crate::net::client_ip(201))
            .build();
        Operator {
            world,
            nodes,
            node,
            churn: Mutex::new(ChurnState::default()),
        }
    }

    /// One request from the operator's node; `None` if no answer came in time.
    async fn call(
        &self,
        to: u64,
        request: ClientRequest,
    ) -> Option<Result<ClientResponse, ClientError>> {
        let world = self.world.clone();
        self.node
            .spawn(async move {
                let mut client = Client::connect(world, 901, crate::net::client_ip(201))
                    .await
                    .ok()?;
                client.call(to, request).await
            })
            .await
            .ok()
            .flatten()
    }

    /// The leader if one is known, else a random live member.
    fn target(&self) -> u64 {
        let live = self.world.live_members(&[]);
        match self.world.leader() {
            Some(leader) if live.contains(&leader) => leader,
            _ => *live.choose(&mut madsim::rand::thread_rng()).unwrap_or(&1),
        }
    }

    /// Sends `request` to the leader, retrying refusals (no leader yet, not the leader) a few
    /// times. `None` when the outcome is unknown.
    async fn call_leader(
        &self,
        request: ClientRequest,
    ) -> Option<Result<ClientResponse, ClientError>> {
        let mut last = None;
        for _ in 0..10 {
            match self.call(self.target(), request.clone()).await {
                Some(Ok(response)) => return Some(Ok(response)),
                Some(Err(ClientError::Timeout)) | None => return None,
                Some(Err(error)) => last = Some(Err(error)),
            }
            madsim::time::sleep(Duration::from_millis(300)).await;
        }
        last
    }

    /// The membership as the leader sees it.
    async fn members(&self) -> Option<Vec<pb::Member>> {
        match self
            .call_leader(ClientRequest::MemberList(pb::MemberListRequest::default()))
            .await
        {
            Some(Ok(ClientResponse::MemberList(list))) => Some(list.members),
            _ => None,
        }
    }

    /// Starts the process of a member added at runtime, on its own address and empty disk.
    fn start_member(&self, id: u64) {
        let mut nodes = lock(&self.nodes);
        if nodes.contains_key(&id) {
            return;
        }
        let addr = crate::net::register_added_member(id);
        let world = self.world.clone();
        let node = Handle::current()
            .create_node()
            .name(format!("member-{id:x}"))
            .ip(addr.ip())
            .init(move || crate::member::run(world.clone(), id))
            .build();
        nodes.insert(id, node.id());
        self.world.trace(format!(
            "operator: start member {id:x} at {addr} with an empty data dir"
        ));
    }

    /// Starts every member of the membership that has no process yet (also after an add whose
    /// answer was lost).
    async fn start_added(&self) {
        if let Some(members) = self.members().await {
            for member in members {
                self.start_member(member.id);
            }
        }
    }

    async fn add(&self, url: String, is_learner: bool) {
        let request = ClientRequest::MemberAdd(pb::MemberAddRequest {
            peer_ur_ls: vec![url.clone()],
            is_learner,
        });
        let kind = if is_learner { "learner" } else { "voter" };
        match self.call_leader(request).await {
            Some(Ok(ClientResponse::MemberAdd(added))) => {
                let id = added.member.map_or(0, |m| m.id);
                self.world
                    .trace(format!("operator: added {kind} {id:x} ({url})"));
                self.start_member(id);
            }
            other => {
                self.world
                    .trace(format!("operator: adding {kind} {url}: {other:?}"));
                self.start_added().await;
            }
        }
    }

    async fn promote(&self, id: u64) {
        for _ in 0..10 {
            let request = ClientRequest::MemberPromote(pb::MemberPromoteRequest { id });
            match self.call_leader(request).await {
                Some(Ok(_)) => {
                    self.world.trace(format!("operator: promoted {id:x}"));
                    return;
                }
                // Not caught up yet, or no leader: try again shortly.
                Some(Err(ClientError::LearnerNotReady)) | None => {}
                Some(Err(error)) => {
                    self.world
                        .trace(format!("operator: promoting {id:x}: {error}"));
                    return;
                }
            }
            madsim::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Removes `id`; once the removal is known to be committed the member is gone for good. A
    /// removed member that never hears of its removal (the leader stops talking to it) is
    /// stopped by the operator, as etcd's peers make it stop.
    async fn remove(&self, id: u64, via: Option<u64>) {
        let request = ClientRequest::MemberRemove(pb::MemberRemoveRequest { id });
        let reply = match via {
            Some(member) => self.call(member, request).await,
            None => self.call_leader(request).await,
        };
        let removed = match reply {
            Some(Ok(_)) => true,
            _ => self
                .members()
                .await
                .is_some_and(|members| members.iter().all(|m| m.id != id)),
        };
        let answer = match &reply {
            Some(Ok(_)) => "done".to_string(),
            Some(Err(error)) => error.to_string(),
            None => "no answer".to_string(),
        };
        self.world.trace(format!(
            "operator: remove {id:x}: {answer} (removed: {removed})"
        ));
        if !removed {
            return;
        }
        lock(&self.world.gone).insert(id);
        madsim::time::sleep(Duration::from_secs(1)).await;
        let running = lock(&self.world.status)
            .get(&id)
            .is_some_and(|s| s.running && !s.removed);
        if running {
            self.world.trace(format!(
                "operator: member {id:x} did not hear of its removal; stopping its process"
            ));
            self.kill(id);
        }
    }

    fn kill(&self, id: u64) {
        if let Some(node) = lock(&self.nodes).get(&id) {
            Handle::current().kill(*node);
        }
        if let Some(status) = lock(&self.world.status).get_mut(&id) {
            status.running = false;
            status.is_leader = false;
        }
    }

    /// Leader removal: with five or more voters, remove the current leader through a conf change
    /// sent to the leader itself; with fewer, add a voter back.
    pub async fn remove_leader_or_add(&self) {
        let Some(members) = self.members().await else {
            return;
        };
        let voters = members.iter().filter(|m| !m.is_learner).count();
        match self.world.leader() {
            Some(leader) if voters >= 5 && members.iter().any(|m| m.id == leader) => {
                self.world
                    .trace(format!("operator: remove the leader {leader:x}"));
                self.remove(leader, Some(leader)).await;
            }
            _ if voters < 5 => {
                let url = self.fresh_url();
                self.add(url, false).await;
            }
            _ => {}
        }
    }

    fn fresh_url(&self) -> String {
        let mut churn = lock(&self.churn);
        churn.fresh_urls += 1;
        format!("http://added-{}:2380", churn.fresh_urls)
    }

    /// One step of membership churn: promote a learner if there is one; else with six voters
    /// remove a random follower; else re-add the last removed member (same URL, empty data dir,
    /// new ID) or a fresh one, as a learner.
    pub async fn churn_step(&self) {
        let Some(members) = self.members().await else {
            return;
        };
        if let Some(learner) = members.iter().find(|m| m.is_learner) {
            self.start_member(learner.id);
            return self.promote(learner.id).await;
        }
        let voters: Vec<&pb::Member> = members.iter().filter(|m| !m.is_learner).collect();
        if voters.len() >= 6 {
            let leader = self.world.leader();
            let followers: Vec<&&pb::Member> =
                voters.iter().filter(|m| Some(m.id) != leader).collect();
            let Some(victim) = followers.choose(&mut madsim::rand::thread_rng()) else {
                return;
            };
            let (id, url) = (victim.id, victim.peer_ur_ls.first().cloned());
            self.remove(id, None).await;
            lock(&self.churn).readd_url = url;
            return;
        }
        let url = lock(&self.churn).readd_url.take();
        let url = url.unwrap_or_else(|| self.fresh_url());
        self.add(url, true).await;
    }

    /// Loses every member but one for good, stops the survivor cleanly, restarts it with
    /// `--force-new-cluster`, and grows the cluster back to three voters.
    pub async fn lose_majority_and_recover(&self) {
        let live = self.world.live_members(&[]);
        let survivor = {
            let leader = self.world.leader();
            let followers: Vec<u64> = live
                .iter()
                .copied()
                .filter(|&m| Some(m) != leader)
                .collect();
            let pool = if followers.is_empty() {
                &live
            } else {
                &followers
            };
            *pool.choose(&mut madsim::rand::thread_rng()).unwrap_or(&1)
        };
        *lock(&self.world.recovery) = Some(Recovery {
            loss_us: self.world.elapsed().as_micros() as u64,
            ..Default::default()
        });
        self.world.trace(format!(
            "operator: the majority is lost for good; {survivor} survives"
        ));
        for &member in live.iter().filter(|&&m| m != survivor) {
            lock(&self.world.gone).insert(member);
            self.kill(member);
        }
        madsim::time::sleep(Duration::from_secs(2)).await;
        self.world
            .trace(format!("operator: stop {survivor} to force a new cluster"));
        self.kill(survivor);
        madsim::time::sleep(Duration::from_millis(500)).await;
        *lock(&self.world.force_new_cluster) = Some(survivor);
        if let Some(node) = lock(&self.nodes).get(&survivor) {
            Handle::current().restart(*node);
        }
        for _ in 0..50 {
            if self.world.leader() == Some(survivor) {
                break;
            }
            madsim::time::sleep(Duration::from_millis(200)).await;
        }
        for _ in 0..2 {
            let url = self.fresh_url();
            self.add(url, false).await;
            madsim::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
