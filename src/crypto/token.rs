//! Opaque secrets (tokens, codes, client secrets, session ids): 256 random bits from the OS-seeded
//! CSPRNG, base64url-encoded behind a readable prefix; only the SHA-256 digest is ever stored.
//!
//! A slow hash would add nothing to a 256-bit random value and would cap token throughput, so
//! a digest compared in constant time is the right tool (DESIGN.md, "Secrets are stored as
//! digests").

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

// NEVER CHANGE THE PREFIX OF EXISTING SECRETS: secret scanners and operators rely on them, and
// a value issued today must still be recognised after an upgrade.
/// Opaque access token.
pub const ACCESS_TOKEN_PREFIX: &str = "tsa_";
/// Refresh token.
pub const REFRESH_TOKEN_PREFIX: &str = "tsr_";
/// Authorization code.
pub const CODE_PREFIX: &str = "tsc_";
/// Generated client secret.
pub const CLIENT_SECRET_PREFIX: &str = "tss_";
/// Browser session cookie value.
pub const SESSION_PREFIX: &str = "tsn_";

/// A freshly generated or presented secret. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainSecret(String);

impl PlainSecret {
    /// 256 random bits behind `prefix`.
    pub fn generate(prefix: &str) -> PlainSecret {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        PlainSecret(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a value received from outside (a presented token, an operator's secret).
    pub fn new(value: impl Into<String>) -> PlainSecret {
        PlainSecret(value.into())
    }

    /// The value, to hand to its owner exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> Digest {
        Digest::of(&self.0)
    }
}

impl fmt::Debug for PlainSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainSecret(..)")
    }
}

/// SHA-256 of a secret: what the store keeps and looks up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(secret: &str) -> Digest {
        Digest(Sha256::digest(secret.as_bytes()).into())
    }

    /// From the bytes a store returned; `None` if the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        bytes.try_into().ok().map(Digest)
    }

    /// Constant-time comparison, so response timing says nothing about how much matched.
    pub fn verify(&self, presented: &str) -> bool {
        self.0.ct_eq(&Digest::of(presented).0).into()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lowercase hex, as SQL's `decode(…, 'hex')` and `unhex` read it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits are enough to tell records apart in a log and reveal nothing useful.
        write!(
            f,
            "Digest({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_has_prefix_and_256_bits() {
        let s = PlainSecret::generate(ACCESS_TOKEN_PREFIX);
        let body = s.expose().strip_prefix("tsa_").unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_ne!(s, PlainSecret::generate(ACCESS_TOKEN_PREFIX));
    }

    #[test]
    fn digest_verifies_only_the_same_secret() {
        let s = PlainSecret::generate(CLIENT_SECRET_PREFIX);
        let d = s.digest();
        assert!(d.verify(s.expose()));
        assert!(!d.verify("tss_other"));
        assert_eq!(Digest::from_slice(d.as_bytes()), Some(d));
        assert_eq!(Digest::from_slice(&[1, 2, 3]), None);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = PlainSecret::generate(REFRESH_TOKEN_PREFIX);
        assert_eq!(format!("{s:?}"), "PlainSecret(..)");
    }
}
