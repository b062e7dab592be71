//! PKCE, RFC 7636, S256 only (RFC 9700 §2.1.1: `plain` is refused). oxide-auth's `Pkce`
//! does the encoding and the constant-time check (see shared/docs/oxide-auth.md).

use oxide_auth::code_grant::extensions::Pkce;
use oxide_auth::primitives::grant::Value;

use super::error::OAuthError;

/// Length of base64url(SHA-256(verifier)) without padding.
const S256_CHALLENGE_LEN: usize = 43;

/// RFC 7636 §4.1: code-verifier = 43*128unreserved.
fn is_well_formed_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// At `/authorize`: `Ok(None)` when no challenge was sent; otherwise the opaque value to keep
/// on the code row. A method without a challenge, `plain`, a missing method (which RFC 7636
/// §4.3 defines as `plain`) or a malformed challenge is `invalid_request`.
pub fn challenge(
    method: Option<&str>,
    challenge: Option<&str>,
) -> Result<Option<String>, OAuthError> {
    let Some(challenge) = challenge else {
        if method.is_some() {
            return Err(OAuthError::invalid_request(
                "code_challenge_method was sent without code_challenge",
            ));
        }
        return Ok(None);
    };
    if method != Some("S256") {
        return Err(OAuthError::invalid_request(
            "code_challenge_method must be S256",
        ));
    }
    let well_formed = challenge.len() == S256_CHALLENGE_LEN
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(OAuthError::invalid_request(
            "code_challenge must be the base64url SHA-256 of the code_verifier (43 characters)",
        ));
    }
    match Pkce::required().challenge(
        Some(method.unwrap_or("S256").into()),
        Some(challenge.into()),
    ) {
        Ok(Some(value)) => value
            .into_private_value()
            .ok()
            .flatten()
            .map(Some)
            .ok_or_else(|| OAuthError::server(anyhow::anyhow!("PKCE challenge encoding"))),
        _ => Err(OAuthError::invalid_request(
            "code_challenge_method must be S256",
        )),
    }
}

/// The value a code row holds for the challenge that `verifier` answers (S256), so that a
/// store can find the code by equality; `None` for a malformed verifier, which answers no
/// challenge. [`verify`] stays the check of record: this only lets a write that would also
/// pass it go ahead in one step (decision 0047).
pub fn challenge_of(verifier: &str) -> Option<String> {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    if !is_well_formed_verifier(verifier) {
        return None;
    }
    let hashed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier));
    challenge(Some("S256"), Some(&hashed)).ok().flatten()
}

/// At `/token` (RFC 7636 §4.6). A code issued with a challenge needs the matching verifier; a
/// code issued without one must not be redeemed with a verifier (PKCE downgrade, RFC 9700
/// §2.1.1). Every failure is `invalid_grant`.
pub fn verify(stored: Option<&str>, verifier: Option<&str>) -> Result<(), OAuthError> {
    match (stored, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(OAuthError::invalid_grant(
            "code_verifier sent for a code issued without code_challenge",
        )),
        (Some(_), None) => Err(OAuthError::invalid_grant("code_verifier missing")),
        (Some(stored), Some(verifier)) => {
            let ok = is_well_formed_verifier(verifier)
                && Pkce::required()
                    .verify(
                        Some(Value::private(Some(stored.to_owned()))),
                        Some(verifier.into()),
                    )
                    .is_ok();
            if ok {
                Ok(())
            } else {
                Err(OAuthError::invalid_grant("code_verifier does not match"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector_verifies() {
        let stored = challenge(Some("S256"), Some(CHALLENGE)).unwrap().unwrap();
        verify(Some(&stored), Some(VERIFIER)).unwrap();
    }

    #[test]
    fn plain_missing_method_and_short_challenge_are_refused_rfc7636_4_3() {
        assert!(challenge(Some("plain"), Some(CHALLENGE)).is_err());
        assert!(challenge(None, Some(CHALLENGE)).is_err());
        assert!(challenge(Some("S256"), Some("short")).is_err());
        assert!(challenge(Some("S256"), None).is_err());
        assert_eq!(challenge(None, None).unwrap(), None);
    }

    #[test]
    fn wrong_short_or_missing_verifier_fails_rfc7636_4_6() {
        let stored = challenge(Some("S256"), Some(CHALLENGE)).unwrap().unwrap();
        let wrong = "eBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
        for v in [Some(wrong), Some("short"), None] {
            assert!(verify(Some(&stored), v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn challenge_of_a_verifier_is_what_the_code_row_holds_rfc7636_4_6() {
        let stored = challenge(Some("S256"), Some(CHALLENGE)).unwrap();
        assert_eq!(challenge_of(VERIFIER), stored);
        let wrong = "eBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(challenge_of(wrong).is_some());
        assert_ne!(challenge_of(wrong), stored);
        for malformed in ["short", &"a".repeat(129), &format!("{}!", &VERIFIER[1..])] {
            assert_eq!(challenge_of(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn verifier_without_challenge_is_a_downgrade_rfc9700_2_1_1() {
        assert!(verify(None, Some(VERIFIER)).is_err());
        verify(None, None).unwrap();
    }
}
