//! `stet-sim`: runs simulation seeds and reports per scenario.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" cargo run --release --manifest-path sim/Cargo.toml -- \
//!     --seeds 0..100 [--scenario NAME|all] [--members 5] [--clients 4] [--seconds 20] [--trace]
//! ```
//! A failure prints the seed, the violated property, the end of the trace and the command that
//! replays exactly that run with its whole trace.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use stet_sim::scenario::{self, RunOptions, Scenario};

struct Args {
    seeds: std::ops::Range<u64>,
    scenarios: Vec<Scenario>,
    options: RunOptions,
    trace: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: 0..10,
        scenarios: scenario::scenarios(),
        options: RunOptions::default(),
        trace: false,
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
            "--help" | "-h" => {
                return Err(
                    "usage: stet-sim --seeds A..B [--scenario NAME|all] [--members N] \
                            [--clients N] [--seconds S] [--trace]"
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
        for seed in args.seeds.clone() {
            let report = scenario::run(seed, scenario, &args.options);
            simulated += report.simulated;
            if args.trace {
                for line in &report.trace {
                    println!("{line}");
                }
            }
            match &report.outcome {
                Ok(()) => passed += 1,
                Err(failure) => {
                    failures += 1;
                    println!(
                        "\nFAILED {} seed {seed}: {} violated",
                        scenario.name, failure.property
                    );
                    println!("{}", failure.detail);
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
            }
            eprint!(
                "\r{:<10} {passed}/{} passed (seed {seed}, {} ops)      ",
                scenario.name,
                seed - args.seeds.start + 1,
                report.operations
            );
        }
        eprintln!();
        println!(
            "{:<10} {passed}/{} seeds passed",
            scenario.name,
            args.seeds.end - args.seeds.start
        );
    }
    let wall = started.elapsed();
    println!(
        "simulated {:.0} s in {:.1} s of wall time ({:.0}x real time)",
        simulated.as_secs_f64(),
        wall.as_secs_f64(),
        simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9)
    );
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
