//! etcd v3's auth store (etcd's `server/auth`): users with their password hashes and roles, roles
//! with their key permissions, whether authentication is enabled, and the auth revision that
//! counts the store's changes. Every member applies the same replicated requests to it in the same
//! order, so every member holds the same store; it travels in snapshots as `stetpb.AuthState`.
//!
//! The store never hashes or verifies a password (bcrypt is salted and slow: the runtime hashes
//! before proposing, as etcd 3.5 does, and verifies against [`AuthStore::password_hash`] outside
//! the node), never issues or parses tokens, and does no IO.
//!
//! Code map: this file owns [`AuthStore`] and its read-only queries; `apply.rs` applies the
//! auth requests raft carries (caller's check, then the store); `change.rs` applies the
//! requests that change it, with etcd's rules and revision bumps; `check.rs` answers permission,
//! admin and password checks; `kv_checks.rs` says which keys a key-value, lease or watch request
//! needs; `ranges.rs` merges key intervals for permission checks;
//! `snapshot.rs` converts to and from [`AuthState`](crate::proto::stetpb::AuthState); `error.rs`
//! holds [`AuthError`] with etcd's messages and gRPC codes.

use std::collections::{BTreeMap, BTreeSet};

use crate::proto::authpb;
use crate::proto::etcdserverpb as pb;
use crate::types::AuthRevision;

mod apply;
mod change;
mod check;
mod error;
mod kv_checks;
mod ranges;
mod snapshot;

#[cfg(test)]
mod tests;

pub use apply::{is_auth_request, AuthApplied, AuthResponse, TokenChange};
pub use error::{AuthError, CorruptAuthState};
pub use kv_checks::watch_refused;
use ranges::{Interval, KeySet};

/// The user that must exist, with the root role, before authentication can be enabled.
pub const ROOT_USER: &str = "root";
/// The role that may do anything: every key, and every administrative request. A user can be
/// granted it without it having been added.
pub const ROOT_ROLE: &str = "root";

/// The access a request needs to a key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionType {
    Read,
    Write,
}

/// Who a request comes from, as its token says: the user, and the auth revision the token was
/// issued at (etcd's `AuthInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
    pub revision: AuthRevision,
}

impl From<AuthInfo> for crate::proto::stetpb::Requester {
    fn from(auth: AuthInfo) -> Self {
        crate::proto::stetpb::Requester {
            user: auth.user,
            auth_revision: auth.revision.0,
        }
    }
}

impl From<crate::proto::stetpb::Requester> for AuthInfo {
    fn from(requester: crate::proto::stetpb::Requester) -> Self {
        AuthInfo {
            user: requester.user,
            revision: AuthRevision(requester.auth_revision),
        }
    }
}

/// etcd's auth store. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthStore {
    enabled: bool,
    /// 1 for a new store, as etcd's; one more at every change.
    revision: AuthRevision,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Each user's permissions merged over its roles (etcd's `rangePermCache`): derived from
    /// `users` and `roles`, rebuilt at every change.
    granted: BTreeMap<String, Granted>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct User {
    /// The password's hash as the runtime computed it (bcrypt's `$2a$…` text); empty for a user
    /// added with `no_password`.
    password_hash: String,
    roles: BTreeSet<String>,
    no_password: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Role {
    permissions: Permissions,
}

/// A role's permissions: (key, range_end) → `authpb.Permission.Type`'s number, kept as given, as
/// etcd keeps it (a number that is no type grants nothing).
type Permissions = BTreeMap<(Vec<u8>, Vec<u8>), i32>;

/// The keys one user may read and may write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Granted {
    read: KeySet,
    write: KeySet,
}

impl Default for AuthStore {
    fn default() -> Self {
        AuthStore::new()
    }
}

impl AuthStore {
    /// A new store, as etcd creates it: disabled, no users or roles, at revision 1.
    pub fn new() -> AuthStore {
        AuthStore {
            enabled: false,
            revision: AuthRevision(1),
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            granted: BTreeMap::new(),
        }
    }

    /// Whether authentication is enabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The store's revision: tokens issued before it are stale.
    pub fn revision(&self) -> AuthRevision {
        self.revision
    }

    /// AuthStatus's answer (without its header).
    pub fn status(&self) -> pb::AuthStatusResponse {
        pb::AuthStatusResponse {
            header: None,
            enabled: self.enabled,
            auth_revision: self.revision.0,
        }
    }

    /// A user's roles, sorted. `root` may be among them without the role existing.
    pub fn user_get(
        &self,
        request: &pb::AuthUserGetRequest,
    ) -> Result<pb::AuthUserGetResponse, AuthError> {
        let user = self.user(&request.name)?;
        Ok(pb::AuthUserGetResponse {
            header: None,
            roles: user.roles.iter().cloned().collect(),
        })
    }

    /// Every user's name, sorted.
    pub fn user_list(&self, _request: &pb::AuthUserListRequest) -> pb::AuthUserListResponse {
        pb::AuthUserListResponse {
            header: None,
            users: self.users.keys().cloned().collect(),
        }
    }

    /// A role's permissions, sorted by key then range end. The root role answers the
    /// permissions granted to it, as etcd 3.4 and 3.5 do (3.6 answers one READWRITE on every key).
    pub fn role_get(
        &self,
        request: &pb::AuthRoleGetRequest,
    ) -> Result<pb::AuthRoleGetResponse, AuthError> {
        let role = self.role(&request.role)?;
        Ok(pb::AuthRoleGetResponse {
            header: None,
            perm: role.to_proto(),
        })
    }

    /// Every role's name, sorted; `root` only if it was added.
    pub fn role_list(&self, _request: &pb::AuthRoleListRequest) -> pb::AuthRoleListResponse {
        pb::AuthRoleListResponse {
            header: None,
            roles: self.roles.keys().cloned().collect(),
        }
    }

    fn user(&self, name: &str) -> Result<&User, AuthError> {
        self.users.get(name).ok_or(AuthError::UserNotFound)
    }

    fn role(&self, name: &str) -> Result<&Role, AuthError> {
        self.roles.get(name).ok_or(AuthError::RoleNotFound)
    }

    /// Records a change: the next revision, and every user's merged permissions rebuilt (etcd's
    /// `commitRevision` and `refreshRangePermCache`).
    fn commit(&mut self) {
        // Loading refuses u64::MAX, and 2^64 changes never happen.
        assert!(self.revision.0 < u64::MAX, "auth revision overflows");
        self.revision = AuthRevision(self.revision.0 + 1);
        self.refresh_granted();
    }

    fn refresh_granted(&mut self) {
        let granted = self
            .users
            .iter()
            .map(|(name, user)| (name.clone(), self.merge_granted(user)))
            .collect();
        self.granted = granted;
    }

    /// The union of the permissions of `user`'s roles, per type (READWRITE counts for both).
    /// Roles that do not exist (only `root` can be granted without existing) grant nothing.
    fn merge_granted(&self, user: &User) -> Granted {
        let mut read = Vec::new();
        let mut write = Vec::new();
        let permissions = user
            .roles
            .iter()
            .filter_map(|name| self.roles.get(name))
            .flat_map(|role| role.permissions.iter());
        for ((key, range_end), kind) in permissions {
            let Some(interval) = Interval::granted(key, range_end) else {
                continue;
            };
            match authpb::permission::Type::try_from(*kind) {
                Ok(authpb::permission::Type::Read) => read.push(interval),
                Ok(authpb::permission::Type::Write) => write.push(interval),
                Ok(authpb::permission::Type::Readwrite) => {
                    read.push(interval.clone());
                    write.push(interval);
                }
                Err(_) => {}
            }
        }
        Granted {
            read: KeySet::union(read),
            write: KeySet::union(write),
        }
    }
}

impl Role {
    fn to_proto(&self) -> Vec<authpb::Permission> {
        self.permissions
            .iter()
            .map(|((key, range_end), kind)| authpb::Permission {
                perm_type: *kind,
                key: key.clone(),
                range_end: range_end.clone(),
            })
            .collect()
    }
}
