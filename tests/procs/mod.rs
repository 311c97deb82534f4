//! Helpers for tests that run the real `stet` binary (and `etcdctl`) as child processes on
//! 127.0.0.1: temporary directories, free ports, plain HTTP GETs, gRPC clients of etcd's services,
//! and bounded waits, so a hung server fails a test instead of hanging it.

#![allow(dead_code)]

pub mod certs;
mod member;

// Each test binary uses some of them.
#[allow(unused_imports)]
pub use member::{append_log, member_command, url_flags, wait_healthy};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use stet::proto::etcdserverpb::{
    self as pb, cluster_client::ClusterClient, kv_client::KvClient, lease_client::LeaseClient,
    maintenance_client::MaintenanceClient, watch_client::WatchClient,
};
use tonic::transport::Channel;
use tonic::{Response, Status};

pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A temporary data directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("stet-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port no other test of this process was given and nothing listens on. Ports come from below
/// Linux's ephemeral range (32768 and up), never from it: the kernel hands ephemeral ports to
/// outgoing connections (the members' own peer dials), so a port picked there can be taken
/// between the check and the child's bind. Each test process starts at its own offset.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU16;
    const FIRST: u16 = 15_000;
    const SPAN: u16 = 17_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % 100) as u16 * 170;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (offset + n) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// A plain HTTP/1.1 GET: (status code, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_request(port, "GET", path, None)
}

/// A plain HTTP/1.1 request with an optional JSON body: (status code, body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let body = json.unwrap_or("");
    let content_type = if json.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs a future with a bound, so a hung server fails the test instead of hanging it.
pub async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

/// gRPC clients of etcd's services on one connection.
pub struct Clients {
    pub kv: KvClient<Channel>,
    pub watch: WatchClient<Channel>,
    pub lease: LeaseClient<Channel>,
    pub cluster: ClusterClient<Channel>,
    pub maintenance: MaintenanceClient<Channel>,
}

pub async fn connect(endpoint: String) -> Clients {
    let channel = bounded("connect", async {
        Channel::from_shared(endpoint)
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    })
    .await;
    Clients::from_channel(channel)
}

impl Clients {
    /// Clients of every service sharing `channel`.
    pub fn from_channel(channel: Channel) -> Clients {
        Clients {
            kv: KvClient::new(channel.clone()),
            watch: WatchClient::new(channel.clone()),
            lease: LeaseClient::new(channel.clone()),
            cluster: ClusterClient::new(channel.clone()),
            maintenance: MaintenanceClient::new(channel),
        }
    }
}

impl Clients {
    pub async fn put(&mut self, key: &str, value: &str, lease: i64) -> pb::PutResponse {
        let request = pb::PutRequest {
            key: key.into(),
            value: value.into(),
            lease,
            ..Default::default()
        };
        bounded("put", self.kv.put(request))
            .await
            .expect("put")
            .into_inner()
    }

    pub async fn get(&mut self, key: &str, range_end: &[u8]) -> Result<pb::RangeResponse, Status> {
        let request = pb::RangeRequest {
            key: key.into(),
            range_end: range_end.to_vec(),
            ..Default::default()
        };
        bounded("get", self.kv.range(request))
            .await
            .map(Response::into_inner)
    }

    pub async fn value(&mut self, key: &str) -> Option<Vec<u8>> {
        let response = self.get(key, b"").await.expect("get");
        response.kvs.first().map(|kv| kv.value.clone())
    }
}

/// `etcdctl` if installed; CI installs it (Debian's `etcd-client` package).
pub fn etcdctl() -> Option<PathBuf> {
    let found = Command::new("etcdctl").arg("version").output().ok()?;
    found.status.success().then(|| PathBuf::from("etcdctl"))
}

pub fn etcdctl_run(etcdctl: &Path, endpoint: &str, args: &[&str]) -> String {
    let output = run_to_end_etcdctl(etcdctl, endpoint, args);
    assert!(
        output.status.success(),
        "etcdctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn run_to_end_etcdctl(etcdctl: &Path, endpoint: &str, args: &[&str]) -> Output {
    let mut command = Command::new(etcdctl);
    command
        .env("ETCDCTL_API", "3")
        .args([
            format!("--endpoints={endpoint}"),
            "--command-timeout=5s".to_string(),
        ])
        .args(args);
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcdctl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("etcdctl {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Runs a command that should exit on its own (bounded), capturing its output.
pub fn run_to_end(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stet");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stet did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Runs `etcdctl watch w` against `watch_endpoint`, puts `w=seen` through `put_endpoint` while it
/// runs, and returns what the watch printed.
pub fn etcdctl_watch_sees_put(etcdctl: &Path, watch_endpoint: &str, put_endpoint: &str) -> String {
    let mut watch = Command::new(etcdctl)
        .env("ETCDCTL_API", "3")
        .args([
            format!("--endpoints={watch_endpoint}"),
            "watch".into(),
            "w".into(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcdctl watch");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        etcdctl_run(etcdctl, put_endpoint, &["put", "w", "seen"]),
        "OK\n"
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = watch.kill();
    let output = watch.wait_with_output().expect("watch output");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Restores a streamed backup (what `Maintenance.Snapshot` sends) into an engine in memory:
/// the raft index it was taken at, and the value of `key` in it.
pub fn value_in_backup(bytes: &[u8], key: &[u8]) -> (u64, Option<Vec<u8>>) {
    let backup = stet::backup::parse(bytes).expect("a valid streamed backup");
    let mut engine = stet::engine::Engine::in_memory(1 << 20).expect("engine");
    backup.restore_into(&mut engine).expect("restored");
    let (state, _, _) = stet::state::StateMachine::from_engine(engine, 1).expect("state");
    let found = state
        .kv
        .range(&stet::proto::etcdserverpb::RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })
        .expect("range");
    let value = found.kvs.into_iter().next().map(|kv| kv.value);
    (backup.meta.index, value)
}

/// Starts a `stet` member in `dir` and waits until it is healthy; the member and its client URL.
pub fn start_member(
    dir: &Path,
    name: &str,
    data_dir: &str,
    peer_url: &str,
    cluster: &str,
) -> (KilledOnDrop, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut member = KilledOnDrop(
        member_command()
            .current_dir(dir)
            .args(["--name", name, "--data-dir", data_dir])
            .args(["--log-level", "warn"])
            .args(url_flags(&url, peer_url))
            .args(["--initial-cluster", cluster])
            .spawn()
            .expect("spawn stet"),
    );
    wait_healthy(&mut member.0, port, "/health", None);
    (member, url)
}

/// A child process killed when the test ends, however it ends. A child started as the leader
/// of its own process group (a member under a wrapper such as `faketime`, which runs the member
/// as its own child) takes the whole group with it: killing the wrapper alone left the member
/// running after the test.
pub struct KilledOnDrop(pub Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.0.id()) {
            // No such group unless the child leads one (then this is ESRCH, harmlessly).
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is shared.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a real etcd 3.4 (Debian's `etcd-server`; CI installs it) with its data in `dir/etcd`,
/// waits until it is healthy; the process and its client URL.
pub fn start_etcd(dir: &Path) -> (KilledOnDrop, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let etcd = Command::new("etcd")
        .current_dir(dir)
        .args(["--name", "etcd", "--data-dir", "etcd"])
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("etcd={peer_url}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd is not installed: apt-get install -y etcd-server");
    let mut etcd = KilledOnDrop(etcd);
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while !matches!(http_get(port, "/health"), Ok((200, _))) {
        assert!(
            etcd.0.try_wait().expect("try_wait").is_none(),
            "etcd exited during startup"
        );
        assert!(Instant::now() < deadline, "etcd was not healthy in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    (etcd, url)
}
