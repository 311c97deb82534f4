//! Turns one key's operations into search candidates: values interned to small integers,
//! dropped operations removed, outcomes folded into the register step each one must satisfy.

use std::collections::HashMap;

use super::search::Failure;
use super::{show_bytes, CheckError, Op, Operation, Outcome, Value};

/// Interned register value; `ABSENT` is the key not existing.
pub(super) type StateId = u32;
pub(super) const ABSENT: StateId = 0;

/// What linearizing one operation does to the register, and what it requires of it.
/// `None` in an outcome field means the outcome is unknown, so any result is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Put {
        value: StateId,
    },
    Get {
        value: StateId,
    },
    Delete {
        deleted: Option<bool>,
    },
    Cas {
        expected: StateId,
        new: StateId,
        succeeded: Option<bool>,
    },
}

impl Step {
    /// The register after this step from `state`, or `None` if the step's outcome is
    /// impossible from `state`.
    pub(super) fn apply(self, state: StateId) -> Option<StateId> {
        match self {
            Step::Put { value } => Some(value),
            Step::Get { value } => (value == state).then_some(state),
            Step::Delete { deleted } => match deleted {
                Some(deleted) if deleted != (state != ABSENT) => None,
                _ => Some(ABSENT),
            },
            Step::Cas {
                expected,
                new,
                succeeded,
            } => {
                let matches = state == expected;
                match succeeded {
                    Some(succeeded) if succeeded != matches => None,
                    _ => Some(if matches { new } else { state }),
                }
            }
        }
    }
}

/// One operation the search may linearize.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    pub step: Step,
    pub invoke_us: u64,
    /// `None`: outcome unknown, so the operation is pending forever and optional.
    pub complete_us: Option<u64>,
    /// Index into the key's operations (invoke order), for reports.
    pub op_index: usize,
}

pub(super) struct KeyHistory<'a> {
    pub candidates: Vec<Candidate>,
    ops: &'a [&'a Operation],
    values: Vec<Value>,
}

impl<'a> KeyHistory<'a> {
    /// `ops` are one key's operations in invoke order, already validated.
    pub(super) fn compile(ops: &'a [&'a Operation]) -> Self {
        let mut interner = Interner::default();
        let mut candidates = Vec::with_capacity(ops.len());
        for (op_index, op) in ops.iter().enumerate() {
            if let Some(step) = step_of(op, &mut interner) {
                let complete_us = match op.outcome {
                    Outcome::Unknown => None,
                    _ => Some(op.complete_us),
                };
                candidates.push(Candidate {
                    step,
                    invoke_us: op.invoke_us,
                    complete_us,
                    op_index,
                });
            }
        }
        KeyHistory {
            candidates,
            ops,
            values: interner.values,
        }
    }

    fn show_state(&self, state: StateId) -> String {
        match state {
            ABSENT => "absent".to_string(),
            id => show_bytes(&self.values[id as usize - 1]),
        }
    }

    pub(super) fn describe_failure(&self, failure: &Failure) -> String {
        let known = self
            .candidates
            .iter()
            .filter(|c| c.complete_us.is_some())
            .count();
        let blocked = self.ops[self.candidates[failure.blocked].op_index];
        let tail: Vec<String> = failure
            .prefix
            .iter()
            .rev()
            .take(5)
            .rev()
            .map(|&c| format!("#{}", self.ops[self.candidates[c].op_index].id))
            .collect();
        format!(
            "not linearizable: the longest linearizable prefix places {} operations ({} known to \
             complete, of {known}), ending with [{}] and leaving the key {}; then operation \
             [{blocked}] cannot take effect before it completed",
            failure.prefix.len(),
            failure
                .prefix
                .iter()
                .filter(|&&c| self.candidates[c].complete_us.is_some())
                .count(),
            tail.join(", "),
            self.show_state(failure.state),
        )
    }
}

/// The search step for `op`, or `None` if the operation is dropped (failed, an unknown read,
/// or a serializable read, which `serializable` checks instead).
fn step_of(op: &Operation, interner: &mut Interner) -> Option<Step> {
    let known = match &op.outcome {
        Outcome::Failed => return None,
        Outcome::Unknown => None,
        outcome => Some(outcome),
    };
    match (&op.op, known) {
        (Op::SerializableGet { .. }, _) | (Op::Get { .. }, None) => None,
        (Op::Get { .. }, Some(Outcome::Get(value))) => Some(Step::Get {
            value: interner.state_of(value.as_ref()),
        }),
        (Op::Put { value, .. }, _) => Some(Step::Put {
            value: interner.state_of(Some(value)),
        }),
        (Op::Delete { .. }, outcome) => Some(Step::Delete {
            deleted: outcome.and_then(|o| match o {
                Outcome::Delete { deleted } => Some(*deleted),
                _ => None,
            }),
        }),
        (Op::Cas { expected, new, .. }, outcome) => Some(Step::Cas {
            expected: interner.state_of(expected.as_ref()),
            new: interner.state_of(Some(new)),
            succeeded: outcome.and_then(|o| match o {
                Outcome::Cas { succeeded } => Some(*succeeded),
                _ => None,
            }),
        }),
        (Op::Get { .. }, Some(_)) => unreachable!("validate rejects mismatched outcomes"),
    }
}

#[derive(Default)]
struct Interner {
    ids: HashMap<Value, StateId>,
    values: Vec<Value>,
}

impl Interner {
    fn state_of(&mut self, value: Option<&Value>) -> StateId {
        let Some(value) = value else { return ABSENT };
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        self.values.push(value.clone());
        let id = StateId::try_from(self.values.len()).expect("fewer than 2^32 values per key");
        self.ids.insert(value.clone(), id);
        id
    }
}

/// Rejects outcomes that do not fit their operation and completions before invocations.
pub(super) fn validate(history: &[Operation]) -> Result<(), CheckError> {
    for op in history {
        let fits = matches!(
            (&op.op, &op.outcome),
            (_, Outcome::Unknown | Outcome::Failed)
                | (Op::Put { .. }, Outcome::Put)
                | (Op::Get { .. } | Op::SerializableGet { .. }, Outcome::Get(_))
                | (Op::Delete { .. }, Outcome::Delete { .. })
                | (Op::Cas { .. }, Outcome::Cas { .. })
        );
        if !fits {
            return Err(CheckError::Malformed {
                id: op.id,
                detail: format!(
                    "outcome {:?} does not fit operation {:?}",
                    op.outcome, op.op
                ),
            });
        }
        let timed = !matches!(op.outcome, Outcome::Unknown);
        if timed && op.complete_us < op.invoke_us {
            return Err(CheckError::Malformed {
                id: op.id,
                detail: format!(
                    "completed at {}us, before it was invoked at {}us",
                    op.complete_us, op.invoke_us
                ),
            });
        }
    }
    Ok(())
}
