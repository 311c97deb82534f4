//! The auth store in a snapshot: [`AuthState`] holds all of it, users and roles sorted by name.
//! Loading checks everything the store's changes guarantee, and refuses what breaks it with the
//! name of the user or role involved.

use std::collections::{BTreeMap, BTreeSet};

use super::ranges::Interval;
use super::{AuthStore, CorruptAuthState, Permissions, Role, User, ROOT_ROLE, ROOT_USER};
use crate::proto::authpb;
use crate::proto::stetpb::AuthState;
use crate::types::AuthRevision;

impl AuthStore {
    /// The whole store, for a snapshot.
    pub fn to_proto(&self) -> AuthState {
        AuthState {
            enabled: self.enabled,
            revision: self.revision.0,
            users: self
                .users
                .iter()
                .map(|(name, user)| user.to_proto(name))
                .collect(),
            roles: self
                .roles
                .iter()
                .map(|(name, role)| authpb::Role {
                    name: name.as_bytes().to_vec(),
                    key_permission: role.to_proto(),
                })
                .collect(),
        }
    }

    /// The store a snapshot holds. Refuses a revision of 0 or `u64::MAX`, empty, non-UTF-8 or
    /// repeated names, permissions that grant no key or repeat a key and range end, a role
    /// granted twice or never added (but `root`), a no-password user with a password hash, and
    /// authentication enabled without the root user having the root role.
    pub fn from_proto(state: &AuthState) -> Result<AuthStore, CorruptAuthState> {
        if state.revision == 0 || state.revision == u64::MAX {
            return Err(corrupt(format!(
                "revision {} is out of range",
                state.revision
            )));
        }
        let roles = load_roles(&state.roles)?;
        let users = load_users(&state.users, &roles)?;
        let mut store = AuthStore {
            enabled: state.enabled,
            revision: AuthRevision(state.revision),
            users,
            roles,
            granted: BTreeMap::new(),
        };
        if store.enabled && !store.is_admin(ROOT_USER) {
            return Err(corrupt(
                "authentication is enabled but the root user does not have the root role".into(),
            ));
        }
        store.refresh_granted();
        Ok(store)
    }
}

impl User {
    fn to_proto(&self, name: &str) -> authpb::User {
        authpb::User {
            name: name.as_bytes().to_vec(),
            password: self.password_hash.as_bytes().to_vec(),
            roles: self.roles.iter().cloned().collect(),
            options: Some(authpb::UserAddOptions {
                no_password: self.no_password,
            }),
        }
    }
}

fn corrupt(message: String) -> CorruptAuthState {
    CorruptAuthState(message)
}

/// A user or role name: UTF-8 and not empty.
fn load_name(what: &str, name: &[u8]) -> Result<String, CorruptAuthState> {
    let name = String::from_utf8(name.to_vec()).map_err(|_| {
        corrupt(format!(
            "{what} name \"{}\" is not UTF-8",
            name.escape_ascii()
        ))
    })?;
    if name.is_empty() {
        return Err(corrupt(format!("a {what} has an empty name")));
    }
    Ok(name)
}

fn load_roles(roles: &[authpb::Role]) -> Result<BTreeMap<String, Role>, CorruptAuthState> {
    let mut loaded = BTreeMap::new();
    for role in roles {
        let name = load_name("role", &role.name)?;
        let permissions = load_permissions(&name, &role.key_permission)?;
        if loaded.insert(name.clone(), Role { permissions }).is_some() {
            return Err(corrupt(format!("role {name:?} is listed twice")));
        }
    }
    Ok(loaded)
}

fn load_permissions(
    role: &str,
    permissions: &[authpb::Permission],
) -> Result<Permissions, CorruptAuthState> {
    let mut loaded = BTreeMap::new();
    for perm in permissions {
        let described = || {
            format!(
                "role {role:?}: permission on key \"{}\" to \"{}\"",
                perm.key.escape_ascii(),
                perm.range_end.escape_ascii()
            )
        };
        if Interval::granted(&perm.key, &perm.range_end).is_none() {
            return Err(corrupt(format!("{} grants no key", described())));
        }
        let range = (perm.key.clone(), perm.range_end.clone());
        if loaded.insert(range, perm.perm_type).is_some() {
            return Err(corrupt(format!("{} is listed twice", described())));
        }
    }
    Ok(loaded)
}

fn load_users(
    users: &[authpb::User],
    roles: &BTreeMap<String, Role>,
) -> Result<BTreeMap<String, User>, CorruptAuthState> {
    let mut loaded = BTreeMap::new();
    for user in users {
        let name = load_name("user", &user.name)?;
        let loaded_user = load_user(&name, user, roles)?;
        if loaded.insert(name.clone(), loaded_user).is_some() {
            return Err(corrupt(format!("user {name:?} is listed twice")));
        }
    }
    Ok(loaded)
}

fn load_user(
    name: &str,
    user: &authpb::User,
    roles: &BTreeMap<String, Role>,
) -> Result<User, CorruptAuthState> {
    let password_hash = String::from_utf8(user.password.clone())
        .map_err(|_| corrupt(format!("user {name:?}: password hash is not UTF-8")))?;
    let no_password = user.options.as_ref().is_some_and(|o| o.no_password);
    if no_password && !password_hash.is_empty() {
        return Err(corrupt(format!(
            "user {name:?} has no password but a password hash"
        )));
    }
    let mut granted = BTreeSet::new();
    for role in &user.roles {
        if role != ROOT_ROLE && !roles.contains_key(role) {
            return Err(corrupt(format!(
                "user {name:?} has role {role:?}, which does not exist"
            )));
        }
        if !granted.insert(role.clone()) {
            return Err(corrupt(format!("user {name:?} has role {role:?} twice")));
        }
    }
    Ok(User {
        password_hash,
        roles: granted,
        no_password,
    })
}
