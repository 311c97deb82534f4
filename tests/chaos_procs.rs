//! Chaos on real processes: a 3-member cluster of the `stet` binary on 127.0.0.1 while four
//! clients put, compare-and-set (a txn comparing the value) and read linearizably over a few keys
//! through random members, and a nemesis SIGKILLs a member (the leader half the time), restarts
//! it on the same data directory and waits until it is healthy, again and again.
//!
//! Owns the checks on that run: every client operation is recorded (invoke and completion times,
//! outcome) and the history must be linearizable by the simulator's checker
//! (`sim/src/checker`, included as is); each key's final value must be one some client wrote;
//! every killed member must restart; and at the end all three members hold the same revision and
//! the same `HashKV` at it.
//!
//! `cargo test --test chaos_procs` runs 6 kills (well under a minute). The long version:
//! `STET_CHAOS_PROC_KILLS=100 cargo test --release --test chaos_procs -- --nocapture`;
//! `STET_CHAOS_PROC_SEED=S` replays the nemesis's and clients' random choices of seed `S`
//! (process timing still varies from run to run). On a failure the members' whole logs and the
//! full report are kept under `target/tmp/chaos_procs-<pid>/`.

mod procs;

#[path = "../sim/src/checker/mod.rs"]
mod checker;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checker::{Op, Operation, Outcome};
use procs::{
    append_log, free_port, http_get, member_command, runtime, url_flags, Clients, KilledOnDrop,
    TempDir, STARTUP_TIMEOUT,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stet::proto::etcdserverpb as pb;
use tonic::transport::Channel;

/// Short raft timings keep failover quick: 50 ms heartbeats, 500 ms election timeout.
const TIMING: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];
/// Members in the cluster.
const MEMBERS: usize = 3;
/// Keys the clients use: few, so operations collide.
const KEYS: usize = 5;
/// Concurrent clients.
const CLIENTS: u64 = 4;
/// Kills without `STET_CHAOS_PROC_KILLS`.
const DEFAULT_KILLS: u64 = 6;
/// Seed without `STET_CHAOS_PROC_SEED`.
const DEFAULT_SEED: u64 = 20_240_611;
/// How long a client waits for an answer before recording an unknown outcome.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits for a connection to a member.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Write errors that say the member refused the request before proposing it, so it had no effect.
const REFUSED_BEFORE_PROPOSAL: [&str; 1] = ["etcdserver: too many requests"];

/// One `stet` process: its ports, its log file, and the running child (if any).
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<KilledOnDrop>,
    log: PathBuf,
}

impl Member {
    /// The client URL.
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The peer URL.
    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Everything the member logged, across its restarts.
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process with SIGKILL (`Child::kill`) and reaps it.
    fn kill(&mut self) {
        self.child = None;
    }
}

/// A cluster of `stet` processes sharing one temporary directory. Members come first so they are
/// killed before the directory is removed.
struct Cluster {
    members: Vec<Member>,
    dir: TempDir,
    token: String,
}

impl Cluster {
    /// `MEMBERS` members named m0, m1, ... bootstrapped together, each healthy.
    fn start(tag: &str) -> Cluster {
        let dir = TempDir::new(tag);
        let members = (0..MEMBERS)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
                log: dir.0.join(format!("m{i}.log")),
            })
            .collect();
        let mut cluster = Cluster {
            members,
            dir,
            token: format!("token-{tag}"),
        };
        for i in 0..MEMBERS {
            cluster.launch(i);
        }
        for i in 0..MEMBERS {
            cluster.wait_healthy(i);
        }
        cluster
    }

    /// The `--initial-cluster` flag's value.
    fn initial_cluster(&self) -> String {
        let members: Vec<_> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect();
        members.join(",")
    }

    /// The command that runs member `i`: the same flags and data directory every time.
    fn command(&self, i: usize) -> Command {
        let m = &self.members[i];
        let data_dir = self.dir.0.join(&m.name).display().to_string();
        let mut command = member_command();
        command
            .args(["--name", &m.name, "--data-dir", &data_dir])
            .args(url_flags(&m.endpoint(), &m.peer_url()))
            .args(["--initial-cluster", &self.initial_cluster()])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(TIMING);
        command
    }

    /// Starts member `i`, appending its log to `m<i>.log`.
    fn launch(&mut self, i: usize) {
        let log = append_log(&self.members[i].log);
        let child = self.command(i).stderr(log).spawn().expect("spawn stet");
        self.members[i].child = Some(KilledOnDrop(child));
    }

    /// Waits until member `i` answers `/health` with `true` (it has a leader, no alarm).
    fn wait_healthy(&mut self, i: usize) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            self.assert_running(i);
            let member = &self.members[i];
            if let Ok((200, body)) = http_get(member.client_port, "/health") {
                if body.contains("\"true\"") {
                    return;
                }
            }
            if Instant::now() > deadline {
                let headline =
                    format!("{} was not healthy within {STARTUP_TIMEOUT:?}", member.name);
                self.fail(&headline, &headline);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails, with its log, if member `i` should run but its process has exited.
    fn assert_running(&mut self, i: usize) {
        let member = &mut self.members[i];
        if let Some(child) = member.child.as_mut() {
            if let Ok(Some(status)) = child.0.try_wait() {
                let headline = format!("{} exited on its own: {status}", member.name);
                self.fail(&headline, &headline);
            }
        }
    }

    /// The client URLs of every member.
    fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// Fails the test with `headline` and the tail of every member's log, first keeping the
    /// members' whole logs and `report` (say, a violation's full history) under the target
    /// directory, as the cluster's temporary directory goes with the test.
    fn fail(&self, headline: &str, report: &str) -> ! {
        let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chaos_procs-{}", std::process::id()));
        let saved = std::fs::create_dir_all(&kept).and_then(|()| {
            for member in &self.members {
                std::fs::copy(&member.log, kept.join(format!("{}.log", member.name)))?;
            }
            std::fs::write(kept.join("report.txt"), report)
        });
        let where_kept = match saved {
            Ok(()) => format!("full report and member logs kept in {}", kept.display()),
            Err(error) => format!("could not keep the evidence in {}: {error}", kept.display()),
        };
        panic!("{headline}\n{where_kept}\n{}", self.log_tails(30));
    }

    /// The last `lines` lines of every member's log, for failure reports.
    fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for member in &self.members {
            let text = member.log_text();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            out += &format!("--- {} (last {} lines) ---\n", member.name, tail.len());
            for line in tail {
                out += line;
                out.push('\n');
            }
        }
        out
    }
}

/// A gRPC connection to `endpoint`, or `None` if it cannot be had within `CONNECT_TIMEOUT`.
async fn try_connect(endpoint: &str) -> Option<Clients> {
    let endpoint = Channel::from_shared(endpoint.to_string())
        .expect("a valid endpoint")
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = tokio::time::timeout(CONNECT_TIMEOUT * 2, endpoint.connect()).await;
    Some(Clients::from_channel(channel.ok()?.ok()?))
}

/// The member at `endpoint`'s own view: (member id, leader id, revision), or `None` if it does
/// not answer.
async fn status(endpoint: &str) -> Option<(u64, u64, i64)> {
    let mut clients = try_connect(endpoint).await?;
    let request = clients.maintenance.status(pb::StatusRequest::default());
    let status = answer(request).await.ok()?;
    let header = status.header.unwrap_or_default();
    Some((header.member_id, status.leader, header.revision))
}

/// The index of the member that says it leads, asking every running member.
async fn find_leader(endpoints: &[String]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for (i, endpoint) in endpoints.iter().enumerate() {
            if let Some((me, leader, _)) = status(endpoint).await {
                if leader != 0 && leader == me {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A gRPC call bounded by `REQUEST_TIMEOUT`: its answer, or the error (`None`: timed out).
async fn answer<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Option<tonic::Status>> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(Some(status)),
        Err(_) => Err(None),
    }
}

/// The history every client appends to, timed from one instant taken at test start.
struct Recorder {
    start: Instant,
    operations: Mutex<Vec<Operation>>,
}

impl Recorder {
    /// Microseconds since the test started.
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Records `op`, invoked at `invoke_us` and completed now with `outcome`.
    fn record(&self, client: u64, op: Op, invoke_us: u64, outcome: Outcome) {
        let complete_us = self.now_us();
        let mut operations = self.operations.lock().expect("history lock");
        let id = operations.len() as u64;
        operations.push(Operation {
            id,
            client,
            op,
            invoke_us,
            complete_us,
            outcome,
        });
    }

    /// Performs `op` through `clients` and records it; its outcome.
    async fn perform(&self, client: u64, clients: &mut Clients, op: &Op) -> Outcome {
        let invoke_us = self.now_us();
        let outcome = perform(clients, op).await;
        self.record(client, op.clone(), invoke_us, outcome.clone());
        outcome
    }
}

/// The key every client uses under index `i`.
fn key(i: usize) -> Vec<u8> {
    format!("k{i}").into_bytes()
}

/// A random operation: a put of a value unique to (`client`, `seq`), a linearizable get, or a
/// compare-and-set expecting the value the client last read.
fn random_op(
    rng: &mut impl Rng,
    client: u64,
    seq: u64,
    last_seen: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> Op {
    let key = key(rng.gen_range(0..KEYS));
    let value = format!("c{client}-{seq}").into_bytes();
    match rng.gen_range(0..100) {
        0..=39 => Op::Put { key, value },
        40..=74 => Op::Get { key },
        _ => Op::Cas {
            expected: last_seen.get(&key).cloned().flatten(),
            key,
            new: value,
        },
    }
}

/// The txn that performs a compare-and-set: if `key`'s value is `expected` (absent: version 0),
/// put `new`; otherwise nothing.
fn cas_request(key: &[u8], expected: &Option<Vec<u8>>, new: &[u8]) -> pb::TxnRequest {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let (target, target_union) = match expected {
        None => (CompareTarget::Version, TargetUnion::Version(0)),
        Some(value) => (CompareTarget::Value, TargetUnion::Value(value.clone())),
    };
    let compare = pb::Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.to_vec(),
        target_union: Some(target_union),
        ..Default::default()
    };
    let put = pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.to_vec(),
            value: new.to_vec(),
            ..Default::default()
        })),
    };
    pb::TxnRequest {
        compare: vec![compare],
        success: vec![put],
        failure: Vec::new(),
    }
}

/// What a failed write means for the checker: `Failed` only for an error that says the member
/// refused it before proposing; anything else (timeout, lost connection, stopped) may still
/// commit, so `Unknown`.
fn failed_write(error: Option<tonic::Status>) -> Outcome {
    match error {
        Some(status) if REFUSED_BEFORE_PROPOSAL.contains(&status.message()) => Outcome::Failed,
        _ => Outcome::Unknown,
    }
}

/// Sends `op` and maps the answer to the checker's outcome. A read that errs is `Unknown`.
async fn perform(clients: &mut Clients, op: &Op) -> Outcome {
    match op {
        Op::Put { key, value } => {
            let request = pb::PutRequest {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            };
            match answer(clients.kv.put(request)).await {
                Ok(_) => Outcome::Put,
                Err(error) => failed_write(error),
            }
        }
        Op::Get { key } => {
            let request = pb::RangeRequest {
                key: key.clone(),
                ..Default::default()
            };
            match answer(clients.kv.range(request)).await {
                Ok(response) => Outcome::Get(response.kvs.first().map(|kv| kv.value.clone())),
                Err(_) => Outcome::Unknown,
            }
        }
        Op::Cas { key, expected, new } => {
            match answer(clients.kv.txn(cas_request(key, expected, new))).await {
                Ok(response) => Outcome::Cas {
                    succeeded: response.succeeded,
                },
                Err(error) => failed_write(error),
            }
        }
        Op::SerializableGet { .. } | Op::Delete { .. } => {
            unreachable!("the clients never send {op:?}")
        }
    }
}

/// One client: random operations through a random member until `stop`; on an error it drops
/// its connection and, after a pause, connects to another random member.
async fn client_loop(
    id: u64,
    seed: u64,
    endpoints: Vec<String>,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(id + 1));
    let mut connection: Option<Clients> = None;
    let mut last_seen = BTreeMap::new();
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(clients) = connection.as_mut() else {
            let endpoint = &endpoints[rng.gen_range(0..endpoints.len())];
            connection = try_connect(endpoint).await;
            if connection.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        };
        seq += 1;
        let op = random_op(&mut rng, id, seq, &last_seen);
        match recorder.perform(id, clients, &op).await {
            Outcome::Get(value) => {
                last_seen.insert(op.key().clone(), value);
            }
            Outcome::Unknown | Outcome::Failed => {
                connection = None;
                let pause = rng.gen_range(20..100);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            _ => {}
        }
        // A little think time keeps the history small enough to check.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1..6))).await;
    }
}

/// Kills `kills` times: the leader half the time, else a random member; SIGKILL, a pause,
/// a restart on the same data directory, healthy again, a pause. Returns what it did, per kill.
fn nemesis(
    cluster: &mut Cluster,
    runtime: &tokio::runtime::Runtime,
    rng: &mut ChaCha8Rng,
    kills: u64,
) -> Vec<String> {
    let endpoints = cluster.endpoints();
    let mut done = Vec::new();
    for n in 0..kills {
        for i in 0..MEMBERS {
            cluster.assert_running(i);
        }
        let leader = runtime.block_on(find_leader(&endpoints));
        let victim = if rng.gen_bool(0.5) {
            leader
        } else {
            rng.gen_range(0..MEMBERS)
        };
        let down = Duration::from_millis(rng.gen_range(300..=800));
        let settle = Duration::from_millis(rng.gen_range(500..=1500));
        cluster.members[victim].kill();
        std::thread::sleep(down);
        let restarted = Instant::now();
        cluster.launch(victim);
        cluster.wait_healthy(victim);
        let what = format!(
            "kill {}: m{victim}{} down {down:?}, healthy {:?} after restart",
            n + 1,
            if victim == leader { " (leader)" } else { "" },
            restarted.elapsed()
        );
        println!("{what}");
        done.push(what);
        std::thread::sleep(settle);
    }
    done
}

/// Reads every key linearizably once more (recorded as client `CLIENTS`), retrying through
/// the members in turn; each key's final value.
async fn final_reads(endpoints: &[String], recorder: &Recorder) -> Vec<Option<Vec<u8>>> {
    let mut finals = Vec::new();
    for i in 0..KEYS {
        let op = Op::Get { key: key(i) };
        let mut attempt = 0;
        let value = loop {
            assert!(attempt < 30, "no final read of {:?} succeeded", key(i));
            let endpoint = &endpoints[attempt % endpoints.len()];
            attempt += 1;
            let Some(mut clients) = try_connect(endpoint).await else {
                continue;
            };
            if let Outcome::Get(value) = recorder.perform(CLIENTS, &mut clients, &op).await {
                break value;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        finals.push(value);
    }
    finals
}

/// Durability: each key's final value was written by a put or compare-and-set that was
/// acknowledged or whose fate is unknown, and a key with an acknowledged write is not absent.
fn check_durability(history: &[Operation], finals: &[Option<Vec<u8>>]) -> Result<(), String> {
    for (i, value) in finals.iter().enumerate() {
        let key = key(i);
        let mut maybe_written = BTreeSet::new();
        let mut acknowledged = 0;
        for op in history.iter().filter(|o| o.op.key() == &key) {
            let (written, certain) = match (&op.op, &op.outcome) {
                (Op::Put { value, .. }, Outcome::Put) => (value, true),
                (Op::Cas { new, .. }, Outcome::Cas { succeeded: true }) => (new, true),
                (
                    Op::Put { value: written, .. } | Op::Cas { new: written, .. },
                    Outcome::Unknown,
                ) => (written, false),
                _ => continue,
            };
            maybe_written.insert(written.clone());
            acknowledged += usize::from(certain);
        }
        match value {
            Some(v) if !maybe_written.contains(v) => {
                return Err(format!(
                    "key {key:?} ends with {:?}, which no client wrote",
                    String::from_utf8_lossy(v)
                ))
            }
            None if acknowledged > 0 => {
                return Err(format!(
                    "key {key:?} is absent after {acknowledged} acknowledged writes"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Waits until every member reports the same revision, then checks all give the same `HashKV`
/// (and compact revision) at it; that revision.
async fn check_convergence(endpoints: &[String]) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let revision = loop {
        let mut revisions = Vec::new();
        for endpoint in endpoints {
            revisions.push(status(endpoint).await.map(|(_, _, revision)| revision));
        }
        if let Some(first) = revisions[0] {
            if revisions.iter().all(|r| *r == Some(first)) {
                break first;
            }
        }
        assert!(
            Instant::now() < deadline,
            "members never reached the same revision: {revisions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut hashes = Vec::new();
    for endpoint in endpoints {
        let mut clients = try_connect(endpoint)
            .await
            .unwrap_or_else(|| panic!("no connection to {endpoint} for HashKV"));
        let request = pb::HashKvRequest { revision };
        let hash = answer(clients.maintenance.hash_kv(request))
            .await
            .unwrap_or_else(|e| panic!("HashKV at {revision} on {endpoint}: {e:?}"));
        hashes.push((hash.hash, hash.compact_revision));
    }
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "members disagree at revision {revision}: (hash, compact revision) {hashes:?}"
    );
    revision
}

/// A number from environment variable `name`, or `default`.
fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text} is not a number")),
        Err(_) => default,
    }
}

/// A check error in a few lines: a violation without the full history of its key.
fn headline(error: &checker::CheckError) -> String {
    match error {
        checker::CheckError::Violation(violation) => format!(
            "linearizability violation on key {:?}: {}",
            String::from_utf8_lossy(&violation.key),
            violation.detail
        ),
        other => other.to_string(),
    }
}

/// Counts of outcomes in `history`, for the report.
fn summary(history: &[Operation]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for op in history {
        let kind = match op.outcome {
            Outcome::Put => "put ok",
            Outcome::Get(_) => "get ok",
            Outcome::Cas { succeeded: true } => "cas succeeded",
            Outcome::Cas { succeeded: false } => "cas not matched",
            Outcome::Unknown => "unknown",
            Outcome::Failed => "failed",
            Outcome::Delete { .. } => "delete",
        };
        *counts.entry(kind).or_default() += 1;
    }
    format!("{} operations: {counts:?}", history.len())
}

#[test]
fn killed_members_keep_the_history_linearizable() {
    let recorder = Arc::new(Recorder {
        start: Instant::now(),
        operations: Mutex::new(Vec::new()),
    });
    let seed = env_u64("STET_CHAOS_PROC_SEED", DEFAULT_SEED);
    let kills = env_u64("STET_CHAOS_PROC_KILLS", DEFAULT_KILLS);
    println!("chaos_procs: seed {seed} (STET_CHAOS_PROC_SEED), {kills} kills");
    let mut cluster = Cluster::start("chaos-procs");
    let endpoints = cluster.endpoints();
    let runtime = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let task = client_loop(id, seed, endpoints.clone(), recorder.clone(), stop.clone());
            runtime.spawn(task)
        })
        .collect();

    std::thread::sleep(Duration::from_secs(1));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let done = nemesis(&mut cluster, &runtime, &mut rng, kills);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        runtime.block_on(client).expect("a client task panicked");
    }

    for i in 0..MEMBERS {
        cluster.wait_healthy(i);
    }
    let finals = runtime.block_on(final_reads(&endpoints, &recorder));
    let history = std::mem::take(&mut *recorder.operations.lock().expect("history lock"));
    let kills_done = format!("seed {seed}, {} kills:\n{}", done.len(), done.join("\n"));
    println!("chaos_procs: {}", summary(&history));

    let checked = Instant::now();
    match checker::check(&history) {
        Ok(stats) => println!(
            "chaos_procs: linearizable: {} keys, {} operations, {} states, checked in {:?}",
            stats.keys,
            stats.operations,
            stats.states_explored,
            checked.elapsed()
        ),
        Err(error) => cluster.fail(
            &format!("{}\n{kills_done}", headline(&error)),
            &format!("{kills_done}\n{error}"),
        ),
    }
    if let Err(lost) = check_durability(&history, &finals) {
        let history: Vec<String> = history.iter().map(Operation::to_string).collect();
        cluster.fail(
            &format!("durability: {lost}\n{kills_done}"),
            &format!("{kills_done}\n{lost}\n{}", history.join("\n")),
        );
    }
    let revision = runtime.block_on(check_convergence(&endpoints));
    println!(
        "chaos_procs: seed {seed}: {} kills, {} operations, members agree at revision {revision}, \
         {:?} in all",
        done.len(),
        history.len(),
        recorder.start.elapsed()
    );
}
