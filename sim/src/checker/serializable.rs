//! The weaker check for serializable reads, which may be served by any member's applied state.
//!
//! Checked: a serializable read returns either "absent" or a value that some put or cas
//! (not definitely failed) on that key was invoked to write no later than the read completed.
//! That rules out invented and future values. Not checked: staleness. A read may return any
//! older value, even one overwritten long before it was invoked, and successive reads by one
//! client may go back in time. A stronger check would need the member that served each read.

use std::collections::HashMap;

use super::{show_bytes, Op, Operation, Outcome, Value};

/// `ops` are one key's operations. Returns a description of the first bad read.
pub(super) fn check_reads(ops: &[&Operation]) -> Result<(), String> {
    let mut first_write_us: HashMap<&Value, u64> = HashMap::new();
    for op in ops {
        let written = match (&op.op, &op.outcome) {
            (_, Outcome::Failed) | (Op::Cas { .. }, Outcome::Cas { succeeded: false }) => None,
            (Op::Put { value, .. }, _) | (Op::Cas { new: value, .. }, _) => Some(value),
            _ => None,
        };
        if let Some(value) = written {
            let at = first_write_us.entry(value).or_insert(op.invoke_us);
            *at = (*at).min(op.invoke_us);
        }
    }
    for op in ops {
        let (Op::SerializableGet { .. }, Outcome::Get(Some(value))) = (&op.op, &op.outcome) else {
            continue;
        };
        match first_write_us.get(value) {
            Some(&at) if at <= op.complete_us => {}
            Some(&at) => {
                return Err(format!(
                    "serializable read [{op}] returned {}, which was first written by an \
                     operation invoked at {at}us, after the read completed",
                    show_bytes(value)
                ))
            }
            None => {
                return Err(format!(
                    "serializable read [{op}] returned {}, which no operation wrote",
                    show_bytes(value)
                ))
            }
        }
    }
    Ok(())
}
