//! The gate's answers: who a request comes from, what applied logins and changes do to tokens.

use super::*;
use crate::types::AuthRevision;

fn gate() -> Arc<AuthGate> {
    AuthGate::new(AuthSettings::default(), [3; 32], false)
}

/// A store with root (root role) and alice, authentication enabled.
fn enabled_store() -> AuthStore {
    let mut store = AuthStore::new();
    for name in ["root", "alice"] {
        let add = pb::AuthUserAddRequest {
            name: name.into(),
            hashed_password: "$2a$04$hash".into(),
            ..Default::default()
        };
        store.user_add(&add).unwrap();
    }
    let grant = pb::AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    };
    store.user_grant_role(&grant).unwrap();
    store.auth_enable(&Default::default()).unwrap();
    store
}

fn issued(token: &str, user: &str) -> TokenChange {
    TokenChange::Issued {
        token: token.into(),
        auth: AuthInfo {
            user: user.into(),
            revision: AuthRevision(1),
        },
    }
}

#[tokio::test]
async fn a_simple_token_names_its_user_at_the_store_revision_now() {
    let gate = gate();
    let store = enabled_store();
    gate.publish(&store);
    gate.on_tokens(issued("tok.1", "alice"));
    let caller = gate.caller(Some("tok.1"), None).unwrap().unwrap();
    assert_eq!(caller.user, "alice");
    assert_eq!(caller.revision, store.revision());
    assert_eq!(
        gate.caller(Some("nobody.2"), None),
        Err(AuthError::InvalidAuthToken)
    );
}

#[tokio::test]
async fn ended_sessions_are_invalid_tokens() {
    let gate = gate();
    gate.publish(&enabled_store());
    gate.on_tokens(issued("a.1", "alice"));
    gate.on_tokens(issued("r.2", "root"));
    gate.on_tokens(TokenChange::ForgetUser("alice".into()));
    assert_eq!(
        gate.caller(Some("a.1"), None),
        Err(AuthError::InvalidAuthToken)
    );
    assert!(gate.caller(Some("r.2"), None).unwrap().is_some());
    gate.on_tokens(TokenChange::ForgetAll);
    assert_eq!(
        gate.caller(Some("r.2"), None),
        Err(AuthError::InvalidAuthToken)
    );
}

#[tokio::test]
async fn a_client_certificate_names_the_user_only_with_auth_enabled() {
    let gate = gate();
    let cert = ClientCertUser("alice".into());
    assert_eq!(gate.caller(None, Some(&cert)), Ok(None), "disabled: nobody");
    gate.publish(&enabled_store());
    let caller = gate.caller(None, Some(&cert)).unwrap().unwrap();
    assert_eq!(caller.user, "alice");
    assert_eq!(gate.caller(None, None), Ok(None));
}

#[tokio::test]
async fn publishing_keeps_the_newest_store() {
    let gate = gate();
    assert!(!gate.status().enabled);
    let store = enabled_store();
    gate.publish(&store);
    let status = gate.status();
    assert!(status.enabled);
    assert_eq!(status.auth_revision, store.revision().0);
}

#[test]
fn simple_tokens_have_etcds_shape_and_never_repeat() {
    let gate = gate();
    let first = gate.new_simple_token();
    let second = gate.new_simple_token();
    assert_ne!(first, second);
    let (prefix, number) = first.split_once('.').unwrap();
    assert_eq!(prefix.len(), 16);
    assert!(prefix.chars().all(|c| c.is_ascii_alphabetic()), "{first}");
    assert!(number.parse::<u64>().is_ok(), "{first}");
}

#[tokio::test]
async fn a_password_checks_against_the_published_hash() {
    let gate = gate();
    let hash = gate.hash_password("pw".into()).await.unwrap();
    let mut store = enabled_store();
    let change = pb::AuthUserChangePasswordRequest {
        name: "alice".into(),
        hashed_password: hash,
        ..Default::default()
    };
    store.user_change_password(&change).unwrap();
    gate.publish(&store);
    assert_eq!(
        gate.check_password("alice", "pw".into()).await,
        Ok(store.revision())
    );
    assert_eq!(
        gate.check_password("alice", "wrong".into()).await,
        Err(AuthError::AuthFailed)
    );
    assert_eq!(
        gate.check_password("mallory", "pw".into()).await,
        Err(AuthError::AuthFailed)
    );
}
