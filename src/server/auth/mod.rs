//! The member runtime's side of etcd's auth: who a request comes from (a token from the gRPC
//! metadata, or the common name of a verified client certificate), login tokens (simple ones
//! kept per member from applied logins, or signed JWTs), and bcrypt password hashes. The auth
//! store itself (users, roles, permissions, its revision) is replicated state in the core
//! (`crate::auth`); the driver publishes each new version of it here ([`AuthGate::publish`])
//! and hands over what applied entries did to tokens ([`AuthGate::on_tokens`]).
//!
//! Code map: `settings.rs` checks the flags; `tokens.rs` is the simple token table; `jwt.rs`
//! signs and checks JWTs; `password.rs` hashes and verifies passwords off the async threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::auth::{AuthError, AuthInfo, AuthStore, TokenChange};
use crate::proto::etcdserverpb as pb;

pub mod jwt;
pub mod password;
pub mod settings;
pub mod tokens;

pub use settings::{AuthSettings, TokenSettings};
use tokens::SimpleTokens;

/// The gRPC metadata key etcd's clients send their token under (and the grpc-gateway's).
pub const TOKEN_METADATA_KEYS: [&str; 2] = ["token", "authorization"];

/// A verified client certificate's common name, put in each request's extensions by the
/// client listener when `--client-cert-auth` verified the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertUser(pub String);

/// What the runtime knows of auth: the latest applied store, tokens, how to hash.
pub struct AuthGate {
    settings: AuthSettings,
    store: RwLock<Arc<AuthStore>>,
    simple: Mutex<SimpleTokens>,
    /// Simple tokens' random part and password salts (seeded from the environment's secret
    /// seed: the OS's randomness in production, the seed in the simulator).
    random: Mutex<ChaCha20Rng>,
    /// Makes every simple token this member issues distinct (etcd appends the entry's index).
    next_token: AtomicU64,
    /// FOR THE SIMULATOR'S SELF-TEST ONLY (`Mistake::TokensNameLastLogin`): every simple token
    /// names the user who logged in last on this member.
    last_login: Option<Mutex<String>>,
}

impl AuthGate {
    /// `plant_last_login`: the simulator's self-test mistake (see `last_login`); false otherwise.
    pub fn new(
        settings: AuthSettings,
        secret_seed: [u8; 32],
        plant_last_login: bool,
    ) -> Arc<AuthGate> {
        let ttl = match &settings.tokens {
            TokenSettings::Simple { ttl } => *ttl,
            TokenSettings::Jwt(_) => std::time::Duration::from_secs(300),
        };
        Arc::new(AuthGate {
            settings,
            store: RwLock::new(Arc::new(AuthStore::new())),
            simple: Mutex::new(SimpleTokens::new(ttl)),
            random: Mutex::new(ChaCha20Rng::from_seed(secret_seed)),
            next_token: AtomicU64::new(1),
            last_login: plant_last_login.then(|| Mutex::new(String::new())),
        })
    }

    /// The latest applied auth store this member published.
    pub fn store(&self) -> Arc<AuthStore> {
        self.store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Takes `store` as the latest applied one, if it differs in revision or enabled flag (the
    /// only changes that leave both alone are none: every change moves the revision).
    pub fn publish(&self, store: &AuthStore) {
        // Called every driver turn: the write lock only when something changed.
        let changed = |current: &AuthStore| {
            current.revision() != store.revision() || current.is_enabled() != store.is_enabled()
        };
        if !changed(&self.store()) {
            return;
        }
        let mut current = self
            .store
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if changed(&current) {
            *current = Arc::new(store.clone());
        }
    }

    /// Does what an applied entry did to tokens.
    pub fn on_tokens(&self, change: TokenChange) {
        let mut simple = self.simple_tokens();
        match change {
            TokenChange::Issued { token, auth } => {
                if let Some(last) = &self.last_login {
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = auth.user.clone();
                }
                simple.issue(token, auth.user, tokio::time::Instant::now())
            }
            TokenChange::ForgetUser(user) => simple.forget_user(&user),
            TokenChange::ForgetAll => simple.clear(),
        }
    }

    /// Who a request comes from: its token's user (a token that is unknown, expired or badly
    /// signed is `InvalidAuthToken`), else a verified client certificate's common name while
    /// authentication is enabled, else nobody. A simple token's revision is the store's now
    /// (as etcd's), a JWT's the one it was issued at.
    pub fn caller(
        &self,
        token: Option<&str>,
        cert_user: Option<&ClientCertUser>,
    ) -> Result<Option<AuthInfo>, AuthError> {
        if let Some(token) = token {
            return match &self.settings.tokens {
                TokenSettings::Jwt(keys) => keys.check(token).map(Some),
                TokenSettings::Simple { .. } => {
                    let now = tokio::time::Instant::now();
                    let mut user = self.simple_tokens().resolve(token, now);
                    if let (Some(last), Some(user)) = (&self.last_login, user.as_mut()) {
                        user.clone_from(&last.lock().unwrap_or_else(|p| p.into_inner()));
                    }
                    user.map(|user| {
                        Some(AuthInfo {
                            user,
                            revision: self.store().revision(),
                        })
                    })
                }
            }
            .ok_or(AuthError::InvalidAuthToken);
        }
        let Some(cert) = cert_user else {
            return Ok(None);
        };
        let store = self.store();
        Ok(store.is_enabled().then(|| AuthInfo {
            user: cert.0.clone(),
            revision: store.revision(),
        }))
    }

    /// AuthStatus's answer (without its header).
    pub fn status(&self) -> pb::AuthStatusResponse {
        self.store().status()
    }

    /// A new password's hash, made off the async threads.
    pub async fn hash_password(&self, password: String) -> Result<String, String> {
        let salt: [u8; 16] = self.random().gen();
        password::hash(password, self.settings.bcrypt_cost, salt).await
    }

    /// Checks `name`'s password against the published store off the async threads; the store's
    /// revision it holds at.
    pub async fn check_password(
        &self,
        name: &str,
        password: String,
    ) -> Result<crate::types::AuthRevision, AuthError> {
        let store = self.store();
        let (hash, revision) = store.password_hash(name)?;
        if password::verify(password, hash.to_owned()).await {
            Ok(revision)
        } else {
            Err(AuthError::AuthFailed)
        }
    }

    /// The simple token a login will carry through raft: 16 random letters, a dot and a number
    /// (etcd's shape); empty with JWTs, which are signed once the login is applied.
    pub fn new_simple_token(&self) -> String {
        if let TokenSettings::Jwt(_) = self.settings.tokens {
            return String::new();
        }
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut random = self.random();
        let prefix: String = (0..16)
            .map(|_| LETTERS[random.gen_range(0..LETTERS.len())] as char)
            .collect();
        let number = self.next_token.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}.{number}")
    }

    /// The token an applied login answers: the simple token it carried, or a JWT for `auth`.
    pub fn token_for(&self, auth: &AuthInfo, simple_token: String) -> Result<String, String> {
        match &self.settings.tokens {
            TokenSettings::Simple { .. } => Ok(simple_token),
            TokenSettings::Jwt(keys) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs());
                keys.sign(auth, now)
            }
        }
    }

    fn simple_tokens(&self) -> std::sync::MutexGuard<'_, SimpleTokens> {
        self.simple
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn random(&self) -> std::sync::MutexGuard<'_, ChaCha20Rng> {
        self.random
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests;
