//! The permission checks of key-value and lease requests (etcd's `authApplierV3`): which keys a
//! request reads and writes, each checked with [`AuthStore::check_range`], so the same request
//! by the same caller at the same store revision is allowed or refused alike on every member.

use super::{AuthError, AuthInfo, AuthStore, PermissionType};
use crate::proto::etcdserverpb as pb;
use pb::request_op::Request as Op;

impl AuthStore {
    /// A range reads its keys.
    pub fn check_range_request(
        &self,
        caller: Option<&AuthInfo>,
        range: &pb::RangeRequest,
    ) -> Result<(), AuthError> {
        self.check_range(caller, &range.key, &range.range_end, PermissionType::Read)
    }

    /// A put writes its key, reads it too when it asks for the previous value, and may attach
    /// its key only to a lease whose keys the caller may all write (`lease_keys`: the keys
    /// attached to the put's lease now), since it could not revoke it otherwise.
    pub fn check_put(
        &self,
        caller: Option<&AuthInfo>,
        put: &pb::PutRequest,
        lease_keys: &[Vec<u8>],
    ) -> Result<(), AuthError> {
        self.check_range(caller, &put.key, &[], PermissionType::Write)?;
        self.check_lease_keys(caller, lease_keys)?;
        if put.prev_kv {
            self.check_range(caller, &put.key, &[], PermissionType::Read)?;
        }
        Ok(())
    }

    /// A delete writes its range, and reads it when it asks for the previous values.
    pub fn check_delete(
        &self,
        caller: Option<&AuthInfo>,
        delete: &pb::DeleteRangeRequest,
    ) -> Result<(), AuthError> {
        self.check_range(
            caller,
            &delete.key,
            &delete.range_end,
            PermissionType::Write,
        )?;
        if delete.prev_kv {
            self.check_range(caller, &delete.key, &delete.range_end, PermissionType::Read)?;
        }
        Ok(())
    }

    /// A transaction reads what it compares and needs every operation of both branches, at any
    /// depth, whichever branch runs. `lease_keys` answers the keys attached to a lease.
    pub fn check_txn(
        &self,
        caller: Option<&AuthInfo>,
        txn: &pb::TxnRequest,
        lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<(), AuthError> {
        if !self.is_enabled() {
            return Ok(());
        }
        for compare in &txn.compare {
            self.check_range(
                caller,
                &compare.key,
                &compare.range_end,
                PermissionType::Read,
            )?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match &op.request {
                Some(Op::RequestRange(range)) => self.check_range_request(caller, range)?,
                Some(Op::RequestPut(put)) => self.check_put(caller, put, &lease_keys(put.lease))?,
                Some(Op::RequestDeleteRange(delete)) => self.check_delete(caller, delete)?,
                Some(Op::RequestTxn(inner)) => self.check_txn(caller, inner, lease_keys)?,
                None => {}
            }
        }
        Ok(())
    }

    /// Revoking a lease deletes its keys: the caller must be allowed to write every one.
    pub fn check_lease_keys(
        &self,
        caller: Option<&AuthInfo>,
        keys: &[Vec<u8>],
    ) -> Result<(), AuthError> {
        for key in keys {
            self.check_range(caller, key, &[], PermissionType::Write)?;
        }
        Ok(())
    }

    /// A watch reads its range.
    pub fn check_watch(
        &self,
        caller: Option<&AuthInfo>,
        create: &pb::WatchCreateRequest,
    ) -> Result<(), AuthError> {
        self.check_range(caller, &create.key, &create.range_end, PermissionType::Read)
    }
}

/// etcd's answer to a watch its caller may not make (no user, a bad token, no permission):
/// created and canceled at once, under watch ID -1, with the error as gRPC's Go library prints
/// it; the stream stays open.
pub fn watch_refused(error: AuthError, revision: i64) -> pb::WatchResponse {
    pb::WatchResponse {
        header: Some(pb::ResponseHeader {
            revision,
            ..Default::default()
        }),
        watch_id: -1,
        created: true,
        canceled: true,
        cancel_reason: format!(
            "rpc error: code = {} desc = {error}",
            error.grpc_code().name()
        ),
        ..Default::default()
    }
}
