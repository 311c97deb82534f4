//! Connections and request loops. `connect` opens M gRPC connections (one `Connection` each,
//! spread round-robin over the endpoints: `connection`); `run` starts N clients, client i on
//! connection i mod M, each issuing one request at a time until the `Plan` says stop. `fill`
//! writes every key of the key space once, untimed, so a range phase reads keys that exist. Keys
//! are the zero-padded decimal index (`--key-size` bytes), values `--val-size` bytes; random keys
//! come from a seeded ChaCha8 RNG per client, so a seed gives the same key sequence against every
//! server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinSet;
use tonic::codegen::http::uri::{InvalidUri, Uri};

use super::connection::{self, Connection};
use super::summary::{ErrorCounts, Report};
use stet::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};

/// How long one connection attempt may take before the bench gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("invalid workload: {0}")]
    Workload(String),
    #[error("filling the key space: {failed} of {keys} puts failed (most frequent: {first})")]
    Fill {
        failed: u64,
        keys: u64,
        first: String,
    },
    #[error("a client task failed: {0}")]
    Task(String),
}

/// When the clients stop issuing requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// This many requests in all, shared by the clients.
    Total(u64),
    /// Until this much time has passed since the phase started.
    Duration(Duration),
}

/// What each request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    /// A single-key range; `serializable: false` is etcd's default, the linearizable read.
    Range {
        serializable: bool,
    },
}

impl Op {
    /// The name printed in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Range {
                serializable: false,
            } => "range-l",
            Op::Range { serializable: true } => "range-s",
        }
    }
}

/// The parameters every phase shares.
#[derive(Debug, Clone)]
pub struct Workload {
    /// `http://host:port` URLs.
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    pub key_size_bytes: usize,
    pub val_size_bytes: usize,
    /// Keys are drawn from `0..key_space`.
    pub key_space: u64,
    pub seed: u64,
    /// A request not answered in this time fails with a timeout error.
    pub request_timeout: Duration,
}

impl Workload {
    /// Refuses parameters no run can honour: no endpoints, connections or clients, an empty key
    /// space, or keys too short to hold every index of the key space.
    pub fn check(&self) -> Result<(), BenchError> {
        let refuse = |why: &str| Err(BenchError::Workload(why.to_string()));
        if self.endpoints.is_empty() {
            return refuse("no endpoints");
        }
        if self.conns == 0 || self.clients == 0 {
            return refuse("--conns and --clients must be at least 1");
        }
        if self.key_space == 0 {
            return refuse("--key-space must be at least 1");
        }
        let digits = (self.key_space - 1).to_string().len();
        if digits > self.key_size_bytes {
            return Err(BenchError::Workload(format!(
                "--key-size {} cannot hold {} distinct keys: it needs at least {digits} bytes",
                self.key_size_bytes, self.key_space
            )));
        }
        Ok(())
    }

    /// The key for index `index`: its decimal digits, zero-padded to `key_size_bytes`.
    pub fn key(&self, index: u64) -> Vec<u8> {
        format!("{index:0width$}", width = self.key_size_bytes).into_bytes()
    }
}

/// Opens `workload.conns` connections, the i-th to endpoint i mod the number of endpoints.
pub async fn connect(workload: &Workload) -> Result<Vec<Connection>, BenchError> {
    let mut connections = Vec::with_capacity(workload.conns);
    for i in 0..workload.conns {
        let url = &workload.endpoints[i % workload.endpoints.len()];
        let uri: Uri = url
            .parse()
            .map_err(|error: InvalidUri| BenchError::Endpoint {
                endpoint: url.clone(),
                reason: error.to_string(),
            })?;
        let connection =
            match tokio::time::timeout(CONNECT_TIMEOUT, connection::connect(&uri)).await {
                Ok(Ok(connection)) => connection,
                Ok(Err(reason)) => {
                    return Err(BenchError::Connect {
                        endpoint: url.clone(),
                        reason,
                    })
                }
                Err(_) => {
                    return Err(BenchError::Connect {
                        endpoint: url.clone(),
                        reason: format!("no connection within {CONNECT_TIMEOUT:?}"),
                    })
                }
            };
        connections.push(connection);
    }
    Ok(connections)
}

/// Puts every key of the key space once (untimed), so that range reads find what they ask for.
pub async fn fill(connections: &[Connection], workload: &Workload) -> Result<(), BenchError> {
    let report = drive(
        connections,
        workload,
        Op::Put,
        Plan::Total(workload.key_space),
        Keys::Sequential,
    )
    .await?;
    let failed = report.errors.total();
    if failed > 0 {
        let first = report
            .errors
            .by_count()
            .first()
            .map(|(kind, _)| kind.to_string())
            .unwrap_or_default();
        return Err(BenchError::Fill {
            failed,
            keys: workload.key_space,
            first,
        });
    }
    Ok(())
}

/// One timed phase: `workload.clients` clients issue `op` on random keys until `plan` says stop.
pub async fn run(
    connections: &[Connection],
    workload: &Workload,
    op: Op,
    plan: Plan,
) -> Result<Report, BenchError> {
    drive(connections, workload, op, plan, Keys::Random).await
}

/// How a client picks the key of its next request.
#[derive(Debug, Clone, Copy)]
enum Keys {
    /// Uniformly from the key space, with the client's own RNG.
    Random,
    /// The request's ticket number: every key once, for `Plan::Total(key_space)`.
    Sequential,
}

/// Hands out request tickets until the plan is used up. Shared by all clients of a phase.
struct Tickets {
    next: AtomicU64,
    total: Option<u64>,
    deadline: Option<Instant>,
}

impl Tickets {
    fn new(plan: Plan, started: Instant) -> Tickets {
        let (total, deadline) = match plan {
            Plan::Total(n) => (Some(n), None),
            Plan::Duration(d) => (None, Some(started + d)),
        };
        Tickets {
            next: AtomicU64::new(0),
            total,
            deadline,
        }
    }

    fn take(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        match self.total {
            Some(total) if ticket >= total => None,
            _ => Some(ticket),
        }
    }
}

/// Everything a client task needs, shared.
struct Shared {
    op: Op,
    keys: Keys,
    tickets: Tickets,
    workload: Workload,
    value: Vec<u8>,
}

async fn drive(
    connections: &[Connection],
    workload: &Workload,
    op: Op,
    plan: Plan,
    keys: Keys,
) -> Result<Report, BenchError> {
    workload.check()?;
    if connections.is_empty() {
        return Err(BenchError::Workload("no connections".to_string()));
    }
    let started = Instant::now();
    let shared = Arc::new(Shared {
        op,
        keys,
        tickets: Tickets::new(plan, started),
        workload: workload.clone(),
        value: vec![b'v'; workload.val_size_bytes],
    });
    let mut tasks = JoinSet::new();
    for client in 0..workload.clients {
        let connection = connections[client % connections.len()].clone();
        let kv = KvClient::new(connection.clone());
        // Client i's keys depend only on the seed and i.
        let rng = ChaCha8Rng::seed_from_u64(workload.seed ^ (client as u64).rotate_left(32));
        tasks.spawn(client_loop(kv, connection, Arc::clone(&shared), rng));
    }
    let mut report = Report::default();
    while let Some(joined) = tasks.join_next().await {
        let (latencies_ns, errors) = joined.map_err(|error| BenchError::Task(error.to_string()))?;
        report.latencies_ns.extend(latencies_ns);
        report.errors.merge(errors);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One client: a request at a time, each timed from send to answer, until the plan says stop or
/// its connection ends (after that every request would fail at once: the tickets left go to the
/// clients of other connections).
async fn client_loop(
    mut kv: KvClient<Connection>,
    connection: Connection,
    shared: Arc<Shared>,
    mut rng: ChaCha8Rng,
) -> (Vec<u64>, ErrorCounts) {
    let mut latencies_ns = Vec::new();
    let mut errors = ErrorCounts::default();
    while let Some(ticket) = shared.tickets.take() {
        let index = match shared.keys {
            Keys::Random => rng.gen_range(0..shared.workload.key_space),
            Keys::Sequential => ticket,
        };
        let key = shared.workload.key(index);
        let sent = Instant::now();
        let timeout = shared.workload.request_timeout;
        let outcome =
            tokio::time::timeout(timeout, request(&mut kv, shared.op, key, &shared.value))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
        let latency = sent.elapsed();
        match outcome {
            Ok(()) => latencies_ns.push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)),
            Err(kind) => {
                errors.add(&kind);
                if connection.is_closed() {
                    break;
                }
            }
        }
    }
    (latencies_ns, errors)
}

/// One request; the error is its kind as counted in the report.
async fn request(
    kv: &mut KvClient<Connection>,
    op: Op,
    key: Vec<u8>,
    value: &[u8],
) -> Result<(), String> {
    match op {
        Op::Put => {
            let request = PutRequest {
                key,
                value: value.to_vec(),
                ..Default::default()
            };
            kv.put(request).await.map_err(status_kind)?;
            Ok(())
        }
        Op::Range { serializable } => {
            let request = RangeRequest {
                key,
                serializable,
                ..Default::default()
            };
            let response = kv.range(request).await.map_err(status_kind)?;
            match response.get_ref().kvs.len() {
                1 => Ok(()),
                n => Err(format!("range of one key returned {n} keys")),
            }
        }
    }
}

/// One client lists every key page by page as kube-apiserver's pager does, again and again until
/// `plan` says stop (`Plan::Total` counts pages): the first page at the current revision, each
/// next one at the first page's revision from the key after the last one it returned, with
/// `page_size` keys each. Every page is timed, and checked: a page's count is the keys from its
/// first on at that revision, so it must be the previous page's count less that page's keys.
pub async fn list_pages(
    connections: &[Connection],
    workload: &Workload,
    page_size: i64,
    plan: Plan,
) -> Result<Report, BenchError> {
    workload.check()?;
    if page_size < 1 {
        return Err(BenchError::Workload(
            "--page-size must be at least 1".into(),
        ));
    }
    let connection = connections
        .first()
        .ok_or_else(|| BenchError::Workload("no connections".to_string()))?;
    let mut kv = KvClient::new(connection.clone());
    let started = Instant::now();
    let tickets = Tickets::new(plan, started);
    let mut report = Report::default();
    // The next page, and the count the previous page left for it, while a listing goes on.
    let mut listing: Option<(RangeRequest, i64)> = None;
    while tickets.take().is_some() {
        let page = listing.as_ref().map_or_else(
            || RangeRequest {
                key: vec![0],
                range_end: vec![0],
                limit: page_size,
                ..Default::default()
            },
            |(next, _)| next.clone(),
        );
        let sent = Instant::now();
        let timeout = workload.request_timeout;
        let answer = tokio::time::timeout(timeout, kv.range(page.clone()))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")));
        let latency = sent.elapsed();
        let response = match answer {
            Ok(response) => response.into_inner(),
            Err(status) => {
                report.errors.add(&status_kind(status));
                listing = None;
                continue;
            }
        };
        if let Some(expected) = listing.as_ref().map(|(_, left)| *left) {
            if response.count != expected {
                let kind = format!("a page counted {} keys, not {expected}", response.count);
                report.errors.add(&kind);
                listing = None;
                continue;
            }
        }
        report
            .latencies_ns
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        listing = match (response.more, response.kvs.last()) {
            (true, Some(last)) => {
                let revision = match page.revision {
                    0 => response.header.as_ref().map_or(0, |h| h.revision),
                    pinned => pinned,
                };
                let next = RangeRequest {
                    key: [last.key.as_slice(), &[0]].concat(),
                    revision,
                    ..page
                };
                Some((next, response.count - response.kvs.len() as i64))
            }
            _ => None,
        };
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn status_kind(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(key_size_bytes: usize, key_space: u64) -> Workload {
        Workload {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            conns: 1,
            clients: 1,
            key_size_bytes,
            val_size_bytes: 8,
            key_space,
            seed: 1,
            request_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn keys_are_zero_padded_indices_of_key_size() {
        let w = workload(8, 1000);
        assert!(w.check().is_ok());
        assert_eq!(w.key(0), b"00000000");
        assert_eq!(w.key(999), b"00000999");
    }

    #[test]
    fn key_size_too_small_for_key_space_is_refused() {
        assert!(workload(3, 1000).check().is_ok());
        assert!(matches!(
            workload(3, 1001).check(),
            Err(BenchError::Workload(_))
        ));
        assert!(workload(8, 0).check().is_err());
    }

    #[test]
    fn total_plan_hands_out_each_ticket_once() {
        let tickets = Tickets::new(Plan::Total(3), Instant::now());
        let taken: Vec<_> = std::iter::from_fn(|| tickets.take()).collect();
        assert_eq!(taken, vec![0, 1, 2]);
        assert_eq!(tickets.take(), None);
    }
}
