//! The auth store's errors, with etcd's messages and gRPC codes (`api/v3rpc/rpctypes/error.go`),
//! and the error of a snapshot's auth state that does not decode.

use crate::request::GrpcCode;

/// Why the auth store refused a request. Display strings are etcd's, so clients recognise them;
/// a refused request changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// An empty user name to add, or a request without a user while authentication is enabled.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// An unknown user, or a wrong password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// A password was checked for a user added without one. etcd has no gRPC error for it and
    /// answers code Unknown with its internal message, which is this one.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// A RoleGrantPermission request without its permission.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// A token that names no live session (the token provider's answer; the store never gives it).
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// Removing root's last means of administration while authentication is enabled, or
    /// granting a permission on an invalid range.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// The request's token was issued before the store's latest change.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
}

impl AuthError {
    /// The gRPC status code etcd answers this error with.
    pub fn grpc_code(self) -> GrpcCode {
        use AuthError::*;
        match self {
            UserEmpty | RoleEmpty | AuthFailed | PermissionNotGiven | InvalidAuthMgmt
            | AuthOldRevision => GrpcCode::InvalidArgument,
            RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound
            | RoleAlreadyExist | RoleNotFound | RoleNotGranted | PermissionNotGranted
            | AuthNotEnabled => GrpcCode::FailedPrecondition,
            PermissionDenied => GrpcCode::PermissionDenied,
            InvalidAuthToken => GrpcCode::Unauthenticated,
            NoPasswordUser => GrpcCode::Unknown,
        }
    }
}

/// A snapshot's auth state that does not decode or breaks the store's invariants; the message
/// names the user, role or field involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("auth state is corrupt: {0}")]
pub struct CorruptAuthState(pub String);
