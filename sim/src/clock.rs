//! Per-member clocks. madsim has one global clock; each simulated member sees its own time through a
//! `ClockModel`: a fixed offset, a drift rate and forward jumps, all derived from the global time. The
//! member's `stet::time::Instant` is what the core gets, so skew and drift reach the core exactly as a
//! real machine's clock would — and the core must not care.

use std::time::Duration;

use stet::time::Instant;

/// How one member's clock relates to the global simulated clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockModel {
    /// Where the member's clock stands when the global clock reads zero.
    pub offset_us: u64,
    /// Rate error in parts per million: +100_000 runs 10% fast, -100_000 runs 10% slow.
    pub drift_ppm: i64,
    /// Forward jumps of the member's clock: (global time at which it happens, size of the jump).
    pub jumps: Vec<(Duration, Duration)>,
}

impl ClockModel {
    /// A perfect clock.
    pub fn exact() -> Self {
        ClockModel {
            offset_us: 0,
            drift_ppm: 0,
            jumps: Vec::new(),
        }
    }

    fn rate(&self) -> f64 {
        1.0 + self.drift_ppm as f64 / 1_000_000.0
    }

    /// The member's time when the global clock reads `global`.
    pub fn local(&self, global: Duration) -> Instant {
        // Runs stay far below 2^53 µs, where u64 -> f64 is exact and a rate of 1.0 changes nothing.
        let global_us = global.as_micros() as u64;
        let scaled = if self.drift_ppm == 0 {
            global_us
        } else {
            (global_us as f64 * self.rate()) as u64
        };
        let jumped: u64 = self
            .jumps
            .iter()
            .filter(|(at, _)| *at <= global)
            .map(|(_, by)| by.as_micros() as u64)
            .sum();
        Instant::from_micros(self.offset_us + scaled + jumped)
    }

    /// How long to wait on the global clock until the member's clock reaches `deadline`, given that it
    /// reads `now` (never zero, so a driver loop always makes progress).
    pub fn global_wait(&self, now: Instant, deadline: Instant) -> Duration {
        let local = deadline.saturating_duration_since(now).as_micros() as f64;
        let global = (local / self.rate()).ceil() as u64;
        Duration::from_micros(global.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_clock_runs_ahead_and_waits_less() {
        let clock = ClockModel {
            offset_us: 5_000_000,
            drift_ppm: 100_000,
            jumps: vec![(Duration::from_secs(10), Duration::from_secs(2))],
        };
        assert_eq!(clock.local(Duration::ZERO).as_micros(), 5_000_000);
        assert_eq!(clock.local(Duration::from_secs(1)).as_micros(), 6_100_000);
        assert_eq!(clock.local(Duration::from_secs(10)).as_micros(), 18_000_000);
        let now = clock.local(Duration::from_secs(1));
        let wait = clock.global_wait(now, now + Duration::from_millis(110));
        assert_eq!(wait, Duration::from_millis(100));
    }

    #[test]
    fn a_clock_never_runs_backwards() {
        let clock = ClockModel {
            offset_us: 0,
            drift_ppm: -100_000,
            jumps: vec![(Duration::from_secs(1), Duration::from_secs(1))],
        };
        let mut last = Instant::ZERO;
        for ms in 0..3_000 {
            let now = clock.local(Duration::from_millis(ms));
            assert!(now >= last);
            last = now;
        }
    }
}
