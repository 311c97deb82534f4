//! `stet-sim`: runs simulation seeds and reports per scenario.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" cargo run --release --manifest-path sim/Cargo.toml -- \
//!     --seeds 0..100 [--scenario NAME|all] [--members 5] [--clients 4] [--seconds 20] [--trace] \
//!     [--html DIR] [--plant FAULT]
//! ```
//! A failure prints the seed, the violated property, the end of the trace and the command that
//! replays exactly that run with its whole trace, and writes the seed's history as an HTML page
//! (`visualize`) under `--html` (default `target/stet-sim`). `--plant` plants one of the
//! self-tests' faults, to see an oracle fail.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use stet_sim::scenario::{self, RunOptions, Scenario};

struct Args {
    seeds: std::ops::Range<u64>,
    scenarios: Vec<Scenario>,
    options: RunOptions,
    trace: bool,
    /// Threads running seeds side by side (each seed has its own madsim runtime).
    jobs: usize,
    /// Where a failing seed's history page is written.
    html_dir: std::path::PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: 0..10,
        scenarios: scenario::scenarios(),
        options: RunOptions::default(),
        trace: false,
        jobs: 1,
        html_dir: std::path::PathBuf::from("target/stet-sim"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seeds" => {
                let v = value()?;
                let (a, b) = v
                    .split_once("..")
                    .ok_or_else(|| format!("--seeds takes A..B, got {v}"))?;
                let a: u64 = a.parse().map_err(|_| format!("bad seed {a}"))?;
                let b: u64 = b.parse().map_err(|_| format!("bad seed {b}"))?;
                args.seeds = a..b;
            }
            "--scenario" => {
                let v = value()?;
                if v != "all" {
                    let s = scenario::scenario(&v).ok_or_else(|| {
                        let names: Vec<_> = scenario::scenarios().iter().map(|s| s.name).collect();
                        format!("unknown scenario {v}; known: {}", names.join(", "))
                    })?;
                    args.scenarios = vec![s];
                }
            }
            "--members" => {
                args.options.members = value()?.parse().map_err(|_| "bad --members")?;
            }
            "--clients" => {
                args.options.clients = value()?.parse().map_err(|_| "bad --clients")?;
            }
            "--seconds" => {
                let secs: u64 = value()?.parse().map_err(|_| "bad --seconds")?;
                args.options.fault_time = Duration::from_secs(secs);
            }
            "--trace" => args.trace = true,
            "--jobs" => {
                args.jobs = value()?.parse().map_err(|_| "bad --jobs")?;
                if args.jobs == 0 {
                    return Err("--jobs must be at least 1".to_string());
                }
            }
            "--html" => args.html_dir = value()?.into(),
            "--plant" => args.options.self_test = Some(plant(&value()?)?),
            "--help" | "-h" => {
                return Err(
                    "usage: stet-sim --seeds A..B [--scenario NAME|all] [--members N] \
                            [--clients N] [--seconds S] [--jobs N] [--trace] [--html DIR] \
                            [--plant local-reads|corrupt-puts|miscount-ranges|fast-clock|skip-fsync|drop-watch|keep-engine-files|keep-released-wal|never-release-wal|backup-drops-rows|no-auto-promotion|drop-stream-chunk|unjoined-fragments|misread-peer-clock|forced-keeps-cluster|ignore-forced-identity|ignore-divergent-peers|stay-down-after-full-disk|ignore-permissions|tokens-name-last-login|in-use-never-measured|watch-prev-kv-without-value|put-prev-kv-without-value|stale-join-answer|skip-election-wait|hash-times-out|never-restart-ranges]"
                        .to_string(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !(1..=9).contains(&args.options.members) {
        return Err("--members must be between 1 and 9".to_string());
    }
    Ok(args)
}

/// A fault to plant on purpose (the oracles' self-tests), by name.
fn plant(name: &str) -> Result<stet_sim::world::SelfTest, String> {
    use stet::server::env::Mistake;
    use stet_sim::world::SelfTest;
    Ok(match name {
        "local-reads" => SelfTest::LocalReads,
        "corrupt-puts" => SelfTest::CorruptAppliedPuts,
        "miscount-ranges" => SelfTest::MiscountRanges,
        "fast-clock" => SelfTest::FastClock,
        "skip-fsync" => SelfTest::Mistake(Mistake::SkipGroupCommitFsync),
        "drop-watch" => SelfTest::Mistake(Mistake::DropWatchResponseWhenFull),
        "keep-engine-files" => SelfTest::Mistake(Mistake::KeepReplacedEngineFiles),
        "keep-released-wal" => SelfTest::Mistake(Mistake::KeepReleasedWalFiles),
        "never-release-wal" => SelfTest::Mistake(Mistake::NeverReleaseWal),
        "backup-drops-rows" => SelfTest::Mistake(Mistake::BackupDropsFirstRows),
        "no-auto-promotion" => SelfTest::NoAutoPromotion,
        "drop-stream-chunk" => SelfTest::DropStreamedChunk,
        "unjoined-fragments" => SelfTest::UnjoinedFragments,
        "ignore-permissions" => SelfTest::IgnorePermissions,
        "tokens-name-last-login" => SelfTest::Mistake(Mistake::TokensNameLastLogin),
        "in-use-never-measured" => SelfTest::Mistake(Mistake::InUseNeverMeasured),
        "watch-prev-kv-without-value" => SelfTest::Mistake(Mistake::WatchPrevKvWithoutValue),
        "put-prev-kv-without-value" => SelfTest::Mistake(Mistake::PutPrevKvWithoutValue),
        "misread-peer-clock" => SelfTest::Mistake(Mistake::MisreadPeerClock),
        "forced-keeps-cluster" => SelfTest::Mistake(Mistake::ForcedStartKeepsClusterId),
        "ignore-forced-identity" => SelfTest::Mistake(Mistake::IgnoreForcedIdentity),
        "ignore-divergent-peers" => SelfTest::Mistake(Mistake::IgnoreDivergentPeers),
        "stay-down-after-full-disk" => SelfTest::Mistake(Mistake::StayDownAfterFullDisk),
        "stale-join-answer" => SelfTest::Mistake(Mistake::JoinTakesStalestAnswer),
        "skip-election-wait" => SelfTest::Mistake(Mistake::SkipElectionWait),
        "hash-times-out" => SelfTest::Mistake(Mistake::HashKvTimesOutAfterFirstStep),
        "never-restart-ranges" => SelfTest::Mistake(Mistake::NeverRestartCompactedRange),
        other => return Err(format!("unknown fault to plant: {other}")),
    })
}

/// Writes the failing seed's history page, and returns where.
fn write_page(
    dir: &std::path::Path,
    scenario: &str,
    seed: u64,
    report: &scenario::RunReport,
    failure: &scenario::Failure,
) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{scenario}-seed-{seed}.html"));
    let why = format!("{} violated: {}", failure.property, failure.detail);
    let page = stet_sim::visualize::Page {
        title: format!(
            "stet-sim {scenario} seed {seed}: {} violated",
            failure.property
        ),
        history: &report.history,
        trace: &report.trace,
        violation: failure.key.as_deref().map(|key| (key, why.as_str())),
    };
    std::fs::write(&path, stet_sim::visualize::render(&page))?;
    Ok(path)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut simulated = Duration::ZERO;
    let mut failures = 0;
    for scenario in &args.scenarios {
        let mut passed = 0;
        let mut done = 0;
        run_seeds(scenario, &args, |seed, report| {
            done += 1;
            simulated += report.simulated;
            match &report.outcome {
                Ok(()) => passed += 1,
                Err(failure) => {
                    failures += 1;
                    print_failure(&args, scenario, seed, &report, failure);
                }
            }
            if args.trace {
                for line in &report.trace {
                    println!("{line}");
                }
            }
            eprint!(
                "\r{:<10} {passed}/{done} passed (seed {seed}, {} ops)      ",
                scenario.name, report.operations
            );
        });
        eprintln!();
        println!(
            "{:<10} {passed}/{} seeds passed",
            scenario.name,
            args.seeds.end - args.seeds.start
        );
    }
    let wall = started.elapsed();
    let thread_time = wall.as_secs_f64() * args.jobs as f64;
    println!(
        "simulated {:.0} s in {:.1} s of wall time on {} thread(s) ({:.0}x real time per thread)",
        simulated.as_secs_f64(),
        wall.as_secs_f64(),
        args.jobs,
        simulated.as_secs_f64() / thread_time.max(1e-9)
    );
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `scenario` on every seed of `args.seeds` over `args.jobs` threads, handing each report
/// to `done` on this thread as it finishes (in seed order when there is one job).
fn run_seeds(scenario: &Scenario, args: &Args, mut done: impl FnMut(u64, scenario::RunReport)) {
    let next = std::sync::atomic::AtomicU64::new(args.seeds.start);
    let (reports, finished) = std::sync::mpsc::sync_channel(args.jobs);
    std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            let reports = reports.clone();
            let next = &next;
            scope.spawn(move || loop {
                let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if seed >= args.seeds.end {
                    return;
                }
                let report = scenario::run(seed, scenario, &args.options);
                if reports.send((seed, report)).is_err() {
                    return;
                }
            });
        }
        drop(reports);
        for (seed, report) in finished {
            done(seed, report);
        }
    });
}

/// What a failing seed prints: the property, the detail, its history page, the end of its trace
/// and the command that replays it.
fn print_failure(
    args: &Args,
    scenario: &Scenario,
    seed: u64,
    report: &scenario::RunReport,
    failure: &scenario::Failure,
) {
    println!(
        "\nFAILED {} seed {seed}: {} violated",
        scenario.name, failure.property
    );
    println!("{}", failure.detail);
    match write_page(&args.html_dir, scenario.name, seed, report, failure) {
        Ok(path) => println!("history page: {}", path.display()),
        Err(error) => println!("could not write the history page: {error}"),
    }
    println!("last trace lines:");
    let tail = report.trace.len().saturating_sub(40);
    for line in &report.trace[tail..] {
        println!("  {line}");
    }
    println!(
        "replay: RUSTFLAGS=\"--cfg madsim\" cargo run --release --manifest-path sim/Cargo.toml -- \
         --seeds {seed}..{} --scenario {} --members {} --clients {} --seconds {} --trace",
        seed + 1,
        scenario.name,
        args.options.members,
        args.options.clients,
        args.options.fault_time.as_secs()
    );
}
