//! Transactions: compare, then run the success or failure branch atomically at one revision.
//!
//! A txn is applied in three steps, so that a refused txn changes nothing: validate the whole
//! request tree (keys, ignore flags, duplicate writes); evaluate every compare on the chosen path
//! against the state before the txn (a [`Plan`]); check the chosen path against the state
//! (missing keys, leases, range revisions); only then execute, which can no longer fail.

use std::collections::BTreeSet;

use super::range::check_revision;
use super::{check_put_static, in_range, range_bounds, KvError, KvStore, Version};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{Compare, RequestOp, ResponseOp, TxnRequest, TxnResponse};
use crate::proto::mvccpb::Event;

/// The outcome of a txn's compares, and recursively of the nested txns in the chosen branch.
#[derive(Debug, Default)]
struct Plan {
    succeeded: bool,
    /// One entry per op of the chosen branch; meaningful only for nested txn ops.
    children: Vec<Plan>,
}

/// Where the writes of the txn being executed go.
struct Writer {
    main: i64,
    sub: i64,
    events: Vec<Event>,
}

impl KvStore {
    /// Applies a txn. Writes share one new revision (none if nothing was written).
    pub fn txn(
        &mut self,
        req: &TxnRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(TxnResponse, Vec<Event>), KvError> {
        check_ops_static(&req.success)?;
        check_ops_static(&req.failure)?;
        branch_writes(&req.success)?;
        branch_writes(&req.failure)?;
        let plan = self.plan(req)?;
        self.check_plan(req, &plan, lease_exists)?;

        let mut writer = Writer {
            main: self.current_revision + 1,
            sub: 0,
            events: Vec::new(),
        };
        let resp = self.execute(req, &plan, &mut writer)?;
        if !writer.events.is_empty() {
            self.current_revision = writer.main;
        }
        Ok((resp, writer.events))
    }

    fn plan(&self, req: &TxnRequest) -> Result<Plan, KvError> {
        let mut succeeded = true;
        for compare in &req.compare {
            if !self.compare_holds(compare)? {
                succeeded = false;
                break;
            }
        }
        let mut children = Vec::new();
        for op in chosen_branch(req, succeeded) {
            children.push(match &op.request {
                Some(Request::RequestTxn(nested)) => self.plan(nested)?,
                _ => Plan::default(),
            });
        }
        Ok(Plan {
            succeeded,
            children,
        })
    }

    /// Checks the ops on the chosen path against the state before the txn.
    fn check_plan(
        &self,
        req: &TxnRequest,
        plan: &Plan,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(), KvError> {
        for (op, child) in chosen_branch(req, plan.succeeded)
            .iter()
            .zip(&plan.children)
        {
            match &op.request {
                Some(Request::RequestPut(put)) => self.check_put_state(put, lease_exists)?,
                Some(Request::RequestRange(range)) => {
                    check_revision(range.revision, self.current_revision, self.compact_revision)?
                }
                Some(Request::RequestTxn(nested)) => {
                    self.check_plan(nested, child, lease_exists)?
                }
                Some(Request::RequestDeleteRange(_)) | None => {}
            }
        }
        Ok(())
    }

    /// Runs the chosen branch. Fails only if the engine does, which stops the member.
    fn execute(
        &mut self,
        req: &TxnRequest,
        plan: &Plan,
        writer: &mut Writer,
    ) -> Result<TxnResponse, KvError> {
        let branch = chosen_branch(req, plan.succeeded);
        let mut responses = Vec::with_capacity(branch.len());
        for (op, child) in branch.iter().zip(&plan.children) {
            let response = match &op.request {
                Some(Request::RequestRange(range)) => {
                    // Reads see the txn's own earlier writes, which sit at the txn's revision.
                    Some(Response::ResponseRange(self.range_at(
                        range,
                        writer.main,
                        true,
                    )?))
                }
                Some(Request::RequestPut(put)) => {
                    let (resp, event) = self.apply_put(put, writer.main, writer.sub)?;
                    writer.sub += 1;
                    writer.events.push(event);
                    Some(Response::ResponsePut(resp))
                }
                Some(Request::RequestDeleteRange(del)) => {
                    let (resp, events) =
                        self.apply_delete_range(del, writer.main, &mut writer.sub)?;
                    writer.events.extend(events);
                    Some(Response::ResponseDeleteRange(resp))
                }
                Some(Request::RequestTxn(nested)) => {
                    Some(Response::ResponseTxn(self.execute(nested, child, writer)?))
                }
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse {
            header: None,
            succeeded: plan.succeeded,
            responses,
        })
    }

    /// Whether a compare holds for every live key in its range (evaluated at the newest state).
    fn compare_holds(&self, c: &Compare) -> Result<bool, KvError> {
        let (Ok(target), Ok(result)) = (
            CompareTarget::try_from(c.target),
            CompareResult::try_from(c.result),
        ) else {
            return Ok(false);
        };
        let mut any = false;
        for (key, versions) in self.key_range(&c.key, &c.range_end) {
            let Some(version) = versions.last().filter(|v| v.is_live()) else {
                continue;
            };
            any = true;
            let value = match target {
                CompareTarget::Value => self.values.value(key, version.main, version.sub())?,
                _ => Vec::new(),
            };
            let operand = c.target_union.as_ref();
            if !compare_version(target, result, operand, version, &value) {
                return Ok(false);
            }
        }
        if any {
            return Ok(true);
        }
        // A missing key never matches on value; other targets compare against zeros.
        Ok(target != CompareTarget::Value
            && compare_version(target, result, c.target_union.as_ref(), &ZERO_VERSION, &[]))
    }
}

/// What a missing key compares as (all zeros; never in the index).
const ZERO_VERSION: Version = Version {
    main: 0,
    create_revision: 0,
    version: 0,
    lease: 0,
    sub: 0,
    value_crc: 0,
};

fn chosen_branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// `field(version) OP operand`, where `value` is the version's value (read only to compare
/// values); an operand of the wrong kind counts as zero (or empty).
fn compare_version(
    target: CompareTarget,
    result: CompareResult,
    operand: Option<&TargetUnion>,
    v: &Version,
    value: &[u8],
) -> bool {
    let ordering = match target {
        CompareTarget::Value => {
            let want: &[u8] = match operand {
                Some(TargetUnion::Value(value)) => value,
                _ => &[],
            };
            value.cmp(want)
        }
        CompareTarget::Version => v.version.cmp(&int_operand(operand, target)),
        CompareTarget::Create => v.create_revision.cmp(&int_operand(operand, target)),
        CompareTarget::Mod => v.main.cmp(&int_operand(operand, target)),
        CompareTarget::Lease => v.lease.cmp(&int_operand(operand, target)),
    };
    match result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
        CompareResult::NotEqual => ordering.is_ne(),
    }
}

fn int_operand(operand: Option<&TargetUnion>, target: CompareTarget) -> i64 {
    match (target, operand) {
        (CompareTarget::Version, Some(TargetUnion::Version(x)))
        | (CompareTarget::Create, Some(TargetUnion::CreateRevision(x)))
        | (CompareTarget::Mod, Some(TargetUnion::ModRevision(x)))
        | (CompareTarget::Lease, Some(TargetUnion::Lease(x))) => *x,
        _ => 0,
    }
}

/// Checks every op of both branches, recursively, for errors that need no state.
fn check_ops_static(ops: &[RequestOp]) -> Result<(), KvError> {
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(put)) => check_put_static(put)?,
            Some(Request::RequestRange(range)) if range.key.is_empty() => {
                return Err(KvError::EmptyKey)
            }
            Some(Request::RequestDeleteRange(del)) if del.key.is_empty() => {
                return Err(KvError::EmptyKey)
            }
            Some(Request::RequestTxn(nested)) => {
                check_ops_static(&nested.success)?;
                check_ops_static(&nested.failure)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The keys put and the ranges deleted by one branch (nested txns included).
#[derive(Debug, Default)]
struct WriteSet {
    puts: BTreeSet<Vec<u8>>,
    deletes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl WriteSet {
    fn put_conflicts(&self, key: &[u8]) -> bool {
        self.puts.contains(key) || self.deletes.iter().any(|(s, e)| in_range(key, s, e))
    }

    fn delete_conflicts(&self, start: &[u8], end: &[u8]) -> bool {
        self.puts
            .range::<[u8], _>(range_bounds(start, end))
            .next()
            .is_some()
    }

    /// Adds the writes of a nested txn's two branches. They cannot conflict with each other
    /// (only one runs), but each must not conflict with this branch's other writes.
    fn absorb_nested(&mut self, then: WriteSet, otherwise: WriteSet) -> Result<(), KvError> {
        for child in [&then, &otherwise] {
            let puts_clash = child.puts.iter().any(|k| self.put_conflicts(k));
            let deletes_clash = child
                .deletes
                .iter()
                .any(|(s, e)| self.delete_conflicts(s, e));
            if puts_clash || deletes_clash {
                return Err(KvError::DuplicateKey);
            }
        }
        for child in [then, otherwise] {
            self.puts.extend(child.puts);
            self.deletes.extend(child.deletes);
        }
        Ok(())
    }
}

/// Collects a branch's writes, refusing a key put twice or put inside a deleted range.
fn branch_writes(ops: &[RequestOp]) -> Result<WriteSet, KvError> {
    let mut writes = WriteSet::default();
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(put)) => {
                if writes.put_conflicts(&put.key) {
                    return Err(KvError::DuplicateKey);
                }
                writes.puts.insert(put.key.clone());
            }
            Some(Request::RequestDeleteRange(del)) => {
                if writes.delete_conflicts(&del.key, &del.range_end) {
                    return Err(KvError::DuplicateKey);
                }
                writes
                    .deletes
                    .push((del.key.clone(), del.range_end.clone()));
            }
            Some(Request::RequestTxn(nested)) => {
                let then = branch_writes(&nested.success)?;
                let otherwise = branch_writes(&nested.failure)?;
                writes.absorb_nested(then, otherwise)?;
            }
            Some(Request::RequestRange(_)) | None => {}
        }
    }
    Ok(writes)
}
