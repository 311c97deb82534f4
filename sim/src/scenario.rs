//! Scenarios and the run of one seed: build a world of members and clients on madsim, let the
//! nemesis inject the scenario's faults while clients work, heal, then check every oracle:
//! raft safety (observer), liveness after healing, durability and linearizability of what clients
//! saw (checker), and that no member refused to start unless its disk was corrupted.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::{Handle, Runtime};
use rand::Rng;

use crate::checker::{self, CheckError, Op, Outcome};
use crate::client::{self, Client, KEYS};
use crate::clock::ClockModel;
use crate::disk::SharedDisk;
use crate::leases;
use crate::nemesis::{Fault, Nemesis};
use crate::watcher;
use crate::world::{lock, SelfTest, Settings, World};

/// A named fault mix.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub faults: Vec<Fault>,
    /// Give every member a skewed, drifting clock.
    pub skewed_clocks: bool,
    /// Members may refuse to start (their disk was corrupted on purpose).
    pub allows_refusal: bool,
    /// Watch, lease and compaction clients beside the register workload.
    pub extras: Extras,
    /// Members in the initial cluster, if not the run's default.
    pub members: Option<u64>,
    /// A space quota small enough for the run to reach (the compactor then defragments and
    /// disarms, as an operator would).
    pub quota_backend_bytes: Option<u64>,
    /// A `--max-request-bytes` small enough that watch responses outgrow it (and requests with
    /// large values come near it).
    pub max_request_bytes: Option<usize>,
    /// Members run with `--experimental-auto-promote-learners`: the operator adds learners and
    /// leaves their promotion to the leader, which the final checks hold it to.
    pub auto_promote_learners: bool,
    /// Watch responses each stream buffers in the runtime, if not the run's default: smaller,
    /// so slow watchers fill their streams often.
    pub watch_stream_buffer: Option<usize>,
}

/// Clients beside the register workload: watchers, lease clients, a compactor, and clients that
/// send every request shape (`rich`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    pub watchers: u64,
    pub lease_clients: u64,
    pub compactor: bool,
    pub rich_clients: u64,
    /// An administrator changing auth and users working under it (`crate::auth`).
    pub auth: bool,
}

/// Client numbers (and IPs 10.0.1.n) of the extra clients.
const FIRST_WATCHER: u64 = 50;
const FIRST_LEASE_CLIENT: u64 = 70;
const COMPACTOR: u64 = 90;
const FIRST_RICH_CLIENT: u64 = 100;
/// The auth administrator's client number (the checker's disabling at the end uses it too); its
/// users follow it.
pub const AUTH_ADMIN: u64 = 120;

/// Every scenario, in the order the runner reports them.
pub fn scenarios() -> Vec<Scenario> {
    use Fault::*;
    let scenario = |name, faults: Vec<Fault>| Scenario {
        name,
        faults,
        skewed_clocks: false,
        allows_refusal: false,
        extras: Extras {
            rich_clients: 1,
            ..Extras::default()
        },
        members: None,
        quota_backend_bytes: None,
        max_request_bytes: None,
        auto_promote_learners: false,
        watch_stream_buffer: None,
    };
    vec![
        scenario("calm", vec![]),
        scenario("partition", vec![Partition, IsolateLeader, OneWay]),
        scenario("lossy", vec![Lossy]),
        scenario("transport", vec![PeerFaults, Crash, IsolateLeader]),
        scenario("crash", vec![Crash, CrashAtPoint, PowerCut]),
        scenario("disk-full", vec![DiskFull, Crash]),
        scenario("pause", vec![Pause]),
        Scenario {
            skewed_clocks: true,
            ..scenario("clock", vec![ClockJump, Partition])
        },
        Scenario {
            allows_refusal: true,
            ..scenario("disk", vec![DiskCorruption, Crash])
        },
        Scenario {
            extras: Extras {
                watchers: 3,
                lease_clients: 2,
                compactor: true,
                rich_clients: 1,
                auth: false,
            },
            // Small enough that runs fill it: writes then fail with NOSPACE until the compactor
            // has compacted, defragmented and disarmed.
            quota_backend_bytes: Some(512 << 10),
            // Small enough that a response with two large values, or a revision deleting a wide
            // span, goes to watchers that asked for fragments in several parts.
            max_request_bytes: Some(1024),
            // Small enough that a watcher that stops reading fills its stream within a few
            // batches of applied writes (the driver applies a burst of puts at once).
            watch_stream_buffer: Some(2),
            ..scenario(
                "watch",
                vec![Partition, IsolateLeader, Crash, CrashAtPoint, Pause],
            )
        },
        Scenario {
            skewed_clocks: true,
            extras: Extras {
                watchers: 1,
                lease_clients: 1,
                compactor: true,
                rich_clients: 1,
                auth: false,
            },
            ..scenario(
                "mixed",
                vec![
                    Partition,
                    IsolateLeader,
                    OneWay,
                    Lossy,
                    PeerFaults,
                    Crash,
                    CrashAtPoint,
                    Pause,
                    ClockJump,
                ],
            )
        },
        scenario("leader-removal", vec![RemoveLeader]),
        scenario("churn", vec![Churn, Crash, CrashAtPoint]),
        Scenario {
            auto_promote_learners: true,
            ..scenario("auto-promote", vec![Churn, Crash, Partition])
        },
        // Auth enabled, disabled and permissions changed under load while members crash
        // (etcd-io/etcd#14571). Only the auth clients and the register clients run: the other
        // extras send requests without credentials.
        Scenario {
            extras: Extras {
                auth: true,
                ..Extras::default()
            },
            ..scenario(
                "auth",
                vec![Crash, CrashAtPoint, PowerCut, Partition, IsolateLeader],
            )
        },
        // Revisions are reused after the recovery, which the revision oracle does not model.
        Scenario {
            extras: Extras::default(),
            ..scenario("force-new-cluster", vec![MajorityLoss])
        },
        // A one-member cluster acknowledges a write as soon as its own fsync is done: a crash
        // right after must not lose it (etcd lost such writes: etcd-io/etcd#14370).
        Scenario {
            members: Some(1),
            extras: Extras {
                watchers: 1,
                lease_clients: 1,
                compactor: true,
                rich_clients: 1,
                auth: false,
            },
            ..scenario(
                "single",
                vec![Crash, CrashAtPoint, PowerCut, Pause, ClockJump],
            )
        },
    ]
}

/// Finds a scenario by name.
pub fn scenario(name: &str) -> Option<Scenario> {
    scenarios().into_iter().find(|s| s.name == name)
}

/// The shape of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub members: u64,
    pub clients: u64,
    /// How long faults are injected while clients work.
    pub fault_time: Duration,
    /// Self-test: a fault planted on purpose (the oracles must catch it).
    pub self_test: Option<SelfTest>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            members: 5,
            clients: 4,
            fault_time: Duration::from_secs(20),
            self_test: None,
        }
    }
}

/// Which property a failed run violated, and how.
#[derive(Debug, Clone)]
pub struct Failure {
    pub property: &'static str,
    pub detail: String,
    /// The key a linearizability violation is on.
    pub key: Option<Vec<u8>>,
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub seed: u64,
    pub scenario: &'static str,
    pub outcome: Result<(), Failure>,
    /// A hash of the trace and the history: equal for equal seeds.
    pub trace_hash: u32,
    pub trace: Vec<String>,
    pub operations: usize,
    /// The register clients' history, for the failure page (`visualize`).
    pub history: Vec<crate::checker::Operation>,
    pub simulated: Duration,
}

/// Runs one seed of a scenario on a fresh madsim runtime, on a thread of its own.
///
/// The thread is what makes a seed replay alone as it ran among others: std draws the keys of a
/// thread's `HashMap`s once, at the first one the thread makes, and madsim can make them the
/// seed's only while that has not happened. On a thread that already ran a seed, the maps would
/// iterate in an order set by the seeds run before, and so would whatever follows that order.
pub fn run(seed: u64, scenario: &Scenario, options: &RunOptions) -> RunReport {
    crate::configure_heap();
    std::thread::scope(|scope| {
        let run_alone = scope.spawn(|| {
            let runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
            let (scenario, options) = (scenario.clone(), options.clone());
            runtime.block_on(async move { run_world(seed, scenario, options).await })
        });
        run_alone
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs one seed inside the current madsim runtime (for `Runtime::check_determinism`).
pub async fn run_in_current_runtime(scenario: Scenario, options: RunOptions) -> RunReport {
    let seed = Handle::current().seed();
    run_world(seed, scenario, options).await
}

async fn run_world(seed: u64, scenario: Scenario, options: RunOptions) -> RunReport {
    let mut settings = Settings::new(seed);
    settings.self_test = options.self_test;
    settings.quota_backend_bytes = scenario.quota_backend_bytes;
    settings.max_request_bytes = scenario.max_request_bytes;
    settings.auto_promote_learners = scenario.auto_promote_learners;
    if let Some(buffer) = scenario.watch_stream_buffer {
        settings.watch_stream_buffer = buffer;
    }
    let world = Arc::new(World::new(
        settings,
        scenario.members.unwrap_or(options.members),
    ));

    if scenario.skewed_clocks {
        skew_clocks(&world);
    }
    if options.self_test == Some(SelfTest::FastClock) {
        distort_a_clock(&world);
    }
    let handle = Handle::current();
    let hosts: Vec<u64> = lock(&world.hosts).keys().copied().collect();
    for host in hosts {
        let node = handle
            .create_node()
            .name(format!("host-{host}"))
            .ip(crate::net::host_ip(host))
            .init(crate::member::process(&world, host))
            .build();
        if let Some(entry) = lock(&world.hosts).get_mut(&host) {
            entry.node = Some(node.id());
        }
    }
    let members: Vec<u64> = world.member_ids();
    let work_until = options.fault_time;
    let mut workloads = Vec::new();
    for n in 1..=options.clients {
        let node = handle
            .create_node()
            .name(format!("client-{n}"))
            .ip(crate::net::client_ip(n))
            .build();
        let (w, m) = (world.clone(), members.clone());
        workloads.push(node.spawn(client::workload(w, n, m, work_until)));
    }
    workloads.extend(spawn_extras(
        &handle,
        &world,
        &members,
        scenario.extras,
        work_until,
    ));
    let nemesis = Nemesis::new(world.clone(), scenario.faults.clone());
    nemesis.run(work_until).await;
    for workload in workloads {
        let _ = workload.await;
    }
    nemesis.heal_network();
    world.trace("faults healed; checking liveness");

    let outcome = final_checks(&world, &scenario, &handle, &members).await;
    stop_every_process(&world, &handle).await;
    let trace = lock(&world.trace).clone();
    let history = lock(&world.history).clone();
    let mut hasher = CrcHasher(crc32fast::Hasher::new());
    for line in &trace {
        hasher.0.update(line.as_bytes());
    }
    for op in &history {
        op.hash(&mut hasher);
    }
    let hasher = hasher.0;
    RunReport {
        seed,
        scenario: scenario.name,
        outcome,
        trace_hash: hasher.finalize(),
        trace,
        operations: history.len(),
        history,
        simulated: world.elapsed(),
    }
}

/// Kills every member process at the end of a run, so that madsim, which keeps a dropped
/// runtime's tasks, drops them (their nodes, engines and buffers) now; seeds run one after another
/// in one process.
async fn stop_every_process(world: &World, handle: &Handle) {
    let nodes: Vec<_> = lock(&world.hosts).values().filter_map(|h| h.node).collect();
    let members: Vec<u64> = world.member_ids();
    for member in members {
        world.power_off(member);
    }
    for node in nodes {
        handle.kill(node);
    }
    // The executor drops killed tasks when it next runs.
    madsim::time::sleep(std::time::Duration::from_millis(1)).await;
}

/// Feeds formatted text to a crc32 hasher.
/// `std::hash::Hash` into a crc32: every field of a history operation reaches the run's hash.
struct CrcHasher(crc32fast::Hasher);

impl Hasher for CrcHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        u64::from(self.0.clone().finalize())
    }
}

/// Starts the scenario's watch, lease and compaction clients, each on its own madsim node.
fn spawn_extras(
    handle: &Handle,
    world: &Arc<World>,
    members: &[u64],
    extras: Extras,
    until: Duration,
) -> Vec<madsim::task::JoinHandle<()>> {
    let mut clients: Vec<(u64, &str)> = Vec::new();
    clients.extend((0..extras.watchers).map(|n| (FIRST_WATCHER + n, "watcher")));
    clients.extend((0..extras.lease_clients).map(|n| (FIRST_LEASE_CLIENT + n, "lease-client")));
    if extras.compactor {
        clients.push((COMPACTOR, "compactor"));
    }
    clients.extend((0..extras.rich_clients).map(|n| (FIRST_RICH_CLIENT + n, "rich-client")));
    if extras.auth {
        clients.push((AUTH_ADMIN, "auth-admin"));
        clients.extend((1..=crate::auth::USERS).map(|user| (AUTH_ADMIN + user, "auth-user")));
    }
    let mut handles = Vec::new();
    for (n, kind) in clients {
        let node = handle
            .create_node()
            .name(format!("{kind}-{n}"))
            .ip(crate::net::client_ip(n))
            .build();
        let (w, m) = (world.clone(), members.to_vec());
        let handle = match kind {
            "watcher" => node.spawn(watcher::watch_workload(w, n, m, until)),
            "lease-client" => node.spawn(leases::lease_workload(w, n, m, until)),
            "rich-client" => node.spawn(crate::rich::rich_workload(w, n, m, until)),
            "auth-admin" => node.spawn(crate::auth::admin_workload(w, n, m, until)),
            "auth-user" => node.spawn(crate::auth::user_workload(w, n, n - AUTH_ADMIN, m, until)),
            _ => node.spawn(watcher::compaction_workload(w, n, m, until)),
        };
        handles.push(handle);
    }
    handles
}

fn skew_clocks(world: &World) {
    let mut rng = madsim::rand::thread_rng();
    for clock in lock(&world.clocks).values_mut() {
        *clock = ClockModel {
            offset_us: rng.gen_range(0..60_000_000),
            drift_ppm: rng.gen_range(-100_000..=100_000),
            jumps: Vec::new(),
        };
    }
}

/// Self-test of the lease oracle: the first member's clock runs twice as fast as its model says.
fn distort_a_clock(world: &World) {
    let Some(member) = world.initial.first().map(|m| m.id) else {
        return;
    };
    const EXTRA_PPM: i64 = 1_000_000;
    if let Some(clock) = lock(&world.clocks).get_mut(&member) {
        clock.drift_ppm += EXTRA_PPM;
    }
    *lock(&world.clock_distortion) = Some((member, EXTRA_PPM));
}

async fn final_checks(
    world: &Arc<World>,
    scenario: &Scenario,
    handle: &Handle,
    members: &[u64],
) -> Result<(), Failure> {
    let checker_node = handle
        .create_node()
        .name("checker")
        .ip(crate::net::client_ip(200))
        .build();
    if scenario.extras.auth {
        let (w, m) = (world.clone(), members.to_vec());
        let settled = crate::auth::settle(w, m);
        on_checker(&checker_node, "auth convergence", settled).await?;
    }
    let (w, m) = (world.clone(), world.live_members(members));
    let checks = checker_node.spawn(async move { liveness_and_final_reads(w, m).await });
    let live = checks.await.unwrap_or(false);

    // First: a member with the wrong identity makes the other oracles' findings secondary.
    if let Some(violation) = lock(&world.identity_violations).first().cloned() {
        return Err(Failure {
            key: None,
            property: "cluster identity",
            detail: violation,
        });
    }
    corruption_checked(world)?;
    if let Some(violation) = lock(&world.durability_violation).clone() {
        return Err(Failure {
            key: None,
            property: "durability",
            detail: violation,
        });
    }
    if let Some(violation) = lock(&world.observer).violation() {
        return Err(Failure {
            key: None,
            property: "raft safety",
            detail: violation.0.clone(),
        });
    }
    let refused = lock(&world.refused).clone();
    let allowed = if scenario.allows_refusal { 1 } else { 0 };
    if refused.len() > allowed {
        return Err(Failure {
            key: None,
            property: "availability",
            detail: format!("members refused to start or stopped: {refused:?}"),
        });
    }
    if !live {
        return Err(Failure {
            key: None,
            property: "liveness",
            detail: "no write committed within 30 s of healing every fault".to_string(),
        });
    }
    let (w, m) = (world.clone(), world.live_members(members));
    on_checker(&checker_node, "backup", crate::backup::check(w, m)).await?;
    let (w, m) = (world.clone(), world.live_members(members));
    on_checker(&checker_node, "bytes in use", crate::in_use::check(w, m)).await?;
    if let Some(violation) = lock(&world.early_no_leader).first().cloned() {
        return Err(Failure {
            key: None,
            property: "election wait",
            detail: violation,
        });
    }
    if let Some(violation) = lock(&world.clock_violations).first().cloned() {
        return Err(Failure {
            key: None,
            property: "clock comparison",
            detail: violation,
        });
    }
    removed_members_stopped(world).await?;
    if scenario.auto_promote_learners {
        let promoted = crate::membership::learners_promoted(world.clone());
        on_checker(&checker_node, "auto-promotion", promoted).await?;
    }
    engine_files_settled(world).await?;
    wal_files_settled(world).await?;
    let history = lock(&world.history).clone();
    for history in crate::membership::histories_to_check(world, &history) {
        check_history(&history)?;
    }
    crate::auth::check(world).map_err(|detail| Failure {
        key: None,
        property: "permissions",
        detail,
    })?;
    check_watches_and_leases(world)
}

/// Runs `check` on the checker's node; what it returns as `Err` fails the run as a violation of
/// `property` (a check that could not run at all, say the node went away, fails nothing).
async fn on_checker<F>(
    node: &madsim::runtime::NodeHandle,
    property: &'static str,
    check: F,
) -> Result<(), Failure>
where
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    match node.spawn(check).await {
        Ok(Err(detail)) => Err(Failure {
            key: None,
            property,
            detail,
        }),
        _ => Ok(()),
    }
}

/// The corruption check raises the CORRUPT alarm for the member that diverged (the first initial
/// one, whose applied puts the self-test corrupts), and never when none did.
fn corruption_checked(world: &World) -> Result<(), Failure> {
    let diverged = lock(&world.settings)
        .self_test
        .is_some_and(|t| t.diverges())
        .then(|| world.initial.first().map(|m| m.id))
        .flatten();
    let alarms = lock(&world.corrupt_alarms).clone();
    let detail = match diverged {
        Some(culprit) if !alarms.contains_key(&culprit) => format!(
            "member {culprit:x} applied other values than the others and the corruption check \
             never raised the CORRUPT alarm for it (alarms: {:?})",
            alarms.values().collect::<Vec<_>>()
        ),
        None if !alarms.is_empty() => format!(
            "{}, though no member diverged",
            alarms.values().next().map_or("", String::as_str)
        ),
        _ => return Ok(()),
    };
    Err(Failure {
        key: None,
        property: "corruption check",
        detail,
    })
}

/// Every member the operator removed stops by itself, once it can hear of its removal (the
/// simulator never stops one for it): within 10 s of healing the network.
async fn removed_members_stopped(world: &World) -> Result<(), Failure> {
    let removed = lock(&world.removed).clone();
    let still_running = || -> Vec<u64> {
        let status = lock(&world.status);
        removed
            .iter()
            .copied()
            .filter(|id| status.get(id).is_some_and(|s| s.running))
            .collect()
    };
    for _ in 0..50 {
        if still_running().is_empty() {
            return Ok(());
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
    let running: Vec<String> = still_running().iter().map(|id| format!("{id:x}")).collect();
    Err(Failure {
        key: None,
        property: "removal",
        detail: format!(
            "removed members still run after the network healed: {}",
            running.join(", ")
        ),
    })
}

/// Every running member's data directory holds its engine file and nothing a defragmentation
/// left: a replaced file is closed and removed once no view reads it, a copy is renamed into place
/// or removed. Views end shortly after the clients stop, so this waits up to 10 s.
async fn engine_files_settled(world: &World) -> Result<(), Failure> {
    let layout =
        stet::storage::StorageLayout::new(std::path::Path::new(crate::world::DATA_DIR), None);
    let Some(dir) = layout.engine_file.parent().map(|d| d.to_path_buf()) else {
        return Ok(());
    };
    let prefix = format!("{}.", stet::engine::ENGINE_FILE);
    let leftovers = |disk: &SharedDisk| -> Vec<String> {
        let names = stet::disk::Disk::list(disk, &dir).unwrap_or_default();
        names
            .into_iter()
            .filter(|name| name.starts_with(&prefix))
            .collect()
    };
    settled(
        world,
        "engine files",
        "files a defragmentation left behind",
        leftovers,
    )
    .await
}

/// Every running member's WAL holds no segment wholly below its newest own snapshot (an own
/// snapshot releases them; a start finishes a release a crash cut short), and no file
/// of a released segment is left: its removal runs off the driver shortly after the release.
/// Waits up to 10 s for removals in flight.
async fn wal_files_settled(world: &World) -> Result<(), Failure> {
    let layout =
        stet::storage::StorageLayout::new(std::path::Path::new(crate::world::DATA_DIR), None);
    let problems = |disk: &SharedDisk| wal_problems(disk, &layout);
    settled(world, "WAL files", "WAL files", problems).await
}

/// Waits up to 10 s for `problems` to find nothing on every running member's disk; what it
/// still finds then fails the run as a violation of `property`.
async fn settled(
    world: &World,
    property: &'static str,
    what: &str,
    problems: impl Fn(&SharedDisk) -> Vec<String>,
) -> Result<(), Failure> {
    let found = || -> Vec<String> {
        let running: Vec<u64> = lock(&world.status)
            .iter()
            .filter(|(_, s)| s.running)
            .map(|(id, _)| *id)
            .collect();
        running
            .into_iter()
            .flat_map(|id| {
                problems(&world.disk(id))
                    .into_iter()
                    .map(move |p| format!("member {id:x}: {p}"))
            })
            .collect()
    };
    for _ in 0..50 {
        if found().is_empty() {
            return Ok(());
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Failure {
        key: None,
        property,
        detail: format!(
            "{what} 10 s after the clients stopped: {}",
            found().join("; ")
        ),
    })
}

/// What is wrong with one member's WAL directory now (see [`wal_files_settled`]).
fn wal_problems<D: stet::disk::Disk>(
    disk: &D,
    layout: &stet::storage::StorageLayout,
) -> Vec<String> {
    use stet::wal::segment::RELEASED_SUFFIX;
    let mut problems: Vec<String> = disk
        .list(&layout.wal_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|name| name.ends_with(RELEASED_SUFFIX))
        .map(|name| format!("released segment {name} not removed"))
        .collect();
    let inspection = match stet::wal::inspect(disk, &layout.wal_dir) {
        Ok(inspection) => inspection,
        Err(e) => return vec![format!("reading the WAL failed: {e}")],
    };
    // Own snapshots only: a received one releases nothing until the member's next own one.
    let recovered = &inspection.recovered;
    let acceptable = |index: u64, term: u64| recovered.own_snapshots.contains(&(index, term));
    let loaded = match stet::snap::load_newest(disk, &layout.snap_dir, &acceptable) {
        Ok(loaded) => loaded,
        Err(e) => return vec![format!("loading the newest snapshot failed: {e}")],
    };
    let Some(snapshot) = loaded.snapshot else {
        return problems;
    };
    let index = snapshot.get_metadata().index;
    let segments = &inspection.segments;
    let below = segments
        .windows(2)
        .filter(|pair| pair[1].first_index <= index)
        .count();
    if below > 0 {
        problems.push(format!(
            "{below} of {} WAL segments wholly below the snapshot at index {index}",
            segments.len()
        ));
    }
    problems
}

/// Linearizability of one history.
fn check_history(history: &[checker::Operation]) -> Result<(), Failure> {
    match checker::check(history) {
        Ok(_) => {}
        Err(CheckError::Violation(violation)) => {
            return Err(Failure {
                key: Some(violation.key.clone()),
                property: "linearizability",
                detail: format!(
                    "key {}: {}\n{}",
                    String::from_utf8_lossy(&violation.key),
                    violation.detail,
                    violation
                        .operations
                        .iter()
                        .map(|op| format!("    {op:?}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            })
        }
        Err(CheckError::GaveUp { key, detail, .. }) => {
            return Err(Failure {
                key: None,
                property: "checkability",
                detail: format!(
                    "the checker gave up on key {}: {detail}",
                    String::from_utf8_lossy(&key)
                ),
            })
        }
        Err(CheckError::Malformed { id, detail }) => {
            return Err(Failure {
                key: None,
                property: "history",
                detail: format!("operation {id} was recorded wrongly: {detail}"),
            })
        }
    }
    Ok(())
}

/// The watch oracle and the lease oracle, with what they checked in the trace.
fn check_watches_and_leases(world: &World) -> Result<(), Failure> {
    let logs = lock(&world.watch_logs).clone();
    let compactions = lock(&world.compactions).clone();
    let compacted_at_create = lock(&world.compacted_at_create).clone();
    let watch = {
        let kv = lock(&world.kv_events);
        watcher::check_watches(&kv, &logs, &compactions, &compacted_at_create)
    };
    let stats = watch.map_err(|detail| Failure {
        key: None,
        property: "watch",
        detail,
    })?;
    world.trace(format!("watch oracle: {stats:?}"));
    let rich = lock(&world.rich_history).clone();
    let revisions = {
        let kv = lock(&world.kv_events);
        crate::revisions::check(&kv, &rich)
    };
    let revisions = revisions.map_err(|detail| Failure {
        key: None,
        property: "revisions",
        detail,
    })?;
    world.trace(format!("revision oracle: {revisions:?}"));
    let leases = lease_oracle(world)?;
    world.trace(format!("lease oracle: {leases:?}"));
    Ok(())
}

fn lease_oracle(world: &World) -> Result<leases::LeaseStats, Failure> {
    let history = lock(&world.lease_history).clone();
    let failure = |detail| Failure {
        key: None,
        property: "lease",
        detail,
    };
    let mut stats = leases::check_leases(&history).map_err(failure)?;
    let revocations = lock(&world.lease_revocations).clone();
    let clocks = world.declared_clocks();
    stats.expiries_timed =
        leases::check_expiry_timing(&history, &revocations, &clocks).map_err(failure)?;
    Ok(stats)
}

/// After healing: a write must commit within a bounded time, then every key is read back through
/// a linearizable read (the reads join the history, so durability is checked by the checker).
async fn liveness_and_final_reads(world: Arc<World>, members: Vec<u64>) -> bool {
    let Ok(mut client) = Client::connect(world.clone(), 1000, crate::net::client_ip(200)).await
    else {
        return false;
    };
    if lock(&world.settings).quota_backend_bytes.is_some() {
        crate::watcher::recover_space(&world, &mut client, &members).await;
    }
    let deadline = world.elapsed() + Duration::from_secs(30);
    let mut committed = false;
    'outer: while world.elapsed() < deadline {
        for &member in &members {
            let op = Op::Put {
                key: b"liveness".to_vec(),
                value: format!("at-{}", world.elapsed().as_millis()).into_bytes(),
            };
            match client.perform(member, op).await {
                Outcome::Put => {
                    committed = true;
                    break 'outer;
                }
                other => world.trace(format!(
                    "liveness: a put through {member:x}: {other:?} ({})",
                    client.last_error.take().unwrap_or_default()
                )),
            }
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
    if !committed {
        return false;
    }
    world.trace("liveness: a write committed; reading every key back");
    for k in 0..KEYS {
        let key = format!("k{k}").into_bytes();
        for attempt in 0..20 {
            let member = members[attempt % members.len()];
            let op = Op::Get { key: key.clone() };
            if matches!(client.perform(member, op).await, Outcome::Get(_)) {
                break;
            }
        }
    }
    // Let every member catch up so the observer compares their final states.
    madsim::time::sleep(Duration::from_secs(2)).await;
    true
}
