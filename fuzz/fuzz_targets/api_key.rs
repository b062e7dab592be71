//! The API key format (`crypto::api_key`, docs/api-keys.md): what `is_well_formed` accepts
//! before any lookup, `looks_like` and `hint`; and the leak report's body
//! (`http::leak_report::reported_values`: a form, or JSON `{"token": …}` or a list of them),
//! whose values go to the same checks.
//!
//! The first byte chooses the report's content type; the rest is the body, and (as text)
//! also a presented key. The second byte also picks one character of a real key to change.
#![no_main]

use std::sync::OnceLock;

use http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tessera::crypto::api_key::{self, LENGTH, PREFIX};
use tessera::http::leak_report::{reported_values, MAX_REPORTED};
use tessera::oauth::params::has_control;

const CONTENT_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    "application/json",
    "Application/JSON; charset=utf-8",
    "text/plain",
];

fn check_key(value: &str) {
    let hint = api_key::hint(value);
    assert!(value.starts_with(&hint));
    assert!(hint.chars().count() <= PREFIX.len() + 6);
    if api_key::is_well_formed(value) {
        assert!(api_key::looks_like(value));
        assert_eq!(value.len(), LENGTH);
        assert!(value[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(hint.len(), PREFIX.len() + 6);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(body) {
        check_key(text);
    }

    // CRC32 catches every change of one character: a typo never passes.
    static KEY: OnceLock<String> = OnceLock::new();
    let key = KEY.get_or_init(|| api_key::generate().expose().to_owned());
    assert!(api_key::is_well_formed(key));
    if let Some(&with) = body.first() {
        let at = PREFIX.len() + usize::from(pick) % (LENGTH - PREFIX.len());
        if with.is_ascii() && with != key.as_bytes()[at] {
            let mut typo = key.clone().into_bytes();
            typo[at] = with;
            let typo = String::from_utf8(typo).expect("ascii");
            assert!(!api_key::is_well_formed(&typo), "{typo}");
        }
    }

    let mut headers = HeaderMap::new();
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(values) = reported_values(&headers, body) {
        assert!((1..=MAX_REPORTED).contains(&values.len()));
        for v in &values {
            if content_type.starts_with("application/x-www") {
                assert!(!v.is_empty() && !has_control(v));
            }
            check_key(v);
        }
    }
});
