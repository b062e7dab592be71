//! Authentication context class references: OIDC Core §2 (`acr`), §3.1.2.1 (`acr_values`)
//! and §5.5.1.1 (an essential `acr` in the `claims` request parameter); decision 0024.
//!
//! Tessera authenticates people with a password only, which is NIST SP 800-63B
//! Authenticator Assurance Level 1; the level's URI is the one `acr` value it can prove.
//! A request that insists (essential) on another level cannot be met by any sign-in here,
//! so it is refused at once with `unmet_authentication_requirements` instead of asking for
//! a password that would not satisfy it. `acr_values` alone only expresses a preference
//! (Core §3.1.2.1: voluntary): the sign-in goes ahead and the ID token says what it was.

use serde_json::Value;

use super::error::{ErrorCode, OAuthError};

/// NIST SP 800-63B AAL1: single-factor authentication (a password).
pub const PASSWORD: &str = "http://idmanagement.gov/ns/assurance/aal/1";

/// Every level Tessera can prove, for discovery's `acr_values_supported`.
pub const SUPPORTED: &[&str] = &[PASSWORD];

/// The level a session's authentication methods (RFC 8176 `amr`) prove, if any.
pub fn of_session(amr: &[String]) -> Option<&'static str> {
    amr.iter().any(|m| m == "pwd").then_some(PASSWORD)
}

/// What the request says about `acr`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requested {
    /// From the `claims` parameter's `essential` (Core §5.5.1).
    pub essential: bool,
    /// Acceptable values, most preferred first (`value`, `values` or `acr_values`).
    pub values: Vec<String>,
}

impl Requested {
    /// Reads `acr_values` and, from the `claims` parameter, `id_token.acr` or `userinfo.acr`
    /// (Core §5.5.1.1); an essential request wins over a voluntary one.
    pub fn parse(acr_values: Option<&str>, claims: Option<&Value>) -> Requested {
        let mut requested = Requested {
            essential: false,
            values: acr_values
                .map(|v| {
                    v.split(' ')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        };
        for member in ["id_token", "userinfo"] {
            let Some(acr) = claims
                .and_then(|c| c.get(member))
                .and_then(|m| m.get("acr"))
            else {
                continue;
            };
            let Value::Object(acr) = acr else {
                continue; // null: asked for by name only, nothing more.
            };
            let essential = acr
                .get("essential")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let mut values: Vec<String> = Vec::new();
            if let Some(v) = acr.get("value").and_then(Value::as_str) {
                values.push(v.to_owned());
            }
            if let Some(list) = acr.get("values").and_then(Value::as_array) {
                values.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            if essential || requested.values.is_empty() {
                requested = Requested {
                    essential: essential || requested.essential,
                    values: if values.is_empty() {
                        requested.values
                    } else {
                        values
                    },
                };
            }
        }
        requested
    }

    /// Refuses a request that insists on a level no sign-in here can prove.
    pub fn check(&self) -> Result<(), OAuthError> {
        if self.essential
            && !self.values.is_empty()
            && !self.values.iter().any(|v| SUPPORTED.contains(&v.as_str()))
        {
            return Err(OAuthError::new(
                ErrorCode::UnmetAuthenticationRequirements,
                "the requested authentication context (acr) cannot be met here",
            ));
        }
        Ok(())
    }
}

/// Checks the `claims` request parameter's shape (Core §5.5): a JSON object whose
/// `userinfo` and `id_token` members, when present, are objects of `null` or objects.
pub fn parse_claims(raw: Option<&str>) -> Result<Option<Value>, OAuthError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let invalid = || OAuthError::invalid_request("claims must be a JSON object (OIDC Core §5.5)");
    let value: Value = serde_json::from_str(raw).map_err(|_| invalid())?;
    let Value::Object(members) = &value else {
        return Err(invalid());
    };
    for member in ["userinfo", "id_token"] {
        let well_formed = match members.get(member) {
            None => true,
            Some(Value::Object(requests)) => {
                requests.values().all(|r| r.is_null() || r.is_object())
            }
            Some(_) => false,
        };
        if !well_formed {
            return Err(invalid());
        }
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_password_session_proves_aal1_only() {
        assert_eq!(of_session(&["pwd".into()]), Some(PASSWORD));
        assert_eq!(of_session(&[]), None);
    }

    #[test]
    fn acr_values_are_voluntary_oidc_3_1_2_1() {
        let r = Requested::parse(Some("urn:example:mfa urn:example:hwk"), None);
        assert!(!r.essential);
        assert_eq!(r.values.len(), 2);
        assert!(r.check().is_ok());
    }

    #[test]
    fn an_essential_acr_that_cannot_be_met_is_refused_oidc_5_5_1_1() {
        let claims =
            json!({ "id_token": { "acr": { "essential": true, "values": ["urn:example:mfa"] } } });
        let r = Requested::parse(None, Some(&claims));
        let err = r.check().unwrap_err();
        assert_eq!(err.code, ErrorCode::UnmetAuthenticationRequirements);
        let met = json!({ "id_token": { "acr": { "essential": true, "value": PASSWORD } } });
        assert!(Requested::parse(None, Some(&met)).check().is_ok());
        let voluntary = json!({ "id_token": { "acr": { "values": ["urn:example:mfa"] } } });
        assert!(Requested::parse(None, Some(&voluntary)).check().is_ok());
    }

    #[test]
    fn the_claims_parameter_must_be_a_json_object_oidc_5_5() {
        assert!(parse_claims(Some("not json")).is_err());
        assert!(parse_claims(Some("[1]")).is_err());
        assert!(parse_claims(Some(r#"{"id_token": 5}"#)).is_err());
        assert!(parse_claims(Some(r#"{"userinfo": {"email": 1}}"#)).is_err());
        assert!(parse_claims(Some(
            r#"{"userinfo": {"email": null}, "id_token": {"acr": {"essential": true}}}"#
        ))
        .is_ok());
        assert_eq!(parse_claims(None).unwrap(), None);
    }
}
