//! The requests that change the auth store, applied as etcd's `authStore` applies them: the same
//! checks in the same order, the same answers, and the auth revision bumped by exactly the
//! changes etcd bumps it for. Password fields come hashed: the store keeps `hashedPassword` as it
//! is and never reads `password`.

use super::{AuthError, AuthStore, Role, User, ROOT_ROLE, ROOT_USER};
use crate::proto::etcdserverpb as pb;

impl AuthStore {
    /// Enables authentication if the root user exists with the root role. Enabling does not
    /// change the revision, and enabling again does nothing.
    pub fn auth_enable(
        &mut self,
        _request: &pb::AuthEnableRequest,
    ) -> Result<pb::AuthEnableResponse, AuthError> {
        if self.enabled {
            return Ok(pb::AuthEnableResponse::default());
        }
        let root = self
            .users
            .get(ROOT_USER)
            .ok_or(AuthError::RootUserNotExist)?;
        if !root.roles.contains(ROOT_ROLE) {
            return Err(AuthError::RootRoleNotExist);
        }
        self.enabled = true;
        Ok(pb::AuthEnableResponse::default())
    }

    /// Disables authentication; a change only if it was enabled.
    pub fn auth_disable(&mut self, _request: &pb::AuthDisableRequest) -> pb::AuthDisableResponse {
        if self.enabled {
            self.enabled = false;
            self.commit();
        }
        pb::AuthDisableResponse::default()
    }

    /// Adds a user without roles: with `hashed_password` as its password's hash, or with none
    /// when `options.no_password` is set.
    pub fn user_add(
        &mut self,
        request: &pb::AuthUserAddRequest,
    ) -> Result<pb::AuthUserAddResponse, AuthError> {
        if request.name.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if self.users.contains_key(&request.name) {
            return Err(AuthError::UserAlreadyExist);
        }
        let no_password = request.options.as_ref().is_some_and(|o| o.no_password);
        let user = User {
            password_hash: password_hash(no_password, &request.hashed_password),
            roles: Default::default(),
            no_password,
        };
        self.users.insert(request.name.clone(), user);
        self.commit();
        Ok(pb::AuthUserAddResponse::default())
    }

    /// Deletes a user; never the root user while authentication is enabled. The runtime should
    /// forget the user's tokens (the revision bump makes them stale anyway).
    pub fn user_delete(
        &mut self,
        request: &pb::AuthUserDeleteRequest,
    ) -> Result<pb::AuthUserDeleteResponse, AuthError> {
        if self.enabled && request.name == ROOT_USER {
            return Err(AuthError::InvalidAuthMgmt);
        }
        self.users
            .remove(&request.name)
            .ok_or(AuthError::UserNotFound)?;
        self.commit();
        Ok(pb::AuthUserDeleteResponse::default())
    }

    /// Replaces a user's password hash with `hashed_password`. A no-password user keeps having
    /// none, yet the change still counts, as in etcd.
    pub fn user_change_password(
        &mut self,
        request: &pb::AuthUserChangePasswordRequest,
    ) -> Result<pb::AuthUserChangePasswordResponse, AuthError> {
        let user = self
            .users
            .get_mut(&request.name)
            .ok_or(AuthError::UserNotFound)?;
        user.password_hash = password_hash(user.no_password, &request.hashed_password);
        self.commit();
        Ok(pb::AuthUserChangePasswordResponse::default())
    }

    /// Grants a role to a user. The role must exist, except `root`; granting a role the user
    /// already has succeeds without a change.
    pub fn user_grant_role(
        &mut self,
        request: &pb::AuthUserGrantRoleRequest,
    ) -> Result<pb::AuthUserGrantRoleResponse, AuthError> {
        self.user(&request.user)?;
        if request.role != ROOT_ROLE {
            self.role(&request.role)?;
        }
        let user = self
            .users
            .get_mut(&request.user)
            .ok_or(AuthError::UserNotFound)?;
        if user.roles.insert(request.role.clone()) {
            self.commit();
        }
        Ok(pb::AuthUserGrantRoleResponse::default())
    }

    /// Revokes a role from a user; never `root` from the root user while authentication is
    /// enabled.
    pub fn user_revoke_role(
        &mut self,
        request: &pb::AuthUserRevokeRoleRequest,
    ) -> Result<pb::AuthUserRevokeRoleResponse, AuthError> {
        if self.enabled && request.name == ROOT_USER && request.role == ROOT_ROLE {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let user = self
            .users
            .get_mut(&request.name)
            .ok_or(AuthError::UserNotFound)?;
        if !user.roles.remove(&request.role) {
            return Err(AuthError::RoleNotGranted);
        }
        self.commit();
        Ok(pb::AuthUserRevokeRoleResponse::default())
    }

    /// Adds a role without permissions (`root` too).
    pub fn role_add(
        &mut self,
        request: &pb::AuthRoleAddRequest,
    ) -> Result<pb::AuthRoleAddResponse, AuthError> {
        if request.name.is_empty() {
            return Err(AuthError::RoleEmpty);
        }
        if self.roles.contains_key(&request.name) {
            return Err(AuthError::RoleAlreadyExist);
        }
        self.roles.insert(request.name.clone(), Role::default());
        self.commit();
        Ok(pb::AuthRoleAddResponse::default())
    }

    /// Deletes a role and revokes it from every user; never `root` while authentication is
    /// enabled.
    pub fn role_delete(
        &mut self,
        request: &pb::AuthRoleDeleteRequest,
    ) -> Result<pb::AuthRoleDeleteResponse, AuthError> {
        if self.enabled && request.role == ROOT_ROLE {
            return Err(AuthError::InvalidAuthMgmt);
        }
        self.roles
            .remove(&request.role)
            .ok_or(AuthError::RoleNotFound)?;
        for user in self.users.values_mut() {
            user.roles.remove(&request.role);
        }
        self.commit();
        Ok(pb::AuthRoleDeleteResponse::default())
    }

    /// Grants a permission to a role. A permission on the same key and range end replaces the
    /// earlier one's type; granting exactly the same permission again still counts as a change,
    /// as in etcd. The range must be one key, `[key, range_end)` with `key < range_end`, or
    /// every key from `key` on (`range_end` "\0"), and `key` not empty (etcd 3.5's check; 3.4
    /// stored any range).
    pub fn role_grant_permission(
        &mut self,
        request: &pb::AuthRoleGrantPermissionRequest,
    ) -> Result<pb::AuthRoleGrantPermissionResponse, AuthError> {
        let perm = request.perm.as_ref().ok_or(AuthError::PermissionNotGiven)?;
        if super::Interval::granted(&perm.key, &perm.range_end).is_none() {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let role = self
            .roles
            .get_mut(&request.name)
            .ok_or(AuthError::RoleNotFound)?;
        role.permissions
            .insert((perm.key.clone(), perm.range_end.clone()), perm.perm_type);
        self.commit();
        Ok(pb::AuthRoleGrantPermissionResponse::default())
    }

    /// Revokes the permission on exactly this key and range end from a role.
    pub fn role_revoke_permission(
        &mut self,
        request: &pb::AuthRoleRevokePermissionRequest,
    ) -> Result<pb::AuthRoleRevokePermissionResponse, AuthError> {
        let role = self
            .roles
            .get_mut(&request.role)
            .ok_or(AuthError::RoleNotFound)?;
        role.permissions
            .remove(&(request.key.clone(), request.range_end.clone()))
            .ok_or(AuthError::PermissionNotGranted)?;
        self.commit();
        Ok(pb::AuthRoleRevokePermissionResponse::default())
    }
}

/// What a user stores as its password's hash: nothing for a no-password user.
fn password_hash(no_password: bool, hashed_password: &str) -> String {
    if no_password {
        String::new()
    } else {
        hashed_password.to_owned()
    }
}
