//! The backup oracle: a backup taken from a member (`Maintenance.Snapshot`, streamed while the
//! member runs) restores — through the same code `stetutl snapshot restore` runs — to the state it
//! was taken from: the restored store's `hash_kv` at its revision equals the member's `HashKV` at
//! that revision (when no compaction moved in between). A backup that does not parse or restore
//! is a failure too: it was taken from a healthy member, and so is a member that served the backup
//! and then cannot hash the revision it served (see `excused`).

use std::sync::Arc;

use stet::backup;
use stet::engine::Engine;
use stet::kv::{KvError, KvStore};
use stet::node::request::GrpcCode;
use stet::node::{ClientError, ClientRequest, ClientResponse};
use stet::proto::etcdserverpb::{
    maintenance_client::MaintenanceClient, HashKvRequest, SnapshotRequest,
};

use crate::client::Client;
use crate::world::World;

/// The restoring engine's page cache.
const CACHE_BYTES: usize = 1 << 20;

/// Takes a backup from the first member that answers and checks it; `Err` says what is wrong.
pub async fn check(world: Arc<World>, members: Vec<u64>) -> Result<(), String> {
    let Ok(mut client) = Client::connect(world.clone(), 1001, crate::net::client_ip(201)).await
    else {
        return Ok(());
    };
    for member in members {
        let Some(channel) = client.channel(member) else {
            continue;
        };
        let Some(bytes) = fetch(channel.clone()).await else {
            continue;
        };
        let (revision, compacted, hash) = restored(&bytes)
            .map_err(|why| format!("the backup from member {member} does not restore: {why}"))?;
        let request = ClientRequest::HashKv(HashKvRequest { revision });
        let answer = match crate::rpc::call(channel, request).await {
            Ok(ClientResponse::HashKv(answer)) => answer,
            Ok(other) => {
                return Err(format!(
                    "member {member} answered HashKV at revision {revision} with {other:?}"
                ))
            }
            Err(error) if excused(&error) => {
                world.trace(format!(
                    "backup oracle: member {member} did not hash revision {revision}: {error}"
                ));
                continue;
            }
            Err(error) => {
                return Err(format!(
                    "member {member} served a backup at revision {revision}, then refused \
                     HashKV there: {error}"
                ))
            }
        };
        if answer.compact_revision != compacted {
            world.trace(format!(
                "backup oracle: member {member} compacted since its backup; not compared"
            ));
            return Ok(());
        }
        if answer.hash != hash {
            return Err(format!(
                "the backup from member {member} restores to hash {hash:08x} at revision \
                 {revision}, the member's hash there is {:08x}",
                answer.hash
            ));
        }
        world.trace(format!(
            "backup oracle: member {member}'s backup restores to its hash at revision {revision}"
        ));
        return Ok(());
    }
    world.trace("backup oracle: no member answered; nothing compared");
    Ok(())
}

/// Whether a member that just served a backup may refuse `HashKV` at its revision with `error`:
/// the connection was lost or the member stopped, or a compaction moved past the revision. A
/// local hash waits for no leader, no quorum and no queue, and the member already holds the
/// revision, so a timeout, "no leader", "too many requests" or "future revision" is a bug.
fn excused(error: &ClientError) -> bool {
    let compacted = KvError::Compacted {
        compact_revision: 0,
    }
    .to_string();
    match error {
        ClientError::Stopped | ClientError::Kv(KvError::Compacted { .. }) => true,
        ClientError::Forwarded { code, message } => {
            *code == GrpcCode::Unavailable || message.ends_with(&compacted)
        }
        _ => false,
    }
}

/// The whole backup a member streams, or `None` if the stream failed.
async fn fetch(channel: tonic::transport::Channel) -> Option<Vec<u8>> {
    let mut stream = MaintenanceClient::new(channel)
        .snapshot(SnapshotRequest {})
        .await
        .ok()?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await.ok()? {
        bytes.extend_from_slice(&message.blob);
    }
    Some(bytes)
}

/// The restored store's revision, compact revision and hash at that revision.
fn restored(bytes: &[u8]) -> Result<(i64, i64, u32), String> {
    let parsed = backup::parse(bytes).map_err(|e| e.to_string())?;
    let mut engine = Engine::in_memory(CACHE_BYTES).map_err(|e| e.to_string())?;
    parsed
        .restore_into(&mut engine)
        .map_err(|e| e.to_string())?;
    let kv = KvStore::from_engine(engine).map_err(|e| e.to_string())?;
    let revision = kv.current_revision();
    let (hash, compacted) = kv.hash_kv(revision).map_err(|e| e.to_string())?;
    Ok((revision, compacted, hash))
}
