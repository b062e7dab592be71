//! Keyed digests (HMAC-SHA-256) for values that must not be computable without a server
//! secret: CSRF tokens, and the audit trail's stand-in for a username nobody has.
//!
//! The key is derived from the key-encryption key, one subkey per purpose, so no new secret
//! needs configuring or backing up, and every instance sharing a store (which must share the
//! KEK) computes the same tags.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::kek::Kek;

type HmacSha256 = Hmac<Sha256>;

/// What a tag is for; each purpose has its own subkey, so a tag for one is useless for another.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    Csrf,
    AuditUsername,
    LoginThrottle,
    DeviceCookie,
    /// The audit chain's head and checkpoints (decision 0023).
    AuditChain,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Csrf => b"tessera/csrf/v1",
            Purpose::AuditUsername => b"tessera/audit-username/v1",
            Purpose::LoginThrottle => b"tessera/login-throttle/v1",
            Purpose::DeviceCookie => b"tessera/device-cookie/v1",
            Purpose::AuditChain => b"tessera/audit-chain/v1",
        }
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    #[allow(clippy::expect_used)]
    // RFC 2104 §2: HMAC takes a key of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA-256 of `message` under the subkey for `purpose`.
pub fn tag(kek: &Kek, purpose: Purpose, message: &[u8]) -> [u8; 32] {
    let subkey = hmac(&kek.0, purpose.label());
    hmac(&subkey, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_depend_on_key_purpose_and_message() {
        let a = Kek([1u8; 32]);
        let b = Kek([2u8; 32]);
        let t = tag(&a, Purpose::Csrf, b"m");
        assert_eq!(t, tag(&a, Purpose::Csrf, b"m"));
        assert_ne!(t, tag(&b, Purpose::Csrf, b"m"));
        assert_ne!(t, tag(&a, Purpose::AuditUsername, b"m"));
        assert_ne!(t, tag(&a, Purpose::Csrf, b"n"));
    }

    #[test]
    fn hmac_matches_rfc4231_test_case_2() {
        let out = hmac(b"Jefe", b"what do ya want for nothing?");
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
