//! etcd's auth flags: `--auth-token` (`simple`, or `jwt` with its key options), `--auth-token-ttl`
//! and `--bcrypt-cost`, checked into [`AuthSettings`] at start (bad values and unreadable key
//! files are refused naming the flag).

use std::sync::Arc;
use std::time::Duration;

use super::jwt::JwtKeys;

/// How login tokens are made and checked, and how passwords are hashed.
#[derive(Clone)]
pub struct AuthSettings {
    pub tokens: TokenSettings,
    /// bcrypt's cost for new password hashes.
    pub bcrypt_cost: u32,
}

/// The token provider `--auth-token` names.
#[derive(Clone)]
pub enum TokenSettings {
    /// Random tokens every member keeps, each living `ttl` after its last use.
    Simple { ttl: Duration },
    /// Signed tokens carrying the user and auth revision, checked by any member.
    Jwt(Arc<JwtKeys>),
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tokens = match &self.tokens {
            TokenSettings::Simple { ttl } => format!("simple (ttl {ttl:?})"),
            TokenSettings::Jwt(keys) => format!("jwt ({})", keys.describe()),
        };
        f.debug_struct("AuthSettings")
            .field("tokens", &tokens)
            .field("bcrypt_cost", &self.bcrypt_cost)
            .finish()
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            tokens: TokenSettings::Simple {
                ttl: Duration::from_secs(300),
            },
            bcrypt_cost: DEFAULT_BCRYPT_COST,
        }
    }
}

/// etcd's (Go's bcrypt.DefaultCost).
pub const DEFAULT_BCRYPT_COST: u32 = 10;
/// bcrypt's bounds (Go's MinCost and MaxCost).
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// Checks the flags: `auth_token` is `simple` or `jwt,pub-key=…,priv-key=…,sign-method=…[,ttl=…]`.
pub fn parse(auth_token: &str, ttl_seconds: u64, bcrypt_cost: u32) -> Result<AuthSettings, String> {
    if !BCRYPT_COSTS.contains(&bcrypt_cost) {
        return Err(format!(
            "--bcrypt-cost {bcrypt_cost} is out of bcrypt's range {}..={}",
            BCRYPT_COSTS.start(),
            BCRYPT_COSTS.end()
        ));
    }
    let mut parts = auth_token.split(',');
    let kind = parts.next().unwrap_or_default();
    let options: Vec<&str> = parts.collect();
    let tokens = match kind {
        "simple" if options.is_empty() => {
            if ttl_seconds == 0 {
                return Err("--auth-token-ttl must be at least 1 second".to_string());
            }
            TokenSettings::Simple {
                ttl: Duration::from_secs(ttl_seconds),
            }
        }
        "simple" => return Err("--auth-token simple takes no options".to_string()),
        "jwt" => TokenSettings::Jwt(Arc::new(JwtKeys::from_options(&options)?)),
        other => {
            return Err(format!(
                "--auth-token {other:?} is not a token provider (simple or jwt)"
            ))
        }
    };
    Ok(AuthSettings {
        tokens,
        bcrypt_cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_take_the_ttl_flag() {
        let settings = parse("simple", 2, 4).unwrap();
        assert!(matches!(
            settings.tokens,
            TokenSettings::Simple { ttl } if ttl == Duration::from_secs(2)
        ));
        assert_eq!(settings.bcrypt_cost, 4);
    }

    #[test]
    fn bad_flags_are_refused_naming_them() {
        assert!(parse("simple", 300, 3)
            .unwrap_err()
            .contains("--bcrypt-cost"));
        assert!(parse("simple", 300, 32)
            .unwrap_err()
            .contains("--bcrypt-cost"));
        assert!(parse("oauth", 300, 10)
            .unwrap_err()
            .contains("--auth-token"));
        assert!(parse("simple,x=y", 300, 10).is_err());
        assert!(parse("simple", 0, 10)
            .unwrap_err()
            .contains("--auth-token-ttl"));
        let missing = parse("jwt,sign-method=RS256,pub-key=/nonexistent.pem", 300, 10);
        assert!(missing.unwrap_err().contains("/nonexistent.pem"));
    }
}
