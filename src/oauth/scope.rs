//! Scope strings, RFC 6749 §3.3: `scope-token *( SP scope-token )`, each token `1*NQCHAR`.
//!
//! Parsing is oxide-auth's `Scope` (a set); it tolerates stray spaces that the grammar does
//! not, so the grammar is checked here first (see `docs/oxide-auth.md` in shared/).

use std::str::FromStr;

use oxide_auth::primitives::scope::Scope;

/// The scopes OpenID Connect defines (Core §5.4, §11). They describe a person, so they are
/// never granted to a client acting for itself; discovery lists them as supported.
pub const OIDC_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "address",
    "phone",
    "offline_access",
];

/// Releases the user's roles and groups (RFC 9068 §2.2.3.1 `roles`, `groups`) in
/// introspection answers and JWT access tokens; never in ID tokens (docs/api-keys.md).
pub const ROLES: &str = "roles";

/// Whether a scope describes a person, and so is never granted to a client acting for itself.
pub fn describes_person(scope: &str) -> bool {
    OIDC_SCOPES.contains(&scope) || scope == ROLES
}

/// What discovery lists in `scopes_supported`.
pub fn supported() -> Vec<&'static str> {
    OIDC_SCOPES.iter().copied().chain([ROLES]).collect()
}

/// Whether a space-separated `scope` includes `token`.
pub fn contains(scope: &str, token: &str) -> bool {
    scope.split(' ').any(|s| s == token)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "scope is empty or not space-separated tokens of printable ASCII without `\"` or `\\`"
    )]
    Malformed,
    #[error("scope `{0}` is not allowed")]
    NotAllowed(String),
}

/// NQCHAR = %x21 / %x23-5B / %x5D-7E
fn is_nqchar(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}

/// Parses a scope string that follows the grammar exactly.
pub fn parse(s: &str) -> Result<Scope, ScopeError> {
    let well_formed = !s.is_empty()
        && s.split(' ')
            .all(|t| !t.is_empty() && t.bytes().all(is_nqchar));
    if !well_formed {
        return Err(ScopeError::Malformed);
    }
    Scope::from_str(s).map_err(|_| ScopeError::Malformed)
}

/// Parses `requested` and checks it lies within `allowed`.
pub fn check_within(requested: &str, allowed: &Scope) -> Result<Scope, ScopeError> {
    let scope = parse(requested)?;
    if let Some(extra) = scope.iter().find(|t| !allowed.iter().any(|a| a == *t)) {
        return Err(ScopeError::NotAllowed(extra.to_owned()));
    }
    Ok(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_is_enforced_rfc6749_3_3() {
        assert!(parse("openid profile").is_ok());
        assert!(parse("a!#[]~").is_ok());
        for bad in ["", " ", "a  b", " a", "a ", "a\"b", "a\\b", "a\tb", "é"] {
            assert_eq!(parse(bad), Err(ScopeError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn subset_check_names_the_first_extra_scope() {
        let allowed = parse("openid profile email").unwrap();
        assert!(check_within("email openid", &allowed).is_ok());
        assert_eq!(
            check_within("openid admin", &allowed),
            Err(ScopeError::NotAllowed("admin".into()))
        );
    }
}
