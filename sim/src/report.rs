//! What a running member tells the oracles, through the runtime's environment hooks: after every
//! turn of the driver, the entries it newly applied (the observer compares them across members),
//! the events of every new revision (the watch oracle's authority), its KV hash at every new
//! revision (replicas must agree, and every revision must change the hash), and its status for
//! the nemesis and the clients. It also notices a compaction or membership change just applied,
//! where the nemesis may have armed a crash; and it checks a `--force-new-cluster` restart kept
//! everything the member had applied.

use std::sync::Arc;

use stet::node::Node;
use stet::proto::etcdserverpb as pb;
use stet::server::env::StartKind;

use crate::durability::{check_restart, Restarted};
use crate::records::Recovery;
use crate::world::{lock, CrashPoint, World};

/// The reporting state of one start of one member.
pub struct Reporter {
    world: Arc<World>,
    member: u64,
    last_applied: u64,
    last_revision: i64,
    last_compact: i64,
    /// Voters and learners of the raft configuration last seen.
    last_members: (Vec<u64>, Vec<u64>),
    /// (applied index, revision, term, is leader) at the last report.
    last_reported: Option<(u64, i64, u64, bool)>,
    /// The node started under another member's ID (an identity violation is recorded): nothing
    /// it does is reported as the placed member's.
    impostor: bool,
}

impl Reporter {
    pub fn new(world: Arc<World>, member: u64) -> Self {
        Reporter {
            world,
            member,
            last_applied: 0,
            last_revision: 0,
            last_compact: 0,
            last_members: (Vec::new(), Vec::new()),
            last_reported: None,
            impostor: false,
        }
    }

    /// The member's node just started.
    pub fn started(&mut self, node: &Node, kind: StartKind) {
        let id = node.id().0;
        if id != self.member {
            // A joining member that took someone else's ID (a removed predecessor's, from a
            // stale answer): its reports would be taken for the placed member's.
            let violation = format!(
                "the world placed member {:x} on this host, but it started as member {id:x}",
                self.member
            );
            self.world.trace(format!("identity violation: {violation}"));
            lock(&self.world.identity_violations).push(violation);
            self.impostor = true;
            return;
        }
        self.impostor = false;
        self.world.trace(format!(
            "member {id:x} started ({kind:?}, applied index {})",
            node.applied_index()
        ));
        self.check_cluster(node, kind);
        match kind {
            StartKind::ForceNewCluster => self.forced_restart(node),
            StartKind::Restart => self.check_durable(node),
            StartKind::Bootstrap | StartKind::Join => {}
        }
        self.last_applied = node.applied_index();
        self.last_revision = node.state().kv.current_revision();
        self.last_compact = node.state().kv.compact_revision();
        let conf = node.log().conf_state();
        self.last_members = (conf.voters.clone(), conf.learners.clone());
        self.report(node);
    }

    /// After a turn of the driver: reports what is new, and returns a crash point the member
    /// just passed (a compaction or a membership change applied), if any.
    pub fn report(&mut self, node: &Node) -> Option<CrashPoint> {
        if self.impostor {
            return None;
        }
        let seen = (
            node.applied_index(),
            node.state().kv.current_revision(),
            node.term(),
            node.role() == raft::StateRole::Leader,
        );
        if self.last_reported == Some(seen) {
            return None; // nothing new since the last report (most inputs are heartbeats)
        }
        self.last_reported = Some(seen);
        self.report_applied(node);
        self.report_revisions(node);
        self.note_corrupt_alarm(node);
        let (applied, revision, term, is_leader) = seen;
        let mut status = lock(&self.world.status);
        let entry = status.entry(self.member).or_default();
        entry.running = true;
        entry.is_leader = is_leader;
        entry.term = term;
        entry.applied_index = applied;
        entry.revision = revision;
        drop(status);
        self.passed_crash_point(node)
    }

    /// Records the members CORRUPT alarms name (the corruption check's verdicts).
    fn note_corrupt_alarm(&self, node: &Node) {
        let alarms = node.state().alarms();
        if !alarms.corrupt() {
            return;
        }
        let mut seen = lock(&self.world.corrupt_alarms);
        for alarm in alarms.list(pb::AlarmType::Corrupt) {
            seen.entry(alarm.member_id).or_insert_with(|| {
                let at = self.world.elapsed();
                let first = format!(
                    "member {:x} applied a CORRUPT alarm naming {:x} at {at:?}",
                    self.member, alarm.member_id
                );
                self.world.trace(first.clone());
                first
            });
        }
    }

    /// Entries applied since the last report, for the observer.
    fn report_applied(&mut self, node: &Node) {
        let applied = node.applied_index();
        let mut observer = lock(&self.world.observer);
        let held = node.log().held_entries();
        let first = held.first().map_or(u64::MAX, |e| e.index);
        for index in (self.last_applied + 1)..=applied {
            // Entries already compacted away (a snapshot jump) are not compared.
            let Some(entry) = index
                .checked_sub(first)
                .and_then(|offset| held.get(offset as usize))
            else {
                continue;
            };
            observer.applied(self.member, index, entry.term, crc32fast::hash(&entry.data));
            self.note_revoke(&entry.data);
        }
        self.last_applied = applied;
    }

    /// Notes when a lease's revoke (by a client, or the leader's expiry) was first applied.
    fn note_revoke(&self, data: &[u8]) {
        use prost::Message as _;
        use stet::proto::stetpb::{internal_request::Request, InternalRequest};
        let Ok(request) = InternalRequest::decode(data) else {
            return;
        };
        if let Some(Request::LeaseRevoke(revoke)) = request.request {
            let at = self.world.elapsed().as_micros() as u64;
            lock(&self.world.lease_revocations)
                .entry(revoke.id)
                .or_insert(at);
        }
    }

    /// The events and the KV hash of every revision applied since the last report.
    fn report_revisions(&mut self, node: &Node) {
        let kv = &node.state().kv;
        let revision = kv.current_revision();
        if revision <= self.last_revision {
            self.last_revision = revision;
            return;
        }
        let from = (self.last_revision + 1).max(kv.compact_revision());
        if let Ok(events) = kv.events_since(from, &[0], &[0]) {
            lock(&self.world.kv_events).record(self.member, from, revision, events);
        }
        let mut observer = lock(&self.world.observer);
        for r in from.max(1)..=revision {
            match kv.hash_kv(r) {
                Ok((hash, compact)) => observer.kv_hash(self.member, r, compact, hash),
                Err(error) => observer.report_violation(format!(
                    "member {:x} cannot hash revision {r} it just applied (compacted at {}): \
                     {error}",
                    self.member,
                    kv.compact_revision()
                )),
            }
        }
        self.last_revision = revision;
    }

    /// A compaction or a membership change applied since the last report.
    fn passed_crash_point(&mut self, node: &Node) -> Option<CrashPoint> {
        let compact = node.state().kv.compact_revision();
        let conf = node.log().conf_state();
        let compacted = compact != self.last_compact;
        let reconfigured =
            conf.voters != self.last_members.0 || conf.learners != self.last_members.1;
        self.last_compact = compact;
        if reconfigured {
            self.last_members = (conf.voters.clone(), conf.learners.clone());
        }
        if compacted {
            Some(CrashPoint::Compaction)
        } else if reconfigured {
            Some(CrashPoint::ConfChange)
        } else {
            None
        }
    }

    /// After a restart: the member holds at least what it counted on being durable before.
    fn check_durable(&self, node: &Node) {
        let Some(before) = lock(&self.world.durable).get(&self.member).cloned() else {
            return;
        };
        let hard_state = node.log().hard_state();
        let log = node.log();
        let last_index = log
            .held_entries()
            .last()
            .map_or(log.latest_snapshot().get_metadata().index, |e| e.index);
        let after = Restarted {
            last_index,
            term: hard_state.term,
            vote: hard_state.vote,
        };
        if let Err(violation) = check_restart(self.member, &before, after) {
            lock(&self.world.durability_violation).get_or_insert(violation);
        }
    }

    /// Every start is in the current cluster, except a `--force-new-cluster` start, which makes
    /// a new one (no member of the old cluster may take it for its own); the applied state
    /// belongs to the member's cluster.
    fn check_cluster(&self, node: &Node, kind: StartKind) {
        let id = self.member;
        let started_in = node.config().cluster_id;
        let mut current = lock(&self.world.current_cluster);
        let violation = if kind == StartKind::ForceNewCluster {
            let previous = std::mem::replace(&mut *current, started_in);
            (started_in == previous).then(|| {
                format!("member {id:x} forced a new cluster but kept cluster {previous:?}")
            })
        } else {
            (started_in != *current).then(|| {
                format!(
                    "member {id:x} started ({kind:?}) in cluster {started_in:?}, not in the \
                     current cluster {:?}",
                    *current
                )
            })
        };
        let state_cluster = node.state().members().cluster_id();
        let violation = violation.or_else(|| {
            (state_cluster != started_in).then(|| {
                format!(
                    "member {id:x} started in cluster {started_in:?} with the state of cluster \
                     {state_cluster:?}"
                )
            })
        });
        if let Some(violation) = violation {
            self.world.trace(format!("identity violation: {violation}"));
            lock(&self.world.identity_violations).push(violation);
        }
    }

    /// After a `--force-new-cluster` restart: starts a new observer epoch, checks that the member
    /// kept everything it had applied, and records its state for the history checks.
    fn forced_restart(&mut self, node: &Node) {
        let id = self.member;
        let kv = &node.state().kv;
        let revision = kv.current_revision();
        {
            let mut observer = lock(&self.world.observer);
            if let Some((before, compact, hash)) = observer.last_hash(id) {
                match kv.hash_kv(before) {
                    _ if revision < before => observer.report_violation(format!(
                        "member {id:x} applied up to revision {before} before the loss but holds \
                         only revision {revision} after --force-new-cluster"
                    )),
                    Ok((now_hash, now_compact)) if now_compact == compact && now_hash != hash => {
                        observer.report_violation(format!(
                            "member {id:x} hashed {hash:08x} at revision {before} before the loss \
                             and {now_hash:08x} after --force-new-cluster"
                        ))
                    }
                    _ => {}
                }
            }
            observer.new_epoch();
        }
        lock(&self.world.kv_events).forget_after(revision);
        let all = pb::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        };
        let initial = kv
            .range(&all)
            .map(|r| r.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect())
            .unwrap_or_default();
        {
            let mut recovery = lock(&self.world.recovery);
            let recovery = recovery.get_or_insert_with(Recovery::default);
            recovery.recovered_us = Some(self.world.elapsed().as_micros() as u64);
            recovery.initial = initial;
        }
        self.world.trace(format!(
            "member {id:x} restarted with --force-new-cluster at revision {revision} (epoch {})",
            lock(&self.world.observer).epoch
        ));
    }
}
