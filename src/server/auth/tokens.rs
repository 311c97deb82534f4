//! `--auth-token simple`: the table of simple tokens this member honours. Every member fills it
//! from the applied logins (the token is in the raft entry), so any member accepts a token any
//! member issued. A token lives `ttl` after its last use; deleting a user or changing its
//! password ends its tokens, disabling authentication ends all (etcd's `tokenSimple`).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// The most tokens kept: past it, expired ones go first, then the ones closest to expiring.
pub const MAX_SIMPLE_TOKENS: usize = 1 << 20;

/// Simple tokens → their user.
#[derive(Debug)]
pub struct SimpleTokens {
    ttl: Duration,
    tokens: HashMap<String, Session>,
}

#[derive(Debug)]
struct Session {
    user: String,
    expires_at: Instant,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl,
            tokens: HashMap::new(),
        }
    }

    /// Keeps `token` for `user` (an applied login).
    pub fn issue(&mut self, token: String, user: String, now: Instant) {
        if self.tokens.len() >= MAX_SIMPLE_TOKENS && !self.tokens.contains_key(&token) {
            self.make_room(now);
        }
        let expires_at = now + self.ttl;
        self.tokens.insert(token, Session { user, expires_at });
        assert!(
            self.tokens.len() <= MAX_SIMPLE_TOKENS,
            "the token table is bounded"
        );
    }

    /// The user of a live token, whose life restarts (a use extends it, as etcd's does).
    pub fn resolve(&mut self, token: &str, now: Instant) -> Option<String> {
        let session = self.tokens.get_mut(token)?;
        if session.expires_at <= now {
            self.tokens.remove(token);
            return None;
        }
        session.expires_at = now + self.ttl;
        Some(session.user.clone())
    }

    /// Ends every token of `user`.
    pub fn forget_user(&mut self, user: &str) {
        self.tokens.retain(|_, session| session.user != user);
    }

    /// Ends every token.
    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn make_room(&mut self, now: Instant) {
        self.tokens.retain(|_, session| session.expires_at > now);
        if self.tokens.len() < MAX_SIMPLE_TOKENS {
            return;
        }
        let soonest = self
            .tokens
            .iter()
            .min_by_key(|(_, session)| session.expires_at)
            .map(|(token, _)| token.clone());
        if let Some(token) = soonest {
            self.tokens.remove(&token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_lives_ttl_after_its_last_use() {
        let start = Instant::now();
        let mut tokens = SimpleTokens::new(Duration::from_secs(10));
        tokens.issue("t.1".into(), "alice".into(), start);
        let later = start + Duration::from_secs(8);
        assert_eq!(tokens.resolve("t.1", later), Some("alice".into()));
        let still = later + Duration::from_secs(8);
        assert_eq!(
            tokens.resolve("t.1", still),
            Some("alice".into()),
            "the use extended it"
        );
        assert_eq!(tokens.resolve("t.1", still + Duration::from_secs(10)), None);
        assert!(tokens.is_empty(), "an expired token is dropped");
        assert_eq!(tokens.resolve("never", start), None);
    }

    #[test]
    fn forgetting_a_user_ends_only_its_tokens() {
        let now = Instant::now();
        let mut tokens = SimpleTokens::new(Duration::from_secs(10));
        tokens.issue("a.1".into(), "alice".into(), now);
        tokens.issue("a.2".into(), "alice".into(), now);
        tokens.issue("b.3".into(), "bob".into(), now);
        tokens.forget_user("alice");
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens.resolve("b.3", now), Some("bob".into()));
        tokens.clear();
        assert!(tokens.is_empty());
    }
}
