//! The durability oracle for one member: what a member counted on being durable before it
//! crashed — the log up to its persisted index, and its term and vote — must still be there when
//! it restarts. (The commit index is not: raft never waits for it to be synced, and recomputes it.) The rest of the cluster can cover for a member that lost a
//! synced write or forgot a vote, so this is checked on the member itself, at every restart.

use stet::node::DurableMarks;

/// What a restarted member holds, as far as the oracle compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restarted {
    pub last_index: u64,
    pub term: u64,
    pub vote: u64,
}

/// Checks a restart against the marks the member last counted on; the violation in words.
pub fn check_restart(member: u64, before: &DurableMarks, after: Restarted) -> Result<(), String> {
    let hs = &before.hard_state;
    let lost = |what: String| {
        Err(format!(
            "member {member:x} restarted with less than it had acknowledged as durable: {what}"
        ))
    };
    if after.last_index < before.persisted_index {
        return lost(format!(
            "its log ends at index {} but it had reported index {} persisted",
            after.last_index, before.persisted_index
        ));
    }
    if after.term < hs.term {
        return lost(format!(
            "term {} after having persisted term {}",
            after.term, hs.term
        ));
    }
    if after.term == hs.term && hs.vote != 0 && after.vote != hs.vote {
        return lost(format!(
            "in term {} it had voted for {:x}, and now says {:x}",
            hs.term, hs.vote, after.vote
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::HardState;

    fn marks(index: u64, term: u64, vote: u64, commit: u64) -> DurableMarks {
        let hard_state = HardState {
            term,
            vote,
            commit,
            ..Default::default()
        };
        DurableMarks {
            persisted_index: index,
            hard_state,
        }
    }

    fn restarted(last_index: u64, term: u64, vote: u64, _commit: u64) -> Restarted {
        Restarted {
            last_index,
            term,
            vote,
        }
    }

    #[test]
    fn a_restart_that_kept_everything_passes() {
        check_restart(1, &marks(10, 3, 2, 8), restarted(12, 3, 2, 8)).unwrap();
        check_restart(1, &marks(10, 3, 2, 8), restarted(10, 4, 0, 9)).unwrap();
    }

    #[test]
    fn a_shorter_log_is_caught() {
        let err = check_restart(1, &marks(10, 3, 2, 8), restarted(9, 3, 2, 8)).unwrap_err();
        assert!(err.contains("log ends at index 9"), "{err}");
    }

    #[test]
    fn a_forgotten_vote_or_term_is_caught() {
        let err = check_restart(1, &marks(10, 3, 2, 8), restarted(10, 3, 0, 8)).unwrap_err();
        assert!(err.contains("voted for 2"), "{err}");
        let err = check_restart(1, &marks(10, 3, 2, 8), restarted(10, 2, 2, 8)).unwrap_err();
        assert!(err.contains("term 2"), "{err}");
    }

    #[test]
    fn a_commit_index_raft_never_synced_may_go_back() {
        check_restart(1, &marks(10, 3, 2, 8), restarted(10, 3, 2, 7)).unwrap();
    }
}
