//! The nemesis: injects the faults of a scenario into a running world — partitions (random halves,
//! the leader isolated, one-way links), a lossy network, peer connections reset or stalled
//! mid-write, member crashes that lose,
//! tear or corrupt unsynced disk writes, pauses, clock jumps, and membership changes (leader
//! removal, churn, majority loss with force-new-cluster recovery; see `membership`) — and heals
//! them. Members that left for good are never targeted.

use std::sync::Arc;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use rand::seq::SliceRandom;
use rand::Rng;

use stet::disk::CrashFault;

use crate::membership::Operator;
use crate::world::{lock, CrashPoint, World};

/// A kind of fault the nemesis may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Cut the members into two random groups.
    Partition,
    /// Cut the current leader off from everyone.
    IsolateLeader,
    /// Cut one direction of one link.
    OneWay,
    /// Drop packets (madsim's TCP delivers them late, as retransmission would).
    Lossy,
    /// Cut peer connections part-way through a write, or stall them mid-frame.
    PeerFaults,
    /// Kill a member (the leader half the time); its disk loses unsynced writes or tears them.
    Crash,
    /// Kill a member and flip a bit of its unsynced disk state; it must repair or refuse to start.
    DiskCorruption,
    /// Cut a member's power after a few more changes to its disk — part-way through a WAL append,
    /// a snapshot file or a storage engine commit — then kill it; it restarts from what reached
    /// the disk.
    PowerCut,
    /// Fill a member's disk for a while: changes needing space fail with ENOSPC. The member
    /// stops with the error when it needs space; once space is freed it is started again.
    DiskFull,
    /// Stop a member's process for a while (its clock keeps running).
    Pause,
    /// Move a member's clock forward.
    ClockJump,
    /// Remove the current leader through a conf change (or, short of voters, add one back).
    RemoveLeader,
    /// One step of membership churn: add a learner, promote it, remove a voter, re-add it.
    Churn,
    /// Crash whichever member next reaches a chosen point: a snapshot file written but not yet
    /// recorded in the WAL, a compaction just applied, or a membership change just applied.
    CrashAtPoint,
    /// Once per run, first: lose every member but one for good, recover the survivor with
    /// `--force-new-cluster` and grow the cluster back.
    MajorityLoss,
}

/// The nemesis of one run.
pub struct Nemesis {
    world: Arc<World>,
    faults: Vec<Fault>,
    operator: Option<Operator>,
    /// The member whose disk was corrupted (it may refuse to start from then on); at most one,
    /// so a majority always survives.
    corrupted: std::sync::Mutex<Option<u64>>,
}

impl Nemesis {
    pub fn new(world: Arc<World>, faults: Vec<Fault>) -> Self {
        let membership = [Fault::RemoveLeader, Fault::Churn, Fault::MajorityLoss];
        let operator = faults
            .iter()
            .any(|f| membership.contains(f))
            .then(|| Operator::new(world.clone()));
        Nemesis {
            world,
            faults,
            operator,
            corrupted: std::sync::Mutex::new(None),
        }
    }

    fn net() -> Arc<NetSim> {
        NetSim::current()
    }

    /// Injects faults one after another until `until` (global time), then heals everything.
    pub async fn run(&self, until: Duration) {
        if self.faults.is_empty() {
            return;
        }
        let mut faults = self.faults.clone();
        if let Some(operator) = self
            .operator
            .as_ref()
            .filter(|_| faults.contains(&Fault::MajorityLoss))
        {
            let before = Duration::from_millis(madsim::rand::thread_rng().gen_range(3_000..6_000));
            madsim::time::sleep(before).await;
            operator.lose_majority_and_recover().await;
            faults.retain(|f| *f != Fault::MajorityLoss);
        }
        while self.world.elapsed() < until && !faults.is_empty() {
            let (fault, hold_ms, gap_ms) = {
                let mut rng = madsim::rand::thread_rng();
                let fault = *faults.choose(&mut rng).unwrap_or(&Fault::Partition);
                (fault, rng.gen_range(300..3_000), rng.gen_range(200..1_500))
            };
            self.inject(fault, Duration::from_millis(hold_ms)).await;
            madsim::time::sleep(Duration::from_millis(gap_ms)).await;
        }
        self.heal_network();
    }

    /// The madsim node of member `id`.
    fn node(&self, id: u64) -> NodeId {
        self.world
            .node_of(id)
            .expect("the nemesis targets members placed on a host")
    }

    async fn inject(&self, fault: Fault, hold: Duration) {
        let ids: Vec<u64> = self
            .world
            .live_members(&[])
            .into_iter()
            .filter(|id| self.world.node_of(*id).is_some())
            .collect();
        if ids.is_empty() {
            return;
        }
        let cuts_network = matches!(
            fault,
            Fault::Partition | Fault::IsolateLeader | Fault::OneWay
        );
        if cuts_network && ids.len() < 2 {
            return;
        }
        match fault {
            Fault::Partition => self.partition(&ids, hold).await,
            Fault::IsolateLeader => self.isolate_leader(hold).await,
            Fault::OneWay => self.cut_one_way(&ids, hold).await,
            Fault::Lossy => self.lossy(hold).await,
            Fault::PeerFaults => self.peer_faults(hold).await,
            Fault::Crash | Fault::DiskCorruption => self.crash(fault, &ids, hold).await,
            Fault::PowerCut => self.power_cut(&ids, hold).await,
            Fault::DiskFull => self.disk_full(&ids, hold).await,
            Fault::CrashAtPoint => self.crash_at_point(hold).await,
            Fault::Pause => self.pause(&ids, hold).await,
            Fault::ClockJump => self.jump_clock(&ids),
            Fault::RemoveLeader | Fault::Churn | Fault::MajorityLoss => {
                self.membership(fault, hold).await
            }
        }
    }

    /// Cuts the members into two random groups for `hold`.
    async fn partition(&self, ids: &[u64], hold: Duration) {
        let mut shuffled = ids.to_vec();
        shuffled.shuffle(&mut madsim::rand::thread_rng());
        let cut = madsim::rand::thread_rng().gen_range(1..shuffled.len());
        let (left, right) = shuffled.split_at(cut);
        self.world
            .trace(format!("nemesis: partition {} | {}", hex(left), hex(right)));
        for a in left {
            for b in right {
                Self::net().clog_link(self.node(*a), self.node(*b));
                Self::net().clog_link(self.node(*b), self.node(*a));
            }
        }
        madsim::time::sleep(hold).await;
        self.heal_network();
    }

    /// Cuts the current leader off from everyone for `hold`.
    async fn isolate_leader(&self, hold: Duration) {
        let Some(leader) = self.world.leader() else {
            return;
        };
        self.world
            .trace(format!("nemesis: isolate leader {leader:x}"));
        Self::net().clog_node(self.node(leader));
        madsim::time::sleep(hold).await;
        self.heal_network();
    }

    /// Cuts one direction of one link for `hold`.
    async fn cut_one_way(&self, ids: &[u64], hold: Duration) {
        let (a, b) = self.two(ids);
        self.world
            .trace(format!("nemesis: cut link {a:x} -> {b:x}"));
        Self::net().clog_link(self.node(a), self.node(b));
        madsim::time::sleep(hold).await;
        self.heal_network();
    }

    /// Drops packets for `hold` (madsim's TCP delivers them late, as retransmission would).
    async fn lossy(&self, hold: Duration) {
        let rate = madsim::rand::thread_rng().gen_range(0.05..0.3);
        self.world
            .trace(format!("nemesis: lossy network ({rate:.2} loss)"));
        Self::net().update_config(|c| c.packet_loss_rate = rate);
        madsim::time::sleep(hold).await;
        self.heal_network();
    }

    /// Resets or stalls peer connections part-way through writes for `hold`.
    async fn peer_faults(&self, hold: Duration) {
        let rate = madsim::rand::thread_rng().gen_range(0.05..0.3);
        self.world.trace(format!(
            "nemesis: peer connections reset or stall mid-write ({rate:.2} of writes)"
        ));
        lock(&self.world.settings).peer_fault_rate = rate;
        madsim::time::sleep(hold).await;
        self.heal_network();
    }

    /// Crashes a member (the leader half the time), losing or tearing its unsynced writes — or,
    /// for disk corruption, flipping a bit — and restarts it after `hold`.
    async fn crash(&self, fault: Fault, ids: &[u64], hold: Duration) {
        let corrupted = *lock(&self.corrupted);
        let victim = match (fault, corrupted) {
            (Fault::DiskCorruption, Some(member)) => member,
            _ => self.victim(ids),
        };
        let corrupt = fault == Fault::DiskCorruption || corrupted == Some(victim);
        if corrupt {
            *lock(&self.corrupted) = Some(victim);
        }
        let crash = match fault {
            _ if corrupt => CrashFault::FlipBit,
            _ if madsim::rand::thread_rng().gen_bool(0.5) => CrashFault::TearUnsynced,
            _ => CrashFault::LoseUnsynced,
        };
        self.world
            .trace(format!("nemesis: crash member {victim:x} ({crash:?})"));
        self.crash_and_restart(victim, crash, hold).await;
    }

    /// Lets a member make a few more changes to its disk, then cuts its power (at once if it made
    /// none within `hold`) and kills it; it restarts after `hold`.
    async fn power_cut(&self, ids: &[u64], hold: Duration) {
        let victim = self.victim(ids);
        let Some(breaker) = lock(&self.world.power).get(&victim).cloned() else {
            return;
        };
        let (changes, in_engine, crash) = {
            let mut rng = madsim::rand::thread_rng();
            let crash = if rng.gen_bool(0.5) {
                CrashFault::TearUnsynced
            } else {
                CrashFault::LoseUnsynced
            };
            let file = if rng.gen_bool(0.7) {
                stet::engine::ENGINE_FILE.to_string()
            } else {
                // A defragmentation's copy: the cut lands inside one if it runs meanwhile.
                let copy = stet::engine::copy_path(std::path::Path::new(stet::engine::ENGINE_FILE));
                copy.display().to_string()
            };
            (
                rng.gen_range(0..64),
                rng.gen_bool(0.5).then_some(file),
                crash,
            )
        };
        // Half the time only the storage engine's file counts: the cut lands inside one of its
        // commits (most of them write only when made durable, so WAL writes would hide them).
        if let Some(file) = in_engine {
            self.world.trace(format!(
                "nemesis: member {victim:x} loses power after {changes} more changes to {file}"
            ));
            breaker.cut_after_changes_to(changes, &file);
        } else {
            self.world.trace(format!(
                "nemesis: member {victim:x} loses power after {changes} more disk changes"
            ));
            breaker.cut_after(changes);
        }
        let deadline = self.world.elapsed() + hold;
        while !breaker.is_cut() && self.world.elapsed() < deadline {
            madsim::time::sleep(Duration::from_millis(1)).await;
        }
        // A process whose disk failed under it may have stopped on the error first: that is
        // the power cut, not a refusal to start.
        lock(&self.world.refused).remove(&victim);
        self.world.trace(format!(
            "nemesis: crash member {victim:x} without power ({crash:?})"
        ));
        self.crash_and_restart(victim, crash, hold).await;
    }

    /// Fills a member's disk (the leader half the time) for `hold`, then frees it. A member that
    /// stopped on the full disk waits for space in-process: it must serve again within two of
    /// its probes of the disk, or availability fails. One that exited instead (a full disk
    /// while starting) is started again, as its supervisor would.
    async fn disk_full(&self, ids: &[u64], hold: Duration) {
        let victim = self.victim(ids);
        let Some(breaker) = lock(&self.world.power).get(&victim).cloned() else {
            return;
        };
        self.world
            .trace(format!("nemesis: the disk of member {victim:x} is full"));
        breaker.fill();
        madsim::time::sleep(hold).await;
        breaker.free();
        let stopped = lock(&self.world.refused).remove(&victim);
        match stopped {
            Some(reason) => {
                self.world.trace(format!(
                    "nemesis: space freed; start member {victim:x} again (it stopped: {reason})"
                ));
                // The process exited: what it left running (its listeners) goes with it.
                Handle::current().kill(self.node(victim));
                madsim::time::sleep(Duration::from_millis(100)).await;
                Handle::current().restart(self.node(victim));
            }
            None => {
                self.world
                    .trace(format!("nemesis: space freed on member {victim:x}"));
                self.expect_back_after_space(victim).await;
            }
        }
    }

    /// A member waiting for space starts again on its own once the space is back.
    async fn expect_back_after_space(&self, victim: u64) {
        let waiting = |world: &World| {
            lock(&world.status)
                .get(&victim)
                .is_some_and(|s| s.waiting_for_space)
        };
        let limit = stet::server::disk_space::PROBE_INTERVAL * 2 + Duration::from_secs(5);
        let deadline = self.world.elapsed() + limit;
        while waiting(&self.world) && self.world.elapsed() < deadline {
            madsim::time::sleep(Duration::from_millis(200)).await;
        }
        if waiting(&self.world) {
            let reason = format!(
                "stopped on a full disk and not started again within {limit:?} of space freed"
            );
            self.world.trace(format!("member {victim:x} {reason}"));
            lock(&self.world.refused).insert(victim, reason);
        }
    }

    /// Arms a crash point and crashes whichever member reaches it within `hold`.
    async fn crash_at_point(&self, hold: Duration) {
        let points = [
            CrashPoint::SnapshotFile,
            CrashPoint::SnapshotWriting,
            CrashPoint::BeforeFsync,
            CrashPoint::VoteSent,
            CrashPoint::Compaction,
            CrashPoint::ConfChange,
        ];
        let point = *points
            .choose(&mut madsim::rand::thread_rng())
            .unwrap_or(&points[0]);
        self.world
            .trace(format!("nemesis: arm crash point {point:?}"));
        let (tell, reached) = futures::channel::oneshot::channel();
        *lock(&self.world.crash_point) = Some((point, tell));
        let reached = madsim::time::timeout(hold, reached)
            .await
            .ok()
            .and_then(Result::ok);
        *lock(&self.world.crash_point) = None;
        let Some(victim) = reached else {
            self.world
                .trace(format!("nemesis: no member reached {point:?}"));
            return;
        };
        let crash = if madsim::rand::thread_rng().gen_bool(0.5) {
            CrashFault::TearUnsynced
        } else {
            CrashFault::LoseUnsynced
        };
        self.world.trace(format!(
            "nemesis: crash member {victim:x} at {point:?} ({crash:?})"
        ));
        self.crash_and_restart(victim, crash, hold).await;
    }

    /// Stops a member's process for `hold` (its clock keeps running).
    async fn pause(&self, ids: &[u64], hold: Duration) {
        let victim = self.victim(ids);
        self.world
            .trace(format!("nemesis: pause member {victim:x}"));
        Handle::current().pause(self.node(victim));
        madsim::time::sleep(hold).await;
        self.world
            .trace(format!("nemesis: resume member {victim:x}"));
        Handle::current().resume(self.node(victim));
    }

    /// Moves a member's clock forward.
    fn jump_clock(&self, ids: &[u64]) {
        let victim = self.victim(ids);
        let jump = Duration::from_millis(madsim::rand::thread_rng().gen_range(100..5_000));
        let at = self.world.elapsed();
        self.world.trace(format!(
            "nemesis: clock of member {victim:x} jumps {jump:?} forward"
        ));
        if let Some(clock) = lock(&self.world.clocks).get_mut(&victim) {
            clock.jumps.push((at, jump));
        }
    }

    /// One membership change by the operator, then `hold`.
    async fn membership(&self, fault: Fault, hold: Duration) {
        let Some(operator) = &self.operator else {
            return;
        };
        match fault {
            Fault::RemoveLeader => operator.remove_leader_or_add().await,
            Fault::Churn => operator.churn_step().await,
            _ => {}
        }
        madsim::time::sleep(hold).await;
    }

    /// Kills a member's process, applies `crash` to its disk, and restarts it after `hold`.
    async fn crash_and_restart(&self, victim: u64, crash: CrashFault, hold: Duration) {
        self.world.power_off(victim);
        Handle::current().kill(self.node(victim));
        {
            let disk = self.world.disk(victim);
            let mut rng = madsim::rand::thread_rng();
            disk.lock().crash(crash, &mut rng);
        }
        if let Some(s) = lock(&self.world.status).get_mut(&victim) {
            s.running = false;
            s.is_leader = false;
        }
        madsim::time::sleep(hold).await;
        self.world
            .trace(format!("nemesis: restart member {victim:x}"));
        Handle::current().restart(self.node(victim));
    }

    /// The leader half the time (when there is one), otherwise a random member.
    fn victim(&self, ids: &[u64]) -> u64 {
        let mut rng = madsim::rand::thread_rng();
        match self.world.leader() {
            Some(leader) if rng.gen_bool(0.5) => leader,
            _ => ids.choose(&mut rng).copied().unwrap_or(ids[0]),
        }
    }

    fn two(&self, ids: &[u64]) -> (u64, u64) {
        let mut rng = madsim::rand::thread_rng();
        let pair: Vec<u64> = ids.choose_multiple(&mut rng, 2).copied().collect();
        (pair[0], pair.get(1).copied().unwrap_or(pair[0]))
    }

    /// Restores every link and a clean network.
    pub fn heal_network(&self) {
        let net = Self::net();
        let nodes: Vec<NodeId> = lock(&self.world.hosts)
            .values()
            .filter_map(|h| h.node)
            .collect();
        for a in &nodes {
            net.unclog_node(*a);
            for b in &nodes {
                net.unclog_link(*a, *b);
            }
        }
        net.update_config(|c| c.packet_loss_rate = 0.0);
        {
            let mut settings = lock(&self.world.settings);
            settings.peer_fault_rate = 0.0;
        }
        self.world.trace("nemesis: network healed");
    }
}

/// Member IDs as the trace prints them.
fn hex(ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(|id| format!("{id:x}")).collect();
    format!("[{}]", ids.join(", "))
}
