//! The backup oracle: a backup taken from a member (`Maintenance.Snapshot`, streamed while the
//! member runs) restores — through the same code `stetutl snapshot restore` runs — to the state it
//! was taken from: the restored store's `hash_kv` at its revision equals the member's `HashKV` at
//! that revision (when no compaction moved in between). A backup that does not parse or restore
//! is a failure too: it was taken from a healthy member.

use std::sync::Arc;

use stet::backup;
use stet::engine::Engine;
use stet::kv::KvStore;
use stet::node::{ClientRequest, ClientResponse};
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
        let Ok(ClientResponse::HashKv(answer)) = crate::rpc::call(channel, request).await else {
            continue;
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
