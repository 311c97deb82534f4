//! The member's Prometheus metrics, under etcd's names and labels so that etcd's dashboards and
//! alert rules read stet unchanged (`deploy/monitoring/`). Recorded through the official Rust
//! client, `prometheus-client`, and encoded in Prometheus' text format 0.0.4 as etcd serves it.
//!
//! Three sources: histograms and counters the runtime records as things happen (WAL fsyncs,
//! applies, gRPC calls — see `grpc_metrics` — and peer traffic), the driver's last published
//! [`MemberStatus`] read at scrape time, and the process itself (`process_metrics`).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::process_metrics::ProcessCollector;
use super::status::MemberStatus;

/// The `Content-Type` of the `/metrics` page (Prometheus' text format, as etcd answers).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Peer series are labelled by the peer's member ID in hex, as etcd labels them (`To`, `From`).
type PeerLabels = [(&'static str, String); 1];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// One gRPC method as go-grpc-prometheus labels it (etcd's gRPC metrics).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcCall {
    pub grpc_type: &'static str,
    pub grpc_service: &'static str,
    pub grpc_method: &'static str,
}

/// One of etcd's gRPC methods: its labels, and its place (below [`MAX_GRPC_METHODS`]) in the
/// list of methods, where its series are kept once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcMethod {
    pub labels: GrpcCall,
    pub index: usize,
}

/// At most this many gRPC methods have series (etcd's v3 services have 42).
pub const MAX_GRPC_METHODS: usize = 48;

/// The names go-grpc-prometheus gives the `grpc-status` codes, by code.
pub const GRPC_CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The code of a call the client left before its status (`Canceled`).
pub const GRPC_CANCELED: u32 = 1;
/// The code of a status that is not one of gRPC's (`Unknown`).
pub const GRPC_UNKNOWN: u32 = 2;

/// One method's series, taken from their families at first use and kept: a family's
/// `get_or_create` hashes the labels under a lock, and a unary call would do that five times
/// (~2.4 % of a put's instructions). Each handle shares its value with the family's series.
#[derive(Debug, Default)]
struct MethodSeries {
    started: OnceLock<Counter>,
    handling: OnceLock<Histogram>,
    received_messages: OnceLock<Counter>,
    sent_messages: OnceLock<Counter>,
    handled: [OnceLock<Counter>; GRPC_CODE_NAMES.len()],
}

/// A finished call: its method and gRPC status code name (`OK`, `Unavailable`, ...).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcOutcome {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_code: &'static str,
}

/// gRPC call counters and latency, per method.
#[derive(Debug)]
struct GrpcMetrics {
    started: Family<GrpcCall, Counter>,
    handled: Family<GrpcOutcome, Counter>,
    handling: HistogramFamily<GrpcCall>,
    received_messages: Family<GrpcCall, Counter>,
    sent_messages: Family<GrpcCall, Counter>,
    received_bytes: Counter,
    sent_bytes: Counter,
    /// By [`GrpcMethod::index`].
    series: Box<[MethodSeries]>,
}

/// Raft traffic with each peer.
#[derive(Debug)]
struct PeerMetrics {
    round_trip: HistogramFamily<PeerLabels>,
    sent_bytes: Family<PeerLabels, Counter>,
    received_bytes: Family<PeerLabels, Counter>,
    sent_failures: Family<PeerLabels, Counter>,
    clock_offset: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    /// Each peer's last clock offset in microseconds (for [`Metrics::record_clock_offset`]).
    clock_offsets_micros: Mutex<BTreeMap<u64, i64>>,
    /// The byte counters of each peer, kept once resolved (counted at every frame).
    sent_by_peer: PeerCounters,
    received_by_peer: PeerCounters,
}

/// At most this many peers' byte counters are kept; past it a peer's series is looked up in
/// its family at each count, as before (a cluster has a handful of members).
const MAX_KEPT_PEER_COUNTERS: usize = 32;

/// Peers' counters of one family, kept once resolved: resolving one formats the member ID into
/// its label and hashes it (`peer`, `Family::get_or_create`), which every raft frame would
/// otherwise pay — ~2 % of the simulator's instructions. Each handle shares its value with the
/// family's series, created at the first count as before.
#[derive(Debug, Default)]
struct PeerCounters(RwLock<Vec<(u64, Counter)>>);

impl PeerCounters {
    /// Adds `by` to the counter of `id` in `family`, labelled `direction`.
    fn inc_by(
        &self,
        family: &Family<PeerLabels, Counter>,
        direction: &'static str,
        id: u64,
        by: u64,
    ) {
        {
            let kept = self
                .0
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((_, counter)) = kept.iter().find(|(peer, _)| *peer == id) {
                counter.inc_by(by);
                return;
            }
        }
        let counter = family.get_or_create(&peer(id, direction)).clone();
        counter.inc_by(by);
        let mut kept = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if kept.len() < MAX_KEPT_PEER_COUNTERS && !kept.iter().any(|(peer, _)| *peer == id) {
            kept.push((id, counter));
        }
    }
}

/// Everything `/metrics` reports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    wal_fsync: Histogram,
    backend_commit: Histogram,
    snapshot_save: Histogram,
    grpc: GrpcMetrics,
    peers: PeerMetrics,
    status: Arc<StatusCollector>,
}

fn duration_buckets() -> Histogram {
    // etcd's buckets for disk latencies: 1 ms .. ~8 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

fn request_buckets() -> Histogram {
    // go-grpc-prometheus' and etcd's peer round trip buckets start at 100 µs.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

fn peer(id: u64, direction: &'static str) -> PeerLabels {
    [(direction, format!("{id:x}"))]
}

impl Metrics {
    /// The metrics of a member whose space quota is `quota_backend_bytes` (0: none).
    pub fn new(quota_backend_bytes: u64) -> Self {
        let mut registry = Registry::default();
        let wal_fsync = duration_buckets();
        let backend_commit = duration_buckets();
        let snapshot_save = duration_buckets();
        registry.register(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL",
            wal_fsync.clone(),
        );
        registry.register(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend (stet: applying persisted entries to the storage engine)",
            backend_commit.clone(),
        );
        registry.register(
            "etcd_debugging_snap_save_total_duration_seconds",
            "The total latency distributions of save called by snapshot",
            snapshot_save.clone(),
        );
        let grpc = GrpcMetrics::register(&mut registry);
        let peers = PeerMetrics::register(&mut registry);
        let status = Arc::new(StatusCollector {
            latest: Mutex::new(MemberStatus::default()),
            quota_backend_bytes,
        });
        registry.register_collector(Box::new(status.clone()));
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry,
            wal_fsync,
            backend_commit,
            snapshot_save,
            grpc,
            peers,
            status,
        }
    }

    pub fn observe_wal_fsync(&self, elapsed: Duration) {
        self.wal_fsync.observe(elapsed.as_secs_f64());
    }

    /// An engine commit took `elapsed` to write (etcd's backend commit).
    pub fn observe_backend_commit(&self, elapsed: Duration) {
        self.backend_commit.observe(elapsed.as_secs_f64());
    }

    pub fn observe_snapshot_save(&self, elapsed: Duration) {
        self.snapshot_save.observe(elapsed.as_secs_f64());
    }

    /// A gRPC call began.
    pub fn grpc_started(&self, call: &GrpcMethod) {
        let grpc = &self.grpc;
        let series = grpc.series(call);
        series
            .started
            .get_or_init(|| grpc.started.get_or_create(&call.labels).clone())
            .inc();
    }

    /// A gRPC call ended with the status `code` (one of gRPC's, else counted as `Unknown`),
    /// `elapsed` after it began.
    pub fn grpc_handled(&self, call: &GrpcMethod, code: u32, elapsed: Duration) {
        let grpc = &self.grpc;
        let series = grpc.series(call);
        let code = if (code as usize) < GRPC_CODE_NAMES.len() {
            code
        } else {
            GRPC_UNKNOWN
        };
        let handled = series.handled[code as usize].get_or_init(|| {
            let outcome = GrpcOutcome {
                grpc_type: call.labels.grpc_type,
                grpc_service: call.labels.grpc_service,
                grpc_method: call.labels.grpc_method,
                grpc_code: GRPC_CODE_NAMES[code as usize],
            };
            grpc.handled.get_or_create(&outcome).clone()
        });
        handled.inc();
        series
            .handling
            .get_or_init(|| grpc.handling.get_or_create(&call.labels).clone())
            .observe(elapsed.as_secs_f64());
    }

    /// `messages` whole request messages of `bytes` bytes in all came in on a call.
    pub fn grpc_received(&self, call: &GrpcMethod, messages: u64, bytes: u64) {
        let grpc = &self.grpc;
        if messages > 0 {
            grpc.series(call)
                .received_messages
                .get_or_init(|| grpc.received_messages.get_or_create(&call.labels).clone())
                .inc_by(messages);
        }
        grpc.received_bytes.inc_by(bytes);
    }

    /// `messages` whole response messages of `bytes` bytes in all went out on a call.
    pub fn grpc_sent(&self, call: &GrpcMethod, messages: u64, bytes: u64) {
        let grpc = &self.grpc;
        if messages > 0 {
            grpc.series(call)
                .sent_messages
                .get_or_init(|| grpc.sent_messages.get_or_create(&call.labels).clone())
                .inc_by(messages);
        }
        grpc.sent_bytes.inc_by(bytes);
    }

    /// Raft traffic written to peer `to`.
    pub fn peer_sent(&self, to: u64, bytes: usize) {
        let peers = &self.peers;
        let family = &peers.sent_bytes;
        peers.sent_by_peer.inc_by(family, "To", to, bytes as u64);
    }

    /// Raft traffic read from peer `from`.
    pub fn peer_received(&self, from: u64, bytes: usize) {
        let peers = &self.peers;
        let family = &peers.received_bytes;
        peers
            .received_by_peer
            .inc_by(family, "From", from, bytes as u64);
    }

    /// A message or batch for peer `to` could not be sent.
    pub fn peer_send_failed(&self, to: u64) {
        self.peers
            .sent_failures
            .get_or_create(&peer(to, "To"))
            .inc();
    }

    /// A round trip to peer `to` (a probe connection's handshake).
    pub fn observe_peer_round_trip(&self, to: u64, round_trip: Duration) {
        let histogram = self.peers.round_trip.get_or_create(&peer(to, "To"));
        histogram.observe(round_trip.as_secs_f64());
    }

    /// Records a peer's clock offset; the previous one, if any.
    pub fn record_clock_offset(&self, to: u64, offset_micros: i64) -> Option<i64> {
        let seconds = offset_micros as f64 / 1e6;
        self.peers
            .clock_offset
            .get_or_create(&peer(to, "To"))
            .set(seconds);
        let mut offsets = self
            .peers
            .clock_offsets_micros
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        offsets.insert(to, offset_micros)
    }

    /// The whole `/metrics` page, with `status` as the member's state.
    pub fn render(&self, status: &MemberStatus) -> String {
        // One scrape at a time sees its own status (concurrent scrapes are rare and harmless).
        *self.status.lock() = status.clone();
        let mut page = String::new();
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut page, &self.registry)
        {
            page.push_str(&format!("# stet: encoding the metrics failed: {error}\n"));
        }
        page
    }
}

impl GrpcMetrics {
    /// The kept series of `call`'s method.
    fn series(&self, call: &GrpcMethod) -> &MethodSeries {
        let series = self.series.get(call.index);
        series.unwrap_or_else(|| panic!("gRPC method index {} out of range", call.index))
    }

    fn register(registry: &mut Registry) -> Self {
        let grpc = GrpcMetrics {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(request_buckets),
            received_messages: Family::default(),
            sent_messages: Family::default(),
            received_bytes: Counter::default(),
            sent_bytes: Counter::default(),
            series: (0..MAX_GRPC_METHODS)
                .map(|_| MethodSeries::default())
                .collect(),
        };
        registry.register(
            "grpc_server_started",
            "Total number of RPCs started on the server",
            grpc.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            grpc.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server",
            grpc.handling.clone(),
        );
        registry.register(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server",
            grpc.received_messages.clone(),
        );
        registry.register(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server",
            grpc.sent_messages.clone(),
        );
        registry.register(
            "etcd_network_client_grpc_received_bytes",
            "The total number of bytes received from grpc clients",
            grpc.received_bytes.clone(),
        );
        registry.register(
            "etcd_network_client_grpc_sent_bytes",
            "The total number of bytes sent to grpc clients",
            grpc.sent_bytes.clone(),
        );
        grpc
    }
}

impl PeerMetrics {
    fn register(registry: &mut Registry) -> Self {
        let peers = PeerMetrics {
            round_trip: Family::new_with_constructor(request_buckets),
            sent_bytes: Family::default(),
            received_bytes: Family::default(),
            sent_failures: Family::default(),
            clock_offset: Family::default(),
            clock_offsets_micros: Mutex::new(BTreeMap::new()),
            sent_by_peer: PeerCounters::default(),
            received_by_peer: PeerCounters::default(),
        };
        registry.register(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers (stet: a probe connection's handshake)",
            peers.round_trip.clone(),
        );
        registry.register(
            "etcd_network_peer_sent_bytes",
            "The total number of bytes sent to peers",
            peers.sent_bytes.clone(),
        );
        registry.register(
            "etcd_network_peer_received_bytes",
            "The total number of bytes received from peers",
            peers.received_bytes.clone(),
        );
        registry.register(
            "etcd_network_peer_sent_failures",
            "The total number of send failures from peers",
            peers.sent_failures.clone(),
        );
        registry.register(
            "stet_network_peer_clock_offset_seconds",
            "The peer's wall clock minus this member's at the last comparison",
            peers.clock_offset.clone(),
        );
        peers
    }
}

/// The driver's last published status, encoded at scrape time.
#[derive(Debug)]
struct StatusCollector {
    latest: Mutex<MemberStatus>,
    quota_backend_bytes: u64,
}

impl StatusCollector {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemberStatus> {
        self.latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Encodes one unlabelled gauge.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Encodes one unlabelled counter (`name` without its `_total`, which the encoder appends).
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Encodes a gauge of 1 whose one label carries the information (etcd's `etcd_server_id`, ...).
fn info(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: (&'static str, String),
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(1i64);
    let mut descriptor = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    let labels = [label];
    metric.encode(descriptor.encode_family(&labels)?)
}

/// `3.5` of `3.5.0`: etcd labels its cluster version so.
fn major_minor(version: &str) -> String {
    version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.lock().clone();
        let e = &mut encoder;
        gauge(
            e,
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not",
            i64::from(s.leader.is_some()),
        )?;
        gauge(
            e,
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise",
            i64::from(s.is_leader),
        )?;
        gauge(
            e,
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise",
            i64::from(s.is_learner),
        )?;
        counter(
            e,
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen",
            s.leader_changes,
        )?;
        gauge(
            e,
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed",
            as_i64(s.commit_index),
        )?;
        gauge(
            e,
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied",
            as_i64(s.applied_index),
        )?;
        gauge(
            e,
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit",
            as_i64(s.proposals_pending),
        )?;
        counter(
            e,
            "etcd_server_proposals_failed",
            "The total number of failed proposals seen",
            s.proposals_failed,
        )?;
        gauge(
            e,
            "etcd_debugging_auth_revision",
            "The current revision of auth store",
            as_i64(s.auth_revision),
        )?;
        gauge(
            e,
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes",
            as_i64(self.quota_backend_bytes),
        )?;
        gauge(
            e,
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes",
            as_i64(s.db_size),
        )?;
        gauge(
            e,
            "etcd_debugging_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes (etcd 3.4's name)",
            as_i64(s.db_size),
        )?;
        gauge(
            e,
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes",
            as_i64(s.db_size_in_use),
        )?;
        gauge(
            e,
            "etcd_debugging_mvcc_keys_total",
            "Total number of keys",
            as_i64(s.key_count as u64),
        )?;
        gauge(
            e,
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store",
            s.revision,
        )?;
        gauge(
            e,
            "stet_raft_term",
            "The raft term this member is in",
            as_i64(s.term),
        )?;
        info(
            e,
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID",
            ("server_id", format!("{:x}", s.member_id)),
        )?;
        info(
            e,
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version",
            (
                "server_version",
                super::version::ETCD_API_VERSION.to_string(),
            ),
        )?;
        info(
            e,
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            (
                "cluster_version",
                major_minor(super::version::CLUSTER_VERSION),
            ),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
