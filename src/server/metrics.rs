//! The member's Prometheus metrics: counters and latency histograms the driver and the gRPC
//! services record into (lock-free atomics), rendered with the driver's status as text for
//! `/metrics` under etcd's metric names where etcd has one.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::status::MemberStatus;

/// A latency histogram with fixed upper bounds (seconds), Prometheus-style cumulative on output.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Buckets `start`, `start * factor`, ... (`n` of them), plus +Inf.
    pub fn exponential(start: f64, factor: f64, n: usize) -> Self {
        let bounds: Vec<f64> = (0..n).map(|i| start * factor.powi(i as i32)).collect();
        let counts = (0..=n).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds,
            counts,
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the histogram's series; `labels` is empty or `key="value",...` without braces.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(
            out,
            "{name}_count{} {}",
            braces(labels),
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// Calls and latency of one gRPC method.
#[derive(Debug)]
struct MethodStats {
    service: &'static str,
    method: &'static str,
    ok: AtomicU64,
    failed: AtomicU64,
    latency: Histogram,
}

/// Everything `/metrics` reports beyond the driver's status.
#[derive(Debug)]
pub struct Metrics {
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    pub proposals_failed: AtomicU64,
    pub proposals_pending: AtomicU64,
    methods: Mutex<Vec<Arc<MethodStats>>>,
    /// Each peer's clock minus this member's at the last comparison, in microseconds.
    clock_offsets: Mutex<std::collections::BTreeMap<u64, i64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            // etcd's buckets: 1 ms .. ~8 s for fsync, 1 ms .. ~8 s for backend commits.
            wal_fsync: Histogram::exponential(0.001, 2.0, 14),
            backend_commit: Histogram::exponential(0.001, 2.0, 14),
            proposals_failed: AtomicU64::new(0),
            proposals_pending: AtomicU64::new(0),
            methods: Mutex::new(Vec::new()),
            clock_offsets: Mutex::new(std::collections::BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// Records a peer's clock offset; the previous one, if any.
    pub fn record_clock_offset(&self, peer: u64, offset_micros: i64) -> Option<i64> {
        self.clock_offsets
            .lock()
            .ok()
            .and_then(|mut offsets| offsets.insert(peer, offset_micros))
    }

    fn render_clock_offsets(&self, out: &mut String) {
        header(
            out,
            "stet_network_peer_clock_offset_seconds",
            "The peer's wall clock minus this member's at the last comparison.",
            "gauge",
        );
        let offsets = self
            .clock_offsets
            .lock()
            .map(|o| o.clone())
            .unwrap_or_default();
        for (peer, micros) in offsets {
            let seconds = micros as f64 / 1e6;
            let _ = writeln!(
                out,
                "stet_network_peer_clock_offset_seconds{{To=\"{peer:x}\"}} {seconds}"
            );
        }
    }

    /// Records one handled gRPC call.
    pub fn record_call(
        &self,
        service: &'static str,
        method: &'static str,
        ok: bool,
        elapsed: Duration,
    ) {
        let stats = {
            let Ok(mut methods) = self.methods.lock() else {
                return;
            };
            match methods
                .iter()
                .find(|m| m.service == service && m.method == method)
            {
                Some(stats) => stats.clone(),
                None => {
                    let stats = Arc::new(MethodStats {
                        service,
                        method,
                        ok: AtomicU64::new(0),
                        failed: AtomicU64::new(0),
                        latency: Histogram::exponential(0.0001, 2.0, 16),
                    });
                    methods.push(stats.clone());
                    stats
                }
            }
        };
        let counter = if ok { &stats.ok } else { &stats.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        stats.latency.observe(elapsed);
    }

    /// The whole `/metrics` page.
    pub fn render(&self, status: &MemberStatus) -> String {
        let mut out = String::new();
        let gauges: [(&str, &str, &str, String); 11] = [
            ("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", "gauge", u8::from(status.leader.is_some()).to_string()),
            ("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", "gauge", u8::from(status.is_leader).to_string()),
            ("etcd_server_leader_changes_seen_total", "The number of leader changes seen.", "counter", status.leader_changes.to_string()),
            ("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.", "gauge", status.commit_index.to_string()),
            ("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.", "gauge", status.applied_index.to_string()),
            ("etcd_server_proposals_pending", "The current number of pending proposals to commit.", "gauge", self.proposals_pending.load(Ordering::Relaxed).to_string()),
            ("etcd_server_proposals_failed_total", "The total number of failed proposals seen.", "counter", self.proposals_failed.load(Ordering::Relaxed).to_string()),
            ("etcd_debugging_mvcc_keys_total", "Total number of keys.", "gauge", status.key_count.to_string()),
            ("etcd_debugging_mvcc_current_revision", "The current revision of store.", "gauge", status.revision.to_string()),
            ("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database in bytes (stet: the newest snapshot file plus the WAL written since).", "gauge", status.db_size.to_string()),
            ("stet_raft_term", "The raft term this member is in.", "gauge", status.term.to_string()),
        ];
        for (name, help, kind, value) in gauges {
            header(&mut out, name, help, kind);
            let _ = writeln!(out, "{name} {value}");
        }
        header(
            &mut out,
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            "histogram",
        );
        self.wal_fsync
            .render(&mut out, "etcd_disk_wal_fsync_duration_seconds", "");
        header(
            &mut out,
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend (stet: applying committed entries to the store).",
            "histogram",
        );
        self.backend_commit
            .render(&mut out, "etcd_disk_backend_commit_duration_seconds", "");
        self.render_clock_offsets(&mut out);
        let methods: Vec<Arc<MethodStats>> =
            self.methods.lock().map(|m| m.clone()).unwrap_or_default();
        header(
            &mut out,
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            "counter",
        );
        for m in &methods {
            for (code, counter) in [("OK", &m.ok), ("Error", &m.failed)] {
                let _ = writeln!(
                    out,
                    "grpc_server_handled_total{{grpc_method=\"{}\",grpc_service=\"etcdserverpb.{}\",grpc_code=\"{code}\"}} {}",
                    m.method,
                    m.service,
                    counter.load(Ordering::Relaxed)
                );
            }
        }
        header(
            &mut out,
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            "histogram",
        );
        for m in &methods {
            let labels = format!(
                "grpc_method=\"{}\",grpc_service=\"etcdserverpb.{}\"",
                m.method, m.service
            );
            m.latency
                .render(&mut out, "grpc_server_handling_seconds", &labels);
        }
        out
    }
}

/// A metric's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::exponential(0.001, 2.0, 3);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_micros(1500));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.002\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.004\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        assert!(out.contains("x_sum 1.002\n"), "{out}");
    }

    #[test]
    fn calls_are_counted_by_method_and_outcome() {
        let metrics = Metrics::default();
        metrics.record_call("KV", "Put", true, Duration::from_millis(1));
        metrics.record_call("KV", "Put", false, Duration::from_millis(1));
        metrics.record_call("KV", "Range", true, Duration::from_millis(1));
        let page = metrics.render(&MemberStatus::default());
        assert!(page.contains(
            "grpc_server_handled_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_code=\"OK\"} 1"
        ), "{page}");
        assert!(page.contains(
            "grpc_server_handled_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_code=\"Error\"} 1"
        ), "{page}");
        assert!(page.contains(
            "grpc_server_handling_seconds_count{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\"} 1"
        ), "{page}");
        assert!(page.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 0"));
    }
}
