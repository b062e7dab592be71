//! Request parameters as ordered pairs (STYLE.md §4): only names on the endpoint's allow-list
//! are kept; one of them sent twice, or holding a control character, is remembered so the
//! endpoint can answer `invalid_request` (RFC 6749 §3.1, §3.2); an empty value counts as
//! absent (§3.1). Unknown parameters are never read and never rejected (§3.1: "MUST ignore").
//!
//! No OAuth or OpenID parameter has a control character in its grammar (RFC 6749 Appendix A:
//! VSCHAR, NQCHAR, URI-reference), and Postgres refuses NUL in text, so such a value is
//! refused here, at parsing, before it can reach the store.

use url::form_urlencoded;

use crate::oauth::error::OAuthError;

#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    /// Allowed parameters that cannot be used, and why: repeated, or a control character.
    rejected: Vec<(String, Rejection)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    Repeated,
    ControlCharacter,
    TooLong,
    TooMany,
}

/// Longest value kept (the login form carries a whole authorization request in one field;
/// a signed request parameter would be the longest legitimate value).
pub const MAX_VALUE_LEN: usize = 16 * 1024;
/// Most `name=value` pairs read from one request, known names or not.
pub const MAX_PAIRS: usize = 128;

/// Whether `value` holds a C0 control character or DEL (NUL included).
pub fn has_control(value: &str) -> bool {
    value.chars().any(|c| c.is_ascii_control())
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` bytes (a body or a query string).
    pub fn parse(raw: &[u8], allowed: &[&str]) -> Params {
        let mut params = Params::default();
        for (i, (name, value)) in form_urlencoded::parse(raw).enumerate() {
            if i == MAX_PAIRS {
                params
                    .rejected
                    .insert(0, ("(request)".to_owned(), Rejection::TooMany));
                break;
            }
            if !allowed.contains(&name.as_ref()) {
                continue;
            }
            let why = if params.pairs.iter().any(|(n, _)| *n == name) {
                Rejection::Repeated
            } else if has_control(&value) {
                Rejection::ControlCharacter
            } else if value.len() > MAX_VALUE_LEN {
                Rejection::TooLong
            } else {
                params.pairs.push((name.into_owned(), value.into_owned()));
                continue;
            };
            if !params.rejected.iter().any(|(n, _)| *n == name) {
                params.rejected.push((name.into_owned(), why));
            }
        }
        params
    }

    /// Whether `name` was sent more than once or with a control character: either way its
    /// value cannot be trusted.
    pub fn is_rejected(&self, name: &str) -> bool {
        self.rejected.iter().any(|(n, _)| n == name)
    }

    /// `invalid_request` naming the first repeated or malformed parameter, if any.
    pub fn reject_malformed(&self) -> Result<(), OAuthError> {
        match self.rejected.first() {
            Some((name, Rejection::Repeated)) => Err(OAuthError::invalid_request(format!(
                "parameter `{name}` was sent more than once"
            ))),
            Some((name, Rejection::ControlCharacter)) => Err(OAuthError::invalid_request(format!(
                "parameter `{name}` contains a control character"
            ))),
            Some((name, Rejection::TooLong)) => Err(OAuthError::invalid_request(format!(
                "parameter `{name}` is longer than {MAX_VALUE_LEN} bytes"
            ))),
            Some((_, Rejection::TooMany)) => Err(OAuthError::invalid_request(format!(
                "the request has more than {MAX_PAIRS} parameters"
            ))),
            None => Ok(()),
        }
    }

    /// The value, with an empty value treated as absent. A rejected parameter has none.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub fn required(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| {
            OAuthError::invalid_request(format!("missing required parameter `{name}`"))
        })
    }

    /// Re-encodes the kept parameters, leaving out `skip`, as a query string.
    pub fn to_query(&self, transform: impl Fn(&str, &str) -> Option<String>) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.pairs {
            if let Some(value) = transform(name, value) {
                out.append_pair(name, &value);
            }
        }
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOWED: &[&str] = &["a", "b", "c"];

    #[test]
    fn repeated_allowed_parameter_is_remembered_rfc6749_3_1() {
        let p = Params::parse(b"a=1&b=2&a=3", ALLOWED);
        assert!(p.is_rejected("a"));
        assert_eq!(p.get("a"), Some("1"));
        let err = p.reject_malformed().unwrap_err();
        assert!(err.description.contains("`a`"));
    }

    #[test]
    fn control_characters_are_refused_rfc6749_appendix_a() {
        for raw in [&b"a=%00"[..], b"a=x%0Ay", b"a=%7F", b"a=%1B"] {
            let p = Params::parse(raw, ALLOWED);
            assert!(p.is_rejected("a"));
            assert_eq!(p.get("a"), None, "a rejected value is never read");
            let err = p.reject_malformed().unwrap_err();
            assert!(err.description.contains("control character"));
        }
        assert!(Params::parse(b"a=x+y%C3%A9", ALLOWED)
            .reject_malformed()
            .is_ok());
    }

    #[test]
    fn too_long_values_and_too_many_pairs_are_refused() {
        let long = format!("a={}", "x".repeat(MAX_VALUE_LEN + 1));
        let p = Params::parse(long.as_bytes(), ALLOWED);
        assert_eq!(p.get("a"), None);
        assert!(p
            .reject_malformed()
            .unwrap_err()
            .description
            .contains("longer"));
        let many: Vec<String> = (0..=MAX_PAIRS).map(|i| format!("x{i}=1")).collect();
        let p = Params::parse(format!("a=1&{}", many.join("&")).as_bytes(), ALLOWED);
        assert!(p.is_rejected("(request)"));
        assert!(p
            .reject_malformed()
            .unwrap_err()
            .description
            .contains("more than"));
    }

    #[test]
    fn unknown_parameters_are_ignored_even_when_repeated() {
        let p = Params::parse(b"a=1&extra=foobar&extra=x", ALLOWED);
        assert!(p.reject_malformed().is_ok());
        assert_eq!(p.get("extra"), None);
    }

    #[test]
    fn empty_value_is_absent_and_encoding_is_decoded() {
        let p = Params::parse(b"a=&b=x+y%2Bz", ALLOWED);
        assert_eq!(p.get("a"), None);
        assert!(p.required("a").is_err());
        assert_eq!(p.get("b"), Some("x y+z"));
    }

    #[test]
    fn to_query_round_trips_and_can_drop_or_change_values() {
        let p = Params::parse(b"a=1&b=x+y&c=z", ALLOWED);
        let q = p.to_query(|n, v| (n != "c").then(|| v.to_owned()));
        assert_eq!(q, "a=1&b=x+y");
    }
}
