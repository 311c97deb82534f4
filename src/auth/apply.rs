//! The auth requests raft carries, applied as etcd's `authApplierV3` applies them: the caller's
//! administrative check first (every request but a login; a user may read itself and the roles
//! it has, as in etcd 3.5), then the store's change or query. A login also answers what every
//! member must do with the token it names, and so do the changes that end sessions.

use super::{AuthError, AuthInfo, AuthStore};
use crate::proto::etcdserverpb as pb;
use crate::proto::stetpb::internal_request::Request;
use crate::types::AuthRevision;

/// An applied auth request's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthResponse {
    Enable(pb::AuthEnableResponse),
    Disable(pb::AuthDisableResponse),
    /// A login went through: the runtime answers the simple token it chose, or signs this.
    Authenticate(AuthInfo),
    UserAdd(pb::AuthUserAddResponse),
    UserDelete(pb::AuthUserDeleteResponse),
    UserGet(pb::AuthUserGetResponse),
    UserChangePassword(pb::AuthUserChangePasswordResponse),
    UserGrantRole(pb::AuthUserGrantRoleResponse),
    UserRevokeRole(pb::AuthUserRevokeRoleResponse),
    UserList(pb::AuthUserListResponse),
    RoleList(pb::AuthRoleListResponse),
    RoleAdd(pb::AuthRoleAddResponse),
    RoleDelete(pb::AuthRoleDeleteResponse),
    RoleGet(pb::AuthRoleGetResponse),
    RoleGrantPermission(pb::AuthRoleGrantPermissionResponse),
    RoleRevokePermission(pb::AuthRoleRevokePermissionResponse),
}

/// What every member does with its tokens after an applied request (etcd's token provider
/// calls from the apply path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChange {
    /// A login issued this simple token.
    Issued { token: String, auth: AuthInfo },
    /// The user was deleted or its password changed: its tokens end.
    ForgetUser(String),
    /// Authentication was disabled: every token ends.
    ForgetAll,
}

/// An applied auth request: the answer, and what happens to tokens.
pub type AuthApplied = Result<(AuthResponse, Option<TokenChange>), AuthError>;

/// Whether `request` is one of the auth store's.
pub fn is_auth_request(request: &Request) -> bool {
    use Request::*;
    matches!(
        request,
        AuthEnable(_)
            | AuthDisable(_)
            | Authenticate(_)
            | AuthUserAdd(_)
            | AuthUserDelete(_)
            | AuthUserGet(_)
            | AuthUserChangePassword(_)
            | AuthUserGrantRole(_)
            | AuthUserRevokeRole(_)
            | AuthUserList(_)
            | AuthRoleList(_)
            | AuthRoleAdd(_)
            | AuthRoleDelete(_)
            | AuthRoleGet(_)
            | AuthRoleGrantPermission(_)
            | AuthRoleRevokePermission(_)
    )
}

impl AuthStore {
    /// Applies one auth request from a committed entry for `caller`; `None` if `request` is not
    /// one of the auth store's. A refused request changes nothing.
    pub fn apply(&mut self, request: &Request, caller: Option<&AuthInfo>) -> Option<AuthApplied> {
        if !is_auth_request(request) {
            return None;
        }
        Some(
            self.check_caller(request, caller)
                .and_then(|()| self.apply_checked(request)),
        )
    }

    /// etcd's check before an auth request: an administrator, except for a login, a user
    /// reading itself, and a user reading a role it has.
    fn check_caller(&self, request: &Request, caller: Option<&AuthInfo>) -> Result<(), AuthError> {
        let user = caller.map_or("", |caller| caller.user.as_str());
        match request {
            Request::Authenticate(_) => Ok(()),
            Request::AuthUserGet(get) if !user.is_empty() && get.name == user => Ok(()),
            Request::AuthRoleGet(get) if self.has_role(user, &get.role) => Ok(()),
            _ => self.check_admin(caller),
        }
    }

    fn apply_checked(&mut self, request: &Request) -> AuthApplied {
        use AuthResponse as R;
        let response = match request {
            Request::AuthEnable(r) => R::Enable(self.auth_enable(r)?),
            Request::AuthDisable(r) => {
                let was_enabled = self.is_enabled();
                let response = R::Disable(self.auth_disable(r));
                let forget = was_enabled.then_some(TokenChange::ForgetAll);
                return Ok((response, forget));
            }
            Request::Authenticate(login) => return self.login(login),
            Request::AuthUserAdd(r) => R::UserAdd(self.user_add(r)?),
            Request::AuthUserDelete(r) => {
                let response = R::UserDelete(self.user_delete(r)?);
                return Ok((response, Some(TokenChange::ForgetUser(r.name.clone()))));
            }
            Request::AuthUserGet(r) => R::UserGet(self.user_get(r)?),
            Request::AuthUserChangePassword(r) => {
                let response = R::UserChangePassword(self.user_change_password(r)?);
                return Ok((response, Some(TokenChange::ForgetUser(r.name.clone()))));
            }
            Request::AuthUserGrantRole(r) => R::UserGrantRole(self.user_grant_role(r)?),
            Request::AuthUserRevokeRole(r) => R::UserRevokeRole(self.user_revoke_role(r)?),
            Request::AuthUserList(r) => R::UserList(self.user_list(r)),
            Request::AuthRoleList(r) => R::RoleList(self.role_list(r)),
            Request::AuthRoleAdd(r) => R::RoleAdd(self.role_add(r)?),
            Request::AuthRoleDelete(r) => R::RoleDelete(self.role_delete(r)?),
            Request::AuthRoleGet(r) => R::RoleGet(self.role_get(r)?),
            Request::AuthRoleGrantPermission(r) => {
                R::RoleGrantPermission(self.role_grant_permission(r)?)
            }
            Request::AuthRoleRevokePermission(r) => {
                R::RoleRevokePermission(self.role_revoke_permission(r)?)
            }
            _ => unreachable!("apply checked that this is an auth request"),
        };
        Ok((response, None))
    }

    /// A login whose password the proposer checked at `checked_revision`: refused with
    /// `AuthOldRevision` if the store changed since (the runtime checks the password again and
    /// retries, as etcd's loop does), so a password changed meanwhile never logs in.
    fn login(&self, login: &crate::proto::stetpb::Authenticate) -> AuthApplied {
        let request = pb::AuthenticateRequest {
            name: login.name.clone(),
            password: String::new(),
        };
        let auth = self.authenticate(&request)?;
        if auth.revision != AuthRevision(login.checked_revision) {
            return Err(AuthError::AuthOldRevision);
        }
        let issued = (!login.simple_token.is_empty()).then(|| TokenChange::Issued {
            token: login.simple_token.clone(),
            auth: auth.clone(),
        });
        Ok((AuthResponse::Authenticate(auth), issued))
    }
}

impl AuthResponse {
    /// The response header, for the node to fill in; none for a login (the runtime makes the
    /// client's answer).
    pub fn header_mut(&mut self) -> Option<&mut Option<pb::ResponseHeader>> {
        use AuthResponse::*;
        Some(match self {
            Enable(r) => &mut r.header,
            Disable(r) => &mut r.header,
            Authenticate(_) => return None,
            UserAdd(r) => &mut r.header,
            UserDelete(r) => &mut r.header,
            UserGet(r) => &mut r.header,
            UserChangePassword(r) => &mut r.header,
            UserGrantRole(r) => &mut r.header,
            UserRevokeRole(r) => &mut r.header,
            UserList(r) => &mut r.header,
            RoleList(r) => &mut r.header,
            RoleAdd(r) => &mut r.header,
            RoleDelete(r) => &mut r.header,
            RoleGet(r) => &mut r.header,
            RoleGrantPermission(r) => &mut r.header,
            RoleRevokePermission(r) => &mut r.header,
        })
    }
}
