//! Checking a peer message before raft sees it. raft-rs trusts its peers: on some messages that no
//! correct peer sends (an append whose entries do not follow its index, a commit index past the
//! end of this member's log) it panics, taking the member down. Peer messages are bytes from the
//! network, so the node drops those, as it would a lost packet.

use std::collections::BTreeSet;

use raft::eraftpb::{ConfState, Message, MessageType};

/// Why a peer message was dropped before reaching raft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPeerMessage {
    #[error("message addressed to member {to:x}, not to this member")]
    WrongRecipient { to: u64 },
    #[error("message from member {from:x}, which cannot be a peer")]
    BadSender { from: u64 },
    #[error("{msg_type:?} is local to a member and never sent to one")]
    LocalOnly { msg_type: MessageType },
    #[error("{msg_type:?} with term {term}: only forwarded proposals and reads have term 0")]
    WrongTerm { msg_type: MessageType, term: u64 },
    /// A leadership transfer request forwarded to a member that is not (or no longer) the
    /// leader: raft-rs would forward it again and panic on the term the sender stamped on it.
    #[error(
        "leader transfer request for member {transferee:x} reached a member that is not the leader"
    )]
    TransferToNonLeader { transferee: u64 },
    #[error("append in term {term} after index {index} with log term {log_term}")]
    PrevTermOutOfRange {
        index: u64,
        log_term: u64,
        term: u64,
    },
    #[error(
        "append after index {index}: entry {position} has index {found}, expected {expected:?}"
    )]
    EntryOutOfPlace {
        index: u64,
        position: usize,
        found: u64,
        expected: Option<u64>,
    },
    #[error(
        "append in term {term} after log term {log_term}: entry {index} has term {found}, \
         below the term before it or above the message's"
    )]
    EntryTermOutOfOrder {
        term: u64,
        log_term: u64,
        index: u64,
        found: u64,
    },
    #[error("snapshot at index {index} term {snapshot_term} in a message of term {term}")]
    SnapshotOutOfTerm {
        index: u64,
        snapshot_term: u64,
        term: u64,
    },
    #[error("snapshot has a configuration raft cannot restore: {detail}")]
    SnapshotConfState { detail: &'static str },
    #[error("forwarded proposal without entries")]
    EmptyProposal,
    #[error("heartbeat commits index {commit}, past the end of this member's log at {last_index}")]
    CommitPastLog { commit: u64, last_index: u64 },
}

/// Checks a message from the network for member `me`, whose raft log ends at `last_index`.
pub(super) fn check(
    m: &Message,
    me: u64,
    last_index: u64,
    is_leader: bool,
) -> Result<(), BadPeerMessage> {
    if m.to != me {
        return Err(BadPeerMessage::WrongRecipient { to: m.to });
    }
    if m.from == 0 || m.from == me {
        return Err(BadPeerMessage::BadSender { from: m.from });
    }
    let msg_type = m.get_msg_type();
    if is_local(msg_type) {
        return Err(BadPeerMessage::LocalOnly { msg_type });
    }
    // raft-rs stamps its term on every message it sends, except proposals and reads it forwards to
    // the leader; it treats a term of 0 as "local" and may then panic answering it.
    let forwarded = matches!(
        msg_type,
        MessageType::MsgPropose | MessageType::MsgReadIndex
    );
    if forwarded != (m.term == 0) {
        return Err(BadPeerMessage::WrongTerm {
            msg_type,
            term: m.term,
        });
    }
    match msg_type {
        MessageType::MsgTransferLeader if !is_leader => {
            Err(BadPeerMessage::TransferToNonLeader { transferee: m.from })
        }
        MessageType::MsgAppend => check_append_entries(m),
        MessageType::MsgSnapshot => check_snapshot(m),
        MessageType::MsgPropose if m.entries.is_empty() => Err(BadPeerMessage::EmptyProposal),
        // A leader commits on a follower only what it knows the follower holds.
        MessageType::MsgHeartbeat if m.commit > last_index => Err(BadPeerMessage::CommitPastLog {
            commit: m.commit,
            last_index,
        }),
        _ => Ok(()),
    }
}

/// Messages a member's raft sends only to itself (raft-rs's `is_local_msg`, which it does not export).
fn is_local(msg_type: MessageType) -> bool {
    matches!(
        msg_type,
        MessageType::MsgHup
            | MessageType::MsgBeat
            | MessageType::MsgUnreachable
            | MessageType::MsgSnapStatus
            | MessageType::MsgCheckQuorum
    )
}

/// An append's entries follow its `(index, log_term)` one index at a time, with terms that never
/// go down and never pass the leader's term.
fn check_append_entries(m: &Message) -> Result<(), BadPeerMessage> {
    // raft-rs reads the term of an index past the end of its log as 0, so a log term of 0 after a
    // real index would "match" entries this member does not have.
    if (m.index == 0) != (m.log_term == 0) || m.log_term > m.term {
        return Err(BadPeerMessage::PrevTermOutOfRange {
            index: m.index,
            log_term: m.log_term,
            term: m.term,
        });
    }
    let mut prev_term = m.log_term;
    for (position, entry) in m.entries.iter().enumerate() {
        let expected = u64::try_from(position)
            .ok()
            .and_then(|p| m.index.checked_add(p))
            .and_then(|i| i.checked_add(1));
        if expected != Some(entry.index) {
            return Err(BadPeerMessage::EntryOutOfPlace {
                index: m.index,
                position,
                found: entry.index,
                expected,
            });
        }
        if entry.term < prev_term || entry.term > m.term {
            return Err(BadPeerMessage::EntryTermOutOfOrder {
                term: m.term,
                log_term: m.log_term,
                index: entry.index,
                found: entry.term,
            });
        }
        prev_term = entry.term;
    }
    Ok(())
}

/// A snapshot names a real entry (index and term at least 1, term at most the leader's) and a
/// configuration raft-rs can rebuild exactly (it panics when it cannot).
fn check_snapshot(m: &Message) -> Result<(), BadPeerMessage> {
    let meta = m.get_snapshot().get_metadata();
    if meta.index == 0 || meta.term == 0 || meta.term > m.term {
        return Err(BadPeerMessage::SnapshotOutOfTerm {
            index: meta.index,
            snapshot_term: meta.term,
            term: m.term,
        });
    }
    check_conf_state(meta.get_conf_state())
        .map_err(|detail| BadPeerMessage::SnapshotConfState { detail })
}

/// The configurations raft-rs's restore rebuilds to the same sets: some voters, every ID non-zero
/// and listed once, voters and learners apart, and learners-next only in a joint configuration,
/// among its outgoing voters.
fn check_conf_state(cs: &ConfState) -> Result<(), &'static str> {
    let set = |ids: &[u64]| -> Result<BTreeSet<u64>, &'static str> {
        let set: BTreeSet<u64> = ids.iter().copied().collect();
        if set.len() != ids.len() || set.contains(&0) {
            return Err("an ID is 0 or listed twice");
        }
        Ok(set)
    };
    let voters = set(cs.get_voters())?;
    let learners = set(cs.get_learners())?;
    let outgoing = set(cs.get_voters_outgoing())?;
    let learners_next = set(cs.get_learners_next())?;
    if voters.is_empty() {
        return Err("no voters");
    }
    if !voters.is_disjoint(&learners) || !learners.is_disjoint(&outgoing) {
        return Err("a learner is also a voter");
    }
    if !learners_next.is_subset(&outgoing) || !learners_next.is_disjoint(&voters) {
        return Err("a next learner is not an outgoing voter only");
    }
    if outgoing.is_empty() && cs.auto_leave {
        return Err("auto-leave outside a joint configuration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            term,
            index,
            ..Entry::default()
        }
    }

    fn append(index: u64, log_term: u64, entries: Vec<Entry>) -> Message {
        Message {
            msg_type: MessageType::MsgAppend,
            to: 1,
            from: 2,
            term: 2,
            index,
            log_term,
            commit: 4,
            entries: entries.into(),
            ..Message::default()
        }
    }

    #[test]
    fn a_leader_transfer_request_only_reaches_the_leader() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgTransferLeader);
        m.to = 1;
        m.from = 2;
        m.term = 1;
        assert_eq!(
            check(&m, 1, 3, false),
            Err(BadPeerMessage::TransferToNonLeader { transferee: 2 })
        );
        assert_eq!(check(&m, 1, 3, true), Ok(()));
    }

    #[test]
    fn an_append_whose_entries_follow_its_index_passes() {
        let m = append(3, 1, vec![entry(1, 4), entry(2, 5)]);
        assert_eq!(check(&m, 1, 3, false), Ok(()));
        assert_eq!(check(&append(3, 1, vec![]), 1, 3, false), Ok(()));
    }

    #[test]
    fn an_append_whose_entries_do_not_follow_its_index_is_dropped() {
        // Found by the raft_message fuzz target: raft-rs panicked with "to_commit 4 is out of
        // range [last_index 3]" because it trusted the entries to start at index 4.
        let m = append(3, 1, vec![entry(2, 0)]);
        assert!(matches!(
            check(&m, 1, 3, false),
            Err(BadPeerMessage::EntryOutOfPlace { found: 0, .. })
        ));
        let gap = append(3, 1, vec![entry(2, 4), entry(2, 6)]);
        assert!(check(&gap, 1, 3, false).is_err());
        let overflow = append(u64::MAX, 1, vec![entry(2, 0)]);
        assert!(check(&overflow, 1, 3, false).is_err());
    }

    #[test]
    fn an_append_after_an_index_without_its_term_is_dropped() {
        // Found by the raft_message fuzz target: an append after index 498_300_564 with log term
        // 0 matched raft-rs's term 0 for missing entries, and its commit index 4 passed the end
        // of the log ("to_commit 4 is out of range [last_index 3]").
        let m = append(498_300_564, 0, vec![]);
        assert!(matches!(
            check(&m, 1, 3, false),
            Err(BadPeerMessage::PrevTermOutOfRange { log_term: 0, .. })
        ));
        assert!(check(&append(3, 3, vec![]), 1, 3, false).is_err());
        assert!(check(&append(0, 1, vec![]), 1, 3, false).is_err());
        assert_eq!(check(&append(0, 0, vec![entry(1, 1)]), 1, 3, false), Ok(()));
    }

    #[test]
    fn an_append_with_terms_out_of_order_is_dropped() {
        let down = append(3, 2, vec![entry(1, 4)]);
        assert!(check(&down, 1, 3, false).is_err());
        let future = append(3, 1, vec![entry(3, 4)]);
        assert!(check(&future, 1, 3, false).is_err());
    }

    #[test]
    fn a_heartbeat_committing_past_the_log_is_dropped() {
        let mut m = append(0, 0, vec![]);
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.commit = 4;
        assert_eq!(
            check(&m, 1, 3, false),
            Err(BadPeerMessage::CommitPastLog {
                commit: 4,
                last_index: 3
            })
        );
        m.commit = 3;
        assert_eq!(check(&m, 1, 3, false), Ok(()));
    }

    fn snapshot_message(index: u64, term: u64, voters: Vec<u64>) -> Message {
        let mut m = append(0, 0, vec![]);
        m.set_msg_type(MessageType::MsgSnapshot);
        m.term = 3;
        let meta = m.mut_snapshot().mut_metadata();
        (meta.index, meta.term) = (index, term);
        meta.mut_conf_state().voters = voters;
        m
    }

    #[test]
    fn a_snapshot_without_a_term_is_dropped() {
        // Found by the raft_message fuzz target: a snapshot at index 3, term 0, past the end of
        // a one-entry log "matched" raft-rs's term 0 for missing entries, and it committed index 3
        // ("to_commit 3 is out of range [last_index 1]").
        assert!(matches!(
            check(&snapshot_message(3, 0, vec![1]), 1, 1, false),
            Err(BadPeerMessage::SnapshotOutOfTerm { .. })
        ));
        assert!(check(&snapshot_message(3, 4, vec![1]), 1, 1, false).is_err());
        assert!(check(&snapshot_message(0, 1, vec![1]), 1, 1, false).is_err());
        assert_eq!(
            check(&snapshot_message(3, 2, vec![1, 2]), 1, 1, false),
            Ok(())
        );
    }

    #[test]
    fn a_snapshot_whose_configuration_raft_cannot_rebuild_is_dropped() {
        let bad = |edit: fn(&mut ConfState)| {
            let mut m = snapshot_message(3, 2, vec![1, 2, 3]);
            edit(m.mut_snapshot().mut_metadata().mut_conf_state());
            check(&m, 1, 1, false)
        };
        assert!(bad(|cs| cs.voters = vec![1, 1]).is_err());
        assert!(bad(|cs| cs.voters = vec![]).is_err());
        assert!(bad(|cs| cs.voters = vec![1, 0]).is_err());
        assert!(bad(|cs| cs.learners = vec![2]).is_err());
        assert!(bad(|cs| cs.learners_next = vec![4]).is_err());
        assert!(bad(|cs| cs.auto_leave = true).is_err());
        assert_eq!(bad(|cs| cs.learners = vec![4]), Ok(()));
        let joint = bad(|cs| {
            cs.voters_outgoing = vec![1, 2, 4];
            cs.learners_next = vec![4];
            cs.auto_leave = true;
        });
        assert_eq!(joint, Ok(()));
    }

    #[test]
    fn a_message_without_the_term_raft_stamps_on_it_is_dropped() {
        // Found by the raft_message fuzz target: a vote request with term 0 made raft-rs panic
        // answering it ("term should be set when sending MsgRequestVoteResponse").
        let mut vote = append(3, 1, vec![]);
        vote.set_msg_type(MessageType::MsgRequestVote);
        vote.term = 0;
        assert!(matches!(
            check(&vote, 1, 3, false),
            Err(BadPeerMessage::WrongTerm { term: 0, .. })
        ));
        let mut propose = append(0, 0, vec![entry(0, 0)]);
        propose.set_msg_type(MessageType::MsgPropose);
        assert!(check(&propose, 1, 3, false).is_err());
        propose.term = 0;
        assert_eq!(check(&propose, 1, 3, false), Ok(()));
        // raft-rs panics on an empty one ("stepped empty MsgProp").
        propose.entries.clear();
        assert_eq!(
            check(&propose, 1, 3, false),
            Err(BadPeerMessage::EmptyProposal)
        );
    }

    #[test]
    fn messages_for_another_member_from_no_one_or_local_only_are_dropped() {
        let mut m = append(3, 1, vec![]);
        m.to = 5;
        assert!(matches!(
            check(&m, 1, 3, false),
            Err(BadPeerMessage::WrongRecipient { to: 5 })
        ));
        for from in [0, 1] {
            let mut m = append(3, 1, vec![]);
            m.from = from;
            assert!(matches!(
                check(&m, 1, 3, false),
                Err(BadPeerMessage::BadSender { .. })
            ));
        }
        let mut hup = append(0, 0, vec![]);
        hup.set_msg_type(MessageType::MsgHup);
        assert!(matches!(
            check(&hup, 1, 3, false),
            Err(BadPeerMessage::LocalOnly { .. })
        ));
    }
}
