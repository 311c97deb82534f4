//! One peer connection's plumbing: dialing a peer URL (TLS first for an `https://` one) and the
//! handshake (preface, `Hello`, `Welcome`), and reading and writing frames on the stream with
//! time limits.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::peer_wire::{self, Frame, FrameDecoder, FrameKind, WireError};
use crate::proto::stetpeerpb as peerpb;

/// How long a dial may take, and how long the other side has to answer the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who this member is, as it introduces itself to peers, and its TLS for `https://` peers.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cluster_id: u64,
    pub member_id: u64,
    pub tls: Option<Arc<crate::server::tls::peer::PeerTls>>,
}

/// A peer connection's byte stream: TCP, or TLS over TCP.
pub trait PeerIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> PeerIo for T {}

pub type PeerStream = Box<dyn PeerIo>;

/// Why talking to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("bad peer URL {0:?}: must have the form http://host:port or https://host:port")]
    BadUrl(String),
    #[error("peer URL {0} is https but this member has no peer TLS settings (--peer-cert-file, --peer-key-file, --peer-trusted-ca-file)")]
    NoTls(String),
    #[error("TLS with the peer failed: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("the peer closed the connection")]
    Closed,
    #[error("cluster ID mismatch: local cluster {local:x}, the peer's cluster {remote:x}")]
    ClusterMismatch { local: u64, remote: u64 },
    #[error("the peer refused the connection: {0}")]
    Refused(String),
    #[error("the peer says this member was removed from the cluster")]
    Removed,
}

/// A peer URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    /// `host:port`, to connect to.
    pub address: String,
    /// The host alone (without IPv6 brackets), the name a TLS certificate must carry.
    pub host: String,
    pub tls: bool,
}

/// The address of an `http://host:port` or `https://host:port` peer URL.
pub fn url_address(url: &str) -> Result<PeerAddress, PeerError> {
    let bad = || PeerError::BadUrl(url.to_string());
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(bad()),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
        return Err(bad());
    }
    let (host, _) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(PeerAddress {
        address: rest.to_string(),
        host: host.to_string(),
        tls,
    })
}

/// How much one read from a peer connection takes at most. Small enough that a connection that
/// carries only heartbeats does not hold (and fault in) a large buffer; a large append is read in
/// several reads.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A peer stream carrying frames.
pub struct FramedStream {
    stream: PeerStream,
    decoder: FrameDecoder,
    read_buffer: Vec<u8>,
}

impl FramedStream {
    pub fn new(stream: PeerStream) -> Self {
        FramedStream {
            stream,
            decoder: FrameDecoder::new(),
            read_buffer: vec![0; READ_BUFFER_BYTES],
        }
    }

    /// The next frame; `Closed` at a clean end of stream.
    pub async fn read_frame(&mut self) -> Result<Frame, PeerError> {
        read_frame(&mut self.stream, &mut self.decoder, &mut self.read_buffer).await
    }

    /// `read_frame` within `limit`.
    pub async fn read_frame_within(&mut self, limit: Duration) -> Result<Frame, PeerError> {
        tokio::time::timeout(limit, self.read_frame())
            .await
            .map_err(|_| PeerError::Timeout)?
    }

    /// Writes already-encoded frames.
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        write_all(&mut self.stream, bytes).await
    }

    /// Splits into a read half and a write half for connections that carry both directions.
    pub fn into_split(self) -> (FramedReader, FrameWriteHalf) {
        let (read, write) = tokio::io::split(self.stream);
        (
            FramedReader {
                read,
                decoder: self.decoder,
                read_buffer: self.read_buffer,
            },
            write,
        )
    }

    /// Reads the dialer's preface, within the handshake time limit.
    pub async fn read_preface(&mut self) -> Result<(), PeerError> {
        let mut preface = [0u8; 4];
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.stream.read_exact(&mut preface))
            .await
            .map_err(|_| PeerError::Timeout)??;
        peer_wire::check_preface(preface)?;
        Ok(())
    }
}

/// The write half of a split `FramedStream`.
pub type FrameWriteHalf = WriteHalf<PeerStream>;

/// Writes `bytes` and flushes them onto the connection.
async fn write_all<W: tokio::io::AsyncWrite + Unpin>(
    write: &mut W,
    bytes: &[u8],
) -> Result<(), PeerError> {
    write.write_all(bytes).await?;
    write.flush().await?;
    Ok(())
}

/// The read half of a split `FramedStream`.
pub struct FramedReader {
    read: ReadHalf<PeerStream>,
    decoder: FrameDecoder,
    read_buffer: Vec<u8>,
}

impl FramedReader {
    /// The next frame; `Closed` at a clean end of stream.
    pub async fn read_frame(&mut self) -> Result<Frame, PeerError> {
        read_frame(&mut self.read, &mut self.decoder, &mut self.read_buffer).await
    }
}

/// Spawns the task that writes every message sent on the returned channel to `write` as one
/// `kind` frame, in order, until the channel closes or a write fails.
pub fn spawn_frame_writer<M: prost::Message + 'static>(
    mut write: FrameWriteHalf,
    kind: FrameKind,
) -> (mpsc::Sender<M>, tokio::task::JoinHandle<()>) {
    let (sender, mut messages) = mpsc::channel::<M>(FRAME_WRITER_QUEUE);
    let task = tokio::spawn(async move {
        let mut bytes = Vec::new();
        while let Some(message) = messages.recv().await {
            bytes.clear();
            peer_wire::encode_message(kind, &message, &mut bytes);
            if write_all(&mut write, &bytes).await.is_err() {
                return;
            }
        }
    });
    (sender, task)
}

/// Messages waiting for a frame writer.
const FRAME_WRITER_QUEUE: usize = 1024;

/// Reads from `source` until `decoder` has a whole frame.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    source: &mut R,
    decoder: &mut FrameDecoder,
    buffer: &mut [u8],
) -> Result<Frame, PeerError> {
    loop {
        if let Some(frame) = decoder.next_frame()? {
            return Ok(frame);
        }
        let n = source.read(buffer).await?;
        if n == 0 {
            return Err(PeerError::Closed);
        }
        decoder.push(&buffer[..n]);
    }
}

/// Dials `url`, introduces this member and waits for the peer's `Welcome`. A peer of another
/// cluster is refused here (and the peer refuses us).
pub async fn dial(
    url: &str,
    identity: &Identity,
    purpose: peerpb::Purpose,
    to: u64,
) -> Result<(FramedStream, peerpb::Welcome), PeerError> {
    let address = url_address(url)?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address.address))
        .await
        .map_err(|_| PeerError::Timeout)??;
    let _ = tcp.set_nodelay(true);
    let stream: PeerStream = if address.tls {
        let tls = identity
            .tls
            .as_ref()
            .ok_or_else(|| PeerError::NoTls(url.to_string()))?;
        let name = crate::server::tls::peer::server_name(&address.host).map_err(PeerError::Tls)?;
        let connecting = tls.connector.connect(name, tcp);
        let connected = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
            .await
            .map_err(|_| PeerError::Timeout)?;
        Box::new(connected.map_err(|e| PeerError::Tls(e.to_string()))?)
    } else {
        Box::new(tcp)
    };
    let mut stream = FramedStream::new(stream);
    let hello = peerpb::Hello {
        version: peer_wire::VERSION,
        purpose: purpose as i32,
        cluster_id: identity.cluster_id,
        from: identity.member_id,
        to,
    };
    let mut bytes = peer_wire::PREFACE.to_vec();
    peer_wire::encode_message(FrameKind::Hello, &hello, &mut bytes);
    stream.write_all(&bytes).await?;
    let frame = stream.read_frame_within(HANDSHAKE_TIMEOUT).await?;
    let welcome: peerpb::Welcome = peer_wire::decode_message(&frame, FrameKind::Welcome)?;
    if identity.cluster_id != 0 && welcome.cluster_id != identity.cluster_id {
        return Err(PeerError::ClusterMismatch {
            local: identity.cluster_id,
            remote: welcome.cluster_id,
        });
    }
    if welcome.removed {
        return Err(PeerError::Removed);
    }
    if !welcome.refused.is_empty() {
        return Err(PeerError::Refused(welcome.refused));
    }
    Ok((stream, welcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_give_host_and_port() {
        let plain = url_address("http://127.0.0.1:2380").unwrap();
        assert_eq!(
            (plain.address.as_str(), plain.host.as_str(), plain.tls),
            ("127.0.0.1:2380", "127.0.0.1", false)
        );
        assert_eq!(
            url_address("http://localhost:2380/").unwrap().address,
            "localhost:2380"
        );
        let secure = url_address("https://[::1]:2380").unwrap();
        assert_eq!(
            (secure.address.as_str(), secure.host.as_str(), secure.tls),
            ("[::1]:2380", "::1", true)
        );
        assert!(url_address("ftp://x:1").is_err());
        assert!(url_address("http://x").is_err());
        assert!(url_address("http://x:1/path").is_err());
    }
}
