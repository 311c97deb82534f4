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

/// A member's address: 10.0.0.<id>.
pub fn member_addr(id: u64) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8)), MEMBER_PORT)
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
