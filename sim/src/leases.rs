//! Leases under faults: clients that grant leases, attach keys to them (in their own `lease/`
//! namespace, which the register checker never sees, because a revoke deletes keys behind its
//! back), keep them alive, read the keys, and revoke them or let them expire; and the lease oracle.
//!
//! The oracle checks safety: once a lease is known to be dead — its revoke was acknowledged, or a
//! linearizable read found one of its keys gone (keys are written once and only a revoke deletes
//! them) — no later linearizable read returns its keys, no later keep-alive succeeds, and no later
//! put can attach a key to it. And timing: a lease the cluster expired (its revoke applied with no
//! client revoke asked for before) did not expire sooner after its last acknowledged grant or
//! keep-alive than its TTL allows on any member's clock, as the clock models say they run (skew,
//! drift and jumps included).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use stet::node::{ClientError, ClientRequest, ClientResponse};
use stet::proto::etcdserverpb as pb;

use crate::client::Client;
use crate::clock::ClockModel;
pub use crate::records::{LeaseAction, LeaseOp, LeaseResult, Revocations};
use crate::world::{lock, World};

async fn perform(
    client: &mut Client,
    world: &World,
    member: u64,
    action: LeaseAction,
) -> LeaseResult {
    let request = match &action {
        LeaseAction::Grant { ttl_seconds } => ClientRequest::LeaseGrant(pb::LeaseGrantRequest {
            ttl: *ttl_seconds,
            id: 0,
        }),
        LeaseAction::Put { lease, key, value } => ClientRequest::Put(pb::PutRequest {
            key: key.clone(),
            value: value.clone(),
            lease: *lease,
            ..Default::default()
        }),
        LeaseAction::Get { key } => ClientRequest::Range(pb::RangeRequest {
            key: key.clone(),
            ..Default::default()
        }),
        LeaseAction::KeepAlive { lease } => {
            ClientRequest::LeaseKeepAlive(pb::LeaseKeepAliveRequest { id: *lease })
        }
        LeaseAction::Revoke { lease } => {
            ClientRequest::LeaseRevoke(pb::LeaseRevokeRequest { id: *lease })
        }
    };
    let invoke_us = world.elapsed().as_micros() as u64;
    let reply = client.call(member, request).await;
    let complete_us = world.elapsed().as_micros() as u64;
    let ttl_seconds = match &reply {
        Some(Ok(ClientResponse::LeaseGrant(r))) => Some(r.ttl),
        Some(Ok(ClientResponse::LeaseKeepAlive(r))) => Some(r.ttl),
        _ => None,
    };
    let result = match reply {
        None | Some(Err(ClientError::Timeout)) => LeaseResult::Unknown,
        Some(Err(error)) => LeaseResult::Failed(error.to_string()),
        Some(Ok(ClientResponse::LeaseGrant(r))) => LeaseResult::Ok(r.id),
        Some(Ok(ClientResponse::Range(r))) => {
            LeaseResult::Value(r.kvs.first().map(|kv| kv.value.clone()))
        }
        Some(Ok(ClientResponse::LeaseKeepAlive(r))) if r.ttl <= 0 => {
            LeaseResult::Failed(format!("keep-alive answered ttl {}", r.ttl))
        }
        Some(Ok(_)) => LeaseResult::Ok(0),
    };
    lock(&world.lease_history).push(LeaseOp {
        client: client.id,
        action,
        invoke_us,
        complete_us,
        result: result.clone(),
        ttl_seconds,
    });
    result
}

/// Keep-alives go to the leader half the time, otherwise to any member (a follower forwards them
/// to the leader, while leadership may be moving).
fn keep_alive_target(world: &World, members: &[u64]) -> u64 {
    let leader = world.leader();
    let mut rng = madsim::rand::thread_rng();
    match leader {
        Some(leader) if rng.gen_bool(0.5) => leader,
        _ => members[rng.gen_range(0..members.len())],
    }
}

fn random_member(members: &[u64]) -> u64 {
    members[madsim::rand::thread_rng().gen_range(0..members.len())]
}

/// A lease client: grant, attach keys, keep alive and read, then revoke or let expire, then probe
/// that the lease is gone; over and over until `until`.
pub async fn lease_workload(world: Arc<World>, id: u64, members: Vec<u64>, until: Duration) {
    let Ok(mut client) = Client::connect(world.clone(), id, crate::net::client_ip(id)).await else {
        return;
    };
    let mut seq = 0u64;
    while world.elapsed() < until {
        let ttl_seconds = madsim::rand::thread_rng().gen_range(2..6);
        let grant = LeaseAction::Grant { ttl_seconds };
        let LeaseResult::Ok(lease) =
            perform(&mut client, &world, random_member(&members), grant).await
        else {
            madsim::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let mut keys = Vec::new();
        for _ in 0..madsim::rand::thread_rng().gen_range(1..4) {
            seq += 1;
            let key = format!("lease/c{id}-{seq}").into_bytes();
            let value = format!("c{id}-{seq}-l{lease:x}").into_bytes();
            let put = LeaseAction::Put {
                lease,
                key: key.clone(),
                value,
            };
            perform(&mut client, &world, random_member(&members), put).await;
            keys.push(key);
        }
        let rounds = madsim::rand::thread_rng().gen_range(1..6);
        for _ in 0..rounds {
            let keep = LeaseAction::KeepAlive { lease };
            perform(
                &mut client,
                &world,
                keep_alive_target(&world, &members),
                keep,
            )
            .await;
            let key = keys[madsim::rand::thread_rng().gen_range(0..keys.len())].clone();
            let get = LeaseAction::Get { key };
            perform(&mut client, &world, random_member(&members), get).await;
            madsim::time::sleep(Duration::from_millis(500)).await;
        }
        if madsim::rand::thread_rng().gen_bool(0.7) {
            let revoke = LeaseAction::Revoke { lease };
            perform(&mut client, &world, random_member(&members), revoke).await;
        } else {
            // Let it expire (when, the leader's clock decides).
            let wait = Duration::from_secs(ttl_seconds as u64 + 2);
            madsim::time::sleep(wait).await;
        }
        // Right after the revoke, while a new leader may still be applying it.
        let keep = LeaseAction::KeepAlive { lease };
        let leader = keep_alive_target(&world, &members);
        perform(&mut client, &world, leader, keep).await;
        for key in &keys {
            let get = LeaseAction::Get { key: key.clone() };
            perform(&mut client, &world, random_member(&members), get).await;
        }
        let keep = LeaseAction::KeepAlive { lease };
        perform(
            &mut client,
            &world,
            keep_alive_target(&world, &members),
            keep,
        )
        .await;
        seq += 1;
        let late = LeaseAction::Put {
            lease,
            key: format!("lease/c{id}-{seq}").into_bytes(),
            value: format!("c{id}-{seq}-late").into_bytes(),
        };
        perform(&mut client, &world, random_member(&members), late).await;
    }
}

/// What the lease oracle checked.
#[derive(Debug, Clone, Default)]
pub struct LeaseStats {
    pub leases: usize,
    pub dead: usize,
    pub checked_after_death: usize,
    /// Expiries whose timing was checked.
    pub expiries_timed: usize,
}

/// A key's lease, its value, and when its put was acknowledged (if it was).
type Attached<'a> = (i64, &'a [u8], Option<u64>);

/// Checks the lease history (see the module comment).
pub fn check_leases(history: &[LeaseOp]) -> Result<LeaseStats, String> {
    let mut stats = LeaseStats::default();
    let mut attached: BTreeMap<&[u8], Attached> = BTreeMap::new();
    for op in history {
        if let LeaseAction::Put { lease, key, value } = &op.action {
            let acked = matches!(op.result, LeaseResult::Ok(_)).then_some(op.complete_us);
            attached.insert(key, (*lease, value, acked));
        }
        if let (LeaseAction::Grant { .. }, LeaseResult::Ok(_)) = (&op.action, &op.result) {
            stats.leases += 1;
        }
    }
    // lease → (when it was known dead, why)
    let mut dead: BTreeMap<i64, (u64, String)> = BTreeMap::new();
    let mut died = |lease: i64, at: u64, why: String| {
        let entry = dead.entry(lease).or_insert((at, why.clone()));
        if at < entry.0 {
            *entry = (at, why);
        }
    };
    for op in history {
        match (&op.action, &op.result) {
            (LeaseAction::Revoke { lease }, LeaseResult::Ok(_)) => died(
                *lease,
                op.complete_us,
                format!("revoke acknowledged at {}us", op.complete_us),
            ),
            (LeaseAction::Get { key }, LeaseResult::Value(None)) => {
                if let Some(&(lease, _, Some(put_at))) = attached.get(key.as_slice()) {
                    if put_at < op.invoke_us {
                        let why = format!(
                            "key {} read as gone at {}us",
                            String::from_utf8_lossy(key),
                            op.complete_us
                        );
                        died(lease, op.complete_us, why);
                    }
                }
            }
            _ => {}
        }
    }
    stats.dead = dead.len();
    for op in history {
        let lease = match &op.action {
            LeaseAction::Put { lease, .. } | LeaseAction::KeepAlive { lease } => *lease,
            LeaseAction::Get { key } => match attached.get(key.as_slice()) {
                Some(&(lease, value, _)) => {
                    if let LeaseResult::Value(Some(read)) = &op.result {
                        if read.as_slice() != value {
                            return Err(format!(
                                "client {} read {} = {} but only {} was ever written",
                                op.client,
                                String::from_utf8_lossy(key),
                                String::from_utf8_lossy(read),
                                String::from_utf8_lossy(value)
                            ));
                        }
                    }
                    lease
                }
                None => continue,
            },
            _ => continue,
        };
        let Some((dead_at, why)) = dead.get(&lease) else {
            continue;
        };
        if op.invoke_us <= *dead_at {
            continue;
        }
        stats.checked_after_death += 1;
        let succeeded = match &op.result {
            LeaseResult::Ok(_) => true,
            LeaseResult::Value(v) => v.is_some(),
            LeaseResult::Failed(_) | LeaseResult::Unknown => false,
        };
        if succeeded {
            return Err(format!(
                "lease {lease:x} was dead ({why}), yet client {}'s {:?} invoked at {}us \
                 succeeded: {:?}",
                op.client, op.action, op.invoke_us, op.result
            ));
        }
    }
    Ok(stats)
}

/// The timing half of the lease oracle: no lease the cluster expired did so before its TTL had
/// passed since its last acknowledged renewal, on any of `clocks` (the members' clock models).
/// Returns how many expiries it checked.
pub fn check_expiry_timing(
    history: &[LeaseOp],
    revocations: &Revocations,
    clocks: &[ClockModel],
) -> Result<usize, String> {
    let mut checked = 0;
    for (&lease, &revoked_us) in revocations {
        let revoked_by_client = history
            .iter()
            .any(|op| op.action == LeaseAction::Revoke { lease } && op.invoke_us <= revoked_us);
        if revoked_by_client {
            continue;
        }
        let renewal = history
            .iter()
            .filter(|op| op.invoke_us < revoked_us)
            .filter_map(|op| {
                let renews = match (&op.action, &op.result) {
                    (LeaseAction::Grant { .. }, LeaseResult::Ok(id)) => *id == lease,
                    (LeaseAction::KeepAlive { lease: l }, LeaseResult::Ok(_)) => *l == lease,
                    _ => false,
                };
                let ttl = op.ttl_seconds.filter(|ttl| *ttl > 0)?;
                renews.then_some((op.invoke_us, ttl))
            })
            .max();
        let Some((renewed_us, ttl_seconds)) = renewal else {
            continue;
        };
        checked += 1;
        let ttl = Duration::from_secs(ttl_seconds as u64);
        let renewed = Duration::from_micros(renewed_us);
        let earliest = clocks
            .iter()
            .map(|clock| first_reaching(clock, renewed, ttl))
            .min()
            .unwrap_or(renewed + ttl);
        let revoked = Duration::from_micros(revoked_us);
        if revoked < earliest {
            return Err(format!(
                "lease {lease:x} (TTL {ttl_seconds}s, last renewed by a request invoked at \
                 {renewed:?}) expired at {revoked:?}, before {earliest:?}, the earliest any \
                 member's clock could have counted its TTL down"
            ));
        }
    }
    Ok(checked)
}

/// The first global time at which `clock` has advanced `by` past where it stood at `from`.
fn first_reaching(clock: &ClockModel, from: Duration, by: Duration) -> Duration {
    let target = clock.local(from) + by;
    let (mut low, mut high) = (from, from + by * 4 + Duration::from_secs(1));
    while high - low > Duration::from_micros(1) {
        let middle = low + (high - low) / 2;
        if clock.local(middle) >= target {
            high = middle;
        } else {
            low = middle;
        }
    }
    high
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(action: LeaseAction, invoke_us: u64, complete_us: u64, result: LeaseResult) -> LeaseOp {
        LeaseOp {
            client: 1,
            action,
            invoke_us,
            complete_us,
            result,
            ttl_seconds: None,
        }
    }

    fn renewal(action: LeaseAction, invoke_s: u64, result: LeaseResult, ttl: i64) -> LeaseOp {
        LeaseOp {
            ttl_seconds: Some(ttl),
            ..op(
                action,
                invoke_s * 1_000_000,
                invoke_s * 1_000_000 + 10,
                result,
            )
        }
    }

    #[test]
    fn a_lease_expiring_after_its_ttl_passes_and_one_expiring_early_is_caught() {
        let grant = renewal(
            LeaseAction::Grant { ttl_seconds: 5 },
            1,
            LeaseResult::Ok(7),
            5,
        );
        let keep = renewal(
            LeaseAction::KeepAlive { lease: 7 },
            3,
            LeaseResult::Ok(0),
            5,
        );
        let history = [grant, keep];
        let exact = [ClockModel::exact()];
        let on_time = Revocations::from([(7, 8_200_000)]);
        assert_eq!(check_expiry_timing(&history, &on_time, &exact), Ok(1));
        let early = Revocations::from([(7, 7_600_000)]);
        let err = check_expiry_timing(&history, &early, &exact).unwrap_err();
        assert!(err.contains("before"), "{err}");
        // A clock running 10% fast may count 5 s down in 4.55 s.
        let fast = [ClockModel {
            offset_us: 0,
            drift_ppm: 100_000,
            jumps: Vec::new(),
        }];
        assert_eq!(check_expiry_timing(&history, &early, &fast), Ok(1));
        // A revoke the client asked for is not an expiry.
        let mut asked = history.to_vec();
        asked.push(op(
            LeaseAction::Revoke { lease: 7 },
            7_000_000,
            7_400_000,
            LeaseResult::Ok(0),
        ));
        assert_eq!(check_expiry_timing(&asked, &early, &exact), Ok(0));
    }

    fn put(at: u64) -> LeaseOp {
        let action = LeaseAction::Put {
            lease: 7,
            key: b"lease/a".to_vec(),
            value: b"v".to_vec(),
        };
        op(action, at, at + 1, LeaseResult::Ok(0))
    }

    #[test]
    fn a_key_of_a_revoked_lease_must_be_gone() {
        let revoke = op(LeaseAction::Revoke { lease: 7 }, 10, 20, LeaseResult::Ok(0));
        let get = |at, value: Option<&[u8]>| {
            let action = LeaseAction::Get {
                key: b"lease/a".to_vec(),
            };
            op(
                action,
                at,
                at + 5,
                LeaseResult::Value(value.map(<[u8]>::to_vec)),
            )
        };
        check_leases(&[put(0), get(15, Some(b"v")), revoke.clone(), get(25, None)]).unwrap();
        let err = check_leases(&[put(0), revoke, get(25, Some(b"v"))]).unwrap_err();
        assert!(err.contains("was dead"), "{err}");
    }

    #[test]
    fn a_keep_alive_after_the_keys_were_seen_gone_must_fail() {
        let gone = op(
            LeaseAction::Get {
                key: b"lease/a".to_vec(),
            },
            10,
            20,
            LeaseResult::Value(None),
        );
        let keep = op(
            LeaseAction::KeepAlive { lease: 7 },
            30,
            31,
            LeaseResult::Ok(0),
        );
        let err = check_leases(&[put(0), gone, keep]).unwrap_err();
        assert!(err.contains("KeepAlive"), "{err}");
    }
}
