//! Auth under faults (etcd once diverged when auth was enabled under load, etcd-io/etcd#14571):
//! an administrator (root) creates users and roles, then enables and disables authentication and
//! grants and revokes each user's permission on its own keys, one change at a time, while the
//! users read and write their own keys and each other's through every member, and members
//! crash. Users log in and keep a token per member (`session`). Their reads and writes go into
//! the register history too, so the linearizability checker sees them.
//!
//! Oracles (`oracle`): no request went through unless an auth state possible at the time allowed
//! it, none was denied unless one forbade it; at the end, authentication is disabled and every
//! member agrees on the auth store's revision (`settle`).

pub mod oracle;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tonic::Status;

use stet::auth::AuthError;
use stet::proto::authpb;
use stet::proto::etcdserverpb as pb;

use crate::checker::{Op, Operation, Outcome};
use crate::client::{self, Client};
use crate::wait;
use crate::world::{lock, World};
use oracle::{Change, Dimension, UserOp, Verdict};
use session::{Reply, Request, Session};

/// Users besides root, numbered 1..=USERS.
pub const USERS: u64 = 2;
/// Keys each user owns.
const KEYS_PER_USER: u64 = 3;
const ROOT_PASSWORD: &str = "root-secret";

fn user_name(user: u64) -> String {
    format!("u{user}")
}

fn password(user: u64) -> String {
    format!("secret-{user}")
}

fn role(user: u64) -> String {
    format!("r{user}")
}

/// User `owner`'s key number `n`: `a<owner>-<n>` (the register clients use `k…`).
fn key(owner: u64, n: u64) -> Vec<u8> {
    format!("a{owner}-{n}").into_bytes()
}

/// Every key of `owner`'s: the prefix `a<owner>-`.
fn owner_range(owner: u64) -> (Vec<u8>, Vec<u8>) {
    (
        format!("a{owner}-").into_bytes(),
        format!("a{owner}.").into_bytes(),
    )
}

/// Root with the root role, and each user with its role (no permission yet).
fn setup_requests() -> Vec<Request> {
    let add = |name: String, password: String| {
        Request::UserAdd(pb::AuthUserAddRequest {
            name,
            password,
            ..Default::default()
        })
    };
    let grant = |user: String, role: String| {
        Request::UserGrantRole(pb::AuthUserGrantRoleRequest { user, role })
    };
    let mut requests = vec![
        add("root".into(), ROOT_PASSWORD.into()),
        grant("root".into(), "root".into()),
    ];
    for user in 1..=USERS {
        requests.push(Request::RoleAdd(pb::AuthRoleAddRequest {
            name: role(user),
        }));
        requests.push(add(user_name(user), password(user)));
        requests.push(grant(user_name(user), role(user)));
    }
    requests
}

/// The request that sets `dimension` to `value`.
fn change_request(dimension: Dimension, value: bool) -> Request {
    match (dimension, value) {
        (Dimension::Enabled, true) => Request::AuthEnable,
        (Dimension::Enabled, false) => Request::AuthDisable,
        (Dimension::Granted(user), true) => {
            let (key, range_end) = owner_range(user);
            Request::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest {
                name: role(user),
                perm: Some(authpb::Permission {
                    perm_type: authpb::permission::Type::Readwrite as i32,
                    key,
                    range_end,
                }),
            })
        }
        (Dimension::Granted(user), false) => {
            let (key, range_end) = owner_range(user);
            Request::RoleRevokePermission(pb::AuthRoleRevokePermissionRequest {
                role: role(user),
                key,
                range_end,
            })
        }
    }
}

/// Answers that settle a change as surely as a success: what it creates already exists, what
/// it revokes is already gone.
fn settled_anyway(status: &Status) -> bool {
    [
        AuthError::UserAlreadyExist,
        AuthError::RoleAlreadyExist,
        AuthError::PermissionNotGranted,
    ]
    .into_iter()
    .any(|error| session::is(status, error))
}

/// How sending a change until it is settled went.
struct Sent {
    settled: bool,
    /// An attempt got no definite answer: it may still take effect.
    lingers: bool,
}

/// Sends `request` as `session`, to live members in turn, until an answer settles it or
/// `deadline` (global time) passes.
async fn until_settled(
    world: &World,
    client: &mut Client,
    session: &mut Session,
    members: &[u64],
    request: &Request,
    deadline: Duration,
) -> Sent {
    let mut lingers = false;
    while world.elapsed() < deadline {
        let member = {
            let targets = world.live_members(members);
            targets[madsim::rand::thread_rng().gen_range(0..targets.len())]
        };
        match session.call(client, member, request).await {
            Some(Ok(_)) => {
                return Sent {
                    settled: true,
                    lingers,
                }
            }
            Some(Err(status)) if settled_anyway(&status) => {
                return Sent {
                    settled: true,
                    lingers,
                }
            }
            // No answer, or one that leaves its fate open (or a refusal: counted alike, which
            // only widens what the oracle takes as possible).
            _ => lingers = true,
        }
        let pause = madsim::rand::thread_rng().gen_range(50..200);
        wait::Deadline::after(Duration::from_millis(pause)).await;
    }
    Sent {
        settled: false,
        lingers,
    }
}

/// The administrator: sets up users and roles, then changes one dimension at a time until
/// `until`, recording each change for the oracle.
pub async fn admin_workload(world: Arc<World>, id: u64, members: Vec<u64>, until: Duration) {
    let Ok(mut client) = Client::connect(world.clone(), id, crate::net::client_ip(id)).await else {
        return;
    };
    let mut root = Session::new("root", ROOT_PASSWORD);
    for request in setup_requests() {
        let sent = until_settled(&world, &mut client, &mut root, &members, &request, until).await;
        if !sent.settled {
            world.trace("auth: the administrator could not set up users in time");
            return;
        }
    }
    let mut enabled = false;
    let mut granted = [false; USERS as usize];
    while world.elapsed() < until {
        let pause = madsim::rand::thread_rng().gen_range(100..400);
        wait::Deadline::after(Duration::from_millis(pause)).await;
        let dimension = match madsim::rand::thread_rng().gen_range(0..10) {
            0..=2 => Dimension::Enabled,
            n => Dimension::Granted(1 + n % USERS),
        };
        let value = match dimension {
            Dimension::Enabled => !enabled,
            Dimension::Granted(user) => !granted[(user - 1) as usize],
        };
        let request = change_request(dimension, value);
        let invoke_us = world.elapsed().as_micros() as u64;
        let sent = until_settled(&world, &mut client, &mut root, &members, &request, until).await;
        let complete_us = sent.settled.then(|| world.elapsed().as_micros() as u64);
        lock(&world.auth_changes).push(Change {
            dimension,
            value,
            invoke_us,
            complete_us,
            lingers: sent.lingers,
        });
        if !sent.settled {
            break;
        }
        world.trace(format!("auth: {dimension:?} set to {value}"));
        match dimension {
            Dimension::Enabled => enabled = value,
            Dimension::Granted(user) => granted[(user - 1) as usize] = value,
        }
    }
}

/// User `user`: reads and writes its own keys and, now and then, the other users', through
/// random members, until `until`.
pub async fn user_workload(
    world: Arc<World>,
    id: u64,
    user: u64,
    members: Vec<u64>,
    until: Duration,
) {
    let Ok(mut client) = Client::connect(world.clone(), id, crate::net::client_ip(id)).await else {
        return;
    };
    let mut session = Session::new(&user_name(user), &password(user));
    let mut seq = 0;
    while world.elapsed() < until {
        seq += 1;
        let (member, owner, op) = {
            let mut rng = madsim::rand::thread_rng();
            let targets = world.live_members(&members);
            let member = targets[rng.gen_range(0..targets.len())];
            let owner = if rng.gen_range(0..4) == 0 {
                1 + user % USERS
            } else {
                user
            };
            let key = key(owner, rng.gen_range(0..KEYS_PER_USER));
            let op = if rng.gen_bool(0.5) {
                let value = format!("u{user}-{seq}").into_bytes();
                Op::Put { key, value }
            } else {
                Op::Get { key }
            };
            (member, owner, op)
        };
        let request = match client::request_for(&op) {
            stet::node::ClientRequest::Put(put) => Request::Put(put),
            stet::node::ClientRequest::Range(range) => Request::Range(range),
            other => unreachable!("users only put and get, not {other:?}"),
        };
        let invoke_us = world.elapsed().as_micros() as u64;
        let answer = session.call(&mut client, member, &request).await;
        let complete_us = world.elapsed().as_micros() as u64;
        let verdict = match &answer {
            Some(Ok(_)) => Verdict::Allowed,
            Some(Err(status)) if session::is(status, AuthError::PermissionDenied) => {
                Verdict::Denied
            }
            _ => Verdict::Other,
        };
        let write = matches!(op, Op::Put { .. });
        let outcome = outcome(&op, answer);
        lock(&world.auth_ops).push(UserOp {
            user,
            owner,
            write,
            invoke_us,
            complete_us,
            verdict,
        });
        record(&world, id, op, invoke_us, complete_us, outcome);
        let pause = madsim::rand::thread_rng().gen_range(5..60);
        wait::Deadline::after(Duration::from_millis(pause)).await;
    }
    world.trace(format!(
        "auth: user u{user} logged in {} times",
        session.logins
    ));
}

/// What an answer means for the linearizability checker.
fn outcome(op: &Op, answer: Option<session::Answer>) -> Outcome {
    match answer {
        None => Outcome::Unknown,
        Some(Ok(Reply::Put)) => Outcome::Put,
        Some(Ok(Reply::Range(value))) => Outcome::Get(value),
        Some(Ok(Reply::Done)) => Outcome::Unknown,
        Some(Err(status)) => client::outcome_of(op, Err(crate::rpc::error_of(&status))),
    }
}

fn record(world: &World, client: u64, op: Op, invoke_us: u64, complete_us: u64, outcome: Outcome) {
    let mut history = lock(&world.history);
    let id = history.len() as u64;
    history.push(Operation {
        id,
        client,
        op,
        invoke_us,
        complete_us,
        outcome,
    });
}

/// How long the members must agree on the same disabled store before the final checks start:
/// longer than a peer connection takes to come back after healing (its backoff is at most 1 s),
/// so proposals it held have been applied.
const QUIET_AFTER_DISABLE: Duration = Duration::from_secs(5);

/// After healing: root disables authentication (so the final checks' clients need no
/// credentials), then every live member must report the same auth store. An enable whose
/// attempt got no answer may still be applied after the disable (its proposal may wait in a
/// peer connection's queue until the network heals), so root disables again whenever the members
/// agree that authentication is enabled, and the disabled store must hold for
/// `QUIET_AFTER_DISABLE` (auth seed 243 applied a held enable 0.6 s after the disable).
pub async fn settle(world: Arc<World>, members: Vec<u64>) -> Result<(), String> {
    let id = crate::scenario::AUTH_ADMIN;
    let Ok(mut client) = Client::connect(world.clone(), id, crate::net::client_ip(id)).await else {
        return Err("the checker could not connect".to_string());
    };
    let mut root = Session::new("root", ROOT_PASSWORD);
    let deadline = world.elapsed() + Duration::from_secs(60);
    let mut disables = 0;
    // Since when the members have agreed on the same disabled store (after a disable).
    let mut disabled_since: Option<(Duration, pb::AuthStatusResponse)> = None;
    loop {
        let statuses = auth_statuses(&world, &mut client, &members).await;
        let first = statuses.first().map(|(_, status)| *status);
        let agree = statuses
            .iter()
            .all(|(_, status)| Some(status) == first.as_ref());
        let now = world.elapsed();
        match first {
            Some(status) if agree && !status.enabled && disables > 0 => match disabled_since {
                Some((since, seen)) if seen == status => {
                    if now >= since + QUIET_AFTER_DISABLE {
                        return Ok(());
                    }
                }
                _ => disabled_since = Some((now, status)),
            },
            Some(status) if agree && (status.enabled || disables == 0) => {
                disabled_since = None;
                let disable = Request::AuthDisable;
                let sent =
                    until_settled(&world, &mut client, &mut root, &members, &disable, deadline)
                        .await;
                if sent.settled {
                    disables += 1;
                    world.trace(format!("auth: root disabled authentication ({disables})"));
                }
            }
            _ => {}
        }
        if world.elapsed() >= deadline {
            return Err(format!(
                "members do not agree on a disabled auth store 60 s after healing \
                 ({disables} disables went through): {statuses:?}"
            ));
        }
        wait::Deadline::after(Duration::from_millis(500)).await;
    }
}

/// (member, AuthStatus) of every live member that answered.
async fn auth_statuses(
    world: &World,
    client: &mut Client,
    members: &[u64],
) -> Vec<(u64, pb::AuthStatusResponse)> {
    let mut statuses = Vec::new();
    for member in world.live_members(members) {
        let Some(channel) = client.channel(member) else {
            continue;
        };
        let ask = async move {
            let mut auth = pb::auth_client::AuthClient::new(channel);
            auth.auth_status(pb::AuthStatusRequest {}).await
        };
        if let Some(Ok(response)) = wait::timeout(client::CLIENT_TIMEOUT, Box::pin(ask)).await {
            let mut status = response.into_inner();
            status.header = None;
            statuses.push((member, status));
        }
    }
    statuses
}

/// The permission oracle over the run's changes and user requests.
pub fn check(world: &World) -> Result<(), String> {
    let changes = lock(&world.auth_changes).clone();
    let ops = lock(&world.auth_ops).clone();
    oracle::check(&changes, &ops)
}
