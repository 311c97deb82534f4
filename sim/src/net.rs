//! Addresses on the simulated network. Members run on hosts: host `h` of the initial cluster is
//! 10.0.0.h, host `h` added at runtime (`h >= FIRST_ADDED_HOST`) is 10.0.2.(h - 100); every member
//! serves clients on port 2379 and peers on port 2380 of its host, as the real server does.
//! Clients run on 10.0.1.n.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The client port every member listens on.
pub const CLIENT_PORT: u16 = 2379;
/// The peer port every member listens on.
pub const PEER_PORT: u16 = 2380;
/// The first host number given to hosts added at runtime.
pub const FIRST_ADDED_HOST: u64 = 101;

/// A host's IP address.
pub fn host_ip(host: u64) -> IpAddr {
    let ip = if host >= FIRST_ADDED_HOST {
        let n = host - FIRST_ADDED_HOST + 1;
        assert!(
            n < 255,
            "more hosts added than the simulator has addresses for"
        );
        Ipv4Addr::new(10, 0, 2, n as u8)
    } else {
        assert!(
            (1..255).contains(&host),
            "initial hosts are numbered 1..255"
        );
        Ipv4Addr::new(10, 0, 0, host as u8)
    };
    IpAddr::V4(ip)
}

/// The peer URL of the member on `host`.
pub fn peer_url(host: u64) -> String {
    format!("http://{}:{PEER_PORT}", host_ip(host))
}

/// The client URL of the member on `host`.
pub fn client_url(host: u64) -> String {
    format!("http://{}:{CLIENT_PORT}", host_ip(host))
}

/// The client address of the member on `host`.
pub fn client_addr(host: u64) -> SocketAddr {
    SocketAddr::new(host_ip(host), CLIENT_PORT)
}

/// A client's address: 10.0.1.<n>.
pub fn client_ip(n: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, n as u8))
}
