//! The corruption checks. At start (etcd's `--experimental-initial-corrupt-check`), before it
//! serves anyone, a member compares its hash of its key-value history up to its revision with
//! every reachable peer's, and refuses to start if one diverges. Periodically (etcd's
//! `--experimental-corrupt-check-time`): every interval the leader
//! hashes its key-value history up to its current revision and asks every peer for its hash up
//! to the same revision (a `HashKv` peer connection; a peer waits a moment to apply that
//! revision). Members whose histories were compacted at the same revision but hash differently
//! hold other data for the same log. When a majority of the members hash alike, the leader raises
//! the `CORRUPT` alarm through raft for each member outside it — the leader itself, if its copy
//! is the odd one (etcd 3.4 always blamed the follower); without a majority it names every peer
//! that differs from it. Every member then refuses writes until an operator acts (`alarm disarm`
//! once repaired), as etcd does. Peers that cannot answer (behind, compacted past the revision,
//! unreachable) are skipped until the next round.

use std::sync::Arc;
use std::time::Duration;

use crate::server::stop::Stopped;

use super::conn::{dial, Identity, HANDSHAKE_TIMEOUT};
use crate::node::{ClientRequest, ClientResponse};
use crate::peer_wire::{self, FrameKind};
use crate::proto::etcdserverpb as pb;
use crate::proto::stetpeerpb as peerpb;
use crate::server::env::{Environment, Mistake};
use crate::server::handle::DriverHandle;

/// A member's hash of its history up to a revision, with the revision it was compacted at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryHash {
    pub hash: u32,
    pub compact_revision: i64,
}

/// Whether `peer`'s hash shows other data than `own` for the same history: only hashes of
/// histories compacted at the same revision compare (etcd's rule).
pub fn diverges(own: HistoryHash, peer: HistoryHash) -> bool {
    own.compact_revision == peer.compact_revision && own.hash != peer.hash
}

/// The members a periodic check raises the alarm for, given this member's hash, the peers'
/// answers and the number of members. When a strict majority of the members hash alike, every
/// member hashing otherwise holds the odd data, this member included. Without such a majority
/// nobody can tell which copy is right: every peer diverging from this member is named (etcd
/// 3.4's rule), so that writes stop until an operator looks.
pub fn culprits(
    own_id: u64,
    own: HistoryHash,
    answers: &[(u64, HistoryHash)],
    members: usize,
) -> Vec<u64> {
    let comparable: Vec<(u64, u32)> = std::iter::once((own_id, own))
        .chain(answers.iter().copied())
        .filter(|(_, hash)| hash.compact_revision == own.compact_revision)
        .map(|(member, hash)| (member, hash.hash))
        .collect();
    let holding = |hash: u32| comparable.iter().filter(|(_, h)| *h == hash).count();
    let majority = comparable
        .iter()
        .map(|(_, hash)| *hash)
        .find(|&hash| holding(hash) * 2 > members);
    let agreed = majority.unwrap_or(own.hash);
    comparable
        .into_iter()
        .filter(|(_, hash)| *hash != agreed)
        .map(|(member, _)| member)
        .collect()
}

/// How long a check waits for the peers' answers (hashing a large history takes a while).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the check every `interval` while this member leads, until `stopped` says stop.
pub async fn check_periodically(
    env: Arc<dyn Environment>,
    identity: Identity,
    driver: DriverHandle,
    interval: Duration,
    stopped: Stopped,
    log: slog::Logger,
) {
    assert!(!interval.is_zero(), "a corruption check needs an interval");
    loop {
        let at = env.now() + interval;
        tokio::select! {
            biased;
            _ = stopped.wait() => return,
            () = env.sleep_until(at) => {}
        }
        if driver.status().is_leader {
            check_once(env.as_ref(), &identity, &driver, &log).await;
        }
    }
}

/// One round: compares this member's hash with every peer's and raises the alarm for each
/// member `culprits` names. Returns those members.
pub async fn check_once(
    env: &dyn Environment,
    identity: &Identity,
    driver: &DriverHandle,
    log: &slog::Logger,
) -> Vec<u64> {
    let Some(comparison) = compare(env, identity, driver).await else {
        return Vec::new();
    };
    let culprits = culprits(
        identity.member_id,
        comparison.own,
        &comparison.answers,
        comparison.members,
    );
    let hashes: Vec<String> = std::iter::once((identity.member_id, comparison.own))
        .chain(comparison.answers.iter().copied())
        .map(|(member, hash)| format!("{member:x}={}", hash.hash))
        .collect();
    for &culprit in &culprits {
        slog::error!(log, "found data inconsistency: raising the CORRUPT alarm";
            "revision" => comparison.revision, "culprit" => %format!("{culprit:x}"),
            "hashes" => hashes.join(","), "compact_revision" => comparison.own.compact_revision);
        let alarm = pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Activate as i32,
            member_id: culprit,
            alarm: pb::AlarmType::Corrupt as i32,
        };
        if let Err(error) = driver.call_local(ClientRequest::Alarm(alarm), None).await {
            slog::warn!(log, "raising the CORRUPT alarm failed; the next check tries again";
                "culprit" => %format!("{culprit:x}"), "error" => %error);
        }
    }
    culprits
}

/// The check at start, once the member runs but before it serves clients: an error naming the
/// divergent peers and the hashes when one holds other data for the same history. Peers that
/// cannot answer are skipped (a new cluster's peers may not be up yet).
pub async fn initial_check(
    env: &dyn Environment,
    identity: &Identity,
    driver: &DriverHandle,
    log: &slog::Logger,
) -> Result<(), String> {
    let Some(comparison) = compare(env, identity, driver).await else {
        return Ok(());
    };
    let Comparison {
        revision,
        own,
        answers,
        unanswered,
        ..
    } = comparison;
    let divergent: Vec<(u64, u32)> = answers
        .iter()
        .filter(|(_, theirs)| diverges(own, *theirs))
        .map(|(peer, theirs)| (*peer, theirs.hash))
        .collect();
    if !unanswered.is_empty() {
        slog::warn!(log, "initial corruption check: peers that did not answer were skipped";
            "peers" => unanswered.iter().map(|p| format!("{p:x}")).collect::<Vec<_>>().join(","));
    }
    if divergent.is_empty() {
        slog::info!(log, "initial corruption check passed"; "revision" => revision, "hash" => own.hash);
        return Ok(());
    }
    let peers: Vec<String> = divergent
        .iter()
        .map(|(peer, hash)| format!("{peer:x} (hash {hash})"))
        .collect();
    Err(format!(
        "found data inconsistency with peers: member {:x} hashes its history up to revision \
         {revision} as {}, but {} hash it otherwise; this member's data is not the cluster's \
         (remove it with `etcdctl member remove`, move its data directory aside, and add it back)",
        identity.member_id,
        own.hash,
        peers.join(", ")
    ))
}

/// What one round found: this member's hash at its revision, the peers' hashes, the peers that
/// did not answer with a hash, and how many members the cluster has.
struct Comparison {
    revision: i64,
    own: HistoryHash,
    answers: Vec<(u64, HistoryHash)>,
    unanswered: Vec<u64>,
    members: usize,
}

/// Asks every peer at once for its hash at this member's revision, waiting at most
/// `ANSWER_TIMEOUT`; `None` if this member has no hash of its own to compare.
async fn compare(
    env: &dyn Environment,
    identity: &Identity,
    driver: &DriverHandle,
) -> Option<Comparison> {
    let revision = driver.status().revision;
    let own = local_hash(driver, revision).await?;
    let members = match driver
        .call_local(
            ClientRequest::MemberList(pb::MemberListRequest::default()),
            None,
        )
        .await
    {
        Ok(ClientResponse::MemberList(list)) => list.members,
        _ => return None,
    };
    let member_count = members.len();
    let asked: Vec<_> = members
        .into_iter()
        .filter(|member| member.id != identity.member_id)
        .map(|member| {
            let (peer, urls) = (member.id, member.peer_ur_ls);
            let identity = identity.clone();
            let task =
                tokio::spawn(async move { peer_hash(&identity, peer, &urls, revision).await });
            (peer, task)
        })
        .collect();
    let deadline = env.now() + ANSWER_TIMEOUT;
    let mut comparison = Comparison {
        revision,
        own,
        answers: Vec::new(),
        unanswered: Vec::new(),
        members: member_count,
    };
    for (peer, task) in asked {
        let left = deadline.saturating_duration_since(env.now());
        match tokio::time::timeout(left, task).await {
            Ok(Ok(Some(_))) if env.planted(Mistake::IgnoreDivergentPeers) => {
                comparison.answers.push((peer, own));
            }
            Ok(Ok(Some(theirs))) => comparison.answers.push((peer, theirs)),
            _ => comparison.unanswered.push(peer),
        }
    }
    Some(comparison)
}

/// This member's hash up to `revision`, if it has one.
async fn local_hash(driver: &DriverHandle, revision: i64) -> Option<HistoryHash> {
    let request = ClientRequest::HashKv(pb::HashKvRequest { revision });
    match driver.call_local(request, None).await {
        Ok(ClientResponse::HashKv(hash)) => Some(HistoryHash {
            hash: hash.hash,
            compact_revision: hash.compact_revision,
        }),
        _ => None,
    }
}

/// `peer`'s hash up to `revision`, if it answers with one.
async fn peer_hash(
    identity: &Identity,
    peer: u64,
    urls: &[String],
    revision: i64,
) -> Option<HistoryHash> {
    for url in urls {
        let Ok((mut stream, _)) = dial(url, identity, peerpb::Purpose::HashKv, peer).await else {
            continue;
        };
        let mut bytes = Vec::new();
        peer_wire::encode_message(
            FrameKind::HashKvAsk,
            &peerpb::HashKvAsk { revision },
            &mut bytes,
        );
        if stream.write_all(&bytes).await.is_err() {
            continue;
        }
        // Hashing a large history takes a while: allow it more than a handshake.
        let Ok(frame) = stream.read_frame_within(HANDSHAKE_TIMEOUT * 10).await else {
            continue;
        };
        let reply: peerpb::HashKvReply =
            peer_wire::decode_message(&frame, FrameKind::HashKvReply).ok()?;
        return reply.error.is_empty().then_some(HistoryHash {
            hash: reply.hash,
            compact_revision: reply.compact_revision,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(hash: u32, compact_revision: i64) -> HistoryHash {
        HistoryHash {
            hash,
            compact_revision,
        }
    }

    #[test]
    fn only_histories_compacted_alike_are_compared() {
        assert!(!diverges(hash(1, 10), hash(1, 10)));
        assert!(diverges(hash(1, 10), hash(2, 10)));
        assert!(!diverges(hash(1, 10), hash(2, 12)), "compacted elsewhere");
        assert!(!diverges(hash(1, 0), hash(2, 5)));
    }

    #[test]
    fn a_majority_names_the_odd_member_out_even_the_checking_one() {
        let agreeing = [(2, hash(7, 3)), (3, hash(7, 3))];
        assert_eq!(culprits(1, hash(7, 3), &agreeing, 3), Vec::<u64>::new());
        assert_eq!(
            culprits(1, hash(9, 3), &agreeing, 3),
            vec![1],
            "the leader is the odd one"
        );
        let one_odd = [(2, hash(7, 3)), (3, hash(8, 3))];
        assert_eq!(culprits(1, hash(7, 3), &one_odd, 3), vec![3]);
    }

    #[test]
    fn without_a_majority_every_peer_diverging_from_the_checker_is_named() {
        // Five members, two did not answer: two against one is no majority of five.
        let answers = [(2, hash(7, 3)), (3, hash(8, 3))];
        assert_eq!(culprits(1, hash(8, 3), &answers, 5), vec![2]);
        // Histories compacted elsewhere are not compared at all.
        let compacted_elsewhere = [(2, hash(1, 9)), (3, hash(2, 9))];
        assert_eq!(
            culprits(1, hash(8, 3), &compacted_elsewhere, 3),
            Vec::<u64>::new()
        );
    }
}
