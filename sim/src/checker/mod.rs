//! Linearizability checker for the key-value histories the simulator records.
//!
//! Owns splitting a history per key (each key is an independent register), the register model,
//! and a Wing & Gong / Lowe just-in-time search with memoization (`search`). It never talks to a
//! cluster and never depends on madsim: it takes a finished history and returns a verdict.
//!
//! Outcomes: `Failed` operations and reads with `Unknown` outcomes are dropped; writes with
//! `Unknown` outcomes may take effect at any point after their invocation, or never.
//! `SerializableGet` is checked against a weaker guarantee, see `serializable`.

mod history;
mod search;
mod serializable;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

pub type Key = Vec<u8>;
pub type Value = Vec<u8>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    Put {
        key: Key,
        value: Value,
    },
    /// Linearizable read.
    Get {
        key: Key,
    },
    /// Serializable read, checked against the weaker guarantee in `serializable`.
    SerializableGet {
        key: Key,
    },
    Delete {
        key: Key,
    },
    /// Compare-and-set through a txn: if the key's current value == expected (None = key
    /// absent), set it to `new`.
    Cas {
        key: Key,
        expected: Option<Value>,
        new: Value,
    },
}

impl Op {
    pub fn key(&self) -> &Key {
        match self {
            Op::Put { key, .. }
            | Op::Get { key }
            | Op::SerializableGet { key }
            | Op::Delete { key }
            | Op::Cas { key, .. } => key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Acknowledged.
    Put,
    Get(Option<Value>),
    /// Whether a key was removed.
    Delete {
        deleted: bool,
    },
    Cas {
        succeeded: bool,
    },
    /// Timed out or the connection dropped: it may or may not have taken effect, at any time
    /// after invoke.
    Unknown,
    /// Definitely did not take effect (e.g. "no leader" before proposing, "too many requests").
    Failed,
}

#[derive(Debug, Clone, Hash)]
pub struct Operation {
    pub id: u64,
    pub client: u64,
    pub op: Op,
    pub invoke_us: u64,
    /// Meaningless for `Outcome::Unknown`: such an operation is pending forever.
    pub complete_us: u64,
    pub outcome: Outcome,
}

/// A key whose operations admit no linearization (or whose serializable reads saw a value that
/// was never written in time).
#[derive(Debug, Clone)]
pub struct Violation {
    pub key: Key,
    pub detail: String,
    /// All operations on `key` (including failed and unknown ones), in invoke order.
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckStats {
    pub keys: usize,
    /// Operations in the history, including the dropped ones.
    pub operations: usize,
    pub states_explored: u64,
}

#[derive(Debug, Clone)]
pub enum CheckError {
    /// The history is not linearizable: a real bug (or a wrong model).
    Violation(Violation),
    /// The search hit its bound on one key before finding a linearization or proving there is
    /// none. Not a verdict: shrink the history or raise the bound. Reported only when no key
    /// has a violation.
    GaveUp {
        key: Key,
        operations: usize,
        states_explored: u64,
        detail: String,
    },
    /// The history itself is inconsistent (an outcome that does not fit its op, completion
    /// before invocation): a bug in whoever recorded it.
    Malformed { id: u64, detail: String },
}

/// Bound on memoized search states per key before `check` gives up.
pub const DEFAULT_MAX_STATES_PER_KEY: u64 = 5_000_000;

/// Checks `history` with `DEFAULT_MAX_STATES_PER_KEY`.
pub fn check(history: &[Operation]) -> Result<CheckStats, CheckError> {
    check_with_limit(history, DEFAULT_MAX_STATES_PER_KEY)
}

/// Checks every key of `history`; keys are visited in byte order, so the verdict is
/// deterministic. The first violation wins; a give-up is reported only if no key is violated.
pub fn check_with_limit(
    history: &[Operation],
    max_states_per_key: u64,
) -> Result<CheckStats, CheckError> {
    history::validate(history)?;
    let mut per_key: BTreeMap<&Key, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        per_key.entry(op.op.key()).or_default().push(op);
    }
    let mut stats = CheckStats {
        keys: per_key.len(),
        operations: history.len(),
        states_explored: 0,
    };
    let mut gave_up = None;
    for (key, mut ops) in per_key {
        ops.sort_by_key(|o| (o.invoke_us, o.id));
        let trace = || ops.iter().map(|o| (*o).clone()).collect::<Vec<_>>();
        let compiled = history::KeyHistory::compile(&ops);
        if let Err(detail) = serializable::check_reads(&ops) {
            return Err(CheckError::Violation(Violation {
                key: key.clone(),
                detail,
                operations: trace(),
            }));
        }
        let result = search::search(&compiled.candidates, max_states_per_key);
        stats.states_explored += result.states_explored;
        match result.verdict {
            search::Verdict::Linearizable => {}
            search::Verdict::NotLinearizable(failure) => {
                return Err(CheckError::Violation(Violation {
                    key: key.clone(),
                    detail: compiled.describe_failure(&failure),
                    operations: trace(),
                }));
            }
            search::Verdict::GaveUp(reason) => {
                if gave_up.is_none() {
                    gave_up = Some(CheckError::GaveUp {
                        key: key.clone(),
                        operations: ops.len(),
                        states_explored: result.states_explored,
                        detail: reason,
                    });
                }
            }
        }
    }
    match gave_up {
        Some(err) => Err(err),
        None => Ok(stats),
    }
}

/// Bytes as an escaped, quoted string, for messages.
pub(crate) fn show_bytes(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

pub(crate) fn show_value(value: &Option<Value>) -> String {
    match value {
        Some(v) => show_bytes(v),
        None => "absent".to_string(),
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match &self.op {
            Op::Put { value, .. } => format!("put {}", show_bytes(value)),
            Op::Get { .. } => "get".to_string(),
            Op::SerializableGet { .. } => "serializable get".to_string(),
            Op::Delete { .. } => "delete".to_string(),
            Op::Cas { expected, new, .. } => {
                format!("cas {} -> {}", show_value(expected), show_bytes(new))
            }
        };
        let outcome = match &self.outcome {
            Outcome::Put => "ok".to_string(),
            Outcome::Get(v) => show_value(v),
            Outcome::Delete { deleted } => format!("deleted={deleted}"),
            Outcome::Cas { succeeded } => format!("succeeded={succeeded}"),
            Outcome::Unknown => "unknown".to_string(),
            Outcome::Failed => "failed".to_string(),
        };
        let done = match self.outcome {
            Outcome::Unknown => "?".to_string(),
            _ => self.complete_us.to_string(),
        };
        write!(
            f,
            "#{} client {} [{}us, {}us] {} => {}",
            self.id, self.client, self.invoke_us, done, op, outcome
        )
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {}: {}", show_bytes(&self.key), self.detail)?;
        for op in &self.operations {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Violation(v) => write!(f, "linearizability violation on {v}"),
            CheckError::GaveUp {
                key,
                operations,
                states_explored,
                detail,
            } => write!(
                f,
                "checker gave up on key {} ({operations} operations) after {states_explored} \
                 states: {detail}",
                show_bytes(key)
            ),
            CheckError::Malformed { id, detail } => {
                write!(f, "malformed history at operation #{id}: {detail}")
            }
        }
    }
}

impl std::error::Error for CheckError {}
