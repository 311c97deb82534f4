//! What the auth store answers about a request's user: may it touch these keys, may it
//! administer, is its password right, may it log in.
//!
//! Logging in goes as in etcd 3.5: the runtime looks up [`AuthStore::password_hash`] and
//! verifies the password with bcrypt off the node's thread; proposes the login; every member
//! answers it with [`AuthStore::authenticate`], whose [`AuthInfo`] the runtime signs into a
//! token; and the runtime retries the whole if the store's revision moved past the one the
//! password was checked at.

use super::ranges::Interval;
use super::{AuthError, AuthInfo, AuthStore, PermissionType, ROOT_ROLE};
use crate::proto::etcdserverpb as pb;
use crate::types::AuthRevision;

impl AuthStore {
    /// Whether `user` may read or write (as `kind` says) every key of the range: one key for an
    /// empty `range_end`, every key from `key` on for `"\0"`, else `[key, range_end)` (a range
    /// ending at or before `key` needs `key`, as etcd's interval check asks). The root role may
    /// do anything; otherwise the union of the user's roles' permissions of that type
    /// (READWRITE counts for both) must cover the range. An unknown user may do nothing. Whether
    /// authentication is enabled is [`AuthStore::check_range`]'s business.
    pub fn is_range_permitted(
        &self,
        user: &str,
        key: &[u8],
        range_end: &[u8],
        kind: PermissionType,
    ) -> bool {
        if self.is_admin(user) {
            return true;
        }
        let (Some(granted), Some(wanted)) =
            (self.granted.get(user), Interval::requested(key, range_end))
        else {
            return false;
        };
        match kind {
            PermissionType::Read => granted.read.covers(&wanted),
            PermissionType::Write => granted.write.covers(&wanted),
        }
    }

    /// Whether `user` exists and has the root role.
    pub fn is_admin(&self, user: &str) -> bool {
        self.has_role(user, ROOT_ROLE)
    }

    /// etcd's check of a key-value request (`isOpPermitted`): anything goes while
    /// authentication is disabled; otherwise the request needs a user (`auth`, from its token),
    /// a token no older than the store's revision, and the permission.
    pub fn check_range(
        &self,
        auth: Option<&AuthInfo>,
        key: &[u8],
        range_end: &[u8],
        kind: PermissionType,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let auth = auth.ok_or(AuthError::UserEmpty)?;
        if auth.revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        if self.is_range_permitted(&auth.user, key, range_end, kind) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// etcd's check of an administrative request (`IsAdminPermitted`; etcd 3.5 asks it of every
    /// Auth request but Authenticate, and lets a user get itself and the roles it has without
    /// it, see [`AuthStore::has_role`]): anything goes while authentication is disabled;
    /// otherwise the user must exist with the root role. etcd does not check the token's
    /// revision here.
    pub fn check_admin(&self, auth: Option<&AuthInfo>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let user = match auth {
            Some(auth) if !auth.user.is_empty() => &auth.user,
            _ => return Err(AuthError::UserEmpty),
        };
        self.user(user)?;
        if self.is_admin(user) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Whether `user` exists and was granted `role` (etcd's `HasRole`).
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|user| user.roles.contains(role))
    }

    /// The stored hash to verify `name`'s password against, and the revision it was read at
    /// (etcd's `CheckPassword` up to bcrypt). Fails while authentication is disabled, for an
    /// unknown user, and for a user added without a password.
    pub fn password_hash(&self, name: &str) -> Result<(&str, AuthRevision), AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.no_password {
            return Err(AuthError::NoPasswordUser);
        }
        Ok((&user.password_hash, self.revision))
    }

    /// etcd's `CheckPassword`: [`AuthStore::password_hash`], then `verify(stored_hash,
    /// password)` (bcrypt's, supplied by the caller). Answers the revision the check holds at.
    /// `verify` is slow: the runtime should call it off the node's thread, through
    /// `password_hash`.
    pub fn check_password(
        &self,
        name: &str,
        password: &str,
        verify: impl Fn(&str, &str) -> bool,
    ) -> Result<AuthRevision, AuthError> {
        let (hash, revision) = self.password_hash(name)?;
        if verify(hash, password) {
            Ok(revision)
        } else {
            Err(AuthError::AuthFailed)
        }
    }

    /// A login, as every member applies it once the password checked out (etcd's
    /// `Authenticate`; the password is not looked at): who the token is for, at which revision.
    pub fn authenticate(&self, request: &pb::AuthenticateRequest) -> Result<AuthInfo, AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(&request.name).ok_or(AuthError::AuthFailed)?;
        if user.no_password {
            return Err(AuthError::AuthFailed);
        }
        Ok(AuthInfo {
            user: request.name.clone(),
            revision: self.revision,
        })
    }
}
