//! A simulated member process: the production server itself (`stet::server::run_in`) with the
//! flags an operator would give it, on the simulated machine of its host (`env`). madsim runs the
//! process as the host node's init task: a kill drops it mid-step, a restart runs it again, and
//! nothing of it survives but its disk.

use std::future::Future;
use std::sync::{Arc, Weak};

use slog::Drain as _;

use crate::env::SimEnvironment;
use crate::world::{lock, World};

/// The init task of `host`'s node: runs the member process while the world exists. It holds the
/// world weakly: madsim keeps a node's init for restarts, even after the run, and a strong
/// reference there would keep every seed's world alive.
pub fn process(
    world: &Arc<World>,
    host: u64,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>> {
    let world: Weak<World> = Arc::downgrade(world);
    move || {
        let world = world.upgrade();
        Box::pin(async move {
            if let Some(world) = world {
                run(world, host).await;
            }
        })
    }
}

/// The whole life of the member process on `host`: start (bootstrap, join or restart from disk,
/// as the flags and the disk say), then serve until removed, failed or killed.
pub async fn run(world: Arc<World>, host: u64) {
    let Some(member) = lock(&world.hosts).get(&host).and_then(|h| h.member) else {
        world.trace(format!("host {host} has no member to run"));
        return;
    };
    let forced = {
        let mut force = lock(&world.force_new_cluster);
        let forced = *force == Some(member);
        if forced {
            *force = None;
        }
        forced
    };
    let config = match world.server_config(host, forced) {
        Ok(config) => config,
        Err(error) => return stopped(&world, member, format!("bad flags: {error}")),
    };
    let env = SimEnvironment::new(world.clone(), member);
    let result = stet::server::run_in(config, logger(member), std::future::pending(), env).await;
    {
        let mut status = lock(&world.status);
        let entry = status.entry(member).or_default();
        entry.running = false;
        entry.is_leader = false;
    }
    match result {
        Ok(()) => world.trace(format!("member {member:x} stopped")),
        Err(stet::server::ServerError::Removed) => {
            world.trace(format!(
                "member {member:x}: this member has been permanently removed from the cluster. \
                 Exiting."
            ));
            lock(&world.status).entry(member).or_default().removed = true;
        }
        Err(error) => stopped(&world, member, error.to_string()),
    }
}

/// The member refused to start or stopped with an error.
fn stopped(world: &World, member: u64, reason: String) {
    world.trace(format!("member {member:x} stopped: {reason}"));
    lock(&world.refused).insert(member, reason);
}

/// The member's log: discarded, unless `STET_SIM_LOG` is set (to debug one seed), then printed
/// to stderr with the simulated time (since the simulation began, not the run) and the member's ID.
fn logger(member: u64) -> slog::Logger {
    if std::env::var_os("STET_SIM_LOG").is_some() {
        slog::Logger::root(StderrDrain { member }.fuse(), slog::o!())
    } else {
        slog::Logger::root(slog::Discard, slog::o!())
    }
}

/// Prints each record on one line: time, member, level, message, then its key-values.
struct StderrDrain {
    member: u64,
}

impl slog::Drain for StderrDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        use slog::KV as _;
        let mut line = KeyValues(String::new());
        let _ = record.kv().serialize(record, &mut line);
        let _ = values.serialize(record, &mut line);
        let now = madsim::time::TimeHandle::current().elapsed();
        eprintln!(
            "{:>9.3}s {:x} {} {}{}",
            now.as_secs_f64(),
            self.member,
            record.level().as_short_str(),
            record.msg(),
            line.0
        );
        Ok(())
    }
}

struct KeyValues(String);

impl slog::Serializer for KeyValues {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments) -> slog::Result {
        self.0.push_str(&format!(" {key}={value}"));
        Ok(())
    }
}
