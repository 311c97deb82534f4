//! One peer connection's plumbing: dialing a peer URL and the handshake (preface, `Hello`,
//! `Welcome`), and reading and writing frames on a TCP stream with time limits.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::peer_wire::{self, Frame, FrameDecoder, FrameKind, WireError};
use crate::proto::stetpeerpb as peerpb;

/// How long a dial may take, and how long the other side has to answer the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who this member is, as it introduces itself to peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: u64,
    pub member_id: u64,
}

/// Why talking to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("bad peer URL {0:?}: must have the form http://host:port")]
    BadUrl(String),
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

/// `host:port` of an `http://host:port` peer URL.
pub fn url_address(url: &str) -> Result<String, PeerError> {
    let bad = || PeerError::BadUrl(url.to_string());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(bad)?
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
        return Err(bad());
    }
    Ok(rest.to_string())
}

/// How much one read from a peer connection takes at most. Small enough that a connection that
/// carries only heartbeats does not hold (and fault in) a large buffer; a large append is read in
/// several reads.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A TCP stream carrying frames.
pub struct FramedStream {
    stream: TcpStream,
    decoder: FrameDecoder,
    read_buffer: Vec<u8>,
}

impl FramedStream {
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
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
pub type FrameWriteHalf = WriteHalf<TcpStream>;

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
    read: ReadHalf<TcpStream>,
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
    identity: Identity,
    purpose: peerpb::Purpose,
    to: u64,
) -> Result<(FramedStream, peerpb::Welcome), PeerError> {
    let address = url_address(url)?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address))
        .await
        .map_err(|_| PeerError::Timeout)??;
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
        assert_eq!(
            url_address("http://127.0.0.1:2380").unwrap(),
            "127.0.0.1:2380"
        );
        assert_eq!(
            url_address("http://localhost:2380/").unwrap(),
            "localhost:2380"
        );
        assert!(url_address("https://x:1").is_err());
        assert!(url_address("http://x").is_err());
        assert!(url_address("http://x:1/path").is_err());
    }
}
