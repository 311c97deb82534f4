//! A client's credentials against the cluster, as etcd's client libraries handle them: a token
//! per member (simple tokens are kept by the members that applied the login), sent in the gRPC
//! metadata; when a member answers "user name is empty", "invalid auth token" or "revision of
//! auth store is old", the client logs in at that member and sends the request once more; when
//! authentication is not enabled it goes on without a token.

use std::collections::BTreeMap;

use tonic::transport::Channel;
use tonic::Status;

use stet::auth::AuthError;
use stet::proto::etcdserverpb::{self as pb, auth_client::AuthClient, kv_client::KvClient};

use crate::client::{Client, CLIENT_TIMEOUT};
use crate::wait;

/// A request the auth scenario's clients send.
#[derive(Debug, Clone)]
pub enum Request {
    Put(pb::PutRequest),
    Range(pb::RangeRequest),
    AuthEnable,
    AuthDisable,
    UserAdd(pb::AuthUserAddRequest),
    RoleAdd(pb::AuthRoleAddRequest),
    UserGrantRole(pb::AuthUserGrantRoleRequest),
    RoleGrantPermission(pb::AuthRoleGrantPermissionRequest),
    RoleRevokePermission(pb::AuthRoleRevokePermissionRequest),
}

/// An answer, or the status the member refused it with.
pub type Answer = Result<Reply, Status>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Put,
    /// The first key's value, if any.
    Range(Option<Vec<u8>>),
    Done,
}

/// A user's credentials and the tokens it holds.
pub struct Session {
    user: String,
    password: String,
    tokens: BTreeMap<u64, String>,
    /// Logins that went through (for the trace's statistics).
    pub logins: u64,
}

impl Session {
    pub fn new(user: &str, password: &str) -> Session {
        Session {
            user: user.to_string(),
            password: password.to_string(),
            tokens: BTreeMap::new(),
            logins: 0,
        }
    }

    /// Sends `request` to `member` as this user, logging in and sending it again once if the
    /// member asks for credentials; `None` if an answer did not come in time.
    pub async fn call(
        &mut self,
        client: &mut Client,
        member: u64,
        request: &Request,
    ) -> Option<Answer> {
        let channel = client.channel(member)?;
        let token = self.tokens.get(&member).cloned();
        let first = send_in_time(channel.clone(), request, token).await?;
        match &first {
            Err(status) if needs_login(status) => {}
            _ => return Some(first),
        }
        match self.login(channel.clone()).await? {
            Ok(Some(token)) => {
                self.logins += 1;
                self.tokens.insert(member, token);
            }
            Ok(None) => {
                self.tokens.remove(&member);
            }
            // The login failed (e.g. the member stopped): the first answer stands.
            Err(_) => return Some(first),
        }
        let token = self.tokens.get(&member).cloned();
        send_in_time(channel, request, token).await
    }

    /// A token, or `None` if authentication is not enabled on that member.
    async fn login(&self, channel: Channel) -> Option<Result<Option<String>, Status>> {
        let request = pb::AuthenticateRequest {
            name: self.user.clone(),
            password: self.password.clone(),
        };
        let login = async move { AuthClient::new(channel).authenticate(request).await };
        let answer = wait::timeout(CLIENT_TIMEOUT, Box::pin(login)).await?;
        Some(match answer {
            Ok(response) => Ok(Some(response.into_inner().token)),
            Err(status) if is(&status, AuthError::AuthNotEnabled) => Ok(None),
            Err(status) => Err(status),
        })
    }
}

/// Whether `status` carries the auth error `error` (etcd's message).
pub fn is(status: &Status, error: AuthError) -> bool {
    status.message() == error.to_string()
}

fn needs_login(status: &Status) -> bool {
    is(status, AuthError::UserEmpty)
        || is(status, AuthError::InvalidAuthToken)
        || is(status, AuthError::AuthOldRevision)
}

async fn send_in_time(
    channel: Channel,
    request: &Request,
    token: Option<String>,
) -> Option<Answer> {
    let request = request.clone();
    wait::timeout(CLIENT_TIMEOUT, Box::pin(send(channel, request, token))).await
}

fn done<T>(result: Result<T, Status>) -> Answer {
    result.map(|_| Reply::Done)
}

fn with_token<T>(message: T, token: &Option<String>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = token.as_deref().and_then(|token| token.parse().ok()) {
        request.metadata_mut().insert("token", value);
    }
    request
}

async fn send(channel: Channel, request: Request, token: Option<String>) -> Answer {
    match request {
        Request::Put(put) => {
            let answer = KvClient::new(channel).put(with_token(put, &token)).await;
            answer.map(|_| Reply::Put)
        }
        Request::Range(range) => {
            let answer = KvClient::new(channel)
                .range(with_token(range, &token))
                .await?;
            let value = answer.into_inner().kvs.first().map(|kv| kv.value.clone());
            Ok(Reply::Range(value))
        }
        Request::AuthEnable => {
            let request = with_token(pb::AuthEnableRequest {}, &token);
            done(AuthClient::new(channel).auth_enable(request).await)
        }
        Request::AuthDisable => {
            let request = with_token(pb::AuthDisableRequest {}, &token);
            done(AuthClient::new(channel).auth_disable(request).await)
        }
        Request::UserAdd(add) => done(
            AuthClient::new(channel)
                .user_add(with_token(add, &token))
                .await,
        ),
        Request::RoleAdd(add) => done(
            AuthClient::new(channel)
                .role_add(with_token(add, &token))
                .await,
        ),
        Request::UserGrantRole(grant) => {
            let request = with_token(grant, &token);
            done(AuthClient::new(channel).user_grant_role(request).await)
        }
        Request::RoleGrantPermission(grant) => {
            let request = with_token(grant, &token);
            done(
                AuthClient::new(channel)
                    .role_grant_permission(request)
                    .await,
            )
        }
        Request::RoleRevokePermission(revoke) => {
            let request = with_token(revoke, &token);
            done(
                AuthClient::new(channel)
                    .role_revoke_permission(request)
                    .await,
            )
        }
    }
}
