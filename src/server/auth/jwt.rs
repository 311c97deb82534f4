//! `--auth-token jwt`: tokens signed with the flags' key, carrying the user and the auth revision
//! they were issued at (etcd's claims: `username`, `revision`, `exp`), so any member checks them
//! without a table, and a token issued before an auth change is refused as stale.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::auth::AuthInfo;
use crate::types::AuthRevision;

/// etcd's default lifetime of a JWT.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// The signing and checking keys of `--auth-token jwt,...`.
pub struct JwtKeys {
    algorithm: Algorithm,
    /// Absent without `priv-key`: this member checks tokens but issues none.
    signing: Option<EncodingKey>,
    checking: DecodingKey,
    ttl: Duration,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

impl JwtKeys {
    /// Reads etcd's options: `sign-method` (RS256/384/512, PS256/384/512, ES256/384, HS256/384/512),
    /// `pub-key` and `priv-key` (PEM files; for HS*, `priv-key` holds the shared secret) and `ttl`
    /// (a Go duration, default 5m).
    pub fn from_options(options: &[&str]) -> Result<JwtKeys, String> {
        let mut method = None;
        let (mut public, mut private, mut ttl) = (None, None, DEFAULT_TTL);
        for option in options {
            let (name, value) = option
                .split_once('=')
                .ok_or_else(|| format!("--auth-token jwt option {option:?} is not name=value"))?;
            match name {
                "sign-method" => method = Some(value),
                "pub-key" => public = Some(read_key(value)?),
                "priv-key" => private = Some(read_key(value)?),
                "ttl" => ttl = crate::server::go_duration::parse(value)?,
                _ => return Err(format!("--auth-token jwt has no option {name:?}")),
            }
        }
        let method = method.ok_or("--auth-token jwt needs sign-method=")?;
        let algorithm: Algorithm = method
            .parse()
            .map_err(|_| format!("--auth-token jwt sign-method {method:?} is unknown"))?;
        let (signing, checking) = keys(algorithm, public.as_deref(), private.as_deref())?;
        Ok(JwtKeys {
            algorithm,
            signing,
            checking,
            ttl,
        })
    }

    /// For logs: the method and whether this member can sign.
    pub fn describe(&self) -> String {
        let signs = if self.signing.is_some() {
            "signs"
        } else {
            "checks only"
        };
        format!("{:?}, {signs}, ttl {:?}", self.algorithm, self.ttl)
    }

    /// A token for `auth`, valid `ttl` from `now_unix_seconds`.
    pub fn sign(&self, auth: &AuthInfo, now_unix_seconds: u64) -> Result<String, String> {
        let key = self
            .signing
            .as_ref()
            .ok_or("this member has no priv-key to sign tokens with")?;
        let claims = Claims {
            username: auth.user.clone(),
            revision: auth.revision.0,
            exp: now_unix_seconds + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|error| error.to_string())
    }

    /// Who a token is for, if it is signed by the key, for this method, and not expired.
    pub fn check(&self, token: &str) -> Option<AuthInfo> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.checking, &validation).ok()?;
        Some(AuthInfo {
            user: data.claims.username,
            revision: AuthRevision(data.claims.revision),
        })
    }
}

fn read_key(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("--auth-token jwt key file {path}: {error}"))
}

/// The keys for `algorithm` from the PEM files (or, for HMAC, the secret in `priv-key`).
fn keys(
    algorithm: Algorithm,
    public: Option<&[u8]>,
    private: Option<&[u8]>,
) -> Result<(Option<EncodingKey>, DecodingKey), String> {
    use Algorithm::*;
    let bad = |which: &str, error: jsonwebtoken::errors::Error| {
        format!("--auth-token jwt {which} does not hold a {algorithm:?} key: {error}")
    };
    match algorithm {
        HS256 | HS384 | HS512 => {
            let secret = private.ok_or("--auth-token jwt with HS* needs priv-key= (the secret)")?;
            Ok((
                Some(EncodingKey::from_secret(secret)),
                DecodingKey::from_secret(secret),
            ))
        }
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384 => {
            let public = public.ok_or("--auth-token jwt needs pub-key=")?;
            let ec = matches!(algorithm, ES256 | ES384);
            let checking = if ec {
                DecodingKey::from_ec_pem(public)
            } else {
                DecodingKey::from_rsa_pem(public)
            }
            .map_err(|e| bad("pub-key", e))?;
            let signing = private
                .map(|private| {
                    if ec {
                        EncodingKey::from_ec_pem(private)
                    } else {
                        EncodingKey::from_rsa_pem(private)
                    }
                    .map_err(|e| bad("priv-key", e))
                })
                .transpose()?;
            Ok((signing, checking))
        }
        EdDSA => Err("--auth-token jwt sign-method EdDSA is not supported".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac() -> JwtKeys {
        let dir = std::env::temp_dir().join(format!("stet-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, b"a shared secret of some length").unwrap();
        let option = format!("priv-key={}", secret.display());
        let keys = JwtKeys::from_options(&["sign-method=HS256", &option, "ttl=10m"]).unwrap();
        // The key is read; nothing is left in the temporary directory.
        std::fs::remove_dir_all(&dir).unwrap();
        keys
    }

    #[test]
    fn a_signed_token_names_its_user_and_revision_until_it_expires() {
        let keys = hmac();
        let auth = AuthInfo {
            user: "alice".into(),
            revision: AuthRevision(7),
        };
        let now = jsonwebtoken::get_current_timestamp();
        let token = keys.sign(&auth, now).unwrap();
        assert_eq!(keys.check(&token), Some(auth.clone()));
        let expired = keys.sign(&auth, now - 3600).unwrap();
        assert_eq!(keys.check(&expired), None);
        let mut forged = token.clone();
        forged.push('x');
        assert_eq!(keys.check(&forged), None);
    }

    #[test]
    fn options_are_checked() {
        assert!(JwtKeys::from_options(&["sign-method=RS256"]).is_err());
        assert!(JwtKeys::from_options(&["sign-method=XX1"]).is_err());
        assert!(JwtKeys::from_options(&["bogus"]).is_err());
    }
}
