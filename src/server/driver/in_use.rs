//! The engine's bytes in use (`Status.db_size_in_use`, etcd's
//! `etcd_mvcc_db_total_size_in_use_in_bytes`), measured on the side. Counting them reads every
//! page of the engine's tables — as costly as reading the whole state — so it runs where blocking
//! is allowed, on a view taken at a commit, one measurement at a time, only after the file
//! changed (a commit, or a defragmentation's new file), at most once per [`MIN_INTERVAL`], and
//! then not again before the thread has been idle [`IDLE_FACTOR`] times as long as the last one
//! took: about 2 % of one core for even the largest file. The figure lags the file by that
//! much; it never exceeds the file's size. The pages it read are handed back to the system after
//! each measurement (`heap`), or they would stay in the member's RSS.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::engine::Engine;
use crate::server::handle::Command;
use crate::server::{blocking, heap};
use crate::time::Instant;

/// The shortest time between two measurements.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How many times as long as a measurement took the next one waits at least: under a steady
/// write load the measurements take at most about 2 % of one core (with 20, 4 % of a member's
/// CPU went to them under a put load on a 60 MB file, `BENCHMARKS.md`, session 20).
const IDLE_FACTOR: u32 = 50;

/// A measurement taking this long is logged (the next one waits `IDLE_FACTOR` times as long).
const SLOW_MEASUREMENT: Duration = Duration::from_millis(500);

/// The last measurement and the next one's schedule.
#[derive(Default)]
pub struct InUse {
    /// What the last measurement found, if one did.
    bytes: Option<u64>,
    /// A measurement is under way.
    measuring: bool,
    /// The applied index and file size of the state last measured (or being measured): a
    /// commit or a defragmentation's new file calls for a new measurement.
    measured: Option<(u64, u64)>,
    /// No measurement starts before this.
    not_before: Option<Instant>,
}

impl InUse {
    /// Starts measuring the engine's last committed state if it changed since the last
    /// measurement and the schedule allows; the result comes back as [`Command::InUseMeasured`].
    pub fn maybe_start(
        &mut self,
        engine: &Engine,
        now: Instant,
        done: &mpsc::Sender<Command>,
        log: &slog::Logger,
    ) {
        let state = (engine.applied().index, engine.size_bytes());
        let due = self.not_before.is_none_or(|not_before| now >= not_before);
        if self.measuring || !due || self.measured == Some(state) {
            return;
        }
        let view = match engine.view() {
            Ok(view) => view,
            Err(error) => return self.failed(now, &error.to_string(), log),
        };
        self.measuring = true;
        self.measured = Some(state);
        let done = done.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let measured = blocking::run(move || {
                let measured = view.bytes_in_use().map_err(|e| e.to_string());
                drop(view);
                // The pages read went to this thread's arena; the cache frees them elsewhere.
                heap::release_freed_memory();
                measured
            })
            .await
            .and_then(|measured| measured);
            let took = started.elapsed();
            let _ = done.send(Command::InUseMeasured { measured, took }).await;
        });
    }

    /// The measurement under way finished after `took`.
    pub fn finished(
        &mut self,
        (measured, took): (Result<u64, String>, Duration),
        now: Instant,
        log: &slog::Logger,
    ) {
        assert!(self.measuring, "a measurement was under way");
        self.measuring = false;
        self.not_before = Some(now + MIN_INTERVAL.max(took.saturating_mul(IDLE_FACTOR)));
        if took >= SLOW_MEASUREMENT {
            slog::info!(log, "measuring the engine's bytes in use took long";
                "took_ms" => took.as_millis() as u64, "bytes" => measured.as_ref().ok());
        }
        match measured {
            Ok(bytes) => self.bytes = Some(bytes),
            Err(error) => self.failed(now, &error, log),
        }
    }

    /// A measurement could not be made: the last figure stands, and the next try waits.
    fn failed(&mut self, now: Instant, error: &str, log: &slog::Logger) {
        slog::warn!(log, "measuring the engine's bytes in use failed"; "error" => error);
        self.not_before = Some(now + MIN_INTERVAL);
    }

    /// What `db_size_in_use` reports for a file of `db_size` bytes: the last measurement, never
    /// more than the file, and the file's size before the first.
    pub fn bytes(&self, db_size: u64) -> u64 {
        self.bytes.map_or(db_size, |bytes| bytes.min(db_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn a_measurement_waits_its_interval_and_fifty_times_what_the_last_took() {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let mut in_use = InUse::default();
        assert_eq!(
            in_use.bytes(4096),
            4096,
            "the file's size before any measurement"
        );
        in_use.measuring = true;
        in_use.finished((Ok(1000), Duration::from_millis(10)), at(0), &log);
        assert_eq!(
            in_use.not_before,
            Some(at(1000)),
            "at least the minimum interval"
        );
        assert_eq!(in_use.bytes(4096), 1000);
        assert_eq!(in_use.bytes(512), 512, "never more than the file");
        in_use.measuring = true;
        in_use.finished((Ok(2000), Duration::from_millis(500)), at(5000), &log);
        assert_eq!(
            in_use.not_before,
            Some(at(30_000)),
            "50 times the 500 ms it took"
        );
        in_use.measuring = true;
        in_use.finished((Err("damaged".into()), Duration::ZERO), at(35_000), &log);
        assert_eq!(
            in_use.bytes(4096),
            2000,
            "a failed measurement keeps the last figure"
        );
    }
}
