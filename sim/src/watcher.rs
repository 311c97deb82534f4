//! Watches under faults: clients that watch keys from past, current and future revisions, ask for
//! progress, fail over to another member when theirs stalls or the stream breaks, and resume from
//! the revision after the last one they saw; some ask for fragments, and join a response sent in
//! fragments back into one before taking it, as etcd's client does; some choose their watch's ID,
//! stop reading a while, then cancel it and create it again under the same ID on the same stream
//! (a new logical watch, which must never get its predecessor's events); a compacting client; and the
//! watch oracle, which checks every watcher's log against the events members applied
//! (`KvEvents`, recorded by `report`): ordered, no gaps, no duplicates, never back in time, the
//! same events as the store (a revision's events in one response, however it was fragmented),
//! with the key-value each replaced exactly when the watch asked for it (`prev_kv`),
//! compaction cancels only for compacted starts, progress never ahead of delivery, and fragments
//! only where asked for and never interleaved with other responses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use rand::Rng;

use crate::client::{Client, CLIENT_TIMEOUT, KEYS};
use crate::prev_kv::KeyHistory;
use crate::records::{list_events, EventRecord, Item, KvEvents, Segment, SegmentEnd, WatchLog};
use crate::wait;
use crate::world::{lock, SelfTest, World};
use stet::node::{ClientRequest, ClientResponse};
use stet::proto::etcdserverpb as pb;
use stet::proto::etcdserverpb::watch_client::WatchClient;

/// The ID watchers choose for a watch they cancel and create again on the same stream (etcd
/// lets clients choose; a re-created watch must never get its predecessor's events).
const RECREATED_WATCH_ID: i64 = 7;

/// A watcher that learns no new revision for this long moves to another member.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(3);

/// A watching client: one logical watch after another until `until`.
pub async fn watch_workload(world: Arc<World>, id: u64, members: Vec<u64>, until: Duration) {
    let Ok(mut client) = Client::connect(world.clone(), id, crate::net::client_ip(id)).await else {
        return;
    };
    let mut streams = 0;
    let mut watch = 0;
    while world.elapsed() < until {
        watch += 1;
        let log = one_watch(&mut client, &world, &members, watch, &mut streams, until).await;
        lock(&world.watch_logs).push(log);
    }
}

/// A random range: one key, the register keys, the rich workload's keys, or every key.
fn random_range(rng: &mut impl Rng) -> (Vec<u8>, Vec<u8>) {
    match rng.gen_range(0..4) {
        0 => (
            format!("k{}", rng.gen_range(0..KEYS)).into_bytes(),
            Vec::new(),
        ),
        1 => (b"k".to_vec(), b"l".to_vec()),
        2 => (b"r/".to_vec(), b"r0".to_vec()),
        _ => (vec![0], vec![0]),
    }
}

async fn one_watch(
    client: &mut Client,
    world: &World,
    members: &[u64],
    watch: u64,
    streams: &mut u64,
    until: Duration,
) -> WatchLog {
    let (key, range_end, prev_kv, mut next_start, ends_at, mut member) = {
        let mut rng = madsim::rand::thread_rng();
        let (key, range_end) = random_range(&mut rng);
        let prev_kv = rng.gen_bool(0.5);
        let max = world.max_revision();
        // From the past (maybe compacted), from now, or from the future.
        let start = match rng.gen_range(0..3) {
            0 => (max - rng.gen_range(0..60)).max(1),
            1 => 0,
            _ => max + rng.gen_range(1..20),
        };
        let lasts = Duration::from_millis(rng.gen_range(3_000..10_000));
        let member = members[rng.gen_range(0..members.len())];
        (
            key,
            range_end,
            prev_kv,
            start,
            (world.elapsed() + lasts).min(until),
            member,
        )
    };
    let mut log = WatchLog {
        client: client.id,
        watch,
        key: key.clone(),
        range_end: range_end.clone(),
        prev_kv,
        segments: Vec::new(),
    };
    while world.elapsed() < ends_at {
        *streams += 1;
        let stream = (client.id << 32) | *streams;
        let (progress_notify, fragment, recreates) = {
            let mut rng = madsim::rand::thread_rng();
            let fragment = rng.gen_bool(0.5);
            (rng.gen_bool(0.5), fragment, !fragment && rng.gen_bool(0.4))
        };
        let request = pb::WatchCreateRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            start_revision: next_start,
            progress_notify,
            fragment,
            prev_kv,
            // A client-chosen ID for the watches that will be canceled and created again.
            watch_id: if recreates { RECREATED_WATCH_ID } else { 0 },
            ..Default::default()
        };
        let mut segment = Segment {
            member,
            stream,
            requested_start: next_start,
            created_revision: None,
            fragment,
            joined: 0,
            fragments: 0,
            items: Vec::new(),
            end: SegmentEnd::Unreachable,
        };
        if let Some(mut opened) = open_stream(client, member, request.clone()).await {
            let mut create = request.clone();
            loop {
                let recreated = receive(opened, world, &mut segment, ends_at, &create).await;
                let Some((open, start)) = recreated else {
                    break;
                };
                world.trace(format!(
                    "watcher {}/{watch} created watch {RECREATED_WATCH_ID} again on stream                      {stream:x} from {start}",
                    client.id
                ));
                // The same range on the same stream under the same ID, from the revision after
                // the last one seen when the create was sent: a new logical watch (events the
                // old one received meanwhile may come again in it).
                create.start_revision = start;
                let next = Segment {
                    requested_start: start,
                    created_revision: None,
                    items: Vec::new(),
                    end: SegmentEnd::Moved,
                    ..segment.clone()
                };
                next_start = start;
                let mut finished = WatchLog {
                    segments: Vec::new(),
                    ..log.clone()
                };
                std::mem::swap(&mut finished, &mut log);
                finished
                    .segments
                    .push(std::mem::replace(&mut segment, next));
                lock(&world.watch_logs).push(finished);
                opened = open;
            }
        }
        next_start = segment.resume_from(next_start);
        if segment.end == SegmentEnd::Unreachable {
            madsim::time::sleep(Duration::from_millis(200)).await;
        }
        world.trace(format!(
            "watcher {}/{watch} left member {member:x} ({:?}); resumes from {next_start}",
            client.id, segment.end
        ));
        log.segments.push(segment);
        let others: Vec<u64> = members.iter().copied().filter(|&m| m != member).collect();
        if !others.is_empty() {
            member = others[madsim::rand::thread_rng().gen_range(0..others.len())];
        }
    }
    log
}

/// An open watch stream: where the client's requests go, and the member's responses.
struct OpenStream {
    requests: mpsc::Sender<pb::WatchRequest>,
    responses: tonic::Streaming<pb::WatchResponse>,
}

/// Opens a watch stream to `member` with `create` as its first request.
async fn open_stream(
    client: &mut Client,
    member: u64,
    create: pb::WatchCreateRequest,
) -> Option<OpenStream> {
    let channel = client.channel(member)?;
    let (mut requests, outbound) = mpsc::channel(16);
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
    };
    requests.try_send(create).ok()?;
    let opened = wait::timeout(CLIENT_TIMEOUT, WatchClient::new(channel).watch(outbound)).await?;
    let responses = opened.ok()?.into_inner();
    Some(OpenStream {
        requests,
        responses,
    })
}

/// Receives the segment's responses in stream order until it ends, asking for progress now and
/// then, and moving on when the member stalls, the stream breaks or it is time to fail over. Some
/// segments read slowly, so the member's buffer for the stream fills and it must end the stream
/// (the client resumes from the last revision it saw) rather than drop a response. Fragments are
/// joined (`Fragments`); those of a response left unfinished are dropped, as etcd's client drops
/// them, and the watch resumes from the last whole response. A watch created under
/// `RECREATED_WATCH_ID` may be canceled and created again under the same ID after the client
/// stopped reading a while (its member's buffer for the stream full): then the stream and the
/// revision the new watch starts from are returned once the old one's cancel came.
async fn receive(
    mut open: OpenStream,
    world: &World,
    segment: &mut Segment,
    ends_at: Duration,
    create: &pb::WatchCreateRequest,
) -> Option<(OpenStream, i64)> {
    let (stay, mut progress_at, slow, mut recreate_at) = {
        let mut rng = madsim::rand::thread_rng();
        let stay = Duration::from_millis(rng.gen_range(1_000..6_000));
        let slow = rng.gen_bool(0.3).then(|| rng.gen_range(20..300));
        let recreate_at = (create.watch_id == RECREATED_WATCH_ID)
            .then(|| world.elapsed() + Duration::from_millis(rng.gen_range(300..2_000)));
        let progress_at = Duration::from_millis(rng.gen_range(200..1_500));
        (stay, progress_at, slow, recreate_at)
    };
    let mut recreating = None;
    let started = world.elapsed();
    let leave_at = (started + stay).min(ends_at);
    progress_at += started;
    let mut learned_at = started;
    let mut best = 0;
    let mut fragments = Fragments {
        asked: segment.fragment,
        ..Fragments::default()
    };
    let unjoined = lock(&world.settings).self_test == Some(SelfTest::UnjoinedFragments);
    segment.end = SegmentEnd::Moved;
    loop {
        let now = world.elapsed();
        if now >= leave_at {
            return None;
        }
        if now.saturating_sub(learned_at) > STALL_TIMEOUT {
            segment.end = SegmentEnd::Stalled;
            return None;
        }
        if recreate_at.is_some_and(|at| now >= at) && segment.created_revision.is_some() {
            recreate_at = None;
            recreating = Some(recreate(&mut open, segment, create).await);
        }
        if now >= progress_at {
            let progress = pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                    pb::WatchProgressRequest {},
                )),
            };
            let _ = open.requests.try_send(progress);
            let every = madsim::rand::thread_rng().gen_range(300..1_500);
            progress_at = now + Duration::from_millis(every);
        }
        let received = wait::timeout(Duration::from_millis(100), open.responses.message()).await;
        let response = match received {
            None => continue,
            Some(Ok(Some(response))) => response,
            Some(Ok(None)) | Some(Err(_)) => {
                segment.end = SegmentEnd::Broken;
                return None;
            }
        };
        let joined = if unjoined {
            Ok(Some((response, 1)))
        } else {
            fragments.join(response)
        };
        let response = match joined {
            Ok(Some((whole, 1))) => whole,
            Ok(Some((whole, parts))) => {
                segment.joined += 1;
                segment.fragments += parts;
                world.trace(format!(
                    "watcher on stream {:x} joined {} events of revisions {}..={} from {parts} \
                     fragments",
                    segment.stream,
                    whole.events.len(),
                    whole
                        .events
                        .first()
                        .and_then(|e| e.kv.as_ref())
                        .map_or(0, |kv| kv.mod_revision),
                    whole
                        .events
                        .last()
                        .and_then(|e| e.kv.as_ref())
                        .map_or(0, |kv| kv.mod_revision),
                ));
                whole
            }
            Ok(None) => continue,
            Err(violation) => {
                segment.end = SegmentEnd::Malformed(violation);
                return None;
            }
        };
        let (learned, ended) = segment.take(response, &mut best);
        if learned {
            learned_at = world.elapsed();
        }
        if ended {
            return match (recreating, &segment.end) {
                (Some(start), SegmentEnd::Canceled) => Some((open, start)),
                _ => None,
            };
        }
        if let Some(pause_ms) = slow {
            madsim::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }
}

/// Stops reading for a while (the member's buffer for the stream fills, if events come), then
/// cancels the watch and creates it again under the same ID from the revision after the last
/// one seen. Returns that revision.
async fn recreate(
    open: &mut OpenStream,
    segment: &Segment,
    create: &pb::WatchCreateRequest,
) -> i64 {
    let pause = madsim::rand::thread_rng().gen_range(300..1_500);
    madsim::time::sleep(Duration::from_millis(pause)).await;
    let start = segment.resume_from(create.start_revision);
    let cancel = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest {
                watch_id: RECREATED_WATCH_ID,
            },
        )),
    };
    let again = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                start_revision: start,
                ..create.clone()
            },
        )),
    };
    let _ = open.requests.try_send(cancel);
    let _ = open.requests.try_send(again);
    start
}

/// Joins the fragments of a response, as etcd's client does: the events of consecutive responses
/// marked `fragment`, and of the unmarked one that ends them, are one response's.
#[derive(Debug, Default)]
struct Fragments {
    /// Whether the watcher asked for fragments (a member sends them to no other).
    asked: bool,
    /// The response being joined, and how many fragments it came in so far.
    pending: Option<(pb::WatchResponse, usize)>,
}

impl Fragments {
    /// Takes the stream's next response: a whole one (and the fragments it came in), `None` while
    /// the fragments of one are coming, or what broke the protocol.
    fn join(
        &mut self,
        response: pb::WatchResponse,
    ) -> Result<Option<(pb::WatchResponse, usize)>, String> {
        let part_of_one = !response.created && !response.canceled && !response.events.is_empty();
        let Some((mut joined, parts)) = self.pending.take() else {
            if !response.fragment {
                return Ok(Some((response, 1)));
            }
            if !self.asked {
                return Err(format!(
                    "a fragment came to a watcher that did not ask for fragments: {}",
                    describe_response(&response)
                ));
            }
            if !part_of_one {
                return Err(format!(
                    "a response marked fragment carries no events: {}",
                    describe_response(&response)
                ));
            }
            self.pending = Some((response, 1));
            return Ok(None);
        };
        if !part_of_one || response.watch_id != joined.watch_id {
            return Err(format!(
                "after {parts} fragments of a response, another response came before its end: {}",
                describe_response(&response)
            ));
        }
        joined.events.extend(response.events);
        if response.fragment {
            self.pending = Some((joined, parts + 1));
            return Ok(None);
        }
        joined.fragment = false;
        Ok(Some((joined, parts + 1)))
    }
}

/// A watch response in a few words, for a violation's message.
fn describe_response(response: &pb::WatchResponse) -> String {
    format!(
        "watch {} at revision {}: created {}, canceled {}, fragment {}, {} events",
        response.watch_id,
        response.header.as_ref().map_or(0, |h| h.revision),
        response.created,
        response.canceled,
        response.fragment,
        response.events.len()
    )
}

/// A client that now and then compacts the store to the newest revision or some behind it and, as an
/// operator would after that, sometimes defragments the members and disarms any NOSPACE alarm.
pub async fn compaction_workload(world: Arc<World>, id: u64, members: Vec<u64>, until: Duration) {
    let Ok(mut client) = Client::connect(world.clone(), id, crate::net::client_ip(id)).await else {
        return;
    };
    while world.elapsed() < until {
        let (pause, behind, member, physical) = {
            let mut rng = madsim::rand::thread_rng();
            (
                rng.gen_range(1_500..4_000),
                // Now and then to the newest revision, as `etcdctl compact <head>` does: ranges
                // read in parts then see the revision they pinned compacted.
                if rng.gen_bool(0.5) {
                    0
                } else {
                    rng.gen_range(3..40)
                },
                members[rng.gen_range(0..members.len())],
                // Answered once the member deleted the dropped revisions from its file.
                rng.gen_bool(0.5),
            )
        };
        madsim::time::sleep(Duration::from_millis(pause)).await;
        let revision = world.max_revision() - behind;
        if revision <= 1 {
            continue;
        }
        let request = ClientRequest::Compact(pb::CompactionRequest { revision, physical });
        let acknowledged = matches!(client.call(member, request).await, Some(Ok(_)));
        world.trace(format!(
            "compactor asked member {member:x} to compact to {revision} (physical {physical}): acknowledged {acknowledged}"
        ));
        lock(&world.compactions).push((revision, acknowledged));
        if acknowledged && madsim::rand::thread_rng().gen_bool(0.5) {
            defragment_and_disarm(&world, &mut client, &members).await;
        }
    }
}

/// Compacts to the newest revision, defragments every member and disarms every alarm: what an
/// operator does when the cluster ran out of space.
pub async fn recover_space(world: &World, client: &mut Client, members: &[u64]) {
    let revision = world.max_revision();
    for &member in members {
        // As an operator would before defragmenting: answered once the file dropped them.
        let compact = ClientRequest::Compact(pb::CompactionRequest {
            revision,
            physical: true,
        });
        if let Some(Ok(_)) = client.call(member, compact).await {
            world.trace(format!("operator compacted to {revision} to recover space"));
            lock(&world.compactions).push((revision, true));
            break;
        }
    }
    defragment_and_disarm(world, client, members).await;
}

/// How often the operator asks a member to defragment before going on without it.
const DEFRAGMENT_ATTEMPTS: usize = 10;

/// Defragments every member's storage engine file (again, as an operator would, while a member
/// says to try again), then disarms every raised alarm. A member whose file stays over the quota
/// raises its alarm again (watch seed 56: one was installing the leader's state).
async fn defragment_and_disarm(world: &World, client: &mut Client, members: &[u64]) {
    for &member in members {
        for _ in 0..DEFRAGMENT_ATTEMPTS {
            let defragment = ClientRequest::Defragment(pb::DefragmentRequest {});
            let result = client.call(member, defragment).await;
            world.trace(format!(
                "defragmented member {member:x}: {}",
                describe(&result)
            ));
            if matches!(result, Some(Ok(_))) {
                break;
            }
            madsim::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for &member in members {
        let list = ClientRequest::Alarm(pb::AlarmRequest::default());
        let Some(Ok(ClientResponse::Alarm(listed))) = client.call(member, list).await else {
            continue;
        };
        for alarm in listed.alarms {
            let disarm = ClientRequest::Alarm(pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Deactivate as i32,
                member_id: alarm.member_id,
                alarm: alarm.alarm,
            });
            let result = client.call(member, disarm).await;
            world.trace(format!(
                "disarmed alarm {} of member {:x}: {}",
                alarm.alarm,
                alarm.member_id,
                describe(&result)
            ));
        }
        return;
    }
}

fn describe(result: &Option<Result<ClientResponse, stet::node::ClientError>>) -> String {
    match result {
        None => "no answer".to_string(),
        Some(Ok(_)) => "done".to_string(),
        Some(Err(error)) => error.to_string(),
    }
}

/// What the watch oracle checked.
#[derive(Debug, Clone, Default)]
pub struct WatchStats {
    pub watches: usize,
    pub segments: usize,
    pub events: usize,
    pub progress: usize,
    pub compaction_cancels: usize,
    /// Revisions a watcher was served that no member reported (not checkable).
    pub unknown_revisions: usize,
    /// Responses that came in fragments (and were joined before being checked), and how many
    /// fragments they came in.
    pub fragmented: usize,
    pub fragments: usize,
    /// Events delivered with the key-value they replaced (checked against the history).
    pub prev_kvs: usize,
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        end => key >= start && key < end,
    }
}

/// Checks every watch log against the applied events. `compactions` are the revisions clients
/// asked to compact to; `compacted_at_create` the serving member's compact revision when it took
/// each stream's create.
pub fn check_watches(
    kv: &KvEvents,
    logs: &[WatchLog],
    compactions: &[(i64, bool)],
    compacted_at_create: &BTreeMap<u64, i64>,
) -> Result<WatchStats, String> {
    if let Some(violation) = kv.violation() {
        return Err(violation.to_string());
    }
    let requested: BTreeSet<i64> = compactions.iter().map(|(r, _)| *r).collect();
    let history = KeyHistory::new(kv);
    let mut stats = WatchStats::default();
    for log in logs {
        stats.watches += 1;
        let known = Known {
            kv,
            history: &history,
            compactions: &requested,
        };
        check_log(&known, log, compacted_at_create, &mut stats).map_err(|detail| {
            format!(
                "client {} watch {} on [{}, {}): {detail}",
                log.client,
                log.watch,
                String::from_utf8_lossy(&log.key).escape_default(),
                String::from_utf8_lossy(&log.range_end).escape_default()
            )
        })?;
    }
    Ok(stats)
}

/// Checks one logical watch: each segment on its own, and across segments nothing twice and never
/// back in time.
fn check_log(
    known: &Known,
    log: &WatchLog,
    compacted_at_create: &BTreeMap<u64, i64>,
    stats: &mut WatchStats,
) -> Result<(), String> {
    // The lowest revision the next event may have: nothing twice, never back in time.
    let mut next = 0;
    for (n, segment) in log.segments.iter().enumerate() {
        stats.segments += 1;
        stats.fragmented += segment.joined;
        stats.fragments += segment.fragments;
        if let SegmentEnd::Malformed(violation) = &segment.end {
            return Err(format!(
                "segment {n} (member {:x}): {violation}",
                segment.member
            ));
        }
        let Some(start) = segment.effective_start() else {
            continue;
        };
        let mut check = SegmentCheck {
            known,
            log,
            at: format!("segment {n} (member {:x}, from {start})", segment.member),
            start,
            delivered: BTreeSet::new(),
            claimed: 0,
            last_event: 0,
        };
        check.compacted_create(segment, compacted_at_create)?;
        for item in &segment.items {
            check.item(item, &mut next, stats)?;
        }
        check.no_gaps()?;
        check.compaction_end(segment, stats)?;
    }
    Ok(())
}

/// What the checks compare every watch log against.
struct Known<'a> {
    /// The events members applied.
    kv: &'a KvEvents,
    /// Every key's states, for the `prev_kv` of each event.
    history: &'a KeyHistory,
    /// The revisions clients asked to compact to.
    compactions: &'a BTreeSet<i64>,
}

/// The checks of one segment: one watch on one member's stream.
struct SegmentCheck<'a> {
    known: &'a Known<'a>,
    log: &'a WatchLog,
    /// Where in the log, for messages.
    at: String,
    start: i64,
    delivered: BTreeSet<i64>,
    /// The newest revision a progress notification claimed.
    claimed: i64,
    last_event: i64,
}

impl SegmentCheck<'_> {
    /// The events of `revision` in the watch's range, if some member reported the revision.
    fn expected_at(&self, revision: i64) -> Option<Vec<EventRecord>> {
        self.known.kv.at(revision).map(|events| {
            events
                .iter()
                .filter(|e| in_range(&e.key, &self.log.key, &self.log.range_end))
                .cloned()
                .collect()
        })
    }

    /// A create from a revision the member had compacted away must be canceled with it (the
    /// cancel may be lost with the stream, but nothing else may come instead).
    fn compacted_create(
        &self,
        segment: &Segment,
        compacted_at_create: &BTreeMap<u64, i64>,
    ) -> Result<(), String> {
        let Some(&compact) = compacted_at_create.get(&segment.stream) else {
            return Ok(());
        };
        let from_compacted = segment.requested_start > 0 && segment.requested_start < compact;
        let wrong_end = match segment.end {
            SegmentEnd::Compacted(c) => c != compact,
            SegmentEnd::Canceled | SegmentEnd::Refused(_) => true,
            _ => false,
        };
        if from_compacted && (wrong_end || !segment.items.is_empty()) {
            return Err(format!(
                "{}: the member had compacted to {compact}, yet the watch was not canceled with \
                 that compact revision (ended {:?} after {} responses)",
                self.at,
                segment.end,
                segment.items.len()
            ));
        }
        Ok(())
    }

    /// One response: progress never behind delivery, events in order, after the start, never
    /// repeated, never after a progress claim that covered them, and the store's own.
    fn item(&mut self, item: &Item, next: &mut i64, stats: &mut WatchStats) -> Result<(), String> {
        let at = &self.at;
        match item {
            Item::Progress(revision) => {
                stats.progress += 1;
                if *revision < self.last_event {
                    return Err(format!(
                        "{at}: progress at {revision} after an event at {}",
                        self.last_event
                    ));
                }
                self.claimed = self.claimed.max(*revision);
                *next = (*next).max(revision + 1);
            }
            Item::Events(events) => {
                for group in events.chunk_by(|a, b| a.revision == b.revision) {
                    stats.events += group.len();
                    self.event_group(group, next, stats)?;
                }
            }
        }
        Ok(())
    }

    /// The events of one revision in a response.
    fn event_group(
        &mut self,
        group: &[EventRecord],
        next: &mut i64,
        stats: &mut WatchStats,
    ) -> Result<(), String> {
        let at = &self.at;
        let revision = group[0].revision;
        if revision < self.start {
            return Err(format!("{at}: event {} is before the start", group[0]));
        }
        if revision < *next {
            return Err(format!(
                "{at}: event {} repeats or goes back in time (expected {next} or later)",
                group[0]
            ));
        }
        if revision <= self.claimed {
            return Err(format!(
                "{at}: event {} arrived after a progress notification at {}",
                group[0], self.claimed
            ));
        }
        let events: Vec<EventRecord> = group
            .iter()
            .cloned()
            .map(EventRecord::without_prev)
            .collect();
        match self.expected_at(revision) {
            None => stats.unknown_revisions += 1,
            Some(expected) if expected != events => {
                return Err(format!(
                    "{at}: at revision {revision} got [{}], the store applied [{}]",
                    list_events(group),
                    list_events(&expected)
                ))
            }
            Some(_) => {}
        }
        for event in group {
            let known = self.known;
            known
                .history
                .check(event, self.log.prev_kv, known.compactions)
                .map_err(|violation| format!("{at}: {violation}"))?;
            stats.prev_kvs += usize::from(event.prev.is_some());
        }
        self.delivered.insert(revision);
        *next = revision + 1;
        self.last_event = revision;
        Ok(())
    }

    /// No gaps: every revision with events in range, from the start to the newest revision the
    /// segment delivered or claimed, was delivered.
    fn no_gaps(&self) -> Result<(), String> {
        let covered = self.last_event.max(self.claimed);
        for revision in self.start..=covered {
            if self.delivered.contains(&revision) {
                continue;
            }
            if let Some(expected) = self.expected_at(revision) {
                if !expected.is_empty() {
                    return Err(format!(
                        "{}: missed [{}] (delivered up to {}, progress claimed {})",
                        self.at,
                        list_events(&expected),
                        self.last_event,
                        self.claimed
                    ));
                }
            }
        }
        Ok(())
    }

    /// A compaction cancel names a revision the segment needed and a client compacted to.
    fn compaction_end(&self, segment: &Segment, stats: &mut WatchStats) -> Result<(), String> {
        let SegmentEnd::Compacted(compact) = segment.end else {
            return Ok(());
        };
        stats.compaction_cancels += 1;
        if compact <= self.start || compact <= self.last_event {
            return Err(format!(
                "{}: canceled as compacted at {compact}, but it needed no revision before that \
                 (delivered up to {})",
                self.at, self.last_event
            ));
        }
        if !self.known.compactions.contains(&compact) {
            return Err(format!(
                "{}: canceled as compacted at {compact}, a revision no client compacted to",
                self.at
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: i64, key: &str, value: &str) -> EventRecord {
        EventRecord {
            revision,
            key: key.as_bytes().to_vec(),
            delete: false,
            value: value.as_bytes().to_vec(),
            lease: 0,
            prev: None,
        }
    }

    fn store() -> KvEvents {
        let mut kv = KvEvents::default();
        for (revision, key) in [(2, "k1"), (3, "k2"), (4, "k1"), (5, "k1")] {
            let e = put(revision, key, &format!("v{revision}"));
            kv.revisions.insert(revision, (vec![e], 1));
        }
        kv
    }

    fn log(segments: Vec<Segment>) -> WatchLog {
        WatchLog {
            client: 1,
            watch: 1,
            key: b"k1".to_vec(),
            range_end: Vec::new(),
            prev_kv: false,
            segments,
        }
    }

    fn segment(start: i64, items: Vec<Item>) -> Segment {
        Segment {
            member: 1,
            stream: 1,
            requested_start: start,
            created_revision: Some(5),
            fragment: false,
            joined: 0,
            fragments: 0,
            items,
            end: SegmentEnd::Moved,
        }
    }

    #[test]
    fn a_complete_ordered_watch_passes() {
        let items = vec![
            Item::Events(vec![put(2, "k1", "v2")]),
            Item::Events(vec![put(4, "k1", "v4")]),
            Item::Progress(4),
        ];
        let resumed = vec![Item::Events(vec![put(5, "k1", "v5")])];
        let logs = [log(vec![segment(1, items), segment(5, resumed)])];
        check_watches(&store(), &logs, &[], &BTreeMap::new()).unwrap();
    }

    #[test]
    fn a_missed_event_is_a_gap() {
        let items = vec![
            Item::Events(vec![put(2, "k1", "v2")]),
            Item::Events(vec![put(5, "k1", "v5")]),
        ];
        let err = check_watches(
            &store(),
            &[log(vec![segment(1, items)])],
            &[],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.contains("missed"), "{err}");
    }

    #[test]
    fn progress_ahead_of_delivery_is_caught() {
        let items = vec![Item::Events(vec![put(2, "k1", "v2")]), Item::Progress(4)];
        let err = check_watches(
            &store(),
            &[log(vec![segment(1, items)])],
            &[],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.contains("missed"), "{err}");
    }

    #[test]
    fn a_repeat_after_reconnecting_is_caught() {
        let first = vec![Item::Events(vec![put(4, "k1", "v4")])];
        let again = vec![Item::Events(vec![put(4, "k1", "v4")])];
        let logs = [log(vec![segment(4, first), segment(4, again)])];
        let err = check_watches(&store(), &logs, &[], &BTreeMap::new()).unwrap_err();
        assert!(err.contains("back in time"), "{err}");
    }

    #[test]
    fn a_wrong_value_is_caught() {
        let items = vec![Item::Events(vec![put(2, "k1", "other")])];
        let err = check_watches(
            &store(),
            &[log(vec![segment(2, items)])],
            &[],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.contains("the store applied"), "{err}");
    }

    fn events_response(watch_id: i64, revisions: &[i64], fragment: bool) -> pb::WatchResponse {
        use stet::proto::mvccpb::{Event, KeyValue};
        pb::WatchResponse {
            watch_id,
            fragment,
            events: revisions
                .iter()
                .map(|&r| Event {
                    kv: Some(KeyValue {
                        key: b"k1".to_vec(),
                        mod_revision: r,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn fragments_are_joined_into_the_response_they_were_cut_from() {
        let mut fragments = Fragments {
            asked: true,
            ..Fragments::default()
        };
        let whole = events_response(3, &[7], false);
        assert_eq!(fragments.join(whole.clone()), Ok(Some((whole, 1))));
        assert_eq!(fragments.join(events_response(3, &[8, 8], true)), Ok(None));
        assert_eq!(fragments.join(events_response(3, &[8], true)), Ok(None));
        let joined = fragments.join(events_response(3, &[8, 9], false));
        assert_eq!(
            joined,
            Ok(Some((events_response(3, &[8, 8, 8, 8, 9], false), 3)))
        );
        assert_eq!(fragments.pending, None);
    }

    #[test]
    fn fragments_out_of_protocol_are_violations() {
        let mut unasked = Fragments::default();
        let err = unasked.join(events_response(3, &[8], true)).unwrap_err();
        assert!(err.contains("did not ask"), "{err}");
        let mut asked = Fragments {
            asked: true,
            ..Fragments::default()
        };
        assert_eq!(asked.join(events_response(3, &[8], true)), Ok(None));
        let progress = pb::WatchResponse {
            watch_id: -1,
            ..Default::default()
        };
        let err = asked.join(progress).unwrap_err();
        assert!(err.contains("before its end"), "{err}");
    }

    #[test]
    fn a_malformed_segment_fails_the_watch() {
        let mut broken = segment(2, vec![Item::Events(vec![put(2, "k1", "v2")])]);
        broken.end = SegmentEnd::Malformed("a fragment came to a watcher".to_string());
        let err = check_watches(&store(), &[log(vec![broken])], &[], &BTreeMap::new()).unwrap_err();
        assert!(err.contains("a fragment came"), "{err}");
    }

    #[test]
    fn a_compaction_cancel_must_name_a_compacted_revision() {
        let mut canceled = segment(2, Vec::new());
        canceled.end = SegmentEnd::Compacted(4);
        let at_create = BTreeMap::from([(1, 4)]);
        check_watches(
            &store(),
            &[log(vec![canceled.clone()])],
            &[(4, true)],
            &at_create,
        )
        .unwrap();
        let none = BTreeMap::new();
        let err = check_watches(&store(), &[log(vec![canceled])], &[(3, true)], &none).unwrap_err();
        assert!(err.contains("no client compacted"), "{err}");
        let served = segment(2, vec![Item::Events(vec![put(2, "k1", "v2")])]);
        let err =
            check_watches(&store(), &[log(vec![served])], &[(4, true)], &at_create).unwrap_err();
        assert!(err.contains("not canceled"), "{err}");
    }
}
