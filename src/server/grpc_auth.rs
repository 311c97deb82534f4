//! etcd's `Auth` gRPC service over the replicated auth store: every request but AuthStatus goes
//! through raft, as in etcd, with its caller; new passwords are hashed here (bcrypt, off the
//! async threads) so only hashes reach the log; a login checks the password against this
//! member's published store, proposes the login with the revision it checked at, and starts over
//! if the store moved meanwhile (so a password changed or a user deleted in between never logs
//! in), then answers the simple token it chose or a JWT.

use tonic::{Request, Response, Status};

use super::grpc::Services;
use super::status::to_status;
use crate::auth::{AuthError, AuthResponse};
use crate::node::{ClientError, ClientRequest, ClientResponse};
use crate::proto::etcdserverpb::{self as pb, auth_server};
use crate::proto::stetpb::{self, internal_request::Request as Internal};

/// How many times a login starts over because the auth store moved while its password was
/// checked; past it, the login fails with etcd's "revision of auth store is old".
const LOGIN_ATTEMPTS: usize = 8;

/// Proposes an auth request for the request's caller and unwraps the expected response.
macro_rules! auth_call {
    ($self:ident, $request:ident, $internal:ident, $response:ident) => {{
        let caller = $self.caller(&$request)?;
        let request = Internal::$internal($request.into_inner());
        match $self.auth_call(request, caller).await {
            Ok(AuthResponse::$response(response)) => Ok(Response::new(response)),
            Ok(other) => Err(unexpected(&other)),
            Err(error) => Err(to_status(&error)),
        }
    }};
}

fn unexpected(response: &AuthResponse) -> Status {
    Status::internal(format!("stet: unexpected auth response {response:?}"))
}

impl Services {
    async fn auth_call(
        &self,
        request: Internal,
        caller: Option<crate::auth::AuthInfo>,
    ) -> Result<AuthResponse, ClientError> {
        match self
            .router()
            .call(ClientRequest::Auth(request), caller)
            .await
        {
            Ok(ClientResponse::Auth(response)) => Ok(response),
            Ok(other) => Err(ClientError::Forwarded {
                code: crate::request::GrpcCode::Unknown,
                message: format!("stet: unexpected response {other:?}"),
            }),
            Err(error) => Err(error),
        }
    }

    /// The hash a user add or password change stores: the client's own hash if it sent one
    /// (etcd 3.5's `hashed_password`), none for a user without a password, else bcrypt's.
    async fn stored_hash(
        &self,
        password: &mut String,
        hashed_password: &mut String,
        no_password: bool,
    ) -> Result<(), Status> {
        let password = std::mem::take(password);
        if no_password || !hashed_password.is_empty() {
            return Ok(());
        }
        *hashed_password = self
            .gate()
            .hash_password(password)
            .await
            .map_err(|error| Status::internal(format!("stet: {error}")))?;
        Ok(())
    }

    async fn login(&self, name: String, password: String) -> Result<String, Status> {
        let refused = |error: AuthError| to_status(&ClientError::Auth(error));
        for _ in 0..LOGIN_ATTEMPTS {
            let checked = self.gate().check_password(&name, password.clone()).await;
            let revision = checked.map_err(refused)?;
            let simple_token = self.gate().new_simple_token();
            let login = stetpb::Authenticate {
                name: name.clone(),
                simple_token: simple_token.clone(),
                checked_revision: revision.0,
            };
            match self.auth_call(Internal::Authenticate(login), None).await {
                Ok(AuthResponse::Authenticate(auth)) => {
                    return self
                        .gate()
                        .token_for(&auth, simple_token)
                        .map_err(|error| Status::internal(format!("stet: {error}")));
                }
                Ok(other) => return Err(unexpected(&other)),
                Err(ClientError::Auth(AuthError::AuthOldRevision)) => continue,
                Err(error) => return Err(to_status(&error)),
            }
        }
        Err(refused(AuthError::AuthOldRevision))
    }
}

#[tonic::async_trait]
impl auth_server::Auth for Services {
    /// Whether authentication is enabled and the store's revision, from this member's applied
    /// store (etcd 3.5 answers it locally too).
    async fn auth_status(
        &self,
        _request: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        let status = self.driver().status();
        if status.stopped {
            return Err(to_status(&ClientError::Stopped));
        }
        let mut response = self.gate().status();
        response.header = Some(status.header());
        Ok(Response::new(response))
    }

    async fn auth_enable(
        &self,
        request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        auth_call!(self, request, AuthEnable, Enable)
    }

    async fn auth_disable(
        &self,
        request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        auth_call!(self, request, AuthDisable, Disable)
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        // A token sent along must still be valid, as etcd checks it on every request.
        self.caller(&request)?;
        let request = request.into_inner();
        let token = self.login(request.name, request.password).await?;
        Ok(Response::new(pb::AuthenticateResponse {
            header: Some(self.driver().status().header()),
            token,
        }))
    }

    async fn user_add(
        &self,
        mut request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let add = request.get_mut();
        let no_password = add.options.as_ref().is_some_and(|o| o.no_password);
        self.stored_hash(&mut add.password, &mut add.hashed_password, no_password)
            .await?;
        auth_call!(self, request, AuthUserAdd, UserAdd)
    }

    async fn user_get(
        &self,
        request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        auth_call!(self, request, AuthUserGet, UserGet)
    }

    async fn user_list(
        &self,
        request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        auth_call!(self, request, AuthUserList, UserList)
    }

    async fn user_delete(
        &self,
        request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        auth_call!(self, request, AuthUserDelete, UserDelete)
    }

    async fn user_change_password(
        &self,
        mut request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let change = request.get_mut();
        self.stored_hash(&mut change.password, &mut change.hashed_password, false)
            .await?;
        auth_call!(self, request, AuthUserChangePassword, UserChangePassword)
    }

    async fn user_grant_role(
        &self,
        request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        auth_call!(self, request, AuthUserGrantRole, UserGrantRole)
    }

    async fn user_revoke_role(
        &self,
        request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        auth_call!(self, request, AuthUserRevokeRole, UserRevokeRole)
    }

    async fn role_add(
        &self,
        request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        auth_call!(self, request, AuthRoleAdd, RoleAdd)
    }

    async fn role_get(
        &self,
        request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        auth_call!(self, request, AuthRoleGet, RoleGet)
    }

    async fn role_list(
        &self,
        request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        auth_call!(self, request, AuthRoleList, RoleList)
    }

    async fn role_delete(
        &self,
        request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        auth_call!(self, request, AuthRoleDelete, RoleDelete)
    }

    async fn role_grant_permission(
        &self,
        request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        auth_call!(self, request, AuthRoleGrantPermission, RoleGrantPermission)
    }

    async fn role_revoke_permission(
        &self,
        request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        auth_call!(
            self,
            request,
            AuthRoleRevokePermission,
            RoleRevokePermission
        )
    }
}
