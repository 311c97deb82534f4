//! What travels on the simulated network between members and clients: raft messages as protobuf
//! bytes (so the receiving member decodes them as it would off a socket), and client requests and
//! replies as typed payloads.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use stet::node::ClientError;
use stet::node::{ClientRequest, ClientResponse};
use stet::proto::etcdserverpb::WatchResponse;

/// madsim endpoint tags.
pub const TAG_RAFT: u64 = 1;
pub const TAG_CLIENT: u64 = 2;
pub const TAG_REPLY: u64 = 3;
/// Watch responses from a member to the client whose stream opened the watch.
pub const TAG_WATCH: u64 = 4;

/// The port every member listens on.
pub const MEMBER_PORT: u16 = 2380;

thread_local! {
    /// Addresses of members added at runtime, whose IDs (derived from a random salt) do not fit
    /// in an IP address. madsim runs a whole world on one thread, one world after another, so
    /// the table is per thread and `World::new` clears it.
    static ADDED: std::cell::RefCell<std::collections::BTreeMap<u64, Ipv4Addr>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

/// A member's address: 10.0.2.<n> for the n-th member added at runtime, else 10.0.0.<id>.
pub fn member_addr(id: u64) -> SocketAddr {
    let ip = ADDED
        .with(|added| added.borrow().get(&id).copied())
        .unwrap_or(Ipv4Addr::new(10, 0, 0, id as u8));
    SocketAddr::new(IpAddr::V4(ip), MEMBER_PORT)
}

/// Gives a member added at runtime its own address (10.0.2.1, 10.0.2.2, ...), and returns it.
pub fn register_added_member(id: u64) -> SocketAddr {
    ADDED.with(|added| {
        let mut added = added.borrow_mut();
        let n = added.len() + 1;
        assert!(
            n < 255,
            "more members added than the simulator has addresses for"
        );
        added.entry(id).or_insert(Ipv4Addr::new(10, 0, 2, n as u8));
    });
    member_addr(id)
}

/// Forgets the members added by the previous world on this thread.
pub fn clear_added_members() {
    ADDED.with(|added| added.borrow_mut().clear());
}

/// A client's address: 10.0.1.<n>.
pub fn client_ip(n: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, n as u8))
}

/// A raft message from one member to another, encoded.
#[derive(Debug, Clone)]
pub struct RaftFrame {
    pub from: u64,
    pub bytes: Vec<u8>,
}

/// A client request to a member.
#[derive(Debug, Clone)]
pub struct ClientEnvelope {
    pub request_id: u64,
    pub request: ClientRequest,
    pub reply_to: SocketAddr,
}

/// A member's answer to a client.
#[derive(Debug, Clone)]
pub struct ReplyEnvelope {
    pub request_id: u64,
    pub result: Result<ClientResponse, ClientError>,
}

/// A watch response on its way to the client stream that opened the watch. `seq` counts the
/// stream's responses from 0, so the client can restore the order the member sent them in (madsim
/// reorders datagrams) and notice a lost one, as a broken connection would.
#[derive(Debug, Clone)]
pub struct WatchEnvelope {
    pub stream: u64,
    pub seq: u64,
    pub response: WatchResponse,
}
