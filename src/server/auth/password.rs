//! Password hashes as etcd makes them: bcrypt (`$2a$`, the cost of `--bcrypt-cost`), computed
//! and checked where blocking is allowed (bcrypt is slow on purpose), never logged. The salt
//! comes from the caller's random source, so the simulator's hashes are deterministic.

/// The hash of `password` with `salt` at `cost`.
pub async fn hash(password: String, cost: u32, salt: [u8; 16]) -> Result<String, String> {
    let hashed = crate::server::blocking::run(move || {
        bcrypt::hash_with_salt(password.as_bytes(), cost, salt)
            .map(|parts| parts.format_for_version(bcrypt::Version::TwoA))
            .map_err(|error| error.to_string())
    })
    .await?;
    hashed.map_err(|error| format!("hashing the password failed: {error}"))
}

/// Whether `password` matches `hash` (a hash that does not parse matches nothing).
pub async fn verify(password: String, hash: String) -> bool {
    let verified = crate::server::blocking::run(move || {
        bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
    })
    .await;
    verified.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hashed = hash("secret".into(), 4, [7; 16]).await.unwrap();
        assert!(hashed.starts_with("$2a$04$"), "{hashed}");
        assert!(verify("secret".into(), hashed.clone()).await);
        assert!(!verify("Secret".into(), hashed).await);
        assert!(!verify("secret".into(), "not a hash".into()).await);
    }
}
