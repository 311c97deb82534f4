//! The permission oracle: no request succeeds unless some auth state possible while it ran
//! allowed it, and none is refused for want of permission unless some possible state forbade it.
//!
//! The administrator makes one change at a time and records when it first sent it and when a
//! definite answer came (or that none did). A change may take effect at any point of that window;
//! a change one of whose attempts got no answer may, moreover, take effect at any later time (its
//! proposal may still be in some member's log), so its value stays possible from its start on.
//! Each dimension of the state (authentication enabled; each user's permission on its own keys)
//! is followed on its own, which only widens what is possible, so the oracle never blames a
//! correct cluster.

/// One dimension of the auth state the administrator changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Enabled,
    /// User `n`'s readwrite permission on its own keys.
    Granted(u64),
}

/// A change the administrator made: a dimension set to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub dimension: Dimension,
    pub value: bool,
    pub invoke_us: u64,
    /// When a definite answer came; `None` if none did.
    pub complete_us: Option<u64>,
    /// An attempt got no answer: it may still take effect later.
    pub lingers: bool,
}

/// What a user's request came to, for the oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It went through (a write applied, a read answered).
    Allowed,
    /// "etcdserver: permission denied".
    Denied,
    /// Anything else (no answer, no credentials, an unavailable member): says nothing.
    Other,
}

/// One request a user made on a key of `owner`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserOp {
    pub user: u64,
    pub owner: u64,
    pub write: bool,
    pub invoke_us: u64,
    pub complete_us: u64,
    pub verdict: Verdict,
}

/// The values `dimension` may have had at some point of [from_us, to_us]: the value the last
/// change settled before it, every change whose window overlaps it, and every change that
/// lingers (changes are the administrator's, one after another).
fn possible(changes: &[Change], dimension: Dimension, from_us: u64, to_us: u64) -> [bool; 2] {
    let mut values = [false; 2];
    let mut settled = false; // Nothing is enabled or granted at the start.
    let relevant = changes
        .iter()
        .filter(|c| c.dimension == dimension && c.invoke_us <= to_us);
    for change in relevant {
        let settled_before = change.complete_us.is_some_and(|done| done < from_us);
        if settled_before {
            settled = change.value;
        }
        if !settled_before || change.lingers {
            values[change.value as usize] = true;
        }
    }
    values[settled as usize] = true;
    values
}

/// Checks every user request against the administrator's changes; the first violation.
pub fn check(changes: &[Change], ops: &[UserOp]) -> Result<(), String> {
    for op in ops {
        let enabled = possible(changes, Dimension::Enabled, op.invoke_us, op.complete_us);
        let granted = if op.user == op.owner {
            possible(
                changes,
                Dimension::Granted(op.user),
                op.invoke_us,
                op.complete_us,
            )
        } else {
            [true, false]
        };
        // Allowed when authentication is off, or the user may touch the owner's keys.
        let may_allow = enabled[0] || granted[1];
        let may_deny = enabled[1] && granted[0];
        let kind = if op.write { "write" } else { "read" };
        let violation = match op.verdict {
            Verdict::Allowed if !may_allow => {
                "went through, though every auth state possible then forbade it"
            }
            Verdict::Denied if !may_deny => {
                "was denied, though every auth state possible then allowed it"
            }
            _ => continue,
        };
        return Err(format!(
            "user u{} {kind} on u{}'s key [{}, {}] µs {violation}",
            op.user, op.owner, op.invoke_us, op.complete_us
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(dimension: Dimension, value: bool, at: u64, done: u64) -> Change {
        Change {
            dimension,
            value,
            invoke_us: at,
            complete_us: Some(done),
            lingers: false,
        }
    }

    fn op(user: u64, owner: u64, at: u64, done: u64, verdict: Verdict) -> UserOp {
        UserOp {
            user,
            owner,
            write: true,
            invoke_us: at,
            complete_us: done,
            verdict,
        }
    }

    #[test]
    fn a_write_after_a_settled_revoke_must_be_denied() {
        let changes = vec![
            change(Dimension::Granted(1), true, 10, 20),
            change(Dimension::Enabled, true, 30, 40),
            change(Dimension::Granted(1), false, 50, 60),
        ];
        assert!(check(&changes, &[op(1, 1, 45, 48, Verdict::Allowed)]).is_ok());
        assert!(
            check(&changes, &[op(1, 1, 55, 70, Verdict::Allowed)]).is_ok(),
            "overlaps"
        );
        assert!(check(&changes, &[op(1, 1, 61, 70, Verdict::Allowed)]).is_err());
        assert!(
            check(&changes, &[op(2, 1, 45, 48, Verdict::Allowed)]).is_err(),
            "not its key"
        );
        assert!(
            check(&changes, &[op(2, 1, 25, 48, Verdict::Allowed)]).is_ok(),
            "maybe disabled"
        );
        assert!(
            check(&changes, &[op(1, 1, 41, 48, Verdict::Denied)]).is_err(),
            "was granted"
        );
        assert!(check(&changes, &[op(1, 1, 61, 70, Verdict::Denied)]).is_ok());
        assert!(check(&changes, &[op(1, 1, 61, 70, Verdict::Other)]).is_ok());
    }

    #[test]
    fn a_change_without_an_answer_stays_possible() {
        let mut lost = change(Dimension::Enabled, false, 50, 60);
        lost.lingers = true;
        let changes = vec![change(Dimension::Enabled, true, 10, 20), lost];
        assert!(check(&changes, &[op(2, 1, 100, 110, Verdict::Allowed)]).is_ok());
        let changes = vec![change(Dimension::Enabled, true, 10, 20)];
        assert!(check(&changes, &[op(2, 1, 100, 110, Verdict::Allowed)]).is_err());
        let pending = Change {
            complete_us: None,
            ..change(Dimension::Enabled, false, 50, 0)
        };
        let changes = vec![change(Dimension::Enabled, true, 10, 20), pending];
        assert!(check(&changes, &[op(2, 1, 100, 110, Verdict::Allowed)]).is_ok());
    }
}
