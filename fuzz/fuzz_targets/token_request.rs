//! `/token` input before any lookup: the `Authorization` header's HTTP Basic client
//! credentials (`http::client_auth::parse_basic`, RFC 6749 §2.3.1) and the form body
//! (`Params::parse` with the token endpoint's parameters), then what the grants read from it
//! without the store: `grant_type`, `scope`, and the PKCE `code_verifier`.
//!
//! Input: the header value up to the first newline, then the form body.
#![no_main]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use sha2::Digest as _;
use tessera::http::client_auth::parse_basic;
use tessera::http::token::TOKEN_PARAMS;
use tessera::oauth::grants::GrantType;
use tessera::oauth::params::{has_control, Params, MAX_VALUE_LEN};
use tessera::oauth::{pkce, scope};

/// `application/x-www-form-urlencoded` of one Basic half, as RFC 6749 Appendix B asks.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn basic(id: &str, secret: &str) -> String {
    let raw = format!("{}:{}", form_encode(id), form_encode(secret));
    format!("Basic {}", STANDARD.encode(raw))
}

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };

    // What `HeaderValue::to_str` lets through: visible ASCII, space and tab.
    if header
        .iter()
        .all(|b| *b == b'\t' || (0x20..0x7f).contains(b))
    {
        let header = std::str::from_utf8(header).expect("ascii");
        if let Some((id, secret)) = parse_basic(header) {
            assert!(!has_control(&id) && !has_control(&secret));
            assert_eq!(
                parse_basic(&basic(&id, &secret)),
                Some((id.clone(), secret.clone()))
            );
        }
    }

    let params = Params::parse(body, TOKEN_PARAMS);
    for name in TOKEN_PARAMS {
        if let Some(v) = params.get(name) {
            assert!(!has_control(v) && v.len() <= MAX_VALUE_LEN);
        }
    }

    // Whatever id and secret a conforming client sends in Basic come back unchanged.
    if let (Some(id), Some(secret)) = (params.get("client_id"), params.get("client_secret")) {
        assert_eq!(
            parse_basic(&basic(id, secret)),
            Some((id.to_owned(), secret.to_owned())),
            "id {id:?} secret {secret:?}"
        );
    }

    if let Some(name) = params.get("grant_type") {
        if let Some(g) = GrantType::parse(name) {
            assert_eq!(g.as_str(), name);
        }
    }
    if let Some(s) = params.get("scope") {
        if let Ok(parsed) = scope::parse(s) {
            assert!(parsed.iter().all(|t| !t.is_empty() && !t.contains(' ')));
        }
    }

    // PKCE: the verifier matches the challenge made from it, and nothing else does.
    let verifier = params.get("code_verifier");
    if let Some(v) = verifier {
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(v.as_bytes()));
        let stored = pkce::challenge(Some("S256"), Some(&challenge))
            .expect("a SHA-256 challenge is well formed")
            .expect("a challenge was sent");
        let well_formed = (43..=128).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        assert_eq!(
            pkce::verify(Some(&stored), Some(v)).is_ok(),
            well_formed,
            "{v:?}"
        );
        let other = format!("{v}x");
        assert!(pkce::verify(Some(&stored), Some(&other)).is_err());
        assert!(pkce::verify(None, Some(v)).is_err());
    }
    assert_eq!(pkce::verify(None, verifier).is_ok(), verifier.is_none());
});
