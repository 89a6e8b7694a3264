//! Tokens and session cookies: random secrets, stored as digests.
//!
//! A credential reads `sf_<id>_<secret>`: `id` is 8 random bytes that find
//! the row, `secret` 32 random bytes from the operating system. The store
//! keeps `id` and SHA-256(`secret`). A plain hash is the right tool here (a
//! slow password hash would only slow every request): the secret has 256
//! bits of entropy, so there is nothing to guess. The digest of a presented
//! secret is compared in constant time, so response timing says nothing of
//! how close a guess came.

use rand::TryRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::StoreError;

/// Random bytes in a credential's id.
pub const ID_BYTES: usize = 8;
/// Random bytes in a credential's secret.
pub const SECRET_BYTES: usize = 32;

/// A credential freshly made: what to hand out once, and what to store.
#[derive(Debug, Clone)]
pub struct Minted {
    /// `sf_<id>_<secret>`: shown once, never stored.
    pub token: String,
    /// The lookup id.
    pub id: String,
    /// SHA-256 of the secret.
    pub hash: Vec<u8>,
}

/// `n` random bytes from the operating system, as lowercase hex.
pub fn random_hex(n: usize) -> Result<String, StoreError> {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

/// Makes a new credential.
pub fn mint() -> Result<Minted, StoreError> {
    let id = random_hex(ID_BYTES)?;
    let secret = random_hex(SECRET_BYTES)?;
    Ok(Minted {
        token: format!("sf_{id}_{secret}"),
        hash: digest(&secret),
        id,
    })
}

/// Splits a presented credential into `(id, secret)`; `None` when it is not
/// of the form statflow hands out.
pub fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.trim().strip_prefix("sf_")?;
    let (id, secret) = rest.split_once('_')?;
    let hexish = |s: &str, n: usize| s.len() == 2 * n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexish(id, ID_BYTES) && hexish(secret, SECRET_BYTES)).then_some((id, secret))
}

/// SHA-256 of a secret.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// True when `secret` hashes to `stored`, compared in constant time.
pub fn matches(secret: &str, stored: &[u8]) -> bool {
    digest(secret).ct_eq(stored).into()
}

/// True when two strings are equal, compared in constant time (CSRF tokens).
pub fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_splits_and_matches_its_hash() {
        let m = mint().unwrap();
        let (id, secret) = split(&m.token).unwrap();
        assert_eq!(id, m.id);
        assert!(matches(secret, &m.hash));
        assert!(!matches(
            &secret.replace('a', "b").replace('0', "1"),
            &m.hash
        ));
        assert_ne!(mint().unwrap().token, m.token);
    }

    #[test]
    fn malformed_tokens_do_not_split() {
        for bad in ["", "sf_", "sf_zz_zz", "token", "sf_0011223344556677_short"] {
            assert!(split(bad).is_none(), "{bad}");
        }
    }
}
