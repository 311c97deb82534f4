//! Randomized fault schedules over the real core, with safety oracles. Each seed runs a 3- or
//! 5-member cluster of the in-process harness (`tests/support`) for some simulated seconds under
//! partitions (random halves, isolated leader, one-way cuts), a lossy, duplicating and reordering
//! network, slow disks (persistence acknowledged late), paused members, and crashes of random members (the leader too) whose disks lose or tear
//! what was not synced, while clients put, delete, compare-and-set and read through random members.
//!
//! Oracles: at most one leader per term; every member applies the same entry at each index (checked
//! by the harness as entries are applied); members at the same revision have the same KV hash
//! (during the run, at the lowest revision all hold; at the end, after healing, all of them); no
//! acknowledged write is lost and linearizable reads see every write acknowledged before them; no
//! two acknowledged compare-and-sets succeed from the same value; and once every fault heals, a
//! leader is elected and a write commits within 10 simulated seconds.
//!
//! `STET_CHAOS_SEEDS=N` runs seeds 0..N; `STET_CHAOS_SEED=S` runs only seed S;
//! `STET_CHAOS_SECS=T` sets the simulated seconds of faults per seed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stet::disk::CrashFault;
use stet::node::{ClientRequest, ClientResponse, RequestId};
use stet::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use stet::proto::etcdserverpb::{self as pb, request_op, response_op};
use stet::time::Instant;
use support::{Cluster, NetFaults, Reply};

/// Keys that are compare-and-set counters, and keys that are put and deleted at random.
const COUNTERS: u64 = 3;
const SCRATCH_KEYS: u64 = 4;
/// The driver advances the cluster in slices this long between its own decisions.
const SLICE: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
struct Settings {
    members: u64,
    fault_secs: u64,
    snapshot_count: u64,
    catch_up_entries: u64,
}

impl Settings {
    fn for_seed(seed: u64, fault_secs: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5e77);
        let (snapshot_count, catch_up_entries) = *[(10_000, 1_000), (64, 16), (20, 5)]
            .choose(&mut rng)
            .expect("choices");
        Settings {
            members: if seed % 3 == 2 { 5 } else { 3 },
            fault_secs,
            snapshot_count,
            catch_up_entries,
        }
    }
}

/// A fault that is undone later.
#[derive(Debug, Clone)]
enum Heal {
    Links(u64),
    Net,
    Disk,
    Restart(u64),
    Resume(u64),
}

/// A client operation waiting for its reply.
#[derive(Debug, Clone)]
enum Op {
    /// A put of a key written only once (`d/<n>` = `v<n>`).
    PutOnce {
        n: u64,
    },
    Scratch,
    /// Compare-and-set of a counter from `expected` to `expected + 1`.
    Cas {
        counter: u64,
        expected: u64,
    },
    /// A linearizable read of a write-once key.
    GetOnce {
        n: u64,
    },
    /// A linearizable read of a counter.
    GetCounter {
        counter: u64,
    },
}

/// The faults in force and when each ends.
struct Faults {
    rng: ChaCha8Rng,
    heals: Vec<(Instant, Heal)>,
    /// Active link cuts by fault id; the cluster's cuts are their union.
    links: BTreeMap<u64, BTreeSet<(u64, u64)>>,
    next_link_id: u64,
    next_fault_at: Instant,
    log: Vec<String>,
}

/// The clients' history and the checks on it.
struct Clients {
    rng: ChaCha8Rng,
    ops: BTreeMap<RequestId, (Op, Instant)>,
    /// Write-once keys: invoked at, and acknowledged at.
    once_invoked: BTreeMap<u64, Instant>,
    once_acked: BTreeMap<u64, Instant>,
    next_once: u64,
    /// Acknowledged successful compare-and-sets: (counter, expected) -> ack time.
    cas_acked: BTreeMap<(u64, u64), Instant>,
    /// The last value each counter was seen to hold.
    counter_seen: BTreeMap<u64, u64>,
    acked: u64,
    failed: u64,
}

fn once_key(n: u64) -> String {
    format!("d/{n:06}")
}

fn counter_key(counter: u64) -> String {
    format!("c/{counter}")
}

fn range(key: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn cas_request(counter: u64, expected: u64) -> ClientRequest {
    let key = counter_key(counter);
    ClientRequest::Txn(pb::TxnRequest {
        compare: vec![pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: key.as_bytes().to_vec(),
            range_end: Vec::new(),
            target_union: Some(TargetUnion::Value(expected.to_string().into_bytes())),
        }],
        success: vec![pb::RequestOp {
            request: Some(request_op::Request::RequestPut(put(
                &key,
                &(expected + 1).to_string(),
            ))),
        }],
        failure: vec![pb::RequestOp {
            request: Some(request_op::Request::RequestRange(range(&key))),
        }],
    })
}

fn parse_counter(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("counter holds {value:?}"))
}

fn running(cluster: &Cluster) -> Vec<u64> {
    cluster
        .members
        .iter()
        .filter(|(id, m)| m.node.is_some() && !cluster.paused.contains(id))
        .map(|(id, _)| *id)
        .collect()
}

impl Faults {
    fn new(seed: u64, now: Instant) -> Self {
        Faults {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xfa17),
            heals: Vec::new(),
            links: BTreeMap::new(),
            next_link_id: 0,
            next_fault_at: now + Duration::from_millis(300),
            log: Vec::new(),
        }
    }

    fn duration(&mut self, min_ms: u64, max_ms: u64) -> Duration {
        Duration::from_millis(self.rng.gen_range(min_ms..max_ms))
    }

    fn heal_later(&mut self, cluster: &Cluster, after: Duration, heal: Heal) {
        self.heals.push((cluster.now + after, heal));
    }

    fn sync_links(&self, cluster: &mut Cluster) {
        cluster.cuts = self.links.values().flatten().copied().collect();
    }

    fn cut_links(&mut self, cluster: &mut Cluster, links: BTreeSet<(u64, u64)>, after: Duration) {
        let id = self.next_link_id;
        self.next_link_id += 1;
        self.links.insert(id, links);
        self.sync_links(cluster);
        self.heal_later(cluster, after, Heal::Links(id));
    }

    /// Undoes every fault whose time came.
    fn heal_due(&mut self, cluster: &mut Cluster) {
        let now = cluster.now;
        let (due, later): (Vec<_>, Vec<_>) = self.heals.drain(..).partition(|(at, _)| *at <= now);
        self.heals = later;
        for (_, heal) in due {
            self.heal(cluster, heal);
        }
    }

    fn heal(&mut self, cluster: &mut Cluster, heal: Heal) {
        self.log
            .push(format!("{} heal {heal:?}", cluster.now.as_micros()));
        match heal {
            Heal::Links(id) => {
                self.links.remove(&id);
                self.sync_links(cluster);
            }
            Heal::Net => cluster.net = NetFaults::default(),
            Heal::Disk => cluster.disk_latency_max_us = 0,
            Heal::Restart(id) => {
                if cluster.members[&id].node.is_none() {
                    cluster.restart(id);
                }
            }
            Heal::Resume(id) => {
                cluster.paused.remove(&id);
            }
        }
    }

    /// Undoes every fault now.
    fn heal_all(&mut self, cluster: &mut Cluster) {
        let heals: Vec<Heal> = self.heals.drain(..).map(|(_, heal)| heal).collect();
        for heal in heals {
            self.heal(cluster, heal);
        }
        assert!(cluster.cuts.is_empty() && cluster.paused.is_empty());
    }

    /// Starts a new fault when its time comes.
    fn maybe_inject(&mut self, cluster: &mut Cluster) {
        if cluster.now < self.next_fault_at {
            return;
        }
        let gap = self.duration(100, 1_200);
        self.next_fault_at = cluster.now + gap;
        let ids: Vec<u64> = cluster.members.keys().copied().collect();
        let leader = cluster.leader();
        let kind = self.rng.gen_range(0..9);
        let description = match kind {
            0 => self.partition_halves(cluster, &ids),
            1 => self.isolate_leader(cluster, &ids, leader),
            2 => self.cut_one_way(cluster, &ids),
            3 => self.degrade_network(cluster),
            4 | 5 => self.crash(cluster, &ids, leader),
            6 => self.slow_disks(cluster),
            _ => self.pause(cluster, &ids),
        };
        self.log
            .push(format!("{} {description}", cluster.now.as_micros()));
    }

    fn partition_halves(&mut self, cluster: &mut Cluster, ids: &[u64]) -> String {
        let mut shuffled = ids.to_vec();
        shuffled.shuffle(&mut self.rng);
        let split = self.rng.gen_range(1..ids.len());
        let (a, b) = shuffled.split_at(split);
        let links = a
            .iter()
            .flat_map(|&x| b.iter().flat_map(move |&y| [(x, y), (y, x)]))
            .collect();
        let after = self.duration(200, 3_000);
        self.cut_links(cluster, links, after);
        format!("partition {a:?} | {b:?} for {after:?}")
    }

    fn isolate_leader(
        &mut self,
        cluster: &mut Cluster,
        ids: &[u64],
        leader: Option<u64>,
    ) -> String {
        let Some(leader) = leader else {
            return "no leader to isolate".into();
        };
        let links = ids
            .iter()
            .filter(|&&id| id != leader)
            .flat_map(|&id| [(id, leader), (leader, id)])
            .collect();
        let after = self.duration(200, 3_000);
        self.cut_links(cluster, links, after);
        format!("isolate leader {leader} for {after:?}")
    }

    fn cut_one_way(&mut self, cluster: &mut Cluster, ids: &[u64]) -> String {
        let from = *ids.choose(&mut self.rng).expect("members");
        let to = *ids.choose(&mut self.rng).expect("members");
        if from == to {
            return "no link cut".into();
        }
        let after = self.duration(200, 3_000);
        self.cut_links(cluster, BTreeSet::from([(from, to)]), after);
        format!("cut {from} -> {to} for {after:?}")
    }

    fn degrade_network(&mut self, cluster: &mut Cluster) -> String {
        cluster.net = NetFaults {
            loss_percent: self.rng.gen_range(0..30),
            duplicate_percent: self.rng.gen_range(0..20),
            max_delay_us: self.rng.gen_range(3_000..60_000),
        };
        let after = self.duration(200, 3_000);
        self.heal_later(cluster, after, Heal::Net);
        format!("network {:?} for {after:?}", cluster.net)
    }

    fn slow_disks(&mut self, cluster: &mut Cluster) -> String {
        cluster.disk_latency_max_us = self.rng.gen_range(1_000..30_000);
        let after = self.duration(200, 3_000);
        self.heal_later(cluster, after, Heal::Disk);
        format!(
            "disks take up to {} us per write for {after:?}",
            cluster.disk_latency_max_us
        )
    }

    fn crash(&mut self, cluster: &mut Cluster, ids: &[u64], leader: Option<u64>) -> String {
        let alive: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| cluster.members[id].node.is_some())
            .collect();
        let victim = match leader {
            Some(leader) if self.rng.gen_bool(0.4) => leader,
            _ => match alive.choose(&mut self.rng) {
                Some(&id) => id,
                None => return "nobody to crash".into(),
            },
        };
        let fault = if self.rng.gen_bool(0.5) {
            CrashFault::LoseUnsynced
        } else {
            CrashFault::TearUnsynced
        };
        cluster.crash_with(victim, fault);
        self.heals
            .retain(|(_, h)| !matches!(h, Heal::Resume(id) if *id == victim));
        let after = self.duration(50, 3_000);
        self.heal_later(cluster, after, Heal::Restart(victim));
        format!("crash {victim} ({fault:?}) for {after:?}")
    }

    fn pause(&mut self, cluster: &mut Cluster, ids: &[u64]) -> String {
        let candidates = running(cluster);
        let Some(&victim) = candidates.choose(&mut self.rng) else {
            return format!("nobody to pause among {ids:?}");
        };
        cluster.paused.insert(victim);
        let after = self.duration(50, 1_500);
        self.heal_later(cluster, after, Heal::Resume(victim));
        format!("pause {victim} for {after:?}")
    }
}

impl Clients {
    fn new(seed: u64) -> Self {
        Clients {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xc1_1e47),
            ops: BTreeMap::new(),
            once_invoked: BTreeMap::new(),
            once_acked: BTreeMap::new(),
            next_once: 0,
            cas_acked: BTreeMap::new(),
            counter_seen: BTreeMap::new(),
            acked: 0,
            failed: 0,
        }
    }

    /// Sends one random request to a random running member, sometimes.
    fn maybe_issue(&mut self, cluster: &mut Cluster) {
        if !self.rng.gen_bool(0.6) {
            return;
        }
        let Some(&to) = running(cluster).choose(&mut self.rng) else {
            return;
        };
        let (op, request) = match self.rng.gen_range(0..10) {
            0..=3 => {
                let n = self.next_once;
                self.next_once += 1;
                let request = ClientRequest::Put(put(&once_key(n), &format!("v{n}")));
                (Op::PutOnce { n }, request)
            }
            4 => (Op::Scratch, self.scratch_request()),
            5 | 6 => {
                let counter = self.rng.gen_range(0..COUNTERS);
                let expected = self.counter_seen.get(&counter).copied().unwrap_or(0);
                (
                    Op::Cas { counter, expected },
                    cas_request(counter, expected),
                )
            }
            7 | 8 => {
                // Mostly keys already written, sometimes one not written yet.
                let n = self.rng.gen_range(0..self.next_once + 3);
                (Op::GetOnce { n }, ClientRequest::Range(range(&once_key(n))))
            }
            _ => {
                let counter = self.rng.gen_range(0..COUNTERS);
                let request = ClientRequest::Range(range(&counter_key(counter)));
                (Op::GetCounter { counter }, request)
            }
        };
        if let Op::PutOnce { n } = op {
            self.once_invoked.insert(n, cluster.now);
        }
        let id = cluster.request(to, request);
        self.ops.insert(id, (op, cluster.now));
    }

    fn scratch_request(&mut self) -> ClientRequest {
        let key = format!("x/{}", self.rng.gen_range(0..SCRATCH_KEYS));
        if self.rng.gen_bool(0.3) {
            let range_end = if self.rng.gen_bool(0.5) {
                b"x0".to_vec() // every scratch key
            } else {
                Vec::new()
            };
            ClientRequest::DeleteRange(pb::DeleteRangeRequest {
                key: key.into_bytes(),
                range_end,
                ..Default::default()
            })
        } else {
            let value = format!("{}", self.rng.gen::<u32>());
            ClientRequest::Put(put(&key, &value))
        }
    }

    /// Checks every reply that arrived against the history so far.
    fn collect(&mut self, cluster: &mut Cluster) {
        let ids: Vec<RequestId> = cluster.replies.keys().copied().collect();
        for id in ids {
            let reply = cluster.replies.remove(&id).expect("reply");
            let at = cluster.reply_times.remove(&id).expect("reply time");
            let Some((op, invoked)) = self.ops.remove(&id) else {
                continue; // a request made outside the workload
            };
            if reply.is_ok() {
                self.acked += 1;
            } else {
                self.failed += 1;
            }
            self.check_reply(op, invoked, at, reply);
        }
    }

    fn check_reply(&mut self, op: Op, invoked: Instant, at: Instant, reply: Reply) {
        let Ok(response) = reply else {
            return; // unknown outcome: the write may or may not take effect
        };
        match (op, response) {
            (Op::PutOnce { n }, ClientResponse::Put(_)) => {
                self.once_acked.insert(n, at);
            }
            (Op::Scratch, _) => {}
            (Op::Cas { counter, expected }, ClientResponse::Txn(txn)) => {
                self.on_cas(counter, expected, at, &txn)
            }
            (Op::GetOnce { n }, ClientResponse::Range(r)) => {
                self.check_once_read(n, invoked, at, &r)
            }
            (Op::GetCounter { counter }, ClientResponse::Range(r)) => {
                let value = r.kvs.first().map_or(0, |kv| parse_counter(&kv.value));
                self.check_counter_read(counter, value, invoked);
            }
            (op, response) => panic!("{op:?} answered with {response:?}"),
        }
    }

    fn on_cas(&mut self, counter: u64, expected: u64, at: Instant, txn: &pb::TxnResponse) {
        if txn.succeeded {
            if let Some(before) = self.cas_acked.insert((counter, expected), at) {
                panic!(
                    "two compare-and-sets of counter {counter} from {expected} succeeded (acked at {} and {})",
                    before.as_micros(),
                    at.as_micros()
                );
            }
            self.counter_seen.insert(counter, expected + 1);
            return;
        }
        let seen = txn
            .responses
            .first()
            .and_then(|r| match &r.response {
                Some(response_op::Response::ResponseRange(range)) => range.kvs.first(),
                _ => None,
            })
            .map_or(0, |kv| parse_counter(&kv.value));
        self.counter_seen.insert(counter, seen);
    }

    fn check_once_read(&self, n: u64, invoked: Instant, at: Instant, r: &pb::RangeResponse) {
        let value = r.kvs.first().map(|kv| kv.value.clone());
        let acked_before = self.once_acked.get(&n).is_some_and(|&ack| ack <= invoked);
        if acked_before {
            assert_eq!(
                value,
                Some(format!("v{n}").into_bytes()),
                "a linearizable read of {} invoked at {} missed a put acknowledged before it",
                once_key(n),
                invoked.as_micros()
            );
        }
        if let Some(value) = value {
            assert_eq!(
                value,
                format!("v{n}").into_bytes(),
                "{} was corrupted",
                once_key(n)
            );
            let put_at = self.once_invoked.get(&n).copied();
            assert!(
                put_at.is_some_and(|p| p <= at),
                "a read of {} answered at {} saw a value never written before then",
                once_key(n),
                at.as_micros()
            );
        }
    }

    fn check_counter_read(&mut self, counter: u64, value: u64, invoked: Instant) {
        let floor = self
            .cas_acked
            .iter()
            .filter(|((c, _), &ack)| *c == counter && ack <= invoked)
            .map(|((_, expected), _)| expected + 1)
            .max()
            .unwrap_or(0);
        assert!(
            value >= floor,
            "a linearizable read of counter {counter} invoked at {} saw {value}, but a compare-and-set to {floor} was acknowledged before",
            invoked.as_micros()
        );
        self.counter_seen.insert(counter, value);
    }
}

/// Members at the same revision hold the same data: every running member's KV hash at the
/// lowest revision they all reached must agree.
fn check_replicas_agree(cluster: &Cluster) {
    let nodes: Vec<(u64, &stet::node::Node)> = cluster
        .members
        .iter()
        .filter_map(|(id, m)| m.node.as_ref().map(|n| (*id, n)))
        .collect();
    let Some(revision) = nodes
        .iter()
        .map(|(_, n)| n.state().kv.current_revision())
        .min()
    else {
        return;
    };
    let hashes: BTreeMap<u64, u32> = nodes
        .iter()
        .map(|(id, n)| {
            let hash = n.state().kv.hash_kv(revision).map_or(0, |h| h.0);
            (*id, hash)
        })
        .collect();
    let first = hashes.values().next().copied();
    assert!(
        hashes.values().all(|h| Some(*h) == first),
        "members disagree on the KV hash at revision {revision}: {hashes:?}"
    );
}

/// Runs one seed: faults with a client workload, then heal, then the end-of-run oracles.
fn run_seed(seed: u64, settings: &Settings) -> String {
    let mut cluster = Cluster::with_snapshots(
        settings.members,
        seed,
        settings.snapshot_count,
        settings.catch_up_entries,
    );
    let leader = cluster.wait_for_leader();
    for counter in 0..COUNTERS {
        let reply = cluster.call(leader, ClientRequest::Put(put(&counter_key(counter), "0")));
        assert!(reply.is_ok(), "initial put failed: {reply:?}");
    }
    let mut faults = Faults::new(seed, cluster.now);
    let mut clients = Clients::new(seed);
    let end = cluster.now + Duration::from_secs(settings.fault_secs);
    let mut next_check = cluster.now;
    while cluster.now < end {
        faults.heal_due(&mut cluster);
        faults.maybe_inject(&mut cluster);
        clients.maybe_issue(&mut cluster);
        cluster.run_for(SLICE);
        clients.collect(&mut cluster);
        if cluster.now >= next_check {
            check_replicas_agree(&cluster);
            cluster.assert_one_leader_per_term();
            next_check = cluster.now + Duration::from_millis(100);
        }
    }
    faults.heal_all(&mut cluster);
    check_after_healing(&mut cluster, &mut clients);
    format!(
        "{} members, snapshot every {}: {} faults, {} requests acked, {} failed, {} entries applied, {} compared across members, {} unchecked",
        settings.members,
        settings.snapshot_count,
        faults.log.len(),
        clients.acked,
        clients.failed,
        cluster.applied_log.len(),
        cluster.applied_compared,
        cluster.applied_unchecked
    )
}

/// Liveness, durability and agreement once every fault has healed.
fn check_after_healing(cluster: &mut Cluster, clients: &mut Clients) {
    let healed_at = cluster.now;
    let limit = Duration::from_secs(10);
    let committed = loop {
        let Some(leader) = cluster.leader() else {
            cluster.run_for(Duration::from_millis(10));
            if cluster.now.saturating_duration_since(healed_at) > limit {
                break false;
            }
            continue;
        };
        let id = cluster.request(leader, ClientRequest::Put(put("liveness", "ok")));
        cluster.run_until(Duration::from_secs(3), |c| c.replies.contains_key(&id));
        if matches!(cluster.replies.get(&id), Some(Ok(_))) {
            break true;
        }
        clients.collect(cluster);
        if cluster.now.saturating_duration_since(healed_at) > limit {
            break false;
        }
    };
    assert!(committed, "no write committed within {limit:?} of healing");
    // Let every outstanding request finish (they time out after 2 s at the latest).
    cluster.run_for(Duration::from_secs(3));
    clients.collect(cluster);
    let quiet = cluster.run_until(Duration::from_secs(10), |c| {
        let applied: BTreeSet<u64> = c
            .members
            .values()
            .filter_map(|m| m.node.as_ref())
            .map(|n| n.applied_index())
            .collect();
        applied.len() == 1
    });
    assert!(
        quiet,
        "members did not converge on one applied index:\n{}",
        cluster.describe_members()
    );
    let hashes = cluster.kv_hashes();
    let first = hashes.values().next().copied();
    assert!(
        hashes.values().all(|h| Some(*h) == first),
        "members disagree after healing: {hashes:?}"
    );
    check_durability(cluster, clients);
    cluster.assert_one_leader_per_term();
}

/// Every acknowledged write is visible to a linearizable read through any member.
fn check_durability(cluster: &mut Cluster, clients: &mut Clients) {
    let reader = *running(cluster).first().expect("a running member");
    let request = pb::RangeRequest {
        key: b"d/".to_vec(),
        range_end: b"d0".to_vec(),
        ..Default::default()
    };
    let Ok(ClientResponse::Range(found)) = cluster.call(reader, ClientRequest::Range(request))
    else {
        panic!("the final read failed");
    };
    let found: BTreeMap<String, Vec<u8>> = found
        .kvs
        .into_iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.value))
        .collect();
    for n in clients.once_acked.keys() {
        assert_eq!(
            found.get(&once_key(*n)),
            Some(&format!("v{n}").into_bytes()),
            "acknowledged put of {} was lost",
            once_key(*n)
        );
    }
    for key in found.keys() {
        let n: u64 = key[2..].parse().expect("write-once key");
        assert!(
            clients.once_invoked.contains_key(&n),
            "{key} was never written"
        );
    }
    for counter in 0..COUNTERS {
        let request = ClientRequest::Range(range(&counter_key(counter)));
        let Ok(ClientResponse::Range(r)) = cluster.call(reader, request) else {
            panic!("the final counter read failed");
        };
        let value = r.kvs.first().map_or(0, |kv| parse_counter(&kv.value));
        clients.check_counter_read(counter, value, cluster.now);
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")),
    )
}

/// Runs a seed and, if it fails, says how to run just that seed again.
fn run_reporting(seed: u64, fault_secs: u64) {
    let settings = Settings::for_seed(seed, fault_secs);
    let result = std::panic::catch_unwind(|| run_seed(seed, &settings));
    match result {
        Ok(summary) => println!("chaos seed {seed}: {summary}"),
        Err(panic) => {
            eprintln!(
                "chaos seed {seed} failed ({settings:?}); rerun only it with:\n  \
                 STET_CHAOS_SEED={seed} cargo test --release --test chaos -- --nocapture"
            );
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn random_fault_schedules_keep_raft_and_client_guarantees() {
    let fault_secs = env_u64("STET_CHAOS_SECS").unwrap_or(20);
    if let Some(seed) = env_u64("STET_CHAOS_SEED") {
        return run_reporting(seed, fault_secs);
    }
    let seeds = env_u64("STET_CHAOS_SEEDS").unwrap_or(40);
    for seed in 0..seeds {
        run_reporting(seed, fault_secs);
    }
}

/// Seed 0 crashed a new leader in raft-rs: it proposed writes that had waited for a leader while
/// still holding the `Ready` that made it leader (fixed in `Node::process_ready`).
#[test]
fn chaos_seed_0_new_leader_proposes_waiting_writes_after_advancing_its_ready() {
    run_reporting(0, 20);
}

/// Seed 37 left a follower behind forever when the harness dropped a snapshot without telling
/// the leader, which then waited for the snapshot's outcome (the harness now reports it failed).
#[test]
fn chaos_seed_37_a_dropped_snapshot_is_reported_and_resent() {
    run_reporting(37, 20);
}

/// Seed 108 (with one catch-up tick after a pause) had a paused stale leader answer a
/// linearizable read with old data: a reissued read reused its ReadIndex context, and a
/// heartbeat ack from the context's earlier round confirmed it. Every read attempt now gets a
/// fresh context, and a member refuses a forwarded context it has seen before.
#[test]
fn chaos_seed_108_an_old_ack_cannot_confirm_a_new_read() {
    run_reporting(108, 20);
}
