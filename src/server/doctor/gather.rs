//! What the doctor looks at, read without changing anything: the WAL (read-only inspection), the
//! backup marker and forced identity files, the membership a restart would load (from a copy of
//! the data directory in a scratch directory, since opening the files may repair them), and the
//! live members' `/health` answers (their cluster ID and clock).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::checks::{Data, Probe, StoredMember};
use crate::backup::offline;
use crate::engine::Engine;
use crate::node::{Node, NodeConfig};
use crate::server::fs_disk::FsDisk;
use crate::server::{forced_identity, http};
use crate::storage::{MemberStorage, StorageLayout};
use crate::time::Instant;
use crate::types::{ClusterId, MemberId};
use crate::wal::{self, Metadata, Wal, WalOptions};

/// How long a live member gets to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The scratch engine's page cache.
const CACHE_BYTES: usize = 8 << 20;

/// What the data directory `layout` describes holds; `None` when it holds no WAL. The
/// membership is loaded (from a scratch copy of the data directory) only if `with_membership`.
pub fn data(layout: &StorageLayout, with_membership: bool) -> Option<Data> {
    let disk = FsDisk::new();
    if !Wal::exists(&disk, &layout.wal_dir) {
        return None;
    }
    let inspection = wal::inspect(&disk, &layout.wal_dir);
    let torn_tail = inspection.as_ref().ok().and_then(|i| {
        i.recovered.torn_tail.as_ref().map(|torn| {
            format!(
                "{} bytes at offset {} of {}",
                torn.bytes_dropped,
                torn.offset,
                torn.file.display()
            )
        })
    });
    let wal = inspection
        .map(|i| (i.recovered.metadata, i.recovered.hard_state.commit))
        .map_err(|e| e.to_string());
    Some(Data {
        wal: wal.clone(),
        torn_tail,
        marker: offline::read_marker(&disk, layout).ok().flatten(),
        forced_identity: forced_identity::read(&disk, layout),
        membership: match &wal {
            Ok(_) if !with_membership => Ok((Vec::new(), Vec::new())),
            Ok((metadata, _)) => membership(layout, *metadata),
            Err(why) => Err(why.clone()),
        },
    })
}

/// The membership the member would start with: its engine's state plus the committed entries
/// of its WAL after it, loaded as a restart loads them, from a copy of the data directory in a
/// scratch directory (opening the files themselves may repair them).
fn membership(
    layout: &StorageLayout,
    identity: Metadata,
) -> Result<(Vec<StoredMember>, Vec<u64>), String> {
    let scratch = Scratch::new()?;
    let copy = StorageLayout::new(&scratch.0, None);
    let mut disk = FsDisk::new();
    offline::copy_data_dir(&mut disk, layout, &copy, |_| {}).map_err(|e| e.to_string())?;
    let (_, durable, _) = MemberStorage::open(disk, copy.clone(), WalOptions::default(), None)
        .map_err(|e| e.to_string())?;
    let engine =
        Engine::open(FsDisk::new, &copy.engine_file, CACHE_BYTES).map_err(|e| e.to_string())?;
    let config = NodeConfig::new(MemberId(identity.member_id), ClusterId(identity.cluster_id));
    let quiet = slog::Logger::root(slog::Discard, slog::o!());
    let node = Node::restart(config, durable, engine, Instant::from_micros(0), &quiet)
        .map_err(|e| e.to_string())?;
    let members = node.state().members();
    let stored = members
        .iter()
        .map(|m| StoredMember {
            id: m.id,
            name: m.name.clone(),
            peer_urls: m.peer_ur_ls.clone(),
            client_urls: m.client_ur_ls.clone(),
            is_learner: m.is_learner,
        })
        .collect();
    Ok((stored, members.removed_ids()))
}

/// Asks the member at `url` (`http://host:port`) for `/health`: its cluster and its clock.
pub fn probe(url: &str) -> Probe {
    Probe {
        url: url.to_string(),
        answer: ask(url),
    }
}

fn ask(url: &str) -> Result<(Option<u64>, i64), String> {
    let Some(address) = url.strip_prefix("http://") else {
        return Err("only http:// URLs are probed".to_string());
    };
    let address = address.trim_end_matches('/');
    let socket = address
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the address does not resolve")?;
    let sent = now_micros();
    let mut stream =
        TcpStream::connect_timeout(&socket, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let received = now_micros();
    let header = |name: &str| {
        response
            .lines()
            .take_while(|line| !line.is_empty())
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_string())
            })
    };
    let cluster_id =
        header(http::CLUSTER_ID_HEADER).and_then(|id| u64::from_str_radix(&id, 16).ok());
    let clock = header(http::CLOCK_HEADER)
        .and_then(|micros| micros.parse::<i64>().ok())
        .ok_or("it gave no clock (not a stet member?)")?;
    // The member read its clock somewhere between sending and receiving: take the middle.
    Ok((cluster_id, clock - (sent + received) / 2))
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        })
}

/// A scratch directory in the system's temporary directory, removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new() -> Result<Scratch, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("stet-scratch-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
