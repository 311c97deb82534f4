//! How a joining member learns who it is: it asks every other member of `--initial-cluster` for
//! the cluster's ID and membership, and finds itself in the answers by its peer URLs (`member
//! add` gave it its ID), as etcd does.
//!
//! Unlike etcd, which takes the first answer, it weighs every answer of a round: a member that
//! has not applied the latest membership changes yet may still list a removed member at the
//! joiner's peer URLs (a member re-added on the same machine reuses them), and a joiner that took
//! that ID would be a removed voter starting over with an empty log. So the most recent answer
//! (the highest applied index) wins, and an ID any answer knows was removed is never taken.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::config::ServerConfig;
use super::env::{Environment, Mistake};
use super::peer::conn::{dial, Identity, PeerError};
use super::run::ServerError;
use super::tls::peer::PeerTls;
use crate::proto::etcdserverpb as pb;
use crate::proto::stetpeerpb as peerpb;
use crate::types::{ClusterId, MemberId};

/// How long a joining member keeps asking before it gives up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between two rounds of asking.
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// A joining member's identity: the cluster, its own ID in it, and the membership it joins.
pub type JoinIdentity = (ClusterId, MemberId, Vec<pb::Member>);

/// Asks the other members of `--initial-cluster`, round after round until one round's answers
/// name this member (see the module's doc), or `JOIN_TIMEOUT` passes.
pub async fn discover_identity(
    config: &ServerConfig,
    env: &dyn Environment,
    peer_tls: Option<Arc<PeerTls>>,
) -> Result<JoinIdentity, ServerError> {
    let reading = if env.planted(Mistake::JoinTakesStalestAnswer) {
        Reading::Stalest
    } else {
        Reading::Weighed
    };
    let others: Vec<String> = config
        .initial_members
        .iter()
        .filter(|m| m.id != config.member_id.0)
        .flat_map(|m| m.peer_ur_ls.clone())
        .collect();
    if others.is_empty() {
        return Err(ServerError::Join(
            "--initial-cluster names no other member to ask".to_string(),
        ));
    }
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    loop {
        let asked = others.iter().map(|url| ask_membership(url, &peer_tls));
        let answers = futures_util::future::join_all(asked).await;
        let answers: Vec<(&str, Result<peerpb::Welcome, String>)> = others
            .iter()
            .map(String::as_str)
            .zip(answers.into_iter().map(|a| a.map_err(|e| e.to_string())))
            .collect();
        let error = match identity_in_answers(&config.peer_urls, &config.name, &answers, reading) {
            Ok(identity) => return Ok(identity),
            Err(error) => error,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(ServerError::Join(error));
        }
        tokio::time::sleep(JOIN_RETRY).await;
    }
}

async fn ask_membership(
    url: &str,
    tls: &Option<Arc<PeerTls>>,
) -> Result<peerpb::Welcome, PeerError> {
    let unknown = Identity {
        cluster_id: 0,
        member_id: 0,
        tls: tls.clone(),
    };
    let (_, welcome) = dial(url, &unknown, peerpb::Purpose::Members, 0).await?;
    Ok(welcome)
}

/// How a round of answers is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The most recent answer wins, and no removed ID is taken (see the module's doc).
    Weighed,
    /// The least recent answer naming this member wins, removed or not: only as a planted
    /// mistake, for the simulator's self-test (`Mistake::JoinTakesStalestAnswer`). etcd takes
    /// the first answer, which can be that one.
    Stalest,
}

/// This member's identity in one round of answers (peer URL, answer or why none): the member at
/// `own_urls` in the most recent answer that lists one, unless some answer knows that member was
/// removed. Otherwise why not, for the operator.
fn identity_in_answers(
    own_urls: &[String],
    own_name: &str,
    answers: &[(&str, Result<peerpb::Welcome, String>)],
    reading: Reading,
) -> Result<JoinIdentity, String> {
    let removed: BTreeSet<u64> = match reading {
        Reading::Weighed => answers
            .iter()
            .filter_map(|(_, answer)| answer.as_ref().ok())
            .flat_map(|welcome| welcome.removed_ids.iter().copied())
            .collect(),
        Reading::Stalest => BTreeSet::new(),
    };
    let mut best: Option<(u64, JoinIdentity)> = None;
    let mut last_error = None;
    for (url, answer) in answers {
        let welcome = match answer {
            Ok(welcome) => welcome,
            Err(error) => {
                last_error = Some(format!(
                    "no member of --initial-cluster answered ({url}: {error})"
                ));
                continue;
            }
        };
        // A member that has not applied this member's addition yet does not know it; another
        // one (or the same one a little later) will.
        let Some(member) = member_at(&welcome.members, own_urls) else {
            last_error = Some(format!(
                "cluster {:x} has no member with peer URLs {}; add it first \
                 (etcdctl member add {own_name} --peer-urls={})",
                welcome.cluster_id,
                own_urls.join(","),
                own_urls.join(",")
            ));
            continue;
        };
        if removed.contains(&member.id) {
            last_error = Some(format!(
                "{url} still lists member {:x}, removed from the cluster, at peer URLs {}; \
                 waiting for it to apply the removal and the new member's addition",
                member.id,
                own_urls.join(",")
            ));
            continue;
        }
        let better = |applied: u64| match reading {
            Reading::Weighed => welcome.applied_index > applied,
            Reading::Stalest => welcome.applied_index < applied,
        };
        if best.as_ref().is_none_or(|(applied, _)| better(*applied)) {
            let identity = (
                ClusterId(welcome.cluster_id),
                MemberId(member.id),
                welcome.members.clone(),
            );
            best = Some((welcome.applied_index, identity));
        }
    }
    match best {
        Some((_, identity)) => Ok(identity),
        None => Err(last_error.unwrap_or_else(|| "no member of --initial-cluster answered".into())),
    }
}

/// The member whose peer URLs are `own_urls` (in any order).
fn member_at<'a>(members: &'a [pb::Member], own_urls: &[String]) -> Option<&'a pb::Member> {
    let mut own_urls = own_urls.to_vec();
    own_urls.sort();
    members.iter().find(|m| {
        let mut urls = m.peer_ur_ls.clone();
        urls.sort();
        urls == own_urls
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN_URL: &str = "http://10.0.0.3:2380";

    fn member(id: u64, url: &str) -> pb::Member {
        pb::Member {
            id,
            peer_ur_ls: vec![url.to_string()],
            ..Default::default()
        }
    }

    /// A member of the cluster other than the joiner.
    fn first_peer() -> pb::Member {
        member(1, "http://10.0.0.1:2380")
    }

    fn welcome(applied_index: u64, members: Vec<pb::Member>, removed: &[u64]) -> peerpb::Welcome {
        peerpb::Welcome {
            cluster_id: 0xc1,
            members,
            applied_index,
            removed_ids: removed.to_vec(),
            ..Default::default()
        }
    }

    fn identity(answers: &[(&str, Result<peerpb::Welcome, String>)]) -> Result<u64, String> {
        read(answers, Reading::Weighed)
    }

    fn read(
        answers: &[(&str, Result<peerpb::Welcome, String>)],
        reading: Reading,
    ) -> Result<u64, String> {
        identity_in_answers(&[OWN_URL.to_string()], "a3", answers, reading).map(|(_, id, _)| id.0)
    }

    #[test]
    fn the_member_at_the_own_peer_urls_is_found() {
        let answer = welcome(10, vec![first_peer(), member(7, OWN_URL)], &[]);
        let (cluster, id, members) = identity_in_answers(
            &[OWN_URL.to_string()],
            "a3",
            &[("u1", Ok(answer))],
            Reading::Weighed,
        )
        .unwrap();
        assert_eq!((cluster.0, id.0, members.len()), (0xc1, 7, 2));
    }

    #[test]
    fn a_lagging_answer_naming_a_removed_predecessor_loses_to_a_recent_one() {
        // Member 5 ran at these URLs and was removed; member 7 was added there since. The
        // lagging member answers first and has applied neither change.
        let lagging = welcome(10, vec![first_peer(), member(5, OWN_URL)], &[]);
        let recent = welcome(14, vec![first_peer(), member(7, OWN_URL)], &[5]);
        assert_eq!(
            identity(&[("u1", Ok(lagging.clone())), ("u2", Ok(recent.clone()))]),
            Ok(7)
        );
        assert_eq!(identity(&[("u2", Ok(recent)), ("u1", Ok(lagging))]), Ok(7));
    }

    #[test]
    fn the_planted_stalest_reading_takes_the_lagging_answer() {
        // What the simulator's self-test plants: the removed predecessor's ID, as etcd takes it
        // when the lagging member answers first.
        let lagging = welcome(10, vec![first_peer(), member(5, OWN_URL)], &[]);
        let recent = welcome(14, vec![first_peer(), member(7, OWN_URL)], &[5]);
        let answers = [("u2", Ok(recent)), ("u1", Ok(lagging))];
        assert_eq!(read(&answers, Reading::Stalest), Ok(5));
        assert_eq!(read(&answers, Reading::Weighed), Ok(7));
    }

    #[test]
    fn an_id_any_answer_knows_was_removed_is_never_taken() {
        // The member that applied the removal has not applied the addition yet.
        let lagging = welcome(10, vec![member(5, OWN_URL)], &[]);
        let removal_only = welcome(9, vec![first_peer()], &[5]);
        let error = identity(&[("u1", Ok(lagging)), ("u2", Ok(removal_only))]).unwrap_err();
        assert!(
            error.contains("removed") || error.contains("no member"),
            "{error}"
        );
    }

    #[test]
    fn no_answer_and_no_listing_explain_themselves() {
        let error = identity(&[("u1", Err("connection refused".into()))]).unwrap_err();
        assert!(error.contains("u1: connection refused"), "{error}");
        let other = welcome(3, vec![first_peer()], &[]);
        let error = identity(&[("u1", Ok(other))]).unwrap_err();
        assert!(error.contains("member add a3"), "{error}");
    }
}
