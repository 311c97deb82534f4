//! The bytes-in-use oracle. A member's `Status.db_size_in_use` is a measurement of its engine's
//! table pages, taken on the side after the file changed (`server/driver/in_use.rs`). Those pages
//! take less than the file, which also holds redb's header and its own small trees, and at least
//! what the live keys and values take. At the end of a run every running member has measured
//! its settled state (it measures within a second or so of any change, and of starting), so
//! `live bytes ≤ db_size_in_use < db_size` for each. A member reporting the file's size (never
//! measuring) or a figure short of its own data fails the run.

use std::sync::Arc;

use stet::proto::etcdserverpb::{
    kv_client::KvClient, maintenance_client::MaintenanceClient, RangeRequest, StatusRequest,
};

use crate::client::Client;
use crate::world::World;

/// Asks every member in `members` for its status and its keys; `Err` says what is wrong.
pub async fn check(world: Arc<World>, members: Vec<u64>) -> Result<(), String> {
    let Ok(mut client) = Client::connect(world.clone(), 1002, crate::net::client_ip(202)).await
    else {
        return Ok(());
    };
    for member in members {
        let Some(channel) = client.channel(member) else {
            continue;
        };
        let Ok(status) = MaintenanceClient::new(channel.clone())
            .status(StatusRequest {})
            .await
        else {
            world.trace(format!(
                "bytes-in-use oracle: member {member:x} gave no status"
            ));
            continue;
        };
        let status = status.into_inner();
        let (in_use, size) = (status.db_size_in_use, status.db_size);
        if in_use >= size {
            return Err(format!(
                "member {member:x} reports {in_use} bytes in use of a {size}-byte engine file: \
                 the tables' pages cannot take the whole file (never measured?)"
            ));
        }
        let Some(live) = live_bytes(KvClient::new(channel)).await else {
            continue;
        };
        if in_use < live {
            return Err(format!(
                "member {member:x} reports {in_use} bytes in use, less than its live keys and \
                 values take ({live} bytes)"
            ));
        }
        world.trace(format!(
            "bytes-in-use oracle: member {member:x}: {live} live ≤ {in_use} in use < {size}"
        ));
    }
    Ok(())
}

/// The bytes of every key and value the member holds now (a serializable read of it alone), or
/// `None` if it did not answer.
async fn live_bytes(mut kv: KvClient<tonic::transport::Channel>) -> Option<i64> {
    let everything = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        serializable: true,
        ..Default::default()
    };
    let answer = kv.range(everything).await.ok()?.into_inner();
    Some(
        answer
            .kvs
            .iter()
            .map(|kv| (kv.key.len() + kv.value.len()) as i64)
            .sum(),
    )
}
