//! Membership faults, done the way an operator would: remove the leader through a conf change,
//! churn (add a learner, promote it, remove a voter, re-add it from an empty data dir under a new
//! ID), and lose a majority for good, then recover one survivor with `--force-new-cluster` under a
//! new name (the runbook's flags), grow the cluster back with member adds and restart the survivor
//! without the flag. Also the checks that change with force-new-cluster.
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
use rand::Rng;

use stet::node::{ClientError, ClientRequest, ClientResponse};
use stet::proto::etcdserverpb as pb;

use crate::checker::{Op, Operation, Outcome};
use crate::client::Client;
use crate::net::{self, FIRST_ADDED_HOST};
pub use crate::records::Recovery;
use crate::world::{lock, Host, Launch, World};

/// The histories to check for linearizability: the whole history, or, after a force-new-cluster
/// recovery, the part before the loss and the part after the recovery (see the module docs).
/// With `--experimental-auto-promote-learners`, no running learner stays a learner for long
/// once the faults are healed: within 10 s the leader has promoted every one (run on a node of
/// its own, as the final checks are).
pub async fn learners_promoted(world: Arc<World>) -> Result<(), String> {
    let mut client = Client::connect(world.clone(), 902, net::client_ip(200))
        .await
        .map_err(|e| e.to_string())?;
    let mut waiting = Vec::new();
    for _ in 0..50 {
        let live = world.live_members(&[]);
        let target = world
            .leader()
            .filter(|l| live.contains(l))
            .or(live.first().copied());
        let request = ClientRequest::MemberList(pb::MemberListRequest::default());
        if let Some(target) = target {
            if let Some(Ok(ClientResponse::MemberList(list))) = client.call(target, request).await {
                let status = lock(&world.status).clone();
                waiting = list
                    .members
                    .iter()
                    .filter(|m| m.is_learner)
                    .filter(|m| status.get(&m.id).is_some_and(|s| s.running))
                    .map(|m| format!("{:x}", m.id))
                    .collect();
                if waiting.is_empty() {
                    return Ok(());
                }
            }
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "running learners not promoted within 10 s of healing: {}",
        waiting.join(", ")
    ))
}

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
    /// The host of the last member removed, to re-add from an empty data dir.
    readd_host: Option<u64>,
    /// Hosts added so far.
    added_hosts: u64,
    /// Links cut to keep one member behind while a voter is removed and a member re-added at its
    /// URL (`hold_back`), restored after the re-add.
    held_back: Vec<(NodeId, NodeId)>,
}

/// Carries out membership changes through the client API, from its own madsim node, and starts
/// the member processes they call for, as an operator would: `member add`, then the new member's
/// process with `--initial-cluster-state existing` on its host. It never stops a member for it:
/// a removed member must stop itself.
pub struct Operator {
    world: Arc<World>,
    node: NodeHandle,
    churn: Mutex<ChurnState>,
}

impl Operator {
    pub fn new(world: Arc<World>) -> Self {
        let node = Handle::current()
            .create_node()
            .name("operator")
            .ip(net::client_ip(201))
            .build();
        Operator {
            world,
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
                let mut client = Client::connect(world, 901, net::client_ip(201))
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
                Some(Err(error)) if !crate::rpc::refused_before_proposal(&error) => return None,
                None => return None,
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

    /// Places member `id` on `host` and starts its process there, joining the cluster whose
    /// members are `members` (as `etcdctl member add` tells an operator to start it).
    fn start_member(&self, host: u64, id: u64, members: &[pb::Member]) {
        let url = net::peer_url(host);
        let name = format!("a{host}");
        let hosts = lock(&self.world.hosts);
        let names: BTreeMap<u64, String> = hosts
            .values()
            .filter_map(|h| Some((h.member?, h.name.clone())))
            .collect();
        drop(hosts);
        let initial_cluster = members
            .iter()
            .flat_map(|m| {
                let member_name = if m.id == id {
                    name.clone()
                } else {
                    names
                        .get(&m.id)
                        .cloned()
                        .unwrap_or_else(|| format!("x{:x}", m.id))
                };
                m.peer_ur_ls
                    .iter()
                    .map(move |u| format!("{member_name}={u}"))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut hosts = lock(&self.world.hosts);
        let entry = hosts.entry(host).or_insert_with(|| Host {
            node: None,
            member: None,
            name: name.clone(),
            launch: Launch::Initial,
        });
        if entry.member == Some(id) {
            return;
        }
        entry.member = Some(id);
        entry.name = name;
        entry.launch = Launch::Join { initial_cluster };
        let node = entry.node;
        drop(hosts);
        self.world.trace(format!(
            "operator: start member {id:x} on host {host} ({url}) with an empty data dir"
        ));
        match node {
            // A new machine image: nothing of the old process's sockets survives (madsim's
            // restart alone keeps them bound).
            Some(node) => {
                self.world.power_off(id);
                Handle::current().kill(node);
                Handle::current().restart(node);
            }
            None => {
                let node = Handle::current()
                    .create_node()
                    .name(format!("host-{host}"))
                    .ip(net::host_ip(host))
                    .init(crate::member::process(&self.world, host))
                    .build();
                if let Some(entry) = lock(&self.world.hosts).get_mut(&host) {
                    entry.node = Some(node.id());
                }
            }
        }
    }

    /// Starts every added member whose host has no member yet (also after an add whose answer
    /// was lost).
    async fn start_added(&self) {
        let Some(members) = self.members().await else {
            return;
        };
        let placed: Vec<u64> = self.world.member_ids();
        for member in &members {
            if placed.contains(&member.id) {
                continue;
            }
            let host = lock(&self.world.hosts)
                .keys()
                .copied()
                .find(|h| member.peer_ur_ls == [net::peer_url(*h)]);
            if let Some(host) = host {
                self.start_member(host, member.id, &members);
            }
        }
    }

    async fn add(&self, host: u64, is_learner: bool) {
        let url = net::peer_url(host);
        lock(&self.world.hosts).entry(host).or_insert_with(|| Host {
            node: None,
            member: None,
            name: format!("a{host}"),
            launch: Launch::Initial,
        });
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
                self.start_member(host, id, &added.members);
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

    /// Removes `id`; once the removal is known to be committed the member is gone for good. The
    /// member must then stop by itself (the final checks hold it to that).
    async fn remove(&self, id: u64, via: Option<u64>) -> bool {
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
        if removed {
            lock(&self.world.gone).insert(id);
            lock(&self.world.removed).insert(id);
        }
        removed
    }

    /// Removes learner `id`, half the time while it is cut off from everyone and then rebooted
    /// there: it misses the removal, the leader no longer sends to it, no connection of it
    /// survives, and clients leave it alone. It must still find out and stop.
    async fn remove_learner(&self, id: u64) {
        let isolated = self
            .world
            .node_of(id)
            .filter(|_| madsim::rand::thread_rng().gen_bool(0.5));
        if let Some(node) = isolated {
            self.world.trace(format!(
                "operator: isolate learner {id:x} while removing it"
            ));
            madsim::net::NetSim::current().clog_node(node);
        }
        if self.remove(id, None).await {
            lock(&self.churn).readd_host = self.world.host_of(id);
        }
        if let Some(node) = isolated {
            self.world
                .trace(format!("operator: reboot learner {id:x}, still isolated"));
            self.world.power_off(id);
            Handle::current().kill(node);
            Handle::current().restart(node);
            madsim::time::sleep(Duration::from_secs(2)).await;
            madsim::net::NetSim::current().unclog_node(node);
        }
    }

    /// Kills member `id`'s process (the machine is lost).
    fn kill(&self, id: u64) {
        if let Some(node) = self.world.node_of(id) {
            self.world.power_off(id);
            Handle::current().kill(node);
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
                let host = self.fresh_host();
                self.add(host, false).await;
            }
            _ => {}
        }
    }

    fn fresh_host(&self) -> u64 {
        let mut churn = lock(&self.churn);
        churn.added_hosts += 1;
        FIRST_ADDED_HOST + churn.added_hosts - 1
    }

    /// A host whose member process has stopped (its member was removed and stopped by itself),
    /// to re-add a member on with an empty data dir; else a fresh host.
    fn host_for_readd(&self) -> u64 {
        let readd = lock(&self.churn).readd_host.take();
        let reusable = readd.filter(|host| {
            let member = lock(&self.world.hosts).get(host).and_then(|h| h.member);
            !member.is_some_and(|m| lock(&self.world.status).get(&m).is_some_and(|s| s.running))
        });
        reusable.unwrap_or_else(|| self.fresh_host())
    }

    /// One step of membership churn: promote a learner if there is one; else with six voters
    /// remove a random follower (half the time while another is held back from its peers,
    /// until the re-add); else re-add a member on the last removed member's host (same
    /// URL, empty data dir, new ID) or a fresh one, as a learner.
    pub async fn churn_step(&self) {
        let Some(members) = self.members().await else {
            return;
        };
        if let Some(learner) = members.iter().find(|m| m.is_learner) {
            let id = learner.id;
            self.start_added().await;
            // Now and then the operator gives up on a learner instead: it must learn of its
            // removal and stop, though a learner never campaigns and the leader stops sending
            // to it once the removal is applied.
            if madsim::rand::thread_rng().gen_bool(0.3) {
                return self.remove_learner(id).await;
            }
            if lock(&self.world.settings).auto_promote_learners {
                // The leader promotes it once it has caught up (the final checks see to it).
                return;
            }
            return self.promote(id).await;
        }
        let voters: Vec<&pb::Member> = members.iter().filter(|m| !m.is_learner).collect();
        if voters.len() >= 6 {
            let leader = self.world.leader();
            let followers: Vec<&&pb::Member> =
                voters.iter().filter(|m| Some(m.id) != leader).collect();
            let Some(victim) = followers.choose(&mut madsim::rand::thread_rng()) else {
                return;
            };
            let id = victim.id;
            if madsim::rand::thread_rng().gen_bool(0.5) {
                let others: Vec<u64> = followers
                    .iter()
                    .map(|m| m.id)
                    .filter(|&m| m != id)
                    .collect();
                // Not from the removed one's host, where the re-added member will ask it.
                let peers: Vec<&pb::Member> =
                    voters.iter().copied().filter(|m| m.id != id).collect();
                self.hold_back(&others, &peers);
            }
            if self.remove(id, None).await {
                lock(&self.churn).readd_host = self.world.host_of(id);
            } else {
                self.release_held_back();
            }
            return;
        }
        let host = self.host_for_readd();
        self.add(host, true).await;
        if !lock(&self.churn).held_back.is_empty() {
            // The new member asks every member, the one held back too, who it is.
            madsim::time::sleep(Duration::from_secs(2)).await;
            self.release_held_back();
        }
    }

    /// Cuts one of `candidates` off from `voters` (not from other hosts nor clients), so
    /// that it misses a removal and still answers the member re-added at the removed one's URL
    /// with a membership that names the removed member there: the joiner must not take that
    /// stale identity (`server::join`; etcd can).
    fn hold_back(&self, candidates: &[u64], voters: &[&pb::Member]) {
        let Some(&held) = candidates.choose(&mut madsim::rand::thread_rng()) else {
            return;
        };
        let Some(node) = self.world.node_of(held) else {
            return;
        };
        let net = madsim::net::NetSim::current();
        let mut churn = lock(&self.churn);
        for peer in voters.iter().filter_map(|m| self.world.node_of(m.id)) {
            if peer != node {
                net.clog_link(node, peer);
                net.clog_link(peer, node);
                churn.held_back.extend([(node, peer), (peer, node)]);
            }
        }
        self.world.trace(format!(
            "operator: hold member {held:x} back from its peers while removing a voter"
        ));
    }

    /// Restores the links `hold_back` cut.
    fn release_held_back(&self) {
        let links = std::mem::take(&mut lock(&self.churn).held_back);
        if links.is_empty() {
            return;
        }
        let net = madsim::net::NetSim::current();
        for (from, to) in links {
            net.unclog_link(from, to);
        }
        self.world
            .trace("operator: the member held back rejoins its peers");
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
            "operator: the majority is lost for good; {survivor:x} survives"
        ));
        for &member in live.iter().filter(|&&m| m != survivor) {
            lock(&self.world.gone).insert(member);
            self.kill(member);
        }
        madsim::time::sleep(Duration::from_secs(2)).await;
        self.world.trace(format!(
            "operator: stop {survivor:x} to force a new cluster"
        ));
        self.kill(survivor);
        madsim::time::sleep(Duration::from_millis(500)).await;
        // As the runbook does it: under a new name, `--initial-cluster` naming only itself.
        if let Some(host) = self.world.host_of(survivor) {
            if let Some(entry) = lock(&self.world.hosts).get_mut(&host) {
                entry.name = format!("r{host}");
                entry.launch = Launch::Alone;
            }
        }
        *lock(&self.world.force_new_cluster) = Some(survivor);
        if let Some(node) = self.world.node_of(survivor) {
            Handle::current().restart(node);
        }
        for _ in 0..50 {
            if self.world.leader() == Some(survivor) {
                break;
            }
            madsim::time::sleep(Duration::from_millis(200)).await;
        }
        for _ in 0..2 {
            let host = self.fresh_host();
            self.add(host, false).await;
            madsim::time::sleep(Duration::from_secs(1)).await;
        }
        // Later restarts keep the same flags, without `--force-new-cluster`: the member must
        // know itself by the identity it was forced under, in the new cluster.
        self.world.trace(format!(
            "operator: restart {survivor:x} without --force-new-cluster"
        ));
        self.kill(survivor);
        madsim::time::sleep(Duration::from_millis(500)).await;
        if let Some(node) = self.world.node_of(survivor) {
            Handle::current().restart(node);
        }
    }
}
