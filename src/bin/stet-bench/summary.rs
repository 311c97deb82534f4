//! What one timed phase measured (`Report`: each successful request's latency, failures by kind, the
//! wall time) and what is printed from it (`Summary`: throughput and nearest-rank percentiles from
//! an exact sort, as a human-readable block or one JSON line).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Distinct error kinds kept by name; later kinds are counted under [`ErrorCounts::OTHER`].
pub const ERROR_KINDS_MAX: usize = 16;

/// Failed requests by kind (gRPC code and message, or the bench's own check that failed).
/// Holds at most [`ERROR_KINDS_MAX`] names plus [`ErrorCounts::OTHER`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorCounts {
    by_kind: BTreeMap<String, u64>,
}

impl ErrorCounts {
    /// The bucket for kinds seen after [`ERROR_KINDS_MAX`] distinct ones.
    pub const OTHER: &'static str = "(other errors)";

    pub fn add(&mut self, kind: &str) {
        self.add_n(kind, 1);
    }

    fn add_n(&mut self, kind: &str, count: u64) {
        let known = self.by_kind.contains_key(kind);
        let key = if known || self.by_kind.len() < ERROR_KINDS_MAX {
            kind
        } else {
            Self::OTHER
        };
        *self.by_kind.entry(key.to_string()).or_insert(0) += count;
    }

    pub fn merge(&mut self, other: ErrorCounts) {
        for (kind, count) in other.by_kind {
            self.add_n(&kind, count);
        }
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// The most frequent kinds first.
    pub fn by_count(&self) -> Vec<(&str, u64)> {
        let mut kinds: Vec<(&str, u64)> = self
            .by_kind
            .iter()
            .map(|(kind, count)| (kind.as_str(), *count))
            .collect();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        kinds
    }
}

/// What one timed phase measured. Memory: 8 bytes per successful request (80 MB for 10 million).
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Latency of every successful request, in completion order per client.
    pub latencies_ns: Vec<u64>,
    pub errors: ErrorCounts,
    /// From the first request issued to the last one answered.
    pub elapsed: Duration,
}

/// Throughput and latency percentiles of one phase, over its successful requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// What was measured, e.g. `put` or `range-l`.
    pub op: String,
    /// Requests that completed, successful or not.
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Successful requests per second of `elapsed`.
    pub throughput_rps: f64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub error_kinds: Vec<(String, u64)>,
}

impl Summary {
    pub fn new(op: &str, report: Report) -> Summary {
        let Report {
            mut latencies_ns,
            errors,
            elapsed,
        } = report;
        latencies_ns.sort_unstable();
        let ok = latencies_ns.len() as u64;
        let error_total = errors.total();
        let seconds = elapsed.as_secs_f64();
        let throughput_rps = if seconds > 0.0 {
            ok as f64 / seconds
        } else {
            0.0
        };
        Summary {
            op: op.to_string(),
            requests: ok + error_total,
            errors: error_total,
            elapsed,
            throughput_rps,
            p50: percentile(&latencies_ns, 50.0),
            p90: percentile(&latencies_ns, 90.0),
            p99: percentile(&latencies_ns, 99.0),
            max: percentile(&latencies_ns, 100.0),
            error_kinds: errors
                .by_count()
                .into_iter()
                .map(|(kind, count)| (kind.to_string(), count))
                .collect(),
        }
    }

    /// One line of JSON with flat, fixed keys, so a shell script can pick fields with `sed`.
    pub fn json_line(&self) -> String {
        format!(
            concat!(
                r#"{{"op":"{}","requests":{},"errors":{},"elapsed_s":{:.3},"#,
                r#""throughput_rps":{:.1},"p50_ms":{:.3},"p90_ms":{:.3},"p99_ms":{:.3},"max_ms":{:.3}}}"#
            ),
            self.op,
            self.requests,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.throughput_rps,
            millis(self.p50),
            millis(self.p90),
            millis(self.p99),
            millis(self.max),
        )
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} requests, {} errors, {:.3} s",
            self.op,
            self.requests,
            self.errors,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "  throughput  {:.1} req/s", self.throughput_rps)?;
        writeln!(
            f,
            "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            millis(self.p50),
            millis(self.p90),
            millis(self.p99),
            millis(self.max)
        )?;
        for (kind, count) in &self.error_kinds {
            writeln!(f, "  error x{count}: {kind}")?;
        }
        Ok(())
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The nearest-rank percentile of ascending `sorted_ns`: the smallest sample with at least
/// `percent`% of the samples at or below it. 100 gives the maximum; no samples give zero.
pub fn percentile(sorted_ns: &[u64], percent: f64) -> Duration {
    debug_assert!(sorted_ns.is_sorted(), "percentile needs sorted samples");
    debug_assert!((0.0..=100.0).contains(&percent), "percent out of range");
    if sorted_ns.is_empty() {
        return Duration::ZERO;
    }
    let n = sorted_ns.len();
    let rank = ((percent / 100.0) * n as f64).ceil() as usize;
    let index = rank.clamp(1, n) - 1;
    Duration::from_nanos(sorted_ns[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_are_nearest_rank_over_sorted_samples() {
        // 1..=100 ms, shuffled: the p-th percentile is p ms.
        let mut samples: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        samples.reverse();
        samples.swap(3, 70);
        let summary = Summary::new(
            "put",
            Report {
                latencies_ns: samples,
                errors: ErrorCounts::default(),
                elapsed: Duration::from_secs(2),
            },
        );
        assert_eq!(summary.p50, ms(50));
        assert_eq!(summary.p90, ms(90));
        assert_eq!(summary.p99, ms(99));
        assert_eq!(summary.max, ms(100));
        assert_eq!(summary.requests, 100);
        assert_eq!(summary.throughput_rps, 50.0);
    }

    #[test]
    fn percentile_of_few_or_no_samples() {
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
        assert_eq!(percentile(&[7], 0.0), Duration::from_nanos(7));
        assert_eq!(percentile(&[7], 99.0), Duration::from_nanos(7));
        // Two samples: p50 is the first, anything above is the second.
        assert_eq!(percentile(&[1, 9], 50.0), Duration::from_nanos(1));
        assert_eq!(percentile(&[1, 9], 50.1), Duration::from_nanos(9));
    }

    #[test]
    fn errors_count_as_requests_but_not_throughput_or_latency() {
        let mut errors = ErrorCounts::default();
        errors.add("Unavailable: connection refused");
        errors.add("missing key");
        errors.add("missing key");
        let summary = Summary::new(
            "range-l",
            Report {
                latencies_ns: vec![4_000_000, 2_000_000],
                errors,
                elapsed: Duration::from_secs(1),
            },
        );
        assert_eq!((summary.requests, summary.errors), (5, 3));
        assert_eq!(summary.throughput_rps, 2.0);
        assert_eq!(summary.max, ms(4));
        assert_eq!(summary.error_kinds[0], ("missing key".to_string(), 2));
        assert_eq!(
            summary.json_line(),
            concat!(
                r#"{"op":"range-l","requests":5,"errors":3,"elapsed_s":1.000,"throughput_rps":2.0,"#,
                r#""p50_ms":2.000,"p90_ms":4.000,"p99_ms":4.000,"max_ms":4.000}"#
            )
        );
        let human = summary.to_string();
        assert!(human.contains("p99 4.000"), "{human}");
        assert!(human.contains("error x2: missing key"), "{human}");
    }

    #[test]
    fn error_kinds_are_bounded_and_merge() {
        let mut a = ErrorCounts::default();
        for i in 0..ERROR_KINDS_MAX + 5 {
            a.add(&format!("kind {i}"));
        }
        assert_eq!(a.by_count().len(), ERROR_KINDS_MAX + 1);
        assert!(a.by_count().contains(&(ErrorCounts::OTHER, 5)));
        let mut b = ErrorCounts::default();
        b.add("kind 0");
        a.merge(b);
        assert_eq!(a.total(), ERROR_KINDS_MAX as u64 + 6);
        assert!(a.by_count().contains(&("kind 0", 2)));
    }
}
