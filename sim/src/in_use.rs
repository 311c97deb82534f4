//! The bytes-in-use oracle. A member's `Status.db_size_in_use` is a measurement of its engine's
//! table pages, taken on the side after the file changed (`server/driver/in_use.rs`), capped at
//! `db_size` (the file's allocated bytes). Those pages take at least what the live keys and
//! values take, and usually less than the file, which also holds redb's header and its own small
//! trees — but a file received from the leader can be written so densely that they take every
//! allocated byte (found by `clock` seed 120), so one member's figure may equal its file. At the
//! end of a run every running member has measured its settled state (it measures within a second
//! or so of any change; a member whose file changed in the last moments is asked again, a second
//! apart, up to `SETTLE_ATTEMPTS` times), so `live bytes ≤ db_size_in_use ≤ db_size` on each and
//! `db_size_in_use < db_size` on at least one. Members reporting their files' sizes (never
//! measuring) or a figure short of their own data fail the run.

use std::sync::Arc;

use stet::proto::etcdserverpb::{
    kv_client::KvClient, maintenance_client::MaintenanceClient, RangeRequest, StatusRequest,
};

use crate::client::Client;
use crate::world::World;

/// How often a member's figure is asked for again, a second apart, before a wrong one fails the
/// run: a member that just changed its file (a snapshot installed in the last moments of the
/// run) measures it within a second or so.
const SETTLE_ATTEMPTS: u32 = 4;

/// Asks every member in `members` for its status and its keys; `Err` says what is wrong.
pub async fn check(world: Arc<World>, members: Vec<u64>) -> Result<(), String> {
    let Ok(mut client) = Client::connect(world.clone(), 1002, crate::net::client_ip(202)).await
    else {
        return Ok(());
    };
    let (mut checked, mut whole_file) = (0, Vec::new());
    for member in members {
        let Some(channel) = client.channel(member) else {
            continue;
        };
        let mut attempt = 1;
        let examined = loop {
            match examine(&world, member, channel.clone()).await {
                Err(detail) if attempt < SETTLE_ATTEMPTS => {
                    world.trace(format!("bytes-in-use oracle: asking again: {detail}"));
                    attempt += 1;
                    madsim::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                other => break other?,
            }
        };
        if let Some(Figure { in_use, size }) = examined {
            checked += 1;
            if in_use == size {
                whole_file.push(format!("{member:x} ({size} bytes)"));
            }
        }
    }
    if checked > 0 && whole_file.len() == checked {
        return Err(format!(
            "every member reports its whole engine file in use ({}): never measured?",
            whole_file.join(", ")
        ));
    }
    Ok(())
}

/// A member's figures.
struct Figure {
    in_use: i64,
    size: i64,
}

/// One member's figure against its file and its live data now (`None` if it did not answer).
/// A figure equal to the file is not wrong by itself — a file received from the leader may be
/// written densely, with every allocated byte a table's page (the figure is capped at the file)
/// — but one above it, or below the live data, is.
async fn examine(
    world: &World,
    member: u64,
    channel: tonic::transport::Channel,
) -> Result<Option<Figure>, String> {
    let Ok(status) = MaintenanceClient::new(channel.clone())
        .status(StatusRequest {})
        .await
    else {
        world.trace(format!(
            "bytes-in-use oracle: member {member:x} gave no status"
        ));
        return Ok(None);
    };
    let status = status.into_inner();
    let (in_use, size) = (status.db_size_in_use, status.db_size);
    if in_use > size {
        return Err(format!(
            "member {member:x} reports {in_use} bytes in use of a {size}-byte engine file"
        ));
    }
    let Some(live) = live_bytes(KvClient::new(channel)).await else {
        return Ok(None);
    };
    if in_use < live {
        return Err(format!(
            "member {member:x} reports {in_use} bytes in use, less than its live keys and \
             values take ({live} bytes)"
        ));
    }
    world.trace(format!(
        "bytes-in-use oracle: member {member:x}: {live} live ≤ {in_use} in use ≤ {size}"
    ));
    Ok(Some(Figure { in_use, size }))
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
