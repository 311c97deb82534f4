//! The simulator's own tests: every scenario passes on a set of seeds, the same seed replays the
//! same run, and the oracles catch a member that serves linearizable reads from local state and
//! one that loses watch responses.
//!
//! `STET_SIM_SEEDS` sets how many seeds each scenario runs (default 4).

use std::time::Duration;

use stet::server::env::Mistake;
use stet_sim::scenario::{self, RunOptions};

fn seeds_per_scenario() -> u64 {
    std::env::var("STET_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

fn short() -> RunOptions {
    RunOptions {
        members: 5,
        clients: 4,
        fault_time: Duration::from_secs(15),
        unsafe_local_reads: false,
        planted: None,
    }
}

#[test]
fn every_scenario_passes_its_seeds() {
    let mut failures = Vec::new();
    for scenario in scenario::scenarios() {
        for seed in 0..seeds_per_scenario() {
            let report = scenario::run(seed, &scenario, &short());
            if let Err(failure) = report.outcome {
                failures.push(format!(
                    "{} seed {seed}: {} — {}\nreplay: RUSTFLAGS=\"--cfg madsim\" cargo run --release \
                     --manifest-path sim/Cargo.toml -- --seeds {seed}..{} --scenario {} --seconds 15 --trace",
                    scenario.name,
                    failure.property,
                    failure.detail,
                    seed + 1,
                    scenario.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let mixed = scenario::scenario("mixed").expect("mixed scenario");
    let first = scenario::run(11, &mixed, &short());
    let second = scenario::run(11, &mixed, &short());
    assert!(
        first.operations > 50,
        "the run did work ({} ops)",
        first.operations
    );
    assert_eq!(first.trace, second.trace);
    assert_eq!(first.trace_hash, second.trace_hash);
    let other = scenario::run(12, &mixed, &short());
    assert_ne!(first.trace_hash, other.trace_hash);
}

#[test]
fn local_linearizable_reads_are_caught_within_a_few_seeds() {
    let partition = scenario::scenario("partition").expect("partition scenario");
    let options = RunOptions {
        unsafe_local_reads: true,
        ..short()
    };
    let caught = (0..10).find(|&seed| {
        let report = scenario::run(seed, &partition, &options);
        matches!(&report.outcome, Err(f) if f.property == "linearizability")
    });
    assert!(
        caught.is_some(),
        "stale local reads went unnoticed for 10 seeds"
    );
}

/// Runs `scenario` with `mistake` planted in the runtime until an oracle names `property`.
fn caught_within(scenario: &str, mistake: Mistake, property: &str, seeds: u64) -> Option<u64> {
    let scenario = scenario::scenario(scenario).expect("scenario");
    let options = RunOptions {
        planted: Some(mistake),
        ..short()
    };
    (0..seeds).find(|&seed| {
        let report = scenario::run(seed, &scenario, &options);
        matches!(&report.outcome, Err(f) if f.property == property)
    })
}

#[test]
fn watch_responses_dropped_when_a_stream_is_full_are_caught() {
    let caught = caught_within("watch", Mistake::DropWatchResponseWhenFull, "watch", 10);
    assert!(
        caught.is_some(),
        "a runtime dropping watch responses from full streams went unnoticed for 10 seeds"
    );
}

#[test]
fn a_group_commit_that_skips_its_fsync_is_caught() {
    let scenario = scenario::scenario("crash").expect("scenario");
    let options = RunOptions {
        planted: Some(Mistake::SkipGroupCommitFsync),
        ..short()
    };
    let caught = (0..20).find(|&seed| scenario::run(seed, &scenario, &options).outcome.is_err());
    assert!(
        caught.is_some(),
        "a group commit acknowledging unsynced writes went unnoticed for 20 seeds"
    );
}

async fn mixed_run_for_determinism_check() {
    let mixed = scenario::scenario("mixed").expect("mixed scenario");
    let report = scenario::run_in_current_runtime(mixed, short()).await;
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
}

#[test]
fn madsim_sees_the_same_random_draws_when_a_seed_runs_twice() {
    for seed in [3, 4] {
        madsim::runtime::Runtime::check_determinism(
            seed,
            madsim::Config::default(),
            mixed_run_for_determinism_check,
        );
    }
}

/// Seed 70 of `force-new-cluster`: the watch oracle's record of applied events still held what the
/// lost majority applied after the survivor's revision, which the new cluster reuses; it now
/// forgets them at the forced restart, as the raft observer starts a new epoch.
#[test]
fn force_new_cluster_seed_70_reuses_revisions_the_lost_majority_applied() {
    let scenario = scenario::scenario("force-new-cluster").expect("scenario");
    let report = scenario::run(70, &scenario, &RunOptions::default());
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
}
