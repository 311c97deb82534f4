//! The auth store's rules, answers and revision bumps, checked against what etcd 3.4.23 does
//! (the sessions these tests replay were run against a real etcd with etcdctl), and its
//! permission checks against a brute-force model.

use proptest::prelude::*;
use prost::Message as _;

use super::*;
use crate::proto::stetpb::AuthState;
use crate::request::GrpcCode;
use authpb::permission::Type;

fn rev(store: &AuthStore) -> u64 {
    store.revision().0
}

fn add_user(store: &mut AuthStore, name: &str, hash: &str) -> Result<(), AuthError> {
    store
        .user_add(&pb::AuthUserAddRequest {
            name: name.into(),
            hashed_password: hash.into(),
            ..Default::default()
        })
        .map(drop)
}

fn add_no_password_user(store: &mut AuthStore, name: &str) -> Result<(), AuthError> {
    store
        .user_add(&pb::AuthUserAddRequest {
            name: name.into(),
            options: Some(authpb::UserAddOptions { no_password: true }),
            hashed_password: "ignored".into(),
            ..Default::default()
        })
        .map(drop)
}

fn add_role(store: &mut AuthStore, name: &str) -> Result<(), AuthError> {
    store
        .role_add(&pb::AuthRoleAddRequest { name: name.into() })
        .map(drop)
}

fn grant_role(store: &mut AuthStore, user: &str, role: &str) -> Result<(), AuthError> {
    store
        .user_grant_role(&pb::AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        })
        .map(drop)
}

fn revoke_role(store: &mut AuthStore, user: &str, role: &str) -> Result<(), AuthError> {
    store
        .user_revoke_role(&pb::AuthUserRevokeRoleRequest {
            name: user.into(),
            role: role.into(),
        })
        .map(drop)
}

fn grant(
    store: &mut AuthStore,
    role: &str,
    kind: Type,
    key: &[u8],
    end: &[u8],
) -> Result<(), AuthError> {
    store
        .role_grant_permission(&pb::AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(authpb::Permission {
                perm_type: kind as i32,
                key: key.to_vec(),
                range_end: end.to_vec(),
            }),
        })
        .map(drop)
}

fn revoke(store: &mut AuthStore, role: &str, key: &[u8], end: &[u8]) -> Result<(), AuthError> {
    store
        .role_revoke_permission(&pb::AuthRoleRevokePermissionRequest {
            role: role.into(),
            key: key.to_vec(),
            range_end: end.to_vec(),
        })
        .map(drop)
}

fn delete_user(store: &mut AuthStore, name: &str) -> Result<(), AuthError> {
    store
        .user_delete(&pb::AuthUserDeleteRequest { name: name.into() })
        .map(drop)
}

fn delete_role(store: &mut AuthStore, name: &str) -> Result<(), AuthError> {
    store
        .role_delete(&pb::AuthRoleDeleteRequest { role: name.into() })
        .map(drop)
}

fn change_password(store: &mut AuthStore, name: &str, hash: &str) -> Result<(), AuthError> {
    store
        .user_change_password(&pb::AuthUserChangePasswordRequest {
            name: name.into(),
            hashed_password: hash.into(),
            ..Default::default()
        })
        .map(drop)
}

fn enable(store: &mut AuthStore) -> Result<(), AuthError> {
    store.auth_enable(&pb::AuthEnableRequest {}).map(drop)
}

fn disable(store: &mut AuthStore) {
    store.auth_disable(&pb::AuthDisableRequest {});
}

/// `disable`, as a step of a session.
fn disable_step(store: &mut AuthStore) -> Result<(), AuthError> {
    disable(store);
    Ok(())
}

fn user_roles(store: &AuthStore, name: &str) -> Result<Vec<String>, AuthError> {
    store
        .user_get(&pb::AuthUserGetRequest { name: name.into() })
        .map(|r| r.roles)
}

/// A permission as role get answers it: type, key, range end.
type Perm = (Type, Vec<u8>, Vec<u8>);

fn role_perms(store: &AuthStore, name: &str) -> Result<Vec<Perm>, AuthError> {
    let perms = store
        .role_get(&pb::AuthRoleGetRequest { role: name.into() })?
        .perm;
    Ok(perms
        .into_iter()
        .map(|p| (Type::try_from(p.perm_type).unwrap(), p.key, p.range_end))
        .collect())
}

fn users(store: &AuthStore) -> Vec<String> {
    store.user_list(&pb::AuthUserListRequest {}).users
}

fn roles(store: &AuthStore) -> Vec<String> {
    store.role_list(&pb::AuthRoleListRequest {}).roles
}

/// A store with the root user holding the root role (never added), enabled.
fn enabled_store() -> AuthStore {
    let mut store = AuthStore::new();
    add_user(&mut store, ROOT_USER, "root-hash").unwrap();
    grant_role(&mut store, ROOT_USER, ROOT_ROLE).unwrap();
    enable(&mut store).unwrap();
    store
}

fn plain_verify(hash: &str, password: &str) -> bool {
    hash == format!("hash({password})")
}

#[test]
fn a_new_store_is_disabled_at_revision_one() {
    let store = AuthStore::new();
    let status = store.status();
    assert!(!status.enabled);
    assert_eq!(status.auth_revision, 1);
    assert_eq!(store, AuthStore::default());
    assert!(users(&store).is_empty() && roles(&store).is_empty());
}

#[test]
fn errors_carry_etcds_messages_and_codes() {
    use AuthError::*;
    use GrpcCode::*;
    let cases = [
        (
            RootUserNotExist,
            "etcdserver: root user does not exist",
            FailedPrecondition,
        ),
        (
            RootRoleNotExist,
            "etcdserver: root user does not have root role",
            FailedPrecondition,
        ),
        (
            UserAlreadyExist,
            "etcdserver: user name already exists",
            FailedPrecondition,
        ),
        (UserEmpty, "etcdserver: user name is empty", InvalidArgument),
        (
            UserNotFound,
            "etcdserver: user name not found",
            FailedPrecondition,
        ),
        (
            RoleAlreadyExist,
            "etcdserver: role name already exists",
            FailedPrecondition,
        ),
        (
            RoleNotFound,
            "etcdserver: role name not found",
            FailedPrecondition,
        ),
        (RoleEmpty, "etcdserver: role name is empty", InvalidArgument),
        (
            AuthFailed,
            "etcdserver: authentication failed, invalid user ID or password",
            InvalidArgument,
        ),
        (
            NoPasswordUser,
            "auth: authentication failed, password was given for no password user",
            Unknown,
        ),
        (
            PermissionNotGiven,
            "etcdserver: permission not given",
            InvalidArgument,
        ),
        (
            AuthError::PermissionDenied,
            "etcdserver: permission denied",
            GrpcCode::PermissionDenied,
        ),
        (
            RoleNotGranted,
            "etcdserver: role is not granted to the user",
            FailedPrecondition,
        ),
        (
            PermissionNotGranted,
            "etcdserver: permission is not granted to the role",
            FailedPrecondition,
        ),
        (
            AuthNotEnabled,
            "etcdserver: authentication is not enabled",
            FailedPrecondition,
        ),
        (
            InvalidAuthToken,
            "etcdserver: invalid auth token",
            Unauthenticated,
        ),
        (
            InvalidAuthMgmt,
            "etcdserver: invalid auth management",
            InvalidArgument,
        ),
        (
            AuthOldRevision,
            "etcdserver: revision of auth store is old",
            InvalidArgument,
        ),
    ];
    for (error, message, code) in cases {
        assert_eq!(error.to_string(), message);
        assert_eq!(error.grpc_code(), code, "{error:?}");
    }
}

#[test]
fn user_add_refuses_empty_and_existing_names() {
    let mut store = AuthStore::new();
    assert_eq!(add_user(&mut store, "", "h"), Err(AuthError::UserEmpty));
    assert_eq!(rev(&store), 1);
    add_user(&mut store, "alice", "h").unwrap();
    assert_eq!(rev(&store), 2);
    assert_eq!(
        add_user(&mut store, "alice", "h"),
        Err(AuthError::UserAlreadyExist)
    );
    assert_eq!(
        add_no_password_user(&mut store, "alice"),
        Err(AuthError::UserAlreadyExist)
    );
    assert_eq!(rev(&store), 2);
    assert_eq!(user_roles(&store, "alice"), Ok(vec![]));
}

#[test]
fn users_and_roles_list_sorted_and_unknown_ones_are_not_found() {
    let mut store = AuthStore::new();
    for name in ["carol", "alice", "bob"] {
        add_user(&mut store, name, "h").unwrap();
        add_role(&mut store, &format!("r-{name}")).unwrap();
    }
    assert_eq!(users(&store), ["alice", "bob", "carol"]);
    assert_eq!(roles(&store), ["r-alice", "r-bob", "r-carol"]);
    assert_eq!(user_roles(&store, "nobody"), Err(AuthError::UserNotFound));
    assert_eq!(role_perms(&store, "nobody"), Err(AuthError::RoleNotFound));
}

#[test]
fn role_add_refuses_empty_and_existing_names() {
    let mut store = AuthStore::new();
    assert_eq!(add_role(&mut store, ""), Err(AuthError::RoleEmpty));
    add_role(&mut store, "r1").unwrap();
    assert_eq!(add_role(&mut store, "r1"), Err(AuthError::RoleAlreadyExist));
    assert_eq!(rev(&store), 2);
    assert_eq!(role_perms(&store, "r1"), Ok(vec![]));
}

#[test]
fn granting_a_role_needs_the_user_then_the_role_but_not_root() {
    let mut store = AuthStore::new();
    add_user(&mut store, "alice", "h").unwrap();
    add_role(&mut store, "r1").unwrap();
    assert_eq!(
        grant_role(&mut store, "nobody", "nosuch"),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        grant_role(&mut store, "alice", "nosuch"),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(rev(&store), 3);
    grant_role(&mut store, "alice", "r1").unwrap();
    grant_role(&mut store, "alice", ROOT_ROLE).unwrap();
    assert_eq!(rev(&store), 5);
    assert_eq!(user_roles(&store, "alice").unwrap(), ["r1", "root"]);
    assert_eq!(roles(&store), ["r1"], "granting root does not add the role");
    assert_eq!(role_perms(&store, ROOT_ROLE), Err(AuthError::RoleNotFound));
}

#[test]
fn granting_a_role_again_succeeds_without_a_change() {
    let mut store = AuthStore::new();
    add_user(&mut store, "alice", "h").unwrap();
    add_role(&mut store, "r1").unwrap();
    grant_role(&mut store, "alice", "r1").unwrap();
    let before = store.clone();
    grant_role(&mut store, "alice", "r1").unwrap();
    assert_eq!(store, before);
}

#[test]
fn revoking_a_role_needs_the_user_and_the_grant() {
    let mut store = AuthStore::new();
    add_user(&mut store, "alice", "h").unwrap();
    grant_role(&mut store, "alice", ROOT_ROLE).unwrap();
    assert_eq!(
        revoke_role(&mut store, "nobody", "r1"),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        revoke_role(&mut store, "alice", "nosuch"),
        Err(AuthError::RoleNotGranted)
    );
    assert_eq!(rev(&store), 3);
    revoke_role(&mut store, "alice", ROOT_ROLE).unwrap();
    assert_eq!(rev(&store), 4);
    assert_eq!(user_roles(&store, "alice"), Ok(vec![]));
}

#[test]
fn deleting_a_user_needs_it() {
    let mut store = AuthStore::new();
    add_user(&mut store, "alice", "h").unwrap();
    assert_eq!(
        delete_user(&mut store, "nobody"),
        Err(AuthError::UserNotFound)
    );
    delete_user(&mut store, "alice").unwrap();
    assert_eq!(rev(&store), 3);
    assert!(users(&store).is_empty());
}

#[test]
fn deleting_a_role_revokes_it_from_every_user() {
    let mut store = AuthStore::new();
    add_role(&mut store, "r1").unwrap();
    add_role(&mut store, "r2").unwrap();
    for user in ["alice", "bob"] {
        add_user(&mut store, user, "h").unwrap();
        grant_role(&mut store, user, "r1").unwrap();
    }
    grant_role(&mut store, "bob", "r2").unwrap();
    grant(&mut store, "r1", Type::Read, b"k", b"").unwrap();
    assert!(store.is_range_permitted("alice", b"k", b"", PermissionType::Read));
    let before = rev(&store);
    delete_role(&mut store, "r1").unwrap();
    assert_eq!(
        rev(&store),
        before + 1,
        "one change, however many users had the role"
    );
    assert_eq!(user_roles(&store, "alice"), Ok(vec![]));
    assert_eq!(user_roles(&store, "bob").unwrap(), ["r2"]);
    assert!(!store.is_range_permitted("alice", b"k", b"", PermissionType::Read));
    assert_eq!(delete_role(&mut store, "r1"), Err(AuthError::RoleNotFound));
}

#[test]
fn changing_a_password_replaces_the_hash_but_not_a_no_password_users() {
    let mut store = enabled_store();
    add_user(&mut store, "alice", "hash(old)").unwrap();
    add_no_password_user(&mut store, "nop").unwrap();
    let before = rev(&store);
    assert_eq!(
        change_password(&mut store, "nobody", "h"),
        Err(AuthError::UserNotFound)
    );
    change_password(&mut store, "alice", "hash(new)").unwrap();
    change_password(&mut store, "nop", "hash(new)").unwrap();
    assert_eq!(rev(&store), before + 2, "both count as changes, as in etcd");
    assert_eq!(
        store.check_password("alice", "new", plain_verify),
        Ok(store.revision())
    );
    assert_eq!(
        store.check_password("alice", "old", plain_verify),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(store.password_hash("nop"), Err(AuthError::NoPasswordUser));
    assert_eq!(store.to_proto().users[1].password, b"");
}

#[test]
fn granting_a_permission_checks_it_before_the_role() {
    let mut store = AuthStore::new();
    let no_perm = pb::AuthRoleGrantPermissionRequest {
        name: "nosuch".into(),
        perm: None,
    };
    assert_eq!(
        store.role_grant_permission(&no_perm),
        Err(AuthError::PermissionNotGiven)
    );
    let invalid: [(&[u8], &[u8]); 4] = [(b"", b""), (b"", b"\0"), (b"b", b"a"), (b"b", b"b")];
    for (key, end) in invalid {
        assert_eq!(
            grant(&mut store, "nosuch", Type::Read, key, end),
            Err(AuthError::InvalidAuthMgmt),
            "{key:?} {end:?}"
        );
    }
    assert_eq!(
        grant(&mut store, "nosuch", Type::Read, b"a", b""),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(rev(&store), 1);
}

#[test]
fn permissions_sort_by_key_and_a_regrant_replaces_the_type() {
    // etcd 3.4.23: read a; write [b, c); readwrite prefix x; read from z; then write a twice.
    let mut store = AuthStore::new();
    add_role(&mut store, "r1").unwrap();
    grant(&mut store, "r1", Type::Read, b"a", b"").unwrap();
    grant(&mut store, "r1", Type::Write, b"b", b"c").unwrap();
    grant(&mut store, "r1", Type::Readwrite, b"x", b"y").unwrap();
    grant(&mut store, "r1", Type::Read, b"z", b"\0").unwrap();
    assert_eq!(rev(&store), 6);
    grant(&mut store, "r1", Type::Write, b"a", b"").unwrap();
    grant(&mut store, "r1", Type::Write, b"a", b"").unwrap();
    assert_eq!(rev(&store), 8, "an identical grant still counts");
    assert_eq!(
        role_perms(&store, "r1").unwrap(),
        [
            (Type::Write, b"a".to_vec(), vec![]),
            (Type::Write, b"b".to_vec(), b"c".to_vec()),
            (Type::Readwrite, b"x".to_vec(), b"y".to_vec()),
            (Type::Read, b"z".to_vec(), vec![0]),
        ]
    );
    // The same key with another range end is another permission.
    grant(&mut store, "r1", Type::Read, b"a", b"b").unwrap();
    assert_eq!(role_perms(&store, "r1").unwrap().len(), 5);
}

#[test]
fn revoking_a_permission_needs_the_role_and_the_exact_range() {
    let mut store = AuthStore::new();
    add_role(&mut store, "r1").unwrap();
    grant(&mut store, "r1", Type::Read, b"a", b"").unwrap();
    assert_eq!(
        revoke(&mut store, "nosuch", b"a", b""),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(
        revoke(&mut store, "r1", b"a", b"b"),
        Err(AuthError::PermissionNotGranted)
    );
    assert_eq!(
        revoke(&mut store, "r1", b"q", b""),
        Err(AuthError::PermissionNotGranted)
    );
    assert_eq!(rev(&store), 3);
    revoke(&mut store, "r1", b"a", b"").unwrap();
    assert_eq!(rev(&store), 4);
    assert_eq!(role_perms(&store, "r1"), Ok(vec![]));
}

#[test]
fn enabling_needs_the_root_user_with_the_root_role_and_changes_no_revision() {
    let mut store = AuthStore::new();
    assert_eq!(enable(&mut store), Err(AuthError::RootUserNotExist));
    add_user(&mut store, ROOT_USER, "h").unwrap();
    assert_eq!(enable(&mut store), Err(AuthError::RootRoleNotExist));
    add_role(&mut store, ROOT_ROLE).unwrap();
    assert_eq!(
        enable(&mut store),
        Err(AuthError::RootRoleNotExist),
        "the role must be granted"
    );
    grant_role(&mut store, ROOT_USER, ROOT_ROLE).unwrap();
    assert_eq!(rev(&store), 4);
    enable(&mut store).unwrap();
    assert!(store.is_enabled());
    assert_eq!(rev(&store), 4);
    enable(&mut store).unwrap();
    assert_eq!(rev(&store), 4);
}

#[test]
fn disabling_always_succeeds_and_counts_only_when_enabled() {
    let mut store = AuthStore::new();
    disable(&mut store);
    assert_eq!(rev(&store), 1);
    let mut store = enabled_store();
    let before = rev(&store);
    disable(&mut store);
    assert!(!store.is_enabled());
    assert_eq!(rev(&store), before + 1);
}

#[test]
fn root_keeps_its_user_and_role_while_enabled() {
    let mut store = enabled_store();
    add_role(&mut store, ROOT_ROLE).unwrap();
    let before = store.clone();
    assert_eq!(
        delete_user(&mut store, ROOT_USER),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        revoke_role(&mut store, ROOT_USER, ROOT_ROLE),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        delete_role(&mut store, ROOT_ROLE),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(store, before);
    // Root's other roles, and other users' root role, can go.
    add_user(&mut store, "bob", "h").unwrap();
    grant_role(&mut store, "bob", ROOT_ROLE).unwrap();
    revoke_role(&mut store, "bob", ROOT_ROLE).unwrap();
    // etcd checks the name before the existence: not-found becomes invalid management.
    let mut store = AuthStore::new();
    add_user(&mut store, ROOT_USER, "h").unwrap();
    grant_role(&mut store, ROOT_USER, ROOT_ROLE).unwrap();
    enable(&mut store).unwrap();
    assert_eq!(
        delete_role(&mut store, ROOT_ROLE),
        Err(AuthError::InvalidAuthMgmt)
    );
}

#[test]
fn root_can_lose_everything_while_disabled() {
    // etcd 3.4.23, after `auth disable`: revoke-permission, role delete root, user delete root.
    let mut store = enabled_store();
    add_role(&mut store, ROOT_ROLE).unwrap();
    grant(&mut store, ROOT_ROLE, Type::Read, b"foo", b"").unwrap();
    assert_eq!(
        role_perms(&store, ROOT_ROLE).unwrap(),
        [(Type::Read, b"foo".to_vec(), vec![])]
    );
    disable(&mut store);
    revoke(&mut store, ROOT_ROLE, b"foo", b"").unwrap();
    delete_role(&mut store, ROOT_ROLE).unwrap();
    assert_eq!(user_roles(&store, ROOT_USER), Ok(vec![]));
    assert_eq!(
        revoke_role(&mut store, ROOT_USER, ROOT_ROLE),
        Err(AuthError::RoleNotGranted)
    );
    delete_user(&mut store, ROOT_USER).unwrap();
    assert!(users(&store).is_empty());
}

type Step = Box<dyn Fn(&mut AuthStore) -> Result<(), AuthError>>;

/// One etcdctl command of the etcd 3.4.23 session, and the auth revision etcd reported after it
/// (`etcd_debugging_auth_revision`).
fn step(
    etcd_revision: u64,
    run: impl Fn(&mut AuthStore) -> Result<(), AuthError> + 'static,
) -> (u64, Step) {
    (etcd_revision, Box::new(run))
}

#[test]
fn revisions_follow_an_etcd_session() {
    use Type::{Read, Readwrite, Write};
    let session = vec![
        step(1, |s| add_user(s, "", "h")),
        step(1, |s| add_role(s, "")),
        step(2, |s| add_user(s, "alice", "h")),
        step(2, |s| add_user(s, "alice", "h")),
        step(3, |s| add_no_password_user(s, "nop")),
        step(4, |s| add_role(s, "r1")),
        step(4, |s| add_role(s, "r1")),
        step(5, |s| grant_role(s, "alice", "r1")),
        step(5, |s| grant_role(s, "alice", "r1")),
        step(5, |s| grant_role(s, "alice", "nosuch")),
        step(5, |s| grant_role(s, "nobody", "r1")),
        step(6, |s| grant_role(s, "alice", "root")),
        step(6, |s| revoke_role(s, "alice", "nosuch")),
        step(7, |s| revoke_role(s, "alice", "root")),
        step(7, |s| revoke_role(s, "nobody", "r1")),
        step(8, |s| grant(s, "r1", Read, b"a", b"")),
        step(9, |s| grant(s, "r1", Write, b"b", b"c")),
        step(10, |s| grant(s, "r1", Readwrite, b"x", b"y")),
        step(11, |s| grant(s, "r1", Read, b"z", b"\0")),
        step(12, |s| grant(s, "r1", Write, b"a", b"")),
        step(13, |s| grant(s, "r1", Write, b"a", b"")),
        // etcd 3.4 stored these two inverted ranges (14, 15); etcd 3.5 and stet refuse them.
        step(13, |s| grant(s, "r1", Read, b"c", b"b")),
        step(13, |s| grant(s, "r1", Read, b"b", b"b")),
        step(13, |s| grant(s, "nosuch", Read, b"a", b"")),
        step(13, |s| revoke(s, "r1", b"a", b"b")),
        step(13, |s| revoke(s, "r1", b"q", b"")),
        step(13, |s| revoke(s, "nosuch", b"a", b"")),
        step(14, |s| revoke(s, "r1", b"a", b"")),
        step(15, |s| add_user(s, "bob", "h")),
        step(16, |s| grant_role(s, "bob", "r1")),
        step(17, |s| add_role(s, "r2")),
        step(18, |s| grant_role(s, "bob", "r2")),
        step(19, |s| delete_role(s, "r1")),
        step(19, |s| delete_role(s, "r1")),
        step(19, |s| delete_user(s, "nobody")),
        step(19, enable),
        step(20, |s| add_user(s, "root", "h")),
        step(20, disable_step),
        // etcdctl's `auth enable`: refused, so it adds the root role, grants it, enables.
        step(20, enable),
        step(21, |s| add_role(s, "root")),
        step(22, |s| grant_role(s, "root", "root")),
        step(22, enable),
        step(22, |s| delete_user(s, "root")),
        step(22, |s| revoke_role(s, "root", "root")),
        step(22, |s| delete_role(s, "root")),
        step(22, enable),
        step(23, |s| grant(s, "root", Read, b"foo", b"")),
        step(24, |s| grant_role(s, "bob", "root")),
        step(25, disable_step),
        step(26, |s| revoke(s, "root", b"foo", b"")),
        step(27, |s| delete_role(s, "root")),
        step(27, |s| revoke_role(s, "root", "root")),
        step(28, |s| delete_user(s, "root")),
        step(29, |s| add_role(s, "dup")),
        step(30, |s| grant(s, "dup", Read, b"a", b"")),
        step(31, |s| grant(s, "dup", Read, b"a", b"b")),
        step(32, |s| grant(s, "dup", Write, b"a", b"b")),
        step(33, |s| grant(s, "dup", Write, b"a", b"")),
        step(34, |s| change_password(s, "nop", "h")),
        step(34, |s| change_password(s, "nobody", "h")),
        step(35, |s| change_password(s, "bob", "h")),
    ];
    let mut store = AuthStore::new();
    for (i, (expected, run)) in session.into_iter().enumerate() {
        let _ = run(&mut store);
        assert_eq!(rev(&store), expected, "step {i}");
    }
    assert_eq!(user_roles(&store, "bob").unwrap(), ["r2"]);
    assert_eq!(users(&store), ["alice", "bob", "nop"]);
    assert_eq!(roles(&store), ["dup", "r2"]);
    // etcd 3.4 kept both [a, b) grants (its regrant looks only at the first permission on the
    // key); stet replaces the type, as etcd means to.
    assert_eq!(
        role_perms(&store, "dup").unwrap(),
        [
            (Write, b"a".to_vec(), vec![]),
            (Write, b"a".to_vec(), b"b".to_vec())
        ]
    );
}

#[test]
fn passwords_are_checked_only_while_enabled_and_never_for_no_password_users() {
    let mut store = AuthStore::new();
    add_user(&mut store, "alice", "hash(pw)").unwrap();
    add_no_password_user(&mut store, "nop").unwrap();
    assert_eq!(
        store.check_password("alice", "pw", plain_verify),
        Err(AuthError::AuthNotEnabled)
    );
    add_user(&mut store, ROOT_USER, "hash(rootpw)").unwrap();
    grant_role(&mut store, ROOT_USER, ROOT_ROLE).unwrap();
    enable(&mut store).unwrap();
    assert_eq!(
        store.check_password("alice", "pw", plain_verify),
        Ok(AuthRevision(5))
    );
    assert_eq!(
        store.password_hash("alice"),
        Ok(("hash(pw)", AuthRevision(5)))
    );
    assert_eq!(
        store.check_password("alice", "nope", plain_verify),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(
        store.check_password("nobody", "pw", plain_verify),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(
        store.check_password("nop", "", |_, _| true),
        Err(AuthError::NoPasswordUser)
    );
}

#[test]
fn authenticate_answers_who_and_at_which_revision() {
    let mut store = AuthStore::new();
    add_user(&mut store, "alice", "h").unwrap();
    let login = |name: &str| pb::AuthenticateRequest {
        name: name.into(),
        password: String::new(),
    };
    assert_eq!(
        store.authenticate(&login("alice")),
        Err(AuthError::AuthNotEnabled)
    );
    add_no_password_user(&mut store, "nop").unwrap();
    add_user(&mut store, ROOT_USER, "h").unwrap();
    grant_role(&mut store, ROOT_USER, ROOT_ROLE).unwrap();
    enable(&mut store).unwrap();
    assert_eq!(
        store.authenticate(&login("alice")),
        Ok(AuthInfo {
            user: "alice".into(),
            revision: store.revision(),
        })
    );
    assert_eq!(
        store.authenticate(&login("nobody")),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(
        store.authenticate(&login("nop")),
        Err(AuthError::AuthFailed)
    );
}

/// carol's grants from the etcd 3.4.23 session: read [a, b), [b, c) and c; write k; readwrite
/// prefix p.
fn carols_store() -> AuthStore {
    let mut store = enabled_store();
    add_role(&mut store, "carol").unwrap();
    add_user(&mut store, "carol", "h").unwrap();
    grant_role(&mut store, "carol", "carol").unwrap();
    grant(&mut store, "carol", Type::Read, b"a", b"b").unwrap();
    grant(&mut store, "carol", Type::Read, b"b", b"c").unwrap();
    grant(&mut store, "carol", Type::Read, b"c", b"").unwrap();
    grant(&mut store, "carol", Type::Write, b"k", b"").unwrap();
    grant(&mut store, "carol", Type::Readwrite, b"p", b"q").unwrap();
    store
}

#[test]
fn range_permissions_merge_across_grants_as_etcd_checks_them() {
    use PermissionType::{Read, Write};
    let store = carols_store();
    let may = |key: &[u8], end: &[u8], kind| store.is_range_permitted("carol", key, end, kind);
    // Allowed by etcd 3.4.23.
    assert!(may(b"a", b"c", Read), "adjacent ranges combine");
    assert!(may(b"c", b"", Read));
    assert!(may(b"b", b"c", Read));
    assert!(may(b"aa", b"bz", Read));
    assert!(may(b"k", b"", Write));
    assert!(may(b"p1", b"", Write), "readwrite grants write");
    assert!(may(b"p", b"q", Read), "readwrite grants read");
    assert!(may(b"pa", b"pb", Read));
    assert!(may(b"b", b"a", Read), "an inverted range needs its key");
    // Refused by etcd 3.4.23.
    assert!(!may(b"a", b"d", Read), "[c, d) is covered only at c");
    assert!(!may(b"k", b"", Read));
    assert!(!may(b"a", b"", Write));
    assert!(!may(b"q", b"a", Read));
    assert!(!may(b"z", b"\0", Read));
    // Other users.
    assert!(!store.is_range_permitted("nobody", b"a", b"", Read));
    assert!(
        store.is_range_permitted(ROOT_USER, b"", b"\0", Write),
        "root may do anything"
    );
}

#[test]
fn a_permission_type_that_is_no_type_grants_nothing() {
    let mut store = AuthStore::new();
    add_role(&mut store, "r").unwrap();
    add_user(&mut store, "u", "h").unwrap();
    grant_role(&mut store, "u", "r").unwrap();
    store
        .role_grant_permission(&pb::AuthRoleGrantPermissionRequest {
            name: "r".into(),
            perm: Some(authpb::Permission {
                perm_type: 7,
                key: b"a".to_vec(),
                range_end: vec![],
            }),
        })
        .unwrap();
    assert!(!store.is_range_permitted("u", b"a", b"", PermissionType::Read));
    assert!(!store.is_range_permitted("u", b"a", b"", PermissionType::Write));
    assert_eq!(
        store
            .role_get(&pb::AuthRoleGetRequest { role: "r".into() })
            .unwrap()
            .perm[0]
            .perm_type,
        7
    );
}

#[test]
fn key_checks_need_a_current_token_and_the_permission_while_enabled() {
    use PermissionType::Read;
    let mut store = carols_store();
    let carol = AuthInfo {
        user: "carol".into(),
        revision: store.revision(),
    };
    assert_eq!(store.check_range(Some(&carol), b"a", b"", Read), Ok(()));
    assert_eq!(
        store.check_range(Some(&carol), b"z", b"", Read),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        store.check_range(None, b"a", b"", Read),
        Err(AuthError::UserEmpty)
    );
    let ghost = AuthInfo {
        user: "ghost".into(),
        revision: store.revision(),
    };
    assert_eq!(
        store.check_range(Some(&ghost), b"a", b"", Read),
        Err(AuthError::PermissionDenied)
    );
    add_role(&mut store, "another").unwrap();
    assert_eq!(
        store.check_range(Some(&carol), b"a", b"", Read),
        Err(AuthError::AuthOldRevision)
    );
    disable(&mut store);
    assert_eq!(store.check_range(None, b"z", b"", Read), Ok(()));
}

#[test]
fn admin_checks_need_the_root_role_while_enabled() {
    let mut store = carols_store();
    let who = |user: &str| AuthInfo {
        user: user.into(),
        revision: AuthRevision(1),
    };
    assert_eq!(
        store.check_admin(Some(&who(ROOT_USER))),
        Ok(()),
        "no revision check"
    );
    assert_eq!(
        store.check_admin(Some(&who("carol"))),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        store.check_admin(Some(&who("ghost"))),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(store.check_admin(Some(&who(""))), Err(AuthError::UserEmpty));
    assert_eq!(store.check_admin(None), Err(AuthError::UserEmpty));
    assert!(store.is_admin(ROOT_USER) && !store.is_admin("carol") && !store.is_admin("ghost"));
    assert!(store.has_role("carol", "carol") && !store.has_role("carol", "root"));
    disable(&mut store);
    assert_eq!(store.check_admin(None), Ok(()));
}

#[test]
fn a_snapshot_round_trips_the_whole_store() {
    let mut store = carols_store();
    add_no_password_user(&mut store, "nop").unwrap();
    add_role(&mut store, ROOT_ROLE).unwrap();
    grant_role(&mut store, "nop", "carol").unwrap();
    let state = store.to_proto();
    assert!(state.enabled);
    assert_eq!(state.revision, rev(&store));
    let names: Vec<_> = state.users.iter().map(|u| u.name.as_slice()).collect();
    assert_eq!(names, [&b"carol"[..], b"nop", b"root"]);
    let decoded = AuthState::decode(state.encode_to_vec().as_slice()).unwrap();
    let loaded = AuthStore::from_proto(&decoded).unwrap();
    assert_eq!(loaded, store, "permission caches included");
    assert!(loaded.is_range_permitted("nop", b"a", b"c", PermissionType::Read));
    assert_eq!(
        AuthStore::from_proto(&AuthStore::new().to_proto()),
        Ok(AuthStore::new())
    );
}

#[test]
fn a_snapshot_loads_users_without_options_and_roles_in_any_order() {
    let mut state = carols_store().to_proto();
    state.users.reverse();
    state.roles.reverse();
    for user in &mut state.users {
        user.roles.reverse();
        user.options = None;
    }
    assert_eq!(AuthStore::from_proto(&state), Ok(carols_store()));
}

#[test]
fn a_corrupt_snapshot_is_refused_with_what_is_wrong() {
    let good = carols_store().to_proto();
    let refused = |change: &dyn Fn(&mut AuthState), expected: &str| {
        let mut state = good.clone();
        change(&mut state);
        let error = AuthStore::from_proto(&state).unwrap_err().to_string();
        assert!(error.contains(expected), "{error:?} lacks {expected:?}");
    };
    refused(&|s| s.revision = 0, "revision 0");
    refused(&|s| s.revision = u64::MAX, "out of range");
    refused(
        &|s| s.users.push(s.users[0].clone()),
        "user \"carol\" is listed twice",
    );
    refused(
        &|s| s.roles.push(s.roles[0].clone()),
        "role \"carol\" is listed twice",
    );
    refused(
        &|s| s.users[0].name = vec![0xff],
        "user name \"\\xff\" is not UTF-8",
    );
    refused(&|s| s.roles[0].name = vec![], "a role has an empty name");
    refused(
        &|s| s.users[0].password = vec![0xc3],
        "password hash is not UTF-8",
    );
    refused(
        &|s| s.users[0].roles.push("gone".into()),
        "role \"gone\", which does not exist",
    );
    refused(
        &|s| s.users[0].roles.push("carol".into()),
        "has role \"carol\" twice",
    );
    refused(
        &|s| s.users[0].options = Some(authpb::UserAddOptions { no_password: true }),
        "no password but a password hash",
    );
    refused(
        &|s| s.roles[0].key_permission[0].range_end = b"a".to_vec(),
        "to \"a\" grants no key",
    );
    refused(
        &|s| {
            let perm = s.roles[0].key_permission[0].clone();
            s.roles[0].key_permission.push(perm)
        },
        "is listed twice",
    );
    refused(
        &|s| s.users.retain(|u| u.name != b"root"),
        "root user does not have the root role",
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever bytes a snapshot's auth state holds, loading answers instead of panicking.
    #[test]
    fn loading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(state) = AuthState::decode(bytes.as_slice()) {
            let _ = AuthStore::from_proto(&state);
        }
    }
}

/// The brute-force model of a permission check: every key over the alphabet {0, 1, 2} up to
/// four bytes. Keys in grants and requests have at most three, so every end of a grant or a
/// request (a point's is its key plus "\0") is one of these keys, and so is the first key of any
/// gap: checking them all decides coverage of the whole (infinite) key space exactly.
fn model_keys() -> Vec<Vec<u8>> {
    let mut keys = vec![vec![]];
    let mut all = Vec::new();
    for _ in 0..4 {
        keys = keys
            .iter()
            .flat_map(|k| (0..3u8).map(move |b| [k.as_slice(), &[b]].concat()))
            .collect();
        all.extend(keys.iter().cloned());
    }
    all
}

/// Whether (key, range_end) selects `x`, as a grant (`request == false`) or a request.
fn model_selects(key: &[u8], range_end: &[u8], x: &[u8], request: bool) -> bool {
    if key.is_empty() {
        return false;
    }
    match range_end {
        [] => x == key,
        [0] => x >= key,
        end if end > key => key <= x && x < end,
        _ => request && x == key,
    }
}

fn model_permitted(
    grants: &[(i32, Vec<u8>, Vec<u8>)],
    key: &[u8],
    range_end: &[u8],
    kind: PermissionType,
) -> bool {
    let counts = |t: i32| {
        t == Type::Readwrite as i32
            || t == match kind {
                PermissionType::Read => Type::Read as i32,
                PermissionType::Write => Type::Write as i32,
            }
    };
    !key.is_empty()
        && model_keys()
            .iter()
            .filter(|x| model_selects(key, range_end, x, true))
            .all(|x| {
                grants
                    .iter()
                    .any(|(t, k, e)| counts(*t) && model_selects(k, e, x, false))
            })
}

fn small_key(min_len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..3, min_len..=3)
}

fn small_range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(vec![]), Just(vec![0]), small_key(1)]
}

fn grants() -> impl Strategy<Value = Vec<(i32, Vec<u8>, Vec<u8>)>> {
    proptest::collection::vec((0..3i32, small_key(1), small_range_end()), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Permissions spread over two roles cover a request exactly when every key it selects is
    /// granted by one of them.
    #[test]
    fn range_checks_match_the_brute_force_model(
        first in grants(),
        second in grants(),
        key in small_key(0),
        range_end in small_range_end(),
        write in any::<bool>(),
    ) {
        let mut store = AuthStore::new();
        add_user(&mut store, "u", "h").unwrap();
        let mut valid = Vec::new();
        for (role, grants) in [("r1", &first), ("r2", &second)] {
            add_role(&mut store, role).unwrap();
            grant_role(&mut store, "u", role).unwrap();
            for (t, k, e) in grants {
                let request = pb::AuthRoleGrantPermissionRequest {
                    name: role.into(),
                    perm: Some(authpb::Permission { perm_type: *t, key: k.clone(), range_end: e.clone() }),
                };
                if store.role_grant_permission(&request).is_ok() {
                    // A regrant replaces the type of the same (key, range end) in this role.
                    valid.retain(|(r, _, gk, ge): &(&str, i32, Vec<u8>, Vec<u8>)| !(*r == role && gk == k && ge == e));
                    valid.push((role, *t, k.clone(), e.clone()));
                }
            }
        }
        let granted: Vec<_> = valid.into_iter().map(|(_, t, k, e)| (t, k, e)).collect();
        let kind = if write { PermissionType::Write } else { PermissionType::Read };
        prop_assert_eq!(
            store.is_range_permitted("u", &key, &range_end, kind),
            model_permitted(&granted, &key, &range_end, kind)
        );
    }
}
