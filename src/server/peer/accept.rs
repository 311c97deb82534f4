//! The peer listeners' side: every accepted connection must open with the preface and a `Hello`
//! from this cluster (a member of another cluster is refused, and both sides log "cluster ID
//! mismatch" with both IDs). Then, by purpose: raft messages (and the chunks of a state sent
//! ahead of a snapshot message) flow to the driver; a membership query
//! is answered; forwarded requests are served by the local driver and answered on the connection.

use std::sync::Arc;

use crate::server::stop::Stopped;
use raft::eraftpb::Message;
use tokio::net::{TcpListener, TcpStream};

use super::conn::{spawn_frame_writer, FramedStream, PeerError, PeerStream, HANDSHAKE_TIMEOUT};
use super::{forward, AddressBook};
use crate::node::{ClientRequest, StateChunk};
use crate::peer_wire::{self, FrameKind, RaftReassembler};
use crate::proto::etcdserverpb as pb;
use crate::proto::stetpeerpb as peerpb;
use crate::server::env::Environment;
use crate::server::handle::DriverHandle;
use crate::server::tls::peer::PeerTls;
use crate::types::MemberId;

/// The largest state chunk accepted: the sender cuts chunks of `STATE_CHUNK_BYTES`, and a chunk
/// holds whole rows, so one value as large as a request may allow goes past it.
const MAX_STATE_CHUNK_BYTES: usize = 64 << 20;

/// Accepts peer connections on `listener` until `stopped` says stop; then every connection it
/// accepted is closed too (a member that stops, to start again in the same process after a
/// full disk, leaves nothing holding its port or talking for it).
pub async fn serve(
    log: slog::Logger,
    (listener, tls): (TcpListener, Option<Arc<PeerTls>>),
    driver: DriverHandle,
    addresses: AddressBook,
    env: Arc<dyn Environment>,
    stopped: Stopped,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped.wait() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                let driver = driver.clone();
                let addresses = addresses.clone();
                let log = log.clone();
                let env = env.clone();
                let stopped = stopped.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let Some(stream) = secure(stream, tls.as_deref(), &log).await else {
                        return;
                    };
                    let served = serve_connection(stream, driver, addresses, env.as_ref(), &log);
                    let served = tokio::select! {
                        biased;
                        _ = stopped.wait() => return,
                        served = served => served,
                    };
                    if let Err(error) = served {
                        match error {
                            PeerError::Closed => {}
                            error => {
                                slog::debug!(log, "peer connection ended"; "remote" => %remote, "error" => %error)
                            }
                        }
                    }
                });
            }
            Err(error) => {
                slog::warn!(log, "accepting a peer connection failed"; "error" => %error);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// The connection as a peer stream: TLS first on an https port, where a member whose
/// certificate the peer CA did not sign (or not with the allowed name) is turned away before it
/// can say anything.
async fn secure(
    stream: TcpStream,
    tls: Option<&PeerTls>,
    log: &slog::Logger,
) -> Option<PeerStream> {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return Some(Box::new(stream));
    };
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await;
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            slog::warn!(log, "refused a peer connection: TLS handshake failed"; "error" => %error);
            return None;
        }
        Err(_) => {
            slog::warn!(log, "refused a peer connection: no TLS handshake in time");
            return None;
        }
    };
    if let Err(why) = tls.admit(stream.get_ref().1.peer_certificates()) {
        slog::warn!(log, "refused a peer connection"; "reason" => %why);
        return None;
    }
    Some(Box::new(stream))
}

async fn serve_connection(
    stream: PeerStream,
    driver: DriverHandle,
    addresses: AddressBook,
    env: &dyn Environment,
    log: &slog::Logger,
) -> Result<(), PeerError> {
    let mut stream = FramedStream::new(stream);
    stream.read_preface().await?;
    let frame = stream.read_frame_within(HANDSHAKE_TIMEOUT).await?;
    let hello: peerpb::Hello = peer_wire::decode_message(&frame, FrameKind::Hello)?;
    let status = driver.status();
    let removed = hello.from != 0 && addresses.is_removed(hello.from);
    let mut refused = refusal(&hello, status.cluster_id, status.member_id, log);
    if removed && refused.is_empty() {
        slog::warn!(log, "refused a member removed from the cluster"; "remote_member_id" => %format!("{:x}", hello.from));
        refused = format!("member {:x} was removed from the cluster", hello.from);
    }
    let purpose = peerpb::Purpose::try_from(hello.purpose).unwrap_or_default();
    let answers_members = refused.is_empty() && purpose == peerpb::Purpose::Members;
    let members = if answers_members {
        match driver
            .call_local(
                ClientRequest::MemberList(pb::MemberListRequest::default()),
                None,
            )
            .await
        {
            Ok(crate::node::ClientResponse::MemberList(list)) => list.members,
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let welcome = peerpb::Welcome {
        cluster_id: status.cluster_id,
        member_id: status.member_id,
        refused: refused.clone(),
        members,
        removed,
        clock_micros: env.wall_clock_micros(),
        // Read after the membership: never older than it.
        applied_index: if answers_members {
            driver.status().applied_index
        } else {
            0
        },
        removed_ids: if answers_members {
            addresses.removed()
        } else {
            Vec::new()
        },
    };
    let mut bytes = Vec::new();
    peer_wire::encode_message(FrameKind::Welcome, &welcome, &mut bytes);
    stream.write_all(&bytes).await?;
    if !refused.is_empty() {
        return Ok(());
    }
    match purpose {
        peerpb::Purpose::Raft => receive_raft(stream, hello.from, driver, addresses, log).await,
        peerpb::Purpose::Forward => serve_forwarded(stream, driver).await,
        peerpb::Purpose::HashKv => serve_hash_kv(stream, driver).await,
        peerpb::Purpose::Members | peerpb::Purpose::Probe | peerpb::Purpose::Unspecified => Ok(()),
    }
}

/// How long a member asked for its hash at a revision waits to apply that revision.
const HASH_KV_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers one corruption-check question: this member's hash of its history up to a revision.
async fn serve_hash_kv(mut stream: FramedStream, driver: DriverHandle) -> Result<(), PeerError> {
    let frame = stream.read_frame_within(HANDSHAKE_TIMEOUT).await?;
    let ask: peerpb::HashKvAsk = peer_wire::decode_message(&frame, FrameKind::HashKvAsk)?;
    // The asking leader applied the revision first; give this member a moment to apply it too
    // rather than answer "future revision" to every check under load.
    driver
        .applied_revision(ask.revision, HASH_KV_CATCH_UP)
        .await;
    let request = ClientRequest::HashKv(pb::HashKvRequest {
        revision: ask.revision,
    });
    let reply = match driver.call_local(request, None).await {
        Ok(crate::node::ClientResponse::HashKv(hash)) => peerpb::HashKvReply {
            hash: hash.hash,
            compact_revision: hash.compact_revision,
            error: String::new(),
        },
        Ok(_) => peerpb::HashKvReply {
            error: "an answer other than a hash".to_string(),
            ..Default::default()
        },
        Err(error) => peerpb::HashKvReply {
            error: error.to_string(),
            ..Default::default()
        },
    };
    let mut bytes = Vec::new();
    peer_wire::encode_message(FrameKind::HashKvReply, &reply, &mut bytes);
    stream.write_all(&bytes).await
}

/// Why a `Hello` is refused, or empty if it is welcome. Logs a cluster mismatch, as etcd does.
fn refusal(hello: &peerpb::Hello, cluster_id: u64, member_id: u64, log: &slog::Logger) -> String {
    if hello.version != peer_wire::VERSION {
        return format!(
            "unsupported peer protocol version {} (this member speaks {})",
            hello.version,
            peer_wire::VERSION
        );
    }
    if hello.cluster_id != 0 && hello.cluster_id != cluster_id {
        slog::error!(log, "cluster ID mismatch: refusing a peer of another cluster"; "local_cluster_id" => %format!("{cluster_id:x}"), "remote_cluster_id" => %format!("{:x}", hello.cluster_id), "remote_member_id" => %format!("{:x}", hello.from));
        return format!(
            "cluster ID mismatch: local cluster {cluster_id:x}, the peer's cluster {:x}",
            hello.cluster_id
        );
    }
    if hello.to != 0 && hello.to != member_id {
        return format!(
            "member ID mismatch: this is member {member_id:x}, not {:x}",
            hello.to
        );
    }
    let purpose = peerpb::Purpose::try_from(hello.purpose).unwrap_or_default();
    if purpose != peerpb::Purpose::Members && (hello.cluster_id == 0 || hello.from == 0) {
        return "only a membership query may come from a member that does not know its cluster"
            .to_string();
    }
    String::new()
}

/// Hands every raft message on the connection to the driver; messages claiming another sender
/// than the handshake's are dropped. The connection of a member removed meanwhile is closed: its
/// next dial is refused and tells it so.
async fn receive_raft(
    stream: FramedStream,
    from: u64,
    driver: DriverHandle,
    addresses: AddressBook,
    log: &slog::Logger,
) -> Result<(), PeerError> {
    let (mut reader, _write) = stream.into_split();
    let mut reassembler = RaftReassembler::default();
    let mut states = RaftReassembler::for_state_chunks(MAX_STATE_CHUNK_BYTES);
    loop {
        let frame = reader.read_frame().await?;
        let frame_bytes = peer_wire::HEADER_LEN + frame.payload.len();
        driver.metrics().peer_received(from, frame_bytes);
        if matches!(frame.kind, FrameKind::State | FrameKind::StatePart) {
            let Some(bytes) = states.accept(frame)? else {
                continue;
            };
            if !deliver_state_chunk(&bytes, from, &driver, log).await {
                return Ok(());
            }
            continue;
        }
        let Some(bytes) = reassembler.accept(frame)? else {
            continue;
        };
        let message = match <Message as protobuf::Message>::parse_from_bytes(&bytes) {
            Ok(message) => message,
            Err(error) => {
                slog::warn!(log, "undecodable raft message from a peer; closing"; "peer" => %format!("{from:x}"), "error" => %error);
                return Ok(());
            }
        };
        if addresses.is_removed(from) {
            slog::info!(log, "closing the connection of a removed member"; "peer" => %format!("{from:x}"));
            return Ok(());
        }
        if message.from != from {
            slog::warn!(log, "dropped a raft message whose sender is not the connection's member"; "peer" => %format!("{from:x}"), "claimed" => %format!("{:x}", message.from));
            continue;
        }
        if !driver.deliver_peer_message(message).await {
            return Ok(());
        }
    }
}

/// Hands the driver a state chunk from `from`; false if the connection should close (the chunk
/// does not decode, or the driver stopped).
async fn deliver_state_chunk(
    bytes: &[u8],
    from: u64,
    driver: &DriverHandle,
    log: &slog::Logger,
) -> bool {
    let chunk = match <peerpb::StateChunk as prost::Message>::decode(bytes) {
        Ok(chunk) => chunk,
        Err(error) => {
            slog::warn!(log, "undecodable state chunk from a peer; closing"; "peer" => %format!("{from:x}"), "error" => %error);
            return false;
        }
    };
    let chunk = StateChunk {
        from: MemberId(from),
        index: chunk.index,
        term: chunk.term,
        seq: chunk.seq,
        rows: chunk.rows,
    };
    driver.deliver_state_chunk(chunk).await
}

/// Serves forwarded requests: each is handled by the local driver (never forwarded again) and
/// answered, in completion order, on the same connection.
async fn serve_forwarded(stream: FramedStream, driver: DriverHandle) -> Result<(), PeerError> {
    let (mut reader, write) = stream.into_split();
    let (replies, writer) =
        spawn_frame_writer::<peerpb::ForwardReply>(write, FrameKind::ForwardReply);
    let driver = Arc::new(driver);
    let result = loop {
        let frame = match reader.read_frame().await {
            Ok(frame) => frame,
            Err(error) => break Err(error),
        };
        let request: peerpb::ForwardRequest =
            match peer_wire::decode_message(&frame, FrameKind::ForwardRequest) {
                Ok(request) => request,
                Err(error) => break Err(error.into()),
            };
        let driver = driver.clone();
        let replies = replies.clone();
        tokio::spawn(async move {
            let reply = forward::serve(&driver, request).await;
            let _ = replies.send(reply).await;
        });
    };
    drop(replies);
    let _ = writer.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discard() -> slog::Logger {
        slog::Logger::root(slog::Discard, slog::o!())
    }

    fn hello(purpose: peerpb::Purpose, cluster_id: u64, from: u64, to: u64) -> peerpb::Hello {
        peerpb::Hello {
            version: peer_wire::VERSION,
            purpose: purpose as i32,
            cluster_id,
            from,
            to,
        }
    }

    #[test]
    fn a_peer_of_another_cluster_is_refused_with_both_ids() {
        let why = refusal(
            &hello(peerpb::Purpose::Raft, 0xbad, 2, 1),
            0xc1,
            1,
            &discard(),
        );
        assert!(why.starts_with("cluster ID mismatch"), "{why}");
        assert!(why.contains("c1") && why.contains("bad"), "{why}");
    }

    #[test]
    fn a_connection_meant_for_another_member_is_refused() {
        let why = refusal(
            &hello(peerpb::Purpose::Raft, 0xc1, 2, 3),
            0xc1,
            1,
            &discard(),
        );
        assert!(why.starts_with("member ID mismatch"), "{why}");
    }

    #[test]
    fn only_a_membership_query_may_come_without_identity() {
        assert_eq!(
            refusal(
                &hello(peerpb::Purpose::Members, 0, 0, 0),
                0xc1,
                1,
                &discard()
            ),
            ""
        );
        assert!(!refusal(&hello(peerpb::Purpose::Raft, 0, 0, 1), 0xc1, 1, &discard()).is_empty());
        assert_eq!(
            refusal(
                &hello(peerpb::Purpose::Raft, 0xc1, 2, 1),
                0xc1,
                1,
                &discard()
            ),
            ""
        );
    }

    #[test]
    fn another_protocol_version_is_refused() {
        let mut other = hello(peerpb::Purpose::Raft, 0xc1, 2, 1);
        other.version = 99;
        assert!(refusal(&other, 0xc1, 1, &discard()).contains("version"));
    }
}
