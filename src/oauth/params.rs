//! Request parameters as ordered pairs (STYLE.md §4): only names on the endpoint's allow-list
//! are kept; one of them sent twice is remembered so the endpoint can answer
//! `invalid_request` (RFC 6749 §3.1, §3.2); an empty value counts as absent (§3.1).
//! Unknown parameters are never read and never rejected (§3.1: "MUST ignore").

use url::form_urlencoded;

use crate::oauth::error::OAuthError;

#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    duplicates: Vec<String>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` bytes (a body or a query string).
    pub fn parse(raw: &[u8], allowed: &[&str]) -> Params {
        let mut params = Params::default();
        for (name, value) in form_urlencoded::parse(raw) {
            if !allowed.contains(&name.as_ref()) {
                continue;
            }
            if params.pairs.iter().any(|(n, _)| *n == name) {
                if !params.duplicates.iter().any(|d| *d == name) {
                    params.duplicates.push(name.into_owned());
                }
                continue;
            }
            params.pairs.push((name.into_owned(), value.into_owned()));
        }
        params
    }

    /// Whether `name` was sent more than once.
    pub fn is_duplicated(&self, name: &str) -> bool {
        self.duplicates.iter().any(|d| d == name)
    }

    /// `invalid_request` naming the first repeated parameter, if any.
    pub fn reject_duplicates(&self) -> Result<(), OAuthError> {
        match self.duplicates.first() {
            Some(name) => Err(OAuthError::invalid_request(format!(
                "parameter `{name}` was sent more than once"
            ))),
            None => Ok(()),
        }
    }

    /// The value, with an empty value treated as absent.
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
        assert!(p.is_duplicated("a"));
        assert_eq!(p.get("a"), Some("1"));
        let err = p.reject_duplicates().unwrap_err();
        assert!(err.description.contains("`a`"));
    }

    #[test]
    fn unknown_parameters_are_ignored_even_when_repeated() {
        let p = Params::parse(b"a=1&extra=foobar&extra=x", ALLOWED);
        assert!(p.reject_duplicates().is_ok());
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
